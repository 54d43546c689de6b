//! `goldmount-csi --node-id ID [--socket PATH] [--config PATH]`: the CSI
//! node plugin (Identity and Node services) on a Unix socket. Recovers
//! interrupted engine operations first, serves until SIGTERM/SIGINT, then
//! removes its socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use connector::config::Config;
use connector::engine::Engine;
use goldmount_csi::{bind_socket, serve, NodeConfig};

#[derive(Parser)]
#[command(
    version,
    about = "goldmount's CSI node plugin: Identity and Node services over the engine"
)]
struct Cli {
    /// The gRPC socket the kubelet talks to.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "/csi/csi.sock")]
    socket: PathBuf,
    /// This node's id as the controller and the appliance know it.
    #[arg(long, env = "GOLDMOUNT_CSI_NODE_ID")]
    node_id: String,
    /// How many volumes Kubernetes may place on this node (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_volumes: i64,
    /// goldmount's config file (default: $GOLDMOUNT_CONFIG, else /etc/goldmount/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goldmount-csi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    // CSI sidecars pass the endpoint as unix:///path.
    let socket = match cli.socket.to_str().and_then(|s| s.strip_prefix("unix://")) {
        Some(p) => PathBuf::from(p),
        None => cli.socket.clone(),
    };
    let cfg = Config::load(cli.config.as_deref()).map_err(|e| format!("{e:#}"))?;
    let engine = Engine::open(cfg).map_err(|e| e.message)?;
    let report = engine.recover().map_err(|e| e.message)?;
    tracing::info!(?report, "recovery done");
    let node = NodeConfig {
        node_id: cli.node_id,
        max_volumes_per_node: cli.max_volumes,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let listener = bind_socket(&socket).map_err(|e| e.to_string())?;
        tracing::info!(socket = %socket.display(), "serving CSI Identity and Node");
        let result = serve(listener, Arc::new(engine), node, shutdown()).await;
        let _ = std::fs::remove_file(&socket);
        result.map_err(|e| e.to_string())
    })
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("signal received: stopping");
}
