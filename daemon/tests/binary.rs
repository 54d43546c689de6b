//! The `goldmountd` binary as systemd runs it: it reads the config named by
//! `GOLDMOUNT_CONFIG`/`--config`, says READY=1 on `NOTIFY_SOCKET` only once
//! it answers, and exits 0 on SIGTERM; a bad config exits 2 naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let pki = common::dev_pki(dir);
    let text = format!(
        r#"
[control]
listen = "127.0.0.1:{port}"
cert = "{}"
key = "{}"
client_ca = "{}"
client_subject = "goldmount-appliance"
shutdown_grace_secs = 5

[engine]
volumes_root = "{d}/volumes"
state_path = "{d}/state.redb"
run_dir = "{d}/run"

[log]
format = "json"
level = "info"
"#,
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca_cert.display(),
        d = dir.display()
    );
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_serving_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), port);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
        .env("GOLDMOUNT_CONFIG", &cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("GOLDMOUNT_LOG")
        .env_remove("GOLDMOUNT_STATE")
        .env_remove("GOLDMOUNT_VOLUMES_ROOT")
        .env_remove("GOLDMOUNT_RUN_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("no READY=1 within 60 s");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    // Ready means answering: no retry needed.
    let pki_dir = dir.path().join("tls");
    let mut pem = std::fs::read(pki_dir.join(pki::CLIENT_CERT)).unwrap();
    pem.extend(std::fs::read(pki_dir.join(pki::CLIENT_KEY)).unwrap());
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(pki_dir.join(pki::CA_CERT)).unwrap())
                .unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let t0 = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "idle shutdown took {:?}",
        t0.elapsed()
    );
    // JSON logs, one object per line.
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("stopped cleanly"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[control]\nlisten = \"127.0.0.1:1\"\ncert_file = \"/x\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("GOLDMOUNT_CONFIG", "/nonexistent/ignored.toml")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("cert_file"),
        "{stderr}"
    );

    // Missing certificates: exit 2, the key and file named.
    let cfg = dir.path().join("nocerts.toml");
    let d = dir.path().display();
    std::fs::write(
        &cfg,
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\ncert = \"{d}/none.pem\"\n[engine]\nvolumes_root = \"{d}/v\"\nstate_path = \"{d}/s.redb\"\nrun_dir = \"{d}/r\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("GOLDMOUNT_STATE")
        .env_remove("GOLDMOUNT_VOLUMES_ROOT")
        .env_remove("GOLDMOUNT_RUN_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("control.cert") && stderr.contains("none.pem"),
        "{stderr}"
    );
}

#[test]
fn dev_pki_writes_a_set_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_goldmountd"))
            .arg("dev-pki")
            .arg(&tls)
            .args(["--hostname", "h1", "--san", "10.1.2.3"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.1.2.3"));
    assert!(tls.join(pki::SERVER_KEY).exists());
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert!(run(&["--force"]).status.success());
}
