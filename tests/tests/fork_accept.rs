//! Test 6: a listener created by a parent, a connection accepted by a forked
//! child. The accepted socket inherits the listener's owner (the parent) in
//! socket storage, but only the child holds it: its bytes belong to the
//! child, which stays alive until the snapshot has been taken.
//!
//! Two variants: the connection still established at the snapshot (all data
//! acknowledged: the accepted socket is in the kernel's socket tables, where
//! sock_diag finds it), and the connection finished (both FINs exchanged)
//! while the child still holds the descriptor: the socket is then gone from
//! sock_diag, and netmon must still not credit the parent.

use std::{net::SocketAddr, time::Duration};

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

fn fork_accept(name: &str, keep_open: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("fork");
    let pair = NetnsPair::new("fork");
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    let exe = workload_exe!();
    let bytes = BYTES.to_string();
    let listen = SocketAddr::new(pair.b.v4().into(), 0).to_string();
    let mut server_args = vec!["fork-accept", "--listen", &listen, "--send", &bytes];
    if keep_open {
        server_args.push("--keep-open");
    }
    let mut server = Workload::spawn(exe, &server_args, &cg, Some(&pair.b));
    let ready = server.wait_event(READY);
    let parent_pid = ready.pid;
    let connect = SocketAddr::new(pair.b.v4().into(), scenario::first_port(&ready)).to_string();
    let mut client_args = vec!["tcp-client", "--connect", &connect, "--hold"];
    if keep_open {
        client_args.extend(["--keep-open", "--expect", &bytes]);
    }
    let mut client = Workload::spawn(exe, &client_args, &cg, Some(&pair.a));
    let c = client.wait_event(DONE);
    // Printed by the forked child, which now waits for "exit".
    let child = server.wait_event(DONE);
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    server.send_line("exit");
    client.send_line("exit");
    assert!(
        server.wait_exit(Duration::from_secs(10)).success(),
        "fork-accept failed"
    );
    assert!(
        client.wait_exit(Duration::from_secs(10)).success(),
        "client failed"
    );

    assert_ne!(
        child.pid, parent_pid,
        "the report must come from the forked child"
    );
    eprintln!(
        "  parent (listener) pid {parent_pid}, forked child (accepted socket) pid {}",
        child.pid
    );
    assert_eq!((child.written, c.read), (BYTES, BYTES), "ground truth");
    let retrans = check::retrans(&before, &after);
    let lossless = check::lossless(&before, &after);
    check::assert_tcp_payload(&snap, &child, &c, retrans, lossless, "forked child");
    check::assert_live_identity(&snap, &child, "forked child", exe, &cg);
    check::assert_tcp_payload(&snap, &c, &child, retrans, lossless, "client");
    check::assert_consistent(&snap);
    // The parent's listener saw only the handshake: no payload.
    for p in snap.processes_with_pid(parent_pid) {
        assert_eq!(
            (p.tx.payload_bytes, p.rx.payload_bytes),
            (0, 0),
            "parent {parent_pid} was credited with the child's bytes\nflows:\n{}",
            snap.socket_list()
        );
    }
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, false, &before, &after);
}

#[test]
fn forked_child_owns_accepted_socket() {
    fork_accept("forked_child_owns_accepted_socket", true);
}

#[test]
fn forked_child_owns_accepted_socket_finished_before_snapshot() {
    fork_accept(
        "forked_child_owns_accepted_socket_finished_before_snapshot",
        false,
    );
}
