//! What the plugin reports to its observer, against a real dockerd, the
//! real appliance binary (loop backend) and the real engine: every request
//! of a `docker volume create` / `docker run -v` / `docker volume rm` with
//! its result and stages; goldmountd exposing them on `/metrics`; and
//! Mounts of different volumes running side by side (the plugin holds no
//! lock across the engine's work but the volume's own). Missing
//! prerequisites fail with the install command: no skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use connector::engine::Engine;
use dockerplugin::observe::{Observer, Operation, Stage};
use dockerplugin::{ApplianceAccess, ApplianceLink, Driver, PluginServer};
use goldmount_tests::golddisk;

/// One thing the observer was told.
#[derive(Debug, Clone)]
enum Ev {
    Started,
    Finished(Operation, &'static str),
    StageFinished(Operation, String, Stage, Instant, Duration, bool),
}

/// Holds the first engine mount of each volume until `want` volumes are
/// inside theirs at once (or `limit` passes).
struct Hold {
    want: usize,
    limit: Duration,
    inside: Mutex<BTreeSet<String>>,
    cv: Condvar,
    /// Per volume: how many were inside when it was let go.
    released_with: Mutex<BTreeMap<String, usize>>,
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Ev>>,
    hold: Option<Hold>,
}

impl Recorder {
    fn holding(want: usize, limit: Duration) -> Self {
        Self {
            events: Mutex::default(),
            hold: Some(Hold {
                want,
                limit,
                inside: Mutex::default(),
                cv: Condvar::new(),
                released_with: Mutex::default(),
            }),
        }
    }

    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    /// Results of `op`, counted.
    fn results(&self, op: Operation) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for e in self.events() {
            if let Ev::Finished(o, r) = e {
                if o == op {
                    *m.entry(r).or_default() += 1;
                }
            }
        }
        m
    }

    /// Successful stages of `op`: how many and their total time.
    fn stages(&self, op: Operation) -> BTreeMap<Stage, (usize, Duration)> {
        let mut m: BTreeMap<Stage, (usize, Duration)> = BTreeMap::new();
        for e in self.events() {
            if let Ev::StageFinished(o, _, s, _, took, true) = e {
                if o == op {
                    let x = m.entry(s).or_default();
                    x.0 += 1;
                    x.1 += took;
                }
            }
        }
        m
    }

    /// (volume, start, end) of every finished engine mount.
    fn engine_mounts(&self) -> Vec<(String, Instant, Instant)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::StageFinished(Operation::Mount, v, Stage::EngineMount, end, took, _) => {
                    Some((v, end - took, end))
                }
                _ => None,
            })
            .collect()
    }
}

impl Observer for Recorder {
    fn started(&self, _: Operation, _: &str) {
        self.events.lock().unwrap().push(Ev::Started);
    }
    fn finished(&self, op: Operation, _: &str, result: &'static str, _: Duration) {
        self.events.lock().unwrap().push(Ev::Finished(op, result));
    }
    fn stage_started(&self, op: Operation, volume: &str, stage: Stage) {
        let Some(h) = &self.hold else { return };
        if (op, stage) != (Operation::Mount, Stage::EngineMount) {
            return;
        }
        let mut inside = h.inside.lock().unwrap();
        if !inside.insert(volume.to_string()) {
            return; // its second Mount: not held
        }
        h.cv.notify_all();
        let deadline = Instant::now() + h.limit;
        while inside.len() < h.want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inside = h.cv.wait_timeout(inside, left).unwrap().0;
        }
        let n = inside.len();
        h.released_with
            .lock()
            .unwrap()
            .insert(volume.to_string(), n);
    }
    fn stage_finished(&self, op: Operation, volume: &str, stage: Stage, took: Duration, ok: bool) {
        self.events.lock().unwrap().push(Ev::StageFinished(
            op,
            volume.into(),
            stage,
            Instant::now(),
            took,
            ok,
        ));
    }
}

