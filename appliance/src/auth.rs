//! Bearer-token authentication of the `/v1/*` API.
//!
//! The appliance copies disks and hands them to hosts: every API call is a
//! privileged one, so every `/v1/*` request must carry
//! `Authorization: Bearer <token>`. The token is read from a file the admin
//! names, or generated on first start into `<data-dir>/api-token` (mode
//! 0600). Tokens are compared in constant time so a caller cannot learn a
//! prefix from response timing.

use crate::error::{ErrorBody, ErrorCode};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the generated token inside the data directory.
pub const TOKEN_FILE_NAME: &str = "api-token";

/// Shortest token accepted from a file (16 characters; generated tokens are
/// 64 hex digits).
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the API token could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read, written or checked.
    #[error("API token file {}: {context}: {source}", path.display())]
    Io {
        /// The token file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable token.
    #[error("API token file {}: expected one line of at least {MIN_TOKEN_LEN} printable \
             characters (no spaces), found {found}; write e.g. `openssl rand -hex 32` into it", path.display())]
    Malformed {
        /// The token file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// Other users may read the file.
    #[error("API token file {} has mode {mode:o}: other users can read the token; \
             run `chmod 600 {}`", path.display(), path.display())]
    WorldReadable {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The API token and where it came from.
#[derive(Clone)]
pub struct Token {
    secret: Arc<str>,
    /// The file it was read from (or generated into).
    pub path: PathBuf,
    /// True when this start generated it.
    pub generated: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("path", &self.path)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A token from a string (tests, and the in-process server).
    pub fn from_secret(secret: &str, path: PathBuf) -> Self {
        Token {
            secret: secret.into(),
            path,
            generated: false,
        }
    }

    /// The secret, to hand to a client.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Reads `--token-file`, or (when `None`) `<data_dir>/api-token`,
    /// generating the latter with 32 random bytes (hex) and mode 0600 when it
    /// does not exist. A named file must exist: a typo must not silently
    /// start the server with a new token nobody knows.
    pub fn load_or_generate(
        token_file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Self, TokenError> {
        match token_file {
            Some(p) => read_token(p).map(|secret| Token {
                secret: secret.into(),
                path: p.to_path_buf(),
                generated: false,
            }),
            None => {
                let p = data_dir.join(TOKEN_FILE_NAME);
                match generate_into(&p) {
                    Ok(secret) => Ok(Token {
                        secret: secret.into(),
                        path: p,
                        generated: true,
                    }),
                    Err(TokenError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        read_token(&p).map(|secret| Token {
                            secret: secret.into(),
                            path: p,
                            generated: false,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Whether `presented` is this token (constant time in the content).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), presented.as_bytes())
    }
}

/// Reads a token file: one line, no whitespace inside, at least
/// [`MIN_TOKEN_LEN`] characters, not readable by other users.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let io = |context, source| TokenError::Io {
        path: path.to_path_buf(),
        context,
        source,
    };
    let f = std::fs::File::open(path).map_err(|e| io("opening", e))?;
    let mode = f
        .metadata()
        .map_err(|e| io("reading its metadata", e))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        return Err(TokenError::WorldReadable {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut text = String::new();
    f.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| io("reading", e))?;
    parse_token(&text).ok_or_else(|| TokenError::Malformed {
        path: path.to_path_buf(),
        found: describe(&text),
    })
}

/// A token as a client reads it (from a file or the environment): the same
/// rules without the permission check.
pub fn parse_token(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = t.len() >= MIN_TOKEN_LEN && t.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| t.to_string())
}

fn describe(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        "an empty file".to_string()
    } else if t.bytes().any(|b| !b.is_ascii_graphic()) {
        "spaces, line breaks or non-ASCII characters inside".to_string()
    } else {
        format!("{} characters", t.len())
    }
}

fn generate_into(path: &Path) -> Result<String, TokenError> {
    let io = |context, source| TokenError::Io {
        path: path.to_path_buf(),
        context,
        source,
    };
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| io("reading 32 random bytes from /dev/urandom", e))?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("creating", e))?;
    let written = f
        .write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(io("writing", e));
    }
    Ok(secret)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

/// The 401 answer: JSON error body and a `WWW-Authenticate` challenge.
fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"goldmount-appliance\"",
        )],
        Json(ErrorBody::new(
            format!(
                "{why}; every /v1 request needs the header `Authorization: Bearer <token>` \
                 with the appliance's API token (the server logs the token file's path at start)"
            ),
            ErrorCode::Unauthorized,
        )),
    )
        .into_response()
}

/// Axum middleware: passes requests with the right bearer token, answers
/// 401 otherwise. Mounted on the `/v1` routes only.
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized("no Authorization header");
    };
    let Ok(value) = value.to_str() else {
        return unauthorized("the Authorization header is not ASCII");
    };
    let presented = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return unauthorized("the Authorization header is not of the form `Bearer <token>`"),
    };
    if !token.matches(presented) {
        tracing::info!(path = %req.uri().path(), "API request with a wrong token refused");
        return unauthorized("wrong API token");
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn generated_once_then_read_back_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("gm-tok-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t1 = Token::load_or_generate(None, &dir).unwrap();
        assert!(t1.generated);
        assert_eq!(t1.secret().len(), 64);
        let meta = std::fs::metadata(dir.join(TOKEN_FILE_NAME)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let t2 = Token::load_or_generate(None, &dir).unwrap();
        assert!(!t2.generated);
        assert_eq!(t1.secret(), t2.secret());
        assert!(t2.matches(t1.secret()));
        assert!(!t2.matches(&t1.secret()[1..]));

        let named = dir.join("named");
        assert!(matches!(
            Token::load_or_generate(Some(&named), &dir),
            Err(TokenError::Io { .. })
        ));
        std::fs::write(&named, "short\n").unwrap();
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Token::load_or_generate(Some(&named), &dir).unwrap_err();
        assert!(e.to_string().contains("5 characters"), "{e}");
        std::fs::write(&named, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::load_or_generate(Some(&named), &dir).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o640)).unwrap();
        let t = Token::load_or_generate(Some(&named), &dir).unwrap();
        assert_eq!(t.secret(), "0123456789abcdef0123");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
