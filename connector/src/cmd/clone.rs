//! `goldmount clone GOLD[@PROFILE] --volume NAME [--path P] [--read-only]`
//! and `goldmount unclone --volume NAME [--force]`: a person at the host
//! asks the appliance for a clone of a gold copy and gets it mounted here —
//! and takes it all away again.
//!
//! The storage profile (`GOLD@PROFILE` or `--profile`, else `default`) is
//! resolved before anything is made: by goldmountd from its own set when it
//! runs (`GET /v1/profiles/{name}` on its socket), else from the config
//! file's `[profiles.NAME]` with goldmountd's stored PUTs over them. Its
//! class goes to the appliance's clone, its mount settings to the engine,
//! as for `docker volume create NAME@profile`.
//!
//! When goldmountd serves this host's engine (its `/healthz` answers on the
//! config's `[control] unix_socket`), the appliance's one call does it
//! (`POST /v1/mounts`: clone, present, goldmountd mounts; `DELETE
//! /v1/mounts/{volume}` back) — unless the profile sets a clone class or a
//! mount setting beyond read-only, which that call cannot carry. Otherwise
//! this command takes the steps
//! itself — create the clone, present it to this host, mount it through
//! the engine in-process, publish it at `--path` — recording what it made
//! on the appliance beside the engine's state (see [`record`]) before each
//! step, and on a failure undoes what it did, newest first.

mod appliance;
mod daemon;
mod local;
mod record;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use connector::config::Config;
use connector::engine::{Engine, EngineError, VolumeName};
use connector::lock::VolumeLock;
use connector::manifest::Manifest;
use connector::profile::{check_name, Profile, ProfileSettings, UnknownProfile, DEFAULT_PROFILE};
use registration::RegistrationError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use appliance::Appliance;
use record::Timings;

/// The publication id of the tree `goldmount clone --path` publishes.
pub const PUBLICATION_ID: &str = "goldmount-clone";

