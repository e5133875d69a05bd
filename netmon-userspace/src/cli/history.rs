//! `netmon history`: a time series for everything or one subject.
use std::io::Write;
use std::net::IpAddr;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes, terminal_width};
use crate::cli::render::{self, COUNTER_COLUMNS};
use crate::cli::usage::class_parser;
use crate::query::terms::FilterTerm;
use crate::query::window::parse_step;
use crate::store::DestClass;
use crate::wire::{History, Request};

/// `netmon history` arguments.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Step: 5s, 1m, 1h, 1d, ... Default on a table: a step giving a
    /// screenful (at most 60 rows); otherwise the finest tier that still
    /// holds the window (5s on interval samples).
    #[arg(long, value_name = "DURATION", value_parser = parse_step)]
    pub step: Option<u64>,
    /// Only this process (PID, or PID:START_TICKS for one identity).
    #[arg(long, value_name = "PID", group = "subject")]
    pub pid: Option<String>,
    /// Only this app.
    #[arg(long, value_name = "APP", group = "subject")]
    pub app: Option<String>,
    /// Only this user (name or uid).
    #[arg(long, value_name = "USER", group = "subject")]
    pub user: Option<String>,
    /// Only this cgroup (and those below it).
    #[arg(long, value_name = "PATH", group = "subject")]
    pub cgroup: Option<String>,
    /// Only traffic to this remote address (steps of whole minutes).
    #[arg(long, value_name = "ADDR", group = "subject")]
    pub remote: Option<IpAddr>,
    /// Only this LAN device (name, MAC or address; see `netmon devices`).
    #[arg(long, value_name = "NAME", group = "subject")]
    pub device: Option<String>,
    /// Further KEY=VALUE filters (as `usage --filter`).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<FilterTerm>,
    /// Only traffic to this destination class.
    #[arg(long, value_parser = class_parser)]
    pub class: Option<DestClass>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl HistoryArgs {
    fn filters(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            self.pid.as_ref().map(|v| format!("pid={v}")),
            self.app.as_ref().map(|v| format!("app={v}")),
            self.user.as_ref().map(|v| format!("user={v}")),
            self.cgroup.as_ref().map(|v| format!("cgroup={v}")),
            self.remote.as_ref().map(|v| format!("remote={v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.extend(self.filters.iter().map(ToString::to_string));
        out
    }
}

/// Runs `netmon history`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &HistoryArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    if let Some(device) = &args.device {
        if !args.filters.is_empty() || args.class.is_some() {
            anyhow::bail!(crate::cli::UsageError(
                "--device takes no --filter or --class".to_owned()
            ));
        }
        // A screenful of whole minutes by default.
        let step = args.step.unwrap_or_else(|| {
            (until_ms.saturating_sub(from_ms) / 60)
                .div_ceil(60_000)
                .max(1)
                * 60_000
        });
        return crate::cli::devices::history(
            from_ms,
            until_ms,
            step,
            device.clone(),
            &args.conn,
            &args.output,
        );
    }
    if let Some(pid) = &args.pid {
        crate::query::terms::parse_pid(pid).map_err(anyhow::Error::msg)?;
    }
    let format = args.output.resolve();
    let filters = args.filters();
    let per_minute = filters
        .iter()
        .any(|f| f.starts_with("remote=") || f.starts_with("port=") || f.starts_with("protocol="));
    let chosen = args
        .step
        .or_else(|| (format == Format::Table).then(|| screen_step(from_ms, until_ms, per_minute)));
    let req = |step_ms| Request::History {
        from_ms,
        until_ms,
        step_ms,
        filters: filters.clone(),
        class: args.class.map(|c| c.name().to_owned()),
    };
    let mut backend = Backend::connect(&args.conn)?;
    let doc: History = match backend.call(&req(chosen)) {
        // A step we chose may be finer than the data kept that far back:
        // let the daemon choose the finest it has.
        Err(_) if args.step.is_none() && chosen.is_some() => backend.call(&req(None))?,
        other => other?,
    };
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, format, args.output.bytes)?;
    out.flush()?;
    Ok(())
}

