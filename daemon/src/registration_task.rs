//! Keeps this host registered with the appliance while the daemon runs:
//! registers at start, again every `[appliance] interval_secs` (an FC port
//! that came online, a new initiator name, a moved callback reach the
//! appliance without anyone asking), and after a failure with a jittered
//! exponential backoff while the appliance is down or answers 5xx.
//!
//! It runs on its own thread with blocking HTTP: the engine and the
//! control API never wait for it, and a hung appliance holds nothing but
//! this thread. Its state is process-wide ([`snapshot`]), shown in
//! `/healthz` and in the metrics ([`RegistrationMetrics`]).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registration::{
    read_token_file, register, ApplianceClient, Backoff, Change, HostIdentity, Registration,
    RegistrationError,
};
use serde::Serialize;

use crate::config::ApplianceConfig;
use crate::metrics::RegistrationMetrics;

/// Where registration stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No `[appliance]` section: the daemon does not register.
    #[default]
    Disabled,
    /// Started; the first attempt has not finished.
    Pending,
    /// The last attempt succeeded.
    Registered,
    /// The last attempt failed in a way that may pass (appliance down, 5xx);
    /// retrying with backoff.
    Retrying,
    /// The last attempt failed in a way that needs a person (a refused
    /// token, a bad CA, the appliance refused the request); tried again at
    /// the normal interval.
    Failed,
}

/// The `registration` object of `/healthz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// See [`State`].
    pub state: State,
    /// The appliance's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
    /// The appliance's name for this host (after a success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Unix seconds of the last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<u64>,
    /// The last failure's message (kept until the next success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Attempts since the daemon started.
    pub attempts: u64,
    /// Consecutive failures (0 when registered).
    pub failures: u32,
    /// Unix seconds of the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
}

fn cell() -> &'static Mutex<Snapshot> {
    static CELL: OnceLock<Mutex<Snapshot>> = OnceLock::new();
    CELL.get_or_init(Mutex::default)
}

/// The registration state now (`disabled` when no task was started).
pub fn snapshot() -> Snapshot {
    cell()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn update(f: impl FnOnce(&mut Snapshot)) {
    f(&mut cell().lock().unwrap_or_else(PoisonError::into_inner));
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The running task; dropping it stops the thread at its next wait (an
/// HTTP call in progress finishes first, bounded by the client's 30 s).
pub struct RegistrationTask {
    _stop: mpsc::Sender<()>,
}

/// Starts registering with the appliance `cfg` names.
pub fn start(cfg: ApplianceConfig) -> std::io::Result<RegistrationTask> {
    let (tx, rx) = mpsc::channel::<()>();
    update(|s| {
        *s = Snapshot {
            state: State::Pending,
            appliance: Some(cfg.url.clone()),
            ..Snapshot::default()
        }
    });
    std::thread::Builder::new()
        .name("registration".into())
        .spawn(move || run(&cfg, &rx))?;
    Ok(RegistrationTask { _stop: tx })
}

fn run(cfg: &ApplianceConfig, stop: &mpsc::Receiver<()>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), cfg.retry_max());
    tracing::info!(appliance = %cfg.url, interval_secs = cfg.interval_secs, "registering with the appliance");
    if cfg.callback_url.is_none() {
        tracing::warn!("[appliance] callback_url is not set: the appliance cannot ask this daemon before it takes a clone away");
    }
    loop {
        let result = attempt(cfg);
        let delay = match &result {
            Ok(_) => {
                backoff.reset();
                cfg.interval()
            }
            Err(e) if e.is_retryable() => backoff.next_delay(),
            Err(_) => {
                backoff.reset();
                cfg.interval()
            }
        };
        record(&result, delay);
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// One registration with what the config names now (the token and CA
/// files are read each time, so a rotated token needs no restart).
fn attempt(cfg: &ApplianceConfig) -> Result<Registration, RegistrationError> {
    let token = cfg.token_file.as_deref().map(read_token_file).transpose()?;
    let client = ApplianceClient::new(&cfg.url, cfg.ca.as_deref(), token)?;
    let ca_pem = match &cfg.server_ca {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            RegistrationError::BadCallbackCa {
                path: p.clone(),
                message: format!(
                    "cannot read it ({e}); [appliance] server_ca must name the CA that signed control.cert"
                ),
            }
        })?),
        None => None,
    };
    register(
        &client,
        &HostIdentity::collect(),
        cfg.callback_url.as_deref(),
        ca_pem.as_deref(),
    )
}

fn record(result: &Result<Registration, RegistrationError>, delay: Duration) {
    let next = unix_now() + delay.as_secs();
    match result {
        Ok(r) => {
            RegistrationMetrics::global().attempt("ok", true);
            match &r.change {
                Change::Unchanged => {
                    tracing::debug!(host = %r.host.name, "registration unchanged")
                }
                change => tracing::info!(
                    host = %r.host.name,
                    ?change,
                    iqns = ?r.host.iqns,
                    wwpns = ?r.host.wwpns,
                    "registered with the appliance"
                ),
            }
            update(|s| {
                s.state = State::Registered;
                s.host = Some(r.host.name.clone());
                s.last_ok = Some(unix_now());
                s.last_error = None;
                s.attempts += 1;
                s.failures = 0;
                s.next_attempt = Some(next);
            });
        }
        Err(e) => {
            RegistrationMetrics::global().attempt(e.kind(), false);
            tracing::warn!(error = %e, retry_in_secs = delay.as_secs_f64(), "registration failed");
            update(|s| {
                s.state = if e.is_retryable() {
                    State::Retrying
                } else {
                    State::Failed
                };
                s.last_error = Some(e.to_string());
                s.attempts += 1;
                s.failures = s.failures.saturating_add(1);
                s.next_attempt = Some(next);
            });
        }
    }
}
