//! The daemon's configuration file (`/etc/goldmount/config.toml` unless
//! `--config` or `GOLDMOUNT_CONFIG` says otherwise): where it listens, which
//! certificates it presents and trusts, where the engine keeps its state,
//! how it logs, and where the appliance is. Unknown keys are refused so a
//! typo is an error at start, not a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The config file used when neither `--config` nor `GOLDMOUNT_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "/etc/goldmount/config.toml";

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the goldmountd config {}: {source}; create it (see packaging/goldmountd.service) or pass --config PATH", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong or unknown key.
    #[error("invalid goldmountd config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message: the key, the line and what was expected.
        message: String,
    },
    /// A value parsed but cannot work.
    #[error("invalid goldmountd config {}: key {key}: {message}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The control API.
    pub control: ControlConfig,
    /// The engine's paths (the same keys and defaults as the `goldmount` CLI's).
    pub engine: connector::config::Config,
    /// Logging.
    pub log: LogConfig,
    /// The appliance this host registers with (used by registration).
    pub appliance: Option<ApplianceConfig>,
    /// The Docker volume plugin (served when the section is present and
    /// not `enabled = false`; needs `[appliance]`).
    pub docker: Option<dockerplugin::DockerConfig>,
    /// Storage profiles (`[profiles.NAME]`): the names `NAME@profile` and
    /// the control API's `/v1/profiles` give; `default` applies when none
    /// is named (built-in and empty unless configured here). The base:
    /// `PUT /v1/profiles/{name}` replaces one at run time.
    pub profiles: BTreeMap<String, dockerplugin::profile::ProfileSettings>,
}

/// `[control]`: the mutual-TLS listener and the optional local socket.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// The server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA(s) a client certificate must chain to (PEM).
    pub client_ca: PathBuf,
    /// When set, a client certificate must carry this CN or SAN.
    pub client_subject: Option<String>,
    /// When set, the same API on a Unix socket (mode 0600, root only).
    pub unix_socket: Option<PathBuf>,
    /// How long, at SIGTERM, in-flight operations may take to finish.
    pub shutdown_grace_secs: u64,
}

impl ControlConfig {
    /// The grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            cert: PathBuf::from("/etc/goldmount/tls/server.pem"),
            key: PathBuf::from("/etc/goldmount/tls/server-key.pem"),
            client_ca: PathBuf::from("/etc/goldmount/tls/ca.pem"),
            client_subject: None,
            unix_socket: None,
            shutdown_grace_secs: 120,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for journald/log shippers.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// A tracing filter (`info`, `goldmountd=debug,info`); `GOLDMOUNT_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

/// `[appliance]`: the appliance this host registers with. When the section
/// is present, goldmountd registers at start, every `interval_secs`, and
/// after a failure with a backoff (see `registration_task`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// The appliance's base URL (`https://…`; `http://` only on loopback).
    pub url: String,
    /// The CA its server certificate chains to (required for https).
    pub ca: Option<PathBuf>,
    /// A file holding the appliance's API token (read at every attempt, so
    /// a rotated token is picked up without a restart).
    pub token_file: Option<PathBuf>,
    /// This daemon's control URL as the appliance should call it back
    /// (`https://host:8443`); unset: whatever the appliance has is kept.
    pub callback_url: Option<String>,
    /// The CA that signed this daemon's *server* certificate
    /// (`control.cert`), handed to the appliance to verify its callbacks.
    /// Required with `callback_url`.
    pub server_ca: Option<PathBuf>,
    /// Seconds between registrations while all is well (default 600).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// The longest wait between retries while the appliance is down or
    /// failing (default 300; retries start at 1 s and double, jittered).
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
}

fn default_interval_secs() -> u64 {
    600
}

fn default_retry_max_secs() -> u64 {
    300
}

