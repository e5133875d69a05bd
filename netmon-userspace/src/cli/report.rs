//! `netmon report`: charts and tables of a window written to a file, by
//! extension: `.svg`, `.png`, `.html` (self-contained) or `.json` (the
//! data). See [`crate::report`].
use std::path::PathBuf;

use crate::cli::conn::{Backend, ConnArgs, WindowArgs};

/// `netmon report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Group by: app, process, user or class.
    #[arg(long, default_value = "app", value_parser = clap::builder::PossibleValuesParser::new(crate::report::GROUPINGS))]
    pub by: String,
    /// Show the N largest groups; the rest is "other".
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub top: usize,
    /// Where to write: FILE.svg, FILE.png, FILE.html or FILE.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `netmon report`.
///
/// # Errors
/// Connection, query, drawing and writing errors.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let window = args.window.resolve()?;
    let mut backend = Backend::connect(&args.conn)?;
    let report = crate::report::gather(&mut backend, window, &args.by, args.top.max(1))?;
    crate::report::render::write(&report, &args.out)?;
    eprintln!("netmon: report written to {}", args.out.display());
    Ok(())
}
