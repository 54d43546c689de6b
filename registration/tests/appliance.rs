//! Registration against the real appliance server, in process on
//! 127.0.0.1:0 with a bearer token (and, in one test, HTTPS with a
//! development PKI). A counting layer around the appliance's own router
//! shows which requests each registration sent, so "unchanged" is proven
//! to write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use appliance::auth::Token;
use appliance::present::loopback::LoopPresenter;
use appliance::{Appliance, ApplianceConfig};
use registration::{register, ApplianceClient, Change, Field, HostIdentity, RegistrationError};

const TOKEN: &str = "registration-test-token-0123456789";

/// A real appliance serving on a loopback port until dropped.
struct TestAppliance {
    url: String,
    app: Arc<Appliance>,
    /// "METHOD path" → count, for every request it answered.
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl TestAppliance {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// HTTPS with `tls` = (certificate, key) when given.
    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ApplianceConfig::new(dir.path().join("data"));
        let app = Arc::new(Appliance::open(&cfg, Box::new(LoopPresenter::new())).unwrap());
        let token = Token::from_secret(TOKEN, dir.path().join("api-token"));
        let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match &tls {
            Some((cert, key)) => {
                let id = appliance::tls::Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                let server = appliance::tls::server_config(&id).unwrap();
                let a = app.clone();
                rt.spawn(async move {
                    appliance::api::serve(a, token, listener, Some(server), async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
                });
                format!("https://localhost:{port}")
            }
            None => {
                let counted = calls.clone();
                let router =
                    appliance::api::router(app.clone(), token).layer(axum::middleware::from_fn(
                        move |req: axum::extract::Request, next: axum::middleware::Next| {
                            let counted = counted.clone();
                            async move {
                                let key = format!("{} {}", req.method(), req.uri().path());
                                *counted.lock().unwrap().entry(key).or_default() += 1;
                                next.run(req).await
                            }
                        },
                    ));
                rt.spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await
                        .unwrap();
                });
                format!("http://127.0.0.1:{port}")
            }
        };
        TestAppliance {
            url,
            app,
            calls,
            stop: Some(tx),
            rt: Some(rt),
            _dir: dir,
        }
    }

    fn client(&self) -> ApplianceClient {
        ApplianceClient::new(&self.url, None, Some(TOKEN.to_string())).unwrap()
    }

    /// Requests answered since the last call, then forgets them.
    fn take_calls(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn writes(calls: &BTreeMap<String, usize>) -> usize {
        calls
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for TestAppliance {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn identity(hostname: &str, iqns: &[&str], wwpns: &[&str]) -> HostIdentity {
    HostIdentity {
        hostname: hostname.to_string(),
        machine_id: "0123456789abcdef0123456789abcdef".to_string(),
        os: "Debian GNU/Linux 12 (bookworm)".to_string(),
        iqns: iqns.iter().map(|s| s.to_string()).collect(),
        wwpns: wwpns.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn first_creates_second_writes_nothing_a_change_updates() {
    let a = TestAppliance::start();
    let c = a.client();
    let id = identity("db7", &["IQN.1993-08.org.debian:01:DB7"], &[]);

    let r = register(&c, &id, Some("https://db7:8443"), Some(CA_PEM)).unwrap();
    assert_eq!(r.change, Change::Created);
    assert_eq!(r.host.name, "db7");
    assert_eq!(r.host.iqns, ["iqn.1993-08.org.debian:01:db7"]);
    assert_eq!(r.host.callback_url.as_deref(), Some("https://db7:8443"));
    assert_eq!(r.appliance, a.url);
    let calls = a.take_calls();
    assert_eq!(calls.get("PUT /v1/hosts/db7"), Some(&1), "{calls:?}");
    let stored = a.app.get_host("db7").unwrap();
    assert_eq!(stored.iqns, r.host.iqns);
    assert_eq!(stored.callback_ca_pem.as_deref(), Some(CA_PEM));

    // Same identity: found by its IQN, nothing written.
    let r2 = register(&c, &id, Some("https://db7:8443"), Some(CA_PEM)).unwrap();
    assert_eq!(r2.change, Change::Unchanged);
    assert_eq!(r2.host, r.host);
    let calls = a.take_calls();
    assert_eq!(TestAppliance::writes(&calls), 0, "{calls:?}");
    assert_eq!(
        calls.get("GET /v1/hosts"),
        Some(&1),
        "one lookup by IQN: {calls:?}"
    );

    // No callback given: the stored one is kept, still nothing written.
    let r3 = register(&c, &id, None, None).unwrap();
    assert_eq!(r3.change, Change::Unchanged);
    assert_eq!(r3.host.callback_url.as_deref(), Some("https://db7:8443"));
    assert_eq!(TestAppliance::writes(&a.take_calls()), 0);

    // A second initiator name (e.g. a session logged in under a new one).
    let id2 = identity(
        "db7",
        &["iqn.1993-08.org.debian:01:db7", "iqn.2026-12.test:db7-new"],
        &[],
    );
    let r4 = register(&c, &id2, None, None).unwrap();
    assert_eq!(
        r4.change,
        Change::Updated {
            fields: vec![Field::Iqns]
        }
    );
    assert_eq!(
        r4.host.iqns,
        ["iqn.1993-08.org.debian:01:db7", "iqn.2026-12.test:db7-new"]
    );
    assert_eq!(r4.host.created, r.host.created);
    assert_eq!(r4.host.callback_url.as_deref(), Some("https://db7:8443"));
    assert_eq!(a.take_calls().get("PUT /v1/hosts/db7"), Some(&1));

    // An FC port came online (spelt as sysfs does) and the callback moved.
    let id3 = identity(
        "db7",
        &["iqn.1993-08.org.debian:01:db7", "iqn.2026-12.test:db7-new"],
        &["0x21000024FF4C9A01"],
    );
    let r5 = register(&c, &id3, Some("https://db7.example:8443"), None).unwrap();
    assert_eq!(
        r5.change,
        Change::Updated {
            fields: vec![Field::Wwpns, Field::CallbackUrl]
        }
    );
    assert_eq!(r5.host.wwpns, ["21:00:00:24:ff:4c:9a:01"]);
    assert_eq!(a.app.get_host("db7").unwrap().wwpns, r5.host.wwpns);

    // The old initiator name is gone from the host: dropped on the appliance.
    let id4 = identity(
        "db7",
        &["iqn.2026-12.test:db7-new"],
        &["21:00:00:24:ff:4c:9a:01"],
    );
    let r6 = register(&c, &id4, None, None).unwrap();
    assert_eq!(
        r6.change,
        Change::Updated {
            fields: vec![Field::Iqns]
        }
    );
    assert_eq!(
        a.app.get_host("db7").unwrap().iqns,
        ["iqn.2026-12.test:db7-new"]
    );
    let again = register(&c, &id4, None, None).unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(a.app.list_hosts().unwrap().len(), 1);
}

#[test]
fn identity_wins_over_the_hostname_and_the_hostname_is_the_fallback() {
    let a = TestAppliance::start();
    let c = a.client();
    // An operator registered this host's port under another name.
    let legacy = identity("legacy-name", &[], &["21:00:00:24:ff:4c:9a:02"]);
    assert_eq!(
        register(&c, &legacy, None, None).unwrap().change,
        Change::Created
    );
    let r = register(
        &c,
        &identity(
            "db8",
            &["iqn.2026-12.test:db8"],
            &["21:00:00:24:ff:4c:9a:02"],
        ),
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        r.host.name, "legacy-name",
        "found by WWPN, not created anew"
    );
    assert_eq!(
        r.change,
        Change::Updated {
            fields: vec![Field::Iqns]
        }
    );
    assert!(a.app.get_host("db8").is_err());

    // Reinstalled host: new IQN, same hostname → the named host is updated.
    register(
        &c,
        &identity("db9", &["iqn.2026-12.test:db9-old"], &[]),
        None,
        None,
    )
    .unwrap();
    let r = register(
        &c,
        &identity("db9", &["iqn.2026-12.test:db9-reinstalled"], &[]),
        None,
        None,
    )
    .unwrap();
    assert_eq!(r.host.name, "db9");
    assert_eq!(
        r.change,
        Change::Updated {
            fields: vec![Field::Iqns]
        }
    );
    assert_eq!(a.app.list_hosts().unwrap().len(), 2);
}

#[test]
fn ports_of_two_appliance_hosts_are_not_merged_by_guessing() {
    let a = TestAppliance::start();
    let c = a.client();
    register(
        &c,
        &identity("a1", &["iqn.2026-12.test:a1"], &[]),
        None,
        None,
    )
    .unwrap();
    register(
        &c,
        &identity("b1", &[], &["21:00:00:24:ff:4c:9a:03"]),
        None,
        None,
    )
    .unwrap();
    a.take_calls();
    let e = register(
        &c,
        &identity("c1", &["iqn.2026-12.test:a1"], &["21:00:00:24:ff:4c:9a:03"]),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(&e, RegistrationError::Split { hosts, .. } if hosts == &["a1", "b1"]),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains("initiator iqn.2026-12.test:a1 → a1"),
        "{e}"
    );
    assert_eq!(TestAppliance::writes(&a.take_calls()), 0);
}

#[test]
fn what_the_appliance_refuses_is_not_retryable_and_says_why() {
    let a = TestAppliance::start();
    let c = a.client();
    let e = register(&c, &identity("h1", &["not-an-iqn"], &[]), None, None).unwrap_err();
    match &e {
        RegistrationError::Refused {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(*status, 422, "{e}");
            assert_eq!(code.as_deref(), Some("invalid"));
            assert!(message.contains("not-an-iqn"), "{e}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!e.is_retryable());
    // Nothing to register at all: refused before any call.
    a.take_calls();
    let e = register(&c, &identity("h1", &[], &[]), None, None).unwrap_err();
    assert!(matches!(e, RegistrationError::NoInitiator), "{e}");
    assert!(a.take_calls().is_empty());
    let e = register(
        &c,
        &identity("bad name", &["iqn.2026-12.test:x"], &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, RegistrationError::BadHostName { .. }), "{e}");
    // A callback the appliance cannot use (it calls back over https only).
    let e = register(
        &c,
        &identity("h2", &["iqn.2026-12.test:h2"], &[]),
        Some("http://h2:8443"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("callback_url"), "{e}");
}

#[test]
fn a_down_appliance_is_retryable_and_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let c = ApplianceClient::new(&url, None, Some(TOKEN.to_string())).unwrap();
    let e = register(
        &c,
        &identity("h1", &["iqn.2026-12.test:h1"], &[]),
        None,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, RegistrationError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains(&url), "{e}");
    assert_eq!(e.kind(), "unreachable");
}

#[test]
fn a_wrong_or_missing_token_says_what_to_do() {
    let a = TestAppliance::start();
    let id = identity("h1", &["iqn.2026-12.test:h1"], &[]);
    let wrong =
        ApplianceClient::new(&a.url, None, Some("not-the-token-0123456789".into())).unwrap();
    let e = register(&wrong, &id, None, None).unwrap_err();
    assert!(matches!(e, RegistrationError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("401") && text.contains("check the token file"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-token"),
        "the token leaked into the error: {text}"
    );
    let none = ApplianceClient::new(&a.url, None, None).unwrap();
    let e = register(&none, &id, None, None).unwrap_err();
    assert!(e.to_string().contains("no token was sent"), "{e}");
    assert!(a.app.list_hosts().unwrap().is_empty());
}

#[test]
fn https_with_the_right_ca_registers_and_a_wrong_ca_is_a_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = pki::DevPkiOptions {
        hostname: Some("appliance.test".into()),
        ..Default::default()
    };
    let good = pki::init_dev_pki(&dir.path().join("good"), &opts).unwrap();
    let other = pki::init_dev_pki(&dir.path().join("other"), &opts).unwrap();
    let a = TestAppliance::start_with(Some((good.server_cert.clone(), good.server_key.clone())));
    let id = identity("h1", &["iqn.2026-12.test:h1"], &[]);
    let c = ApplianceClient::new(&a.url, Some(&good.ca_cert), Some(TOKEN.into())).unwrap();
    assert_eq!(
        register(&c, &id, None, None).unwrap().change,
        Change::Created
    );
    assert_eq!(
        register(&c, &id, None, None).unwrap().change,
        Change::Unchanged
    );

    let c = ApplianceClient::new(&a.url, Some(&other.ca_cert), Some(TOKEN.into())).unwrap();
    let e = register(&c, &id, None, None).unwrap_err();
    assert!(matches!(e, RegistrationError::Tls { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("[appliance] ca"), "{e}");

    // The client refuses a key file as CA (before any connection).
    let e = ApplianceClient::new(&a.url, Some(Path::new(&good.server_key)), None).unwrap_err();
    assert!(matches!(e, RegistrationError::BadCa { .. }), "{e}");
}
