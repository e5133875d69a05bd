//! Per interval cost of alert evaluation (issue #12 target: < 1 ms with
//! 100 rules and 500 processes): `Engine::evaluate` on one drain step's
//! per process deltas, every process with traffic, the rules a mix of
//! rolling volume, calendar period, quota, rate and quality rules over 50
//! apps, users and the total. (A quality rule's baseline is read from the
//! store once an hour, outside this figure.) Storage is not in the figure (a step that fires
//! nothing writes nothing; one that fires writes one small transaction).
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use netmon::alerts::config::compile;
use netmon::alerts::engine::Engine;
use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::query::AppRules;
use netmon::store::{DestClass, Retention, Store, Traffic};
use netmon_common::DirCounters;

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
