//! Disk figures of the history: file size per tier and bytes written per
//! day, through the real drain and store, on simulated sources with a
//! fast-forwarded clock (1 s drain interval, the daemon's default; default
//! retention; purge and the size cap as the daemon runs them: every 60 s of
//! drain time, `PURGE_BATCH` rows a transaction). The daemon does not
//! compact the file by itself (`netmon::store::compact`); with
//! `NETMON_DISK_COMPACT=1` the bench also compacts after the purge when the
//! file is sparse (looked at once an hour), to measure what that would do.
//!
//! Scenarios (`NETMON_DISK`, comma separated; default `web`):
//! - `steady50`, `steady500`: 30 days of N always-active processes, each
//!   with one TCP connection to its own remote (traffic and a quality
//!   sample every interval). The days older than the interval tier's
//!   retention are drained once per simulated minute: every tier coarser
//!   than the interval holds the same rows as with 60 drains (whole
//!   minutes), and their interval rows are purged by the end anyway. The
//!   last interval retention (plus one hour) is drained every second.
//!   Printed: file size, bytes per tier (redb's table statistics), rows
//!   per tier, and bytes written (`/proc/self/io` `wchar`) over the last
//!   simulated hour (times 24: a day at that rate).
//! - `web`: a web server (one process, inbound port 443) taking short
//!   connections (one interval each: connect, 1 KB each way, close) from
//!   1,000 client addresses, at 10,000 and at 1,000 connections per
//!   second, 240 s each, side by side: bytes written per interval and file
//!   growth after a 60 s warm-up. Rows follow (owners × services × peers),
//!   so both rates should write about the same.
//! - `webday`: one simulated day of that web server, every client
//!   connecting every interval (the same rows as 10,000/s, see `web`): 23
//!   hours drained once a minute, the last hour at 1 s (1,000
//!   connections/s); file size per tier, and the interval tier's bytes and
//!   the bytes written in that hour, times 24 for a day at 1 s.
//!
//! Run: `NETMON_DISK=steady50,steady500,web,webday cargo bench -p
//! netmon-userspace --bench disk`
use std::sync::Arc;
use std::time::Instant;

use netmon::drain::Drain;
use netmon::ownership::{Owners, ProcessId, ProcessInfo, Resolver};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, SimTcp, per_tick};
use netmon::source::{CounterSource, FlowReading, Reading, SourceError};
use netmon::store::compact::Compaction;
use netmon::store::{Retention, Store};
use netmon_common::{FLOW_F_CLOSED, FLOW_F_OWNED, FlowKey, FlowValue, SockOwner, TcpSample};
use rustc_hash::FxHashMap;

