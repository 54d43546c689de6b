//! The control API's TLS: the server certificate, and a client certificate
//! required on every connection — chaining to `client_ca`, valid now,
//! meant for client authentication and, when `client_subject` is set,
//! issued to that subject. A client that fails any of these is refused in
//! the handshake; there is no plaintext listener and no fallback.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use x509_parser::extensions::GeneralName;

use crate::config::ControlConfig;

/// Certificates or keys that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("config key {key}: cannot use {}: {message}; check the path, or make development certificates with `goldmountd dev-pki DIR`", path.display())]
    File {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
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
    /// No usable trust anchor in `client_ca`.
    #[error("config key control.client_ca: {} holds no usable CA certificate: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        key,
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "expected PEM CERTIFICATE blocks, found none".to_string()
        ));
    }
    Ok(certs)
}

/// The rustls configuration of the control listener, from `[control]`.
pub fn server_config(c: &ControlConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs("control.cert", &c.cert)?;
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| TlsError::File {
        key: "control.key",
        path: c.key.clone(),
        message: format!("expected a PEM private key: {e}"),
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certs("control.client_ca", &c.client_ca)? {
        roots.add(ca).map_err(|e| TlsError::ClientCa {
            path: c.client_ca.clone(),
            message: e.to_string(),
        })?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: c.client_ca.clone(),
            message: e.to_string(),
        })?;
    let verifier: Arc<dyn ClientCertVerifier> = match &c.client_subject {
        Some(subject) => Arc::new(SubjectVerifier {
            inner: webpki,
            subject: subject.clone(),
        }),
        None => webpki,
    };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "server certificate and key (control.cert, control.key)",
            source,
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The WebPKI verifier, then: the certificate's CN or one of its DNS/email
/// SANs equals the configured subject. The chain is checked first, so the
/// subject is only read from a certificate the CA issued.
#[derive(Debug)]
struct SubjectVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    subject: String,
}

/// The CN(s) and DNS/email SANs of a DER certificate.
pub fn subject_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for g in &san.value.general_names {
            match g {
                GeneralName::DNSName(d) | GeneralName::RFC822Name(d) => names.push(d.to_string()),
                _ => {}
            }
        }
    }
    Ok(names)
}

impl ClientCertVerifier for SubjectVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_names(end_entity).map_err(|e| {
            tracing::warn!(error = %e, "client certificate chained to client_ca but cannot be parsed");
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
        })?;
        if names.contains(&self.subject) {
            Ok(ok)
        } else {
            tracing::warn!(
                expected = %self.subject,
                found = ?names,
                "client certificate refused: its CN/SAN is not control.client_subject"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn control(dir: &Path) -> ControlConfig {
        let pki = pki::init_dev_pki(
            dir,
            &pki::DevPkiOptions {
                hostname: Some("h".into()),
                ..Default::default()
            },
        )
        .unwrap();
        ControlConfig {
            cert: pki.server_cert,
            key: pki.server_key,
            client_ca: pki.ca_cert,
            ..Default::default()
        }
    }

    #[test]
    fn a_dev_pki_makes_a_server_config_for_http1() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        let cfg = server_config(&c).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"http/1.1".to_vec()]);
        let with_subject = ControlConfig {
            client_subject: Some("goldmount-appliance".into()),
            ..c
        };
        assert!(server_config(&with_subject).is_ok());
    }

    #[test]
    fn unusable_files_are_named_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        let missing = ControlConfig {
            key: dir.path().join("nope.pem"),
            ..c.clone()
        };
        let e = server_config(&missing).unwrap_err().to_string();
        assert!(e.contains("control.key") && e.contains("nope.pem"), "{e}");
        // A key where the CA should be: no certificate in it.
        let swapped = ControlConfig {
            client_ca: c.key.clone(),
            ..c
        };
        let e = server_config(&swapped).unwrap_err().to_string();
        assert!(
            e.contains("control.client_ca") && e.contains("found none"),
            "{e}"
        );
    }

    #[test]
    fn subject_names_are_the_cn_and_sans() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        let client = dir.path().join(pki::CLIENT_CERT);
        let der = certs("t", &client).unwrap().remove(0);
        assert_eq!(
            subject_names(&der).unwrap(),
            [pki::DEFAULT_CLIENT_CN, pki::DEFAULT_CLIENT_CN]
        );
        let der = certs("t", &c.cert).unwrap().remove(0);
        assert_eq!(subject_names(&der).unwrap(), ["h", "h", "localhost"]);
    }
}
