//! TLS with rustls (the same rustls/tokio-rustls versions and features as
//! goldmountd, so the workspace builds them once): the API server's HTTPS
//! listener, and client configurations for the CLI (`--ca`) and for the
//! appliance's mutual-TLS calls to a host's connector (`--client-cert`).
//!
//! The blocking HTTP client (ureq, built without its own TLS feature) gets
//! TLS through [`UreqTls`], an adapter from a rustls client configuration.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificates, keys or CAs that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {}: {message}", path.display())]
    File {
        /// Which option or field named it (`--tls-cert`, ...).
        what: String,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// PEM text (not from a file) holds no usable certificate.
    #[error("{what}: {message}")]
    Pem {
        /// Where the text came from (e.g. `host h1 callback_ca_pem`).
        what: String,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the combination.
    #[error("cannot set up TLS ({what}): {source}")]
    Rustls {
        /// What was being set up.
        what: &'static str,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (a chain: leaf first).
pub fn certs_from_file(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        what: what.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read PEM: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("expected PEM CERTIFICATE blocks, found none".into()));
    }
    Ok(certs)
}

/// Reads the certificates in PEM text.
pub fn certs_from_pem(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Pem {
        what: what.to_string(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("expected PEM CERTIFICATE blocks, found none".into()));
    }
    Ok(certs)
}

fn key_from_file(what: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: what.to_string(),
        path: path.to_path_buf(),
        message: format!("expected a PEM private key: {e}"),
    })
}

/// A certificate chain and its key, both PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The HTTPS listener's configuration (`--tls-cert`, `--tls-key`; no client
/// certificates: callers authenticate with the bearer token).
pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs_from_file("--tls-cert", &id.cert)?;
    let key = key_from_file("--tls-key", &id.key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "server certificate and key (--tls-cert, --tls-key)",
            source,
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client configuration trusting exactly `roots` (no system roots: the
/// appliance and the connectors use private CAs), presenting `identity`
/// when given.
pub fn client_config(
    roots: Vec<CertificateDer<'static>>,
    identity: Option<&Identity>,
    what: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in roots {
        store.add(c).map_err(|e| TlsError::Pem {
            what: what.to_string(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_root_certificates(store);
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                certs_from_file("--client-cert", &id.cert)?,
                key_from_file("--client-key", &id.key)?,
            )
            .map_err(|source| TlsError::Rustls {
                what: "client certificate and key (--client-cert, --client-key)",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Gives ureq TLS through a rustls client configuration. The handshake is
/// finished in `connect`, so a refused certificate is reported there, with
/// rustls' reason, instead of as a broken read later.
#[derive(Clone)]
pub struct UreqTls(pub Arc<ClientConfig>);

impl ureq::TlsConnector for UreqTls {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ureq::ReadWrite>,
    ) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let fail = |msg: String| ureq::Error::from(std::io::Error::other(msg));
        // ureq hands IPv6 hosts over in brackets.
        let host = dns_name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| fail(format!("{host:?} is not a DNS name or IP address: {e}")))?;
        let mut conn = rustls::ClientConnection::new(self.0.clone(), name)
            .map_err(|e| fail(format!("TLS setup for {host}: {e}")))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut io)
                .map_err(|e| fail(format!("TLS handshake with {host}: {e}")))?;
        }
        Ok(Box::new(TlsIo(rustls::StreamOwned::new(conn, io))))
    }
}

struct TlsIo(rustls::StreamOwned<rustls::ClientConnection, Box<dyn ureq::ReadWrite>>);

impl std::fmt::Debug for TlsIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIo").finish_non_exhaustive()
    }
}

impl Read for TlsIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ureq::ReadWrite for TlsIo {
    fn socket(&self) -> Option<&std::net::TcpStream> {
        self.0.get_ref().socket()
    }
}

/// An axum listener that hands out finished TLS streams. Handshakes run in
/// their own tasks (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow or silent
/// client never holds up the others.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` with `cfg` (from [`server_config`]).
    pub fn new(tcp: TcpListener, cfg: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(cfg);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            _task: task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (it never does on its own): serve nothing.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
