//! One clone, one read-write claim: a clone's data is claimed by exactly one
//! volume, whichever path reaches it (the image file, a loop device of it,
//! two goldmount processes racing), read-only views included; the loser
//! gets exit code 3 naming the holder. And per-volume lock files do not
//! pile up in the run dir.
//!
//! Written against the engine's contract (exit codes 0/1/2/3/4/5); they
//! fail on the engine before the rewrite, which exits 1 for every error and
//! decides claims by path under per-volume locks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{hostile, loops_backed_by, mounts_under, tool, Env, Run};

/// A small whole-device ext4 image: the quickest clone to mount.
fn small_clone(env: &Env, name: &str) -> PathBuf {
    let img = env.path().join(name);
    hostile::ext4(&img, 16, "small", &hostile::uuid(7), None, &[]);
    img
}

/// Asserts `r` is a conflict (exit 3) whose message names `holder`, and
/// that `loser` got nothing.
fn assert_conflict(env: &Env, r: &Run, holder: &str, loser: &str, what: &str) {
    assert_eq!(
        r.code(),
        Some(3),
        "{what}: expected exit 3 (conflict), got {:?} / signal {:?}: {}",
        r.code(),
        r.signal(),
        r.stderr
    );
    assert!(
        r.stderr.contains(holder),
        "{what}: the refusal must name the holding volume {holder}: {}",
        r.stderr
    );
    assert!(
        !env.listed().contains(&loser.to_string()),
        "{what}: {loser} is listed after its refusal"
    );
    assert_eq!(
        mounts_under(&env.root().join(loser)),
        0,
        "{what}: {loser} has mounts"
    );
}

fn unmount_all_and_check(env: &Env, img: &Path, volumes: &[&str]) {
    for v in volumes {
        env.gm_ok(&["unmount", "--volume", v]);
    }
    assert_eq!(mounts_under(env.path()), 0, "mounts left");
    assert_eq!(loops_backed_by(img), 0, "loop devices left");
}

#[test]
fn two_concurrent_mounts_of_one_clone_exactly_one_wins() {
    let env = Env::new();
    let img = small_clone(&env, "race.img");
    let (a, b) = ("vol-a", "vol-b");
    for round in 1..=20 {
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| env.mount_run(&img, a, &[]));
            let tb = s.spawn(|| env.mount_run(&img, b, &[]));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let winners: Vec<&str> = [(a, &ra), (b, &rb)]
            .iter()
            .filter(|(_, r)| r.status.success())
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of two concurrent mounts of one clone must succeed; \
             {a}: {:?} {}; {b}: {:?} {}",
            ra.code(),
            ra.stderr,
            rb.code(),
            rb.stderr
        );
        let (winner, loser, lr) = if winners[0] == a {
            (a, b, &rb)
        } else {
            (b, a, &ra)
        };
        assert_conflict(&env, lr, winner, loser, &format!("round {round}"));
        unmount_all_and_check(&env, &img, &[winner]);
    }
}

#[test]
fn a_loop_device_of_a_held_image_is_the_same_clone() {
    let env = Env::new();
    let img = small_clone(&env, "held.img");
    env.mount_json(&img, "holder", &[]);
    let dev = tool("losetup", &["-f", "--show", img.to_str().unwrap()]);
    let dev = PathBuf::from(dev.trim());
    let r = env.mount_run(&dev, "other", &[]);
    assert_conflict(&env, &r, "holder", "other", "the image's own loop device");
    tool("losetup", &["-d", dev.to_str().unwrap()]);
    unmount_all_and_check(&env, &img, &["holder"]);
}

#[test]
fn the_same_image_under_a_second_volume_is_a_conflict() {
    let env = Env::new();
    let img = small_clone(&env, "held.img");
    env.mount_json(&img, "holder", &[]);
    let r = env.mount_run(&img, "other", &[]);
    assert_conflict(&env, &r, "holder", "other", "the same image path");
    unmount_all_and_check(&env, &img, &["holder"]);
}

#[test]
fn a_read_only_view_of_a_held_clone_is_refused() {
    let env = Env::new();
    let img = small_clone(&env, "held.img");
    env.mount_json(&img, "holder", &[]);
    let r = env.mount_run(&img, "viewer", &["--read-only"]);
    assert_conflict(&env, &r, "holder", "viewer", "a read-only view");
    unmount_all_and_check(&env, &img, &["holder"]);
}

#[test]
fn lock_files_do_not_pile_up() {
    let env = Env::new();
    let img = small_clone(&env, "locks.img");
    let names: Vec<String> = (1..=5).map(|i| format!("v{i}")).collect();
    for v in &names {
        env.mount_json(&img, v, &[]);
        env.gm_ok(&["unmount", "--volume", v]);
    }
    let lock_dir = env.run_dir().join("locks");
    let left: Vec<String> = std::fs::read_dir(&lock_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| names.iter().any(|v| f.contains(v.as_str())))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "lock files left in {} after every volume was unmounted: {left:?}",
        lock_dir.display()
    );
    assert_eq!(loops_backed_by(&img), 0);
}
