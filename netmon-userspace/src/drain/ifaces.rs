//! The interface counters' part of a drain step: deltas of the tc
//! programs' per interface and per device counters against the committed
//! snapshot ([`crate::store::ifcount`], [`crate::store::devcount`]),
//! committed in the step's own transaction. Device keys follow the same
//! invariants as interface keys (they go with their interface).
//!
//! The drain's invariants apply as they do to flows:
//! - (1) [`IfDrain`]'s `committed` equals the stored snapshot: it is
//!   changed only by [`IfDrain::apply`] after the commit returned `Ok`, and
//!   reloaded with the rest after a failed one;
//! - (2) each step adds `value − snapshot` to the rows and sets the snapshot
//!   to `value` in one transaction;
//! - (3) keys leave the kernel map only for interfaces that are gone (no
//!   packet can reach them any more), and only once every commit of this
//!   drain is durable (with nothing else to write, the step makes an empty
//!   durable commit), so their final values cannot be rolled back
//!   ([`crate::source::CounterSource::forget_ifaces`]); the next reading
//!   no longer has them and their snapshot entries go;
//! - (4) a counter lower than its snapshot is a recreated key: its whole
//!   value is new traffic, never a negative delta.
//!
//! The one race left is an interface index reused by a new interface
//! between the reading that found the old one gone and the removal: what
//! the new interface counted in those milliseconds is lost. The kernel
//! allocates indexes upwards, so that needs the index counter to wrap.
use std::collections::BTreeMap;

use netmon_common::iface::IfaceCounters;

use crate::source::IfaceReading;
use crate::store::devcount::DevRow;
use crate::store::ifcount::{IfBatch, IfRow, IfSnapshot};
use crate::store::{Store, StoreError};

/// The committed interface snapshot (invariant 1).
#[derive(Debug, Default)]
pub(super) struct IfDrain {
    committed: IfSnapshot,
}

/// `now − prev`, or all of `now` when a counter went backwards (invariant 4);
/// `true` in `.1` for the latter.
fn delta(now: IfaceCounters, prev: Option<&IfaceCounters>) -> (IfaceCounters, bool) {
    let Some(prev) = prev else {
        return (now, false);
    };
    match (
        now.packets.checked_sub(prev.packets),
        now.bytes.checked_sub(prev.bytes),
    ) {
        (Some(packets), Some(bytes)) => (IfaceCounters { packets, bytes }, false),
        _ => (now, true),
    }
}

/// Deltas of `now` against `committed` (non-zero ones), the snapshot
/// writes (changed keys, and `None` for committed keys `now` lacks), and
/// how many keys were taken as reset (invariant 4).
type Deltas<K> = (
    Vec<(K, IfaceCounters)>,
    Vec<(K, Option<IfaceCounters>)>,
    u64,
);

fn deltas<K: Ord + Copy>(
    now: &[(K, IfaceCounters)],
    committed: &BTreeMap<K, IfaceCounters>,
) -> Deltas<K> {
    let mut rows = Vec::new();
    let mut snapshot = Vec::new();
    let mut resets = 0;
    let mut seen: Vec<K> = Vec::with_capacity(now.len());
    for (key, value) in now {
        seen.push(*key);
        let prev = committed.get(key);
        if prev == Some(value) {
            continue;
        }
        let (d, reset) = delta(*value, prev);
        resets += u64::from(reset);
        if d.packets != 0 || d.bytes != 0 {
            rows.push((*key, d));
        }
        snapshot.push((*key, Some(*value)));
    }
    seen.sort_unstable();
    for key in committed.keys() {
        if seen.binary_search(key).is_err() {
            snapshot.push((*key, None));
        }
    }
    (rows, snapshot, resets)
}

impl IfDrain {
    /// Loads the committed snapshot.
    pub(super) fn load(store: &mut Store) -> Result<Self, StoreError> {
        Ok(Self {
            committed: store.load_ifcount()?,
        })
    }

    /// The interface part of a batch for `reading` (device counters
    /// included), and how many keys were taken as reset.
    pub(super) fn step(&self, reading: &IfaceReading) -> (IfBatch, u64) {
        let mut batch = IfBatch::default();
        let (rows, snapshot, mut resets) = deltas(&reading.counters, &self.committed.counters);
        batch.rows = rows
            .into_iter()
            .map(|(key, d)| IfRow {
                ifindex: key.ifindex,
                direction: key.direction,
                class: key.class,
                packets: d.packets,
                bytes: d.bytes,
            })
            .collect();
        batch.snapshot = snapshot;
        let (rows, snapshot, dev_resets) = deltas(&reading.devices, &self.committed.devices);
        resets += dev_resets;
        batch.devices.rows = rows
            .into_iter()
            .map(|(key, d)| DevRow {
                ifindex: key.ifindex,
                mac: key.mac,
                direction: key.direction,
                class: key.class,
                packets: d.packets,
                bytes: d.bytes,
            })
            .collect();
        batch.devices.snapshot = snapshot;
        for (i, name) in &reading.names {
            if self.committed.names.get(i) != Some(name) {
                batch.names.push((*i, name.clone()));
            }
        }
        (batch, resets)
    }

