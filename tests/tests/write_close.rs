//! Test 7: a process writes 10 MiB into a large send buffer and closes the
//! socket at once, with most of the data still queued (the receiver waits
//! before reading, behind a small receive buffer). The kernel keeps sending
//! after `close()`: those bytes must still be counted, to the socket's
//! (gone) owner. The snapshot is taken after the receiver got everything.

use std::net::SocketAddr;

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netmon::Netmon, netns::NetnsPair, report::READY, require_root,
    scenario, workload::Workload, workload_exe,
};

const BYTES: u64 = 10 * 1024 * 1024;

#[test]
fn bytes_queued_at_close_are_counted() {
    if !require_root("bytes_queued_at_close_are_counted") {
        return;
    }
    let cg = CgroupGuard::new("close");
    let pair = NetnsPair::new("close");
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    let exe = workload_exe!();
    let listen = SocketAddr::new(pair.b.v4().into(), 0).to_string();
    let mut server = Workload::spawn(
        exe,
        [
            "tcp-server",
            "--listen",
            &listen,
            "--rcvbuf",
            "65536",
            "--delay-read-ms",
            "500",
        ],
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
            "--sndbuf",
            "67108864",
            "--close-at-once",
        ],
        &cg,
        Some(&pair.a),
    );
    let c = client.wait_done();
    let s = server.wait_done();
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();

    assert_eq!((c.written, s.read), (BYTES, BYTES), "ground truth");
    assert!(
        c.queued_at_close > BYTES / 2,
        "the test needs most data still queued at close(), only {} B were",
        c.queued_at_close
    );
    eprintln!(
        "  {} of {BYTES} B were still queued at close()",
        c.queued_at_close
    );
    check::assert_consistent(&snap);
    let flows: Vec<_> = snap.sockets_of(c.pid).collect();
    assert!(
        !flows.is_empty() && flows.iter().all(|f| f.closed),
        "client flows must be closed: {flows:#?}"
    );

    let retrans = check::retrans(&before, &after);
    let client = check::process(&snap, &c, "client");
    let server = check::process(&snap, &s, "server");
    if retrans == 0 {
        check::assert_payload(&snap, &c, "client (closed with data queued)", BYTES, 0);
    } else {
        // The socket was closed before anyone could ask TCP_INFO how much it
        // retransmitted; the receiver's hook saw every copy instead.
        eprintln!(
            "  note: {retrans} retransmissions; client payload checked against the receiver's"
        );
        assert!(
            client.tx.payload_bytes >= BYTES,
            "client tx payload {}",
            client.tx.payload_bytes
        );
    }
    if check::lossless(&before, &after) {
        assert_eq!(
            server.rx.payload_bytes, client.tx.payload_bytes,
            "server rx payload vs client tx payload"
        );
    }
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, false, &before, &after);
}
