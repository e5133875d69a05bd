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
//!   remain, otherwise once a minute; once a purge is done, the size cap;
//! - a failed commit (disk full) is logged and the step retried next tick:
//!   the kernel keeps counting and the snapshot only advances with a commit,
//!   so nothing is lost ([`crate::drain`]);
//! - SIGTERM or SIGINT (handled from the start, so one that arrives during
//!   start-up stops the daemon cleanly after its first drain): a final drain
//!   with [`DaemonEvent::Stop`], then exit;
//! - before each drain, the kernel load is checked ([`PinWatch`]): when its
//!   programs or maps disappeared, what they counted is drained, they are
//!   loaded again and the gap is recorded ([`DaemonEvent::KernelLost`]);
//!   if loading fails the daemon exits non-zero.
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::time::MissedTickBehavior;

use crate::config;
use crate::drain::{Clock as _, Drain, StepReport, SystemClock};
use crate::kernel::KernelArgs;
use crate::kernel::pins::{PinLock, PinPaths};
use crate::kernel::reader::{KernelSource, PinWatch};
use crate::ownership::Resolver;
use crate::source::CounterSource;
use crate::source::sim::{Script, SimResolver, SimSource};
use crate::startup;
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
    /// Query socket the CLI talks to.
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Kernel side.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// The counter source and resolver the daemon drains, and the kernel load's
/// [`PinWatch`] (none for a simulation).
type Sources = (
    Box<dyn CounterSource>,
    Box<dyn Resolver>,
    &'static str,
    Option<PinWatch>,
);

/// Opens the kernel source: attaches (or reuses the pinned programs), and
/// what to watch to notice that they go away.
fn kernel_source(kernel: &KernelArgs) -> anyhow::Result<(KernelSource, PinWatch)> {
    let (source, outcome) = KernelSource::open_or_attach(kernel).with_context(|| {
        format!(
            "opening the kernel counters at {}",
            kernel.pin_dir.display()
        )
    })?;
    let watch = source.watch()?;
    tracing::info!(?outcome, pin_dir = %kernel.pin_dir.display(), "kernel counters open");
    Ok((source, watch))
}

/// Opens the kernel source and builds the ownership resolver.
fn kernel_sources(kernel: &KernelArgs) -> anyhow::Result<Sources> {
    let (source, watch) = kernel_source(kernel)?;
    Ok((
        Box::new(source),
        kernel_resolver(&kernel.pin_dir)?,
        "kernel",
        Some(watch),
    ))
}

/// The kernel ownership resolver.
#[expect(
    clippy::unnecessary_wraps,
    reason = "keeps the kernel path's shape: the resolver may fail to start later"
)]
fn kernel_resolver(pin_dir: &std::path::Path) -> anyhow::Result<Box<dyn Resolver>> {
    Ok(Box::new(
        crate::ownership::kernel::KernelResolver::new().with_exec_map(pin_dir),
    ))
}