/// Arguments of `goldmount clone`.
#[derive(Args, Debug)]
pub struct CloneArgs {
    /// The gold copy to clone (its name on the appliance), optionally with
    /// a storage profile after `@` (`pg-gold@fast`); without one, the
    /// `default` profile. goldmountd resolves the profile when it runs,
    /// else the config file's [profiles.NAME] (and goldmountd's stored
    /// PUTs) do; an unknown one is refused before anything is made.
    #[arg(value_name = "GOLD[@PROFILE]")]
    gold: String,
    /// The storage profile, as after `@` (both given: they must agree).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Volume name: the tree appears at <volumes_root>/<NAME>.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Also bind the volume's tree at this absolute path (a dedicated
    /// directory such as /media/<name>; system paths are refused).
    #[arg(long, value_name = "P")]
    path: Option<PathBuf>,
    /// Mount read-only, without replaying journals — even when the
    /// profile says read-write (the flag wins; without a flag the
    /// profile's read_only decides).
    #[arg(long, conflicts_with = "read_write")]
    read_only: bool,
    /// Mount read-write even when the profile says read_only (the flag
    /// wins, as `-o read_only=false` does for Docker).
    #[arg(long)]
    read_write: bool,
    /// How long to wait for the presented LUN to appear, in seconds
    /// (in-process steps; goldmountd uses the appliance's --lun-wait-secs).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `goldmount unclone`.
#[derive(Args, Debug)]
pub struct UncloneArgs {
    /// Volume name.
    #[arg(long, value_name = "NAME")]
    volume: String,
    /// Detach busy mounts lazily and take publications down instead of
    /// refusing (as `goldmount unmount --force`).
    #[arg(long)]
    force: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

/// Why a clone or unclone failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// No `[appliance] url`.
    #[error("no appliance is configured: set url (and token_file, or $GOLDMOUNT_APPLIANCE_TOKEN) in the [appliance] section of {config}")]
    NotConfigured {
        /// The config file looked at.
        config: String,
    },
    /// The config, the engine's state or the appliance client cannot be used.
    #[error("{0}")]
    Setup(String),
    /// No HTTP exchange with the appliance.
    #[error("cannot reach the appliance at {url}: {message}")]
    ApplianceDown {
        /// The URL called.
        url: String,
        /// What the transport said.
        message: String,
    },
    /// The appliance answered an error status.
    #[error("the appliance at {url} refused {what} ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// Its base URL.
        url: String,
        /// The step.
        what: String,
        /// HTTP status.
        status: u16,
        /// Its error code.
        code: Option<String>,
        /// Its message: what it expected and found.
        message: String,
    },
    /// Token, TLS or an answer that is not the appliance's.
    #[error("{what} at the appliance failed: {source}")]
    Appliance {
        /// The step.
        what: String,
        /// The client's error.
        #[source]
        source: RegistrationError,
    },
    /// The storage profile asked for is not in effect; nothing was made.
    #[error("{source}; nothing was created")]
    UnknownProfile {
        /// Which profiles there are.
        source: UnknownProfile,
        /// Who resolved it (goldmountd, or the config file).
        by: String,
    },
    /// The gold copy asked for is not on the appliance.
    #[error("the appliance at {url} has no gold copy {gold:?}; it has: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownGold {
        /// Its base URL.
        url: String,
        /// As asked.
        gold: String,
        /// What it has.
        known: Vec<String>,
    },
    /// The appliance does not know this host and registering failed.
    #[error("this host is not registered with the appliance at {url} and cannot register: {why}")]
    NotRegistered {
        /// Its base URL.
        url: String,
        /// Why the registration failed.
        why: String,
    },
    /// The request collides with what exists; nothing was changed.
    #[error("{message}")]
    Conflict {
        /// What collides.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// The record of what `clone` made cannot be read or written.
    #[error("clone record {}: {message}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Another goldmount is cloning or uncloning this volume.
    #[error("volume {volume} is being cloned or uncloned by another goldmount process")]
    Busy {
        /// The volume.
        volume: String,
    },
    /// A step failed; what this command had done was undone (or is listed
    /// as left).
    #[error("{source}; {}{}", if undone.is_empty() { "nothing needed undoing".to_string() } else { format!("undone: {}", undone.join(", ")) }, if left.is_empty() { String::new() } else { format!("; LEFT IN PLACE: {}", left.join(", ")) })]
    Failed {
        /// The original error.
        source: Box<CloneError>,
        /// The volume.
        volume: String,
        /// What was undone, newest first.
        undone: Vec<String>,
        /// What could not be undone.
        left: Vec<String>,
    },
}

impl CloneError {
    /// The exit status (`goldmount --help` lists them).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotConfigured { .. } | Self::Setup(_) | Self::NotRegistered { .. } => 2,
            Self::ApplianceDown { .. } | Self::Record { .. } => 1,
            Self::Refused { status, .. } => match status {
                404 => 4,
                409 => 3,
                400..=499 => 2,
                _ => 1,
            },
            Self::Appliance { source, .. } if source.is_retryable() => 1,
            Self::Appliance { .. } => 2,
            Self::UnknownGold { .. } | Self::UnknownProfile { .. } => 4,
            Self::Conflict { .. } => 3,
            Self::Engine(e) => e.kind.exit_code(),
            Self::Busy { .. } => 5,
            Self::Failed { source, .. } => source.exit_code(),
        }
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::ApplianceDown { url, .. } => Some(format!(
                "is goldmount-appliance serving at {url}? start it, or fix url in [appliance]; retrying is safe"
            )),
            Self::UnknownGold { .. } => Some(
                "use one of those names, or import the image first (goldmount-appliance gold import NAME SOURCE)"
                    .into(),
            ),
            Self::UnknownProfile { by, .. } => Some(format!(
                "use one of those ({by}), or add one: [profiles.NAME] in the config file, or PUT /v1/profiles/NAME on goldmountd"
            )),
            Self::NotRegistered { .. } => Some(
                "fix what the registration says, then run goldmount register (or goldmount status to see the identity)"
                    .into(),
            ),
            Self::Refused { status: 401, .. } => Some(
                "check the API token ([appliance] token_file or $GOLDMOUNT_APPLIANCE_TOKEN)".into(),
            ),
            Self::Conflict { hint, .. } => Some(hint.clone()),
            Self::Engine(e) => e.hint.clone(),
            Self::Busy { .. } => Some("try again when it finishes".into()),
            Self::Failed {
                source,
                volume,
                left,
                ..
            } => {
                let finish = (!left.is_empty())
                    .then(|| format!("goldmount unclone --volume {volume} finishes the teardown"));
                match (source.hint(), finish) {
                    (Some(h), Some(f)) => Some(format!("{h}; {f}")),
                    (h, f) => h.or(f),
                }
            }
            _ => None,
        }
    }
}

