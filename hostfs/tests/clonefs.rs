//! Real-kernel tests of `hostfs::clonefs` and `hostfs::mountfd` (run as
//! root): a temporary "clone root" full of hostile things next to an
//! "outside" host directory that must never be touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hostfs::clonefs::{ClonePath, CloneRoot, DirJournal, NoJournal, PathError, ReadError};
use hostfs::mountfd::{mount_on, unmount, unmount_id, MountError, MountOptions, UnmountOutcome};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

/// A temporary base holding `root/` (the clone) and `outside/hostdir/` (a
/// host directory with a marker file). Dropping it detaches every mount
/// under the base (deepest first) and detaches the loop devices it made.
struct Fixture {
    base: tempfile::TempDir,
    loops: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let base = tempfile::Builder::new()
            .prefix("clonefs-test")
            .tempdir()
            .unwrap();
        fs::create_dir_all(base.path().join("root/etc")).unwrap();
        fs::create_dir_all(base.path().join("outside/hostdir")).unwrap();
        fs::write(base.path().join("outside/hostdir/f"), b"host secret").unwrap();
        Self {
            base,
            loops: Vec::new(),
        }
    }
    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.base.path().join("outside/hostdir")
    }
    /// Where the outside dir's host path lands when read chrooted in root.
    fn outside_in_root(&self) -> PathBuf {
        self.root().join(self.outside().strip_prefix("/").unwrap())
    }
    fn clone_root(&self) -> CloneRoot {
        CloneRoot::open(&self.root()).unwrap()
    }
    /// `root/data -> /<base>/outside/hostdir` (absolute) and
    /// `root/rel -> ../../../…/<base>/outside/hostdir` (relative escape).
    fn hostile_links(&self) {
        symlink(self.outside(), self.root().join("data")).unwrap();
        let rel = format!(
            "{}{}",
            "../".repeat(24),
            self.outside().strip_prefix("/").unwrap().display()
        );
        symlink(&rel, self.root().join("rel")).unwrap();
        // Precondition: followed on the host, both links leave the root.
        for l in ["data", "rel"] {
            assert_eq!(
                fs::canonicalize(self.root().join(l)).unwrap(),
                fs::canonicalize(self.outside()).unwrap()
            );
        }
    }
    fn attach_loop(&mut self, image: &Path, read_only: bool) -> String {
        let mut cmd = Command::new("losetup");
        if read_only {
            cmd.arg("-r");
        }
        let out = cmd.args(["-f", "--show"]).arg(image).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.loops.push(dev.clone());
        dev
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for _ in 0..8 {
            let all = mountinfo::current().unwrap_or_default();
            let under = mountinfo::mounts_under(&all, self.base.path());
            if under.is_empty() {
                break;
            }
            for m in under {
                let _ = rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH);
            }
        }
        for dev in &self.loops {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

/// Every path under `dir` with its file type, for "untouched" checks.
fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, String)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            }
            out.insert((e.path(), format!("{ft:?}")));
        }
    }
    out
}

fn cp(s: &str) -> ClonePath {
    ClonePath::parse(s).unwrap()
}

fn mounted_at(p: &Path) -> Vec<u32> {
    mountinfo::current()
        .unwrap()
        .into_iter()
        .filter(|e| e.mount_point == p)
        .map(|e| e.id)
        .collect()
}

/// Records what `ensure_dir` announces.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    refuse: bool,
}

impl DirJournal for Recorder {
    fn will_create(&mut self, p: &ClonePath) -> Result<(), String> {
        if self.refuse {
            return Err("state store is read-only".into());
        }
        self.events.push(format!("will {p}"));
        Ok(())
    }
    fn created(&mut self, p: &ClonePath, by_us: bool) -> Result<(), String> {
        self.events.push(format!("created {p} {by_us}"));
        Ok(())
    }
}

