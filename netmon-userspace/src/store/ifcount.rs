//! Interface counters in the history: what the tc programs counted per
//! interface, direction and class (`netmon_common::iface`), stored
//! exactly-once like the per process rows.
//!
//! The kernel keeps monotonic per interface counters; the drain subtracts
//! the committed snapshot ([`IFCOUNT_SNAPSHOT`]) and commits the deltas to
//! every tier *and* the new snapshot in the same write transaction as the
//! rest of the step ([`write`], called by [`Store::commit`]), so the
//! drain's invariant 2 holds for them too: every byte the kernel counted is
//! in the rows or in `value − snapshot`, never both, after a crash at any
//! instant (see [`crate::drain`]).
//!
//! Tables (created on first write; a store without them reads as empty, so
//! no schema step is needed and an older netmon simply ignores them):
//! - [`IFCOUNT_INTERVAL`]: one row per drain with deltas, key drain time
//!   u64 BE, value postcard `Vec<`[`IfRow`]`>` (varints);
//! - [`IFCOUNT_MINUTE`], [`IFCOUNT_HOUR`], [`IFCOUNT_DAY`]: key (14 bytes)
//!   bucket start u64 BE | ifindex u32 BE | direction u8 | class u8, value
//!   (16 bytes) packets u64 BE | bytes u64 BE; big-endian so keys sort by
//!   time first (range scans and retention cut by the leading time);
//! - [`IFCOUNT_SNAPSHOT`]: key (6 bytes) ifindex u32 BE | direction u8 |
//!   class u8, value as the rollups: the kernel counters as last committed;
//! - [`IFCOUNT_NAMES`]: key ifindex u32 BE, value the interface's name
//!   (UTF-8) when last seen, so answers name interfaces that are gone.
//!
//! Rows are written to the same tiers, at the same times, as the per
//! process rows and purged with them ([`crate::store::retention::tables_of`]),
//! so a window resolves to the same segments for both.
use std::collections::BTreeMap;

use netmon_common::iface::{IfaceCounters, IfaceKey};
use redb::{ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::layout::{self, Bytes, LayoutError};
use crate::store::query::Segment;
use crate::store::rollup::Tier;
use crate::store::types::TimeMs;
use crate::store::{Store, StoreError};

/// Interval rows (see the module docs).
pub const IFCOUNT_INTERVAL: Bytes = TableDefinition::new("ifcount.interval.v1");
/// Minute rollups (see the module docs).
pub const IFCOUNT_MINUTE: Bytes = TableDefinition::new("ifcount.minute.v1");
/// Hour rollups.
pub const IFCOUNT_HOUR: Bytes = TableDefinition::new("ifcount.hour.v1");
/// Day rollups.
pub const IFCOUNT_DAY: Bytes = TableDefinition::new("ifcount.day.v1");
/// The committed kernel counters.
pub const IFCOUNT_SNAPSHOT: Bytes = TableDefinition::new("ifcount.snapshot.v1");
/// Interface names by index.
pub const IFCOUNT_NAMES: Bytes = TableDefinition::new("ifcount.names.v1");

/// The interface counter table of `tier`.
#[must_use]
pub const fn table_of(tier: Tier) -> Bytes {
    match tier {
        Tier::Interval => IFCOUNT_INTERVAL,
        Tier::Minute => IFCOUNT_MINUTE,
        Tier::Hour => IFCOUNT_HOUR,
        Tier::Day => IFCOUNT_DAY,
    }
}

/// One interface, direction and class's delta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfRow {
    /// Interface index.
    pub ifindex: u32,
    /// `netmon_common::iface::IFACE_DIR_*`.
    pub direction: u8,
    /// `netmon_common::iface::IFACE_CLASS_*`.
    pub class: u8,
    /// Packets (a GSO packet is one).
    pub packets: u64,
    /// Bytes, link-layer header included.
    pub bytes: u64,
}

impl IfRow {
    /// The map key this row counts.
    #[must_use]
    pub const fn key(&self) -> IfaceKey {
        IfaceKey {
            ifindex: self.ifindex,
            direction: self.direction,
            class: self.class,
            _pad: [0; 2],
        }
    }
}

/// The interface part of one drain's [`crate::store::Batch`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfBatch {
    /// Deltas.
    pub rows: Vec<IfRow>,
    /// Snapshot writes: the new committed value, `None` removing the key.
    pub snapshot: Vec<(IfaceKey, Option<IfaceCounters>)>,
    /// Names that changed.
    pub names: Vec<(u32, String)>,
    /// The per-device part ([`crate::store::devcount`]).
    pub devices: crate::store::devcount::DevBatch,
}

impl IfBatch {
    /// True when committing it would change nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.snapshot.is_empty()
            && self.names.is_empty()
            && self.devices.is_empty()
    }
}

