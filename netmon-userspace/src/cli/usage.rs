//! `netmon usage`: totals over a window, grouped and sorted.
use std::io::Write;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes, terminal_width};
use crate::cli::render::{self, COUNTER_COLUMNS, GROUP_COLUMNS};
use crate::query::terms::{Dimension, FilterTerm};
use crate::store::DestClass;
use crate::wire::{Request, Usage};

/// `netmon usage` arguments.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Group by.
    #[arg(long, value_enum, default_value = "process")]
    pub by: Dimension,
    /// Only rows matching KEY=VALUE (pid, app, comm, user, cgroup,
    /// container, remote, port, protocol, interface, class, server_name,
    /// domain: the name or any under it, service); repeatable.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<FilterTerm>,
    /// Only traffic to this destination class.
    #[arg(long, value_parser = class_parser)]
    pub class: Option<DestClass>,
    /// Show the N largest groups only.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--class` values.
///
/// # Errors
/// For unknown words.
pub fn class_parser(s: &str) -> Result<DestClass, String> {
    crate::query::terms::parse_class(s)
}

/// Runs `netmon usage`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &UsageArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    if args.by == Dimension::Device {
        if !args.filters.is_empty() || args.class.is_some() {
            anyhow::bail!(crate::cli::UsageError(
                "--by device takes no --filter or --class: use `netmon devices --device NAME`"
                    .to_owned()
            ));
        }
        return crate::cli::devices::show(from_ms, until_ms, None, &args.conn, &args.output);
    }
    let req = Request::Usage {
        from_ms,
        until_ms,
        by: args.by.name().to_owned(),
        filters: args.filters.iter().map(ToString::to_string).collect(),
        class: args.class.map(|c| c.name().to_owned()),
        limit: args.limit,
    };
    let doc: Usage = Backend::connect(&args.conn)?.call(&req)?;
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, args.output.resolve(), args.output.bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes the document in `format`.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &Usage, format: Format, raw: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::ndjson_rows(out, &doc.rows),
        Format::Csv => {
            let mut header = vec!["key"];
            header.extend(GROUP_COLUMNS);
            header.extend(COUNTER_COLUMNS);
            header.push("share");
            let rows = doc.rows.iter().map(|r| {
                let mut cells = vec![r.key.clone()];
                cells.extend(render::group_cells(&r.fields));
                cells.extend(render::counter_cells(&r.tx, &r.rx));
                cells.push(format!("{:.6}", r.share));
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

/// The table: one row per group, payload bytes (human units unless `raw`),
/// packets, IP bytes, share; a summary line. Fitted to `width` (IP bytes,
/// then packets go first; long names are cut).
#[must_use]
pub fn table(doc: &Usage, raw: bool, width: Option<usize>) -> String {
    let process = doc.by == "process";
    let mut header: Vec<&str> = if process {
        vec!["PID", "COMM", "USER", "APP"]
    } else {
        vec![first_column(&doc.by)]
    };
    header.extend(["TX", "RX", "TX PKTS", "RX PKTS", "TX IP", "RX IP", "SHARE"]);
    let mut right: Vec<bool> = if process {
        vec![true, false, false, false]
    } else {
        vec![false]
    };
    right.extend([true; 7]);
    let n = header.len();
    let mut t = Table::new(&header, &right)
        .optional(n - 5, 2)
        .optional(n - 4, 2)
        .optional(n - 3, 3)
        .optional(n - 2, 3)
        .fit(width);
    t = if process {
        t.optional(3, 1).shrinkable(1).shrinkable(2)
    } else {
        t.shrinkable(0)
    };
    for r in &doc.rows {
        let mut cells = if process {
            vec![
                r.fields.pid.map(|p| p.to_string()).unwrap_or_default(),
                r.fields.comm.clone().unwrap_or_default(),
                r.fields.user.clone().unwrap_or_default(),
                r.fields.app.clone().unwrap_or_default(),
            ]
        } else {
            vec![remote_cell(&r.key, &r.fields)]
        };
        cells.extend([
            human_bytes(r.tx.payload_bytes, raw),
            human_bytes(r.rx.payload_bytes, raw),
            r.tx.packets.to_string(),
            r.rx.packets.to_string(),
            human_bytes(r.tx.ip_bytes, raw),
            human_bytes(r.rx.ip_bytes, raw),
            format!("{:.1}%", r.share * 100.0),
        ]);
        t.row(cells);
    }
    let mut s = t.render();
    let shown = if doc.groups_total > doc.rows.len() as u64 {
        format!("{} of {} groups", doc.rows.len(), doc.groups_total)
    } else {
        format!("{} groups", doc.groups_total)
    };
    s.push('\n');
    s.push_str(&render::wrap(
        &format!(
            "total: tx {} rx {} (payload) · {shown} · {} → {}",
            human_bytes(doc.total.tx.payload_bytes, raw),
            human_bytes(doc.total.rx.payload_bytes, raw),
            render::short_time(&doc.from),
            render::short_time(&doc.until),
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
    if let Some(ifaces) = crate::cli::interfaces::usage_table(doc, raw, width) {
        s.push('\n');
        s.push_str(&ifaces);
    }
    s
}

/// A group's cell; a remote's with its busiest server name (and how many
/// more it has): `93.184.216.34 (www.example.com +1)`.
pub(crate) fn remote_cell(key: &str, f: &crate::wire::GroupFields) -> String {
    match (f.remote_addr, f.server_names.first()) {
        (Some(_), Some(name)) if f.server_names.len() > 1 => {
            format!("{key} ({name} +{})", f.server_names.len() - 1)
        }
        (Some(_), Some(name)) => format!("{key} ({name})"),
        (Some(_), None) => match (&f.server_name, f.name_source.as_deref()) {
            (Some(name), Some("ptr")) => format!("{key} (ptr {name})"),
            _ => key.to_owned(),
        },
        _ => key.to_owned(),
    }
}

fn first_column(by: &str) -> &'static str {
    match by {
        "app" => "APP",
        "user" => "USER",
        "cgroup" => "CGROUP",
        "container" => "CONTAINER",
        "remote" => "REMOTE",
        "port" => "PORT",
        "interface" => "INTERFACE",
        "protocol" => "PROTOCOL",
        "class" => "CLASS",
        "server_name" => "SERVER NAME",
        "domain" => "DOMAIN",
        "service" => "SERVICE",
        _ => "GROUP",
    }
}
