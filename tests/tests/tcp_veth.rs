//! Test 1: bulk TCP between two network namespaces over a veth pair, IPv4
//! and IPv6, 50 MiB each way at once.
//!
//! Ground truth: each workload's own byte counts (per-process payload) and
//! each namespace's IP MIB octet counters (sum of the IP bytes of the flows
//! local to that namespace). TCP retransmissions would make the payload on
//! the wire exceed what was written; the expected payload is then what the
//! kernel transmitted (`tcpi_bytes_sent`), see `check::assert_tcp_payload`.

use std::net::IpAddr;

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netmon::Netmon, netns::NetnsPair, require_root, scenario,
    workload_exe,
};

const BYTES: u64 = 50 * 1024 * 1024;

fn tcp_between_namespaces(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("tcp");
    let pair = NetnsPair::new("tcp");
    let netmon = Netmon::load(&cg);
    let server_ip: IpAddr = if v6 {
        pair.b.v6().into()
    } else {
        pair.b.v4().into()
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let run = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &pair.b,
        server_ip,
        &pair.a,
        BYTES,
        BYTES,
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    check::assert_consistent(&snap);
    let retrans = check::retrans(&before, &after);
    let lossless = check::lossless(&before, &after);
    check::assert_tcp_payload(&snap, &run.client, &run.server, retrans, lossless, "client");
    check::assert_tcp_payload(&snap, &run.server, &run.client, retrans, lossless, "server");
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, v6, &before, &after);
    // Only the test's processes are in the cgroup: all of netmon's traffic is
    // theirs, and it is all in the two namespaces.
    let out_key = if v6 {
        mib::IP6_OUT_OCTETS
    } else {
        mib::IP4_OUT_OCTETS
    };
    let mib_out = after[0].delta(&before[0], out_key) + after[1].delta(&before[1], out_key);
    assert_eq!(
        snap.totals.tx.ip_bytes, mib_out,
        "totals.tx.ip_bytes vs both namespaces' {out_key}"
    );
}

#[test]
fn tcp_ipv4_between_namespaces() {
    tcp_between_namespaces("tcp_ipv4_between_namespaces", false);
}

#[test]
fn tcp_ipv6_between_namespaces() {
    tcp_between_namespaces("tcp_ipv6_between_namespaces", true);
}
