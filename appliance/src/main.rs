//! `goldmount-appliance`: the reference copy-data appliance server and a
//! small CLI around it.
//!
//! `serve` runs the REST API. The other subcommands work either directly on
//! the data directory (only while no server has it open: the state file is
//! locked) or, with `--server URL`, through a running server's API.

use anyhow::{bail, Context, Result};
use appliance::auth::{self, Token};
use appliance::client::{Client, ClientError};
use appliance::lio::{LioConfig, DEFAULT_CONFIGFS_ROOT};
use appliance::model::{CreateClone, ImportGold, MountRequest, Present, RegisterHost};
use appliance::present::iscsi::IscsiPresenter;
use appliance::present::loopback::LoopPresenter;
use appliance::present::Presenter;
use appliance::service::DEFAULT_DATA_DIR;
use appliance::source::ImportPolicy;
use appliance::tls::Identity;
use appliance::{Appliance, ApplianceConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable the CLI reads the API token from.
const TOKEN_ENV: &str = "GOLDMOUNT_APPLIANCE_TOKEN";

#[derive(Parser)]
#[command(
    name = "goldmount-appliance",
    version,
    about = "Reference copy-data appliance: gold copies, reflink clones, LIO iSCSI or loop \
             presentation, REST API",
    after_help = "gold/clone/host commands open --data-dir directly unless --server URL is given \
                  (the server locks the state file while it runs). With --server the API token \
                  comes from --token-file, $GOLDMOUNT_APPLIANCE_TOKEN or <data-dir>/api-token.\n\nDemo:\n  goldmount-appliance serve --listen 127.0.0.1:8470 --data-dir /srv/gm --import-from /srv/images &\n  \
                  goldmount-appliance gold import pg-gold ./pg.img --server http://127.0.0.1:8470\n  \
                  goldmount-appliance host register h1 --iqn iqn.2026-11.test:h1 --server http://127.0.0.1:8470\n  \
                  goldmount-appliance clone create pg1 --gold pg-gold --server http://127.0.0.1:8470\n  \
                  goldmount-appliance present pg1 --host h1 --server http://127.0.0.1:8470"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the REST API server (re-applies stored presentations first).
    Serve(ServeArgs),
    /// Gold copies.
    Gold {
        #[command(subcommand)]
        cmd: GoldCmd,
    },
    /// Clones.
    Clone {
        #[command(subcommand)]
        cmd: CloneCmd,
    },
    /// Hosts.
    Host {
        #[command(subcommand)]
        cmd: HostCmd,
    },
    /// Present a clone to a host (needs --server: only the server owns the backend).
    Present {
        /// Clone name.
        clone: String,
        /// Host name.
        #[arg(long)]
        host: String,
        /// Base URL of the running server.
        #[arg(long)]
        server: String,
        #[command(flatten)]
        auth: ClientAuth,
    },
    /// Clone a gold copy, present it to a host and have the host's connector
    /// mount it — one call (needs --server; prints the connector's manifest).
    Mount {
        /// Gold copy to clone.
        gold: String,
        /// Registered host (with a callback URL and CA).
        #[arg(long)]
        host: String,
        /// Volume name on the host.
        #[arg(long)]
        volume: String,
        /// Where the host publishes the volume's tree.
        #[arg(long)]
        path: Option<String>,
        /// Mount read-only on the host.
        #[arg(long)]
        read_only: bool,
        /// Base URL of the running server.
        #[arg(long)]
        server: String,
        #[command(flatten)]
        auth: ClientAuth,
    },
    /// Have the host's connector unmount a volume, then unpresent and delete
    /// its clone (needs --server).
    Unmount {
        /// Volume name.
        volume: String,
        /// Base URL of the running server.
        #[arg(long)]
        server: String,
        /// Ask the connector to force the unmount (busy mounts detached lazily).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        auth: ClientAuth,
    },
    /// Take a clone's presentation away (needs --server). Refused while the
    /// host's connector reports the clone in use, or cannot be asked.
    Unpresent {
        /// Clone name.
        clone: String,
        /// Base URL of the running server.
        #[arg(long)]
        server: String,
        /// Unpresent without the host's confirmation that it released the clone.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        auth: ClientAuth,
    },
}

