//! `remove-device`: takes a SCSI disk (or the multipath map over it) away
//! cleanly: refuse when mounted or held, flush through the map (or the one
//! path of a LUN without a map) when a path is up, remove the map, delete
//! every SCSI path through sysfs, dead or alive, and check they are gone.
//!
//! The storage may already be gone: a path that is offline or
//! transport-offline has nothing to flush (opening it fails with ENXIO), so
//! the single paths of a map are never flushed; when no path is up at all
//! the removal still proceeds — nothing can reach the LUN any more — and
//! says that unsynced data was lost.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd;
use crate::error::{Error, Result};
use crate::inventory::holders;
use crate::mounts;
use crate::sysfs::Root;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RemoveOptions {
    /// Proceed although mounted or held (the map flush is still not forced).
    pub force: bool,
    /// Attempts at flushing the multipath map.
    pub map_tries: u32,
    /// Pause between attempts.
    pub retry_delay: Duration,
    /// Timeout of each external command.
    pub cmd_timeout: Duration,
    /// How long a SCSI path's `device/delete` may take before it is
    /// reported as stuck instead of waited for.
    pub delete_timeout: Duration,
}

impl Default for RemoveOptions {
    fn default() -> Self {
        Self {
            force: false,
            map_tries: 5,
            retry_delay: Duration::from_secs(1),
            cmd_timeout: Duration::from_secs(30),
            delete_timeout: Duration::from_secs(20),
        }
    }
}

/// What `plan` found: the device stack to take down.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stack {
    /// The device asked for (kernel name).
    pub device: String,
    /// The multipath map over it (kernel name, dm name).
    pub map: Option<(String, String)>,
    /// SCSI paths to delete.
    pub paths: Vec<String>,
    /// Why removal would be refused: mountpoints and holders. Empty = free.
    pub in_use: Vec<String>,
}

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// The stack that was taken down.
    pub stack: Stack,
    /// Each path's state when the removal started.
    pub path_states: Vec<PathState>,
    /// Devices whose buffers were flushed (the map, or the only path).
    pub flushed: Vec<String>,
    /// Devices not flushed and why (dead paths; the map when no path is up).
    pub skipped: Vec<Skipped>,
    /// The dm name of the removed multipath map.
    pub map_removed: Option<String>,
    /// SCSI paths deleted.
    pub deleted: Vec<String>,
    /// SCSI paths whose `device/delete` did not return within
    /// [`RemoveOptions::delete_timeout`] (a stuck device): the kernel
    /// finishes them when their I/O ends; the host is not clean yet.
    pub delete_unfinished: Vec<String>,
    /// The WWID taken out of /etc/multipath/wwids with the map (`multipath
    /// -w`): the LUN leaves this host, so nothing of it stays in the host's
    /// multipath configuration — wait-for-device may have put it there.
    pub wwid_forgotten: Option<String>,
    /// Set when no path was up: what the host had not written to the LUN
    /// could not be written. The one warning a caller must show.
    pub unsynced: Option<String>,
    /// Failures that did not stop the removal (e.g. forced).
    pub warnings: Vec<String>,
}

/// Resolves a user's device argument (`/dev/sdc`, `sdc`, `/dev/mapper/X`,
/// `/dev/dm-3`, a /dev/disk/by-id link) to a kernel name under /sys/block.
pub fn resolve(root: &Root, arg: &str) -> Result<String> {
    let arg = arg.trim();
    let direct = arg.trim_start_matches("/dev/");
    if !direct.contains('/') && root.exists(format!("/sys/block/{direct}")) {
        return Ok(direct.to_string());
    }
    if let Some(name) = arg.strip_prefix("/dev/mapper/") {
        for dm in root
            .list("/sys/block")
            .into_iter()
            .filter(|n| n.starts_with("dm-"))
        {
            if root.attr(format!("/sys/block/{dm}/dm/name")).as_deref() == Some(name) {
                return Ok(dm);
            }
        }
    }
    if arg.starts_with('/') {
        if let Some(real) = root.real(arg) {
            let name = real.rsplit('/').next().unwrap_or_default();
            if root.exists(format!("/sys/block/{name}")) {
                return Ok(name.to_string());
            }
        }
    }
    Err(Error::NotFound(format!(
        "{arg}: not a whole block device under /sys/block (partitions are removed with their disk)"
    )))
}

