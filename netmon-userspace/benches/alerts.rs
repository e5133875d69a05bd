//! Per interval cost of alert evaluation (issue #12 target: < 1 ms with
//! 100 rules and 500 processes): `Engine::evaluate` on one drain step's
//! per process deltas, every process with traffic, the rules a mix of
//! rolling volume, calendar period, quota, rate and quality rules over 50
//! apps, users and the total. (A quality rule's baseline is read from the
//! store once an hour, outside this figure.) Storage is not in the figure (a step that fires
//! nothing writes nothing; one that fires writes one small transaction).
//!
//! Rules scoped by endpoint and RTT / retransmission rules read the store
//! after each step: `bench_store` measures a real drain step over a
//! simulated source with and without the engine's step after it.
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use netmon::alerts::config::compile;
use netmon::alerts::engine::Engine;
use netmon::drain::Drain;
use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::query::AppRules;
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, SimTcp, per_tick};
use netmon::store::{DestClass, Retention, Store, Traffic};
use netmon_common::DirCounters;
use std::sync::Arc;

const PROCS: u32 = 500;
const RULES: usize = 100;

fn info(i: u32) -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid: 1000 + i,
            start_ticks: u64::from(i) * 7,
        },
        comm: format!("app{}", i % 50),
        exe: Some(format!("/usr/bin/app{}", i % 50)),
        cmdline: Some(format!("app{} --worker {i}", i % 50)),
        uid: 1000 + i % 5,
        user: None,
        ppid: Some(1),
        cgroup: Some(format!("/system.slice/app{}.service", i % 50)),
    }
}

fn config() -> String {
    let mut s = String::from("[alerts]\ntimezone = \"UTC\"\n");
    for r in 0..RULES {
        let scope = match r % 5 {
            0 => String::new(),
            1 | 2 | 4 => format!("filters = [\"app=app{}\"]\n", r % 50),
            _ => format!("filters = [\"user={}\"]\n", 1000 + r % 5),
        };
        let cond = match r % 5 {
            0 => "kind = \"volume\"\nover = \"500GiB\"\nwindow = \"1h\"\n",
            1 => "kind = \"volume\"\nover = \"500GiB\"\nperiod = \"day\"\n",
            2 => "kind = \"quota\"\ncap = \"1TiB\"\nreset_day = 1\nproject = true\n",
            3 => "kind = \"rate\"\nover = \"10Gbit/s\"\nfor = \"5m\"\n",
            _ => "kind = \"quality\"\nbelow = 0.5\nmin_rate = \"1Mbit/s\"\n",
        };
        s += &format!("[[alerts.rule]]\nname = \"r{r}\"\n{scope}{cond}");
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = config();
    let file = netmon::config::parse(&text, std::path::Path::new("bench.toml")).expect("parses");
    let rules = compile(&file.alerts, file.tariff.as_ref(), &text).expect("compiles");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("b.redb"), Retention::default()).expect("store");
    let mut now = 1_780_000_000_000u64;
    let mut engine = Engine::start(&rules, AppRules::default(), &mut store, now).expect("engine");
    let step: Vec<(ProcessInfo, DestClass, Traffic)> = (0..PROCS)
        .map(|i| {
            let d = DirCounters {
                packets: 3,
                ip_bytes: 4000 + u64::from(i),
                payload_bytes: 3880 + u64::from(i),
                retrans_bytes: 0,
            };
            (info(i), DestClass::Internet, Traffic { tx: d, rx: d })
        })
        .collect();
    c.bench_function("alerts_evaluate_100_rules_500_procs", |b| {
        b.iter(|| {
            now += 1000;
            black_box(engine.evaluate(now, black_box(&step)))
        });
    });
}

