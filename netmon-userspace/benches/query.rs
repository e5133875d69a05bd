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
use netmon::query::AppRules;
use netmon::store::{Retention, Store};
use netmon::wire::{History, Request, Usage};

#[path = "common/fill.rs"]
mod fill;

use fill::{DAY, HOUR, fill};

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