/// Who mounted the volume on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountedBy {
    /// goldmountd, called by the appliance's one-call mount.
    Goldmountd,
    /// This command, through the engine in-process.
    Goldmount,
}

/// What `goldmount clone` answers (the same again for the same request).
#[derive(Debug, Clone, Serialize)]
pub struct CloneAnswer {
    /// The volume.
    pub volume: String,
    /// The gold copy.
    pub gold: String,
    /// This host's name on the appliance.
    pub host: String,
    /// The clone on the appliance.
    pub clone: String,
    /// Who mounted it here.
    pub mounted_by: MountedBy,
    /// Mounted read-only.
    pub read_only: bool,
    /// The storage profile it was made with.
    pub profile: String,
    /// The clone's class on the appliance (the profile's), if any.
    pub class: Option<String>,
    /// Where the tree is: `--path` when given, else the volume path.
    pub path: PathBuf,
    /// The presentation document.
    pub presentation: Value,
    /// The engine's manifest.
    pub manifest: Value,
    /// The publication at `--path`.
    pub publication: Option<Value>,
    /// Step durations of the run that mounted it.
    pub timings: Timings,
    /// This call mounted it (false: it already was).
    pub created: bool,
}

/// What `goldmount unclone` answers.
#[derive(Debug, Clone, Serialize)]
pub struct UncloneAnswer {
    /// The volume.
    pub volume: String,
    /// No clone of that volume existed: nothing was done.
    pub not_cloned: bool,
    /// Who unmounted it on this host.
    pub mounted_by: Option<MountedBy>,
    /// The clone deleted.
    pub clone: Option<String>,
    /// What was undone, in order.
    pub undone: Vec<String>,
    /// Filesystems that may have lost data written since their last sync.
    pub data_loss: Vec<String>,
    /// The host side's unmount report.
    pub report: Value,
}

/// The config keys these commands read beside the engine's paths.
#[derive(Debug, Default, Deserialize)]
struct FileView {
    #[serde(default)]
    control: Option<ControlView>,
    #[serde(default)]
    appliance: Option<ApplianceView>,
}

#[derive(Debug, Default, Deserialize)]
struct ControlView {
    unix_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct ApplianceView {
    callback_url: Option<String>,
    server_ca: Option<PathBuf>,
}

/// Everything a run needs.
pub(crate) struct Ctx {
    engine: Engine,
    app: Appliance,
    socket: Option<PathBuf>,
    callback_url: Option<String>,
    callback_ca: Option<String>,
}

fn setup(config: Option<&Path>) -> Result<Ctx, CloneError> {
    let cfg = Config::load(config).map_err(|e| CloneError::Setup(format!("{e:#}")))?;
    let engine = Engine::open(cfg)?;
    super::recover::at_start(&engine)
        .map_err(|e| CloneError::Setup(format!("recovery at start: {e:#}")))?;
    let file = config.map(Path::to_path_buf).or_else(|| {
        let d = PathBuf::from(connector::config::DEFAULT_CONFIG);
        d.exists().then_some(d)
    });
    let view: FileView = match &file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CloneError::Setup(format!("reading config {}: {e}", p.display())))?;
            toml::from_str(&text)
                .map_err(|e| CloneError::Setup(format!("parsing config {}: {e}", p.display())))?
        }
        None => FileView::default(),
    };
    let client = super::register::configured_client(config)
        .map_err(CloneError::Setup)?
        .ok_or_else(|| CloneError::NotConfigured {
            config: file
                .unwrap_or_else(|| PathBuf::from(connector::config::DEFAULT_CONFIG))
                .display()
                .to_string(),
        })?;
    let a = view.appliance.unwrap_or_default();
    let callback_ca = match &a.server_ca {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            CloneError::Setup(format!(
                "reading [appliance] server_ca {}: {e}",
                p.display()
            ))
        })?),
        None => None,
    };
    Ok(Ctx {
        engine,
        app: Appliance::new(client),
        socket: view.control.and_then(|c| c.unix_socket),
        callback_url: a.callback_url,
        callback_ca,
    })
}

