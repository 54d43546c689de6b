//! schemathesis (PyPI) against the real `goldmountd` binary: every
//! operation of `daemon/openapi.yaml` with generated valid and invalid
//! requests, over mutual TLS, in a throwaway environment; any finding of
//! `not_a_server_error`, `status_code_conformance`,
//! `content_type_conformance`, `response_schema_conformance` or
//! `negative_data_rejection` fails the test with schemathesis's report.
//!
//! Valid generated PUTs reach the real engine (as root), so the run is
//! confined: the engine's state, volumes root and run dir are temp dirs,
//! and `tests/schemathesis/hooks.py` rewrites, right before each request,
//! everything a body can name on the host — device paths become the
//! sandbox's ext4 images or missing files under it, WWIDs and loop backing
//! files ones that cannot exist, iSCSI portals and FC WWPNs strings that
//! are no address (the engine refuses them before any login or scan),
//! waits of up to 900 s become 1 s, targets directories under the sandbox.
//! `tests/schemathesis/schemathesis.toml` accepts a PUT's documented 503
//! (a waited-for device did not appear) as no server error.
//!
//! schemathesis comes from `target/venv-schemathesis` (made by `cargo
//! xtask test`) or the executable in `GOLDMOUNT_SCHEMATHESIS`; without it
//! the test fails and says how to install it. `GOLDMOUNT_SCHEMATHESIS_SEED`
//! and `GOLDMOUNT_SCHEMATHESIS_EXAMPLES` change the seed and the examples
//! per operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `cargo xtask test` installs (xtask/src/prereqs.rs pins the version).
const VENV: &str = "target/venv-schemathesis";
/// Examples per operation and phase: with the default seed, about 600
/// requests in all, in about a minute on two cores.
const DEFAULT_EXAMPLES: u32 = 25;
/// Fixed, so that CI runs are reproducible; change it to explore.
const DEFAULT_SEED: u64 = 20_261_202;
/// The whole run is stopped (and the test fails) after this.
const RUN_DEADLINE: Duration = Duration::from_secs(240);
/// Per request: the longest PUT (a mount, or a 1 s wait) is far below.
const REQUEST_TIMEOUT_SECS: u32 = 30;
/// The IQN tests/schemathesis/hooks.py gives every iSCSI presentation.
const REFUSED_IQN: &str = "sandbox-refuses-iscsi";
/// open-iscsi's node records.
const ISCSI_NODES: &str = "/etc/iscsi/nodes";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection";

