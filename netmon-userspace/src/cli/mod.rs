//! The command line: subcommands, output rules, error rendering.
//!
//! Output rule for every command: a readable table on a terminal, JSON when
//! stdout is not a terminal or with `--format json` (`--json` for short).
pub mod alerts;
pub mod completions;
pub mod conn;
pub mod devices;
pub mod events;
pub mod export;
pub mod history;
pub mod interfaces;
pub mod output;
pub mod procs;
pub mod render;
pub mod report;
pub mod snapshot;
pub mod status;
pub mod token;
pub mod top;
pub mod usage;

use clap::{Parser, Subcommand};

use crate::kernel::{KernelArgs, loader};

/// Exact, kernel-counted, per-process network accounting.
#[derive(Debug, Parser)]
#[command(name = "netmon", version, about, propagate_version = true)]
pub struct Cli {
    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "NETMON_LOG")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the eBPF programs and pin them, then exit. The kernel
    /// keeps counting until `netmon unload`.
    Load(LoadArgs),
    /// Detach the programs and remove every pin (counters are lost). Refused
    /// while a daemon drains them, unless --force.
    Unload(UnloadArgs),
    /// Current counters per process (and per socket with --sockets), read
    /// from the pinned maps, with or without a running daemon.
    Snapshot(snapshot::SnapshotArgs),
    /// Health of the kernel side: programs, cgroup, map fill, overflow.
    Status(status::StatusArgs),
    /// Load (or re-open) the kernel side and drain its counters every
    /// interval into the history database, exactly once.
    Daemon(crate::daemon::DaemonArgs),
    /// Live rates per process (or app, user, ...), refreshed every interval:
    /// a full-screen view on a terminal, NDJSON when piped.
    Top(top::TopArgs),
    /// Totals over a window, grouped and sorted.
    Usage(usage::UsageArgs),
    /// A time series for everything or one process, app, user, cgroup or
    /// remote address.
    History(history::HistoryArgs),
    /// Processes seen in a window, with identity and lifetime.
    Procs(procs::ProcsArgs),
    /// Raw stored rows for other tools (NDJSON or CSV).
    Export(export::ExportArgs),
    /// What the daemon recorded about itself: starts, stops, resets, gaps
    /// in counting (kernel programs lost and loaded again).
    Events(events::EventsArgs),
    /// Shell completion script.
    Completions(completions::CompletionsArgs),
    /// Man page (roff) on stdout.
    Man(completions::ManArgs),
    /// Alert rules with their state, and recent events; `alerts check
    /// FILE` validates a config file.
    Alerts(alerts::AlertsArgs),
    /// What the traffic costs under the config's [tariff].
    Cost(alerts::CostArgs),
    /// Data cap: used, remaining, days left, daily budget.
    Quota(alerts::QuotaArgs),
    /// Bearer tokens of the HTTP API: create, list, revoke.
    Token(token::TokenArgs),
    /// Charts and tables of a window to a file: .svg, .png, .html or .json.
    Report(report::ReportArgs),
    /// Per watched interface and direction: packets and bytes counted by
    /// the tc programs, split by local socket, forwarded, other socket and
    /// no socket (live, since the load).
    Interfaces(interfaces::InterfacesArgs),
    /// LAN devices (MAC addresses) on a gateway over a window: bytes they
    /// sent and received through this host, by class, with names from
    /// DHCP leases, the neighbour table and the config.
    Devices(devices::DevicesArgs),
}

/// `netmon load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    kernel: KernelArgs,
}

/// `netmon unload`.
#[derive(Debug, clap::Args)]
pub struct UnloadArgs {
    /// bpffs directory the maps and links are pinned under.
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pin_dir: std::path::PathBuf,
    /// Unload even while a daemon drains these pins. The daemon notices
    /// within one interval, records the gap and loads the programs again
    /// (e.g. to replace them with this binary's); stop the daemon to stop
    /// counting.
    #[arg(long)]
    force: bool,
}

/// Sets up tracing on stderr, in colour only when stderr is a terminal (a
/// log written to a file or the journal carries no escape codes).
pub fn init_logging(cli: &Cli) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line.
///
/// # Errors
/// Anything that stops the command; rendered by `main` as one line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Load(args) => {
            let outcome = loader::attach(&args.kernel)?;
            match outcome {
                loader::AttachOutcome::Loaded => {
                    eprintln!(
                        "netmon: loaded and attached; pinned at {}",
                        args.kernel.pin_dir.display()
                    );
                }
                loader::AttachOutcome::AlreadyLoaded => {
                    eprintln!(
                        "netmon: already loaded at {}",
                        args.kernel.pin_dir.display()
                    );
                }
            }
            Ok(())
        }
        Command::Unload(args) => {
            loader::detach(&args.pin_dir, args.force)?;
            eprintln!("netmon: detached and removed {}", args.pin_dir.display());
            Ok(())
        }
        Command::Snapshot(args) => snapshot::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Daemon(args) => crate::daemon::run_blocking(args),
        Command::Top(args) => top::run(&args),
        Command::Usage(args) => usage::run(&args),
        Command::History(args) => history::run(&args),
        Command::Procs(args) => procs::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Events(args) => events::run(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
        Command::Alerts(args) => alerts::run_alerts(&args),
        Command::Cost(args) => alerts::run_cost(&args),
        Command::Quota(args) => alerts::run_quota(&args),
        Command::Token(args) => token::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Interfaces(args) => interfaces::run(&args),
        Command::Devices(args) => devices::run(&args),
    }
}

/// A mistake in the command line that clap cannot see (a window whose end
/// is before its start, ...): `main` prints it as one line and exits 2,
/// like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for `err`: 2 for a [`UsageError`], else 1.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        2
    } else {
        1
    }
}

/// True if a broken pipe caused `err` (the reader went away: not an error).
#[must_use]
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line: `outer: inner: root`. Causes whose
/// text the outer message already contains are skipped.
#[must_use]
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
