//! The store's read pieces: the plan of a time range over the tiers
//! ([`plan`]), process records, daemon events and the
//! snapshot's pending remote pieces. Returns plain data; grouping, filters
//! and windows are [`crate::query`]'s (the one read path every reader
//! takes: CLI, socket API, dashboard, exporter, alerts and the tests).
//!
//! Totals over a range are answered from the coarsest tiers that fit
//! ([`plan`]): whole days from the day tier, whole hours from the hour tier,
//! and so on down to interval samples for the edges, so `--since 30d` reads
//! about 30 day rows per process plus the edges. Where a finer tier has been
//! purged (see [`Store::purged_before`]) the edge is rounded outward to the
//! enclosing bucket of the finest tier still kept. Remote endpoints are kept
//! at minute, hour and day resolution, so their ranges round outward to
//! minutes (`crate::query::edges` resolves edge minutes further).
//!
//! Remote answers are the `REMOTE_*` rows **plus** the pending pieces of the
//! committed snapshot ([`pending_remote_rows`], read in the same read
//! transaction), each counted as if it were a row keyed at its minute
//! (minute tier), that minute's hour (hour tier) or day (day tier): the
//! drain flushes a piece into the rows in the same commit that clears it
//! from the snapshot, so every byte is in exactly one of the two, and the
//! current minute is included.
use std::collections::BTreeMap;

use redb::ReadableTable as _;

use crate::model::{ProcessId, TimeMs, TimeRange, Traffic};
use crate::store::layout;
use crate::store::rollup::Tier;
use crate::store::types::{DaemonEvent, ProcessRecord, RemoteKey};
use crate::store::{Store, StoreError};

/// A piece of a query: rows of `tier` whose time key is in `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Tier read.
    pub tier: Tier,
    /// First key time.
    pub from: TimeMs,
    /// Key times below this.
    pub to: TimeMs,
}

/// Splits `range` into segments read from the coarsest tiers that fit whole
/// buckets, `finest` being the finest tier available for the data kind and
/// `purged(t)` the time before which tier `t` may have lost rows.
#[must_use]
pub fn plan(range: &TimeRange, finest: Tier, purged: &dyn Fn(Tier) -> TimeMs) -> Vec<Segment> {
    let tiers: Vec<Tier> = Tier::ALL
        .iter()
        .rev()
        .copied()
        .filter(|t| *t >= finest)
        .collect();
    let mut out = Vec::new();
    if range.start >= range.end {
        return out;
    }
    if !plan_into(range.start, range.end, &tiers, purged, &mut out) {
        // Not even the coarsest tier covers the start: read what is there.
        if let Some(&coarsest) = tiers.first() {
            out.push(Segment {
                tier: coarsest,
                from: coarsest.bucket(range.start),
                to: range.end,
            });
        }
    }
    out
}

/// Plans `[a, b)` with `tiers` (coarse → fine); false when no tier keeps `a`.
fn plan_into(
    a: TimeMs,
    b: TimeMs,
    tiers: &[Tier],
    purged: &dyn Fn(Tier) -> TimeMs,
    out: &mut Vec<Segment>,
) -> bool {
    let Some((&tier, finer)) = tiers.split_first() else {
        return false;
    };
    let Some(w) = tier.width_ms() else {
        // Interval tier: exact, if kept.
        if a >= purged(tier) {
            out.push(Segment {
                tier,
                from: a,
                to: b,
            });
            return true;
        }
        return false;
    };
    let lo = a.div_ceil(w).saturating_mul(w);
    let hi = b - b % w;
    let outward = |out: &mut Vec<Segment>, x: TimeMs, y: TimeMs| {
        let from = tier.bucket(x);
        if from >= purged(tier) {
            out.push(Segment { tier, from, to: y });
            true
        } else {
            false
        }
    };
    let edge = |out: &mut Vec<Segment>, x: TimeMs, y: TimeMs| -> bool {
        if x >= y {
            return true;
        }
        if !finer.is_empty() && plan_into(x, y, finer, purged, out) {
            return true;
        }
        outward(out, x, y)
    };
    if lo < hi && lo >= purged(tier) {
        out.push(Segment {
            tier,
            from: lo,
            to: hi,
        });
        let left = edge(out, a, lo);
        let right = edge(out, hi, b);
        left && right
    } else {
        edge(out, a, b)
    }
}