/// 2023-11-14T22:13:20Z: any fixed time.
const BASE: u64 = 1_700_000_000_000;
const DAY_S: u64 = 86_400;
/// The daemon's purge batch (`netmon::daemon::PURGE_BATCH`).
const PURGE_BATCH: u64 = 2_000;

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

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// A store, a drain, and the daemon's purge rhythm.
struct Rig {
    store: Store,
    drain: Drain,
    last_purge: u64,
    /// Compact when sparse after the purge (`NETMON_DISK_COMPACT=1`).
    compact: bool,
    /// Compactions so far (`netmon::store::compact`).
    compactions: Vec<Compaction>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (mut store, _) = Store::open(&dir.path().join("disk.redb"), Retention::default())
            .unwrap_or_else(|e| panic!("store: {e}"));
        let drain = Drain::new(&mut store).unwrap_or_else(|e| panic!("drain: {e}"));
        Self {
            store,
            drain,
            last_purge: 0,
            compact: std::env::var("NETMON_DISK_COMPACT").is_ok_and(|v| v == "1"),
            compactions: Vec::new(),
            _dir: dir,
        }
    }

    /// One drain at `now`, then the purge when 60 s of drain time passed.
    fn step(&mut self, source: &mut dyn CounterSource, resolver: &mut dyn Resolver, now: u64) {
        self.drain
            .step(source, resolver, &mut self.store, now, Vec::new())
            .unwrap_or_else(|e| panic!("step: {e}"));
        if now >= self.last_purge + 60_000 {
            self.last_purge = now;
            while self
                .store
                .purge(now, PURGE_BATCH)
                .unwrap_or_else(|e| panic!("purge: {e}"))
                .more
            {}
            self.store
                .enforce_max_size(now)
                .unwrap_or_else(|e| panic!("max size: {e}"));
            if self.compact
                && let Some(c) = self
                    .store
                    .compact_if_sparse(now)
                    .unwrap_or_else(|e| panic!("compact: {e}"))
            {
                self.compactions.push(c);
            }
        }
    }

    fn report(&mut self, what: &str) {
        let size = self.store.file_size().unwrap_or(0);
        let bytes = self.store.tier_bytes().unwrap_or_default();
        let rows = self.store.tier_rows().unwrap_or_default();
        let tiers: Vec<String> = bytes
            .iter()
            .zip(&rows)
            .map(|((t, b), r)| format!("{} {} ({} rows)", t.name(), mb(*b), r.rows))
            .collect();
        let in_tiers: u64 = bytes.iter().map(|b| b.1).sum();
        println!(
            "{what}: file {}; tiers: {}; other tables and free pages {}",
            mb(size),
            tiers.join(", "),
            mb(size.saturating_sub(in_tiers))
        );
        if let Some(last) = self.compactions.last() {
            let slowest = self.compactions.iter().map(|c| c.took).max();
            println!(
                "  {} compactions; the last: {} -> {} ({} in use); slowest took {:?}",
                self.compactions.len(),
                mb(last.before),
                mb(last.after),
                mb(last.in_use),
                slowest.unwrap_or_default()
            );
        }
    }
}

/// `procs` processes, one always-active TCP connection each.
fn steady_script(procs: u32) -> Script {
    let mut b = ScriptBuilder::new(1000);
    for i in 0..procs {
        let p = b.process(10_000 + i, 1, &format!("proc{i}"), 0..=u64::MAX);
        let c = u64::from(i) + 1;
        let remote = format!("{}.{}.{}.7:443", 11 + c % 200, (c >> 8) % 256, c % 256);
        b.socket(c, Some(p), None)
            .flow(
                c,
                &remote,
                0..=u64::MAX / 2,
                per_tick(2, 1200),
                per_tick(3, 3000),
            )
            .tcp(SimTcp {
                srtt_us: 20_000 + 100 * i,
                data_segs: 2,
                retrans_segs: u32::from(i.is_multiple_of(7)),
            });
    }
    b.build().unwrap_or_else(|e| panic!("script: {e}"))
}

fn steady(procs: u32) {
    let script = Arc::new(steady_script(procs));
    let mut source = SimSource::new(script.clone());
    let mut resolver = SimResolver::new(&script);
    let mut rig = Rig::new();
    let keep_s = Retention::default()
        .interval
        .map_or(DAY_S, |d| d.as_secs())
        .min(29 * DAY_S);
    let fine_from = 30 * DAY_S - keep_s - 3600;
    let started = Instant::now();
    let mut tick = 0u64;
    while tick < fine_from {
        source.set_tick(tick);
        rig.step(&mut source, &mut resolver, BASE + tick * 1000);
        tick += 60;
    }
    let mut w0 = None;
    while tick < 30 * DAY_S {
        if w0.is_none() && tick >= 30 * DAY_S - 3600 {
            w0 = Some(wchar());
        }
        source.set_tick(tick);
        rig.step(&mut source, &mut resolver, BASE + tick * 1000);
        tick += 1;
    }
    let written = wchar() - w0.unwrap_or(0);
    rig.report(&format!("{procs} always-active processes, 30 days"));
    println!(
        "{procs} always-active processes: {} written in the last hour at 1 s ({} a day at that rate, {} per process per day); {:?} to simulate",
        mb(written),
        mb(written * 24),
        mb(written * 24 / u64::from(procs)),
        started.elapsed()
    );
}

