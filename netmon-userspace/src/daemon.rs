//! `netmon daemon`: drains the counters into the history store every
//! interval, purges expired rows, and records its own life as events.
//!
//! The loop, on one thread (the drain and the purge are blocking redb
//! calls; the runtime only waits for the next tick or a signal between
//! them):
//! - a `tokio::time::interval` with [`MissedTickBehavior::Delay`]: when a
//!   drain overruns the interval, the next tick comes one interval after it
//!   ended; the overrun is logged and recorded ([`DaemonEvent::SlowDrain`]),
//!   and the next drain takes the whole gap's deltas (drain invariant 6);
//! - after a drain, purge in batches of [`PURGE_BATCH`] rows while less than
//!   half an interval has passed since the drain started, so a drain is never
//!   delayed by more than one batch; purging resumes next tick while rows
//!   remain, otherwise once a minute;
//! - a failed commit (disk full) is logged and the step retried next tick:
//!   the kernel keeps counting and the snapshot only advances with a commit,
//!   so nothing is lost ([`crate::drain`]);
//! - SIGTERM or SIGINT: a final drain with [`DaemonEvent::Stop`], then exit.
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::time::MissedTickBehavior;

use crate::config;
use crate::drain::{Clock as _, Drain, StepReport, SystemClock};
use crate::kernel::KernelArgs;
use crate::ownership::Resolver;
use crate::source::CounterSource;
use crate::source::sim::{Script, SimResolver, SimSource};
use crate::store::{DaemonEvent, Store};

/// Rows deleted per purge transaction.
pub const PURGE_BATCH: u64 = 2_000;
/// How often to look for expired rows when the last purge found none left.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// `netmon daemon` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct DaemonArgs {
    /// Drain interval (`1s`, `500ms`, ...). Default: the config file's, else 1s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// History store. Default: the config file's, else /var/lib/netmon/netmon.redb.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Config file (default /etc/netmon/config.toml; it may be missing,
    /// a file named here may not).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Count a simulated traffic script instead of the kernel (see
    /// `netmon::source::sim` for the format). Its state is kept in
    /// `FILE.state`, so a restarted daemon continues where it was.
    #[arg(long, value_name = "FILE")]
    pub simulate: Option<PathBuf>,
    /// Print each interval's per-process deltas on stdout, one JSON object
    /// per line.
    #[arg(long)]
    pub log_json: bool,
    /// Query socket the CLI talks to (see [`crate::api`]).
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Kernel side.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// The counter source and resolver the daemon drains.
type Sources = (Box<dyn CounterSource>, Box<dyn Resolver>, &'static str);

/// Opens the kernel source: attaches (or reuses the pinned programs) and
/// builds the ownership resolver.
fn kernel_sources(kernel: &KernelArgs) -> anyhow::Result<Sources> {
    let (source, outcome) = crate::kernel::reader::KernelSource::open_or_attach(kernel)
        .with_context(|| {
            format!(
                "opening the kernel counters at {}",
                kernel.pin_dir.display()
            )
        })?;
    tracing::info!(?outcome, pin_dir = %kernel.pin_dir.display(), "kernel counters open");
    Ok((Box::new(source), kernel_resolver()?, "kernel"))
}

/// The kernel ownership resolver.
#[expect(
    clippy::unnecessary_wraps,
    reason = "keeps the kernel path's shape: the resolver may fail to start later"
)]
fn kernel_resolver() -> anyhow::Result<Box<dyn Resolver>> {
    Ok(Box::new(crate::ownership::kernel::KernelResolver::new()))
}

