//! The listeners: HTTPS with a required client certificate on
//! `control.listen`, and optionally the same API on a root-only Unix socket.
//! Shutdown stops accepting at once, lets each connection finish the
//! request it is serving, then waits for engine operations still running
//! (a client that hung up does not stop its mount half-way) — all within
//! the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use connector::engine::Engine;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::tls::{self, TlsError};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificates or keys are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The storage profiles (`[profiles]`, the runtime profiles file) are unusable.
    #[error("cannot load the storage profiles: {0}")]
    Profiles(#[from] dockerplugin::profile::ProfileError),
    /// The address or socket cannot be bound.
    #[error("cannot listen on {what}: {source}; {hint}")]
    Bind {
        /// The address or path.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
}

/// How shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every connection finished its request within the grace period.
    pub connections_finished: bool,
    /// Every engine operation finished within the grace period.
    pub operations_finished: bool,
}

/// Bound listeners, ready to serve.
pub struct Server {
    tcp: TcpListener,
    unix: Option<(UnixListener, PathBuf)>,
    tls: TlsAcceptor,
    app: Router,
    state: Arc<AppState>,
    grace: Duration,
}

impl Server {
    /// Loads the certificates and binds every listener `cfg` names.
    pub async fn bind(cfg: &Config, engine: Arc<Engine>) -> Result<Self, ServeError> {
        let profiles = Arc::new(cfg.open_profiles()?);
        let tls = TlsAcceptor::from(tls::server_config(&cfg.control)?);
        let tcp = TcpListener::bind(cfg.control.listen)
            .await
            .map_err(|source| ServeError::Bind {
                what: cfg.control.listen.to_string(),
                source,
                hint: "check control.listen and that no other process (an older goldmountd?) holds the port",
            })?;
        let unix = match &cfg.control.unix_socket {
            Some(p) => Some((bind_unix(p)?, p.clone())),
            None => None,
        };
        let state = Arc::new(AppState::new(engine, profiles));
        Ok(Self {
            tcp,
            unix,
            tls,
            app: api::router(state.clone()),
            state,
            grace: cfg.control.shutdown_grace(),
        })
    }

    /// The storage profiles this server serves (the Docker plugin resolves
    /// through the same ones).
    pub fn profiles(&self) -> Arc<dockerplugin::profile::Profiles> {
        self.state.profiles.clone()
    }

    /// The HTTPS address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ShutdownReport {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = self.tcp.accept() => match r {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        let acceptor = self.tls.clone();
                        let app = self.app.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                Ok(Ok(stream)) => {
                                    let conn = serve(stream, app);
                                    if let Err(e) = watcher.watch(conn).await {
                                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                                    }
                                }
                                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                r = accept_unix(self.unix.as_ref().map(|u| &u.0)) => match r {
                    Ok(stream) => {
                        if local_peer_allowed(&stream) {
                            let conn = serve(stream, self.app.clone());
                            let watcher = graceful.watcher();
                            tokio::spawn(async move {
                                if let Err(e) = watcher.watch(conn).await {
                                    tracing::debug!(error = %e, "unix connection ended with an error");
                                }
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unix socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let deadline = Instant::now() + self.grace;
        drop(self.tcp);
        if let Some((l, p)) = self.unix {
            drop(l);
            let _ = std::fs::remove_file(&p);
        }
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            operations = self.state.inflight.len(),
            "stopped accepting; waiting for requests in flight"
        );
        let connections_finished = tokio::time::timeout(self.grace, graceful.shutdown())
            .await
            .is_ok();
        let left = deadline.saturating_duration_since(Instant::now());
        let operations_finished = self.state.inflight.drained(left).await;
        ShutdownReport {
            connections_finished,
            operations_finished,
        }
    }
}

fn serve<IO>(
    io: IO,
    app: Router,
) -> hyper::server::conn::http1::Connection<TokioIo<IO>, TowerToHyperService<Router>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
}

async fn accept_unix(l: Option<&UnixListener>) -> std::io::Result<UnixStream> {
    match l {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Only root (or the daemon's own user) may use the Unix socket, whatever
/// its mode says.
fn local_peer_allowed(s: &UnixStream) -> bool {
    let me = rustix::process::geteuid().as_raw();
    match s.peer_cred() {
        Ok(c) if c.uid() == 0 || c.uid() == me => true,
        Ok(c) => {
            tracing::warn!(uid = c.uid(), pid = ?c.pid(), "unix socket: refused a non-root peer");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "unix socket: cannot read the peer's credentials");
            false
        }
    }
}

/// Binds the Unix socket with mode 0600, replacing a stale socket of a
/// previous run but never another file or a live daemon's socket.
fn bind_unix(p: &Path) -> Result<UnixListener, ServeError> {
    let bind_err = |source, hint| ServeError::Bind {
        what: p.display().to_string(),
        source,
        hint,
    };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| bind_err(e, "check control.unix_socket's directory"))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if !m.file_type().is_socket() {
            return Err(bind_err(
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                "a file that is not a socket is there; control.unix_socket must name a free path",
            ));
        }
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Err(bind_err(
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
                "another goldmountd is serving on it; stop it first",
            ));
        }
        std::fs::remove_file(p).map_err(|e| bind_err(e, "remove the stale socket by hand"))?;
    }
    let l = UnixListener::bind(p).map_err(|e| bind_err(e, "check control.unix_socket"))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| bind_err(e, "cannot make the socket mode 0600"))?;
    Ok(l)
}
