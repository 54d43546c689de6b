//! Discovery, node configuration (manual scan, CHAP), login and logout, all
//! through `iscsiadm` argument vectors with a timeout. Login always sets
//! `node.session.scan=manual` first, so logging in never scans every LUN of a
//! target: only targeted scans bring devices in. Logout refuses while any
//! disk of the session is in use.

use std::time::Duration;

use crate::cmd::{self, Ctx};
use crate::error::IscsiError;
use crate::exitcode;
use crate::inuse::UsageProbe;
use crate::inventory;
use crate::model::{Portal, Session, Source};
use crate::sysfs::Sysfs;

/// CHAP credentials. `Debug` never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    /// Initiator's CHAP user name.
    pub username: String,
    /// Initiator's CHAP secret.
    pub password: String,
    /// Target's user name, for mutual CHAP.
    pub username_in: Option<String>,
    /// Target's secret, for mutual CHAP.
    pub password_in: Option<String>,
}

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("password", &"***")
            .field("username_in", &self.username_in)
            .field("password_in", &self.password_in.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Chap {
    /// One-way CHAP.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Chap {
            username: username.into(),
            password: password.into(),
            username_in: None,
            password_in: None,
        }
    }

    /// `(setting suffix, value, secret?)` for the node or discovery database.
    fn settings(&self) -> Vec<(&'static str, &str, bool)> {
        let mut v = vec![
            ("authmethod", "CHAP", false),
            ("username", self.username.as_str(), false),
            ("password", self.password.as_str(), true),
        ];
        if let (Some(u), Some(p)) = (&self.username_in, &self.password_in) {
            v.push(("username_in", u.as_str(), false));
            v.push(("password_in", p.as_str(), true));
        }
        v
    }
}

/// A target a SendTargets discovery returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// Target IQN.
    pub target_iqn: String,
    /// Portal it is reachable at.
    pub portal: Portal,
    /// Target portal group tag.
    pub tpgt: i32,
}

/// Per-portal outcome of [`login`].
#[derive(Debug, Default)]
pub struct LoginReport {
    /// Portals a new session was created on.
    pub logged_in: Vec<Portal>,
    /// Portals that already had a session.
    pub already: Vec<Portal>,
    /// Portals that failed (when at least one other succeeded).
    pub failed: Vec<(Portal, IscsiError)>,
}

/// Outcome of [`logout_if_unused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// These sessions were logged out.
    LoggedOut(Vec<u32>),
    /// There was no session to that target at that portal.
    NotLoggedIn,
}

/// SendTargets discovery at `portal`, with discovery CHAP when given. The
/// node records it creates are what [`login`] uses.
pub fn discover(
    portal: &Portal,
    chap: Option<&Chap>,
    timeout: Duration,
) -> Result<Vec<DiscoveredTarget>, IscsiError> {
    let p = portal.to_string();
    let ctx = |op: &str| Ctx::new(op, None, Some(portal));
    let out = match chap {
        None => cmd::iscsiadm(
            &ctx("discovery (sendtargets)"),
            &["-m", "discovery", "-t", "sendtargets", "-p", &p],
            &[],
            timeout,
        )?,
        Some(chap) => {
            let base = ["-m", "discoverydb", "-t", "sendtargets", "-p", p.as_str()];
            let mut args = base.to_vec();
            args.extend(["-o", "new"]);
            match cmd::iscsiadm(&ctx("discoverydb new"), &args, &[], timeout) {
                Ok(_) => {}
                // An existing record is fine: we update it below.
                Err(e) if e.iscsiadm_code() == Some(exitcode::SESS_EXISTS) => {}
                Err(e) => return Err(e),
            }
            for (k, v, secret) in chap.settings() {
                let name = format!("discovery.sendtargets.auth.{k}");
                let mut args = base.to_vec();
                args.extend(["-o", "update", "-n", &name, "-v", v]);
                let secrets: &[&str] = if secret { &[v] } else { &[] };
                cmd::iscsiadm(&ctx(&format!("update {name}")), &args, secrets, timeout)?;
            }
            let mut args = base.to_vec();
            args.push("--discover");
            cmd::iscsiadm(&ctx("discovery (sendtargets, CHAP)"), &args, &[], timeout)?
        }
    };
    Ok(inventory::parse_node_list(&out.stdout)
        .into_iter()
        .map(|n| DiscoveredTarget {
            target_iqn: n.target_iqn,
            portal: n.portal,
            tpgt: n.tpgt,
        })
        .collect())
}