#[test]
fn absolute_link_is_chrooted_and_host_is_untouched() {
    let fx = Fixture::new();
    fx.hostile_links();
    let before = snapshot(fx.base.path().join("outside").as_path());
    let root = fx.clone_root();

    // The link's target does not exist inside the clone: not found, and
    // ensure_dir refuses to create through a dangling link.
    assert!(matches!(
        root.resolve_dir(&cp("/data")),
        Err(PathError::NotFound { .. })
    ));
    let mut j = Recorder::default();
    let e = root.ensure_dir(&cp("/data/sub"), &mut j).unwrap_err();
    assert!(
        matches!(e, PathError::NotADirectory { found, .. } if found.starts_with("dangling symlink")),
        "{e}"
    );
    assert!(j.events.is_empty(), "{:?}", j.events);
    assert!(!fx.outside_in_root().exists());

    // Once the target exists inside the clone, the link leads there.
    fs::create_dir_all(fx.outside_in_root()).unwrap();
    let mut j = Recorder::default();
    let d = root.ensure_dir(&cp("/data/sub/deeper"), &mut j).unwrap();
    assert_eq!(d.host_path(), fx.outside_in_root().join("sub/deeper"));
    assert!(fx.outside_in_root().join("sub/deeper").is_dir());
    assert_eq!(
        j.events,
        [
            "will /data/sub",
            "created /data/sub true",
            "will /data/sub/deeper",
            "created /data/sub/deeper true"
        ]
    );
    // Already there: nothing announced.
    let mut j = Recorder::default();
    root.ensure_dir(&cp("data/sub/deeper"), &mut j).unwrap();
    assert!(j.events.is_empty());
    assert_eq!(
        root.resolve_dir(&cp("/data")).unwrap().host_path(),
        fx.outside_in_root()
    );
    // A file under the link is the clone's, not the host's.
    assert!(matches!(
        root.read_file(&cp("/data/f"), 1024, Duration::from_secs(5)),
        Err(ReadError::NotFound { .. })
    ));

    assert_eq!(snapshot(fx.base.path().join("outside").as_path()), before);
}

#[test]
fn relative_escape_stops_at_the_root() {
    let fx = Fixture::new();
    fx.hostile_links();
    symlink("../../../../..", fx.root().join("up")).unwrap();
    let before = snapshot(fx.base.path().join("outside").as_path());
    let root = fx.clone_root();

    assert!(matches!(
        root.resolve_dir(&cp("rel")),
        Err(PathError::NotFound { .. })
    ));
    assert!(root.ensure_dir(&cp("rel/x"), &mut NoJournal).is_err());
    // `..` in a link target stops at the clone root.
    let up = root.resolve_dir(&cp("up")).unwrap();
    assert_eq!(up.host_path(), root.host_path());
    fs::create_dir_all(fx.outside_in_root()).unwrap();
    let d = root.ensure_dir(&cp("up/rel/made"), &mut NoJournal).unwrap();
    assert_eq!(d.host_path(), fx.outside_in_root().join("made"));
    // A link to the host's /proc is read inside the clone, where there is
    // no /proc.
    symlink("/proc/self/root", fx.root().join("magic")).unwrap();
    assert!(matches!(
        root.resolve_dir(&cp("magic")),
        Err(PathError::NotFound { .. })
    ));

    assert_eq!(snapshot(fx.base.path().join("outside").as_path()), before);
}

#[test]
fn dotdot_and_bad_paths_are_refused() {
    for s in ["/../../../etc", "..", "a/../b", "/srv/data/.."] {
        let e = ClonePath::parse(s).unwrap_err();
        assert!(
            matches!(e, PathError::Escapes { resolved: None, .. }),
            "{s}: {e}"
        );
    }
    assert!(matches!(
        ClonePath::parse("/a\0b"),
        Err(PathError::Invalid { .. })
    ));
}

#[test]
fn not_a_directory_says_what_was_found() {
    let fx = Fixture::new();
    fs::write(fx.root().join("etc/file"), b"x").unwrap();
    let root = fx.clone_root();
    let e = root.resolve_dir(&cp("/etc/file")).unwrap_err();
    assert!(
        matches!(
            e,
            PathError::NotADirectory {
                found: "regular file",
                ..
            }
        ),
        "{e}"
    );
    let e = root.resolve_dir(&cp("/etc/file/x")).unwrap_err();
    assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
    let mut j = Recorder::default();
    let e = root.ensure_dir(&cp("/etc/file/x"), &mut j).unwrap_err();
    assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
    assert!(j.events.is_empty());
    assert!(e.to_string().contains("/etc/file"), "{e}");
}

