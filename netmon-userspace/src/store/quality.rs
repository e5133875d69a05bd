//! TCP connection quality in the history, aggregated per remote key
//! (owner, remote address, service port, direction, IP version, protocol,
//! class: the remote rollups' key without the server name) before the
//! store sees it, so rows grow with owners × services × peers, not with
//! connections.
//!
//! The drain reads one [`QualitySample`] per TCP flow with packets in an
//! interval and adds it to a [`QualityAcc`]; the batch carries one
//! [`QualityRow`] per key. Per key and interval ([`QualityStats`]):
//! - `samples`: flow samples (flows × intervals), exact;
//! - `retrans_segs`, `data_segs`: summed exactly (u64);
//! - the smoothed RTTs of the samples that had one, as an [`RttHist`]: a
//!   log-bucketed histogram (64 buckets per power of two, exact below
//!   128 µs) plus the exact minimum and maximum. It merges by adding
//!   counts, so any window's p50/p95 is answered from the rows of its
//!   tiers; an answer is within 1/64 (1.6 %) of the nearest-rank sample
//!   value (the RTT is a gauge: a smoothed estimate whose own jitter is
//!   larger), and exact when every sample of a bucket is the minimum or
//!   the maximum (e.g. one RTT value per key).
//!
//! Tables (schema 6; created on first write, a store without them reads as
//! empty):
//! - [`QUALITY_INTERVAL`]: one row per drain with a sample, key drain time
//!   u64 BE, value postcard `Vec<`[`QualityRow`]`>`: a varint length, then
//!   per row pid varint, start_ticks varint, address (varint length, then
//!   the address bytes up to the last non-zero one), service port
//!   varint, ip_version u8, protocol u8, [`crate::model::DestClass`] u8,
//!   [`crate::model::ConnDir`] u8, then [`QualityStats`]: samples varint,
//!   retrans_segs varint, data_segs varint, RTT min varint, RTT max
//!   varint, bucket count varint, then per non-empty bucket (ascending)
//!   bucket index varint and count varint;
//! - [`QUALITY_MINUTE`], [`QUALITY_HOUR`], [`QUALITY_DAY`]: key (schema 8)
//!   [`crate::store::layout::encode_quality_key`]: bucket start u64 BE,
//!   then the remote key's fields as the remote rollups hold them
//!   ([`crate::store::layout::put_remote_key`]: varints, the address
//!   without its trailing zero bytes), no name; value postcard
//!   [`QualityStats`]; read-modify-write, in key order. Schemas 6 and 7
//!   had 42-byte keys ([`QUALITY_TABLES_V3`]).
//!
//! **Rollups once a minute** (schema 7): a commit writes the interval row
//! only; the rollup tiers get a minute's rows once the minute is over
//! (the first commit of a later minute), so a key's minute, hour and day
//! rows are rewritten once a minute instead of every interval. The
//! interval rows not yet rolled up are the pending state, crash-safe by
//! construction: [`crate::store::layout::META_QUALITY_ROLLED`] says that
//! every interval row before it is in the rollups and none at or after
//! it, and a flush adds rows to the rollups and moves that mark in one
//! transaction, so after a crash (or a lazy commit rolled back with the
//! rows it wrote) each row is in the rollups exactly once. The writer
//! keeps the pending rows aggregated per minute in memory ([`Pending`],
//! loaded from the interval rows at the mark when a handle opens);
//! readers add the pending interval rows to the rollup rows of their
//! buckets in the same read transaction ([`Store::quality_rows`]), as
//! remote answers add the snapshot's pending pieces. A row at a time
//! before the mark (the wall clock set back) goes to every tier at once;
//! rows about to be purged or cut by the size cap are flushed first.
//!
//! Every tier is written in the same transaction as the rest of the step
//! and purged with the per process tiers of the same width
//! ([`crate::store::retention::tables_of`]), so a window resolves to the
//! same segments ([`crate::query::scan::plan_for`]) for traffic and
//! quality.
use std::collections::BTreeMap;

use redb::{ReadableTable as _, TableDefinition};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::model::{ConnDir, DestClass, ProcessId};
use crate::store::layout::{self, Bytes};
use crate::store::query::Segment;
use crate::store::rollup::Tier;
use crate::store::types::{QualitySample, RemoteKey, TimeMs};
use crate::store::{Store, StoreError};

