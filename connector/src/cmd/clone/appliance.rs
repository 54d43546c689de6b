//! The appliance calls `goldmount clone` / `unclone` make, over the
//! registration crate's client (the `[appliance]` URL, CA and token), each
//! answer turned into a [`CloneError`] that says what to do: the appliance
//! down names its URL, an unknown gold copy lists the ones there are.

use std::time::Duration;

use registration::{ApplianceClient, HostIdentity, RegistrationError};
use serde_json::{json, Value};

use super::CloneError;

/// A short call (lookups, clone, present, unpresent, delete).
const SHORT: Duration = Duration::from_secs(60);
/// `POST /v1/mounts` is bounded by the appliance's mount deadline (300 s
/// by default); wait a little longer than that.
const ONE_CALL: Duration = Duration::from_secs(330);

/// The appliance behind the configured client.
pub struct Appliance {
    client: ApplianceClient,
}

/// A created-or-existing answer.
pub struct Made {
    /// The object as the appliance answers it.
    pub body: Value,
    /// 201: this call created it; 200: it existed.
    pub created: bool,
}

impl Appliance {
    /// Wraps a configured client.
    pub fn new(client: ApplianceClient) -> Self {
        Self { client }
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    fn err(&self, what: &str, e: RegistrationError) -> CloneError {
        match e {
            RegistrationError::Unreachable { message, .. } => CloneError::ApplianceDown {
                url: self.url().to_string(),
                message,
            },
            RegistrationError::Refused {
                status,
                code,
                message,
                ..
            } => CloneError::Refused {
                url: self.url().to_string(),
                what: what.to_string(),
                status,
                code,
                message,
            },
            RegistrationError::Server {
                status, message, ..
            } => CloneError::Refused {
                url: self.url().to_string(),
                what: what.to_string(),
                status,
                code: None,
                message,
            },
            other => CloneError::Appliance {
                what: what.to_string(),
                source: other,
            },
        }
    }

    fn call(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), CloneError> {
        self.client
            .call(method, path, body, timeout)
            .map_err(|e| self.err(what, e))
    }

    /// `GET` that answers `None` for 404.
    fn get_opt(&self, what: &str, path: &str) -> Result<Option<Value>, CloneError> {
        match self.call(what, "GET", path, None, SHORT) {
            Ok((_, v)) => Ok(Some(v)),
            Err(CloneError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn names(&self, what: &str, path: &str, key: &str) -> Result<Vec<String>, CloneError> {
        let (_, v) = self.call(what, "GET", path, None, SHORT)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get(key).and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// This host's name on the appliance, if it knows the host: the host
    /// owning one of its IQNs or WWPNs (asked read-only).
    pub fn known_host(&self) -> Result<Option<String>, CloneError> {
        let id = HostIdentity::collect().normalized();
        for iqn in &id.iqns {
            let found = self
                .client
                .find_by_iqn(iqn)
                .map_err(|e| self.err("the host lookup", e))?;
            if let Some(h) = found.into_iter().next() {
                return Ok(Some(h.name));
            }
        }
        for wwpn in &id.wwpns {
            let found = self
                .client
                .find_by_wwpn(wwpn)
                .map_err(|e| self.err("the host lookup", e))?;
            if let Some(h) = found.into_iter().next() {
                return Ok(Some(h.name));
            }
        }
        Ok(None)
    }

    /// This host's name on the appliance ([`known_host`](Self::known_host));
    /// registered first (as `goldmount register` does, with the callback
    /// from the config when given) when the appliance does not know it.
    pub fn this_host(
        &self,
        callback_url: Option<&str>,
        callback_ca_pem: Option<&str>,
    ) -> Result<String, CloneError> {
        if let Some(h) = self.known_host()? {
            return Ok(h);
        }
        let id = HostIdentity::collect().normalized();
        match registration::register(&self.client, &id, callback_url, callback_ca_pem) {
            Ok(r) => Ok(r.host.name),
            Err(RegistrationError::Unreachable { message, .. }) => Err(CloneError::ApplianceDown {
                url: self.url().to_string(),
                message,
            }),
            Err(e) => Err(CloneError::NotRegistered {
                url: self.url().to_string(),
                why: e.to_string(),
            }),
        }
    }

    /// Fails with the list of gold copies unless `gold` is one of them.
    pub fn need_gold(&self, gold: &str) -> Result<(), CloneError> {
        if self
            .get_opt("the gold copy lookup", &format!("/v1/gold-copies/{gold}"))?
            .is_some()
        {
            return Ok(());
        }
        Err(CloneError::UnknownGold {
            url: self.url().to_string(),
            gold: gold.to_string(),
            known: self.names("the gold copy list", "/v1/gold-copies", "name")?,
        })
    }

    /// The appliance's one-call mount of `volume`, if it has one.
    pub fn mount(&self, volume: &str) -> Result<Option<Value>, CloneError> {
        self.get_opt("the mount lookup", &format!("/v1/mounts/{volume}"))
    }

    /// `POST /v1/mounts`: clone, present, and have this host's goldmountd
    /// mount it.
    pub fn post_mount(&self, body: &Value) -> Result<Made, CloneError> {
        let (status, body) = self.call(
            "the one-call mount (POST /v1/mounts)",
            "POST",
            "/v1/mounts",
            Some(body),
            ONE_CALL,
        )?;
        Ok(Made {
            body,
            created: status == 201,
        })
    }

    /// `DELETE /v1/mounts/{volume}`: goldmountd unmounts, the appliance
    /// unpresents and deletes the clone.
    pub fn delete_mount(&self, volume: &str, force: bool) -> Result<Value, CloneError> {
        let (_, v) = self.call(
            "the unmount (DELETE /v1/mounts)",
            "DELETE",
            &format!("/v1/mounts/{volume}?force={force}"),
            None,
            ONE_CALL,
        )?;
        Ok(v)
    }

    /// A clone name for `volume`: its own when free, else `<volume>-N`
    /// (the appliance's one-call rule), free of clones and mounts.
    pub fn free_clone_name(&self, volume: &str) -> Result<String, CloneError> {
        let mut taken = self.names("the clone list", "/v1/clones", "name")?;
        taken.extend(self.names("the mount list", "/v1/mounts", "clone")?);
        if !taken.iter().any(|n| n == volume) {
            return Ok(volume.to_string());
        }
        (2..1000)
            .map(|i| format!("{volume}-{i}"))
            .find(|n| n.len() <= 64 && !taken.contains(n))
            .ok_or_else(|| CloneError::Conflict {
                message: format!(
                    "no free clone name for volume {volume} on the appliance at {} ({volume} and {volume}-2..999 are taken)",
                    self.url()
                ),
                hint: "use another volume name".into(),
            })
    }

    /// `POST /v1/clones`, in the profile's clone `class` when it names one
    /// (none: the appliance's default).
    pub fn create_clone(
        &self,
        name: &str,
        gold: &str,
        class: Option<&str>,
    ) -> Result<Made, CloneError> {
        let mut body = json!({"name": name, "gold": gold});
        if let Some(c) = class {
            body["class"] = json!(c);
        }
        let (status, body) = self.call(
            &format!("creating clone {name}"),
            "POST",
            "/v1/clones",
            Some(&body),
            SHORT,
        )?;
        Ok(Made {
            body,
            created: status == 201,
        })
    }

    /// `POST /v1/presentations`: the presentation document.
    pub fn present(&self, clone: &str, host: &str) -> Result<Value, CloneError> {
        let (_, body) = self.call(
            &format!("presenting clone {clone} to host {host}"),
            "POST",
            "/v1/presentations",
            Some(&json!({"clone": clone, "host": host})),
            SHORT,
        )?;
        Ok(body)
    }

    /// `DELETE /v1/presentations/{clone}?force=true`: the caller has
    /// checked itself that no volume on this host uses the clone (what the
    /// appliance would ask goldmountd). Gone already: `Ok(false)`.
    pub fn unpresent(&self, clone: &str) -> Result<bool, CloneError> {
        match self.call(
            &format!("unpresenting clone {clone}"),
            "DELETE",
            &format!("/v1/presentations/{clone}?force=true"),
            None,
            SHORT,
        ) {
            Ok(_) => Ok(true),
            Err(CloneError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /v1/clones/{clone}`. Gone already: `Ok(false)`.
    pub fn delete_clone(&self, clone: &str) -> Result<bool, CloneError> {
        match self.call(
            &format!("deleting clone {clone}"),
            "DELETE",
            &format!("/v1/clones/{clone}"),
            None,
            SHORT,
        ) {
            Ok(_) => Ok(true),
            Err(CloneError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
