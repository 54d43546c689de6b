//! Publications: a mounted volume's whole tree (the original host's `/`,
//! `/boot`, `/srv/data`) bound at a consumer's path, reference-counted per
//! consumer id, read-only in every submount when asked, refused at unsafe
//! targets, and in the way of an unmount until it is taken down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{gold_disk, mount_lines_under, Env};

fn publish(env: &Env, target: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "publish",
        "--volume",
        "g",
        "--target",
        target.to_str().unwrap(),
    ];
    args.extend(extra);
    env.run(&args)
}

#[test]
fn the_whole_tree_is_published_counted_and_taken_down() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    env.mount_json(&gold, "g", &[]);
    let rw = env.path().join("consumers/a/data");
    let ro = env.path().join("consumers/b");

    // Read-write: the fstab tree's submounts come along.
    let r = publish(&env, &rw, &["--id", "c1", "--json"]).ok();
    assert_eq!(r.json()["refs"], 1);
    assert_eq!(
        fs::read_to_string(rw.join("srv/data/records.csv")).unwrap(),
        "id,name\n1,gold\n"
    );
    assert!(rw.join("boot/vmlinuz").exists());
    fs::write(rw.join("srv/data/through-publication"), "x").unwrap();
    assert!(env.root().join("g/srv/data/through-publication").exists());
    // The same consumer again: one more reference, no second bind.
    let before = mount_lines_under(&rw).len();
    assert_eq!(
        publish(&env, &rw, &["--id", "c1", "--json"]).ok().json()["refs"],
        2
    );
    assert_eq!(mount_lines_under(&rw).len(), before);
    assert_eq!(before, 3, "root, /boot and /srv/data");
    // Another consumer at the same target is a conflict.
    assert_eq!(publish(&env, &rw, &["--id", "c2"]).code(), Some(3));

    // Read-only: every submount, not only the top.
    publish(&env, &ro, &["--id", "c3", "--read-only"]).ok();
    for sub in ["", "boot", "srv/data"] {
        let e = fs::write(ro.join(sub).join("nope"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{sub}: {e}"); // EROFS
    }
    assert!(mount_lines_under(&ro)
        .iter()
        .all(|m| m.mount_options.contains("ro")
            && m.mount_options.contains("nosuid")
            && m.mount_options.contains("nodev")));

    // Published volumes are not unmounted from under their consumers.
    let r = env.run(&["unmount", "--volume", "g"]);
    assert_eq!(r.code(), Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("published"), "{}", r.stderr);

    // Unpublish drops one reference at a time; at zero the bind goes.
    env.run(&["unpublish", "--volume", "g", "--id", "c1"]).ok();
    assert_eq!(mount_lines_under(&rw).len(), 3);
    env.run(&["unpublish", "--volume", "g", "--id", "c1"]).ok();
    assert_eq!(mount_lines_under(&rw).len(), 0);
    assert!(
        !env.path().join("consumers/a").exists(),
        "the dirs it made are removed"
    );
    env.run(&["unpublish", "--volume", "g", "--id", "c1"]).ok();
    // A forced unmount takes the remaining publication down too.
    env.run(&["unmount", "--volume", "g", "--force"]).ok();
    assert_eq!(mount_lines_under(&ro).len(), 0);
    assert_eq!(mount_lines_under(env.path()).len(), 0);
}

#[test]
fn unsafe_targets_are_refused_and_change_nothing() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    env.mount_json(&gold, "g", &[]);
    let link = env.path().join("link");
    std::os::unix::fs::symlink("/tmp", &link).unwrap();
    let bad = [
        "relative/path".to_string(),
        "/".to_string(),
        "/etc/goldmount-test".to_string(),
        "/proc/x".to_string(),
        format!("{}/../escape", env.path().display()),
        format!("{}/x", link.display()),
        env.root().join("g/inside").display().to_string(),
    ];
    for t in &bad {
        let r = env.run(&["publish", "--volume", "g", "--target", t]);
        assert_eq!(r.code(), Some(2), "{t}: {}", r.stderr);
    }
    let r = env.run(&[
        "publish",
        "--volume",
        "nosuch",
        "--target",
        "/mnt/gm-test-x",
    ]);
    assert_eq!(r.code(), Some(4), "{}", r.stderr);
    env.run(&["unmount", "--volume", "g"]).ok();
}

