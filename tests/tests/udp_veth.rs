//! Test 2: UDP bursts between two network namespaces, IPv4 and IPv6.
//!
//! Every datagram is one packet at both hooks (sizes stay below the MTU, so
//! nothing is fragmented): packets, payload and IP bytes (payload + 28 for
//! IPv4, + 48 for IPv6, per datagram) are known exactly from what the sender
//! sent; the receiver must have received every datagram (asserted).

use std::net::IpAddr;

use netmon_tests::{
    cgroup::CgroupGuard,
    check::{self, UDP4_OVERHEAD, UDP6_OVERHEAD},
    mib,
    netmon::Netmon,
    netns::NetnsPair,
    require_root, scenario,
    snapshot::Counters,
    workload_exe,
};

const ROUNDS: u64 = 3000;
/// Payload sizes used in turn; the largest fits a 1500-byte MTU with IPv6.
const SIZES: &str = "1,64,512,1000,1400";

fn udp_between_namespaces(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("udp");
    let pair = NetnsPair::new("udp");
    let netmon = Netmon::load(&cg);
    let (tx_ip, rx_ip): (IpAddr, IpAddr) = if v6 {
        (pair.a.v6().into(), pair.b.v6().into())
    } else {
        (pair.a.v4().into(), pair.b.v4().into())
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let run = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &pair.b,
        rx_ip,
        &pair.a,
        1,
        ROUNDS,
        SIZES,
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let overhead = if v6 { UDP6_OVERHEAD } else { UDP4_OVERHEAD };
    let expected = Counters {
        packets: run.sender.datagrams_sent,
        payload_bytes: run.sender.written,
        ip_bytes: run.sender.written + overhead * run.sender.datagrams_sent,
        app_bytes: run.sender.written,
        retrans_bytes: 0,
    };
    check::assert_one_way(&snap, &run.sender, &run.receiver, expected);

    // One flow each, with the right endpoints.
    let f = check::only_flow(&snap, run.sender.pid, "sender");
    let rx_port = run.receiver.conns[0].local_port;
    assert_eq!(
        (
            f.protocol.as_str(),
            f.protocol_number,
            f.ip_version,
            f.local_addr,
            f.remote_addr,
            f.remote_port
        ),
        ("udp", 17, if v6 { 6 } else { 4 }, tx_ip, rx_ip, rx_port),
        "sender flow: {f:#?}"
    );

    check::assert_ip_bytes_match_mib("sender namespace", &snap, &[tx_ip], &before[0], &after[0]);
    check::assert_ip_bytes_match_mib("receiver namespace", &snap, &[rx_ip], &before[1], &after[1]);
    let (out_dgrams, in_dgrams) = if v6 {
        (mib::UDP6_OUT_DATAGRAMS, mib::UDP6_IN_DATAGRAMS)
    } else {
        (mib::UDP_OUT_DATAGRAMS, mib::UDP_IN_DATAGRAMS)
    };
    assert_eq!(
        after[0].delta(&before[0], out_dgrams),
        expected.packets,
        "{out_dgrams}"
    );
    assert_eq!(
        after[1].delta(&before[1], in_dgrams),
        expected.packets,
        "{in_dgrams}"
    );
}

#[test]
fn udp_ipv4_between_namespaces() {
    udp_between_namespaces("udp_ipv4_between_namespaces", false);
}

#[test]
fn udp_ipv6_between_namespaces() {
    udp_between_namespaces("udp_ipv6_between_namespaces", true);
}
