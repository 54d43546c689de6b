//! The one-call mount when the host's connector goes away mid-call: the
//! appliance (real binary, loop backend) and goldmountd (the real binary,
//! `cargo build -p goldmountd` first, or GOLDMOUNTD_BIN) mount the GPT gold
//! disk (boot ext4, root XFS with fstab, data ext4), and the connector's
//! answer is lost — it times out while the host still mounts, or goldmountd
//! is SIGKILLed mid-mount. The appliance asks the connector what happened
//! and keeps the mount (the host finished), undoes clone and presentation
//! (the host's recovery rolled back), or keeps the record as `host_unknown`
//! with the reason (the connector cannot be reached) — never deleting a
//! clone the host may have mounted. `GET /v1/mounts/{volume}` reports the
//! host's state as its connector says it now.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../tests/src/golddisk.rs"]
mod golddisk;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One gold disk build and one mount at a time (two cores, and the timing
/// of the timeout case depends on it).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn goldmountd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GOLDMOUNTD_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/one_call_faults-… → target/debug/goldmountd
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("goldmountd");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p goldmountd` first (or set GOLDMOUNTD_BIN)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The goldmountd binary on a fixed port over a scratch directory.
struct Daemon {
    cfg: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    url: String,
    agent: ureq::Agent,
    child: Option<Child>,
}

impl Daemon {
    fn new(dir: &Path, pki: &pki::DevPki) -> Self {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[control]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n\
                 client_ca = \"{}\"\nshutdown_grace_secs = 30\n[engine]\n\
                 volumes_root = \"{d}/volumes\"\nstate_path = \"{d}/state/state.redb\"\n\
                 run_dir = \"{d}/run\"\n[log]\nformat = \"json\"\n",
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca_cert.display(),
                d = dir.display()
            ),
        )
        .unwrap();
        let roots = appliance::tls::certs_from_file("ca", &pki.ca_cert).unwrap();
        let tls = appliance::tls::client_config(
            roots,
            Some(&appliance::tls::Identity {
                cert: pki.client_cert.clone(),
                key: pki.client_key.clone(),
            }),
            "test",
        )
        .unwrap();
        let agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(appliance::tls::UreqTls(tls)))
            .timeout(Duration::from_secs(60))
            .build();
        let mut d = Daemon {
            cfg,
            dir: dir.to_path_buf(),
            log: dir.join("goldmountd.log"),
            url: format!("https://localhost:{port}"),
            agent,
            child: None,
        };
        d.start();
        d
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(goldmountd_bin())
            .arg("--config")
            .arg(&self.cfg)
            .env_remove("GOLDMOUNT_LOG")
            .env_remove("GOLDMOUNT_STATE")
            .env_remove("GOLDMOUNT_VOLUMES_ROOT")
            .env_remove("GOLDMOUNT_RUN_DIR")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while self.call("GET", "/healthz").0 != 200 {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("goldmountd exited ({st}): {}", self.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = self.child.as_ref().unwrap().id();
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
            .unwrap();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Polls until volume `v` is in phase `phase`.
    fn wait_phase(&self, v: &str, phase: &str) {
        let t0 = Instant::now();
        loop {
            let (s, b) = self.call("GET", &format!("/v1/volumes/{v}"));
            if s == 200 && b["phase"] == phase {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{v} never {phase}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (status, body); status 0 when the daemon cannot be reached.
    fn call(&self, method: &str, path: &str) -> (u16, Value) {
        match self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .call()
        {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let (200, Value::Array(vols)) = self.call("GET", "/v1/volumes") {
                for v in vols {
                    if let Some(n) = v["volume"].as_str() {
                        let _ = self.call("DELETE", &format!("/v1/volumes/{n}?force=true"));
                    }
                }
            }
        }
        self.kill();
        for _ in 0..3 {
            for m in mounts_under(&self.dir) {
                let _ = Command::new("umount").args(["-l", &m]).status();
            }
        }
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("{:?} -> {}", e.file_name(), b.trim_end()));
            }
        }
    }
    out
}

struct Bed {
    tmp: TempDir,
    daemon: Daemon,
    srv: Server,
}

impl Bed {
    /// goldmountd, the appliance with `deadline_secs` as mount deadline,
    /// host `here` registered, gold copy `g` (the GPT gold disk).
    fn new(tag: &str, deadline_secs: u64) -> Self {
        require_root();
        require_tool("sgdisk", "gdisk");
        require_tool("mkfs.xfs", "xfsprogs");
        let tmp = TempDir::new(tag);
        let pki = pki::init_dev_pki(
            &tmp.path().join("tls"),
            &pki::DevPkiOptions {
                hostname: Some("localhost".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let daemon = Daemon::new(&tmp.path().join("connector"), &pki);
        let srv = Server::start_with(
            &tmp.path().join("data"),
            "loop",
            &[
                "--client-cert",
                pki.client_cert.to_str().unwrap(),
                "--client-key",
                pki.client_key.to_str().unwrap(),
                "--mount-deadline-secs",
                &deadline_secs.to_string(),
            ],
        );
        let img = golddisk::build(tmp.path(), "gold.img").unwrap();
        let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
        let (s, h) = srv.req(
            "PUT",
            "/v1/hosts/here",
            Some(
                &json!({"iqns": ["iqn.2026-11.t:here"], "callback_url": daemon.url,
                        "callback_ca_pem": ca})
                .to_string(),
            ),
        );
        assert!(s == 201 || s == 200, "{h}");
        let (s, g) = srv.req(
            "POST",
            "/v1/gold-copies",
            Some(&json!({"name": "g", "source": img}).to_string()),
        );
        assert_eq!(s, 201, "{g}");
        Bed { tmp, daemon, srv }
    }

    fn path_for(&self, v: &str) -> PathBuf {
        self.tmp.path().join("media").join(v)
    }

    fn request(&self, v: &str) -> Value {
        json!({"gold": "g", "host": "here", "volume": v, "path": self.path_for(v)})
    }

    fn post(&self, v: &str) -> (u16, Value) {
        self.srv
            .req("POST", "/v1/mounts", Some(&self.request(v).to_string()))
    }

    fn assert_clean(&self) {
        for p in ["/v1/clones", "/v1/presentations", "/v1/mounts"] {
            let (s, v) = self.srv.req("GET", p, None);
            assert_eq!((s, v.clone()), (200, json!([])), "{p}: {v}");
        }
        let (s, v) = self.daemon.call("GET", "/v1/volumes");
        assert_eq!((s, v.clone()), (200, json!([])), "{v}");
        assert_eq!(mounts_under(self.tmp.path()), Vec::<String>::new());
        let t0 = Instant::now();
        while !loops_backed_under(self.tmp.path()).is_empty()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(loops_backed_under(self.tmp.path()), Vec::<String>::new());
    }
}

/// The connector's answer times out — goldmountd is stopped (SIGSTOP)
/// mid-mount until the appliance gives up waiting, then continued: the
/// host finishes, and the appliance, asking it, keeps the mount.
#[test]
fn a_timed_out_connector_that_finished_keeps_the_mount() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::new("faults-timeout", 5);
    let body = bed.request("t1").to_string();
    let t0 = Instant::now();
    let (s, m) = std::thread::scope(|sc| {
        let post = sc.spawn(|| bed.srv.req("POST", "/v1/mounts", Some(&body)));
        bed.daemon.wait_phase("t1", "mounting");
        bed.daemon.signal(rustix::process::Signal::STOP);
        let stopped = Instant::now();
        while !bed.srv.log_text().contains("answer was lost") {
            assert!(
                stopped.elapsed() < Duration::from_secs(30),
                "{}",
                bed.srv.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bed.daemon.signal(rustix::process::Signal::CONT);
        eprintln!(
            "goldmountd stopped for {:?}, until the appliance timed out",
            stopped.elapsed()
        );
        post.join().unwrap()
    });
    eprintln!("POST after a timeout: {s} in {:?}: {m:#}", t0.elapsed());
    assert_eq!(s, 201, "{m}\n{}", bed.daemon.log_text());
    assert_eq!(m["phase"], "mounted");
    assert_eq!(m["host_state"]["state"], "mounted");
    let why = m["host_state"]["reason"].as_str().unwrap();
    assert!(why.contains("did not answer in time"), "{why}");
    assert_eq!(m["manifest"]["mounts"].as_array().unwrap().len(), 3, "{m}");
    assert_eq!(m["publication"]["target"], json!(bed.path_for("t1")), "{m}");
    assert_eq!(
        std::fs::read_to_string(bed.path_for("t1").join("srv/data/records.csv")).unwrap(),
        golddisk::FILES[2].1
    );
    let (s, g) = bed.srv.req("GET", "/v1/mounts/t1", None);
    assert_eq!(
        (s, &g["host_state"]["state"]),
        (200, &json!("mounted")),
        "{g}"
    );
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/t1", None);
    assert_eq!(s, 200, "{v}");
    bed.assert_clean();
}

/// Posts `v`'s mount while goldmountd is SIGKILLed once the volume is
/// being mounted on the host; `restart_after` (if any) starts it again.
fn post_and_kill(bed: &mut Bed, v: &str, restart_after: Option<Duration>) -> (u16, Value) {
    let body = bed.request(v).to_string();
    let srv = &bed.srv;
    let daemon = &mut bed.daemon;
    std::thread::scope(|sc| {
        let post = sc.spawn(move || srv.req("POST", "/v1/mounts", Some(&body)));
        // Killed as soon as the record says "mounting": a whole mount of
        // this gold takes ~0.2 s now, a fixed delay landed after it.
        daemon.wait_phase(v, "mounting");
        daemon.kill();
        eprintln!("goldmountd SIGKILLed while mounting {v}");
        if let Some(d) = restart_after {
            std::thread::sleep(d);
            daemon.start();
        }
        post.join().unwrap()
    })
}

/// goldmountd is SIGKILLed mid-mount and restarted within the settle time:
/// its recovery rolls the volume back, and the appliance, asking again,
/// undoes clone and presentation.
#[test]
fn a_connector_killed_mid_mount_and_rolled_back_is_undone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new("faults-rollback", 40);
    let t0 = Instant::now();
    let (s, v) = post_and_kill(&mut bed, "k1", Some(Duration::from_secs(1)));
    eprintln!("POST with a kill: {s} in {:?}: {v:#}", t0.elapsed());
    assert_eq!(
        (s, v["code"].as_str()),
        (502, Some("connector_failed")),
        "{v}"
    );
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("rolled back"), "{msg}");
    assert_eq!(
        v["connector_failure"]["undone"],
        json!([
            "unpresented clone \"k1\" from host \"here\"",
            "deleted clone \"k1\""
        ]),
        "{v}"
    );
    assert!(
        bed.daemon.log_text().contains("recovery done"),
        "{}",
        bed.daemon.log_text()
    );
    let (s, _) = bed.srv.req("GET", "/v1/mounts/k1", None);
    assert_eq!(s, 404);
    bed.assert_clean();
}

/// goldmountd is SIGKILLed mid-mount and stays down past the settle time:
/// the appliance keeps clone, presentation and record (`host_unknown`, with
/// why); once the connector is back, GET reports what the host has, the
/// same POST finishes the mount and DELETE takes it all down.
#[test]
fn an_unreachable_connector_leaves_the_mount_host_unknown() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new("faults-unknown", 20);
    let t0 = Instant::now();
    let (s, v) = post_and_kill(&mut bed, "u1", None);
    eprintln!(
        "POST with the connector down: {s} in {:?}: {v:#}",
        t0.elapsed()
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (502, Some("connector_failed")),
        "{v}"
    );
    assert_eq!(v["connector_failure"]["undone"], json!([]), "{v}");
    let (s, m) = bed.srv.req("GET", "/v1/mounts/u1", None);
    eprintln!("GET while down: {m:#}");
    assert_eq!((s, m["phase"].as_str()), (200, Some("host_unknown")), "{m}");
    assert_eq!(m["host_state"]["state"], "unknown", "{m}");
    assert!(
        m["host_state"]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be asked"),
        "{m}"
    );
    let (s, _) = bed.srv.req("GET", "/v1/clones/u1", None);
    assert_eq!(s, 200, "the clone is kept");
    let (s, _) = bed.srv.req("GET", "/v1/presentations/u1", None);
    assert_eq!(s, 200, "the presentation is kept");

    // Back up: recovery rolled the host back; GET says so.
    bed.daemon.start();
    let (s, m) = bed.srv.req("GET", "/v1/mounts/u1", None);
    eprintln!("GET once back: {m:#}");
    assert_eq!(
        (s, &m["host_state"]["state"]),
        (200, &json!("absent")),
        "{m}"
    );
    assert_eq!(m["phase"], "host_unknown");

    // The same request finishes the mount.
    let (s, m) = bed.post("u1");
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        (m["phase"].as_str(), m["host_state"]["state"].as_str()),
        (Some("mounted"), Some("mounted")),
        "{m}"
    );
    assert_eq!(
        std::fs::read_to_string(bed.path_for("u1").join("etc/hostname")).unwrap(),
        golddisk::FILES[0].1
    );
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/u1", None);
    assert_eq!(s, 200, "{v}");
    bed.assert_clean();
}
