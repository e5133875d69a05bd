//! The fleet view: the dashboard's **Hosts** page (`/hosts`) and its two
//! JSON endpoints, answered from Prometheus's HTTP query API (PromQL) when
//! `[fleet] prometheus` is configured:
//!
//! ```toml
//! [fleet]
//! prometheus = "http://prometheus.example:9090"   # http:// or https://
//! token_file = "/etc/netmon/prometheus.token"      # optional bearer token
//! ```
//!
//! - `GET /api/v1/fleet/hosts`: every target that exported netmon metrics
//!   within the last day (keyed by Prometheus's `job` and `instance`), with
//!   up/down (`up`), current rates (`rate(...[5m])`), today's totals and its
//!   top apps;
//! - `GET /api/v1/fleet/host?job=J&instance=I`: one host's 24-hour tx/rx
//!   rates (a range query, 5-minute steps) and today's bytes per app and
//!   per class.
//!
//! "Today" starts at midnight in the daemon's time zone. Today's totals are
//! exact differences of the never-resetting counters (see
//! [`crate::exporter`]): the sum now less the sum at midnight (Prometheus's
//! newest sample before midnight, within its 5-minute lookback). A host
//! with no sample at midnight (scraped only since, or down then) counts its
//! whole counter as today's: Prometheus cannot know more.
//!
//! Safety: the daemon only ever asks the configured Prometheus (the URL is
//! never taken from the request), with fixed PromQL templates; the only
//! client input, `job` and `instance`, is quoted as a PromQL string. Every
//! request has a timeout ([`PROM_TIMEOUT`], also sent as Prometheus's own
//! `timeout`), answers are read up to [`MAX_PROM_BYTES`], redirects are not
//! followed, and the proxy takes one of the server's query slots like any
//! query. The endpoints are behind the dashboard's auth like every route;
//! the page itself is public (it holds no data). Without `[fleet]` they
//! answer 404 `fleet_off`, and the page says how to configure it.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};

use crate::http::api::{ApiFailure, Params, json};
use crate::http::{AppState, QUERY_WAIT};

/// Timeout of one Prometheus request.
pub const PROM_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest Prometheus answer read.
pub const MAX_PROM_BYTES: u64 = 8 * 1024 * 1024;
/// Longest `job` or `instance` accepted.
pub const MAX_LABEL_BYTES: usize = 512;
/// The counter the page reads.
const METRIC: &str = "netmon_ip_bytes_total";
/// Apps listed per host on the hosts table.
const TOP_APPS: usize = 3;

const PAGE: &str = include_str!("../../assets/dashboard/hosts.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/fleet.js");

/// `[fleet]` of the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Base URL of the Prometheus (or compatible) query API.
    #[serde(default, deserialize_with = "base_url")]
    pub prometheus: Option<String>,
    /// File holding a bearer token for Prometheus.
    pub token_file: Option<PathBuf>,
}

fn base_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_url(&s).map_err(serde::de::Error::custom).map(Some)
}

/// Checks a `prometheus` URL; returns it without a trailing `/`.
///
/// # Errors
/// One line saying what is wrong.
pub fn check_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("prometheus: {s:?} must start with http:// or https:// (e.g. \"http://127.0.0.1:9090\")")
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', ' ']) || s.chars().any(char::is_control) {
        return Err(format!(
            "prometheus: {s:?} needs a host and no query or fragment (e.g. \"http://127.0.0.1:9090\")"
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// Errors asking Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The request failed (connect, timeout, too large, not JSON).
    #[error("prometheus at {url}: {message}")]
    Transport {
        /// The configured base URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Prometheus answered with an error.
    #[error("prometheus at {url} refused the query: {message}")]
    Refused {
        /// The configured base URL.
        url: String,
        /// Its message.
        message: String,
    },
}

/// Labels and one value (instant vector) or many (range).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Label set.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)` points.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    fn label(&self, name: &str) -> String {
        self.labels.get(name).cloned().unwrap_or_default()
    }

    fn last(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.1)
    }
}

#[derive(Deserialize)]
struct PromAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<PromData>,
}

#[derive(Deserialize)]
struct PromData {
    #[serde(default)]
    result: Vec<PromSeries>,
}

