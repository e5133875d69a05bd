//! `netmon procs`: processes seen in a window, with identity and lifetime.
use std::io::Write;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes, terminal_width};
use crate::cli::render::{self, COUNTER_COLUMNS};
use crate::wire::{Procs, Request};

/// `netmon procs` arguments.
#[derive(Debug, clap::Args)]
pub struct ProcsArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon procs`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &ProcsArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    let doc: Procs = Backend::connect(&args.conn)?.call(&Request::Procs { from_ms, until_ms })?;
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, args.output.resolve(), args.output.bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes the document in `format`.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &Procs, format: Format, raw: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::ndjson_rows(out, &doc.processes),
        Format::Csv => {
            let mut header = vec![
                "pid",
                "start_ticks",
                "comm",
                "exe",
                "cmdline",
                "app",
                "uid",
                "user",
                "ppid",
                "cgroup",
                "container",
                "first_seen",
                "first_seen_unix_ms",
                "last_seen",
                "last_seen_unix_ms",
            ];
            header.extend(COUNTER_COLUMNS);
            let rows = doc.processes.iter().map(|p| {
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let mut cells = vec![
                    p.pid.to_string(),
                    p.start_ticks.to_string(),
                    p.comm.clone(),
                    o(&p.exe),
                    o(&p.cmdline),
                    p.app.clone(),
                    p.uid.to_string(),
                    o(&p.user),
                    p.ppid.map(|v| v.to_string()).unwrap_or_default(),
                    o(&p.cgroup),
                    o(&p.container),
                    p.first_seen.clone(),
                    p.first_seen_unix_ms.to_string(),
                    p.last_seen.clone(),
                    p.last_seen_unix_ms.to_string(),
                ];
                cells.extend(render::counter_cells(&p.tx, &p.rx));
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

/// The table, fitted to `width` (first seen, container, app go first;
/// the executable path is cut).
#[must_use]
pub fn table(doc: &Procs, raw: bool, width: Option<usize>) -> String {
    let mut t = Table::new(
        &[
            "PID",
            "COMM",
            "USER",
            "APP",
            "CONTAINER",
            "FIRST SEEN",
            "LAST SEEN",
            "TX",
            "RX",
            "EXE",
        ],
        &[
            true, false, false, false, false, false, false, true, true, false,
        ],
    )
    .optional(5, 3)
    .optional(4, 2)
    .optional(3, 1)
    .shrinkable(9)
    .shrinkable(1)
    .fit(width);
    for p in &doc.processes {
        t.row(vec![
            p.pid.to_string(),
            p.comm.clone(),
            render::user_cell(p.pid, p.user.as_deref(), p.uid),
            p.app.clone(),
            p.container.clone().unwrap_or_else(|| "-".to_owned()),
            render::short_time(&p.first_seen),
            render::short_time(&p.last_seen),
            human_bytes(p.tx.payload_bytes, raw),
            human_bytes(p.rx.payload_bytes, raw),
            p.exe.clone().unwrap_or_default(),
        ]);
    }
    let mut s = t.render();
    s.push_str(&format!("\n{} processes\n", doc.processes.len()));
    s
}
