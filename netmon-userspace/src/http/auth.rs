//! Who may ask: the Host/Origin rules, bearer tokens and dashboard sessions.
//!
//! Tokens: `netmon token create --name NAME` makes 32 random bytes (shown
//! once, hex, prefixed `netmon_`) and stores only their SHA-256 in the
//! token file (JSON, mode 0600, replaced atomically). Plain SHA-256 is
//! enough for 256-bit random secrets (no dictionary to guess from). A
//! revoked token stays in the file with its revocation time, so using it
//! gets 403 (known but revoked) rather than 401 (unknown). The daemon
//! re-reads the file when its modification time or size changes, so
//! creating or revoking takes effect without a restart.
//!
//! Sessions: `POST /api/v1/login` with `{"token": "..."}` sets the cookie
//! [`COOKIE`] (HttpOnly, SameSite=Strict, Path=/, Secure under TLS); the
//! daemon keeps only the SHA-256 of the session id, in memory, with the
//! token it came from: revoking the token ends its sessions. At most
//! [`crate::http::MAX_SESSIONS`], each for [`crate::http::SESSION_TTL`].
use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use sha2::Digest as _;

use crate::http::api::{ApiFailure, json_body};
use crate::http::{AppState, MAX_SESSIONS, SESSION_TTL, is_loopback};
use crate::wire::{Login, LoginReply, SCHEMA_VERSION};

/// The session cookie's name.
pub const COOKIE: &str = "netmon_session";
/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "netmon_";

/// Errors of the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a token file.
    #[error("{} is not a netmon token file: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A name is in use or not allowed.
    #[error("{0}")]
    Name(String),
    /// No such token.
    #[error("no active token named {0:?}")]
    NotFound(String),
    /// No randomness.
    #[error("no random bytes from the OS: {0}")]
    Random(String),
}

/// One stored token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenEntry {
    /// Name given at creation.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Created, unix ms.
    pub created_unix_ms: u64,
    /// Revoked, unix ms (null: active).
    #[serde(default)]
    pub revoked_unix_ms: Option<u64>,
}

/// The token file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Every token ever created, revoked ones included.
    pub tokens: Vec<TokenEntry>,
}

