//! `GET /v1/profiles`, `GET/PUT /v1/profiles/{name}` on the real daemon
//! over mutual TLS: the config's `[profiles]` and the built-in `default`
//! are listed; an unknown profile is a 404 naming the known ones; a bad
//! PUT is a 400 that changes nothing; a PUT adds or replaces one profile,
//! is persisted in `<state dir>/profiles.json` and is still in effect
//! after a restart; a damaged runtime file stops the start, naming it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Daemon;
use connector::engine::Engine;
use dockerplugin::profile::ProfileSettings;
use goldmountd::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn gold() -> ProfileSettings {
    ProfileSettings {
        class: Some("gold".into()),
        read_only: true,
        ..Default::default()
    }
}

fn with_gold(cfg: &mut Config) {
    cfg.profiles = BTreeMap::from([("gold".to_string(), gold())]);
}

async fn call(
    d: &Daemon,
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = d
        .client()
        .request(method, format!("https://127.0.0.1:{port}{path}"));
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, v)
}

fn names(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(n: &str, o: &str) -> (String, String) {
    (n.to_string(), o.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_listed_read_replaced_persisted_and_kept_across_a_restart() {
    use reqwest::Method;
    let mut d = Daemon::start_with(with_gold).await;
    let port = d.addr.port();
    let state_file = d.path().join("state/profiles.json");
    assert_eq!(d.cfg.profiles_state_path(), state_file);

    let (st, list) = call(&d, port, Method::GET, "/v1/profiles", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        names(&list),
        [pair("default", "built_in"), pair("gold", "config")]
    );
    let (st, g) = call(&d, port, Method::GET, "/v1/profiles/gold", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        g,
        json!({"name": "gold", "origin": "config", "settings": {
            "class": "gold", "read_only": true, "xfs_new_uuid": false,
            "zfs_reguid": false, "btrfs_new_fsid": false, "allow_suid_dev": false}})
    );
    let (st, e) = call(&d, port, Method::GET, "/v1/profiles/silver", None).await;
    assert_eq!(st, 404);
    assert_eq!(e["kind"], "not_found");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("unknown profile \"silver\": known profiles are default, gold"),
        "{m}"
    );
    let (st, e) = call(&d, port, Method::GET, "/v1/profiles/-x", None).await;
    assert_eq!(
        (st, e["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid"))
    );

    // Bad PUTs: 400, nothing stored.
    for (path, body, want) in [
        ("/v1/profiles/gold", "{\"read_olny\": true}", "read_olny"),
        ("/v1/profiles/gold", "{\"class\": \"no way\"}", "class"),
        ("/v1/profiles/gold", "{\"read_only\": \"yes\"}", "read_only"),
        ("/v1/profiles/gold", "[true]", "JSON object"),
        ("/v1/profiles/gold", "", "empty"),
        ("/v1/profiles/a%2Fb", "{}", "profile name"),
    ] {
        let (st, e) = call(&d, port, Method::PUT, path, Some(body)).await;
        assert_eq!(st, 400, "{body}: {e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(want), "{body}: {m}");
    }
    assert!(!state_file.exists(), "a refused PUT wrote {state_file:?}");
    let (_, again) = call(&d, port, Method::GET, "/v1/profiles", None).await;
    assert_eq!(again, list);

    // A new profile: 201, the same again 200; replacing the config's: 200.
    let fast = r#"{"xfs_new_uuid": true, "zfs_reguid": true}"#;
    let (st, p) = call(&d, port, Method::PUT, "/v1/profiles/fast", Some(fast)).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["origin"], "api");
    assert_eq!(p["settings"]["xfs_new_uuid"], true);
    assert_eq!(p["settings"]["read_only"], false);
    let (st, p2) = call(&d, port, Method::PUT, "/v1/profiles/fast", Some(fast)).await;
    assert_eq!((st, &p2), (StatusCode::OK, &p));
    let (st, g) = call(
        &d,
        port,
        Method::PUT,
        "/v1/profiles/gold",
        Some(r#"{"class": "platinum"}"#),
    )
    .await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(
        (
            g["origin"].as_str(),
            g["settings"]["class"].as_str(),
            g["settings"]["read_only"].as_bool()
        ),
        (Some("api"), Some("platinum"), Some(false)),
        "a PUT replaces the whole profile"
    );
    let (st, dflt) = call(
        &d,
        port,
        Method::PUT,
        "/v1/profiles/default",
        Some(r#"{"class": "bronze", "allow_suid_dev": false}"#),
    )
    .await;
    assert_eq!(
        st, 200,
        "the built-in default exists, so it is replaced: {dflt}"
    );
    let (_, list) = call(&d, port, Method::GET, "/v1/profiles", None).await;
    assert_eq!(
        names(&list),
        [
            pair("default", "api"),
            pair("fast", "api"),
            pair("gold", "api")
        ]
    );
    let file: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    assert_eq!(file["profiles"]["gold"]["class"], "platinum");
    assert_eq!(file["profiles"]["fast"]["zfs_reguid"], true);

    // A restart over the same config and state: the PUTs are still in effect.
    let report = d.stop().await;
    assert!(report.connections_finished && report.operations_finished);
    let engine = Arc::new(Engine::open(d.cfg.engine.clone()).unwrap());
    let server = goldmountd::Server::bind(&d.cfg, engine).await.unwrap();
    let port2 = server.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let (_, after) = call(&d, port2, Method::GET, "/v1/profiles", None).await;
    assert_eq!(after, list);
    let (_, g2) = call(&d, port2, Method::GET, "/v1/profiles/gold", None).await;
    assert_eq!(g2, g);
    let _ = tx.send(());
    task.await.unwrap();

    // A damaged runtime file: the daemon does not start, and says which file.
    std::fs::write(
        &state_file,
        "{\"version\": 1, \"profiles\": {\"x\": {\"clas\": 1}}}",
    )
    .unwrap();
    let engine = Arc::new(Engine::open(d.cfg.engine.clone()).unwrap());
    let e = goldmountd::Server::bind(&d.cfg, engine)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("profiles.json") && e.contains("clas"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_profiles_in_the_config_only_the_built_in_default_is_there() {
    let d = Daemon::start().await;
    let port = d.addr.port();
    let (st, list) = call(&d, port, reqwest::Method::GET, "/v1/profiles", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        list,
        json!([{"name": "default", "origin": "built_in", "settings": {
            "class": null, "read_only": false, "xfs_new_uuid": false,
            "zfs_reguid": false, "btrfs_new_fsid": false, "allow_suid_dev": false}}])
    );
    let (st, e) = call(&d, port, reqwest::Method::GET, "/v1/profiles/gold", None).await;
    assert_eq!(st, 404);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("known profiles are default"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_removes_what_put_stored_and_nothing_else() {
    use reqwest::Method;
    let d = Daemon::start_with(with_gold).await;
    let port = d.addr.port();
    let state_file = d.path().join("state/profiles.json");
    let (_, before) = call(&d, port, Method::GET, "/v1/profiles", None).await;

    // Only the config (or the built-in) gives these: 409, nothing changed;
    // unknown: 404 naming the known ones; a bad name: 400.
    for (path, status, kind, want) in [
        ("/v1/profiles/gold", 409, "conflict", "config file"),
        ("/v1/profiles/default", 409, "conflict", "built-in default"),
        (
            "/v1/profiles/fast",
            404,
            "not_found",
            "known profiles are default, gold",
        ),
        ("/v1/profiles/-x", 400, "invalid", "profile name"),
    ] {
        let (st, e) = call(&d, port, Method::DELETE, path, None).await;
        assert_eq!(
            (st.as_u16(), e["kind"].as_str()),
            (status, Some(kind)),
            "{path}: {e}"
        );
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(want), "{path}: {m}");
    }
    assert!(
        !state_file.exists(),
        "a refused DELETE wrote {state_file:?}"
    );
    let (_, same) = call(&d, port, Method::GET, "/v1/profiles", None).await;
    assert_eq!(same, before);

    for (name, body) in [
        ("fast", r#"{"zfs_reguid": true}"#),
        ("gold", r#"{"class": "platinum"}"#),
        ("default", r#"{"read_only": true}"#),
    ] {
        let path = format!("/v1/profiles/{name}");
        let (st, p) = call(&d, port, Method::PUT, &path, Some(body)).await;
        assert!(st.is_success(), "{name}: {p}");
    }

    // An API-only profile: gone, from the file too; again: 404.
    let (st, r) = call(&d, port, Method::DELETE, "/v1/profiles/fast", None).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (
            r["deleted"]["origin"].as_str(),
            r["deleted"]["settings"]["zfs_reguid"].as_bool()
        ),
        (Some("api"), Some(true))
    );
    assert_eq!(r["in_effect"], Value::Null);
    let (st, _) = call(&d, port, Method::GET, "/v1/profiles/fast", None).await;
    assert_eq!(st, 404);
    let (st, e) = call(&d, port, Method::DELETE, "/v1/profiles/fast", None).await;
    assert_eq!((st.as_u16(), e["kind"].as_str()), (404, Some("not_found")));

    // Over the config's profile: the config's settings are back.
    let (st, r) = call(&d, port, Method::DELETE, "/v1/profiles/gold", None).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["deleted"]["settings"]["class"], "platinum");
    let (_, g) = call(&d, port, Method::GET, "/v1/profiles/gold", None).await;
    assert_eq!(r["in_effect"], g);
    assert_eq!(
        (g["origin"].as_str(), g["settings"]["class"].as_str()),
        (Some("config"), Some("gold"))
    );

    // `default`: the built-in empty one is back; again: 409.
    let (st, r) = call(&d, port, Method::DELETE, "/v1/profiles/default", None).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["in_effect"]["origin"], "built_in");
    assert_eq!(r["in_effect"]["settings"]["read_only"], false);
    let (st, _) = call(&d, port, Method::DELETE, "/v1/profiles/default", None).await;
    assert_eq!(st, 409);

    let (_, after) = call(&d, port, Method::GET, "/v1/profiles", None).await;
    assert_eq!(after, before);
    let file: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        file["profiles"],
        json!({}),
        "the file keeps no deleted profile"
    );
}