/// Bytes per tier per unit of time for `procs` always-active processes:
/// one day drained once a minute (the minute, hour and day tiers' bytes per
/// day), then one hour at 1 s (the interval tier's bytes per hour): what
/// each tier's retention costs, to choose defaults from.
fn rates(procs: u32) {
    let script = Arc::new(steady_script(procs));
    let mut source = SimSource::new(script.clone());
    let mut resolver = SimResolver::new(&script);
    let mut rig = Rig::new();
    let mut tick = 0u64;
    while tick < DAY_S {
        source.set_tick(tick);
        rig.step(&mut source, &mut resolver, BASE + tick * 1000);
        tick += 60;
    }
    rig.report(&format!("{procs} processes, one day drained once a minute"));
    let w0 = wchar();
    for _ in 0..3600 {
        source.set_tick(tick);
        rig.step(&mut source, &mut resolver, BASE + tick * 1000);
        tick += 1;
    }
    let written = wchar() - w0;
    rig.report(&format!("{procs} processes, then one hour at 1 s"));
    println!(
        "{procs} processes: {} written in the hour at 1 s ({} a day)",
        mb(written),
        mb(written * 24)
    );
}

/// Client addresses of the web server.
const CLIENTS: u64 = 1_000;

/// A web server's kernel map: `rate` new connections a tick from
/// [`CLIENTS`] addresses, each closed after one tick and held until the
/// drain retires it (as the kernel holds closed flows).
struct WebSource {
    rate: u64,
    tick: u64,
    next_cookie: u64,
    live: FxHashMap<FlowKey, FlowValue>,
}

const WEB_PID: u32 = 4_242;
const WEB_START_TICKS: u64 = 77;
/// The listener's cookie: accepted sockets carry it as their owner's
/// socket (the kernel's record of the listener), which makes them inbound.
const LISTENER: u64 = 1;

impl WebSource {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            tick: 0,
            next_cookie: LISTENER + 1,
            live: FxHashMap::default(),
        }
    }

    /// The next tick's connections.
    fn advance(&mut self) {
        self.tick += 1;
        for _ in 0..self.rate {
            let cookie = self.next_cookie;
            self.next_cookie += 1;
            let client = cookie % CLIENTS;
            let mut remote_addr = [0u8; 16];
            remote_addr[..4].copy_from_slice(&[
                100,
                64,
                u8::try_from(client >> 8).unwrap_or(0),
                u8::try_from(client & 0xff).unwrap_or(0),
            ]);
            let key = FlowKey {
                cookie,
                remote_addr,
                remote_port: u16::try_from(32_768 + cookie % 28_000).unwrap_or(40_000),
                ip_version: 4,
                protocol: 6,
                ..FlowKey::default()
            };
            let value = FlowValue {
                tx: per_tick(3, 1000),
                rx: per_tick(3, 1000),
                local_port: 443,
                flags: FLOW_F_OWNED | FLOW_F_CLOSED,
                ifindex: 2,
                first_boottime_ns: self.tick * 1_000_000_000 + 1,
                owner: SockOwner {
                    tgid: WEB_PID,
                    tid: WEB_PID,
                    start_boottime_ns: WEB_START_TICKS * 10_000_000,
                    sock_cookie: LISTENER,
                    ..SockOwner::default()
                },
                tcp: TcpSample {
                    srtt_us8: u32::try_from(8 * (200 + 10 * (client % 50))).unwrap_or(1600),
                    data_segs_out: 2,
                    total_retrans: u32::from(cookie.is_multiple_of(100)),
                    ..TcpSample::default()
                },
                ..FlowValue::default()
            };
            self.live.insert(key, value);
        }
    }
}

impl CounterSource for WebSource {
    fn read(&mut self) -> Result<Reading, SourceError> {
        Ok(Reading {
            flows: self
                .live
                .iter()
                .map(|(k, v)| FlowReading {
                    key: *k,
                    value: *v,
                    closed: true,
                })
                .collect(),
            max_flows: 1 << 20,
            ..Reading::default()
        })
    }

    fn retire(&mut self, keys: &[FlowKey]) -> Result<Vec<(FlowKey, FlowValue)>, SourceError> {
        Ok(keys
            .iter()
            .filter_map(|k| Some((*k, self.live.remove(k)?)))
            .collect())
    }

