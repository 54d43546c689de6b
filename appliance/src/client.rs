//! A small typed, blocking HTTP client for the appliance API (for the
//! connector, the CLI's `--server` mode and the tests).

use crate::error::ErrorBody;
use crate::model::{
    Clone, CreateClone, Gold, Host, ImportGold, Present, Presentation, RegisterHost,
};
use serde::{de::DeserializeOwned, Serialize};
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
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client with a 10 s connect and 10 min overall timeout (full-copy
    /// clones of big images can take minutes).
    pub fn new(base_url: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build();
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
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
        let r = self.agent.get(&url).call();
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
        let r = self.agent.post(&url).send_json(body);
        self.handle(url.clone(), r)?
            .ok_or_else(|| ClientError::Transport {
                url,
                message: "expected a JSON body, got 204".to_string(),
            })
    }

    fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let r = self.agent.delete(&url).call();
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
    /// `DELETE /v1/presentations/{clone}`.
    pub fn unpresent(&self, clone: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/presentations/{clone}"))
    }
}
