//! The CLI (direct data-dir mode, --server mode, the state-file lock),
//! gold import from a block device, and the iscsi backend's wiring on a host
//! without LIO (errors must be typed 500s that name configfs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use appliance::copy::CopyMode;
use appliance::model::ImportGold;
use common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_goldmount-appliance");

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_direct_then_server_and_lock() {
    let tmp = TempDir::new_in(std::path::Path::new("/dev/shm"), "cli");
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let img = tmp.path().join("g.img");
    make_image(&img, 4 << 20, b"CLIMARK");

    // Direct mode, no server.
    let (ok, out, err) = cli(&[
        "gold",
        "import",
        "g1",
        img.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    let g: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(g["name"], "g1");
    let (ok, out, err) = cli(&["gold", "list", "--json", "--data-dir", d]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (ok, out, _) = cli(&["gold", "list", "--data-dir", d]);
    assert!(ok && out.contains("g1") && out.contains("NAME"), "{out}");
    let (ok, _, err) = cli(&[
        "gold",
        "import",
        "bad/name",
        img.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert!(!ok && err.contains("bad gold copy name"), "{err}");

    // The server holds the state file: direct mode must say so, --server works.
    let srv = Server::start(&data, "loop");
    let tok = srv.token_file();
    let tok = tok.to_str().unwrap();
    let (ok, _, err) = cli(&["gold", "list", "--data-dir", d]);
    assert!(!ok, "direct mode opened a store the server holds");
    assert!(
        err.contains("already open") && err.contains("--server"),
        "{err}"
    );
    // Without a token (none given, and the data directory's is not
    // looked at because --data-dir is elsewhere) the CLI says what to pass.
    let (ok, _, err) = cli(&[
        "clone",
        "create",
        "c1",
        "--gold",
        "g1",
        "--server",
        &srv.url,
        "--data-dir",
        "/nonexistent",
    ]);
    assert!(!ok && err.contains("--token-file"), "{err}");
    // A wrong token: 401 from the server.
    let bad = tmp.path().join("bad-token");
    std::fs::write(&bad, "0123456789abcdef0123456789abcdef\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = cli(&[
        "clone",
        "create",
        "c1",
        "--gold",
        "g1",
        "--server",
        &srv.url,
        "--token-file",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("401"), "{err}");
    // The data directory's token is found by default.
    let (ok, out, err) = cli(&[
        "clone",
        "create",
        "c1",
        "--gold",
        "g1",
        "--server",
        &srv.url,
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: clone is a full copy"),
        "tmpfs clone must warn: {err}"
    );
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["copy_mode"], "full_copy");
    let (ok, out, err) = cli(&[
        "host",
        "register",
        "h1",
        "--iqn",
        "iqn.2026-11.test:cli",
        "--server",
        &srv.url,
        "--token-file",
        tok,
    ]);
    assert!(ok && out.contains("iqn.2026-11.test:cli"), "{err}");
    let (ok, out, err) = cli(&[
        "present",
        "c1",
        "--host",
        "h1",
        "--server",
        &srv.url,
        "--token-file",
        tok,
    ]);
    assert!(ok, "{err}");
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["transport"], "loop");
    let (ok, _, err) = cli(&[
        "clone",
        "delete",
        "c1",
        "--server",
        &srv.url,
        "--token-file",
        tok,
    ]);
    assert!(
        !ok && err.contains("409") && err.contains("unpresent"),
        "{err}"
    );
    // No connector to ask: refused, then forced.
    let (ok, _, err) = cli(&["unpresent", "c1", "--server", &srv.url, "--token-file", tok]);
    assert!(!ok && err.contains("409") && err.contains("force"), "{err}");
    let (ok, _, err) = cli(&[
        "unpresent",
        "c1",
        "--server",
        &srv.url,
        "--token-file",
        tok,
        "--force",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "clone",
        "delete",
        "c1",
        "--server",
        &srv.url,
        "--token-file",
        tok,
    ]);
    assert!(ok, "{err}");
    // Unknown method on a known path: JSON 405.
    let (s, v) = srv.req("PUT", "/v1/clones", Some("{}"));
    assert_eq!((s, v["code"].as_str()), (405, Some("bad_request")), "{v}");
}

#[test]
fn gold_import_from_block_device() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("dev");
    let img = tmp.path().join("disk.img");
    make_image(&img, 16 << 20, b"DEVMARK");
    let dev = run("losetup", &["--find", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _guard = Detach(dev.clone());
    let srv = Server::start_with(&tmp.path().join("data"), "loop", &["--allow-device", &dev]);
    let g = srv
        .client()
        .import_gold(&ImportGold {
            name: "from-dev".into(),
            source: dev.clone().into(),
            point_in_time: Some("snap1".into()),
        })
        .unwrap();
    assert_eq!((g.copy_mode, g.size), (CopyMode::FullCopy, 16 << 20));
    assert_eq!(g.source.to_str().unwrap(), dev);
    assert!(std::fs::read(&g.file).unwrap() == std::fs::read(&img).unwrap());
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&g.file).unwrap();
    assert!(meta.blocks() * 512 < 4 << 20, "device import not sparse");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o400,
        "gold copy must be read-only and private"
    );
    // Another block device (not listed) is refused.
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(r#"{"name":"other","source":"/dev/vda"}"#),
    );
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["error"].as_str().unwrap().contains(&dev), "{v}");
}

#[test]
fn iscsi_backend_without_lio_fails_loudly() {
    // This host's kernel has no target_core_mod: every LIO step must be a
    // typed 500 naming configfs, and the server must still serve.
    let tmp = TempDir::new_in(std::path::Path::new("/dev/shm"), "iscsi");
    let srv = Server::start_with(
        &tmp.path().join("data"),
        "iscsi",
        &[
            "--configfs-root",
            "/nonexistent/target",
            "--portal",
            "127.0.0.1:3260",
        ],
    );
    let (s, v) = srv.req("GET", "/healthz", None);
    assert_eq!((s, v["transport"].as_str()), (200, Some("iscsi")));
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"h1","iqns":["iqn.2026-11.test:h1"]}"#),
    );
    assert_eq!((s, v["code"].as_str()), (500, Some("internal")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("configfs"), "{v}");
    // A host with only WWPNs cannot get an iSCSI LUN: 422 before any LIO call.
    let img = tmp.path().join("g.img");
    make_image(&img, 1 << 20, b"X");
    let c = srv.client();
    c.import_gold(&ImportGold {
        name: "g".into(),
        source: img,
        point_in_time: None,
    })
    .unwrap();
    let (s, _) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c","gold":"g"}"#));
    assert_eq!(s, 201);
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"fc1","wwpns":["21:00:00:24:ff:4c:9a:01"]}"#),
    );
    // Nothing for LIO to do for a host without IQNs: it registers.
    assert_eq!(s, 201, "{v}");
    let (s, v) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"c","host":"fc1"}"#),
    );
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid")), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no iSCSI initiator"),
        "{v}"
    );
    assert_eq!(c.list_presentations().unwrap().len(), 0);
}
