//! Issue 8 §1b: map entries that outlive their sockets.
//!
//! The bugs: a socket closed without ever sending (UDP `connect()` +
//! `close()`, as glibc's resolver does on every lookup; `socket()` +
//! `close()`) kept its `NETMON_CLOSED` entry forever, since only the retire
//! of a flow freed it; and a listener kept one `NETMON_FLOWS` entry per
//! client, the handshake packets being counted on the listener keyed by
//! the client's address and port. A long-running machine filled both maps.
//!
//! Here: `SOAK_ITERATIONS` rounds (default 20,000) of ten sockets each, so
//! 200,000 sockets: TCP and UDP `socket()` + `close()`, UDP `connect()` +
//! `close()` without a send, TCP connect + close without a send (accepted),
//! a short TCP connection (100 B each way), a refused connection, and a
//! connection reset by an abortive close; a daemon drains all the while.
//! Then, once the churn is over (the server and its listener still alive):
//! - both maps return to the live sockets (the listener's one entry) plus a
//!   small constant, with nothing left whose socket is gone;
//! - nothing overflowed;
//! - the history's payload totals equal the workloads' own counts, its IP
//!   bytes the namespace's IP octets less what no socket hook can see (the
//!   refused SYNs, the resets the kernel's control socket sends, counted
//!   from the namespace's own TCP counters), and nothing is unattributed.

