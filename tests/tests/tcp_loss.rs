//! Application bytes vs wire bytes: bulk TCP between two namespaces whose
//! links drop packets, IPv4 and IPv6, 24 MiB one way and then 24 MiB the
//! other way (two connections, two pairs of processes).
//!
//! Each namespace's veth drops 3 % of the arriving packets longer than a
//! pure ACK (nftables, see `shaping::drop_ingress`), so the senders
//! retransmit. Ground truth, none of it computed by netmon:
//! - the workloads' own write/read counts: the sender's `app_bytes` to the
//!   byte; the receiver's between the reads and the reads plus what the
//!   sender retransmitted (a duplicate that reaches the hook while its
//!   original still waits in the socket's backlog counts as new: README);
//! - the sender's `TCP_INFO`: `tcpi_bytes_sent` is its `payload_bytes` (every
//!   copy it put on the wire), `tcpi_bytes_retrans` its `retrans_bytes`,
//!   `tcpi_total_retrans` / `tcpi_data_segs_out` its flow's segment counts;
//! - the namespaces' IP MIB octet counters: IP bytes per namespace (the drop
//!   happens before `ip_rcv`, so a dropped packet counts on the sending side
//!   only, in netmon as in the MIB).

use std::net::IpAddr;

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netmon::Netmon, netns::NetnsPair, report::Report,
    require_root, scenario, shaping, snapshot::Snapshot, workload_exe,
};

const BYTES: u64 = 24 * 1024 * 1024;
/// Share of data packets dropped per namespace, per mille.
const LOSS_PER_MILLE: u32 = 30;

/// The sender's and the receiver's counts against their own measurements.
///
/// Sent: exact (app = writes, payload = `tcpi_bytes_sent`, retrans =
/// `tcpi_bytes_retrans`). Received: the app bytes lie between the reads and
/// the reads plus what the sender retransmitted: a duplicate the hook sees
/// before the socket has processed its original (still in the socket's
/// backlog, held out of order, or dropped by TCP after the hook) counts as
/// new (README). `post_hook_drops` (see `check::tcp_rx_inexact`) counts the
/// cases the kernel itself reports; the note says whether a run was exact.
#[track_caller]
fn assert_app_and_retrans(
    snap: &Snapshot,
    sender: &Report,
    receiver: &Report,
    post_hook_drops: u64,
    what: &str,
) {
    assert!(
        sender.tcp_bytes_retrans > 0 && sender.tcp_total_retrans > 0,
        "{what}: the lossy link made no retransmission (tcpi_bytes_retrans {}, \
         tcpi_total_retrans {}): the test would prove nothing",
        sender.tcp_bytes_retrans,
        sender.tcp_total_retrans
    );
    let s = check::process(snap, sender, "sender");
    assert_eq!(
        (s.tx.app_bytes, s.tx.payload_bytes, s.tx.retrans_bytes),
        (
            sender.written,
            sender.tcp_bytes_sent,
            sender.tcp_bytes_retrans
        ),
        "{what}: sender tx (app, payload, retrans) bytes: netmon (left) vs the workload's writes, \
         tcpi_bytes_sent and tcpi_bytes_retrans (right)\nflows:\n{}",
        snap.socket_list()
    );
    let r = check::process(snap, receiver, "receiver");
    assert!(
        r.rx.app_bytes >= receiver.read
            && r.rx.app_bytes <= receiver.read + sender.tcp_bytes_retrans,
        "{what}: receiver rx app bytes {} outside [reads {}, reads + sender's retransmitted {}]; \
         rx payload {} retrans {}\nflows:\n{}",
        r.rx.app_bytes,
        receiver.read,
        receiver.read + sender.tcp_bytes_retrans,
        r.rx.payload_bytes,
        r.rx.retrans_bytes,
        snap.socket_list()
    );
    eprintln!(
        "  {} {what}: receiver app bytes {} for {} read ({post_hook_drops} post-hook drops or \
         out-of-order duplicates reported by the kernel)",
        if r.rx.app_bytes == receiver.read {
            "ok exact"
        } else {
            "note: inexact"
        },
        r.rx.app_bytes,
        receiver.read
    );
    assert_eq!(
        r.rx.app_bytes + r.rx.retrans_bytes,
        r.rx.payload_bytes,
        "{what}: receiver app + retrans = payload"
    );
    // Nothing flows the other way but ACKs and FINs.
    assert_eq!(
        (s.rx.app_bytes, r.tx.app_bytes),
        (receiver.written, sender.read),
        "{what}: the quiet direction"
    );
    // The sender's connection: its busiest flow (a server also has its
    // listener's handshake flow).
    let flow = snap
        .sockets_of(sender.pid)
        .max_by_key(|f| f.tx.payload_bytes)
        .unwrap_or_else(|| panic!("{what}: the sender has no flow"));
    let tcp = flow
        .tcp
        .unwrap_or_else(|| panic!("{what}: the sender's TCP flow has no tcp sample: {flow:#?}"));
    assert_eq!(
        (u64::from(tcp.retrans_segs), u64::from(tcp.data_segs_out)),
        (sender.tcp_total_retrans, sender.tcp_data_segs_out),
        "{what}: sender flow (retrans_segs, data_segs_out): netmon (left) vs tcpi_total_retrans, \
         tcpi_data_segs_out (right)"
    );
    eprintln!(
        "  ok {what}: sender app {} payload {} retrans {} ({} of {} segments); receiver app {} \
         payload {} duplicate {}",
        s.tx.app_bytes,
        s.tx.payload_bytes,
        s.tx.retrans_bytes,
        tcp.retrans_segs,
        tcp.data_segs_out,
        r.rx.app_bytes,
        r.rx.payload_bytes,
        r.rx.retrans_bytes
    );
}

fn tcp_under_loss(name: &str, v6: bool) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("tcploss");
    let pair = NetnsPair::new("tcploss");
    shaping::drop_ingress(&pair.a, LOSS_PER_MILLE);
    shaping::drop_ingress(&pair.b, LOSS_PER_MILLE);
    let netmon = Netmon::load(&cg);
    let server_ip: IpAddr = if v6 {
        pair.b.v6().into()
    } else {
        pair.b.v4().into()
    };
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    let up = scenario::tcp_exchange(workload_exe!(), &cg, &pair.b, server_ip, &pair.a, BYTES, 0);
    let down = scenario::tcp_exchange(workload_exe!(), &cg, &pair.b, server_ip, &pair.a, 0, BYTES);
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    eprintln!(
        "  dropped: {} packets arriving at the client, {} at the server; {} TCP retransmissions",
        shaping::dropped(&pair.a),
        shaping::dropped(&pair.b),
        check::retrans(&before, &after)
    );
    check::assert_consistent(&snap);
    let drops = check::tcp_rx_inexact(&before, &after);
    assert_app_and_retrans(&snap, &up.client, &up.server, drops, "upstream");
    assert_app_and_retrans(&snap, &down.server, &down.client, drops, "downstream");
    check::assert_pair_ip_bytes_match_mib(&snap, &pair, v6, &before, &after);
}

#[test]
fn tcp_ipv4_app_bytes_under_loss() {
    tcp_under_loss("tcp_ipv4_app_bytes_under_loss", false);
}

#[test]
fn tcp_ipv6_app_bytes_under_loss() {
    tcp_under_loss("tcp_ipv6_app_bytes_under_loss", true);
}