/// SHA-256 of `secret`, hex.
#[must_use]
pub fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn random_hex(n: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Reads the token file; a missing file has no tokens.
///
/// # Errors
/// [`TokenError::Io`], [`TokenError::Corrupt`].
pub fn load(path: &Path) -> Result<TokenFile, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile {
            schema_version: SCHEMA_VERSION,
            tokens: Vec::new(),
        }),
        Err(source) => Err(TokenError::Io {
            op: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

fn save(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let io = |op| {
        move |source| TokenError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("writing"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod"))?;
    let text = serde_json::to_vec_pretty(file).map_err(|e| TokenError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    f.write_all(&text)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io("writing"))?;
    std::fs::rename(&tmp, path).map_err(io("replacing"))
}

/// Creates a token named `name`; returns the secret (shown once).
///
/// # Errors
/// A bad or taken name, file errors.
pub fn create(path: &Path, name: &str) -> Result<String, TokenError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(TokenError::Name(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    let mut file = load(path)?;
    if file
        .tokens
        .iter()
        .any(|t| t.name == name && t.revoked_unix_ms.is_none())
    {
        return Err(TokenError::Name(format!(
            "a token named {name:?} exists; revoke it first or choose another name"
        )));
    }
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    file.schema_version = SCHEMA_VERSION;
    file.tokens.push(TokenEntry {
        name: name.to_owned(),
        sha256: hash(&secret),
        created_unix_ms: crate::clock::now_rfc3339().1,
        revoked_unix_ms: None,
    });
    save(path, &file)?;
    Ok(secret)
}

/// Revokes the active token named `name`.
///
/// # Errors
/// [`TokenError::NotFound`], file errors.
pub fn revoke(path: &Path, name: &str) -> Result<(), TokenError> {
    let mut file = load(path)?;
    let now = crate::clock::now_rfc3339().1;
    let entry = file
        .tokens
        .iter_mut()
        .find(|t| t.name == name && t.revoked_unix_ms.is_none())
        .ok_or_else(|| TokenError::NotFound(name.to_owned()))?;
    entry.revoked_unix_ms = Some(now);
    save(path, &file)
}

/// What a presented secret is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An active token, by its hash.
    Valid(String),
    /// A revoked token.
    Revoked,
    /// Not a token.
    Unknown,
}

struct Session {
    token_sha256: String,
    expires: Instant,
}

/// The daemon's view of tokens and sessions.
pub struct Auth {
    path: PathBuf,
    cache: Mutex<Option<((SystemTime, u64), TokenFile)>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    /// Tokens from `path`.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Judges a token by its hash (re-reading the file when it changed).
    fn judge_hash(&self, sha: &str) -> Result<Verdict, TokenError> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = matches!((&*cache, stamp), (Some((s, _)), Some(now)) if *s == now);
        if !fresh {
            let file = load(&self.path)?;
            *cache = stamp.map(|s| (s, file.clone()));
            if stamp.is_none() {
                return Ok(Verdict::Unknown);
            }
        }
        let Some((_, file)) = cache.as_ref() else {
            return Ok(Verdict::Unknown);
        };
        Ok(
            match file
                .tokens
                .iter()
                .find(|t| t.sha256.as_bytes() == sha.as_bytes())
            {
                Some(t) if t.revoked_unix_ms.is_none() => Verdict::Valid(t.sha256.clone()),
                Some(_) => Verdict::Revoked,
                None => Verdict::Unknown,
            },
        )
    }

    /// Judges a presented token.
    ///
    /// # Errors
    /// The token file cannot be read.
    pub fn judge(&self, secret: &str) -> Result<Verdict, TokenError> {
        self.judge_hash(&hash(secret))
    }

    /// Opens a session for an active token; returns the session id.
    fn open_session(&self, token_sha256: String) -> Result<String, TokenError> {
        let id = random_hex(32)?;
        let mut s = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            hash(&id),
            Session {
                token_sha256,
                expires: now + SESSION_TTL,
            },
        );
        Ok(id)
    }

    /// Judges a session id: valid while unexpired and its token active.
    fn judge_session(&self, id: &str) -> Result<Verdict, TokenError> {
        let token = {
            let s = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            match s.get(&hash(id)) {
                Some(v) if v.expires > Instant::now() => v.token_sha256.clone(),
                _ => return Ok(Verdict::Unknown),
            }
        };
        self.judge_hash(&token)
    }

    fn close_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash(id));
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Routes that work without login: the dashboard's files and the login.
#[must_use]
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/") || path == "/api/v1/login" || path == "/hosts"
}

/// The host part of a `Host` header or an origin's authority.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// True for a loopback name or address in a `Host` header.
#[must_use]
pub fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse().is_ok_and(is_loopback)
}

/// The checks of [`crate::http`]'s security rules, before any handler runs.
///
/// # Errors
/// The response to send instead.
pub fn check(state: &AppState, req: &Request) -> Result<(), ApiFailure> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > crate::http::MAX_URI_BYTES {
        return Err(ApiFailure::new(
            StatusCode::URI_TOO_LONG,
            "too_large",
            format!(
                "request URI longer than {} bytes",
                crate::http::MAX_URI_BYTES
            ),
        ));
    }
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            req.uri()
                .authority()
                .map(axum::http::uri::Authority::as_str)
        });
    if state.0.loopback_only {
        match host {
            Some(h) if is_loopback_host(h) => {}
            other => {
                return Err(ApiFailure::new(
                    StatusCode::FORBIDDEN,
                    "bad_host",
                    format!(
                        "Host {:?} is not a loopback name or address; this server answers only local names (DNS rebinding protection)",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write {
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site" || v == "same-site");
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let foreign = origin.is_some_and(|o| {
            let authority = o.split_once("://").map_or(o, |(_, a)| a);
            Some(authority) != host
        });
        if cross_site || foreign {
            return Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "cross-origin requests may not change anything here",
            ));
        }
    }
    let Some(auth) = &state.0.auth else {
        return Ok(());
    };
    if is_public(req.uri().path()) {
        return Ok(());
    }
    let verdict = if let Some(token) = bearer(headers) {
        auth.judge(token)
    } else if let Some(id) = cookie(headers, COOKIE) {
        auth.judge_session(id)
    } else {
        return Err(ApiFailure::unauthorized(
            "log in, or send Authorization: Bearer TOKEN",
        ));
    };
    match verdict {
        Ok(Verdict::Valid(_)) => Ok(()),
        Ok(Verdict::Revoked) => Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token was revoked",
        )),
        Ok(Verdict::Unknown) => Err(ApiFailure::unauthorized("unknown token or expired session")),
        Err(e) => {
            tracing::warn!(error = %e, "reading the token file");
            Err(ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the token file cannot be read",
            ))
        }
    }
}

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if state.0.tls { "; Secure" } else { "" }
    )
}

