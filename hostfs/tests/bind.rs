//! Real-kernel tests of `hostfs::bind` (root required): a volume tree made of
//! a tmpfs, a tmpfs at `boot` and a loop-mounted ext4 at `srv/data`, all
//! under a shared tmpfs per test (so propagation is exercised the way a
//! systemd host with a shared `/` behaves), published, checked and taken
//! down. Every test's mounts go with its rig's lazy unmount on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use hostfs::bind::{
    is_published, publish, unpublish, unpublish_expected, BindError, Target, UnpublishOutcome,
    DEFAULT_FORBIDDEN,
};

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One mountinfo line, with the fields the library's parser does not keep.
#[derive(Debug, Clone)]
struct Line {
    id: u32,
    mount_point: PathBuf,
    options: Vec<String>,
    optional: Vec<String>,
}

fn table() -> Vec<Line> {
    fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| {
            let (pre, _) = l.split_once(" - ").unwrap();
            let f: Vec<&str> = pre.split(' ').collect();
            Line {
                id: f[0].parse().unwrap(),
                mount_point: PathBuf::from(mountinfo::unescape(f[4])),
                options: f[5].split(',').map(str::to_string).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}

fn under(dir: &Path) -> Vec<Line> {
    table()
        .into_iter()
        .filter(|l| l.mount_point.starts_with(dir))
        .collect()
}

fn line(id: u32) -> Line {
    table().into_iter().find(|l| l.id == id).unwrap()
}

/// A volume tree under a private-to-the-test shared tmpfs.
struct Rig {
    base: PathBuf,
    src: PathBuf,
    loopdev: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=64m",
                "rig",
                base.to_str().unwrap(),
            ],
        );
        // From here on, Drop detaches whatever was made.
        let mut rig = Rig {
            src: base.join("src"),
            base,
            loopdev: String::new(),
            children: Vec::new(),
            _dir: dir,
        };
        run("mount", &["--make-shared", rig.base.to_str().unwrap()]);
        let src = rig.src.clone();
        fs::create_dir(&src).unwrap();
        run("mount", &["-t", "tmpfs", "vol", src.to_str().unwrap()]);
        fs::create_dir_all(src.join("boot")).unwrap();
        fs::create_dir_all(src.join("srv/data")).unwrap();
        fs::write(src.join("etc-hostname"), "pg1\n").unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "boot", src.join("boot").to_str().unwrap()],
        );
        fs::write(src.join("boot/vmlinuz"), "kernel").unwrap();
        let img = rig.base.join("data.img");
        fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
        rig.loopdev = run("losetup", &["-f", "--show", img.to_str().unwrap()]);
        run(
            "mount",
            &[&rig.loopdev, src.join("srv/data").to_str().unwrap()],
        );
        fs::write(src.join("srv/data/PG_VERSION"), "16\n").unwrap();
        rig
    }

    fn target(&self, rel: &str) -> Target {
        Target::parse(&self.base.join(rel), DEFAULT_FORBIDDEN).unwrap()
    }

    /// A `sleep` whose cwd is `dir`.
    fn hold(&mut self, dir: &Path) -> u32 {
        let child = Command::new("sleep")
            .arg("600")
            .current_dir(dir)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = rustix::mount::unmount(&self.base, rustix::mount::UnmountFlags::DETACH);
        if !self.loopdev.is_empty() {
            let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
        }
    }
}

fn write_err(p: &Path) -> Option<i32> {
    fs::write(p, "x").err().map(|e| e.raw_os_error().unwrap())
}

