//! Loop presentation end to end, and restart persistence (kill -9, detach
//! the loop device behind the server's back, restart).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use appliance::model::{CreateClone, ImportGold, Present, Presented, RegisterHost};
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn backing_of(dev: &str) -> Option<String> {
    let name = Path::new(dev)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn loop_of(p: &appliance::model::Presentation) -> (String, String) {
    match &p.presented {
        Presented::Loop {
            device,
            backing_file,
        } => (device.clone(), backing_file.clone()),
        other => panic!("expected a loop presentation, got {other:?}"),
    }
}

#[test]
fn loop_present_restart_unpresent() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("loop");
    let data = tmp.path().join("data");
    let mut srv = Server::start(&data, "loop");
    let c = srv.client();
    let src = tmp.path().join("src.img");
    make_image(&src, 32 << 20, b"LOOPMARK");
    c.import_gold(&ImportGold {
        name: "g".into(),
        source: src,
        point_in_time: None,
    })
    .unwrap();
    let cl = c
        .create_clone(&CreateClone {
            name: "c1".into(),
            gold: "g".into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
    // Make the clone differ from the gold so we know which one we read.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cl.file)
        .unwrap()
        .write_all_at(b"CLONEONLY", 4096)
        .unwrap();
    c.register_host(&RegisterHost {
        name: "h1".into(),
        iqns: vec!["iqn.2026-11.test:h1".into()],
        ..Default::default()
    })
    .unwrap();

    let p = c
        .present(&Present {
            clone: "c1".into(),
            host: "h1".into(),
        })
        .unwrap();
    let (dev, backing) = loop_of(&p);
    let clone_file = std::fs::canonicalize(&cl.file).unwrap();
    assert_eq!(backing, clone_file.to_str().unwrap());
    assert_eq!(backing_of(&dev).as_deref(), Some(backing.as_str()));
    let mut buf = vec![0u8; 8192];
    std::fs::File::open(&dev)
        .unwrap()
        .read_exact_at(&mut buf, 0)
        .unwrap();
    assert_eq!(&buf[..8], b"LOOPMARK");
    assert_eq!(&buf[4096..4105], b"CLONEONLY");
    // Idempotent present: same device, 200.
    let (s, v) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"c1","host":"h1"}"#),
    );
    assert_eq!((s, v["device"].as_str()), (200, Some(dev.as_str())), "{v}");
    // Presenting to another host while presented: 409.
    c.register_host(&RegisterHost {
        name: "h2".into(),
        iqns: vec!["iqn.2026-11.test:h2".into()],
        ..Default::default()
    })
    .unwrap();
    let (s, v) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"c1","host":"h2"}"#),
    );
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    // Deleting a presented clone: 409, and nothing is removed.
    let (s, v) = srv.req("DELETE", "/v1/clones/c1", None);
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("h1"), "{v}");
    assert!(cl.file.exists());

    // Crash + restart with the loop device still there: same device.
    let hosts = c.list_hosts().unwrap();
    let golds = c.list_golds().unwrap();
    let clones = c.list_clones().unwrap();
    srv.restart();
    let c = srv.client();
    assert_eq!(c.list_hosts().unwrap(), hosts);
    assert_eq!(c.list_golds().unwrap(), golds);
    assert_eq!(c.list_clones().unwrap(), clones);
    let p2 = c.get_presentation("c1").unwrap();
    assert_eq!(loop_of(&p2).0, dev);

    // Crash, the loop device disappears, restart: re-attached.
    srv.kill();
    run("losetup", &["-d", &dev]);
    for _ in 0..50 {
        if backing_of(&dev).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(backing_of(&dev), None, "loop device did not detach");
    srv.restart();
    let c = srv.client();
    let p3 = c.get_presentation("c1").unwrap();
    let (dev3, backing3) = loop_of(&p3);
    assert_eq!(backing3, backing);
    assert_eq!(
        backing_of(&dev3).as_deref(),
        Some(backing.as_str()),
        "not re-attached"
    );
    let mut head = [0u8; 9];
    std::fs::File::open(&dev3)
        .unwrap()
        .read_exact_at(&mut head, 4096)
        .unwrap();
    assert_eq!(&head, b"CLONEONLY");
    assert_eq!(c.list_presentations().unwrap().len(), 1);

    // The host has no connector to ask: unpresent is refused until forced.
    let (s, v) = srv.req("DELETE", "/v1/presentations/c1", None);
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("force=true"), "{v}");
    assert_eq!(backing_of(&dev3).as_deref(), Some(backing.as_str()));
    // Forced, it detaches; then the clone can be deleted.
    c.unpresent_forced("c1").unwrap();
    assert_eq!(backing_of(&dev3), None, "loop device still attached");
    let (s, _) = srv.req("DELETE", "/v1/presentations/c1", None);
    assert_eq!(s, 404);
    c.delete_clone("c1").unwrap();
    assert!(!cl.file.exists());
    assert_eq!(c.list_clones().unwrap().len(), 0);
}

/// A loop detach the kernel defers because something has the device open
/// (udev's worker probing a fresh device does, for a moment) completes when
/// that opener closes; deleting the clone waits that moment out instead of
/// refusing. A device that stays open is still refused, and nothing is removed.
#[test]
fn a_deferred_detach_of_a_briefly_open_device_lets_the_clone_go() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("loop-defer");
    let data = tmp.path().join("data");
    let srv = Server::start(&data, "loop");
    let c = srv.client();
    let src = tmp.path().join("src.img");
    make_image(&src, 16 << 20, b"DEFERMARK");
    c.import_gold(&ImportGold {
        name: "g".into(),
        source: src,
        point_in_time: None,
    })
    .unwrap();
    c.register_host(&RegisterHost {
        name: "h1".into(),
        iqns: vec!["iqn.2026-11.test:h1".into()],
        ..Default::default()
    })
    .unwrap();
    for name in ["brief", "held"] {
        let cl = c
            .create_clone(&CreateClone {
                name: name.into(),
                gold: "g".into(),
                point_in_time: None,
                class: None,
            })
            .unwrap();
        let p = c
            .present(&Present {
                clone: name.into(),
                host: "h1".into(),
            })
            .unwrap();
        let (dev, _) = loop_of(&p);
        let opener = std::fs::File::open(&dev).unwrap();
        c.unpresent_forced(name).unwrap();
        assert!(
            backing_of(&dev).is_some(),
            "an open device's detach is deferred"
        );
        if name == "brief" {
            let closer = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(700));
                drop(opener);
            });
            c.delete_clone(name).unwrap();
            closer.join().unwrap();
            assert!(!cl.file.exists());
            assert_eq!(backing_of(&dev), None);
        } else {
            let (s, v) = srv.req("DELETE", &format!("/v1/clones/{name}"), None);
            assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
            assert!(v["error"].as_str().unwrap().contains(&dev), "{v}");
            assert!(cl.file.exists(), "a held clone's image stays");
            drop(opener);
            c.delete_clone(name).unwrap();
            assert!(!cl.file.exists());
        }
    }
    assert_eq!(c.list_clones().unwrap().len(), 0);
}