#[derive(Deserialize)]
struct PromSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Parses a query API answer (`vector` or `matrix`).
///
/// # Errors
/// [`FleetError::Refused`] for `status: error`, transport for bad JSON.
pub fn parse_answer(url: &str, body: &str) -> Result<Vec<Series>, FleetError> {
    let a: PromAnswer = serde_json::from_str(body).map_err(|e| FleetError::Transport {
        url: url.to_owned(),
        message: format!("not a query API answer: {e}"),
    })?;
    if a.status != "success" {
        return Err(FleetError::Refused {
            url: url.to_owned(),
            message: a.error.unwrap_or(a.status),
        });
    }
    let num = |v: &str| v.parse::<f64>().unwrap_or(f64::NAN);
    Ok(a.data
        .map(|d| d.result)
        .unwrap_or_default()
        .into_iter()
        .map(|s| Series {
            labels: s.metric,
            points: s
                .value
                .into_iter()
                .chain(s.values)
                .map(|(t, v)| (t, num(&v)))
                .filter(|p| p.1.is_finite())
                .collect(),
        })
        .collect())
}

/// The configured Prometheus.
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Prometheus {
    /// A client for `cfg` (reads the token file now, before the sandbox).
    ///
    /// # Errors
    /// One line if the token file cannot be read.
    pub fn new(cfg: &FleetConfig) -> Result<Option<Self>, String> {
        let Some(base) = &cfg.prometheus else {
            return Ok(None);
        };
        let token = cfg
            .token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("fleet: token_file {}: {e}", p.display()))
            })
            .transpose()?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(PROM_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Some(Self {
            base: base.clone(),
            token,
            agent,
        }))
    }

    /// The base URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.base
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>, FleetError> {
        let err = |message: String| FleetError::Transport {
            url: self.base.clone(),
            message,
        };
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .header("User-Agent", concat!("netmon/", env!("CARGO_PKG_VERSION")))
            .query(
                "timeout",
                format!("{}s", PROM_TIMEOUT.as_secs().saturating_sub(1)),
            );
        for (k, v) in params {
            req = req.query(*k, v);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_PROM_BYTES)
            .read_to_string()
            .map_err(|e| err(e.to_string()))?;
        match parse_answer(&self.base, &body) {
            Err(FleetError::Transport { .. }) if status != 200 => {
                Err(err(format!("HTTP {status}")))
            }
            r => r,
        }
    }

    /// An instant query at `time` (unix seconds).
    ///
    /// # Errors
    /// [`FleetError`].
    pub fn instant(&self, q: &str, time: u64) -> Result<Vec<Series>, FleetError> {
        self.get(
            "/api/v1/query",
            &[("query", q.to_owned()), ("time", time.to_string())],
        )
    }

    /// A range query.
    ///
    /// # Errors
    /// [`FleetError`].
    pub fn range(
        &self,
        q: &str,
        start: u64,
        end: u64,
        step: u64,
    ) -> Result<Vec<Series>, FleetError> {
        self.get(
            "/api/v1/query_range",
            &[
                ("query", q.to_owned()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.to_string()),
            ],
        )
    }
}

/// A PromQL string literal of `s`.
#[must_use]
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// PromQL for today's bytes of `sel` (a series selector) summed `by`:
/// now less midnight (`ago` seconds back), 0 where there is no sample then.
#[must_use]
pub fn today_query(sel: &str, by: &str, ago: u64) -> String {
    format!(
        "sum by ({by}) ({sel}) - (sum by ({by}) ({sel} offset {ago}s) or sum by ({by}) ({sel}) * 0)"
    )
}

/// Today's start in the daemon's zone and now, unix seconds.
fn today() -> (u64, u64) {
    let now = jiff::Zoned::now();
    let start = now.start_of_day().map_or(0, |d| d.timestamp().as_second());
    let secs = |s: i64| u64::try_from(s).unwrap_or(0);
    (secs(start), secs(now.timestamp().as_second()))
}

/// Bytes sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TxRx {
    /// Sent.
    pub tx: u64,
    /// Received.
    pub rx: u64,
}

/// Rates in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Sent.
    pub tx: f64,
    /// Received.
    pub rx: f64,
}

/// One named row of today's bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Named {
    /// App or class.
    pub name: String,
    /// Today's IP bytes.
    pub today: TxRx,
    /// Current rates (apps only; 0 for classes).
    pub rate: Rates,
}

/// One host of the hosts table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Host {
    /// Prometheus's `job` label.
    pub job: String,
    /// Prometheus's `instance` label.
    pub instance: String,
    /// The `host` target label, if the scrape config sets one.
    pub host: Option<String>,
    /// The last scrape succeeded.
    pub up: bool,
    /// Current rates.
    pub rate: Rates,
    /// Today's IP bytes.
    pub today: TxRx,
    /// The largest apps today (by sent + received).
    pub top_apps: Vec<Named>,
}

