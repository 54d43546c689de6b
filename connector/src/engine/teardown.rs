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

fn read(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn list(p: impl AsRef<Path>) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Kernel name of `major:minor` (`dm-3`, `sdb`, `loop0`, `sdb1`).
fn kname(devno: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/dev/block/{devno}")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Every device under `name` (itself, its slaves, theirs…), and a partition's disk.
fn stack_below(name: &str, out: &mut Vec<String>) {
    if out.iter().any(|n| n == name) || out.len() > 64 {
        return;
    }
    out.push(name.to_string());
    let base = sys_dir(name);
    for s in list(base.join("slaves")) {
        stack_below(&s, out);
    }
    // A partition: its disk is the parent directory in sysfs.
    if base.join("partition").exists() {
        if let Ok(real) = std::fs::canonicalize(&base) {
            if let Some(parent) = real.parent().and_then(|p| p.file_name()) {
                stack_below(&parent.to_string_lossy(), out);
            }
        }
    }
}

fn sys_dir(name: &str) -> PathBuf {
    let b = PathBuf::from(format!("/sys/block/{name}"));
    if b.exists() {
        return b;
    }
    PathBuf::from(format!("/sys/class/block/{name}"))
}

/// A multipath map and the state of its paths.
#[derive(Debug)]
struct Map {
    kname: String,
    name: String,
    paths: Vec<String>,
    running: usize,
}

fn maps_below(devno: &str) -> Vec<Map> {
    let Some(top) = kname(devno) else {
        return Vec::new();
    };
    let mut stack = Vec::new();
    stack_below(&top, &mut stack);
    stack
        .iter()
        .filter(|n| read(sys_dir(n).join("dm/uuid")).is_some_and(|u| u.starts_with("mpath-")))
        .map(|n| {
            let paths = list(sys_dir(n).join("slaves"));
            let running = paths.iter().filter(|p| path_running(p)).count();
            Map {
                kname: n.clone(),
                name: read(sys_dir(n).join("dm/name")).unwrap_or_else(|| n.clone()),
                paths,
                running,
            }
        })
        .collect()
}

/// A SCSI path that can carry I/O: device state `running` and, for iSCSI,
/// a logged-in session.
fn path_running(sd: &str) -> bool {
    let dev = PathBuf::from(format!("/sys/block/{sd}/device"));
    if read(dev.join("state")).as_deref() != Some("running") {
        return false;
    }
    match iscsi_session_of(sd) {
        Some(s) => {
            read(format!("/sys/class/iscsi_session/session{s}/state")).as_deref()
                == Some("LOGGED_IN")
        }
        None => true,
    }
}

fn iscsi_session_of(sd: &str) -> Option<u32> {
    let real = std::fs::canonicalize(format!("/sys/block/{sd}/device")).ok()?;
    executor::iscsi_sysfs::session_in_path(&real.to_string_lossy())
}

/// The deadline for one teardown step on a volume: the longest time any of
/// its iSCSI paths may keep I/O waiting before failing it (`recovery_tmo`
/// plus the NOP-out timeout) plus a margin; at least [`DEADLINE_FLOOR`].
pub fn deadline_for(rec: &VolumeRecord) -> Duration {
    let mut worst = Duration::ZERO;
    for devno in mount_devnos(rec) {
        let Some(top) = kname(&devno) else { continue };
        let mut stack = Vec::new();
        stack_below(&top, &mut stack);
        for n in &stack {
            let Some(s) = iscsi_session_of(n) else {
                continue;
            };
            let base = format!("/sys/class/iscsi_session/session{s}");
            let rec_tmo = read(format!("{base}/recovery_tmo"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(120);
            let conn = list(format!("{base}/device"))
                .into_iter()
                .find(|c| c.starts_with("connection"));
            let noop = conn
                .and_then(|c| {
                    read(format!(
                        "{base}/device/{c}/iscsi_connection/{c}/noop_out_timeout"
                    ))
                })
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(5);
            worst = worst.max(Duration::from_secs(rec_tmo + noop));
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
    for devno in mount_devnos(rec) {
        for m in maps_below(&devno) {
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
        let loss = |error: String| DataLoss {
            mount_point: target.clone(),
            fstype: fstype.clone(),
            source: source.clone(),
            error,
        };
        if let Some(e) = sync_fs(target, deadline) {
            out.losses.push(loss(e));
            continue;
        }
        if let Some(e) = fs_error_state(fstype, source_devno, target, options) {
            out.losses.push(loss(e));
        }
    }
    out
}

/// `sync --file-system` of the filesystem at `target` in a child process
/// (a flush that hangs leaves that child behind, not us); the error, if any.
fn sync_fs(target: &Path, deadline: Duration) -> Option<String> {
    let t = target.to_string_lossy();
    match crate::tools::run("sync", &["--file-system", "--", &t], deadline) {
        Ok(_) => None,
        Err(toolrun::ToolError::Timeout { .. }) => Some(format!(
            "flushing did not finish within {} s: I/O to the device is hanging",
            deadline.as_secs()
        )),
        Err(e) => {
            let msg = e.stderr().trim().to_string();
            if msg.is_empty() {
                Some(e.to_string())
            } else {
                Some(msg)
            }
        }
    }
}

/// A filesystem that recorded an error: ext4's error counter, or a mount
/// goldmount made read-write that the kernel turned read-only (ext4's
/// `errors=remount-ro`, a journal abort).
fn fs_error_state(fstype: &str, devno: &str, target: &Path, options: &str) -> Option<String> {
    if fstype == "ext4" || fstype == "ext3" {
        if let Some(k) = kname(devno) {
            let n = read(format!("/sys/fs/ext4/{k}/errors_count"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if n > 0 {
                let first = read(format!("/sys/fs/ext4/{k}/first_error_time")).unwrap_or_default();
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
        };
        let s = l.to_string();
        assert!(s.starts_with("data written since the last sync may be lost on xfs /dev/dm-3"));
    }
}
