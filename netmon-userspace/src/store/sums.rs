//! Sums of closed time segments of the per process rows, kept in memory
//! beside the store for readers: a `usage` over 30 days reads ~100k rows
//! (days, the edge hours and minutes), almost all of them in buckets no
//! drain will ever write again, and the dashboard asks the same windows
//! over and over. A segment's per (process, class) sums are computed once
//! and reused while they cannot have changed.
//!
//! When a segment cannot change (invariants, kept by the code named):
//! 1. **Rows are written at drain time, which only grows.** Every row a
//!    commit writes is keyed by the batch's time or its tier bucket
//!    (drain invariant 6), so once a commit at time `n` is in, a later
//!    commit writes interval rows at `>= n` and rollup rows in buckets
//!    `>= bucket(n)`: an interval segment ending at or before `n`, or a
//!    rollup segment ending at or before `bucket(n)`, is closed
//!    ([`SegmentSums::closed`]). [`SegmentSums::written`] is told every
//!    commit's time ([`crate::store::Store::commit`]); a time below the
//!    newest (the wall clock set back) drops every sum.
//! 2. **Purges are in the key.** A purge deletes rows below its cutoff and
//!    records the cutoff in the same transaction; a query reads a tier's
//!    segment only from at or after the tier's cutoff, and the key holds
//!    that cutoff, so a sum is never reused across a purge that could
//!    have touched it.
//! 3. **Bounded.** At most [`MAX_ROWS`] summed rows in all (a segment
//!    larger than a quarter of that is not kept); when full, the sums
//!    used longest ago are dropped first (a window edge that moves with
//!    every question leaves sums nobody asks for again).
//!
//! Only per process rows: remote rollups are written for earlier hours
//! when their pending pieces are flushed, so their segments never close
//! this way (see [`crate::drain`] invariant 8).
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::ProcessId;
use crate::store::{DestClass, Tier, TimeMs, Traffic};

/// Most summed rows kept (about 48 bytes each).
pub const MAX_ROWS: usize = 200_000;

/// A segment of per process rows: tier, `[from, to)`, and the tier's purge
/// cutoff when it was read (invariant 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SumKey {
    /// Tier read.
    pub tier: Tier,
    /// First key time.
    pub from: TimeMs,
    /// Key times below this.
    pub to: TimeMs,
    /// [`crate::store::Store::purged_before`] of `tier` then.
    pub purged: TimeMs,
}

/// One process and class's traffic over a segment.
pub type SumRow = (ProcessId, DestClass, Traffic);

/// The kept sums (see the module docs).
#[derive(Debug, Default)]
pub struct SegmentSums {
    /// Newest commit time known (`None`: not known yet; nothing is kept
    /// until it is).
    newest: Option<TimeMs>,
    /// The sums and when each was last used ([`SegmentSums::uses`]).
    entries: FxHashMap<SumKey, (Arc<[SumRow]>, u64)>,
    rows: usize,
    /// Gets and inserts so far: the clock of the least-recently-used order.
    uses: u64,
    hits: u64,
    misses: u64,
    /// Set by [`SegmentSums::set_enabled`]`(false)`: nothing is kept.
    disabled: bool,
}

impl SegmentSums {
    /// A commit wrote rows at `ts` (invariant 1).
    pub fn written(&mut self, ts: TimeMs) {
        if self.newest.is_some_and(|n| ts < n) {
            self.clear();
        }
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
    }

    /// Sets the newest commit time from the store when it is not known yet
    /// (a store opened, nothing committed through it since).
    pub fn found_newest(&mut self, ts: Option<TimeMs>) {
        if self.newest.is_none() {
            self.newest = ts;
        }
    }

    /// Whether the newest commit time is known.
    #[must_use]
    pub const fn knows_newest(&self) -> bool {
        self.newest.is_some()
    }

    /// Turns keeping sums on (the default) or off (every question reads
    /// every row: for comparisons, such as the HTTP benchmark's before and
    /// after). Commits are followed either way, so sums kept before stay
    /// valid and are used again when turned back on.
    pub fn set_enabled(&mut self, on: bool) {
        self.disabled = !on;
    }

    /// Whether rows of `tier` below `to` can no longer change (invariant 1);
    /// always false while disabled.
    #[must_use]
    pub fn closed(&self, tier: Tier, to: TimeMs) -> bool {
        !self.disabled
            && self.newest.is_some_and(|n| match tier {
                Tier::Interval => to <= n,
                _ => to <= tier.bucket(n),
            })
    }

