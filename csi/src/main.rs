//! `goldmount-csi node …` (the node plugin: Identity and Node over the
//! engine) and `goldmount-csi controller …` (Identity and Controller over
//! the appliance), each on a Unix socket, until SIGTERM/SIGINT; the socket
//! is removed on the way out.
//!
//! The node plugin first recovers interrupted engine operations and
//! reconciles its CSI records with the live mounts (see
//! [`goldmount_csi::reconcile`]). Its node id is the host's name on the
//! appliance: given the appliance, it registers this host (its IQNs and
//! WWPNs) and uses the name the appliance answers — the name the
//! controller presents clones to; without it, `--node-id` says it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use connector::config::Config;
use connector::engine::Engine;
use goldmount_csi::{bind_socket, serve, serve_controller, ApplianceAccess, NodeConfig};
use tokio::net::UnixListener;

#[derive(Parser)]
#[command(
    version,
    about = "goldmount's CSI driver: the node plugin (Node over the engine) or the controller (Controller over the appliance)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// The node plugin (a DaemonSet on every node).
    Node(NodeArgs),
    /// The controller (one Deployment, beside the external-provisioner and
    /// external-attacher).
    Controller(ControllerArgs),
}

#[derive(Args)]
struct Endpoint {
    /// The gRPC socket (`unix:///csi/csi.sock` or a path).
    #[arg(long, env = "CSI_ENDPOINT", default_value = "/csi/csi.sock")]
    socket: String,
}

#[derive(Args)]
struct ApplianceArgs {
    /// The appliance's base URL.
    #[arg(long, env = "GOLDMOUNT_APPLIANCE_URL")]
    appliance_url: Option<String>,
    /// The CA that signed an https appliance's certificate.
    #[arg(long, env = "GOLDMOUNT_APPLIANCE_CA")]
    appliance_ca: Option<PathBuf>,
    /// The appliance API token file.
    #[arg(long, env = "GOLDMOUNT_APPLIANCE_TOKEN_FILE")]
    appliance_token_file: Option<PathBuf>,
}

impl ApplianceArgs {
    fn access(&self) -> Option<ApplianceAccess> {
        self.appliance_url.as_ref().map(|url| ApplianceAccess {
            url: url.clone(),
            ca: self.appliance_ca.clone(),
            token_file: self.appliance_token_file.clone(),
        })
    }
}

#[derive(Args)]
struct NodeArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// This node's id: the host's name on the appliance. Without it the
    /// plugin registers with the appliance and uses the name it answers;
    /// with both, they must agree.
    #[arg(long, env = "GOLDMOUNT_CSI_NODE_ID")]
    node_id: Option<String>,
    /// How many volumes Kubernetes may place on this node (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_volumes: i64,
    /// goldmount's config file (default: $GOLDMOUNT_CONFIG, else /etc/goldmount/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    appliance: ApplianceArgs,
}

#[derive(Args)]
struct ControllerArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[command(flatten)]
    appliance: ApplianceArgs,
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
    let result = match cli.mode {
        Mode::Node(a) => run_node(a),
        Mode::Controller(a) => run_controller(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goldmount-csi: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CSI sidecars pass the endpoint as `unix:///path`.
fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}

/// Registers this host with the appliance, retrying with backoff while the
/// appliance cannot be reached (a node plugin that starts before the
/// appliance answers waits rather than crash-loops), and answers its name.
fn registered_name(access: &ApplianceAccess) -> Result<String, String> {
    let mut backoff = registration::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let attempt = || -> Result<String, registration::RegistrationError> {
            let token = access
                .token_file
                .as_deref()
                .map(registration::read_token_file)
                .transpose()?;
            let client =
                registration::ApplianceClient::new(&access.url, access.ca.as_deref(), token)?;
            let r = registration::register(
                &client,
                &registration::HostIdentity::collect(),
                None,
                None,
            )?;
            Ok(r.host.name)
        };
        match attempt() {
            Ok(name) => return Ok(name),
            Err(e) if e.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs_f64(), "registration with the appliance failed");
                std::thread::sleep(delay);
            }
            Err(e) => return Err(format!("registering this host with the appliance: {e}")),
        }
    }
}

fn node_id(a: &NodeArgs) -> Result<String, String> {
    match (&a.node_id, a.appliance.access()) {
        (given, Some(access)) => {
            let name = registered_name(&access)?;
            match given {
                Some(g) if *g != name => Err(format!(
                    "--node-id {g} differs from this host's name on the appliance, {name}: the controller presents clones to {name}; drop --node-id or rename the host on the appliance"
                )),
                _ => Ok(name),
            }
        }
        (Some(g), None) => Ok(g.clone()),
        (None, None) => Err(
            "no node id: give --appliance-url (the plugin registers this host and uses its name there) or --node-id"
                .into(),
        ),
    }
}

fn listen(socket: &Path) -> Result<UnixListener, String> {
    bind_socket(socket).map_err(|e| e.to_string())
}

fn run_node(a: NodeArgs) -> Result<(), String> {
    let socket = socket_path(&a.endpoint.socket);
    let cfg = Config::load(a.config.as_deref()).map_err(|e| format!("{e:#}"))?;
    let engine = Engine::open(cfg).map_err(|e| e.message)?;
    let report = engine.recover().map_err(|e| e.message)?;
    tracing::info!(?report, "engine recovery done");
    let reconciled = goldmount_csi::reconcile::reconcile(&engine);
    tracing::info!(?reconciled, "CSI records reconciled with the live mounts");
    let node = NodeConfig {
        node_id: node_id(&a)?,
        max_volumes_per_node: a.max_volumes,
    };
    tracing::info!(node_id = %node.node_id, "node id");
    runtime()?.block_on(async {
        let listener = listen(&socket)?;
        tracing::info!(socket = %socket.display(), "serving CSI Identity and Node");
        let result = serve(listener, Arc::new(engine), node, shutdown()).await;
        let _ = std::fs::remove_file(&socket);
        result.map_err(|e| e.to_string())
    })
}

fn run_controller(a: ControllerArgs) -> Result<(), String> {
    let socket = socket_path(&a.endpoint.socket);
    let access = a
        .appliance
        .access()
        .ok_or("the controller needs --appliance-url (and its --appliance-token-file, and --appliance-ca for https)")?;
    runtime()?.block_on(async {
        let listener = listen(&socket)?;
        tracing::info!(socket = %socket.display(), appliance = %access.url, "serving CSI Identity and Controller");
        let result = serve_controller(listener, access, shutdown()).await;
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
