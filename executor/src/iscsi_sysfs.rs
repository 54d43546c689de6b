//! The iSCSI session facts the executor needs (which SCSI host a session
//! lives on, its target and portal), read from the iSCSI transport class in
//! sysfs. Login, logout and discovery belong to the `iscsi` crate; this is the
//! read-only view that must work even where libopeniscsiusr is absent.

use serde::Serialize;

use crate::sysfs::Root;

/// One `/sys/class/iscsi_session/sessionN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Session {
    /// N in sessionN (what `iscsiadm -m session` shows as `[N]`).
    pub id: u32,
    /// SCSI host number the session's LUNs appear under.
    pub host: Option<u32>,
    /// Target IQN.
    pub target_name: String,
    /// Initiator name the session logged in with.
    pub initiator_name: String,
    /// Target portal group tag.
    pub tpgt: String,
    /// LOGGED_IN, FAILED, FREE.
    pub state: String,
    /// Portal `address:port` of the session's connection (persistent address).
    pub portal: String,
}

/// All sessions, sorted by id; none when the iSCSI transport is not loaded.
pub fn sessions(root: &Root) -> Vec<Session> {
    let mut out: Vec<Session> = root
        .list("/sys/class/iscsi_session")
        .iter()
        .filter_map(|n| n.strip_prefix("session")?.parse().ok())
        .filter_map(|id| session(root, id))
        .collect();
    out.sort_by_key(|s| s.id);
    out
}

/// One session by id, None when it does not exist.
pub fn session(root: &Root, id: u32) -> Option<Session> {
    let d = format!("/sys/class/iscsi_session/session{id}");
    if !root.exists(&d) {
        return None;
    }
    // …/devices/platform/hostH/sessionN: the host is the parent directory.
    let host = root.real(format!("{d}/device")).and_then(|p| {
        p.rsplit('/')
            .nth(1)
            .and_then(|h| h.strip_prefix("host")?.parse().ok())
    });
    let conn = format!("/sys/class/iscsi_connection/connection{id}:0");
    let addr = root
        .attr_nonempty(format!("{conn}/persistent_address"))
        .or_else(|| root.attr_nonempty(format!("{conn}/address")))
        .unwrap_or_default();
    let port = root
        .attr_nonempty(format!("{conn}/persistent_port"))
        .or_else(|| root.attr_nonempty(format!("{conn}/port")))
        .unwrap_or_default();
    let portal = match (addr.is_empty(), addr.contains(':')) {
        (true, _) => String::new(),
        (false, true) => format!("[{addr}]:{port}"),
        (false, false) => format!("{addr}:{port}"),
    };
    Some(Session {
        id,
        host,
        target_name: root.attr(format!("{d}/targetname")).unwrap_or_default(),
        initiator_name: root.attr(format!("{d}/initiatorname")).unwrap_or_default(),
        tpgt: root.attr(format!("{d}/tpgt")).unwrap_or_default(),
        state: root.attr(format!("{d}/state")).unwrap_or_default(),
        portal,
    })
}

/// The session id in a device's resolved sysfs path (`…/sessionN/target…`).
pub fn session_in_path(real: &str) -> Option<u32> {
    real.split('/')
        .find_map(|c| c.strip_prefix("session")?.parse().ok())
}
