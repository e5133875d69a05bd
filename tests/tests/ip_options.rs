//! IP headers the eBPF fast path does not take: IPv4 with options (IHL 6)
//! and IPv6 with a destination options extension header, between two
//! network namespaces. The sending sockets set them with `IP_OPTIONS` /
//! `IPV6_DSTOPTS` (`netmon-workload ... --ip-options`), which fails loudly
//! if the kernel refuses or alters them.
//!
//! UDP: every datagram is one packet of payload + 32 bytes (IPv4: 24-byte
//! header, 8-byte UDP header) or payload + 56 (IPv6: 40-byte header, 8-byte
//! destination options header, UDP header): packets, payload and IP bytes
//! are exact, netmon's on both ends and the namespaces' MIB octets alike
//! (the MIB equality also shows the options were on the wire).
//!
//! TCP: both ends set the options (the client before connecting, the server
//! on the accepted socket), so nearly every segment carries them; payload is
//! checked against the workloads' counts (retransmissions accounted for as in
//! `tcp_veth.rs`) and IP bytes against the MIB.

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

/// The workload's IPv4 options: NOP NOP NOP EOL.
const IPV4_OPTIONS_LEN: u64 = 4;
/// The workload's destination options header: one PadN option.
const IPV6_DSTOPTS_LEN: u64 = 8;

const ROUNDS: u64 = 1000;
/// Payload sizes used in turn; the largest fits a 1500-byte MTU with the
/// IPv6 extension header.
const SIZES: &str = "1,7,64,512,1000,1400";

/// Bytes each way over TCP.
const TCP_BYTES: u64 = 8 * 1024 * 1024;

fn udp_with_ip_options(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("ipopt");
    let pair = NetnsPair::new("ipopt");
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
        &["--ip-options"],
        &[],
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let overhead = if v6 {
        UDP6_OVERHEAD + IPV6_DSTOPTS_LEN
    } else {
        UDP4_OVERHEAD + IPV4_OPTIONS_LEN
    };
    let expected = Counters {
        packets: run.sender.datagrams_sent,
        payload_bytes: run.sender.written,
        ip_bytes: run.sender.written + overhead * run.sender.datagrams_sent,
        app_bytes: run.sender.written,
        retrans_bytes: 0,
    };
    assert_eq!(expected.packets, ROUNDS, "datagrams sent");

    // The kernel's own count first: it shows the extra header bytes were on
    // the wire, independently of netmon.
    let (out_key, in_key) = if v6 {
        (mib::IP6_OUT_OCTETS, mib::IP6_IN_OCTETS)
    } else {
        (mib::IP4_OUT_OCTETS, mib::IP4_IN_OCTETS)
    };
    assert_eq!(
        (
            after[0].delta(&before[0], out_key),
            after[1].delta(&before[1], in_key)
        ),
        (expected.ip_bytes, expected.ip_bytes),
        "sender namespace's {out_key} and receiver namespace's {in_key} (left) vs payload + \
         {overhead} B per datagram (right): the IP options / extension header are not what the \
         test expects on the wire"
    );

    check::assert_one_way(&snap, &run.sender, &run.receiver, expected);

    // One flow each, with the right endpoints: the ports come from the UDP
    // header behind the options / extension header.
    let rx_port = run.receiver.conns[0].local_port;
    let f = check::only_flow(&snap, run.sender.pid, "sender");
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
    let f = check::only_flow(&snap, run.receiver.pid, "receiver");
    assert_eq!(
        (
            f.protocol.as_str(),
            f.local_addr,
            f.local_port,
            f.remote_addr,
            f.remote_port
        ),
        (
            "udp",
            rx_ip,
            rx_port,
            tx_ip,
            flows_port(&snap, run.sender.pid)
        ),
        "receiver flow: {f:#?}"
    );

    check::assert_ip_bytes_match_mib("sender namespace", &snap, &[tx_ip], &before[0], &after[0]);
    check::assert_ip_bytes_match_mib("receiver namespace", &snap, &[rx_ip], &before[1], &after[1]);
}

/// The local port of `pid`'s only flow.
#[track_caller]
fn flows_port(snap: &netmon_tests::snapshot::Snapshot, pid: u32) -> u16 {
    let ports: Vec<u16> = snap.sockets_of(pid).map(|f| f.local_port).collect();
    match ports.as_slice() {
        [port] => *port,
        other => panic!("pid {pid}: expected one flow, got ports {other:?}"),
    }
}

fn tcp_with_ip_options(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("ipopt-tcp");
    let pair = NetnsPair::new("ipopt-tcp");
    let netmon = Netmon::load(&cg);
    let server_ip: IpAddr = if v6 {
        pair.b.v6().into()
    } else {
        pair.b.v4().into()
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let run = scenario::tcp_exchange_with(
        workload_exe!(),
        &cg,
        &pair.b,
        server_ip,
        &pair.a,
        TCP_BYTES,
        TCP_BYTES,
        &["--ip-options"],
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let retrans = check::retrans(&before, &after);
    let lossless = check::lossless(&before, &after);
    check::assert_tcp_payload(&snap, &run.client, &run.server, retrans, lossless, "client");
    check::assert_tcp_payload(&snap, &run.server, &run.client, retrans, lossless, "server");
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, v6, &before, &after);
    // Every segment the client sends carries the extra bytes, the SYN
    // included, and (timestamps being on, the default of a new namespace)
    // a TCP header of at least 32 bytes: without the options the headers
    // would fall short by `extra` per packet, less the SYN's 8 extra bytes of
    // TCP options.
    let (ip_header, extra) = if v6 {
        (40, IPV6_DSTOPTS_LEN)
    } else {
        (20, IPV4_OPTIONS_LEN)
    };
    let p = check::process(&snap, &run.client, "client");
    let headers = p.tx.ip_bytes - p.tx.payload_bytes;
    let floor = p.tx.packets * (ip_header + extra + 32);
    assert!(
        p.tx.packets >= 3 && headers >= floor,
        "client: {headers} B of IP and TCP headers in {} packets, expected at least {floor}: \
         are the IP options missing?",
        p.tx.packets
    );
    eprintln!(
        "  ok client: {} packets, {headers} B of headers (>= {floor})",
        p.tx.packets
    );
}

#[test]
fn udp_ipv4_with_ip_options() {
    udp_with_ip_options("udp_ipv4_with_ip_options", false);
}

#[test]
fn udp_ipv6_with_destination_options() {
    udp_with_ip_options("udp_ipv6_with_destination_options", true);
}

#[test]
fn tcp_ipv4_with_ip_options() {
    tcp_with_ip_options("tcp_ipv4_with_ip_options", false);
}

#[test]
fn tcp_ipv6_with_destination_options() {
    tcp_with_ip_options("tcp_ipv6_with_destination_options", true);
}
