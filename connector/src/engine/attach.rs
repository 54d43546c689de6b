//! Attach for presentations: from "LUN L of target T at these portals" (or
//! "behind these FC target ports") to a verified local device, every change
//! to the host journaled before it is made — the iSCSI login where no
//! session exists yet, the targeted scan of exactly that LUN — and undone on
//! teardown only when goldmount made it and no other volume uses it.
//!
//! Session and LUN sharing: two volumes may use one session (two LUNs of one
//! target) or, read-only, one LUN. Who logs out / removes is decided under
//! one host-wide transport lock: a step is undone only when no other
//! volume's record names the same session (or LUN), and "goldmount opened
//! it" is inherited by a later volume that finds it already there.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use executor::rescan::ScanTarget;
use executor::sysfs::Root;
use executor::wait::{Identity, WaitSpec};
use iscsi::model::Portal;

use super::claim::{normalise_wwid, DataId};
use super::error::{EngineError, ErrorKind};
use super::journal::{Journal, UndoLog};
use super::types::{ChapCredentials, DeviceSource, FcPresentation, IscsiPresentation, Multipath};
use crate::state::{Action, StateStore, VolumeRecord};

/// Bound on one `iscsiadm` call (login, logout) per portal.
const ISCSI_TIMEOUT: Duration = Duration::from_secs(30);

/// The host-wide lock under which sessions and scanned LUNs are taken and
/// given back, so a teardown cannot log out of a session another volume is
/// just starting to use.
pub struct TransportLock(#[allow(dead_code)] File);

impl TransportLock {
    /// Takes the lock beside the state store (waits for other processes).
    pub fn take(store: &StateStore) -> Result<Self, EngineError> {
        let p = store.sidecar("transport.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| {
                EngineError::new(
                    ErrorKind::Unavailable,
                    format!("cannot open {}: {e}", p.display()),
                )
            })?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            EngineError::new(
                ErrorKind::Unavailable,
                format!("cannot lock {}: {e}", p.display()),
            )
        })?;
        Ok(Self(f))
    }
}

/// Brings the presented LUN of `src` in and returns its device node (the
/// multipath map when the LUN is multipathed). `src` must be a presentation.
pub fn attach(j: &mut Journal, src: &DeviceSource) -> Result<PathBuf, EngineError> {
    match src {
        DeviceSource::Iscsi {
            presentation,
            timeout,
            multipath,
        } => attach_iscsi(j, presentation, *timeout, *multipath),
        DeviceSource::Fc {
            presentation,
            timeout,
            multipath,
        } => attach_fc(j, presentation, *timeout, *multipath),
        _ => Err(EngineError::internal(
            "attach called for a source that is not a presentation",
        )),
    }
}

fn check_wwn(wwn: &str) -> Result<(), EngineError> {
    let w = wwn.trim();
    let ok = !w.is_empty()
        && w.len() <= 80
        && !w.contains('/')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(format!(
            "invalid WWN {wwn:?}: expected the LUN's identifier as the appliance announced it (naa.…, eui.…, t10.…)"
        )))
    }
}

fn check_lun(lun: u64) -> Result<(), EngineError> {
    // SAM flat addressing reaches 16383; Linux's default max_luns is far below.
    if lun > 16383 {
        return Err(EngineError::invalid(format!(
            "invalid LUN {lun}: expected 0-16383"
        )));
    }
    Ok(())
}

fn parse_iscsi(p: &IscsiPresentation) -> Result<Vec<Portal>, EngineError> {
    let iqn = p.target_iqn.trim();
    let iqn_ok = (iqn.starts_with("iqn.") || iqn.starts_with("eui.") || iqn.starts_with("naa."))
        && iqn.len() <= 223
        && !iqn.chars().any(|c| c.is_whitespace() || c.is_control());
    if !iqn_ok {
        return Err(EngineError::invalid(format!(
            "invalid target IQN {:?}: expected iqn.YYYY-MM.…, eui.… or naa.… (at most 223 characters)",
            p.target_iqn
        )));
    }
    check_wwn(&p.wwn)?;
    check_lun(p.lun)?;
    if p.portals.is_empty() {
        return Err(EngineError::invalid(format!(
            "no portal given for target {iqn}: expected at least one ip:port"
        )));
    }
    let mut out: Vec<Portal> = Vec::new();
    for s in &p.portals {
        let portal: Portal = s.parse().map_err(|_| {
            EngineError::invalid(format!(
                "invalid portal {s:?}: expected host, host:port, ip, ip:port or [ipv6]:port (port 1-65535)"
            ))
        })?;
        if !out.contains(&portal) {
            out.push(portal);
        }
    }
    Ok(out)
}

