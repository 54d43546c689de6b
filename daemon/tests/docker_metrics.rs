//! The Docker plugin goldmountd starts (`docker_task`) reports to the
//! same metrics the control API serves: requests sent to the plugin's
//! socket show on `/metrics`, fetched over mutual TLS, with their
//! operation and result; the plugin's families are there from the start.
//! (The stages of a real `docker run` are checked against a real dockerd
//! in dockerplugin/tests/docker_observe.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::Daemon;
use connector::engine::Engine;
use goldmountd::config::ApplianceConfig;

async fn scrape(d: &Daemon) -> String {
    let r = d.client().get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample `series` (exact name and labels), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A plugin request on its socket, as dockerd sends it: the status.
async fn plugin_call(socket: PathBuf, endpoint: &'static str, body: &'static str) -> u16 {
    tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        // One write: a handler that ignores the body may answer and close
        // before a later piece of a `write!` arrives (EPIPE).
        let req = format!(
            "POST /{endpoint} HTTP/1.1\r\nHost: \r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = s.write_all(req.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split(' ').nth(1).unwrap().parse().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_requests_show_on_metrics_over_mutual_tls() {
    let d = Daemon::start().await;
    let m = scrape(&d).await;
    for family in [
        "# TYPE goldmount_docker_requests counter",
        "# TYPE goldmount_docker_request_duration_seconds histogram",
        "# TYPE goldmount_docker_stage_duration_seconds histogram",
        "# TYPE goldmount_docker_requests_in_flight gauge",
        "goldmount_docker_requests_in_flight{operation=\"mount\"} 0",
    ] {
        assert!(m.contains(family), "{family} not in\n{m}");
    }

    // The plugin as goldmountd starts it; no appliance answers at the URL,
    // which the requests below do not need.
    let mut cfg = d.cfg.clone();
    let socket = d.path().join("plugin.sock");
    cfg.appliance = Some(ApplianceConfig {
        url: "http://127.0.0.1:9".into(),
        ca: None,
        token_file: None,
        callback_url: None,
        server_ca: None,
        interval_secs: 600,
        retry_max_secs: 300,
    });
    cfg.docker = Some(dockerplugin::DockerConfig {
        name: format!("gmmet{}", std::process::id()),
        socket: Some(socket.clone()),
        mounts_root: Some(d.path().join("mnt")),
        host: Some("here".into()),
        ..Default::default()
    });
    let engine = Arc::new(Engine::open(cfg.engine.clone()).unwrap());
    let profiles = Arc::new(cfg.open_profiles().unwrap());
    let task = goldmountd::docker_task::start(&cfg, engine, profiles)
        .unwrap()
        .expect("[docker] is enabled");

    let get_missing =
        "goldmount_docker_requests_total{operation=\"get\",result=\"no_such_volume\"}";
    let list_ok = "goldmount_docker_requests_total{operation=\"list\",result=\"ok\"}";
    let before = scrape(&d).await;
    assert_eq!(
        plugin_call(socket.clone(), "VolumeDriver.Get", r#"{"Name":"nope"}"#).await,
        500
    );
    assert_eq!(
        plugin_call(socket.clone(), "VolumeDriver.List", "{}").await,
        200
    );
    assert_eq!(
        plugin_call(socket.clone(), "VolumeDriver.List", "").await,
        200
    );
    let after = scrape(&d).await;
    assert_eq!(
        sample(&after, get_missing) - sample(&before, get_missing),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, list_ok) - sample(&before, list_ok),
        2.0,
        "{after}"
    );
    let count = "goldmount_docker_request_duration_seconds_count{operation=\"list\"}";
    assert_eq!(sample(&after, count) - sample(&before, count), 2.0);
    assert_eq!(
        sample(
            &after,
            "goldmount_docker_requests_in_flight{operation=\"get\"}"
        ),
        0.0
    );
    task.stop(Duration::from_secs(10)).await;
}
