//! Is goldmountd serving this host's engine? Asked, not guessed: its
//! control API's `GET /healthz` on the root-only Unix socket the config
//! names (`[control] unix_socket`), and the state store it answers with
//! must be this CLI's — a daemon over another state is not this host's
//! engine. A pid file or a process name would say nothing about either.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(HEALTHZ_TIMEOUT))?;
    s.set_write_timeout(Some(HEALTHZ_TIMEOUT))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: goldmountd\r\nConnection: close\r\n\r\n")?;
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
    // The body is one JSON object (sent with a length, or in one chunk).
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b]).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    Ok((status, json))
}
