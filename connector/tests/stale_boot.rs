//! A record from before the host restarted describes mounts, loop devices
//! and sessions that are gone — and whose ids the kernel hands out again.
//! Recovery drops such a record without undoing any of its steps (an undo
//! by a reused mount id or loop number could hit somebody else's), and a
//! repeated mount request is not answered from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hostile, mounts_under, Env};
use connector::state::StateStore;

#[test]
fn a_record_from_an_earlier_boot_is_dropped_without_touching_anything() {
    let env = Env::new();
    let img = env.path().join("c.img");
    hostile::ext4(&img, 16, "stale", &hostile::uuid(3), None, &[]);
    let m = env.mount_json(&img, "old", &[]);
    let mounted = mounts_under(&env.root().join("old"));
    assert!(mounted > 0, "{m}");

    // Pretend the host restarted: the record's boot id is another boot's.
    let store = StateStore::open(&env.path().join("state.redb")).unwrap();
    let mut rec = store.get("old").unwrap().unwrap();
    assert!(rec.boot_id.is_some(), "records carry the boot id");
    rec.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
    store.put(&rec).unwrap();

    let r: serde_json::Value = serde_json::from_str(&env.gm_ok(&["recover", "--json"])).unwrap();
    assert_eq!(r["stale"], serde_json::json!(["old"]), "{r}");
    assert!(env.listed().is_empty(), "the stale record is gone");
    // Its steps were not undone: in this test the mounts really are still
    // there (after a real restart they would not be), and recovery must not
    // have unmounted what its ids now name.
    assert_eq!(
        mounts_under(&env.root().join("old")),
        mounted,
        "recovery touched a mount of a stale record"
    );
    // Env's drop cleans the leftovers up.
}
