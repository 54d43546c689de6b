//! The one-call flow against a real connector: goldmountd's server runs in
//! this process (development certificates from the `pki` crate, an engine
//! over a scratch directory), the appliance (loop backend) is the real
//! binary, and `POST /v1/mounts` clones, presents and has goldmountd mount
//! and publish the clone; `DELETE /v1/mounts/{volume}` takes it all down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// goldmountd on 127.0.0.1:0 in a runtime of its own; stopped on drop.
struct Connector {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<goldmountd::ShutdownReport>>,
    url: String,
    agent: ureq::Agent,
    dir: PathBuf,
}

impl Connector {
    fn start(dir: &Path, pki: &pki::DevPki) -> Self {
        let mut cfg = goldmountd::config::Config::default();
        cfg.control.listen = "127.0.0.1:0".parse().unwrap();
        cfg.control.cert = pki.server_cert.clone();
        cfg.control.key = pki.server_key.clone();
        cfg.control.client_ca = pki.ca_cert.clone();
        cfg.control.shutdown_grace_secs = 30;
        cfg.engine.volumes_root = dir.join("volumes");
        cfg.engine.state_path = dir.join("state/state.redb");
        cfg.engine.run_dir = dir.join("run");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = Arc::new(connector::engine::Engine::open(cfg.engine.clone()).unwrap());
        let server = rt.block_on(goldmountd::Server::bind(&cfg, engine)).unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = rt.spawn(server.run(async {
            let _ = rx.await;
        }));
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
            .build();
        Connector {
            rt,
            stop: Some(tx),
            task: Some(task),
            url: format!("https://127.0.0.1:{}", addr.port()),
            agent,
            dir: dir.to_path_buf(),
        }
    }

    fn call(&self, method: &str, path: &str) -> (u16, Value) {
        let res = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .call();
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        (resp.status(), resp.into_json().unwrap_or(Value::Null))
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // Whatever a failed test left mounted goes first.
        if let (200, Value::Array(vols)) = self.call("GET", "/v1/volumes") {
            for v in vols {
                if let Some(n) = v["volume"].as_str() {
                    let _ = self.call("DELETE", &format!("/v1/volumes/{n}?force=true"));
                }
            }
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

/// Mount points at or under `dir` in this mount namespace.
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

/// Loop devices whose backing file is under `dir`.
fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{n} -> {}", b.trim_end()));
            }
        }
    }
    out
}

/// A test bed: dev PKI, goldmountd, the appliance with its client
/// certificate, a registered host and an ext4 gold copy holding `hello`.
struct Bed {
    tmp: TempDir,
    pki: pki::DevPki,
    connector: Connector,
    srv: Server,
}