#[test]
fn read_write_publication_shows_the_whole_tree_and_goes_away() {
    let rig = Rig::new();
    let t = rig.target("pub/a");
    let a = t.path().to_path_buf();
    assert!(!is_published(&rig.src, &t).unwrap());

    let p = publish(&rig.src, &t, false).unwrap();
    assert_eq!(p.target, a);
    assert_eq!(p.created_dirs, vec![rig.base.join("pub"), a.clone()]);
    assert_eq!(p.mount_ids.len(), 3, "{p:?}");
    assert_eq!(line(p.mount_ids[0]).mount_point, a, "top first");
    let mut points: Vec<PathBuf> = p.mount_ids.iter().map(|i| line(*i).mount_point).collect();
    points.sort();
    assert_eq!(points, vec![a.clone(), a.join("boot"), a.join("srv/data")]);
    for id in &p.mount_ids {
        let l = line(*id);
        for o in ["rw", "nosuid", "nodev"] {
            assert!(l.options.iter().any(|x| x == o), "{o} missing: {l:?}");
        }
    }
    assert_eq!(fs::read_to_string(a.join("etc-hostname")).unwrap(), "pg1\n");
    assert_eq!(
        fs::read_to_string(a.join("boot/vmlinuz")).unwrap(),
        "kernel"
    );
    assert_eq!(
        fs::read_to_string(a.join("srv/data/PG_VERSION")).unwrap(),
        "16\n"
    );
    for f in ["new", "boot/new", "srv/data/new"] {
        fs::write(a.join(f), f).unwrap();
        assert_eq!(fs::read_to_string(rig.src.join(f)).unwrap(), f);
    }
    assert!(is_published(&rig.src, &t).unwrap());
    assert!(!is_published(&rig.src.join("boot"), &t).unwrap());

    // A repeated request is recognised, and binds nothing more.
    let before = under(&a).len();
    match publish(&rig.src, &t, false) {
        Err(BindError::AlreadyPublished {
            mount_ids,
            read_only,
            ..
        }) => {
            assert_eq!(mount_ids, p.mount_ids);
            assert!(!read_only);
        }
        other => panic!("expected AlreadyPublished, got {other:?}"),
    }
    assert_eq!(under(&a).len(), before);

    let out = unpublish_expected(&t, &p.mount_ids, &p.created_dirs, false).unwrap();
    match out {
        UnpublishOutcome::Unmounted {
            mounts,
            dirs_removed,
        } => {
            assert_eq!(mounts.len(), 3);
            assert_eq!(mounts.last().unwrap(), &a, "target unmounted last");
            assert_eq!(dirs_removed, vec![a.clone(), rig.base.join("pub")]);
        }
        other => panic!("expected Unmounted, got {other:?}"),
    }
    assert!(under(&a).is_empty());
    assert!(!rig.base.join("pub").exists());
    assert!(!is_published(&rig.src, &t).unwrap());
    // The volume is untouched.
    assert_eq!(under(&rig.src).len(), 3);
    assert_eq!(
        fs::read_to_string(rig.src.join("srv/data/new")).unwrap(),
        "srv/data/new"
    );
    // A second unpublish finds nothing.
    assert_eq!(
        unpublish_expected(&t, &p.mount_ids, &p.created_dirs, false).unwrap(),
        UnpublishOutcome::Gone {
            dirs_removed: vec![]
        }
    );
}

