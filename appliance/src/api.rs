//! The REST API (JSON over HTTP, axum). Handlers only translate: they parse,
//! run the [`Appliance`] call on a blocking thread (image copies and losetup
//! block), and map results to status codes. The contract is `openapi.yaml`.
//!
//! Every `/v1` request needs the bearer token ([`crate::auth`]);
//! `/healthz` and `/openapi.yaml` are open. [`serve`] speaks HTTPS when
//! given a rustls configuration ([`crate::tls::TlsListener`]), plain HTTP
//! otherwise (the binary allows that only on loopback addresses).

use crate::auth::{self, Token};
use crate::error::{Error, ErrorBody};
use crate::model::{
    CreateClone, HostQuery, ImportGold, MountRequest, Present, PutHost, RegisterHost,
};
use crate::service::{Appliance, Outcome};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The OpenAPI document, served at `GET /openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

type Shared = Arc<Appliance>;

/// An [`Error`] as an HTTP response with the JSON error body.
pub struct ApiError(pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::from(&self.0);
        let status = StatusCode::from_u16(body.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        } else {
            tracing::debug!(error = %self.0, %status, "request refused");
        }
        (status, Json(body)).into_response()
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|rej| {
        ApiError(Error::BadRequest(format!(
            "unexpected query parameters (see /openapi.yaml): {}",
            rej.body_text()
        )))
    })
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|rej| {
        ApiError(Error::BadRequest(format!(
            "expected a JSON body (Content-Type: application/json) matching the schema in \
             /openapi.yaml: {}",
            rej.body_text()
        )))
    })
}

async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(Error::Backend(format!("worker task failed: {e}")))),
    }
}

fn created<T: Serialize>((v, o): (T, Outcome)) -> Response {
    let status = match o {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Existing => StatusCode::OK,
    };
    (status, Json(v)).into_response()
}

/// Builds the router over an opened appliance; `/v1` needs `token`.
pub fn router(app: Shared, token: Token) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.yaml", get(openapi))
        .route("/v1/hosts", get(list_hosts).post(register_host))
        .route("/v1/hosts/{name}", get(get_host).put(put_host))
        .route("/v1/gold-copies", get(list_golds).post(import_gold))
        .route("/v1/gold-copies/{name}", get(get_gold))
        .route("/v1/clones", get(list_clones).post(create_clone))
        .route("/v1/clones/{name}", get(get_clone).delete(delete_clone))
        .route("/v1/presentations", get(list_presentations).post(present))
        .route(
            "/v1/presentations/{clone}",
            get(get_presentation).delete(unpresent),
        )
        .route("/v1/mounts", get(list_mounts).post(mount))
        .route("/v1/mounts/{volume}", get(get_mount).delete(unmount))
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(ErrorBody::new(
                    "method not allowed on this path; see GET /openapi.yaml".to_string(),
                    crate::error::ErrorCode::BadRequest,
                )),
            )
        })
        .fallback(|| async {
            ApiError(Error::NotFound {
                what: "route",
                name: "see GET /openapi.yaml for the API".to_string(),
            })
        })
        .with_state(app)
        // Outermost, so unknown /v1 paths and methods are refused too.
        .layer(axum::middleware::from_fn_with_state(token, v1_needs_token))
}

async fn v1_needs_token(
    State(token): State<Token>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let p = req.uri().path();
    if p == "/v1" || p.starts_with("/v1/") {
        auth::require_token(State(token), req, next).await
    } else {
        next.run(req).await
    }
}

/// Serves the API on `listener` until `shutdown` resolves: HTTPS with
/// `tls`, plain HTTP without.
pub async fn serve(
    app: Shared,
    token: Token,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app, token);
    match tls {
        Some(cfg) => {
            let l = crate::tls::TlsListener::new(listener, cfg)?;
            axum::serve(l, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

async fn healthz(State(app): State<Shared>) -> Response {
    Json(serde_json::json!({"status": "ok", "transport": app.transport()})).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

async fn register_host(
    State(app): State<Shared>,
    body: Result<Json<RegisterHost>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.register_host(req)).await.map(created)
}

async fn list_hosts(
    State(app): State<Shared>,
    q: Result<Query<HostQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    blocking(move || app.find_hosts(&q))
        .await
        .map(|v| Json(v).into_response())
}

async fn put_host(
    State(app): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<PutHost>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.put_host(&name, req))
        .await
        .map(created)
}

/// `?force=true` on the deletes that check with the host first.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

async fn get_host(
    State(app): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.get_host(&name))
        .await
        .map(|v| Json(v).into_response())
}

async fn import_gold(
    State(app): State<Shared>,
    body: Result<Json<ImportGold>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.import_gold(req)).await.map(created)
}

async fn list_golds(State(app): State<Shared>) -> Result<Response, ApiError> {
    blocking(move || app.list_golds())
        .await
        .map(|v| Json(v).into_response())
}

async fn get_gold(
    State(app): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.get_gold(&name))
        .await
        .map(|v| Json(v).into_response())
}

async fn create_clone(
    State(app): State<Shared>,
    body: Result<Json<CreateClone>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.create_clone(req)).await.map(created)
}

async fn list_clones(State(app): State<Shared>) -> Result<Response, ApiError> {
    blocking(move || app.list_clones())
        .await
        .map(|v| Json(v).into_response())
}

async fn get_clone(
    State(app): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.get_clone(&name))
        .await
        .map(|v| Json(v).into_response())
}

async fn delete_clone(
    State(app): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.delete_clone(&name))
        .await
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn present(
    State(app): State<Shared>,
    body: Result<Json<Present>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.present(req)).await.map(created)
}

async fn list_presentations(State(app): State<Shared>) -> Result<Response, ApiError> {
    blocking(move || app.list_presentations())
        .await
        .map(|v| Json(v).into_response())
}

async fn get_presentation(
    State(app): State<Shared>,
    Path(clone): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.get_presentation(&clone))
        .await
        .map(|v| Json(v).into_response())
}

async fn unpresent(
    State(app): State<Shared>,
    Path(clone): Path<String>,
    q: Result<Query<ForceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let force = query(q)?.force;
    blocking(move || app.unpresent(&clone, force))
        .await
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn mount(
    State(app): State<Shared>,
    body: Result<Json<MountRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    blocking(move || app.mount(req)).await.map(created)
}

async fn list_mounts(State(app): State<Shared>) -> Result<Response, ApiError> {
    blocking(move || app.list_mounts())
        .await
        .map(|v| Json(v).into_response())
}

async fn get_mount(
    State(app): State<Shared>,
    Path(volume): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || app.get_mount(&volume))
        .await
        .map(|v| Json(v).into_response())
}

async fn unmount(
    State(app): State<Shared>,
    Path(volume): Path<String>,
    q: Result<Query<ForceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let force = query(q)?.force;
    blocking(move || app.unmount(&volume, force))
        .await
        .map(|v| Json(v).into_response())
}
