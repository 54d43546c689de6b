//! The plugin's errors. Docker shows a plugin's `Err` text to the person
//! who typed `docker volume create` or `docker run`, so each one is a
//! single line: what was asked, what was found, what to do.

use std::path::PathBuf;

/// Why a volume request failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// `-o KEY=…` that the driver does not know; nothing was created.
    #[error("unknown option -o {key}: goldmount takes {known}; nothing was created")]
    UnknownOption {
        /// The key given.
        key: String,
        /// The options the driver takes.
        known: &'static str,
    },
    /// A known option with a value it cannot take; nothing was created.
    #[error("invalid value {value:?} for -o {key}: expected {expected}; nothing was created")]
    BadValue {
        /// The option.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// No `-o source=<gold>`.
    #[error("volume {name}: no gold copy named: add -o source=<gold> (one of: {known}); nothing was created")]
    MissingSource {
        /// The volume.
        name: String,
        /// The gold copies the appliance has, comma-separated.
        known: String,
    },
    /// A volume name Docker passed that cannot be a goldmount volume.
    #[error("invalid volume name {name:?}: {why}")]
    BadName {
        /// The name as Docker sent it.
        name: String,
        /// What is wrong and what to use instead.
        why: String,
    },
    /// `NAME@profile` or `-o profile=` naming no configured profile.
    #[error("unknown profile {name:?}: known profiles are {}; nothing was created", known.join(", "))]
    UnknownProfile {
        /// The profile asked for.
        name: String,
        /// The profiles configured.
        known: Vec<String>,
    },
    /// `-o source=` naming a gold copy the appliance does not have.
    #[error("no gold copy {gold:?} on the appliance; it has: {}; nothing was created", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownGold {
        /// The gold copy asked for.
        gold: String,
        /// The gold copies the appliance has.
        known: Vec<String>,
    },
    /// A volume this plugin does not have.
    #[error(
        "no such volume: {name} (goldmount volumes: docker volume ls --filter driver={driver})"
    )]
    NoSuchVolume {
        /// The volume.
        name: String,
        /// The plugin's name.
        driver: String,
    },
    /// The request collides with the volume's state.
    #[error("volume {name}: {message}")]
    Conflict {
        /// The volume.
        name: String,
        /// What collides and what to do.
        message: String,
    },
    /// The appliance refused or could not be reached.
    #[error("volume {name}: the appliance {action} failed: {message}")]
    Appliance {
        /// The volume.
        name: String,
        /// The call (`clone of gold pg`, `presentation of clone X`…).
        action: String,
        /// The appliance's answer, and what was undone.
        message: String,
    },
    /// The engine refused or failed (mount, publication, teardown).
    #[error("volume {name}: {message}")]
    Engine {
        /// The volume.
        name: String,
        /// The engine's message and hint, and what was undone.
        message: String,
    },
    /// The plugin's state store failed.
    #[error("the Docker plugin's state {} cannot be used: {message}; check the disk and the file's permissions", path.display())]
    Store {
        /// The redb file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The plugin cannot talk to the appliance as configured.
    #[error("the goldmount plugin cannot reach the appliance: {0}")]
    Setup(String),
    /// Something unforeseen (a worker thread panicked).
    #[error("internal error of the goldmount plugin: {0}; see goldmountd's log")]
    Internal(String),
}

impl PluginError {
    /// The engine's error as one line (message, then the hint when there is one).
    pub fn engine(name: &str, e: &connector::engine::EngineError) -> Self {
        let message = match &e.hint {
            Some(h) => format!("{}; {h}", e.message),
            None => e.message.clone(),
        };
        Self::Engine {
            name: name.to_string(),
            message,
        }
    }

    /// A short label for what kind of failure this is (`conflict`,
    /// `appliance`, `engine`…): the `result` of the request in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownOption { .. } => "unknown_option",
            Self::BadValue { .. } => "bad_value",
            Self::MissingSource { .. } => "missing_source",
            Self::BadName { .. } => "bad_name",
            Self::UnknownProfile { .. } => "unknown_profile",
            Self::UnknownGold { .. } => "unknown_gold",
            Self::NoSuchVolume { .. } => "no_such_volume",
            Self::Conflict { .. } => "conflict",
            Self::Appliance { .. } => "appliance",
            Self::Engine { .. } => "engine",
            Self::Store { .. } => "store",
            Self::Setup(_) => "setup",
            Self::Internal(_) => "internal",
        }
    }

    /// Appends what was (or was not) undone to the message.
    pub fn and_then_say(mut self, more: &str) -> Self {
        match &mut self {
            Self::Engine { message, .. }
            | Self::Appliance { message, .. }
            | Self::Conflict { message, .. } => {
                message.push_str("; ");
                message.push_str(more);
            }
            _ => {}
        }
        self
    }
}

/// Results of this crate.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;