fn describe_holder(h: &crate::inventory::Holder) -> String {
    match &h.dm_name {
        Some(n) => format!("held by {} ({n})", h.name),
        None => format!("held by {}", h.name),
    }
}

/// True for the dm uuid kpartx gives a partition of a multipath map
/// (`part1-mpath-3600…`).
fn is_kpartx_partition(dm_uuid: &str) -> bool {
    dm_uuid
        .split_once('-')
        .is_some_and(|(p, rest)| p.starts_with("part") && rest.starts_with("mpath-"))
}

/// Appends to `out` why the device at `sys` is in use: its mountpoints and
/// its holders, except the multipath map `map` above it; a kpartx
/// partition map counts only through its own use.
fn usage(
    root: &Root,
    mt: &mounts::MountTable,
    dev_name: &str,
    sys: &str,
    map: Option<&str>,
    out: &mut Vec<String>,
) {
    if let Some(d) = root.attr(format!("{sys}/dev")) {
        for m in mt.get(&d).into_iter().flatten() {
            out.push(format!("{dev_name} mounted at {m}"));
        }
    }
    for h in holders(root, &format!("{sys}/holders")) {
        if map == Some(h.name.as_str()) {
            continue;
        }
        if h.dm_uuid.as_deref().is_some_and(is_kpartx_partition) {
            let name = h.dm_name.clone().unwrap_or_else(|| h.name.clone());
            usage(
                root,
                mt,
                &name,
                &format!("/sys/block/{}", h.name),
                None,
                out,
            );
            continue;
        }
        out.push(format!("{dev_name} {}", describe_holder(&h)));
    }
}

/// Works out the stack of `arg` and whether it is in use, without touching
/// anything.
pub fn plan(root: &Root, arg: &str) -> Result<Stack> {
    let name = resolve(root, arg)?;
    let is_scsi = |n: &str| {
        root.link_name(format!("/sys/block/{n}/device"))
            .is_some_and(|l| l.parse::<crate::hctl::Hctl>().is_ok())
    };
    let uuid = root
        .attr(format!("/sys/block/{name}/dm/uuid"))
        .unwrap_or_default();
    let (top, map) = if uuid.starts_with("mpath-") {
        let dm_name = root
            .attr(format!("/sys/block/{name}/dm/name"))
            .unwrap_or_default();
        (name.clone(), Some((name.clone(), dm_name)))
    } else if is_scsi(&name) {
        let m = holders(root, &format!("/sys/block/{name}/holders"))
            .into_iter()
            .find(|h| h.is_multipath())
            .map(|h| (h.name.clone(), h.dm_name.clone().unwrap_or_default()));
        match m {
            Some(m) => (m.0.clone(), Some(m)),
            None => (name.clone(), None),
        }
    } else {
        return Err(Error::Invalid(format!(
            "{name} is neither a SCSI disk nor a multipath map; remove-device only takes those"
        )));
    };
    let paths: Vec<String> = match &map {
        Some((dm, _)) => root
            .list(format!("/sys/block/{dm}/slaves"))
            .into_iter()
            .filter(|s| is_scsi(s))
            .collect(),
        None => vec![name.clone()],
    };
    // In use: the top device or its partitions mounted, or anything stacked
    // on them (LVM, md, a used kpartx partition) other than the map itself.
    // kpartx's own partition maps of the map are not a use: `multipath -f`
    // removes them with the map, unless they are mounted or held themselves.
    let mt = mounts::read(root);
    let mut in_use = Vec::new();
    let map_kname = map.as_ref().map(|(dm, _)| dm.clone());
    let mut check = |dev_name: &str, sys: &str| {
        usage(root, &mt, dev_name, sys, map_kname.as_deref(), &mut in_use);
    };
    let mut devs = vec![top.clone()];
    devs.extend(paths.iter().filter(|p| **p != top).cloned());
    for d in &devs {
        let sys = format!("/sys/block/{d}");
        check(d, &sys);
        for p in root.list(&sys) {
            if root.exists(format!("{sys}/{p}/partition")) {
                check(&p, &format!("{sys}/{p}"));
            }
        }
    }
    Ok(Stack {
        device: name,
        map,
        paths,
        in_use,
    })
}