/// One clone/unclone of a volume at a time on this host (the engine's own
/// lock is taken by each engine call inside).
fn lock(engine: &Engine, volume: &VolumeName) -> Result<VolumeLock, CloneError> {
    let dir = engine.config().lock_dir().join("clones");
    VolumeLock::try_acquire(&dir, volume.as_str())
        .map_err(|e| CloneError::Setup(format!("{e:#}")))?
        .ok_or_else(|| CloneError::Busy {
            volume: volume.to_string(),
        })
}

/// The appliance's name rule (gold copies, clones, hosts).
fn check_gold(gold: &str) -> Result<(), CloneError> {
    let ok = !gold.is_empty()
        && gold.len() <= 64
        && gold != "."
        && gold != ".."
        && gold
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        return Ok(());
    }
    Err(EngineError::invalid(format!(
        "invalid gold copy name {gold:?}: expected 1-64 characters from [A-Za-z0-9_.-]"
    ))
    .into())
}

/// A publication target the engine would accept: checked before any step.
fn check_path(engine: &Engine, path: &Path) -> Result<(), CloneError> {
    let cfg = engine.config();
    let mut forbidden: Vec<PathBuf> = hostfs::bind::DEFAULT_FORBIDDEN
        .iter()
        .map(PathBuf::from)
        .collect();
    forbidden.push(cfg.volumes_root.clone());
    forbidden.push(cfg.run_dir.clone());
    hostfs::bind::Target::parse(path, &forbidden)
        .map(|_| ())
        .map_err(|e| EngineError::invalid(format!("--path: {e}")).into())
}

/// The request, checked.
pub(crate) struct Request {
    volume: VolumeName,
    gold: String,
    path: Option<PathBuf>,
    /// Resolved: the flag's, else the profile's.
    read_only: bool,
    /// The profile and the settings it stood for when resolved (a later
    /// change of the profile does not change a volume made with it).
    profile: String,
    settings: ProfileSettings,
    timeout: std::time::Duration,
}

/// `GOLD` or `GOLD@PROFILE`, with `--profile`: the gold copy and the
/// profile asked for (`None`: the default), both names checked.
fn split_gold(arg: &str, flag: Option<&str>) -> Result<(String, Option<String>), CloneError> {
    let (gold, at) = match arg.split_once('@') {
        Some((g, p)) => (g, Some(p)),
        None => (arg, None),
    };
    check_gold(gold)?;
    let profile = match (at, flag) {
        (Some(a), Some(f)) if a != f => {
            return Err(EngineError::invalid(format!(
                "{arg} names profile {a:?} but --profile is {f:?}: give one of them"
            ))
            .into())
        }
        (a, f) => a.or(f),
    };
    if let Some(p) = profile {
        check_name(p).map_err(|e| EngineError::invalid(format!("{arg}: {e}")))?;
    }
    Ok((gold.to_string(), profile.map(str::to_string)))
}