impl Bed {
    fn new(tag: &str) -> Self {
        require_root();
        require_tool("losetup", "mount");
        require_tool("mkfs.ext4", "e2fsprogs");
        let tmp = TempDir::new(tag);
        let pki = pki::init_dev_pki(
            &tmp.path().join("tls"),
            &pki::DevPkiOptions {
                hostname: Some("gm-test-host".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let conn_dir = tmp.path().join("connector");
        std::fs::create_dir_all(&conn_dir).unwrap();
        let connector = Connector::start(&conn_dir, &pki);
        let srv = Server::start_with(
            &tmp.path().join("data"),
            "loop",
            &[
                "--client-cert",
                pki.client_cert.to_str().unwrap(),
                "--client-key",
                pki.client_key.to_str().unwrap(),
                "--mount-deadline-secs",
                "60",
            ],
        );
        let img = tmp.path().join("gold.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let content = tmp.path().join("content");
        std::fs::create_dir_all(content.join("etc")).unwrap();
        std::fs::write(content.join("hello"), "from the gold copy\n").unwrap();
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                "onecall",
                "-d",
                content.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        let bed = Bed {
            tmp,
            pki,
            connector,
            srv,
        };
        bed.register(&bed.connector.url.clone());
        let (s, g) = bed.srv.req(
            "POST",
            "/v1/gold-copies",
            Some(&json!({"name": "g", "source": img}).to_string()),
        );
        assert_eq!(s, 201, "{g}");
        bed
    }

    /// (Re)registers host `here` with its connector at `url`.
    fn register(&self, url: &str) {
        let ca = std::fs::read_to_string(&self.pki.ca_cert).unwrap();
        let (s, h) = self.srv.req(
            "PUT",
            "/v1/hosts/here",
            Some(
                &json!({"iqns": ["iqn.2026-11.t:here"], "callback_url": url,
                        "callback_ca_pem": ca})
                .to_string(),
            ),
        );
        assert!(s == 201 || s == 200, "{h}");
    }

    fn publish_path(&self, name: &str) -> PathBuf {
        self.tmp.path().join("media").join(name)
    }

    fn post_mount(&self, body: &Value) -> (u16, Value) {
        self.srv.req("POST", "/v1/mounts", Some(&body.to_string()))
    }

    /// Nothing of the appliance's left: no clone, presentation or mount,
    /// no clone image, no loop device of a clone.
    fn assert_appliance_clean(&self) {
        for p in ["/v1/clones", "/v1/presentations", "/v1/mounts"] {
            let (s, v) = self.srv.req("GET", p, None);
            assert_eq!((s, v.clone()), (200, json!([])), "{p}: {v}");
        }
        let clones = self.srv.data_dir.join("clones");
        let left: Vec<_> = std::fs::read_dir(&clones).unwrap().flatten().collect();
        assert!(left.is_empty(), "clone images left: {left:?}");
        assert_eq!(loops_backed_under(&clones), Vec::<String>::new());
    }

    /// Nothing of the host's left: no volume, no mount under the
    /// connector's directories or the publish root.
    fn assert_host_clean(&self) {
        let (s, v) = self.connector.call("GET", "/v1/volumes");
        assert_eq!((s, v.clone()), (200, json!([])), "{v}");
        assert_eq!(mounts_under(&self.connector.dir), Vec::<String>::new());
        assert_eq!(
            mounts_under(&self.tmp.path().join("media")),
            Vec::<String>::new()
        );
    }
}

#[test]
fn one_call_mounts_publishes_answers_the_same_again_and_deletes_everything() {
    let bed = Bed::new("onecall");
    let path = bed.publish_path("pgsql1");
    let req = json!({"gold": "g", "host": "here", "volume": "v1", "path": path});
    let (s, m) = bed.post_mount(&req);
    assert_eq!(s, 201, "{m}");
    eprintln!("answer: {m:#}");
    assert_eq!(m["phase"], "mounted");
    assert_eq!(m["clone"], "v1");
    assert_eq!(m["manifest"]["volume"], "v1");
    assert_eq!(m["manifest"]["mounts"][0]["label"], "onecall", "{m}");
    assert_eq!(m["publication"]["target"], path.to_str().unwrap());
    assert_eq!(m["presentation"]["transport"], "loop");
    assert!(m["timings"]["connector_ms"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(
        std::fs::read_to_string(path.join("onecall/hello")).unwrap(),
        "from the gold copy\n",
        "the tree is readable at the path"
    );

    // The same request again: 200 and the same answer; a different one: 409.
    let (s, again) = bed.post_mount(&req);
    assert_eq!((s, &again), (200, &m));
    let (s, v) = bed.srv.req("GET", "/v1/mounts/v1", None);
    assert_eq!((s, &v), (200, &m));
    let (s, v) = bed.srv.req("GET", "/v1/mounts", None);
    assert_eq!((s, v), (200, json!([m.clone()])));
    let (s, v) = bed.post_mount(&json!({"gold": "g", "host": "here", "volume": "v1"}));
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");

    // The connector refuses to unmount a published volume in use without
    // force: 409 with its answer inside, and nothing undone.
    let held = std::fs::File::open(path.join("onecall/hello")).unwrap();
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/v1", None);
    eprintln!("DELETE without force: {s} {v:#}");
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    let f = &v["connector_failure"];
    assert_eq!(f["connector"]["status"], 409, "{v}");
    assert_eq!(f["connector"]["body"]["kind"], "conflict", "{v}");
    assert_eq!(f["undone"], json!([]));
    assert_eq!(
        std::fs::read_to_string(path.join("onecall/hello")).unwrap(),
        "from the gold copy\n"
    );
    let (s, v) = bed.srv.req("GET", "/v1/mounts/v1", None);
    assert_eq!((s, &v), (200, &m), "the mount stands as it was");
    drop(held);

    // Released: a plain DELETE is the complete teardown (publication too).
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/v1", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clone"], "v1");
    assert_eq!(v["connector"]["volume"], "v1");
    bed.assert_host_clean();
    bed.assert_appliance_clean();
    assert!(!path.join("onecall/hello").exists());
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/v1", None);
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
}

#[test]
fn an_unpublished_mount_in_use_is_refused_then_deleted_without_force() {
    let bed = Bed::new("onecall-busy");
    let (s, m) = bed.post_mount(&json!({"gold": "g", "host": "here", "volume": "v2",
                                         "read_only": true}));
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["publication"], Value::Null);
    assert_eq!(m["manifest"]["read_only"], true);
    let tree = PathBuf::from(m["manifest"]["path"].as_str().unwrap());
    let held = std::fs::File::open(tree.join("onecall/hello")).unwrap();
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/v2", None);
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("in use"),
        "the connector's reason is passed on: {v}"
    );
    let (s, _) = bed.srv.req("GET", "/v1/presentations/v2", None);
    assert_eq!(s, 200, "still presented");
    drop(held);
    let (s, v) = bed.srv.req("DELETE", "/v1/mounts/v2", None);
    assert_eq!(s, 200, "{v}");
    bed.assert_host_clean();
    bed.assert_appliance_clean();
}

#[test]
fn a_connector_that_is_down_or_refuses_leaves_nothing_behind() {
    let bed = Bed::new("onecall-fail");

    // Refused: the connector will not publish under /etc.
    let (s, v) = bed.post_mount(&json!({"gold": "g", "host": "here", "volume": "v3",
                                         "path": "/etc/x"}));
    eprintln!("refused: {s} {v:#}");
    assert_eq!(
        (s, v["code"].as_str()),
        (502, Some("connector_failed")),
        "{v}"
    );
    let f = &v["connector_failure"];
    assert_eq!(f["connector"]["status"], 400, "{v}");
    assert_eq!(f["connector"]["body"]["kind"], "invalid", "{v}");
    assert!(
        f["connector"]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("/etc"),
        "{v}"
    );
    assert_eq!(
        f["undone"],
        json!([
            "unpresented clone \"v3\" from host \"here\"",
            "deleted clone \"v3\""
        ]),
        "{v}"
    );
    assert_eq!(f["left"], json!([]));
    assert!(!Path::new("/etc/x").exists());
    bed.assert_appliance_clean();
    bed.assert_host_clean();

    // Down: the callback goes to a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    bed.register(&format!("https://127.0.0.1:{port}"));
    let t = std::time::Instant::now();
    let (s, v) = bed.post_mount(&json!({"gold": "g", "host": "here", "volume": "v4",
                                         "path": bed.publish_path("v4")}));
    eprintln!("down: {s} {v:#}");
    assert_eq!(
        (s, v["code"].as_str()),
        (502, Some("connector_failed")),
        "{v}"
    );
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("could not reach"), "{msg}");
    assert_eq!(v["connector_failure"]["connector"], Value::Null);
    assert_eq!(v["connector_failure"]["left"], json!([]), "{v}");
    bed.assert_appliance_clean();

    // A host without a callback cannot be mounted on: 422 before any step.
    let (s, _) = bed.srv.req(
        "PUT",
        "/v1/hosts/bare",
        Some(&json!({"iqns": ["iqn.2026-11.t:bare"]}).to_string()),
    );
    assert_eq!(s, 201);
    let (s, v) = bed.post_mount(&json!({"gold": "g", "host": "bare", "volume": "v5"}));
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("callback_url"), "{v}");
    bed.assert_appliance_clean();
}