/// The state of one SCSI path as sysfs shows it: what decides whether
/// anything can still be written through it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PathState {
    /// Kernel name (sdX).
    pub device: String,
    /// `/sys/block/sdX/device/state`: running, offline, transport-offline,
    /// blocked, created, cancel, deleted; `unknown` when unreadable.
    pub scsi_state: String,
    /// The iSCSI session's state (LOGGED_IN, FAILED, FREE) for an iSCSI path.
    pub session_state: Option<String>,
}

impl PathState {
    /// True when I/O can reach the LUN through this path now.
    pub fn is_up(&self) -> bool {
        self.scsi_state == "running"
            && self
                .session_state
                .as_deref()
                .is_none_or(|s| s == "LOGGED_IN")
    }

    /// Why nothing is flushed through this path; None when it is up.
    pub fn down_reason(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        let session = self
            .session_state
            .as_deref()
            .map(|s| format!(", iSCSI session {s}"))
            .unwrap_or_default();
        let why = match self.scsi_state.as_str() {
            "offline" | "transport-offline" => "nothing can be written through it",
            "blocked" => "the transport is recovering; I/O would wait for it",
            "running" => "its session is not logged in",
            _ => "it is not running",
        };
        Some(format!("{}{session}: {why}", self.scsi_state))
    }
}

/// Reads the state of SCSI path `dev` (and of its iSCSI session, if any).
pub fn path_state(root: &Root, dev: &str) -> PathState {
    let scsi_state = root
        .attr_nonempty(format!("/sys/block/{dev}/device/state"))
        .unwrap_or_else(|| "unknown".into());
    let session_state = root
        .real(format!("/sys/block/{dev}"))
        .and_then(|real| crate::iscsi_sysfs::session_in_path(&real))
        .and_then(|id| crate::iscsi_sysfs::session(root, id))
        .map(|s| s.state)
        .filter(|s| !s.is_empty());
    PathState {
        device: dev.to_string(),
        scsi_state,
        session_state,
    }
}

/// A device that was not flushed, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    /// Kernel name (sdX or dm-N).
    pub device: String,
    /// Why, e.g. "transport-offline: nothing can be written through it".
    pub reason: String,
}

/// What teardown will do, decided from the stack and the paths' states
/// alone (no tool runs), so the decision can be tested on any tree.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TeardownPlan {
    /// The one device whose buffers are flushed: the multipath map when a
    /// path under it is up, the path itself for a LUN without a map (never
    /// the single paths of a map: they may be dead, and the map is what
    /// holds the data).
    pub flush: Option<String>,
    /// Devices not flushed and why: the dead paths, and the map or the only
    /// path when no path is up.
    pub skipped: Vec<Skipped>,
    /// True when no path is up: nothing not yet written can reach the LUN.
    pub no_path_up: bool,
    /// SCSI paths to delete: all of them, up or not.
    pub delete: Vec<String>,
}

/// Decides what to flush, skip and delete (see [`TeardownPlan`]).
pub fn plan_teardown(stack: &Stack, states: &[PathState]) -> TeardownPlan {
    let state_of = |p: &str| states.iter().find(|s| s.device == p);
    let mut skipped = Vec::new();
    let mut any_up = false;
    for p in &stack.paths {
        match state_of(p).and_then(PathState::down_reason) {
            Some(reason) => skipped.push(Skipped {
                device: p.clone(),
                reason,
            }),
            None if state_of(p).is_some() => any_up = true,
            None => skipped.push(Skipped {
                device: p.clone(),
                reason: "state not read".into(),
            }),
        }
    }
    let top = match &stack.map {
        Some((dm, _)) => Some(dm.clone()),
        None => stack.paths.first().cloned(),
    };
    let flush = if any_up { top.clone() } else { None };
    if let (Some((dm, _)), false) = (&stack.map, any_up) {
        skipped.push(Skipped {
            device: dm.clone(),
            reason: "no path is up".into(),
        });
    }
    TeardownPlan {
        flush,
        skipped,
        no_path_up: !any_up,
        delete: stack.paths.clone(),
    }
}

