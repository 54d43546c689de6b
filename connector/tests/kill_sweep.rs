//! A SIGKILL at any journal boundary leaves nothing behind once
//! `goldmount recover` has run: no mount, no loop device of the image, no
//! volume record — and another volume of the same gold is untouched.
//!
//! The engine's test hook `GOLDMOUNT_TEST_KILL_AT=N` makes the goldmount
//! process SIGKILL itself at its N-th journal boundary (two per step: once
//! the step is recorded as pending, and once it is taken but before it is
//! recorded done; counted from 1 across the process). The sweep tries
//! N = 1, 2, … until a run finishes; it must have seen at least ten kills,
//! so an engine without the hook fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{gold_disk, golddisk, loops_backed_by, mount_lines_under, sparse_copy, Env};

const HOOK: &str = "GOLDMOUNT_TEST_KILL_AT";
/// Fewer kills than this means the hook is missing (the gold disk's mount
/// has far more steps: a whole-disk loop, three offset loops, directories,
/// a staging mount and three mounts).
const MIN_KILLS: usize = 10;
/// A sweep that goes on past this many boundaries never finishes.
const MAX_BOUNDARY: usize = 400;
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The sweeps run one at a time: each builds a gold disk, and building one
/// (a loop mount of its root XFS) fails while another test's copy of the
/// gold, with the same XFS UUID, is mounted.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The gold disk as `swept.img` and a copy mounted as volume `keep`.
fn setup(env: &Env) -> std::path::PathBuf {
    let gold = gold_disk(env.path());
    let keep = env.path().join("keep.img");
    sparse_copy(&gold, &keep);
    env.mount_json(&keep, "keep", &[]);
    let img = env.path().join("swept.img");
    fs::rename(&gold, &img).unwrap();
    img
}

/// After recovery: nothing of `volume` is left, and `keep` still serves
/// the gold's files.
fn assert_nothing_left(env: &Env, img: &Path, volume: &str, when: &str) {
    let keep = env.root().join("keep");
    let stray: Vec<String> = mount_lines_under(env.path())
        .into_iter()
        .filter(|m| !m.target.starts_with(&keep))
        .map(|m| m.target.display().to_string())
        .collect();
    assert!(stray.is_empty(), "{when}: mounts left: {stray:?}");
    assert_eq!(
        loops_backed_by(img),
        0,
        "{when}: loop devices of the image left"
    );
    assert!(
        !env.listed().iter().any(|v| v == volume),
        "{when}: {volume} is still listed"
    );
    assert!(
        !env.root().join(volume).exists(),
        "{when}: the volume directory is left"
    );
    for (rel, content) in golddisk::FILES {
        assert_eq!(
            fs::read_to_string(keep.join(rel))
                .unwrap_or_else(|e| panic!("{when}: keep/{rel} is not readable: {e}")),
            *content,
            "{when}: keep/{rel}"
        );
    }
}

/// Runs `goldmount ARGS` with the hook at every boundary until a run exits
/// 0; before each hooked run `before()` prepares, after each kill
/// `goldmount recover` must leave nothing behind. Each run after a
/// recovery is itself the proof that the volume can be mounted (or
/// unmounted) again: it only dies at boundary N+1 if it got past every
/// step up to N, and the last run finishes.
fn sweep(env: &Env, img: &Path, args: &[&str], before: &dyn Fn()) -> usize {
    let started = Instant::now();
    for n in 1..=MAX_BOUNDARY {
        before();
        let at = n.to_string();
        let r = env.run_with(args, &[(HOOK, &at)], RUN_TIMEOUT);
        if r.status.success() {
            let kills = n - 1;
            eprintln!(
                "{args:?}: {kills} kills, finished at {HOOK}={n}, {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return kills;
        }
        assert_eq!(
            r.signal(),
            Some(9),
            "{args:?} with {HOOK}={n} must die of SIGKILL at that boundary; it ended with \
             exit {:?}, timed out {}: {}",
            r.code(),
            r.timed_out,
            r.stderr
        );
        let rec = env.run(&["recover", "--json"]);
        assert!(
            rec.status.success(),
            "goldmount recover after a kill at boundary {n} failed (exit {:?}): {}",
            rec.code(),
            rec.stderr
        );
        assert_nothing_left(env, img, "swept", &format!("after a kill at boundary {n}"));
    }
    panic!("{args:?} did not finish within {MAX_BOUNDARY} journal boundaries");
}

#[test]
fn sigkill_at_every_mount_step_is_rolled_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let img = setup(&env);
    let path = img.to_str().unwrap();
    let kills = sweep(
        &env,
        &img,
        &["mount", "--device", path, "--volume", "swept", "--json"],
        &|| {},
    );
    // The run that finished mounted the whole tree; it goes away cleanly.
    assert_eq!(
        fs::read_to_string(env.root().join("swept/srv/data/records.csv")).unwrap(),
        golddisk::FILES[2].1
    );
    env.gm_ok(&["unmount", "--volume", "swept"]);
    assert_nothing_left(&env, &img, "swept", "after the sweep");
    assert!(
        kills >= MIN_KILLS,
        "the mount sweep saw {kills} kills: {HOOK} is not honoured (expected at least {MIN_KILLS})"
    );
}

#[test]
fn sigkill_at_every_unmount_step_is_finished_by_recover() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let img = setup(&env);
    let kills = sweep(
        &env,
        &img,
        &["unmount", "--volume", "swept", "--json"],
        &|| {
            env.mount_json(&img, "swept", &[]);
        },
    );
    assert_nothing_left(&env, &img, "swept", "after the sweep");
    assert!(
        kills >= MIN_KILLS,
        "the unmount sweep saw {kills} kills: {HOOK} is not honoured (expected at least {MIN_KILLS})"
    );
}
