//! DNS answers (decoded with `hickory-proto`) and the per-process table of
//! address → name they teach.
//!
//! Each A/AAAA record of a response is traced back through the response's
//! CNAME chain to the name the client asked (`cdn.example.net` reached from
//! `www.example.com` through two CNAMEs names its address
//! `www.example.com`), and kept for the chain's smallest TTL.
//!
//! The table ([`DnsTable`]) is keyed by the receiving process (pid and
//! start time) and the address: a name is only ever given to flows of the
//! process that received the answer. A caching resolver's upstream answers
//! are its own; the answer it gives a program on loopback is the program's.

use std::{collections::HashMap, net::IpAddr, num::NonZeroUsize};

use hickory_proto::{
    op::{Message, MessageType},
    rr::{Name, RData},
};

/// One address a DNS response named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The address (A or AAAA).
    pub addr: IpAddr,
    /// The name asked, normalised (see [`super::normalize`]).
    pub name: String,
    /// Seconds the answer may be used: the smallest TTL on its chain.
    pub ttl: u32,
}

/// Most CNAME links followed from an address record back to the question.
const MAX_CHAIN: usize = 16;

/// The answers of the DNS messages in `payload`: one message for UDP, or
/// for TCP (`tcp`) as many 2-byte-length-prefixed messages as are whole in
/// it. Queries, errors and undecodable messages give none.
#[must_use]
pub fn answers(payload: &[u8], tcp: bool) -> Vec<Answer> {
    if !tcp {
        return message_answers(payload);
    }
    let mut out = Vec::new();
    let mut rest = payload;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some(msg) = tail.get(..len) else { break };
        out.extend(message_answers(msg));
        rest = &tail[len..];
    }
    out
}

fn message_answers(msg: &[u8]) -> Vec<Answer> {
    let Ok(msg) = Message::from_vec(msg) else {
        return Vec::new();
    };
    if msg.message_type() != MessageType::Response {
        return Vec::new();
    }
    // CNAME target → (owner, ttl): the way back to the question.
    let mut back: HashMap<&Name, (&Name, u32)> = HashMap::new();
    for r in msg.answers() {
        if let RData::CNAME(target) = r.data() {
            back.insert(&target.0, (r.name(), r.ttl()));
        }
    }
    let mut out = Vec::new();
    for r in msg.answers() {
        let addr = match r.data() {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        let (mut name, mut ttl) = (r.name(), r.ttl());
        for _ in 0..MAX_CHAIN {
            let Some((owner, link_ttl)) = back.get(name) else {
                break;
            };
            name = owner;
            ttl = ttl.min(*link_ttl);
        }
        if let Some(name) = super::normalize(&name.to_ascii()) {
            out.push(Answer { addr, name, ttl });
        }
    }
    out
}

/// A process as the table keys it: pid and start time (ns since boot), so
/// a reused pid never inherits another process's answers.
pub type ProcessKey = (u32, u64);

/// One remembered answer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    /// When the answer arrived, ns since boot.
    at_ns: u64,
    /// Until when it may be used, ns since boot.
    expires_ns: u64,
}

/// Answers kept per (process, address): the latest few, so a flow is named
/// by the answer current when it started even if a newer one arrived before
/// the drain read it.
const PER_ADDRESS: usize = 4;

/// Default capacity of [`DnsTable`] in (process, address) keys. Each holds
/// up to [`PER_ADDRESS`] names: tens of MB at worst with long names, a few
/// MB in practice.
pub const DEFAULT_DNS_TABLE: usize = 65_536;

/// Seconds an answer is used at least, whatever its TTL: a TTL of 0 (which
/// local resolvers such as dnsmasq give their own records by default) still
/// names the connection the program opens right after asking.
pub const MIN_TTL_S: u32 = 10;

/// How long past its TTL an answer stays in the table: flows are named at
/// the first drain after they started (a drain interval later), by the
/// answer that was valid when they started.
const KEEP_PAST_TTL_NS: u64 = 120 * 1_000_000_000;

/// The per-process DNS table: (process, address) → recent answers, least
/// recently used keys evicted beyond the capacity.
pub struct DnsTable {
    map: lru::LruCache<(ProcessKey, IpAddr), Vec<Entry>>,
}

impl DnsTable {
    /// A table of at most `capacity` (process, address) keys (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            map: lru::LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Remembers that `process` received `answer` at `at_ns`.
    pub fn insert(&mut self, process: ProcessKey, answer: Answer, at_ns: u64) {
        let ttl = u64::from(answer.ttl.max(MIN_TTL_S));
        let expires_ns = at_ns.saturating_add(ttl.saturating_mul(1_000_000_000));
        let entry = Entry {
            name: answer.name,
            at_ns,
            expires_ns,
        };
        let entries = self.map.get_or_insert_mut((process, answer.addr), Vec::new);
        entries.push(entry);
        entries.sort_by_key(|e| e.at_ns);
        if entries.len() > PER_ADDRESS {
            let extra = entries.len() - PER_ADDRESS;
            entries.drain(..extra);
        }
    }

