//! Real-kernel tests of `hostfs::loopdev` (root, loop driver loaded).
//!
//! Tests run in parallel in one process, so every test uses its own tag
//! (`gmtest:<pid>:<name>`) and only ever asserts about devices carrying it;
//! a loop number freed by one test may be bound by another a moment later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hostfs::loopdev::{
    attach, backing_of, detach_if, find_by_tag, find_by_tag_prefix, in_use, status, Attached,
    DetachOutcome, LoopError, LoopIdentity, LoopSpec,
};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn tag(name: &str) -> String {
    format!("gmtest:{}:{name}", std::process::id())
}

/// A sparse image file in its own temporary directory.
fn image(size: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    File::create(&path).unwrap().set_len(size).unwrap();
    (dir, path)
}

fn spec<'a>(backing: &'a Path, tag: &'a str) -> LoopSpec<'a> {
    LoopSpec {
        backing,
        offset: 0,
        size_limit: 0,
        read_only: false,
        tag,
    }
}

fn sysfs(number: u32, attr: &str) -> String {
    fs::read_to_string(format!("/sys/block/loop{number}/{attr}"))
        .unwrap_or_else(|e| panic!("/sys/block/loop{number}/{attr}: {e}"))
        .trim()
        .to_owned()
}

/// True while `device` is bound with exactly `tag` (another test may bind
/// the number once it is free; that does not count).
fn bound_with(device: &Path, tag: &str) -> bool {
    matches!(status(device).unwrap(), Some(id) if id.tag == tag)
}

/// Waits up to 5 s for `device` to stop carrying `tag`; returns how long.
fn wait_unbound(device: &Path, tag: &str) -> Duration {
    let start = Instant::now();
    while bound_with(device, tag) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} still bound with {tag} after 5 s",
            device.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// Undoes, identity-checked, whatever loop a test left bound with its tag
/// (only matters when an assertion failed half-way).
struct TagSweep(String);

impl Drop for TagSweep {
    fn drop(&mut self) {
        if let Ok(found) = find_by_tag(&self.0) {
            for (device, id) in found {
                let _ = detach_if(&device, &id);
            }
        }
    }
}

/// A mount that is taken down again even when the test fails.
struct Mounted(PathBuf);

impl Mounted {
    fn ext4(device: &Path, at: &Path, read_only: bool) -> Mounted {
        let flags = if read_only {
            rustix::mount::MountFlags::RDONLY
        } else {
            rustix::mount::MountFlags::empty()
        };
        rustix::mount::mount(device, at, "ext4", flags, None)
            .unwrap_or_else(|e| panic!("mount {} on {}: {e}", device.display(), at.display()));
        Mounted(at.to_owned())
    }

