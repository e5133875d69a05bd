//! The kernel's own counters of a network namespace (SNMP MIB), the ground
//! truth netmon's IP byte counts are compared with.
//!
//! `/proc/net/{netstat,snmp,snmp6}` show the counters of the reader's network
//! namespace, so they are read with `ip netns exec <ns> cat ...`. Keys are
//! `"<Prefix>.<Name>"` for the first two (`IpExt.InOctets`,
//! `Tcp.RetransSegs`, `Udp.InDatagrams`) and the bare name for snmp6
//! (`Ip6InOctets`, `Udp6InDatagrams`).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    thread,
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// IPv4 bytes received (`skb->len` at `ip_rcv`, IP header included).
pub const IP4_IN_OCTETS: &str = "IpExt.InOctets";
/// IPv4 bytes sent (`skb->len` at `ip_finish_output2`).
pub const IP4_OUT_OCTETS: &str = "IpExt.OutOctets";
/// IPv6 bytes received.
pub const IP6_IN_OCTETS: &str = "Ip6InOctets";
/// IPv6 bytes sent.
pub const IP6_OUT_OCTETS: &str = "Ip6OutOctets";
/// TCP segments retransmitted (IPv4 and IPv6 share the TCP MIB).
pub const TCP_RETRANS_SEGS: &str = "Tcp.RetransSegs";
/// TCP segments dropped because the socket's backlog was full.
pub const TCP_BACKLOG_DROP: &str = "TcpExt.TCPBacklogDrop";
/// TCP segments dropped because the receive queue was full.
pub const TCP_RCVQ_DROP: &str = "TcpExt.TCPRcvQDrop";
/// TCP out-of-order segments dropped (no memory for the queue).
pub const TCP_OFO_DROP: &str = "TcpExt.TCPOFODrop";
/// Out-of-order queue prunes (memory pressure): received segments dropped.
pub const TCP_OFO_PRUNED: &str = "TcpExt.OfoPruned";
/// Receive queue prunes that dropped segments.
pub const TCP_RCV_PRUNED: &str = "TcpExt.RcvPruned";
/// D-SACKs sent for duplicates of data held in the out-of-order queue.
pub const TCP_DSACK_OFO_SENT: &str = "TcpExt.TCPDSACKOfoSent";
/// TCP segments dropped for a zero receive window.
pub const TCP_ZERO_WINDOW_DROP: &str = "TcpExt.TCPZeroWindowDrop";
/// UDP over IPv4 datagrams delivered to sockets.
pub const UDP_IN_DATAGRAMS: &str = "Udp.InDatagrams";
/// UDP over IPv4 datagrams sent.
pub const UDP_OUT_DATAGRAMS: &str = "Udp.OutDatagrams";
/// UDP over IPv4 datagrams dropped for a full receive buffer.
pub const UDP_RCVBUF_ERRORS: &str = "Udp.RcvbufErrors";
/// UDP over IPv6 datagrams delivered to sockets.
pub const UDP6_IN_DATAGRAMS: &str = "Udp6InDatagrams";
/// UDP over IPv6 datagrams sent.
pub const UDP6_OUT_DATAGRAMS: &str = "Udp6OutDatagrams";
/// UDP over IPv6 datagrams dropped for a full receive buffer.
pub const UDP6_RCVBUF_ERRORS: &str = "Udp6RcvbufErrors";

/// Counters that move with time alone (gauges), ignored when deciding that a
/// namespace is quiet.
const GAUGES: &[&str] = &["Tcp.CurrEstab"];

/// One reading of a namespace's MIB counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mib {
    values: BTreeMap<String, i64>,
}

impl Mib {
    /// Reads the counters of `ns`.
    #[track_caller]
    #[must_use]
    pub fn read(ns: &Netns) -> Self {
        let text = ns.exec(&[
            "cat",
            "/proc/net/netstat",
            "/proc/net/snmp",
            "/proc/net/snmp6",
        ]);
        let mib = Self::parse(&text);
        assert!(
            mib.values.contains_key(IP4_IN_OCTETS) && mib.values.contains_key(IP6_IN_OCTETS),
            "unexpected MIB text from namespace {}:\n{text}",
            ns.name()
        );
        mib
    }