/// Interval rows (see the module docs).
pub const QUALITY_INTERVAL: Bytes = TableDefinition::new("quality.interval.v3");
/// Minute rollups (see the module docs).
pub const QUALITY_MINUTE: Bytes = TableDefinition::new("quality.minute.v4");
/// Hour rollups.
pub const QUALITY_HOUR: Bytes = TableDefinition::new("quality.hour.v4");
/// Day rollups.
pub const QUALITY_DAY: Bytes = TableDefinition::new("quality.day.v4");

/// Schemas 6 and 7's rollup tiers (42-byte keys,
/// [`layout::encode_remote_key_v3`]), each with the table that replaces
/// it; read only by the migration to schema 8.
pub const QUALITY_TABLES_V3: [(Bytes, Bytes); 3] = [
    (TableDefinition::new("quality.minute.v3"), QUALITY_MINUTE),
    (TableDefinition::new("quality.hour.v3"), QUALITY_HOUR),
    (TableDefinition::new("quality.day.v3"), QUALITY_DAY),
];

/// The quality table of `tier`.
#[must_use]
pub const fn table_of(tier: Tier) -> Bytes {
    match tier {
        Tier::Interval => QUALITY_INTERVAL,
        Tier::Minute => QUALITY_MINUTE,
        Tier::Hour => QUALITY_HOUR,
        Tier::Day => QUALITY_DAY,
    }
}

/// Buckets per power of two above [`EXACT_BELOW`]: a bucket spans at most
/// 1/64 of its lower bound.
const SUB: u32 = 64;
/// Values below this have a bucket each (exact).
const EXACT_BELOW: u32 = 2 * SUB;

/// The bucket of an RTT value, µs.
#[must_use]
pub const fn bucket_of(v: u32) -> u16 {
    if v < EXACT_BELOW {
        return v as u16;
    }
    let e = 31 - v.leading_zeros(); // 7..=31
    let shift = e - 6;
    let m = v >> shift; // 64..128
    // (e - 5) * 64 + (m - 64): continuous with the exact buckets; at most
    // 26 * 64 + 63 = 1727.
    ((e - 5) * SUB + (m - SUB)) as u16
}

/// The values of bucket `i`: `(lowest, width)`.
#[must_use]
pub const fn bucket_range(i: u16) -> (u32, u32) {
    let i = i as u32;
    if i < EXACT_BELOW {
        return (i, 1);
    }
    let (k, r) = (i / SUB, i % SUB);
    let shift = k - 1;
    ((SUB + r) << shift, 1 << shift)
}

/// Smoothed RTTs of a set of samples: a log-bucketed histogram (see the
/// module docs) with the exact minimum and maximum. Empty: no sample.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttHist {
    /// Smallest RTT, µs (0 when empty).
    pub min_us: u32,
    /// Largest RTT, µs.
    pub max_us: u32,
    /// `(bucket, count)`, buckets ascending, counts > 0.
    pub buckets: Vec<(u16, u64)>,
}

impl RttHist {
    /// Samples held.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.1).sum()
    }

    /// True without any sample.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Adds `n` samples of `v` µs.
    pub fn add(&mut self, v: u32, n: u64) {
        if n == 0 {
            return;
        }
        self.merge(&Self {
            min_us: v,
            max_us: v,
            buckets: vec![(bucket_of(v), n)],
        });
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Self) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other.clone();
            return;
        }
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        let mut out = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    out.push(**x);
                    a.next();
                }
                (_, Some(y)) => {
                    out.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    out.push(**x);
                    a.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = out;
    }

    /// The value reported for bucket `i`: the minimum in its bucket, else
    /// the maximum in its bucket, else the bucket's middle.
    #[must_use]
    pub fn value_of(&self, i: u16) -> u32 {
        if bucket_of(self.min_us) == i {
            return self.min_us;
        }
        if bucket_of(self.max_us) == i {
            return self.max_us;
        }
        let (lo, w) = bucket_range(i);
        (lo + w / 2).clamp(self.min_us, self.max_us)
    }

    /// `(value, count)` per bucket, ascending ([`Self::value_of`]).
    pub fn values(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.buckets.iter().map(|&(i, n)| (self.value_of(i), n))
    }

    /// The nearest-rank `p` percentile (0 < p <= 100), as
    /// [`crate::query::usage`] ranks sorted samples.
    #[must_use]
    pub fn percentile(&self, p: u64) -> Option<u32> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = p.saturating_mul(n).div_ceil(100).max(1);
        let mut seen = 0u64;
        for &(i, c) in &self.buckets {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(self.value_of(i));
            }
        }
        Some(self.max_us)
    }
}

