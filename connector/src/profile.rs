//! Storage profiles: a name (`NAME@profile`, `-o profile=`, the control
//! API's `/v1/profiles/{name}`) standing for settings, so an application
//! asks for `gold` and never sees knobs.
//!
//! One home for the types goldmountd's config (`[profiles.NAME]`), its
//! control API, the Docker plugin and `goldmount clone GOLD@profile` share
//! (here in the connector so the CLI needs no Docker code). The profiles in effect are, by
//! name, the last of: the built-in empty `default`; the config file's
//! `[profiles.NAME]` (the base); what `PUT /v1/profiles/{name}` stored at
//! run time, persisted in `<state dir>/profiles.json` beside the engine's
//! state so a restart keeps it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::engine::MountOptions;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// The file runtime profiles are kept in, in the engine's state directory.
pub const STATE_FILE: &str = "profiles.json";

/// The longest profile name.
pub const MAX_NAME: usize = 64;

/// The longest appliance clone class (the appliance's limit).
pub const MAX_CLASS: usize = 32;

/// What a profile sets: `[profiles.NAME]` in goldmountd's config and the
/// body of `PUT /v1/profiles/{name}`. Every key is optional (false / none);
/// an unknown key is an error, so a typo never silently changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSettings {
    /// The appliance's clone class (pool / service level) clones of this
    /// profile are made in; none: the appliance's default.
    pub class: Option<String>,
    /// Mount read-only (without journal replay) unless the request says
    /// otherwise (`-o read_only=`).
    pub read_only: bool,
    /// Give each XFS of the clone a new UUID (the engine's `regen_xfs_uuid`;
    /// changes the clone's data: opt-in).
    pub xfs_new_uuid: bool,
    /// Give each imported ZFS pool a new GUID (the engine's `zfs_reguid`).
    pub zfs_reguid: bool,
    /// Give a btrfs whose fsid is already mounted a new one (the engine's
    /// `btrfs_new_fsid`).
    pub btrfs_new_fsid: bool,
    /// Let setuid binaries and device nodes of the clone take effect (the
    /// engine's `allow_suid_dev`): only for clones trusted like the host.
    pub allow_suid_dev: bool,
}

/// A profile was asked for by a name that is not in effect; nothing was
/// made for it. Each front door wraps it in its own error (the Docker
/// plugin's `UnknownProfile`, the CLI's, the control API's 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {name:?}: known profiles are {}", known.join(", "))]
pub struct UnknownProfile {
    /// The profile asked for.
    pub name: String,
    /// The profiles in effect, sorted.
    pub known: Vec<String>,
}

/// A profile name or settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Not a profile name.
    #[error("{name:?} is not a profile name: expected 1-{MAX_NAME} characters from [A-Za-z0-9_.-] starting with a letter or digit")]
    BadName {
        /// The name given.
        name: String,
    },
    /// A setting is out of range.
    #[error("profile {name:?}: {message}")]
    BadSettings {
        /// The profile.
        name: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// `DELETE` of a profile that is not in effect at all.
    #[error(transparent)]
    Unknown(#[from] UnknownProfile),
    /// `DELETE` of a profile no PUT stored: it comes from the config file
    /// or is the built-in `default`, which only the config can change.
    #[error("profile {name:?} {}: a DELETE removes only what PUT /v1/profiles/{name} stored", match origin { Origin::BuiltIn => "is the built-in default", _ => "comes from the config file's [profiles] section" })]
    NotStored {
        /// The profile.
        name: String,
        /// Where its settings come from.
        origin: Origin,
    },
    /// The config file's `[profiles]` section is not a table of profiles.
    #[error("the config's [profiles] section: {message}")]
    Config {
        /// What the TOML parser said (with the key and line).
        message: String,
    },
    /// The runtime profile file cannot be read or written.
    #[error("runtime profiles file {}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What failed and what to do.
        message: String,
    },
}

fn short_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a profile name (the same alphabet as `NAME@profile` allows).
pub fn check_name(name: &str) -> std::result::Result<(), ProfileError> {
    if short_name(name, MAX_NAME) {
        Ok(())
    } else {
        Err(ProfileError::BadName {
            name: name.to_string(),
        })
    }
}

