//! Test 4: 200 processes that each connect, send 100 KiB and exit within
//! milliseconds. Every one must be in the snapshot under its own pid (with
//! its start time and comm; exe and cmdline may be gone), each exact.
//!
//! Capture-based tools miss most of these (see `docs/kernel-notes.md`):
//! the process is gone before anyone looks at /proc. netmon records the
//! owner in socket storage when the socket is created.

use std::collections::BTreeMap;

use netmon_tests::{
    cgroup::CgroupGuard,
    check, mib,
    netmon::{Netmon, map_status},
    netns::NetnsPair,
    report::Report,
    require_root, scenario,
    workload::Workload,
    workload_exe,
};

const CLIENTS: usize = 200;
const BYTES: u64 = 100 * 1024;
/// Clients alive at once.
const WAVE: usize = 10;

#[test]
fn short_lived_processes_each_exact() {
    if !require_root("short_lived_processes_each_exact") {
        return;
    }
    let cg = CgroupGuard::new("short");
    let pair = NetnsPair::new("short");
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let (mut server, connect) =
        scenario::tcp_accept_many(workload_exe!(), &cg, &pair.b, pair.b.v4().into(), CLIENTS);
    let mut clients: Vec<Report> = Vec::with_capacity(CLIENTS);
    while clients.len() < CLIENTS {
        let mut wave: Vec<Workload> = (0..WAVE.min(CLIENTS - clients.len()))
            .map(|_| {
                Workload::spawn(
                    workload_exe!(),
                    [
                        "tcp-client",
                        "--connect",
                        &connect,
                        "--send",
                        &BYTES.to_string(),
                    ],
                    &cg,
                    Some(&pair.a),
                )
            })
            .collect();
        clients.extend(wave.iter_mut().map(Workload::wait_done));
    }
    let server = server.wait_done();

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let retrans = check::retrans(&before, &after);

    // Ground truth first: each client wrote its bytes, the server read them.
    assert!(
        clients.iter().all(|c| c.written == BYTES),
        "a client wrote less than {BYTES}"
    );
    assert_eq!(server.read, BYTES * CLIENTS as u64, "server read");
    let mut failures = Vec::new();
    for c in &clients {
        if retrans == 0 {
            assert_eq!(
                c.tcp_bytes_sent, c.written,
                "pid {}: tcpi_bytes_sent",
                c.pid
            );
        }
        let entries: Vec<_> = snap.processes_with_pid(c.pid).collect();
        match entries.as_slice() {
            [p] if p.start_ticks == c.start_ticks
                && p.comm == check::WORKLOAD_COMM
                && p.tx.payload_bytes == c.tcp_bytes_sent
                && p.rx.payload_bytes == 0 => {}
            other => failures.push(format!(
                "pid {} (start {}, sent {}): {other:?}",
                c.pid, c.start_ticks, c.tcp_bytes_sent
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} short-lived clients missing or wrong in the snapshot:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every connection was closed by the process owning its socket: each
    // client its own, the server what it accepted (the listener's owner).
    // Their flows say so (`FLOW_F_OWNER_RELEASED`): closed, with no closed
    // mark made. The listener (unconnected) is closed by its mark.
    let client_flows: Vec<_> = snap
        .sockets
        .iter()
        .filter(|s| clients.iter().any(|c| c.pid == s.pid))
        .collect();
    assert!(
        client_flows.len() >= CLIENTS && client_flows.iter().all(|s| s.closed),
        "every client's flow must be closed: {client_flows:#?}"
    );
    let (marks, _) = map_status(&netmon.status(), "NETMON_CLOSED");
    assert!(
        marks <= 2,
        "{marks} closed marks for {CLIENTS} connections closed by their owners"
    );
    let sent: u64 = clients.iter().map(|c| c.tcp_bytes_sent).sum();
    check::assert_payload(&snap, &server, "server", 0, sent);
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, false, &before, &after);

    let mut lifetimes: Vec<u64> = clients.iter().map(|c| c.elapsed_ms).collect();
    lifetimes.sort_unstable();
    let per_ms: BTreeMap<&str, u64> = [
        ("median", lifetimes[CLIENTS / 2]),
        ("p95", lifetimes[CLIENTS * 95 / 100]),
        ("max", lifetimes[CLIENTS - 1]),
    ]
    .into();
    eprintln!("  ok all {CLIENTS} clients exact; client lifetimes in ms: {per_ms:?}");
}