/// One key's quality over an interval or a rollup bucket (see the module
/// docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityStats {
    /// Flow samples (flows × intervals), with or without an RTT.
    pub samples: u64,
    /// Segments retransmitted.
    pub retrans_segs: u64,
    /// Data segments sent, retransmissions included.
    pub data_segs: u64,
    /// Smoothed RTTs of the samples that had one.
    pub rtt: RttHist,
}

impl QualityStats {
    /// Adds `other` (counts summed, histograms merged).
    pub fn merge(&mut self, other: &Self) {
        self.samples = self.samples.saturating_add(other.samples);
        self.retrans_segs = self.retrans_segs.saturating_add(other.retrans_segs);
        self.data_segs = self.data_segs.saturating_add(other.data_segs);
        self.rtt.merge(&other.rtt);
    }

    /// Adds one flow's sample.
    pub fn add_sample(&mut self, s: &QualitySample) {
        self.samples = self.samples.saturating_add(1);
        self.retrans_segs = self.retrans_segs.saturating_add(u64::from(s.retrans_segs));
        self.data_segs = self.data_segs.saturating_add(u64::from(s.data_segs));
        if s.srtt_us > 0 {
            self.rtt.add(s.srtt_us, 1);
        }
    }
}

/// One key's stats in a [`QUALITY_INTERVAL`] row or a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityRow {
    /// Owner pid (0: unattributed).
    pub pid: u32,
    /// Owner start time, clock ticks.
    pub start_ticks: u64,
    /// Remote address, kernel encoding; stored without its trailing zero
    /// bytes ([`trimmed`]: an IPv4 address takes 5 bytes, not 16).
    #[serde(with = "trimmed")]
    pub addr: [u8; 16],
    /// Service port ([`crate::model::service`]).
    pub port: u16,
    /// IP version.
    pub ip_version: u8,
    /// IP protocol number.
    pub protocol: u8,
    /// [`DestClass`] byte.
    pub class: u8,
    /// [`ConnDir`] byte.
    pub dir: u8,
    /// The stats.
    pub stats: QualityStats,
}

/// A 16-byte address as postcard bytes without its trailing zero bytes (a
/// varint length 0..=16, then the bytes); read back zero-padded, so every
/// address round-trips (IPv4 in the kernel encoding takes 5 bytes).
mod trimmed {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(a: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        let len = a.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        s.serialize_bytes(&a[..len])
    }

    struct V;

    impl de::Visitor<'_> for V {
        type Value = [u8; 16];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("at most 16 address bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            let mut a = [0u8; 16];
            a.get_mut(..v.len())
                .ok_or_else(|| E::invalid_length(v.len(), &self))?
                .copy_from_slice(v);
            Ok(a)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        d.deserialize_bytes(V)
    }
}

impl QualityRow {
    /// The row's remote key (no server name); `None` for an unknown class
    /// or direction byte.
    #[must_use]
    pub fn remote_key(&self) -> Option<RemoteKey> {
        Some(RemoteKey {
            process: ProcessId {
                pid: self.pid,
                start_ticks: self.start_ticks,
            },
            addr: self.addr,
            port: self.port,
            dir: ConnDir::from_byte(self.dir)?,
            ip_version: self.ip_version,
            protocol: self.protocol,
            class: DestClass::from_byte(self.class)?,
            name: crate::store::names::NameId::NONE,
        })
    }

    fn of(k: &RemoteKey, stats: QualityStats) -> Self {
        Self {
            pid: k.process.pid,
            start_ticks: k.process.start_ticks,
            addr: k.addr,
            port: k.port,
            ip_version: k.ip_version,
            protocol: k.protocol,
            class: k.class.to_byte(),
            dir: k.dir.to_byte(),
            stats,
        }
    }
}

/// Flow samples of one interval, aggregated per remote key (the drain's
/// quality phase and the migration from per flow samples).
#[derive(Clone, Debug, Default)]
pub struct QualityAcc {
    by_key: FxHashMap<RemoteKey, QualityStats>,
}