/// Replaces the bed's in-process plugin by one reporting to `obs`.
fn observed_plugin(bed: &mut Bed, obs: Arc<Recorder>) {
    if let Some(mut p) = bed.plugin.take() {
        p.stop();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(Engine::open(bed.engine_cfg.clone()).unwrap());
    let link = ApplianceLink::new(
        ApplianceAccess {
            url: bed.appl.url.clone(),
            ca: None,
            token_file: Some(bed.appl.token.clone()),
        },
        Arc::new(|| Some(HOST.to_string())),
    );
    let driver = Driver::open(&bed.cfg, engine, link)
        .unwrap()
        .with_observer(obs);
    let server = {
        let _in_rt = rt.enter();
        PluginServer::bind(&bed.cfg.socket_path(), Arc::new(driver)).unwrap()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = rt.spawn(server.run(
        async {
            let _ = rx.await;
        },
        Duration::from_secs(30),
    ));
    bed.plugin = Some(Plugin {
        rt,
        stop: Some(tx),
        task: Some(task),
    });
}

fn records() -> &'static str {
    golddisk::FILES
        .iter()
        .find(|(p, _)| *p == "srv/data/records.csv")
        .map(|(_, c)| *c)
        .unwrap()
}

/// `docker run --rm -v NAME:/data IMAGE cat /data/srv/data/records.csv`.
fn read_run(bed: &Bed, name: &str) -> String {
    bed.docker.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{name}:/data"),
        IMAGE,
        "cat",
        "/data/srv/data/records.csv",
    ])
}

