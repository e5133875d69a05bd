//! Test 8: the daemon is killed with SIGKILL in the middle of a transfer and
//! restarted; the history it keeps must still hold every byte exactly once.
//!
//! The programs and their pinned counters outlive the daemon (they belong to
//! the `Netmon` guard that loaded them); the restarted daemon re-opens them
//! and continues from its last committed drain: bytes counted by the kernel
//! while no daemon ran are drained by the next one, none twice.

use std::{net::SocketAddr, thread, time::Duration};

use netmon_tests::{
    cgroup::CgroupGuard,
    check,
    daemon::{self, Daemon, UsageRow},
    mib,
    netmon::Netmon,
    netns::NetnsPair,
    report::{READY, Report},
    require_root, scenario,
    snapshot::Counters,
    workload::Workload,
    workload_exe,
};

/// Long enough (about a second at veth speed) to kill the daemon mid-way.
const BYTES: u64 = 2 * 1024 * 1024 * 1024;

fn row<'a>(rows: &'a [UsageRow], r: &Report, what: &str) -> &'a UsageRow {
    let found: Vec<_> = rows.iter().filter(|row| row.pid == Some(r.pid)).collect();
    match found.as_slice() {
        [row] => {
            assert_eq!(row.start_ticks, Some(r.start_ticks), "{what}: start_ticks");
            row
        }
        other => panic!(
            "{what} (pid {}): {} rows in `netmon usage`: {other:#?}\nall rows: {rows:#?}",
            r.pid,
            other.len()
        ),
    }
}

#[test]
fn daemon_sigkill_and_restart_loses_and_doubles_nothing() {
    if !require_root("daemon_sigkill_and_restart_loses_and_doubles_nothing") {
        return;
    }
    let cg = CgroupGuard::new("daemon");
    let pair = NetnsPair::new("daemon");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-daemon-")
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let mut d = Daemon::start(&paths);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let exe = workload_exe!();
    let listen = SocketAddr::new(pair.b.v4().into(), 0).to_string();
    let mut server = Workload::spawn(exe, ["tcp-server", "--listen", &listen], &cg, Some(&pair.b));
    let connect = SocketAddr::new(
        pair.b.v4().into(),
        scenario::first_port(&server.wait_event(READY)),
    )
    .to_string();
    let mut client = Workload::spawn(
        exe,
        [
            "tcp-client",
            "--connect",
            &connect,
            "--send",
            &BYTES.to_string(),
        ],
        &cg,
        Some(&pair.a),
    );
    // A few drains into the transfer, then SIGKILL.
    thread::sleep(Duration::from_millis(500));
    assert!(
        client.is_running(),
        "the transfer ended before the daemon was killed: make BYTES larger"
    );
    let killed = d.pid();
    d.kill9();
    // Traffic the kernel counts while no daemon runs.
    thread::sleep(Duration::from_millis(300));
    let mid_transfer = client.is_running();
    let mut d = Daemon::start(&paths);
    let c = client.wait_done();
    let s = server.wait_done();
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    // Several drain intervals, then a clean stop (with its final drain).
    thread::sleep(Duration::from_millis(1000));
    d.stop();
    let usage = daemon::usage(&paths);
    eprintln!(
        "  daemon {killed} SIGKILLed mid-transfer (still running 300 ms later: {mid_transfer})"
    );

    assert_eq!((c.written, s.read), (BYTES, BYTES), "ground truth");
    let retrans = check::retrans(&before, &after);
    if retrans == 0 {
        assert_eq!(
            c.tcp_bytes_sent, c.written,
            "client tcpi_bytes_sent without retransmits"
        );
    }
    let client_row = row(&usage.rows, &c, "client");
    let server_row = row(&usage.rows, &s, "server");
    assert_eq!(
        (client_row.tx.payload_bytes, server_row.rx.payload_bytes),
        (c.tcp_bytes_sent, c.tcp_bytes_sent),
        "(client tx, server rx) payload in the history (left) vs what the client's socket transmitted"
    );
    assert_eq!(
        (client_row.rx.payload_bytes, server_row.tx.payload_bytes),
        (0, 0),
        "nothing flowed back"
    );
    // Every IP byte of both namespaces exactly once in the history.
    let out = after[0].delta(&before[0], mib::IP4_OUT_OCTETS)
        + after[1].delta(&before[1], mib::IP4_OUT_OCTETS);
    let inn = after[0].delta(&before[0], mib::IP4_IN_OCTETS)
        + after[1].delta(&before[1], mib::IP4_IN_OCTETS);
    assert_eq!(
        (usage.total.tx.ip_bytes, usage.total.rx.ip_bytes),
        (out, inn),
        "history total (tx, rx) IP bytes (left) vs both namespaces' IpExt (Out, In)Octets"
    );
    let sum = usage
        .rows
        .iter()
        .fold((Counters::default(), Counters::default()), |(t, r), row| {
            (t + row.tx, r + row.rx)
        });
    assert_eq!(sum, (usage.total.tx, usage.total.rx), "rows vs total");
    eprintln!(
        "  ok history exact across SIGKILL + restart: tx {:?}",
        usage.total.tx
    );
}