    /// Parses the concatenation of `/proc/net/netstat`, `/proc/net/snmp`
    /// (pairs of `Prefix: names` / `Prefix: values` lines) and
    /// `/proc/net/snmp6` (`Name value` lines).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut values = BTreeMap::new();
        let mut pending: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.lines() {
            let mut tokens = line.split_whitespace();
            let Some(first) = tokens.next() else { continue };
            if let Some(prefix) = first.strip_suffix(':') {
                let rest: Vec<&str> = tokens.collect();
                match pending.remove(prefix) {
                    Some(names) => {
                        for (name, value) in names.iter().zip(&rest) {
                            if let Ok(v) = value.parse() {
                                values.insert(format!("{prefix}.{name}"), v);
                            }
                        }
                    }
                    None => {
                        pending.insert(prefix, rest);
                    }
                }
            } else if let (Some(value), None) = (tokens.next(), tokens.next())
                && let Ok(v) = value.parse()
            {
                values.insert(first.to_owned(), v);
            }
        }
        Self { values }
    }

    /// The counter `key`; panics if the kernel does not have it.
    #[track_caller]
    #[must_use]
    pub fn get(&self, key: &str) -> u64 {
        let v = self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("no MIB counter {key}"));
        u64::try_from(*v).unwrap_or_else(|_| panic!("MIB counter {key} is negative: {v}"))
    }

    /// `self[key] - earlier[key]`; panics if the counter went backwards.
    #[track_caller]
    #[must_use]
    pub fn delta(&self, earlier: &Self, key: &str) -> u64 {
        let (now, then) = (self.get(key), earlier.get(key));
        now.checked_sub(then)
            .unwrap_or_else(|| panic!("MIB counter {key} went backwards: {then} -> {now}"))
    }

    /// The counters that differ between `self` and `other`, for messages;
    /// empty when the namespace did nothing in between (gauges excluded).
    #[must_use]
    pub fn changes(&self, other: &Self) -> String {
        let mut out = String::new();
        for (key, v) in &self.values {
            if GAUGES.contains(&key.as_str()) {
                continue;
            }
            let w = other.values.get(key).copied().unwrap_or_default();
            if *v != w {
                let _ = write!(out, "{key}: {v} -> {w}; ");
            }
        }
        out
    }
}

/// Waits until none of `namespaces`' counters has changed for 1 s (MLD
/// reports after an address was added, TCP FIN/ACK exchanges after the
/// workloads exited); panics after 30 s.
#[track_caller]
pub fn wait_quiet(namespaces: &[&Netns]) -> Vec<Mib> {
    wait_quiet_for(namespaces, Duration::from_secs(1), Duration::from_secs(30))
}

/// [`wait_quiet`] with a chosen quiet period and deadline.
#[track_caller]
pub fn wait_quiet_for(namespaces: &[&Netns], quiet: Duration, deadline: Duration) -> Vec<Mib> {
    let start = Instant::now();
    let read = || {
        namespaces
            .iter()
            .map(|ns| Mib::read(ns))
            .collect::<Vec<_>>()
    };
    let mut last = read();
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = read();
        let changes: String = last.iter().zip(&now).map(|(a, b)| a.changes(b)).collect();
        if changes.is_empty() {
            if since.elapsed() >= quiet {
                return now;
            }
        } else {
            assert!(
                start.elapsed() < deadline,
                "namespaces never went quiet within {deadline:?}; still changing: {changes}"
            );
            since = Instant::now();
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
TcpExt: SyncookiesSent TCPTimeouts
TcpExt: 0 7
IpExt: InNoRoutes InOctets OutOctets
IpExt: 0 12345 678
Tcp: RtoAlgorithm MaxConn RetransSegs CurrEstab
Tcp: 1 -1 3 2
Udp: InDatagrams OutDatagrams
Udp: 5 6
Ip6InReceives                   \t1
Ip6InOctets                     \t999
Udp6InDatagrams                 \t4
";

    #[test]
    fn parses_all_three_formats() {
        let mib = Mib::parse(TEXT);
        assert_eq!(mib.get(IP4_IN_OCTETS), 12345);
        assert_eq!(mib.get(IP4_OUT_OCTETS), 678);
        assert_eq!(mib.get(TCP_RETRANS_SEGS), 3);
        assert_eq!(mib.get("TcpExt.TCPTimeouts"), 7);
        assert_eq!(mib.get(UDP_IN_DATAGRAMS), 5);
        assert_eq!(mib.get(IP6_IN_OCTETS), 999);
        assert_eq!(mib.get(UDP6_IN_DATAGRAMS), 4);
    }

    #[test]
    fn deltas_and_changes() {
        let before = Mib::parse(TEXT);
        let after = Mib::parse(
            &TEXT
                .replace("12345", "12400")
                .replace("Tcp: 1 -1 3 2", "Tcp: 1 -1 3 9"),
        );
        assert_eq!(after.delta(&before, IP4_IN_OCTETS), 55);
        assert_eq!(after.delta(&before, IP6_IN_OCTETS), 0);
        // CurrEstab is a gauge: not a change.
        assert_eq!(before.changes(&after), "IpExt.InOctets: 12345 -> 12400; ");
        assert!(before.changes(&before).is_empty());
    }

    #[test]
    #[should_panic(expected = "went backwards")]
    fn backwards_counter_panics() {
        let before = Mib::parse(TEXT);
        let after = Mib::parse(&TEXT.replace("12345", "1"));
        let _ = after.delta(&before, IP4_IN_OCTETS);
    }
}
