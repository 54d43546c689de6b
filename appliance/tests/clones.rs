//! Thin clones on reflink XFS and the full-copy fallback, over the real API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use appliance::copy::CopyMode;
use appliance::model::{CreateClone, ImportGold};
use common::*;
use std::os::unix::fs::FileExt;
use std::time::Instant;

fn free_bytes(p: &std::path::Path) -> u64 {
    let s = rustix::fs::statvfs(p).unwrap();
    s.f_bavail * s.f_frsize
}

#[test]
fn reflink_clones_on_xfs_are_thin_and_independent() {
    let xfs = XfsMount::new(4);
    let data = xfs.dir.join("data");
    let srv = Server::start(&data, "loop");
    let c = srv.client();

    // A 64 MiB gold with real data: a reflink clone must not use 64 MiB.
    let src = xfs.dir.join("gold-src.img");
    {
        let f = std::fs::File::create(&src).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for i in 0..64u64 {
            f.write_all_at(&chunk, i << 20).unwrap();
        }
        f.sync_all().unwrap();
    }
    let g = c
        .import_gold(&ImportGold {
            name: "pg-gold".into(),
            source: src.clone(),
            point_in_time: None,
        })
        .unwrap();
    assert_eq!(
        g.copy_mode,
        CopyMode::Reflink,
        "same-fs import should reflink"
    );
    let before = free_bytes(&xfs.dir);
    let cl = c
        .create_clone(&CreateClone {
            name: "pg1".into(),
            gold: "pg-gold".into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
    assert_eq!(cl.copy_mode, CopyMode::Reflink);
    assert_eq!(cl.warning, None);
    assert_eq!(cl.size, 64 << 20);
    let used = before.saturating_sub(free_bytes(&xfs.dir));
    assert!(used < 4 << 20, "reflink clone used {used} bytes of 64 MiB");
    assert!(std::fs::read(&cl.file).unwrap() == std::fs::read(&g.file).unwrap());

    // Writing to the clone leaves the gold copy untouched.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cl.file)
        .unwrap();
    f.write_all_at(b"CLONE-WRITE", 0).unwrap();
    drop(f);
    let mut head = [0u8; 11];
    std::fs::File::open(&g.file)
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert_ne!(&head, b"CLONE-WRITE");

    // 1 TiB sparse gold: cloning is about as fast as the small one.
    let big = xfs.dir.join("big.img");
    make_image(&big, 1 << 40, b"BIGMARK");
    c.import_gold(&ImportGold {
        name: "big".into(),
        source: big,
        point_in_time: None,
    })
    .unwrap();
    let t = Instant::now();
    let bc = c
        .create_clone(&CreateClone {
            name: "big1".into(),
            gold: "big".into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
    let took = t.elapsed();
    assert_eq!((bc.copy_mode, bc.size), (CopyMode::Reflink, 1 << 40));
    assert!(
        took.as_secs_f64() < 5.0,
        "1 TiB reflink clone took {took:?}"
    );
    let mut m = [0u8; 7];
    std::fs::File::open(&bc.file)
        .unwrap()
        .read_exact_at(&mut m, (1 << 40) - 7)
        .unwrap();
    assert_eq!(&m, b"BIGMARK");

    c.delete_clone("big1").unwrap();
    assert!(!bc.file.exists());
    drop(srv);
}

#[test]
fn full_copy_fallback_on_tmpfs_warns() {
    require_root();
    // tmpfs has no FICLONE.
    let tmp = TempDir::new_in(std::path::Path::new("/dev/shm"), "fallback");
    let data = tmp.path().join("data");
    let srv = Server::start(&data, "loop");
    let c = srv.client();
    let src = tmp.path().join("src.img");
    make_image(&src, 256 << 20, b"FALLBACK");
    let g = c
        .import_gold(&ImportGold {
            name: "g".into(),
            source: src,
            point_in_time: None,
        })
        .unwrap();
    assert_eq!(g.copy_mode, CopyMode::FullCopy);
    let cl = c
        .create_clone(&CreateClone {
            name: "c".into(),
            gold: "g".into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
    assert_eq!(cl.copy_mode, CopyMode::FullCopy);
    let w = cl.warning.clone().expect("full copy must carry a warning");
    assert!(w.contains("not thin") && w.contains("reflink"), "{w}");
    // The warning is kept: GET shows it too.
    assert_eq!(c.get_clone("c").unwrap().warning, Some(w));
    assert!(std::fs::read(&cl.file).unwrap() == std::fs::read(&g.file).unwrap());
    // Sparse-aware: 3 small markers, not 256 MiB.
    use std::os::unix::fs::MetadataExt;
    let used = std::fs::metadata(&cl.file).unwrap().blocks() * 512;
    assert!(used < 8 << 20, "full copy not sparse: {used} bytes");
}
