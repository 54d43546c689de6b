//! The control API over the real engine: malformed requests are refused
//! with a JSON body and change nothing; a real loop-device mount through
//! the API is created, repeated idempotently, published and taken down;
//! a second request for a volume that is busy is answered at once; and
//! shutdown waits for an operation that is still running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ext4_image, loops_under, mounts_under, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn volumes(d: &Daemon) -> Value {
    let r = d.client().get(d.url("/v1/volumes")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Sends `body` to PUT /v1/volumes/`name`: status and JSON body.
async fn put(d: &Daemon, name: &str, body: &str) -> (StatusCode, Value) {
    let r = d
        .client()
        .put(d.url(&format!("/v1/volumes/{name}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_with_a_reason_and_change_nothing() {
    let d = Daemon::start().await;
    let img = d.path().join("disk.img");
    std::fs::write(&img, b"").unwrap();
    let dev = img.to_str().unwrap();
    let long = "x".repeat(65);
    let cases: Vec<(&str, String, &str)> = vec![
        ("v1", "{\"sources\": [".into(), "not valid JSON"),
        ("v1", "".into(), "empty"),
        ("v1", "[]".into(), "JSON object"),
        (
            "v1",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"colour":"red"}}"#),
            "colour",
        ),
        (
            "v1",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}","offset":4096}}]}}"#),
            "sources[0].offset",
        ),
        (
            "v1",
            format!(
                r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"options":{{"read_olny":true}}}}"#
            ),
            "options.read_olny",
        ),
        (
            "v1",
            r#"{"sources":[{"kind":"tape","path":"/dev/st0"}]}"#.into(),
            "tape",
        ),
        ("v1", r#"{"sources":"/dev/sda"}"#.into(), "sources"),
        (
            "bad%20name%21",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}]}}"#),
            "invalid volume name",
        ),
        (
            "a%2Fb",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}]}}"#),
            "invalid volume name",
        ),
        (
            &long,
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}]}}"#),
            "invalid volume name",
        ),
        (
            "v1",
            format!(
                r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"target":"mnt/relative"}}"#
            ),
            "absolute",
        ),
        (
            "v1",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"target":"/etc/clone"}}"#),
            "/etc",
        ),
        (
            "v1",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"target":"/mnt/../etc"}}"#),
            "..",
        ),
        (
            "v1",
            format!(r#"{{"sources":[{{"kind":"device","path":"{dev}"}}],"publication_id":"c1"}}"#),
            "without target",
        ),
        ("v1", r#"{"sources":[]}"#.into(), "no device"),
    ];
    for (name, body, says) in &cases {
        let (status, v) = put(&d, name, body).await;
        assert_eq!(status, 400, "{name} {body}: {v}");
        assert_eq!(v["kind"], "invalid", "{body}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: expected {says:?} in {msg:?}");
        assert!(v.get("hint").is_some(), "{v}");
    }
    assert_eq!(volumes(&d).await, json!([]));
    assert!(mounts_under(d.path()).is_empty());
    assert!(loops_under(d.path()).is_empty());

    // Other malformed requests.
    let c = d.client();
    let r = c.get(d.url("/v1/volumes/no%2Fsuch")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(d.url("/v1/volumes/absent")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["kind"], "not_found");
    let r = c
        .delete(d.url("/v1/volumes/absent?force=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("force"));
    let r = c
        .delete(d.url("/v1/volumes/absent?forse=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.delete(d.url("/v1/volumes/absent")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "deleting what is not there is done already"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["not_mounted"], true);
    let r = c.get(d.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["kind"], "not_found");

    // The spec is served, and the refusals were counted.
    let r = c.get(d.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), goldmountd::api::OPENAPI_YAML);
    let m = c
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let invalid = format!(
        "goldmount_operations_total{{kind=\"mount\",result=\"invalid\"}} {}",
        cases.len()
    );
    assert!(m.contains(&invalid), "{invalid} not in\n{m}");
    assert!(m.contains("goldmount_volumes 0"), "{m}");
    assert!(
        m.contains(r#"goldmount_operations_total{kind="unmount",result="ok"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_image_is_mounted_repeated_published_and_taken_down() {
    let d = Daemon::start().await;
    let img = d.path().join("clone.img");
    ext4_image(&img, 64);
    let target = d.path().join("consumers/app1");
    let body = json!({
        "sources": [{"kind": "device", "path": img}],
        "options": {"read_only": false},
        "target": target,
        "publication_id": "app1",
    })
    .to_string();

    let (status, first) = put(&d, "clone1", &body).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["publication"]["refs"], 1);
    let path = first["manifest"]["path"].as_str().unwrap().to_string();
    assert_eq!(path, d.path().join("volumes/clone1").to_str().unwrap());
    let mounts = first["manifest"]["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{first}");
    assert_eq!(mounts[0]["fs_type"], "ext4");
    let mp = mounts[0]["mount_path"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(mp).join("hello.txt")).unwrap(),
        "from the clone\n"
    );
    assert_eq!(
        std::fs::read_to_string(
            target.join(
                std::path::Path::new(mp)
                    .strip_prefix(&path)
                    .unwrap()
                    .join("hello.txt")
            )
        )
        .unwrap(),
        "from the clone\n",
        "published at the target"
    );

    // The same request again: 200, the same manifest, still one reference.
    let (status, again) = put(&d, "clone1", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["manifest"], first["manifest"]);
    assert_eq!(again["publication"]["refs"], 1);

    // Other options for the same volume: a conflict, nothing changed.
    let other =
        json!({"sources": [{"kind": "device", "path": img}], "options": {"read_only": true}});
    let (status, v) = put(&d, "clone1", &other.to_string()).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["kind"], "conflict");
    // The same data under another name: the claim refuses it.
    let (status, v) = put(&d, "clone2", &other.to_string()).await;
    assert_eq!(status, 409, "{v}");

    let list = volumes(&d).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["volume"], "clone1");
    assert_eq!(list[0]["phase"], "mounted");
    let one: Value = d
        .client()
        .get(d.url("/v1/volumes/clone1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["publications"][0]["id"], "app1");
    let m = d
        .client()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("goldmount_volumes 1") && m.contains("goldmount_publications 1"),
        "{m}"
    );

    // Published and in use: a plain DELETE is refused, naming the holder,
    // and changes nothing.
    let held = std::fs::File::open(
        target.join(
            std::path::Path::new(mp)
                .strip_prefix(&path)
                .unwrap()
                .join("hello.txt"),
        ),
    )
    .unwrap();
    let r = d
        .client()
        .delete(d.url("/v1/volumes/clone1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("pid"), "{v}");
    assert!(!mounts_under(&target).is_empty());
    assert_eq!(volumes(&d).await.as_array().unwrap().len(), 1);
    drop(held);

    // Not in use: a plain DELETE is the complete teardown, its publication
    // included.
    let r = d
        .client()
        .delete(d.url("/v1/volumes/clone1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rep: Value = r.json().await.unwrap();
    assert_eq!(rep["not_mounted"], false);
    assert!(!rep["undone"].as_array().unwrap().is_empty(), "{rep}");
    assert_eq!(volumes(&d).await, json!([]));
    assert!(
        mounts_under(d.path()).is_empty(),
        "{:?}",
        mounts_under(d.path())
    );
    assert!(
        loops_under(d.path()).is_empty(),
        "{:?}",
        loops_under(d.path())
    );
    let m = d
        .client()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"goldmount_operations_total{kind="mount",result="ok"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"goldmount_operations_total{kind="mount",result="conflict"} 2"#),
        "{m}"
    );
    assert!(m.contains("goldmount_volumes 0"), "{m}");
}

/// A mount that waits for the appliance to attach a loop device for
/// `file`, which nobody does: it runs for `secs` seconds, then fails.
fn waiting_body(file: &std::path::Path, secs: u64) -> String {
    json!({"sources": [{"kind": "loop_backing", "file": file, "timeout": secs}]}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_request_for_a_busy_volume_is_answered_at_once() {
    let d = Daemon::start().await;
    let file = d.path().join("never-attached.img");
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    let slow = {
        let c = d.client();
        let url = d.url("/v1/volumes/busy1");
        let body = waiting_body(&file, 4);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = c.put(url).body(body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap(), t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let (status, v) = put(&d, "busy1", &waiting_body(&file, 1)).await;
    let took = t0.elapsed();
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["kind"], "busy");
    assert!(took < Duration::from_secs(1), "waited {took:?}");
    let r = d
        .client()
        .delete(d.url("/v1/volumes/busy1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["kind"], "busy");
    // Other volumes and reads are not held up.
    let t0 = Instant::now();
    assert_eq!(volumes(&d).await, json!([]));
    let r = d.client().get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() < Duration::from_secs(1));

    let (status, v, took) = slow.await.unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["kind"], "unavailable");
    assert!(took >= Duration::from_secs(4), "{took:?}");
    // The volume is free again.
    let r = d
        .client()
        .delete(d.url("/v1/volumes/busy1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = d
        .client()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"goldmount_operations_total{kind="mount",result="busy"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"goldmount_operations_total{kind="unmount",result="busy"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"goldmount_operations_total{kind="mount",result="unavailable"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"goldmount_operation_duration_seconds_count{kind="mount"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_accepting_and_waits_for_the_running_operation() {
    let mut d = Daemon::start().await;
    let file = d.path().join("never-attached.img");
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    let slow = {
        let c = d.client();
        let url = d.url("/v1/volumes/late");
        let body = waiting_body(&file, 3);
        tokio::spawn(async move {
            let r = c.put(url).body(body).send().await.unwrap();
            r.status()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    d.signal_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connection is accepted once shutdown began.
    let refused = d
        .raw_get(Some((&d.pki.client_cert, &d.pki.client_key)), "/healthz")
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let report = d.stopped().await;
    let took = t0.elapsed();
    assert!(
        report.connections_finished && report.operations_finished,
        "{report:?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "returned before the operation ended: {took:?}"
    );
    // The running request got its answer.
    assert_eq!(slow.await.unwrap(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_root_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("run/control.sock");
    let s2 = sock.clone();
    let mut d = Daemon::start_with(move |c| c.control.unix_socket = Some(s2)).await;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"GET /v1/volumes HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("[]"), "{out}");
    // A second daemon does not take over a live socket.
    let pki = common::dev_pki(sock_dir.path());
    let mut cfg = common::config(sock_dir.path(), &pki);
    cfg.control.unix_socket = Some(sock.clone());
    let engine = std::sync::Arc::new(connector::engine::Engine::open(cfg.engine.clone()).unwrap());
    let e = goldmountd::Server::bind(&cfg, engine).await.err().unwrap();
    assert!(e.to_string().contains("another goldmountd"), "{e}");
    d.stop().await;
    assert!(!sock.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publication_unmounts_what_the_request_mounted() {
    let d = Daemon::start().await;
    let img = d.path().join("clone.img");
    ext4_image(&img, 64);
    // A target under a regular file: valid as a path, impossible to create.
    std::fs::write(d.path().join("afile"), "x").unwrap();
    let body = json!({
        "sources": [{"kind": "device", "path": img}],
        "target": d.path().join("afile/target"),
    })
    .to_string();
    let (status, v) = put(&d, "pubfail", &body).await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("unmounted again"),
        "{v}"
    );
    assert_eq!(volumes(&d).await, json!([]));
    assert!(
        mounts_under(d.path()).is_empty(),
        "{:?}",
        mounts_under(d.path())
    );
    assert!(
        loops_under(d.path()).is_empty(),
        "{:?}",
        loops_under(d.path())
    );
}
