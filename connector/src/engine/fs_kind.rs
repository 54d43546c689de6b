//! The one table of filesystem kinds goldmount mounts: how to mount each, how
//! to mount it without writing, what to do when its UUID is already mounted
//! (the gold copy or another clone), and whether it can hold the original
//! host's `/etc/fstab`. Every decision about a filesystem type reads this.

use crate::fstab_options::{Atime, Carried};

/// What to do when a filesystem with the same UUID is already mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidCollision {
    /// The kernel does not care (ext*, vfat…).
    Ignore,
    /// XFS refuses a second mount of one UUID: mount with `nouuid`.
    NoUuid,
    /// btrfs: the kernel's temp-fsid (≥ 6.7) or the opt-in `btrfstune -m`.
    BtrfsFsid,
}

/// One row of the table.
#[derive(Debug)]
pub struct FsKind {
    /// blkid's TYPE.
    pub blkid: &'static str,
    /// Data options that keep a read-only mount from writing (journal replay).
    pub read_only_data: &'static [&'static str],
    /// Always read-only (iso9660, squashfs).
    pub always_read_only: bool,
    /// UUID-collision rule.
    pub uuid_collision: UuidCollision,
    /// Can be the root of an installed system (holds `/etc/fstab`).
    pub may_hold_fstab: bool,
    /// Data options every mount gets, whatever the clone says: the clone's
    /// superblock may ask the kernel to panic on an error (ext*
    /// `errors=panic`); a damaged or hostile clone must never take the host
    /// down.
    pub host_safety_data: &'static [&'static str],
}

/// Every kind goldmount mounts, in no particular order.
pub const FS_KINDS: &[FsKind] = &[
    FsKind {
        blkid: "ext2",
        read_only_data: &[],
        always_read_only: false,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &["errors=remount-ro"],
        may_hold_fstab: true,
    },
    FsKind {
        blkid: "ext3",
        read_only_data: &["noload"],
        always_read_only: false,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &["errors=remount-ro"],
        may_hold_fstab: true,
    },
    FsKind {
        blkid: "ext4",
        read_only_data: &["noload"],
        always_read_only: false,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &["errors=remount-ro"],
        may_hold_fstab: true,
    },
    FsKind {
        blkid: "xfs",
        read_only_data: &["norecovery"],
        always_read_only: false,
        uuid_collision: UuidCollision::NoUuid,
        host_safety_data: &[],
        may_hold_fstab: true,
    },
    FsKind {
        blkid: "btrfs",
        // btrfs replays its log tree even on a read-only mount unless told not to.
        read_only_data: &["rescue=nologreplay"],
        always_read_only: false,
        uuid_collision: UuidCollision::BtrfsFsid,
        host_safety_data: &[],
        may_hold_fstab: true,
    },
    FsKind {
        blkid: "vfat",
        read_only_data: &[],
        always_read_only: false,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &[],
        may_hold_fstab: false,
    },
    FsKind {
        blkid: "ntfs",
        read_only_data: &[],
        always_read_only: false,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &[],
        may_hold_fstab: false,
    },
    FsKind {
        blkid: "iso9660",
        read_only_data: &[],
        always_read_only: true,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &[],
        may_hold_fstab: false,
    },
    FsKind {
        blkid: "squashfs",
        read_only_data: &[],
        always_read_only: true,
        uuid_collision: UuidCollision::Ignore,
        host_safety_data: &[],
        may_hold_fstab: false,
    },
];

/// The row for a blkid TYPE, if goldmount mounts it.
pub fn lookup(blkid: &str) -> Option<&'static FsKind> {
    FS_KINDS.iter().find(|k| k.blkid == blkid)
}

/// How to mount one filesystem: the `-t` type, the flags, the data string,
/// and the options as a person reads them (for the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Kernel filesystem type (`ntfs3`, or the FUSE helper `ntfs-3g`).
    pub fstype: String,
    /// Mount read-only.
    pub read_only: bool,
    /// `nosuid,nodev` (the default for clone data).
    pub nosuid_nodev: bool,
    /// Filesystem-specific options.
    pub data: Vec<&'static str>,
    /// Options carried over from the clone's fstab line (validated by
    /// [`crate::fstab_options::carry`]), after `data`.
    pub carried: Vec<String>,
    /// `noexec` (the clone's fstab asked for it).
    pub noexec: bool,
    /// Access-time flag the clone's fstab asked for.
    pub atime: Option<Atime>,
    /// `nodiratime` (the clone's fstab asked for it).
    pub nodiratime: bool,
}

