//! `netmon report`: a document a person can keep or mail. [`gather`] asks
//! the same questions as `netmon usage` and `netmon history` (through the
//! daemon's socket, or the database file when no daemon runs) and builds a
//! [`Report`]: the top groups plus "other", their series, the
//! destination-class split. [`render`] draws it with plotters (SVG, PNG)
//! or writes a self-contained HTML page; `.json` is the [`Report`] itself.
pub mod render;

use crate::cli::conn::Backend;
use crate::clock::{now_rfc3339, rfc3339_from_unix_ms};
use crate::wire::{self, Counters, History, Report, ReportGroup, Request, Usage, UsageRow};

/// Groupings a report can have (each maps to one `history` filter).
pub const GROUPINGS: [&str; 4] = ["app", "process", "user", "class"];

/// The `history` filter that selects one usage row of grouping `by`.
fn filter_of(by: &str, row: &UsageRow) -> Option<String> {
    match by {
        "app" => row.fields.app.as_ref().map(|a| format!("app={a}")),
        "process" => row
            .fields
            .pid
            .zip(row.fields.start_ticks)
            .map(|(p, s)| format!("pid={p}:{s}")),
        "user" => row.fields.user.as_ref().map(|u| format!("user={u}")),
        "class" => row.fields.class.as_ref().map(|c| format!("class={c}")),
        _ => None,
    }
}

fn name_of(by: &str, row: &UsageRow) -> String {
    match (by, &row.fields.comm, row.fields.pid) {
        ("process", Some(comm), Some(pid)) => format!("{comm} ({pid})"),
        _ => row.key.clone(),
    }
}

fn payload(p: &wire::HistoryPoint) -> u64 {
    // A step with no data (null in the document) moved nothing.
    let tx = p.tx.map_or(0, |c| c.payload_bytes);
    let rx = p.rx.map_or(0, |c| c.payload_bytes);
    tx.saturating_add(rx)
}

fn minus(a: Counters, b: Counters) -> Counters {
    Counters {
        packets: a.packets.saturating_sub(b.packets),
        ip_bytes: a.ip_bytes.saturating_sub(b.ip_bytes),
        payload_bytes: a.payload_bytes.saturating_sub(b.payload_bytes),
        app_bytes: a.app_bytes.saturating_sub(b.app_bytes),
        retrans_bytes: a.retrans_bytes.saturating_sub(b.retrans_bytes),
    }
}

fn group(row: &UsageRow, name: String, series: Vec<u64>) -> ReportGroup {
    ReportGroup {
        name,
        other: false,
        tx: row.tx,
        rx: row.rx,
        share: row.share,
        series_payload_bytes: series,
    }
}

/// Builds the report of `[from, until)` grouped `by`, with the `top`
/// largest groups and "other".
///
/// # Errors
/// An unknown grouping, or the query's error.
pub fn gather(
    backend: &mut Backend,
    (from_ms, until_ms): (u64, u64),
    by: &str,
    top: usize,
) -> anyhow::Result<Report> {
    if !GROUPINGS.contains(&by) {
        anyhow::bail!("a report groups by {}, not {by:?}", GROUPINGS.join(", "));
    }
    let usage = |backend: &mut Backend, by: &str| -> anyhow::Result<Usage> {
        backend.call(&Request::Usage {
            from_ms,
            until_ms,
            by: by.to_owned(),
            filters: Vec::new(),
            class: None,
            limit: None,
        })
    };
    let history = |backend: &mut Backend, filters: Vec<String>| -> anyhow::Result<History> {
        backend.call(&Request::History {
            from_ms,
            until_ms,
            step_ms: None,
            filters,
            class: None,
        })
    };
    let groups_doc = usage(backend, by)?;
    let classes_doc = usage(backend, "class")?;
    let total = history(backend, Vec::new())?;
    let mut groups = Vec::new();
    let (mut tx_top, mut rx_top) = (Counters::default(), Counters::default());
    let mut share_top = 0.0;
    let mut series_top = vec![0u64; total.points.len()];
    for row in groups_doc.rows.iter().take(top) {
        let Some(filter) = filter_of(by, row) else {
            continue;
        };
        let h = history(backend, vec![filter])?;
        let series: Vec<u64> = h.points.iter().map(payload).collect();
        if series.len() != series_top.len() {
            anyhow::bail!(
                "the series of {} has another step than the total's",
                row.key
            );
        }
        for (acc, v) in series_top.iter_mut().zip(&series) {
            *acc = acc.saturating_add(*v);
        }
        tx_top = tx_top.plus(row.tx);
        rx_top = rx_top.plus(row.rx);
        share_top += row.share;
        groups.push(group(row, name_of(by, row), series));
    }
    let (tx_other, rx_other) = (
        minus(groups_doc.total.tx, tx_top),
        minus(groups_doc.total.rx, rx_top),
    );
    if tx_other.packets + rx_other.packets > 0 {
        groups.push(ReportGroup {
            name: "other".to_owned(),
            other: true,
            tx: tx_other,
            rx: rx_other,
            share: (1.0 - share_top).max(0.0),
            series_payload_bytes: total
                .points
                .iter()
                .zip(&series_top)
                .map(|(p, s)| payload(p).saturating_sub(*s))
                .collect(),
        });
    }
    let classes = classes_doc
        .rows
        .iter()
        .map(|r| group(r, r.key.clone(), Vec::new()))
        .collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    Ok(Report {
        schema_version: wire::SCHEMA_VERSION,
        title: format!("Network use of {host} by {by}"),
        host,
        generated_at: now_rfc3339().0,
        from: rfc3339_from_unix_ms(from_ms),
        from_unix_ms: from_ms,
        until: rfc3339_from_unix_ms(until_ms),
        until_unix_ms: until_ms,
        by: by.to_owned(),
        step_ms: total.step_ms,
        tier: total.tier.clone(),
        times_unix_ms: total.points.iter().map(|p| p.time_unix_ms).collect(),
        groups,
        classes,
        total: groups_doc.total,
    })
}
