//! Server names for flows: what the kernel's capture ring teaches
//! (`netmon_common::capture`), turned into one [`FlowName`] per flow.
//!
//! Where a flow's name comes from, best first:
//! 1. its own first outgoing payload: the TLS ClientHello SNI ([`tls`]), the
//!    HTTP/1 `Host` header ([`http`]), or the SNI of a QUIC Initial
//!    ([`quic`]);
//! 2. else the DNS answer the same process (pid and start time) received
//!    for the flow's remote address, the latest that had arrived and not
//!    expired when the flow's first packet was seen ([`dns`]); flows to
//!    port 53 (the DNS traffic itself) are not named this way;
//! 3. else none. By default netmon makes no reverse DNS lookups (a lookup
//!    leaving the machine for every remote); `[names] reverse_lookup =
//!    true` labels remotes without a name with their PTR name at query
//!    time ([`ptr`]), which never becomes a flow's name.
//!
//! [`Namer::name_flows`] decides a flow's name once, at the first reading
//! in which the flow shows payload (the kernel writes a flow's capture to
//! the ring before counting its payload, and the reader drains the ring
//! after reading the flows, so the capture is there by then), and reports
//! it in that reading: the `Reading::names` contract.

pub mod dns;
pub mod http;
pub mod ptr;
pub mod quic;
pub mod tls;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netmon_common::{
    FLOW_F_OWNED, FlowKey,
    capture::{CAPTURE_DNS, CAPTURE_FIRST_PAYLOAD, CaptureHeader},
};

use crate::source::{FlowName, FlowReading, NameSource};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;

/// Longest DNS name (RFC 1035), in its dotted text form.
const MAX_NAME: usize = 253;

/// A host name as netmon stores it: lower case, no trailing dot; `None`
/// for an address literal, an empty or over-long name, or one with bytes
/// no host name has (letters, digits, `-`, `_`, `.`).
#[must_use]
pub fn normalize(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.');
    if name.is_empty() || name.len() > MAX_NAME || name.parse::<IpAddr>().is_ok() {
        return None;
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// The remote address of a flow key.
#[must_use]
pub fn remote_ip(key: &FlowKey) -> IpAddr {
    if key.ip_version == 4 {
        let [a, b, c, d, ..] = key.remote_addr;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.remote_addr))
    }
}

/// The name in a flow's first outgoing payload, if any: TLS SNI or HTTP/1
/// `Host` for TCP, QUIC Initial SNI for UDP.
#[must_use]
pub fn first_payload_name(protocol: u8, payload: &[u8]) -> Option<FlowName> {
    let (server_name, source) = match protocol {
        IPPROTO_TCP => match tls::sni(payload) {
            Some(n) => (n, NameSource::Sni),
            None => (http::host(payload)?, NameSource::Host),
        },
        IPPROTO_UDP => (quic::initial_sni(payload)?, NameSource::Quic),
        _ => return None,
    };
    Some(FlowName {
        server_name,
        source,
    })
}

/// Readings a name learned from a capture waits for its flow to appear
/// (the capture of a flow's first datagram is written just before the flow
/// is inserted) before it is dropped.
const PENDING_READS: u8 = 4;
/// Most names waiting for their flow.
const MAX_PENDING: usize = 65_536;
/// How often the DNS table drops stale answers, ns.
const EXPIRE_EVERY_NS: u64 = 30 * 1_000_000_000;

/// Counts of what the namer has seen, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamerStats {
    /// First-payload records read.
    pub first_payloads: u64,
    /// Of those, with a name.
    pub named_payloads: u64,
    /// DNS records read.
    pub dns_messages: u64,
    /// Addresses learned from them.
    pub dns_answers: u64,
}