impl QualityAcc {
    /// Adds one flow's sample (skipped when its class or direction byte is
    /// unknown, as readers of per flow samples skipped it).
    pub fn add(&mut self, s: &QualitySample) {
        if let Some(k) = s.remote_key() {
            self.by_key.entry(k).or_default().add_sample(s);
        }
    }

    /// True without any sample.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The rows, in key order; the accumulator is left empty.
    pub fn take_rows(&mut self) -> Vec<QualityRow> {
        let mut v: Vec<(RemoteKey, QualityStats)> = self.by_key.drain().collect();
        v.sort_unstable_by_key(|a| a.0);
        v.into_iter().map(|(k, s)| QualityRow::of(&k, s)).collect()
    }
}

/// Writes `rows` (one drain's, at `ts`) in `txn` straight into every
/// tier: the interval row (merged with one already at `ts`) and the
/// rollups (schema 6's write, which the migration from schema 5 makes).
///
/// # Errors
/// On storage errors.
pub fn write(
    txn: &redb::WriteTransaction,
    ts: TimeMs,
    rows: &[QualityRow],
) -> Result<(), StoreError> {
    write_interval(txn, ts, rows)?;
    let mut minute = PerMinute::new();
    add_rows(&mut minute, ts, rows);
    add_to_rollups(txn, &minute)
}

/// Stats per UTC minute start and remote key.
type PerMinute = BTreeMap<TimeMs, FxHashMap<RemoteKey, QualityStats>>;

fn add_rows(acc: &mut PerMinute, ts: TimeMs, rows: &[QualityRow]) {
    let m = acc.entry(Tier::Minute.bucket(ts)).or_default();
    for r in rows {
        if let Some(k) = r.remote_key() {
            m.entry(k).or_default().merge(&r.stats);
        }
    }
}

