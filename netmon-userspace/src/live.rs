//! Live answers from the kernel counters as they are now (no history):
//! what `netmon snapshot` prints. Returns wire data, never text.
//!
//! Inside the daemon the counters belong to the drain (it owns the source,
//! and a second reader of the maps would race its retires), so live
//! per-socket answers come from the drain's own readings through a [`Tap`]:
//! after each committed step the drain hands the reading it just committed
//! to the tap, but only while someone asked for it within [`TAP_KEEP_MS`]
//! (an idle daemon pays nothing, neither time nor the memory of a second
//! reading). [`crate::query::sockets`] turns a tapped reading into
//! [`wire::SocketCounters`] rows with [`snapshot`], the code `netmon
//! snapshot --sockets` uses.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use rustc_hash::FxHashMap;

use crate::{
    ownership::{Owners, ProcessId, ProcessInfo, Resolver},
    source::Reading,
    wire::{self, Counters, Overflow, ProcessCounters, SocketCounters, Totals},
};

/// The drain keeps handing readings to a [`Tap`] this long (ms of drain
/// time) after the last [`Tap::want`].
pub const TAP_KEEP_MS: u64 = 60_000;

/// A reading the drain committed, with the owner of each socket as the
/// drain attributed it.
#[derive(Debug)]
pub struct Tapped {
    /// Drain time of the step, unix ms.
    pub ts_ms: u64,
    /// The reading the step committed (flows retired by that step included,
    /// marked closed).
    pub reading: Reading,
    /// Owner of each socket of `reading`, by cookie (absent: unattributed).
    pub owners: FxHashMap<u64, ProcessId>,
    /// What is known of each owner.
    pub infos: FxHashMap<ProcessId, ProcessInfo>,
}

/// Where the drain hands its readings to live readers (the HTTP API's
/// "sockets now"). Cheap to clone; all clones share one slot.
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<TapInner>);

#[derive(Debug, Default)]
struct TapInner {
    /// Drain time until which readings are wanted (0: never asked).
    wanted_until_ms: AtomicU64,
    latest: Mutex<Option<Arc<Tapped>>>,
}

impl Tap {
    /// Asks the drain for readings from now (`now_ms`) on, for
    /// [`TAP_KEEP_MS`].
    pub fn want(&self, now_ms: u64) {
        self.0
            .wanted_until_ms
            .fetch_max(now_ms.saturating_add(TAP_KEEP_MS), Ordering::Relaxed);
    }

    /// Whether the drain should publish the step at `now_ms`. While nobody
    /// wants readings, the last one is dropped (its memory freed).
    #[must_use]
    pub fn wanted(&self, now_ms: u64) -> bool {
        let wanted = now_ms <= self.0.wanted_until_ms.load(Ordering::Relaxed);
        if !wanted {
            let mut latest = self.0.latest.lock().unwrap_or_else(PoisonError::into_inner);
            *latest = None;
        }
        wanted
    }

    /// Publishes a committed reading (replacing the previous one).
    pub fn publish(&self, tapped: Tapped) {
        let mut latest = self.0.latest.lock().unwrap_or_else(PoisonError::into_inner);
        *latest = Some(Arc::new(tapped));
    }

    /// The latest published reading.
    #[must_use]
    pub fn latest(&self) -> Option<Arc<Tapped>> {
        self.0
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Name of an IP protocol number.
#[must_use]
pub fn protocol_name(number: u8) -> &'static str {
    match number {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        _ => "other",
    }
}

/// A 16-byte address field as an IP address (IPv4 in the first 4 bytes).
#[must_use]
pub fn ip_addr(ip_version: u8, bytes: [u8; 16]) -> IpAddr {
    if ip_version == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

/// The owner used when a resolver has nothing for a cookie.
#[must_use]
pub fn unattributed() -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid: 0,
            start_ticks: 0,
        },
        comm: "[unattributed]".to_owned(),
        exe: None,
        cmdline: None,
        uid: 0,
        user: None,
        ppid: None,
        cgroup: None,
    }
}

