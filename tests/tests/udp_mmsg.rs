//! UDP batch system calls between two network namespaces, IPv4 and IPv6: the
//! sender hands its datagrams to the kernel with sendmmsg(2) (up to 32 a
//! call, one unconnected socket, a destination address per message), the
//! receiver takes them with recvmmsg(2). netmon counts at the cgroup_skb
//! hooks, below the system calls, so the counts must be exactly those of
//! `udp_veth.rs`'s send/recv: every datagram is one packet at both hooks
//! (sizes stay below the MTU), payload = the bytes the kernel reports sent
//! (`msg_len` of each message), IP bytes = payload + 28 (IPv4) / + 48 (IPv6)
//! per datagram. The receiver must have received every datagram (asserted).

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

/// Not a multiple of the workload's batch (32): the last sendmmsg call is a
/// partial batch.
const ROUNDS: u64 = 3001;
/// Payload sizes used in turn (five sizes, so a batch mixes them); the
/// largest fills a 1500-byte MTU exactly with IPv6 (1452 + 48).
const SIZES: &str = "1,100,777,1200,1452";

fn udp_mmsg_between_namespaces(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("mmsg");
    let pair = NetnsPair::new("mmsg");
    let netmon = Netmon::load(&cg);
    let (tx_ip, rx_ip): (IpAddr, IpAddr) = if v6 {
        (pair.a.v6().into(), pair.b.v6().into())
    } else {
        (pair.a.v4().into(), pair.b.v4().into())
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let run = scenario::udp_burst_with(
        workload_exe!(),
        &cg,
        &pair.b,
        rx_ip,
        &pair.a,
        1,
        ROUNDS,
        SIZES,
        &["--method", "sendmmsg"],
        &["--method", "recvmmsg"],
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);

    // The ground truth is what the sizes say (udp_burst asserted the
    // receiver got every datagram the sender sent).
    let sizes: Vec<u64> = SIZES
        .split(',')
        .map(|s| s.parse().expect("SIZES"))
        .collect();
    let payload: u64 = (0..ROUNDS)
        .map(|i| sizes[(i % sizes.len() as u64) as usize])
        .sum();
    assert_eq!(
        (run.sender.datagrams_sent, run.sender.written),
        (ROUNDS, payload),
        "sender (datagrams, bytes) reported vs sent by construction"
    );
    let overhead = if v6 { UDP6_OVERHEAD } else { UDP4_OVERHEAD };
    let expected = Counters {
        packets: ROUNDS,
        payload_bytes: payload,
        ip_bytes: payload + overhead * ROUNDS,
        app_bytes: payload,
        retrans_bytes: 0,
    };
    check::assert_one_way(&snap, &run.sender, &run.receiver, expected);

    // One flow each, with the right endpoints and the same counts.
    let rx_port = run.receiver.conns[0].local_port;
    let f = check::only_flow(&snap, run.sender.pid, "sender");
    assert_eq!(
        (
            f.protocol.as_str(),
            f.protocol_number,
            f.ip_version,
            f.local_addr,
            f.remote_addr,
            f.remote_port,
            f.tx,
        ),
        (
            "udp",
            17,
            if v6 { 6 } else { 4 },
            tx_ip,
            rx_ip,
            rx_port,
            expected
        ),
        "sender flow: {f:#?}"
    );
    let f = check::only_flow(&snap, run.receiver.pid, "receiver");
    assert_eq!(
        (
            f.protocol.as_str(),
            f.local_addr,
            f.local_port,
            f.remote_addr,
            f.rx
        ),
        ("udp", rx_ip, rx_port, tx_ip, expected),
        "receiver flow: {f:#?}"
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
fn udp_mmsg_ipv4_between_namespaces() {
    udp_mmsg_between_namespaces("udp_mmsg_ipv4_between_namespaces", false);
}

#[test]
fn udp_mmsg_ipv6_between_namespaces() {
    udp_mmsg_between_namespaces("udp_mmsg_ipv6_between_namespaces", true);
}