/// The profile `name` (default: `default`) as goldmountd resolves it when
/// it serves this engine, else as the config file (and goldmountd's stored
/// PUTs) give it.
fn resolve_profile(
    ctx: &Ctx,
    running: bool,
    name: Option<&str>,
    config: Option<&Path>,
) -> Result<Profile, CloneError> {
    let name = name.unwrap_or(DEFAULT_PROFILE);
    match (running, ctx.socket.as_deref()) {
        (true, Some(socket)) => daemon::profile(socket, name)
            .map_err(CloneError::Setup)?
            .map_err(|source| CloneError::UnknownProfile {
                source,
                by: format!("goldmountd's GET /v1/profiles on {}", socket.display()),
            }),
        _ => {
            let set = ctx
                .engine
                .config()
                .profiles(config)
                .map_err(|e| CloneError::Setup(format!("storage profiles: {e:#}")))?;
            set.resolve(Some(name))
                .map_err(|source| CloneError::UnknownProfile {
                    source,
                    by: "the config file's [profiles] and goldmountd's stored PUTs".into(),
                })
        }
    }
}

/// True when the appliance's one call (`POST /v1/mounts`: gold, host,
/// volume, path, read_only) can carry everything the profile sets.
fn one_call_carries(s: &ProfileSettings) -> bool {
    s.class.is_none() && !s.xfs_new_uuid && !s.zfs_reguid && !s.btrfs_new_fsid && !s.allow_suid_dev
}

fn fail(e: &CloneError) -> ExitCode {
    eprintln!("goldmount: {e}");
    if let Some(h) = e.hint() {
        eprintln!("  hint: {h}");
    }
    ExitCode::from(e.exit_code())
}

