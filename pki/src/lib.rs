//! Development certificates for goldmount's mutual-TLS control API.
//!
//! The daemon never listens in plaintext, so a fresh host (a demo, a test, a
//! lab VM) needs certificates before it can serve at all: a development CA,
//! the connector's server certificate and the appliance's client
//! certificate, written as PEM files with private keys readable by their
//! owner only. Production hosts get their certificates from the appliance's
//! or the site's CA; this crate is for everything before that.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// File names inside the PKI directory (what the daemon's config points at).
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca-key.pem";
/// The connector's server certificate.
pub const SERVER_CERT: &str = "server.pem";
/// The server certificate's private key.
pub const SERVER_KEY: &str = "server-key.pem";
/// The appliance's client certificate.
pub const CLIENT_CERT: &str = "client.pem";
/// The client certificate's private key.
pub const CLIENT_KEY: &str = "client-key.pem";

/// The client certificate's common name unless told otherwise: what the
/// daemon's `client_subject` is set to on a development host.
pub const DEFAULT_CLIENT_CN: &str = "goldmount-appliance";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What went wrong making or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file of the set is there already.
    #[error(
        "{} already exists; refusing to overwrite it (pass force to replace the whole set, or choose an empty directory)",
        path.display()
    )]
    Exists {
        /// The file found.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused to make or load a key or certificate.
    #[error("cannot make the {what}: {source}")]
    Generate {
        /// Which key or certificate.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {name:?}: expected a DNS name (e.g. host.example) or an IP address")]
    BadName {
        /// The name given.
        name: String,
    },
}

/// Choices for [`init_dev_pki`].
#[derive(Debug, Clone)]
pub struct DevPkiOptions {
    /// The server's hostname (the first SAN); `None`: this host's name.
    pub hostname: Option<String>,
    /// More SANs of the server certificate (DNS names or IP addresses)
    /// beside the hostname, `localhost`, `127.0.0.1` and `::1`.
    pub extra_sans: Vec<String>,
    /// The client certificate's CN (and DNS SAN).
    pub client_cn: String,
    /// How long the server and client certificates are valid.
    pub validity: Duration,
    /// Replace an existing set instead of refusing.
    pub force: bool,
}

impl Default for DevPkiOptions {
    fn default() -> Self {
        Self {
            hostname: None,
            extra_sans: Vec::new(),
            client_cn: DEFAULT_CLIENT_CN.to_string(),
            validity: 825 * DAY,
            force: false,
        }
    }
}

/// Where [`init_dev_pki`] wrote the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// The CA certificate (the daemon's `client_ca`, the appliance's trust root).
    pub ca_cert: PathBuf,
    /// The CA's key.
    pub ca_key: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
    /// The SANs of the server certificate, in order.
    pub server_sans: Vec<String>,
}

/// Writes a development CA, a server certificate and a client certificate
/// signed by it into `dir` (made if missing). Keys get mode 0600. Refuses,
/// writing nothing, when any of the six files exists, unless `opts.force`.
pub fn init_dev_pki(dir: &Path, opts: &DevPkiOptions) -> Result<DevPki, PkiError> {
    let p = |n: &str| dir.join(n);
    let out = DevPki {
        ca_cert: p(CA_CERT),
        ca_key: p(CA_KEY),
        server_cert: p(SERVER_CERT),
        server_key: p(SERVER_KEY),
        client_cert: p(CLIENT_CERT),
        client_key: p(CLIENT_KEY),
        server_sans: server_sans(opts)?,
    };
    let all = [
        &out.ca_cert,
        &out.ca_key,
        &out.server_cert,
        &out.server_key,
        &out.client_cert,
        &out.client_key,
    ];
    if !opts.force {
        refuse_existing(&all)?;
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;

    let ca = Ca::generate("goldmount development CA")?;
    let now = SystemTime::now();
    let validity = Validity {
        not_before: now - DAY,
        not_after: now + opts.validity,
    };
    let server = ca.issue(
        &out.server_sans[0],
        &out.server_sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        validity,
    )?;
    let client = ca.issue(
        &opts.client_cn,
        std::slice::from_ref(&opts.client_cn),
        ExtendedKeyUsagePurpose::ClientAuth,
        validity,
    )?;
    write_pair(
        &out.ca_cert,
        &out.ca_key,
        &ca.cert.pem(),
        &ca.key,
        opts.force,
    )?;
    write_pair(
        &out.server_cert,
        &out.server_key,
        &server.0,
        &server.1,
        opts.force,
    )?;
    write_pair(
        &out.client_cert,
        &out.client_key,
        &client.0,
        &client.1,
        opts.force,
    )?;
    Ok(out)
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Not before.
    pub not_before: SystemTime,
    /// Not after.
    pub not_after: SystemTime,
}

impl Validity {
    /// A certificate that expired `ago` ago after a day of validity — for
    /// checking that a verifier refuses it.
    pub fn expired(ago: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - ago - DAY,
            not_after: now - ago,
        }
    }
    /// Valid from a day ago for `days` days from now.
    pub fn days(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - DAY,
            not_after: now + DAY * days,
        }
    }
}

