//! What this host registers as: the executor's host facts reduced to what
//! the appliance maps LUNs to (IQNs, online FC WWPNs) plus what names the
//! host to a person (hostname, machine-id, OS), in the appliance's
//! spelling so a comparison with what it stored is exact.

use serde::Serialize;

/// The host's identity as registration uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostIdentity {
    /// Kernel hostname: the appliance host name when the host is new.
    pub hostname: String,
    /// /etc/machine-id (informational).
    pub machine_id: String,
    /// os-release PRETTY_NAME (informational).
    pub os: String,
    /// iSCSI initiator names: the configured one and any a live session
    /// uses (lower-case, sorted, no duplicates).
    pub iqns: Vec<String>,
    /// WWPNs of the online FC ports (`aa:bb:..` lower-case, sorted).
    pub wwpns: Vec<String>,
    /// WWNNs of those ports (informational; the appliance maps by WWPN).
    pub wwnns: Vec<String>,
    /// NVMe host NQN, if configured (informational: the appliance does not
    /// present over NVMe-oF yet).
    pub nvme_nqn: Option<String>,
}

impl HostIdentity {
    /// Reads this host's identity (files only, a few ms).
    pub fn collect() -> Self {
        Self::from_instance(&executor::identity::collect(&executor::Root::host()))
    }

    /// The identity in an executor report.
    pub fn from_instance(id: &executor::identity::InstanceId) -> Self {
        let mut iqns: Vec<String> = std::iter::once(id.iscsi.initiator_iqn.as_str())
            .chain(id.iscsi.session_initiator_names.iter().map(String::as_str))
            .filter(|i| !i.trim().is_empty())
            .map(normalize_iqn)
            .collect();
        sort_dedup(&mut iqns);
        let online = || id.fc.ports.iter().filter(|p| p.online);
        let mut wwpns: Vec<String> = online()
            .map(|p| p.wwpn.as_str())
            .filter(|w| !w.is_empty())
            .map(normalize_wwn)
            .collect();
        sort_dedup(&mut wwpns);
        let mut wwnns: Vec<String> = online()
            .map(|p| p.wwnn.as_str())
            .filter(|w| !w.is_empty())
            .map(normalize_wwn)
            .collect();
        sort_dedup(&mut wwnns);
        let nqn = id.nvme.hostnqn.trim();
        Self {
            hostname: id.hostname.trim().to_string(),
            machine_id: id.machine_id.trim().to_string(),
            os: id.os.pretty_name.clone(),
            iqns,
            wwpns,
            wwnns,
            nvme_nqn: (!nqn.is_empty()).then(|| nqn.to_string()),
        }
    }

    /// The ports in the appliance's spelling (normalised, sorted): what a
    /// stored host is compared with. Use this after changing the fields.
    pub fn normalized(mut self) -> Self {
        self.iqns = self.iqns.iter().map(|i| normalize_iqn(i)).collect();
        sort_dedup(&mut self.iqns);
        self.wwpns = self.wwpns.iter().map(|w| normalize_wwn(w)).collect();
        sort_dedup(&mut self.wwpns);
        self.wwnns = self.wwnns.iter().map(|w| normalize_wwn(w)).collect();
        sort_dedup(&mut self.wwnns);
        self
    }
}

fn sort_dedup(v: &mut Vec<String>) {
    v.sort();
    v.dedup();
}

/// An IQN as the appliance stores it: trimmed, lower-case.
pub fn normalize_iqn(iqn: &str) -> String {
    iqn.trim().to_ascii_lowercase()
}

/// A WWPN/WWNN as the appliance stores it: `aa:bb:cc:dd:ee:ff:00:11`.
/// Anything that is not 16 hex digits is passed on unchanged (trimmed) for
/// the appliance to refuse with its reason.
pub fn normalize_wwn(w: &str) -> String {
    let t = w.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return w.trim().to_string();
    }
    let hex = hex.to_ascii_lowercase();
    (0..8)
        .map(|i| &hex[i * 2..i * 2 + 2])
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn wwns_and_iqns_take_the_appliances_spelling() {
        assert_eq!(
            normalize_wwn("0x21000024FF4C9A01"),
            "21:00:00:24:ff:4c:9a:01"
        );
        assert_eq!(normalize_wwn("21000024ff4c9a01"), "21:00:00:24:ff:4c:9a:01");
        assert_eq!(
            normalize_wwn("21-00-00-24-ff-4c-9a-01"),
            "21:00:00:24:ff:4c:9a:01"
        );
        assert_eq!(normalize_wwn(" bogus "), "bogus");
        assert_eq!(
            normalize_iqn(" IQN.1993-08.org.Debian:01:AB "),
            "iqn.1993-08.org.debian:01:ab"
        );
    }

    #[test]
    fn only_online_ports_and_every_initiator_name_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let w = |p: &str, text: &str| {
            let p = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("/proc/sys/kernel/hostname", "db7\n");
        w("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        w(
            "/etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
        );
        w(
            "/etc/iscsi/initiatorname.iscsi",
            "## x\nInitiatorName=iqn.1993-08.org.debian:01:DB7\n",
        );
        w("/etc/nvme/hostnqn", "nqn.2014-08.org.nvmexpress:uuid:1\n");
        for (h, wwpn, state) in [
            ("host3", "0x21000024ff4c9a01", "Online"),
            ("host4", "0x21000024ff4c9a02", "Linkdown"),
        ] {
            let base = format!("/sys/class/fc_host/{h}");
            w(&format!("{base}/port_name"), &format!("{wwpn}\n"));
            w(&format!("{base}/node_name"), "0x20000024ff4c9a01\n");
            w(&format!("{base}/port_state"), &format!("{state}\n"));
        }
        let id =
            HostIdentity::from_instance(&executor::identity::collect(&executor::Root::at(root)));
        assert_eq!(id.hostname, "db7");
        assert_eq!(id.iqns, ["iqn.1993-08.org.debian:01:db7"]);
        assert_eq!(id.wwpns, ["21:00:00:24:ff:4c:9a:01"], "{id:?}");
        assert_eq!(id.wwnns, ["20:00:00:24:ff:4c:9a:01"]);
        assert_eq!(
            id.nvme_nqn.as_deref(),
            Some("nqn.2014-08.org.nvmexpress:uuid:1")
        );
        assert_eq!(id.os, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn this_host_has_its_initiator_name() {
        let id = HostIdentity::collect();
        assert!(!id.hostname.is_empty());
        let file = std::fs::read_to_string("/etc/iscsi/initiatorname.iscsi").unwrap_or_default();
        let want = executor::identity::parse_initiatorname(&file);
        if !want.is_empty() {
            assert!(id.iqns.contains(&normalize_iqn(&want)), "{id:?}");
        }
    }
}
