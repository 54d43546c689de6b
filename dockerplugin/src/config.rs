//! The `[docker]` section of goldmountd's config: whether the plugin runs,
//! the name Docker knows it by (`docker volume create -d NAME`), its
//! socket, where volumes are published for Docker, and how this host is
//! named on the appliance.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The driver name when none is configured.
pub const DEFAULT_NAME: &str = "goldmount";

/// Where Docker looks for legacy plugins' sockets.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// `[docker]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Serve the plugin (default true once the section is there).
    pub enabled: bool,
    /// The driver name (`-d NAME`); also names the socket and the state file.
    pub name: String,
    /// The socket (default `/run/docker/plugins/<name>.sock`, where Docker
    /// finds it without a spec file).
    pub socket: Option<PathBuf>,
    /// Where each volume's tree is published for Docker (default
    /// `/run/goldmount-docker/<name>`; a tmpfs, as mounts end with the boot).
    pub mounts_root: Option<PathBuf>,
    /// This host's name on the appliance (default: the name registration
    /// found or created).
    pub host: Option<String>,
    /// How long a Mount waits for the presented LUN to appear.
    pub lun_wait_secs: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: DEFAULT_NAME.to_string(),
            socket: None,
            mounts_root: None,
            host: None,
            lun_wait_secs: 60,
        }
    }
}

impl DockerConfig {
    /// The socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(PLUGIN_DIR).join(format!("{}.sock", self.name)))
    }

    /// The publication root.
    pub fn mounts_root(&self) -> PathBuf {
        self.mounts_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/goldmount-docker").join(&self.name))
    }

    /// The LUN wait as a duration.
    pub fn lun_wait(&self) -> Duration {
        Duration::from_secs(self.lun_wait_secs)
    }

    /// What is wrong with the section, as `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 32
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || n.starts_with('.')
        {
            return Err((
                "docker.name",
                format!("{n:?} is not a driver name: expected 1-32 characters from [A-Za-z0-9_.-]"),
            ));
        }
        for (key, p) in [
            ("docker.socket", self.socket.as_ref()),
            ("docker.mounts_root", self.mounts_root.as_ref()),
        ] {
            if let Some(p) = p.filter(|p| !p.is_absolute()) {
                return Err((
                    key,
                    format!("{} is relative; give an absolute path", p.display()),
                ));
            }
        }
        if let Some(s) = &self.socket {
            if s.as_os_str().len() >= 108 {
                return Err((
                    "docker.socket",
                    "is 108 bytes or longer: a Unix socket path must be shorter".into(),
                ));
            }
        }
        if self.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
            return Err((
                "docker.host",
                "is empty; remove it to use the name registration found".into(),
            ));
        }
        if self.lun_wait_secs == 0 || self.lun_wait_secs > 900 {
            return Err((
                "docker.lun_wait_secs",
                format!("{} is out of range: 1 to 900 seconds", self.lun_wait_secs),
            ));
        }
        Ok(())
    }
}

/// How the plugin reaches the appliance (goldmountd's `[appliance]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceAccess {
    /// Base URL.
    pub url: String,
    /// The CA of an https:// appliance.
    pub ca: Option<PathBuf>,
    /// The API token file (read at every call, so rotation needs no restart).
    pub token_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = DockerConfig::default();
        assert!(c.enabled);
        assert_eq!(
            c.socket_path(),
            PathBuf::from("/run/docker/plugins/goldmount.sock")
        );
        assert_eq!(
            c.mounts_root(),
            PathBuf::from("/run/goldmount-docker/goldmount")
        );
        c.check().unwrap();
        let bad = DockerConfig {
            name: "a/b".into(),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "docker.name");
        let bad = DockerConfig {
            socket: Some("x.sock".into()),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "docker.socket");
        let bad = DockerConfig {
            lun_wait_secs: 0,
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "docker.lun_wait_secs");
    }
}
