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
pub const GROUP_COLUMNS: [&str; 18] = [
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
    "server_name",
    "domain",
    "service",
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
        opt(f.server_name.as_ref()),
        opt(f.domain.as_ref()),
        opt(f.service.as_ref()),
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

/// The table footer line of an answer that is not exactly its window:
/// which time it covers and why (empty when exact). Times are unix ms.
#[must_use]
pub fn coverage_line(
    exact: bool,
    from: Option<u64>,
    until: Option<u64>,
    note: Option<&str>,
    width: Option<usize>,
) -> String {
    if exact {
        return String::new();
    }
    let t = |v: Option<u64>| {
        v.map_or_else(
            || "-".to_owned(),
            |ms| short_time(&crate::clock::rfc3339_from_unix_ms(ms)),
        )
    };
    wrap(
        &format!(
            "not exact: covers {} → {}: {}",
            t(from),
            t(until),
            note.unwrap_or("wider than asked")
        ),
        width,
    )
}

/// A process's user for tables: the name, else the uid, and `-` for the
/// pseudo-processes of pid 0 (as queries group them, see
/// [`crate::query::facts::user_of`]).
#[must_use]
pub fn user_cell(pid: u32, user: Option<&str>, uid: u32) -> String {
    if pid == 0 {
        return crate::query::facts::NO_USER.to_owned();
    }
    user.map_or_else(|| uid.to_string(), str::to_owned)
}

/// `text` (one line, no newline) wrapped to `width` columns, continuation
/// lines indented by two: at ` · ` separators where the parts fit, else at
/// spaces; unchanged without a width. Ends with a newline.
#[must_use]
pub fn wrap(text: &str, width: Option<usize>) -> String {
    let Some(width) = width.filter(|w| *w > 10) else {
        return format!("{text}\n");
    };
    let mut out = String::new();
    let mut line = String::new();
    let mut push = |line: &mut String, piece: &str, sep: &str| {
        let len = line.chars().count();
        if len > 2 && len + sep.chars().count() + piece.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            *line = "  ".to_owned();
        } else if len > 0 {
            line.push_str(sep);
        }
        line.push_str(piece);
    };
    for part in text.split(" · ") {
        if part.chars().count() + 2 <= width {
            push(&mut line, part, " · ");
        } else {
            for (i, word) in part.split(' ').enumerate() {
                push(&mut line, word, if i == 0 { " · " } else { " " });
            }
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_wider_than_asked_says_so_under_the_table() {
        assert_eq!(coverage_line(true, Some(0), Some(1), None, None), "");
        let line = coverage_line(
            false,
            Some(1_795_420_800_000),
            Some(1_795_428_000_000),
            Some("remote endpoints are kept per minute: ..."),
            Some(60),
        );
        assert!(
            line.starts_with("not exact: covers 2026-11-23 08:00:00 → 2026-11-23 10:00:00"),
            "{line}"
        );
        assert!(line.lines().all(|l| l.chars().count() <= 60), "{line}");
    }

    #[test]
    fn wrap_keeps_parts_whole() {
        let t = "total: tx 1 rx 2 · 4 groups · 2026-11-30 20:40:54 → 2026-11-30 21:40:54";
        assert_eq!(wrap(t, None), format!("{t}\n"));
        let w = wrap(t, Some(50));
        assert_eq!(
            w,
            "total: tx 1 rx 2 · 4 groups\n  2026-11-30 20:40:54 → 2026-11-30 21:40:54\n"
        );
        assert!(
            wrap("a b c d e f g h i j k l m n o p", Some(12))
                .lines()
                .all(|l| l.chars().count() <= 12)
        );
    }
}