/// `GET /api/v1/fleet/hosts`.
#[derive(Clone, Debug, Serialize)]
pub struct HostsDoc {
    /// Document version.
    pub schema_version: u32,
    /// The Prometheus asked.
    pub prometheus: String,
    /// Start of today (unix seconds, the daemon's zone).
    pub today_start: u64,
    /// Evaluation time (unix seconds).
    pub time: u64,
    /// Hosts by job and instance.
    pub hosts: Vec<Host>,
}

/// `GET /api/v1/fleet/host`.
#[derive(Clone, Debug, Serialize)]
pub struct HostDoc {
    /// Document version.
    pub schema_version: u32,
    /// The Prometheus asked.
    pub prometheus: String,
    /// Prometheus's `job` label.
    pub job: String,
    /// Prometheus's `instance` label.
    pub instance: String,
    /// The last scrape succeeded.
    pub up: bool,
    /// Start of today (unix seconds).
    pub today_start: u64,
    /// Evaluation time (unix seconds).
    pub time: u64,
    /// Range step, seconds.
    pub step: u64,
    /// Sample times of the 24-hour graph (unix seconds).
    pub t: Vec<u64>,
    /// Sent rate at each time (bytes/s; null where unknown).
    pub tx: Vec<Option<f64>>,
    /// Received rate at each time.
    pub rx: Vec<Option<f64>>,
    /// Today per app, largest first.
    pub apps: Vec<Named>,
    /// Today per destination class.
    pub classes: Vec<Named>,
}

type Key = (String, String);

fn key(s: &Series) -> Key {
    (s.label("job"), s.label("instance"))
}

fn bytes(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        // Counter values are integers below 2^53: exact in f64.
        v.round() as u64
    } else {
        0
    }
}

/// Folds `sum by (..., direction)` answers into per-key tx/rx.
fn by_direction<K: Ord>(
    rows: &[Series],
    k: impl Fn(&Series) -> K,
    mut put: impl FnMut(K, &str, f64),
) {
    for s in rows {
        put(k(s), &s.label("direction"), s.last());
    }
}

/// Named rows of today (and rates) per `label`, largest first.
fn named(today: &[Series], rates: &[Series], label: &str) -> Vec<Named> {
    fn cell(m: &mut BTreeMap<String, Named>, name: String) -> &mut Named {
        m.entry(name.clone()).or_insert(Named {
            name,
            today: TxRx::default(),
            rate: Rates::default(),
        })
    }
    let mut m: BTreeMap<String, Named> = BTreeMap::new();
    by_direction(
        today,
        |s| s.label(label),
        |n, d, v| {
            let c = cell(&mut m, n);
            match d {
                "tx" => c.today.tx += bytes(v),
                "rx" => c.today.rx += bytes(v),
                _ => {}
            }
        },
    );
    by_direction(
        rates,
        |s| s.label(label),
        |n, d, v| {
            let c = cell(&mut m, n);
            match d {
                "tx" => c.rate.tx += v,
                "rx" => c.rate.rx += v,
                _ => {}
            }
        },
    );
    let mut v: Vec<Named> = m.into_values().collect();
    v.sort_by(|a, b| {
        (b.today.tx + b.today.rx)
            .cmp(&(a.today.tx + a.today.rx))
            .then_with(|| a.name.cmp(&b.name))
    });
    v
}

/// The hosts table from Prometheus.
///
/// # Errors
/// [`FleetError`].
pub fn hosts(p: &Prometheus) -> Result<HostsDoc, FleetError> {
    let (start, now) = today();
    let ago = now.saturating_sub(start);
    let known = p.instant("last_over_time(netmon_exporter_groups_limit[1d])", now)?;
    let up = p.instant("up", now)?;
    let rates = p.instant(
        &format!("sum by (job, instance, direction) (rate({METRIC}[5m]))"),
        now,
    )?;
    let today_dir = p.instant(&today_query(METRIC, "job, instance, direction", ago), now)?;
    let today_app = p.instant(
        &today_query(METRIC, "job, instance, app, direction", ago),
        now,
    )?;
    let up: BTreeMap<Key, bool> = up.iter().map(|s| (key(s), s.last() == 1.0)).collect();
    let mut out: BTreeMap<Key, Host> = BTreeMap::new();
    for s in &known {
        let k = key(s);
        out.entry(k.clone()).or_insert_with(|| Host {
            job: k.0.clone(),
            instance: k.1.clone(),
            host: s.labels.get("host").cloned(),
            up: up.get(&k).copied().unwrap_or(false),
            rate: Rates::default(),
            today: TxRx::default(),
            top_apps: Vec::new(),
        });
    }
    by_direction(&rates, key, |k, d, v| {
        if let Some(h) = out.get_mut(&k) {
            match d {
                "tx" => h.rate.tx += v,
                "rx" => h.rate.rx += v,
                _ => {}
            }
        }
    });
    by_direction(&today_dir, key, |k, d, v| {
        if let Some(h) = out.get_mut(&k) {
            match d {
                "tx" => h.today.tx += bytes(v),
                "rx" => h.today.rx += bytes(v),
                _ => {}
            }
        }
    });
    let mut per_host: BTreeMap<Key, Vec<Series>> = BTreeMap::new();
    for s in today_app {
        per_host.entry(key(&s)).or_default().push(s);
    }
    for (k, rows) in per_host {
        if let Some(h) = out.get_mut(&k) {
            let mut apps = named(&rows, &[], "app");
            apps.retain(|a| a.today.tx + a.today.rx > 0);
            apps.truncate(TOP_APPS);
            h.top_apps = apps;
        }
    }
    Ok(HostsDoc {
        schema_version: crate::wire::SCHEMA_VERSION,
        prometheus: p.url().to_owned(),
        today_start: start,
        time: now,
        hosts: out.into_values().collect(),
    })
}