/// Writes a new self-signed CA (`<name>.pem`, `<name>-key.pem`) into `dir`:
/// another trust root, unrelated to any other — a client certificate it
/// signs must be refused by a daemon that trusts only the first.
pub fn init_ca(
    dir: &Path,
    name: &str,
    cn: &str,
    force: bool,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    if !force {
        refuse_existing(&[&cert, &key])?;
    }
    let ca = Ca::generate(cn)?;
    write_pair(&cert, &key, &ca.cert.pem(), &ca.key, force)?;
    Ok((cert, key))
}

/// Issues a client certificate (`<name>.pem`, `<name>-key.pem` in `dir`)
/// with common name and DNS SAN `cn`, signed by the CA in `ca_cert`/`ca_key`
/// and valid during `validity` — for another appliance, a wrong subject, or
/// an expired certificate.
pub fn issue_client_cert(
    dir: &Path,
    name: &str,
    ca_cert: &Path,
    ca_key: &Path,
    cn: &str,
    validity: Validity,
    force: bool,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    if !force {
        refuse_existing(&[&cert, &key])?;
    }
    let ca = Ca::load(ca_cert, ca_key)?;
    let (pem, kp) = ca.issue(
        cn,
        &[cn.to_string()],
        ExtendedKeyUsagePurpose::ClientAuth,
        validity,
    )?;
    write_pair(&cert, &key, &pem, &kp, force)?;
    Ok((cert, key))
}

/// A CA able to sign: its certificate and key.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn generate(cn: &str) -> Result<Self, PkiError> {
        let what = || format!("CA {cn:?}");
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: what(),
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - DAY).into();
        params.not_after = (now + 3650 * DAY).into();
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: what(),
                source,
            })?;
        Ok(Self { cert, key })
    }

    /// Loads a CA written by this crate. rcgen signs with a certificate
    /// object, so the CA's parameters are read back and self-signed again
    /// with its own key: the same subject and key, hence the same issuer.
    fn load(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|source| PkiError::Io {
                action: "read",
                path: p.to_path_buf(),
                source,
            })
        };
        let what = || format!("CA from {}", cert.display());
        let key = KeyPair::from_pem(&read(key)?).map_err(|source| PkiError::Generate {
            what: what(),
            source,
        })?;
        let params = CertificateParams::from_ca_cert_pem(&read(cert)?).map_err(|source| {
            PkiError::Generate {
                what: what(),
                source,
            }
        })?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: what(),
                source,
            })?;
        Ok(Self { cert, key })
    }

    /// A leaf certificate for `cn` with `sans` and one extended key usage.
    fn issue(
        &self,
        cn: &str,
        sans: &[String],
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<(String, KeyPair), PkiError> {
        let what = || format!("certificate for {cn:?}");
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: what(),
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|source| PkiError::Generate {
                what: what(),
                source,
            })?;
        Ok((cert.pem(), key))
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "goldmount");
    dn.push(DnType::CommonName, cn);
    dn
}

fn san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(PkiError::BadName {
            name: name.to_string(),
        });
    }
    let ia5 = name.try_into().map_err(|_| PkiError::BadName {
        name: name.to_string(),
    })?;
    Ok(SanType::DnsName(ia5))
}

/// The hostname, `localhost`, `127.0.0.1`, `::1`, then the extras, each once.
fn server_sans(opts: &DevPkiOptions) -> Result<Vec<String>, PkiError> {
    let host = match &opts.hostname {
        Some(h) => h.clone(),
        None => this_hostname()?,
    };
    let mut out: Vec<String> = Vec::new();
    for n in [host, "localhost".into(), "127.0.0.1".into(), "::1".into()]
        .into_iter()
        .chain(opts.extra_sans.iter().cloned())
    {
        san(&n)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn this_hostname() -> Result<String, PkiError> {
    let path = Path::new("/proc/sys/kernel/hostname");
    let h = fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read the hostname from",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(h.trim().to_string())
}

fn refuse_existing(paths: &[&PathBuf]) -> Result<(), PkiError> {
    for p in paths {
        if fs::symlink_metadata(p).is_ok() {
            return Err(PkiError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Writes a certificate (0644) and its key (0600). A file being replaced is
/// removed first, so a key never inherits a looser mode or another owner.
fn write_pair(
    cert: &Path,
    key: &Path,
    cert_pem: &str,
    kp: &KeyPair,
    replace: bool,
) -> Result<(), PkiError> {
    write_file(key, kp.serialize_pem().as_bytes(), 0o600, replace)?;
    write_file(cert, cert_pem.as_bytes(), 0o644, replace)
}

fn write_file(path: &Path, data: &[u8], mode: u32, replace: bool) -> Result<(), PkiError> {
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    };
    if replace {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("replace")(e)),
        }
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io("create")(e)
            }
        })?;
    // The umask may only have narrowed the mode; make it exact.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of"))?;
    f.write_all(data).map_err(io("write"))?;
    f.sync_all().map_err(io("sync"))
}

#[cfg(test)]
mod tests;