fn chap_of(c: &ChapCredentials) -> iscsi::adm::Chap {
    let mut chap = iscsi::adm::Chap::new(c.username.clone(), c.password.clone());
    chap.username_in = c.username_in.clone();
    chap.password_in = c.password_in.clone();
    chap
}

/// Other volumes' records (the state store is read under the transport lock).
fn others(j: &Journal) -> Result<Vec<VolumeRecord>, EngineError> {
    let own = j.rec.name.clone();
    Ok(j.store()
        .list()?
        .into_iter()
        .filter(|r| r.name != own)
        .collect())
}

fn names_session(r: &VolumeRecord, target: &str, portal: &str) -> Option<bool> {
    r.steps.iter().find_map(|s| match &s.action {
        Action::IscsiSession {
            target_iqn,
            portal: p,
            opened,
        } if target_iqn == target && p == portal => Some(*opened),
        _ => None,
    })
}

fn names_lun(r: &VolumeRecord, wwid: &str) -> Option<bool> {
    let w = normalise_wwid(wwid);
    let by_step = r.steps.iter().find_map(|s| match &s.action {
        Action::ScanLun { wwid, owned, .. } if normalise_wwid(wwid) == w => Some(*owned),
        _ => None,
    });
    by_step.or_else(|| {
        r.claims
            .iter()
            .any(|c| matches!(&c.id, DataId::Lun { wwid } if *wwid == w))
            .then_some(false)
    })
}

/// The SCSI disks on this host that carry `wwid` (read from sysfs VPD).
pub fn disks_with_wwid(root: &Root, wwid: &str) -> Vec<String> {
    executor::wait::scsi_disks(root)
        .into_iter()
        .filter(|(name, _)| {
            let id = Identity::read(root, name);
            executor::vpd::matches(wwid, &id.designators, id.kernel_wwid.as_deref())
        })
        .map(|(name, _)| name)
        .collect()
}

fn unavailable(msg: String, hint: &str) -> EngineError {
    EngineError::new(ErrorKind::Unavailable, msg).with_hint(hint)
}

