//! Exactness does not depend on how a program hands bytes to its socket:
//! write, sendmsg with several iovecs, sendfile, splice and io_uring all end
//! in the same cgroup_skb hooks. For each, a client in one namespace sends
//! 8 MiB to a server in the other (veth), and netmon's per-process payload
//! must equal what each side wrote and read, and the namespaces' IP bytes
//! their MIB counters.

use std::net::{IpAddr, SocketAddr};

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netmon::Netmon, netns::NetnsPair, report::READY, require_root,
    scenario, workload::Workload, workload_exe,
};

const BYTES: u64 = 8 * 1024 * 1024;

fn send_with(name: &str, method: &str) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("io-paths");
    let pair = NetnsPair::new("io-paths");
    let netmon = Netmon::load(&cg);
    let server_ip: IpAddr = pair.b.v4().into();
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let listen = SocketAddr::new(server_ip, 0).to_string();
    let mut server = Workload::spawn(
        workload_exe!(),
        ["tcp-server", "--listen", &listen],
        &cg,
        Some(&pair.b),
    );
    let port = scenario::first_port(&server.wait_event(READY));
    let connect = SocketAddr::new(server_ip, port).to_string();
    let mut client = Workload::spawn(
        workload_exe!(),
        [
            "tcp-client",
            "--connect",
            &connect,
            "--send",
            &BYTES.to_string(),
            "--method",
            method,
        ],
        &cg,
        Some(&pair.a),
    );
    let (client_done, server_done) = (client.wait_done(), server.wait_done());
    assert_eq!(
        (client_done.written, server_done.read),
        (BYTES, BYTES),
        "{method}: bytes written/read"
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let retrans = check::retrans(&before, &after);
    let lossless = check::lossless(&before, &after);
    check::assert_tcp_payload(
        &snap,
        &client_done,
        &server_done,
        retrans,
        lossless,
        "client",
    );
    check::assert_tcp_payload(
        &snap,
        &server_done,
        &client_done,
        retrans,
        lossless,
        "server",
    );
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, false, &before, &after);
    eprintln!("  ok {method}: {BYTES} B exact");
}

#[test]
fn tcp_write_exact() {
    send_with("tcp_write_exact", "write");
}

#[test]
fn tcp_sendmsg_iovecs_exact() {
    send_with("tcp_sendmsg_iovecs_exact", "sendmsg");
}

#[test]
fn tcp_sendfile_exact() {
    send_with("tcp_sendfile_exact", "sendfile");
}

#[test]
fn tcp_splice_exact() {
    send_with("tcp_splice_exact", "splice");
}

#[test]
fn tcp_io_uring_exact() {
    send_with("tcp_io_uring_exact", "io-uring");
}