fn simulated_sources(path: &std::path::Path) -> anyhow::Result<Sources> {
    let script = Script::load(path)?;
    let resolver = SimResolver::new(&script);
    let state = SimSource::state_path_for(path);
    let source = SimSource::persistent(std::sync::Arc::new(script), &state)?;
    Ok((Box::new(source), Box::new(resolver), "simulated", None))
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// Start-up order (see [`crate::startup`]): config, the pin directory's
/// lock (a second daemon on the same pins is refused, naming the first's
/// pid), the store, the socket, the kernel side; a start that fails removes
/// the files it created.
///
/// # Errors
/// A bad config file, another daemon on the pin directory, a store that
/// cannot be opened (not redb, newer schema, ...), a source that cannot be
/// opened; the kernel load disappearing and failing to load again. Other
/// failures after start are logged and retried, not returned.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let file = config::load(args.config.as_deref())?;
    let apps = file.apps.clone();
    let file_apps = file.apps.clone();
    let http_config = crate::http::HttpConfig {
        fleet: file.fleet.clone(),
        ..file.http.clone()
    };
    let alert_rules = crate::alerts::config::compile(&file.alerts, file.tariff.as_ref(), "")
        .map_err(anyhow::Error::msg)?;
    crate::query::domains::set_catalogue(crate::query::domains::Catalogue::from_config(
        &file.names,
    )?);
    let names_enabled = file.names.enabled;
    if names_enabled && file.names.reverse_lookup {
        crate::names::ptr::install(crate::names::ptr::resolver(file.names.resolver.as_deref())?)?;
    }
    crate::devices::set_config(file.devices.clone());
    let lease_dirs = crate::devices::lease_dirs(&file.devices);
    let cfg = file.resolve(args.interval, args.db.clone(), &args.kernel)?;
    // Handlers first: a SIGTERM or SIGINT during start-up is kept for the
    // loop (a clean stop after the first drain), not fatal half-way.
    let signal = |kind, name| {
        tokio::signal::unix::signal(kind).with_context(|| format!("installing the {name} handler"))
    };
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt(), "SIGINT")?;
    // One pin directory, one daemon; checked before anything is created.
    let _pin_lock = if args.simulate.is_none() {
        // Every capability the load needs, named if one is missing, before
        // anything is created.
        crate::privilege::require(crate::privilege::LOAD_CAPS)
            .map_err(crate::kernel::KernelError::from)?;
        Some(PinLock::acquire(&PinPaths::new(&cfg.kernel.pin_dir))?)
    } else {
        None
    };
    // Checked and bound before anything is created (after the pin lock, so
    // a second daemon is refused with that one line): a refused [http]
    // (non-loopback without auth, bad TLS files) stops the daemon here.
    let http = crate::http::bind(&http_config)?;
    let started_unix_ms = crate::clock::now_rfc3339().1;
    let mut undo = startup::Undo::default();
    let (store, migrations) = startup::open_store(&cfg, &mut undo)?;
    // Shared with the query server; the drain holds the lock for its whole
    // step, a query while it reads.
    let shared = std::sync::Arc::new(std::sync::Mutex::new(store));
    undo.missing_parents(&args.socket);
    let listener = crate::api::bind(&args.socket)?;
    undo.file(&args.socket);
    let lock = || {
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    for m in &migrations {
        tracing::info!(?m, "store migrated");
    }
    let (mut source, mut resolver, source_name, mut watch) = match &args.simulate {
        Some(path) => simulated_sources(path)?,
        None => kernel_sources(&cfg.kernel)?,
    };
    // New interfaces are attached at the next drain (`kernel::linkwatch`).
    let mut links = match &args.simulate {
        Some(_) => None,
        None => Some(crate::kernel::linkwatch::LinkWatch::open()?),
    };
    // Loaded: drop what the drain does not need, sandbox the query threads,
    // tell systemd we are ready (see `crate::privilege`).
    crate::privilege::started(&crate::privilege::Sandbox {
        db: cfg.db.clone(),
        socket: args.socket.clone(),
        config: args
            .config
            .clone()
            .unwrap_or_else(|| config::DEFAULT_CONFIG.into()),
        pin_dir: cfg.kernel.pin_dir.clone(),
        extra_read_only: lease_dirs,
    })?;
    let mut drain = Drain::new(&mut lock())?;
    drain.set_names(names_enabled);
    undo.disarm();
    let handle = crate::api::Handle::new(std::sync::Arc::clone(&shared), apps);
    drain.set_tap(handle.live.clone());
    tokio::spawn(crate::api::serve_listener(
        listener,
        args.socket.clone(),
        handle.clone(),
    ));
    if let Some(http) = http {
        let info = crate::http::DaemonInfo {
            source: source_name.to_owned(),
            interval: cfg.interval,
            started_unix_ms,
            pin_dir: cfg.kernel.pin_dir.clone(),
            lan: cfg.kernel.lan.clone().unwrap_or_default(),
        };
        let state =
            crate::http::AppState::new(&http.config, http.loopback_only, handle.clone(), info);
        http.spawn(&state)?;
    }
    let clock = SystemClock;
    // Alerts: evaluated after each committed step (see `crate::alerts`).
    let mut alerts =
        crate::alerts::Alerts::start(&alert_rules, file_apps, &mut lock(), clock.now_ms())?;
    let mut pending = migrations;
    pending.push(DaemonEvent::Start {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        source: source_name.to_owned(),
    });
    tracing::info!(db = %cfg.db.display(), interval = ?cfg.interval, source = source_name, "daemon started");

    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_purge = Instant::now();
    let mut intact_ms = clock.now_ms();
    let reason = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
        if let Some(w) = &mut watch {
            match w.check() {
                Ok(()) => intact_ms = clock.now_ms(),
                Err(what) => {
                    let mut kernel = Reload {
                        drain: &mut drain,
                        source: &mut source,
                        resolver: resolver.as_mut(),
                        pending: &mut pending,
                        log_json: args.log_json,
                        alerts: &mut alerts,
                    };
                    match kernel.reload(&cfg.kernel, &mut lock(), intact_ms, what) {
                        Ok(new) => *w = new,
                        Err(e) => {
                            let _ = std::fs::remove_file(&args.socket);
                            return Err(e);
                        }
                    }
                    intact_ms = clock.now_ms();
                }
            }
        }
        if let Some(l) = &mut links
            && l.changed()
        {
            crate::kernel::tc::rescan(
                &cfg.kernel.pin_dir,
                cfg.kernel.watch.as_deref(),
                cfg.kernel.lan.as_deref(),
            );
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
            &mut alerts,
        );
        let took = started.elapsed();
        crate::exporter::drain::observe(took);
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
    crate::privilege::stopping(&args.socket);
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
        &mut alerts,
    );
    // Best effort: a stale socket file is replaced at the next start anyway.
    let _ = std::fs::remove_file(&args.socket);
    if !ok {
        anyhow::bail!("the final drain failed; the kernel keeps the counts for the next start");
    }
    Ok(())
}

/// What [`Reload::reload`] works on: the loop's drain state.
struct Reload<'a> {
    drain: &'a mut Drain,
    source: &'a mut Box<dyn CounterSource>,
    resolver: &'a mut dyn Resolver,
    pending: &'a mut Vec<DaemonEvent>,
    log_json: bool,
    alerts: &'a mut Option<crate::alerts::Alerts>,
}

