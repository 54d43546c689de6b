//! The API as a hostile caller sees it: authentication, the import policy
//! (directories, symlinks, FIFOs, hard links, devices), private gold copies,
//! imports that do not stall other calls, unpresent without a host's
//! confirmation, and the host identity endpoints the connector uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or("<no code>")
}

fn gold_files(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("gold"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_v1_call_needs_the_token() {
    let tmp = TempDir::new_in(Path::new("/dev/shm"), "auth");
    let data = tmp.path().join("data");
    let srv = Server::start(&data, "loop");
    // Generated on first start: 64 hex digits, mode 0600.
    assert_eq!(srv.token.len(), 64, "{}", srv.token);
    assert!(srv.token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(srv.token_file()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        srv.log_text().contains(srv.token_file().to_str().unwrap()),
        "the token file's path is logged"
    );

    let body = json!({"name":"h1","iqns":["iqn.2026-11.t:h1"]}).to_string();
    let wrong = format!("Bearer {}", "0".repeat(64));
    let almost = format!("Bearer {}x", &srv.token[..63]);
    let basic = format!("Basic {}", srv.token);
    for (method, path, b) in [
        ("GET", "/v1/hosts", None),
        ("POST", "/v1/hosts", Some(body.as_str())),
        ("GET", "/v1/clones", None),
        ("DELETE", "/v1/presentations/c1", None),
        ("GET", "/v1/no-such-route", None),
    ] {
        for auth in [
            None,
            Some(wrong.as_str()),
            Some(almost.as_str()),
            Some(basic.as_str()),
            Some("Bearer"),
        ] {
            let (s, v) = srv.req_auth(method, path, b, auth);
            assert_eq!(
                (s, code(&v)),
                (401, "unauthorized"),
                "{method} {path} {auth:?}: {v}"
            );
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("Authorization: Bearer"),
                "{v}"
            );
        }
    }
    // Nothing was registered by the refused POSTs.
    let (s, v) = srv.req("GET", "/v1/hosts", None);
    assert_eq!((s, v), (200, json!([])));
    // The open endpoints stay open.
    let (s, v) = srv.req_auth("GET", "/healthz", None, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let r = ureq::get(&format!("{}/openapi.yaml", srv.url))
        .call()
        .unwrap();
    let text = r.into_string().unwrap();
    assert!(text.contains("bearerAuth"), "openapi documents the scheme");
    // Lower-case scheme is accepted (RFC 7235: case-insensitive).
    let (s, _) = srv.req_auth(
        "GET",
        "/v1/hosts",
        None,
        Some(&format!("bearer {}", srv.token)),
    );
    assert_eq!(s, 200);

    // A restart keeps the token.
    let before = srv.token.clone();
    let mut srv = srv;
    srv.restart();
    assert_eq!(srv.token, before);
}

#[test]
fn token_file_and_plain_http_rules_at_start() {
    let tmp = TempDir::new_in(Path::new("/dev/shm"), "startrules");
    let bin = env!("CARGO_BIN_EXE_goldmount-appliance");
    let data = tmp.path().join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args([
                "serve",
                "--data-dir",
                data.to_str().unwrap(),
                "--backend",
                "loop",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Plain HTTP on a non-loopback address: refused before listening.
    let (ok, err) = run(&["--listen", "0.0.0.0:0"]);
    assert!(!ok && err.contains("--tls-cert"), "{err}");
    // A named token file must exist and be private.
    let tf = tmp.path().join("token");
    let (ok, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains(tf.to_str().unwrap()), "{err}");
    std::fs::write(&tf, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    // With the file fixed, the server uses it (and generates nothing).
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let srv = Server::start_with(&data, "loop", &["--token-file", tf.to_str().unwrap()]);
    assert!(!data.join("api-token").exists());
    let (s, _) = srv.req_auth(
        "GET",
        "/v1/hosts",
        None,
        Some("Bearer 0123456789abcdef0123456789abcdef"),
    );
    assert_eq!(s, 200);
}

#[test]
fn https_with_the_token_and_the_ca() {
    let tmp = TempDir::new_in(Path::new("/dev/shm"), "https");
    let pki = pki::init_dev_pki(
        &tmp.path().join("tls"),
        &pki::DevPkiOptions {
            hostname: Some("appliance.test".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let data = tmp.path().join("data");
    let srv = Server::start_tls(
        &data,
        "loop",
        &[
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
        ],
        &pki.ca_cert,
    );
    let url = srv.url.clone();
    assert!(url.starts_with("https://"));
    let c = appliance::client::Client::new(&url)
        .with_token(&srv.token)
        .with_ca_file(&pki.ca_cert)
        .unwrap();
    assert_eq!(c.list_hosts().unwrap(), vec![]);
    // The right CA but no token: 401 over TLS.
    let anon = appliance::client::Client::new(&url)
        .with_ca_file(&pki.ca_cert)
        .unwrap();
    match anon.list_hosts() {
        Err(appliance::client::ClientError::Api { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    // Plain HTTP to the TLS port gets no API answer.
    let plain = url.replace("https://", "http://");
    assert!(ureq::get(&format!("{plain}/healthz")).call().is_err());
    // A client that does not trust the CA is refused in the handshake.
    let other =
        pki::init_dev_pki(&tmp.path().join("other"), &pki::DevPkiOptions::default()).unwrap();
    let stranger = appliance::client::Client::new(&url)
        .with_token(&srv.token)
        .with_ca_file(&other.ca_cert)
        .unwrap();
    match stranger.list_hosts() {
        Err(appliance::client::ClientError::Transport { message, .. }) => {
            assert!(message.contains("TLS handshake"), "{message}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // The CLI over https: needs --ca.
    let bin = env!("CARGO_BIN_EXE_goldmount-appliance");
    let out = std::process::Command::new(bin)
        .args(["host", "list", "--server", &url, "--token-file"])
        .arg(srv.token_file())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca"), "{err}");
    let out = std::process::Command::new(bin)
        .args(["host", "list", "--server", &url, "--token-file"])
        .arg(srv.token_file())
        .arg("--ca")
        .arg(&pki.ca_cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn imports_only_from_allowed_places_and_never_world_readable() {
    require_root();
    let tmp = TempDir::new("import");
    let allowed = tmp.path().join("images");
    std::fs::create_dir_all(&allowed).unwrap();
    let outside = TempDir::new("import-outside");
    let data = tmp.path().join("data");
    let srv = Server::start_with(&data, "loop", &["--import-from", allowed.to_str().unwrap()]);
    let import = |name: &str, source: &Path| {
        srv.req(
            "POST",
            "/v1/gold-copies",
            Some(&json!({"name": name, "source": source}).to_string()),
        )
    };

    // A root-only file: as an image it would come back world-readable.
    let secret = outside.path().join("secret.img");
    make_image(&secret, 1 << 20, b"SECRET");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = allowed.join("shadow.img");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let link2 = allowed.join("secret-link.img");
    std::os::unix::fs::symlink(&secret, &link2).unwrap();
    let dirlink = allowed.join("etc");
    std::os::unix::fs::symlink("/etc", &dirlink).unwrap();
    let fifo = allowed.join("pipe.img");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    let hard = allowed.join("hard.img");
    let hard_src = allowed.join("hard-src.img");
    make_image(&hard_src, 1 << 20, b"HARD");
    std::fs::hard_link(&hard_src, &hard).unwrap();
    let subdir = allowed.join("sub");
    std::fs::create_dir(&subdir).unwrap();

    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        ("/etc/shadow".into(), "not beneath"),
        ("/dev/vda".into(), "not beneath"),
        (secret.clone(), "not beneath"),
        (allowed.join("../import-outside/secret.img"), "not beneath"),
        ("images/x.img".into(), "absolute"),
        (link.clone(), "symbolic link"),
        (link2.clone(), "symbolic link"),
        (dirlink.join("shadow"), "symbolic link"),
        (fifo.clone(), "FIFO"),
        (hard.clone(), "hard links"),
        (subdir.clone(), "directory"),
    ];
    for (source, why) in &cases {
        let t = Instant::now();
        let (s, v) = import("stolen", source);
        assert_eq!(
            (s, code(&v)),
            (403, "forbidden"),
            "{}: {v}",
            source.display()
        );
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(why), "{}: {msg}", source.display());
        assert!(
            msg.contains(allowed.to_str().unwrap()),
            "the answer names the allowed directory: {msg}"
        );
        // The FIFO is never opened for reading, so nothing waits for a writer.
        assert!(t.elapsed() < Duration::from_secs(5), "{}", source.display());
    }
    let (s, v) = srv.req("GET", "/v1/gold-copies", None);
    assert_eq!((s, v), (200, json!([])), "nothing imported");
    assert!(gold_files(&data).is_empty(), "{:?}", gold_files(&data));

    // An allowed file: imported, and private.
    let good = allowed.join("sub/good.img");
    make_image(&good, 4 << 20, b"GOODMARK");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (s, g) = import("good", &good);
    assert_eq!(s, 201, "{g}");
    assert_eq!(g["source"], good.to_str().unwrap());
    let meta = std::fs::metadata(g["file"].as_str().unwrap()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o400, "gold copy mode");
    assert_eq!(
        std::fs::read(g["file"].as_str().unwrap()).unwrap(),
        std::fs::read(&good).unwrap()
    );
    let (s, c) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c1","gold":"good"}"#));
    assert_eq!(s, 201, "{c}");
    let meta = std::fs::metadata(c["file"].as_str().unwrap()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "clone mode");
    assert_eq!(gold_files(&data), vec!["good.img".to_string()]);
}

/// An import's copy runs outside the appliance's lock: other calls answer
/// while it runs, a second import of the same name is told it is in
/// progress, and the first one completes.
#[test]
fn a_long_import_does_not_block_other_calls() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("slowimport");
    // A block device has no SEEK_DATA: every byte of a 256 MiB sparse image
    // behind a loop device is read and checked for zeros, which takes
    // seconds in a debug build.
    let img = tmp.path().join("big.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let dev = run("losetup", &["--find", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _d = Detach(dev.clone());
    let data = tmp.path().join("data");
    let srv = Server::start_with(&data, "loop", &["--allow-device", &dev]);
    let body = json!({"name": "big", "source": dev}).to_string();
    let url = srv.url.clone();
    let auth = format!("Bearer {}", srv.token);
    let (tx, rx) = std::sync::mpsc::channel();
    let importer = {
        let body = body.clone();
        let auth = auth.clone();
        std::thread::spawn(move || {
            let r = ureq::post(&format!("{url}/v1/gold-copies"))
                .set("Authorization", &auth)
                .set("Content-Type", "application/json")
                .send_string(&body);
            let _ = tx.send(Instant::now());
            r.map(|r| r.status()).unwrap_or_else(|e| match e {
                ureq::Error::Status(s, _) => s,
                e => panic!("{e}"),
            })
        })
    };
    // Wait until the copy has started (its partial file exists).
    let partial = data.join("gold/big.partial");
    let t0 = Instant::now();
    while !partial.exists() {
        assert!(
            rx.try_recv().is_err(),
            "the import finished before it could be observed"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    let (s, v) = srv.req("GET", "/v1/hosts", None);
    let answered = Instant::now();
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = srv.req("POST", "/v1/gold-copies", Some(&body));
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("being created"),
        "{v}"
    );
    let (s, v) = srv.req("GET", "/v1/gold-copies", None);
    assert_eq!((s, v), (200, json!([])), "not listed before it is complete");
    assert_eq!(importer.join().unwrap(), 201);
    let finished = rx.recv().unwrap();
    eprintln!(
        "GET /v1/hosts answered in {:?} while the import ran; the import finished {:?} later",
        answered - asked,
        finished.saturating_duration_since(answered)
    );
    assert!(
        answered < finished,
        "GET /v1/hosts answered only after the import finished"
    );
    assert!(!partial.exists());
    let (s, v) = srv.req("POST", "/v1/gold-copies", Some(&body));
    assert_eq!((s, v["name"].as_str()), (200, Some("big")), "{v}");
}

/// A copy that fails (the data directory's file system is full) leaves no
/// file and no reservation: the same name imports fine afterwards.
#[test]
fn a_failed_import_leaves_nothing_behind() {
    require_root();
    let tmp = TempDir::new("failimport");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=16m",
            "gm-appl-full",
            data.to_str().unwrap(),
        ],
    );
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(data.clone());
    let srv = Server::start(&data, "loop");
    // 32 MiB of real data does not fit into 16 MiB.
    let big = tmp.path().join("big.img");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&big).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for i in 0..32u64 {
            f.write_all_at(&chunk, i << 20).unwrap();
        }
    }
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name": "g", "source": big}).to_string()),
    );
    assert_eq!((s, code(&v)), (500, "internal"), "{v}");
    assert!(gold_files(&data).is_empty(), "{:?}", gold_files(&data));
    let small = tmp.path().join("small.img");
    make_image(&small, 1 << 20, b"SMALL");
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name": "g", "source": small}).to_string()),
    );
    assert_eq!(s, 201, "{v}");
}

#[test]
fn unpresent_needs_the_hosts_confirmation_or_force() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("unpresent");
    let pki = pki::init_dev_pki(&tmp.path().join("tls"), &pki::DevPkiOptions::default()).unwrap();
    let data = tmp.path().join("data");
    let srv = Server::start_with(
        &data,
        "loop",
        &[
            "--client-cert",
            pki.client_cert.to_str().unwrap(),
            "--client-key",
            pki.client_key.to_str().unwrap(),
        ],
    );
    let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
    let src = tmp.path().join("g.img");
    make_image(&src, 4 << 20, b"G");
    let c = srv.client();
    c.import_gold(&appliance::model::ImportGold {
        name: "g".into(),
        source: src,
        point_in_time: None,
    })
    .unwrap();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("https://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    for (host, iqn, callback) in [
        ("plain", "iqn.2026-11.t:plain", None),
        ("gone", "iqn.2026-11.t:gone", Some(dead_url.clone())),
    ] {
        let (s, v) = srv.req(
            "PUT",
            &format!("/v1/hosts/{host}"),
            Some(
                &json!({"iqns": [iqn], "callback_url": callback,
                        "callback_ca_pem": callback.as_ref().map(|_| ca.clone())})
                .to_string(),
            ),
        );
        assert_eq!(s, 201, "{v}");
        let clone = format!("c-{host}");
        let (s, _) = srv.req(
            "POST",
            "/v1/clones",
            Some(&json!({"name": clone, "gold": "g"}).to_string()),
        );
        assert_eq!(s, 201);
        let (s, p) = srv.req(
            "POST",
            "/v1/presentations",
            Some(&json!({"clone": clone, "host": host}).to_string()),
        );
        assert_eq!(s, 201, "{p}");
        let dev = p["device"].as_str().unwrap().to_string();
        let (s, v) = srv.req("DELETE", &format!("/v1/presentations/{clone}"), None);
        assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("cannot confirm") && msg.contains("force=true"),
            "{msg}"
        );
        match callback {
            None => assert!(msg.contains("no callback_url"), "{msg}"),
            Some(_) => assert!(msg.contains("unreachable"), "{msg}"),
        }
        // Still presented, device still attached; the clone cannot go.
        let (s, _) = srv.req("GET", &format!("/v1/presentations/{clone}"), None);
        assert_eq!(s, 200);
        assert!(Path::new(&format!(
            "/sys/block/{}/loop/backing_file",
            dev.trim_start_matches("/dev/")
        ))
        .exists());
        let (s, _) = srv.req("DELETE", &format!("/v1/clones/{clone}"), None);
        assert_eq!(s, 409);
        // Unknown query parameters are refused, not ignored.
        let (s, v) = srv.req(
            "DELETE",
            &format!("/v1/presentations/{clone}?forse=true"),
            None,
        );
        assert_eq!((s, code(&v)), (400, "bad_request"), "{v}");
        let (s, v) = srv.req(
            "DELETE",
            &format!("/v1/presentations/{clone}?force=true"),
            None,
        );
        assert_eq!(s, 204, "{v}");
        let (s, _) = srv.req("DELETE", &format!("/v1/clones/{clone}"), None);
        assert_eq!(s, 204);
    }
}

#[test]
fn put_host_and_find_by_identity() {
    let tmp = TempDir::new_in(Path::new("/dev/shm"), "puthost");
    let srv = Server::start(&tmp.path().join("data"), "loop");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let body = json!({"iqns": ["IQN.2026-11.t:H1"], "wwpns": ["0x21000024ff4c9a01"],
                      "callback_url": "https://h1:8443", "callback_ca_pem": pem})
    .to_string();
    let (s, created) = srv.req("PUT", "/v1/hosts/h1", Some(&body));
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "h1");
    assert_eq!(created["iqns"], json!(["iqn.2026-11.t:h1"]));
    assert_eq!(created["wwpns"], json!(["21:00:00:24:ff:4c:9a:01"]));
    // Idempotent: the same body again is 200 with the same record.
    let (s, again) = srv.req("PUT", "/v1/hosts/h1", Some(&body));
    assert_eq!((s, &again), (200, &created));
    // The name may be repeated in the body, not contradicted.
    let (s, v) = srv.req(
        "PUT",
        "/v1/hosts/h1",
        Some(&json!({"name": "h2", "iqns": ["iqn.2026-11.t:h1"]}).to_string()),
    );
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    // Validated like POST.
    for (bad, want) in [
        (r#"{"iqns":["host1"]}"#, (422, "invalid")),
        (r#"{}"#, (422, "invalid")),
        (
            r#"{"iqns":["iqn.2026-11.t:h1"],"callback_url":"http://h1"}"#,
            (422, "invalid"),
        ),
        (
            r#"{"iqns":["iqn.2026-11.t:h1"],"callback_ca_pem":"x"}"#,
            (422, "invalid"),
        ),
        (
            r#"{"iqns":["iqn.2026-11.t:h1"],"colour":"red"}"#,
            (400, "bad_request"),
        ),
        ("{not json", (400, "bad_request")),
    ] {
        let (s, v) = srv.req("PUT", "/v1/hosts/h1", Some(bad));
        assert_eq!((s, code(&v)), want, "{bad}: {v}");
    }
    let (s, v) = srv.req("PUT", "/v1/hosts/a%20b", Some(&body));
    assert_eq!((s, code(&v)), (400, "bad_name"), "{v}");
    // Nothing of that changed the record.
    let (s, v) = srv.req("GET", "/v1/hosts/h1", None);
    assert_eq!((s, &v), (200, &created));
    // Update: new IQN, new callback; created time kept.
    let (s, upd) = srv.req(
        "PUT",
        "/v1/hosts/h1",
        Some(
            &json!({"iqns": ["iqn.2026-11.t:h1-new"], "callback_url": "https://h1:9443",
                    "callback_ca_pem": pem})
            .to_string(),
        ),
    );
    assert_eq!(s, 200, "{upd}");
    assert_eq!(upd["iqns"], json!(["iqn.2026-11.t:h1-new"]));
    assert_eq!(upd["wwpns"], json!([]));
    assert_eq!(upd["callback_url"], "https://h1:9443");
    assert_eq!(upd["created"], created["created"]);
    // Another host cannot take h1's port.
    let (s, v) = srv.req(
        "PUT",
        "/v1/hosts/h2",
        Some(r#"{"iqns":["iqn.2026-11.t:H1-NEW"]}"#),
    );
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"h1\""), "{v}");
    let (s, _) = srv.req(
        "PUT",
        "/v1/hosts/h2",
        Some(r#"{"wwpns":["21:00:00:24:ff:4c:9a:02"]}"#),
    );
    assert_eq!(s, 201);

    // Find by identity, in any accepted spelling.
    let (s, v) = srv.req("GET", "/v1/hosts?iqn=IQN.2026-11.t%3AH1-New", None);
    assert_eq!((s, v.as_array().unwrap().len()), (200, 1), "{v}");
    assert_eq!(v[0]["name"], "h1");
    let (s, v) = srv.req("GET", "/v1/hosts?wwpn=0x21000024FF4C9A02", None);
    assert_eq!((s, v[0]["name"].as_str()), (200, Some("h2")), "{v}");
    let (s, v) = srv.req("GET", "/v1/hosts?iqn=iqn.2026-11.t:h1", None);
    assert_eq!((s, v), (200, json!([])), "the old IQN is gone");
    let (s, v) = srv.req("GET", "/v1/hosts?iqn=nonsense", None);
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    let (s, v) = srv.req("GET", "/v1/hosts?name=h1", None);
    assert_eq!((s, code(&v)), (400, "bad_request"), "{v}");
    let (s, v) = srv.req("GET", "/v1/hosts", None);
    assert_eq!((s, v.as_array().unwrap().len()), (200, 2));
    // Through the typed client too.
    let c = srv.client();
    assert_eq!(
        c.find_hosts_by_iqn("iqn.2026-11.t:h1-new").unwrap()[0].name,
        "h1"
    );
    assert_eq!(
        c.find_hosts_by_wwpn("21:00:00:24:ff:4c:9a:02").unwrap()[0].name,
        "h2"
    );
}

/// A host's ports cannot change while clones are presented to it (its
/// LUNs are mapped to the old ports); its callback can.
#[test]
fn put_host_refuses_port_changes_while_presented() {
    require_root();
    require_tool("losetup", "mount");
    let tmp = TempDir::new("putpresented");
    let srv = Server::start(&tmp.path().join("data"), "loop");
    let src = tmp.path().join("g.img");
    make_image(&src, 1 << 20, b"G");
    let (s, _) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name": "g", "source": src}).to_string()),
    );
    assert_eq!(s, 201);
    let (s, _) = srv.req(
        "PUT",
        "/v1/hosts/h",
        Some(r#"{"iqns":["iqn.2026-11.t:h"]}"#),
    );
    assert_eq!(s, 201);
    let (s, _) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c","gold":"g"}"#));
    assert_eq!(s, 201);
    let (s, _) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"c","host":"h"}"#),
    );
    assert_eq!(s, 201);
    let (s, v) = srv.req(
        "PUT",
        "/v1/hosts/h",
        Some(r#"{"iqns":["iqn.2026-11.t:other"]}"#),
    );
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"c\""), "{v}");
    let (s, v) = srv.req(
        "PUT",
        "/v1/hosts/h",
        Some(r#"{"iqns":["iqn.2026-11.t:h"],"callback_url":"https://h:8443"}"#),
    );
    assert_eq!(
        (s, v["callback_url"].as_str()),
        (200, Some("https://h:8443")),
        "{v}"
    );
}
