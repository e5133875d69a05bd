//! `netmon history`: a time series for everything or one subject.
use std::io::Write;
use std::net::IpAddr;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes};
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
    /// Step: 5s, 1m, 1h, 1d, ... Default: the finest tier that still holds
    /// the window (5s on interval samples).
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
    /// Only traffic to this remote address (hour resolution).
    #[arg(long, value_name = "ADDR", group = "subject")]
    pub remote: Option<IpAddr>,
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
    let (from_ms, until_ms) = args.window.resolve();
    if let Some(pid) = &args.pid {
        crate::query::terms::parse_pid(pid).map_err(anyhow::Error::msg)?;
    }
    let req = Request::History {
        from_ms,
        until_ms,
        step_ms: args.step,
        filters: args.filters(),
        class: args.class.map(|c| c.name().to_owned()),
    };
    let doc: History = Backend::connect(&args.conn)?.call(&req)?;
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, args.output.resolve(), args.output.bytes)?;
    out.flush()?;
    Ok(())
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
            let mut header = vec!["time", "time_unix_ms"];
            header.extend(COUNTER_COLUMNS);
            let rows = doc.points.iter().map(|p| {
                let mut cells = vec![p.time.clone(), p.time_unix_ms.to_string()];
                cells.extend(render::counter_cells(&p.tx, &p.rx));
                cells
            });
            render::csv(out, &header, rows)
        }
        Format::Table => {
            out.write_all(table(doc, raw).as_bytes())?;
            Ok(())
        }
    }
}

/// The table: one line per step with payload bytes and rates.
#[must_use]
pub fn table(doc: &History, raw: bool) -> String {
    let mut t = Table::new(
        &[
            "TIME (UTC)",
            "TX",
            "RX",
            "TX/S",
            "RX/S",
            "TX PKTS",
            "RX PKTS",
        ],
        &[false, true, true, true, true, true, true],
    );
    let secs = doc.step_ms as f64 / 1000.0;
    for p in &doc.points {
        t.row(vec![
            render::short_time(&p.time),
            human_bytes(p.tx.payload_bytes, raw),
            human_bytes(p.rx.payload_bytes, raw),
            rate(p.tx.payload_bytes, secs, raw),
            rate(p.rx.payload_bytes, secs, raw),
            p.tx.packets.to_string(),
            p.rx.packets.to_string(),
        ]);
    }
    let mut s = t.render();
    let mut words = doc.filters.clone();
    words.extend(doc.class.as_ref().map(|c| format!("class={c}")));
    let sel = if words.is_empty() {
        "everything".to_owned()
    } else {
        words.join(" ")
    };
    s.push_str(&format!(
        "\n{sel}: tx {} rx {} (payload) · step {} from {} tier\n",
        human_bytes(doc.total.tx.payload_bytes, raw),
        human_bytes(doc.total.rx.payload_bytes, raw),
        crate::query::series::step_name(doc.step_ms),
        doc.tier,
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
