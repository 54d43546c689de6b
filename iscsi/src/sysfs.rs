//! The sysfs view of open-iscsi's kernel side: `/sys/class/iscsi_session`,
//! `iscsi_connection`, `iscsi_host`, and the SCSI disks of a session. Used
//! as the fallback when libopeniscsiusr is missing or fails, for what the
//! library does not expose (SCSI host/target id, state, disks), and by the
//! tests against trees captured in the lab (every reader takes a root).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::IscsiError;
use crate::model::{Portal, Session};

/// A sysfs root: `/` on a host, a fixture directory in tests.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/")
    }
}

/// Where a session's LUNs live on the SCSI bus: what a targeted scan writes
/// to `/sys/class/scsi_host/host<host>/scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiAddress {
    /// SCSI host number (one per iSCSI session with software iSCSI).
    pub host: u32,
    /// Channel (always 0 for iSCSI).
    pub channel: u32,
    /// Target id.
    pub target: u32,
}

/// A SCSI disk that belongs to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDisk {
    /// Kernel name (`sdX`).
    pub name: String,
    /// LUN.
    pub lun: u64,
    /// Partition names (`sdX1`…).
    pub partitions: Vec<String>,
}

/// Extra session facts only sysfs has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// `LOGGED_IN`, `FAILED`, `FREE`.
    pub state: String,
    /// SCSI address of the session's target.
    pub address: ScsiAddress,
}

fn read_attr(path: &Path) -> Result<String, IscsiError> {
    fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| IscsiError::io(path, e))
}

/// iscsi_tcp reports "(null)" for unset strings; treat it as empty.
fn clean(s: String) -> String {
    if s == "(null)" {
        String::new()
    } else {
        s
    }
}

fn parse_num<T: std::str::FromStr>(path: &Path, s: &str) -> Result<T, IscsiError> {
    s.trim().parse().map_err(|_| IscsiError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {s:?}"),
    })
}

/// `H:C:T:L` → its four numbers.
fn parse_hctl(s: &str) -> Option<(u32, u32, u32, u64)> {
    let mut it = s.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let l = it.next()?.parse().ok()?;
    it.next().is_none().then_some((h, c, t, l))
}

/// The software transport name open-iscsi uses for a SCSI host driver.
fn transport_from_proc_name(p: &str) -> String {
    match p {
        "iscsi_tcp" => "tcp".to_string(),
        "ib_iser" | "iser" => "iser".to_string(),
        other => other.to_string(),
    }
}