/// 100 rules that read the store each step: per endpoint scopes (port,
/// remote network) and RTT / retransmission windows of 5 minutes, over 500
/// processes with one TCP flow each.
fn store_config() -> String {
    let mut s = String::from("[alerts]\ntimezone = \"UTC\"\n");
    for r in 0..RULES {
        let app = r % 50;
        let rule = match r % 4 {
            0 => format!(
                "filters = [\"app=app{app}\", \"port=tcp/443\"]\nkind = \"volume\"\nover = \"500GiB\"\nwindow = \"1h\"\n"
            ),
            1 => "filters = [\"remote=93.184.0.0/16\"]\nkind = \"rate\"\nover = \"10Gbit/s\"\nfor = \"5m\"\n"
                .to_owned(),
            2 => format!(
                "filters = [\"app=app{app}\"]\nkind = \"rtt_p95\"\nover = \"10s\"\nwindow = \"5m\"\n"
            ),
            _ => format!(
                "filters = [\"app=app{app}\"]\nkind = \"retrans_rate\"\nover = \"50%\"\nwindow = \"5m\"\n"
            ),
        };
        s += &format!("[[alerts.rule]]\nname = \"r{r}\"\n{rule}");
    }
    s
}

fn tcp_script() -> Script {
    let mut b = ScriptBuilder::new(1000);
    for i in 0..PROCS {
        let p = b.process(
            1000 + i,
            u64::from(i) * 7,
            &format!("app{}", i % 50),
            0..=u64::MAX,
        );
        let cookie = u64::from(i) + 1;
        b.socket(cookie, Some(p), None)
            .flow(
                cookie,
                &format!("93.184.{}.{}:443", i / 250, i % 250 + 1),
                0..=1_000_000,
                per_tick(3, 3880),
                per_tick(3, 3880),
            )
            .tcp(SimTcp {
                srtt_us: 20_000 + i,
                data_segs: 3,
                retrans_segs: 0,
            });
    }
    b.build().expect("valid script")
}

/// A drain step with and without the engine's step after it (store reads
/// of the current minute's endpoints and of the step's TCP samples, the
/// evaluation, and a commit only when something fired): the difference is
/// what these rules cost per interval, and `alerts_step_only_...` times
/// the engine's step alone (the drain runs untimed before each). The
/// windows fill during warm-up (5 minutes of 1 s ticks before measuring).
fn bench_store(c: &mut Criterion) {
    let text = store_config();
    let file = netmon::config::parse(&text, std::path::Path::new("bench.toml")).expect("parses");
    let rules = compile(&file.alerts, file.tariff.as_ref(), &text).expect("compiles");
    let script = tcp_script();
    let base = 1_780_000_000_000u64;
    for with_engine in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) =
            Store::open(&dir.path().join("s.redb"), Retention::default()).expect("store");
        let mut drain = Drain::new(&mut store).expect("drain");
        let mut source = SimSource::new(Arc::new(script.clone()));
        let mut resolver = SimResolver::new(&script);
        let mut engine = with_engine
            .then(|| Engine::start(&rules, AppRules::default(), &mut store, base).expect("engine"));
        let mut tick = 0u64;
        let mut one = |tick: u64| {
            source.set_tick(tick);
            let now = base + tick * 1000;
            let report = drain
                .step(&mut source, &mut resolver, &mut store, now, Vec::new())
                .expect("step");
            if let Some(e) = &mut engine {
                black_box(e.step(&mut store, now, &report.per_process));
            }
        };
        for _ in 0..300 {
            one(tick);
            tick += 1;
        }
        let name = if with_engine {
            "alerts_drain_and_step_100_store_rules_500_tcp_procs"
        } else {
            "alerts_drain_only_500_tcp_procs"
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                one(tick);
                tick += 1;
            });
        });
    }
    // The engine's step alone, on the same store shape.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("e.redb"), Retention::default()).expect("store");
    let mut drain = Drain::new(&mut store).expect("drain");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    let mut engine = Engine::start(&rules, AppRules::default(), &mut store, base).expect("engine");
    let mut tick = 0u64;
    let mut one = |tick: u64| -> std::time::Duration {
        source.set_tick(tick);
        let now = base + tick * 1000;
        let report = drain
            .step(&mut source, &mut resolver, &mut store, now, Vec::new())
            .expect("step");
        let t = std::time::Instant::now();
        black_box(engine.step(&mut store, now, &report.per_process));
        t.elapsed()
    };
    for _ in 0..300 {
        one(tick);
        tick += 1;
    }
    c.bench_function("alerts_step_only_100_store_rules_500_tcp_procs", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    tick += 1;
                    one(tick)
                })
                .sum()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench, bench_store
}
criterion_main!(benches);
