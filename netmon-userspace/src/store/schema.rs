//! Schema version and migrations.
//!
//! The version lives in [`layout::META`] under [`layout::META_SCHEMA`]
//! (`u32` BE). On open:
//! - no tables at all: a fresh file; every table is created and
//!   [`CURRENT`] written;
//! - a version below [`CURRENT`]: each step of [`MIGRATIONS`] from it runs,
//!   each in its own write transaction that also writes the version it
//!   reached (all or nothing per step), and a
//!   [`DaemonEvent::Migration`] is returned for the caller to record;
//! - a version above [`CURRENT`]: refused ([`StoreError::NewerSchema`]): an
//!   older netmon must not write a layout it does not know;
//! - tables but no version: not a netmon store, refused.

use crate::store::StoreError;
use crate::store::layout;
use crate::store::types::DaemonEvent;

/// The layout this build writes.
///
/// - 1: first released layout.
/// - 2: the snapshot packed into chunks (`snapshot.v2` and `snapshot.keys.v2`, see
///   [`layout::SNAPSHOT`]) carrying each flow's bytes not yet in the remote
///   rollups ([`crate::store::RemotePending`]); `REMOTE_*` rows are written
///   when an hour is over instead of every interval. Row layouts of every
///   other table are unchanged.
/// - 3: every counter set gains `retrans_bytes` per direction (eight
///   varints a [`crate::store::Traffic`] instead of six): every table that
///   holds counters is rewritten under its next `.v<N>` name, the overflow
///   snapshot in place. Schema 2 did not measure retransmissions: its
///   counters migrate with `retrans_bytes` 0 (application bytes = payload,
///   which is what it reported).
/// - 4: remote rollups keyed by service port and direction instead of the
///   remote port (`remote.*.v3`, 42-byte keys), with a minute tier
///   (`remote.minute.v3`) beside hour and day; snapshot pieces by UTC
///   minute with the service in the keys record (`snapshot*.v4`); quality
///   samples with a direction (`quality.v2`). Older rows cannot say which
///   side connected: they migrate with [`crate::store::ConnDir::Unknown`]
///   and the port they had; the remote minute tier starts at the minute
///   after the last interval sample the old file held
///   ([`layout::META_REMOTE_MINUTE_FROM`]; earlier remote bytes are in the
///   hour and day tiers).
/// - 5: remote rollups keyed by the server name too (`remote.*.v4`: the
///   42-byte key, then the name, see [`crate::store::names`]), and the
///   snapshot flows' names (`snapshot.names.v1`). Older rows have no name
///   (the "no name" byte is appended to their keys).
/// - 6: TCP quality aggregated per remote key (no server name) instead of
///   one sample per flow and interval, with rollup tiers
///   (`quality.{interval,minute,hour,day}.v3`, see
///   [`crate::store::quality`]): schema 5's `quality.v2` rows are
///   aggregated per key and drain time into the interval tier and added to
///   the rollups; the RTTs become histograms (within 1.6 %), the counts
///   stay exact.
/// - 7: quality rollups written once a minute, not every interval: the
///   interval rows at or after [`layout::META_QUALITY_ROLLED`] are not in
///   the rollup tiers yet (see [`crate::store::quality`]). Row layouts are
///   unchanged; the migration sets the mark after the last interval row
///   (schema 6 rolled every row up at once). A schema 6 netmon must not
///   write such a file: it would roll up rows past the mark twice.
/// - 8: compact rollup keys (`proc.*.v3`, `remote.*.v5`,
///   `quality.{minute,hour,day}.v4`): after the 8-byte bucket, pid and
///   start_ticks as varints, the remote address without its trailing zero
///   bytes and the service port as a varint
///   ([`layout::encode_proc_key`], [`layout::encode_remote_key`],
///   [`layout::encode_quality_key`]); values unchanged. Measured with the
///   disk benchmark (README, disk figures): the keys were two thirds of
///   the rollup rows' bytes. Every row is re-keyed, none changes.
pub const CURRENT: u32 = 8;

/// One migration: from `.0` to `.0 + 1`.
pub type Migration = (u32, fn(&redb::WriteTransaction) -> Result<(), StoreError>);

/// Migration steps, in order. A step that changes a layout writes
/// `*.v<N+1>` tables from the old ones and deletes them (see [`layout`]'s
/// conventions).
pub const MIGRATIONS: &[Migration] = &[
    (1, v1_to_v2),
    (2, v2_to_v3),
    (3, v3_to_v4),
    (4, v4_to_v5),
    (5, v5_to_v6),
    (6, v6_to_v7),
    (7, v7_to_v8),
];