impl Reload<'_> {
    /// The kernel load the daemon drained disappeared (`what`): drain what
    /// its maps hold (the daemon's fds keep them alive, frozen once the
    /// programs were detached), load again and drain the new maps from
    /// then on, recording the gap as [`DaemonEvent::KernelLost`]. When the
    /// load fails, the gap is recorded with a final drain and the daemon
    /// exits with an error.
    fn reload(
        &mut self,
        kernel: &KernelArgs,
        store: &mut Store,
        intact_ms: u64,
        what: String,
    ) -> anyhow::Result<PinWatch> {
        let clock = SystemClock;
        let noticed_ms = clock.now_ms();
        tracing::error!(
            pin_dir = %kernel.pin_dir.display(),
            "netmon's kernel programs or maps disappeared: {what}; draining what they counted and loading them again"
        );
        step(
            self.drain,
            self.source.as_mut(),
            self.resolver,
            store,
            noticed_ms,
            self.pending,
            self.log_json,
            self.alerts,
        );
        let loaded = crate::privilege::reloading(|| kernel_source(kernel))
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        match loaded {
            Ok((source, watch)) => {
                *self.source = Box::new(source);
                let reattached_ms = clock.now_ms();
                tracing::warn!(
                    gap_ms = reattached_ms.saturating_sub(intact_ms),
                    "kernel programs loaded again; traffic in the gap may be missing (recorded as a kernel_lost event)"
                );
                self.pending.push(DaemonEvent::KernelLost {
                    intact_ms,
                    noticed_ms,
                    reattached_ms: Some(reattached_ms),
                    reason: what,
                });
                Ok(watch)
            }
            Err(e) => {
                self.pending.push(DaemonEvent::KernelLost {
                    intact_ms,
                    noticed_ms,
                    reattached_ms: None,
                    reason: what.clone(),
                });
                self.pending.push(DaemonEvent::Stop {
                    reason: "kernel load lost".to_owned(),
                });
                step(
                    self.drain,
                    self.source.as_mut(),
                    self.resolver,
                    store,
                    clock.now_ms(),
                    self.pending,
                    self.log_json,
                    self.alerts,
                );
                Err(e.context(format!(
                    "netmon's kernel programs disappeared ({what}) and could not be loaded again; not counting"
                )))
            }
        }
    }
}

/// Runs [`run`] on a current-thread tokio runtime (for a synchronous
/// `main`).
///
/// # Errors
/// As [`run`], or when the runtime cannot be built.
pub fn run_blocking(args: DaemonArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Query threads run inside the Landlock ruleset (`crate::privilege`).
        .on_thread_start(crate::privilege::sandbox_thread)
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

/// One drain step; events in `pending` are recorded with it and cleared
/// once committed. Returns whether it committed.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's state, passed as is; alerts run right after the commit"
)]
fn step(
    drain: &mut Drain,
    source: &mut dyn CounterSource,
    resolver: &mut dyn Resolver,
    store: &mut Store,
    now: u64,
    pending: &mut Vec<DaemonEvent>,
    log_json: bool,
    alerts: &mut Option<crate::alerts::Alerts>,
) -> bool {
    match drain.step(source, resolver, store, now, pending.clone()) {
        Ok(report) => {
            pending.clear();
            if report.trimmed {
                release_free_heap();
            }
            if let Some(a) = alerts {
                a.after_drain(store, &report);
            }
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

/// Returns the heap a burst freed to the system (glibc keeps freed memory
/// in its arenas otherwise, and the resident set stays at the burst's peak).
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap under its locks; it
    // has no preconditions.
    unsafe {
        libc::malloc_trim(0);
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

/// `[retention] max_size`, once expired rows are gone: returns when to
/// look again (next tick after a cut, while the file may still be over).
fn enforce_max_size(store: &mut Store, now: u64) -> Instant {
    match store.enforce_max_size(now) {
        Ok(Some((tier, cutoff, deleted))) => {
            tracing::info!(
                tier = tier.name(),
                before_unix_ms = cutoff,
                rows = deleted,
                file_bytes = store.file_size().unwrap_or(0),
                "history at its max_size: oldest rows of the finest tier deleted"
            );
            Instant::now()
        }
        Ok(None) => Instant::now() + PURGE_EVERY,
        Err(e) => {
            tracing::warn!(error = %e, "size cap failed; retrying later");
            Instant::now() + PURGE_EVERY
        }
    }
}

/// Purges in bounded batches until `deadline`; returns when to purge next.
fn purge(store: &mut Store, now: u64, deadline: Instant) -> Instant {
    loop {
        match store.purge(now, PURGE_BATCH) {
            Ok(r) if r.more && Instant::now() < deadline => {}
            Ok(r) if r.more => return Instant::now(),
            Ok(_) => return enforce_max_size(store, now),
            Err(e) => {
                tracing::warn!(error = %e, "purge failed; retrying later");
                return Instant::now() + PURGE_EVERY;
            }
        }
    }
}
