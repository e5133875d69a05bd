//! The HTTP API over a store of 30 days × 500 processes (see
//! `common/fill.rs`), server in-process on a tokio runtime as in the
//! daemon:
//! - latency of `GET /api/v1/usage?since=30d&by=app` and `by=process`, and
//!   of `history?since=7d&step=1h`: 200 requests each over fresh
//!   connections, p50 / p99 / max (target: usage p99 < 50 ms);
//! - the cost of live streams: the process's CPU time over 20 s with 10
//!   `GET /api/v1/live?by=app` streams open, minus the same 20 s with none,
//!   the readers' own CPU time left out (target < 1 % of a core per 10
//!   browsers).
//!
//! Plain `main` (not criterion): percentiles and a CPU ratio are the
//! figures wanted. Run with `cargo bench -p netmon-userspace --bench http`.
#![expect(clippy::unwrap_used, reason = "benchmark: a panic is the report")]

#[path = "common/fill.rs"]
mod fill;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netmon::api::Handle;
use netmon::http::{AppState, DaemonInfo, HttpConfig};
use netmon::query::AppRules;
use netmon::store::{Retention, Store};

fn get(port: u16, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let status = String::from_utf8_lossy(&raw[9..12]).parse().unwrap();
    (status, raw.len())
}

fn latency(port: u16, path: &str) {
    let (status, len) = get(port, path);
    assert_eq!(status, 200, "{path}");
    let mut t: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            get(port, path);
            start.elapsed()
        })
        .collect();
    t.sort();
    println!(
        "{path}: {len} bytes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        t[100].as_secs_f64() * 1e3,
        t[197].as_secs_f64() * 1e3,
        t[199].as_secs_f64() * 1e3
    );
}

/// User + system CPU time of this process (or this thread), seconds.
fn cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(who, &raw mut r) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// Server CPU over `secs` with `streams` live streams open.
fn stream_cost(port: u16, streams: usize, secs: u64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..streams)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                write!(
                    s,
                    "GET /api/v1/live?by=app HTTP/1.1\r\nHost: localhost\r\n\r\n"
                )
                .unwrap();
                let mut r = BufReader::new(s);
                let mut events = 0u64;
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) > 0 && line.starts_with("data:") {
                        events += 1;
                    }
                }
                (cpu(libc::RUSAGE_THREAD), events)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu(libc::RUSAGE_SELF);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let total = cpu(libc::RUSAGE_SELF) - before;
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut readers_cpu = 0.0;
    let mut events = 0;
    for r in readers {
        let (c, e) = r.join().unwrap();
        readers_cpu += c;
        events += e;
    }
    // The readers' CPU before the window is small (2 s of idle reads); it
    // is all subtracted, so the figure slightly under-counts, never over.
    ((total - readers_cpu).max(0.0) / wall, events)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let now = netmon::query::window::now_ms();
    let (mut store, _) = Store::open(&dir.path().join("bench.redb"), Retention::default()).unwrap();
    let filled = Instant::now();
    fill::fill(&mut store, now);
    println!(
        "store: 30 days x {} processes, {} bytes, filled in {:?}",
        fill::PROCS,
        store.file_size().unwrap(),
        filled.elapsed()
    );
    let handle = Handle::new(Arc::new(Mutex::new(store)), AppRules::default());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg: HttpConfig = toml::from_str(&format!("listen = \"127.0.0.1:{port}\"")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bound = netmon::http::bind(&cfg).unwrap().unwrap();
    let info = DaemonInfo {
        source: "simulated".into(),
        interval: Duration::from_secs(1),
        started_unix_ms: now,
        pin_dir: "/nonexistent".into(),
    };
    let state = AppState::new(&cfg, bound.loopback_only, handle, info);
    let _guard = rt.enter();
    bound.spawn(&state).unwrap();
    // The daemon's runtime is a current-thread one driven by its main
    // loop; here a thread drives it.
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));

    latency(port, "/api/v1/usage?since=30d&by=app");
    latency(port, "/api/v1/usage?since=30d&by=process");
    latency(port, "/api/v1/history?since=7d&step=1h");
    let secs = 20;
    let (idle, _) = stream_cost(port, 0, secs);
    let (busy, events) = stream_cost(port, 10, secs);
    println!(
        "live streams: server CPU {:.3} % of a core idle, {:.3} % with 10 streams ({events} events read), difference {:.3} %",
        idle * 100.0,
        busy * 100.0,
        (busy - idle) * 100.0
    );
}