/// Most rows a chosen step gives (a screenful).
pub const SCREEN_ROWS: u64 = 60;

/// Steps a table may be given, finest first.
const NICE_STEPS: [u64; 25] = [
    5_000,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
    120_000,
    180_000,
    240_000,
    300_000,
    600_000,
    900_000,
    1_200_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    14_400_000,
    21_600_000,
    28_800_000,
    43_200_000,
    86_400_000,
    172_800_000,
    259_200_000,
    604_800_000,
];

/// The finest step from a short list (5s, 10s, ... 1m, 2m, ... 1h, ...
/// 1d, ... 7d) whose aligned steps over `[from, until)` are at most
/// [`SCREEN_ROWS`]; with `per_minute`, whole minutes only (remote-keyed
/// data).
#[must_use]
pub fn screen_step(from: u64, until: u64, per_minute: bool) -> u64 {
    let rows = |step: u64| until.max(from).div_ceil(step) - from / step;
    NICE_STEPS
        .into_iter()
        .filter(|s| !per_minute || s.is_multiple_of(60_000))
        .find(|s| rows(*s) <= SCREEN_ROWS)
        .unwrap_or(604_800_000)
}

/// Writes the document in `format`.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &History, format: Format, raw: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::ndjson_rows(out, &doc.points),
        Format::Csv => {
            let mut header = vec!["time", "time_unix_ms", "span_ms"];
            header.extend(COUNTER_COLUMNS);
            let rows = doc.points.iter().map(|p| {
                let mut cells = vec![
                    p.time.clone(),
                    p.time_unix_ms.to_string(),
                    p.span_ms.to_string(),
                ];
                match (&p.tx, &p.rx) {
                    (Some(tx), Some(rx)) => cells.extend(render::counter_cells(tx, rx)),
                    // A gap: empty cells, not zeros.
                    _ => cells.extend(std::iter::repeat_n(String::new(), COUNTER_COLUMNS.len())),
                }
                cells
            });
            render::csv(out, &header, rows)
        }
        Format::Table => {
            out.write_all(table(doc, raw, terminal_width()).as_bytes())?;
            Ok(())
        }
    }
}

/// Columns the chart may take at most.
const CHART_MAX: usize = 40;

/// A bar `cells` wide for `value` out of `max`, in eighths of a cell.
#[must_use]
pub fn bar(value: u64, max: u64, cells: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if max == 0 || cells == 0 {
        return String::new();
    }
    let eighths = (u128::from(value) * (cells as u128) * 8).div_ceil(u128::from(max));
    let eighths = usize::try_from(eighths)
        .unwrap_or(usize::MAX)
        .min(cells * 8);
    let mut s = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        s.push(PARTS[eighths % 8]);
    }
    s
}

