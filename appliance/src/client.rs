//! A small typed, blocking HTTP client for the appliance API (for the
//! connector, the CLI's `--server` mode and the tests). It sends the API
//! token as `Authorization: Bearer …` and speaks HTTPS with a rustls
//! configuration trusting the CA the caller names.

use crate::error::ErrorBody;
use crate::model::{
    Clone, CreateClone, Gold, Host, ImportGold, Mount, MountRequest, Present, Presentation,
    PutHost, RegisterHost, Unmounted,
};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The appliance answered with an error status and body.
    #[error("appliance answered {status}: {} ({:?})", body.error, body.code)]
    Api {
        /// HTTP status.
        status: u16,
        /// The JSON error body.
        body: ErrorBody,
    },
    /// No usable HTTP exchange (connection refused, timeout, non-JSON error).
    #[error("talking to the appliance at {url}: {message}")]
    Transport {
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Client for one appliance base URL (e.g. `http://127.0.0.1:8470`).
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.auth.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

fn agent(tls: Option<Arc<rustls::ClientConfig>>) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(600));
    if let Some(cfg) = tls {
        b = b.tls_connector(Arc::new(crate::tls::UreqTls(cfg)));
    }
    b.build()
}

impl Client {
    /// A client with a 10 s connect and 10 min overall timeout (full-copy
    /// clones of big images can take minutes), without a token: only
    /// `/healthz` and `/openapi.yaml` answer it. See [`Client::with_token`].
    pub fn new(base_url: &str) -> Self {
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            agent: agent(None),
            auth: None,
        }
    }

    /// Sends `token` as `Authorization: Bearer <token>` on every request.
    pub fn with_token(mut self, token: &str) -> Self {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    /// Trusts the CA certificate(s) in the PEM file `ca` for `https://`
    /// URLs (only those: the appliance has a private CA).
    pub fn with_ca_file(mut self, ca: &Path) -> Result<Self, crate::tls::TlsError> {
        let roots = crate::tls::certs_from_file("--ca", ca)?;
        self.agent = agent(Some(crate::tls::client_config(roots, None, "--ca")?));
        Ok(self)
    }

    /// Uses a prepared rustls configuration for `https://` URLs.
    pub fn with_tls(mut self, cfg: Arc<rustls::ClientConfig>) -> Self {
        self.agent = agent(Some(cfg));
        self
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn handle<T: DeserializeOwned>(
        &self,
        url: String,
        r: Result<ureq::Response, ureq::Error>,
    ) -> Result<Option<T>, ClientError> {
        let transport = |message: String| ClientError::Transport {
            url: url.clone(),
            message,
        };
        match r {
            Ok(resp) if resp.status() == 204 => Ok(None),
            Ok(resp) => resp
                .into_json::<T>()
                .map(Some)
                .map_err(|e| transport(format!("decoding the response: {e}"))),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(body) => Err(ClientError::Api { status, body }),
                    Err(_) => Err(transport(format!("HTTP {status}: {text}"))),
                }
            }
            Err(e) => Err(transport(e.to_string())),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let r = self.request("GET", &url).call();
        self.handle(url.clone(), r)?
            .ok_or_else(|| ClientError::Transport {
                url,
                message: "expected a JSON body, got 204".to_string(),
            })
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let r = self.request("POST", &url).send_json(body);
        self.handle(url.clone(), r)?
            .ok_or_else(|| ClientError::Transport {
                url,
                message: "expected a JSON body, got 204".to_string(),
            })
    }

    fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let r = self.request("PUT", &url).send_json(body);
        self.handle(url.clone(), r)?
            .ok_or_else(|| ClientError::Transport {
                url,
                message: "expected a JSON body, got 204".to_string(),
            })
    }

    fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let r = self.request("DELETE", &url).call();
        self.handle::<serde_json::Value>(url, r).map(|_| ())
    }

    /// `POST /v1/hosts`.
    pub fn register_host(&self, req: &RegisterHost) -> Result<Host, ClientError> {
        self.post("/v1/hosts", req)
    }
    /// `GET /v1/hosts`.
    pub fn list_hosts(&self) -> Result<Vec<Host>, ClientError> {
        self.get("/v1/hosts")
    }
    /// `PUT /v1/hosts/{name}`: create or replace the host's identity.
    pub fn put_host(&self, name: &str, req: &PutHost) -> Result<Host, ClientError> {
        self.put(&format!("/v1/hosts/{name}"), req)
    }
    /// `GET /v1/hosts?iqn=…`: the host owning an initiator name (0 or 1).
    pub fn find_hosts_by_iqn(&self, iqn: &str) -> Result<Vec<Host>, ClientError> {
        self.get(&format!("/v1/hosts?iqn={}", query_escape(iqn)))
    }
    /// `GET /v1/hosts?wwpn=…`: the host owning an FC port (0 or 1).
    pub fn find_hosts_by_wwpn(&self, wwpn: &str) -> Result<Vec<Host>, ClientError> {
        self.get(&format!("/v1/hosts?wwpn={}", query_escape(wwpn)))
    }
    /// `GET /v1/hosts/{name}`.
    pub fn get_host(&self, name: &str) -> Result<Host, ClientError> {
        self.get(&format!("/v1/hosts/{name}"))
    }
    /// `POST /v1/gold-copies`.
    pub fn import_gold(&self, req: &ImportGold) -> Result<Gold, ClientError> {
        self.post("/v1/gold-copies", req)
    }
    /// `GET /v1/gold-copies`.
    pub fn list_golds(&self) -> Result<Vec<Gold>, ClientError> {
        self.get("/v1/gold-copies")
    }
    /// `GET /v1/gold-copies/{name}`.
    pub fn get_gold(&self, name: &str) -> Result<Gold, ClientError> {
        self.get(&format!("/v1/gold-copies/{name}"))
    }
    /// `POST /v1/clones`.
    pub fn create_clone(&self, req: &CreateClone) -> Result<Clone, ClientError> {
        self.post("/v1/clones", req)
    }
    /// `GET /v1/clones`.
    pub fn list_clones(&self) -> Result<Vec<Clone>, ClientError> {
        self.get("/v1/clones")
    }
    /// `GET /v1/clones/{name}`.
    pub fn get_clone(&self, name: &str) -> Result<Clone, ClientError> {
        self.get(&format!("/v1/clones/{name}"))
    }
    /// `DELETE /v1/clones/{name}`.
    pub fn delete_clone(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/clones/{name}"))
    }
    /// `POST /v1/presentations`.
    pub fn present(&self, req: &Present) -> Result<Presentation, ClientError> {
        self.post("/v1/presentations", req)
    }
    /// `GET /v1/presentations`.
    pub fn list_presentations(&self) -> Result<Vec<Presentation>, ClientError> {
        self.get("/v1/presentations")
    }
    /// `GET /v1/presentations/{clone}`.
    pub fn get_presentation(&self, clone: &str) -> Result<Presentation, ClientError> {
        self.get(&format!("/v1/presentations/{clone}"))
    }
    /// `DELETE /v1/presentations/{clone}` (refused while the host's
    /// connector reports the clone in use or cannot be asked).
    pub fn unpresent(&self, clone: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/presentations/{clone}"))
    }
    /// `DELETE /v1/presentations/{clone}?force=true`: without asking the host.
    pub fn unpresent_forced(&self, clone: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/presentations/{clone}?force=true"))
    }
    /// `POST /v1/mounts`: clone, present and have the host's connector
    /// mount it, in one call.
    pub fn mount(&self, req: &MountRequest) -> Result<Mount, ClientError> {
        self.post("/v1/mounts", req)
    }
    /// `GET /v1/mounts`.
    pub fn list_mounts(&self) -> Result<Vec<Mount>, ClientError> {
        self.get("/v1/mounts")
    }
    /// `GET /v1/mounts/{volume}`.
    pub fn get_mount(&self, volume: &str) -> Result<Mount, ClientError> {
        self.get(&format!("/v1/mounts/{volume}"))
    }
    /// `DELETE /v1/mounts/{volume}[?force=true]`: the connector unmounts,
    /// then the clone is unpresented and deleted.
    pub fn unmount(&self, volume: &str, force: bool) -> Result<Unmounted, ClientError> {
        let url = self.url(&format!("/v1/mounts/{volume}?force={force}"));
        let r = self.request("DELETE", &url).call();
        self.handle(url.clone(), r)?
            .ok_or_else(|| ClientError::Transport {
                url,
                message: "expected a JSON body, got 204".to_string(),
            })
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