/// A publish that died between recording the publication and recording its
/// bind mounts leaves a publication without mount ids while the bind is
/// there: unpublish recognises the bind of the volume's own tree at the
/// target and takes it down (it refused as "not ours" for ever before).
#[test]
fn a_publication_whose_mounts_were_never_recorded_can_be_taken_down() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    env.mount_json(&gold, "g", &[]);
    let at = env.path().join("consumer");
    let t = at.to_str().unwrap();
    env.run(&["publish", "--volume", "g", "--target", t, "--id", "c"])
        .ok();
    let bound = mount_lines_under(&at).len();
    assert!(bound >= 1);
    let store = connector::state::StateStore::open(&env.path().join("state.redb")).unwrap();
    let mut rec = store.get("g").unwrap().unwrap();
    rec.publications[0].mount_ids.clear();
    store.put(&rec).unwrap();
    env.run(&["unpublish", "--volume", "g", "--id", "c"]).ok();
    assert_eq!(mount_lines_under(&at).len(), 0, "the bind is taken down");
    // Something else mounted at a target is never taken for ours.
    std::fs::create_dir_all(&at).unwrap();
    env.run(&["publish", "--volume", "g", "--target", t, "--id", "c"])
        .ok();
    let mut rec = store.get("g").unwrap().unwrap();
    rec.publications[0].mount_ids.clear();
    store.put(&rec).unwrap();
    common::tool("umount", &["-R", t]);
    common::tool("mount", &["-t", "tmpfs", "-o", "size=1m", "other", t]);
    let r = env.run(&["unpublish", "--volume", "g", "--id", "c"]);
    assert_ne!(
        r.code(),
        Some(0),
        "a foreign mount at the target is not ours"
    );
    assert_eq!(mount_lines_under(&at).len(), 1, "the foreign mount stays");
    common::tool("umount", &[t]);
    env.run(&["unpublish", "--volume", "g", "--id", "c"]).ok();
    env.run(&["unmount", "--volume", "g"]).ok();
}

/// A run that died between recording a publication and recording its bind
/// leaves a publication without mount ids. The same publish again must not
/// answer a tree that is not there: with the bind present it records it,
/// with the bind absent it binds now — once, still one reference.
#[test]
fn repeating_an_interrupted_publish_finishes_it() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    env.mount_json(&gold, "g", &[]);
    let at = env.path().join("consumer");
    let t = at.to_str().unwrap();
    let store = connector::state::StateStore::open(&env.path().join("state.redb")).unwrap();
    let interrupt = || {
        let mut rec = store.get("g").unwrap().unwrap();
        rec.publications[0].mount_ids.clear();
        store.put(&rec).unwrap();
    };
    let publish_c = || env.run(&["publish", "--volume", "g", "--target", t, "--id", "c"]);
    publish_c().ok();
    let bound = mount_lines_under(&at).len();
    assert!(bound >= 3, "the tree is bound: {bound}");

    // Killed after the bind, before its mounts were recorded.
    interrupt();
    publish_c().ok();
    let rec = store.get("g").unwrap().unwrap();
    assert_eq!(rec.publications[0].refs, 1, "still one reference");
    assert!(!rec.publications[0].mount_ids.is_empty(), "bind recorded");
    assert_eq!(mount_lines_under(&at).len(), bound, "not bound twice");

    // Killed before the bind: the record says published, nothing is there.
    common::tool("umount", &["-R", t]);
    interrupt();
    assert_eq!(mount_lines_under(&at).len(), 0);
    publish_c().ok();
    let rec = store.get("g").unwrap().unwrap();
    assert_eq!(rec.publications[0].refs, 1, "still one reference");
    assert_eq!(mount_lines_under(&at).len(), bound, "bound now");
    assert!(at.join("etc/fstab").exists(), "the tree is there");

    env.run(&["unpublish", "--volume", "g", "--id", "c"]).ok();
    assert_eq!(mount_lines_under(&at).len(), 0);
    env.run(&["unmount", "--volume", "g"]).ok();
}

/// Recovery (`goldmount recover`, and goldmountd at start) takes down a
/// publication a killed run left half made — bound or not — and keeps the
/// volume mounted: all or nothing for the publication, the volume untouched.
#[test]
fn recovery_takes_down_an_interrupted_publication_and_keeps_the_volume() {
    let env = Env::new();
    let gold = gold_disk(env.path());
    env.mount_json(&gold, "g", &[]);
    let at = env.path().join("consumer");
    let t = at.to_str().unwrap();
    env.run(&["publish", "--volume", "g", "--target", t, "--id", "c"])
        .ok();
    assert!(!mount_lines_under(&at).is_empty());
    let volume_mounts = mount_lines_under(&env.path().join("volumes/g")).len();
    let store = connector::state::StateStore::open(&env.path().join("state.redb")).unwrap();
    let mut rec = store.get("g").unwrap().unwrap();
    rec.publications[0].mount_ids.clear();
    store.put(&rec).unwrap();
    let out = env.run(&["recover", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["unpublished"],
        serde_json::json!([format!("g at {t}")]),
        "{report}"
    );
    assert_eq!(mount_lines_under(&at).len(), 0, "the bind is taken down");
    let rec = store.get("g").unwrap().unwrap();
    assert!(rec.publications.is_empty(), "{:?}", rec.publications);
    assert_eq!(
        mount_lines_under(&env.path().join("volumes/g")).len(),
        volume_mounts,
        "the volume stays mounted"
    );
    let again = env.run(&["recover", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["unpublished"], serde_json::json!([]), "{report}");
    env.run(&["unmount", "--volume", "g"]).ok();
}