#[test]
fn read_only_publication_is_read_only_in_every_submount() {
    let rig = Rig::new();
    let t = rig.target("pub/b");
    let b = t.path().to_path_buf();
    let p = publish(&rig.src, &t, true).unwrap();
    assert_eq!(p.mount_ids.len(), 3);
    for f in ["x", "boot/x", "srv/data/x", "srv/data/PG_VERSION"] {
        assert_eq!(write_err(&b.join(f)), Some(libc::EROFS), "{f}");
    }
    assert_eq!(
        fs::create_dir(b.join("srv/data/d"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EROFS)
    );
    for f in ["x", "boot/x", "srv/data/x"] {
        fs::write(rig.src.join(f), "w").unwrap();
        assert_eq!(
            fs::read_to_string(b.join(f)).unwrap(),
            "w",
            "visible read-only"
        );
    }
    for id in &p.mount_ids {
        let l = line(*id);
        for o in ["ro", "nosuid", "nodev"] {
            assert!(l.options.iter().any(|x| x == o), "{o} missing: {l:?}");
        }
    }
    for l in under(&rig.src) {
        assert!(l.options.iter().any(|x| x == "rw"), "source changed: {l:?}");
    }
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::AlreadyPublished {
            read_only: true,
            ..
        })
    ));
    // Read-write and read-only publications of one volume side by side.
    let t2 = rig.target("pub/b2");
    let p2 = publish(&rig.src, &t2, false).unwrap();
    fs::write(t2.path().join("srv/data/y"), "y").unwrap();
    assert_eq!(write_err(&b.join("srv/data/y")), Some(libc::EROFS));
    unpublish_expected(&t2, &p2.mount_ids, &p2.created_dirs, false).unwrap();
    unpublish_expected(&t, &p.mount_ids, &p.created_dirs, false).unwrap();
    assert!(under(&rig.base.join("pub")).is_empty());
    assert!(!rig.base.join("pub").exists());
}

#[test]
fn target_parse_rules() {
    let f = DEFAULT_FORBIDDEN;
    let rejects = [
        "relative",
        "",
        "/",
        "/etc/x",
        "/etc",
        "/proc",
        "/var/lib/goldmount/volumes/v1/x",
        "/var/lib",
        "/var",
        "/a/../b",
        "/a/./b",
        "/a//b",
        "/a/b/",
        "/a\0b",
    ];
    for r in rejects {
        let e = Target::parse(Path::new(r), f).unwrap_err();
        assert!(!e.to_string().is_empty());
        match (r, &e) {
            ("relative", BindError::NotAbsolute { .. })
            | ("/", BindError::Root)
            | (
                "/etc/x"
                | "/etc"
                | "/proc"
                | "/var/lib/goldmount/volumes/v1/x"
                | "/var/lib"
                | "/var",
                BindError::Forbidden { .. },
            )
            | (_, BindError::NotNormalised { .. }) => {}
            _ => panic!("{r:?}: unexpected {e:?}"),
        }
    }
    let e = Target::parse(Path::new("/etc/x"), f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("under") && e.contains("/etc") && e.contains("/media/"),
        "{e}"
    );
    let e = Target::parse(Path::new("/var"), f).unwrap_err().to_string();
    assert!(e.contains("would hide"), "{e}");
    for ok in [
        "/media/pgsql1",
        "/etcx/a",
        "/var/lib/docker/plugins/x/mnt",
        "/mnt/a b",
    ] {
        assert_eq!(
            Target::parse(Path::new(ok), f).unwrap().path(),
            Path::new(ok)
        );
    }
    // The caller's own list replaces the default.
    assert!(Target::parse(Path::new("/etc/x"), &[PathBuf::from("/srv")]).is_ok());
    assert!(Target::parse(Path::new("/srv/x"), &[PathBuf::from("/srv")]).is_err());
}

