//! `goldmount-zfs-reguid` and [`zfs::offline::reguid_offline`] against real
//! pools: made by zfs-fuse (the host's ZFS; the kernel module exists only in
//! the lab guest) on image files, their GUID changed by libzpool — OpenZFS
//! 2.1's userland, which `cargo xtask test` fetches into the lab's private
//! prefix (or named by `GOLDMOUNT_ZFS_LIB_DIR`). The ZFS kernel module's
//! side, a clone next to its imported gold, is the lab's `lab_zfs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const HELPER: &str = env!("CARGO_BIN_EXE_goldmount-zfs-reguid");
const LIB_ENV: &str = "GOLDMOUNT_ZFS_LIB_DIR";
/// Where `cargo xtask test` (and `cargo xtask lab --zfs`) put OpenZFS's
/// userland libraries.
const DEFAULT_LIB_DIR: &str = "/opt/goldmount-lab/zfs/root/lib/x86_64-linux-gnu";

fn lib_dir() -> PathBuf {
    let d = std::env::var_os(LIB_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LIB_DIR));
    assert!(
        d.join("libzpool.so.5").is_file(),
        "{}/libzpool.so.5 missing: run `cargo xtask test` (it fetches OpenZFS 2.1's userland) or set {LIB_ENV}",
        d.display()
    );
    d
}

/// zfs-fuse serialises badly: two `zfs create`s of two pools at once left
/// both in D state for good (seen in CI). The tests of this binary take
/// turns; every zpool/zfs command also has a time limit.
static ZFS_FUSE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Longest a zpool/zfs command of these tests may take.
const ZFS_CMD_TIMEOUT: &str = "120";

/// The library API finds the helper and libzpool through the environment;
/// the guard keeps the other tests of this binary off zfs-fuse meanwhile.
fn setup() -> std::sync::MutexGuard<'static, ()> {
    let guard = ZFS_FUSE.lock().unwrap_or_else(|e| e.into_inner());
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::env::set_var("LD_LIBRARY_PATH", lib_dir());
        std::env::set_var(zfs::offline::HELPER_ENV, HELPER);
        let running = Command::new("pgrep")
            .args(["-x", "zfs-fuse"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !running {
            sh("zfs-fuse", &[]);
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    });
    guard
}

/// Runs `prog args…` (zpool and zfs under `timeout`), failing the test on
/// a non-zero exit.
fn sh(prog: &str, args: &[&str]) -> String {
    let o = if matches!(prog, "zpool" | "zfs") {
        Command::new("timeout")
            .args(["-k", "5", ZFS_CMD_TIMEOUT, prog])
            .args(args)
            .output()
            .unwrap()
    } else {
        Command::new(prog).args(args).output().unwrap()
    };
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A scratch directory unique to this test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gm-reguid-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An exported pool `name` striped over `n` image files in `dir`, with a
/// dataset holding `data/f.txt`. Returns (images, pool GUID).
fn make_pool(dir: &Path, name: &str, n: usize) -> (Vec<PathBuf>, u64) {
    let imgs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("d{i}.img"))).collect();
    for i in &imgs {
        std::fs::File::create(i).unwrap().set_len(96 << 20).unwrap();
    }
    let alt = dir.join("alt");
    let mut args = vec![
        "create",
        "-o",
        "cachefile=none",
        "-R",
        alt.to_str().unwrap(),
        name,
    ];
    args.extend(imgs.iter().map(|p| p.to_str().unwrap()));
    sh("zpool", &args);
    sh("zfs", &["create", &format!("{name}/data")]);
    std::fs::write(
        mountpoint(&format!("{name}/data")).join("f.txt"),
        "in the pool\n",
    )
    .unwrap();
    let guid = sh("zpool", &["get", "guid", name])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .parse()
        .unwrap();
    sh("zpool", &["export", name]);
    // zfs-fuse may still be writing the labels after `export` returns:
    // wait until its own import scan lists the pool as exported (once, in
    // a CI check, the reguid that followed found no importable pool).
    sh("sync", &[]);
    let t0 = std::time::Instant::now();
    while !listed_ids(dir).contains(&guid) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "zfs-fuse never listed exported pool {name} ({guid}) in {}",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (imgs, guid)
}

/// Where zfs-fuse mounted a dataset.
fn mountpoint(ds: &str) -> PathBuf {
    PathBuf::from(sh("zfs", &["get", "-H", "-o", "value", "mountpoint", ds]).trim())
}

fn digest(files: &[PathBuf]) -> Vec<u64> {
    files
        .iter()
        .map(|f| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(f).unwrap().hash(&mut h);
            h.finish()
        })
        .collect()
}

fn helper(args: &[&str]) -> Output {
    Command::new(HELPER)
        .env("LD_LIBRARY_PATH", lib_dir())
        .args(args)
        .output()
        .unwrap()
}

