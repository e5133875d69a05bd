//! Assertions shared by the kernel tests: netmon's numbers against the
//! workloads' own counts and against the namespaces' MIB counters.

use std::net::IpAddr;

use crate::{
    mib::{self, Mib},
    report::Report,
    snapshot::{Process, Snapshot},
};

/// `comm` of every workload process (15 characters: fits `TASK_COMM_LEN`).
pub const WORKLOAD_COMM: &str = "netmon-workload";

/// IPv4 + UDP header bytes per datagram.
pub const UDP4_OVERHEAD: u64 = 20 + 8;
/// IPv6 + UDP header bytes per datagram.
pub const UDP6_OVERHEAD: u64 = 40 + 8;
/// IPv4 + ICMP header bytes per echo message.
pub const ICMP4_OVERHEAD: u64 = 20 + 8;
/// IPv6 + ICMPv6 header bytes per echo message.
pub const ICMP6_OVERHEAD: u64 = 40 + 8;

/// The process `report` describes, as netmon saw it: present once, with the
/// workload's start time and comm. Panics otherwise.
#[track_caller]
#[must_use]
pub fn process<'a>(snap: &'a Snapshot, report: &Report, what: &str) -> &'a Process {
    let p = snap.process(report.pid);
    assert_eq!(
        p.start_ticks, report.start_ticks,
        "{what} (pid {}): start_ticks differ from /proc/{}/stat",
        report.pid, report.pid
    );
    assert_eq!(p.comm, WORKLOAD_COMM, "{what} (pid {}): comm", report.pid);
    p
}

/// Asserts a process's payload bytes in both directions.
#[track_caller]
pub fn assert_payload(snap: &Snapshot, report: &Report, what: &str, tx: u64, rx: u64) {
    let p = process(snap, report, what);
    assert_eq!(
        (p.tx.payload_bytes, p.rx.payload_bytes),
        (tx, rx),
        "{what} (pid {}): (tx, rx) payload bytes: netmon reports the left side, the workload \
         measured the right side\nprocesses: {}\nflows:\n{}",
        report.pid,
        snap.process_list(),
        snap.socket_list()
    );
}

/// TCP retransmissions in a set of namespaces between two readings.
#[track_caller]
#[must_use]
pub fn retrans(before: &[Mib], after: &[Mib]) -> u64 {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.delta(b, mib::TCP_RETRANS_SEGS))
        .sum()
}

/// Expected TCP payload of a connection end: what its socket transmitted
/// (`tcpi_bytes_sent`, retransmissions included: each one passes the egress
/// hook again) and what the peer's transmitted (every copy arrives at this
/// end's ingress hook; veth loses nothing). Without retransmissions these
/// are exactly what each side wrote, which is asserted too.
#[track_caller]
#[must_use]
pub fn tcp_expected(me: &Report, peer: &Report, retrans_segs: u64, what: &str) -> (u64, u64) {
    if retrans_segs == 0 {
        assert_eq!(
            me.tcp_bytes_sent, me.written,
            "{what}: tcpi_bytes_sent without retransmits"
        );
        assert_eq!(
            peer.tcp_bytes_sent, peer.written,
            "{what}: peer tcpi_bytes_sent"
        );
    } else {
        eprintln!(
            "note: {retrans_segs} TCP retransmissions; expecting the kernel's transmitted payload \
             ({what}: {} B sent for {} B written, peer {} B for {})",
            me.tcp_bytes_sent, me.written, peer.tcp_bytes_sent, peer.written
        );
    }
    (me.tcp_bytes_sent, peer.tcp_bytes_sent)
}

/// Asserts that, per address family, the IP bytes of the flows whose local
/// address is one of `locals` equal the namespace's IP MIB octet deltas
/// (`IpExt` In/OutOctets for IPv4, `Ip6` In/OutOctets for IPv6).
///
/// Holds when every IP packet of the namespace between the two readings
/// belonged to a socket of the test's cgroup (the namespaces are quiet
/// otherwise) and every packet passed a socket hook (no timewait sockets,
/// see the TCP workload's doc).
#[track_caller]
pub fn assert_ip_bytes_match_mib(
    what: &str,
    snap: &Snapshot,
    locals: &[IpAddr],
    before: &Mib,
    after: &Mib,
) {
    for (v6, in_key, out_key) in [
        (false, mib::IP4_IN_OCTETS, mib::IP4_OUT_OCTETS),
        (true, mib::IP6_IN_OCTETS, mib::IP6_OUT_OCTETS),
    ] {
        let sum =
            snap.sum_sockets(|s| s.local_addr.is_ipv6() == v6 && locals.contains(&s.local_addr));
        let family = if v6 { "IPv6" } else { "IPv4" };
        assert_eq!(
            (sum.tx.ip_bytes, sum.rx.ip_bytes),
            (after.delta(before, out_key), after.delta(before, in_key)),
            "{what}: {family} (tx, rx) IP bytes of the flows local to {locals:?} (left) vs the \
             namespace's ({out_key}, {in_key}) deltas (right)\nflows:\n{}",
            snap.socket_list()
        );
    }
}

/// Asserts that netmon's totals equal its flows plus overflow, and that
/// every flow is attributed to a process.
#[track_caller]
pub fn assert_consistent(snap: &Snapshot) {
    let flows = snap.sum_sockets(|_| true);
    assert_eq!(
        snap.totals.tx,
        flows.tx + snap.overflow.tx,
        "totals.tx != flows + overflow"
    );
    assert_eq!(
        snap.totals.rx,
        flows.rx + snap.overflow.rx,
        "totals.rx != flows + overflow"
    );
    let unattributed: Vec<_> = snap.sockets.iter().filter(|s| s.pid == 0).collect();
    assert!(
        unattributed.is_empty(),
        "unattributed flows: {unattributed:#?}"
    );
    let per_process = snap.sum_processes();
    assert_eq!(per_process, flows, "per-process sums != per-flow sums");
}