#[test]
fn bad_targets_create_and_mount_nothing() {
    let rig = Rig::new();
    let real = rig.base.join("real");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, rig.base.join("link")).unwrap();
    let mounts_before = under(&rig.base).len();

    // Symlink as the parent.
    let t = rig.target("link/t/u");
    match publish(&rig.src, &t, false) {
        Err(BindError::Symlink { path }) => assert_eq!(path, rig.base.join("link")),
        other => panic!("expected Symlink, got {other:?}"),
    }
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    // Symlink as the target itself.
    let t = rig.target("link");
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::Symlink { .. })
    ));
    // A symlink deeper, below directories publish would create.
    let t = rig.target("new1/new2/link2");
    fs::create_dir_all(rig.base.join("new1/new2")).unwrap();
    std::os::unix::fs::symlink("/", rig.base.join("new1/new2/link2")).unwrap();
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::Symlink { .. })
    ));
    // Missing parents are removed again when a later step fails.
    fs::write(rig.base.join("file"), "f").unwrap();
    let t = rig.target("file/x");
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::NotADirectory { .. })
    ));
    let t = rig.target("mk1/mk2");
    assert!(publish(&rig.base.join("nonexistent"), &t, false).is_err());
    assert!(!rig.base.join("mk1").exists());
    // A non-empty directory.
    fs::write(real.join("something"), "s").unwrap();
    let t = Target::parse(&real, DEFAULT_FORBIDDEN).unwrap();
    match publish(&rig.src, &t, false) {
        Err(BindError::NotEmpty { first, .. }) => assert_eq!(first, Path::new("something")),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    // Something else mounted there.
    let other = rig.base.join("other");
    fs::create_dir(&other).unwrap();
    run("mount", &["-t", "tmpfs", "other", other.to_str().unwrap()]);
    let t = Target::parse(&other, DEFAULT_FORBIDDEN).unwrap();
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::MountPoint { .. })
    ));
    assert!(!is_published(&rig.src, &t).unwrap());
    // Inside the volume itself.
    let t = Target::parse(&rig.src.join("boot/x"), DEFAULT_FORBIDDEN).unwrap();
    assert!(matches!(
        publish(&rig.src, &t, false),
        Err(BindError::Overlap { .. })
    ));

    assert_eq!(under(&rig.base).len(), mounts_before + 1, "only 'other'");
    assert!(!rig.base.join("link/t").exists());
}

#[test]
fn busy_publication_names_the_holder_then_lazy_detaches() {
    let mut rig = Rig::new();
    let t = rig.target("pub/c");
    let c = t.path().to_path_buf();
    let p = publish(&rig.src, &t, false).unwrap();
    let pid = rig.hold(&c.join("srv/data"));
    // The child has chdir'ed once it is visible in /proc.
    for _ in 0..100 {
        if fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|l| l == c.join("srv/data")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    match unpublish_expected(&t, &p.mount_ids, &p.created_dirs, false) {
        Err(BindError::Busy { holders, .. }) => {
            let h = holders.iter().find(|h| h.pid == pid).expect("holder named");
            assert_eq!(h.what, "cwd");
            assert_eq!(h.comm, "sleep");
            let msg = unpublish(&t, &p.created_dirs, false)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&pid.to_string()) && msg.contains("lazily"),
                "{msg}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(under(&c).len(), 3, "nothing unmounted while busy");

    match unpublish_expected(&t, &p.mount_ids, &p.created_dirs, true).unwrap() {
        UnpublishOutcome::Detached {
            detached,
            holders,
            dirs_removed,
            ..
        } => {
            assert_eq!(detached, vec![p.mount_ids[0]]);
            assert!(holders.iter().any(|h| h.pid == pid));
            assert_eq!(dirs_removed, vec![c.clone(), rig.base.join("pub")]);
        }
        other => panic!("expected Detached, got {other:?}"),
    }
    assert!(under(&c).is_empty());
    // The holder still sees its data; the volume is intact.
    assert!(fs::read_link(format!("/proc/{pid}/cwd")).is_ok());
    assert_eq!(under(&rig.src).len(), 3);
    fs::write(rig.src.join("srv/data/after"), "a").unwrap();
}

#[test]
fn propagation_is_cut_both_ways_and_foreign_mounts_are_refused() {
    let rig = Rig::new();
    let t = rig.target("pub/d");
    let d = t.path().to_path_buf();
    let p = publish(&rig.src, &t, false).unwrap();

    let group = |id: u32| {
        line(id)
            .optional
            .iter()
            .find(|o| o.starts_with("shared:"))
            .cloned()
    };
    let src_top = under(&rig.src)
        .into_iter()
        .find(|l| l.mount_point == rig.src)
        .unwrap();
    let src_group = group(src_top.id).expect("the rig's volume is shared");
    // Under a shared parent the attached tree is shared, in its own group.
    let pub_group = group(p.mount_ids[0]).expect("published under a shared parent");
    assert_ne!(src_group, pub_group);

    // A mount made under the publication stays there ...
    run(
        "mount",
        &["-t", "tmpfs", "late", d.join("srv").to_str().unwrap()],
    );
    fs::write(d.join("srv/only-in-pub"), "p").unwrap();
    assert!(!rig.src.join("srv/only-in-pub").exists());
    assert!(rig.src.join("srv/data/PG_VERSION").exists());
    // ... and one made under the volume does not reach the publication.
    fs::create_dir(rig.src.join("home")).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "home",
            rig.src.join("home").to_str().unwrap(),
        ],
    );
    fs::write(rig.src.join("home/only-in-vol"), "v").unwrap();
    assert!(d.join("home").is_dir());
    assert!(!d.join("home/only-in-vol").exists());
    assert!(!under(&d).iter().any(|l| l.mount_point == d.join("home")));

    let late = under(&d)
        .into_iter()
        .find(|l| l.mount_point == d.join("srv"))
        .unwrap();
    match unpublish_expected(&t, &p.mount_ids, &p.created_dirs, false) {
        Err(BindError::Foreign { mounts, .. }) => {
            assert_eq!(mounts, vec![(late.id, d.join("srv"))]);
        }
        other => panic!("expected Foreign, got {other:?}"),
    }
    assert_eq!(under(&d).len(), 4, "nothing unmounted");
    match unpublish_expected(&t, &p.mount_ids, &p.created_dirs, true).unwrap() {
        UnpublishOutcome::Detached {
            foreign, detached, ..
        } => {
            assert_eq!(foreign, vec![(late.id, d.join("srv"))]);
            assert_eq!(detached, vec![p.mount_ids[0]]);
        }
        other => panic!("expected Detached, got {other:?}"),
    }
    assert!(under(&d).is_empty());
    assert_eq!(
        under(&rig.src).len(),
        4,
        "volume's own mounts, home included"
    );
}

