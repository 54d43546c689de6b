//! goldmountd survives being killed during a mount (issue 10).
//!
//! The real binary mounts the shared gold disk (GPT: /boot ext4, root XFS
//! with an fstab naming the others, data ext4 — a whole-disk loop, three
//! offset loops, directories, a staging mount and three mounts, then a
//! publication) through `PUT /v1/volumes/{name}`, and is killed a series of
//! delays after the request was sent: from 0 ms up to past the point where
//! the mount answers. No hook in the daemon: only the clock decides where a
//! kill lands, and the journal left in the state store says where it did.
//!
//! After each kill the daemon is started again (recovery runs once at
//! start) and the volume must be all or nothing: mounted with every mount
//! of its manifest in /proc/self/mountinfo and its publication bound, or
//! absent (404) with no mount under the volume root or the target, no loop
//! device of the image, no volume directory, no record. SIGTERM must do the
//! same gracefully: the operation in flight finishes (or never starts), the
//! daemon exits 0, nothing is left for recovery, and the client's answer
//! says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../tests/src/golddisk.rs"]
mod golddisk;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connector::state::{Action, Phase, StateStore, VolumeRecord};
use serde_json::{json, Value};

const VOLUME: &str = "swept";

/// The two sweeps build and mount copies of the same gold; one at a time
/// keeps their timings honest on a two-core host.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tempdir with certificates, a config, the gold disk and a log.
struct Bed {
    dir: tempfile::TempDir,
    port: u16,
    cfg_path: PathBuf,
    img: PathBuf,
    target: PathBuf,
    log: PathBuf,
    client: reqwest::Client,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = common::dev_pki(d);
        let port = free_port();
        let cfg_path = d.join("config.toml");
        fs::write(
            &cfg_path,
            format!(
                r#"
[control]
listen = "127.0.0.1:{port}"
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
shutdown_grace_secs = 60

[engine]
volumes_root = "{d}/volumes"
state_path = "{d}/state/state.redb"
run_dir = "{d}/run"

[log]
format = "json"
level = "info"
"#,
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
                ca = pki.ca_cert.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let img = golddisk::build(d, "gold.img").unwrap();
        let mut pem = fs::read(&pki.client_cert).unwrap();
        pem.extend(fs::read(&pki.client_key).unwrap());
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&fs::read(&pki.ca_cert).unwrap()).unwrap(),
            )
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Self {
            port,
            cfg_path,
            target: d.join("media/swept"),
            log: d.join("goldmountd.log"),
            img,
            client,
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn volumes_root(&self) -> PathBuf {
        self.path().join("volumes")
    }

    fn url(&self, p: &str) -> String {
        format!("https://localhost:{}{p}", self.port)
    }

    fn body(&self) -> Value {
        json!({
            "sources": [{"kind": "device", "path": self.img}],
            "target": self.target,
        })
    }

    /// Starts the real binary and waits until it answers; returns it and
    /// what its recovery said.
    async fn start(&self) -> (Child, String) {
        let from = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_goldmountd"))
            .arg("--config")
            .arg(&self.cfg_path)
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
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "goldmountd exited at start ({st}): {}",
                    self.log_since(from)
                );
            }
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                assert_eq!(r.status(), 200, "{}", self.log_since(from));
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "goldmountd did not answer within 60 s: {}",
                self.log_since(from)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let recovery = self
            .log_since(from)
            .lines()
            .find(|l| l.contains("recovery done"))
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                let f = &v["fields"];
                format!(
                    "rolled_back={} finished={} quarantined={} in_progress={}",
                    f["rolled_back"], f["finished"], f["quarantined"], f["in_progress"]
                )
            })
            .unwrap_or_else(|| "no recovery line".into());
        (child, recovery)
    }

    fn log_since(&self, from: u64) -> String {
        let all = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[(from as usize).min(all.len())..]).into_owned()
    }

    /// The volume's record while no daemon runs.
    fn record(&self) -> Option<VolumeRecord> {
        StateStore::open(&self.path().join("state/state.redb"))
            .unwrap()
            .get(VOLUME)
            .unwrap()
    }

    /// Where in the mount the record says the daemon was.
    fn landed(&self) -> String {
        let Some(rec) = self.record() else {
            return "0 no record (before the engine)".into();
        };
        match rec.phase {
            Phase::Mounting => match rec.steps.last() {
                None => "1 mounting: record, no step".into(),
                Some(s) => {
                    let what = match &s.action {
                        Action::AttachLoop { offset, .. } if *offset == 0 => {
                            "attach whole-disk loop".to_string()
                        }
                        Action::AttachLoop { .. } => "attach partition loop".to_string(),
                        Action::MakeDir { .. } => "make directory".to_string(),
                        Action::Mount { target, .. } => {
                            let rel = target
                                .strip_prefix(self.volumes_root().join(VOLUME))
                                .map(|r| format!("/{}", r.display()))
                                .unwrap_or_else(|_| "staging".into());
                            format!("mount {rel}")
                        }
                        other => format!("{other:?}"),
                    };
                    format!(
                        "2 mounting: {what} ({})",
                        if s.done { "done" } else { "pending" }
                    )
                }
            },
            Phase::Mounted => match rec.publications.first() {
                None => "3 mounted, not yet published".into(),
                Some(p) if p.mount_ids.is_empty() => "4 publishing (recorded, not bound)".into(),
                Some(_) => "5 mounted and published".into(),
            },
            other => format!("9 {other:?}"),
        }
    }

    /// The kernel's mount points at or below `dir`.
    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        common::mounts_under(dir)
    }

    /// Loop devices of the image (and those stacked on them).
    fn loops(&self) -> Vec<PathBuf> {
        common::loops_under(self.path())
            .into_iter()
            .collect::<Vec<_>>()
    }

    /// The invariant: all or nothing. Returns "mounted" or "absent".
    async fn check_all_or_nothing(&self, when: &str) -> &'static str {
        let r = self
            .client
            .get(self.url(&format!("/v1/volumes/{VOLUME}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            404 => {
                self.assert_nothing_left(when).await;
                "absent"
            }
            200 => {
                assert_eq!(v["phase"], "mounted", "{when}: half a volume: {v:#}");
                assert!(v["quarantine"].is_null(), "{when}: {v:#}");
                let table: Vec<PathBuf> = self.mounts_under(self.path());
                let mounts = v["manifest"]["mounts"].as_array().unwrap();
                assert_eq!(mounts.len(), 3, "{when}: {v:#}");
                for m in mounts {
                    let p = PathBuf::from(m["mount_path"].as_str().unwrap());
                    assert!(
                        table.contains(&p),
                        "{when}: manifest mount {} is not in mountinfo ({table:?})",
                        p.display()
                    );
                }
                let vol = self.volumes_root().join(VOLUME);
                assert_eq!(
                    self.mounts_under(&vol).len(),
                    3,
                    "{when}: extra mounts under the volume: {:?}",
                    self.mounts_under(&vol)
                );
                for p in v["publications"].as_array().unwrap() {
                    let t = PathBuf::from(p["target"].as_str().unwrap());
                    assert!(
                        table.contains(&t),
                        "{when}: publication at {} is recorded but not bound",
                        t.display()
                    );
                }
                assert_eq!(
                    fs::read_to_string(vol.join("srv/data/records.csv")).unwrap(),
                    golddisk::FILES[2].1
                );
                "mounted"
            }
            s => panic!("{when}: GET answered {s}: {v}"),
        }
    }

    async fn assert_nothing_left(&self, when: &str) {
        let mounts = self.mounts_under(self.path());
        assert!(mounts.is_empty(), "{when}: mounts left: {mounts:?}");
        // Autoclear loops go when their last user closes them.
        let t0 = Instant::now();
        while !self.loops().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            self.loops(),
            Vec::<PathBuf>::new(),
            "{when}: loop devices left"
        );
        let vols: Vec<_> = fs::read_dir(self.volumes_root())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            vols.is_empty(),
            "{when}: left under the volumes root: {vols:?}"
        );
        let staging: Vec<_> = fs::read_dir(self.path().join("run/staging"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(staging.is_empty(), "{when}: staging left: {staging:?}");
        assert!(
            !self.target.join("etc").exists(),
            "{when}: the target shows a tree"
        );
        let listed: Value = self
            .client
            .get(self.url("/v1/volumes"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed, json!([]), "{when}: records left");
    }

    /// The same PUT again (what a client does after losing its answer)
    /// completes what a kill between the mount and the publication left:
    /// the volume mounted and published at the target.
    async fn put_again_completes(&self, when: &str) {
        let r = self
            .client
            .put(self.url(&format!("/v1/volumes/{VOLUME}")))
            .json(&self.body())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!(s == 200 || s == 201, "{when}: the PUT again: {s} {v}");
        assert_eq!(
            v["publication"]["target"],
            json!(self.target),
            "{when}: {v}"
        );
        assert!(
            common::mounts_under(&self.target).contains(&self.target),
            "{when}: the PUT again did not bind the target"
        );
        assert_eq!(
            fs::read_to_string(self.target.join("srv/data/records.csv")).unwrap(),
            golddisk::FILES[2].1
        );
    }

    /// Takes a mounted volume down through the API and checks nothing is left.
    async fn delete(&self, when: &str) {
        let r = self
            .client
            .delete(self.url(&format!("/v1/volumes/{VOLUME}")))
            .send()
            .await
            .unwrap();
        let s = r.status();
        assert_eq!(s, 200, "{when}: DELETE: {}", r.text().await.unwrap());
        self.assert_nothing_left(&format!("{when}, after DELETE"))
            .await;
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::cleanup_under(self.dir.path());
    }
}

/// One kill: how long after the PUT, what the client got, where it landed
/// and what the restarted daemon shows.
struct Kill {
    delay_ms: u64,
    answered_first: bool,
    landed: String,
    outcome: &'static str,
    recovery: String,
}

/// Kills the daemon whose pid it holds when the test panics before it
/// stops the daemon itself: a goldmountd left running keeps the bed's mounts
/// and its state store (seen after a failed sweep). Declared after the bed,
/// so it goes first.
struct KillOnPanic(std::cell::Cell<u32>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0.get() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// One mount without a kill: how long the PUT takes here.
async fn baseline(bed: &Bed) -> Duration {
    let mut times = Vec::new();
    for _ in 0..2 {
        let t0 = Instant::now();
        let r = bed
            .client
            .put(bed.url(&format!("/v1/volumes/{VOLUME}")))
            .json(&bed.body())
            .send()
            .await
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        bed.check_all_or_nothing("baseline").await;
        bed.delete("baseline").await;
        times.push(took);
    }
    times.into_iter().min().unwrap()
}

/// Kill delays: 0, 20, 50, 100, 200, 400, 800 … and sixteenths of the
/// baseline, so every stretch of the mount gets kills.
fn delays(base: Duration) -> Vec<u64> {
    let b = base.as_millis() as u64;
    let mut d = vec![0, 20, 50, 100, 200, 400, 800];
    let mut next = 1600;
    while next < b * 2 {
        d.push(next);
        next *= 2;
    }
    d.extend((1..=18).map(|k| b * k / 16));
    d.sort_unstable();
    d.dedup();
    d
}

fn table(kills: &[Kill]) -> String {
    let mut by: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for k in kills {
        *by.entry((k.landed.clone(), k.outcome)).or_default() += 1;
    }
    let mut out =
        String::from("landed in (journal)                         | after restart | kills\n");
    for ((l, o), n) in by {
        out.push_str(&format!("{l:<44}| {o:<14}| {n}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_mount_leaves_all_or_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = Bed::new();
    let (mut child, _) = bed.start().await;
    let guard = KillOnPanic(std::cell::Cell::new(child.id()));
    let base = baseline(&bed).await;
    eprintln!("baseline PUT (mount + publish): {base:?}");
    let mut kills = Vec::new();
    let started = Instant::now();
    for delay in delays(base) {
        // A warm connection: the PUT goes out at once.
        bed.client.get(bed.url("/healthz")).send().await.unwrap();
        let put = tokio::spawn({
            let req = bed
                .client
                .put(bed.url(&format!("/v1/volumes/{VOLUME}")))
                .json(&bed.body());
            async move { req.send().await.map(|r| r.status().as_u16()) }
        });
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let answered_first = put.is_finished();
        child.kill().unwrap();
        child.wait().unwrap();
        let answer = put.await.unwrap();
        if answered_first {
            assert_eq!(answer.as_ref().ok(), Some(&201), "{answer:?}");
        }
        let landed = bed.landed();
        let (c, recovery) = bed.start().await;
        child = c;
        guard.0.set(child.id());
        let when = format!("SIGKILL {delay} ms after the PUT ({landed})");
        let outcome = bed.check_all_or_nothing(&when).await;
        eprintln!("{when}: {outcome}; answer {answer:?}; recovery: {recovery}");
        if outcome == "mounted" {
            bed.put_again_completes(&when).await;
            bed.delete(&when).await;
        }
        kills.push(Kill {
            delay_ms: delay,
            answered_first,
            landed,
            outcome,
            recovery,
        });
    }
    signal(&child, rustix::process::Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let t = table(&kills);
    eprintln!(
        "{} SIGKILLs in {:.1} s (baseline {base:?}):\n{t}",
        kills.len(),
        started.elapsed().as_secs_f64()
    );
    for k in &kills {
        eprintln!(
            "  {:>5} ms  answered first: {:<5}  {}  -> {}  [{}]",
            k.delay_ms, k.answered_first, k.landed, k.outcome, k.recovery
        );
    }
    // The sweep reached both ends and the middle of the mount.
    assert!(kills.iter().any(|k| k.outcome == "absent"), "{t}");
    assert!(kills.iter().any(|k| k.answered_first), "{t}");
    assert!(
        kills.iter().any(|k| k.landed.starts_with("2 mounting")),
        "no kill landed between the steps of the mount:\n{t}"
    );
    // Every kill mid-mount was rolled back by recovery, and said so.
    for k in kills.iter().filter(|k| k.landed.starts_with("2 mounting")) {
        assert_eq!(k.outcome, "absent", "{}", k.landed);
        assert!(k.recovery.contains(VOLUME), "{}: {}", k.landed, k.recovery);
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join("goldmount-faults-report.txt"))
        .unwrap();
    writeln!(f, "SIGKILL sweep, baseline {base:?}\n{t}").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_mount_finishes_it_and_exits_0() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = Bed::new();
    let (mut child, _) = bed.start().await;
    let guard = KillOnPanic(std::cell::Cell::new(child.id()));
    let base = baseline(&bed).await;
    let b = base.as_millis() as u64;
    let mut rows = Vec::new();
    let mut sched = vec![
        0,
        20,
        50,
        100,
        200,
        400,
        800,
        b / 4,
        b / 2,
        b * 3 / 4,
        b + 200,
    ];
    sched.sort_unstable();
    sched.dedup();
    for delay in sched {
        bed.client.get(bed.url("/healthz")).send().await.unwrap();
        let put = tokio::spawn({
            let req = bed
                .client
                .put(bed.url(&format!("/v1/volumes/{VOLUME}")))
                .json(&bed.body());
            async move { req.send().await.map(|r| r.status().as_u16()) }
        });
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let answered_first = put.is_finished();
        let t0 = Instant::now();
        signal(&child, rustix::process::Signal::TERM);
        let st = tokio::task::spawn_blocking(move || {
            let st = child.wait().unwrap();
            (child, st)
        })
        .await
        .unwrap();
        let exited_after = t0.elapsed();
        assert_eq!(st.1.code(), Some(0), "SIGTERM {delay} ms: {}", st.1);
        let answer = put.await.unwrap();
        // Graceful: nothing is left half-way for recovery.
        let landed = bed.landed();
        assert!(
            landed.starts_with('0') || landed.starts_with('5'),
            "SIGTERM {delay} ms after the PUT left the journal at {landed}"
        );
        let (c, recovery) = bed.start().await;
        child = c;
        guard.0.set(child.id());
        let when = format!("SIGTERM {delay} ms after the PUT ({landed})");
        assert!(
            recovery.contains(r#"rolled_back="[]""#) && recovery.contains(r#"quarantined="[]""#),
            "{when}: recovery had work: {recovery}"
        );
        let outcome = bed.check_all_or_nothing(&when).await;
        // The client's answer says which.
        match (&answer, outcome) {
            (Ok(201), "mounted") => {}
            (Err(_), "absent") => {}
            other => panic!("{when}: answer and state disagree: {other:?}"),
        }
        eprintln!("{when}: {outcome}; answer {answer:?}; exited {exited_after:?} after SIGTERM");
        if outcome == "mounted" {
            bed.delete(&when).await;
        }
        rows.push((delay, answered_first, landed, outcome, exited_after));
    }
    signal(&child, rustix::process::Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut t = String::new();
    for (d, a, l, o, e) in &rows {
        t.push_str(&format!(
            "  {d:>5} ms  answered first: {a:<5}  {l:<32} -> {o:<8}  exit 0 after {e:?}\n"
        ));
    }
    eprintln!("SIGTERM sweep (baseline {base:?}):\n{t}");
    assert!(
        rows.iter().any(|r| r.3 == "mounted" && !r.1),
        "no SIGTERM landed mid-mount:\n{t}"
    );
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join("goldmount-faults-report.txt"))
        .unwrap();
    writeln!(f, "SIGTERM sweep, baseline {base:?}\n{t}").unwrap();
}