impl ProfileSettings {
    /// Checks the settings of profile `name` (the class must be one the
    /// appliance accepts, so a bad one fails at start or at PUT, not at
    /// the first `docker volume create`).
    pub fn check(&self, name: &str) -> std::result::Result<(), ProfileError> {
        if let Some(c) = &self.class {
            if !short_name(c, MAX_CLASS) {
                return Err(ProfileError::BadSettings {
                    name: name.to_string(),
                    message: format!(
                        "class {c:?} is not a clone class: expected 1-{MAX_CLASS} characters from [A-Za-z0-9_.-] starting with a letter or digit"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The engine's mount options for a volume of this profile, mounted
    /// read-only or not as decided by [`read_only`](Self::read_only) and
    /// the request.
    pub fn mount_options(&self, read_only: bool) -> MountOptions {
        MountOptions {
            read_only,
            regen_xfs_uuid: self.xfs_new_uuid,
            zfs_reguid: self.zfs_reguid,
            btrfs_new_fsid: self.btrfs_new_fsid,
            allow_suid_dev: self.allow_suid_dev,
        }
    }

    /// Read-only or not: the request's `-o read_only=` when given (it
    /// wins, both ways), else the profile's.
    pub fn read_only(&self, requested: Option<bool>) -> bool {
        requested.unwrap_or(self.read_only)
    }
}

/// Where a profile in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The built-in empty `default` (no `[profiles.default]`, no PUT).
    BuiltIn,
    /// The config file's `[profiles.NAME]`.
    Config,
    /// `PUT /v1/profiles/{name}` (kept in the runtime profiles file).
    Api,
}

/// One profile in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// Where its settings come from.
    pub origin: Origin,
    /// Its settings.
    pub settings: ProfileSettings,
}

impl Profile {
    /// The engine's mount options for a volume of this profile.
    pub fn mount_options(&self, read_only: bool) -> MountOptions {
        self.settings.mount_options(read_only)
    }
}

/// The runtime profiles file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    /// Format version (1).
    version: u32,
    /// Profiles stored by PUT, by name.
    profiles: BTreeMap<String, ProfileSettings>,
}

/// The profiles in effect: the config's, with the runtime ones over them.
/// Shared (behind an `Arc`) by the control API and the Docker plugin, so a
/// PUT applies to the next `docker volume create` at once.
#[derive(Debug, Default)]
pub struct Profiles {
    base: BTreeMap<String, ProfileSettings>,
    state: Option<PathBuf>,
    runtime: RwLock<BTreeMap<String, ProfileSettings>>,
}

impl Profiles {
    /// The config's profiles `base` (checked), with the runtime profiles of
    /// `state` (none: PUT keeps them in memory only) over them. A missing
    /// file is no runtime profile; an unreadable one is an error, never
    /// silently dropped.
    pub fn open(
        base: BTreeMap<String, ProfileSettings>,
        state: Option<&Path>,
    ) -> std::result::Result<Self, ProfileError> {
        for (n, s) in &base {
            check_name(n)?;
            s.check(n)?;
        }
        let runtime = match state {
            Some(p) => read_state(p)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            base,
            state: state.map(Path::to_path_buf),
            runtime: RwLock::new(runtime),
        })
    }

    /// The runtime profiles file, if PUTs are persisted.
    pub fn state_path(&self) -> Option<&Path> {
        self.state.as_deref()
    }

    /// Every profile in effect, by name (`default` always among them).
    pub fn list(&self) -> Vec<Profile> {
        let runtime = self.runtime.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: BTreeMap<&str, Profile> = BTreeMap::new();
        out.insert(
            DEFAULT_PROFILE,
            Profile {
                name: DEFAULT_PROFILE.into(),
                origin: Origin::BuiltIn,
                settings: ProfileSettings::default(),
            },
        );
        for (origin, map) in [(Origin::Config, &self.base), (Origin::Api, &*runtime)] {
            for (n, s) in map {
                out.insert(
                    n,
                    Profile {
                        name: n.clone(),
                        origin,
                        settings: s.clone(),
                    },
                );
            }
        }
        out.into_values().collect()
    }

    /// The names of the profiles in effect, sorted.
    pub fn known(&self) -> Vec<String> {
        self.list().into_iter().map(|p| p.name).collect()
    }

    /// The profile `name`, if it is in effect.
    pub fn get(&self, name: &str) -> Option<Profile> {
        self.list().into_iter().find(|p| p.name == name)
    }

    /// The profile `name` (`default` when none is given), or an error
    /// listing the known ones.
    pub fn resolve(&self, name: Option<&str>) -> std::result::Result<Profile, UnknownProfile> {
        let name = name.unwrap_or(DEFAULT_PROFILE);
        self.get(name).ok_or_else(|| UnknownProfile {
            name: name.to_string(),
            known: self.known(),
        })
    }

    /// Replaces (or adds) profile `name` with `settings` at run time, the
    /// runtime file written (atomically, durably) before it takes effect.
    /// True when no profile of that name was in effect before.
    pub fn put(
        &self,
        name: &str,
        settings: ProfileSettings,
    ) -> std::result::Result<(Profile, bool), ProfileError> {
        check_name(name)?;
        settings.check(name)?;
        let mut runtime = self.runtime.write().unwrap_or_else(PoisonError::into_inner);
        let created =
            name != DEFAULT_PROFILE && !self.base.contains_key(name) && !runtime.contains_key(name);
        let mut next = runtime.clone();
        next.insert(name.to_string(), settings.clone());
        if let Some(p) = &self.state {
            write_state(p, &next)?;
        }
        *runtime = next;
        Ok((
            Profile {
                name: name.to_string(),
                origin: Origin::Api,
                settings,
            },
            created,
        ))
    }
}

/// What `DELETE /v1/profiles/{name}` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// The profile PUT had stored, now removed.
    pub deleted: Profile,
    /// What is in effect under that name now: the config's
    /// `[profiles.NAME]`, or the built-in `default`; none: the name is
    /// gone.
    pub in_effect: Option<Profile>,
}

impl Profiles {
    /// Removes what `PUT` stored for `name`, the runtime file written
    /// (atomically, durably) before it takes effect — what was under it
    /// (the config's profile, the built-in `default`) is in effect again.
    /// A profile not in effect is [`ProfileError::Unknown`]; one that only
    /// the config (or the built-in default) gives is
    /// [`ProfileError::NotStored`]: nothing is changed for either.
    pub fn delete(&self, name: &str) -> std::result::Result<Deleted, ProfileError> {
        check_name(name)?;
        let mut runtime = self.runtime.write().unwrap_or_else(PoisonError::into_inner);
        let Some(settings) = runtime.get(name).cloned() else {
            drop(runtime);
            return Err(match self.get(name) {
                Some(p) => ProfileError::NotStored {
                    name: name.to_string(),
                    origin: p.origin,
                },
                None => ProfileError::Unknown(UnknownProfile {
                    name: name.to_string(),
                    known: self.known(),
                }),
            });
        };
        let mut next = runtime.clone();
        next.remove(name);
        if let Some(p) = &self.state {
            write_state(p, &next)?;
        }
        *runtime = next;
        drop(runtime);
        Ok(Deleted {
            deleted: Profile {
                name: name.to_string(),
                origin: Origin::Api,
                settings,
            },
            in_effect: self.get(name),
        })
    }
}

/// The `[profiles.NAME]` tables of a goldmount config file's text (the
/// file goldmountd and the CLI share), each checked; no `[profiles]`: none.
pub fn from_config_text(
    text: &str,
) -> std::result::Result<BTreeMap<String, ProfileSettings>, ProfileError> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        profiles: BTreeMap<String, ProfileSettings>,
    }
    let view: View = toml::from_str(text).map_err(|e| ProfileError::Config {
        message: format!("{e}; expected [profiles.NAME] tables of class, read_only, xfs_new_uuid, zfs_reguid, btrfs_new_fsid, allow_suid_dev"),
    })?;
    for (n, s) in &view.profiles {
        check_name(n)?;
        s.check(n)?;
    }
    Ok(view.profiles)
}

