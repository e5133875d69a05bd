//! Query latency end to end through the socket: `usage --since 30d --by
//! app` and `history --since 7d --step 1h` over a store holding 30 days ×
//! 500 processes (target < 50 ms each).
//!
//! The store is filled through `Store::commit` as the drain would: one
//! batch per hour for 30 days (every process, two destination classes),
//! then one per minute for the last 2 hours and one per 5 s for the last
//! 5 minutes, so the window edges read minute and interval rows as in a
//! real store. The server runs in-process on a tokio runtime; the client is
//! the CLI's (JSON request, JSON reply, parsed).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use netmon::api::client::Client;
use netmon::api::{Handle, bind, serve_listener};
use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::query::AppRules;
use netmon::store::{Batch, DestClass, Retention, Store, Traffic};
use netmon::wire::{History, Request, Usage};
use netmon_common::DirCounters;

const PROCS: u32 = 500;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

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

fn batch(ts: u64, procs: &[ProcessInfo]) -> Batch {
    let t = |n: u64| Traffic {
        tx: DirCounters {
            packets: n,
            ip_bytes: n * 1100,
            payload_bytes: n * 1000,
            retrans_bytes: n,
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

fn fill(store: &mut Store, now: u64) {
    let procs: Vec<ProcessInfo> = (0..PROCS).map(info).collect();
    let mut ts = now - 30 * DAY;
    while ts < now - 2 * HOUR {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += HOUR;
    }
    while ts < now - 5 * 60_000 {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 60_000;
    }
    while ts < now {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 5_000;
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = netmon::query::window::now_ms();
    let (mut store, _) =
        Store::open(&dir.path().join("bench.redb"), Retention::default()).expect("open");
    fill(&mut store, now);
    eprintln!("store: {} bytes", store.file_size().expect("size"));
    let sock = dir.path().join("sock");
    let listener = bind(&sock).expect("bind");
    let handle = Handle::new(Arc::new(Mutex::new(store)), AppRules::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(serve_listener(listener, sock.clone(), handle));
    let mut client = Client::connect(&sock).expect("connect");

    let usage = Request::Usage {
        from_ms: now - 30 * DAY,
        until_ms: now,
        by: "app".into(),
        filters: vec![],
        class: None,
        limit: None,
    };
    let u: Usage = client.call(&usage).expect("usage");
    assert_eq!(u.rows.len(), 50, "50 apps");
    let history = Request::History {
        from_ms: now - 7 * DAY,
        until_ms: now,
        step_ms: Some(HOUR),
        filters: vec![],
        class: None,
    };
    let h: History = client.call(&history).expect("history");
    assert_eq!(h.tier, "hour");

    let mut g = c.benchmark_group("query_socket");
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("usage --since 30d --by app", |b| {
        b.iter(|| client.call::<Usage>(&usage).expect("usage"))
    });
    g.bench_function("history --since 7d --step 1h", |b| {
        b.iter(|| client.call::<History>(&history).expect("history"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