impl MountPlan {
    /// The options as `mount -o` would take them.
    pub fn options(&self) -> String {
        let mut o: Vec<&str> = Vec::new();
        o.push(if self.read_only { "ro" } else { "rw" });
        if self.nosuid_nodev {
            o.extend(["nosuid", "nodev"]);
        }
        if self.noexec {
            o.push("noexec");
        }
        o.extend(self.atime.map(|a| match a {
            Atime::NoAtime => "noatime",
            Atime::Relatime => "relatime",
            Atime::StrictAtime => "strictatime",
        }));
        if self.nodiratime {
            o.push("nodiratime");
        }
        o.extend(self.data.iter().copied());
        o.extend(self.carried.iter().map(String::as_str));
        o.join(",")
    }
    /// Only the filesystem-specific part (`nouuid,norecovery`, then what
    /// the clone's fstab carried over).
    pub fn data_string(&self) -> String {
        let mut d: Vec<&str> = self.data.clone();
        d.extend(self.carried.iter().map(String::as_str));
        d.join(",")
    }
    /// This plan with the options carried over from the clone's fstab line:
    /// they may make the mount stricter (`ro`, `noexec`, `nosuid`), never
    /// looser, and add validated filesystem options.
    pub fn with_fstab(mut self, c: &Carried) -> MountPlan {
        self.read_only |= c.read_only;
        self.nosuid_nodev |= c.nosuid && c.nodev;
        self.noexec |= c.noexec;
        self.atime = c.atime;
        self.nodiratime = c.nodiratime;
        self.carried = c
            .data
            .iter()
            .filter(|o| !self.data.contains(&o.as_str()))
            .cloned()
            .collect();
        self
    }
}

impl FsKind {
    /// The mount for this kind: read-only without replay when asked, `nouuid`
    /// when an XFS with this UUID is already mounted, `nosuid,nodev` unless
    /// the caller opted out.
    pub fn plan(&self, read_only: bool, uuid_mounted: bool, allow_suid_dev: bool) -> MountPlan {
        let ro = read_only || self.always_read_only;
        let mut data: Vec<&'static str> = Vec::new();
        if read_only {
            data.extend(self.read_only_data.iter().copied());
        }
        if uuid_mounted && self.uuid_collision == UuidCollision::NoUuid {
            data.push("nouuid");
        }
        data.extend(self.host_safety_data.iter().copied());
        MountPlan {
            fstype: kernel_type(self.blkid),
            read_only: ro,
            nosuid_nodev: !allow_suid_dev,
            data,
            carried: Vec::new(),
            noexec: false,
            atime: None,
            nodiratime: false,
        }
    }
}