/// Inserts (or merges into the one already at `ts`) the interval row.
fn write_interval(
    txn: &redb::WriteTransaction,
    ts: TimeMs,
    rows: &[QualityRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut t = txn.open_table(QUALITY_INTERVAL)?;
    let key = layout::time_key(ts);
    let mut all: Vec<QualityRow> = match t.get(key.as_slice())? {
        Some(v) => layout::decode(v.value())?,
        None => Vec::new(),
    };
    all.extend_from_slice(rows);
    t.insert(key.as_slice(), layout::encode(&all)?.as_slice())?;
    Ok(())
}

/// Adds `minutes` to the minute, hour and day rows (read-modify-write,
/// in key order, each row once).
fn add_to_rollups(txn: &redb::WriteTransaction, minutes: &PerMinute) -> Result<(), StoreError> {
    if minutes.values().all(FxHashMap::is_empty) {
        return Ok(());
    }
    for tier in Tier::ROLLUPS {
        let mut keyed: BTreeMap<Vec<u8>, QualityStats> = BTreeMap::new();
        for (minute, keys) in minutes {
            let bucket = tier.bucket(*minute);
            for (k, s) in keys {
                keyed
                    .entry(layout::encode_quality_key(bucket, k))
                    .or_default()
                    .merge(s);
            }
        }
        let mut t = txn.open_table(table_of(tier))?;
        for (k, s) in keyed {
            let mut old: QualityStats = match t.get(k.as_slice())? {
                Some(v) => layout::decode(v.value())?,
                None => QualityStats::default(),
            };
            old.merge(&s);
            t.insert(k.as_slice(), layout::encode(&old)?.as_slice())?;
        }
    }
    Ok(())
}

/// The mark ([`layout::META_QUALITY_ROLLED`]) as committed in `meta`.
fn read_mark(
    meta: &impl redb::ReadableTable<&'static str, &'static [u8]>,
) -> Result<TimeMs, StoreError> {
    Ok(meta
        .get(layout::META_QUALITY_ROLLED)?
        .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// The quality interval rows not yet in the rollups (see the module
/// docs): the writer's in-memory copy of what the interval rows at or
/// after the mark hold, aggregated per minute. Valid only for the handle
/// and committed state it was loaded or updated with: the store drops it
/// when a transaction that changed it fails and when it reopens the file.
#[derive(Debug, Default)]
pub struct Pending {
    /// Interval rows at or after this time are pending.
    mark: TimeMs,
    /// Their stats per minute and key.
    minutes: PerMinute,
}

impl Pending {
    /// Loads the pending rows as committed (in a write transaction, so
    /// nothing commits in between).
    ///
    /// # Errors
    /// On storage errors.
    pub fn load(txn: &redb::WriteTransaction) -> Result<Self, StoreError> {
        let mark = read_mark(&txn.open_table(layout::META)?)?;
        let mut minutes = PerMinute::new();
        let t = txn.open_table(QUALITY_INTERVAL)?;
        for row in t.range(layout::time_key(mark).as_slice()..)? {
            let (k, v) = row?;
            let rows: Vec<QualityRow> = layout::decode(v.value())?;
            add_rows(&mut minutes, layout::key_time(k.value())?, &rows);
        }
        Ok(Self { mark, minutes })
    }

    /// The pending rows of `slot`, loaded in `txn` unless already held.
    ///
    /// # Errors
    /// On storage errors.
    pub fn of<'a>(
        slot: &'a mut Option<Self>,
        txn: &redb::WriteTransaction,
    ) -> Result<&'a mut Self, StoreError> {
        if slot.is_none() {
            *slot = Some(Self::load(txn)?);
        }
        slot.as_mut().ok_or(StoreError::NotNetmon)
    }

    /// One drain's rows at `ts`: flushes the minutes before `ts`'s (they
    /// are over), writes the interval row, and holds the rows until their
    /// minute is over; rows before the mark go to every tier at once.
    ///
    /// # Errors
    /// On storage errors.
    pub fn commit(
        &mut self,
        txn: &redb::WriteTransaction,
        ts: TimeMs,
        rows: &[QualityRow],
    ) -> Result<(), StoreError> {
        self.flush_before(txn, Tier::Minute.bucket(ts))?;
        if rows.is_empty() {
            return Ok(());
        }
        if ts < self.mark {
            return write(txn, ts, rows);
        }
        write_interval(txn, ts, rows)?;
        add_rows(&mut self.minutes, ts, rows);
        Ok(())
    }

    /// Adds the pending rows of every minute that starts before `until`
    /// to the rollups, and moves the mark to the end of the last of those
    /// minutes (nothing is written when no such row is pending). Called
    /// with a whole minute in [`Self::commit`], and with a purge's or the
    /// size cap's cutoff before interval rows are deleted (every row before
    /// the cutoff is then in the rollups).
    ///
    /// # Errors
    /// On storage errors.
    pub fn flush_before(
        &mut self,
        txn: &redb::WriteTransaction,
        until: TimeMs,
    ) -> Result<(), StoreError> {
        let until = until.div_ceil(60_000).saturating_mul(60_000);
        if self
            .minutes
            .first_key_value()
            .is_none_or(|(m, _)| *m >= until)
        {
            return Ok(());
        }
        let later = self.minutes.split_off(&until);
        let due = std::mem::replace(&mut self.minutes, later);
        add_to_rollups(txn, &due)?;
        self.mark = self.mark.max(until);
        txn.open_table(layout::META)?.insert(
            layout::META_QUALITY_ROLLED,
            self.mark.to_be_bytes().as_slice(),
        )?;
        Ok(())
    }
}

impl Store {
    /// Calls `f(time key, remote key, stats)` with every quality row whose
    /// time key lies in `segments` (one read transaction): interval rows at
    /// their drain time, rollup rows at their bucket start, and in rollup
    /// segments the interval rows not yet rolled up at their bucket's start
    /// (see the module docs).
    ///
    /// # Errors
    /// On storage errors.
    pub fn quality_rows(
        &mut self,
        segments: &[Segment],
        mut f: impl FnMut(TimeMs, &RemoteKey, &QualityStats),
    ) -> Result<(), StoreError> {
        let txn = self.reader()?.begin_read()?;
        // The interval rows not yet in the rollups, added to the rollup
        // segments their buckets fall in (see the module docs).
        let mut pending: Vec<(TimeMs, Vec<QualityRow>)> = Vec::new();
        if segments.iter().any(|s| s.tier != Tier::Interval) {
            let mark = read_mark(&txn.open_table(layout::META)?)?;
            match txn.open_table(QUALITY_INTERVAL) {
                Ok(t) => {
                    for row in t.range(layout::time_key(mark).as_slice()..)? {
                        let (k, v) = row?;
                        pending.push((layout::key_time(k.value())?, layout::decode(v.value())?));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for seg in segments {
            if seg.tier != Tier::Interval {
                for (ts, rows) in &pending {
                    let bucket = seg.tier.bucket(*ts);
                    if (seg.from..seg.to).contains(&bucket) {
                        for r in rows {
                            if let Some(rk) = r.remote_key() {
                                f(bucket, &rk, &r.stats);
                            }
                        }
                    }
                }
            }
            let t = match txn.open_table(table_of(seg.tier)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
            for row in t.range(from.as_slice()..to.as_slice())? {
                let (k, v) = row?;
                if seg.tier == Tier::Interval {
                    let ts = layout::key_time(k.value())?;
                    let rows: Vec<QualityRow> = layout::decode(v.value())?;
                    for r in &rows {
                        if let Some(rk) = r.remote_key() {
                            f(ts, &rk, &r.stats);
                        }
                    }
                } else {
                    let (ts, rk) = layout::decode_quality_key(k.value())?;
                    let s: QualityStats = layout::decode(v.value())?;
                    f(ts, &rk, &s);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_continuous_and_within_a_64th() {
        let mut last = 0u16;
        let mut v = 1u32;
        while v < u32::MAX / 2 {
            let i = bucket_of(v);
            assert!(i == last || i == last + 1, "{v}: bucket {i} after {last}");
            let (lo, w) = bucket_range(i);
            assert!(lo <= v && v - lo < w, "{v} not in bucket {i} ({lo}, {w})");
            assert!(
                u64::from(w) * 64 <= u64::from(lo).max(64),
                "{v}: width {w} at {lo}"
            );
            last = i;
            v = if v < 100_000 { v + 1 } else { v + v / 1000 };
        }
        assert_eq!(bucket_of(127), 127);
        assert!(bucket_of(u32::MAX) <= 1727);
    }

    #[test]
    fn percentiles_match_nearest_rank_within_a_64th() {
        let mut rng = fastrand::Rng::with_seed(9);
        for round in 0..200 {
            let n = rng.usize(1..300);
            let mut v: Vec<u32> = (0..n)
                .map(|_| match round % 3 {
                    0 => rng.u32(1..200),
                    1 => rng.u32(100..2_000_000),
                    _ => 20_000 + rng.u32(0..3) * 1000,
                })
                .collect();
            // Built in three parts and merged: the same as one histogram.
            let mut h = RttHist::default();
            for part in v.chunks(n / 3 + 1) {
                let mut p = RttHist::default();
                for x in part {
                    p.add(*x, 1);
                }
                h.merge(&p);
            }
            v.sort_unstable();
            assert_eq!(h.count(), n as u64);
            assert_eq!((h.min_us, h.max_us), (v[0], v[n - 1]));
            for p in [1, 50, 95, 100] {
                let truth = crate::query::usage::percentile(&v, p).expect("non-empty");
                let got = h.percentile(p).expect("non-empty");
                let err = f64::from(got.abs_diff(truth)) / f64::from(truth);
                assert!(err <= 1.0 / 64.0, "p{p} of {v:?}: {got} vs {truth}");
            }
            assert_eq!(h.percentile(100), Some(v[n - 1]));
        }
        assert_eq!(RttHist::default().percentile(50), None);
    }

    #[test]
    fn one_value_per_key_is_exact_and_rows_round_trip() {
        let mut h = RttHist::default();
        h.add(20_000, 5);
        h.add(300_000, 1);
        assert_eq!(h.percentile(50), Some(20_000));
        assert_eq!(h.percentile(95), Some(300_000));
        let s = QualityStats {
            samples: 7,
            retrans_segs: 40,
            data_segs: 600,
            rtt: h,
        };
        let back: QualityStats =
            layout::decode(&layout::encode(&s).expect("encodes")).expect("decodes");
        assert_eq!(back, s);
        for addr in [
            [0u8; 16],
            [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0xfe; 16],
        ] {
            let row = QualityRow {
                pid: 1,
                start_ticks: 2,
                addr,
                port: 443,
                ip_version: 4,
                protocol: 6,
                class: 1,
                dir: 1,
                stats: s.clone(),
            };
            let bytes = layout::encode(&row).expect("encodes");
            let back: QualityRow = layout::decode(&bytes).expect("decodes");
            assert_eq!(back, row);
            if addr[1] == 0 && addr[0] == 10 {
                // pid, ticks, then 4 address bytes after their length.
                assert_eq!(&bytes[2..7], &[4, 10, 0, 0, 1]);
            }
        }
    }
}
