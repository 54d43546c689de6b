//! HTTPS for ureq through rustls, trusting only the appliance's private CA.
//! ureq is built without its own TLS (as in the appliance crate), so this
//! adapter finishes the handshake in `connect`: a refused certificate is
//! then reported with rustls' reason and recognisable as a TLS failure.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::error::RegistrationError;

/// Marks a failed handshake inside the `io::Error` ureq carries, so the
/// client can tell it from a refused connection.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {host}: {message}")]
pub(crate) struct HandshakeFailed {
    host: String,
    message: String,
}

/// A client configuration trusting exactly the certificates in `ca`.
pub(crate) fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, RegistrationError> {
    let bad = |message: String| RegistrationError::BadCa {
        path: ca.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| bad(format!("cannot read it as PEM: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "expected PEM CERTIFICATE blocks (the CA that signed the appliance's certificate), found none".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(format!("rustls refused the protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// ureq's TLS connector over a rustls configuration.
#[derive(Clone)]
pub(crate) struct UreqTls(pub Arc<ClientConfig>);

impl ureq::TlsConnector for UreqTls {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ureq::ReadWrite>,
    ) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        // ureq hands IPv6 hosts over in brackets.
        let host = dns_name.trim_start_matches('[').trim_end_matches(']');
        let fail = |message: String| {
            ureq::Error::from(std::io::Error::other(HandshakeFailed {
                host: host.to_string(),
                message,
            }))
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| fail(format!("not a DNS name or IP address: {e}")))?;
        let mut conn = rustls::ClientConnection::new(self.0.clone(), name)
            .map_err(|e| fail(format!("setup: {e}")))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut io).map_err(|e| fail(e.to_string()))?;
        }
        Ok(Box::new(TlsIo(rustls::StreamOwned::new(conn, io))))
    }
}

/// Whether a ureq error is (or wraps) a failed handshake, and its text.
pub(crate) fn handshake_failure(e: &ureq::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(h) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<HandshakeFailed>())
            {
                return Some(h.to_string());
            }
        }
        if let Some(h) = err.downcast_ref::<HandshakeFailed>() {
            return Some(h.to_string());
        }
        cur = err.source();
    }
    None
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
