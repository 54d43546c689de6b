//! Targeted SCSI scans: exactly one LUN of one target on one host, resolved
//! from an H:C:T:L, an iSCSI session or an FC remote port. A wildcard scan
//! (`- - -`, every channel/target/LUN of a host) is its own explicit request,
//! because on a host with hundreds of LUNs it is slow and touches LUNs that
//! are none of our business.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::hctl::Hctl;
use crate::iscsi_sysfs;
use crate::sysfs::Root;

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanTarget {
    /// One LUN at a fully known address.
    Hctl(Hctl),
    /// LUN `lun` of the target behind iSCSI session `session`.
    IscsiSession {
        /// Session id (sessionN).
        session: u32,
        /// LUN.
        lun: u64,
    },
    /// LUN `lun` behind FC remote port `wwpn`, on every local port that sees it.
    FcTarget {
        /// Remote WWPN, any spelling.
        wwpn: String,
        /// LUN.
        lun: u64,
    },
    /// `- - -` on one host, or on every SCSI host when None. Only on explicit
    /// request.
    Wildcard {
        /// Restrict to this host.
        host: Option<u32>,
    },
}

/// One line written to a `scan` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanWrite {
    /// SCSI host number.
    pub host: u32,
    /// The line, e.g. "0 0 3" or "- - 3".
    pub line: String,
}

/// Works out what to write without writing it (shown by `--dry-run`,
/// checked by the unit tests against captured trees).
pub fn plan(root: &Root, target: &ScanTarget) -> Result<Vec<ScanWrite>> {
    match target {
        ScanTarget::Hctl(h) => {
            require_host(root, h.host)?;
            Ok(vec![ScanWrite {
                host: h.host,
                line: format!("{} {} {}", h.channel, h.target, h.lun),
            }])
        }
        ScanTarget::IscsiSession { session, lun } => {
            let s = iscsi_sysfs::session(root, *session).ok_or_else(|| {
                Error::NotFound(format!(
                    "no iSCSI session {session} (/sys/class/iscsi_session/session{session}); \
                     `iscsiadm -m session` lists the logged-in ones"
                ))
            })?;
            let host = s.host.ok_or_else(|| {
                Error::NotFound(format!("iSCSI session {session} has no SCSI host in sysfs"))
            })?;
            // The session's targets (targetH:C:T) exist once anything was
            // scanned; before that, "- - L" on this host is still confined to
            // this one session: iscsi_tcp gives every session its own host.
            let dir = root.real(format!("/sys/class/iscsi_session/session{session}/device"));
            let targets: Vec<(u32, u32)> = dir
                .map(|d| root.list(d))
                .unwrap_or_default()
                .iter()
                .filter_map(|n| parse_target_dir(n))
                .filter(|(h, _, _)| *h == host)
                .map(|(_, c, t)| (c, t))
                .collect();
            if targets.is_empty() {
                return Ok(vec![ScanWrite {
                    host,
                    line: format!("- - {lun}"),
                }]);
            }
            Ok(targets
                .into_iter()
                .map(|(c, t)| ScanWrite {
                    host,
                    line: format!("{c} {t} {lun}"),
                })
                .collect())
        }
        ScanTarget::FcTarget { wwpn, lun } => Ok(fc::plan_target_scan(root.base(), wwpn, *lun)?
            .into_iter()
            .map(|w| ScanWrite {
                host: w.host,
                line: w.line,
            })
            .collect()),
        ScanTarget::Wildcard { host } => {
            let hosts: Vec<u32> = match host {
                Some(h) => {
                    require_host(root, *h)?;
                    vec![*h]
                }
                None => root
                    .list("/sys/class/scsi_host")
                    .iter()
                    .filter_map(|n| n.strip_prefix("host")?.parse().ok())
                    .collect(),
            };
            if hosts.is_empty() {
                return Err(Error::NotFound(
                    "no SCSI hosts under /sys/class/scsi_host".into(),
                ));
            }
            Ok(hosts
                .into_iter()
                .map(|host| ScanWrite {
                    host,
                    line: "- - -".into(),
                })
                .collect())
        }
    }
}

/// Scans: writes each planned line to `/sys/class/scsi_host/hostH/scan`.
/// The kernel scans synchronously, so when this returns the LUN's SCSI
/// device exists if the target reported it (its /dev node follows shortly).
pub fn scan(root: &Root, target: &ScanTarget) -> Result<Vec<ScanWrite>> {
    let plan = plan(root, target)?;
    for w in &plan {
        tracing::info!(host = w.host, line = %w.line, "scsi scan");
        root.write(format!("/sys/class/scsi_host/host{}/scan", w.host), &w.line)?;
    }
    Ok(plan)
}

fn require_host(root: &Root, host: u32) -> Result<()> {
    if root.exists(format!("/sys/class/scsi_host/host{host}")) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "no SCSI host host{host} under /sys/class/scsi_host"
        )))
    }
}

/// `targetH:C:T` → (H, C, T).
fn parse_target_dir(name: &str) -> Option<(u32, u32, u32)> {
    let mut it = name.strip_prefix("target")?.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((h, c, t))
}

/// Issues a LIP on one FC host, or on every online one when None; returns
/// the hosts. A LIP disturbs I/O on the port briefly: explicit request only.
pub fn lip(root: &Root, host: Option<u32>) -> Result<Vec<u32>> {
    let hosts: Vec<u32> = match host {
        Some(h) => vec![h],
        None => fc::hosts(root.base())?
            .into_iter()
            .filter(|h| h.online)
            .map(|h| h.host)
            .collect(),
    };
    if hosts.is_empty() {
        return Err(Error::NotFound(
            "no online FC host to issue a LIP on".into(),
        ));
    }
    for h in &hosts {
        fc::issue_lip(root.base(), *h)?;
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn target_dirs() {
        assert_eq!(parse_target_dir("target3:0:0"), Some((3, 0, 0)));
        assert_eq!(parse_target_dir("target3:0"), None);
        assert_eq!(parse_target_dir("power"), None);
    }
}
