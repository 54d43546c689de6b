//! Calls that change a host: `PUT` and `DELETE /v1/volumes/{volume}` on its
//! connector's control API (goldmountd), for the one-call mount.
//!
//! What matters to the caller is not only the answer but, when there is
//! none, whether the host may have acted on the request: a connection that
//! was never made means the host did nothing (the appliance may undo its
//! own steps at once), a request that timed out or broke mid-way may still
//! be running on the host (the appliance must ask before it unpresents).

use crate::error::ConnectorAnswer;
use serde_json::Value;
use std::time::Duration;

/// Why a call to a connector gave no success answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The request never reached the connector (connection refused, no
    /// route, name not resolved, TLS handshake refused): the host did nothing.
    NotReached(String),
    /// No answer within the time: the host may still be working on it.
    TimedOut(String),
    /// The connector answered with an error status (its body passed on).
    Refused(ConnectorAnswer),
    /// Anything else (connection broken mid-request, an answer that is not
    /// JSON): the host may have acted on the request.
    Broken(String),
}

impl CallError {
    /// A sentence for a person.
    pub fn describe(&self) -> String {
        match self {
            CallError::NotReached(m) => format!("could not reach it: {m}"),
            CallError::TimedOut(m) => format!("it did not answer in time: {m}"),
            CallError::Refused(a) => format!(
                "it answered {}: {}",
                a.status,
                a.body
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| a.body.to_string(), str::to_string)
            ),
            CallError::Broken(m) => format!("the exchange broke: {m}"),
        }
    }
}

/// `PUT {base}/v1/volumes/{volume}` with `body`; the connector's answer
/// (`{volume, created, manifest, publication}`) on 200/201.
pub fn put_volume(
    agent: &ureq::Agent,
    base: &str,
    volume: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, CallError> {
    let url = format!("{base}/v1/volumes/{volume}");
    let r = agent
        .put(&url)
        .timeout(timeout)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    answer(&url, r)
}

/// `GET {base}/v1/volumes/{volume}`: the connector's status of the volume
/// (`{volume, phase, manifest, publications, sources, …}`), `None` when it
/// has no such volume (404) — how the appliance learns what the host did
/// with a request whose answer was lost.
pub fn get_volume(
    agent: &ureq::Agent,
    base: &str,
    volume: &str,
    timeout: Duration,
) -> Result<Option<Value>, CallError> {
    let url = format!("{base}/v1/volumes/{volume}");
    match answer(&url, agent.get(&url).timeout(timeout).call()) {
        Ok(v) => Ok(Some(v)),
        Err(CallError::Refused(a)) if a.status == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// `DELETE {base}/v1/volumes/{volume}[?force=true]`; the connector's
/// unmount report on 200.
pub fn delete_volume(
    agent: &ureq::Agent,
    base: &str,
    volume: &str,
    force: bool,
    timeout: Duration,
) -> Result<Value, CallError> {
    let url = format!("{base}/v1/volumes/{volume}?force={force}");
    let r = agent.delete(&url).timeout(timeout).call();
    answer(&url, r)
}

fn answer(url: &str, r: Result<ureq::Response, ureq::Error>) -> Result<Value, CallError> {
    match r {
        Ok(resp) => resp.into_json::<Value>().map_err(|e| {
            CallError::Broken(format!(
                "{url} answered success with a body that is not JSON: {e}"
            ))
        }),
        Err(ureq::Error::Status(status, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let body = serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|_| Value::String(text.chars().take(2000).collect()));
            Err(CallError::Refused(ConnectorAnswer {
                url: url.to_string(),
                status,
                body,
            }))
        }
        Err(ureq::Error::Transport(t)) => Err(classify(url, &t)),
    }
}

/// Sorts a transport failure by whether the request can have arrived.
fn classify(url: &str, t: &ureq::Transport) -> CallError {
    use ureq::ErrorKind as K;
    let msg = match t.to_string() {
        m if m.contains(url) => m,
        m => format!("{url}: {m}"),
    };
    match t.kind() {
        K::Dns
        | K::ConnectionFailed
        | K::InvalidUrl
        | K::UnknownScheme
        | K::InsecureRequestHttpsOnly => return CallError::NotReached(msg),
        _ => {}
    }
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>());
    if let Some(e) = io {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                return CallError::TimedOut(msg)
            }
            std::io::ErrorKind::ConnectionRefused => return CallError::NotReached(msg),
            _ => {}
        }
    }
    let lower = msg.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        return CallError::TimedOut(msg);
    }
    // The server rejects a handshake before it reads any request.
    if lower.contains("certificate") || lower.contains("handshake") || lower.contains("alert") {
        return CallError::NotReached(msg);
    }
    CallError::Broken(msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_closed_port_is_not_reached_and_a_silent_server_times_out() {
        let agent = ureq::AgentBuilder::new().build();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = put_volume(
            &agent,
            &format!("http://127.0.0.1:{port}"),
            "v",
            &Value::Null,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(e, CallError::NotReached(_)), "{e:?}");

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = silent.accept().unwrap();
            let mut b = [0u8; 256];
            let _ = s.read(&mut b);
            std::thread::sleep(Duration::from_millis(1500));
        });
        let e = delete_volume(
            &agent,
            &format!("http://127.0.0.1:{port}"),
            "v",
            false,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, CallError::TimedOut(_)), "{e:?}");
        t.join().unwrap();
    }

    #[test]
    fn an_error_answer_is_passed_on() {
        let srv = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = srv.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = srv.accept().unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let body = r#"{"kind":"invalid","message":"no","hint":null}"#;
            write!(
                s,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        let agent = ureq::AgentBuilder::new().build();
        let e = put_volume(
            &agent,
            &format!("http://127.0.0.1:{port}"),
            "v",
            &serde_json::json!({}),
            Duration::from_secs(5),
        )
        .unwrap_err();
        t.join().unwrap();
        let CallError::Refused(a) = &e else {
            panic!("{e:?}")
        };
        assert_eq!((a.status, a.body["kind"].as_str()), (400, Some("invalid")));
        assert!(e.describe().contains("400: no"), "{}", e.describe());
    }
}