/// Runs `goldmount clone`.
pub fn run_clone(args: &CloneArgs, config: Option<&Path>) -> ExitCode {
    match clone(args, config) {
        Ok(a) => {
            print_clone(args.json, &a);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn clone(args: &CloneArgs, config: Option<&Path>) -> Result<CloneAnswer, CloneError> {
    let volume = super::volume(&args.volume)?;
    let (gold, wanted) = split_gold(&args.gold, args.profile.as_deref())?;
    let requested_ro = match (args.read_only, args.read_write) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let ctx = setup(config)?;
    if let Some(p) = &args.path {
        check_path(&ctx.engine, p)?;
    }
    let _lock = lock(&ctx.engine, &volume)?;
    let existing = record::load(&ctx.engine, volume.as_str())?;
    let running = match daemon::probe(ctx.socket.as_deref(), &ctx.engine.config().state_path) {
        daemon::Daemon::Running => true,
        daemon::Daemon::NotRunning(why) => {
            tracing::info!(%why, "goldmountd is not used: the steps are taken in-process");
            false
        }
    };
    // The profile, before anything is made (the host's registration
    // included): a record of the same request keeps what it was made with.
    let profile_name = wanted.as_deref().unwrap_or(DEFAULT_PROFILE);
    let settings = match existing.as_ref().filter(|r| r.profile == profile_name) {
        Some(r) => r.settings.clone(),
        None => resolve_profile(&ctx, running, wanted.as_deref(), config)?.settings,
    };
    let req = Request {
        volume,
        gold,
        path: args.path.clone(),
        read_only: settings.read_only(requested_ro),
        profile: profile_name.to_string(),
        settings,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    let host = ctx
        .app
        .this_host(ctx.callback_url.as_deref(), ctx.callback_ca.as_deref())?;
    let name = req.volume.as_str();

    // Made in-process before: the same request resumes or answers again.
    if let Some(rec) = existing {
        let same = rec.gold == req.gold
            && rec.path == req.path
            && rec.read_only == req.read_only
            && rec.profile == req.profile
            && rec.host == host
            && rec.appliance == ctx.app.url();
        if !same {
            return Err(CloneError::Conflict {
                message: format!(
                    "volume {name} is already cloned from gold copy {} with profile {} (clone {}, host {}, appliance {}) at {} (read-only {}); this request asks for gold copy {} with profile {} at {} (read-only {}); nothing was changed",
                    rec.gold,
                    rec.profile,
                    rec.clone,
                    rec.host,
                    rec.appliance,
                    shown(rec.path.as_deref()),
                    rec.read_only,
                    req.gold,
                    req.profile,
                    shown(req.path.as_deref()),
                    req.read_only
                ),
                hint: format!("goldmount unclone --volume {name} first, or use another volume name"),
            });
        }
        return local::clone(&ctx, &req, &host, Some(rec));
    }
    // Mounted by the appliance's one call before.
    if let Some(m) = ctx.app.mount(name)? {
        let same = m["gold"] == req.gold
            && m["host"] == host.as_str()
            && m["read_only"] == req.read_only
            && m["path"] == json!(req.path)
            && m["phase"] == "mounted"
            && one_call_carries(&req.settings);
        if same {
            return Ok(from_mount(&m, &req, false));
        }
        return Err(CloneError::Conflict {
            message: format!(
                "volume {name} is already on the appliance as a mount of gold copy {} on host {} at {} (read-only {}, {}, no profile settings); this request asks for gold copy {} at {} (read-only {}, profile {}); nothing was changed",
                m["gold"], m["host"], m["path"], m["read_only"], m["phase"],
                req.gold, shown(req.path.as_deref()), req.read_only, req.profile
            ),
            hint: format!("goldmount unclone --volume {name} first, or use another volume name"),
        });
    }
    if let Ok(v) = ctx.engine.get(&req.volume) {
        return Err(CloneError::Conflict {
            message: format!(
                "volume {name} already exists on this host ({:?}, from {}), not made by goldmount clone; nothing was changed",
                v.phase,
                v.devices
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: format!("use another volume name, or goldmount unmount --volume {name} first"),
        });
    }
    ctx.app.need_gold(&req.gold)?;
    if running && !one_call_carries(&req.settings) {
        eprintln!(
            "goldmount: note: profile {} sets {:?}, which the appliance's one call (POST /v1/mounts) cannot carry; taking the steps here",
            req.profile, req.settings
        );
        return local::clone(&ctx, &req, &host, None);
    }
    match running {
        true => {
            let mut body = json!({"gold": req.gold, "host": host, "volume": name,
                                  "read_only": req.read_only});
            if let Some(p) = &req.path {
                body["path"] = json!(p);
            }
            match ctx.app.post_mount(&body) {
                Ok(m) => Ok(from_mount(&m.body, &req, m.created)),
                // 422: the appliance cannot call goldmountd (no callback,
                // no client certificate) and did nothing.
                Err(CloneError::Refused {
                    status: 422,
                    message,
                    ..
                }) => {
                    eprintln!(
                        "goldmount: note: goldmountd runs but the appliance cannot drive it ({message}); taking the steps here"
                    );
                    local::clone(&ctx, &req, &host, None)
                }
                Err(e) => Err(e),
            }
        }
        false => local::clone(&ctx, &req, &host, None),
    }
}

fn shown(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string())
        .unwrap_or_else(|| "no path".into())
}

/// The answer for an appliance mount record (made with `req`'s profile,
/// one the call carries whole).
fn from_mount(m: &Value, req: &Request, created: bool) -> CloneAnswer {
    let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
    let ms = |k: &str| m["timings"][k].as_u64().unwrap_or(0);
    let publication = Some(m["publication"].clone()).filter(|p| !p.is_null());
    let path = publication
        .as_ref()
        .and_then(|p| p["target"].as_str())
        .or_else(|| m["manifest"]["path"].as_str())
        .map(PathBuf::from)
        .unwrap_or_default();
    CloneAnswer {
        volume: s("volume"),
        gold: s("gold"),
        host: s("host"),
        clone: s("clone"),
        mounted_by: MountedBy::Goldmountd,
        read_only: m["read_only"].as_bool().unwrap_or(false),
        profile: req.profile.clone(),
        class: None,
        path,
        presentation: m["presentation"].clone(),
        manifest: m["manifest"].clone(),
        publication,
        timings: Timings {
            clone_ms: ms("clone_ms"),
            present_ms: ms("present_ms"),
            mount_ms: ms("connector_ms"),
            total_ms: ms("total_ms"),
        },
        created,
    }
}

fn print_clone(json: bool, a: &CloneAnswer) {
    if json {
        match serde_json::to_string_pretty(a) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("goldmount: cannot encode the answer: {e}"),
        }
        return;
    }
    println!(
        "volume {} {} clone {} of gold copy {} (profile {}{}, host {}, {}){}",
        a.volume,
        if a.created {
            "mounted from"
        } else {
            "was already mounted from"
        },
        a.clone,
        a.gold,
        a.profile,
        a.class
            .as_deref()
            .map(|c| format!(", class {c}"))
            .unwrap_or_default(),
        a.host,
        match a.mounted_by {
            MountedBy::Goldmountd => "mounted by goldmountd",
            MountedBy::Goldmount => "mounted in-process",
        },
        if a.read_only { ", read-only" } else { "" }
    );
    println!("  path {}", a.path.display());
    if let Ok(m) = serde_json::from_value::<Manifest>(a.manifest.clone()) {
        super::mount::print_manifest(&m);
    }
    let t = &a.timings;
    println!(
        "  took: clone {} ms, present {} ms, mount {} ms, total {} ms",
        t.clone_ms, t.present_ms, t.mount_ms, t.total_ms
    );
}

/// Runs `goldmount unclone`.
pub fn run_unclone(args: &UncloneArgs, config: Option<&Path>) -> ExitCode {
    match unclone(args, config) {
        Ok(a) => {
            print_unclone(args.json, &a);
            for l in &a.data_loss {
                eprintln!("goldmount: WARNING: {l}");
            }
            if a.data_loss.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(6)
            }
        }
        Err(e) => fail(&e),
    }
}

fn unclone(args: &UncloneArgs, config: Option<&Path>) -> Result<UncloneAnswer, CloneError> {
    let volume = super::volume(&args.volume)?;
    let ctx = setup(config)?;
    let _lock = lock(&ctx.engine, &volume)?;
    let name = volume.as_str();
    if let Some(rec) = record::load(&ctx.engine, name)? {
        return local::unclone(&ctx, &volume, rec, args.force);
    }
    if let Some(m) = ctx.app.mount(name)? {
        let host = ctx.app.known_host()?;
        if host.as_deref() != m["host"].as_str() {
            return Err(CloneError::Conflict {
                message: format!(
                    "volume {name} on the appliance is mounted on host {}, not on this host ({}); nothing was changed",
                    m["host"],
                    host.as_deref().unwrap_or("not registered")
                ),
                hint: format!("run goldmount unclone on that host, or DELETE /v1/mounts/{name} on the appliance"),
            });
        }
        let u = ctx.app.delete_mount(name, args.force)?;
        let report = u["connector"].clone();
        let list = |k: &str| -> Vec<String> {
            report[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut undone = list("undone");
        let clone = u["clone"].as_str().map(str::to_string);
        if let Some(c) = &clone {
            undone.push(format!("the appliance unpresented and deleted clone {c}"));
        }
        return Ok(UncloneAnswer {
            volume: name.to_string(),
            not_cloned: false,
            mounted_by: Some(MountedBy::Goldmountd),
            clone,
            undone,
            data_loss: list("data_loss"),
            report,
        });
    }
    if let Ok(v) = ctx.engine.get(&volume) {
        return Err(CloneError::Conflict {
            message: format!(
                "volume {name} on this host ({:?}) was not made by goldmount clone; nothing was changed",
                v.phase
            ),
            hint: format!("goldmount unmount --volume {name} takes it down"),
        });
    }
    Ok(UncloneAnswer {
        volume: name.to_string(),
        not_cloned: true,
        mounted_by: None,
        clone: None,
        undone: Vec::new(),
        data_loss: Vec::new(),
        report: Value::Null,
    })
}

fn print_unclone(json: bool, a: &UncloneAnswer) {
    if json {
        match serde_json::to_string_pretty(a) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("goldmount: cannot encode the answer: {e}"),
        }
        return;
    }
    if a.not_cloned {
        println!(
            "volume {} is not a clone on this host; nothing to do",
            a.volume
        );
        return;
    }
    for u in &a.undone {
        println!("  {u}");
    }
    println!(
        "volume {} unmounted{}",
        a.volume,
        a.clone
            .as_deref()
            .map(|c| format!(", clone {c} unpresented and deleted"))
            .unwrap_or_default()
    );
}