/// The warning for data that cannot reach the LUN any more.
fn unsynced_warning(stack: &Stack, plan: &TeardownPlan) -> String {
    let what = match &stack.map {
        Some((dm, name)) => format!("{name} ({dm})"),
        None => stack.device.clone(),
    };
    let states: Vec<String> = plan
        .skipped
        .iter()
        .filter(|s| stack.paths.contains(&s.device))
        .map(|s| format!("{} {}", s.device, s.reason))
        .collect();
    format!(
        "unsynced data on {what} could not be written: no path is up ({}); whatever the host had not yet written to the LUN is lost",
        states.join("; ")
    )
}

/// Removes the device stack of `arg` (see the module doc).
pub fn remove(root: &Root, arg: &str, opts: &RemoveOptions) -> Result<Removal> {
    let stack = plan(root, arg)?;
    if !stack.in_use.is_empty() && !opts.force {
        return Err(Error::InUse {
            device: arg.to_string(),
            holders: stack.in_use.join(", "),
        });
    }
    let states: Vec<PathState> = stack.paths.iter().map(|p| path_state(root, p)).collect();
    let tplan = plan_teardown(&stack, &states);
    tracing::info!(plan = ?tplan, "teardown plan");
    let mut r = Removal {
        stack: stack.clone(),
        path_states: states,
        flushed: Vec::new(),
        skipped: tplan.skipped.clone(),
        map_removed: None,
        deleted: Vec::new(),
        delete_unfinished: Vec::new(),
        wwid_forgotten: None,
        unsynced: None,
        warnings: Vec::new(),
    };
    if tplan.no_path_up {
        r.unsynced = Some(unsynced_warning(&stack, &tplan));
        if let Some((_, dm_name)) = &stack.map {
            // With queue_if_no_path the map would hold I/O (and `multipath
            // -f`) for ever; the data cannot reach the LUN, so fail it.
            if let Err(e) = cmd::run(
                "dmsetup",
                &["message", dm_name, "0", "fail_if_no_path"],
                opts.cmd_timeout,
            ) {
                r.warnings
                    .push(format!("could not turn off queueing on {dm_name}: {e}"));
            }
        }
    }
    if let Some(d) = &tplan.flush {
        let node = root.path(format!("/dev/{d}"));
        let node = node.to_string_lossy();
        match cmd::run("blockdev", &["--flushbufs", &node], opts.cmd_timeout) {
            Ok(_) => r.flushed.push(d.clone()),
            Err(e) if opts.force => r.warnings.push(format!("flushing {d}: {e}")),
            Err(e) => {
                return Err(Error::FlushFailed {
                    device: d.clone(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if let Some((dm, dm_name)) = &stack.map {
        let wwid = root
            .attr(format!("/sys/block/{dm}/dm/uuid"))
            .and_then(|u| u.strip_prefix("mpath-").map(str::to_string));
        flush_map(dm_name, opts)?;
        r.map_removed = Some(dm_name.clone());
        if let Some(w) = wwid.filter(|w| crate::wait::listed_wwids(root).contains(w)) {
            // Before the paths go: multipath resolves the WWID itself.
            match cmd::run("multipath", &["-w", &w], opts.cmd_timeout) {
                Ok(_) => r.wwid_forgotten = Some(w),
                Err(e) => r
                    .warnings
                    .push(format!("WWID {w} left in /etc/multipath/wwids: {e}")),
            }
        }
    }
    for p in &tplan.delete {
        tracing::info!(device = %p, "deleting SCSI device");
        match write_with_deadline(
            root,
            format!("/sys/block/{p}/device/delete"),
            opts.delete_timeout,
        ) {
            Some(Ok(())) => r.deleted.push(p.clone()),
            Some(Err(_)) if !root.exists(format!("/sys/block/{p}")) => {
                r.warnings.push(format!("{p} was already gone"));
                r.deleted.push(p.clone());
            }
            Some(Err(e)) => return Err(e),
            None => {
                r.warnings.push(format!(
                    "deleting {p} did not return within {:?} (its device is stuck, state {}); the kernel finishes it once the I/O it waits for ends",
                    opts.delete_timeout,
                    path_state(root, p).scsi_state
                ));
                r.delete_unfinished.push(p.clone());
            }
        }
    }
    // Deletion is synchronous in the kernel, the /dev node follows through
    // devtmpfs: check both are gone.
    let t0 = Instant::now();
    for p in &r.deleted {
        while (root.exists(format!("/sys/block/{p}")) || root.exists(format!("/dev/{p}")))
            && t0.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if root.exists(format!("/sys/block/{p}")) {
            return Err(Error::Invalid(format!(
                "{p} still present 10 s after deleting it"
            )));
        }
    }
    Ok(r)
}

/// Writes "1" to a sysfs attribute from a thread of its own and waits at
/// most `deadline`: `device/delete` of a blocked SCSI device waits for its
/// I/O (a cache flush) in the kernel, for as long as the transport takes
/// to recover or give up. None when the write did not return in time (the
/// thread is left to finish it).
fn write_with_deadline(root: &Root, abs: String, deadline: Duration) -> Option<Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.clone();
    let spawned = std::thread::Builder::new()
        .name("scsi-delete".into())
        .spawn(move || {
            let _ = tx.send(root.write(&abs, "1"));
        });
    if let Err(e) = spawned {
        return Some(Err(Error::Invalid(format!(
            "cannot start a thread to delete a device: {e}"
        ))));
    }
    rx.recv_timeout(deadline).ok()
}

/// `multipath -f MAP` with bounded retries (dmsetup remove when the
/// multipath tool is missing); a map still open is reported, never forced.
fn flush_map(dm_name: &str, opts: &RemoveOptions) -> Result<()> {
    let mut last = String::new();
    for attempt in 1..=opts.map_tries.max(1) {
        let res = match cmd::run("multipath", &["-f", dm_name], opts.cmd_timeout) {
            Err(Error::Command { status, .. }) if status == "not started" => {
                cmd::run("dmsetup", &["remove", dm_name], opts.cmd_timeout)
            }
            other => other,
        };
        match res {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::warn!(map = dm_name, attempt, error = %e, "multipath flush failed");
                last = e.to_string();
            }
        }
        if attempt < opts.map_tries {
            std::thread::sleep(opts.retry_delay);
        }
    }
    Err(Error::MapBusy {
        map: dm_name.to_string(),
        tries: opts.map_tries.max(1),
        detail: last,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A fabricated sysfs tree: SCSI paths (iSCSI or not) with their
    /// states, and multipath maps over them, laid out as the kernel does
    /// (/sys/block/X links into /sys/devices).
    struct Tree {
        _dir: tempfile::TempDir,
        base: std::path::PathBuf,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let base = dir.path().to_path_buf();
            fs::create_dir_all(base.join("sys/block")).unwrap();
            fs::create_dir_all(base.join("proc/self")).unwrap();
            fs::write(base.join("proc/self/mountinfo"), "").unwrap();
            Tree { _dir: dir, base }
        }

        fn root(&self) -> Root {
            Root::at(&self.base)
        }

        fn put(&self, rel: &str, text: &str) {
            let p = self.base.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }

        /// SCSI disk `name` at `hctl` in `state`; over iSCSI session `sid`
        /// (with that session state) when given.
        fn path(&self, name: &str, hctl: &str, state: &str, session: Option<(u32, &str)>) {
            let host = hctl.split(':').next().unwrap();
            let (t, _) = hctl.rsplit_once(':').unwrap();
            let parent = match session {
                Some((sid, st)) => {
                    self.put(&format!("sys/class/iscsi_session/session{sid}/state"), st);
                    format!("sys/devices/platform/host{host}/session{sid}")
                }
                None => format!("sys/devices/pci0000:00/host{host}"),
            };
            let sdev = format!("{parent}/target{t}/{hctl}");
            self.put(&format!("{sdev}/state"), state);
            self.put(&format!("{sdev}/delete"), "");
            let blk = self.base.join(format!("{sdev}/block/{name}"));
            fs::create_dir_all(blk.join("holders")).unwrap();
            fs::write(blk.join("dev"), "8:16").unwrap();
            symlink(format!("../../../{hctl}"), blk.join("device")).unwrap();
            symlink(&blk, self.base.join("sys/block").join(name)).unwrap();
        }

        fn map(&self, dm: &str, wwid: &str, paths: &[&str]) {
            self.put(&format!("sys/block/{dm}/dm/uuid"), &format!("mpath-{wwid}"));
            self.put(&format!("sys/block/{dm}/dm/name"), wwid);
            self.put(&format!("sys/block/{dm}/dev"), "254:0");
            for p in paths {
                fs::create_dir_all(self.base.join(format!("sys/block/{dm}/slaves/{p}"))).unwrap();
                fs::create_dir_all(self.base.join(format!("sys/block/{p}/holders/{dm}"))).unwrap();
            }
        }

        fn teardown(&self, arg: &str) -> (Stack, Vec<PathState>, TeardownPlan) {
            let root = self.root();
            let stack = plan(&root, arg).unwrap();
            let states: Vec<PathState> = stack.paths.iter().map(|p| path_state(&root, p)).collect();
            let tp = plan_teardown(&stack, &states);
            (stack, states, tp)
        }
    }

    const WWID: &str = "36001405aaaabbbbccccdddd00000001";

    fn skipped_devices(tp: &TeardownPlan) -> Vec<&str> {
        tp.skipped.iter().map(|s| s.device.as_str()).collect()
    }

    #[test]
    fn running_map_is_flushed_through_the_map_only() {
        let t = Tree::new();
        t.path("sdb", "2:0:0:1", "running", Some((1, "LOGGED_IN")));
        t.path("sdc", "3:0:0:1", "running", Some((2, "LOGGED_IN")));
        t.map("dm-0", WWID, &["sdb", "sdc"]);
        let (stack, states, tp) = t.teardown(&format!("/dev/mapper/{WWID}"));
        assert_eq!(stack.map, Some(("dm-0".into(), WWID.into())));
        assert!(stack.in_use.is_empty(), "{:?}", stack.in_use);
        assert!(states.iter().all(PathState::is_up), "{states:?}");
        assert_eq!(states[0].session_state.as_deref(), Some("LOGGED_IN"));
        assert_eq!(tp.flush.as_deref(), Some("dm-0"));
        assert!(tp.skipped.is_empty(), "{:?}", tp.skipped);
        assert!(!tp.no_path_up);
        assert_eq!(tp.delete, ["sdb", "sdc"]);
    }

    #[test]
    fn one_path_offline_flushes_the_map_and_skips_the_dead_path() {
        let t = Tree::new();
        t.path("sdb", "2:0:0:1", "running", Some((1, "LOGGED_IN")));
        t.path("sdc", "3:0:0:1", "transport-offline", Some((2, "FAILED")));
        t.map("dm-0", WWID, &["sdb", "sdc"]);
        // Asked for by one of its paths: the stack is the same.
        let (stack, _, tp) = t.teardown("/dev/sdc");
        assert_eq!(stack.map, Some(("dm-0".into(), WWID.into())));
        assert_eq!(tp.flush.as_deref(), Some("dm-0"));
        assert_eq!(skipped_devices(&tp), ["sdc"]);
        assert!(
            tp.skipped[0]
                .reason
                .starts_with("transport-offline, iSCSI session FAILED"),
            "{:?}",
            tp.skipped
        );
        assert!(!tp.no_path_up);
        assert_eq!(tp.delete, ["sdb", "sdc"]);
    }

    #[test]
    fn all_paths_offline_flushes_nothing_deletes_all_and_warns() {
        let t = Tree::new();
        t.path("sdb", "2:0:0:1", "transport-offline", Some((1, "FAILED")));
        t.path("sdc", "3:0:0:1", "offline", None);
        t.map("dm-0", WWID, &["sdb", "sdc"]);
        let (stack, _, tp) = t.teardown("/dev/dm-0");
        assert_eq!(tp.flush, None);
        assert_eq!(skipped_devices(&tp), ["sdb", "sdc", "dm-0"]);
        assert_eq!(tp.skipped[2].reason, "no path is up");
        assert!(tp.no_path_up);
        assert_eq!(tp.delete, ["sdb", "sdc"]);
        let w = unsynced_warning(&stack, &tp);
        assert!(
            w.starts_with(&format!(
                "unsynced data on {WWID} (dm-0) could not be written: no path is up"
            )),
            "{w}"
        );
        assert!(w.contains("sdc offline"), "{w}");
    }

    #[test]
    fn single_path_lun_with_its_only_path_offline() {
        let t = Tree::new();
        t.path("sdb", "2:0:0:1", "transport-offline", Some((1, "FAILED")));
        let (stack, states, tp) = t.teardown("sdb");
        assert_eq!(stack.map, None);
        assert_eq!(states[0].scsi_state, "transport-offline");
        assert_eq!(tp.flush, None);
        assert_eq!(skipped_devices(&tp), ["sdb"]);
        assert!(tp.no_path_up);
        assert_eq!(tp.delete, ["sdb"]);
        let w = unsynced_warning(&stack, &tp);
        assert!(
            w.starts_with("unsynced data on sdb could not be written: no path is up"),
            "{w}"
        );
    }

    #[test]
    fn single_running_path_is_flushed_itself() {
        let t = Tree::new();
        t.path("sdb", "0:0:0:0", "running", None);
        let (_, _, tp) = t.teardown("/dev/sdb");
        assert_eq!(tp.flush.as_deref(), Some("sdb"));
        assert!(tp.skipped.is_empty());
        assert_eq!(tp.delete, ["sdb"]);
    }

    #[test]
    fn blocked_path_or_failed_session_is_not_up() {
        let t = Tree::new();
        t.path("sdb", "2:0:0:1", "blocked", Some((1, "FAILED")));
        t.path("sdc", "3:0:0:1", "running", Some((2, "FREE")));
        t.map("dm-0", WWID, &["sdb", "sdc"]);
        let (_, _, tp) = t.teardown("/dev/dm-0");
        assert_eq!(tp.flush, None);
        assert!(tp.no_path_up);
        assert!(
            tp.skipped[0].reason.contains("recovering"),
            "{:?}",
            tp.skipped
        );
        assert!(
            tp.skipped[1].reason.contains("not logged in"),
            "{:?}",
            tp.skipped
        );
        assert_eq!(tp.delete, ["sdb", "sdc"]);
    }

    /// A write that does not return (here: opening a FIFO nobody reads,
    /// as `device/delete` of a blocked disk waits in the kernel) is given
    /// up after the deadline; a normal write is not.
    #[test]
    fn a_write_that_blocks_is_given_up_after_the_deadline() {
        let t = Tree::new();
        t.put("sys/x", "");
        let r = write_with_deadline(&t.root(), "/sys/x".into(), Duration::from_secs(5));
        assert!(matches!(r, Some(Ok(()))), "{r:?}");
        assert_eq!(fs::read_to_string(t.base.join("sys/x")).unwrap(), "1");
        let fifo = t.base.join("sys/fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let t0 = Instant::now();
        let r = write_with_deadline(&t.root(), "/sys/fifo".into(), Duration::from_millis(300));
        assert!(r.is_none(), "{r:?}");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
        // Release the writer thread.
        let mut got = String::new();
        std::io::Read::read_to_string(&mut fs::File::open(&fifo).unwrap(), &mut got).unwrap();
        assert_eq!(got, "1");
    }

    #[test]
    fn kpartx_partition_uuids() {
        assert!(is_kpartx_partition("part1-mpath-36001405abc"));
        assert!(is_kpartx_partition("part12-mpath-36001405abc"));
        assert!(!is_kpartx_partition("mpath-36001405abc"));
        assert!(!is_kpartx_partition("LVM-abcdef"));
        assert!(!is_kpartx_partition("part1-LVM-abc"));
    }
}
