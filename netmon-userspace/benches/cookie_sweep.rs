//! Cost of the fd sweep that maps finished sockets' cookies to inodes
//! (`ownership::cookie_sweep`): 300 loopback TCP connections (600 socket
//! fds) held by this process.
//!
//! - `cold_600`: a fresh cache, one process visited: 600 `readlinkat` and
//!   600 probes (`pidfd_getfd`, `fstat`, `SO_COOKIE`, close).
//! - `warm_600`: a later pass, every inode but one new socket's cached:
//!   601 `readlinkat`, one probe.
//! - `readlink_only_600`: the `/proc/PID/fd` read alone (what the existing
//!   `FdIndex` pays per table), for comparison.
//! - `miss_all_warm`: a cookie nobody holds, warm cache: every process of
//!   the machine visited (the worst pass).
#![expect(clippy::unwrap_used, reason = "a benchmark panics at the failing call")]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

use criterion::{Criterion, criterion_group, criterion_main};
use netmon::ownership::cookie_sweep::CookieSweep;
use netmon::ownership::fd_scan::{FdIndex, socket_fds};
use netmon::ownership::pidfd::socket_cookie;
use netmon::ownership::procfs::ProcFs;

const PAIRS: usize = 300;

fn bench(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..PAIRS {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        held.push((client, server));
    }
    let proc = ProcFs::new();
    let me = std::process::id();
    let last = socket_cookie(held[PAIRS - 1].1.as_fd()).unwrap();
    let wanted = HashSet::from([last]);
    let fds = socket_fds(&proc.pid_dir(me)).unwrap().len();
    eprintln!("socket fds in this process: {fds}");

    c.bench_function("cookie_sweep/cold_600", |b| {
        b.iter(|| {
            let mut sweep = CookieSweep::new();
            let mut index = FdIndex::new(proc.clone());
            let found = sweep.find(&proc, &[me], &wanted, &mut index);
            assert_eq!(found.len(), 1);
            assert!(sweep.last_stats().probed >= 2 * PAIRS);
        });
    });

    let mut warm = CookieSweep::new();
    warm.find(&proc, &[me], &wanted, &mut FdIndex::new(proc.clone()));
    c.bench_function("cookie_sweep/warm_600", |b| {
        // A socket opened since the last sweep is wanted: 600 known fds are
        // read, only the new one is probed.
        b.iter_batched(
            || {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let want = HashSet::from([socket_cookie(s.as_fd()).unwrap()]);
                (s, want)
            },
            |(s, want)| {
                let mut index = FdIndex::new(proc.clone());
                let found = warm.find(&proc, &[me], &want, &mut index);
                assert_eq!(found.len(), 1);
                assert_eq!(warm.last_stats().probed, 1);
                s
            },
            criterion::BatchSize::PerIteration,
        );
    });

    c.bench_function("cookie_sweep/readlink_only_600", |b| {
        b.iter(|| socket_fds(&proc.pid_dir(me)).unwrap().len());
    });

    let none = HashSet::from([0_u64]);
    let mut all = CookieSweep::new();
    all.find(&proc, &[me], &none, &mut FdIndex::new(proc.clone()));
    eprintln!("whole machine: {:?}", all.last_stats());
    c.bench_function("cookie_sweep/miss_all_warm", |b| {
        b.iter(|| {
            let mut index = FdIndex::new(proc.clone());
            all.find(&proc, &[me], &none, &mut index)
        });
    });
    eprintln!("whole machine, warm: {:?}", all.last_stats());
}

criterion_group!(benches, bench);
criterion_main!(benches);