fn simulated_sources(path: &std::path::Path) -> anyhow::Result<Sources> {
    let script = Script::load(path)?;
    let resolver = SimResolver::new(&script);
    let state = SimSource::state_path_for(path);
    let source = SimSource::persistent(std::sync::Arc::new(script), &state)?;
    Ok((Box::new(source), Box::new(resolver), "simulated"))
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// A bad config file, a store that cannot be opened (not redb, newer
/// schema, ...), a source that cannot be opened. Failures after start are
/// logged and retried, not returned.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let file = config::load(args.config.as_deref())?;
    let apps = file.apps.clone();
    // Checked and bound before anything else starts: a refused [http]
    // (non-loopback without auth, bad TLS files) stops the daemon here.
    let http = crate::http::bind(&file.http)?;
    let started_unix_ms = crate::clock::now_rfc3339().1;
    let cfg = file.resolve(args.interval, args.db.clone(), &args.kernel)?;
    let (store, migrations) = Store::open(&cfg.db, cfg.retention)?;
    // Shared with the query server; the drain holds the lock while it
    // commits, a query while it reads.
    let shared = std::sync::Arc::new(std::sync::Mutex::new(store));
    let listener = crate::api::bind(&args.socket)?;
    let handle = crate::api::Handle::new(std::sync::Arc::clone(&shared), apps);
    tokio::spawn(crate::api::serve_listener(
        listener,
        args.socket.clone(),
        handle.clone(),
    ));
    let lock = || {
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    for m in &migrations {
        tracing::info!(?m, "store migrated");
    }
    let (mut source, mut resolver, source_name) = match &args.simulate {
        Some(path) => simulated_sources(path)?,
        None => kernel_sources(&cfg.kernel)?,
    };
    if let Some(http) = http {
        let info = crate::http::DaemonInfo {
            source: source_name.to_owned(),
            interval: cfg.interval,
            started_unix_ms,
            pin_dir: cfg.kernel.pin_dir.clone(),
        };
        let state =
            crate::http::AppState::new(&http.config, http.loopback_only, handle.clone(), info);
        http.spawn(&state)?;
    }
    let mut drain = Drain::new(&mut lock())?;
    let clock = SystemClock;
    let mut pending = migrations;
    pending.push(DaemonEvent::Start {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        source: source_name.to_owned(),
    });
    tracing::info!(db = %cfg.db.display(), interval = ?cfg.interval, source = source_name, "daemon started");

    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut next_purge = Instant::now();
    let reason = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigterm.recv() => break "SIGTERM",
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for SIGINT")?;
                break "SIGINT";
            }
        }
        let started = Instant::now();
        let ok = step(
            &mut drain,
            source.as_mut(),
            resolver.as_mut(),
            &mut lock(),
            clock.now_ms(),
            &mut pending,
            args.log_json,
        );
        let took = started.elapsed();
        if took > cfg.interval {
            tracing::warn!(?took, interval = ?cfg.interval, "drain took longer than the interval; the next one merges the gap");
            pending.push(DaemonEvent::SlowDrain {
                took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                interval_ms: u64::try_from(cfg.interval.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if ok && Instant::now() >= next_purge {
            next_purge = purge(&mut lock(), clock.now_ms(), started + cfg.interval / 2);
        }
    };
    pending.push(DaemonEvent::Stop {
        reason: reason.to_owned(),
    });
    tracing::info!(reason, "stopping: final drain");
    let ok = step(
        &mut drain,
        source.as_mut(),
        resolver.as_mut(),
        &mut lock(),
        clock.now_ms(),
        &mut pending,
        args.log_json,
    );
    // Best effort: a stale socket file is replaced at the next start anyway.
    let _ = std::fs::remove_file(&args.socket);
    if !ok {
        anyhow::bail!("the final drain failed; the kernel keeps the counts for the next start");
    }
    Ok(())
}

/// Runs [`run`] on a current-thread tokio runtime (for a synchronous
/// `main`).
///
/// # Errors
/// As [`run`], or when the runtime cannot be built.
pub fn run_blocking(args: DaemonArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

/// One drain step; events in `pending` are recorded with it and cleared
/// once committed. Returns whether it committed.
fn step(
    drain: &mut Drain,
    source: &mut dyn CounterSource,
    resolver: &mut dyn Resolver,
    store: &mut Store,
    now: u64,
    pending: &mut Vec<DaemonEvent>,
    log_json: bool,
) -> bool {
    match drain.step(source, resolver, store, now, pending.clone()) {
        Ok(report) => {
            pending.clear();
            if log_json {
                print_json(&report);
            }
            true
        }
        Err(e) => {
            // Logged on every failure: the operator must see a full disk.
            tracing::error!(error = %e, failures = drain.failures(), "drain failed; retrying next interval, nothing is lost");
            false
        }
    }
}

/// `--log-json`: one line per interval.
fn print_json(report: &StepReport) {
    let processes: Vec<serde_json::Value> = report
        .per_process
        .iter()
        .map(|(p, class, t)| {
            serde_json::json!({
                "pid": p.id.pid,
                "start_ticks": p.id.start_ticks,
                "comm": p.comm,
                "class": class,
                "tx": t.tx,
                "rx": t.rx,
            })
        })
        .collect();
    let line = serde_json::json!({
        "schema_version": crate::wire::SCHEMA_VERSION,
        "time": crate::clock::rfc3339_from_unix_ms(report.ts_ms),
        "ts_ms": report.ts_ms,
        "processes": processes,
    });
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "writing --log-json output");
    }
}

/// Purges in bounded batches until `deadline`; returns when to purge next.
fn purge(store: &mut Store, now: u64, deadline: Instant) -> Instant {
    loop {
        match store.purge(now, PURGE_BATCH) {
            Ok(r) if r.more && Instant::now() < deadline => {}
            Ok(r) if r.more => return Instant::now(),
            Ok(_) => return Instant::now() + PURGE_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "purge failed; retrying later");
                return Instant::now() + PURGE_EVERY;
            }
        }
    }
}
