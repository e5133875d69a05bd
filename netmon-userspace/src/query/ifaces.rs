//! Interface counters over a window: what the tc programs counted on each
//! interface, per direction and class ([`crate::store::ifcount`]), read from
//! the same segments as the per interface socket rows
//! ([`crate::query::scan::plan_for`] with [`Kind::Interface`]), so both
//! cover the same time.
//!
//! The classes add up to the interface's total: `total = local_socket +
//! forwarded + other_socket + no_socket`, the bytes the interface itself
//! counts (`/sys/class/net/*/statistics`, link-layer header included)
//! over the same window; see `netmon_common::iface` for what is in a byte.
use std::collections::BTreeMap;

use netmon_common::iface::{
    IFACE_CLASS_FORWARDED, IFACE_CLASS_LOCAL_SOCKET, IFACE_CLASS_NO_SOCKET,
    IFACE_CLASS_OTHER_SOCKET, IFACE_DIR_EGRESS,
};

use crate::query::QueryError;
use crate::query::scan::{self, Kind};
use crate::query::terms::{FilterKey, GroupKey};
use crate::query::usage::{UsageAnswer, UsageGroup, UsageQuery, interface_index};
use crate::query::window::Coverage;
use crate::store::ifcount::IfRow;
use crate::store::{Store, TimeRange};

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Packets (a GSO packet is one).
    pub packets: u64,
    /// Bytes, link-layer header included.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// One direction of one interface over the window, by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounts {
    /// Everything the interface moved: the sum of the classes.
    pub total: Count,
    /// Local IP sockets (what processes own).
    pub local_socket: Count,
    /// Forwarded by the host.
    pub forwarded: Count,
    /// Sockets without a recorded owner (`AF_PACKET`, the kernel's control
    /// sockets, sockets opened before the load), egress only.
    pub other_socket: Count,
    /// No socket: kernel-generated on egress; on ingress traffic for no
    /// local socket.
    pub no_socket: Count,
}

/// One interface over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceWindow {
    /// Interface index.
    pub ifindex: u32,
    /// Its name when the drain last saw it.
    pub name: Option<String>,
    /// Received.
    pub rx: DirCounts,
    /// Sent.
    pub tx: DirCounts,
}

impl IfaceWindow {
    fn add(&mut self, r: &IfRow) {
        let d = if r.direction == IFACE_DIR_EGRESS {
            &mut self.tx
        } else {
            &mut self.rx
        };
        let class = match r.class {
            IFACE_CLASS_LOCAL_SOCKET => &mut d.local_socket,
            IFACE_CLASS_FORWARDED => &mut d.forwarded,
            IFACE_CLASS_OTHER_SOCKET => &mut d.other_socket,
            IFACE_CLASS_NO_SOCKET => &mut d.no_socket,
            _ => return,
        };
        class.add(r.packets, r.bytes);
        d.total.add(r.packets, r.bytes);
    }
}

/// Every interface with counted traffic in `range`, by index, and what the
/// rows read cover.
///
/// # Errors
/// On storage errors.
pub fn interface_counts(
    store: &mut Store,
    range: &TimeRange,
) -> Result<(BTreeMap<u32, IfaceWindow>, Coverage), QueryError> {
    let (segments, coverage) = scan::plan_for(store, range, Kind::Interface)?;
    let names = store.ifcount_names()?;
    let mut out: BTreeMap<u32, IfaceWindow> = BTreeMap::new();
    store.ifcount_rows(&segments, |_, r| {
        out.entry(r.ifindex)
            .or_insert_with(|| IfaceWindow {
                ifindex: r.ifindex,
                name: names.get(&r.ifindex).cloned(),
                ..IfaceWindow::default()
            })
            .add(&r);
    })?;
    Ok((out, coverage))
}

/// The name of interface `ifindex`: as the history stored it (the name it
/// had when its counters were last drained), else the running system's
/// (`/sys/class/net/*/ifindex`), else `None`.
///
/// # Errors
/// On storage errors.
pub fn interface_name(store: &mut Store, ifindex: u32) -> Result<Option<String>, QueryError> {
    if let Some(n) = store.ifcount_names()?.remove(&ifindex) {
        return Ok(Some(n));
    }
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Ok(None);
    };
    Ok(dir.flatten().find_map(|e| {
        let idx = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
        (idx.trim().parse::<u32>().ok()? == ifindex)
            .then(|| e.file_name().to_string_lossy().into_owned())
    }))
}

