//! The daemon's HTTP server: a JSON API over the same request handling as
//! the Unix socket ([`crate::api::handler::answer`], the same documents and
//! `schema_version`), a live stream (Server-Sent Events) and the dashboard,
//! on the daemon's tokio runtime.
//!
//! Configured in `config.toml`:
//!
//! ```toml
//! [http]
//! listen = ["127.0.0.1:9847"]   # default; `listen = []` turns HTTP off
//! cert = "/etc/netmon/tls/cert.pem"  # both or neither: TLS (rustls)
//! key = "/etc/netmon/tls/key.pem"
//! auth = "none"                 # or "token": bearer tokens / login cookie
//! tokens = "/var/lib/netmon/http-tokens.json"  # `netmon token ...` edits it
//! ```
//!
//! Security rules ([`guard`] applies them to every route):
//! - a loopback-only server (every `listen` address is loopback) needs no
//!   login, but answers only requests whose `Host` is a loopback name or
//!   address (a DNS-rebinding page cannot name it), and refuses
//!   state-changing requests whose `Origin` is another site;
//! - any other address: the daemon refuses to start unless `auth = "token"`
//!   ([`HttpError::NoAuth`]); plain HTTP there is logged as a warning at
//!   every start;
//! - with `auth = "token"` every API route needs `Authorization: Bearer
//!   TOKEN` or the session cookie the dashboard's login sets (HttpOnly,
//!   SameSite=Strict, Secure under TLS); an unknown token gets 401, a
//!   revoked one 403. Tokens are stored hashed ([`auth`]);
//! - read-only: the only writes are login and logout (sessions, in memory).
//!
//! Bounds: request bodies ([`MAX_BODY_BYTES`]), URIs ([`MAX_URI_BYTES`]),
//! header read time ([`HEADER_TIMEOUT`]), connections
//! ([`MAX_CONNECTIONS`]), queries running at once ([`MAX_QUERIES`], the
//! rest wait up to [`QUERY_WAIT`] then get 503), rows ([`MAX_ROWS`]),
//! export windows ([`MAX_EXPORT_WINDOW_MS`]), live streams
//! ([`MAX_STREAMS`]). A query holds the store lock only while it computes,
//! never while the answer is written to a slow client; live streams share
//! one producer per grouping and a slow stream skips documents instead of
//! holding anything ([`live`]). "Sockets now" (`/api/v1/sockets`) reads
//! the drain's last committed reading, which the drain hands over only
//! while someone asked within a minute ([`crate::live::Tap`]), and runs in
//! a query slot.
//!
//! Adding an endpoint (e.g. a Prometheus `/metrics`): write an
//! `async fn(State<AppState>, ...) -> Response` (see [`api`] for the
//! pattern: build a [`crate::wire::Request`] or read what it needs, run it
//! with [`AppState::query`], answer with [`api::json`] or an
//! [`api::ApiFailure`]), then add one `.route(...)` line in [`router`].
//! Every route gets the Host/Origin/auth checks and the security headers
//! from [`guard`]; routes that must work before login are listed in
//! [`auth::is_public`].
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod fleet;
pub mod live;
pub mod metrics;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

pub use server::{Bound, bind};

use crate::api::Handle;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9847";
/// Default token file.
pub const DEFAULT_TOKENS: &str = "/var/lib/netmon/http-tokens.json";
/// Largest request body (login is the only request with one).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest request URI (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this time (also closes
/// idle keep-alive connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes must finish within this time.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries computed at once.
pub const MAX_QUERIES: usize = 4;
/// How long a query waits for a slot before 503.
pub const QUERY_WAIT: Duration = Duration::from_secs(10);
/// Most rows one `usage` answer may have (`limit` defaults to this).
pub const MAX_ROWS: u64 = 10_000;
/// Longest `export` window over HTTP (the CLI has no such limit).
pub const MAX_EXPORT_WINDOW_MS: u64 = 7 * 86_400_000;
/// Most points one `history` answer may have over HTTP.
pub const MAX_POINTS: u64 = 20_000;
/// Live streams open at once.
pub const MAX_STREAMS: usize = 32;
/// Sessions kept at once (the oldest expire first).
pub const MAX_SESSIONS: usize = 1_024;
/// How long a dashboard login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// `auth` under `[http]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No login (allowed on loopback addresses only).
    #[default]
    None,
    /// Bearer tokens (`netmon token create`) and the dashboard login.
    Token,
}

/// `[http]` of the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses to listen on; absent: [`DEFAULT_LISTEN`]; empty: off.
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen: Option<Vec<SocketAddr>>,
    /// TLS certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub key: Option<PathBuf>,
    /// Who may ask.
    #[serde(default)]
    pub auth: AuthMode,
    /// Token file (default [`DEFAULT_TOKENS`]).
    pub tokens: Option<PathBuf>,
    /// The Prometheus exporter (`[http.metrics]`, see [`crate::exporter`]).
    #[serde(default)]
    pub metrics: crate::exporter::ExporterConfig,
    /// The fleet view's Prometheus (the file's top-level `[fleet]`, copied
    /// here by the daemon; see [`fleet`]).
    #[serde(skip)]
    pub fleet: fleet::FleetConfig,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let words = match <OneOrMany as serde::Deserialize>::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    words
        .iter()
        .map(|w| {
            w.parse::<SocketAddr>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "listen: {w:?} is not an address:port (127.0.0.1:9847, [::1]:9847, 0.0.0.0:9847)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl HttpConfig {
    /// The token file.
    #[must_use]
    pub fn tokens_path(&self) -> PathBuf {
        self.tokens
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKENS))
    }
}

