//! Writers shared by the history commands: JSON, NDJSON, CSV and tables to
//! any `io::Write` (a locked stdout in the binary, a buffer in tests). All
//! return I/O errors (a closed pipe ends the command quietly in `main`);
//! nothing here prints with `println!`.
use std::io::Write;

use serde::Serialize;

use crate::wire::{self, Counters, GroupFields};

/// One NDJSON line: `schema_version` plus the row's fields.
#[derive(Serialize)]
struct Line<'a, T> {
    schema_version: u32,
    #[serde(flatten)]
    row: &'a T,
}

/// Pretty JSON document and a newline.
///
/// # Errors
/// I/O errors.
pub fn json<T: Serialize>(out: &mut dyn Write, doc: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// One compact JSON document on one line.
///
/// # Errors
/// I/O errors.
pub fn json_line<T: Serialize>(out: &mut dyn Write, doc: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, doc)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Rows as NDJSON, each line carrying `schema_version`.
///
/// # Errors
/// I/O errors.
pub fn ndjson_rows<T: Serialize>(out: &mut dyn Write, rows: &[T]) -> anyhow::Result<()> {
    for row in rows {
        json_line(
            out,
            &Line {
                schema_version: wire::SCHEMA_VERSION,
                row,
            },
        )?;
    }
    Ok(())
}

/// CSV with a header row.
///
/// # Errors
/// I/O errors.
pub fn csv(
    out: &mut dyn Write,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// CSV columns of [`GroupFields`].
pub const GROUP_COLUMNS: [&str; 15] = [
    "pid",
    "start_ticks",
    "comm",
    "exe",
    "app",
    "user",
    "uid",
    "cgroup",
    "container",
    "remote_addr",
    "remote_port",
    "protocol",
    "ifindex",
    "interface",
    "class",
];

/// CSV columns of a tx/rx pair (the app/retrans pairs appended last, so
/// the first six columns keep their places).
pub const COUNTER_COLUMNS: [&str; 10] = [
    "tx_packets",
    "tx_ip_bytes",
    "tx_payload_bytes",
    "rx_packets",
    "rx_ip_bytes",
    "rx_payload_bytes",
    "tx_app_bytes",
    "tx_retrans_bytes",
    "rx_app_bytes",
    "rx_retrans_bytes",
];

fn opt<T: ToString>(v: Option<&T>) -> String {
    v.map(ToString::to_string).unwrap_or_default()
}

/// [`GroupFields`] as CSV cells, in [`GROUP_COLUMNS`] order.
#[must_use]
pub fn group_cells(f: &GroupFields) -> Vec<String> {
    vec![
        opt(f.pid.as_ref()),
        opt(f.start_ticks.as_ref()),
        opt(f.comm.as_ref()),
        opt(f.exe.as_ref()),
        opt(f.app.as_ref()),
        opt(f.user.as_ref()),
        opt(f.uid.as_ref()),
        opt(f.cgroup.as_ref()),
        opt(f.container.as_ref()),
        opt(f.remote_addr.as_ref()),
        opt(f.remote_port.as_ref()),
        opt(f.protocol.as_ref()),
        opt(f.ifindex.as_ref()),
        opt(f.interface.as_ref()),
        opt(f.class.as_ref()),
    ]
}

/// A tx/rx pair as CSV cells, in [`COUNTER_COLUMNS`] order.
#[must_use]
pub fn counter_cells(tx: &Counters, rx: &Counters) -> Vec<String> {
    [
        tx.packets,
        tx.ip_bytes,
        tx.payload_bytes,
        rx.packets,
        rx.ip_bytes,
        rx.payload_bytes,
        tx.app_bytes,
        tx.retrans_bytes,
        rx.app_bytes,
        rx.retrans_bytes,
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// A short time for tables: `2026-11-23 08:00:05` (UTC).
#[must_use]
pub fn short_time(rfc3339: &str) -> String {
    rfc3339
        .get(..19)
        .map_or_else(|| rfc3339.to_owned(), |s| s.replace('T', " "))
}
