//! Drain benchmarks (simulated source, real redb file on disk, commits as
//! the daemon makes them: lazy, durable at least every 10 s of drain time —
//! drain invariant 7; one tick = 1 s here).
//!
//! - `drain_commit/all_active/N`: one drain step (read, deltas, attribution,
//!   one commit) with N live sockets, every one with new bytes, spread over
//!   500 processes, each socket with its own remote endpoint.
//! - `drain_commit/tenth_active/N`: N live sockets, a tenth with new bytes
//!   (the rest idle but still in the map and the snapshot).
//!
//! Then, printed (not timed by criterion):
//! - an hour change at 100k all-active sockets: the 40 steps around it,
//!   slowest and mean step time and the flows flushed to the remote rollups
//!   (drain invariant 8: at most `FLUSH_PER_STEP` a step);
//! - write amplification: bytes the process wrote (`/proc/self/io`
//!   `wchar`) and file growth per interval for 500 active processes;
//! - with `NETMON_BENCH_DAY=1`: one simulated day at a 1 s interval for 50
//!   always-active processes, file size at the end (bytes on disk per
//!   active process per day).
//!
//! `NETMON_BENCH_CACHE_MIB` sets redb's page cache (default: the store's
//! default, `DEFAULT_CACHE_BYTES`), to compare cache sizes.
//!
//! Run: `cargo bench -p netmon-userspace --bench drain`
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group};
use netmon::drain::Drain;
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{Retention, Store};

const BASE: u64 = 1_700_000_000_000;

/// `sockets` live sockets over `procs` processes; `active_every`: one socket
/// in that many keeps sending, the others sent once at tick 0.
fn script(sockets: u64, procs: u32, active_every: u64) -> Script {
    let mut b = ScriptBuilder::new(1000);
    let ids: Vec<_> = (0..procs)
        .map(|i| b.process(10_000 + i, 1, &format!("proc{i}"), 0..=u64::MAX))
        .collect();
    for c in 0..sockets {
        let owner = ids[usize::try_from(c % u64::from(procs)).unwrap_or(0)];
        let to = if c % active_every == 0 {
            u64::MAX / 2
        } else {
            0
        };
        let remote = format!(
            "{}.{}.{}.{}:{}",
            11 + c % 200,
            (c >> 8) % 256,
            c % 256,
            (c >> 16) % 256 + 1,
            1 + c % 60_000
        );
        b.socket(c + 1, Some(owner), None).flow(
            c + 1,
            &remote,
            0..=to,
            per_tick(2, 1200),
            per_tick(3, 3000),
        );
    }
    b.build().unwrap_or_else(|e| panic!("bench script: {e}"))
}

struct Rig {
    store: Store,
    drain: Drain,
    source: SimSource,
    resolver: SimResolver,
    tick: u64,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(script: &Script) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cache = std::env::var("NETMON_BENCH_CACHE_MIB")
            .ok()
            .and_then(|m| m.parse::<usize>().ok())
            .map_or(netmon::store::DEFAULT_CACHE_BYTES, |m| m << 20);
        let (mut store, _) =
            Store::open_with_cache(&dir.path().join("bench.redb"), Retention::default(), cache)
                .unwrap_or_else(|e| panic!("store: {e}"));
        let drain = Drain::new(&mut store).unwrap_or_else(|e| panic!("drain: {e}"));
        let mut rig = Self {
            store,
            drain,
            source: SimSource::new(Arc::new(script.clone())),
            resolver: SimResolver::new(script),
            tick: 0,
            _dir: dir,
        };
        rig.step(); // snapshot filled: the steady state
        rig
    }

    fn step(&mut self) -> netmon::drain::StepReport {
        self.source.set_tick(self.tick);
        let report = self
            .drain
            .step(
                &mut self.source,
                &mut self.resolver,
                &mut self.store,
                BASE + self.tick * 1000,
                Vec::new(),
            )
            .unwrap_or_else(|e| panic!("step: {e}"));
        self.tick += 1;
        report
    }
}

fn drain_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain_commit");
    g.sample_size(10);
    for (name, every) in [("all_active", 1), ("tenth_active", 10)] {
        for n in [1_000u64, 10_000, 100_000] {
            let mut rig = Rig::new(&script(n, 500, every));
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| rig.step());
            });
        }
    }
    g.finish();
}

criterion_group!(benches, drain_commit);

fn wchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("wchar: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Bytes written per interval for 500 active processes (one socket each).
fn write_amplification() {
    let mut rig = Rig::new(&script(500, 500, 1));
    for _ in 0..60 {
        rig.step();
    }
    let (w0, s0) = (wchar(), rig.store.file_size().unwrap_or(0));
    let n = 600u64;
    for _ in 0..n {
        rig.step();
    }
    let (w1, s1) = (wchar(), rig.store.file_size().unwrap_or(0));
    println!(
        "write amplification, 500 active processes: {} bytes written per interval (wchar), file grew {} bytes per interval over {n} intervals (file {} bytes)",
        (w1 - w0) / n,
        s1.saturating_sub(s0) / n,
        s1
    );
}

/// The steps around an hour change at 100k all-active sockets: every flow
/// has bytes of the ended hour to move to the remote rollups.
fn hour_change() {
    const HOUR_MS: u64 = 3_600_000;
    let mut rig = Rig::new(&script(100_000, 500, 1));
    // The sim is a pure function of the tick: jump to 10 s before the hour.
    let to_hour = (HOUR_MS - BASE % HOUR_MS) / 1000;
    rig.tick = to_hour - 10;
    rig.step();
    let mut times = Vec::new();
    let mut flushed = Vec::new();
    for _ in 0..40 {
        let t0 = Instant::now();
        let report = rig.step();
        times.push(t0.elapsed());
        flushed.push(report.remote_flushed);
    }
    let max = times.iter().max().copied().unwrap_or_default();
    let mean = times.iter().sum::<std::time::Duration>() / 40;
    let busy = flushed.iter().filter(|f| **f > 0).count();
    println!(
        "hour change, 100k all-active sockets, 40 steps around it: slowest step {max:?}, mean {mean:?}; remote flush spread over {busy} steps (at most {} flows a step)",
        flushed.iter().max().copied().unwrap_or(0)
    );
}

/// One simulated day at 1 s for 50 always-active processes.
fn disk_per_process_day() {
    let procs = 50u64;
    let mut rig = Rig::new(&script(procs, 50, 1));
    let started = Instant::now();
    for _ in 0..86_400 {
        rig.step();
    }
    let size = rig.store.file_size().unwrap_or(0);
    println!(
        "one simulated day, {procs} active processes at 1 s: file {size} bytes = {} bytes per active process per day ({:?} to simulate)",
        size / procs,
        started.elapsed()
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    write_amplification();
    hour_change();
    if std::env::var_os("NETMON_BENCH_DAY").is_some() {
        disk_per_process_day();
    }
}
