//! The control API's routes. Handlers only translate: a request is checked
//! completely (name, body, target) before the engine is called, the engine
//! runs on a blocking thread, and its result or error kind becomes a status
//! and a JSON body. Nothing here decides anything about volumes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use connector::engine::{
    DeviceSource, Engine, MountOptions, MountRequest, Publication, UnmountReport, VolumeName,
    VolumeStatus,
};
use connector::manifest::Manifest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::inflight::{InFlight, Slot};
use crate::metrics::Metrics;

pub mod profiles;

/// The OpenAPI description of exactly these routes.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// The publication id used when a PUT names a target but no id.
pub const DEFAULT_PUBLICATION_ID: &str = "control-api";

/// What every handler shares.
pub struct AppState {
    /// The engine (its calls run on blocking threads only).
    pub engine: Arc<Engine>,
    /// Volumes with an operation running.
    pub inflight: InFlight,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// When the daemon started (for `uptime_seconds`).
    pub started: Instant,
    /// The storage profiles (shared with the Docker plugin).
    pub profiles: Arc<dockerplugin::profile::Profiles>,
}

impl AppState {
    /// State over `engine` and `profiles`, started now.
    pub fn new(engine: Arc<Engine>, profiles: Arc<dockerplugin::profile::Profiles>) -> Self {
        Self {
            engine,
            profiles,
            inflight: InFlight::default(),
            metrics: Metrics::default(),
            started: Instant::now(),
        }
    }
}

/// Every route of the control API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi))
        .route("/v1/volumes", get(list_volumes))
        .route(
            "/v1/volumes/{name}",
            get(get_volume).put(put_volume).delete(delete_volume),
        )
        .route("/v1/profiles", get(profiles::list))
        .route(
            "/v1/profiles/{name}",
            get(profiles::get)
                .put(profiles::put)
                .delete(profiles::delete),
        )
        .fallback(no_route)
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(format!("{method} {}", uri.path()))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        OPENAPI_YAML,
    )
        .into_response()
}

/// Runs `f` on a blocking thread, holding `slot` (if any) until it returns,
/// and counts it in the metrics as `kind`.
async fn run<T, F>(
    s: &AppState,
    kind: &'static str,
    slot: Option<Slot>,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
{
    let engine = s.engine.clone();
    let metrics = s.metrics.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let t0 = Instant::now();
        let r = f(&engine);
        let result = match &r {
            Ok(_) => "ok",
            Err(e) => e.kind_label(),
        };
        metrics.operation(kind, result, Some(t0.elapsed()));
        r
    })
    .await;
    joined.unwrap_or_else(|e| {
        s.metrics.operation(kind, "internal", None);
        Err(ApiError::internal(format!(
            "the {kind} operation failed unexpectedly: {e}"
        )))
    })
}

fn volume_name(
    s: &AppState,
    kind: &'static str,
    p: Result<Path<String>, PathRejection>,
) -> Result<VolumeName, ApiError> {
    let checked = match p {
        Ok(Path(n)) => VolumeName::parse(&n).map_err(ApiError::from),
        Err(e) => Err(ApiError::invalid(
            format!("bad volume name in the path: {}", e.body_text()),
            "a volume name is 1-64 characters from [A-Za-z0-9_.-]",
        )),
    };
    checked.inspect_err(|e| refused(s, kind, e))
}

/// Counts and logs a request refused before the engine was called.
fn refused(s: &AppState, kind: &'static str, e: &ApiError) {
    s.metrics.operation(kind, e.kind_label(), None);
    tracing::info!(operation = kind, kind = e.kind_label(), error = %e.message, "request refused");
}