fn attach_iscsi(
    j: &mut Journal,
    p: &IscsiPresentation,
    timeout: Duration,
    multipath: Multipath,
) -> Result<PathBuf, EngineError> {
    let portals = parse_iscsi(p)?;
    let iqn = p.target_iqn.trim().to_string();
    let chap = p.chap.as_ref().map(chap_of);
    let root = Root::host();
    let lock = TransportLock::take(j.store())?;
    let others = others(j)?;
    let mut failures: Vec<String> = Vec::new();
    let mut sids: Vec<u32> = Vec::new();
    for portal in &portals {
        let ps = portal.to_string();
        let existing = iscsi::adm::find_sessions(&iqn, portal).map_err(|e| {
            unavailable(
                format!("cannot list iSCSI sessions: {e}"),
                "check that open-iscsi is installed and iscsid runs",
            )
        })?;
        if existing.is_empty() {
            j.begin(Action::IscsiSession {
                target_iqn: iqn.clone(),
                portal: ps.clone(),
                opened: true,
            })
            .map_err(EngineError::from_chain)?;
            match iscsi::adm::login(
                &iqn,
                std::slice::from_ref(portal),
                chap.as_ref(),
                ISCSI_TIMEOUT,
            ) {
                Ok(_) => j.finish(None).map_err(EngineError::from_chain)?,
                Err(e) => {
                    // Nothing to log out of: drop the pending step.
                    failures.push(format!("{ps}: {e}"));
                    j.forget_last().map_err(EngineError::from_chain)?;
                    continue;
                }
            }
        } else {
            // Already there: goldmount opened it only if a volume that still
            // uses it says so; either way this volume now uses it.
            let inherited = others
                .iter()
                .any(|r| names_session(r, &iqn, &ps) == Some(true));
            j.begin(Action::IscsiSession {
                target_iqn: iqn.clone(),
                portal: ps.clone(),
                opened: inherited,
            })
            .map_err(EngineError::from_chain)?;
            j.finish(None).map_err(EngineError::from_chain)?;
        }
        match iscsi::adm::find_sessions(&iqn, portal) {
            Ok(s) => sids.extend(s.iter().map(|s| s.sid)),
            Err(e) => failures.push(format!("{ps}: {e}")),
        }
    }
    if sids.is_empty() {
        return Err(unavailable(
            format!(
                "could not log in to iSCSI target {iqn} at any portal: {}",
                failures.join("; ")
            ),
            "check that the appliance presented the LUN to this host's IQN, the portals are reachable and the CHAP credentials are right",
        ));
    }
    let targets: Vec<ScanTarget> = sids
        .iter()
        .map(|&session| ScanTarget::IscsiSession {
            session,
            lun: p.lun,
        })
        .collect();
    let location = format!(
        "LUN {} of {iqn} (session{} {})",
        p.lun,
        if sids.len() > 1 { "s" } else { "" },
        sids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lun = Lun {
        wwn: &p.wwn,
        serial: p.serial.as_deref(),
        location: &location,
        targets,
    };
    scan_then_wait(j, lock, &root, &others, lun, timeout, multipath)
}

fn attach_fc(
    j: &mut Journal,
    p: &FcPresentation,
    timeout: Duration,
    multipath: Multipath,
) -> Result<PathBuf, EngineError> {
    check_wwn(&p.wwn)?;
    check_lun(p.lun)?;
    if p.target_wwpns.is_empty() {
        return Err(EngineError::invalid(
            "no target WWPN given: expected the appliance's FC target port names",
        ));
    }
    let root = Root::host();
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for w in &p.target_wwpns {
        let t = ScanTarget::FcTarget {
            wwpn: w.clone(),
            lun: p.lun,
        };
        // Only ports this host sees can be scanned.
        match executor::rescan::plan(&root, &t) {
            Ok(plan) if !plan.is_empty() => targets.push(t),
            Ok(_) => failures.push(format!("{w}: not visible from any online FC port")),
            Err(e) => failures.push(format!("{w}: {e}")),
        }
    }
    if targets.is_empty() {
        return Err(unavailable(
            format!(
                "no FC target port of LUN {} is visible from this host: {}",
                p.lun,
                failures.join("; ")
            ),
            "check the zoning and that the appliance presented the LUN to this host's WWPNs",
        ));
    }
    let location = format!("LUN {} behind {}", p.lun, p.target_wwpns.join(", "));
    let lock = TransportLock::take(j.store())?;
    let others = others(j)?;
    let lun = Lun {
        wwn: &p.wwn,
        serial: p.serial.as_deref(),
        location: &location,
        targets,
    };
    scan_then_wait(j, lock, &root, &others, lun, timeout, multipath)
}

/// A presented LUN about to be scanned: what identifies it and where.
struct Lun<'a> {
    wwn: &'a str,
    serial: Option<&'a str>,
    location: &'a str,
    targets: Vec<ScanTarget>,
}

/// Scans under the transport lock, then waits for the LUN without it (a
/// wait must not hold up other volumes' attach and teardown).
fn scan_then_wait(
    j: &mut Journal,
    lock: TransportLock,
    root: &Root,
    others: &[VolumeRecord],
    lun: Lun<'_>,
    timeout: Duration,
    multipath: Multipath,
) -> Result<PathBuf, EngineError> {
    scan_lun(j, root, others, lun.wwn, lun.location, &lun.targets)?;
    drop(lock);
    wait(
        lun.wwn,
        lun.serial,
        lun.targets.into_iter().next(),
        timeout,
        multipath,
        lun.location,
    )
}

/// Journals and runs the targeted scans of one LUN (at least one must work).
fn scan_lun(
    j: &mut Journal,
    root: &Root,
    others: &[VolumeRecord],
    wwn: &str,
    location: &str,
    targets: &[ScanTarget],
) -> Result<(), EngineError> {
    let present = !disks_with_wwid(root, wwn).is_empty();
    let owned = !present || others.iter().any(|r| names_lun(r, wwn) == Some(true));
    j.begin(Action::ScanLun {
        wwid: wwn.trim().to_string(),
        location: location.to_string(),
        owned,
    })
    .map_err(EngineError::from_chain)?;
    let mut failures = Vec::new();
    let mut ok = 0;
    for t in targets {
        match executor::rescan::scan(root, t) {
            Ok(_) => ok += 1,
            Err(e) => failures.push(e.to_string()),
        }
    }
    j.finish(None).map_err(EngineError::from_chain)?;
    if ok == 0 {
        return Err(unavailable(
            format!("scanning {location} failed: {}", failures.join("; ")),
            "check that the LUN is presented to this host",
        ));
    }
    Ok(())
}

