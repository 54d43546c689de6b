//! The `goldmount-csi` binary as the kubelet's node-driver-registrar sees
//! it: a `unix://` endpoint, answers over `:authority` `localhost`, stops on
//! SIGTERM and takes its socket with it; refuses a path that is not a socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use goldmount_csi::proto::{
    identity_client::IdentityClient, node_client::NodeClient, GetPluginInfoRequest,
    NodeGetInfoRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

const BIN: &str = env!("CARGO_BIN_EXE_goldmount-csi");

fn config(dir: &Path) -> std::path::PathBuf {
    common::engine_config_file(dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn goldmount_csi_should_serve_a_unix_endpoint_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let socket = dir.path().join("csi/csi.sock");
    let mut child = Command::new(BIN)
        .args(["node", "--socket"])
        .arg(format!("unix://{}", socket.display()))
        .args(["--node-id", "node-7", "--max-volumes", "8", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no socket after 20 s: {:?}",
            child.try_wait()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("socket up after {:?}", t0.elapsed());
    let path = socket.clone();
    let channel = Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            UnixStream::connect(path.clone())
        }))
        .await
        .unwrap();
    let info = IdentityClient::new(channel.clone())
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "goldmount.csi.dev");
    let node = NodeClient::new(channel)
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (node.node_id.as_str(), node.max_volumes_per_node),
        ("node-7", 8)
    );

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!socket.exists(), "the socket goes with the plugin");
}

#[test]
fn goldmount_csi_should_refuse_a_socket_path_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let file = dir.path().join("data");
    std::fs::write(&file, "keep me").unwrap();
    let out = Command::new(BIN)
        .args(["node", "--socket"])
        .arg(&file)
        .args(["--node-id", "n", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn goldmount_csi_should_refuse_to_start_without_a_node_id_or_an_appliance() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let out = Command::new(BIN)
        .args(["node", "--socket"])
        .arg(dir.path().join("csi.sock"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("GOLDMOUNT_CSI_NODE_ID")
        .env_remove("GOLDMOUNT_APPLIANCE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no node id"), "{err}");
    let out = Command::new(BIN)
        .args(["controller", "--socket"])
        .arg(dir.path().join("c.sock"))
        .env_remove("GOLDMOUNT_APPLIANCE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--appliance-url"), "{err}");
}