/// The table: one line per step with payload bytes, rates over the part of
/// the step inside the window, packets and a bar of tx + rx; `-` for steps
/// with no data. Fitted to `width` (packets, then rates, then the chart
/// go first).
#[must_use]
pub fn table(doc: &History, raw: bool, width: Option<usize>) -> String {
    let header = [
        "TIME (UTC)",
        "TX",
        "RX",
        "TX/S",
        "RX/S",
        "TX PKTS",
        "RX PKTS",
        "TX+RX",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let max = doc
        .points
        .iter()
        .filter_map(|p| p.tx.zip(p.rx))
        .map(|(tx, rx)| tx.payload_bytes.saturating_add(rx.payload_bytes))
        .max()
        .unwrap_or(0);
    for p in &doc.points {
        let time = render::short_time(&p.time);
        let Some((tx, rx)) = p.tx.zip(p.rx) else {
            let mut r = vec![time];
            r.extend(std::iter::repeat_n("-".to_owned(), 6));
            r.push(String::new());
            rows.push(r);
            continue;
        };
        let secs = p.span_ms as f64 / 1000.0;
        rows.push(vec![
            time,
            human_bytes(tx.payload_bytes, raw),
            human_bytes(rx.payload_bytes, raw),
            rate(tx.payload_bytes, secs, raw),
            rate(rx.payload_bytes, secs, raw),
            tx.packets.to_string(),
            rx.packets.to_string(),
            String::new(),
        ]);
    }
    // The chart takes what the other columns leave, within limits.
    let text_width = |cols: &[usize]| -> usize {
        cols.iter()
            .map(|i| {
                rows.iter()
                    .map(|r| r.get(*i).map_or(0, |c| c.chars().count()))
                    .chain(std::iter::once(header.get(*i).map_or(0, |h| h.len())))
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .sum()
    };
    let all = text_width(&[0, 1, 2, 3, 4, 5, 6]);
    let chart = match width {
        None => 20,
        Some(w) => {
            let left = if w >= all + 12 {
                w - all
            } else {
                w.saturating_sub(text_width(&[0, 1, 2, 3, 4]))
            };
            left.clamp(6, CHART_MAX)
        }
    };
    for (r, p) in rows.iter_mut().zip(&doc.points) {
        if let (Some(tx), Some(rx), Some(cell)) = (p.tx, p.rx, r.get_mut(7)) {
            *cell = bar(
                tx.payload_bytes.saturating_add(rx.payload_bytes),
                max,
                chart,
            );
        }
    }
    let mut t = Table::new(&header, &[false, true, true, true, true, true, true, false])
        .optional(5, 3)
        .optional(6, 3)
        .optional(7, 1)
        .optional(3, 2)
        .optional(4, 2)
        .fit(width);
    for r in rows {
        t.row(r);
    }
    let mut s = t.render();
    let mut words = doc.filters.clone();
    words.extend(doc.class.as_ref().map(|c| format!("class={c}")));
    let sel = if words.is_empty() {
        "everything".to_owned()
    } else {
        words.join(" ")
    };
    let gaps = doc.points.iter().filter(|p| p.tx.is_none()).count();
    s.push('\n');
    s.push_str(&render::wrap(
        &format!(
            "{sel}: tx {} rx {} (payload) · step {} from {} tier{}",
            human_bytes(doc.total.tx.payload_bytes, raw),
            human_bytes(doc.total.rx.payload_bytes, raw),
            crate::query::series::step_name(doc.step_ms),
            doc.tier,
            if gaps > 0 {
                format!(" · {gaps} steps without data (-)")
            } else {
                String::new()
            },
        ),
        width,
    ));
    s.push_str(&render::coverage_line(
        doc.exact,
        doc.covered_from_unix_ms,
        doc.covered_until_unix_ms,
        doc.note.as_deref(),
        width,
    ));
    s
}

/// A per-second rate for tables.
#[must_use]
pub fn rate(bytes: u64, secs: f64, raw: bool) -> String {
    if secs <= 0.0 {
        return "-".to_owned();
    }
    let per = bytes as f64 / secs;
    if raw {
        return format!("{per:.0}");
    }
    let whole = per.round() as u64;
    format!("{}/s", human_bytes(whole, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_steps_give_a_screenful() {
        const H: u64 = 3_600_000;
        let now = 1_764_540_000_000;
        for (window, want) in [
            (H, 60_000),
            (24 * H, 1_800_000),
            (7 * 24 * H, 3 * H),
            (600_000, 10_000),
        ] {
            let step = screen_step(now - window, now, false);
            assert_eq!(step, want, "window {window}");
            let rows = now.div_ceil(step) - (now - window) / step;
            assert!((30..=SCREEN_ROWS).contains(&rows), "{rows} rows");
        }
        assert_eq!(
            screen_step(now - 600_000, now, true),
            60_000,
            "whole minutes"
        );
    }

    #[test]
    fn bars_scale_to_the_largest() {
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(5, 10, 4), "██");
        assert_eq!(bar(1, 80, 10), "▏");
        assert_eq!(bar(0, 10, 4), "");
        assert_eq!(bar(3, 0, 4), "");
    }
}