fn wait(
    wwn: &str,
    serial: Option<&str>,
    location: Option<ScanTarget>,
    timeout: Duration,
    multipath: Multipath,
    where_: &str,
) -> Result<PathBuf, EngineError> {
    crate::wwid::wait_verified(&WaitSpec {
        wwid: wwn.trim().to_string(),
        serial: serial.map(str::to_string),
        location,
        timeout,
        multipath: multipath.into(),
    })
    .map_err(|e| {
        unavailable(
            format!("the LUN with WWN {wwn} ({where_}) did not appear: {e:#}"),
            "check that the appliance presented this LUN to this host (WWN, LUN number)",
        )
    })
}

/// Undoes an [`Action::IscsiSession`]: logs out when goldmount opened the
/// session, no other volume names it and no disk of it is in use; forgets
/// the node record it made. "Not logged in" is done.
pub fn undo_session(
    store: &StateStore,
    own: &str,
    target: &str,
    portal: &str,
    opened: bool,
    log: &mut UndoLog,
) -> anyhow::Result<()> {
    if !opened {
        return Ok(());
    }
    let _lock = TransportLock::take(store)?;
    let users: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|r| r.name != own && names_session(r, target, portal).is_some())
        .map(|r| r.name)
        .collect();
    if !users.is_empty() {
        log.undone.push(format!(
            "kept the iSCSI session to {target} at {portal}: volume(s) {} use it",
            users.join(", ")
        ));
        return release_session_step(store, own, target, portal);
    }
    let p: Portal = portal
        .parse()
        .map_err(|e| anyhow::anyhow!("recorded portal {portal:?}: {e}"))?;
    let outcome = iscsi::adm::logout_if_unused(target, &p, ISCSI_TIMEOUT);
    let in_use = matches!(outcome, Err(iscsi::IscsiError::InUse { .. }));
    match outcome {
        Ok(iscsi::adm::LogoutOutcome::LoggedOut(sids)) => {
            log.undone.push(format!(
                "logged out of {target} at {portal} (session {})",
                sids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Err(e) = iscsi::adm::forget_node(target, &p, ISCSI_TIMEOUT) {
                tracing::warn!(target, portal, error = %e, "node record left");
            }
        }
        Ok(iscsi::adm::LogoutOutcome::NotLoggedIn) => {}
        Err(iscsi::IscsiError::InUse { device, holder, .. }) => {
            log.undone.push(format!(
                "kept the iSCSI session to {target} at {portal}: {device} is in use ({holder})"
            ));
        }
        Err(e) => return Err(anyhow::anyhow!("logging out of {target} at {portal}: {e}")),
    }
    if in_use {
        // Kept because a device is open: the step stays, a later teardown
        // looks again.
        return Ok(());
    }
    release_session_step(store, own, target, portal)
}

/// Takes `own`'s session step out of its stored record while the transport
/// lock is still held. Without it, two volumes on one session tearing down
/// at once each saw the other's step, each kept the session, and it stayed
/// for good (8 concurrent one-call teardowns in the lab: "session left").
fn release_session_step(
    store: &StateStore,
    own: &str,
    target: &str,
    portal: &str,
) -> anyhow::Result<()> {
    let Some(mut rec) = store.get(own)? else {
        return Ok(());
    };
    let before = rec.steps.len();
    rec.steps.retain(|s| {
        !matches!(&s.action, Action::IscsiSession { target_iqn, portal: p, .. }
            if target_iqn == target && p == portal)
    });
    if rec.steps.len() != before {
        store.put(&rec)?;
    }
    Ok(())
}

/// Undoes an [`Action::ScanLun`]: when goldmount brought the LUN in and no
/// other volume names it, removes its SCSI devices (and multipath map) —
/// only the devices whose VPD says they carry this WWID, flushed first,
/// never forced. A LUN already gone is done.
pub fn undo_lun(
    store: &StateStore,
    own: &str,
    wwid: &str,
    owned: bool,
    log: &mut UndoLog,
) -> anyhow::Result<()> {
    if !owned {
        return Ok(());
    }
    let _lock = TransportLock::take(store)?;
    let users: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|r| r.name != own && names_lun(r, wwid).is_some())
        .map(|r| r.name)
        .collect();
    if !users.is_empty() {
        log.undone.push(format!(
            "kept the LUN {wwid}: volume(s) {} use it",
            users.join(", ")
        ));
        return Ok(());
    }
    let root = Root::host();
    let disks = disks_with_wwid(&root, wwid);
    let Some(first) = disks.first() else {
        return Ok(());
    };
    let opts = executor::remove::RemoveOptions::default();
    match executor::remove::remove(&root, first, &opts) {
        Ok(r) => {
            let mut what = r.deleted.join(", ");
            if let Some(m) = &r.map_removed {
                what = format!("{what} and multipath map {m}");
            }
            log.undone
                .push(format!("removed the SCSI devices of {wwid}: {what}"));
            for s in &r.skipped {
                log.undone.push(format!(
                    "did not flush {} ({}): nothing can reach the LUN through it",
                    s.device, s.reason
                ));
            }
            if let Some(u) = &r.unsynced {
                log.undone.push(format!("WARNING: {u}"));
            }
            for d in &r.delete_unfinished {
                log.undone.push(format!(
                    "WARNING: deleting {d} did not finish in time; the kernel may still remove it"
                ));
            }
            for w in r.warnings {
                tracing::warn!(wwid, "{w}");
            }
            Ok(())
        }
        Err(executor::Error::InUse { holders, .. }) => {
            log.undone.push(format!(
                "kept the SCSI devices of {wwid}: in use ({holders})"
            ));
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "removing the SCSI devices of {wwid} ({}): {e}",
            disks.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pres() -> IscsiPresentation {
        IscsiPresentation {
            target_iqn: "iqn.2026-01.io.goldmount:t1".into(),
            portals: vec!["127.0.0.1:3260".into(), "127.0.0.1".into()],
            lun: 3,
            wwn: "naa.6001405abcdef".into(),
            serial: None,
            chap: None,
        }
    }

    #[test]
    fn portals_are_parsed_and_deduplicated() {
        let p = parse_iscsi(&pres()).unwrap();
        assert_eq!(p, vec![Portal::new("127.0.0.1", 3260)]);
    }

    #[test]
    fn bad_presentations_are_refused_with_what_was_expected() {
        type Edit = Box<dyn Fn(&mut IscsiPresentation)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|p| p.target_iqn = "target1".into()),
                "invalid target IQN",
            ),
            (
                Box::new(|p| p.target_iqn = "iqn.x y".into()),
                "invalid target IQN",
            ),
            (Box::new(|p| p.portals.clear()), "no portal"),
            (
                Box::new(|p| p.portals = vec!["1.2.3.4:99999".into()]),
                "invalid portal",
            ),
            (Box::new(|p| p.wwn = "../../etc".into()), "invalid WWN"),
            (Box::new(|p| p.wwn = String::new()), "invalid WWN"),
            (Box::new(|p| p.lun = 70000), "invalid LUN"),
        ];
        for (f, want) in cases {
            let mut p = pres();
            f(&mut p);
            let e = parse_iscsi(&p).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid);
            assert!(e.message.contains(want), "{} / {want}", e.message);
        }
    }

    #[test]
    fn sharing_is_read_from_other_records() {
        let mut r = VolumeRecord::new("a", vec![], false);
        r.steps.push(crate::state::Step {
            action: Action::IscsiSession {
                target_iqn: "iqn.t".into(),
                portal: "127.0.0.1:3260".into(),
                opened: true,
            },
            done: true,
        });
        r.steps.push(crate::state::Step {
            action: Action::ScanLun {
                wwid: "naa.6001405ABC".into(),
                location: String::new(),
                owned: true,
            },
            done: true,
        });
        assert_eq!(names_session(&r, "iqn.t", "127.0.0.1:3260"), Some(true));
        assert_eq!(names_session(&r, "iqn.t", "127.0.0.2:3260"), None);
        assert_eq!(names_lun(&r, "36001405abc"), Some(true));
        assert_eq!(names_lun(&r, "naa.6001405abd"), None);
        // A volume that only claims the LUN (mounted by --wwid) uses it too.
        let mut c = VolumeRecord::new("b", vec![], true);
        c.claims.push(crate::engine::claim::Claim {
            id: DataId::Lun {
                wwid: "36001405abd".into(),
            },
            offset: 0,
            len: u64::MAX,
            read_only: true,
            via: "/dev/sdx".into(),
        });
        assert_eq!(names_lun(&c, "naa.6001405abd"), Some(false));
    }

    #[test]
    fn recorded_sources_hold_no_secret() {
        let mut p = pres();
        p.chap = Some(ChapCredentials {
            username: "u".into(),
            password: "s3cret".into(),
            username_in: None,
            password_in: None,
        });
        let s = DeviceSource::Iscsi {
            presentation: p,
            timeout: Duration::from_secs(5),
            multipath: Multipath::Auto,
        };
        let json = serde_json::to_string(&s.recorded()).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