use std::{
    net::{IpAddr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    daemon::{self, Daemon},
    mib,
    netmon::{Netmon, map_status},
    netns::Netns,
    report::{DONE, READY},
    require_root, scenario,
    workload::Workload,
    workload_exe,
};

/// Rounds of ten sockets; `SOAK_ITERATIONS` overrides.
const ITERATIONS: usize = 20_000;
/// Entries a map may hold above the live sockets' once drained.
const SLACK: u64 = 8;
/// IPv4 + TCP header of a reset from the control socket (no options).
const RST4_BYTES: u64 = 40;
/// IPv4 + TCP header of a SYN with this kernel's default options (MSS,
/// SACK permitted, timestamps, window scale: 20 B).
const SYN4_BYTES: u64 = 60;
/// Most a stray segment can leave unseen over IPv4: itself (a TCP segment
/// without payload, at most 60 B with options) and the control socket's
/// reset to it, should that find no socket either (40 B).
const MAX_STRAY4_BYTES: u64 = 60 + 40;

#[test]
fn soak_maps_return_to_live_sockets() {
    if !require_root("soak_maps_return_to_live_sockets") {
        return;
    }
    let iterations = std::env::var("SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITERATIONS);
    let cg = CgroupGuard::new("soak");
    let ns = Netns::new("soak");
    // No TIME_WAIT (tens of thousands of connections to one port would run
    // out of ephemeral ports): the kernel closes instead of keeping a
    // timewait socket.
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.tcp_max_tw_buckets=0",
        "net.ipv4.ip_local_port_range=1024 65000",
    ]);
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-soak-")
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let mut d = Daemon::start(&paths);
    let exe = workload_exe!();
    let lo = IpAddr::from([127, 0, 0, 1]);
    let mut server = Workload::spawn(
        exe,
        [
            "tcp-serve",
            "--listen",
            &SocketAddr::new(lo, 0).to_string(),
            "--send",
            "100",
            "--tolerate-resets",
        ],
        &cg,
        Some(&ns),
    );
    let port = scenario::first_port(&server.wait_event(READY));
    let before = mib::wait_quiet(&[&ns]);
    let start = Instant::now();
    let each = iterations.to_string();
    let mut churn = Workload::spawn(
        exe,
        [
            "--timeout-secs",
            "600",
            "sock-churn",
            "--tcp",
            &SocketAddr::new(lo, port).to_string(),
            // Port 1 of loopback: nothing listens there.
            "--closed",
            &SocketAddr::new(lo, 1).to_string(),
            "--each",
            &each,
            "--send",
            "100",
        ],
        &cg,
        Some(&ns),
    );
    let c = churn.wait_event_for(DONE, Duration::from_secs(600));
    assert!(
        churn.wait_exit(Duration::from_secs(30)).success(),
        "churn failed"
    );
    server.send_line("stop");
    let s = server.wait_event(DONE);
    let churn_secs = start.elapsed().as_secs_f64();
    let after = mib::wait_quiet(&[&ns]);
    eprintln!(
        "  {} sockets in {churn_secs:.1} s ({} served, {} reset)",
        iterations * 10,
        s.conns.len(),
        s.datagrams_received
    );

    // Drained: both maps back to the live sockets (the listener's folded
    // handshake entry) within SLACK, nothing whose socket is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (flows, closed, status) = loop {
        let status = netmon.status();
        let flows = map_status(&status, "NETMON_FLOWS");
        let closed = map_status(&status, "NETMON_CLOSED");
        if (flows.0 <= 1 + SLACK && closed.0 <= SLACK && flows.1 == 0 && closed.1 == 0)
            || Instant::now() > deadline
        {
            break (flows, closed, status);
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "  drained: NETMON_FLOWS {} entries ({} gone), NETMON_CLOSED {} ({} gone)",
        flows.0, flows.1, closed.0, closed.1
    );
    assert!(
        flows.0 <= 1 + SLACK && flows.1 == 0,
        "flow map did not return to the live sockets:\n{status:#}"
    );
    assert!(
        closed.0 <= SLACK && closed.1 == 0,
        "closed map did not drain:\n{status:#}"
    );
    assert_eq!(
        status["overflow"]["failed_inserts"].as_u64(),
        Some(0),
        "overflow:\n{status:#}"
    );

    d.stop();
    server.send_line("exit");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "server failed"
    );
    let usage = daemon::usage(&paths);
    assert!(
        !usage.rows.is_empty() && usage.rows.iter().all(|r| r.pid != Some(0)),
        "no rows, or unattributed rows: {:#?}",
        usage.rows
    );
    let written = c.written + s.written;
    let read = c.read + s.read;
    assert_eq!(
        written, read,
        "ground truth: loopback payload is read as sent"
    );
    assert_eq!(
        (usage.total.tx.payload_bytes, usage.total.rx.payload_bytes),
        (written, read),
        "payload (tx, rx): history (left) vs the workloads' counts (right)"
    );
    let refused = c.datagrams_sent;
    assert_eq!(refused, iterations as u64, "refused connections");
    // Segments no socket hook sees, from the namespace's own counters: the
    // control socket's resets (every reset but those of the abortive
    // closes, which their sockets send) and what they answer: the refused
    // SYNs, and now and then a segment that arrives after its connection
    // is gone (a delayed ACK; no timewait socket here to absorb it).
    let d = |k| after[0].delta(&before[0], k);
    let ctl_rsts = d("Tcp.OutRsts") - c.datagrams_received;
    let strays = ctl_rsts - refused;
    let (out, inn) = (d(mib::IP4_OUT_OCTETS), d(mib::IP4_IN_OCTETS));
    let mib_note = before[0].changes(&after[0]);
    assert_eq!(
        usage.total.tx.ip_bytes,
        out - RST4_BYTES * ctl_rsts,
        "IP bytes tx: history (left) vs the namespace's OutOctets less {ctl_rsts} control socket \
         resets of {RST4_BYTES} B\nMIB: {mib_note}"
    );
    let unseen = (inn - SYN4_BYTES * refused).checked_sub(usage.total.rx.ip_bytes);
    let bounds = (RST4_BYTES * strays, MAX_STRAY4_BYTES * strays);
    assert!(
        unseen.is_some_and(|u| u >= bounds.0 && u <= bounds.1),
        "IP bytes rx: history {} vs the namespace's InOctets {inn} less {refused} refused SYNs of \
         {SYN4_BYTES} B: {unseen:?} unseen, expected {bounds:?} for {strays} stray segments\n\
         MIB: {mib_note}",
        usage.total.rx.ip_bytes
    );
    if strays > 0 {
        eprintln!(
            "  note: {strays} segments arrived after their connection was gone ({unseen:?} B, \
             answered by the control socket)"
        );
    }
    eprintln!(
        "  ok totals: payload {written} B each way, IP tx {} rx {}",
        usage.total.tx.ip_bytes, usage.total.rx.ip_bytes
    );
}