fn read_state(path: &Path) -> std::result::Result<BTreeMap<String, ProfileSettings>, ProfileError> {
    let err = |message: String| ProfileError::State {
        path: path.to_path_buf(),
        message,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(err(format!("cannot read it: {e}"))),
    };
    let doc: StateDoc = serde_json::from_slice(&bytes).map_err(|e| {
        err(format!(
            "is not a runtime profiles document ({e}); fix or remove it (the config's [profiles] stay)"
        ))
    })?;
    if doc.version != 1 {
        return Err(err(format!(
            "has version {}, this goldmountd reads version 1",
            doc.version
        )));
    }
    for (n, s) in &doc.profiles {
        check_name(n).map_err(|e| err(e.to_string()))?;
        s.check(n).map_err(|e| err(e.to_string()))?;
    }
    Ok(doc.profiles)
}

/// Writes the runtime profiles: a temporary file beside it, synced, renamed
/// over it, the directory synced — a crash leaves the old or the new file.
fn write_state(
    path: &Path,
    profiles: &BTreeMap<String, ProfileSettings>,
) -> std::result::Result<(), ProfileError> {
    let err = |message: String| ProfileError::State {
        path: path.to_path_buf(),
        message,
    };
    let dir = path
        .parent()
        .ok_or_else(|| err("has no parent directory".into()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let doc = StateDoc {
        version: 1,
        profiles: profiles.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(format!(
            "cannot write it ({e}); the profile was not changed"
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn gold() -> ProfileSettings {
        ProfileSettings {
            class: Some("gold".into()),
            read_only: true,
            ..Default::default()
        }
    }

    #[test]
    fn without_config_only_the_built_in_default_exists() {
        let p = Profiles::default();
        let d = p.resolve(None).unwrap();
        assert_eq!((d.name.as_str(), d.origin), ("default", Origin::BuiltIn));
        assert_eq!(d.settings, ProfileSettings::default());
        assert_eq!(p.resolve(Some("default")).unwrap(), d);
        let e = p.resolve(Some("fast")).unwrap_err().to_string();
        assert!(
            e.contains("unknown profile \"fast\"") && e.contains("known profiles are default"),
            "{e}"
        );
    }

    #[test]
    fn config_profiles_replace_the_built_in_default_and_are_listed_by_name() {
        let base = BTreeMap::from([
            ("gold".to_string(), gold()),
            (
                "default".to_string(),
                ProfileSettings {
                    class: Some("bronze".into()),
                    ..Default::default()
                },
            ),
        ]);
        let p = Profiles::open(base, None).unwrap();
        assert_eq!(p.known(), ["default", "gold"]);
        let d = p.resolve(None).unwrap();
        assert_eq!(d.origin, Origin::Config);
        assert_eq!(d.settings.class.as_deref(), Some("bronze"));
        let e = p.resolve(Some("silver")).unwrap_err().to_string();
        assert!(e.contains("default, gold"), "{e}");
    }

    #[test]
    fn settings_map_to_the_engines_mount_options_and_the_request_wins_read_only() {
        let all = ProfileSettings {
            class: None,
            read_only: true,
            xfs_new_uuid: true,
            zfs_reguid: true,
            btrfs_new_fsid: true,
            allow_suid_dev: true,
        };
        assert_eq!(
            all.mount_options(false),
            MountOptions {
                read_only: false,
                regen_xfs_uuid: true,
                zfs_reguid: true,
                btrfs_new_fsid: true,
                allow_suid_dev: true,
            }
        );
        assert_eq!(
            ProfileSettings::default().mount_options(true),
            MountOptions {
                read_only: true,
                ..Default::default()
            }
        );
        assert!(all.read_only(None));
        assert!(!all.read_only(Some(false)));
        assert!(ProfileSettings::default().read_only(Some(true)));
        assert!(!ProfileSettings::default().read_only(None));
    }

    #[test]
    fn toml_keys_are_checked() {
        let s: ProfileSettings =
            toml::from_str("class = \"gold\"\nread_only = true\nzfs_reguid = true\n").unwrap();
        assert_eq!(s.class.as_deref(), Some("gold"));
        assert!(s.read_only && s.zfs_reguid && !s.xfs_new_uuid);
        let e = toml::from_str::<ProfileSettings>("read_olny = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("read_olny"), "{e}");
        for bad in ["", "-x", "a b", &"c".repeat(33)] {
            let s = ProfileSettings {
                class: Some(bad.into()),
                ..Default::default()
            };
            assert!(s.check("p").unwrap_err().to_string().contains("class"));
        }
        for bad in ["", "-x", "a/b", "a@b", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
            let base = BTreeMap::from([(bad.to_string(), ProfileSettings::default())]);
            assert!(Profiles::open(base, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_put_replaces_one_profile_and_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("gm-profiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("state").join(STATE_FILE);
        let base = BTreeMap::from([("gold".to_string(), gold())]);
        let p = Profiles::open(base.clone(), Some(&file)).unwrap();
        let (got, created) = p
            .put(
                "gold",
                ProfileSettings {
                    class: Some("platinum".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(!created);
        assert_eq!(got.origin, Origin::Api);
        let (_, created) = p.put("fast", ProfileSettings::default()).unwrap();
        assert!(created);
        assert_eq!(p.known(), ["default", "fast", "gold"]);
        let e = p
            .put(
                "gold",
                ProfileSettings {
                    class: Some("bad class".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, ProfileError::BadSettings { .. }), "{e}");
        assert!(p.put("a/b", ProfileSettings::default()).is_err());
        // Reopened with the same config: the runtime profiles are there.
        let again = Profiles::open(base.clone(), Some(&file)).unwrap();
        let g = again.get("gold").unwrap();
        assert_eq!(
            (g.origin, g.settings.class.as_deref(), g.settings.read_only),
            (Origin::Api, Some("platinum"), false)
        );
        assert_eq!(again.known(), ["default", "fast", "gold"]);
        // A damaged file stops the open, naming the file.
        std::fs::write(&file, "{\"version\":1,\"profiles\":{\"x\":{\"nope\":1}}}").unwrap();
        let e = Profiles::open(base, Some(&file)).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE) && e.contains("nope"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_delete_undoes_a_put_and_leaves_config_profiles_alone() {
        let dir = std::env::temp_dir().join(format!("gm-profiles-del-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join(STATE_FILE);
        let base = BTreeMap::from([("gold".to_string(), gold())]);
        let p = Profiles::open(base.clone(), Some(&file)).unwrap();
        // Only the config (or the built-in) gives these: refused, unchanged.
        for (n, o) in [("gold", Origin::Config), ("default", Origin::BuiltIn)] {
            match p.delete(n).unwrap_err() {
                ProfileError::NotStored { name, origin } => assert_eq!((&*name, origin), (n, o)),
                e => panic!("{n}: {e}"),
            }
        }
        match p.delete("fast").unwrap_err() {
            ProfileError::Unknown(u) => assert_eq!(u.known, ["default", "gold"]),
            e => panic!("{e}"),
        }
        assert!(matches!(p.delete("a/b"), Err(ProfileError::BadName { .. })));
        assert!(!file.exists(), "a refused DELETE wrote the runtime file");

        p.put("fast", ProfileSettings::default()).unwrap();
        let over_gold = ProfileSettings {
            class: Some("platinum".into()),
            ..Default::default()
        };
        p.put("gold", over_gold.clone()).unwrap();
        let over_default = ProfileSettings {
            read_only: true,
            ..Default::default()
        };
        p.put("default", over_default.clone()).unwrap();

        // An API-only profile is gone; the second DELETE finds nothing.
        let d = p.delete("fast").unwrap();
        assert_eq!((d.deleted.origin, d.in_effect), (Origin::Api, None));
        assert!(matches!(p.delete("fast"), Err(ProfileError::Unknown(_))));
        // A PUT over the config's profile: the config's is back.
        let d = p.delete("gold").unwrap();
        assert_eq!(d.deleted.settings, over_gold);
        let back = d.in_effect.unwrap();
        assert_eq!((back.origin, back.settings), (Origin::Config, gold()));
        // `default`: the built-in empty one is back.
        let d = p.delete("default").unwrap();
        assert_eq!(d.deleted.settings, over_default);
        let back = d.in_effect.unwrap();
        assert_eq!(
            (back.origin, back.settings),
            (Origin::BuiltIn, ProfileSettings::default())
        );
        assert!(matches!(
            p.delete("default"),
            Err(ProfileError::NotStored { .. })
        ));
        // Persisted: a reopen sees the same set.
        let again = Profiles::open(base, Some(&file)).unwrap();
        assert_eq!(again.list(), p.list());
        assert_eq!(again.known(), ["default", "gold"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_config_files_profiles_are_read_and_checked() {
        let text = r#"
            [control]
            listen = "0.0.0.0:8443"
            [profiles.gold]
            class = "gold"
            read_only = true
            [profiles.fast]
        "#;
        let m = from_config_text(text).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["fast", "gold"]);
        assert_eq!(m["gold"], gold());
        assert!(from_config_text("[engine]\nrun_dir = \"/r\"\n")
            .unwrap()
            .is_empty());
        let e = from_config_text("[profiles.gold]\nread_olny = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("read_olny") && e.contains("[profiles]"), "{e}");
        let e = from_config_text("[profiles.gold]\nclass = \"a b\"\n").unwrap_err();
        assert!(matches!(e, ProfileError::BadSettings { .. }), "{e}");
        let e = from_config_text("[profiles.\"a@b\"]\n").unwrap_err();
        assert!(matches!(e, ProfileError::BadName { .. }), "{e}");
    }
}
