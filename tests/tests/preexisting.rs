//! Test 5: sockets opened before `netmon load`.
//!
//! The connection is established before the programs exist, so socket
//! creation was never seen and the sockets carry no owner in socket storage;
//! netmon must find the owners (sock_diag: cookie → inode, /proc/PID/fd:
//! inode → pid). Both processes stay alive until the snapshot has been
//! taken. Bytes sent after the load are exact.

use std::net::SocketAddr;

use netmon_tests::{
    cgroup::CgroupGuard,
    check, mib,
    netmon::Netmon,
    netns::NetnsPair,
    report::{DONE, READY},
    require_root, scenario,
    workload::Workload,
    workload_exe,
};

const BYTES: u64 = 5 * 1024 * 1024;

#[test]
fn socket_opened_before_load() {
    if !require_root("socket_opened_before_load") {
        return;
    }
    let cg = CgroupGuard::new("pre");
    let pair = NetnsPair::new("pre");
    let exe = workload_exe!();
    let listen = SocketAddr::new(pair.b.v4().into(), 0).to_string();
    let mut server = Workload::spawn(
        exe,
        ["tcp-server", "--listen", &listen, "--hold"],
        &cg,
        Some(&pair.b),
    );
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
            "--wait-go",
            "--hold",
        ],
        &cg,
        Some(&pair.a),
    );
    // Connected (both ends of the connection exist) before netmon loads.
    client.wait_event(READY);

    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    client.send_line("go");
    let c = client.wait_event(DONE);
    let s = server.wait_event(DONE);
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    client.send_line("exit");
    server.send_line("exit");
    assert!(
        client
            .wait_exit(std::time::Duration::from_secs(10))
            .success(),
        "client failed"
    );
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(10))
            .success(),
        "server failed"
    );

    assert_eq!((c.written, s.read), (BYTES, BYTES), "ground truth");
    check::assert_consistent(&snap);
    check::assert_live_identity(&snap, &c, "client", exe, &cg);
    check::assert_live_identity(&snap, &s, "server", exe, &cg);
    let retrans = check::retrans(&before, &after);
    let lossless = check::lossless(&before, &after);
    check::assert_tcp_payload(
        &snap,
        &c,
        &s,
        retrans,
        lossless,
        "client (socket predates netmon)",
    );
    check::assert_tcp_payload(
        &snap,
        &s,
        &c,
        retrans,
        lossless,
        "server (socket predates netmon)",
    );
    check::assert_ip_bytes_match_mib(
        "client namespace",
        &snap,
        &[pair.a.v4().into()],
        &before[0],
        &after[0],
    );
    check::assert_ip_bytes_match_mib(
        "server namespace",
        &snap,
        &[pair.b.v4().into()],
        &before[1],
        &after[1],
    );
}
