//! Impairing a test namespace's link: packet loss and added delay, inside
//! the namespace only.
//!
//! The kernels we test on are built without netem and fq, so:
//! - loss: an nftables `netdev` table on the namespace's veth end drops a
//!   random share of the arriving packets longer than a pure ACK, at the
//!   device's ingress hook. That runs before `ip_rcv`, so a dropped packet
//!   is in the sender's IP MIB and socket counts (it left) and in neither of
//!   the receiver's (it never arrived): both sides' MIB octet counters stay
//!   a valid ground truth. Pure ACKs are never dropped, so the sender always
//!   learns through SACK what arrived;
//! - delay: a `tbf` qdisc on the namespace's veth egress. A TCP sender fills
//!   its queue, so the queue stands and every packet waits behind it: the
//!   RTT rises by the queue's length over the rate.

use crate::netns::{Netns, VETH};

/// Packets shorter than this (IP length) are never dropped: pure ACKs,
/// with or without SACK blocks, are at most 40 + 20 + 40 bytes.
const MIN_DROPPED_LEN: u32 = 200;

/// Drops `per_mille` of every 1000 packets longer than a pure ACK that
/// arrive in `ns` over its veth. The rule goes with the namespace.
#[track_caller]
pub fn drop_ingress(ns: &Netns, per_mille: u32) {
    let rules = format!(
        "add table netdev netmon_loss\n\
         add chain netdev netmon_loss in {{ type filter hook ingress device \"{VETH}\" priority 0; policy accept; }}\n\
         add rule netdev netmon_loss in meta length > {MIN_DROPPED_LEN} numgen random mod 1000 < {per_mille} counter drop\n"
    );
    let path = std::env::temp_dir().join(format!("netmon-loss-{}.nft", crate::unique_suffix()));
    if let Err(e) = std::fs::write(&path, rules) {
        panic!("writing {}: {e}", path.display());
    }
    ns.exec(&["nft", "-f", &path.to_string_lossy()]);
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("  note: removing {}: {e}", path.display());
    }
}

/// Packets the [`drop_ingress`] rule of `ns` dropped so far.
#[track_caller]
#[must_use]
pub fn dropped(ns: &Netns) -> u64 {
    let text = ns.exec(&["nft", "list", "table", "netdev", "netmon_loss"]);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet counter in:\n{text}"))
}

/// Shapes what `ns` sends over its veth to `rate_mbit` Mbit/s with a queue
/// of up to `queue_ms` milliseconds: a bulk TCP sender in `ns` builds a
/// standing queue, raising its RTT.
#[track_caller]
pub fn shape_egress(ns: &Netns, rate_mbit: u32, queue_ms: u32) {
    ns.exec(&[
        "tc",
        "qdisc",
        "add",
        "dev",
        VETH,
        "root",
        "tbf",
        "rate",
        &format!("{rate_mbit}mbit"),
        "burst",
        "64kb",
        "latency",
        &format!("{queue_ms}ms"),
    ]);
}