#[test]
fn journal_refusal_creates_nothing() {
    let fx = Fixture::new();
    let root = fx.clone_root();
    let mut j = Recorder {
        refuse: true,
        ..Recorder::default()
    };
    let e = root.ensure_dir(&cp("/srv/data"), &mut j).unwrap_err();
    assert!(matches!(e, PathError::Journal { .. }), "{e}");
    assert!(!fx.root().join("srv").exists());
}

#[test]
fn read_file_refuses_fifo_symlink_devices_and_big_files() {
    let fx = Fixture::new();
    let root = fx.clone_root();
    let dl = Duration::from_secs(10);

    // FIFO: refused without blocking.
    let fifo = fx.root().join("etc/fstab");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let t = Instant::now();
    let e = root.read_file(&cp("/etc/fstab"), 1 << 20, dl).unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(e, ReadError::NotRegular { kind: "FIFO", .. }),
        "{e}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!("FIFO refused in {took:?}");
    fs::remove_file(&fifo).unwrap();

    // Symlink to /dev/zero: refused, never followed.
    symlink("/dev/zero", &fifo).unwrap();
    let e = root.read_file(&cp("/etc/fstab"), 1 << 20, dl).unwrap_err();
    assert!(matches!(e, ReadError::Symlink { .. }), "{e}");
    fs::remove_file(&fifo).unwrap();

    // A character device node inside the clone.
    let st = Command::new("mknod")
        .arg(fx.root().join("etc/zero"))
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(fs::metadata(fx.root().join("etc/zero"))
        .unwrap()
        .file_type()
        .is_char_device());
    let e = root.read_file(&cp("/etc/zero"), 1 << 20, dl).unwrap_err();
    assert!(
        matches!(
            e,
            ReadError::NotRegular {
                kind: "character device",
                ..
            }
        ),
        "{e}"
    );
    // A directory, the root, a missing file, a dir reached through /dev.
    let e = root.read_file(&cp("/etc"), 1 << 20, dl).unwrap_err();
    assert!(
        matches!(
            e,
            ReadError::NotRegular {
                kind: "directory",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        root.read_file(&cp("/"), 1 << 20, dl),
        Err(ReadError::NotRegular { .. })
    ));
    assert!(matches!(
        root.read_file(&cp("/etc/missing"), 1 << 20, dl),
        Err(ReadError::NotFound { .. })
    ));
    symlink("/dev", fx.root().join("devdir")).unwrap();
    assert!(matches!(
        root.read_file(&cp("/devdir/zero"), 1 << 20, dl),
        Err(ReadError::NotFound { .. })
    ));

    // 5 MiB with a 1 MiB cap.
    let big = vec![b'x'; 5 << 20];
    fs::write(fx.root().join("big"), &big).unwrap();
    let e = root.read_file(&cp("/big"), 1 << 20, dl).unwrap_err();
    assert!(
        matches!(e, ReadError::TooLarge { cap, .. } if cap == 1 << 20),
        "{e}"
    );
    // At the cap exactly, and a normal file.
    let t = Instant::now();
    assert_eq!(root.read_file(&cp("/big"), 5 << 20, dl).unwrap(), big);
    eprintln!("5 MiB read in {:?}", t.elapsed());
    fs::write(
        fx.root().join("etc/fstab"),
        b"/dev/sda1 / ext4 defaults 0 1\n",
    )
    .unwrap();
    assert_eq!(
        root.read_file(&cp("etc//fstab"), 4096, dl).unwrap(),
        b"/dev/sda1 / ext4 defaults 0 1\n"
    );
    // A deadline already passed.
    let e = root
        .read_file(&cp("/etc/fstab"), 4096, Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, ReadError::TimedOut { .. }), "{e}");
}