#[test]
fn the_cli_mounts_and_unmounts_in_one_command_each() {
    let bed = Bed::new("onecall-cli");
    let path = bed.publish_path("cli");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_goldmount-appliance"))
            .args(args)
            .args(["--server", &bed.srv.url])
            .env("GOLDMOUNT_APPLIANCE_TOKEN", &bed.srv.token)
            .output()
            .unwrap()
    };
    let out = cli(&[
        "mount",
        "g",
        "--host",
        "here",
        "--volume",
        "cv",
        "--path",
        path.to_str().unwrap(),
        "--read-only",
    ]);
    assert!(out.status.success(), "{out:?}");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (m["volume"].as_str(), m["read_only"].as_bool()),
        (Some("cv"), Some(true))
    );
    assert_eq!(
        std::fs::read_to_string(path.join("onecall/hello")).unwrap(),
        "from the gold copy\n"
    );
    // Published and in use: the connector refuses without --force, and
    // says who holds it.
    let held = std::fs::File::open(path.join("onecall/hello")).unwrap();
    let out = cli(&["unmount", "cv"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pid") && err.contains("\"status\": 409"),
        "{err}"
    );
    drop(held);
    let out = cli(&["unmount", "cv", "--force"]);
    assert!(out.status.success(), "{out:?}");
    bed.assert_host_clean();
    bed.assert_appliance_clean();
}
