//! goldmountd registers this host with the appliance named in
//! `[appliance]`: while nothing listens there it keeps serving and says
//! `retrying` in `/healthz`; once the real appliance comes up on that port
//! it registers (IQN from this host, callback URL and server CA from the
//! config) within the backoff's bound, and says `registered`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "daemon-registration-test-token-42";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(dir: &Path) -> reqwest::Client {
    let pki_dir = dir.join("tls");
    let mut pem = std::fs::read(pki_dir.join(pki::CLIENT_CERT)).unwrap();
    pem.extend(std::fs::read(pki_dir.join(pki::CLIENT_KEY)).unwrap());
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(pki_dir.join(pki::CA_CERT)).unwrap())
                .unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> Option<reqwest::Response> {
    c.get(url).send().await.ok()
}

/// Polls `/healthz` until `pred` holds on its body, at most `limit`.
async fn wait_health(
    c: &reqwest::Client,
    port: u16,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    let mut last = serde_json::Value::Null;
    while t0.elapsed() < limit {
        if let Some(r) = get(c, &format!("https://localhost:{port}/healthz")).await {
            assert_eq!(r.status(), 200, "the daemon must keep serving");
            last = r.json().await.unwrap();
            if pred(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz not as expected within {limit:?}; last: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_once_the_appliance_comes_up_and_serves_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = common::dev_pki(d);
    let port = free_port();
    let app_port = free_port();
    let token_file = d.join("appliance-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cfg_path = d.join("config.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[control]
listen = "127.0.0.1:{port}"
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
shutdown_grace_secs = 5

[engine]
volumes_root = "{d}/volumes"
state_path = "{d}/state.redb"
run_dir = "{d}/run"

[log]
format = "json"

[appliance]
url = "http://127.0.0.1:{app_port}"
token_file = "{token}"
callback_url = "https://localhost:{port}"
server_ca = "{ca}"
retry_max_secs = 2
"#,
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca_cert.display(),
            token = token_file.display(),
            d = d.display(),
        ),
    )
    .unwrap();
    let log = d.join("goldmountd.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
        .arg("--config")
        .arg(&cfg_path)
        .env_remove("GOLDMOUNT_LOG")
        .env_remove("GOLDMOUNT_STATE")
        .env_remove("GOLDMOUNT_VOLUMES_ROOT")
        .env_remove("GOLDMOUNT_RUN_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let c = client(d);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Nothing listens on the appliance's port: retrying, serving.
    let h = wait_health(&c, port, Duration::from_secs(60), |v| {
        v["registration"]["state"] == "retrying"
    })
    .await;
    assert_eq!(h["status"], "ok", "{h}\n{}", log_text());
    let err = h["registration"]["last_error"].as_str().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{app_port}")), "{h}");
    assert!(h["registration"]["attempts"].as_u64().unwrap() >= 1, "{h}");
    let volumes = get(&c, &format!("https://localhost:{port}/v1/volumes"))
        .await
        .unwrap();
    assert_eq!(
        volumes.status(),
        200,
        "the API answers while registration retries"
    );
    let m = get(&c, &format!("https://localhost:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"goldmount_registration_attempts_total{result="unreachable"}"#),
        "{m}"
    );
    assert!(m.contains("goldmount_registered 0"), "{m}");

    // The real appliance comes up on that port.
    let data = d.join("appliance");
    let app = Arc::new(
        appliance::Appliance::open(
            &appliance::ApplianceConfig::new(&data),
            Box::new(appliance::present::loopback::LoopPresenter::new()),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let token = appliance::auth::Token::from_secret(TOKEN, token_file.clone());
    let served = tokio::spawn(appliance::api::serve(
        app.clone(),
        token,
        listener,
        None,
        async {
            let _ = stop_rx.await;
        },
    ));
    let t0 = Instant::now();
    let h = wait_health(&c, port, Duration::from_secs(30), |v| {
        v["registration"]["state"] == "registered"
    })
    .await;
    let took = t0.elapsed();
    assert!(
        log_text().contains("registered with the appliance"),
        "{}",
        log_text()
    );
    let host = h["registration"]["host"].as_str().unwrap().to_string();
    assert!(
        h["registration"]["last_ok"].as_u64().unwrap() > 1_700_000_000,
        "{h}"
    );
    assert!(h["registration"].get("last_error").is_none(), "{h}");
    assert_eq!(h["registration"]["failures"], 0, "{h}");

    // What the appliance now knows: this host's IQN, the callback and CA.
    let stored = app.get_host(&host).unwrap();
    let me = registration::HostIdentity::collect();
    assert!(
        !me.iqns.is_empty(),
        "this host has no initiator name: {me:?}"
    );
    assert_eq!(stored.iqns, me.iqns);
    assert_eq!(stored.wwpns, me.wwpns);
    assert_eq!(
        stored.callback_url.as_deref(),
        Some(format!("https://localhost:{port}").as_str())
    );
    assert_eq!(
        stored.callback_ca_pem.as_deref(),
        Some(std::fs::read_to_string(&pki.ca_cert).unwrap().as_str())
    );
    let m = get(&c, &format!("https://localhost:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"goldmount_registration_attempts_total{result="ok"} 1"#),
        "{m}"
    );
    assert!(m.contains("goldmount_registered 1"), "{m}");

    // SIGTERM still stops it at once.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t1 = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
    let _ = stop_tx.send(());
    served.await.unwrap().unwrap();
    eprintln!("registered {took:?} after the appliance came up");
}
