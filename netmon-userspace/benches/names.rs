//! What server names cost the drain and the queries (simulated source, real
//! redb file on disk; one tick = 1 s).
//!
//! - `names_drain/{unnamed,named}/N`: one drain step with N live sockets
//!   over 500 processes, every one with new bytes; `named`: every flow has
//!   a server name (1,000 distinct names), so each step looks the names up
//!   and the remote rows carry them.
//! - `names_query/{remote,server_name,domain,service}/N`: `usage --by`
//!   over the last hour after 120 steps of the named store (remote rows
//!   and the pending pieces labelled from the snapshot's names).
//!
//! Run: `cargo bench -p netmon-userspace --bench names`
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use netmon::drain::Drain;
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::Dimension;
use netmon::query::usage::{UsageQuery, usage};
use netmon::source::NameSource;
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{Retention, Store};

const BASE: u64 = 1_700_000_000_000;

/// `sockets` always active sockets over 500 processes, each to its own
/// remote endpoint; `named`: each with one of 1,000 names.
fn script(sockets: u64, named: bool) -> Script {
    let mut b = ScriptBuilder::new(1000);
    let ids: Vec<_> = (0..500)
        .map(|i| b.process(10_000 + i, 1, &format!("proc{i}"), 0..=u64::MAX))
        .collect();
    for c in 0..sockets {
        let owner = ids[usize::try_from(c % 500).unwrap_or(0)];
        let remote = format!(
            "{}.{}.{}.{}:443",
            11 + c % 200,
            (c >> 8) % 256,
            c % 256,
            (c >> 16) % 256 + 1
        );
        b.socket(c + 1, Some(owner), None).flow(
            c + 1,
            &remote,
            0..=u64::MAX / 2,
            per_tick(2, 1200),
            per_tick(3, 3000),
        );
        if named {
            b.name(
                &format!("s{}.site{}.example.com", c % 10, c % 100),
                NameSource::Sni,
                0,
            );
        }
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
        let (mut store, _) = Store::open(&dir.path().join("bench.redb"), Retention::default())
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
        rig.step();
        rig
    }

    fn step(&mut self) {
        self.source.set_tick(self.tick);
        self.drain
            .step(
                &mut self.source,
                &mut self.resolver,
                &mut self.store,
                BASE + self.tick * 1000,
                Vec::new(),
            )
            .unwrap_or_else(|e| panic!("step: {e}"));
        self.tick += 1;
    }
}

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("names_drain");
    g.sample_size(10);
    for n in [10_000u64, 100_000] {
        for named in [false, true] {
            let mut rig = Rig::new(&script(n, named));
            let name = if named { "named" } else { "unnamed" };
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| b.iter(|| rig.step()));
        }
    }
    g.finish();
}

fn query(c: &mut Criterion) {
    let mut g = c.benchmark_group("names_query");
    g.sample_size(10);
    let n = 10_000u64;
    let mut rig = Rig::new(&script(n, true));
    for _ in 0..120 {
        rig.step();
    }
    let facts =
        Facts::load(&mut rig.store, &AppRules::default()).unwrap_or_else(|e| panic!("facts: {e}"));
    let now = BASE + rig.tick * 1000;
    for by in [
        Dimension::Remote,
        Dimension::ServerName,
        Dimension::Domain,
        Dimension::Service,
    ] {
        g.bench_with_input(BenchmarkId::new(by.name(), n), &by, |b, by| {
            b.iter(|| {
                usage(
                    &mut rig.store,
                    &facts,
                    &UsageQuery {
                        range: now - 3_600_000..now,
                        by: *by,
                        filters: Vec::new(),
                        class: None,
                        limit: Some(20),
                    },
                )
                .unwrap_or_else(|e| panic!("usage: {e}"))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, drain, query);
criterion_main!(benches);
