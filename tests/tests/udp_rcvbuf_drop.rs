//! A UDP receiver that reads too slowly, IPv4 and IPv6: its small receive
//! buffer fills and the kernel drops the rest (`RcvbufErrors`). The ingress
//! hook had already counted those datagrams; `netmon_udp_drop` (raw
//! tracepoint `udp_fail_queue_rcv_skb`) moves each into the flow's rx
//! `retrans_bytes`. Checked against ground truth netmon did not compute:
//! rx app bytes = what the receiver read, to the byte; the dropped bytes =
//! the namespace's `RcvbufErrors` delta × the datagram size (every datagram
//! has the same size); rx payload = what the sender sent.

use std::net::{IpAddr, SocketAddr};

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netmon::Netmon, netns::NetnsPair, report::READY, require_root,
    scenario, workload::Workload, workload_exe,
};

/// Datagrams sent: far more than the receive buffer holds, few enough that
/// the veth backlog (1000 packets) never drops one.
const COUNT: u64 = 400;
/// Payload of every datagram.
const SIZE: u64 = 1000;

fn udp_rcvbuf_drop(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("rcvdrop");
    let pair = NetnsPair::new("rcvdrop");
    let netmon = Netmon::load(&cg);
    let (tx_ip, rx_ip): (IpAddr, IpAddr) = if v6 {
        (pair.a.v6().into(), pair.b.v6().into())
    } else {
        (pair.a.v4().into(), pair.b.v4().into())
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let rx_s = rx_ip.to_string();
    let mut rx = Workload::spawn(
        workload_exe!(),
        [
            "udp-recv",
            "--bind",
            &rx_s,
            "--rcvbuf",
            "8192",
            "--start-delay-ms",
            "1500",
            "--idle-ms",
            "300",
        ],
        &cg,
        Some(&pair.b),
    );
    let port = scenario::first_port(&rx.wait_event(READY));
    let to = SocketAddr::new(rx_ip, port).to_string();
    let (count, size) = (COUNT.to_string(), SIZE.to_string());
    let mut tx = Workload::spawn(
        workload_exe!(),
        ["udp-send", "--to", &to, "--count", &count, "--sizes", &size],
        &cg,
        Some(&pair.a),
    );
    let sender = tx.wait_done();
    let receiver = rx.wait_done();
    assert_eq!(
        (sender.datagrams_sent, sender.written),
        (COUNT, COUNT * SIZE),
        "sender"
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let (rcvbuf_key, in_key) = if v6 {
        (mib::UDP6_RCVBUF_ERRORS, mib::UDP6_IN_DATAGRAMS)
    } else {
        (mib::UDP_RCVBUF_ERRORS, mib::UDP_IN_DATAGRAMS)
    };
    let dropped = after[1].delta(&before[1], rcvbuf_key);
    let delivered = after[1].delta(&before[1], in_key);
    assert!(
        dropped > 0,
        "the slow receiver's buffer never overflowed ({rcvbuf_key} delta 0)"
    );
    assert_eq!(
        delivered + dropped,
        COUNT,
        "{in_key} + {rcvbuf_key}: every datagram reached the socket"
    );
    assert_eq!(
        receiver.datagrams_received, delivered,
        "receiver read every delivered datagram"
    );

    let f = check::only_flow(&snap, receiver.pid, "receiver");
    assert_eq!(
        (
            f.remote_addr,
            f.rx.packets,
            f.rx.payload_bytes,
            f.rx.app_bytes,
            f.rx.retrans_bytes
        ),
        (tx_ip, COUNT, sender.written, receiver.read, dropped * SIZE),
        "receiver flow rx (packets, payload, app = read, dropped bytes = {rcvbuf_key} x {SIZE}): {f:#?}"
    );
    let f = check::only_flow(&snap, sender.pid, "sender");
    assert_eq!(
        (f.tx.payload_bytes, f.tx.app_bytes, f.tx.retrans_bytes),
        (sender.written, sender.written, 0),
        "sender flow tx: {f:#?}"
    );
}

#[test]
fn udp_rcvbuf_drop_ipv4() {
    udp_rcvbuf_drop("udp_rcvbuf_drop_ipv4", false);
}

#[test]
fn udp_rcvbuf_drop_ipv6() {
    udp_rcvbuf_drop("udp_rcvbuf_drop_ipv6", true);
}