/// Builds a snapshot document from one reading.
#[must_use]
pub fn snapshot(
    reading: &Reading,
    owners: &Owners,
    with_sockets: bool,
    taken_at: (String, u64),
) -> wire::Snapshot {
    let fallback = unattributed();
    let mut per_process: HashMap<ProcessId, ProcessCounters> = HashMap::new();
    let mut sockets = Vec::new();
    let mut totals = Totals::default();
    for flow in &reading.flows {
        let owner = owners.get(&flow.key.cookie).unwrap_or(&fallback);
        let (tx, rx) = (Counters::from(flow.value.tx), Counters::from(flow.value.rx));
        totals.tx = totals.tx.plus(tx);
        totals.rx = totals.rx.plus(rx);
        let entry = per_process
            .entry(owner.id)
            .or_insert_with(|| ProcessCounters {
                pid: owner.id.pid,
                start_ticks: owner.id.start_ticks,
                comm: owner.comm.clone(),
                exe: owner.exe.clone(),
                cmdline: owner.cmdline.clone(),
                uid: owner.uid,
                user: owner.user.clone(),
                cgroup: owner.cgroup.clone(),
                sockets: 0,
                tx: Counters::default(),
                rx: Counters::default(),
            });
        entry.sockets += 1;
        entry.tx = entry.tx.plus(tx);
        entry.rx = entry.rx.plus(rx);
        if with_sockets {
            let (k, v) = (&flow.key, &flow.value);
            sockets.push(SocketCounters {
                cookie: k.cookie,
                pid: owner.id.pid,
                start_ticks: owner.id.start_ticks,
                comm: owner.comm.clone(),
                protocol: protocol_name(k.protocol).to_owned(),
                protocol_number: k.protocol,
                ip_version: k.ip_version,
                local_addr: ip_addr(k.ip_version, v.local_addr),
                local_port: v.local_port,
                remote_addr: ip_addr(k.ip_version, k.remote_addr),
                remote_port: k.remote_port,
                ifindex: v.ifindex,
                netns_cookie: v.owner.netns_cookie,
                closed: flow.closed,
                tx,
                rx,
                tcp: wire::TcpState::of(&v.tcp),
                server_name: reading.names.get(k).map(|n| n.server_name.clone()),
            });
        }
    }
    let overflow = Overflow {
        tx: reading.overflow.tx.into(),
        rx: reading.overflow.rx.into(),
        failed_inserts: reading.overflow.failed_inserts,
    };
    totals.tx = totals.tx.plus(overflow.tx);
    totals.rx = totals.rx.plus(overflow.rx);
    let mut processes: Vec<ProcessCounters> = per_process.into_values().collect();
    processes.sort_by(|a, b| {
        let total = |p: &ProcessCounters| p.tx.ip_bytes.saturating_add(p.rx.ip_bytes);
        total(b).cmp(&total(a)).then(a.pid.cmp(&b.pid))
    });
    sockets.sort_by(|a, b| {
        let total = |s: &SocketCounters| s.tx.ip_bytes.saturating_add(s.rx.ip_bytes);
        total(b).cmp(&total(a)).then(a.cookie.cmp(&b.cookie))
    });
    wire::Snapshot {
        schema_version: wire::SCHEMA_VERSION,
        taken_at: taken_at.0,
        taken_at_unix_ms: taken_at.1,
        processes,
        sockets: with_sockets.then_some(sockets),
        overflow,
        totals,
    }
}

/// Resolves owners and builds the snapshot.
pub fn snapshot_with(
    reading: &Reading,
    resolver: &mut dyn Resolver,
    with_sockets: bool,
    taken_at: (String, u64),
) -> wire::Snapshot {
    let owners = resolver.resolve(reading);
    snapshot(reading, &owners, with_sockets, taken_at)
}

#[cfg(test)]
mod tests {
    use netmon_common::{DirCounters, FlowKey, FlowValue};

    use super::*;
    use crate::source::FlowReading;

    fn flow(cookie: u64, tx: u64, rx: u64) -> FlowReading {
        FlowReading {
            key: FlowKey {
                cookie,
                ip_version: 4,
                protocol: 6,
                remote_port: 80,
                ..FlowKey::default()
            },
            value: FlowValue {
                tx: DirCounters {
                    packets: 1,
                    ip_bytes: tx + 52,
                    payload_bytes: tx,
                    retrans_bytes: 0,
                },
                rx: DirCounters {
                    packets: 1,
                    ip_bytes: rx + 52,
                    payload_bytes: rx,
                    retrans_bytes: 0,
                },
                ..FlowValue::default()
            },
            closed: false,
        }
    }

    fn proc_info(pid: u32) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid,
                start_ticks: 7,
            },
            comm: format!("p{pid}"),
            ..unattributed()
        }
    }

    #[test]
    fn sums_per_process_and_totals_include_overflow() {
        let mut reading = Reading {
            flows: vec![flow(1, 100, 10), flow(2, 200, 20), flow(3, 5, 5)],
            ..Reading::default()
        };
        reading.overflow.tx = DirCounters {
            packets: 2,
            ip_bytes: 1000,
            payload_bytes: 900,
            retrans_bytes: 0,
        };
        let owners: Owners = [(1, proc_info(10)), (2, proc_info(10))]
            .into_iter()
            .collect();
        let doc = snapshot(&reading, &owners, true, ("t".into(), 0));
        assert_eq!(doc.processes.len(), 2);
        let p10 = doc.processes.iter().find(|p| p.pid == 10).expect("pid 10");
        assert_eq!(p10.tx.payload_bytes, 300);
        assert_eq!(p10.rx.payload_bytes, 30);
        assert_eq!(p10.sockets, 2);
        let unknown = doc
            .processes
            .iter()
            .find(|p| p.pid == 0)
            .expect("unattributed");
        assert_eq!(unknown.tx.payload_bytes, 5);
        assert_eq!(doc.totals.tx.payload_bytes, 305 + 900);
        assert_eq!(doc.totals.tx.ip_bytes, 305 + 3 * 52 + 1000);
        assert_eq!(doc.sockets.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn addresses() {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(ip_addr(4, b).to_string(), "10.0.0.1");
        assert_eq!(ip_addr(6, Ipv6Addr::LOCALHOST.octets()).to_string(), "::1");
    }
}