/// A map keyed by flow keys, which hold what a remote peer chooses (its
/// address and port): foldhash, seeded per map, as the drain's (SipHash,
/// std's default, was a measurable share of the daemon's CPU under
/// connection churn: three lookups per flow).
type PeerMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set of the same kind.
type PeerSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Per-flow naming state of one kernel source.
pub struct Namer {
    dns: dns::DnsTable,
    /// Names from captures whose flow has not been read yet, with the
    /// readings waited so far.
    pending: PeerMap<FlowKey, (FlowName, u8)>,
    /// Flows whose name (or lack of one) was decided, until their flow is
    /// retired ([`Self::forget`]): at most the flows in the kernel map,
    /// whether a reading holds all of them or a batch.
    decided: PeerSet<FlowKey>,
    last_expire_ns: u64,
    stats: NamerStats,
}

impl Default for Namer {
    fn default() -> Self {
        Self::new(dns::DEFAULT_DNS_TABLE)
    }
}

impl Namer {
    /// A namer whose DNS table holds at most `dns_capacity` (process,
    /// address) keys.
    #[must_use]
    pub fn new(dns_capacity: usize) -> Self {
        Self {
            dns: dns::DnsTable::new(dns_capacity),
            pending: PeerMap::default(),
            decided: PeerSet::default(),
            last_expire_ns: 0,
            stats: NamerStats::default(),
        }
    }

    /// What was seen so far.
    #[must_use]
    pub const fn stats(&self) -> NamerStats {
        self.stats
    }

    /// Takes in one capture record.
    pub fn ingest(&mut self, header: &CaptureHeader, payload: &[u8]) {
        match header.kind {
            CAPTURE_FIRST_PAYLOAD => {
                self.stats.first_payloads += 1;
                let key = header.key;
                // The first capture of a flow wins; a duplicate (two CPUs
                // racing, or a UDP flow's second datagram) is ignored.
                if self.decided.contains(&key) || self.pending.contains_key(&key) {
                    return;
                }
                if let Some(name) = first_payload_name(key.protocol, payload) {
                    self.stats.named_payloads += 1;
                    if self.pending.len() < MAX_PENDING {
                        self.pending.insert(key, (name, 0));
                    }
                }
            }
            CAPTURE_DNS => {
                self.stats.dns_messages += 1;
                if header.owner_tgid == 0 {
                    return;
                }
                let process = (header.owner_tgid, header.owner_start_boottime_ns);
                for answer in dns::answers(payload, header.key.protocol == IPPROTO_TCP) {
                    self.stats.dns_answers += 1;
                    self.dns.insert(process, answer, header.boottime_ns);
                }
            }
            _ => {}
        }
    }

    /// Forgets flows removed from the source (retired): their keys (the
    /// socket cookie is never reused) will not come back.
    pub fn forget(&mut self, keys: &[FlowKey]) {
        for k in keys {
            self.decided.remove(k);
            self.pending.remove(k);
        }
    }

    /// Flows decided and not yet forgotten.
    #[must_use]
    pub fn decided_len(&self) -> usize {
        self.decided.len()
    }

