//! The legacy (v1) plugin protocol on a Unix socket: dockerd POSTs JSON
//! (without a Content-Type) to `/Plugin.Activate` and
//! `/VolumeDriver.*`; answers are JSON, failures `{"Err": "…"}` with
//! status 500 (Docker shows the text as `VolumeDriver.X: …`). Every driver
//! call runs on a blocking thread.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::UnixListener;

use crate::driver::{Driver, VolumeInfo};
use crate::error::PluginError;
use crate::observe::{Operation, Request};

/// The content type of plugin answers.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// Why the plugin cannot serve.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on the Docker plugin socket {}: {source}; {hint}", path.display())]
pub struct BindError {
    /// The socket.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
    /// What to do.
    pub hint: &'static str,
}

/// A request naming a volume (`Name`, plus `ID` for Mount/Unmount and
/// `Opts` for Create).
#[derive(Debug, Default, Deserialize)]
struct Req {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Opts", default)]
    opts: Option<BTreeMap<String, String>>,
}

fn answer(v: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], v.to_string()).into_response()
}

fn failure(msg: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({ "Err": msg }).to_string(),
    )
        .into_response()
}

fn parse(body: &Bytes) -> Result<Req, PluginError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Req::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        PluginError::Internal(format!(
            "the request could not be read ({e}); is this dockerd speaking the volume plugin protocol?"
        ))
    })
}

/// Parses the body, runs `f` on a blocking thread and answers `ok` of its
/// result, or `{"Err"}` (logged). The driver's observer is told of the
/// request's start and end on that thread, so a request whose client went
/// away is still counted to its end.
async fn handle<T, F>(
    op: Operation,
    d: Arc<Driver>,
    body: Bytes,
    f: F,
    ok: fn(T) -> Value,
) -> Response
where
    T: Send + 'static,
    F: FnOnce(&Driver, Req) -> Result<T, PluginError> + Send + 'static,
{
    let r = match parse(&body) {
        Ok(req) => tokio::task::spawn_blocking(move || {
            let seen = Request::start(d.observer().clone(), op, &req.name);
            let r = f(&d, req);
            seen.done(r.as_ref().map_or_else(PluginError::kind, |_| "ok"));
            r
        })
        .await
        .unwrap_or_else(|e| {
            Err(PluginError::Internal(format!(
                "the {} worker failed: {e}",
                op.as_str()
            )))
        }),
        Err(e) => {
            Request::start(d.observer().clone(), op, "").done(e.kind());
            Err(e)
        }
    };
    match r {
        Ok(v) => answer(ok(v)),
        Err(e) => {
            let msg = e.to_string();
            tracing::warn!(op = op.as_str(), error = %msg, "docker request failed");
            failure(msg)
        }
    }
}

fn volume_json(v: &VolumeInfo) -> Value {
    let mut o = json!({ "Name": v.name, "CreatedAt": v.created_at, "Status": v.status });
    if let Some(m) = &v.mountpoint {
        o["Mountpoint"] = json!(m);
    }
    o
}

fn empty(_: ()) -> Value {
    json!({})
}

async fn activate(State(d): State<Arc<Driver>>) -> Response {
    Request::start(d.observer().clone(), Operation::Activate, "").done("ok");
    answer(json!({ "Implements": ["VolumeDriver"] }))
}

async fn capabilities(State(d): State<Arc<Driver>>) -> Response {
    Request::start(d.observer().clone(), Operation::Capabilities, "").done("ok");
    answer(json!({ "Capabilities": { "Scope": "local" } }))
}

async fn create(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::Create,
        d,
        body,
        |d, r| d.create(&r.name, r.opts.as_ref()),
        empty,
    )
    .await
}

async fn remove(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(Operation::Remove, d, body, |d, r| d.remove(&r.name), empty).await
}

async fn mount(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::Mount,
        d,
        body,
        |d, r| d.mount(&r.name, &r.id),
        |p| json!({ "Mountpoint": p }),
    )
    .await
}

async fn unmount(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::Unmount,
        d,
        body,
        |d, r| d.unmount(&r.name, &r.id),
        empty,
    )
    .await
}

async fn path(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::Path,
        d,
        body,
        |d, r| d.path(&r.name),
        |p| json!({ "Mountpoint": p.map(|p| p.display().to_string()).unwrap_or_default() }),
    )
    .await
}

async fn get(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::Get,
        d,
        body,
        |d, r| d.get(&r.name),
        |v| json!({ "Volume": volume_json(&v) }),
    )
    .await
}

async fn list(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    handle(
        Operation::List,
        d,
        body,
        |d, _| d.list(),
        |vs| json!({ "Volumes": vs.iter().map(volume_json).collect::<Vec<_>>() }),
    )
    .await
}

async fn unknown(uri: axum::http::Uri) -> Response {
    tracing::info!(path = uri.path(), "docker plugin: unknown endpoint");
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({ "Err": format!("the goldmount plugin implements only VolumeDriver, not {}", uri.path()) }).to_string(),
    )
        .into_response()
}

/// Every endpoint of the plugin.
pub fn router(driver: Arc<Driver>) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/VolumeDriver.Capabilities", post(capabilities))
        .route("/VolumeDriver.Create", post(create))
        .route("/VolumeDriver.Remove", post(remove))
        .route("/VolumeDriver.Mount", post(mount))
        .route("/VolumeDriver.Unmount", post(unmount))
        .route("/VolumeDriver.Path", post(path))
        .route("/VolumeDriver.Get", post(get))
        .route("/VolumeDriver.List", post(list))
        .fallback(unknown)
        .with_state(driver)
}

/// The bound plugin socket.
pub struct PluginServer {
    listener: UnixListener,
    path: PathBuf,
    app: Router,
}

/// Binds `p` with mode 0600, replacing a stale socket of an earlier run
/// but never another file or a live plugin's socket.
fn bind_unix(p: &Path) -> Result<UnixListener, BindError> {
    let err = |source, hint| BindError {
        path: p.to_path_buf(),
        source,
        hint,
    };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e, "check [docker] socket's directory"))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if !m.file_type().is_socket() {
            return Err(err(
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                "a file that is not a socket is there; [docker] socket must name a free path",
            ));
        }
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Err(err(
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
                "another plugin serves on it; stop it or give this one another [docker] name",
            ));
        }
        std::fs::remove_file(p).map_err(|e| err(e, "remove the stale socket by hand"))?;
    }
    let l = UnixListener::bind(p).map_err(|e| err(e, "check [docker] socket"))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(e, "cannot make the socket mode 0600"))?;
    Ok(l)
}

impl PluginServer {
    /// Binds the socket at `socket` for `driver`. Must run inside a tokio runtime.
    pub fn bind(socket: &Path, driver: Arc<Driver>) -> Result<Self, BindError> {
        Ok(Self {
            listener: bind_unix(socket)?,
            path: socket.to_path_buf(),
            app: router(driver),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `shutdown` completes; then lets requests in flight
    /// finish (up to `grace`) and removes the socket. A Mount cut short
    /// here is finished or rolled back by the engine's recovery.
    pub async fn run(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => {
                        let conn = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(self.app.clone()));
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(error = %e, "docker plugin connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "docker plugin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let _ = std::fs::remove_file(&self.path);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("docker plugin: requests still running at the end of the grace period");
        }
    }
}
