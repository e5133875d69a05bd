//! The `netmon` binary: parses the command line and hands off to
//! [`netmon::cli`]. Errors end here: one line on stderr, exit 1 (usage errors
//! exit 2, through clap or [`netmon::cli::UsageError`]), and a broken pipe
//! (`netmon ... | head`) exits 0.
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = netmon::cli::Cli::parse();
    netmon::cli::init_logging(&cli);
    match netmon::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if netmon::cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("netmon: {}", netmon::cli::one_line(&err));
            ExitCode::from(netmon::cli::exit_code(&err))
        }
    }
}
