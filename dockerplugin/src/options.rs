//! What `docker volume create -d goldmount -o … NAME[@profile]` asks for,
//! checked completely before anything is created: the name, each option
//! (an unknown key is an error, never ignored), the profile.

use std::collections::BTreeMap;

use crate::error::{PluginError, Result};
use crate::profile::{Profile, Profiles};

/// The options the driver takes, as shown in errors.
pub const KNOWN_OPTIONS: &str =
    "source=<gold>, read_only=true|false, point_in_time=<id>, profile=<name>";

/// The longest base name (it becomes part of the engine's volume name and
/// of the appliance's clone name, both at most 64 characters).
pub const MAX_BASE: usize = 40;

/// A Docker volume name split into the goldmount volume and the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef {
    /// The name before `@`: the volume (its mount path, its clone).
    pub base: String,
    /// The profile after `@`, if any.
    pub profile: Option<String>,
}

/// Splits and checks `NAME` or `NAME@profile`.
pub fn parse_name(docker_name: &str) -> Result<VolumeRef> {
    let bad = |why: String| PluginError::BadName {
        name: docker_name.to_string(),
        why,
    };
    if docker_name.is_empty() {
        // dockerd 20.10 repeats a request whose plugin died mid-way against
        // the restarted plugin with an empty body: say so, not "bad name".
        return Err(bad(
            "Docker sent no volume name; if goldmountd just restarted, Docker retried an interrupted \
             request without its body: run the docker command again"
                .to_string(),
        ));
    }
    let (base, profile) = match docker_name.split_once('@') {
        Some((b, p)) => (b, Some(p)),
        None => (docker_name, None),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
    };
    if !ok(base) || base.len() > MAX_BASE {
        return Err(bad(format!(
            "expected NAME or NAME@profile with NAME of 1-{MAX_BASE} characters from [A-Za-z0-9_.-] starting with a letter or digit"
        )));
    }
    if let Some(p) = profile {
        if !ok(p) || p.len() > 64 {
            return Err(bad(
                "the profile after @ must be 1-64 characters from [A-Za-z0-9_.-]".into(),
            ));
        }
    }
    Ok(VolumeRef {
        base: base.to_string(),
        profile: profile.map(str::to_string),
    })
}

/// A checked create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    /// Name and profile as parsed.
    pub name: VolumeRef,
    /// The resolved profile.
    pub profile: Profile,
    /// The gold copy (`-o source=`), if given (the driver refuses none,
    /// listing the gold copies there are).
    pub source: Option<String>,
    /// Read-only: `-o read_only=` when given (it wins, both ways), else
    /// the profile's `read_only`.
    pub read_only: bool,
    /// `-o point_in_time=`: the gold's point in time the clone must have.
    pub point_in_time: Option<String>,
}

fn parse_bool(key: &'static str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(PluginError::BadValue {
            key,
            value: v.to_string(),
            expected: "true or false",
        }),
    }
}