impl Store {
    /// All process records, by identity.
    fn process_map(&mut self) -> Result<BTreeMap<ProcessId, ProcessRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(layout::PROCESSES)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let rec: ProcessRecord =
                serde_json::from_slice(v.value()).map_err(layout::LayoutError::from)?;
            out.insert(layout::decode_process(k.value())?, rec);
        }
        Ok(out)
    }

    /// Processes seen with traffic in `range` (by first/last seen; last seen
    /// has minute resolution).
    ///
    /// # Errors
    /// On storage errors.
    pub fn processes(&mut self, range: &TimeRange) -> Result<Vec<ProcessRecord>, StoreError> {
        let start_minute = Tier::Minute.bucket(range.start);
        Ok(self
            .process_map()?
            .into_values()
            .filter(|r| r.first_seen_ms < range.end && r.last_seen_ms >= start_minute)
            .collect())
    }

    /// Daemon events in `range`, oldest first.
    ///
    /// # Errors
    /// On storage errors.
    pub fn events(&mut self, range: &TimeRange) -> Result<Vec<(TimeMs, DaemonEvent)>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(layout::EVENTS)?;
        let (from, to) = (layout::time_key(range.start), layout::time_key(range.end));
        let mut out = Vec::new();
        for row in table.range(from.as_slice()..to.as_slice())? {
            let (k, v) = row?;
            let ev = serde_json::from_slice(v.value()).map_err(layout::LayoutError::from)?;
            out.push((layout::key_time(k.value())?, ev));
        }
        Ok(out)
    }
}

/// The pending remote bytes of the committed snapshot: `(UTC minute start,
/// key, bytes)` per piece (see [`crate::store::RemotePending`]). Read them in
/// the same transaction as the `REMOTE_*` rows they complete.
///
/// # Errors
/// On storage errors.
pub fn pending_remote_rows(
    txn: &redb::ReadTransaction,
) -> Result<Vec<(TimeMs, RemoteKey, Traffic)>, StoreError> {
    let mut out = Vec::new();
    let names = crate::store::names::read_flow_names_in(txn)?;
    crate::store::read_snapshot(txn, |_, key, e| {
        let mut rk = e.pending.remote_key(&key);
        rk.name = names.get(&key).copied().unwrap_or_default();
        out.extend(e.pending.pieces().map(|(h, t)| (h, rk, t)));
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 60_000;
    const H: u64 = 3_600_000;
    const D: u64 = 86_400_000;

    fn covered(segs: &[Segment]) -> u64 {
        segs.iter().map(|s| s.to - s.from).sum()
    }

    #[test]
    fn plan_uses_coarse_tiers_for_whole_buckets() {
        let range = (D - 30 * M + 5)..(3 * D + 2 * H + 90_000);
        let segs = plan(&range, Tier::Interval, &|_| 0);
        assert_eq!(covered(&segs), range.end - range.start, "{segs:?}");
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Day && s.from == D && s.to == 3 * D)
        );
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Hour && s.from == 3 * D && s.to == 3 * D + 2 * H)
        );
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Interval && s.from == range.start)
        );
        // Segments never overlap.
        let mut sorted = segs.clone();
        sorted.sort_by_key(|s| s.from);
        for w in sorted.windows(2) {
            assert!(w[0].to <= w[1].from, "{sorted:?}");
        }
    }

    #[test]
    fn plan_rounds_out_where_fine_tiers_are_purged() {
        let range = (10 * D + 5 * H + 7)..(12 * D);
        // Interval and minute tiers purged before day 11.
        let purged = |t: Tier| if t <= Tier::Minute { 11 * D } else { 0 };
        let segs = plan(&range, Tier::Interval, &purged);
        assert!(segs.iter().all(|s| s.tier >= Tier::Hour), "{segs:?}");
        assert_eq!(segs.iter().map(|s| s.from).min(), Some(10 * D + 5 * H));
    }

    #[test]
    fn plan_for_hour_only_data_rounds_to_hours() {
        let range = (H + 5)..(2 * H + 7);
        let segs = plan(&range, Tier::Hour, &|_| 0);
        assert_eq!(
            segs,
            vec![Segment {
                tier: Tier::Hour,
                from: H,
                to: 2 * H + 7
            }]
        );
    }
}
