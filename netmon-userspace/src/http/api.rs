//! The JSON endpoints: query strings in the CLI's words (`since`, `until`,
//! `by`, `filter` (repeatable), `class`, `limit`, `step`, `pid`, `app`,
//! `user`, `cgroup`, `remote`), turned into the socket's
//! [`crate::wire::Request`] and answered by [`handler::answer`], so every
//! document is the one `netmon usage|history|procs|export --format json`
//! prints. Unknown parameters are refused (a typo must not silently widen
//! the answer).
//!
//! Errors: `{"error": {"kind": ..., "message": ...}}` (the socket's error
//! shape) with 400 for bad parameters and unanswerable questions, 401/403
//! from [`crate::http::auth`], 404 for unknown paths, 405, 413/414 for
//! oversized requests, 503 when the store fails or is busy.
use std::sync::PoisonError;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::handler::{self, Answer, HandlerError};
use crate::clock::rfc3339_from_unix_ms;
use crate::http::{AppState, MAX_EXPORT_WINDOW_MS, MAX_POINTS, MAX_ROWS, QUERY_WAIT};
use crate::query::QueryError;
use crate::query::window::{TimeArg, now_ms, parse_step};
use crate::wire::{self, DaemonStatus, ErrorBody, Reply, Request};

/// An error answer.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiFailure {
    /// An error with its status, kind and message.
    #[must_use]
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                kind: kind.to_owned(),
                message: message.into(),
            },
        }
    }

    /// 400 `bad_request`.
    #[must_use]
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<HandlerError> for ApiFailure {
    fn from(e: HandlerError) -> Self {
        let status = match &e {
            HandlerError::BadRequest(_) | HandlerError::Query(QueryError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            HandlerError::Query(QueryError::Store(_)) => {
                tracing::warn!(error = %e, "http query failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self {
            status,
            body: e.body(),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut resp = (self.status, body_of(&Reply::<()>::Error(self.body))).into_response();
        if unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"netmon\""),
            );
        }
        resp
    }
}

fn body_of<T: Serialize>(doc: &T) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    let bytes = serde_json::to_vec(doc).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"kind":"internal","message":"encoding the answer: {e}"}}}}"#)
            .into_bytes()
    });
    ([(header::CONTENT_TYPE, "application/json")], bytes)
}

/// A 200 JSON answer.
pub fn json<T: Serialize>(doc: &T) -> Response {
    body_of(doc).into_response()
}

/// Parses a JSON request body.
///
/// # Errors
/// 400 with serde's message.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(body).map_err(|e| ApiFailure::bad(format!("not a valid body: {e}")))
}

/// Query string pairs, checked against the names an endpoint knows.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `uri`'s query; `known` lists the accepted names.
    ///
    /// # Errors
    /// 400 naming an unknown parameter.
    pub fn parse(uri: &Uri, known: &[&str]) -> Result<Self, ApiFailure> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(ApiFailure::bad(format!(
                "unknown parameter {k:?} (known: {})",
                known.join(", ")
            )));
        }
        Ok(Self(pairs))
    }

    /// The last value of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    #[must_use]
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `since` (default 24h) and `until` (default now) in unix ms.
    ///
    /// # Errors
    /// 400 for a time that does not parse or an empty window.
    pub fn window(&self) -> Result<(u64, u64), ApiFailure> {
        let now = now_ms();
        let parse = |name: &str, default: Option<&str>| -> Result<Option<u64>, ApiFailure> {
            self.get(name)
                .or(default)
                .map(|v| {
                    v.parse::<TimeArg>()
                        .map(|t| t.resolve(now))
                        .map_err(|e| ApiFailure::bad(format!("{name}: {e}")))
                })
                .transpose()
        };
        let from = parse("since", Some("24h"))?.unwrap_or(0);
        let until = parse("until", None)?.unwrap_or(now);
        if from >= until {
            return Err(ApiFailure::bad(format!(
                "empty window: since {} is not before until {}",
                rfc3339_from_unix_ms(from),
                rfc3339_from_unix_ms(until)
            )));
        }
        Ok((from, until))
    }

    /// A number parameter.
    ///
    /// # Errors
    /// 400 when it is not a non-negative integer.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiFailure> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiFailure::bad(format!("{name}: {v:?} is not a whole number")))
            })
            .transpose()
    }
}