/// True for loopback addresses (127.0.0.0/8, ::1, and IPv4-mapped
/// loopback).
#[must_use]
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Errors starting the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback address without auth.
    #[error(
        "http: refusing to listen on {0} without auth: set auth = \"token\" under [http] (and create a token with `netmon token create --name NAME`), or listen on a loopback address"
    )]
    NoAuth(SocketAddr),
    /// A bad `[http.metrics]` value.
    #[error("{0}")]
    Metrics(String),
    /// Only one of cert and key.
    #[error("http: TLS needs both cert and key under [http]")]
    HalfTls,
    /// The certificate or key could not be used.
    #[error("http: TLS {what} {}: {message}", path.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Binding failed.
    #[error("http: cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the status endpoint says about the daemon.
#[derive(Clone, Debug)]
pub struct DaemonInfo {
    /// `kernel` or `simulated`.
    pub source: String,
    /// Drain interval.
    pub interval: Duration,
    /// Start time, unix ms.
    pub started_unix_ms: u64,
    /// bpffs pin directory (kernel source).
    pub pin_dir: PathBuf,
    /// LAN interface globs (`[interfaces] lan`, `--lan-interface`): devices
    /// are counted on them; empty: none.
    pub lan: Vec<String>,
}

/// Everything a handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    handle: Handle,
    info: DaemonInfo,
    auth: Option<auth::Auth>,
    loopback_only: bool,
    tls: bool,
    queries: tokio::sync::Semaphore,
    live: live::Live,
    exporter: Arc<crate::exporter::Exporter>,
    fleet: Option<fleet::Prometheus>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("info", &self.0.info)
            .field("loopback_only", &self.0.loopback_only)
            .field("tls", &self.0.tls)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a server with `cfg`, answering from `handle`.
    #[must_use]
    pub fn new(cfg: &HttpConfig, loopback_only: bool, handle: Handle, info: DaemonInfo) -> Self {
        let live = live::Live::new(handle.clone(), info.interval);
        Self(Arc::new(Inner {
            auth: (cfg.auth == AuthMode::Token).then(|| auth::Auth::new(cfg.tokens_path())),
            loopback_only,
            tls: cfg.cert.is_some(),
            queries: tokio::sync::Semaphore::new(MAX_QUERIES),
            live,
            exporter: Arc::new(crate::exporter::Exporter::new(cfg.metrics.clone())),
            // `bind` already refused a bad [fleet] with one line.
            fleet: fleet::Prometheus::new(&cfg.fleet).unwrap_or_else(|e| {
                tracing::error!(error = %e, "fleet view off");
                None
            }),
            handle,
            info,
        }))
    }

    /// The store handle.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.0.handle
    }

    /// The Prometheus exporter's counters.
    #[must_use]
    pub fn exporter(&self) -> &Arc<crate::exporter::Exporter> {
        &self.0.exporter
    }

    /// Facts about the daemon.
    #[must_use]
    pub fn info(&self) -> &DaemonInfo {
        &self.0.info
    }
}

/// The routes. Add new endpoints here (see the module doc).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/v1/ping", get(api::ping))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/usage", get(api::usage))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/procs", get(api::procs))
        .route("/api/v1/export", get(api::export))
        .route("/api/v1/live", get(live::stream))
        .route("/api/v1/sockets", get(api::sockets))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/devices/history", get(api::device_history))
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/logout", post(auth::logout))
        .route("/metrics", get(metrics::metrics))
        .route("/hosts", get(fleet::page))
        .route("/assets/fleet.js", get(fleet::script))
        .route("/api/v1/fleet", get(fleet::info_route))
        .route("/api/v1/fleet/hosts", get(fleet::hosts_route))
        .route("/api/v1/fleet/host", get(fleet::host_route))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Host, Origin and auth checks, and security headers, for every route.
async fn guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut resp = match auth::check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        h.insert(k, axum::http::HeaderValue::from_static(v));
    }
    if !h.contains_key(axum::http::header::CACHE_CONTROL) {
        h.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_forms() {
        let c: HttpConfig = toml::from_str("").expect("empty");
        assert_eq!(c.listen, None);
        let c: HttpConfig = toml::from_str("listen = []").expect("off");
        assert_eq!(c.listen, Some(vec![]));
        let c: HttpConfig = toml::from_str("listen = \"[::1]:80\"\nauth = \"token\"").expect("one");
        assert_eq!(c.listen, Some(vec!["[::1]:80".parse().expect("addr")]));
        assert_eq!(c.auth, AuthMode::Token);
        let e = toml::from_str::<HttpConfig>("listen = \"localhost\"").expect_err("bad");
        assert!(e.to_string().contains("not an address"), "{e}");
        assert!(toml::from_str::<HttpConfig>("auth = \"maybe\"").is_err());
        assert!(toml::from_str::<HttpConfig>("lisen = []").is_err());
    }

    #[test]
    fn loopback() {
        for (a, want) in [
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false),
            ("10.0.0.1", false),
            ("::", false),
        ] {
            assert_eq!(is_loopback(a.parse().expect("ip")), want, "{a}");
        }
    }
}
