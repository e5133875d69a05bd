//! The HTTP API over a store of 30 days × 500 processes (see
//! `common/fill.rs`), server in-process on a tokio runtime as in the
//! daemon, with a drain committing every process's deltas every second
//! meanwhile (`common/serve.rs`):
//! - latency of `GET /api/v1/usage?since=30d&by=app` and `by=process`,
//!   `since=24h&by=process`, and of `history?since=7d&step=1h`: 200
//!   requests each over fresh connections, p50 / p99 / max (target: usage
//!   p99 < 50 ms), once without and once with the store's kept sums of
//!   closed segments (`netmon::store::sums`), side by side;
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
#[path = "common/serve.rs"]
mod serve;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn latency(port: u16, path: &str) {
    let (status, len) = serve::get(port, path);
    assert_eq!(status, 200, "{path}");
    let mut t: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            serve::get(port, path);
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
    let served = serve::serve_filled();
    let port = served.port;
    served.drain_every_second();
    // Before / after keeping the sums of closed segments, side by side.
    for on in [false, true] {
        served.keep_sums(on);
        println!(
            "kept sums of closed segments: {}",
            if on {
                "on (the daemon's default)"
            } else {
                "off"
            }
        );
        latency(port, "/api/v1/usage?since=30d&by=app");
        latency(port, "/api/v1/usage?since=30d&by=process");
        latency(port, "/api/v1/usage?since=24h&by=process");
        latency(port, "/api/v1/history?since=7d&step=1h");
    }
    let (n, p50, max) = served.drain_commits();
    println!(
        "drain commits meanwhile (the store is locked during each): {n}, p50 {p50:?}, max {max:?}"
    );
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