/// The committed interface snapshot and names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfSnapshot {
    /// Kernel counters as last committed.
    pub counters: BTreeMap<IfaceKey, IfaceCounters>,
    /// Names as last committed.
    pub names: BTreeMap<u32, String>,
    /// Device counters as last committed ([`crate::store::devcount`]).
    pub devices: BTreeMap<netmon_common::device::DeviceKey, IfaceCounters>,
}

fn snap_key(k: &IfaceKey) -> [u8; 6] {
    let mut out = [0u8; 6];
    out[0..4].copy_from_slice(&k.ifindex.to_be_bytes());
    out[4] = k.direction;
    out[5] = k.class;
    out
}

fn rollup_key(bucket: TimeMs, k: &IfaceKey) -> [u8; 14] {
    let mut out = [0u8; 14];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..14].copy_from_slice(&snap_key(k));
    out
}

fn decode_key6(b: &[u8], table: &'static str) -> Result<IfaceKey, LayoutError> {
    let err = || LayoutError::Key {
        table,
        len: b.len(),
    };
    let (ifindex, rest) = b.split_first_chunk::<4>().ok_or_else(err)?;
    let [direction, class] = rest else {
        return Err(err());
    };
    Ok(IfaceKey {
        ifindex: u32::from_be_bytes(*ifindex),
        direction: *direction,
        class: *class,
        _pad: [0; 2],
    })
}

pub(crate) fn encode_counts(c: &IfaceCounters) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..8].copy_from_slice(&c.packets.to_be_bytes());
    out[8..16].copy_from_slice(&c.bytes.to_be_bytes());
    out
}

pub(crate) fn decode_counts(b: &[u8], table: &'static str) -> Result<IfaceCounters, LayoutError> {
    let err = || LayoutError::Key {
        table,
        len: b.len(),
    };
    let (p, rest) = b.split_first_chunk::<8>().ok_or_else(err)?;
    let bytes: [u8; 8] = rest.try_into().map_err(|_| err())?;
    Ok(IfaceCounters {
        packets: u64::from_be_bytes(*p),
        bytes: u64::from_be_bytes(bytes),
    })
}

/// A byte table opened for reading.
pub(crate) type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens `def` for reading; `None` when the store has never written it.
pub(crate) fn open_read(
    txn: &redb::ReadTransaction,
    def: Bytes,
) -> Result<Option<ReadTable>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `batch`'s interface part in `txn`: the interval row, every rollup
/// tier (read-modify-write, in key order), the snapshot and the names.
///
/// # Errors
/// On storage errors.
pub fn write(txn: &redb::WriteTransaction, ts: TimeMs, batch: &IfBatch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    crate::store::devcount::write(txn, ts, &batch.devices)?;
    if !batch.rows.is_empty() {
        let mut t = txn.open_table(IFCOUNT_INTERVAL)?;
        let key = layout::time_key(ts);
        // Two commits at one drain time (not done by the drain, but cheap
        // to honour): the rows are merged.
        let mut rows: Vec<IfRow> = match t.get(key.as_slice())? {
            Some(v) => layout::decode(v.value())?,
            None => Vec::new(),
        };
        rows.extend_from_slice(&batch.rows);
        t.insert(key.as_slice(), layout::encode(&rows)?.as_slice())?;
    }
    for tier in Tier::ROLLUPS {
        if batch.rows.is_empty() {
            break;
        }
        let mut t = txn.open_table(table_of(tier))?;
        let bucket = tier.bucket(ts);
        let mut keyed: Vec<([u8; 14], &IfRow)> = batch
            .rows
            .iter()
            .map(|r| (rollup_key(bucket, &r.key()), r))
            .collect();
        keyed.sort_unstable_by_key(|k| k.0);
        for (k, r) in keyed {
            let old = match t.get(k.as_slice())? {
                Some(v) => decode_counts(v.value(), "ifcount rollup")?,
                None => IfaceCounters::default(),
            };
            let new = IfaceCounters {
                packets: old.packets.saturating_add(r.packets),
                bytes: old.bytes.saturating_add(r.bytes),
            };
            t.insert(k.as_slice(), encode_counts(&new).as_slice())?;
        }
    }
    if !batch.snapshot.is_empty() {
        let mut t = txn.open_table(IFCOUNT_SNAPSHOT)?;
        for (k, v) in &batch.snapshot {
            match v {
                Some(v) => {
                    t.insert(snap_key(k).as_slice(), encode_counts(v).as_slice())?;
                }
                None => {
                    t.remove(snap_key(k).as_slice())?;
                }
            }
        }
    }
    if !batch.names.is_empty() {
        let mut t = txn.open_table(IFCOUNT_NAMES)?;
        for (i, name) in &batch.names {
            t.insert(i.to_be_bytes().as_slice(), name.as_bytes())?;
        }
    }
    Ok(())
}

