//! Device counters in the history: what the tc programs counted per LAN
//! interface, device MAC, direction and class (`netmon_common::device`),
//! stored exactly-once exactly as the interface counters
//! ([`crate::store::ifcount`], whose batch carries this one): deltas
//! against the committed snapshot ([`DEVCOUNT_SNAPSHOT`]), rows and the new
//! snapshot in the drain step's own transaction.
//!
//! Tables (created on first write; absent reads as empty, no schema step):
//! - [`DEVCOUNT_INTERVAL`]: key drain time u64 BE, value postcard
//!   `Vec<`[`DevRow`]`>`;
//! - [`DEVCOUNT_MINUTE`], [`DEVCOUNT_HOUR`], [`DEVCOUNT_DAY`]: key (20
//!   bytes) bucket start u64 BE | ifindex u32 BE | MAC 6 bytes | direction
//!   u8 | class u8, value packets u64 BE | bytes u64 BE;
//! - [`DEVCOUNT_SNAPSHOT`]: key the last 12 bytes of a rollup key, value
//!   the counters as last committed.
//!
//! Rows are written to the same tiers at the same times as every other
//! row and purged with them ([`crate::store::retention`]).
use std::collections::BTreeMap;

use netmon_common::device::DeviceKey;
use netmon_common::iface::IfaceCounters;
use redb::{ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::ifcount::{decode_counts, encode_counts, open_read, tier_rows};
use crate::store::layout::{self, Bytes, LayoutError};
use crate::store::query::Segment;
use crate::store::rollup::Tier;
use crate::store::types::TimeMs;
use crate::store::{Store, StoreError};

/// Interval rows (see the module docs).
pub const DEVCOUNT_INTERVAL: Bytes = TableDefinition::new("devcount.interval.v1");
/// Minute rollups.
pub const DEVCOUNT_MINUTE: Bytes = TableDefinition::new("devcount.minute.v1");
/// Hour rollups.
pub const DEVCOUNT_HOUR: Bytes = TableDefinition::new("devcount.hour.v1");
/// Day rollups.
pub const DEVCOUNT_DAY: Bytes = TableDefinition::new("devcount.day.v1");
/// The committed kernel counters.
pub const DEVCOUNT_SNAPSHOT: Bytes = TableDefinition::new("devcount.snapshot.v1");

/// The device counter table of `tier`.
#[must_use]
pub const fn table_of(tier: Tier) -> Bytes {
    match tier {
        Tier::Interval => DEVCOUNT_INTERVAL,
        Tier::Minute => DEVCOUNT_MINUTE,
        Tier::Hour => DEVCOUNT_HOUR,
        Tier::Day => DEVCOUNT_DAY,
    }
}

/// One device, interface, direction and class's delta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevRow {
    /// The LAN interface's index.
    pub ifindex: u32,
    /// The device's MAC address (all zero: the interface's overflow row).
    pub mac: [u8; 6],
    /// `netmon_common::iface::IFACE_DIR_*` (ingress: the device sent).
    pub direction: u8,
    /// `netmon_common::device::DEV_CLASS_*`.
    pub class: u8,
    /// Packets.
    pub packets: u64,
    /// Bytes, link-layer header included.
    pub bytes: u64,
}

impl DevRow {
    /// The map key this row counts.
    #[must_use]
    pub const fn key(&self) -> DeviceKey {
        DeviceKey {
            ifindex: self.ifindex,
            mac: self.mac,
            direction: self.direction,
            class: self.class,
        }
    }
}

/// The device part of a drain's batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevBatch {
    /// Deltas.
    pub rows: Vec<DevRow>,
    /// Snapshot writes: the new committed value, `None` removing the key.
    pub snapshot: Vec<(DeviceKey, Option<IfaceCounters>)>,
}

impl DevBatch {
    /// True when committing it would change nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.snapshot.is_empty()
    }
}

fn snap_key(k: &DeviceKey) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&k.ifindex.to_be_bytes());
    out[4..10].copy_from_slice(&k.mac);
    out[10] = k.direction;
    out[11] = k.class;
    out
}

