//! `instance-id`: the facts a host registers with the appliance. Every piece
//! is read from files (no tools spawned) so it stays within a few ms; a
//! missing piece is empty, never an error.

use serde::Serialize;

use crate::iscsi_sysfs;
use crate::sysfs::Root;

/// The host's identity as reported to the appliance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InstanceId {
    /// Kernel hostname.
    pub hostname: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// From os-release.
    pub os: OsInfo,
    /// Kernel release (uname -r).
    pub kernel: String,
    /// CPU architecture this binary was built for (= the host's).
    pub arch: String,
    /// Non-loopback IPv4 and IPv6 addresses.
    pub ips: Vec<String>,
    /// iSCSI initiator facts.
    pub iscsi: IscsiIdentity,
    /// Fibre Channel ports.
    pub fc: FcIdentity,
    /// NVMe host identity.
    pub nvme: NvmeIdentity,
}

/// The operating system, from os-release.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OsInfo {
    /// `ID`, e.g. debian.
    pub id: String,
    /// `VERSION_ID`, e.g. 12.
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// iSCSI initiator identity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IscsiIdentity {
    /// IQN from /etc/iscsi/initiatorname.iscsi.
    pub initiator_iqn: String,
    /// Initiator names the live sessions report (sysfs), deduplicated.
    pub session_initiator_names: Vec<String>,
    /// False when a session logged in under another name than the file says
    /// (the file was changed without restarting iscsid): the appliance's ACL
    /// must then be checked by hand.
    pub consistent: bool,
}

/// FC identity: all local ports, and the WWPNs to register (online only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FcIdentity {
    /// Every fc_host.
    pub ports: Vec<fc::FcHost>,
    /// WWPNs of the online ports: what the appliance should zone/map.
    pub registration_wwpns: Vec<String>,
}

/// NVMe-oF host identity (/etc/nvme).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NvmeIdentity {
    /// /etc/nvme/hostnqn.
    pub hostnqn: String,
    /// /etc/nvme/hostid.
    pub hostid: String,
}

/// Collects the identity under `root`.
pub fn collect(root: &Root) -> InstanceId {
    let fc_ports = fc::hosts(root.base()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading fc_host");
        Vec::new()
    });
    let registration_wwpns = fc_ports
        .iter()
        .filter(|p| p.online && !p.wwpn.is_empty())
        .map(|p| p.wwpn.clone())
        .collect();
    let initiator_iqn = root
        .attr("/etc/iscsi/initiatorname.iscsi")
        .map(|t| parse_initiatorname(&t))
        .unwrap_or_default();
    let mut session_names: Vec<String> = iscsi_sysfs::sessions(root)
        .into_iter()
        .map(|s| s.initiator_name)
        .filter(|n| !n.is_empty() && n != "(null)")
        .collect();
    session_names.sort();
    session_names.dedup();
    let consistent = session_names.iter().all(|n| *n == initiator_iqn);
    InstanceId {
        hostname: root.attr("/proc/sys/kernel/hostname").unwrap_or_default(),
        machine_id: root.attr("/etc/machine-id").unwrap_or_default(),
        os: os_release(root),
        kernel: root.attr("/proc/sys/kernel/osrelease").unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        ips: ips(root),
        iscsi: IscsiIdentity {
            initiator_iqn,
            session_initiator_names: session_names,
            consistent,
        },
        fc: FcIdentity {
            ports: fc_ports,
            registration_wwpns,
        },
        nvme: NvmeIdentity {
            hostnqn: root.attr("/etc/nvme/hostnqn").unwrap_or_default(),
            hostid: root.attr("/etc/nvme/hostid").unwrap_or_default(),
        },
    }
}

/// The `InitiatorName=` value of an initiatorname.iscsi file.
pub fn parse_initiatorname(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn os_release(root: &Root) -> OsInfo {
    let text = root
        .attr("/etc/os-release")
        .or_else(|| root.attr("/usr/lib/os-release"))
        .unwrap_or_default();
    let mut os = OsInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_ID" => os.version_id = v,
            "PRETTY_NAME" => os.pretty_name = v,
            _ => {}
        }
    }
    os
}

/// Non-loopback addresses: IPv4 from /proc/net/fib_trie (the kernel's local
/// routes: no netlink or getifaddrs needed), IPv6 from /proc/net/if_inet6.
pub fn ips(root: &Root) -> Vec<String> {
    let mut v4 = parse_fib_trie_locals(&root.attr("/proc/net/fib_trie").unwrap_or_default());
    v4.retain(|a| !a.starts_with("127."));
    let v6 = parse_if_inet6(&root.attr("/proc/net/if_inet6").unwrap_or_default());
    v4.into_iter().chain(v6).collect()
}

/// IPv4 addresses marked `/32 host LOCAL` in /proc/net/fib_trie, in order,
/// deduplicated.
pub fn parse_fib_trie_locals(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = Some(addr.trim());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last {
                if !out.iter().any(|x| x == a) {
                    out.push(a.to_string());
                }
            }
        }
    }
    out
}

/// Global and link-local IPv6 addresses from /proc/net/if_inet6 (loopback
/// interface excluded), in `a:b:…` form.
pub fn parse_if_inet6(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] == "lo" || f[0].len() != 32 {
                return None;
            }
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(f[0].get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(std::net::Ipv6Addr::from(bytes).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn initiatorname_file() {
        let t =
            "## DO NOT EDIT\n#InitiatorName=iqn.bad\nInitiatorName=iqn.1993-08.org.debian:01:abc\n";
        assert_eq!(parse_initiatorname(t), "iqn.1993-08.org.debian:01:abc");
        assert_eq!(parse_initiatorname("# nothing\n"), "");
    }

    #[test]
    fn fib_trie() {
        let t = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.0.2.0/24 2 0 2\n        |-- 10.0.2.15\n           /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\nLocal:\n        |-- 10.0.2.15\n           /32 host LOCAL\n";
        assert_eq!(parse_fib_trie_locals(t), vec!["10.0.2.15", "127.0.0.1"]);
    }

    #[test]
    fn if_inet6() {
        let t = "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000005054fffe123456 02 40 20 80     eth0\nfe800000000000000054fffe12345678 02 40 20 80     eth0\n";
        assert_eq!(parse_if_inet6(t), vec!["fe80::54:fffe:1234:5678"]);
    }
}
