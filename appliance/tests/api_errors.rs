//! REST API contract over real HTTP: status codes, error bodies, idempotency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;

fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or("<no code>")
}

#[test]
fn bad_requests_and_idempotency() {
    let tmp = TempDir::new_in(std::path::Path::new("/dev/shm"), "api");
    let data = tmp.path().join("data");
    let srv = Server::start(&data, "loop");

    // openapi served verbatim
    let r = ureq::get(&format!("{}/openapi.yaml", srv.url))
        .call()
        .unwrap();
    let text = r.into_string().unwrap();
    assert!(text.starts_with("openapi: 3.0.3"), "{text:.60}");
    assert!(text.contains("/v1/presentations/{clone}"));

    // malformed JSON, wrong shape, unknown field
    for body in [
        "{not json",
        "[]",
        r#"{"name":"h1","iqns":"x"}"#,
        r#"{"name":"h1","bogus":1}"#,
    ] {
        let (s, v) = srv.req("POST", "/v1/hosts", Some(body));
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(code(&v), "bad_request", "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("expected a JSON body"),
            "{v}"
        );
    }
    // bad names (body and path)
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(&json!({"name":"no/slash","iqns":["iqn.2026-11.t:h"]}).to_string()),
    );
    assert_eq!((s, code(&v)), (400, "bad_name"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("no/slash"), "{v}");
    let long = "x".repeat(65);
    let (s, v) = srv.req("GET", &format!("/v1/clones/{long}"), None);
    assert_eq!((s, code(&v)), (400, "bad_name"), "{v}");
    let (s, v) = srv.req("GET", "/v1/hosts/a%20b", None);
    assert_eq!((s, code(&v)), (400, "bad_name"), "{v}");

    // semantic: no identities, bad IQN, bad CA
    let (s, v) = srv.req("POST", "/v1/hosts", Some(r#"{"name":"h0"}"#));
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"h0","iqns":["host0"]}"#),
    );
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"h0","iqns":["iqn.2026-11.t:h0"],"callback_ca_pem":"nope"}"#),
    );
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");

    // host registration is idempotent; conflicts are 409
    let h1 = json!({"name":"h1","iqns":["IQN.2026-11.t:H1"],"wwpns":["0x21000024ff4c9a01"],
                    "callback_url":"https://h1:8471",
                    "callback_ca_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
    .to_string();
    let (s, first) = srv.req("POST", "/v1/hosts", Some(&h1));
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["iqns"], json!(["iqn.2026-11.t:h1"]));
    assert_eq!(first["wwpns"], json!(["21:00:00:24:ff:4c:9a:01"]));
    let (s, again) = srv.req("POST", "/v1/hosts", Some(&h1));
    assert_eq!(s, 200, "{again}");
    assert_eq!(first, again);
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"h1","iqns":["iqn.2026-11.t:other"]}"#),
    );
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("iqn.2026-11.t:h1"),
        "{v}"
    );
    let (s, v) = srv.req(
        "POST",
        "/v1/hosts",
        Some(r#"{"name":"h2","iqns":["iqn.2026-11.t:h1"]}"#),
    );
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"h1\""), "{v}");
    let (s, v) = srv.req("GET", "/v1/hosts/h1", None);
    assert_eq!(
        (s, v["callback_url"].as_str()),
        (200, Some("https://h1:8471"))
    );
    let (s, v) = srv.req("GET", "/v1/hosts", None);
    assert_eq!((s, v.as_array().unwrap().len()), (200, 1), "{v}");

    // unknown ids
    for path in [
        "/v1/hosts/nope",
        "/v1/gold-copies/nope",
        "/v1/clones/nope",
        "/v1/presentations/nope",
    ] {
        let (s, v) = srv.req("GET", path, None);
        assert_eq!((s, code(&v)), (404, "not_found"), "{path}: {v}");
    }
    let (s, v) = srv.req("DELETE", "/v1/clones/nope", None);
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = srv.req("DELETE", "/v1/presentations/nope", None);
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = srv.req("GET", "/v2/whatever", None);
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");

    // gold import: outside the import directories is 403, a missing file
    // inside them 422, then a real one
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(r#"{"name":"g","source":"/nonexistent/x.img"}"#),
    );
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name":"g","source":tmp.path().join("missing.img")}).to_string()),
    );
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    let img = tmp.path().join("src.img");
    make_image(&img, 8 << 20, b"GOLDMARK");
    let imp = json!({"name":"g","source":img,"point_in_time":"t1"}).to_string();
    let (s, g) = srv.req("POST", "/v1/gold-copies", Some(&imp));
    assert_eq!(s, 201, "{g}");
    assert_eq!(g["size"], 8 << 20);
    let (s, g2) = srv.req("POST", "/v1/gold-copies", Some(&imp));
    assert_eq!((s, &g2), (200, &g));
    let (s, v) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name":"g","source":img,"point_in_time":"t2"}).to_string()),
    );
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");

    // clones: unknown gold 404, wrong point-in-time 422, idempotent, conflict
    let (s, v) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c1","gold":"nope"}"#));
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = srv.req(
        "POST",
        "/v1/clones",
        Some(r#"{"name":"c1","gold":"g","point_in_time":"t0"}"#),
    );
    assert_eq!((s, code(&v)), (422, "invalid"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"t1\""), "{v}");
    let (s, c) = srv.req(
        "POST",
        "/v1/clones",
        Some(r#"{"name":"c1","gold":"g","point_in_time":"t1"}"#),
    );
    assert_eq!(s, 201, "{c}");
    let (s, c2) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c1","gold":"g"}"#));
    assert_eq!((s, &c2), (200, &c));
    let (s, v) = srv.req(
        "POST",
        "/v1/clones",
        Some(r#"{"name":"c1","gold":"other"}"#),
    );
    assert_eq!(s, 404, "{v}");
    make_image(&tmp.path().join("b.img"), 1 << 20, b"B");
    let (s, _) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name":"g2","source":tmp.path().join("b.img")}).to_string()),
    );
    assert_eq!(s, 201);
    let (s, v) = srv.req("POST", "/v1/clones", Some(r#"{"name":"c1","gold":"g2"}"#));
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");

    // presentations: unknown host / clone 404
    let (s, v) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"c1","host":"ghost"}"#),
    );
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("host \"ghost\""),
        "{v}"
    );
    let (s, v) = srv.req(
        "POST",
        "/v1/presentations",
        Some(r#"{"clone":"ghost","host":"h1"}"#),
    );
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
}

/// The iSCSI backend on a machine where LIO's configfs is not there (this
/// host's kernel has no LIO; the root is pointed at a path that does not
/// exist so the test means the same everywhere): registering a host fails
/// with a 500 that names the configfs root and the modules to load, and the
/// host is not kept — a list shows nothing, and the same request fails the
/// same way again instead of answering "already registered".
#[test]
fn registration_is_undone_when_the_backend_cannot_take_the_host() {
    let tmp = TempDir::new_in(std::path::Path::new("/dev/shm"), "api-nolio");
    let data = tmp.path().join("data");
    let missing = tmp.path().join("no-configfs");
    let srv = Server::start_with(
        &data,
        "iscsi",
        &[
            "--portal",
            "127.0.0.1:3260",
            "--configfs-root",
            missing.to_str().unwrap(),
        ],
    );
    let body = json!({"name":"h1","iqns":["iqn.2026-11.t:h1"]}).to_string();
    for attempt in 0..2 {
        let (s, v) = srv.req("POST", "/v1/hosts", Some(&body));
        assert_eq!((s, code(&v)), (500, "internal"), "attempt {attempt}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(missing.to_str().unwrap()), "{msg}");
        assert!(msg.contains("modprobe"), "{msg}");
        let (s, v) = srv.req("GET", "/v1/hosts", None);
        assert_eq!((s, v.clone()), (200, json!([])), "attempt {attempt}");
        let (s, v) = srv.req("GET", "/v1/hosts/h1", None);
        assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    }
    assert!(
        !missing.exists(),
        "nothing may be created where configfs should be"
    );
}
