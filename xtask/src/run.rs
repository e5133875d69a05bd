//! `cargo xtask run [--debug] [-- ARGS]`: build netmon and run it as root.

use std::os::unix::process::CommandExt as _;

use anyhow::Context as _;

use crate::build;
use crate::cmd;
use crate::privilege::Privilege;
use crate::setup;
use crate::workspace::Workspace;

/// What `netmon` runs when no arguments are given.
const DEFAULT_ARGS: [&str; 1] = ["daemon"];

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Build and run the debug binary instead of the release one.
    #[arg(long)]
    pub debug: bool,
    /// Arguments for netmon, after `--` (default: `daemon`).
    #[arg(last = true, value_name = "ARGS")]
    pub netmon_args: Vec<String>,
}

/// Setup, build, then replace xtask with `netmon ARGS` running as root (so
/// Ctrl-C and the exit status are netmon's own).
pub fn run(ws: &Workspace, args: &RunArgs) -> anyhow::Result<()> {
    let privilege = Privilege::detect();
    // Say that root is out of reach before spending minutes building.
    privilege.prefix("netmon")?;
    let tools = setup::ensure(ws)?;
    let bin = build::netmon(&tools, !args.debug)?;
    let mut netmon = privilege.command("netmon", &bin)?;
    netmon.args(netmon_args(&args.netmon_args));
    eprintln!("$ {}", cmd::display(&netmon));
    // exec only returns on failure.
    let err = netmon.exec();
    Err(err).with_context(|| format!("cannot run {}", bin.display()))
}

/// The user's arguments, or `daemon` when there are none.
fn netmon_args(given: &[String]) -> Vec<String> {
    if given.is_empty() {
        DEFAULT_ARGS.map(str::to_owned).to_vec()
    } else {
        given.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_daemon() {
        assert_eq!(netmon_args(&[]), ["daemon"]);
    }

    #[test]
    fn given_arguments_replace_the_default() {
        let given = ["snapshot".to_owned(), "--json".to_owned()];
        assert_eq!(netmon_args(&given), given);
    }
}