impl AppState {
    /// Answers `req` on the blocking pool, at most
    /// [`crate::http::MAX_QUERIES`] at once; the store is locked only while
    /// the answer is computed.
    ///
    /// # Errors
    /// 400 for bad words, 503 when busy or when the store fails.
    pub async fn query(&self, req: Request) -> Result<Answer, ApiFailure> {
        let h = self.handle().clone();
        self.blocking(move || {
            let mut store = h.store.lock().unwrap_or_else(PoisonError::into_inner);
            handler::answer(&mut store, &h.apps, &req).map_err(ApiFailure::from)
        })
        .await
    }

    /// Runs `f` on the blocking pool in one of the
    /// [`crate::http::MAX_QUERIES`] query slots.
    ///
    /// # Errors
    /// `f`'s, or 503 when no slot frees within [`QUERY_WAIT`].
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiFailure> + Send + 'static,
    ) -> Result<T, ApiFailure> {
        let busy = || {
            ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many queries at once; try again",
            )
        };
        let _slot = tokio::time::timeout(QUERY_WAIT, self.0.queries.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("query task failed: {e}"),
            )
        })?
    }
}

fn answer(r: Result<Answer, ApiFailure>) -> Response {
    match r {
        Ok(doc) => json(&doc),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/ping`: the socket's `ping` document.
pub async fn ping(State(state): State<AppState>, uri: Uri) -> Response {
    if let Err(e) = Params::parse(&uri, &[]) {
        return e.into_response();
    }
    answer(state.query(Request::Ping).await)
}

/// `GET /api/v1/usage?since&until&by&filter&class&limit`.
pub async fn usage(State(state): State<AppState>, uri: Uri) -> Response {
    let req = (|| {
        let p = Params::parse(&uri, &["since", "until", "by", "filter", "class", "limit"])?;
        let (from_ms, until_ms) = p.window()?;
        let limit = p.number("limit")?.unwrap_or(MAX_ROWS);
        if limit > MAX_ROWS {
            return Err(ApiFailure::bad(format!("limit: at most {MAX_ROWS}")));
        }
        Ok(Request::Usage {
            from_ms,
            until_ms,
            by: p.get("by").unwrap_or("process").to_owned(),
            filters: p.all("filter"),
            class: p.get("class").map(ToOwned::to_owned),
            limit: Some(limit),
        })
    })();
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/devices?since&until&device`: the LAN device table.
pub async fn devices(State(state): State<AppState>, uri: Uri) -> Response {
    let req = (|| {
        let p = Params::parse(&uri, &["since", "until", "device"])?;
        let (from_ms, until_ms) = p.window()?;
        Ok::<_, ApiFailure>(Request::Devices {
            from_ms,
            until_ms,
            device: p.get("device").map(ToOwned::to_owned),
        })
    })();
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/devices/history?since&until&step&device`: one LAN
/// device's traffic per step (`netmon history --device`). `device` is
/// required (name, MAC or address); without `step`, the smallest of 1 s,
/// 10 s, 1 min, 5 min, 15 min, 1 h, 6 h and 1 d giving at most
/// [`DEVICE_POINTS`] points.
pub async fn device_history(State(state): State<AppState>, uri: Uri) -> Response {
    let req = (|| {
        let p = Params::parse(&uri, &["since", "until", "step", "device"])?;
        let (from_ms, until_ms) = p.window()?;
        let device = p
            .get("device")
            .ok_or_else(|| ApiFailure::bad("device: required (name, MAC or address)"))?
            .to_owned();
        let span = until_ms.saturating_sub(from_ms);
        let step_ms = match p.get("step") {
            Some(s) => parse_step(s).map_err(|e| ApiFailure::bad(format!("step: {e}")))?,
            None => default_device_step(span),
        };
        if step_ms == 0 || span / step_ms > MAX_POINTS {
            return Err(ApiFailure::bad(format!(
                "step: more than {MAX_POINTS} points; use a larger step"
            )));
        }
        Ok(Request::DeviceHistory {
            from_ms,
            until_ms,
            step_ms,
            device,
        })
    })();
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// Most points a device history has when no `step` is given.
pub const DEVICE_POINTS: u64 = 240;

/// The step of a device history over `span_ms` when none is given.
#[must_use]
pub fn default_device_step(span_ms: u64) -> u64 {
    const STEPS: [u64; 8] = [
        1_000, 10_000, 60_000, 300_000, 900_000, 3_600_000, 21_600_000, 86_400_000,
    ];
    STEPS
        .into_iter()
        .find(|s| span_ms.div_ceil(*s) <= DEVICE_POINTS)
        .unwrap_or(86_400_000)
}

/// `GET /api/v1/history?since&until&step&pid&app&user&cgroup&remote&filter&class`.
pub async fn history(State(state): State<AppState>, uri: Uri) -> Response {
    let req = (|| {
        let p = Params::parse(
            &uri,
            &[
                "since", "until", "step", "pid", "app", "user", "cgroup", "remote", "filter",
                "class",
            ],
        )?;
        let (from_ms, until_ms) = p.window()?;
        let step_ms = p
            .get("step")
            .map(|s| parse_step(s).map_err(|e| ApiFailure::bad(format!("step: {e}"))))
            .transpose()?;
        if let Some(step) = step_ms
            && (until_ms - from_ms) / step > MAX_POINTS
        {
            return Err(ApiFailure::bad(format!(
                "step: more than {MAX_POINTS} points; use a larger step"
            )));
        }
        if let Some(pid) = p.get("pid") {
            crate::query::terms::parse_pid(pid)
                .map_err(|e| ApiFailure::bad(format!("pid: {e}")))?;
        }
        let mut filters: Vec<String> = ["pid", "app", "user", "cgroup", "remote"]
            .iter()
            .filter_map(|k| p.get(k).map(|v| format!("{k}={v}")))
            .collect();
        filters.extend(p.all("filter"));
        Ok(Request::History {
            from_ms,
            until_ms,
            step_ms,
            filters,
            class: p.get("class").map(ToOwned::to_owned),
        })
    })();
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/procs?since&until`.
pub async fn procs(State(state): State<AppState>, uri: Uri) -> Response {
    let req = Params::parse(&uri, &["since", "until"])
        .and_then(|p| p.window())
        .map(|(from_ms, until_ms)| Request::Procs { from_ms, until_ms });
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/export?since&until&filter&class&remote` (windows up to
/// [`MAX_EXPORT_WINDOW_MS`]; the JSON document, not NDJSON).
pub async fn export(State(state): State<AppState>, uri: Uri) -> Response {
    let req = (|| {
        let p = Params::parse(&uri, &["since", "until", "filter", "class", "remote"])?;
        let (from_ms, until_ms) = p.window()?;
        if until_ms - from_ms > MAX_EXPORT_WINDOW_MS {
            return Err(ApiFailure::bad(
                "export windows over HTTP are at most 7 days; use `netmon export` for longer ones",
            ));
        }
        Ok(Request::Export {
            from_ms,
            until_ms,
            filters: p.all("filter"),
            class: p.get("class").map(ToOwned::to_owned),
            remote: p.get("remote").is_some_and(|v| v == "true" || v == "1"),
        })
    })();
    match req {
        Ok(r) => answer(state.query(r).await),
        Err(e) => e.into_response(),
    }
}

/// Most rows one `sockets` answer may have (`limit` defaults to this).
pub const MAX_SOCKET_ROWS: u64 = 1_000;

/// `GET /api/v1/sockets?pid=PID[:START_TICKS]&limit=N`: the process's
/// sockets now ([`crate::query::sockets`]), from the drain's last committed
/// reading. The first question after a quiet minute waits for the next
/// drain (the drain taps its readings only while asked, see
/// [`crate::live::Tap`]); 503 when no drain commits within three
/// intervals.
pub async fn sockets(State(state): State<AppState>, uri: Uri) -> Response {
    let parsed = (|| {
        let p = Params::parse(&uri, &["pid", "limit"])?;
        let pid = p
            .get("pid")
            .ok_or_else(|| ApiFailure::bad("pid: required (PID or PID:START_TICKS)"))?;
        let pid = crate::query::terms::parse_pid(pid)
            .map_err(|e| ApiFailure::bad(format!("pid: {e}")))?;
        let limit = p.number("limit")?.unwrap_or(MAX_SOCKET_ROWS);
        if limit > MAX_SOCKET_ROWS {
            return Err(ApiFailure::bad(format!("limit: at most {MAX_SOCKET_ROWS}")));
        }
        Ok((pid, usize::try_from(limit).unwrap_or(usize::MAX)))
    })();
    let ((pid, start_ticks), limit) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let tap = &state.handle().live;
    let asked = now_ms();
    tap.want(asked);
    let interval = state
        .info()
        .interval
        .max(std::time::Duration::from_millis(100));
    let fresh = u64::try_from((interval * 3).as_millis()).unwrap_or(u64::MAX);
    let deadline = tokio::time::Instant::now() + interval * 3 + std::time::Duration::from_secs(1);
    let tapped = loop {
        if let Some(t) = tap.latest()
            && t.ts_ms.saturating_add(fresh) >= asked
        {
            break t;
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no drain committed a reading in the last three intervals; try again",
            )
            .into_response();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // In a query slot, off the runtime's thread: the filter walks every
    // flow of the reading.
    let doc = state
        .blocking(move || {
            crate::query::sockets::resolve_pid(&tapped, pid, start_ticks)
                .map(|id| crate::query::sockets::process_sockets(&tapped, id, limit))
                .map_err(|e| ApiFailure::bad(format!("pid: {e}")))
        })
        .await;
    match doc {
        Ok(doc) => json(&doc),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/status`: [`DaemonStatus`].
pub async fn status(State(state): State<AppState>, uri: Uri) -> Response {
    if let Err(e) = Params::parse(&uri, &[]) {
        return e.into_response();
    }
    let pong = match state.query(Request::Ping).await {
        Ok(Answer::Pong(p)) => p,
        Ok(_) => {
            return ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "unexpected answer",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let info = state.info().clone();
    let (kernel, kernel_error) = if info.source == "kernel" {
        let pin_dir = info.pin_dir.clone();
        match tokio::task::spawn_blocking(move || crate::cli::status::status(&pin_dir)).await {
            Ok(Ok(s)) => (Some(s), None),
            Ok(Err(e)) => (None, Some(crate::cli::one_line(&e))),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let now = now_ms();
    json(&DaemonStatus {
        schema_version: wire::SCHEMA_VERSION,
        version: pong.version,
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        started: rfc3339_from_unix_ms(info.started_unix_ms),
        started_unix_ms: info.started_unix_ms,
        uptime_ms: now.saturating_sub(info.started_unix_ms),
        source: info.source,
        interval_ms: u64::try_from(info.interval.as_millis()).unwrap_or(u64::MAX),
        db: pong.db,
        latest_sample_unix_ms: pong.latest_sample_unix_ms,
        kernel,
        kernel_error,
        lan_interfaces: state.info().lan.clone(),
    })
}

/// Unknown path: 404.
pub async fn not_found(uri: Uri) -> Response {
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
    )
    .into_response()
}

/// Known path, other method: 405.
pub async fn method_not_allowed() -> Response {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device history without `step` has at most [`DEVICE_POINTS`]
    /// points, with the finest step that allows it.
    #[test]
    fn device_steps() {
        assert_eq!(default_device_step(60_000), 1_000);
        assert_eq!(default_device_step(3_600_000), 60_000);
        assert_eq!(default_device_step(86_400_000), 900_000);
        assert_eq!(default_device_step(30 * 86_400_000), 21_600_000);
        assert_eq!(default_device_step(u64::MAX), 86_400_000);
    }

    #[test]
    fn params() {
        let uri: Uri = "/x?by=app&filter=app%3Dcurl&filter=class=lan&since=1h"
            .parse()
            .expect("uri");
        let p = Params::parse(&uri, &["by", "filter", "since", "until"]).expect("parses");
        assert_eq!(p.get("by"), Some("app"));
        assert_eq!(p.all("filter"), vec!["app=curl", "class=lan"]);
        let (from, until) = p.window().expect("window");
        assert_eq!(until - from, 3_600_000);
        let e = Params::parse(&uri, &["by"]).expect_err("unknown");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.body.message.contains("\"filter\""), "{}", e.body.message);
        let uri: Uri = "/x?since=yesterday".parse().expect("uri");
        let e = Params::parse(&uri, &["since"])
            .expect("parses")
            .window()
            .expect_err("bad time");
        assert!(e.body.message.starts_with("since:"), "{}", e.body.message);
        let uri: Uri = "/x?limit=-1".parse().expect("uri");
        assert!(
            Params::parse(&uri, &["limit"])
                .expect("p")
                .number("limit")
                .is_err()
        );
    }
}
