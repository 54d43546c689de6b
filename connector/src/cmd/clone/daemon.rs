//! Is goldmountd serving this host's engine? Asked, not guessed: its
//! control API's `GET /healthz` on the root-only Unix socket the config
//! names (`[control] unix_socket`), and the state store it answers with
//! must be this CLI's — a daemon over another state is not this host's
//! engine. A pid file or a process name would say nothing about either.
//! The same socket answers which storage profile a name stands for, so
//! `GOLD@profile` means what the daemon's `GET /v1/profiles` shows.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector::profile::{Origin, Profile, ProfileSettings, UnknownProfile};

/// How long the socket may take to answer `/healthz`.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(3);

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// goldmountd answered healthy over this CLI's state store.
    Running,
    /// It does not run (or cannot be asked); why, for the output.
    NotRunning(String),
}

/// Asks the goldmountd at `socket` (if any) whether it serves `state_path`.
pub fn probe(socket: Option<&Path>, state_path: &Path) -> Daemon {
    let Some(socket) = socket else {
        return Daemon::NotRunning(
            "no [control] unix_socket in the config: goldmountd cannot be asked".into(),
        );
    };
    match healthz(socket) {
        Ok((200, body)) => {
            let served = body
                .get("state_path")
                .and_then(|v| v.as_str())
                .map(PathBuf::from);
            if served.as_deref() == Some(state_path) {
                Daemon::Running
            } else {
                Daemon::NotRunning(format!(
                    "the goldmountd at {} serves the state store {} (this command uses {})",
                    socket.display(),
                    served
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "?".into()),
                    state_path.display()
                ))
            }
        }
        Ok((status, _)) => Daemon::NotRunning(format!(
            "goldmountd at {} answered /healthz with {status}",
            socket.display()
        )),
        Err(e) => Daemon::NotRunning(format!(
            "goldmountd does not answer on {}: {e}",
            socket.display()
        )),
    }
}

/// One `GET /healthz` over the Unix socket: the status and the JSON body.
fn healthz(socket: &Path) -> std::io::Result<(u16, serde_json::Value)> {
    get(socket, "/healthz")
}

/// The storage profile `name` as the goldmountd at `socket` resolves it
/// from its own set (what its `GET /v1/profiles` shows): `Ok(Err(_))`
/// naming the known ones when it has none of that name.
pub fn profile(socket: &Path, name: &str) -> Result<Result<Profile, UnknownProfile>, String> {
    let asked = |what: &str, e: &dyn std::fmt::Display| {
        format!("asking goldmountd at {} for {what}: {e}", socket.display())
    };
    let path = format!("/v1/profiles/{name}");
    let (status, body) = get(socket, &path).map_err(|e| asked(&path, &e))?;
    match status {
        200 => serde_json::from_value::<ProfileView>(body)
            .map(|v| {
                Ok(Profile {
                    name: v.name,
                    origin: v.origin,
                    settings: v.settings,
                })
            })
            .map_err(|e| asked(&path, &format!("the answer is not a profile ({e})"))),
        404 => {
            let (status, list) =
                get(socket, "/v1/profiles").map_err(|e| asked("/v1/profiles", &e))?;
            let known: Vec<String> = serde_json::from_value::<Vec<ProfileView>>(list)
                .map_err(|e| {
                    asked(
                        "/v1/profiles",
                        &format!("{status}, not a list of profiles ({e})"),
                    )
                })?
                .into_iter()
                .map(|p| p.name)
                .collect();
            Ok(Err(UnknownProfile {
                name: name.to_string(),
                known,
            }))
        }
        _ => Err(asked(
            &path,
            &format!(
                "it answered {status}: {}",
                body["message"].as_str().unwrap_or("(no message)")
            ),
        )),
    }
}

/// A profile as the control API shows it.
#[derive(serde::Deserialize)]
struct ProfileView {
    name: String,
    origin: Origin,
    settings: ProfileSettings,
}

/// One `GET path` over the Unix socket: the status and the JSON body.
fn get(socket: &Path, path: &str) -> std::io::Result<(u16, serde_json::Value)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(HEALTHZ_TIMEOUT))?;
    s.set_write_timeout(Some(HEALTHZ_TIMEOUT))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: goldmountd\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // The body is one JSON object or array (sent with a length, or in one
    // chunk: the chunk size is hex digits, never a bracket).
    let start = body.find(['{', '[']);
    let end = match start.map(|a| body.as_bytes()[a]) {
        Some(b'[') => body.rfind(']'),
        _ => body.rfind('}'),
    };
    let json = match (start, end) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b]).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    Ok((status, json))
}