/// One host's page from Prometheus.
///
/// # Errors
/// [`FleetError`].
pub fn host(p: &Prometheus, job: &str, instance: &str) -> Result<HostDoc, FleetError> {
    let (start, now) = today();
    let ago = now.saturating_sub(start);
    let sel = format!(
        "{METRIC}{{job={},instance={}}}",
        quote(job),
        quote(instance)
    );
    let up = p.instant(
        &format!("up{{job={},instance={}}}", quote(job), quote(instance)),
        now,
    )?;
    let step = 300;
    // Steps end at now (a day is a whole number of steps).
    let from = now.saturating_sub(86_400);
    let graph = p.range(
        &format!("sum by (direction) (rate({sel}[5m]))"),
        from,
        now,
        step,
    )?;
    let apps_today = p.instant(&today_query(&sel, "app, direction", ago), now)?;
    let apps_rate = p.instant(&format!("sum by (app, direction) (rate({sel}[5m]))"), now)?;
    let classes = p.instant(&today_query(&sel, "class, direction", ago), now)?;
    let t: Vec<u64> = (0..)
        .map(|i| from + i * step)
        .take_while(|x| *x <= now)
        .collect();
    let column = |dir: &str| -> Vec<Option<f64>> {
        let pts: BTreeMap<u64, f64> = graph
            .iter()
            .filter(|s| s.label("direction") == dir)
            .flat_map(|s| s.points.iter().map(|(x, v)| (x.round() as u64, *v)))
            .collect();
        t.iter().map(|x| pts.get(x).copied()).collect()
    };
    Ok(HostDoc {
        schema_version: crate::wire::SCHEMA_VERSION,
        prometheus: p.url().to_owned(),
        job: job.to_owned(),
        instance: instance.to_owned(),
        up: up.first().is_some_and(|s| s.last() == 1.0),
        today_start: start,
        time: now,
        step,
        tx: column("tx"),
        rx: column("rx"),
        t,
        apps: named(&apps_today, &apps_rate, "app"),
        classes: named(&classes, &[], "class"),
    })
}

/// `GET /hosts`: the page (public; its data needs the dashboard's auth).
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// `GET /assets/fleet.js`: the page's script (also on the main page, where
/// it shows the Hosts link when the fleet view is configured).
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `GET /api/v1/fleet`: whether the fleet view is configured.
#[derive(Clone, Debug, Serialize)]
pub struct FleetInfo {
    /// Document version.
    pub schema_version: u32,
    /// `[fleet] prometheus` is set.
    pub configured: bool,
    /// Its URL.
    pub prometheus: Option<String>,
}

/// `GET /api/v1/fleet`.
pub async fn info_route(State(state): State<AppState>, uri: Uri) -> Response {
    if let Err(e) = Params::parse(&uri, &[]) {
        return e.into_response();
    }
    let p = state.0.fleet.as_ref();
    json(&FleetInfo {
        schema_version: crate::wire::SCHEMA_VERSION,
        configured: p.is_some(),
        prometheus: p.map(|p| p.url().to_owned()),
    })
}

fn off() -> Response {
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        "fleet_off",
        "no fleet view: set prometheus = \"http://HOST:9090\" under [fleet] in the daemon's config.toml",
    )
    .into_response()
}