fn take_slot(s: &AppState, kind: &'static str, v: &VolumeName) -> Result<Slot, ApiError> {
    s.inflight.try_take(v.as_str()).ok_or_else(|| {
        s.metrics.operation(kind, "busy", None);
        ApiError::busy(v.as_str())
    })
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    state_path: PathBuf,
    state_dir: Option<PathBuf>,
    volumes_root: PathBuf,
    volumes: Option<usize>,
    error: Option<ApiError>,
    /// Registration with the appliance (never affects `status`).
    registration: crate::registration_task::Snapshot,
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    let cfg = s.engine.config().clone();
    let engine = s.engine.clone();
    let listed = tokio::task::spawn_blocking(move || engine.list())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
        .and_then(|r| r.map_err(ApiError::from));
    let (status, code, volumes, error) = match listed {
        Ok(v) => ("ok", StatusCode::OK, Some(v.len()), None),
        Err(e) => (
            "unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            Some(e),
        ),
    };
    let body = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: s.started.elapsed().as_secs(),
        state_dir: cfg.state_path.parent().map(PathBuf::from),
        state_path: cfg.state_path,
        volumes_root: cfg.volumes_root,
        volumes,
        error,
        registration: crate::registration_task::snapshot(),
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let engine = s.engine.clone();
    match tokio::task::spawn_blocking(move || engine.list()).await {
        Ok(Ok(v)) => {
            let pubs = v.iter().map(|s| s.publications.len()).sum();
            s.metrics.set_counts(v.len(), pubs);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot count volumes"),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count volumes"),
    }
    match s.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("cannot encode metrics: {e}")).into_response(),
    }
}

async fn list_volumes(State(s): State<Arc<AppState>>) -> Result<Json<Vec<VolumeStatus>>, ApiError> {
    run(&s, "list", None, |e| e.list().map_err(ApiError::from))
        .await
        .map(Json)
}

async fn get_volume(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<VolumeStatus>, ApiError> {
    let v = volume_name(&s, "get", name)?;
    run(&s, "get", None, move |e| e.get(&v).map_err(ApiError::from))
        .await
        .map(Json)
}

/// The body of `PUT /v1/volumes/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutVolume {
    /// Where the data comes from (passed to the engine as they are).
    pub sources: Vec<DeviceSource>,
    /// Mount choices; a missing key is `false`.
    #[serde(default)]
    pub options: MountOptions,
    /// Publish the volume's tree here after mounting.
    #[serde(default)]
    pub target: Option<PathBuf>,
    /// The consumer id of that publication ([`DEFAULT_PUBLICATION_ID`] if absent).
    #[serde(default)]
    pub publication_id: Option<String>,
}

/// The answer to a PUT.
#[derive(Debug, Serialize)]
pub struct PutAnswer {
    /// The volume.
    pub volume: String,
    /// True when this request mounted it (false: it was already mounted so).
    pub created: bool,
    /// What is mounted where.
    pub manifest: Manifest,
    /// The publication, when a target was given.
    pub publication: Option<Publication>,
}

const BODY_HINT: &str =
    "send a JSON object {\"sources\": [...], \"options\": {...}, \"target\": \"/abs/path\", \"publication_id\": \"id\"}; see GET /openapi.yaml";

