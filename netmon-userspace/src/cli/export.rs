//! `netmon export`: raw stored rows for other tools (NDJSON by default,
//! CSV, or one JSON document).
use std::io::Write;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, Table, human_bytes, terminal_width};
use crate::cli::render;
use crate::cli::usage::class_parser;
use crate::query::terms::FilterTerm;
use crate::store::DestClass;
use crate::wire::{Export, ExportRow, Request};

/// `netmon export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only rows matching KEY=VALUE (pid, app, comm, user, cgroup,
    /// container, class); repeatable.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<FilterTerm>,
    /// Only traffic to this destination class.
    #[arg(long, value_parser = class_parser)]
    pub class: Option<DestClass>,
    /// Per process and remote endpoint rows (minute, hour and day
    /// rollups) with the remote address, service port, direction,
    /// protocol, server name, domain and service; filters may then also
    /// be remote, port, protocol, server_name, domain and service.
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format. Default: NDJSON, one row per line (raw rows are for
    /// tools), on a terminal too.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Short for `--format json` (one document).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Raw byte counts instead of KiB/MiB/GiB in tables.
    #[arg(long)]
    pub bytes: bool,
}

/// CSV columns, in [`ExportRow`] field order.
pub const COLUMNS: [&str; 19] = [
    "time",
    "time_unix_ms",
    "tier",
    "pid",
    "start_ticks",
    "comm",
    "app",
    "user",
    "class",
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

/// Extra CSV columns of `--remote` rows, in [`crate::wire::ExportRemote`]
/// field order, after [`COLUMNS`].
pub const REMOTE_COLUMNS: [&str; 7] = [
    "remote_addr",
    "service_port",
    "direction",
    "protocol",
    "server_name",
    "domain",
    "service",
];

/// Runs `netmon export`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    let req = Request::Export {
        from_ms,
        until_ms,
        filters: args.filters.iter().map(ToString::to_string).collect(),
        class: args.class.map(|c| c.name().to_owned()),
        remote: args.remote,
    };
    let doc: Export = Backend::connect(&args.conn)?.call(&req)?;
    // Raw rows are for tools: NDJSON unless asked otherwise.
    let format = if args.json {
        Format::Json
    } else {
        args.format.unwrap_or(Format::Ndjson)
    };
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, format, args.bytes)?;
    out.flush()?;
    Ok(())
}

fn cells(r: &ExportRow) -> Vec<String> {
    vec![
        r.time.clone(),
        r.time_unix_ms.to_string(),
        r.tier.clone(),
        r.pid.to_string(),
        r.start_ticks.to_string(),
        r.comm.clone(),
        r.app.clone(),
        r.user.clone(),
        r.class.clone(),
        r.tx_packets.to_string(),
        r.tx_ip_bytes.to_string(),
        r.tx_payload_bytes.to_string(),
        r.rx_packets.to_string(),
        r.rx_ip_bytes.to_string(),
        r.rx_payload_bytes.to_string(),
        r.tx_app_bytes.to_string(),
        r.tx_retrans_bytes.to_string(),
        r.rx_app_bytes.to_string(),
        r.rx_retrans_bytes.to_string(),
    ]
}

/// [`cells`] and, for a remote row, its endpoint and names.
fn remote_cells(r: &ExportRow) -> Vec<String> {
    let mut c = cells(r);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match &r.remote {
        Some(e) => c.extend([
            e.remote_addr.to_string(),
            e.service_port.to_string(),
            opt(&e.direction),
            e.protocol.clone(),
            opt(&e.server_name),
            opt(&e.domain),
            opt(&e.service),
        ]),
        None => c.extend(std::iter::repeat_n(String::new(), REMOTE_COLUMNS.len())),
    }
    c
}

/// Writes the document in `format`.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &Export, format: Format, raw: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::ndjson_rows(out, &doc.rows),
        Format::Csv if doc.rows.iter().any(|r| r.remote.is_some()) => {
            let columns: Vec<&str> = COLUMNS.iter().chain(&REMOTE_COLUMNS).copied().collect();
            render::csv(out, &columns, doc.rows.iter().map(remote_cells))
        }
        Format::Csv => render::csv(out, &COLUMNS, doc.rows.iter().map(cells)),
        Format::Table => write_table(out, doc, raw, terminal_width()),
    }
}

/// The table, fitted to `width`.
///
/// # Errors
/// I/O errors.
pub fn write_table(
    out: &mut dyn Write,
    doc: &Export,
    raw: bool,
    width: Option<usize>,
) -> anyhow::Result<()> {
    let mut t = Table::new(
        &["TIME (UTC)", "TIER", "PID", "COMM", "CLASS", "TX", "RX"],
        &[false, false, true, false, false, true, true],
    )
    .optional(1, 1)
    .shrinkable(3)
    .fit(width);
    for r in &doc.rows {
        t.row(vec![
            render::short_time(&r.time),
            r.tier.clone(),
            r.pid.to_string(),
            r.comm.clone(),
            r.class.clone(),
            human_bytes(r.tx_payload_bytes, raw),
            human_bytes(r.rx_payload_bytes, raw),
        ]);
    }
    out.write_all(t.render().as_bytes())?;
    Ok(())
}
