//! Fibre Channel host facts from sysfs: the local HBA ports (`fc_host`), the
//! remote ports they see (`fc_remote_ports`), a scan of exactly one remote port
//! + LUN, and a loop initialization (LIP).
//!
//! Every function takes the filesystem root to read under (`/` on a host, a
//! captured tree in tests), so the readers are tested against real layouts.

mod sysfs;
mod wwn;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use wwn::normalize_wwn;

/// What can go wrong talking to the FC transport class in sysfs.
#[derive(Debug, thiserror::Error)]
pub enum FcError {
    /// A sysfs attribute or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The caller passed something that is not a WWPN/WWNN.
    #[error(
        "not a WWN: {0:?} (expected 16 hex digits, optionally 0x-prefixed or colon-separated)"
    )]
    BadWwn(String),
    /// No online remote port with that WWPN is a SCSI target on any host.
    #[error("no online FC remote port with WWPN {wwpn} that is a SCSI target (seen: {seen})")]
    NoSuchTarget {
        /// The WWPN asked for (normalized).
        wwpn: String,
        /// What the remote ports were instead, for the operator.
        seen: String,
    },
    /// The named fc_host does not exist.
    #[error("no fc_host host{0} under /sys/class/fc_host")]
    NoSuchHost(u32),
}

/// A local FC (or FCoE) port: one `/sys/class/fc_host/hostN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FcHost {
    /// SCSI host number (N in hostN).
    pub host: u32,
    /// WWPN, normalized to 16 lowercase hex digits (empty when unreadable).
    pub wwpn: String,
    /// WWNN, normalized like `wwpn`.
    pub wwnn: String,
    /// `port_state` as the kernel reports it (Online, Offline, Linkdown, …).
    pub port_state: String,
    /// `speed` (e.g. "16 Gbit"), verbatim.
    pub speed: String,
    /// Fabric name normalized like `wwpn`; empty when not attached to a fabric.
    pub fabric_name: String,
    /// `supported_classes` (e.g. "Class 3"), verbatim.
    pub supported_classes: String,
    /// `port_type` (NPort, LPort, …), verbatim.
    pub port_type: String,
    /// True when `port_state` is Online: only such ports are registered with
    /// the appliance (as os-brick does), an offline HBA must not be zoned.
    pub online: bool,
}

/// A remote port seen by a local port: one `/sys/class/fc_remote_ports/rport-H:C-N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemotePort {
    /// Directory name, e.g. `rport-3:0-1`.
    pub name: String,
    /// Local SCSI host number (H).
    pub host: u32,
    /// SCSI channel (C).
    pub channel: u32,
    /// Remote WWPN, normalized.
    pub wwpn: String,
    /// Remote WWNN, normalized.
    pub wwnn: String,
    /// `port_state` verbatim.
    pub port_state: String,
    /// `roles`, split on commas (e.g. ["FCP Target"]).
    pub roles: Vec<String>,
    /// SCSI target id the kernel bound to this rport, or None when it is not
    /// a target (`-1`) or unreadable.
    pub scsi_target_id: Option<u32>,
    /// True when `port_state` is Online.
    pub online: bool,
}

impl RemotePort {
    /// True when the port is online and bound to a SCSI target id, i.e. a
    /// `C T L` scan through its host can find LUNs behind it.
    pub fn scannable(&self) -> bool {
        self.online && self.scsi_target_id.is_some()
    }
}

/// One write to a SCSI host's `scan` attribute, reported so callers can log
/// exactly what was asked of the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanWrite {
    /// SCSI host number.
    pub host: u32,
    /// The line written, e.g. "0 2 5".
    pub line: String,
}

/// Lists the local FC ports, sorted by host number. No FC HBA is an empty list.
pub fn hosts(root: &Path) -> Result<Vec<FcHost>, FcError> {
    let dir = sysfs::path(root, "/sys/class/fc_host");
    let mut out = Vec::new();
    for name in sysfs::list(&dir)? {
        let Some(host) = name.strip_prefix("host").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let d = dir.join(&name);
        let port_state = sysfs::attr(&d.join("port_state"));
        out.push(FcHost {
            host,
            wwpn: wwn_or_empty(&sysfs::attr(&d.join("port_name"))),
            wwnn: wwn_or_empty(&sysfs::attr(&d.join("node_name"))),
            online: port_state.eq_ignore_ascii_case("online"),
            port_state,
            speed: sysfs::attr(&d.join("speed")),
            fabric_name: wwn_or_empty(&sysfs::attr(&d.join("fabric_name"))),
            supported_classes: sysfs::attr(&d.join("supported_classes")),
            port_type: sysfs::attr(&d.join("port_type")),
        });
    }
    out.sort_by_key(|h| h.host);
    Ok(out)
}

