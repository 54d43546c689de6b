//! The few appliance calls registration needs (`GET /v1/hosts?iqn=|wwpn=`,
//! `GET /v1/hosts/{name}`, `PUT /v1/hosts/{name}`), blocking, with the
//! bearer token, over HTTPS trusting the appliance's CA — or plain HTTP,
//! but only to a loopback address, so a token never crosses a network in
//! clear. Every answer is mapped to a [`RegistrationError`] that says
//! whether to retry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::RegistrationError;
use crate::tls;

/// A host as the appliance stores it (what `GET`/`PUT /v1/hosts/{name}` return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredHost {
    /// The appliance's name for this host.
    pub name: String,
    /// Initiator IQNs it maps LUNs to.
    #[serde(default)]
    pub iqns: Vec<String>,
    /// FC WWPNs it maps LUNs to.
    #[serde(default)]
    pub wwpns: Vec<String>,
    /// Where it calls this host's connector back.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The CA it verifies the connector's certificate with.
    #[serde(default)]
    pub callback_ca_pem: Option<String>,
    /// Unix seconds of the first registration.
    #[serde(default)]
    pub created: u64,
}

/// Body of `PUT /v1/hosts/{name}`: the host's whole identity.
#[derive(Debug, Serialize)]
pub(crate) struct PutBody<'a> {
    pub iqns: &'a [String],
    pub wwpns: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_ca_pem: Option<&'a str>,
}

/// The appliance's JSON error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: Option<String>,
}

/// Reads an API token file: one line of at least 16 printable characters
/// (the appliance's rule), surrounding whitespace ignored.
pub fn read_token_file(path: &Path) -> Result<String, RegistrationError> {
    let bad = |message: String| RegistrationError::BadToken {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "cannot read it: {e}; point [appliance] token_file / --token-file at the appliance's API token"
        ))
    })?;
    let t = text.trim();
    if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(format!(
            "expected one line of at least 16 printable characters (the appliance's API token), found {}",
            if t.is_empty() {
                "an empty file".to_string()
            } else if t.bytes().any(|b| !b.is_ascii_graphic()) {
                "spaces, line breaks or non-ASCII characters inside".to_string()
            } else {
                format!("{} characters", t.len())
            }
        )));
    }
    Ok(t.to_string())
}

