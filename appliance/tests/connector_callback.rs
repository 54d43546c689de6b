//! The unpresent check against a real connector: goldmountd's server runs
//! in this process (development certificates from the `pki` crate, an
//! engine over a scratch directory), mounts a loop-presented clone through
//! its control API, and the appliance — calling it back over mutual TLS —
//! refuses to unpresent the clone until the volume is unmounted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// goldmountd on 127.0.0.1:0 in a runtime of its own; stopped on drop.
struct Connector {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<goldmountd::ShutdownReport>>,
    url: String,
    agent: ureq::Agent,
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
        // The appliance's own client certificate, for driving the daemon here.
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
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let r = self.agent.request(method, &format!("{}{path}", self.url));
        let res = match body {
            Some(b) => r.send_json(b.clone()),
            None => r.call(),
        };
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
        let _ = self.call("DELETE", "/v1/volumes/v1?force=true", None);
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("<no code>")
}

#[test]
fn unpresent_is_refused_while_the_hosts_connector_has_the_clone_mounted() {
    require_root();
    require_tool("losetup", "mount");
    require_tool("mkfs.ext4", "e2fsprogs");
    let tmp = TempDir::new("callback");
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

    let data = tmp.path().join("data");
    let srv = Server::start_with(
        &data,
        "loop",
        &[
            "--client-cert",
            pki.client_cert.to_str().unwrap(),
            "--client-key",
            pki.client_key.to_str().unwrap(),
        ],
    );
    let img = tmp.path().join("gold.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "cbgold", img.to_str().unwrap()],
    );
    let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
    let (s, h) = srv.req(
        "PUT",
        "/v1/hosts/here",
        Some(
            &json!({"iqns": ["iqn.2026-11.t:here"], "callback_url": connector.url,
                    "callback_ca_pem": ca})
            .to_string(),
        ),
    );
    assert_eq!(s, 201, "{h}");
    let (s, g) = srv.req(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name": "g", "source": img}).to_string()),
    );
    assert_eq!(s, 201, "{g}");
    let present = |clone: &str| {
        let (s, c) = srv.req(
            "POST",
            "/v1/clones",
            Some(&json!({"name": clone, "gold": "g"}).to_string()),
        );
        assert_eq!(s, 201, "{c}");
        let (s, p) = srv.req(
            "POST",
            "/v1/presentations",
            Some(&json!({"clone": clone, "host": "here"}).to_string()),
        );
        assert_eq!(s, 201, "{p}");
        p
    };

    // A clone the host does not use: the connector confirms, 204.
    present("idle");
    let (s, v) = srv.req("DELETE", "/v1/presentations/idle", None);
    assert_eq!(s, 204, "{v}");

    // A clone the host mounted through its connector: 409 naming both.
    let p = present("c1");
    let backing = p["backing_file"].as_str().unwrap().to_string();
    let (s, v) = connector.call(
        "PUT",
        "/v1/volumes/v1",
        Some(&json!({"sources": [{"kind": "loop_backing", "file": backing, "timeout": 20}]})),
    );
    assert_eq!(s, 201, "connector mount: {v}");
    let (s, vols) = connector.call("GET", "/v1/volumes", None);
    assert_eq!(s, 200);
    eprintln!("connector volumes: {vols}");
    let (s, v) = srv.req("DELETE", "/v1/presentations/c1", None);
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("in use on host \"here\"") && msg.contains("\"v1\""),
        "{msg}"
    );
    let (s, _) = srv.req("GET", "/v1/presentations/c1", None);
    assert_eq!(s, 200, "still presented");
    let dev = p["device"].as_str().unwrap();
    let name = dev.trim_start_matches("/dev/");
    assert_eq!(
        std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .unwrap()
            .trim_end(),
        backing,
        "the loop device is untouched"
    );

    // The host unmounts: the connector confirms, 204, and the clone can go.
    let (s, v) = connector.call("DELETE", "/v1/volumes/v1", None);
    assert_eq!(s, 200, "connector unmount: {v}");
    let (s, v) = srv.req("DELETE", "/v1/presentations/c1", None);
    assert_eq!(s, 204, "{v}");
    let (s, v) = srv.req("DELETE", "/v1/clones/c1", None);
    assert_eq!(s, 204, "{v}");

    // A connector that does not trust the appliance's certificate cannot
    // confirm anything: 409 saying so.
    let other =
        pki::init_dev_pki(&tmp.path().join("other"), &pki::DevPkiOptions::default()).unwrap();
    let (s, v) = srv.req(
        "PUT",
        "/v1/hosts/here",
        Some(
            &json!({"iqns": ["iqn.2026-11.t:here"], "callback_url": connector.url,
                    "callback_ca_pem": std::fs::read_to_string(&other.ca_cert).unwrap()})
            .to_string(),
        ),
    );
    assert_eq!(s, 200, "{v}");
    present("c2");
    let (s, v) = srv.req("DELETE", "/v1/presentations/c2", None);
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("cannot confirm"),
        "{v}"
    );
    let (s, _) = srv.req("DELETE", "/v1/presentations/c2?force=true", None);
    assert_eq!(s, 204);
}