/// For `usage --by interface`: the interface counters of `q`'s window, by
/// index, after adding to `answer` a group (with no socket traffic) for
/// every interface that moved traffic but had no local socket's (a
/// router's forwarding-only interface), unless the question's interface or
/// class filters leave it out (interface counters have no destination
/// class).
///
/// # Errors
/// On storage errors.
pub fn add_to_usage(
    store: &mut Store,
    q: &UsageQuery,
    answer: &mut UsageAnswer,
) -> Result<BTreeMap<u32, IfaceWindow>, QueryError> {
    let (counts, _) = interface_counts(store, &q.range)?;
    if q.class.is_some() {
        return Ok(counts);
    }
    let wanted: Vec<Option<u32>> = q
        .filters
        .iter()
        .filter(|t| t.key == FilterKey::Interface)
        .map(|t| interface_index(&t.value))
        .collect();
    let mut added = 0;
    for i in counts.keys() {
        let key = GroupKey::Interface(*i);
        if !wanted.iter().all(|w| *w == Some(*i)) || answer.groups.iter().any(|g| g.key == key) {
            continue;
        }
        added += 1;
        if q.limit.is_none_or(|n| answer.groups.len() < n) {
            answer.groups.push(UsageGroup {
                key,
                traffic: crate::store::Traffic::default(),
                share: 0.0,
                names: Vec::new(),
                quality: None,
            });
        }
    }
    answer.groups_total += added;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `usage --by interface` document (what the socket, the CLI and
    /// HTTP serve): a forwarding-only interface gets its own row, named
    /// from the stored names, with its counters by class; a window that
    /// ends before a row leaves it out.
    #[test]
    fn usage_by_interface_document() {
        use crate::api::handler::{Answer, answer};
        use crate::store::ifcount::IfBatch;
        use crate::store::{Batch, Retention};
        use netmon_common::iface::IFACE_DIR_INGRESS;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) =
            Store::open(&dir.path().join("h.redb"), Retention::default()).expect("opens");
        let t0: u64 = 1_800_000_000_000;
        let row = |direction, class, packets, bytes| IfRow {
            ifindex: 7,
            direction,
            class,
            packets,
            bytes,
        };
        for (ts, bytes) in [(t0, 1000), (t0 + 5000, 500)] {
            store
                .commit(&Batch {
                    ts_ms: ts,
                    ifcount: IfBatch {
                        rows: vec![
                            row(IFACE_DIR_EGRESS, IFACE_CLASS_FORWARDED, 10, bytes),
                            row(IFACE_DIR_INGRESS, IFACE_CLASS_NO_SOCKET, 1, 60),
                        ],
                        names: vec![(7, "wan0".to_owned())],
                        snapshot: Vec::new(),
                    },
                    ..Batch::default()
                })
                .expect("commits");
        }
        let ask = |store: &mut Store, until_ms| {
            let req = crate::wire::Request::Usage {
                from_ms: t0,
                until_ms,
                by: "interface".to_owned(),
                filters: Vec::new(),
                class: None,
                limit: None,
            };
            match answer(store, &crate::query::AppRules::default(), &req).expect("answers") {
                Answer::Usage(u) => u,
                other => panic!("not a usage document: {other:?}"),
            }
        };
        let u = ask(&mut store, t0 + 10_000);
        assert_eq!(u.rows.len(), 1, "{u:?}");
        assert_eq!(u.rows[0].key, "wan0");
        let c = u.rows[0].interface_counters.expect("interface counters");
        assert_eq!(
            (c.tx.forwarded.packets, c.tx.forwarded.frame_bytes),
            (20, 1500)
        );
        assert_eq!(c.tx.total, c.tx.forwarded);
        assert_eq!((c.rx.no_socket.packets, c.rx.total.frame_bytes), (2, 120));
        let json = serde_json::to_value(&u.rows[0]).expect("serializes");
        assert_eq!(
            json["interface_counters"]["tx"]["forwarded"]["frame_bytes"],
            1500
        );
        let early = ask(&mut store, t0 + 1);
        let c = early.rows[0]
            .interface_counters
            .expect("interface counters");
        assert_eq!(c.tx.total.frame_bytes, 1000, "only the first interval");
    }

    #[test]
    fn classes_sum_into_the_total() {
        let mut w = IfaceWindow::default();
        let row = |direction, class, bytes| IfRow {
            ifindex: 1,
            direction,
            class,
            packets: 1,
            bytes,
        };
        w.add(&row(IFACE_DIR_EGRESS, IFACE_CLASS_FORWARDED, 100));
        w.add(&row(IFACE_DIR_EGRESS, IFACE_CLASS_OTHER_SOCKET, 10));
        w.add(&row(0, IFACE_CLASS_NO_SOCKET, 7));
        w.add(&row(0, 0xff, 1_000_000));
        assert_eq!(
            w.tx.total,
            Count {
                packets: 2,
                bytes: 110
            }
        );
        assert_eq!(w.tx.forwarded.bytes, 100);
        assert_eq!(
            w.rx.total,
            Count {
                packets: 1,
                bytes: 7
            },
            "unknown classes (baselines) are not traffic"
        );
    }
}
