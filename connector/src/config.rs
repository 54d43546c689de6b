//! Where goldmount keeps things. Defaults follow DESIGN.md; a TOML file
//! (`/etc/goldmount/config.toml`) and environment variables override them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Default config file.
pub const DEFAULT_CONFIG: &str = "/etc/goldmount/config.toml";

/// Paths goldmount uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Parent of every volume path (`<volumes_root>/<volume>/`).
    pub volumes_root: PathBuf,
    /// The state database.
    pub state_path: PathBuf,
    /// Runtime directory: per-volume locks and temporary probe mounts.
    pub run_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            volumes_root: PathBuf::from("/var/lib/goldmount/volumes"),
            state_path: PathBuf::from("/var/lib/goldmount/state.redb"),
            run_dir: PathBuf::from("/run/goldmount"),
        }
    }
}

impl Config {
    /// Loads `path` (or the default file if it exists), then applies
    /// `GOLDMOUNT_VOLUMES_ROOT`, `GOLDMOUNT_STATE` and `GOLDMOUNT_RUN_DIR`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG))?
            }
            None => Self::default(),
        };
        if let Some(v) = std::env::var_os("GOLDMOUNT_VOLUMES_ROOT") {
            cfg.volumes_root = v.into();
        }
        if let Some(v) = std::env::var_os("GOLDMOUNT_STATE") {
            cfg.state_path = v.into();
        }
        if let Some(v) = std::env::var_os("GOLDMOUNT_RUN_DIR") {
            cfg.run_dir = v.into();
        }
        Ok(cfg)
    }

    /// One file serves the CLI and the daemon: the engine's paths are the
    /// `[engine]` section (or, in a CLI-only file, top-level keys); the
    /// daemon's own sections (`[control]`, `[log]`, `[appliance]`, `[docker]`)
    /// are left to goldmountd, `[profiles]` to [`profiles`](Self::profiles).
    /// Anything else is an error naming the key.
    fn from_file(p: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config {}", p.display()))?;
        Self::parse(&text).with_context(|| format!("parsing config {}", p.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        for daemon_only in ["control", "log", "appliance", "docker", "profiles"] {
            table.remove(daemon_only);
        }
        let engine = table.remove("engine");
        match engine {
            Some(e) if table.is_empty() => Ok(e.try_into()?),
            Some(_) => anyhow::bail!(
                "engine paths are given both in [engine] and at the top level ({}): keep them in [engine]",
                table.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => Ok(toml::Value::Table(table).try_into()?),
        }
    }

    /// Where goldmountd keeps the profiles `PUT /v1/profiles/{name}`
    /// stored: beside the engine's state (`<state dir>/profiles.json`).
    pub fn profiles_state_path(&self) -> PathBuf {
        self.state_path
            .parent()
            .unwrap_or_else(|| Path::new("/var/lib/goldmount"))
            .join(crate::profile::STATE_FILE)
    }

    /// The storage profiles in effect for this engine when goldmountd is
    /// not there to ask: the `[profiles.NAME]` of the file [`load`]
    /// reads (`path`, else the default file if it exists), with what
    /// goldmountd stored by PUT ([`profiles_state_path`]) over them — the
    /// set its `GET /v1/profiles` would show. Read only.
    ///
    /// [`load`]: Self::load
    /// [`profiles_state_path`]: Self::profiles_state_path
    pub fn profiles(&self, path: Option<&Path>) -> Result<crate::profile::Profiles> {
        let file = match path {
            Some(p) => Some(p),
            None => Some(Path::new(DEFAULT_CONFIG)).filter(|p| p.exists()),
        };
        let base = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                crate::profile::from_config_text(&text)
                    .with_context(|| format!("parsing config {}", p.display()))?
            }
            None => Default::default(),
        };
        Ok(crate::profile::Profiles::open(
            base,
            Some(&self.profiles_state_path()),
        )?)
    }

    /// Lock files live here.
    pub fn lock_dir(&self) -> PathBuf {
        self.run_dir.join("locks")
    }

    /// Temporary read-only mounts used to look for `/etc/fstab`.
    pub fn staging_dir(&self) -> PathBuf {
        self.run_dir.join("staging")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_daemons_file_serves_the_cli_too() {
        let daemon = r#"
            [control]
            listen = "0.0.0.0:8443"
            [engine]
            volumes_root = "/srv/vols"
            [log]
            format = "json"
            [docker]
            name = "goldmount"
        "#;
        let c = Config::parse(daemon).unwrap();
        assert_eq!(c.volumes_root, PathBuf::from("/srv/vols"));
        assert_eq!(c.run_dir, Config::default().run_dir);
        let cli = "state_path = \"/x/state.redb\"";
        assert_eq!(
            Config::parse(cli).unwrap().state_path,
            PathBuf::from("/x/state.redb")
        );
        let typo = "[engine]\nvolume_root = \"/v\"";
        assert!(format!("{:#}", Config::parse(typo).unwrap_err()).contains("volume_root"));
        let both = "run_dir = \"/r\"\n[engine]\nvolumes_root = \"/v\"";
        assert!(Config::parse(both).is_err());
    }

    #[test]
    fn profiles_come_from_the_same_file_with_the_daemons_puts_over_them() {
        let dir = std::env::temp_dir().join(format!("gm-config-prof-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        let text = format!(
            "[engine]\nstate_path = \"{}/state.redb\"\n[profiles.gold]\nclass = \"gold\"\nread_only = true\n",
            dir.display()
        );
        std::fs::write(&file, &text).unwrap();
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.profiles_state_path(), dir.join("profiles.json"));
        let p = c.profiles(Some(&file)).unwrap();
        assert_eq!(p.known(), ["default", "gold"]);
        assert_eq!(
            p.resolve(Some("gold")).unwrap().settings.class.as_deref(),
            Some("gold")
        );
        std::fs::write(
            dir.join("profiles.json"),
            "{\"version\":1,\"profiles\":{\"fast\":{\"zfs_reguid\":true}}}",
        )
        .unwrap();
        let p = c.profiles(Some(&file)).unwrap();
        assert_eq!(p.known(), ["default", "fast", "gold"]);
        std::fs::write(&file, format!("{text}read_olny = true\n")).unwrap();
        let e = format!("{:#}", c.profiles(Some(&file)).unwrap_err());
        assert!(e.contains("read_olny") && e.contains("config.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