/// A connection to one appliance.
#[derive(Clone)]
pub struct ApplianceClient {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl std::fmt::Debug for ApplianceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceClient")
            .field("base", &self.base)
            .field("token", &self.auth.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// The host part of an `http(s)://host[:port][/...]` URL, without brackets.
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ApplianceClient {
    /// A client for the appliance at `url` (`https://…` verified with the
    /// CA in the PEM file `ca`, which is then required; `http://…` only to
    /// a loopback address), sending `token` as `Authorization: Bearer`.
    /// Calls time out after 10 s connecting and 30 s in all.
    pub fn new(
        url: &str,
        ca: Option<&Path>,
        token: Option<String>,
    ) -> Result<Self, RegistrationError> {
        let bad_url = |message: &str| RegistrationError::BadUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        let base = url.trim().trim_end_matches('/').to_string();
        let builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(30));
        let agent = if let Some(rest) = base.strip_prefix("https://") {
            if url_host(rest).is_empty() {
                return Err(bad_url("expected https://HOST[:PORT]"));
            }
            let ca = ca.ok_or_else(|| {
                bad_url(
                    "an https:// appliance needs the CA that signed its certificate: set [appliance] ca or pass --ca",
                )
            })?;
            builder
                .tls_connector(Arc::new(tls::UreqTls(tls::client_config(ca)?)))
                .build()
        } else if let Some(rest) = base.strip_prefix("http://") {
            let host = url_host(rest);
            if !is_loopback(host) {
                return Err(bad_url(
                    "plain http:// is allowed only to a loopback address (the API token would cross the network in clear); use https:// with [appliance] ca",
                ));
            }
            builder.build()
        } else {
            return Err(bad_url(
                "expected an https:// (or, on loopback, http://) URL",
            ));
        };
        if base.contains(char::is_whitespace) {
            return Err(bad_url("contains whitespace"));
        }
        Ok(Self {
            base,
            agent,
            auth: token.map(|t| format!("Bearer {t}")),
        })
    }

    /// The base URL (no trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The hosts owning the initiator `iqn` (0 or 1).
    pub fn find_by_iqn(&self, iqn: &str) -> Result<Vec<RegisteredHost>, RegistrationError> {
        self.get_json(&format!("/v1/hosts?iqn={}", query_escape(iqn)))
    }

    /// The hosts owning the FC port `wwpn` (0 or 1).
    pub fn find_by_wwpn(&self, wwpn: &str) -> Result<Vec<RegisteredHost>, RegistrationError> {
        self.get_json(&format!("/v1/hosts?wwpn={}", query_escape(wwpn)))
    }

    /// The host named `name`, or `None` when the appliance has none.
    pub fn host(&self, name: &str) -> Result<Option<RegisteredHost>, RegistrationError> {
        match self.get_json(&format!("/v1/hosts/{}", query_escape(name))) {
            Ok(h) => Ok(Some(h)),
            Err(RegistrationError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/hosts/{name}`: creates or replaces; true when created (201).
    pub(crate) fn put_host(
        &self,
        name: &str,
        body: &PutBody<'_>,
    ) -> Result<(RegisteredHost, bool), RegistrationError> {
        let url = format!("{}/v1/hosts/{}", self.base, query_escape(name));
        let r = self.request("PUT", &url).send_json(body);
        let resp = self.check(&url, r)?;
        let created = resp.status() == 201;
        Ok((decode(&url, resp)?, created))
    }

    /// Any other appliance call (`goldmount clone` creates clones and
    /// presentations with it) over this client's TLS and token: `method`
    /// on `path` (beginning with `/`), a JSON `body` if any, within
    /// `timeout` (a one-call mount may take minutes). Answers the status
    /// and the JSON body (`null` when empty, e.g. 204); an error status is
    /// the same typed [`RegistrationError`] as the registration calls.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, serde_json::Value), RegistrationError> {
        let url = format!("{}{path}", self.base);
        let req = self.request(method, &url).timeout(timeout);
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = self.check(&url, r)?;
        let status = resp.status();
        let text = resp
            .into_string()
            .map_err(|e| RegistrationError::BadResponse {
                url: url.clone(),
                message: format!("reading the body: {e}"),
            })?;
        if text.trim().is_empty() {
            return Ok((status, serde_json::Value::Null));
        }
        let v = serde_json::from_str(&text).map_err(|e| RegistrationError::BadResponse {
            url: url.clone(),
            message: format!(
                "expected the appliance's JSON ({e}), found {}",
                snippet(&text)
            ),
        })?;
        Ok((status, v))
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RegistrationError> {
        let url = format!("{}{path}", self.base);
        let r = self.request("GET", &url).call();
        let resp = self.check(&url, r)?;
        decode(&url, resp)
    }

    /// Maps a ureq outcome to the response or a typed error.
    fn check(
        &self,
        url: &str,
        r: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, RegistrationError> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let (message, code) = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => (b.error, b.code),
                    Err(_) => (snippet(&text), None),
                };
                let url = url.to_string();
                Err(match status {
                    401 => RegistrationError::Unauthorized {
                        url,
                        message,
                        hint: if self.auth.is_some() {
                            "check the token file ([appliance] token_file, --token-file or $GOLDMOUNT_APPLIANCE_TOKEN): it must hold the appliance's current API token"
                        } else {
                            "no token was sent: set [appliance] token_file or pass --token-file with the appliance's API token"
                        },
                    },
                    500..=599 => RegistrationError::Server {
                        url,
                        status,
                        message,
                    },
                    _ => RegistrationError::Refused {
                        url,
                        status,
                        code,
                        message,
                    },
                })
            }
            Err(e) => {
                let url = url.to_string();
                match tls::handshake_failure(&e) {
                    Some(message) => Err(RegistrationError::Tls { url, message }),
                    None => {
                        // ureq's text starts with the URL, which the error names already.
                        let text = e.to_string();
                        let message = text
                            .strip_prefix(&format!("{url}: "))
                            .unwrap_or(&text)
                            .to_string();
                        Err(RegistrationError::Unreachable { url, message })
                    }
                }
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: ureq::Response,
) -> Result<T, RegistrationError> {
    let text = resp
        .into_string()
        .map_err(|e| RegistrationError::BadResponse {
            url: url.to_string(),
            message: format!("reading the body: {e}"),
        })?;
    serde_json::from_str(&text).map_err(|e| RegistrationError::BadResponse {
        url: url.to_string(),
        message: format!(
            "expected the appliance's JSON ({e}), found {}",
            snippet(&text)
        ),
    })
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    let cut: String = t.chars().take(200).collect();
    if cut.len() < t.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Percent-encodes everything but unreserved characters and `:`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_is_sent() {
        for ok in [
            "http://127.0.0.1:8470",
            "http://localhost/",
            "http://[::1]:80",
        ] {
            ApplianceClient::new(ok, None, None).unwrap();
        }
        let e = ApplianceClient::new("http://appliance.example:8470", None, None).unwrap_err();
        assert!(
            matches!(e, RegistrationError::BadUrl { .. }) && e.to_string().contains("loopback"),
            "{e}"
        );
        let e = ApplianceClient::new("https://appliance:8470", None, None).unwrap_err();
        assert!(e.to_string().contains("[appliance] ca"), "{e}");
        let e = ApplianceClient::new("ftp://x", None, None).unwrap_err();
        assert!(matches!(e, RegistrationError::BadUrl { .. }), "{e}");
        let e = ApplianceClient::new("https://a:1", Some(Path::new("/nonexistent/ca.pem")), None)
            .unwrap_err();
        assert!(
            matches!(e, RegistrationError::BadCa { .. })
                && e.to_string().contains("/nonexistent/ca.pem"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = ApplianceClient::new("https://a:1", Some(&p), None).unwrap_err();
        assert!(matches!(e, RegistrationError::BadCa { .. }), "{e}");
        assert!(e.to_string().contains("found none"), "{e}");
    }

    #[test]
    fn token_files_follow_the_appliances_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "0123456789abcdef0123");
        std::fs::write(&p, "short\n").unwrap();
        let e = read_token_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("5 characters") && e.contains(&p.display().to_string()),
            "{e}"
        );
        std::fs::write(&p, "0123456789 abcdef0123\n").unwrap();
        assert!(read_token_file(&p)
            .unwrap_err()
            .to_string()
            .contains("spaces"));
        let e = read_token_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_file"), "{e}");
    }

    #[test]
    fn hosts_and_queries() {
        assert_eq!(url_host("user@host:1/x"), "host");
        assert_eq!(url_host("[::1]:8470"), "::1");
        assert_eq!(
            query_escape("iqn.1993-08.org.debian:01:ab"),
            "iqn.1993-08.org.debian:01:ab"
        );
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