/// Checks a PUT body completely: JSON, no unknown key at any depth, a
/// target that may be published at. Nothing is done before this passes.
pub fn parse_put(
    body: &[u8],
    engine_cfg: &connector::config::Config,
) -> Result<PutVolume, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("the request body is empty", BODY_HINT));
    }
    let mut raw: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("the request body is not valid JSON: {e}"),
            BODY_HINT,
        )
    })?;
    let Some(obj) = raw.as_object_mut() else {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            BODY_HINT,
        ));
    };
    // Every mount option defaults to false; the engine's type wants them all.
    if let Some(Value::Object(given)) = obj.get("options") {
        let mut full = serde_json::to_value(MountOptions::default())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Value::Object(defaults) = &mut full {
            for (k, v) in given {
                defaults.insert(k.clone(), v.clone());
            }
        }
        obj.insert("options".into(), full);
    }
    let put: PutVolume = typed_body(raw.clone(), "request body", BODY_HINT)?;
    // serde ignores unknown keys inside the engine's types; a typo there
    // (`"read_olny": true`) must not mount read-write.
    let mut unknown = Vec::new();
    if let Some(given) = raw.get("sources") {
        unknown.extend(ignored_keys(given, &put.sources, "sources"));
    }
    if let Some(given) = raw.get("options") {
        unknown.extend(ignored_keys(given, &put.options, "options"));
    }
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            format!("unknown field(s) in the request body: {}", unknown.join(", ")),
            "remove or correct them; see GET /openapi.yaml for the fields of each source kind and the options",
        ));
    }
    if put.publication_id.is_some() && put.target.is_none() {
        return Err(ApiError::invalid(
            "publication_id given without target",
            "add the absolute path to publish at as \"target\", or drop publication_id",
        ));
    }
    if let Some(id) = &put.publication_id {
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("invalid publication_id {id:?}: expected 1-256 characters, no control characters"),
                "use a short name for the consumer",
            ));
        }
    }
    if let Some(t) = &put.target {
        let mut forbidden: Vec<PathBuf> = hostfs::bind::DEFAULT_FORBIDDEN
            .iter()
            .map(PathBuf::from)
            .collect();
        forbidden.push(engine_cfg.volumes_root.clone());
        forbidden.push(engine_cfg.run_dir.clone());
        hostfs::bind::Target::parse(t, &forbidden).map_err(|e| {
            ApiError::invalid(
                format!("invalid target: {e}"),
                "give an absolute, normalised path of a dedicated directory such as /mnt/<name>",
            )
        })?;
    }
    Ok(put)
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn shown(prefix: &str, path: &[Seg]) -> String {
    let mut out = prefix.to_string();
    for s in path {
        match s {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Keys of `given` that deserialising into `typed` ignored, as
/// `prefix.a[0].b`. A key that does not come back out of the typed value
/// is a candidate; it was understood after all when leaving it out gives
/// another value (a field serde never serialises, like a password).
fn ignored_keys<T>(given: &Value, typed: &T, prefix: &str) -> Vec<String>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let Ok(kept) = serde_json::to_value(typed) else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    missing_keys(given, &kept, &mut Vec::new(), &mut candidates);
    candidates
        .into_iter()
        .filter(|path| {
            let mut without = given.clone();
            remove_at(&mut without, path);
            matches!(serde_json::from_value::<T>(without), Ok(t) if t == *typed)
        })
        .map(|path| shown(prefix, &path))
        .collect()
}

/// Paths of keys in `given` (at any depth) that `kept` lacks; `null`
/// values are not counted (an absent optional field serialises as nothing).
fn missing_keys(given: &Value, kept: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, gv) in g {
                at.push(Seg::Key(key.clone()));
                match k.get(key) {
                    Some(kv) => missing_keys(gv, kv, at, out),
                    None if gv.is_null() => {}
                    None => out.push(at.clone()),
                }
                at.pop();
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                at.push(Seg::Index(i));
                missing_keys(gv, kv, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn remove_at(v: &mut Value, path: &[Seg]) {
    match path {
        [] => {}
        [Seg::Key(k)] => {
            if let Value::Object(m) = v {
                m.remove(k);
            }
        }
        [first, rest @ ..] => {
            let next = match (first, v) {
                (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
                (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
                _ => None,
            };
            if let Some(n) = next {
                remove_at(n, rest);
            }
        }
    }
}

async fn put_volume(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PutAnswer>), ApiError> {
    const KIND: &str = "mount";
    let volume = volume_name(&s, KIND, name)?;
    let parsed = body
        .map_err(|e| {
            ApiError::invalid(
                format!("cannot read the request body: {}", e.body_text()),
                BODY_HINT,
            )
        })
        .and_then(|b| parse_put(&b, s.engine.config()))
        .inspect_err(|e| refused(&s, KIND, e))?;
    let slot = take_slot(&s, KIND, &volume)?;
    let name = volume.to_string();
    let answer = run(&s, KIND, Some(slot), move |e| {
        mount_and_publish(e, volume, parsed)
    })
    .await;
    match &answer {
        Ok(a) => tracing::info!(volume = %name, created = a.created, "mount"),
        Err(e) => {
            tracing::warn!(volume = %name, kind = e.kind_label(), error = %e.message, "mount refused or failed")
        }
    }
    let answer = answer?;
    let created = answer.created;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)))
}

/// Mounts, then publishes when a target was given. A publication that
/// fails after this request mounted the volume unmounts it again, so a
/// failed PUT leaves nothing behind.
fn mount_and_publish(
    e: &Engine,
    volume: VolumeName,
    put: PutVolume,
) -> Result<PutAnswer, ApiError> {
    let req = MountRequest {
        volume: volume.clone(),
        sources: put.sources,
        options: put.options,
    };
    let read_only = req.options.read_only;
    let mounted = e.mount(&req)?;
    let mut created = mounted.created();
    let manifest = mounted.into_inner();
    let publication = match put.target {
        None => None,
        Some(target) => {
            let id = put
                .publication_id
                .unwrap_or_else(|| DEFAULT_PUBLICATION_ID.to_string());
            // The same PUT again must not add a reference each time.
            let existing = e
                .get(&volume)?
                .publications
                .into_iter()
                .find(|p| p.id == id && p.target == target && p.read_only == read_only);
            match existing {
                Some(p) => Some(p),
                None => match e.publish(&volume, &id, &target, read_only) {
                    Ok(o) => {
                        created |= o.created();
                        Some(o.into_inner())
                    }
                    Err(err) if created => {
                        let mut err = ApiError::from(err);
                        match e.unmount(&volume, false) {
                            Ok(_) => {
                                err.message = format!(
                                    "{}; the volume this request mounted was unmounted again",
                                    err.message
                                )
                            }
                            Err(u) => {
                                err.message = format!(
                                    "{}; unmounting the volume this request mounted failed too: {}",
                                    err.message, u.message
                                )
                            }
                        }
                        return Err(err);
                    }
                    Err(err) => return Err(err.into()),
                },
            }
        }
    };
    Ok(PutAnswer {
        volume: volume.to_string(),
        created,
        manifest,
        publication,
    })
}

/// The query of `DELETE /v1/volumes/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Take down every publication and detach busy mounts lazily.
    #[serde(default)]
    pub force: bool,
}

async fn delete_volume(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<UnmountReport>, ApiError> {
    const KIND: &str = "unmount";
    let volume = volume_name(&s, KIND, name)?;
    let Query(q) = query
        .map_err(|e| {
            ApiError::invalid(
                format!("invalid query: {}", e.body_text()),
                "the only parameter is force=true or force=false",
            )
        })
        .inspect_err(|e| refused(&s, KIND, e))?;
    let slot = take_slot(&s, KIND, &volume)?;
    let name = volume.to_string();
    let r = run(&s, KIND, Some(slot), move |e| {
        if !q.force {
            // A complete teardown: the volume's publications go first —
            // each one refused (409, with who holds it) while in use.
            if let Ok(st) = e.get(&volume) {
                for p in st.publications {
                    for _ in 0..p.refs.max(1) {
                        if e.unpublish(&volume, &p.id, false)
                            .map_err(ApiError::from)?
                            .into_inner()
                            == 0
                        {
                            break;
                        }
                    }
                }
            }
        }
        e.unmount(&volume, q.force).map_err(ApiError::from)
    })
    .await;
    match &r {
        Ok(rep) => {
            tracing::info!(volume = %name, force = q.force, not_mounted = rep.not_mounted, "unmount")
        }
        Err(e) => {
            tracing::warn!(volume = %name, kind = e.kind_label(), error = %e.message, "unmount refused or failed")
        }
    }
    r.map(Json)
}

/// Deserialises a JSON body into `T`; the error names the field path that
/// was wrong (`invalid request body at options.read_only: …`).
pub(crate) fn typed_body<T: serde::de::DeserializeOwned>(
    raw: Value,
    what: &str,
    hint: &'static str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!(" at {at}")
        };
        ApiError::invalid(format!("invalid {what}{at}: {}", e.into_inner()), hint)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn cfg() -> connector::config::Config {
        connector::config::Config::default()
    }

    fn err(body: &str) -> String {
        parse_put(body.as_bytes(), &cfg()).unwrap_err().message
    }

    #[test]
    fn a_minimal_body_gets_default_options() {
        let p = parse_put(
            br#"{"sources":[{"kind":"device","path":"/dev/loop9"}]}"#,
            &cfg(),
        )
        .unwrap();
        assert_eq!(p.options, MountOptions::default());
        let p = parse_put(
            br#"{"sources":[{"kind":"device","path":"/x"}],"options":{"read_only":true},"target":"/mnt/a","publication_id":"c1"}"#,
            &cfg(),
        )
        .unwrap();
        assert!(p.options.read_only && !p.options.regen_xfs_uuid);
        assert_eq!(p.target.unwrap(), PathBuf::from("/mnt/a"));
    }

    /// A field serde reads but never writes (a password) is not unknown.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Secretive {
        user: String,
        #[serde(default, skip_serializing)]
        password: Option<String>,
        #[serde(default)]
        inner: Vec<Secretive>,
    }

    #[test]
    fn write_only_fields_are_known_and_typos_are_not() {
        let given = serde_json::json!({
            "user": "u", "password": "p", "pasword": "typo",
            "inner": [{"user": "v", "password": "q", "extra": 1}]
        });
        let typed: Secretive = serde_json::from_value(given.clone()).unwrap();
        assert_eq!(typed.password.as_deref(), Some("p"));
        assert_eq!(
            ignored_keys(&given, &typed, "s"),
            ["s.inner[0].extra", "s.pasword"]
        );
    }

    #[test]
    fn a_presentation_with_chap_secrets_is_accepted() {
        let body = br#"{"sources":[{"kind":"iscsi","presentation":{"target_iqn":"iqn.2026-01.x:t","portals":["192.0.2.1:3260"],"lun":1,"wwn":"naa.60014051","chap":{"username":"u","password":"p"}},"timeout":30}]}"#;
        let p = parse_put(body, &cfg()).unwrap();
        assert_eq!(p.sources.len(), 1);
        let typo = String::from_utf8_lossy(body).replace("\"timeout\"", "\"timeuot\"");
        let e = parse_put(typo.as_bytes(), &cfg()).unwrap_err().message;
        assert!(e.contains("sources[0].timeuot"), "{e}");
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert!(err("").contains("empty"));
        assert!(err("{\"sources\":").contains("not valid JSON"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err(r#"{"sources":[],"color":"red"}"#).contains("color"));
        assert!(err(r#"{"options":{}}"#).contains("sources"));
        assert!(err(r#"{"sources":[{"kind":"tape"}]}"#).contains("tape"));
        let e = err(r#"{"sources":[{"kind":"device","path":"/x","pth":"/y"}]}"#);
        assert!(e.contains("sources[0].pth"), "{e}");
        let e = err(r#"{"sources":[],"options":{"read_olny":true}}"#);
        assert!(e.contains("options.read_olny"), "{e}");
        assert!(err(r#"{"sources":[],"target":"mnt/a"}"#).contains("absolute"));
        assert!(err(r#"{"sources":[],"target":"/etc/x"}"#).contains("/etc"));
        let e = err(r#"{"sources":[],"target":"/var/lib/goldmount/volumes/x"}"#);
        assert!(e.contains("invalid target"), "{e}");
        assert!(err(r#"{"sources":[],"publication_id":"a"}"#).contains("without target"));
        assert!(
            err(r#"{"sources":[],"target":"/mnt/a","publication_id":""}"#)
                .contains("publication_id")
        );
    }
}