#[test]
fn unpublish_without_ids_takes_everything_and_checks_recorded_dirs() {
    let rig = Rig::new();
    let t = rig.target("pub/e");
    let e = t.path().to_path_buf();
    let p = publish(&rig.src, &t, true).unwrap();
    run(
        "mount",
        &["-t", "tmpfs", "late", e.join("boot").to_str().unwrap()],
    );
    // Stacked on the target itself: a foreign top.
    match unpublish_expected(&t, &[9_999_999], &p.created_dirs, false) {
        Err(BindError::NotOurs { found, .. }) => assert_eq!(found, p.mount_ids[0]),
        other => panic!("expected NotOurs, got {other:?}"),
    }
    // Recorded directories must be the target or its ancestors.
    assert!(matches!(
        unpublish(&t, std::slice::from_ref(&rig.src), false),
        Err(BindError::NotAnAncestor { .. })
    ));
    match unpublish(&t, &p.created_dirs, false).unwrap() {
        UnpublishOutcome::Unmounted { mounts, .. } => {
            assert_eq!(mounts.len(), 4);
            assert_eq!(mounts[0], e.join("boot"), "the late mount first");
        }
        other => panic!("expected Unmounted, got {other:?}"),
    }
    assert!(under(&e).is_empty());
    assert!(!e.exists());
    // Gone: nothing mounted, an empty recorded ancestor is still removed.
    fs::create_dir_all(&e).unwrap();
    assert_eq!(
        unpublish(&t, &[rig.base.join("pub"), e.clone()], false).unwrap(),
        UnpublishOutcome::Gone {
            dirs_removed: vec![e.clone(), rig.base.join("pub")]
        }
    );
    assert_eq!(fs::metadata(&e).unwrap_err().kind(), ErrorKind::NotFound);
}