#[test]
fn remove_dir_removes_only_empty_real_directories() {
    let fx = Fixture::new();
    fx.hostile_links();
    let root = fx.clone_root();
    root.ensure_dir(&cp("/a/b"), &mut NoJournal).unwrap();
    fs::write(fx.root().join("a/file"), b"x").unwrap();

    assert!(root.remove_dir(&cp("/a/b")).unwrap());
    assert!(!root.remove_dir(&cp("/a/b")).unwrap());
    assert!(!root.remove_dir(&cp("/nothere/b")).unwrap());
    assert!(matches!(
        root.remove_dir(&cp("/a")),
        Err(PathError::NotEmpty { .. })
    ));
    assert!(matches!(
        root.remove_dir(&cp("/a/file")),
        Err(PathError::NotADirectory {
            found: "regular file",
            ..
        })
    ));
    // A link is neither followed nor removed.
    assert!(matches!(
        root.remove_dir(&cp("/data")),
        Err(PathError::NotADirectory {
            found: "symlink",
            ..
        })
    ));
    assert!(fx.root().join("data").symlink_metadata().is_ok());
    assert!(fx.outside().is_dir());
    assert!(matches!(
        root.remove_dir(&cp("/")),
        Err(PathError::Invalid { .. })
    ));
}

#[test]
fn tmpfs_mount_through_a_link_lands_inside_the_clone() {
    let fx = Fixture::new();
    fx.hostile_links();
    fs::create_dir_all(fx.outside_in_root()).unwrap();
    let root = fx.clone_root();
    let dir = root.resolve_dir(&cp("/data")).unwrap();
    let id = mount_on(
        &dir,
        Path::new("none"),
        "tmpfs",
        MountOptions::default(),
        "size=1m",
    )
    .unwrap();
    assert_eq!(id.host_path, fx.outside_in_root());
    let opts: Vec<&str> = id.mount_options.split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{opts:?}"
    );
    assert_eq!(id.major, 0);
    assert_eq!(mounted_at(&fx.outside_in_root()), [id.mnt_id]);
    assert!(mounted_at(&fx.outside()).is_empty());

    // Resolution crosses into the new mount.
    root.ensure_dir(&cp("/data/inner"), &mut NoJournal).unwrap();
    assert!(fx.outside_in_root().join("inner").is_dir());
    assert!(!fx.outside().join("inner").exists());

    assert_eq!(
        unmount_id(id.mnt_id, false).unwrap(),
        UnmountOutcome::Unmounted
    );
    assert!(mounted_at(&fx.outside_in_root()).is_empty());
    assert!(!fx.outside_in_root().join("inner").exists());
    assert_eq!(unmount_id(id.mnt_id, false).unwrap(), UnmountOutcome::Gone);
    assert_eq!(unmount_id(id.mnt_id, true).unwrap(), UnmountOutcome::Gone);
}

