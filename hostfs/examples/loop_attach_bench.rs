//! Attach latency: `hostfs::loopdev::attach` against `losetup --find --show`.
//!
//! Run as root: `cargo run --release -p hostfs --example loop_attach_bench [N]`.
//! Each sample binds a 4 MiB sparse file and frees the loop again (our holder
//! dropped / `losetup -d`); only the binding is timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hostfs::loopdev::{attach, status, LoopSpec};
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} n={:<3} median {:>9.1?}  p10 {:>9.1?}  p90 {:>9.1?}",
        v.len(),
        pick(0.5),
        pick(0.1),
        pick(0.9)
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(50, |s| s.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("loop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("bench.img");
    File::create(&img).unwrap().set_len(4 << 20).unwrap();
    let tag = format!("gmbench:{}", std::process::id());

    let mut ours = Vec::with_capacity(n);
    let mut theirs = Vec::with_capacity(n);
    for _ in 0..n {
        let spec = LoopSpec {
            backing: &img,
            offset: 0,
            size_limit: 0,
            read_only: false,
            tag: &tag,
        };
        let t = Instant::now();
        let a = attach(&spec).unwrap();
        ours.push(t.elapsed());
        drop(a); // autoclear frees it

        // Interleaved, so both see the same load on a shared machine.
        let t = Instant::now();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        theirs.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8(out.stdout).unwrap();
        let dev = Path::new(dev.trim());
        // Only remove what losetup just made over our file.
        if status(dev)
            .unwrap()
            .is_some_and(|s| !s.tag.starts_with("gmbench:"))
        {
            Command::new("losetup").arg("-d").arg(dev).status().unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    summary("hostfs::loopdev::attach", ours);
    summary("losetup --find --show", theirs);
}
