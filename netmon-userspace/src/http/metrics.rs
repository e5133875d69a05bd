//! `GET /metrics`: the Prometheus exporter ([`crate::exporter`]) as
//! OpenMetrics text, behind the same Host and bearer-token rules as every
//! route (Prometheus sends the token with `authorization:` in its scrape
//! config). Computed like a query: one of [`crate::http::MAX_QUERIES`]
//! slots, on a blocking thread, holding the store lock only while the
//! counters are read, never while the answer is written.
use std::sync::PoisonError;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::exporter::{ExporterConfig, Snapshot};
use crate::http::api::ApiFailure;
use crate::http::{AppState, QUERY_WAIT};

/// The OpenMetrics content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One scrape's numbers, handed to `prometheus-client`'s encoder.
#[derive(Debug)]
struct Scrape {
    snap: Snapshot,
    cfg: ExporterConfig,
    store_path: std::path::PathBuf,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        crate::exporter::metrics::encode(&mut enc, &self.snap, &self.cfg)?;
        crate::exporter::host::encode(&mut enc, &self.store_path)
    }
}

/// Renders the exposition for `snap`.
///
/// # Errors
/// Only from the writer (never for a `String`).
pub fn render(
    snap: Snapshot,
    cfg: ExporterConfig,
    store_path: std::path::PathBuf,
) -> Result<String, std::fmt::Error> {
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register_collector(Box::new(Scrape {
        snap,
        cfg,
        store_path,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let busy = || {
        ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many queries at once; try again",
        )
        .into_response()
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(QUERY_WAIT, state.0.queries.acquire()).await else {
        return busy();
    };
    let h = state.handle().clone();
    let exporter = std::sync::Arc::clone(state.exporter());
    let done = tokio::task::spawn_blocking(move || {
        let (snap, path) = {
            let mut store = h.store.lock().unwrap_or_else(PoisonError::into_inner);
            let path = store.path().to_owned();
            (exporter.snapshot(&mut store, &h.apps), path)
        };
        snap.map_err(|e| e.to_string())
            .and_then(|s| render(s, exporter.config().clone(), path).map_err(|e| e.to_string()))
    })
    .await;
    match done {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Ok(Err(msg)) => {
            ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "store", msg).into_response()
        }
        Err(e) => ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("metrics task failed: {e}"),
        )
        .into_response(),
    }
}