fn ext4_image(fx: &Fixture) -> PathBuf {
    let img = fx.base.path().join("ext4.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(16 << 20).unwrap();
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    img
}

#[test]
fn ext4_loop_mount_and_unmount_by_id() {
    let mut fx = Fixture::new();
    let img = ext4_image(&fx);
    let dev = fx.attach_loop(&img, false);
    let root = fx.clone_root();
    let dir = root.ensure_dir(&cp("/srv/data"), &mut NoJournal).unwrap();

    // Wrong type: EINVAL with its hint, nothing mounted.
    let e = mount_on(
        &dir,
        Path::new(&dev),
        "xfs",
        MountOptions::default(),
        "nouuid,norecovery",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            MountError::Mount {
                errno: Errno::INVAL,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("wrong filesystem type"), "{e}");
    assert!(mounted_at(dir.host_path()).is_empty());

    let id = mount_on(&dir, Path::new(&dev), "ext4", MountOptions::default(), "").unwrap();
    let minor: u32 = dev.trim_start_matches("/dev/loop").parse().unwrap();
    assert_eq!((id.major, id.minor), (7, minor));
    assert_eq!(id.host_path, fx.root().join("srv/data"));
    let opts: Vec<&str> = id.mount_options.split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev") && opts.contains(&"rw"),
        "{opts:?}"
    );
    assert!(fx.root().join("srv/data/lost+found").is_dir());

    // Busy while a file is open on it; lazy detach then works.
    let held = fs::File::create(fx.root().join("srv/data/held")).unwrap();
    let e = unmount_id(id.mnt_id, false).unwrap_err();
    assert!(matches!(e, MountError::Busy { .. }), "{e}");
    assert_eq!(mounted_at(dir.host_path()), [id.mnt_id]);
    assert_eq!(
        unmount_id(id.mnt_id, true).unwrap(),
        UnmountOutcome::Detached
    );
    assert!(mounted_at(dir.host_path()).is_empty());
    drop(held);
    assert_eq!(unmount_id(id.mnt_id, false).unwrap(), UnmountOutcome::Gone);

    // Non-lazy unmount of an idle mount, by its whole identity.
    let id = mount_on(&dir, Path::new(&dev), "ext4", MountOptions::default(), "").unwrap();
    assert_eq!(unmount(&id, false).unwrap(), UnmountOutcome::Unmounted);
    assert!(mounted_at(dir.host_path()).is_empty());
}

#[test]
fn read_only_device_needs_a_read_only_mount() {
    let mut fx = Fixture::new();
    let img = ext4_image(&fx);
    let dev = fx.attach_loop(&img, true);
    let root = fx.clone_root();
    let dir = root.ensure_dir(&cp("/boot"), &mut NoJournal).unwrap();
    let e = mount_on(&dir, Path::new(&dev), "ext4", MountOptions::default(), "").unwrap_err();
    assert!(
        matches!(
            e,
            MountError::Mount {
                errno: Errno::ROFS | Errno::ACCESS,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("mount it read-only"), "{e}");
    let ro = MountOptions {
        read_only: true,
        ..MountOptions::default()
    };
    let id = mount_on(&dir, Path::new(&dev), "ext4", ro, "noload").unwrap();
    assert!(id.mount_options.split(',').any(|o| o == "ro"), "{id:?}");
    assert_eq!(
        unmount_id(id.mnt_id, false).unwrap(),
        UnmountOutcome::Unmounted
    );
}

#[test]
fn unmount_id_refuses_a_mount_stacked_on_top() {
    let fx = Fixture::new();
    let root = fx.clone_root();
    let dir = root.ensure_dir(&cp("/d"), &mut NoJournal).unwrap();
    let tmpfs = |d| mount_on(d, Path::new("none"), "tmpfs", MountOptions::default(), "");
    let a = tmpfs(&dir).unwrap();
    let b = tmpfs(&dir).unwrap();
    assert_ne!(a.mnt_id, b.mnt_id);
    for lazy in [false, true] {
        let e = unmount_id(a.mnt_id, lazy).unwrap_err();
        assert!(matches!(e, MountError::NotOurs { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("mount {}", b.mnt_id)),
            "{e}"
        );
    }
    let at = mounted_at(dir.host_path());
    assert!(at.contains(&a.mnt_id) && at.contains(&b.mnt_id), "{at:?}");
    assert_eq!(
        unmount_id(b.mnt_id, false).unwrap(),
        UnmountOutcome::Unmounted
    );
    assert_eq!(
        unmount_id(a.mnt_id, false).unwrap(),
        UnmountOutcome::Unmounted
    );
    assert!(mounted_at(dir.host_path()).is_empty());
}

#[test]
fn unmount_id_of_a_replaced_mount_leaves_the_new_one() {
    let fx = Fixture::new();
    let root = fx.clone_root();
    let dir = root.ensure_dir(&cp("/d"), &mut NoJournal).unwrap();
    let tmpfs = |d| mount_on(d, Path::new("none"), "tmpfs", MountOptions::default(), "");
    let a = tmpfs(&dir).unwrap();
    rustix::mount::unmount(dir.host_path(), UnmountFlags::DETACH).unwrap();
    let b = tmpfs(&dir).unwrap();
    // Mount ids are reused at once; the unique ids are not.
    eprintln!(
        "mount A id {} unique {:?}, B id {} unique {:?}",
        a.mnt_id, a.unique_id, b.mnt_id, b.unique_id
    );
    assert!(a.unique_id.is_some() && b.unique_id.is_some());
    assert_ne!(a.unique_id, b.unique_id);
    for lazy in [false, true] {
        let r = unmount(&a, lazy);
        eprintln!("unmount(A, lazy={lazy}): {r:?}");
        if a.mnt_id == b.mnt_id {
            // The id was reused: only the unique id (or the device) tells.
            let e = r.unwrap_err();
            assert!(matches!(e, MountError::NotOurs { .. }), "{e}");
            assert!(e.to_string().contains("reused"), "{e}");
        } else {
            assert_eq!(r.unwrap(), UnmountOutcome::Gone);
        }
        assert_eq!(mounted_at(dir.host_path()), [b.mnt_id]);
    }
    assert_eq!(unmount(&b, true).unwrap(), UnmountOutcome::Detached);
    assert!(mounted_at(dir.host_path()).is_empty());
}

/// The kernel behaviour `mountfd` is built on, measured: `umount2` through
/// `/proc/self/fd/N` of an `O_PATH` fd on the mount root fails with EBUSY
/// (the fd holds the mount) unless `MNT_DETACH`; through the parent's fd
/// plus the name it works.
#[test]
fn umount2_through_proc_self_fd() {
    use rustix::fs::{open, Mode, OFlags};
    let fx = Fixture::new();
    let d = fx.root().join("m");
    fs::create_dir(&d).unwrap();
    let mount = || {
        rustix::mount::mount(
            "none",
            &d,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap()
    };
    mount();
    let fd = open(&d, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let via = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    assert_eq!(
        rustix::mount::unmount(&via, UnmountFlags::empty()),
        Err(Errno::BUSY)
    );
    assert_eq!(mounted_at(&d).len(), 1);
    rustix::mount::unmount(&via, UnmountFlags::DETACH).unwrap();
    assert!(mounted_at(&d).is_empty());
    drop(fd);

    mount();
    let parent = open(fx.root(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let via = PathBuf::from(format!(
        "/proc/self/fd/{}/m",
        std::os::fd::AsRawFd::as_raw_fd(&parent)
    ));
    rustix::mount::unmount(&via, UnmountFlags::NOFOLLOW).unwrap();
    assert!(mounted_at(&d).is_empty());
}

/// Swaps a symlink to the outside dir in at the moment `ensure_dir` is
/// about to create a component (the journal hook runs at exactly that
/// point): the swapped-in link is refused, nothing is created outside.
struct Racer {
    link_at: PathBuf,
    target: PathBuf,
    events: Vec<String>,
}

impl DirJournal for Racer {
    fn will_create(&mut self, p: &ClonePath) -> Result<(), String> {
        symlink(&self.target, &self.link_at).map_err(|e| e.to_string())?;
        self.events.push(format!("will {p}"));
        Ok(())
    }
    fn created(&mut self, p: &ClonePath, by_us: bool) -> Result<(), String> {
        self.events.push(format!("created {p} {by_us}"));
        Ok(())
    }
}

#[test]
fn ensure_dir_refuses_a_symlink_swapped_in_during_creation() {
    let fx = Fixture::new();
    let before = snapshot(fx.base.path().join("outside").as_path());
    let root = fx.clone_root();
    let mut racer = Racer {
        link_at: fx.root().join("srv"),
        target: fx.outside(),
        events: Vec::new(),
    };
    let e = root.ensure_dir(&cp("/srv/data"), &mut racer).unwrap_err();
    assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
    assert_eq!(racer.events, ["will /srv", "created /srv false"]);
    assert!(!fx.outside().join("data").exists());
    assert_eq!(snapshot(fx.base.path().join("outside").as_path()), before);
}

#[test]
fn mount_on_follows_the_fd_not_the_path() {
    let fx = Fixture::new();
    let root = fx.clone_root();
    let dir = root.ensure_dir(&cp("/home"), &mut NoJournal).unwrap();
    // After resolution the clone swaps the directory for a link to the host.
    fs::rename(fx.root().join("home"), fx.root().join("home.old")).unwrap();
    symlink(fx.outside(), fx.root().join("home")).unwrap();
    let id = mount_on(
        &dir,
        Path::new("none"),
        "tmpfs",
        MountOptions::default(),
        "",
    )
    .unwrap();
    assert_eq!(id.host_path, fx.root().join("home.old"));
    assert!(mounted_at(&fx.outside()).is_empty());
    assert!(fx.outside().join("f").is_file());
    assert_eq!(unmount(&id, false).unwrap(), UnmountOutcome::Unmounted);
}
