#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::*;

/// The DER of the first certificate in a PEM file.
fn der(path: &Path) -> Vec<u8> {
    let text = fs::read(path).unwrap();
    let (_, pem) = parse_x509_pem(&text).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                n => panic!("IP SAN of {n} bytes"),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

fn cn(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// `leaf` names `ca` as issuer and its signature verifies with the CA's key.
fn chains_to(leaf: &Path, ca: &Path) -> bool {
    let (leaf_der, ca_der) = (der(leaf), der(ca));
    let (_, l) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    l.issuer() == c.subject() && l.verify_signature(Some(c.public_key())).is_ok()
}

#[test]
fn the_set_parses_chains_to_the_ca_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevPkiOptions {
        hostname: Some("host1.example".into()),
        extra_sans: vec!["10.0.0.7".into(), "gm.lab".into(), "localhost".into()],
        ..Default::default()
    };
    let pki = init_dev_pki(dir.path(), &opts).unwrap();

    let ca_der = der(&pki.ca_cert);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert!(ca.verify_signature(None).is_ok(), "self-signed");

    let server_der = der(&pki.server_cert);
    let (_, server) = x509_parser::parse_x509_certificate(&server_der).unwrap();
    assert!(!server.is_ca());
    assert_eq!(cn(&server), "host1.example");
    assert_eq!(
        sans(&server),
        [
            "host1.example",
            "localhost",
            "127.0.0.1",
            "::1",
            "10.0.0.7",
            "gm.lab"
        ]
    );
    assert_eq!(pki.server_sans, sans(&server));
    let eku = server.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(server.validity().is_valid());

    let client_der = der(&pki.client_cert);
    let (_, client) = x509_parser::parse_x509_certificate(&client_der).unwrap();
    assert_eq!(cn(&client), DEFAULT_CLIENT_CN);
    assert_eq!(sans(&client), [DEFAULT_CLIENT_CN]);
    let eku = client.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    assert!(chains_to(&pki.server_cert, &pki.ca_cert));
    assert!(chains_to(&pki.client_cert, &pki.ca_cert));

    for k in [&pki.ca_key, &pki.server_key, &pki.client_key] {
        assert_eq!(mode(k), 0o600, "{}", k.display());
        assert!(fs::read_to_string(k).unwrap().contains("PRIVATE KEY"));
    }
    for c in [&pki.ca_cert, &pki.server_cert, &pki.client_cert] {
        assert_eq!(mode(c), 0o644, "{}", c.display());
    }
}

#[test]
fn an_existing_set_is_not_overwritten_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevPkiOptions {
        hostname: Some("h".into()),
        ..Default::default()
    };
    let first = init_dev_pki(dir.path(), &opts).unwrap();
    let before = fs::read(&first.ca_key).unwrap();
    // Only one file of the set there: still refused, nothing written.
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join(CLIENT_KEY), "mine").unwrap();
    let e = init_dev_pki(other.path(), &opts).unwrap_err();
    assert!(
        matches!(e, PkiError::Exists { ref path } if path.ends_with(CLIENT_KEY)),
        "{e}"
    );
    assert!(!other.path().join(CA_CERT).exists());
    assert_eq!(
        fs::read_to_string(other.path().join(CLIENT_KEY)).unwrap(),
        "mine"
    );

    let e = init_dev_pki(dir.path(), &opts).unwrap_err();
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(fs::read(&first.ca_key).unwrap(), before);

    // A loosened key mode does not survive a forced replacement.
    fs::set_permissions(&first.server_key, fs::Permissions::from_mode(0o644)).unwrap();
    let forced = DevPkiOptions {
        force: true,
        ..opts
    };
    let second = init_dev_pki(dir.path(), &forced).unwrap();
    assert_ne!(fs::read(&second.ca_key).unwrap(), before);
    assert_eq!(mode(&second.server_key), 0o600);
    assert!(chains_to(&second.client_cert, &second.ca_cert));
}

#[test]
fn helpers_make_expired_and_foreign_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = init_dev_pki(
        dir.path(),
        &DevPkiOptions {
            hostname: Some("h".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let (expired, expired_key) = issue_client_cert(
        dir.path(),
        "expired",
        &pki.ca_cert,
        &pki.ca_key,
        DEFAULT_CLIENT_CN,
        Validity::expired(Duration::from_secs(3600)),
        false,
    )
    .unwrap();
    assert_eq!(mode(&expired_key), 0o600);
    assert!(
        chains_to(&expired, &pki.ca_cert),
        "reloaded CA signs as the same issuer"
    );
    let d = der(&expired);
    let (_, c) = x509_parser::parse_x509_certificate(&d).unwrap();
    assert!(!c.validity().is_valid());
    assert!(c.validity().not_after.timestamp() < x509_parser::time::ASN1Time::now().timestamp());

    let (other_ca, other_key) = init_ca(dir.path(), "other-ca", "someone else", false).unwrap();
    let (foreign, _) = issue_client_cert(
        dir.path(),
        "foreign",
        &other_ca,
        &other_key,
        DEFAULT_CLIENT_CN,
        Validity::days(1),
        false,
    )
    .unwrap();
    assert!(chains_to(&foreign, &other_ca));
    assert!(!chains_to(&foreign, &pki.ca_cert));
    assert!(matches!(
        init_ca(dir.path(), "other-ca", "x", false),
        Err(PkiError::Exists { .. })
    ));
}

#[test]
fn a_bad_san_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let e = init_dev_pki(
        dir.path(),
        &DevPkiOptions {
            hostname: Some("h".into()),
            extra_sans: vec!["not a name/".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::BadName { .. }), "{e}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
