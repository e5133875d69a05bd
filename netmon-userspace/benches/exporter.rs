//! `/metrics` cost: the exporter's counters and their OpenMetrics text for
//! a store with 300 apps (so 200 members plus `other`, the default limit)
//! over 3 days, one-hour epochs. `warm` is a scrape as Prometheus makes
//! them (the exporter has folded the finished epochs: it reads only the
//! current hour); `cold` is the first scrape after a restart (everything
//! recomputed from history). Target: warm < 5 ms. Measured on a shared
//! 2-core VM (other builds running): warm 3.1 ms, cold 88 ms, host vitals
//! from procfs included.
//!
//! The store is filled through `Store::commit` as the drain would: one
//! batch per hour for 3 days, then one per minute for the last 50 minutes
//! and one per 5 s for the last 5 minutes.
use criterion::{Criterion, criterion_group, criterion_main};
use netmon::exporter::{Exporter, ExporterConfig};
use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::query::AppRules;
use netmon::store::{Batch, DestClass, Retention, Store, Traffic};
use netmon_common::DirCounters;

const PROCS: u32 = 300;
const HOUR: u64 = 3_600_000;

fn info(i: u32) -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid: 1000 + i,
            start_ticks: u64::from(i) * 7,
        },
        comm: format!("app{i}"),
        exe: Some(format!("/usr/bin/app{i}")),
        cmdline: None,
        uid: 1000 + i % 5,
        user: None,
        ppid: Some(1),
        cgroup: None,
    }
}

fn batch(ts: u64, procs: &[ProcessInfo]) -> Batch {
    let t = |n: u64| Traffic {
        tx: DirCounters {
            packets: n,
            ip_bytes: n * 1100,
            payload_bytes: n * 1000,
            retrans_bytes: 0,
        },
        rx: DirCounters {
            packets: n / 2,
            ip_bytes: n * 600,
            payload_bytes: n * 500,
            retrans_bytes: 0,
        },
    };
    let mut b = Batch {
        ts_ms: ts,
        processes: procs.to_vec(),
        ..Batch::default()
    };
    for (i, p) in procs.iter().enumerate() {
        let n = 1 + (i as u64 % 17);
        b.proc_rows.push((p.id, DestClass::Internet, t(n)));
        b.proc_rows.push((p.id, DestClass::Lan, t(n / 3 + 1)));
    }
    b
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bench.redb");
    let (mut store, _) = Store::open(&path, Retention::default()).expect("open");
    let now = netmon::clock::now_rfc3339().1;
    let procs: Vec<ProcessInfo> = (0..PROCS).map(info).collect();
    let hour_start = now - now % HOUR;
    let mut ts = hour_start - 72 * HOUR;
    while ts < hour_start {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += HOUR;
    }
    while ts < now.saturating_sub(5 * 60_000).max(hour_start) {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 60_000;
    }
    while ts < now {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 5_000;
    }
    let apps = AppRules::default();
    let cfg = ExporterConfig::default();
    let warm = Exporter::new(cfg.clone());
    let first = warm.snapshot(&mut store, &apps).expect("snapshot");
    assert_eq!(first.members, 200);
    c.bench_function("exporter/warm_scrape_200_series", |b| {
        b.iter(|| {
            let s = warm.snapshot(&mut store, &apps).expect("snapshot");
            netmon::http::metrics::render(s, cfg.clone(), path.clone(), None).expect("render")
        });
    });
    c.bench_function("exporter/cold_scrape_3_days", |b| {
        b.iter(|| {
            let s = Exporter::new(cfg.clone())
                .snapshot(&mut store, &apps)
                .expect("snapshot");
            netmon::http::metrics::render(s, cfg.clone(), path.clone(), None).expect("render")
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
