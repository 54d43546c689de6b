//! `GET /v1/profiles`, `GET/PUT/DELETE /v1/profiles/{name}`: the storage
//! profiles in effect (the config's `[profiles.NAME]`, the built-in
//! `default`, and what PUT stored at run time), shared with the Docker
//! plugin so a PUT applies to the next `docker volume create` at once. A
//! PUT replaces one profile whole and persists it before answering; a
//! DELETE removes what PUT stored and persists that before answering —
//! the config's `[profiles.NAME]` (or, for `default`, the built-in empty
//! one) under it is in effect again. Volumes already created keep the
//! settings resolved when they were created.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use connector::engine::ErrorKind;
use dockerplugin::profile::{
    check_name, Deleted, Profile, ProfileError, ProfileSettings, Profiles, UnknownProfile,
};

use super::{refused, AppState};
use crate::error::ApiError;

const SETTINGS_HINT: &str = "send a JSON object with any of class (a short name), read_only, xfs_new_uuid, zfs_reguid, btrfs_new_fsid, allow_suid_dev (booleans); see GET /openapi.yaml";

fn not_found(name: &str, profiles: &Profiles) -> ApiError {
    ApiError {
        kind: ErrorKind::NotFound,
        message: format!(
            "unknown profile {name:?}: known profiles are {}",
            profiles.known().join(", ")
        ),
        hint: Some(
            "use one of those, or create it with PUT /v1/profiles/{name} (or [profiles.NAME] in the config)"
                .into(),
        ),
    }
}

fn from_profile_error(e: ProfileError) -> ApiError {
    match e {
        ProfileError::BadName { .. } | ProfileError::BadSettings { .. } => {
            ApiError::invalid(e.to_string(), SETTINGS_HINT)
        }
        ProfileError::Unknown(UnknownProfile { name, known }) => ApiError {
            kind: ErrorKind::NotFound,
            message: format!(
                "unknown profile {name:?}: known profiles are {}",
                known.join(", ")
            ),
            hint: Some("GET /v1/profiles lists them; a DELETE of a deleted profile changes nothing".into()),
        },
        ProfileError::NotStored { .. } => ApiError {
            kind: ErrorKind::Conflict,
            message: format!("{e}; nothing was changed"),
            hint: Some(
                "remove or change [profiles.NAME] in goldmountd's config and restart it, or PUT /v1/profiles/{name} to override it"
                    .into(),
            ),
        },
        ProfileError::Config { .. } | ProfileError::State { .. } => {
            ApiError::internal(e.to_string())
        }
    }
}

fn profile_name(
    s: &AppState,
    kind: &'static str,
    p: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let checked = match p {
        Ok(Path(n)) => check_name(&n)
            .map(|()| n)
            .map_err(|e| ApiError::invalid(e.to_string(), "name a profile in the path")),
        Err(e) => Err(ApiError::invalid(
            format!("bad profile name in the path: {}", e.body_text()),
            "a profile name is 1-64 characters from [A-Za-z0-9_.-]",
        )),
    };
    checked.inspect_err(|e| refused(s, kind, e))
}

/// Checks a PUT body completely: a JSON object of known keys only.
pub fn parse_settings(body: &[u8]) -> Result<ProfileSettings, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty",
            SETTINGS_HINT,
        ));
    }
    let raw: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("the request body is not valid JSON: {e}"),
            SETTINGS_HINT,
        )
    })?;
    // serde would take a struct from an array of its fields too.
    if !raw.is_object() {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            SETTINGS_HINT,
        ));
    }
    let settings: ProfileSettings = super::typed_body(raw, "profile settings", SETTINGS_HINT)?;
    Ok(settings)
}

/// `GET /v1/profiles`.
pub async fn list(State(s): State<Arc<AppState>>) -> Json<Vec<Profile>> {
    s.metrics.operation("profile_list", "ok", None);
    Json(s.profiles.list())
}

