//! Teardown when the storage may be gone: before a volume's mounts are
//! undone, stop queueing on multipath maps that have no path left (else
//! `umount` waits in D state for ever), flush every filesystem with a
//! deadline and find out whether data written since the last sync was lost
//! (a write-back error, a shut-down XFS, an aborted ext4 journal); after
//! each unmount, a device the kernel still holds is not "released".
//!
//! Deadlines come from the transport: an iSCSI path reports I/O errors
//! only after its session's `recovery_tmo` (plus the NOP-out timeout that
//! detects the loss), so a fixed 120 s timeout is a race with a 130 s
//! transport.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use executor::sysfs::Root;
use serde::Serialize;

use crate::state::{Action, VolumeRecord};

/// Floor and margin for deadlines derived from the transport.
const DEADLINE_FLOOR: Duration = Duration::from_secs(30);
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Data of one filesystem that may not have reached the LUN.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DataLoss {
    /// Where it was mounted.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// The device.
    pub source: PathBuf,
    /// What the kernel said.
    pub error: String,
    /// The flush did not finish within the deadline: I/O to the device
    /// hangs (the `sync` was left behind, still holding the mount).
    #[serde(default)]
    pub hanging: bool,
}

impl std::fmt::Display for DataLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "data written since the last sync may be lost on {} {} ({}): {}",
            self.fstype,
            self.source.display(),
            self.mount_point.display(),
            self.error
        )
    }
}

/// A multipath map whose queueing goldmount turned off.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueingOff {
    /// dm name.
    pub map: String,
    /// Why.
    pub reason: String,
}

/// What the preparation found and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Prepared {
    /// Maps whose queueing was turned off.
    pub queueing_off: Vec<QueueingOff>,
    /// Filesystems that may have lost data.
    pub losses: Vec<DataLoss>,
    /// The deadline used for each step.
    pub deadline_secs: u64,
}

/// Kernel name of `major:minor` (`dm-3`, `sdb`, `loop0`, `sdb1`).
fn kname(root: &Root, devno: &str) -> Option<String> {
    root.link_name(format!("/sys/dev/block/{devno}"))
}

/// The sysfs directory of block device `name` (a disk, a dm device or a
/// partition).
fn sys_dir(root: &Root, name: &str) -> String {
    let b = format!("/sys/block/{name}");
    if root.exists(&b) {
        return b;
    }
    format!("/sys/class/block/{name}")
}

/// Every device under `name` (itself, its slaves, theirs…), and a partition's disk.
fn stack_below(root: &Root, name: &str, out: &mut Vec<String>) {
    if out.iter().any(|n| n == name) || out.len() > 64 {
        return;
    }
    out.push(name.to_string());
    let base = sys_dir(root, name);
    for s in root.list(format!("{base}/slaves")) {
        stack_below(root, &s, out);
    }
    // A partition: its disk is the parent directory in sysfs.
    if root.exists(format!("{base}/partition")) {
        if let Some(real) = root.real(&base) {
            if let Some(parent) = Path::new(&real).parent().and_then(|p| p.file_name()) {
                stack_below(root, &parent.to_string_lossy(), out);
            }
        }
    }
}

/// A multipath map and the state of its paths.
#[derive(Debug, PartialEq, Eq)]
struct Map {
    kname: String,
    name: String,
    paths: Vec<String>,
    running: usize,
}

fn maps_below(root: &Root, devno: &str) -> Vec<Map> {
    let Some(top) = kname(root, devno) else {
        return Vec::new();
    };
    let mut stack = Vec::new();
    stack_below(root, &top, &mut stack);
    stack
        .iter()
        .filter(|n| {
            root.attr(format!("{}/dm/uuid", sys_dir(root, n)))
                .is_some_and(|u| u.starts_with("mpath-"))
        })
        .map(|n| {
            let paths = root.list(format!("{}/slaves", sys_dir(root, n)));
            let running = paths.iter().filter(|p| path_running(root, p)).count();
            Map {
                kname: n.clone(),
                name: root
                    .attr_nonempty(format!("{}/dm/name", sys_dir(root, n)))
                    .unwrap_or_else(|| n.clone()),
                paths,
                running,
            }
        })
        .collect()
}

/// A SCSI path that can carry I/O: device state `running` and, for iSCSI,
/// a logged-in session.
fn path_running(root: &Root, sd: &str) -> bool {
    if root
        .attr(format!("/sys/block/{sd}/device/state"))
        .as_deref()
        != Some("running")
    {
        return false;
    }
    match iscsi_session_of(root, sd) {
        Some(s) => {
            root.attr(format!("/sys/class/iscsi_session/session{s}/state"))
                .as_deref()
                == Some("LOGGED_IN")
        }
        None => true,
    }
}