    fn umount(mut self) {
        let at = std::mem::take(&mut self.0);
        rustix::mount::unmount(&at, rustix::mount::UnmountFlags::empty()).unwrap();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// A loop made by `losetup` — "someone else's" — removed again by the test.
struct Foreign(PathBuf);

impl Foreign {
    fn new(backing: &Path) -> Foreign {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Foreign(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
    }

    fn identity(&self) -> LoopIdentity {
        status(&self.0)
            .unwrap()
            .expect("the losetup device is bound")
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        // Only if it is still the one losetup made (its name is the path).
        if let Ok(Some(id)) = status(&self.0) {
            if !id.tag.starts_with("gmtest:") {
                let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
            }
        }
    }
}

fn mkfs_ext4_region(image: &Path, offset: u64, size: u64) {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E"])
        .arg(format!("offset={offset}"))
        .arg(image)
        .arg(format!("{}k", size / 1024))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn attach_sets_range_tag_and_autoclear_visible_in_sysfs_and_status() {
    let t = tag("range");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let a = attach(&LoopSpec {
        offset: MIB,
        size_limit: 2 * MIB,
        ..spec(&img, &t)
    })
    .unwrap();

    assert_eq!(a.device, PathBuf::from(format!("/dev/loop{}", a.number)));
    assert_eq!(sysfs(a.number, "loop/offset"), "1048576");
    assert_eq!(sysfs(a.number, "loop/sizelimit"), "2097152");
    assert_eq!(sysfs(a.number, "loop/autoclear"), "1");
    assert_eq!(sysfs(a.number, "ro"), "0");
    assert_eq!(sysfs(a.number, "size"), (2 * MIB / 512).to_string());
    // The tag lives in lo_file_name only: sysfs (and so `losetup -a`) still
    // names the real file.
    assert_eq!(
        PathBuf::from(sysfs(a.number, "loop/backing_file")),
        fs::canonicalize(&img).unwrap()
    );
    let listed = Command::new("losetup").arg(&a.device).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&*img.to_string_lossy()),
        "losetup shows: {listed}"
    );

    let (dev, ino) = backing_of(&img).unwrap();
    let expected = LoopIdentity {
        backing_dev: dev,
        backing_ino: ino,
        offset: MIB,
        size_limit: 2 * MIB,
        tag: t.clone(),
        autoclear: true,
        read_only: false,
    };
    assert_eq!(a.identity, expected);
    assert_eq!(status(&a.device).unwrap(), Some(expected));
    assert!(!in_use(&a.device), "only our holder has it open");

    // The window really starts at 1 MiB: a write through the loop lands there.
    let mut w = OpenOptions::new().write(true).open(&a.device).unwrap();
    w.write_all(b"goldmount").unwrap();
    w.sync_all().unwrap();
    drop(w);
    let mut buf = [0u8; 9];
    File::open(&img)
        .unwrap()
        .read_exact_at(&mut buf, MIB)
        .unwrap();
    assert_eq!(&buf, b"goldmount");
}

#[test]
fn read_only_attach_refuses_writes() {
    let t = tag("ro");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let a = attach(&LoopSpec {
        read_only: true,
        ..spec(&img, &t)
    })
    .unwrap();
    assert!(a.identity.read_only);
    assert_eq!(sysfs(a.number, "ro"), "1");
    // Opening for writing succeeds on a read-only block device; the write
    // is what the kernel refuses.
    let mut w = OpenOptions::new().write(true).open(&a.device).unwrap();
    let err = w.write_all(&[1u8; 4096]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}

#[test]
fn dropping_the_only_holder_unbinds_the_device() {
    let t = tag("autoclear");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let a = attach(&spec(&img, &t)).unwrap();
    let device = a.device.clone();
    assert!(bound_with(&device, &t));
    drop(a);
    let took = wait_unbound(&device, &t);
    assert!(find_by_tag(&t).unwrap().is_empty());
    eprintln!("unbound {took:?} after the holder closed");
}

#[test]
fn a_mount_keeps_the_loop_until_umount() {
    let t = tag("mount");
    let _sweep = TagSweep(t.clone());
    let (dir, img) = image(4 * MIB);
    mkfs_ext4_region(&img, MIB, 2 * MIB);
    let a = attach(&LoopSpec {
        offset: MIB,
        size_limit: 2 * MIB,
        ..spec(&img, &t)
    })
    .unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = Mounted::ext4(&a.device, &mnt, false);
    fs::write(mnt.join("f"), b"x").unwrap();
    let device = a.device.clone();
    assert!(in_use(&device), "mounted: mountinfo names it");
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        bound_with(&device, &t),
        "the mount must keep the loop bound"
    );
    m.umount();
    wait_unbound(&device, &t);
}

#[test]
fn detach_if_refuses_a_different_tag_inode_or_range() {
    let t = tag("notours");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let a = attach(&LoopSpec {
        offset: 4096,
        ..spec(&img, &t)
    })
    .unwrap();
    let mut wrong_tag = a.identity.clone();
    wrong_tag.tag = tag("notours-other");
    let mut wrong_ino = a.identity.clone();
    wrong_ino.backing_ino += 1;
    let mut wrong_dev = a.identity.clone();
    wrong_dev.backing_dev += 1;
    let mut wrong_offset = a.identity.clone();
    wrong_offset.offset = 0;
    let mut wrong_size = a.identity.clone();
    wrong_size.size_limit = MIB;
    for wrong in [wrong_tag, wrong_ino, wrong_dev, wrong_offset, wrong_size] {
        assert_eq!(
            detach_if(&a.device, &wrong).unwrap(),
            DetachOutcome::NotOurs(a.identity.clone()),
            "expected NotOurs for {wrong:?}"
        );
        assert!(bound_with(&a.device, &t));
        assert_eq!(sysfs(a.number, "loop/offset"), "4096");
    }
    // The right identity while our holder is still open: it stays bound
    // until that last opener goes.
    assert_eq!(
        detach_if(&a.device, &a.identity).unwrap(),
        DetachOutcome::AutoclearSet
    );
    assert!(bound_with(&a.device, &t));
    let device = a.device.clone();
    let identity = a.identity.clone();
    drop(a);
    wait_unbound(&device, &t);
    assert!(matches!(
        detach_if(&device, &identity).unwrap(),
        DetachOutcome::Gone | DetachOutcome::NotOurs(_)
    ));
}

#[test]
fn detach_if_of_missing_or_non_loop_devices() {
    let none = Path::new("/dev/loop987654");
    assert_eq!(status(none).unwrap(), None);
    let id = LoopIdentity {
        backing_dev: 1,
        backing_ino: 1,
        offset: 0,
        size_limit: 0,
        tag: tag("missing"),
        autoclear: true,
        read_only: false,
    };
    assert_eq!(detach_if(none, &id).unwrap(), DetachOutcome::Gone);
    let err = status(Path::new("/dev/null")).unwrap_err();
    assert!(matches!(err, LoopError::NotALoopDevice { .. }), "{err}");
    assert!(err.to_string().contains("/dev/null"), "{err}");
    let err = detach_if(Path::new("/dev/null"), &id).unwrap_err();
    assert!(matches!(err, LoopError::NotALoopDevice { .. }), "{err}");
}

#[test]
fn bad_tags_are_refused_before_anything_is_bound() {
    let (_dir, img) = image(MIB);
    let long = format!("{}:{}", tag("long"), "x".repeat(64));
    let err = attach(&spec(&img, &long)).unwrap_err();
    assert!(matches!(err, LoopError::BadTag { .. }), "{err}");
    assert!(err.to_string().contains("63"), "{err}");
    assert!(find_by_tag_prefix(&tag("long")).unwrap().is_empty());
    let err = attach(&spec(&img, "")).unwrap_err();
    assert!(matches!(err, LoopError::BadTag { len: 0, .. }), "{err}");
}

#[test]
fn missing_backing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.img");
    let t = tag("missing-file");
    let err = attach(&spec(&missing, &t)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("nope.img") && msg.contains("ENOENT"), "{msg}");
}

#[test]
fn someone_elses_loop_over_the_same_file_is_never_touched() {
    let t = tag("foreign");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let foreign = Foreign::new(&img);
    let theirs = foreign.identity();
    let ours = attach(&spec(&img, &t)).unwrap();
    assert_ne!(foreign.0, ours.device);
    // Same backing file, same range: only the tag tells them apart.
    assert_eq!(
        (theirs.backing_dev, theirs.backing_ino),
        (ours.identity.backing_dev, ours.identity.backing_ino)
    );
    assert!(!theirs.autoclear);

    assert_eq!(
        find_by_tag(&t).unwrap(),
        vec![(ours.device.clone(), ours.identity.clone())]
    );
    assert_eq!(
        find_by_tag_prefix(&tag("fore")).unwrap(),
        vec![(ours.device.clone(), ours.identity.clone())]
    );
    assert_eq!(
        detach_if(&foreign.0, &ours.identity).unwrap(),
        DetachOutcome::NotOurs(theirs.clone())
    );
    assert_eq!(status(&foreign.0).unwrap(), Some(theirs.clone()));
    assert_eq!(sysfs_number(&foreign.0, "loop/autoclear"), "0");
}

#[test]
fn detach_if_detaches_an_idle_loop_and_sets_autoclear_on_a_mounted_one() {
    // losetup's loops have no autoclear, so these show detach_if's own work.
    let (dir, img) = image(4 * MIB);
    let idle = Foreign::new(&img);
    let id = idle.identity();
    assert_eq!(detach_if(&idle.0, &id).unwrap(), DetachOutcome::Detached);
    assert_ne!(status(&idle.0).unwrap().as_ref(), Some(&id));

    mkfs_ext4_region(&img, 0, 4 * MIB);
    let busy = Foreign::new(&img);
    let id = busy.identity();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = Mounted::ext4(&busy.0, &mnt, true);
    assert!(in_use(&busy.0));
    assert_eq!(sysfs_number(&busy.0, "loop/autoclear"), "0");
    assert_eq!(
        detach_if(&busy.0, &id).unwrap(),
        DetachOutcome::AutoclearSet
    );
    assert_eq!(sysfs_number(&busy.0, "loop/autoclear"), "1");
    assert_eq!(
        status(&busy.0).unwrap().map(|s| s.backing_ino),
        Some(id.backing_ino)
    );
    m.umount();
    let start = Instant::now();
    while status(&busy.0).unwrap().as_ref()
        == Some(&LoopIdentity {
            autoclear: true,
            ..id.clone()
        })
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still bound after umount"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sysfs_number(device: &Path, attr: &str) -> String {
    let name = device.file_name().unwrap().to_string_lossy().into_owned();
    let n: u32 = name.trim_start_matches("loop").parse().unwrap();
    sysfs(n, attr)
}

#[test]
fn eight_threads_attach_eight_distinct_devices() {
    let prefix = tag("par");
    let _sweeps: Vec<TagSweep> = (0..8).map(|i| TagSweep(format!("{prefix}{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let img = dir.path().join(format!("{i}.img"));
            File::create(&img).unwrap().set_len(MIB).unwrap();
            let barrier = Arc::clone(&barrier);
            let t = format!("{prefix}{i}");
            std::thread::spawn(move || {
                barrier.wait();
                attach(&spec(&img, &t)).unwrap()
            })
        })
        .collect();
    let attached: Vec<Attached> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut numbers: Vec<u32> = attached.iter().map(|a| a.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 8, "{numbers:?}");
    for (i, a) in attached.iter().enumerate() {
        assert_eq!(a.identity.tag, format!("{prefix}{i}"));
        assert_eq!(status(&a.device).unwrap().as_ref(), Some(&a.identity));
        let (dev, ino) = backing_of(&dir.path().join(format!("{i}.img"))).unwrap();
        assert_eq!((a.identity.backing_dev, a.identity.backing_ino), (dev, ino));
    }
    // Prefix 'par' also matches 'par0'..'par7' and nothing of other tests.
    assert_eq!(find_by_tag_prefix(&prefix).unwrap().len(), 8);
}

/// Set in the re-executed test binary: attach, report, wait to be killed.
const CHILD_ENV: &str = "HOSTFS_LOOPDEV_TEST_CHILD_IMAGE";

#[test]
fn a_killed_holder_leaves_no_loop_behind() {
    if let Ok(img) = std::env::var(CHILD_ENV) {
        let t = std::env::var("HOSTFS_LOOPDEV_TEST_CHILD_TAG").unwrap();
        let a = attach(&spec(Path::new(&img), &t)).unwrap();
        println!("ATTACHED {}", a.device.display());
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(60));
        panic!("the parent should have killed this child");
    }
    let t = tag("killed");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_holder_leaves_no_loop_behind",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &img)
        .env("HOSTFS_LOOPDEV_TEST_CHILD_TAG", &t)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kill the child whatever happens below.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut device = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest prints "test name ... " on the same line first.
        if let Some((_, d)) = line.split_once("ATTACHED ") {
            device = Some(PathBuf::from(d));
            break;
        }
    }
    let device = device.expect("the child reported its loop device");
    assert!(
        bound_with(&device, &t),
        "the child's loop is bound while it lives"
    );
    assert_eq!(find_by_tag(&t).unwrap().len(), 1);
    child.0.kill().unwrap(); // SIGKILL: no destructor runs in the child
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    let took = wait_unbound(&device, &t);
    assert!(find_by_tag(&t).unwrap().is_empty());
    eprintln!("loop of the SIGKILLed child unbound {took:?} after wait()");
}

#[test]
fn block_device_backing_identity_uses_its_rdev() {
    let t = tag("stack");
    let _sweep = TagSweep(t.clone());
    let (_dir, img) = image(4 * MIB);
    let lower = attach(&spec(&img, &format!("{t}-lower"))).unwrap();
    let _lower_sweep = TagSweep(format!("{t}-lower"));
    let upper = attach(&LoopSpec {
        read_only: true,
        ..spec(&lower.device, &t)
    })
    .unwrap();
    let meta = fs::metadata(&lower.device).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(upper.identity.backing_dev, meta.rdev());
    assert_eq!(upper.identity.backing_ino, meta.ino());
    assert_eq!(
        backing_of(&lower.device).unwrap(),
        (meta.rdev(), meta.ino())
    );
    assert!(upper.identity.read_only);
}
