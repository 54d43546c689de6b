//! The control API answers only clients whose certificate chains to the
//! configured CA, is valid now and — when `client_subject` is set — names
//! the appliance; everyone else is refused in the TLS handshake, and plain
//! HTTP gets no HTTP answer at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_client_certificate_is_served() {
    let d = Daemon::start().await;
    let c = d.client();
    let r = c.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: serde_json::Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["volumes"], 0);
    assert_eq!(h["state_dir"], d.path().join("state").to_str().unwrap());
    assert!(h["uptime_seconds"].as_u64().is_some());

    let r = c.get(d.url("/v1/volumes")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!([])
    );

    // The raw client sees the same, which makes its refusals below meaningful.
    let ok = d
        .raw_get(Some((&d.pki.client_cert, &d.pki.client_key)), "/healthz")
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused_in_the_handshake() {
    let d = Daemon::start().await;
    let e = d.raw_get(None, "/healthz").await.unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    let r = d.client_with(None).get(d.url("/healthz")).send().await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let d = Daemon::start().await;
    let dir = d.path().join("tls");
    // Another CA under another name: no trust anchor for it (UnknownCA);
    // another CA impersonating the dev CA's name: its signature does not
    // verify with the trusted key (DecryptError).
    for (name, ca_cn, alert) in [
        ("other", "someone else's CA", "UnknownCA"),
        ("impostor", "goldmount development CA", "DecryptError"),
    ] {
        let (ca, ca_key) = pki::init_ca(&dir, &format!("{name}-ca"), ca_cn, false).unwrap();
        let foreign = pki::issue_client_cert(
            &dir,
            name,
            &ca,
            &ca_key,
            pki::DEFAULT_CLIENT_CN,
            pki::Validity::days(30),
            false,
        )
        .unwrap();
        let e = d
            .raw_get(Some((&foreign.0, &foreign.1)), "/v1/volumes")
            .await
            .unwrap_err();
        assert!(e.contains(alert), "{name}: {e}");
        let r = d
            .client_with(Some((&foreign.0, &foreign.1)))
            .get(d.url("/v1/volumes"))
            .send()
            .await;
        assert!(r.is_err(), "{name}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let d = Daemon::start().await;
    let dir = d.path().join("tls");
    let expired = pki::issue_client_cert(
        &dir,
        "expired",
        &d.pki.ca_cert,
        &d.pki.ca_key,
        pki::DEFAULT_CLIENT_CN,
        pki::Validity::expired(Duration::from_secs(3600)),
        false,
    )
    .unwrap();
    let e = d
        .raw_get(Some((&expired.0, &expired.1)), "/healthz")
        .await
        .unwrap_err();
    assert!(e.contains("CertificateExpired"), "{e}");
    // The same CA's valid certificate still works: the refusal is the date.
    let fresh = pki::issue_client_cert(
        &dir,
        "fresh",
        &d.pki.ca_cert,
        &d.pki.ca_key,
        pki::DEFAULT_CLIENT_CN,
        pki::Validity::days(1),
        false,
    )
    .unwrap();
    let ok = d
        .raw_get(Some((&fresh.0, &fresh.1)), "/healthz")
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_gets_no_http_answer() {
    let d = Daemon::start().await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"GET /v1/volumes HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept a plaintext connection open");
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("HTTP/"), "plaintext answered: {text:?}");
    assert!(!text.contains("[]"));

    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/volumes", d.addr.port()))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_subject_is_refused_when_one_is_required() {
    let d = Daemon::start_with(|c| {
        c.control.client_subject = Some(pki::DEFAULT_CLIENT_CN.to_string());
    })
    .await;
    let dir = d.path().join("tls");
    let other = pki::issue_client_cert(
        &dir,
        "intruder",
        &d.pki.ca_cert,
        &d.pki.ca_key,
        "some-other-client",
        pki::Validity::days(1),
        false,
    )
    .unwrap();
    let e = d
        .raw_get(Some((&other.0, &other.1)), "/healthz")
        .await
        .unwrap_err();
    assert!(e.contains("AccessDenied"), "{e}");
    let r = d
        .client_with(Some((&other.0, &other.1)))
        .get(d.url("/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    // The appliance's own certificate passes the subject check.
    let r = d.client().get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_clients_are_served_too() {
    let d = Daemon::start().await;
    let r = d.client().get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let c12 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&d.pki.ca_cert).unwrap()).unwrap(),
        )
        .identity({
            let mut pem = std::fs::read(&d.pki.client_cert).unwrap();
            pem.extend(std::fs::read(&d.pki.client_key).unwrap());
            reqwest::Identity::from_pem(&pem).unwrap()
        })
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let r = c12.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // And without a certificate, TLS 1.2 is refused just the same.
    let r = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&d.pki.ca_cert).unwrap()).unwrap(),
        )
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap()
        .get(d.url("/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
}