/// Checks the name and every option (`Opts` is `null` without `-o`).
pub fn parse_create(
    docker_name: &str,
    opts: Option<&BTreeMap<String, String>>,
    profiles: &Profiles,
) -> Result<CreateSpec> {
    let name = parse_name(docker_name)?;
    let mut source = None;
    let mut read_only: Option<bool> = None;
    let mut point_in_time = None;
    let mut profile_opt: Option<String> = None;
    for (k, v) in opts.into_iter().flatten() {
        match k.as_str() {
            "source" => {
                if v.trim().is_empty() {
                    return Err(PluginError::BadValue {
                        key: "source",
                        value: v.clone(),
                        expected: "the name of a gold copy on the appliance",
                    });
                }
                source = Some(v.trim().to_string());
            }
            "read_only" | "readonly" | "ro" => read_only = Some(parse_bool("read_only", v)?),
            "point_in_time" => point_in_time = Some(v.clone()),
            "profile" => profile_opt = Some(v.clone()),
            _ => {
                return Err(PluginError::UnknownOption {
                    key: k.clone(),
                    known: KNOWN_OPTIONS,
                })
            }
        }
    }
    let wanted = match (&name.profile, &profile_opt) {
        (Some(a), Some(b)) if a != b => {
            return Err(PluginError::BadName {
                name: docker_name.to_string(),
                why: format!("it names profile {a:?} but -o profile={b}; give one of them"),
            })
        }
        (Some(a), _) => Some(a.as_str()),
        (None, b) => b.as_deref(),
    };
    let profile = profiles.resolve(wanted)?;
    let read_only = profile.settings.read_only(read_only);
    Ok(CreateSpec {
        name,
        profile,
        source,
        read_only,
        point_in_time,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_profiles() {
        let p = Profiles::default();
        let s = parse_create("pg1", Some(&opts(&[("source", "pg-gold")])), &p).unwrap();
        assert_eq!(s.name.base, "pg1");
        assert_eq!(s.profile.name, "default");
        assert_eq!(s.source.as_deref(), Some("pg-gold"));
        assert!(!s.read_only);
        let s = parse_create(
            "pg1@default",
            Some(&opts(&[("source", "g"), ("read_only", "true")])),
            &p,
        )
        .unwrap();
        assert_eq!(s.name.profile.as_deref(), Some("default"));
        assert!(s.read_only);
        let e = parse_create("pg1@fast", None, &p).unwrap_err().to_string();
        assert!(
            e.contains("unknown profile \"fast\"") && e.contains("default"),
            "{e}"
        );
        let e = parse_create("pg1", Some(&opts(&[("profile", "x")])), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown profile"), "{e}");
        let e = parse_create("pg1@default", Some(&opts(&[("profile", "x")])), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("give one of them"), "{e}");
        for bad in ["", "@default", "-x", "a/b", "a@", "a@b@c", &"x".repeat(41)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
        let e = parse_name("").unwrap_err().to_string();
        assert!(e.contains("run the docker command again"), "{e}");
        assert!(parse_create("pg1", None, &p).unwrap().source.is_none());
    }

    #[test]
    fn the_profile_decides_read_only_unless_the_request_says() {
        use crate::profile::ProfileSettings;
        let gold = ProfileSettings {
            class: Some("gold".into()),
            read_only: true,
            ..Default::default()
        };
        let p = Profiles::open(
            std::collections::BTreeMap::from([("gold".to_string(), gold.clone())]),
            None,
        )
        .unwrap();
        let ro = |name: &str, kv: &[(&str, &str)]| {
            let s = parse_create(name, Some(&opts(kv)), &p).unwrap();
            (s.profile.name, s.read_only)
        };
        assert_eq!(ro("v@gold", &[]), ("gold".into(), true));
        assert_eq!(ro("v", &[("profile", "gold")]), ("gold".into(), true));
        assert_eq!(
            ro("v@gold", &[("read_only", "false")]),
            ("gold".into(), false)
        );
        assert_eq!(ro("v", &[]), ("default".into(), false));
        assert_eq!(ro("v@default", &[("ro", "yes")]), ("default".into(), true));
        let s = parse_create("v@gold", None, &p).unwrap();
        assert_eq!(s.profile.settings, gold);
        let e = parse_create("v@silver", None, &p).unwrap_err().to_string();
        assert!(e.contains("known profiles are default, gold"), "{e}");
    }

    #[test]
    fn unknown_options_and_bad_values_are_refused() {
        let p = Profiles::default();
        let e = parse_create("v", Some(&opts(&[("source", "g"), ("size", "1G")])), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown option -o size") && e.contains("source=<gold>"),
            "{e}"
        );
        let e = parse_create("v", Some(&opts(&[("read_only", "maybe")])), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("true or false"), "{e}");
        let e = parse_create("v", Some(&opts(&[("source", " ")])), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gold copy"), "{e}");
    }
}