/// How the CLI authenticates to a server.
#[derive(Args, Clone)]
struct ClientAuth {
    /// File holding the API token (default: $GOLDMOUNT_APPLIANCE_TOKEN, else
    /// <data-dir>/api-token when readable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify an https:// server with.
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl ClientAuth {
    fn client(&self, url: &str, data_dir: &Path) -> Result<Client> {
        let token = match (&self.token_file, std::env::var(TOKEN_ENV)) {
            (Some(f), _) => auth::read_token(f)?,
            (None, Ok(t)) => auth::parse_token(&t).with_context(|| {
                format!(
                    "${TOKEN_ENV}: expected a token of at least {} printable characters",
                    auth::MIN_TOKEN_LEN
                )
            })?,
            (None, Err(_)) => {
                let f = data_dir.join(auth::TOKEN_FILE_NAME);
                auth::read_token(&f).with_context(|| {
                    format!(
                        "no API token: pass --token-file FILE or set ${TOKEN_ENV} (tried {})",
                        f.display()
                    )
                })?
            }
        };
        let mut c = Client::new(url).with_token(&token);
        if let Some(ca) = &self.ca {
            c = c.with_ca_file(ca)?;
        } else if url.starts_with("https://") {
            bail!(
                "{url} is https: pass --ca FILE with the CA certificate that signed the server's"
            );
        }
        Ok(c)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// Loop devices on this machine.
    Loop,
    /// LIO iSCSI target through configfs.
    Iscsi,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. Without --tls-cert/--tls-key only a loopback
    /// address (127.0.0.0/8, ::1) is accepted.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// File holding the API token (default: <data-dir>/api-token, generated
    /// with mode 0600 on first start).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Server certificate chain (PEM): serve HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory whose regular files the API may import as gold copies
    /// (repeatable; none: the API imports no files).
    #[arg(long = "import-from")]
    import_from: Vec<PathBuf>,
    /// Block device the API may import as a gold copy (repeatable).
    #[arg(long = "allow-device")]
    allow_device: Vec<PathBuf>,
    /// Client certificate (PEM) for the hosts' connectors (mutual TLS): the
    /// appliance asks a host whether it still uses a clone before unpresenting.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Seconds `POST /v1/mounts` may take, the host's connector included;
    /// past it the appliance answers 504 and undoes its steps.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(5..=3600))]
    mount_deadline_secs: u64,
    /// Seconds a host's connector waits for a presented LUN to appear during
    /// `POST /v1/mounts` (within the deadline).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=900))]
    lun_wait_secs: u64,
    #[command(flatten)]
    data: DataDir,
    /// Presentation backend.
    #[arg(long, value_enum, default_value = "loop")]
    backend: Backend,
    /// iSCSI portal(s) the target listens on (repeatable).
    #[arg(long = "portal", default_value = "127.0.0.1:3260")]
    portals: Vec<SocketAddr>,
    /// The appliance's iSCSI target IQN.
    #[arg(long, default_value = "iqn.2026-11.io.goldmount:appliance")]
    target_iqn: String,
    /// Root of LIO's configfs tree.
    #[arg(long, default_value = DEFAULT_CONFIGFS_ROOT)]
    configfs_root: PathBuf,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Data directory (state.redb, gold/, clones/).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Args, Clone)]
struct Target {
    #[command(flatten)]
    data: DataDir,
    /// Use a running server's API instead of opening the data directory.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    auth: ClientAuth,
}

#[derive(Subcommand)]
enum GoldCmd {
    /// Import an image file or block device as gold copy NAME.
    Import {
        /// Gold copy name ([A-Za-z0-9_.-]{1,64}).
        name: String,
        /// Image file or block device (on the appliance machine).
        path: PathBuf,
        /// Point-in-time label (default: imported-<unix time>).
        #[arg(long)]
        point_in_time: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List gold copies.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum CloneCmd {
    /// Create clone NAME of a gold copy.
    Create {
        /// Clone name.
        name: String,
        /// Gold copy to clone.
        #[arg(long)]
        gold: String,
        /// Expected point-in-time label of the gold copy.
        #[arg(long)]
        point_in_time: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List clones.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a clone (refused while presented).
    Delete {
        /// Clone name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Register a host by its initiator identities.
    Register {
        /// Host name.
        name: String,
        /// iSCSI initiator IQN (repeatable).
        #[arg(long = "iqn")]
        iqns: Vec<String>,
        /// FC WWPN (repeatable).
        #[arg(long = "wwpn")]
        wwpns: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List hosts.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// Either a running server or the data directory opened directly.
enum Conn {
    Http(Client),
    Direct(Box<Appliance>),
}

impl Target {
    fn connect(&self) -> Result<Conn> {
        match &self.server {
            Some(url) => Ok(Conn::Http(self.auth.client(url, &self.data.data_dir)?)),
            None => {
                // Direct mode never presents, so the backend is irrelevant.
                let app = Appliance::open(
                    &ApplianceConfig::new(self.data.data_dir.clone()),
                    Box::new(LoopPresenter::new()),
                )
                .with_context(|| {
                    format!("opening data directory {}", self.data.data_dir.display())
                })?;
                Ok(Conn::Direct(Box::new(app)))
            }
        }
    }
}

macro_rules! call {
    ($conn:expr, $http:ident($($ha:expr),*), $direct:ident($($da:expr),*)) => {
        match $conn {
            Conn::Http(c) => c.$http($($ha),*).map_err(anyhow::Error::from),
            Conn::Direct(a) => a.$direct($($da),*).map_err(anyhow::Error::from),
        }
    };
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Gold { cmd } => match cmd {
            GoldCmd::Import {
                name,
                path,
                point_in_time,
                target,
            } => {
                // The server resolves paths on its side: send an absolute one.
                let source = std::fs::canonicalize(&path).unwrap_or(path);
                let req = ImportGold {
                    name,
                    source,
                    point_in_time,
                };
                let conn = target.connect()?;
                let g = match &conn {
                    Conn::Http(c) => c.import_gold(&req)?,
                    Conn::Direct(a) => a.import_gold_local(req)?.0,
                };
                print_json(&g)
            }
            GoldCmd::List { json, target } => {
                let conn = target.connect()?;
                let golds = call!(&conn, list_golds(), list_golds())?;
                if json {
                    return print_json(&golds);
                }
                println!("{:<24} {:>16} {:<10} POINT-IN-TIME", "NAME", "SIZE", "COPY");
                for g in golds {
                    println!(
                        "{:<24} {:>16} {:<10} {}",
                        g.name,
                        g.size,
                        format!("{:?}", g.copy_mode).to_lowercase(),
                        g.point_in_time
                    );
                }
                Ok(())
            }
        },
        Cmd::Clone { cmd } => match cmd {
            CloneCmd::Create {
                name,
                gold,
                point_in_time,
                target,
            } => {
                let req = CreateClone {
                    name,
                    gold,
                    point_in_time,
                    class: None,
                };
                let conn = target.connect()?;
                let c = match &conn {
                    Conn::Http(c) => c.create_clone(&req)?,
                    Conn::Direct(a) => a.create_clone(req)?.0,
                };
                if let Some(w) = &c.warning {
                    eprintln!("warning: {w}");
                }
                print_json(&c)
            }
            CloneCmd::List { json, target } => {
                let conn = target.connect()?;
                let clones = call!(&conn, list_clones(), list_clones())?;
                if json {
                    return print_json(&clones);
                }
                println!("{:<24} {:<24} {:>16} COPY", "NAME", "GOLD", "SIZE");
                for c in clones {
                    println!(
                        "{:<24} {:<24} {:>16} {:?}",
                        c.name, c.gold, c.size, c.copy_mode
                    );
                }
                Ok(())
            }
            CloneCmd::Delete { name, target } => {
                let conn = target.connect()?;
                call!(&conn, delete_clone(&name), delete_clone(&name))
            }
        },
        Cmd::Host { cmd } => match cmd {
            HostCmd::Register {
                name,
                iqns,
                wwpns,
                target,
            } => {
                let req = RegisterHost {
                    name,
                    iqns,
                    wwpns,
                    ..Default::default()
                };
                let conn = target.connect()?;
                let h = match &conn {
                    Conn::Http(c) => c.register_host(&req)?,
                    Conn::Direct(a) => a.register_host(req)?.0,
                };
                print_json(&h)
            }
            HostCmd::List { target } => {
                let conn = target.connect()?;
                print_json(&call!(&conn, list_hosts(), list_hosts())?)
            }
        },
        Cmd::Present {
            clone,
            host,
            server,
            auth,
        } => print_json(
            &auth
                .client(&server, Path::new(DEFAULT_DATA_DIR))?
                .present(&Present { clone, host })?,
        ),
        Cmd::Mount {
            gold,
            host,
            volume,
            path,
            read_only,
            server,
            auth,
        } => {
            let c = auth.client(&server, Path::new(DEFAULT_DATA_DIR))?;
            let req = MountRequest {
                gold,
                host,
                volume,
                path,
                read_only,
            };
            match c.mount(&req) {
                Ok(m) => print_json(&m),
                Err(e) => Err(with_connector_details(e)),
            }
        }
        Cmd::Unmount {
            volume,
            server,
            force,
            auth,
        } => {
            let c = auth.client(&server, Path::new(DEFAULT_DATA_DIR))?;
            match c.unmount(&volume, force) {
                Ok(u) => print_json(&u),
                Err(e) => Err(with_connector_details(e)),
            }
        }
        Cmd::Unpresent {
            clone,
            server,
            force,
            auth,
        } => {
            let c = auth.client(&server, Path::new(DEFAULT_DATA_DIR))?;
            if force {
                c.unpresent_forced(&clone)?;
            } else {
                c.unpresent(&clone)?;
            }
            Ok(())
        }
    }
}

/// A client error, with the connector's answer and what the appliance
/// undid or left appended when the failure was at a host's connector.
fn with_connector_details(e: ClientError) -> anyhow::Error {
    let details = match &e {
        ClientError::Api { body, .. } => body
            .connector_failure
            .as_ref()
            .and_then(|f| serde_json::to_string_pretty(f).ok()),
        ClientError::Transport { .. } => None,
    };
    match details {
        Some(d) => anyhow::anyhow!("{e}\nconnector failure details:\n{d}"),
        None => e.into(),
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(appliance::tls::server_config(&Identity {
            cert: cert.clone(),
            key: key.clone(),
        })?),
        _ => None,
    };
    if tls.is_none() {
        if !a.listen.ip().is_loopback() {
            bail!(
                "refusing to serve plain HTTP on {}: the API token would cross the network in \
                 clear text. Pass --tls-cert FILE --tls-key FILE, or listen on a loopback address \
                 (127.0.0.1, ::1)",
                a.listen
            );
        }
        tracing::warn!(listen = %a.listen, "serving plain HTTP (loopback only); use --tls-cert/--tls-key for HTTPS");
    }
    let client_identity = match (&a.client_cert, &a.client_key) {
        (Some(cert), Some(key)) => {
            let id = Identity {
                cert: cert.clone(),
                key: key.clone(),
            };
            // Fail at start, not at the first unpresent.
            appliance::tls::client_config(Vec::new(), Some(&id), "--client-cert")?;
            Some(id)
        }
        _ => {
            tracing::warn!("no --client-cert/--client-key: unpresenting a clone will need ?force=true (the appliance cannot ask hosts' connectors)");
            None
        }
    };
    for d in &a.import_from {
        let md = std::fs::metadata(d)
            .with_context(|| format!("--import-from {}: expected a directory", d.display()))?;
        if !md.is_dir() {
            bail!("--import-from {}: expected a directory", d.display());
        }
        if !d.is_absolute() {
            bail!("--import-from {}: expected an absolute path", d.display());
        }
    }
    for d in &a.allow_device {
        if !d.is_absolute() {
            bail!("--allow-device {}: expected an absolute path", d.display());
        }
    }
    let presenter: Box<dyn Presenter> = match a.backend {
        Backend::Loop => Box::new(LoopPresenter::new()),
        Backend::Iscsi => {
            if a.portals.is_empty() {
                bail!("--backend iscsi needs at least one --portal IP:PORT");
            }
            Box::new(IscsiPresenter::new(LioConfig {
                configfs_root: a.configfs_root.clone(),
                target_iqn: a.target_iqn.clone(),
                portals: a.portals.clone(),
            }))
        }
    };
    let app = Appliance::open(
        &ApplianceConfig {
            data_dir: a.data.data_dir.clone(),
            import: ImportPolicy {
                dirs: a.import_from.clone(),
                devices: a.allow_device.clone(),
            },
            client_identity,
            mount_deadline: std::time::Duration::from_secs(a.mount_deadline_secs),
            lun_wait: std::time::Duration::from_secs(a.lun_wait_secs),
        },
        presenter,
    )
    .with_context(|| format!("opening data directory {}", a.data.data_dir.display()))?;
    let token = Token::load_or_generate(a.token_file.as_deref(), &a.data.data_dir)?;
    if token.generated {
        tracing::info!(token_file = %token.path.display(), "generated the API token (mode 0600); clients send it as `Authorization: Bearer <token>`");
    } else {
        tracing::info!(token_file = %token.path.display(), "API token loaded");
    }
    match app.reapply() {
        Ok(failed) if failed.is_empty() => {}
        Ok(failed) => {
            for (clone, e) in failed {
                tracing::error!(%clone, error = %e, "presentation not restored");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not prepare the presentation backend"),
    }
    let app = Arc::new(app);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        tracing::info!(
            listen = %a.listen,
            scheme = if tls.is_some() { "https" } else { "http" },
            transport = app.transport(),
            data_dir = %a.data.data_dir.display(),
            import_from = ?a.import_from,
            allow_device = ?a.allow_device,
            "serving"
        );
        appliance::api::serve(app, token, listener, tls, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