fn update_node(
    target: &str,
    portal: &Portal,
    name: &str,
    value: &str,
    secret: bool,
    timeout: Duration,
) -> Result<(), IscsiError> {
    let p = portal.to_string();
    let secrets: &[&str] = if secret { &[value] } else { &[] };
    cmd::iscsiadm(
        &Ctx::new(format!("update {name}"), Some(target), Some(portal)),
        &[
            "-m", "node", "-T", target, "-p", &p, "-o", "update", "-n", name, "-v", value,
        ],
        secrets,
        timeout,
    )
    .map(|_| ())
}

/// Makes sure a node record for `target` at `portal` exists and is set for a
/// clone-safe login: `node.session.scan=manual`, plus session CHAP if given.
/// Says whether it created the record, so a failed login can take back
/// what it added to the host's node database.
pub fn configure_node(
    target: &str,
    portal: &Portal,
    chap: Option<&Chap>,
    timeout: Duration,
) -> Result<bool, IscsiError> {
    let mut created = false;
    let r = set_up_node(target, portal, chap, timeout, &mut created);
    if r.is_err() && created {
        if let Err(e) = forget_node(target, portal, timeout) {
            tracing::warn!(target_iqn = target, %portal, "cannot delete a half-configured node record: {e}");
        }
    }
    r.map(|()| created)
}

fn set_up_node(
    target: &str,
    portal: &Portal,
    chap: Option<&Chap>,
    timeout: Duration,
    created: &mut bool,
) -> Result<(), IscsiError> {
    // libopeniscsiusr reads the node database in-process: when it says the
    // record is absent, create it without first running an update that can
    // only fail (one iscsiadm process less per fresh login). Without the
    // library, updating first is the only safe probe (`-o new` on an
    // existing record would reset the host's settings for it).
    let known_absent = matches!(
        inventory::nodes(),
        Ok((nodes, Source::Library))
            if !nodes.iter().any(|n| n.target_iqn == target && &n.portal == portal)
    );
    let manual_scan = || {
        update_node(
            target,
            portal,
            "node.session.scan",
            "manual",
            false,
            timeout,
        )
    };
    let exists = !known_absent
        && match manual_scan() {
            Ok(()) => true,
            // Not discovered (or forgotten).
            Err(e) if e.iscsiadm_code() == Some(exitcode::NO_OBJS_FOUND) => false,
            Err(e) => return Err(e),
        };
    if !exists {
        let p = portal.to_string();
        cmd::iscsiadm(
            &Ctx::new("new node record", Some(target), Some(portal)),
            &["-m", "node", "-T", target, "-p", &p, "-o", "new"],
            &[],
            timeout,
        )?;
        *created = true;
        manual_scan()?;
    }
    if let Some(chap) = chap {
        for (k, v, secret) in chap.settings() {
            update_node(
                target,
                portal,
                &format!("node.session.auth.{k}"),
                v,
                secret,
                timeout,
            )?;
        }
    }
    Ok(())
}

/// Logs in to `target` on each of `portals` (several for multipath). Each
/// node is first set to manual scan (and CHAP). Succeeds when at least one
/// portal has a session afterwards; the others' errors are in the report.
/// A node record this call created for a portal whose login failed is
/// deleted again: a failed login leaves the node database as it was.
pub fn login(
    target: &str,
    portals: &[Portal],
    chap: Option<&Chap>,
    timeout: Duration,
) -> Result<LoginReport, IscsiError> {
    let mut report = LoginReport::default();
    for portal in portals {
        let mut created = false;
        let r = configure_node(target, portal, chap, timeout).and_then(|new| {
            created = new;
            let p = portal.to_string();
            cmd::iscsiadm(
                &Ctx::new("login", Some(target), Some(portal)),
                &["-m", "node", "-T", target, "-p", &p, "--login"],
                &[],
                timeout,
            )
        });
        if created
            && r.as_ref()
                .is_err_and(|e| e.iscsiadm_code() != Some(exitcode::SESS_EXISTS))
        {
            if let Err(e) = forget_node(target, portal, timeout) {
                tracing::warn!(target_iqn = target, %portal, "cannot delete the node record of a failed login: {e}");
            }
        }
        match r {
            Ok(_) => {
                tracing::info!(target_iqn = target, %portal, "logged in");
                report.logged_in.push(portal.clone());
            }
            Err(e) if e.iscsiadm_code() == Some(exitcode::SESS_EXISTS) => {
                report.already.push(portal.clone());
            }
            Err(e) => {
                tracing::warn!(target_iqn = target, %portal, "login failed: {e}");
                report.failed.push((portal.clone(), e));
            }
        }
    }
    if report.logged_in.is_empty() && report.already.is_empty() {
        return Err(IscsiError::LoginFailed {
            target: target.to_string(),
            failures: report
                .failed
                .into_iter()
                .map(|(p, e)| (p, e.to_string()))
                .collect(),
        });
    }
    Ok(report)
}

