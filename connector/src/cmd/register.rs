//! `goldmount register`: one registration of this host with the appliance
//! (the daemon does it periodically; this is for setup, scripts and
//! checking): finds the host by its IQNs/WWPNs or hostname, creates or
//! updates it, and prints what the appliance now knows about it.
//!
//! Settings come from the flags, else the `[appliance]` section of the
//! config file (read on its own: the daemon's other sections stay the
//! daemon's business), the token also from `$GOLDMOUNT_APPLIANCE_TOKEN`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use registration::{
    read_token_file, register, ApplianceClient, Change, HostIdentity, Registration,
    RegistrationError,
};
use serde::Deserialize;

/// Arguments of `goldmount register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The appliance's URL (default: [appliance] url).
    #[arg(long, value_name = "URL")]
    appliance: Option<String>,
    /// The CA of the appliance's certificate (default: [appliance] ca).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The appliance's API token file (default: $GOLDMOUNT_APPLIANCE_TOKEN,
    /// else [appliance] token_file).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// goldmountd's control URL for the appliance's callbacks (default:
    /// [appliance] callback_url; none: the appliance keeps what it has).
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// The CA of goldmountd's server certificate (default: [appliance] server_ca).
    #[arg(long, value_name = "FILE")]
    callback_ca: Option<PathBuf>,
}

/// The `[appliance]` keys this command uses (the daemon checks the rest).
#[derive(Debug, Default, Deserialize)]
struct ApplianceSection {
    url: Option<String>,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
    callback_url: Option<String>,
    server_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct FileView {
    #[serde(default)]
    appliance: Option<ApplianceSection>,
}

/// A problem before the appliance was asked: unusable flags or config.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("reading config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing the [appliance] section of {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "no appliance URL: pass --appliance URL or set url in the [appliance] section of {config}"
    )]
    NoUrl { config: String },
}

fn section(config: Option<&Path>) -> Result<(ApplianceSection, String), SetupError> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => {
            let d = PathBuf::from(connector::config::DEFAULT_CONFIG);
            if !d.exists() {
                return Ok((ApplianceSection::default(), d.display().to_string()));
            }
            d
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| SetupError::Read {
        path: path.clone(),
        source,
    })?;
    let view: FileView = toml::from_str(&text).map_err(|e| SetupError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((
        view.appliance.unwrap_or_default(),
        path.display().to_string(),
    ))
}

/// Runs `goldmount register`: 0 registered; 1 the appliance is unreachable
/// or failing (retry later); 2 bad settings, token or request; 3 this
/// host's ports conflict with another appliance host.
pub fn run(args: &RegisterArgs, config: Option<&Path>) -> ExitCode {
    match attempt(args, config) {
        Ok(r) => {
            print(args.json, &r);
            ExitCode::SUCCESS
        }
        Err(Failure::Setup(e)) => {
            eprintln!("goldmount: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Registration(e)) => {
            eprintln!("goldmount: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

enum Failure {
    Setup(SetupError),
    Registration(RegistrationError),
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Self {
        Self::Setup(e)
    }
}

impl From<RegistrationError> for Failure {
    fn from(e: RegistrationError) -> Self {
        Self::Registration(e)
    }
}

fn attempt(args: &RegisterArgs, config: Option<&Path>) -> Result<Registration, Failure> {
    let (file, config_name) = section(config)?;
    let url = args
        .appliance
        .clone()
        .or(file.url)
        .ok_or(SetupError::NoUrl {
            config: config_name,
        })?;
    let token = match (&args.token_file, std::env::var("GOLDMOUNT_APPLIANCE_TOKEN")) {
        (Some(p), _) => Some(read_token_file(p)?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        (None, _) => file
            .token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?,
    };
    let ca = args.ca.clone().or(file.ca);
    let client = ApplianceClient::new(&url, ca.as_deref(), token)?;
    let callback_url = args.callback_url.clone().or(file.callback_url);
    let callback_ca = match args.callback_ca.clone().or(file.server_ca) {
        Some(p) => {
            Some(
                std::fs::read_to_string(&p).map_err(|e| RegistrationError::BadCallbackCa {
                    path: p.clone(),
                    message: format!("cannot read it: {e}"),
                })?,
            )
        }
        None => None,
    };
    Ok(register(
        &client,
        &HostIdentity::collect(),
        callback_url.as_deref(),
        callback_ca.as_deref(),
    )?)
}

/// The appliance client the config file (and `$GOLDMOUNT_APPLIANCE_TOKEN`)
/// describe, for read-only questions (`goldmount status`); `None` when no
/// appliance is configured.
pub fn configured_client(config: Option<&Path>) -> Result<Option<ApplianceClient>, String> {
    let (file, _) = section(config).map_err(|e| e.to_string())?;
    let Some(url) = file.url else {
        return Ok(None);
    };
    let token = match std::env::var("GOLDMOUNT_APPLIANCE_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ => file
            .token_file
            .as_deref()
            .map(read_token_file)
            .transpose()
            .map_err(|e| e.to_string())?,
    };
    ApplianceClient::new(&url, file.ca.as_deref(), token)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn exit_code(e: &RegistrationError) -> u8 {
    match e {
        e if e.is_retryable() => 1,
        RegistrationError::Split { .. } => 3,
        RegistrationError::Refused { status: 409, .. } => 3,
        _ => 2,
    }
}

fn print(json: bool, r: &Registration) {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("goldmount: cannot encode the result: {e}"),
        }
        return;
    }
    let change = match &r.change {
        Change::Created => "created".to_string(),
        Change::Updated { fields } => format!(
            "updated ({})",
            fields
                .iter()
                .map(|f| serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Change::Unchanged => "unchanged".to_string(),
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(" ")
        }
    };
    println!("appliance:    {}", r.appliance);
    println!("host:         {} ({change})", r.host.name);
    println!("iqns:         {}", list(&r.host.iqns));
    println!("wwpns:        {}", list(&r.host.wwpns));
    println!(
        "callback:     {}",
        r.host
            .callback_url
            .as_deref()
            .unwrap_or("- (the appliance cannot call this host back)")
    );
    println!(
        "callback CA:  {}",
        match &r.host.callback_ca_pem {
            Some(p) => format!(
                "{} certificate(s)",
                p.matches("-----BEGIN CERTIFICATE-----").count()
            ),
            None => "-".to_string(),
        }
    );
    println!("registered:   {} (unix seconds)", r.host.created);
}
