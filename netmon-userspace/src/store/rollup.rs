//! Rollup tiers and how one interval's deltas are added to them.
//!
//! Every delta is added to **every** per process, interface and machine tier
//! in the same write transaction that advances the snapshot (see
//! [`crate::store::Store::commit`]). So at any committed state, for any set
//! of whole buckets, the sum over interval samples = minute = hour = day
//! rollups, exactly — no background job can be behind, and a crash can't
//! leave one tier ahead of another.
//!
//! The per remote tiers are the exception, for write cost: a flow's bytes
//! wait in its snapshot entry ([`crate::store::RemotePending`]) and are
//! added to `REMOTE_MINUTE`, `REMOTE_HOUR` and `REMOTE_DAY` together, at
//! the minute they were counted in, once that minute is over (or the flow
//! leaves). Rows plus the committed snapshot's pending pieces are exact at
//! every committed state, and the three remote tiers always hold the same
//! flushed bytes.
//! Each interval sample at time `t` belongs to the minute bucket
//! `t - t % 60_000`, which lies in the hour bucket `t - t % 3_600_000`, and
//! so on (UTC-aligned, so every coarser bucket is a union of finer ones).
use std::collections::HashMap;

use redb::{ReadableTable as _, Table};

use crate::model::DestClass;
use crate::model::ProcessId;
use crate::store::StoreError;
use crate::store::layout::{self, Bytes, IntervalIface, IntervalProc, IntervalRecord};
use crate::store::types::{Batch, RemoteKey, TimeMs, Traffic};

/// Resolution tiers, finest first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// One sample per drain.
    Interval,
    /// UTC minutes.
    Minute,
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
}

impl Tier {
    /// All tiers, finest first.
    pub const ALL: [Self; 4] = [Self::Interval, Self::Minute, Self::Hour, Self::Day];
    /// The rollup tiers.
    pub const ROLLUPS: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// Bucket width in ms (`None` for the interval tier, whose rows are at
    /// drain times).
    #[must_use]
    pub const fn width_ms(self) -> Option<u64> {
        match self {
            Self::Interval => None,
            Self::Minute => Some(60_000),
            Self::Hour => Some(3_600_000),
            Self::Day => Some(86_400_000),
        }
    }

    /// The bucket `ts` falls into.
    #[must_use]
    pub const fn bucket(self, ts: TimeMs) -> TimeMs {
        match self.width_ms() {
            Some(w) => ts - ts % w,
            None => ts,
        }
    }

    /// Name (`interval`, `minute`, `hour`, `day`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The per process table of a rollup tier (`None` for the interval tier,
    /// which lives in [`layout::INTERVAL`]).
    #[must_use]
    pub const fn proc_table(self) -> Option<Bytes> {
        match self {
            Self::Interval => None,
            Self::Minute => Some(layout::PROC_MINUTE),
            Self::Hour => Some(layout::PROC_HOUR),
            Self::Day => Some(layout::PROC_DAY),
        }
    }

    /// The per remote table (minute, hour and day; none per interval).
    #[must_use]
    pub const fn remote_table(self) -> Option<Bytes> {
        match self {
            Self::Minute => Some(layout::REMOTE_MINUTE),
            Self::Hour => Some(layout::REMOTE_HOUR),
            Self::Day => Some(layout::REMOTE_DAY),
            Self::Interval => None,
        }
    }

    /// The per interface table.
    #[must_use]
    pub const fn iface_table(self) -> Option<Bytes> {
        match self {
            Self::Interval => None,
            Self::Minute => Some(layout::IFACE_MINUTE),
            Self::Hour => Some(layout::IFACE_HOUR),
            Self::Day => Some(layout::IFACE_DAY),
        }
    }

    /// The machine totals table.
    #[must_use]
    pub const fn machine_table(self) -> Option<Bytes> {
        match self {
            Self::Interval => None,
            Self::Minute => Some(layout::MACHINE_MINUTE),
            Self::Hour => Some(layout::MACHINE_HOUR),
            Self::Day => Some(layout::MACHINE_DAY),
        }
    }
}

/// Adds every `(key, delta)` (read-modify-write), in key order: B-tree
/// updates in order touch each page once, which is several times faster than
/// random order for large batches.
fn add_all<K: AsRef<[u8]> + Ord>(
    table: &mut Table<&[u8], &[u8]>,
    mut rows: Vec<(K, Traffic)>,
) -> Result<(), StoreError> {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, d) in rows {
        add_to(table, k.as_ref(), d)?;
    }
    Ok(())
}