    /// Applies a committed batch (invariant 1).
    pub(super) fn apply(&mut self, batch: IfBatch) {
        for (key, value) in batch.snapshot {
            match value {
                Some(v) => self.committed.counters.insert(key, v),
                None => self.committed.counters.remove(&key),
            };
        }
        for (key, value) in batch.devices.snapshot {
            match value {
                Some(v) => self.committed.devices.insert(key, v),
                None => self.committed.devices.remove(&key),
            };
        }
        self.committed.names.extend(batch.names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmon_common::device::DeviceKey;
    use netmon_common::iface::IfaceKey;

    fn dev(ifindex: u32, last: u8) -> DeviceKey {
        DeviceKey {
            ifindex,
            mac: [2, 0, 0, 0, 0, last],
            direction: 0,
            class: 2,
        }
    }

    /// Device id → tx frame bytes over `range`.
    fn device_bytes(
        store: &mut Store,
        range: std::ops::Range<u64>,
    ) -> std::collections::BTreeMap<String, u64> {
        let doc =
            crate::query::devices::devices(store, &range, &crate::devices::Naming::default(), None)
                .expect("query");
        doc.devices
            .into_iter()
            .map(|d| (d.device, d.tx.total.frame_bytes))
            .collect()
    }

    fn key(ifindex: u32, class: u8) -> IfaceKey {
        IfaceKey {
            ifindex,
            direction: 0,
            class,
            _pad: [0; 2],
        }
    }

    fn c(packets: u64, bytes: u64) -> IfaceCounters {
        IfaceCounters { packets, bytes }
    }

    /// A source with interface counters only.
    #[derive(Default)]
    struct IfSource {
        now: Vec<(IfaceKey, IfaceCounters)>,
        devs: Vec<(DeviceKey, IfaceCounters)>,
        gone: Vec<u32>,
        forgotten: Vec<u32>,
    }

    impl crate::source::CounterSource for IfSource {
        fn read(&mut self) -> Result<crate::source::Reading, crate::source::SourceError> {
            Ok(crate::source::Reading::default())
        }
        fn retire(
            &mut self,
            _: &[netmon_common::FlowKey],
        ) -> Result<
            Vec<(netmon_common::FlowKey, netmon_common::FlowValue)>,
            crate::source::SourceError,
        > {
            Ok(Vec::new())
        }
        fn forget_closed(&mut self, _: &[u64]) -> Result<(), crate::source::SourceError> {
            Ok(())
        }
        fn read_ifaces(&mut self) -> Result<IfaceReading, crate::source::SourceError> {
            Ok(IfaceReading {
                counters: self.now.clone(),
                names: vec![(2, "eth0".to_owned())],
                gone: self.gone.clone(),
                devices: self.devs.clone(),
            })
        }
        fn forget_ifaces(&mut self, ifindexes: &[u32]) -> Result<(), crate::source::SourceError> {
            self.forgotten.extend_from_slice(ifindexes);
            self.now.retain(|(k, _)| !ifindexes.contains(&k.ifindex));
            self.devs.retain(|(k, _)| !ifindexes.contains(&k.ifindex));
            self.gone.clear();
            Ok(())
        }
    }

    fn window_bytes(
        store: &mut Store,
        range: std::ops::Range<u64>,
    ) -> std::collections::BTreeMap<u32, u64> {
        let (w, _) = crate::query::ifaces::interface_counts(store, &range).expect("query");
        w.into_iter()
            .map(|(i, w)| (i, w.rx.total.bytes + w.tx.total.bytes))
            .collect()
    }

    #[test]
    fn stored_exactly_once_across_restarts_and_interface_removal() {
        use crate::drain::Drain;
        use crate::source::sim::{ScriptBuilder, SimResolver};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.redb");
        let (mut store, _) = Store::open(&path, crate::store::Retention::default()).expect("opens");
        let script = ScriptBuilder::new(1000).build().expect("script");
        let mut resolver = SimResolver::new(&script);
        let mut src = IfSource::default();
        let t0: u64 = 1_800_000_000_000;
        let mut drain = Drain::new(&mut store).expect("drain");
        let mut at = |drain: &mut Drain, src: &mut IfSource, store: &mut Store, t: u64| {
            drain
                .step(src, &mut resolver, store, t, Vec::new())
                .expect("step");
        };
        // eth0 (2) counts 1000 B, then 1500 more; eth1 (3) 64 B.
        src.now = vec![(key(2, 0), c(10, 1000)), (key(3, 3), c(1, 64))];
        // Devices: one on eth0 (2) sends 700 B then 300 more, one on eth1
        // (3) 42 B.
        src.devs = vec![(dev(2, 1), c(7, 700)), (dev(3, 2), c(1, 42))];
        at(&mut drain, &mut src, &mut store, t0);
        src.now[0].1 = c(25, 2500);
        src.devs[0].1 = c(10, 1000);
        at(&mut drain, &mut src, &mut store, t0 + 1000);
        // A restart: a new drain on the same store must not count again.
        let mut drain = Drain::new(&mut store).expect("reloads");
        at(&mut drain, &mut src, &mut store, t0 + 2000);
        src.now[0].1 = c(26, 2600);
        at(&mut drain, &mut src, &mut store, t0 + 3000);
        let all = window_bytes(&mut store, t0..t0 + 4000);
        assert_eq!(all.get(&2), Some(&2600));
        assert_eq!(all.get(&3), Some(&64));
        assert_eq!(
            window_bytes(&mut store, t0 + 1000..t0 + 3000).get(&2),
            Some(&1500)
        );
        let devs = device_bytes(&mut store, t0..t0 + 4000);
        assert_eq!(devs.get("02:00:00:00:00:01"), Some(&1000), "{devs:?}");
        assert_eq!(devs.get("02:00:00:00:00:02"), Some(&42), "{devs:?}");
        assert_eq!(
            device_bytes(&mut store, t0 + 1000..t0 + 3000).get("02:00:00:00:00:01"),
            Some(&300)
        );
        // eth1 is removed: forgotten after a durable commit of its final
        // value, then gone from the snapshot; its history stays. The last
        // commit is lazy (a changed counter 500 ms after a durable one):
        // with nothing else to write, the step still commits durably.
        src.now[0].1 = c(27, 2700);
        at(&mut drain, &mut src, &mut store, t0 + 3500);
        src.gone = vec![3];
        at(&mut drain, &mut src, &mut store, t0 + 4000);
        assert_eq!(src.forgotten, vec![3]);
        at(&mut drain, &mut src, &mut store, t0 + 5000);
        let snap = store.load_ifcount().expect("snapshot");
        assert!(snap.counters.keys().all(|k| k.ifindex == 2), "{snap:?}");
        assert_eq!(snap.names.get(&2).map(String::as_str), Some("eth0"));
        let all = window_bytes(&mut store, t0..t0 + 6000);
        assert_eq!(all.get(&3), Some(&64));
        assert_eq!(all.get(&2), Some(&2700));
        assert!(
            snap.devices.keys().all(|k| k.ifindex == 2),
            "eth1's devices leave the snapshot with it: {snap:?}"
        );
        let devs = device_bytes(&mut store, t0..t0 + 6000);
        assert_eq!(devs.get("02:00:00:00:00:02"), Some(&42), "history stays");
    }

    #[test]
    fn deltas_resets_and_vanished_keys() {
        let mut d = IfDrain::default();
        let r1 = IfaceReading {
            counters: vec![(key(2, 0), c(2, 200)), (key(3, 1), c(1, 60))],
            names: vec![(2, "eth0".to_owned())],
            gone: vec![],
            devices: vec![],
        };
        let (b, resets) = d.step(&r1);
        assert_eq!(resets, 0);
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.names, vec![(2, "eth0".to_owned())]);
        d.apply(b);
        // Unchanged: nothing to commit.
        assert!(d.step(&r1).0.is_empty());
        // Key 2 grows, key 3 went backwards (recreated), key 4 is new.
        let r2 = IfaceReading {
            counters: vec![
                (key(2, 0), c(5, 500)),
                (key(3, 1), c(1, 10)),
                (key(4, 3), c(1, 42)),
            ],
            names: vec![(2, "eth0".to_owned())],
            gone: vec![],
            devices: vec![],
        };
        let (b, resets) = d.step(&r2);
        assert_eq!(resets, 1);
        let bytes: Vec<(u32, u64)> = b.rows.iter().map(|r| (r.ifindex, r.bytes)).collect();
        assert_eq!(bytes, vec![(2, 300), (3, 10), (4, 42)]);
        assert!(b.names.is_empty(), "names written only when changed");
        d.apply(b);
        // Key 3 removed from the source: its snapshot entry goes, no row.
        let r3 = IfaceReading {
            counters: vec![(key(2, 0), c(5, 500)), (key(4, 3), c(1, 42))],
            ..IfaceReading::default()
        };
        let (b, _) = d.step(&r3);
        assert!(b.rows.is_empty());
        assert_eq!(b.snapshot, vec![(key(3, 1), None)]);
    }
}