/// Sessions to `target` whose current or persistent portal is `portal`.
pub fn find_sessions(target: &str, portal: &Portal) -> Result<Vec<Session>, IscsiError> {
    let (all, _) = inventory::sessions()?;
    Ok(all
        .into_iter()
        .filter(|s| {
            s.target_iqn == target && (&s.portal == portal || &s.persistent_portal == portal)
        })
        .collect())
}

/// How long a udev worker's probe of a session's disk is waited out before
/// it counts as a use (a scan or a closed writer triggers one).
const UDEV_PROBE_GRACE: Duration = Duration::from_secs(5);

/// The first disk (or partition) of session `sid` that is in use, with its
/// holder. A udev worker's passing probe is looked at again until
/// [`UDEV_PROBE_GRACE`] has passed, so it neither blocks a logout for good
/// nor hides a lasting user.
pub fn busy_device(
    sys: &Sysfs,
    probe: &UsageProbe,
    sid: u32,
) -> Result<Option<(String, String)>, IscsiError> {
    let until = std::time::Instant::now() + UDEV_PROBE_GRACE;
    loop {
        let mut passing = None;
        for d in sys.session_disks(sid)? {
            for name in std::iter::once(&d.name).chain(d.partitions.iter()) {
                match probe.holder(name) {
                    Some(h) if h.is_transient() => {
                        passing.get_or_insert((name.clone(), h.to_string()));
                    }
                    Some(h) => return Ok(Some((name.clone(), h.to_string()))),
                    None => {}
                }
            }
        }
        match passing {
            None => return Ok(None),
            Some(p) if std::time::Instant::now() >= until => return Ok(Some(p)),
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Logs out of `target` at `portal` only when no disk of the session is in
/// use (mounted, held by dm/multipath, swap, open). A session that is
/// already gone is not an error.
pub fn logout_if_unused(
    target: &str,
    portal: &Portal,
    timeout: Duration,
) -> Result<LogoutOutcome, IscsiError> {
    let sessions = find_sessions(target, portal)?;
    if sessions.is_empty() {
        return Ok(LogoutOutcome::NotLoggedIn);
    }
    let sys = Sysfs::default();
    let probe = UsageProbe::default();
    for s in &sessions {
        if let Some((device, holder)) = busy_device(&sys, &probe, s.sid)? {
            return Err(IscsiError::InUse {
                target: target.to_string(),
                portal: portal.clone(),
                sid: s.sid,
                device,
                holder,
            });
        }
    }
    let mut done = Vec::new();
    for s in &sessions {
        let sid = s.sid.to_string();
        match cmd::iscsiadm(
            &Ctx::new(
                format!("logout (session {sid})"),
                Some(target),
                Some(portal),
            ),
            &["-m", "session", "-r", &sid, "--logout"],
            &[],
            timeout,
        ) {
            Ok(_) => done.push(s.sid),
            Err(e)
                if matches!(
                    e.iscsiadm_code(),
                    Some(exitcode::SESS_NOT_FOUND | exitcode::NO_OBJS_FOUND)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(target_iqn = target, %portal, sessions = ?done, "logged out");
    Ok(if done.is_empty() {
        LogoutOutcome::NotLoggedIn
    } else {
        LogoutOutcome::LoggedOut(done)
    })
}

/// `iscsiadm -m session -r SID --rescan`: open-iscsi's own rescan, which
/// re-probes every LUN of the session (what targeted scans avoid; here for
/// comparison and for the explicit wildcard case).
pub fn rescan_session(sid: u32, timeout: Duration) -> Result<(), IscsiError> {
    let s = sid.to_string();
    cmd::iscsiadm(
        &Ctx::new(format!("rescan (session {sid})"), None, None),
        &["-m", "session", "-r", &s, "--rescan"],
        &[],
        timeout,
    )
    .map(|_| ())
}

/// Deletes the node record of `target` at `portal` (detach tidy-up, so no
/// automatic login brings the session back). A missing record is fine.
pub fn forget_node(target: &str, portal: &Portal, timeout: Duration) -> Result<(), IscsiError> {
    let p = portal.to_string();
    match cmd::iscsiadm(
        &Ctx::new("delete node record", Some(target), Some(portal)),
        &["-m", "node", "-T", target, "-p", &p, "-o", "delete"],
        &[],
        timeout,
    ) {
        Err(e) if e.iscsiadm_code() == Some(exitcode::NO_OBJS_FOUND) => Ok(()),
        r => r.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn chap_debug_hides_secrets() {
        let mut c = Chap::new("user", "s3cret-pass");
        c.username_in = Some("tgt".into());
        c.password_in = Some("other-secret".into());
        let d = format!("{c:?}");
        assert!(!d.contains("s3cret") && !d.contains("other-secret"), "{d}");
        assert_eq!(c.settings().len(), 5);
        assert_eq!(Chap::new("u", "p").settings().len(), 3);
    }
}