impl Sysfs {
    /// Readers below `root` (`/` for the live system).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    fn class(&self, class: &str) -> PathBuf {
        self.root.join("sys/class").join(class)
    }

    /// Session ids present in `/sys/class/iscsi_session`, sorted.
    pub fn session_ids(&self) -> Result<Vec<u32>, IscsiError> {
        let dir = self.class("iscsi_session");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            // No iscsi transport loaded: no sessions, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IscsiError::io(&dir, e)),
        };
        let mut ids: Vec<u32> = rd
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("session")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The SCSI host number of session `sid`, from where its sysfs node sits
    /// (`…/host<H>/session<sid>/iscsi_session/session<sid>`).
    pub fn session_host(&self, sid: u32) -> Result<u32, IscsiError> {
        let link = self.class("iscsi_session").join(format!("session{sid}"));
        let target = fs::read_link(&link).map_err(|e| IscsiError::io(&link, e))?;
        target
            .components()
            .rev()
            .find_map(|c| c.as_os_str().to_str()?.strip_prefix("host")?.parse().ok())
            .ok_or_else(|| IscsiError::Parse {
                path: link,
                reason: format!("no host<N> component in {}", target.display()),
            })
    }

    /// One session, read from sysfs.
    pub fn session(&self, sid: u32) -> Result<Session, IscsiError> {
        let s = self.class("iscsi_session").join(format!("session{sid}"));
        let c = self
            .class("iscsi_connection")
            .join(format!("connection{sid}:0"));
        let attr = |dir: &Path, name: &str| read_attr(&dir.join(name)).map(clean);
        let port = |name: &str| -> Result<u16, IscsiError> {
            let p = c.join(name);
            parse_num(&p, &read_attr(&p)?)
        };
        let host = self.session_host(sid)?;
        let proc_name = attr(
            &self.class("scsi_host").join(format!("host{host}")),
            "proc_name",
        )
        .unwrap_or_default();
        let tpgt_path = s.join("tpgt");
        let tpgt: i32 = parse_num(&tpgt_path, &read_attr(&tpgt_path)?)?;
        Ok(Session {
            sid,
            target_iqn: attr(&s, "targetname")?,
            tpgt: (tpgt >= 0).then_some(tpgt),
            portal: Portal::new(attr(&c, "address")?, port("port")?),
            persistent_portal: Portal::new(
                attr(&c, "persistent_address")?,
                port("persistent_port")?,
            ),
            iface_name: attr(&s, "ifacename")?,
            transport: transport_from_proc_name(&proc_name),
            initiator_iqn: attr(&s, "initiatorname")?,
        })
    }

    /// Every session, sorted by id. A session that vanishes while being
    /// read (logout racing us) is skipped.
    pub fn sessions(&self) -> Result<Vec<Session>, IscsiError> {
        let mut out = Vec::new();
        for sid in self.session_ids()? {
            match self.session(sid) {
                Ok(s) => out.push(s),
                Err(IscsiError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::debug!(sid, "session vanished while reading sysfs");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Session state and SCSI address (what the library does not expose).
    pub fn session_state(&self, sid: u32) -> Result<SessionState, IscsiError> {
        let s = self.class("iscsi_session").join(format!("session{sid}"));
        let tid_path = s.join("target_id");
        Ok(SessionState {
            state: read_attr(&s.join("state"))?,
            address: ScsiAddress {
                host: self.session_host(sid)?,
                channel: 0,
                target: parse_num(&tid_path, &read_attr(&tid_path)?)?,
            },
        })
    }

    /// The SCSI disks of session `sid` (from `/sys/block/*`'s device paths,
    /// which run through `session<sid>/target…/H:C:T:L/block/sdX`).
    pub fn session_disks(&self, sid: u32) -> Result<Vec<SessionDisk>, IscsiError> {
        let dir = self.root.join("sys/block");
        let rd = fs::read_dir(&dir).map_err(|e| IscsiError::io(&dir, e))?;
        let want = format!("session{sid}");
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(link) = fs::read_link(e.path()) else {
                continue;
            };
            let comps: Vec<String> = link
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !comps.contains(&want) {
                continue;
            }
            let Some(lun) = comps.iter().rev().find_map(|c| parse_hctl(c)).map(|h| h.3) else {
                continue;
            };
            let mut partitions: Vec<String> = fs::read_dir(e.path())
                .map(|d| {
                    d.flatten()
                        .filter(|p| p.path().join("partition").exists())
                        .map(|p| p.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            partitions.sort();
            out.push(SessionDisk {
                name,
                lun,
                partitions,
            });
        }
        out.sort_by_key(|d| d.lun);
        Ok(out)
    }

    /// The initiator name a SCSI host reports (`iscsi_host/hostN/initiatorname`);
    /// empty for iscsi_tcp, which leaves it "(null)".
    pub fn host_initiator_name(&self, host: u32) -> Result<String, IscsiError> {
        read_attr(
            &self
                .class("iscsi_host")
                .join(format!("host{host}"))
                .join("initiatorname"),
        )
        .map(clean)
    }

    /// Targeted scan of one LUN: writes `"C T L"` to the session's SCSI host
    /// `scan` file, so only that LUN is probed (never `- - -`).
    pub fn scan_lun(&self, address: ScsiAddress, lun: u64) -> Result<(), IscsiError> {
        let p = self
            .class("scsi_host")
            .join(format!("host{}", address.host))
            .join("scan");
        let line = format!("{} {} {lun}", address.channel, address.target);
        tracing::debug!(path = %p.display(), %line, "targeted scan");
        fs::write(&p, &line).map_err(|e| IscsiError::io(&p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hctl() {
        assert_eq!(parse_hctl("7:0:0:12"), Some((7, 0, 0, 12)));
        assert_eq!(parse_hctl("target7:0:0"), None);
        assert_eq!(parse_hctl("7:0:0"), None);
        assert_eq!(parse_hctl("7:0:0:1:2"), None);
    }

    #[test]
    fn transports() {
        assert_eq!(transport_from_proc_name("iscsi_tcp"), "tcp");
        assert_eq!(transport_from_proc_name("bnx2i"), "bnx2i");
    }
}
