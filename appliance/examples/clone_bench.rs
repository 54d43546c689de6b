//! Clone-time benchmark: on an XFS loop mount made with `-m reflink=1`, time
//! `Appliance::create_clone` (the code behind `POST /v1/clones`) for a dense
//! 1 GiB gold copy and a sparse 1 TiB one, several runs each, and print the
//! medians side by side. For contrast it also times the full-copy fallback
//! of the 1 GiB gold on a non-reflink file system (ext4 under /tmp).
//!
//! Run as root: `cargo run --release -p appliance --example clone_bench [RUNS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use appliance::model::{CreateClone, ImportGold};
use appliance::present::loopback::LoopPresenter;
use appliance::{Appliance, ApplianceConfig};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog} (apt-get install xfsprogs mount): {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// XFS reflink file system on a loop device; torn down on drop.
struct Xfs {
    base: PathBuf,
    mnt: PathBuf,
    dev: String,
}

impl Xfs {
    fn new() -> Self {
        let base = PathBuf::from(format!("/tmp/gm-clone-bench-{}", std::process::id()));
        let mnt = base.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let img = base.join("xfs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        run(
            "mkfs.xfs",
            &["-q", "-m", "reflink=1", img.to_str().unwrap()],
        );
        let dev = run("losetup", &["--find", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        let x = Xfs { base, mnt, dev };
        run("mount", &[&x.dev, x.mnt.to_str().unwrap()]);
        x
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn write_dense(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    let chunk: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 253) as u8 | 1).collect();
    let mut off = 0;
    while off < size {
        f.write_all_at(&chunk, off).unwrap();
        off += chunk.len() as u64;
    }
    f.sync_all().unwrap();
}

fn write_sparse(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for i in 0..16u64 {
        f.write_all_at(&[0xabu8; 1 << 20], i * (size / 16)).unwrap();
    }
    f.sync_all().unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_clones(app: &Appliance, gold: &str, runs: usize) -> (Vec<Duration>, String) {
    let mut times = Vec::new();
    let mut mode = String::new();
    for i in 0..runs {
        let name = format!("{gold}-c{i}");
        let t = Instant::now();
        let (c, _) = app
            .create_clone(CreateClone {
                name: name.clone(),
                gold: gold.into(),
                point_in_time: None,
                class: None,
            })
            .unwrap();
        times.push(t.elapsed());
        mode = format!("{:?}", c.copy_mode);
        app.delete_clone(&name).unwrap();
    }
    (times, mode)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    assert!(
        rustix::process::geteuid().is_root(),
        "run as root (loop + mount)"
    );
    let xfs = Xfs::new();
    let app = Appliance::open(
        &ApplianceConfig::new(xfs.mnt.join("data")),
        Box::new(LoopPresenter::new()),
    )
    .unwrap();
    let small = xfs.mnt.join("g1g.img");
    let big = xfs.mnt.join("g1t.img");
    write_dense(&small, 1 << 30);
    write_sparse(&big, 1 << 40);
    for (name, src) in [("g1g", &small), ("g1t", &big)] {
        app.import_gold_local(ImportGold {
            name: name.into(),
            source: src.clone(),
            point_in_time: None,
        })
        .unwrap();
    }
    let (t1g, m1g) = time_clones(&app, "g1g", runs);
    let (t1t, m1t) = time_clones(&app, "g1t", runs);

    // Full-copy fallback on ext4 (/tmp) for contrast, fewer runs.
    let ext_dir = PathBuf::from(format!("/tmp/gm-clone-bench-ext4-{}", std::process::id()));
    let ext = Appliance::open(
        &ApplianceConfig::new(ext_dir.clone()),
        Box::new(LoopPresenter::new()),
    )
    .unwrap();
    ext.import_gold_local(ImportGold {
        name: "g1g".into(),
        source: small.clone(),
        point_in_time: None,
    })
    .unwrap();
    let (tfull, mfull) = time_clones(&ext, "g1g", runs.min(3));
    drop(ext);
    let _ = std::fs::remove_dir_all(&ext_dir);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("runs: {runs} (median; min..max)");
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "gold copy", "median ms", "min ms", "max ms"
    );
    for (label, t, m) in [
        ("1 GiB dense, XFS reflink", &t1g, &m1g),
        ("1 TiB sparse, XFS reflink", &t1t, &m1t),
        ("1 GiB dense, ext4 full copy", &tfull, &mfull),
    ] {
        let min = t.iter().min().copied().unwrap_or_default();
        let max = t.iter().max().copied().unwrap_or_default();
        println!(
            "{:<34} {:>12.3} {:>12.3} {:>12.3}   ({m})",
            label,
            ms(median(t.clone())),
            ms(min),
            ms(max)
        );
    }
    drop(app);
    drop(xfs);
}
