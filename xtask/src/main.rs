//! netmon's developer tasks, run as `cargo xtask <command>`.
//!
//! xtask keeps only what a build script cannot do: installing the pinned
//! toolchains and bpf-linker (`setup`), running netmon as root (`run`), running
//! the privileged kernel test suite (`test`), the benchmarks (`bench`), and
//! installing and packaging netmon as a service (`install`, `uninstall`,
//! `package`). The eBPF object itself is built by `netmon-userspace/build.rs`.
//!
//! Every command but `setup` calls `setup` first; when nothing changed that
//! costs a few process spawns (well under a second).

mod bench;
mod build;
mod cmd;
mod install;
mod package;
mod preflight;
mod privilege;
mod run;
mod setup;
mod stamp;
mod test;
mod toolchain;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workspace::Workspace;

/// netmon developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the pinned stable and nightly toolchains and build bpf-linker
    /// into .tools/ (idempotent: a second run does nothing).
    Setup,
    /// Build the default workspace members (the eBPF object is built and
    /// embedded by netmon-userspace/build.rs).
    Build(build::BuildArgs),
    /// Build netmon (release) and run it as root: `cargo xtask run -- ARGS`
    /// (default ARGS: `daemon`).
    Run(run::RunArgs),
    /// Lint, run the unit and simulated tests, then the kernel suite as root.
    Test(test::TestArgs),
    /// Run the criterion benchmarks, then the kernel throughput benchmark as
    /// root.
    Bench(bench::BenchArgs),
    /// Install netmon as a system service: binary, systemd unit, example
    /// config, man page, completions, the `netmon` user and group. Enables
    /// nothing.
    Install(install::InstallArgs),
    /// Remove what `install` wrote (the history only with --purge-history).
    Uninstall(install::UninstallArgs),
    /// Build the Debian package (target/debian/netmon_VERSION_ARCH.deb).
    Package(package::PackageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    let ws = Workspace::locate()?;
    match command {
        Command::Setup => setup::ensure(&ws).map(|_| ()),
        Command::Build(args) => build::build(&ws, &args),
        Command::Run(args) => run::run(&ws, &args),
        Command::Test(args) => test::test(&ws, &args),
        Command::Bench(args) => bench::bench(&ws, &args),
        Command::Install(args) => install::install(&ws, &args),
        Command::Uninstall(args) => install::uninstall(&args),
        Command::Package(args) => package::package(&ws, &args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn trailing_args_after_double_dash_reach_the_command() {
        let cli = Cli::try_parse_from(["xtask", "test", "--no-kernel", "--", "tcp_v4"])
            .unwrap_or_else(|e| panic!("parse failed: {e}"));
        let Command::Test(args) = cli.command else {
            panic!("expected the test command, got {:?}", cli.command);
        };
        assert!(args.no_kernel);
        assert_eq!(args.harness_args, ["tcp_v4"]);
    }

    #[test]
    fn run_arguments_are_only_taken_after_double_dash() {
        assert!(Cli::try_parse_from(["xtask", "run", "snapshot"]).is_err());
        let cli = Cli::try_parse_from(["xtask", "run", "--", "snapshot", "--json"])
            .unwrap_or_else(|e| panic!("parse failed: {e}"));
        let Command::Run(args) = cli.command else {
            panic!("expected the run command, got {:?}", cli.command);
        };
        assert_eq!(args.netmon_args, ["snapshot", "--json"]);
    }
}