/// Lists the remote ports, sorted by (host, channel, name).
pub fn remote_ports(root: &Path) -> Result<Vec<RemotePort>, FcError> {
    let dir = sysfs::path(root, "/sys/class/fc_remote_ports");
    let mut out = Vec::new();
    for name in sysfs::list(&dir)? {
        let Some((host, channel)) = parse_rport_name(&name) else {
            continue;
        };
        let d = dir.join(&name);
        let port_state = sysfs::attr(&d.join("port_state"));
        let roles = sysfs::attr(&d.join("roles"))
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        out.push(RemotePort {
            name,
            host,
            channel,
            wwpn: wwn_or_empty(&sysfs::attr(&d.join("port_name"))),
            wwnn: wwn_or_empty(&sysfs::attr(&d.join("node_name"))),
            online: port_state.eq_ignore_ascii_case("online"),
            port_state,
            roles,
            scsi_target_id: sysfs::attr(&d.join("scsi_target_id")).parse().ok(),
        });
    }
    out.sort_by(|a, b| (a.host, a.channel, &a.name).cmp(&(b.host, b.channel, &b.name)));
    Ok(out)
}

/// Parses `rport-H:C-N` into (H, C).
fn parse_rport_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("rport-")?;
    let (hc, _n) = rest.split_once('-')?;
    let (h, c) = hc.split_once(':')?;
    Some((h.parse().ok()?, c.parse().ok()?))
}

fn wwn_or_empty(raw: &str) -> String {
    normalize_wwn(raw).unwrap_or_default()
}

/// The scans `scan_target` would write for remote port `wwpn` and `lun`: one
/// `"C T L"` per online remote port with that WWPN bound to a SCSI target id,
/// on that port's host. Pure planning, so callers can show it (and tests can
/// check it) without touching the kernel.
pub fn plan_target_scan(root: &Path, wwpn: &str, lun: u64) -> Result<Vec<ScanWrite>, FcError> {
    let want = normalize_wwn(wwpn).ok_or_else(|| FcError::BadWwn(wwpn.to_string()))?;
    let ports = remote_ports(root)?;
    let plan: Vec<ScanWrite> = ports
        .iter()
        .filter(|p| p.wwpn == want && p.scannable())
        .filter_map(|p| {
            p.scsi_target_id.map(|t| ScanWrite {
                host: p.host,
                line: format!("{} {} {}", p.channel, t, lun),
            })
        })
        .collect();
    if plan.is_empty() {
        let seen = if ports.is_empty() {
            "no remote ports".to_string()
        } else {
            ports
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} target={}",
                        p.name,
                        p.wwpn,
                        p.port_state,
                        p.scsi_target_id
                            .map_or_else(|| "none".to_string(), |t| t.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(FcError::NoSuchTarget { wwpn: want, seen });
    }
    Ok(plan)
}

/// Scans exactly LUN `lun` behind remote port `wwpn` on every local port that
/// sees it online (channel and target resolved through the rport's
/// `scsi_target_id`), never the whole bus. Returns what was written.
pub fn scan_target(root: &Path, wwpn: &str, lun: u64) -> Result<Vec<ScanWrite>, FcError> {
    let plan = plan_target_scan(root, wwpn, lun)?;
    for w in &plan {
        let scan = sysfs::path(root, &format!("/sys/class/scsi_host/host{}/scan", w.host));
        tracing::debug!(host = w.host, line = %w.line, "fc targeted scan");
        sysfs::write(&scan, &w.line)?;
    }
    Ok(plan)
}

/// Issues a LIP (loop initialization) on local port `host`, which makes the
/// HBA log in to the fabric again and rediscover remote ports. Disruptive to
/// I/O on that port for a moment: only on explicit request.
pub fn issue_lip(root: &Path, host: u32) -> Result<(), FcError> {
    let dir = sysfs::path(root, &format!("/sys/class/fc_host/host{host}"));
    if !dir.exists() {
        return Err(FcError::NoSuchHost(host));
    }
    tracing::info!(host, "fc issue_lip");
    sysfs::write(&dir.join("issue_lip"), "1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn rport_names() {
        assert_eq!(parse_rport_name("rport-3:0-1"), Some((3, 0)));
        assert_eq!(parse_rport_name("rport-12:1-140"), Some((12, 1)));
        assert_eq!(parse_rport_name("rport-x:0-1"), None);
        assert_eq!(parse_rport_name("host3"), None);
    }
}