/// The kernel driver (or FUSE helper) for a blkid TYPE: NTFS through ntfs3
/// when the kernel has it, ntfs-3g otherwise.
fn kernel_type(blkid: &str) -> String {
    if blkid != "ntfs" {
        return blkid.to_string();
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs.lines().any(|l| l.trim_end().ends_with("ntfs3")) {
        "ntfs3".into()
    } else {
        "ntfs-3g".into()
    }
}

/// The manifest note for a filesystem mounted read-only without replaying
/// its journal (ext `noload`, XFS `norecovery`, btrfs `rescue=nologreplay`)
/// while the journal holds changes: the files in it are not shown (issue 12,
/// part 5), and the person reading the manifest must know why and what to
/// do. `journal` is the probe's verdict after `fsdetect::journal::inspect`
/// (which reads the XFS log). `None` when the mount is read-write (the
/// kernel replays), the format has no journal, the journal is clean, or the
/// kind's read-only mount does not skip replay. An undecidable journal gets
/// a note too, with the reason: it may hide changes just the same.
pub fn unreplayed_journal_note(
    blkid: &str,
    mountpoint: &std::path::Path,
    journal: Option<&fsdetect::Journal>,
    read_only: bool,
) -> Option<String> {
    use fsdetect::JournalState;
    let journal = journal?;
    if !read_only || lookup(blkid).is_some_and(|k| k.read_only_data.is_empty()) {
        return None;
    }
    let external = if journal.external {
        " (its journal is on another device, which a read-write mount needs too)"
    } else {
        ""
    };
    let what = format!("{blkid} at {}", mountpoint.display());
    match journal.state {
        JournalState::Clean => None,
        JournalState::NeedsRecovery => Some(format!(
            "{what}: log not replayed: recent changes may be missing; \
             mount read-write (the clone) to replay{external}"
        )),
        JournalState::Unknown | JournalState::NotInspected => Some(format!(
            "{what}: log not replayed and whether it holds changes is unknown ({}): \
             recent changes may be missing; mount read-write (the clone) to replay{external}",
            journal.basis
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plans_protect_clones_and_the_host() {
        let xfs = lookup("xfs").unwrap();
        assert_eq!(
            xfs.plan(false, true, false).options(),
            "rw,nosuid,nodev,nouuid"
        );
        assert_eq!(
            xfs.plan(true, false, false).options(),
            "ro,nosuid,nodev,norecovery"
        );
        let ext4 = lookup("ext4").unwrap();
        assert_eq!(
            ext4.plan(true, false, false).options(),
            "ro,nosuid,nodev,noload,errors=remount-ro"
        );
        // A clone's superblock may say errors=panic: never on this host.
        assert_eq!(
            ext4.plan(false, true, false).options(),
            "rw,nosuid,nodev,errors=remount-ro"
        );
        assert_eq!(
            ext4.plan(false, false, true).options(),
            "rw,errors=remount-ro"
        );
        assert!(
            lookup("squashfs")
                .unwrap()
                .plan(false, false, false)
                .read_only
        );
        assert!(lookup("swap").is_none());
        assert!(lookup("ext4").unwrap().may_hold_fstab && !lookup("vfat").unwrap().may_hold_fstab);
    }

    #[test]
    fn fstab_options_tighten_and_never_loosen() {
        let ctx = crate::fstab_options::Context {
            read_only: true,
            selinux: false,
        };
        let vfat = lookup("vfat").unwrap();
        let c = crate::fstab_options::carry("vfat", "rw,suid,dev,umask=0077,noatime", ctx);
        let p = vfat.plan(true, false, false).with_fstab(&c);
        assert_eq!(p.options(), "ro,nosuid,nodev,noatime,umask=0077");
        assert_eq!(p.data_string(), "umask=0077");
        let ext4 = lookup("ext4").unwrap();
        let ctx = crate::fstab_options::Context {
            read_only: false,
            selinux: false,
        };
        let c = crate::fstab_options::carry("ext4", "ro,noexec,errors=remount-ro", ctx);
        let p = ext4.plan(false, false, true).with_fstab(&c);
        assert_eq!(p.options(), "ro,noexec,errors=remount-ro");
        assert!(p.read_only && p.noexec && !p.nosuid_nodev);
    }

    #[test]
    fn a_read_only_mount_of_a_dirty_journal_says_what_is_missing() {
        use fsdetect::{Journal, JournalState};
        use std::path::Path;
        let mp = Path::new("/var/lib/goldmount/volumes/v/home");
        let dirty = Journal::internal(JournalState::NeedsRecovery, "last record is not an unmount");
        let note = unreplayed_journal_note("xfs", mp, Some(&dirty), true).unwrap();
        assert_eq!(
            note,
            "xfs at /var/lib/goldmount/volumes/v/home: log not replayed: recent changes may be \
             missing; mount read-write (the clone) to replay"
        );
        // Read-write replays; clean or journal-less filesystems hide nothing.
        assert_eq!(
            unreplayed_journal_note("xfs", mp, Some(&dirty), false),
            None
        );
        let clean = Journal::internal(JournalState::Clean, "unmount record");
        assert_eq!(
            unreplayed_journal_note("ext4", mp, Some(&clean), true),
            None
        );
        assert_eq!(unreplayed_journal_note("vfat", mp, None, true), None);
        // Undecided: said, with the reason.
        let unknown = Journal::internal(JournalState::Unknown, "no log record header");
        let note = unreplayed_journal_note("xfs", mp, Some(&unknown), true).unwrap();
        assert!(note.contains("unknown (no log record header)"), "{note}");
        assert!(
            note.contains("mount read-write (the clone) to replay"),
            "{note}"
        );
        // An external ext journal is named.
        let ext = Journal {
            external: true,
            ..Journal::internal(JournalState::NeedsRecovery, "needs_recovery")
        };
        let note = unreplayed_journal_note("ext4", mp, Some(&ext), true).unwrap();
        assert!(note.starts_with("ext4 at /var/lib/goldmount/volumes/v/home: log not replayed"));
        assert!(note.contains("another device"), "{note}");
    }
}