/// 1 → 2: `snapshot.v1` (one row per flow) → snapshot chunks. Flows take
/// slots in key order. Schema 1 wrote every delta to the remote rollups at
/// once, so nothing is pending; the remote tables keep their layout and
/// rows. (The chunks are written in the current layout, [`layout::SNAPSHOT`],
/// so the next step finds no schema 2 snapshot to convert.)
fn v1_to_v2(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    {
        let old = match txn.open_table(layout::SNAPSHOT_V1) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut new = txn.open_table(layout::SNAPSHOT)?;
        let mut new_keys = txn.open_table(layout::SNAPSHOT_KEYS)?;
        if let Some(old) = old {
            let mut chunk = 0u32;
            let mut offset = 0u32;
            let (mut buf, mut keys) = (Vec::new(), Vec::new());
            for row in old.iter()? {
                let (k, v) = row?;
                let key = layout::decode_flow_key(k.value())?;
                let e: layout::SnapEntryV1 = layout::decode(v.value())?;
                let entry = crate::store::SnapEntry {
                    counters: e.counters.into(),
                    first_boottime_ns: e.first_boottime_ns,
                    pending: crate::store::RemotePending::default(),
                };
                let off = u8::try_from(offset).map_err(|_| layout::LayoutError::Chunk {
                    chunk,
                    reason: "slot offset out of range",
                })?;
                layout::encode_snap_keys_record(&mut keys, off, &key, &entry);
                layout::encode_snap_record(&mut buf, &entry);
                offset += 1;
                if offset == layout::SNAP_CHUNK {
                    let k = layout::encode_chunk_key(chunk);
                    new.insert(k.as_slice(), buf.as_slice())?;
                    new_keys.insert(k.as_slice(), keys.as_slice())?;
                    buf.clear();
                    keys.clear();
                    offset = 0;
                    chunk += 1;
                }
            }
            if !buf.is_empty() {
                let k = layout::encode_chunk_key(chunk);
                new.insert(k.as_slice(), buf.as_slice())?;
                new_keys.insert(k.as_slice(), keys.as_slice())?;
            }
        }
    }
    match txn.delete_table(layout::SNAPSHOT_V1) {
        Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 2 → 3: counters gain `retrans_bytes` (0 for everything schema 2
/// counted). Every counter-holding table is copied row by row into its
/// successor and deleted; the overflow snapshot is rewritten in place.
fn v2_to_v3(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use crate::store::Traffic;
    use layout::{IntervalRecord, IntervalRecord2, Traffic2};
    use redb::ReadableTable as _;
    for (old, new) in layout::TRAFFIC_TABLES_V2 {
        copy_table(txn, old, new, |v| {
            layout::encode(&Traffic::from(layout::decode::<Traffic2>(v)?))
        })?;
    }
    copy_table(txn, layout::INTERVAL_V1, layout::INTERVAL, |v| {
        layout::encode(&IntervalRecord::from(layout::decode::<IntervalRecord2>(v)?))
    })?;
    snapshot_v2_to_v3(txn)?;
    let mut meta = txn.open_table(layout::META)?;
    let old = meta
        .get(layout::META_OVERFLOW)?
        .map(|v| layout::decode::<layout::OverflowCounters2>(v.value()))
        .transpose()?;
    if let Some(old) = old {
        let new = layout::encode_overflow(&old.into())?;
        meta.insert(layout::META_OVERFLOW, new.as_slice())?;
    }
    Ok(())
}

/// Copies every row of `old` into `new` with its value converted, then
/// deletes `old`; nothing to do when `old` does not exist.
fn copy_table(
    txn: &redb::WriteTransaction,
    old: layout::Bytes,
    new: layout::Bytes,
    convert: impl Fn(&[u8]) -> Result<Vec<u8>, layout::LayoutError>,
) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    {
        let from = match txn.open_table(old) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut to = txn.open_table(new)?;
        for row in from.iter()? {
            let (k, v) = row?;
            to.insert(k.value(), convert(v.value())?.as_slice())?;
        }
    }
    txn.delete_table(old)?;
    Ok(())
}

/// Schema 2's snapshot chunks re-encoded in the current layout (eight
/// varints a counter set, service fields): same chunks, same slots.
fn snapshot_v2_to_v3(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    convert_snapshot(
        txn,
        (layout::SNAPSHOT_KEYS_V2, layout::SNAPSHOT_V2),
        |c, k, h, f| layout::decode_snap_chunk_v2(c, k, h, f),
    )
}

/// A snapshot chunk decoder of an older schema.
type ChunkDecoder = fn(
    u32,
    &[u8],
    &[u8],
    &mut dyn FnMut(u32, netmon_common::FlowKey, crate::store::SnapEntry),
) -> Result<(), layout::LayoutError>;

/// Re-encodes the chunks of an older snapshot (`old`: keys and counters
/// tables, read with `decode`) in the current layout, and deletes them.
/// Pending pieces keep their bytes and time (an hour start, a whole
/// minute) and count for the flow's remote port with an unknown direction:
/// older schemas did not record which side connected.
fn convert_snapshot(
    txn: &redb::WriteTransaction,
    old: (layout::Bytes, layout::Bytes),
    decode: ChunkDecoder,
) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    {
        let (keys, hot) = match (txn.open_table(old.0), txn.open_table(old.1)) {
            (Ok(k), Ok(h)) => (k, h),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(()),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let mut new_keys = txn.open_table(layout::SNAPSHOT_KEYS)?;
        let mut new_hot = txn.open_table(layout::SNAPSHOT)?;
        for row in keys.iter()? {
            let (k, kv) = row?;
            let chunk = layout::decode_chunk_key(k.value())?;
            let h = hot.get(k.value())?.ok_or(layout::LayoutError::Chunk {
                chunk,
                reason: "keys row without counters row",
            })?;
            let (mut kb, mut hb) = (Vec::new(), Vec::new());
            let base = chunk * layout::SNAP_CHUNK;
            let mut bad = false;
            decode(chunk, kv.value(), h.value(), &mut |slot, key, mut e| {
                e.pending.port = key.remote_port;
                e.pending.dir = crate::store::ConnDir::Unknown;
                match u8::try_from(slot - base) {
                    Ok(off) => {
                        layout::encode_snap_keys_record(&mut kb, off, &key, &e);
                        layout::encode_snap_record(&mut hb, &e);
                    }
                    Err(_) => bad = true,
                }
            })?;
            if bad {
                return Err(layout::LayoutError::Chunk {
                    chunk,
                    reason: "slot offset out of range",
                }
                .into());
            }
            new_keys.insert(k.value(), kb.as_slice())?;
            new_hot.insert(k.value(), hb.as_slice())?;
        }
    }
    txn.delete_table(old.0)?;
    txn.delete_table(old.1)?;
    Ok(())
}

/// 3 → 4: remote rollups re-keyed by service port and direction (old rows:
/// their remote port, direction unknown), a remote minute tier, minute
/// snapshot pieces with the service, quality samples with a direction.
fn v3_to_v4(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    // Into schema 4's tables (42-byte keys): the next step adds names.
    for (old, new) in [
        (layout::REMOTE_HOUR_V2, layout::REMOTE_TABLES_V3[1].0),
        (layout::REMOTE_DAY_V2, layout::REMOTE_TABLES_V3[2].0),
    ] {
        rekey_table(txn, old, new, |k| {
            let (bucket, rk) = layout::decode_remote_key_v2(k)?;
            Ok(layout::encode_remote_key_v3(bucket, &rk).to_vec())
        })?;
    }
    copy_table(txn, layout::QUALITY_V1, layout::QUALITY_V2, |v| {
        let old: Vec<layout::QualitySampleV1> = layout::decode(v)?;
        let new: Vec<crate::store::QualitySample> = old.into_iter().map(Into::into).collect();
        layout::encode(&new)
    })?;
    convert_snapshot(
        txn,
        (layout::SNAPSHOT_KEYS_V3, layout::SNAPSHOT_V3),
        |c, k, h, f| layout::decode_snap_chunk_v3(c, k, h, f),
    )?;
    // The minute tier holds remote bytes from the minute after the last
    // drain of the old file on.
    let last = {
        let t = txn.open_table(layout::INTERVAL)?;
        let last = t.last()?;
        last.map(|(k, _)| layout::key_time(k.value())).transpose()?
    };
    if let Some(last) = last {
        let from = crate::store::Tier::Minute.bucket(last) + 60_000;
        let mut meta = txn.open_table(layout::META)?;
        meta.insert(
            layout::META_REMOTE_MINUTE_FROM,
            from.to_be_bytes().as_slice(),
        )?;
    }
    Ok(())
}

/// 4 → 5: remote rows gain a server name (none for every old row): each
/// `remote.*.v3` row is copied under its key with the "no name" byte
/// appended (in the current key layout, [`layout::encode_remote_key`]),
/// and the old table deleted.
fn v4_to_v5(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for (old, new) in layout::REMOTE_TABLES_V3 {
        rekey_table(txn, old, new, |k| {
            let (bucket, rk) = layout::decode_remote_key_v3(k)?;
            Ok(layout::encode_remote_key(bucket, &rk))
        })?;
    }
    txn.open_table(crate::store::names::FLOW_NAMES)?;
    Ok(())
}

/// 5 → 6: per flow quality samples (`quality.v2`) aggregated per remote
/// key and drain time, written to every quality tier as the drain writes
/// them ([`crate::store::quality::write`]), and the old table deleted.
fn v5_to_v6(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use crate::store::quality::{self, QualityAcc};
    use redb::ReadableTable as _;
    {
        let old = match txn.open_table(layout::QUALITY_V2) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut acc = QualityAcc::default();
        for row in old.iter()? {
            let (k, v) = row?;
            let ts = layout::key_time(k.value())?;
            let samples: Vec<crate::store::QualitySample> = layout::decode(v.value())?;
            samples.iter().for_each(|s| acc.add(s));
            quality::write(txn, ts, &acc.take_rows())?;
        }
    }
    txn.delete_table(layout::QUALITY_V2)?;
    Ok(())
}

/// 6 → 7: every quality interval row is in the rollups already; the mark
/// goes after the last one ([`layout::META_QUALITY_ROLLED`]).
fn v6_to_v7(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    let last = match txn.open_table(crate::store::quality::QUALITY_INTERVAL) {
        Ok(t) => t
            .last()?
            .map(|(k, _)| layout::key_time(k.value()))
            .transpose()?,
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(last) = last {
        txn.open_table(layout::META)?.insert(
            layout::META_QUALITY_ROLLED,
            last.saturating_add(1).to_be_bytes().as_slice(),
        )?;
    }
    Ok(())
}

/// 7 → 8: the per process, remote and quality rollup tiers re-keyed in
/// the compact layout (same rows, same values).
fn v7_to_v8(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for (old, new) in layout::PROC_TABLES_V2 {
        rekey_table(txn, old, new, |k| {
            let (bucket, id, class) = layout::decode_proc_key_v2(k)?;
            Ok(layout::encode_proc_key(bucket, id, class))
        })?;
    }
    for (old, new) in layout::REMOTE_TABLES_V4 {
        rekey_table(txn, old, new, |k| {
            let (bucket, rk) = layout::decode_remote_key_v4(k)?;
            Ok(layout::encode_remote_key(bucket, &rk))
        })?;
    }
    for (old, new) in crate::store::quality::QUALITY_TABLES_V3 {
        rekey_table(txn, old, new, |k| {
            let (bucket, rk) = layout::decode_remote_key_v3(k)?;
            Ok(layout::encode_quality_key(bucket, &rk))
        })?;
    }
    Ok(())
}

/// Copies every row of `old` (if it exists) into `new` under the key
/// `rekey` makes of its key, value unchanged, and deletes `old`.
fn rekey_table(
    txn: &redb::WriteTransaction,
    old: layout::Bytes,
    new: layout::Bytes,
    rekey: impl Fn(&[u8]) -> Result<Vec<u8>, layout::LayoutError>,
) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    {
        let from = match txn.open_table(old) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut to = txn.open_table(new)?;
        for row in from.iter()? {
            let (k, v) = row?;
            to.insert(rekey(k.value())?.as_slice(), v.value())?;
        }
    }
    txn.delete_table(old)?;
    Ok(())
}

/// Reads the stored version, `None` for a file with no meta table.
fn stored_version(db: &impl redb::ReadableDatabase) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(layout::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(v) = meta.get(layout::META_SCHEMA)? else {
        return Ok(None);
    };
    let b = v.value();
    let bytes: [u8; 4] = b.try_into().map_err(|_| StoreError::NotNetmon)?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

/// Checks a file opened read-only: it must be at [`CURRENT`] (a reader
/// never migrates).
///
/// # Errors
/// [`StoreError::NotNetmon`], [`StoreError::NewerSchema`],
/// [`StoreError::OlderSchema`], storage errors.
pub fn check_current(db: &redb::ReadOnlyDatabase) -> Result<(), StoreError> {
    match stored_version(db)? {
        None => Err(StoreError::NotNetmon),
        Some(v) if v > CURRENT => Err(StoreError::NewerSchema {
            found: v,
            supported: CURRENT,
        }),
        Some(v) if v < CURRENT => Err(StoreError::OlderSchema { found: v }),
        Some(_) => Ok(()),
    }
}

/// Brings `db` to [`CURRENT`], creating every table. Returns the migration
/// events to record.
///
/// # Errors
/// [`StoreError::NewerSchema`], [`StoreError::NotNetmon`], storage errors.
pub fn prepare(db: &redb::Database) -> Result<Vec<DaemonEvent>, StoreError> {
    let found = stored_version(db)?;
    let mut events = Vec::new();
    let txn = db.begin_write()?;
    match found {
        Some(v) if v > CURRENT => {
            return Err(StoreError::NewerSchema {
                found: v,
                supported: CURRENT,
            });
        }
        Some(v) => {
            // One write transaction per step, each writing the version it
            // reached: a step reads tables an earlier step wrote, and redb
            // (3.1) panics committing a transaction that created and
            // deleted the same table. A crash between steps leaves a file
            // at an intermediate version, which the next open continues.
            drop(txn);
            for (from, step) in MIGRATIONS.iter().filter(|(from, _)| *from >= v) {
                let txn = db.begin_write()?;
                step(&txn)?;
                {
                    let mut meta = txn.open_table(layout::META)?;
                    meta.insert(layout::META_SCHEMA, (from + 1).to_be_bytes().as_slice())?;
                }
                txn.commit()?;
                events.push(DaemonEvent::Migration {
                    from: *from,
                    to: from + 1,
                });
            }
            return finish(db, events);
        }
        None => {
            if txn.list_tables()?.next().is_some() {
                return Err(StoreError::NotNetmon);
            }
        }
    }
    drop(txn);
    finish(db, events)
}

/// Writes [`CURRENT`] and creates every table that is missing.
fn finish(db: &redb::Database, events: Vec<DaemonEvent>) -> Result<Vec<DaemonEvent>, StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(layout::META)?;
        meta.insert(layout::META_SCHEMA, CURRENT.to_be_bytes().as_slice())?;
    }
    for def in layout::ALL_BYTE_TABLES {
        txn.open_table(def)?;
    }
    txn.commit()?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    //! Opening a schema 1 file: `tests/fixtures/store-v1.redb` was written
    //! by the schema 1 drain (commit 11ccd3b) from [`fixture_script`],
    //! ticks 0..=40 at `BASE + k * STEP`, and not touched since. After the
    //! migration every answer must equal the script's ground truth, and a
    //! drain resuming on the migrated snapshot must neither lose nor double
    //! a byte.
    use std::collections::BTreeMap;
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::drain::Drain;
    use crate::model::{ProcessId, raw_to_ip};
    use crate::query::usage::{UsageQuery, usage};
    use crate::query::{AppRules, Dimension, Facts, GroupKey};
    use crate::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
    use crate::store::{Retention, Store, TimeMs, Traffic};

    const BASE: TimeMs = 1_710_026_000_000;
    const STEP: TimeMs = 7 * 60_000;

    /// The script the fixture was written from (do not change).
    fn fixture_script() -> Script {
        let mut b = ScriptBuilder::new(1000);
        let web = b.process(300, 7_000, "web", 0..=u64::MAX);
        let dns = b.process(53, 11, "resolved", 0..=u64::MAX);
        let curl = b.process(400, 8_000, "curl", 0..=30);
        b.socket(1, Some(web), None).flow(
            1,
            "93.184.216.34:443",
            0..=80,
            per_tick(3, 1400),
            per_tick(9, 12_000),
        );
        b.socket(2, Some(dns), None)
            .flow(2, "1.1.1.1:53", 5..=70, per_tick(1, 40), per_tick(1, 120))
            .flow(
                2,
                "[2606:4700::1111]:53",
                0..=80,
                per_tick(1, 40),
                per_tick(1, 140),
            )
            .flow(
                2,
                "127.0.0.1:5353",
                10..=60,
                per_tick(2, 30),
                per_tick(2, 30),
            );
        b.socket(3, Some(curl), Some(25)).flow(
            3,
            "192.168.1.20:8080",
            2..=24,
            per_tick(2, 500),
            per_tick(4, 4000),
        );
        b.socket(4, None, None)
            .flow(4, "10.1.2.3:9000", 0..=80, per_tick(1, 10), per_tick(1, 20));
        b.build().expect("valid script")
    }

    /// `netmon usage --by process` over all time.
    fn by_process(store: &mut Store) -> BTreeMap<ProcessId, Traffic> {
        let facts = Facts::load(store, &AppRules::default()).expect("facts");
        let q = UsageQuery {
            range: 0..u64::MAX / 2,
            by: Dimension::Process,
            filters: Vec::new(),
            class: None,
            limit: None,
        };
        usage(store, &facts, &q)
            .expect("usage")
            .groups
            .into_iter()
            .filter_map(|g| match g.key {
                GroupKey::Process(id) => Some((id, g.traffic)),
                _ => None,
            })
            .collect()
    }

    /// Per (process, address, port, protocol), directions summed: rows
    /// migrated without a direction and new ones with one add up. Read as
    /// remote answers read them ([`crate::query::edges::remote_totals`]).
    fn by_remote(store: &mut Store) -> BTreeMap<(ProcessId, IpAddr, u16, u8), Traffic> {
        let mut out: BTreeMap<(ProcessId, IpAddr, u16, u8), Traffic> = BTreeMap::new();
        let (totals, _) =
            crate::query::edges::remote_totals(store, &(0..u64::MAX / 2)).expect("remote rows");
        for (k, t) in totals {
            let ip = raw_to_ip(&k.addr, k.ip_version);
            let e = out.entry((k.process, ip, k.port, k.protocol)).or_default();
            *e = e.add(t);
        }
        out
    }

    #[test]
    fn a_schema_1_file_migrates_and_answers_the_same() {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.redb");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.redb");
        std::fs::copy(&fixture, &path).expect("copy fixture");
        let script = fixture_script();

        let (mut store, events) = Store::open(&path, Retention::default()).expect("migrates");
        assert_eq!(
            events,
            vec![
                DaemonEvent::Migration { from: 1, to: 2 },
                DaemonEvent::Migration { from: 2, to: 3 },
                DaemonEvent::Migration { from: 3, to: 4 },
                DaemonEvent::Migration { from: 4, to: 5 },
                DaemonEvent::Migration { from: 5, to: 6 },
                DaemonEvent::Migration { from: 6, to: 7 },
                DaemonEvent::Migration { from: 7, to: 8 }
            ]
        );
        let truth = script.truth(0..=40);
        assert_eq!(by_process(&mut store), truth.per_process);
        assert_eq!(by_remote(&mut store), truth.per_remote);
        let snapshot = store.load_snapshot().expect("snapshot");
        assert_eq!(snapshot.flows.len(), 5, "the open flows of tick 40");
        assert!(snapshot.flows.iter().all(|r| r.entry.pending.is_empty()));

        // The drain resumes on the migrated snapshot: exact to the end. The
        // simulated kernel as the fixture's run left it: the closed curl
        // socket (flow 4, silent after tick 24) was retired by tick 40.
        let state = dir.path().join("sim.state");
        std::fs::write(
            &state,
            r#"{"start_ms":0,"retired":{"4":40},"forgotten":[3]}"#,
        )
        .expect("sim state");
        let mut drain = Drain::new(&mut store).expect("drain");
        let mut source = SimSource::persistent(Arc::new(script.clone()), &state).expect("sim");
        let mut resolver = SimResolver::new(&script);
        for k in 41..=85u64 {
            source.set_tick(k);
            drain
                .step(
                    &mut source,
                    &mut resolver,
                    &mut store,
                    BASE + k * STEP,
                    Vec::new(),
                )
                .expect("step");
        }
        let truth = script.truth(0..=u64::MAX);
        assert_eq!(by_process(&mut store), truth.per_process);
        assert_eq!(by_remote(&mut store), truth.per_remote);
        drop(store);

        // Reopening the migrated file migrates nothing.
        let (_, events) = Store::open(&path, Retention::default()).expect("reopens");
        assert!(events.is_empty(), "{events:?}");
    }

    /// The script `tests/fixtures/store-v5.redb` was written from (do not
    /// change): TCP flows whose quality samples (one per flow and tick)
    /// the schema 5 drain stored one by one.
    fn quality_fixture_script() -> Script {
        use crate::source::sim::SimTcp;
        let mut b = ScriptBuilder::new(1000);
        let web = b.process(300, 7_000, "web", 0..=u64::MAX);
        let curl = b.process(400, 8_000, "curl", 0..=u64::MAX);
        // web: three connections to one service (one key), two RTTs.
        for (cookie, remote, ticks, srtt, data, retrans) in [
            (10, "93.184.216.34:443", 0..=40, 20_000, 100, 0),
            (11, "93.184.216.34:443", 5..=30, 20_000, 50, 1),
            (12, "93.184.216.34:443", 10..=20, 300_000, 80, 40),
            (13, "192.168.1.20:8080", 0..=40, 1_500, 10, 0),
        ] {
            b.socket(cookie, Some(web), None)
                .flow(cookie, remote, ticks, per_tick(3, 1400), per_tick(2, 100))
                .tcp(SimTcp {
                    srtt_us: srtt,
                    data_segs: data,
                    retrans_segs: retrans,
                });
        }
        b.socket(20, Some(curl), Some(25))
            .flow(
                20,
                "1.1.1.1:443",
                2..=24,
                per_tick(2, 500),
                per_tick(4, 4000),
            )
            .tcp(SimTcp {
                srtt_us: 45_000,
                data_segs: 7,
                retrans_segs: 2,
            });
        b.build().expect("valid script")
    }

    /// `tests/fixtures/store-v4.redb` was written by the schema 4 drain
    /// (commit f3ebc55) from [`fixture_script`], ticks 0..=40 at `BASE +
    /// k * STEP + 1234`, and not touched since: its remote rows (and the
    /// pending pieces of its snapshot) gain the "no name" byte; every
    /// answer is the script's ground truth, nothing is named.
    #[test]
    fn a_schema_4_file_migrates_to_named_remote_rows() {
        use crate::query::AppRules;
        use crate::query::facts::Facts;
        use crate::query::terms::{Dimension, GroupKey};
        use crate::query::usage::{UsageQuery, usage};
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v4.redb");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v4.redb");
        std::fs::copy(&fixture, &path).expect("copy fixture");
        let (mut store, events) = Store::open(&path, Retention::default()).expect("migrates");
        assert_eq!(
            events,
            vec![
                DaemonEvent::Migration { from: 4, to: 5 },
                DaemonEvent::Migration { from: 5, to: 6 },
                DaemonEvent::Migration { from: 6, to: 7 },
                DaemonEvent::Migration { from: 7, to: 8 }
            ]
        );
        let truth = fixture_script().truth(0..=40);
        assert_eq!(by_process(&mut store), truth.per_process);
        assert_eq!(by_remote(&mut store), truth.per_remote);
        let snapshot = store.load_snapshot().expect("snapshot");
        assert!(
            snapshot.flows.iter().any(|r| !r.entry.pending.is_empty()),
            "the fixture has pending pieces"
        );
        let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
        let answer = usage(
            &mut store,
            &facts,
            &UsageQuery {
                range: 0..u64::MAX / 2,
                by: Dimension::ServerName,
                filters: Vec::new(),
                class: None,
                limit: None,
            },
        )
        .expect("usage");
        let total = truth
            .per_process
            .values()
            .fold(Traffic::default(), |a, t| a.add(*t));
        assert_eq!(answer.groups.len(), 1);
        assert_eq!(answer.groups[0].key, GroupKey::ServerName(None));
        assert_eq!(answer.groups[0].traffic, total);
        {
            use redb::ReadableDatabase as _;
            let db = store.db().expect("db");
            let txn = db.begin_read().expect("read");
            for (old, _) in layout::REMOTE_TABLES_V3 {
                assert!(
                    matches!(
                        txn.open_table(old),
                        Err(redb::TableError::TableDoesNotExist(_))
                    ),
                    "{old} left behind"
                );
            }
        }
        drop(store);
        let (_, events) = Store::open(&path, Retention::default()).expect("reopens");
        assert!(events.is_empty(), "{events:?}");
    }

    /// `tests/fixtures/store-v5.redb` was written by the schema 5 drain
    /// (commit f24b3ca) from [`quality_fixture_script`], ticks 0..=40 at
    /// `BASE + k * STEP + 1234`, one quality sample per TCP flow and tick,
    /// and not touched since. Migrated to per key rows, `usage` gives per
    /// group what the script says: segment counts exact, the RTT median
    /// and 95th percentile of the samples (one per flow and tick it had
    /// packets: here one RTT value per flow, so exact), for windows read
    /// from the interval tier and from the rollups alike.
    #[test]
    fn a_schema_5_file_migrates_quality_to_per_key_rows() {
        use crate::query::usage::Quality;
        use crate::store::quality;
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v5.redb");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v5.redb");
        std::fs::copy(&fixture, &path).expect("copy fixture");
        let (mut store, events) = Store::open(&path, Retention::default()).expect("migrates");
        assert_eq!(
            events,
            vec![
                DaemonEvent::Migration { from: 5, to: 6 },
                DaemonEvent::Migration { from: 6, to: 7 },
                DaemonEvent::Migration { from: 7, to: 8 }
            ]
        );
        let script = quality_fixture_script();

        // The truth per remote address, from the script alone: per flow
        // (ticks it had packets within 0..=40) samples of its RTT and
        // that many ticks' segments.
        let mut truth: BTreeMap<IpAddr, (Vec<u32>, u64, u64)> = BTreeMap::new();
        for s in &script.sockets {
            for f in &s.flows {
                let tcp = f.tcp.expect("every fixture flow is TCP");
                let n = f.to.min(40) + 1 - f.from;
                let e = truth.entry(f.remote).or_default();
                e.0.extend(std::iter::repeat_n(
                    tcp.srtt_us,
                    usize::try_from(n).expect("small"),
                ));
                e.1 += u64::from(tcp.retrans_segs) * n;
                e.2 += u64::from(tcp.data_segs) * n;
            }
        }
        let check = |store: &mut Store, range: std::ops::Range<TimeMs>, what: &str| {
            let facts = Facts::load(store, &AppRules::default()).expect("facts");
            let answer = usage(
                store,
                &facts,
                &UsageQuery {
                    range,
                    by: Dimension::Remote,
                    filters: Vec::new(),
                    class: None,
                    limit: None,
                },
            )
            .expect("usage");
            assert_eq!(answer.groups.len(), truth.len(), "{what}: {answer:?}");
            for g in &answer.groups {
                let GroupKey::Remote(ip) = g.key else {
                    panic!("{what}: {:?}", g.key)
                };
                let (rtts, re, sent) = &truth[&ip];
                let mut rtts = rtts.clone();
                rtts.sort_unstable();
                let want = Quality {
                    rtt_p50_us: crate::query::usage::percentile(&rtts, 50),
                    rtt_p95_us: crate::query::usage::percentile(&rtts, 95),
                    samples: rtts.len() as u64,
                    retrans_segs: *re,
                    data_segs: *sent,
                };
                assert_eq!(g.quality.as_ref(), Some(&want), "{what}: {ip}");
            }
        };
        // From the interval rows (the window ends inside the last minute)
        // and from the day rollups (whole days).
        let last = BASE + 40 * STEP + 1234;
        check(&mut store, BASE..last + 1, "interval tier");
        check(&mut store, 0..u64::MAX / 2, "rollups");
        {
            use redb::ReadableDatabase as _;
            let db = store.db().expect("db");
            let txn = db.begin_read().expect("read");
            assert!(
                matches!(
                    txn.open_table(layout::QUALITY_V2),
                    Err(redb::TableError::TableDoesNotExist(_))
                ),
                "quality.v2 left behind"
            );
            use redb::ReadableTableMetadata as _;
            let rows = txn
                .open_table(quality::QUALITY_INTERVAL)
                .expect("interval tier")
                .len()
                .expect("len");
            assert_eq!(rows, 41, "one row per drain with a TCP sample");
        }
        drop(store);
        let (_, events) = Store::open(&path, Retention::default()).expect("reopens");
        assert!(events.is_empty(), "{events:?}");
    }

    /// A schema 2 file (six varints a counter set) built row by row: every
    /// table migrates to the eight-varint layout with `retrans_bytes` 0,
    /// the snapshot keeps its chunks and slots.
    #[test]
    fn a_schema_2_file_migrates_counters_and_snapshot() {
        use redb::ReadableDatabase as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v2.redb");
        let old = layout::Traffic2 {
            tx: layout::DirCounters2 {
                packets: 3,
                ip_bytes: 4_120,
                payload_bytes: 4_000,
            },
            rx: layout::DirCounters2 {
                packets: 2,
                ip_bytes: 80,
                payload_bytes: 0,
            },
        };
        let want: Traffic = old.into();
        let flow = netmon_common::FlowKey {
            cookie: 77,
            ip_version: 4,
            protocol: 6,
            remote_port: 443,
            ..netmon_common::FlowKey::default()
        };
        let id = ProcessId {
            pid: 42,
            start_ticks: 9,
        };
        let bucket = BASE - BASE % 60_000;
        {
            let db = redb::Database::create(&path).expect("creates");
            let txn = db.begin_write().expect("txn");
            {
                let mut meta = txn.open_table(layout::META).expect("meta");
                meta.insert(layout::META_SCHEMA, 2u32.to_be_bytes().as_slice())
                    .expect("version");
                let ov = layout::OverflowCounters2 {
                    tx: old.tx,
                    rx: old.rx,
                    failed_inserts: 5,
                };
                meta.insert(
                    layout::META_OVERFLOW,
                    layout::encode(&ov).expect("encodes").as_slice(),
                )
                .expect("overflow");
                let (proc_v1, _) = layout::TRAFFIC_TABLES_V2[0];
                let mut t = txn.open_table(proc_v1).expect("proc.minute.v1");
                let k = layout::encode_proc_key_v2(bucket, id, crate::store::DestClass::Lan);
                t.insert(
                    k.as_slice(),
                    layout::encode(&old).expect("encodes").as_slice(),
                )
                .expect("row");
                let mut t = txn.open_table(layout::INTERVAL_V1).expect("interval.v1");
                let rec = layout::IntervalRecord2 {
                    procs: vec![(42, 9, crate::store::DestClass::Lan.to_byte(), old)],
                    ifaces: vec![],
                };
                t.insert(
                    layout::time_key(BASE).as_slice(),
                    layout::encode(&rec).expect("encodes").as_slice(),
                )
                .expect("interval");
                // Chunk 1, slot offset 3: keys as schema 2 wrote them (no
                // base piece), counters as six varints and the flags byte.
                let mut keys = Vec::new();
                layout::encode_snap_keys_record_v3(
                    &mut keys,
                    3,
                    &flow,
                    &crate::store::SnapEntry {
                        first_boottime_ns: 5,
                        ..crate::store::SnapEntry::default()
                    },
                );
                let mut hot = Vec::new();
                for v in [3u8, 0x98, 0x20, 0xa0, 0x1f, 2, 80, 0, 0] {
                    hot.push(v);
                }
                let ck = layout::encode_chunk_key(1);
                txn.open_table(layout::SNAPSHOT_KEYS_V2)
                    .expect("keys.v2")
                    .insert(ck.as_slice(), keys.as_slice())
                    .expect("keys row");
                txn.open_table(layout::SNAPSHOT_V2)
                    .expect("snapshot.v2")
                    .insert(ck.as_slice(), hot.as_slice())
                    .expect("hot row");
            }
            txn.commit().expect("commit");
        }
        let (mut store, events) = Store::open(&path, Retention::default()).expect("migrates");
        assert_eq!(
            events,
            vec![
                DaemonEvent::Migration { from: 2, to: 3 },
                DaemonEvent::Migration { from: 3, to: 4 },
                DaemonEvent::Migration { from: 4, to: 5 },
                DaemonEvent::Migration { from: 5, to: 6 },
                DaemonEvent::Migration { from: 6, to: 7 },
                DaemonEvent::Migration { from: 7, to: 8 }
            ]
        );
        let snapshot = store.load_snapshot().expect("snapshot");
        assert_eq!(snapshot.flows.len(), 1);
        let r = &snapshot.flows[0];
        assert_eq!(
            (r.slot, r.key, r.entry.first_boottime_ns),
            (256 + 3, flow, 5)
        );
        assert_eq!(r.entry.counters, want);
        assert_eq!(snapshot.overflow.failed_inserts, 5);
        assert_eq!(snapshot.overflow.tx, want.tx);
        let db = store.db().expect("db");
        let txn = db.begin_read().expect("read");
        {
            let k = layout::encode_proc_key(bucket, id, crate::store::DestClass::Lan);
            let t = txn.open_table(layout::PROC_MINUTE).expect("proc.minute.v3");
            let v = t.get(k.as_slice()).expect("get").expect("migrated row");
            assert_eq!(layout::decode_traffic(v.value()).expect("decodes"), want);
            let t = txn.open_table(layout::INTERVAL).expect("interval.v2");
            let v = t
                .get(layout::time_key(BASE).as_slice())
                .expect("get")
                .expect("migrated interval");
            let rec: layout::IntervalRecord = layout::decode(v.value()).expect("decodes");
            assert_eq!(rec.procs[0].traffic, want);
        }
        for old in [
            layout::SNAPSHOT_V2,
            layout::SNAPSHOT_KEYS_V2,
            layout::INTERVAL_V1,
        ]
        .into_iter()
        .chain(layout::TRAFFIC_TABLES_V2.map(|(o, _)| o))
        .chain(layout::PROC_TABLES_V2.map(|(o, _)| o))
        {
            assert!(
                matches!(
                    txn.open_table(old),
                    Err(redb::TableError::TableDoesNotExist(_))
                ),
                "{old} left behind"
            );
        }
    }

    /// Every row of the per process, remote and quality rollup tables,
    /// decoded: `table key value-bytes`.
    fn rollup_rows(store: &mut Store) -> Vec<String> {
        use crate::store::quality;
        use redb::{ReadableDatabase as _, ReadableTable as _};
        let db = store.db().expect("db");
        let txn = db.begin_read().expect("read");
        let mut out = Vec::new();
        let tables = layout::PROC_TABLES_V2
            .iter()
            .map(|t| (t.1, 0))
            .chain(layout::REMOTE_TABLES_V4.iter().map(|t| (t.1, 1)))
            .chain(quality::QUALITY_TABLES_V3.iter().map(|t| (t.1, 2)));
        for (def, kind) in tables {
            let t = txn.open_table(def).expect("table");
            for row in t.iter().expect("iter") {
                let (k, v) = row.expect("row");
                let k = k.value();
                let key = match kind {
                    0 => format!("{:?}", layout::decode_proc_key(k).expect("proc key")),
                    1 => format!("{:?}", layout::decode_remote_key(k).expect("remote key")),
                    _ => format!("{:?}", layout::decode_quality_key(k).expect("quality key")),
                };
                out.push(format!("{def} {key} {:?}", v.value()));
            }
        }
        out
    }

    /// A schema 7 file (a current file whose rollup rows are written back
    /// in schema 7's tables and keys) migrates to the compact keys: the
    /// same rows, the same answers, no old table left, and a second open
    /// migrates nothing.
    #[test]
    fn a_schema_7_file_migrates_to_compact_keys() {
        use crate::source::sim::{SimResolver, SimSource};
        use crate::store::quality;
        use redb::ReadableTable as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v7.redb");
        let script = Arc::new(quality_fixture_script());
        let (mut store, _) = Store::open(&path, Retention::default()).expect("creates");
        {
            let mut source = SimSource::new(script.clone());
            let mut resolver = SimResolver::new(&script);
            let mut drain = Drain::new(&mut store).expect("drain");
            for k in 0..=40 {
                source.set_tick(k);
                let now = BASE + k * STEP + 1234;
                drain
                    .step(&mut source, &mut resolver, &mut store, now, Vec::new())
                    .expect("step");
            }
        }
        let rows = rollup_rows(&mut store);
        for (_, new) in layout::PROC_TABLES_V2
            .iter()
            .chain(&layout::REMOTE_TABLES_V4)
            .chain(&quality::QUALITY_TABLES_V3)
        {
            assert!(
                rows.iter().any(|r| r.starts_with(&format!("{new} "))),
                "no {new} rows to migrate"
            );
        }
        let procs = by_process(&mut store);
        let remotes = by_remote(&mut store);
        assert!(!procs.is_empty() && !remotes.is_empty());
        {
            let db = store.db().expect("db");
            let txn = db.begin_write().expect("write");
            let rekey = |old: layout::Bytes, new: layout::Bytes, f: &dyn Fn(&[u8]) -> Vec<u8>| {
                {
                    let from = txn.open_table(new).expect("new table");
                    let mut to = txn.open_table(old).expect("old table");
                    for row in from.iter().expect("iter") {
                        let (k, v) = row.expect("row");
                        to.insert(f(k.value()).as_slice(), v.value())
                            .expect("insert");
                    }
                }
                txn.delete_table(new).expect("delete");
            };
            for (old, new) in layout::PROC_TABLES_V2 {
                rekey(old, new, &|k| {
                    let (b, id, c) = layout::decode_proc_key(k).expect("proc key");
                    layout::encode_proc_key_v2(b, id, c).to_vec()
                });
            }
            for (old, new) in layout::REMOTE_TABLES_V4 {
                rekey(old, new, &|k| {
                    let (b, rk) = layout::decode_remote_key(k).expect("remote key");
                    layout::encode_remote_key_v4(b, &rk)
                });
            }
            for (old, new) in quality::QUALITY_TABLES_V3 {
                rekey(old, new, &|k| {
                    let (b, rk) = layout::decode_quality_key(k).expect("quality key");
                    layout::encode_remote_key_v3(b, &rk).to_vec()
                });
            }
            txn.open_table(layout::META)
                .expect("meta")
                .insert(layout::META_SCHEMA, 7u32.to_be_bytes().as_slice())
                .expect("version");
            txn.commit().expect("commit");
        }
        drop(store);
        let (mut store, events) = Store::open(&path, Retention::default()).expect("migrates");
        assert_eq!(events, vec![DaemonEvent::Migration { from: 7, to: 8 }]);
        assert_eq!(rollup_rows(&mut store), rows);
        assert_eq!(by_process(&mut store), procs);
        assert_eq!(by_remote(&mut store), remotes);
        {
            use redb::ReadableDatabase as _;
            let db = store.db().expect("db");
            let txn = db.begin_read().expect("read");
            for (old, _) in layout::PROC_TABLES_V2
                .iter()
                .chain(&layout::REMOTE_TABLES_V4)
                .chain(&quality::QUALITY_TABLES_V3)
            {
                assert!(
                    matches!(
                        txn.open_table(*old),
                        Err(redb::TableError::TableDoesNotExist(_))
                    ),
                    "{old} left behind"
                );
            }
        }
        drop(store);
        let (_, events) = Store::open(&path, Retention::default()).expect("reopens");
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.redb");
        drop(Store::open(&path, Retention::default()).expect("creates"));
        {
            let db = redb::Database::create(&path).expect("opens");
            let txn = db.begin_write().expect("txn");
            {
                let mut meta = txn.open_table(layout::META).expect("meta");
                meta.insert(layout::META_SCHEMA, (CURRENT + 1).to_be_bytes().as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let err = Store::open(&path, Retention::default()).expect_err("refused");
        assert!(
            matches!(err, StoreError::Open { ref source, .. }
                if matches!(**source, StoreError::NewerSchema { found, supported: CURRENT } if found == CURRENT + 1)),
            "{err}"
        );
    }
}