/// Adds `delta` to the value under `key` (read-modify-write).
fn add_to(table: &mut Table<&[u8], &[u8]>, key: &[u8], delta: Traffic) -> Result<(), StoreError> {
    let old = match table.get(key)? {
        Some(v) => layout::decode_traffic(v.value())?,
        None => Traffic::default(),
    };
    table.insert(key, layout::encode(&old.add(delta))?.as_slice())?;
    Ok(())
}

/// Machine totals of a batch, per class.
fn machine_rows(batch: &Batch) -> HashMap<DestClass, Traffic> {
    let mut out: HashMap<DestClass, Traffic> = HashMap::new();
    for (_, class, t) in &batch.proc_rows {
        let e = out.entry(*class).or_default();
        *e = e.add(*t);
    }
    out
}

/// Writes the interval sample and adds the batch to every rollup tier.
///
/// # Errors
/// On storage errors.
pub fn apply(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    write_interval(txn, batch)?;
    let machine = machine_rows(batch);
    for tier in Tier::ROLLUPS {
        let bucket = tier.bucket(batch.ts_ms);
        if let Some(def) = tier.proc_table() {
            let mut t = txn.open_table(def)?;
            add_all(
                &mut t,
                batch
                    .proc_rows
                    .iter()
                    .map(|(id, c, d)| (layout::encode_proc_key(bucket, *id, *c), *d))
                    .collect(),
            )?;
        }
        if let Some(def) = tier.remote_table() {
            // Remote rows carry their own minute (flushed pending pieces,
            // see `RemotePending`), not the batch's time.
            let mut t = txn.open_table(def)?;
            add_all(
                &mut t,
                batch
                    .remote_rows
                    .iter()
                    .map(|(minute, k, d)| (layout::encode_remote_key(tier.bucket(*minute), k), *d))
                    .collect(),
            )?;
        }
        if let Some(def) = tier.iface_table() {
            let mut t = txn.open_table(def)?;
            for (ifindex, class, d) in &batch.iface_rows {
                add_to(
                    &mut t,
                    &layout::encode_iface_key(bucket, *ifindex, *class),
                    *d,
                )?;
            }
        }
        if let Some(def) = tier.machine_table() {
            let mut t = txn.open_table(def)?;
            for (class, d) in &machine {
                add_to(&mut t, &layout::encode_machine_key(bucket, *class), *d)?;
            }
        }
    }
    Ok(())
}

/// Inserts (or, for a repeated drain time, merges into) the interval row.
fn write_interval(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if batch.proc_rows.is_empty() && batch.iface_rows.is_empty() {
        return Ok(());
    }
    let mut t = txn.open_table(layout::INTERVAL)?;
    let key = layout::time_key(batch.ts_ms);
    let mut rec: IntervalRecord = match t.get(key.as_slice())? {
        Some(v) => layout::decode(v.value())?,
        None => IntervalRecord::default(),
    };
    rec.procs.extend(
        batch
            .proc_rows
            .iter()
            .map(|(id, class, traffic)| IntervalProc {
                pid: id.pid,
                start_ticks: id.start_ticks,
                class: class.to_byte(),
                traffic: *traffic,
            }),
    );
    rec.ifaces.extend(
        batch
            .iface_rows
            .iter()
            .map(|(ifindex, class, traffic)| IntervalIface {
                ifindex: *ifindex,
                class: class.to_byte(),
                traffic: *traffic,
            }),
    );
    t.insert(key.as_slice(), layout::encode(&rec)?.as_slice())?;
    Ok(())
}

/// Helper for readers: the process of an interval row.
#[must_use]
pub const fn interval_process(p: &IntervalProc) -> ProcessId {
    ProcessId {
        pid: p.pid,
        start_ticks: p.start_ticks,
    }
}

/// Helper for readers: a remote key's process.
#[must_use]
pub const fn remote_process(k: &RemoteKey) -> ProcessId {
    k.process
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_nest() {
        let t = 1_700_000_123_456;
        assert_eq!(Tier::Interval.bucket(t), t);
        let m = Tier::Minute.bucket(t);
        let h = Tier::Hour.bucket(t);
        let d = Tier::Day.bucket(t);
        assert!(d <= h && h <= m && m <= t);
        assert_eq!(Tier::Hour.bucket(m), h);
        assert_eq!(Tier::Day.bucket(h), d);
        assert_eq!(m % 60_000, 0);
        assert!(t - m < 60_000);
    }
}