fn read_names(txn: &redb::ReadTransaction) -> Result<BTreeMap<u32, String>, StoreError> {
    let mut names = BTreeMap::new();
    if let Some(t) = open_read(txn, IFCOUNT_NAMES)? {
        for row in t.iter()? {
            let (k, v) = row?;
            let i: [u8; 4] = k.value().try_into().map_err(|_| LayoutError::Key {
                table: "ifcount names",
                len: k.value().len(),
            })?;
            names.insert(
                u32::from_be_bytes(i),
                String::from_utf8_lossy(v.value()).into_owned(),
            );
        }
    }
    Ok(names)
}

impl Store {
    /// Reads the committed interface snapshot and names.
    ///
    /// # Errors
    /// On storage errors.
    pub fn load_ifcount(&mut self) -> Result<IfSnapshot, StoreError> {
        let txn = self.reader()?.begin_read()?;
        let mut counters = BTreeMap::new();
        if let Some(t) = open_read(&txn, IFCOUNT_SNAPSHOT)? {
            for row in t.iter()? {
                let (k, v) = row?;
                counters.insert(
                    decode_key6(k.value(), "ifcount snapshot")?,
                    decode_counts(v.value(), "ifcount snapshot")?,
                );
            }
        }
        Ok(IfSnapshot {
            counters,
            names: read_names(&txn)?,
            devices: crate::store::devcount::read_snapshot(&txn)?,
        })
    }

    /// Interface names as last seen by the drain, by index.
    ///
    /// # Errors
    /// On storage errors.
    pub fn ifcount_names(&mut self) -> Result<BTreeMap<u32, String>, StoreError> {
        let txn = self.reader()?.begin_read()?;
        read_names(&txn)
    }

    /// Calls `f` with every interface counter row whose time key lies in
    /// `segments` (one read transaction).
    ///
    /// # Errors
    /// On storage errors.
    pub fn ifcount_rows(
        &mut self,
        segments: &[Segment],
        mut f: impl FnMut(TimeMs, IfRow),
    ) -> Result<(), StoreError> {
        let txn = self.reader()?.begin_read()?;
        tier_rows(
            &txn,
            segments,
            table_of,
            |key, c| {
                let key = decode_key6(key, "ifcount rollup")?;
                Ok(IfRow {
                    ifindex: key.ifindex,
                    direction: key.direction,
                    class: key.class,
                    packets: c.packets,
                    bytes: c.bytes,
                })
            },
            &mut f,
        )
    }
}

/// Walks the counter tiers of `segments` in one read transaction, shared by
/// the interface and device counters: interval rows are a postcard list of
/// `R`; rollup rows are built by `rollup` from the key (after its 8-byte
/// time) and the counts.
///
/// # Errors
/// On storage errors or rows that don't decode.
pub(crate) fn tier_rows<R: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    segments: &[Segment],
    table_of: fn(Tier) -> Bytes,
    rollup: impl Fn(&[u8], IfaceCounters) -> Result<R, LayoutError>,
    f: &mut impl FnMut(TimeMs, R),
) -> Result<(), StoreError> {
    for seg in segments {
        let Some(t) = open_read(txn, table_of(seg.tier))? else {
            continue;
        };
        let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
        for row in t.range(from.as_slice()..to.as_slice())? {
            let (k, v) = row?;
            let ts = layout::key_time(k.value())?;
            if seg.tier == Tier::Interval {
                let rows: Vec<R> = layout::decode(v.value())?;
                for r in rows {
                    f(ts, r);
                }
            } else {
                let key = k.value().get(8..).unwrap_or_default();
                f(
                    ts,
                    rollup(key, decode_counts(v.value(), "counter rollup")?)?,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        let k = IfaceKey {
            ifindex: 0x0102_0304,
            direction: 1,
            class: 3,
            _pad: [0; 2],
        };
        assert_eq!(decode_key6(&snap_key(&k), "t").expect("decodes"), k);
        let a = rollup_key(1, &k);
        let b = rollup_key(2, &IfaceKey { ifindex: 0, ..k });
        assert!(a < b, "time first");
        assert_eq!(decode_key6(&a[8..], "t").expect("decodes"), k);
        let c = IfaceCounters {
            packets: 7,
            bytes: u64::MAX,
        };
        assert_eq!(decode_counts(&encode_counts(&c), "t").expect("decodes"), c);
        assert!(decode_counts(&[0; 15], "t").is_err());
        assert!(decode_key6(&[0; 5], "t").is_err());
    }
}
