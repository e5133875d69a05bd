//! Test 3: TCP and UDP over loopback inside one network namespace (netmon
//! attached to the test's cgroup only).
//!
//! On loopback every packet is the sender's egress and the receiver's
//! ingress; the kernel may split a large TCP packet after the egress hook, so
//! packet counts and header bytes differ per direction, but payload is
//! exact on both sides and IP bytes equal the namespace's MIB (which sees the
//! same split) in each direction.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netmon_tests::{
    cgroup::CgroupGuard,
    check::{self, UDP4_OVERHEAD, UDP6_OVERHEAD},
    mib,
    netmon::Netmon,
    netns::Netns,
    require_root, scenario,
    snapshot::Counters,
    workload_exe,
};

const TCP_BYTES: u64 = 20 * 1024 * 1024;
const UDP_ROUNDS: u64 = 2000;

fn addr(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    }
}

fn tcp_loopback(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("lo-tcp");
    let ns = Netns::new("lo-tcp");
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&ns]);

    let run = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &ns,
        addr(v6),
        &ns,
        TCP_BYTES,
        TCP_BYTES / 2,
    );

    let after = mib::wait_quiet(&[&ns]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let retrans = check::retrans(&before, &after);
    // One namespace: every byte sent is received (loopback loses nothing).
    check::assert_tcp_payload(&snap, &run.client, &run.server, retrans, true, "client");
    check::assert_tcp_payload(&snap, &run.server, &run.client, retrans, true, "server");
    check::assert_ip_bytes_match_mib("namespace", &snap, &[addr(v6)], &before[0], &after[0]);
}

fn udp_loopback(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("lo-udp");
    let ns = Netns::new("lo-udp");
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&[&ns]);

    let run = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &ns,
        addr(v6),
        &ns,
        1,
        UDP_ROUNDS,
        "1,333,1000,1400",
    );

    let after = mib::wait_quiet(&[&ns]);
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
    let sender = check::process(&snap, &run.sender, "sender");
    assert_eq!(
        (sender.tx, sender.rx),
        (expected, Counters::default()),
        "sender (tx, rx) (left: netmon)"
    );
    let receiver = check::process(&snap, &run.receiver, "receiver");
    assert_eq!(
        (receiver.tx, receiver.rx),
        (Counters::default(), expected),
        "receiver (tx, rx) (left: netmon)"
    );
    eprintln!("  ok sender tx = receiver rx = {expected:?}");
    check::assert_ip_bytes_match_mib("namespace", &snap, &[addr(v6)], &before[0], &after[0]);
}

#[test]
fn tcp_ipv4_loopback() {
    tcp_loopback("tcp_ipv4_loopback", false);
}

#[test]
fn tcp_ipv6_loopback() {
    tcp_loopback("tcp_ipv6_loopback", true);
}

#[test]
fn udp_ipv4_loopback() {
    udp_loopback("udp_ipv4_loopback", false);
}

#[test]
fn udp_ipv6_loopback() {
    udp_loopback("udp_ipv6_loopback", true);
}