/// `POST /api/v1/login` with [`Login`]: sets the session cookie.
pub async fn login(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let Some(auth) = &state.0.auth else {
        return ApiFailure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server needs no login (auth = \"none\")",
        )
        .into_response();
    };
    let req: Login = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let opened = match auth.judge(&req.token) {
        Ok(Verdict::Valid(sha)) => auth.open_session(sha),
        Ok(Verdict::Revoked) => {
            return ApiFailure::new(StatusCode::FORBIDDEN, "forbidden", "this token was revoked")
                .into_response();
        }
        Ok(Verdict::Unknown) => return ApiFailure::unauthorized("unknown token").into_response(),
        Err(e) => Err(e),
    };
    match opened {
        Ok(id) => {
            let mut resp = crate::http::api::json(&LoginReply {
                schema_version: SCHEMA_VERSION,
                expires_in_s: SESSION_TTL.as_secs(),
            });
            if let Ok(v) = session_cookie(&state, &id, SESSION_TTL.as_secs()).parse() {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// `POST /api/v1/logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let (Some(auth), Some(id)) = (&state.0.auth, cookie(&headers, COOKIE)) {
        auth.close_session(id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = session_cookie(&state, "", 0).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_create_judge_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.json");
        let secret = create(&path, "ci").expect("create");
        assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == TOKEN_PREFIX.len() + 64);
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(!text.contains(&secret), "the secret itself is never stored");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            create(&path, "ci").is_err(),
            "names are unique while active"
        );
        assert!(create(&path, "bad name").is_err());
        let auth = Auth::new(path.clone());
        assert!(matches!(auth.judge(&secret), Ok(Verdict::Valid(_))));
        assert_eq!(auth.judge("netmon_nope").expect("reads"), Verdict::Unknown);
        let Ok(Verdict::Valid(sha)) = auth.judge(&secret) else {
            panic!("valid")
        };
        let session = auth.open_session(sha).expect("session");
        assert!(matches!(
            auth.judge_session(&session),
            Ok(Verdict::Valid(_))
        ));
        // Modification times can be equal within one tick: the size changes too.
        revoke(&path, "ci").expect("revoke");
        assert_eq!(auth.judge(&secret).expect("reads"), Verdict::Revoked);
        assert_eq!(
            auth.judge_session(&session).expect("reads"),
            Verdict::Revoked,
            "revoking a token ends its sessions"
        );
        assert!(matches!(revoke(&path, "ci"), Err(TokenError::NotFound(_))));
        create(&path, "ci").expect("the name is free again");
        auth.close_session(&session);
        assert_eq!(
            auth.judge_session(&session).expect("reads"),
            Verdict::Unknown
        );
    }

    #[test]
    fn hosts() {
        for (h, want) in [
            ("localhost", true),
            ("localhost:9847", true),
            ("app.localhost:1", true),
            ("127.0.0.1:9847", true),
            ("[::1]:9847", true),
            ("[::1]", true),
            ("evil.example:9847", false),
            ("localhost.evil.example", false),
            ("10.0.0.1:9847", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(h), want, "{h}");
        }
    }

    #[test]
    fn cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; netmon_session=abc; b=2".parse().expect("v"),
        );
        h.insert(header::AUTHORIZATION, "Bearer  xyz ".parse().expect("v"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(bearer(&h), Some("xyz"));
    }
}