#[test]
fn every_request_of_a_docker_run_is_reported_with_its_result_and_stages() {
    let mut bed = Bed::new(60);
    let obs = Arc::new(Recorder::default());
    observed_plugin(&mut bed, obs.clone());
    let o = bed.create("obs1", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bed.create("obs2", &["source=no-such-gold"]);
    assert!(!o.status.success(), "a create of an unknown gold worked");
    assert_eq!(read_run(&bed, "obs1"), records());
    bed.docker.ok(&["volume", "rm", "obs1"]);
    bed.assert_all_clean();

    let ok1 = BTreeMap::from([("ok", 1)]);
    assert_eq!(
        obs.results(Operation::Create),
        BTreeMap::from([("ok", 1), ("unknown_gold", 1)])
    );
    assert_eq!(obs.results(Operation::Remove), ok1);
    let mounts = obs.results(Operation::Mount);
    let n = mounts.get("ok").copied().unwrap_or(0);
    assert!(n >= 1 && mounts.len() == 1, "Mount results: {mounts:?}");
    assert_eq!(
        obs.results(Operation::Unmount),
        BTreeMap::from([("ok", n)]),
        "every Mount of the run had its Unmount"
    );
    assert!(obs.results(Operation::Get).values().sum::<usize>() >= 1);

    let stages = |op| -> Vec<(Stage, usize)> {
        obs.stages(op)
            .into_iter()
            .map(|(s, (count, took))| {
                assert!(!took.is_zero(), "{op:?} {s:?} took no time");
                (s, count)
            })
            .collect()
    };
    // The failed create stopped at the gold check; only the good one went on.
    assert_eq!(
        stages(Operation::Create),
        [
            (Stage::LockWait, 2),
            (Stage::ApplianceCheck, 1),
            (Stage::ApplianceClone, 1),
            (Stage::AppliancePresent, 1),
        ]
    );
    // Each Mount of the run mounted and published the tree afresh: the
    // Unmount before it had taken it down.
    assert_eq!(
        stages(Operation::Mount),
        [
            (Stage::LockWait, n),
            (Stage::EngineMount, n),
            (Stage::Publish, n)
        ]
    );
    assert_eq!(
        stages(Operation::Unmount),
        [(Stage::LockWait, n), (Stage::Teardown, n)]
    );
    assert_eq!(
        stages(Operation::Remove),
        [
            (Stage::LockWait, 1),
            (Stage::Teardown, 1),
            (Stage::ApplianceUnpresent, 1),
            (Stage::ApplianceDelete, 1),
        ]
    );
    // Every request that started ended (the in-flight gauge comes back to 0).
    let (mut started, mut finished) = (0, 0);
    for e in obs.events() {
        match e {
            Ev::Started => started += 1,
            Ev::Finished(..) => finished += 1,
            _ => {}
        }
    }
    assert_eq!(started, finished);
    eprintln!(
        "{n} Mount(s); stages: create {:?}, mount {:?}",
        obs.stages(Operation::Create),
        obs.stages(Operation::Mount)
    );
}

#[test]
fn mounts_of_different_volumes_run_side_by_side() {
    const N: usize = 4;
    let mut bed = Bed::new(60);
    // Each volume's first engine mount waits (up to 60 s) until all N are
    // inside theirs: a lock the plugin held across the engine's work for
    // more than one volume would keep the others out and fail the test.
    let obs = Arc::new(Recorder::holding(N, Duration::from_secs(60)));
    observed_plugin(&mut bed, obs.clone());
    let names: Vec<String> = (0..N).map(|i| format!("side{i}")).collect();
    for name in &names {
        let o = bed.create(name, &[&format!("source={GOLD}")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let t0 = Instant::now();
    let outputs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|name| {
                let host = bed.docker.host.clone();
                s.spawn(move || {
                    let out = Command::new("docker")
                        .args(["run", "--rm", "-v", &format!("{name}:/data"), IMAGE])
                        .args(["cat", "/data/srv/data/records.csv"])
                        .env("DOCKER_HOST", host)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "docker run -v {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = t0.elapsed();
    for out in &outputs {
        assert_eq!(out, records());
    }
    let hold = obs.hold.as_ref().unwrap();
    let released = hold.released_with.lock().unwrap().clone();
    assert_eq!(
        released,
        names
            .iter()
            .map(|n| (n.clone(), N))
            .collect::<BTreeMap<_, _>>(),
        "every volume's first engine mount must have been let go with all {N} inside theirs"
    );
    // The intervals, for the record (the engine's own host-wide locks show
    // here as mounts ending one after another).
    let mut spans = obs.engine_mounts();
    spans.sort_by_key(|s| s.1);
    for (v, a, b) in &spans {
        eprintln!(
            "engine mount {v}: {:.3} s .. {:.3} s ({:.3} s)",
            (*a - t0).as_secs_f64(),
            (*b - t0).as_secs_f64(),
            (*b - *a).as_secs_f64()
        );
    }
    eprintln!("{N} docker runs at once: {:.2} s", wall.as_secs_f64());
    let rm: Vec<&str> = ["volume", "rm"]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    bed.docker.ok(&rm);
    bed.assert_all_clean();
}

/// `GET /metrics` on goldmountd's control socket.
fn scrape(bed: &Bed) -> String {
    let mut s = UnixStream::connect(control_socket(&bed.dir)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `series` (exact name and labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn goldmountd_exposes_the_plugins_requests_and_stages_on_metrics() {
    let bed = Bed::with_daemon();
    let o = bed.create("met1", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_run(&bed, "met1"), records());
    let m = scrape(&bed);
    let count = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("{series} not in\n{m}"));
    let req =
        |op: &str| format!("goldmount_docker_requests_total{{operation=\"{op}\",result=\"ok\"}}");
    let stage = |op: &str, st: &str, part: &str| {
        format!(
            "goldmount_docker_stage_duration_seconds_{part}{{operation=\"{op}\",stage=\"{st}\"}}"
        )
    };
    assert_eq!(count(&req("create")), 1.0);
    let mounts = count(&req("mount"));
    assert!(mounts >= 1.0, "{m}");
    assert_eq!(count(&req("unmount")), mounts);
    for (op, st) in [
        ("create", "appliance_clone"),
        ("create", "appliance_present"),
        ("mount", "engine_mount"),
        ("mount", "publish"),
        ("unmount", "teardown"),
    ] {
        assert!(count(&stage(op, st, "count")) >= 1.0, "{op} {st}:\n{m}");
        assert!(count(&stage(op, st, "sum")) > 0.0, "{op} {st}:\n{m}");
    }
    assert_eq!(
        count(&stage("mount", "engine_mount", "count")),
        mounts,
        "{m}"
    );
    assert!(count("goldmount_docker_request_duration_seconds_count{operation=\"mount\"}") >= 1.0);
    for op in ["create", "mount", "unmount", "remove"] {
        assert_eq!(
            count(&format!(
                "goldmount_docker_requests_in_flight{{operation=\"{op}\"}}"
            )),
            0.0
        );
    }
    bed.docker.ok(&["volume", "rm", "met1"]);
    let m = scrape(&bed);
    assert_eq!(sample(&m, &req("remove")), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, &stage("remove", "appliance_delete", "count")),
        Some(1.0),
        "{m}"
    );
    bed.assert_all_clean();
}