/// `GET /v1/profiles/{name}`.
pub async fn get(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Profile>, ApiError> {
    const KIND: &str = "profile_get";
    let name = profile_name(&s, KIND, name)?;
    let r = s
        .profiles
        .get(&name)
        .ok_or_else(|| not_found(&name, &s.profiles));
    s.metrics.operation(
        KIND,
        r.as_ref().map_or_else(ApiError::kind_label, |_| "ok"),
        None,
    );
    r.map(Json)
}

/// `PUT /v1/profiles/{name}`: 201 when it adds a profile, 200 when it
/// replaces one.
pub async fn put(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    const KIND: &str = "profile_put";
    let name = profile_name(&s, KIND, name)?;
    let settings = body
        .map_err(|e| {
            ApiError::invalid(
                format!("cannot read the request body: {}", e.body_text()),
                SETTINGS_HINT,
            )
        })
        .and_then(|b| parse_settings(&b))
        .and_then(|st| st.check(&name).map(|()| st).map_err(from_profile_error))
        .inspect_err(|e| refused(&s, KIND, e))?;
    let profiles = s.profiles.clone();
    let n = name.clone();
    // The file is written and synced: not on the async threads.
    let r = tokio::task::spawn_blocking(move || profiles.put(&n, settings))
        .await
        .map_err(|e| ApiError::internal(format!("the profile update failed unexpectedly: {e}")))
        .and_then(|r| r.map_err(from_profile_error));
    s.metrics.operation(
        KIND,
        r.as_ref().map_or_else(ApiError::kind_label, |_| "ok"),
        None,
    );
    let (profile, created) = r.inspect_err(|e| {
        tracing::warn!(profile = %name, error = %e.message, "profile update failed");
    })?;
    tracing::info!(profile = %name, created, settings = ?profile.settings, file = ?s.profiles.state_path(), "profile stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(profile)))
}

/// `DELETE /v1/profiles/{name}`: 200 with what was removed and what is in
/// effect under the name now; 404 when no profile of that name is in
/// effect (so a repeated DELETE changes nothing and says so); 409 for a
/// profile only the config file (or the built-in `default`) gives.
pub async fn delete(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    const KIND: &str = "profile_delete";
    let name = profile_name(&s, KIND, name)?;
    let profiles = s.profiles.clone();
    let n = name.clone();
    // The file is written and synced: not on the async threads.
    let r = tokio::task::spawn_blocking(move || profiles.delete(&n))
        .await
        .map_err(|e| ApiError::internal(format!("the profile removal failed unexpectedly: {e}")))
        .and_then(|r| r.map_err(from_profile_error));
    s.metrics.operation(
        KIND,
        r.as_ref().map_or_else(ApiError::kind_label, |_| "ok"),
        None,
    );
    let deleted = r.inspect_err(|e| {
        tracing::info!(profile = %name, kind = e.kind_label(), error = %e.message, "profile delete refused or failed");
    })?;
    tracing::info!(profile = %name, now = ?deleted.in_effect.as_ref().map(|p| p.origin), file = ?s.profiles.state_path(), "profile deleted");
    Ok(Json(deleted))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn put_bodies_are_checked_completely() {
        let s = parse_settings(br#"{"class":"gold","read_only":true}"#).unwrap();
        assert_eq!(s.class.as_deref(), Some("gold"));
        assert!(s.read_only && !s.allow_suid_dev);
        assert_eq!(parse_settings(b"{}").unwrap(), ProfileSettings::default());
        let err = |b: &str| parse_settings(b.as_bytes()).unwrap_err().message;
        assert!(err("").contains("empty"));
        assert!(err("[]").contains("must be a JSON object"));
        assert!(err("[true]").contains("must be a JSON object"));
        assert!(err("null").contains("must be a JSON object"));
        assert!(err(r#"{"read_olny":true}"#).contains("read_olny"));
        let e = err(r#"{"read_only":"yes"}"#);
        assert!(e.contains("at read_only"), "{e}");
        assert!(err("{} {}").contains("not valid JSON"));
    }
}
