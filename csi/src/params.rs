//! A StorageClass's `parameters` and the volume ids the controller makes.
//!
//! Parameters: `gold` (the gold copy to clone; or a snapshot `dataSource`
//! naming it), `pointInTime` (the gold's point-in-time label the clone
//! must be taken at), `profile` (the appliance's clone class) and
//! `readOnly` (`"true"`: every node mounts the tree read-only). Keys the
//! external-provisioner adds (`csi.storage.k8s.io/…`) are ignored; any
//! other key is refused, so a typo in a StorageClass fails loudly instead
//! of giving a clone of the wrong kind.

use std::collections::HashMap;

use crate::status::RequestError;

/// The gold copy to clone.
pub const GOLD: &str = "gold";
/// The gold's point-in-time label the clone must be taken at.
pub const POINT_IN_TIME: &str = "pointInTime";
/// The appliance's clone class.
pub const PROFILE: &str = "profile";
/// Mount the tree read-only on every node.
pub const READ_ONLY: &str = "readOnly";
/// The prefix of the keys the external-provisioner adds.
const K8S_PREFIX: &str = "csi.storage.k8s.io/";

/// The prefix of every volume (clone) the driver makes: the controller
/// lists and deletes only clones with it, never one made by the Docker
/// plugin, the control API or a person.
pub const VOLUME_PREFIX: &str = "csi-";

/// What a CreateVolume asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    /// `gold`.
    pub gold: Option<String>,
    /// `pointInTime`.
    pub point_in_time: Option<String>,
    /// `profile`.
    pub profile: Option<String>,
    /// `readOnly`.
    pub read_only: bool,
}

impl Parameters {
    /// Reads `parameters`; unknown keys and unreadable values are refused.
    pub fn parse(parameters: &HashMap<String, String>) -> Result<Self, RequestError> {
        let mut p = Parameters::default();
        let mut keys: Vec<&String> = parameters.keys().collect();
        keys.sort();
        for k in keys {
            let v = parameters.get(k).map(String::as_str).unwrap_or_default();
            let non_empty = |field: &'static str| {
                if v.is_empty() {
                    Err(RequestError::Invalid {
                        field,
                        why: "expected a value, found an empty string".into(),
                    })
                } else {
                    Ok(Some(v.to_string()))
                }
            };
            match k.as_str() {
                GOLD => p.gold = non_empty("parameters.gold")?,
                POINT_IN_TIME => p.point_in_time = non_empty("parameters.pointInTime")?,
                PROFILE => p.profile = non_empty("parameters.profile")?,
                READ_ONLY => p.read_only = parse_bool("parameters.readOnly", v)?,
                other if other.starts_with(K8S_PREFIX) => {}
                other => {
                    return Err(RequestError::Invalid {
                        field: "parameters",
                        why: format!(
                            "unknown key {other:?}: expected {GOLD}, {POINT_IN_TIME}, {PROFILE} or {READ_ONLY}"
                        ),
                    })
                }
            }
        }
        Ok(p)
    }
}

/// `"true"`/`"false"` (any case); anything else is refused.
pub fn parse_bool(field: &'static str, v: &str) -> Result<bool, RequestError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(RequestError::Invalid {
            field,
            why: format!("expected \"true\" or \"false\", found {v:?}"),
        }),
    }
}

/// Whether a volume context says the tree is read-only (absent: no).
pub fn context_read_only(ctx: &HashMap<String, String>) -> Result<bool, RequestError> {
    match ctx.get(READ_ONLY) {
        None => Ok(false),
        Some(v) => parse_bool("volume_context.readOnly", v),
    }
}

/// The volume id (and appliance clone name) for a CreateVolume `name`:
/// `csi-<name>` when that is a valid name (`[A-Za-z0-9_.-]`, at most 64
/// characters: Kubernetes' `pvc-<uuid>` always is), else `csi-` and a
/// 64-bit FNV-1a hash of the name, so the same name always gives the same
/// volume.
pub fn volume_id_for(name: &str) -> String {
    let plain = format!("{VOLUME_PREFIX}{name}");
    let valid = plain.len() <= 64
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        return plain;
    }
    format!("{VOLUME_PREFIX}h{:016x}", fnv1a64(name.as_bytes()))
}

/// 64-bit FNV-1a: a stable short id for a name or path (volume ids,
/// publication consumer ids), the same across restarts and builds.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// True for an id this driver could have made.
pub fn is_driver_volume(id: &str) -> bool {
    id.starts_with(VOLUME_PREFIX) && id.len() > VOLUME_PREFIX.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_read_and_typos_refused() {
        let p = Parameters::parse(&map(&[
            ("gold", "pg-gold"),
            ("pointInTime", "2026-11-30"),
            ("profile", "fast"),
            ("readOnly", "True"),
            ("csi.storage.k8s.io/pvc/name", "data-pg-0"),
        ]))
        .unwrap();
        assert_eq!(
            p,
            Parameters {
                gold: Some("pg-gold".into()),
                point_in_time: Some("2026-11-30".into()),
                profile: Some("fast".into()),
                read_only: true
            }
        );
        assert!(Parameters::parse(&map(&[("glod", "pg-gold")])).is_err());
        assert!(Parameters::parse(&map(&[("readOnly", "yes")])).is_err());
        assert!(Parameters::parse(&map(&[("gold", "")])).is_err());
        assert_eq!(Parameters::parse(&map(&[])).unwrap(), Parameters::default());
    }

    #[test]
    fn volume_ids_are_stable_valid_names() {
        assert_eq!(
            volume_id_for("pvc-0b3e1f4c-8a2d-4c1e-9f00-123456789abc"),
            "csi-pvc-0b3e1f4c-8a2d-4c1e-9f00-123456789abc"
        );
        let odd = volume_id_for("a name with spaces/and slashes");
        assert_eq!(odd, volume_id_for("a name with spaces/and slashes"));
        assert!(odd.starts_with("csi-h") && odd.len() == 4 + 1 + 16, "{odd}");
        assert_ne!(odd, volume_id_for("a name with spaces/and slashes!"));
        let long = "x".repeat(61);
        assert!(volume_id_for(&long).starts_with("csi-h"));
        assert_eq!(volume_id_for(&"x".repeat(60)).len(), 64);
        assert!(is_driver_volume("csi-pvc-1"));
        assert!(!is_driver_volume("csi-"));
        assert!(!is_driver_volume("pg1"));
    }
}