fn iscsi_session_of(root: &Root, sd: &str) -> Option<u32> {
    let real = root.real(format!("/sys/block/{sd}/device"))?;
    executor::iscsi_sysfs::session_in_path(&real)
}

/// The deadline for one teardown step on a volume: the longest time any of
/// its iSCSI paths may keep I/O waiting before failing it (`recovery_tmo`
/// plus the NOP-out timeout) plus a margin; at least [`DEADLINE_FLOOR`].
pub fn deadline_for(rec: &VolumeRecord) -> Duration {
    deadline_in(&Root::host(), rec)
}

fn deadline_in(root: &Root, rec: &VolumeRecord) -> Duration {
    let mut worst = Duration::ZERO;
    for devno in mount_devnos(rec) {
        let Some(top) = kname(root, &devno) else {
            continue;
        };
        let mut stack = Vec::new();
        stack_below(root, &top, &mut stack);
        for n in &stack {
            let Some(s) = iscsi_session_of(root, n) else {
                continue;
            };
            let base = format!("/sys/class/iscsi_session/session{s}");
            let rec_tmo = root
                .attr(format!("{base}/recovery_tmo"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(120);
            let conn = root
                .list(format!("{base}/device"))
                .into_iter()
                .find(|c| c.starts_with("connection"));
            // The loss is noticed after a NOP-out interval (`recv_tmo`)
            // plus its timeout (`ping_tmo`); open-iscsi defaults 5 + 5.
            let conn_attr = |name: &str, default: u64| {
                conn.as_ref()
                    .and_then(|c| {
                        root.attr(format!("{base}/device/{c}/iscsi_connection/{c}/{name}"))
                    })
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(default)
            };
            let detect = conn_attr("recv_tmo", 5) + conn_attr("ping_tmo", 5);
            worst = worst.max(Duration::from_secs(rec_tmo + detect));
        }
    }
    (worst + DEADLINE_MARGIN).max(DEADLINE_FLOOR)
}

fn mount_devnos(rec: &VolumeRecord) -> Vec<String> {
    let mut v: Vec<String> = rec
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Mount { source_devno, .. } if !source_devno.starts_with("0:") => {
                Some(source_devno.clone())
            }
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Turns queueing off on `map` (multipathd's `disablequeueing`, which also
/// keeps multipathd from turning it back on; `dmsetup message … fail_if_no_path`
/// without multipathd).
fn disable_queueing(map: &str, deadline: Duration) -> Result<(), String> {
    let t = deadline.min(Duration::from_secs(30));
    match crate::tools::run("multipathd", &["disablequeueing", "map", map], t) {
        Ok(o) if !o.stdout.contains("fail") => Ok(()),
        _ => crate::tools::run("dmsetup", &["message", map, "0", "fail_if_no_path"], t)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Puts queueing back on maps whose teardown was abandoned.
pub fn restore_queueing(off: &[QueueingOff]) {
    for q in off {
        let r = crate::tools::run(
            "multipathd",
            &["restorequeueing", "map", &q.map],
            Duration::from_secs(30),
        );
        if let Err(e) = r {
            tracing::warn!(map = %q.map, error = %e, "queueing not restored");
        }
    }
}

/// Before the mounts of `rec` are undone: queueing off on maps with no
/// path up (on every map when `force`), then each filesystem flushed with
/// `deadline` and checked for lost writes.
pub fn prepare(rec: &VolumeRecord, force: bool, deadline: Duration) -> Prepared {
    let mut out = Prepared {
        deadline_secs: deadline.as_secs(),
        ..Default::default()
    };
    let root = Root::host();
    for devno in mount_devnos(rec) {
        for m in maps_below(&root, &devno) {
            if out.queueing_off.iter().any(|q| q.map == m.name) {
                continue;
            }
            let reason = if m.running == 0 {
                format!("no path of {} is up ({} down)", m.name, m.paths.len())
            } else if force {
                "forced teardown".to_string()
            } else {
                continue;
            };
            match disable_queueing(&m.name, deadline) {
                Ok(()) => {
                    tracing::warn!(map = %m.name, kname = %m.kname, %reason, "queueing turned off");
                    out.queueing_off.push(QueueingOff {
                        map: m.name.clone(),
                        reason,
                    });
                }
                Err(e) => tracing::warn!(map = %m.name, error = %e, "could not turn queueing off"),
            }
        }
    }
    for s in rec.steps.iter().rev() {
        let Action::Mount {
            source,
            source_devno,
            target,
            fstype,
            options,
            mnt_id: Some(_),
            ..
        } = &s.action
        else {
            continue;
        };
        if !s.done {
            continue;
        }
        let loss = |error: String, hanging: bool| DataLoss {
            mount_point: target.clone(),
            fstype: fstype.clone(),
            source: source.clone(),
            error,
            hanging,
        };
        if let Some((e, hanging)) = sync_fs(target, deadline) {
            out.losses.push(loss(e, hanging));
            continue;
        }
        if let Some(e) = fs_error_state(fstype, source_devno, target, options) {
            out.losses.push(loss(e, false));
        }
    }
    out
}

/// `sync --file-system` of the filesystem at `target` in a child process
/// (a flush that hangs leaves that child behind, not us); the error, if
/// any, and whether the flush hangs.
fn sync_fs(target: &Path, deadline: Duration) -> Option<(String, bool)> {
    let t = target.to_string_lossy();
    match crate::tools::run("sync", &["--file-system", "--", &t], deadline) {
        Ok(_) => None,
        Err(toolrun::ToolError::Timeout { .. }) => Some((
            format!(
                "flushing did not finish within {} s: I/O to the device is hanging",
                deadline.as_secs()
            ),
            true,
        )),
        Err(e) => {
            let msg = e.stderr().trim().to_string();
            Some((if msg.is_empty() { e.to_string() } else { msg }, false))
        }
    }
}

/// A filesystem that recorded an error: ext4's error counter, or a mount
/// goldmount made read-write that the kernel turned read-only (ext4's
/// `errors=remount-ro`, a journal abort).
fn fs_error_state(fstype: &str, devno: &str, target: &Path, options: &str) -> Option<String> {
    if fstype == "ext4" || fstype == "ext3" {
        let root = Root::host();
        if let Some(k) = kname(&root, devno) {
            let n = root
                .attr(format!("/sys/fs/ext4/{k}/errors_count"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if n > 0 {
                let first = root
                    .attr(format!("/sys/fs/ext4/{k}/first_error_time"))
                    .unwrap_or_default();
                return Some(format!(
                    "ext4 recorded {n} error(s) (first at {first} s since the epoch)"
                ));
            }
        }
    }
    let asked_rw = !options.split(',').any(|o| o == "ro");
    if asked_rw {
        let now_ro = super_options(target).is_some_and(|o| o.split(',').any(|o| o == "ro"));
        if now_ro {
            return Some(
                "the kernel turned the filesystem read-only after an error (journal aborted?)"
                    .into(),
            );
        }
    }
    None
}

/// The superblock options (after mountinfo's ` - ` separator) of the top
/// mount at `target`: where the kernel shows a filesystem it turned
/// read-only after an error.
fn super_options(target: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?;
            let opts = right.split(' ').nth(2)?;
            (Path::new(&mountinfo::unescape(mp)) == target).then(|| opts.to_string())
        })
        .next_back()
}

/// After an unmount: waits until the kernel no longer holds the device
/// (`umount` can take a mount out of the tree while its superblock still
/// waits for write-back); `Err` names what is still held.
pub fn wait_released(source: &Path, devno: &str, deadline: Duration) -> Result<(), String> {
    if devno.starts_with("0:") || devno.is_empty() {
        return Ok(()); // btrfs/FUSE: no block device of their own to ask
    }
    let node = PathBuf::from(format!("/dev/block/{devno}"));
    let node = if node.exists() {
        node
    } else {
        source.to_path_buf()
    };
    let t0 = Instant::now();
    loop {
        if !still_mounted(devno) && !held_exclusively(&node) {
            return Ok(());
        }
        if t0.elapsed() >= deadline {
            return Err(format!(
                "{} ({devno}) is still held by the kernel {} s after its unmount: write-back to it is hanging",
                source.display(),
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn still_mounted(devno: &str) -> bool {
    mountinfo::current()
        .unwrap_or_default()
        .iter()
        .any(|m| m.dev() == devno)
}

/// True when an exclusive open of the block device fails with EBUSY: a
/// filesystem (or anything else) still claims it.
fn held_exclusively(node: &Path) -> bool {
    use rustix::fs::{open, Mode, OFlags};
    match open(
        node,
        OFlags::RDONLY | OFlags::EXCL | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(_) => false,
        Err(e) => e == rustix::io::Errno::BUSY,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    use std::os::unix::fs::symlink;

    /// A sysfs tree with multipath map dm-0 (253:0) over iSCSI paths sdb
    /// (session1) and sdc (session2), each session with its own timeouts.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new(tmo: [(u64, u64); 2]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let t = Tree { dir };
            t.write(
                "/sys/devices/virtual/block/dm-0/dm/uuid",
                "mpath-36001405aa",
            );
            t.write("/sys/devices/virtual/block/dm-0/dm/name", "36001405aa");
            t.link("/sys/block/dm-0", "../devices/virtual/block/dm-0");
            t.link("/sys/dev/block/253:0", "../../devices/virtual/block/dm-0");
            for (i, (sd, (rec, ping))) in ["sdb", "sdc"].iter().zip(tmo).enumerate() {
                let s = i + 1;
                let h = i + 2;
                let dev =
                    format!("/sys/devices/platform/host{h}/session{s}/target{h}:0:0/{h}:0:0:1");
                t.write(&format!("{dev}/state"), "running");
                t.write(
                    &format!("{dev}/block/{sd}/dev"),
                    &format!("8:{}", 16 * (i + 1)),
                );
                t.link(
                    &format!("/sys/block/{sd}"),
                    &format!(
                        "../devices/platform/host{h}/session{s}/target{h}:0:0/{h}:0:0:1/block/{sd}"
                    ),
                );
                t.link(&format!("{dev}/block/{sd}/device"), "../..");
                t.write(&format!("/sys/devices/virtual/block/dm-0/slaves/{sd}"), "");
                let ses = format!("/sys/class/iscsi_session/session{s}");
                t.write(&format!("{ses}/state"), "LOGGED_IN");
                t.write(&format!("{ses}/recovery_tmo"), &rec.to_string());
                let c = format!("connection{s}:0");
                t.write(
                    &format!("{ses}/device/{c}/iscsi_connection/{c}/ping_tmo"),
                    &ping.to_string(),
                );
                t.write(
                    &format!("{ses}/device/{c}/iscsi_connection/{c}/recv_tmo"),
                    &ping.to_string(),
                );
            }
            t
        }
        fn root(&self) -> Root {
            Root::at(self.dir.path())
        }
        fn write(&self, abs: &str, v: &str) {
            let p = self.root().path(abs);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        fn link(&self, abs: &str, to: &str) {
            let p = self.root().path(abs);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(to, p).unwrap();
        }
        fn scsi_state(&self, h: u32, s: u32, v: &str) {
            self.write(
                &format!("/sys/devices/platform/host{h}/session{s}/target{h}:0:0/{h}:0:0:1/state"),
                v,
            );
        }
    }

    fn mounted_on(devno: &str) -> VolumeRecord {
        let mut rec = VolumeRecord::new("v", vec![], false);
        rec.steps.push(crate::state::Step {
            action: Action::Mount {
                source: "/dev/dm-0".into(),
                source_devno: devno.into(),
                target: "/v/x".into(),
                fstype: "xfs".into(),
                options: "rw".into(),
                mnt_id: Some(99),
                mnt_unique: None,
            },
            done: true,
        });
        rec
    }

    #[test]
    fn paths_that_carry_io_are_counted_per_map() {
        let t = Tree::new([(120, 5), (120, 5)]);
        let maps = maps_below(&t.root(), "253:0");
        assert_eq!(maps.len(), 1, "{maps:?}");
        assert_eq!(maps[0].name, "36001405aa");
        assert_eq!(maps[0].paths, vec!["sdb", "sdc"]);
        assert_eq!(maps[0].running, 2);
        // One path transport-offline: one left.
        t.scsi_state(2, 1, "transport-offline");
        assert_eq!(maps_below(&t.root(), "253:0")[0].running, 1);
        // The other's session failed (the SCSI device still says running):
        // no path is up — the case where queueing must be turned off.
        t.write("/sys/class/iscsi_session/session2/state", "FAILED");
        assert_eq!(maps_below(&t.root(), "253:0")[0].running, 0);
        // Not a map at all: nothing to do.
        assert!(maps_below(&t.root(), "7:3").is_empty());
    }

    #[test]
    fn the_deadline_follows_the_slowest_transport() {
        let t = Tree::new([(120, 10), (20, 5)]);
        // recovery_tmo 120 + NOP-out interval 10 + its timeout 10 + margin 30.
        assert_eq!(
            deadline_in(&t.root(), &mounted_on("253:0")),
            Duration::from_secs(170)
        );
        let t = Tree::new([(5, 2), (5, 2)]);
        assert_eq!(
            deadline_in(&t.root(), &mounted_on("253:0")),
            Duration::from_secs(39)
        );
        // A loop device or btrfs (0:N): the floor.
        assert_eq!(deadline_in(&t.root(), &mounted_on("0:51")), DEADLINE_FLOOR);
    }

    #[test]
    fn deadline_has_a_floor_without_iscsi() {
        let rec = VolumeRecord::new("v", vec![], false);
        assert_eq!(deadline_for(&rec), DEADLINE_FLOOR.max(DEADLINE_MARGIN));
    }

    #[test]
    fn loss_message_names_the_filesystem() {
        let l = DataLoss {
            mount_point: "/v/a".into(),
            fstype: "xfs".into(),
            source: "/dev/dm-3".into(),
            error: "Input/output error".into(),
            hanging: false,
        };
        let s = l.to_string();
        assert!(s.starts_with("data written since the last sync may be lost on xfs /dev/dm-3"));
    }
}