    fn forget_closed(&mut self, _cookies: &[u64]) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Every socket is the web server's.
struct WebResolver(ProcessInfo);

impl WebResolver {
    fn new() -> Self {
        Self(ProcessInfo {
            id: ProcessId {
                pid: WEB_PID,
                start_ticks: WEB_START_TICKS,
            },
            comm: "nginx".into(),
            exe: Some("/usr/sbin/nginx".into()),
            cmdline: Some("nginx: worker process".into()),
            uid: 33,
            user: Some("www-data".into()),
            ppid: Some(1),
            cgroup: Some("/system.slice/nginx.service".into()),
        })
    }
}

impl Resolver for WebResolver {
    fn resolve(&mut self, reading: &Reading) -> Owners {
        let mut owners = Owners::default();
        for f in &reading.flows {
            owners.insert_ref(f.key.cookie, &self.0);
        }
        owners
    }

    fn forget(&mut self, _cookies: &[u64]) {}
}

/// `seconds` of the web server at `rate` connections a second: bytes
/// written per interval and file growth after a 60 s warm-up (the live
/// and not yet retired flows fill the snapshot first).
fn web_run(rate: u64, seconds: u64) -> (u64, u64, u64) {
    let mut source = WebSource::new(rate);
    let mut resolver = WebResolver::new();
    let mut rig = Rig::new();
    let mut measured = (0, 0);
    for s in 0..seconds {
        if s == 60 {
            measured = (wchar(), rig.store.file_size().unwrap_or(0));
        }
        source.advance();
        rig.step(&mut source, &mut resolver, BASE + s * 1000);
    }
    let n = seconds - 60;
    let size = rig.store.file_size().unwrap_or(0);
    (
        (wchar() - measured.0) / n,
        size.saturating_sub(measured.1) / n,
        size,
    )
}

fn web() {
    for rate in [10_000, 1_000] {
        let started = Instant::now();
        let (per_interval, growth, size) = web_run(rate, 240);
        println!(
            "web server, {rate} connections/s from {CLIENTS} clients: {per_interval} bytes written per interval, file grew {growth} bytes per interval (file {}, {} connections, {:?})",
            mb(size),
            rate * 240,
            started.elapsed()
        );
    }
}

fn webday() {
    let mut source = WebSource::new(CLIENTS);
    let mut resolver = WebResolver::new();
    let mut rig = Rig::new();
    let started = Instant::now();
    let w0 = wchar();
    // 23 hours drained once a minute (every client connects each time:
    // the same minute, hour and day rows as every second), then an hour at
    // 1 s.
    let mut s = 0u64;
    while s < DAY_S - 3600 {
        source.advance();
        rig.step(&mut source, &mut resolver, BASE + s * 1000);
        s += 60;
    }
    let w1 = wchar();
    let before = rig.store.tier_bytes().unwrap_or_default();
    while s < DAY_S {
        source.advance();
        rig.step(&mut source, &mut resolver, BASE + s * 1000);
        s += 1;
    }
    let hour = wchar() - w1;
    let after = rig.store.tier_bytes().unwrap_or_default();
    rig.report(&format!(
        "web server, a day ({CLIENTS} clients, every one connecting every interval of the last hour)"
    ));
    let interval_hour = after
        .first()
        .map_or(0, |a| a.1)
        .saturating_sub(before.first().map_or(0, |b| b.1));
    println!(
        "web server day: the last hour at 1 s wrote {} ({} a day at that rate; the 23 h drained once a minute wrote {}); the interval tier took {} in that hour ({} a day); {:?} to simulate",
        mb(hour),
        mb(hour * 24),
        mb(w1 - w0),
        mb(interval_hour),
        mb(interval_hour * 24),
        started.elapsed()
    );
}

fn main() {
    let which = std::env::var("NETMON_DISK").unwrap_or_else(|_| "web".into());
    for s in which.split(',') {
        match s.trim() {
            "steady50" => steady(50),
            "steady500" => steady(500),
            "rates50" => rates(50),
            "rates500" => rates(500),
            "web" => web(),
            "webday" => webday(),
            other => eprintln!(
                "disk bench: unknown scenario {other:?} (steady50, steady500, web, webday)"
            ),
        }
    }
}