/// Runs `f` against the configured Prometheus on a blocking thread, in one
/// of the server's query slots.
async fn ask<T: Serialize + Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Prometheus) -> Result<T, FleetError> + Send + 'static,
) -> Response {
    let Some(p) = state.0.fleet.clone() else {
        return off();
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(QUERY_WAIT, state.0.queries.acquire()).await else {
        return ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many queries at once; try again",
        )
        .into_response();
    };
    match tokio::task::spawn_blocking(move || f(&p)).await {
        Ok(Ok(doc)) => json(&doc),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "fleet query failed");
            ApiFailure::new(StatusCode::BAD_GATEWAY, "prometheus", e.to_string()).into_response()
        }
        Err(e) => ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("fleet task failed: {e}"),
        )
        .into_response(),
    }
}

/// `GET /api/v1/fleet/hosts`.
pub async fn hosts_route(State(state): State<AppState>, uri: Uri) -> Response {
    if let Err(e) = Params::parse(&uri, &[]) {
        return e.into_response();
    }
    ask(&state, hosts).await
}

/// `GET /api/v1/fleet/host?job=J&instance=I`.
pub async fn host_route(State(state): State<AppState>, uri: Uri) -> Response {
    let p = match Params::parse(&uri, &["job", "instance"]) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (Some(job), Some(instance)) = (p.get("job"), p.get("instance")) else {
        return ApiFailure::bad("job and instance are required (from /api/v1/fleet/hosts)")
            .into_response();
    };
    if job.len() > MAX_LABEL_BYTES
        || instance.len() > MAX_LABEL_BYTES
        || job.chars().chain(instance.chars()).any(char::is_control)
    {
        return ApiFailure::bad(format!(
            "job and instance: at most {MAX_LABEL_BYTES} bytes, no control characters"
        ))
        .into_response();
    }
    let (job, instance) = (job.to_owned(), instance.to_owned());
    ask(&state, move |p| host(p, &job, &instance)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            check_url("http://127.0.0.1:9090/").as_deref(),
            Ok("http://127.0.0.1:9090")
        );
        assert!(check_url("https://prom.example/prefix").is_ok());
        for bad in [
            "127.0.0.1:9090",
            "ftp://x",
            "http://",
            "http://x/?q=1",
            "http://x#a",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let c: FleetConfig = toml::from_str("prometheus = \"http://p:9090\"").expect("parse");
        assert_eq!(c.prometheus.as_deref(), Some("http://p:9090"));
        let e = toml::from_str::<FleetConfig>("prometheus = \"p:9090\"").expect_err("bad");
        assert!(e.to_string().contains("http://"), "{e}");
        assert!(toml::from_str::<FleetConfig>("prometeus = \"http://p\"").is_err());
    }

    #[test]
    fn labels_are_quoted() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny"), "\"x\\ny\"");
        assert_eq!(
            today_query("m", "app", 60),
            "sum by (app) (m) - (sum by (app) (m offset 60s) or sum by (app) (m) * 0)"
        );
    }

    #[test]
    fn answers_parse() {
        let v = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"j","instance":"i","direction":"tx"},"value":[1700000000.5,"1234"]},
            {"metric":{"job":"j","instance":"i","direction":"rx"},"value":[1700000000.5,"NaN"]}]}}"#;
        let s = parse_answer("u", v).expect("vector");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].last(), 1234.0);
        assert!(s[1].points.is_empty(), "NaN is dropped");
        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"direction":"tx"},"values":[[1,"1"],[2,"2.5"]]}]}}"#;
        assert_eq!(
            parse_answer("u", m).expect("matrix")[0].points,
            vec![(1.0, 1.0), (2.0, 2.5)]
        );
        let e = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let err = parse_answer("u", e).expect_err("error");
        assert!(err.to_string().contains("parse error"), "{err}");
        assert!(parse_answer("u", "<html>").is_err());
    }

    #[test]
    fn named_rows_sum_directions_and_sort() {
        let row = |app: &str, dir: &str, v: f64| Series {
            labels: [("app", app), ("direction", dir)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            points: vec![(0.0, v)],
        };
        let rows = named(
            &[
                row("a", "tx", 5.0),
                row("b", "tx", 7.0),
                row("a", "rx", 4.0),
            ],
            &[row("a", "tx", 1.5)],
            "app",
        );
        assert_eq!(rows[0].name, "a");
        assert_eq!(rows[0].today, TxRx { tx: 5, rx: 4 });
        assert!((rows[0].rate.tx - 1.5).abs() < f64::EPSILON);
        assert_eq!(rows[1].today, TxRx { tx: 7, rx: 0 });
    }
}