fn schemathesis() -> PathBuf {
    let exe = match std::env::var_os("GOLDMOUNT_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(VENV)
            .join("bin/schemathesis"),
    };
    let ok = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "schemathesis not found at {}: run `cargo xtask test` (it installs the pinned version into \
         {VENV}), or by hand: `/usr/bin/python3 -m venv {VENV} && {VENV}/bin/pip install schemathesis==<the \
         version in xtask/src/prereqs.rs>`; GOLDMOUNT_SCHEMATHESIS may name another executable",
        exe.display()
    );
    exe
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon process; stopping it (SIGTERM, then SIGKILL) and undoing
/// every mount and loop device under the sandbox happen on drop, also when
/// the test fails half-way.
struct Sandboxed {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl Sandboxed {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM and up to 30 s for a clean exit; the daemon's log.
    fn stop(&mut self) -> String {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let t0 = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t0.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::fs::read_to_string(self.path().join("goldmountd.log")).unwrap_or_default()
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        self.stop();
        common::cleanup_under(self.dir.path());
    }
}

/// A sandbox with two ext4 images, dev certificates, and goldmountd
/// serving on 127.0.0.1 once it said READY=1.
fn start() -> (Sandboxed, u16) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["images", "missing", "targets"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    common::ext4_image(&d.join("images/disk0.img"), 16);
    common::ext4_image(&d.join("images/disk1.img"), 16);
    let pki = common::dev_pki(d);
    let port = free_port();
    let cfg = d.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[control]
listen = "127.0.0.1:{port}"
cert = "{}"
key = "{}"
client_ca = "{}"
client_subject = "{}"
shutdown_grace_secs = 5

[engine]
volumes_root = "{d}/volumes"
state_path = "{d}/state/state.redb"
run_dir = "{d}/run"

[log]
format = "json"
level = "info"
"#,
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca_cert.display(),
            pki::DEFAULT_CLIENT_CN,
            d = d.display()
        ),
    )
    .unwrap();
    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let log = std::fs::File::create(d.join("goldmountd.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
        .env("GOLDMOUNT_CONFIG", &cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("GOLDMOUNT_LOG")
        .env_remove("GOLDMOUNT_STATE")
        .env_remove("GOLDMOUNT_VOLUMES_ROOT")
        .env_remove("GOLDMOUNT_RUN_DIR")
        // A relative path in a request would resolve here.
        .current_dir(d.join("missing"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut sandbox = Sandboxed {
        dir,
        daemon: Some(child),
    };
    let mut buf = [0u8; 256];
    match notify.recv(&mut buf) {
        Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => {}
        other => {
            let log = sandbox.stop();
            panic!("goldmountd did not say READY=1 within 60 s ({other:?}):\n{log}");
        }
    }
    (sandbox, port)
}

/// `"METHOD /path STATUS"` lines → how many of each.
fn tally(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        *out.entry(line.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn the_openapi_document_holds_against_the_running_daemon() {
    let exe = schemathesis();
    let version = Command::new(&exe).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let (mut sandbox, port) = start();
    let d = sandbox.path().to_path_buf();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples: u32 = env_or("GOLDMOUNT_SCHEMATHESIS_EXAMPLES", DEFAULT_EXAMPLES);
    let seed: u64 = env_or("GOLDMOUNT_SCHEMATHESIS_SEED", DEFAULT_SEED);

    let out_path = d.join("schemathesis.out");
    let t0 = Instant::now();
    let mut run = Command::new(&exe)
        .arg("--config-file")
        .arg(here.join("tests/schemathesis/schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(here.join("openapi.yaml"))
        .args(["--url", &format!("https://localhost:{port}")])
        .arg("--tls-verify")
        .arg(d.join("tls").join(pki::CA_CERT))
        .arg("--request-cert")
        .arg(d.join("tls").join(pki::CLIENT_CERT))
        .arg("--request-cert-key")
        .arg(d.join("tls").join(pki::CLIENT_KEY))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--request-timeout", &REQUEST_TIMEOUT_SECS.to_string()])
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .env(
            "SCHEMATHESIS_HOOKS",
            here.join("tests/schemathesis/hooks.py"),
        )
        .env("GOLDMOUNT_SANDBOX", &d)
        // Its caches (.hypothesis, .schemathesis) stay in the sandbox.
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&out_path)
                .unwrap(),
        ))
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(st) = run.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > RUN_DEADLINE {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = t0.elapsed();
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    let calls = std::fs::read_to_string(d.join("calls.log")).unwrap_or_default();
    let puts = std::fs::read_to_string(d.join("put.log")).unwrap_or_default();
    let full_log = sandbox.stop();
    // The end of the daemon's log is enough to go with a report.
    let daemon_log: String = {
        let lines: Vec<&str> = full_log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let counts = tally(&calls);
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n:5} {k}")).collect();
    // PUT answers by status and generation mode, with the error kind.
    let put_kinds: String = puts
        .lines()
        .map(|l| {
            let mut w = l.splitn(3, ' ');
            let (status, mode, body) = (w.next(), w.next(), w.next().unwrap_or_default());
            let kind = body
                .split("\"kind\":\"")
                .nth(1)
                .and_then(|k| k.split('"').next())
                .unwrap_or("-");
            format!(
                "PUT {} {} {kind}",
                status.unwrap_or("?"),
                mode.unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let put_summary: Vec<String> = tally(&put_kinds)
        .iter()
        .map(|(k, n)| format!("{n:5} {k}"))
        .collect();
    println!(
        "{version}: {} requests in {elapsed:.1?} ({examples} examples per operation, seed {seed})\n{}\n{}",
        calls.lines().count(),
        summary.join("\n"),
        put_summary.join("\n")
    );

    let Some(status) = status else {
        panic!(
            "schemathesis did not finish within {RUN_DEADLINE:?}:\n{report}\n--- goldmountd ---\n{daemon_log}"
        );
    };
    assert!(
        status.success(),
        "schemathesis found problems ({status}):\n{report}\n--- PUT answers ---\n{puts}\n--- goldmountd ---\n{daemon_log}"
    );
    assert!(
        report.contains(" generated, ") && report.contains(" passed"),
        "schemathesis exited 0 without its summary of test cases:\n{report}"
    );

    // The run reached the engine: generated PUTs mounted a sandbox image,
    // and every operation was called.
    let mounted = puts
        .lines()
        .filter(|l| l.starts_with("201 positive") || l.starts_with("200 positive"))
        .count();
    assert!(mounted > 0, "no generated PUT mounted anything:\n{puts}");
    // Confinement: no iscsiadm call at all, no node record of the sandbox.
    let iscsi: Vec<&str> = full_log
        .lines()
        .filter(|l| l.contains("iscsi::adm") || l.contains("iscsiadm"))
        .collect();
    assert!(
        iscsi.is_empty(),
        "a generated request reached iscsiadm (tests/schemathesis/hooks.py must stop it):\n{}",
        iscsi.join("\n")
    );
    assert!(
        !Path::new(ISCSI_NODES).join(REFUSED_IQN).exists(),
        "{ISCSI_NODES}/{REFUSED_IQN} exists: a generated iSCSI presentation was recorded by iscsiadm"
    );
    for op in [
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.yaml",
        "GET /v1/volumes ",
        "GET /v1/volumes/{name}",
        "PUT /v1/volumes/{name}",
        "DELETE /v1/volumes/{name}",
        "GET /v1/profiles ",
        "GET /v1/profiles/{name}",
        "PUT /v1/profiles/{name}",
        "DELETE /v1/profiles/{name}",
    ] {
        assert!(
            calls.lines().any(|l| l.starts_with(op)),
            "{op} was never called:\n{}",
            summary.join("\n")
        );
    }
}
