//! The appliance calls a Docker volume needs: is there such a gold copy,
//! clone it and present the clone to this host, and take both away again.
//! Blocking (the appliance's own client); called on blocking threads only.

use std::sync::Arc;

use appliance::client::{Client, ClientError};
use appliance::model::{CreateClone, Present};
use appliance::ErrorCode;

use crate::config::ApplianceAccess;
use crate::error::{PluginError, Result};

/// Tells this host's name on the appliance (registration's answer), or
/// `None` while it is not known yet.
pub type HostName = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The appliance, as the plugin uses it.
#[derive(Clone)]
pub struct ApplianceLink {
    access: ApplianceAccess,
    host: HostName,
}

/// What the appliance said, in one line.
fn said(e: &ClientError) -> String {
    match e {
        ClientError::Api { status, body } => format!("{} (HTTP {status})", body.error),
        ClientError::Transport { url, message } => format!("cannot reach {url}: {message}"),
    }
}

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { body, .. } if body.code == ErrorCode::NotFound)
}

impl ApplianceLink {
    /// The appliance `access` names, with this host's name from `host`.
    pub fn new(access: ApplianceAccess, host: HostName) -> Self {
        Self { access, host }
    }

    /// A client with the current token (re-read at every use).
    fn client(&self) -> Result<Client> {
        let mut c = Client::new(&self.access.url);
        if let Some(f) = &self.access.token_file {
            let t = std::fs::read_to_string(f).map_err(|e| {
                PluginError::Setup(format!(
                    "cannot read the API token file {} ({e}); check [appliance] token_file",
                    f.display()
                ))
            })?;
            c = c.with_token(t.trim());
        }
        if let Some(ca) = &self.access.ca {
            c = c.with_ca_file(ca).map_err(|e| {
                PluginError::Setup(format!("{e}; check [appliance] ca ({})", ca.display()))
            })?;
        }
        Ok(c)
    }

    /// This host's name on the appliance.
    pub fn host(&self) -> Result<String> {
        (self.host)().ok_or_else(|| {
            PluginError::Setup(
                "this host's name on the appliance is not known yet (goldmountd has not registered: see GET /healthz, registration); set [docker] host to skip the wait".into(),
            )
        })
    }

    /// The names of the appliance's gold copies.
    pub fn gold_names(&self, volume: &str) -> Result<Vec<String>> {
        let golds = self
            .client()?
            .list_golds()
            .map_err(|e| PluginError::Appliance {
                name: volume.to_string(),
                action: "listing of gold copies".into(),
                message: said(&e),
            })?;
        Ok(golds.into_iter().map(|g| g.name).collect())
    }

    /// Fails with the list of gold copies unless `gold` exists.
    pub fn check_gold(&self, volume: &str, gold: &str) -> Result<()> {
        match self.client()?.get_gold(gold) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(PluginError::UnknownGold {
                gold: gold.to_string(),
                known: self.gold_names(volume)?,
            }),
            Err(e) => Err(PluginError::Appliance {
                name: volume.to_string(),
                action: format!("lookup of gold copy {gold}"),
                message: said(&e),
            }),
        }
    }

    /// True when the appliance has a clone named `clone`.
    pub fn clone_exists(&self, volume: &str, clone: &str) -> Result<bool> {
        match self.client()?.get_clone(clone) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(PluginError::Appliance {
                name: volume.to_string(),
                action: format!("lookup of clone {clone}"),
                message: said(&e),
            }),
        }
    }

    /// Clones `gold` as `clone` in the appliance's clone `class` (the
    /// profile's; none: the appliance's default), the same request again
    /// being no change.
    pub fn create_clone(
        &self,
        volume: &str,
        clone: &str,
        gold: &str,
        point_in_time: Option<&str>,
        class: Option<&str>,
    ) -> Result<()> {
        self.client()?
            .create_clone(&CreateClone {
                name: clone.to_string(),
                gold: gold.to_string(),
                point_in_time: point_in_time.map(str::to_string),
                class: class.map(str::to_string),
            })
            .map(|_| ())
            .map_err(|e| PluginError::Appliance {
                name: volume.to_string(),
                action: format!("clone of gold copy {gold}"),
                message: said(&e),
            })
    }

    /// Presents `clone` to `host`; the presentation document (an existing
    /// presentation to the same host is returned as it is).
    pub fn present(&self, volume: &str, clone: &str, host: &str) -> Result<serde_json::Value> {
        let c = self.client()?;
        let p = match c.get_presentation(clone) {
            Ok(p) if p.host == host => p,
            Ok(p) => {
                return Err(PluginError::Conflict {
                    name: volume.to_string(),
                    message: format!(
                        "its clone {clone} is presented to host {} on the appliance, not to this host ({host})",
                        p.host
                    ),
                })
            }
            Err(e) if not_found(&e) => c
                .present(&Present {
                    clone: clone.to_string(),
                    host: host.to_string(),
                })
                .map_err(|e| PluginError::Appliance {
                    name: volume.to_string(),
                    action: format!("presentation of clone {clone} to host {host}"),
                    message: said(&e),
                })?,
            Err(e) => {
                return Err(PluginError::Appliance {
                    name: volume.to_string(),
                    action: format!("lookup of the presentation of clone {clone}"),
                    message: said(&e),
                })
            }
        };
        serde_json::to_value(&p).map_err(|e| PluginError::Internal(e.to_string()))
    }

    /// Takes the presentation of `clone` away (none: no change). Forced:
    /// the caller is this host's connector and has just checked that no
    /// volume of its engine uses the clone — the question the appliance
    /// would otherwise call back to ask.
    pub fn unpresent(&self, volume: &str, clone: &str) -> Result<()> {
        match self.client()?.unpresent_forced(clone) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(PluginError::Appliance {
                name: volume.to_string(),
                action: format!("unpresentation of clone {clone}"),
                message: said(&e),
            }),
        }
    }

    /// Deletes `clone` (none: no change).
    pub fn delete_clone(&self, volume: &str, clone: &str) -> Result<()> {
        match self.client()?.delete_clone(clone) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(PluginError::Appliance {
                name: volume.to_string(),
                action: format!("deletion of clone {clone}"),
                message: said(&e),
            }),
        }
    }
}