/// The pool IDs `zpool import -d DIR` lists in `dir`.
fn listed_ids(dir: &Path) -> Vec<u64> {
    let o = Command::new("timeout")
        .args(["-k", "5", ZFS_CMD_TIMEOUT, "zpool", "import", "-d"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("id: "))
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

/// A two-device pool gets a new GUID on both devices; zfs-fuse imports it
/// by that GUID with its data, and the old GUID is gone from the labels.
#[test]
fn a_pool_gets_a_new_guid_on_every_device_and_imports_by_it() {
    let _zfs_fuse = setup();
    let dir = scratch("ok");
    let name = format!("gmrg{}", std::process::id());
    let (imgs, guid) = make_pool(&dir, &name, 2);
    let t0 = std::time::Instant::now();
    let r = zfs::offline::reguid_offline(&imgs, guid, "gold").unwrap();
    eprintln!(
        "reguid of a 2-device pool: {:.2}s: {r:?}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!((r.old_guid, r.pool.as_str()), (guid, name.as_str()));
    assert_ne!(r.new_guid, guid);
    assert_eq!(listed_ids(&dir), vec![r.new_guid]);
    let alt = dir.join("alt2");
    sh(
        "zpool",
        &[
            "import",
            "-d",
            dir.to_str().unwrap(),
            "-R",
            alt.to_str().unwrap(),
            &r.new_guid.to_string(),
        ],
    );
    let status = sh("zpool", &["status", &name]);
    let data = std::fs::read_to_string(mountpoint(&format!("{name}/data")).join("f.txt"));
    sh("zpool", &["export", &name]);
    assert!(status.contains("ONLINE"), "{status}");
    assert_eq!(data.unwrap(), "in the pool\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad requests fail with their own exit status and a message that says
/// what to do, and leave every device byte-identical.
#[test]
fn refusals_change_nothing() {
    let _zfs_fuse = setup();
    let dir = scratch("refuse");
    let name = format!("gmrf{}", std::process::id());
    let (imgs, guid) = make_pool(&dir, &name, 2);
    let before = digest(&imgs);
    let (a, b) = (imgs[0].to_str().unwrap(), imgs[1].to_str().unwrap());

    let o = helper(&["--guid", "42", "--device", a, "--device", b]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("no importable pool with GUID 42"), "{err}");

    // One device of a striped pool: never reguided (the other device would
    // be orphaned).
    let g = guid.to_string();
    let o = helper(&["--guid", &g, "--device", a]);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("one of two devices: {:?}: {err}", o.status.code());
    assert!(matches!(o.status.code(), Some(4 | 5)), "{err}");

    let o = helper(&["--guid", "x", "--device", a]);
    assert_eq!(o.status.code(), Some(2));
    let o = helper(&["--guid", &g, "--device", "/tmp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a block device"));

    if !Path::new("/lib/x86_64-linux-gnu/libzpool.so.5").exists() {
        let o = Command::new(HELPER)
            .env("LD_LIBRARY_PATH", "/nonexistent")
            .args(["--guid", &g, "--device", a, "--device", b])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(err.contains("libzpool5linux"), "{err}");
    }
    assert_eq!(
        digest(&imgs),
        before,
        "a refused reguid wrote to the devices"
    );
    assert_eq!(listed_ids(&dir), vec![guid]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The gold's devices are named in a clone's labels. A clone given with
/// one of its two devices missing must not be completed with the gold's
/// device found at that path (what libzpool does unconfined): the helper
/// fails, and neither the gold's devices nor the clone's change.
#[test]
fn a_clone_missing_a_device_never_reaches_the_golds_device() {
    let _zfs_fuse = setup();
    let dir = scratch("gold");
    let name = format!("gmgd{}", std::process::id());
    let (gold, guid) = make_pool(&dir, &name, 2);
    let clone_dir = dir.join("clone");
    std::fs::create_dir_all(&clone_dir).unwrap();
    let clone: Vec<PathBuf> = gold
        .iter()
        .map(|g| {
            let c = clone_dir.join(g.file_name().unwrap());
            std::fs::copy(g, &c).unwrap();
            c
        })
        .collect();
    let gold_before = digest(&gold);
    let clone_before = digest(&clone);
    let o = helper(&[
        "--guid",
        &guid.to_string(),
        "--device",
        clone[0].to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("clone with a device missing: {:?}: {err}", o.status.code());
    assert!(matches!(o.status.code(), Some(4 | 5)), "{err}");
    assert_eq!(
        digest(&gold),
        gold_before,
        "the gold's devices were written"
    );
    assert_eq!(digest(&clone), clone_before);
    // Both clone devices: the clone is reguided, the gold is not.
    let r = zfs::offline::reguid_offline(&clone, guid, "gold").unwrap();
    assert_ne!(r.new_guid, guid);
    assert_eq!(
        digest(&gold),
        gold_before,
        "the gold's devices were written"
    );
    assert_eq!(listed_ids(&dir), vec![guid]);
    assert_eq!(listed_ids(&clone_dir), vec![r.new_guid]);
    let _ = std::fs::remove_dir_all(&dir);
}
