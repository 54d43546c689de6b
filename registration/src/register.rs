//! One registration: find this host on the appliance, then create it,
//! update it, or leave it alone. Identity decides which appliance host is
//! "this host" (an IQN or WWPN has one owner there); the hostname is only
//! the fallback and the name of a new host. Running it again with the same
//! identity writes nothing.

use serde::Serialize;

use crate::client::{ApplianceClient, PutBody, RegisteredHost};
use crate::error::RegistrationError;
use crate::identity::HostIdentity;

/// A part of the host's record that a registration changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The initiator IQNs (a new initiator name).
    Iqns,
    /// The FC WWPNs (a port came online or went away).
    Wwpns,
    /// The connector's callback URL.
    CallbackUrl,
    /// The CA of the connector's server certificate.
    CallbackCaPem,
}

/// What a registration did on the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The appliance did not know this host; it does now.
    Created,
    /// It knew the host with other ports or another callback.
    Updated {
        /// What differed.
        fields: Vec<Field>,
    },
    /// It already knew exactly this; nothing was written.
    Unchanged,
}

/// The outcome of [`register`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The appliance's base URL.
    pub appliance: String,
    /// What the appliance now knows about this host.
    pub host: RegisteredHost,
    /// What this call changed.
    #[serde(flatten)]
    pub change: Change,
}

/// Registers `identity` with the appliance behind `client`.
///
/// This host is the appliance host owning one of its IQNs (tried first) or
/// WWPNs, else the host named like its hostname, else new. The desired
/// record is the identity's IQNs and WWPNs exactly (an initiator that is
/// gone is dropped, so its ACL goes too), and `callback_url` /
/// `callback_ca_pem` when given — `None` keeps what the appliance has, so a
/// registration without them never erases the daemon's callback. The
/// record is written (`PUT`) only when it differs.
pub fn register(
    client: &ApplianceClient,
    identity: &HostIdentity,
    callback_url: Option<&str>,
    callback_ca_pem: Option<&str>,
) -> Result<Registration, RegistrationError> {
    let identity = identity.clone().normalized();
    if identity.iqns.is_empty() && identity.wwpns.is_empty() {
        return Err(RegistrationError::NoInitiator);
    }
    let existing = find(client, &identity)?;
    let name = match &existing {
        Some(h) => h.name.clone(),
        None => {
            if !valid_name(&identity.hostname) {
                return Err(RegistrationError::BadHostName {
                    found: identity.hostname.clone(),
                });
            }
            identity.hostname.clone()
        }
    };
    let want_url = callback_url.or(existing.as_ref().and_then(|h| h.callback_url.as_deref()));
    let want_ca = callback_ca_pem.or(existing.as_ref().and_then(|h| h.callback_ca_pem.as_deref()));
    let fields = match &existing {
        Some(h) => {
            let mut f = Vec::new();
            if sorted(&h.iqns) != identity.iqns {
                f.push(Field::Iqns);
            }
            if sorted(&h.wwpns) != identity.wwpns {
                f.push(Field::Wwpns);
            }
            if h.callback_url.as_deref() != want_url {
                f.push(Field::CallbackUrl);
            }
            if h.callback_ca_pem.as_deref() != want_ca {
                f.push(Field::CallbackCaPem);
            }
            if f.is_empty() {
                return Ok(Registration {
                    appliance: client.url().to_string(),
                    host: h.clone(),
                    change: Change::Unchanged,
                });
            }
            f
        }
        None => Vec::new(),
    };
    let body = PutBody {
        iqns: &identity.iqns,
        wwpns: &identity.wwpns,
        callback_url: want_url,
        callback_ca_pem: want_ca,
    };
    let (host, created) = client.put_host(&name, &body)?;
    let change = if created {
        Change::Created
    } else if existing.is_none() {
        // Created by someone else between our lookup and the PUT.
        Change::Updated {
            fields: vec![
                Field::Iqns,
                Field::Wwpns,
                Field::CallbackUrl,
                Field::CallbackCaPem,
            ],
        }
    } else {
        Change::Updated { fields }
    };
    Ok(Registration {
        appliance: client.url().to_string(),
        host,
        change,
    })
}

/// The appliance host this identity belongs to: by IQN, by WWPN, then by
/// hostname. Ports owned by two different hosts are an error to resolve
/// on the appliance, not something to guess about.
fn find(
    client: &ApplianceClient,
    id: &HostIdentity,
) -> Result<Option<RegisteredHost>, RegistrationError> {
    let mut owners: Vec<(String, RegisteredHost)> = Vec::new();
    for iqn in &id.iqns {
        for h in client.find_by_iqn(iqn)? {
            owners.push((format!("initiator {iqn} → {}", h.name), h));
        }
    }
    for wwpn in &id.wwpns {
        for h in client.find_by_wwpn(wwpn)? {
            owners.push((format!("WWPN {wwpn} → {}", h.name), h));
        }
    }
    let mut names: Vec<String> = owners.iter().map(|(_, h)| h.name.clone()).collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 if valid_name(&id.hostname) => client.host(&id.hostname),
        0 => Ok(None),
        1 => Ok(owners.into_iter().next().map(|(_, h)| h)),
        _ => Err(RegistrationError::Split {
            hosts: names,
            details: owners
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The appliance's host-name rule: 1-64 of `[A-Za-z0-9_.-]`, not `.`/`..`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