fn rollup_key(bucket: TimeMs, k: &DeviceKey) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..20].copy_from_slice(&snap_key(k));
    out
}

fn decode_key(b: &[u8], table: &'static str) -> Result<DeviceKey, LayoutError> {
    let b: &[u8; 12] = b.try_into().map_err(|_| LayoutError::Key {
        table,
        len: b.len(),
    })?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[4..10]);
    Ok(DeviceKey {
        ifindex: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        mac,
        direction: b[10],
        class: b[11],
    })
}

/// Writes `batch` in `txn`: the interval row, every rollup tier and the
/// snapshot.
///
/// # Errors
/// On storage errors.
pub fn write(txn: &redb::WriteTransaction, ts: TimeMs, batch: &DevBatch) -> Result<(), StoreError> {
    if !batch.rows.is_empty() {
        let mut t = txn.open_table(DEVCOUNT_INTERVAL)?;
        let key = layout::time_key(ts);
        let mut rows: Vec<DevRow> = match t.get(key.as_slice())? {
            Some(v) => layout::decode(v.value())?,
            None => Vec::new(),
        };
        rows.extend_from_slice(&batch.rows);
        t.insert(key.as_slice(), layout::encode(&rows)?.as_slice())?;
        for tier in Tier::ROLLUPS {
            let mut t = txn.open_table(table_of(tier))?;
            let bucket = tier.bucket(ts);
            let mut keyed: Vec<([u8; 20], &DevRow)> = batch
                .rows
                .iter()
                .map(|r| (rollup_key(bucket, &r.key()), r))
                .collect();
            keyed.sort_unstable_by_key(|k| k.0);
            for (k, r) in keyed {
                let old = match t.get(k.as_slice())? {
                    Some(v) => decode_counts(v.value(), "devcount rollup")?,
                    None => IfaceCounters::default(),
                };
                let new = IfaceCounters {
                    packets: old.packets.saturating_add(r.packets),
                    bytes: old.bytes.saturating_add(r.bytes),
                };
                t.insert(k.as_slice(), encode_counts(&new).as_slice())?;
            }
        }
    }
    if !batch.snapshot.is_empty() {
        let mut t = txn.open_table(DEVCOUNT_SNAPSHOT)?;
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
    Ok(())
}

/// The committed device snapshot.
///
/// # Errors
/// On storage errors.
pub fn read_snapshot(
    txn: &redb::ReadTransaction,
) -> Result<BTreeMap<DeviceKey, IfaceCounters>, StoreError> {
    let mut out = BTreeMap::new();
    if let Some(t) = open_read(txn, DEVCOUNT_SNAPSHOT)? {
        for row in t.iter()? {
            let (k, v) = row?;
            out.insert(
                decode_key(k.value(), "devcount snapshot")?,
                decode_counts(v.value(), "devcount snapshot")?,
            );
        }
    }
    Ok(out)
}

impl Store {
    /// Calls `f` with every device counter row whose time key lies in
    /// `segments` (one read transaction).
    ///
    /// # Errors
    /// On storage errors.
    pub fn devcount_rows(
        &mut self,
        segments: &[Segment],
        mut f: impl FnMut(TimeMs, DevRow),
    ) -> Result<(), StoreError> {
        let txn = self.reader()?.begin_read()?;
        tier_rows(
            &txn,
            segments,
            table_of,
            |key, c| {
                let key = decode_key(key, "devcount rollup")?;
                Ok(DevRow {
                    ifindex: key.ifindex,
                    mac: key.mac,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        let k = DeviceKey {
            ifindex: 0x0102_0304,
            mac: [0xda, 1, 2, 3, 4, 5],
            direction: 1,
            class: 2,
        };
        assert_eq!(decode_key(&snap_key(&k), "t").expect("decodes"), k);
        let a = rollup_key(1, &k);
        let b = rollup_key(2, &DeviceKey { ifindex: 0, ..k });
        assert!(a < b, "time first");
        assert_eq!(decode_key(&a[8..], "t").expect("decodes"), k);
        assert!(decode_key(&[0; 11], "t").is_err());
    }
}