impl ApplianceConfig {
    /// The registration interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    /// The retry cap as a duration.
    pub fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_secs)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let value = |key, message: String| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            message,
        };
        let url = self.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(value(
                "appliance.url",
                format!("expected https://HOST:PORT (http:// only on loopback), found {url:?}"),
            ));
        }
        if url.starts_with("https://") && self.ca.is_none() {
            return Err(value(
                "appliance.ca",
                "is missing: an https:// appliance needs the CA that signed its certificate".into(),
            ));
        }
        if let Some(cb) = &self.callback_url {
            if !cb.starts_with("https://") || cb.len() <= "https://".len() {
                return Err(value(
                    "appliance.callback_url",
                    format!("expected this daemon's https:// control URL, found {cb:?}"),
                ));
            }
            if self.server_ca.is_none() {
                return Err(value(
                    "appliance.server_ca",
                    "is missing: with callback_url the appliance needs the CA that signed this daemon's server certificate (control.cert)".into(),
                ));
            }
        }
        let paths: [(&'static str, Option<&PathBuf>); 3] = [
            ("appliance.ca", self.ca.as_ref()),
            ("appliance.token_file", self.token_file.as_ref()),
            ("appliance.server_ca", self.server_ca.as_ref()),
        ];
        for (key, p) in paths {
            if let Some(p) = p.filter(|p| !p.is_absolute()) {
                return Err(value(
                    key,
                    format!("{} is relative; give an absolute path", p.display()),
                ));
            }
        }
        if self.interval_secs == 0 || self.retry_max_secs == 0 {
            return Err(value(
                "appliance.interval_secs",
                "interval_secs and retry_max_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Where `PUT /v1/profiles/{name}` keeps runtime profiles: beside the
    /// engine's state (`<state dir>/profiles.json`).
    pub fn profiles_state_path(&self) -> PathBuf {
        self.engine
            .state_path
            .parent()
            .unwrap_or_else(|| Path::new("/var/lib/goldmount"))
            .join(dockerplugin::profile::STATE_FILE)
    }

    /// The profiles in effect: `[profiles]` with the runtime profiles
    /// file over them.
    pub fn open_profiles(
        &self,
    ) -> Result<dockerplugin::profile::Profiles, dockerplugin::profile::ProfileError> {
        dockerplugin::profile::Profiles::open(
            self.profiles.clone(),
            Some(&self.profiles_state_path()),
        )
    }

    /// The file to read: `explicit` (from `--config`), else
    /// `GOLDMOUNT_CONFIG`, else [`DEFAULT_CONFIG`].
    pub fn path(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("GOLDMOUNT_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// Reads and checks `path`, then applies the engine's environment
    /// overrides (`GOLDMOUNT_VOLUMES_ROOT`, `GOLDMOUNT_STATE`,
    /// `GOLDMOUNT_RUN_DIR`), as the `goldmount` CLI does, so both work on
    /// the same state.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(path, &text)?;
        if let Some(v) = std::env::var_os("GOLDMOUNT_VOLUMES_ROOT") {
            cfg.engine.volumes_root = v.into();
        }
        if let Some(v) = std::env::var_os("GOLDMOUNT_STATE") {
            cfg.engine.state_path = v.into();
        }
        if let Some(v) = std::env::var_os("GOLDMOUNT_RUN_DIR") {
            cfg.engine.run_dir = v.into();
        }
        Ok(cfg)
    }

    /// Parses and checks `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.check(path)?;
        Ok(cfg)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let value = |key, message: String| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            message,
        };
        let absolute: [(&'static str, &Path); 6] = [
            ("control.cert", &self.control.cert),
            ("control.key", &self.control.key),
            ("control.client_ca", &self.control.client_ca),
            ("engine.volumes_root", &self.engine.volumes_root),
            ("engine.state_path", &self.engine.state_path),
            ("engine.run_dir", &self.engine.run_dir),
        ];
        for (key, p) in absolute {
            if !p.is_absolute() {
                return Err(value(
                    key,
                    format!(
                        "{} is relative; give an absolute path (the daemon's working directory is /)",
                        p.display()
                    ),
                ));
            }
        }
        if let Some(s) = &self.control.unix_socket {
            if !s.is_absolute() {
                return Err(value(
                    "control.unix_socket",
                    format!("{} is relative; give an absolute path", s.display()),
                ));
            }
        }
        if let Some(s) = &self.control.client_subject {
            if s.trim().is_empty() {
                return Err(value(
                    "control.client_subject",
                    "is empty; remove the key to accept any certificate from client_ca, or give the appliance's CN".into(),
                ));
            }
        }
        if let Some(a) = &self.appliance {
            a.check(path)?;
        }
        if let Some(d) = self.docker.as_ref().filter(|d| d.enabled) {
            d.check().map_err(|(key, message)| value(key, message))?;
            if self.appliance.is_none() {
                return Err(value(
                    "docker",
                    "the Docker plugin clones gold copies on the appliance: add an [appliance] section (url, token_file), or set enabled = false".into(),
                ));
            }
        }
        for (name, settings) in &self.profiles {
            dockerplugin::profile::check_name(name)
                .and_then(|()| settings.check(name))
                .map_err(|e| value("profiles", e.to_string()))?;
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(value(
                "log.level",
                format!(
                    "{:?} is not a log filter ({e}); use error, warn, info, debug or trace",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/goldmount/config.toml"), text)
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.control.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(c.engine, connector::config::Config::default());
        assert_eq!(c.control.shutdown_grace(), Duration::from_secs(120));
    }

    #[test]
    fn every_section_parses() {
        let c = parse(
            r#"
            [control]
            listen = "127.0.0.1:9443"
            cert = "/x/s.pem"
            key = "/x/s-key.pem"
            client_ca = "/x/ca.pem"
            client_subject = "goldmount-appliance"
            unix_socket = "/run/goldmount/control.sock"
            shutdown_grace_secs = 5
            [engine]
            volumes_root = "/v"
            state_path = "/s/state.redb"
            run_dir = "/r"
            [log]
            format = "json"
            level = "debug"
            [appliance]
            url = "https://appliance:8443"
            ca = "/x/app-ca.pem"
            token_file = "/x/token"
            "#,
        )
        .unwrap();
        assert_eq!(
            c.control.client_subject.as_deref(),
            Some("goldmount-appliance")
        );
        assert_eq!(c.engine.state_path, Path::new("/s/state.redb"));
        assert_eq!(c.log.format, LogFormat::Json);
        let a = c.appliance.unwrap();
        assert_eq!(a.token_file.as_deref().unwrap(), Path::new("/x/token"));
        assert_eq!(a.interval(), Duration::from_secs(600));
        assert_eq!(a.retry_max(), Duration::from_secs(300));
        assert_eq!(a.callback_url, None);
    }

    #[test]
    fn the_appliance_section_is_checked() {
        let c = parse(
            r#"
            [appliance]
            url = "https://appliance:8443"
            ca = "/x/app-ca.pem"
            callback_url = "https://db7:8443"
            server_ca = "/etc/goldmount/tls/ca.pem"
            interval_secs = 60
            retry_max_secs = 30
            "#,
        )
        .unwrap();
        let a = c.appliance.unwrap();
        assert_eq!(a.interval(), Duration::from_secs(60));
        assert_eq!(a.server_ca.unwrap(), Path::new("/etc/goldmount/tls/ca.pem"));
        for (text, key) in [
            ("url = \"appliance:8443\"", "appliance.url"),
            ("url = \"https://a:1\"", "appliance.ca"),
            (
                "url = \"http://127.0.0.1:1\"\ncallback_url = \"https://h:8443\"",
                "appliance.server_ca",
            ),
            (
                "url = \"http://127.0.0.1:1\"\ncallback_url = \"http://h:8443\"",
                "appliance.callback_url",
            ),
            (
                "url = \"http://127.0.0.1:1\"\ntoken_file = \"token\"",
                "appliance.token_file",
            ),
            (
                "url = \"http://127.0.0.1:1\"\ninterval_secs = 0",
                "appliance.interval_secs",
            ),
        ] {
            let e = parse(&format!("[appliance]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = parse("[appliance]\nurl = \"http://127.0.0.1:1\"\ncallback_ca = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("callback_ca"), "{e}");
    }

    #[test]
    fn the_docker_section_is_checked() {
        assert_eq!(parse("").unwrap().docker, None);
        let c = parse("[appliance]\nurl = \"http://127.0.0.1:8470\"\n[docker]\nname = \"gm\"\n")
            .unwrap();
        let d = c.docker.unwrap();
        assert!(d.enabled);
        assert_eq!(d.socket_path(), Path::new("/run/docker/plugins/gm.sock"));
        let e = parse("[docker]\n").unwrap_err().to_string();
        assert!(e.contains("[appliance]"), "{e}");
        assert!(parse("[docker]\nenabled = false\n").is_ok());
        let e =
            parse("[appliance]\nurl = \"http://127.0.0.1:1\"\n[docker]\nsocket = \"gm.sock\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("docker.socket") && e.contains("absolute"), "{e}");
        let e = parse("[docker]\nnmae = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("nmae"), "{e}");
    }

    #[test]
    fn the_profiles_section_is_checked() {
        assert!(parse("").unwrap().profiles.is_empty());
        let c = parse(
            "[profiles.gold]\nclass = \"gold\"\nread_only = true\nxfs_new_uuid = true\n\
             [profiles.default]\nallow_suid_dev = true\n",
        )
        .unwrap();
        let g = &c.profiles["gold"];
        assert_eq!(g.class.as_deref(), Some("gold"));
        assert!(g.read_only && g.xfs_new_uuid && !g.zfs_reguid && !g.allow_suid_dev);
        assert!(c.profiles["default"].allow_suid_dev);
        let e = parse("[profiles.gold]\nread_olny = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("read_olny") && e.contains("unknown field"),
            "{e}"
        );
        let e = parse("[profiles.gold]\nclass = \"no way\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key profiles") && e.contains("class"), "{e}");
        let e = parse("[profiles.\"a/b\"]\n").unwrap_err().to_string();
        assert!(e.contains("not a profile name"), "{e}");
        let e = parse("[profiles.gold]\nread_only = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("read_only"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("[control]\nlisen = \"0.0.0.0:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/goldmount/config.toml") && e.contains("lisen"),
            "{e}"
        );
        let e = parse("[control]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = parse("[engine]\nstate_path = \"state.redb\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("engine.state_path") && e.contains("absolute"),
            "{e}"
        );
        let e = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(e.contains("format") && e.contains("json"), "{e}");
        let e = parse("[log]\nlevel = \"goldmountd=loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
        let e = parse("[control]\nclient_subject = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("control.client_subject"), "{e}");
        let e = Config::load(Path::new("/nonexistent/goldmountd.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/goldmountd.toml") && e.contains("--config"),
            "{e}"
        );
    }
}