    /// The sums of `key`, if kept.
    pub fn get(&mut self, key: &SumKey) -> Option<Arc<[SumRow]>> {
        self.uses += 1;
        let now = self.uses;
        let found = self.entries.get_mut(key).map(|(rows, used)| {
            *used = now;
            Arc::clone(rows)
        });
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// Keeps the sums of a closed segment (invariant 3).
    pub fn insert(&mut self, key: SumKey, rows: Arc<[SumRow]>) {
        if rows.len() > MAX_ROWS / 4 || !self.closed(key.tier, key.to) {
            return;
        }
        if let Some((old, _)) = self.entries.remove(&key) {
            self.rows -= old.len();
        }
        if self.rows + rows.len() > MAX_ROWS {
            // Least recently used first, until it fits.
            let mut by_use: Vec<(u64, SumKey)> = self
                .entries
                .iter()
                .map(|(k, (_, used))| (*used, *k))
                .collect();
            by_use.sort_unstable_by_key(|(used, _)| *used);
            for (_, k) in by_use {
                if self.rows + rows.len() <= MAX_ROWS {
                    break;
                }
                if let Some((old, _)) = self.entries.remove(&k) {
                    self.rows -= old.len();
                }
            }
        }
        self.uses += 1;
        self.rows += rows.len();
        self.entries.insert(key, (rows, self.uses));
    }

    /// Drops every sum.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.rows = 0;
    }

    /// `(hits, misses)` of [`SegmentSums::get`] so far.
    #[must_use]
    pub const fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tier: Tier, from: TimeMs, to: TimeMs) -> SumKey {
        SumKey {
            tier,
            from,
            to,
            purged: 0,
        }
    }

    fn rows(n: usize) -> Arc<[SumRow]> {
        (0..n)
            .map(|i| {
                (
                    ProcessId {
                        pid: u32::try_from(i).unwrap_or(0),
                        start_ticks: 0,
                    },
                    DestClass::Lan,
                    Traffic::default(),
                )
            })
            .collect()
    }

    #[test]
    fn closed_follows_the_newest_commit() {
        let mut s = SegmentSums::default();
        assert!(!s.closed(Tier::Day, 0), "nothing known: nothing closed");
        s.written(3_600_000 + 61_000);
        assert!(s.closed(Tier::Interval, 3_600_000 + 61_000));
        assert!(!s.closed(Tier::Interval, 3_600_000 + 61_001));
        assert!(s.closed(Tier::Minute, 3_600_000 + 60_000));
        assert!(!s.closed(Tier::Minute, 3_600_000 + 120_000));
        assert!(s.closed(Tier::Hour, 3_600_000));
        assert!(!s.closed(Tier::Hour, 7_200_000));
        assert!(!s.closed(Tier::Day, 86_400_000));
        s.found_newest(Some(0));
        assert!(s.closed(Tier::Hour, 3_600_000), "a known time is kept");
    }

    #[test]
    fn kept_until_the_clock_goes_back() {
        let mut s = SegmentSums::default();
        s.written(10 * 86_400_000);
        let k = key(Tier::Day, 0, 86_400_000);
        s.insert(k, rows(3));
        assert_eq!(s.get(&k).map(|r| r.len()), Some(3));
        s.written(10 * 86_400_000 + 5);
        assert!(s.get(&k).is_some(), "a later commit keeps it");
        s.written(86_400_000);
        assert!(s.get(&k).is_none(), "a commit back in time drops it");
        assert_eq!(s.stats(), (2, 1));
        let open = key(Tier::Day, 0, 11 * 86_400_000);
        s.insert(open, rows(1));
        assert!(s.get(&open).is_none(), "an open segment is not kept");
    }

    #[test]
    fn bounded_least_recently_used_first() {
        let mut s = SegmentSums::default();
        s.written(100 * 86_400_000);
        s.insert(key(Tier::Day, 0, 1), rows(MAX_ROWS / 4 + 1));
        assert!(s.get(&key(Tier::Day, 0, 1)).is_none(), "too large to keep");
        for i in 0..4 {
            s.insert(key(Tier::Day, i, i + 1), rows(MAX_ROWS / 4));
        }
        assert!(s.get(&key(Tier::Day, 0, 1)).is_some(), "used last");
        s.insert(key(Tier::Day, 4, 5), rows(10));
        assert!(s.rows <= MAX_ROWS);
        assert!(s.get(&key(Tier::Day, 1, 2)).is_none(), "used longest ago");
        for k in [
            key(Tier::Day, 0, 1),
            key(Tier::Day, 2, 3),
            key(Tier::Day, 4, 5),
        ] {
            assert!(s.get(&k).is_some(), "{k:?} kept");
        }
    }
}