    /// The names of `flows` decided in this reading (see the module doc),
    /// after every capture record up to now was ingested. `now_ns`: the
    /// current CLOCK_BOOTTIME, for dropping stale DNS answers.
    pub fn name_flows(&mut self, flows: &[FlowReading], now_ns: u64) -> HashMap<FlowKey, FlowName> {
        let mut out = HashMap::new();
        for f in flows {
            if self.decided.contains(&f.key) {
                continue;
            }
            if let Some((name, _)) = self.pending.remove(&f.key) {
                self.decided.insert(f.key);
                out.insert(f.key, name);
                continue;
            }
            if f.value.tx.payload_bytes == 0 && f.value.rx.payload_bytes == 0 {
                continue;
            }
            self.decided.insert(f.key);
            // The DNS traffic itself is not named after what it resolved
            // (a server answering for its own address would otherwise name
            // the queries that follow).
            if f.value.flags & FLOW_F_OWNED == 0 || f.key.remote_port == DNS_PORT {
                continue;
            }
            let process = (f.value.owner.tgid, f.value.owner.start_boottime_ns);
            if let Some(server_name) =
                self.dns
                    .lookup(process, remote_ip(&f.key), f.value.first_boottime_ns)
            {
                out.insert(
                    f.key,
                    FlowName {
                        server_name,
                        source: NameSource::Dns,
                    },
                );
            }
        }
        self.pending.retain(|_, (_, age)| {
            *age += 1;
            *age <= PENDING_READS
        });
        if now_ns.saturating_sub(self.last_expire_ns) >= EXPIRE_EVERY_NS {
            self.dns.expire(now_ns);
            self.last_expire_ns = now_ns;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use netmon_common::{FlowValue, SockOwner};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(cookie: u64, ip: [u8; 4], port: u16, protocol: u8) -> FlowKey {
        let mut remote_addr = [0; 16];
        remote_addr[..4].copy_from_slice(&ip);
        FlowKey {
            cookie,
            remote_addr,
            remote_port: port,
            ip_version: 4,
            protocol,
            _pad: 0,
        }
    }

    fn flow(key: FlowKey, tgid: u32, first_s: u64, payload: u64) -> FlowReading {
        let mut value = FlowValue {
            flags: FLOW_F_OWNED,
            first_boottime_ns: first_s * S,
            owner: SockOwner {
                tgid,
                start_boottime_ns: 77,
                ..SockOwner::default()
            },
            ..FlowValue::default()
        };
        value.tx.payload_bytes = payload;
        FlowReading {
            key,
            value,
            closed: false,
        }
    }

    fn header(key: FlowKey, kind: u8, tgid: u32, at_s: u64) -> CaptureHeader {
        CaptureHeader {
            key,
            boottime_ns: at_s * S,
            owner_start_boottime_ns: 77,
            owner_tgid: tgid,
            kind,
            _pad: 0,
            len: 0,
        }
    }

    fn named(name: &str, source: NameSource) -> FlowName {
        FlowName {
            server_name: name.into(),
            source,
        }
    }

    #[test]
    fn normalize_names() {
        assert_eq!(
            normalize("WWW.Example.COM.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(normalize("10.0.0.1"), None);
        assert_eq!(normalize("::1"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("bad name"), None);
    }

    /// SNI beats DNS; the same address under two SNI names splits; DNS
    /// names only the receiving process's flows; no DNS, no SNI: no name.
    #[test]
    fn names_per_flow() {
        let ip = [10, 0, 0, 1];
        let dns_flow = key(1, [127, 0, 0, 53], 53, IPPROTO_UDP);
        let answer = dns::tests::response("api.example.com.", &[], &[(IpAddr::from(ip), 60)]);
        let mut n = Namer::default();
        n.ingest(&header(dns_flow, CAPTURE_DNS, 10, 1), &answer);
        let tls_a = key(2, ip, 443, IPPROTO_TCP);
        let tls_b = key(3, ip, 443, IPPROTO_TCP);
        let plain = key(4, ip, 80, IPPROTO_TCP);
        // A query to a DNS server on the answered address.
        let query = key(6, ip, 53, IPPROTO_UDP);
        let other_proc = key(5, ip, 80, IPPROTO_TCP);
        n.ingest(
            &header(tls_a, CAPTURE_FIRST_PAYLOAD, 10, 2),
            &tls::tests::client_hello("a.example.com"),
        );
        n.ingest(
            &header(tls_b, CAPTURE_FIRST_PAYLOAD, 10, 2),
            &tls::tests::client_hello("b.example.com"),
        );
        n.ingest(&header(plain, CAPTURE_FIRST_PAYLOAD, 10, 2), b"\x00binary");
        n.ingest(
            &header(other_proc, CAPTURE_FIRST_PAYLOAD, 11, 2),
            b"\x00binary",
        );
        let flows = [
            flow(dns_flow, 10, 1, 40),
            flow(tls_a, 10, 2, 500),
            flow(tls_b, 10, 2, 500),
            flow(plain, 10, 2, 7),
            flow(other_proc, 11, 2, 7),
            flow(query, 10, 2, 30),
        ];
        let names = n.name_flows(&flows, 3 * S);
        assert_eq!(
            names.get(&tls_a),
            Some(&named("a.example.com", NameSource::Sni))
        );
        assert_eq!(
            names.get(&tls_b),
            Some(&named("b.example.com", NameSource::Sni))
        );
        assert_eq!(
            names.get(&plain),
            Some(&named("api.example.com", NameSource::Dns))
        );
        assert_eq!(names.get(&other_proc), None, "another process's answer");
        assert_eq!(names.get(&dns_flow), None);
        assert_eq!(names.get(&query), None, "DNS traffic is not DNS-named");
        // Reported once, also when a reading holds only some of the flows.
        assert!(n.name_flows(&flows[..2], 4 * S).is_empty());
        assert!(n.name_flows(&flows, 4 * S).is_empty());
        // Retired flows are forgotten.
        assert_eq!(n.decided_len(), flows.len());
        n.forget(&[tls_a, plain]);
        assert_eq!(n.decided_len(), flows.len() - 2);
    }

    /// A flow is decided at its first reading with payload; a flow without
    /// payload yet waits (its capture may still come).
    #[test]
    fn waits_for_payload_then_decides_once() {
        let k = key(9, [10, 0, 0, 2], 443, IPPROTO_TCP);
        let mut n = Namer::default();
        assert!(n.name_flows(&[flow(k, 1, 1, 0)], S).is_empty());
        n.ingest(
            &header(k, CAPTURE_FIRST_PAYLOAD, 1, 2),
            &tls::tests::client_hello("late.example"),
        );
        let names = n.name_flows(&[flow(k, 1, 1, 100)], 2 * S);
        assert_eq!(names.get(&k), Some(&named("late.example", NameSource::Sni)));
        // A duplicate capture of the same flow changes nothing.
        n.ingest(
            &header(k, CAPTURE_FIRST_PAYLOAD, 1, 3),
            &tls::tests::client_hello("dup.example"),
        );
        assert!(n.name_flows(&[flow(k, 1, 1, 200)], 3 * S).is_empty());
    }

    /// A capture read before its flow (a first datagram) is kept until the
    /// flow appears.
    #[test]
    fn capture_before_flow() {
        let k = key(11, [10, 0, 0, 3], 80, IPPROTO_TCP);
        let mut n = Namer::default();
        n.ingest(
            &header(k, CAPTURE_FIRST_PAYLOAD, 1, 1),
            b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
        );
        assert!(n.name_flows(&[], S).is_empty());
        let names = n.name_flows(&[flow(k, 1, 1, 40)], 2 * S);
        assert_eq!(
            names.get(&k),
            Some(&named("www.example.org", NameSource::Host))
        );
    }

    /// An address later answered with another name: flows started after the
    /// new answer take the new name, even when both answers are read in the
    /// same drain.
    #[test]
    fn address_reuse_maps_to_the_new_name() {
        let ip = [10, 0, 0, 4];
        let d = key(20, [10, 0, 0, 53], 53, IPPROTO_UDP);
        let mut n = Namer::default();
        n.ingest(
            &header(d, CAPTURE_DNS, 1, 1),
            &dns::tests::response("first.example.", &[], &[(IpAddr::from(ip), 12)]),
        );
        n.ingest(
            &header(d, CAPTURE_DNS, 1, 20),
            &dns::tests::response("second.example.", &[], &[(IpAddr::from(ip), 60)]),
        );
        let early = key(21, ip, 9000, IPPROTO_TCP);
        let expired = key(22, ip, 9000, IPPROTO_TCP);
        let late = key(23, ip, 9000, IPPROTO_TCP);
        let names = n.name_flows(
            &[
                flow(early, 1, 2, 1),
                flow(expired, 1, 15, 1),
                flow(late, 1, 21, 1),
            ],
            22 * S,
        );
        assert_eq!(
            names.get(&early),
            Some(&named("first.example", NameSource::Dns))
        );
        assert_eq!(names.get(&expired), None, "TTL of 12 s ran out at 13 s");
        assert_eq!(
            names.get(&late),
            Some(&named("second.example", NameSource::Dns))
        );
    }
}
