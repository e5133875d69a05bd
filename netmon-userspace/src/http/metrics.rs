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
    kernel: Option<crate::wire::Status>,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        crate::exporter::metrics::encode(&mut enc, &self.snap, &self.cfg)?;
        crate::exporter::devices::encode(&mut enc, &self.snap.devices)?;
        if let Some(k) = &self.kernel {
            crate::exporter::kernel::encode(&mut enc, k)?;
        }
        crate::exporter::drain::encode(&mut enc)?;
        crate::exporter::host::encode(&mut enc, &self.store_path)
    }
}

/// Renders the exposition for `snap` (and the kernel side's `status`, on
/// the kernel source).
///
/// # Errors
/// Only from the writer (never for a `String`).
pub fn render(
    snap: Snapshot,
    cfg: ExporterConfig,
    store_path: std::path::PathBuf,
    kernel: Option<crate::wire::Status>,
) -> Result<String, std::fmt::Error> {
    let mut reg = prometheus_client::registry::Registry::default();
    let created = snap.clone();
    reg.register_collector(Box::new(Scrape {
        snap,
        cfg,
        store_path,
        kernel,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(crate::exporter::metrics::add_created(&out, &created))
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
    let info = state.info().clone();
    let done = tokio::task::spawn_blocking(move || {
        // Kernel self metrics: read without the store lock; a failure
        // (e.g. maps unreadable) leaves them out of this scrape.
        let kernel = (info.source == "kernel")
            .then(|| crate::cli::status::status(&info.pin_dir).ok())
            .flatten();
        // Device names and addresses: read before taking the store lock.
        let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        let naming = crate::devices::Naming::load(&crate::devices::config(), &arp);
        let (snap, path) = {
            let mut store = h.store.lock().unwrap_or_else(PoisonError::into_inner);
            let path = store.path().to_owned();
            let snap = exporter.snapshot(&mut store, &h.apps).and_then(|mut s| {
                s.devices = exporter.device_series(&mut store, &naming)?;
                Ok(s)
            });
            (snap, path)
        };
        snap.map_err(|e| e.to_string()).and_then(|s| {
            render(s, exporter.config().clone(), path, kernel).map_err(|e| e.to_string())
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DestClass, Traffic};
    use crate::wire::{Counters, MapStatus, Overflow, ProgramStatus, Status};

    /// Every family has HELP and TYPE, units on byte families, `_total` on
    /// counters, the kernel self metrics appear when given, and the text
    /// ends with `# EOF` (OpenMetrics).
    #[test]
    fn exposition_shape() {
        let mut snap = Snapshot {
            labels: vec!["app"],
            latest_ms: Some(1_700_000_000_000),
            members: 1,
            created: [(vec!["curl".to_owned()], 1_699_999_200_000)].into(),
            ..Snapshot::default()
        };
        let mut t = Traffic::default();
        t.tx.ip_bytes = 1234;
        t.rx.packets = 5;
        snap.series
            .insert((vec!["curl".to_owned()], DestClass::Internet), t);
        let program = |name: &str, attached| ProgramStatus {
            name: name.to_owned(),
            id: Some(1),
            attached,
            run_count: 0,
            run_time_ns: 0,
            instructions: None,
        };
        let status = Status {
            schema_version: 1,
            loaded: false,
            pin_dir: "/sys/fs/bpf/x".to_owned(),
            cgroup: None,
            kernel: "6.6".to_owned(),
            programs: vec![program("a", true), program("b", false)],
            maps: vec![MapStatus {
                name: "flows".to_owned(),
                entries: 10,
                max_entries: 100,
                fill: 0.1,
                gone: 0,
            }],
            overflow: Overflow {
                tx: Counters {
                    packets: 1,
                    ip_bytes: 77,
                    payload_bytes: 50,
                    app_bytes: 50,
                    retrans_bytes: 0,
                },
                rx: Counters::default(),
                failed_inserts: 3,
            },
            loaded_at_unix_ms: None,
            sample: None,
            name_capture: None,
        };
        let text = render(
            snap,
            ExporterConfig::default(),
            std::env::temp_dir().join("none.redb"),
            Some(status),
        )
        .expect("render");
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "# UNIT netmon_ip_bytes bytes",
            "netmon_ip_bytes_total{direction=\"tx\",class=\"internet\",app=\"curl\"} 1234",
            "netmon_packets_total{direction=\"rx\",class=\"internet\",app=\"curl\"} 5",
            "netmon_ip_bytes_created{direction=\"tx\",class=\"internet\",app=\"curl\"} 1699999200.000",
            "netmon_packets_created{direction=\"rx\",class=\"internet\",app=\"curl\"} 1699999200.000",
            "netmon_programs_attached 1.0",
            "netmon_map_max_entries{map=\"flows\"} 100.0",
            "netmon_overflow_bytes_total{direction=\"tx\"} 77",
            "netmon_map_failed_inserts_total 3",
            "netmon_last_drain_timestamp_seconds 1700000000.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
    }
}