    /// The name `process` had for `addr` at `at_ns`: the latest answer that
    /// arrived by then and had not expired.
    #[must_use]
    pub fn lookup(&mut self, process: ProcessKey, addr: IpAddr, at_ns: u64) -> Option<String> {
        self.map
            .get(&(process, addr))?
            .iter()
            .rev()
            .find(|e| e.at_ns <= at_ns && at_ns <= e.expires_ns)
            .map(|e| e.name.clone())
    }

    /// Drops answers expired for longer than the keep margin at `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let stale: Vec<_> = self
            .map
            .iter_mut()
            .filter_map(|(k, entries)| {
                entries.retain(|e| e.expires_ns.saturating_add(KEEP_PAST_TTL_NS) >= now_ns);
                entries.is_empty().then_some(*k)
            })
            .collect();
        for k in stale {
            self.map.pop(&k);
        }
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        str::FromStr,
    };

    use hickory_proto::{
        op::{Message, MessageType, Query},
        rr::{
            RData, Record, RecordType,
            rdata::{A, AAAA, CNAME},
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).expect("name")
    }

    /// A response as hickory encodes it: `asked` → CNAMEs → addresses.
    pub(crate) fn response(asked: &str, chain: &[(&str, u32)], addrs: &[(IpAddr, u32)]) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Response);
        m.add_query(Query::query(name(asked), RecordType::A));
        let mut owner = name(asked);
        for (target, ttl) in chain {
            m.add_answer(Record::from_rdata(
                owner.clone(),
                *ttl,
                RData::CNAME(CNAME(name(target))),
            ));
            owner = name(target);
        }
        for (addr, ttl) in addrs {
            let data = match addr {
                IpAddr::V4(a) => RData::A(A(*a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
            };
            m.add_answer(Record::from_rdata(owner.clone(), *ttl, data));
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn cname_chain_leads_back_to_the_question() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        let msg = response(
            "WWW.Example.com.",
            &[("edge.cdn.example.net.", 300), ("a1.cdn.example.net.", 60)],
            &[(v4, 120), (v6, 20)],
        );
        let got = answers(&msg, false);
        assert_eq!(
            got,
            vec![
                Answer {
                    addr: v4,
                    name: "www.example.com".into(),
                    ttl: 60
                },
                Answer {
                    addr: v6,
                    name: "www.example.com".into(),
                    ttl: 20
                },
            ]
        );
        // The same over TCP: length-prefixed, two messages in one segment.
        let mut tcp = Vec::new();
        for _ in 0..2 {
            tcp.extend_from_slice(&u16::try_from(msg.len()).expect("len").to_be_bytes());
            tcp.extend_from_slice(&msg);
        }
        assert_eq!(answers(&tcp, true).len(), 4);
    }

    #[test]
    fn queries_and_garbage_teach_nothing() {
        let mut q = Message::new();
        q.add_query(Query::query(name("a.example."), RecordType::A));
        assert!(answers(&q.to_vec().expect("encode"), false).is_empty());
        assert!(answers(b"\x00\x01garbage", false).is_empty());
        assert!(answers(&[], true).is_empty());
    }

    #[test]
    fn table_names_by_process_time_and_ttl() {
        let mut t = DnsTable::new(8);
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let p = (100, 5);
        let s = 1_000_000_000;
        let answer = |n: &str, ttl| Answer {
            addr,
            name: n.into(),
            ttl,
        };
        t.insert(p, answer("old.example", 10), 10 * s);
        t.insert(p, answer("new.example", 0), 30 * s);
        // Before any answer, or for another process (or a reused pid): none.
        assert_eq!(t.lookup(p, addr, 5 * s), None);
        assert_eq!(t.lookup((100, 6), addr, 12 * s), None);
        assert_eq!(t.lookup((101, 5), addr, 12 * s), None);
        assert_eq!(t.lookup(p, addr, 12 * s).as_deref(), Some("old.example"));
        // old expired at 20 s; new from 30 s.
        assert_eq!(t.lookup(p, addr, 25 * s), None);
        assert_eq!(t.lookup(p, addr, 31 * s).as_deref(), Some("new.example"));
        // A TTL of 0 is used for MIN_TTL_S.
        assert_eq!(t.lookup(p, addr, 39 * s).as_deref(), Some("new.example"));
        assert_eq!(t.lookup(p, addr, 41 * s), None);
        t.expire(40 * s + KEEP_PAST_TTL_NS + 1);
        assert!(t.is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let mut t = DnsTable::new(3);
        for i in 0..10u8 {
            t.insert(
                (1, 1),
                Answer {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                    name: "x.example".into(),
                    ttl: 60,
                },
                1,
            );
        }
        assert_eq!(t.len(), 3);
        for _ in 0..10 {
            t.insert(
                (1, 1),
                Answer {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
                    name: "x.example".into(),
                    ttl: 60,
                },
                2,
            );
        }
        assert_eq!(t.len(), 3);
    }
}
