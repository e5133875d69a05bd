//! Test 5: sockets opened before `netmon load`.
//!
//! The connection is established before the programs exist, so socket
//! creation was never seen and the sockets carry no owner in socket storage;
//! netmon must find the owners (sock_diag: cookie → inode, /proc/PID/fd:
//! inode → pid). Both processes stay alive, holding their sockets, until
//! the snapshot has been taken. Bytes sent after the load are exact.
//!
//! Two variants: the connection still established at the snapshot (all data
//! acknowledged), and the connection already finished (both FINs exchanged)
//! while the processes still hold the file descriptors. A finished TCP
//! socket is no longer in the kernel's socket tables, so sock_diag cannot
//! list it; netmon needs another way to map it to its holder.

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

fn preexisting(name: &str, keep_open: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("pre");
    let pair = NetnsPair::new("pre");
    let exe = workload_exe!();
    let bytes = BYTES.to_string();
    let listen = SocketAddr::new(pair.b.v4().into(), 0).to_string();
    let mut server_args = vec!["tcp-server", "--listen", &listen, "--hold"];
    if keep_open {
        server_args.extend(["--keep-open", "--expect", &bytes]);
    }
    let mut server = Workload::spawn(exe, &server_args, &cg, Some(&pair.b));
    let connect = SocketAddr::new(
        pair.b.v4().into(),
        scenario::first_port(&server.wait_event(READY)),
    )
    .to_string();
    let mut client_args = vec![
        "tcp-client",
        "--connect",
        &connect,
        "--send",
        &bytes,
        "--wait-go",
        "--hold",
    ];
    if keep_open {
        client_args.push("--keep-open");
    }
    let mut client = Workload::spawn(exe, &client_args, &cg, Some(&pair.a));
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
        client.wait_exit(Duration::from_secs(10)).success(),
        "client failed"
    );
    assert!(
        server.wait_exit(Duration::from_secs(10)).success(),
        "server failed"
    );

    assert_eq!((c.written, s.read), (BYTES, BYTES), "ground truth");
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
    check::assert_live_identity(&snap, &c, "client", exe, &cg);
    check::assert_live_identity(&snap, &s, "server", exe, &cg);
    check::assert_consistent(&snap);
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, false, &before, &after);
}

#[test]
fn socket_opened_before_load() {
    preexisting("socket_opened_before_load", true);
}

#[test]
fn socket_opened_before_load_finished_before_snapshot() {
    preexisting("socket_opened_before_load_finished_before_snapshot", false);
}
