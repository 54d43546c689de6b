//! `goldmountd [--config PATH] [serve]`: recovers interrupted operations,
//! serves the control API until SIGTERM/SIGINT, then lets what is running
//! finish. `goldmountd dev-pki DIR` writes development certificates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use connector::engine::Engine;
use goldmountd::{Config, Server};

#[derive(Parser)]
#[command(
    version,
    about = "goldmount's daemon: the mutual-TLS control API over the engine"
)]
struct Cli {
    /// Config file (default: $GOLDMOUNT_CONFIG, else /etc/goldmount/config.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the control API (the default).
    Serve,
    /// Write a development CA, server and client certificate into DIR.
    DevPki {
        /// Where to write them (ca.pem, server.pem, client.pem and their keys).
        dir: PathBuf,
        /// The server's hostname (default: this host's).
        #[arg(long)]
        hostname: Option<String>,
        /// Another SAN of the server certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// The client certificate's CN.
        #[arg(long, default_value = pki::DEFAULT_CLIENT_CN)]
        client_cn: String,
        /// Replace an existing set.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(cli.config),
        Cmd::DevPki {
            dir,
            hostname,
            sans,
            client_cn,
            force,
        } => {
            let opts = pki::DevPkiOptions {
                hostname,
                extra_sans: sans,
                client_cn,
                force,
                ..Default::default()
            };
            match pki::init_dev_pki(&dir, &opts) {
                Ok(p) => {
                    println!(
                        "wrote {} (server SANs: {})",
                        dir.display(),
                        p.server_sans.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("goldmountd: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn serve(config: Option<PathBuf>) -> ExitCode {
    let path = Config::path(config.as_deref());
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("goldmountd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = goldmountd::logging::init(&cfg.log) {
        eprintln!("goldmountd: {e}");
        return ExitCode::from(2);
    }
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    // Engine calls are blocking; these two run before the async runtime exists.
    let engine = match Engine::open(cfg.engine.clone()) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            tracing::error!(error = %e, hint = e.hint.as_deref().unwrap_or(""), "cannot open the engine's state");
            return ExitCode::FAILURE;
        }
    };
    match engine.recover() {
        Ok(r) => tracing::info!(
            rolled_back = ?r.rolled_back,
            finished = ?r.finished,
            quarantined = ?r.quarantined,
            in_progress = ?r.in_progress,
            unpublished = ?r.unpublished,
            "recovery done"
        ),
        Err(e) => {
            tracing::error!(error = %e, "recovery failed");
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match Server::bind(&cfg, engine.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
        match server.local_addr() {
            Ok(a) => tracing::info!(listen = %a, unix_socket = ?cfg.control.unix_socket, "listening (mutual TLS)"),
            Err(e) => tracing::warn!(error = %e, "listening, address unknown"),
        }
        // The Docker volume plugin, when [docker] asks for it.
        let docker = match goldmountd::docker_task::start(&cfg, engine.clone(), server.profiles()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot start the Docker volume plugin: {e}");
                return ExitCode::from(2);
            }
        };
        // Registration runs beside the server on its own thread; dropped at
        // shutdown (it never holds up the engine or the API).
        let _registration = match cfg.appliance.clone().map(goldmountd::registration_task::start) {
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot start the registration thread");
                return ExitCode::FAILURE;
            }
            other => other.and_then(Result::ok),
        };
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "cannot tell systemd we are ready");
        }
        let report = server
            .run(async {
                let why = shutdown_signal().await;
                tracing::info!(signal = why, "shutting down");
                if let Some(d) = &docker {
                    d.signal();
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            })
            .await;
        if let Some(d) = docker {
            d.stop(cfg.control.shutdown_grace()).await;
        }
        if report.connections_finished && report.operations_finished {
            tracing::info!("stopped cleanly");
        } else {
            tracing::warn!(?report, "grace period over with work still running; recovery at the next start finishes or rolls it back");
        }
        ExitCode::SUCCESS
    })
}

/// Waits for SIGTERM or SIGINT and says which.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => tokio::select! {
            _ = t.recv() => "SIGTERM",
            _ = i.recv() => "SIGINT",
        },
        _ => {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending().await
        }
    }
}
