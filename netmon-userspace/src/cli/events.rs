//! `netmon events`: what the daemon recorded about its own life in a window
//! (starts, stops, resets, kernel loads lost and loaded again, slow drains),
//! so a gap in counting is visible next to the numbers it affects.
use std::io::Write;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table};
use crate::cli::render;
use crate::wire::{EventRow, Events, Request};

/// `netmon events` arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon events`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &EventsArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    let doc: Events = Backend::connect(&args.conn)?.call(&Request::Events { from_ms, until_ms })?;
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, args.output.resolve())?;
    out.flush()?;
    Ok(())
}

/// An event's fields as `key=value` words, in the stored order.
fn details(e: &EventRow) -> String {
    e.details
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s:?}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the document in `format`.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &Events, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::ndjson_rows(out, &doc.events),
        Format::Csv => {
            let rows = doc.events.iter().map(|e| {
                vec![
                    e.time.clone(),
                    e.time_unix_ms.to_string(),
                    e.kind.clone(),
                    serde_json::Value::Object(e.details.clone()).to_string(),
                ]
            });
            render::csv(out, &["time", "time_unix_ms", "kind", "details"], rows)
        }
        Format::Table => {
            let mut t = Table::new(&["TIME", "KIND", "DETAILS"], &[false, false, false]);
            for e in &doc.events {
                t.row(vec![
                    render::short_time(&e.time),
                    e.kind.clone(),
                    details(e),
                ]);
            }
            let mut s = t.render();
            s.push_str(&format!("\n{} events\n", doc.events.len()));
            out.write_all(s.as_bytes())?;
            Ok(())
        }
    }
}
