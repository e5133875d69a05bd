//! Retention: how long each tier is kept, the bounded purge, and the size
//! cap (`max_size`).
//!
//! Purge deletes rows whose time key is older than `now - keep` for each
//! tier, at most `max_rows` per call, in its own write transaction. The
//! daemon calls it between drains, so a drain never waits for more than one
//! batch (a few ms at the default batch size); a large backlog (first start
//! after a long downtime, shortened retention) drains over several intervals.
//! Purge removes whole rows of a tier only; rows of coarser tiers hold the
//! same bytes, so totals over kept tiers stay exact.
//!
//! The size cap: when the file passes [`SIZE_HIGH_WATER`] (half) of `max_size`,
//! the oldest quarter of the finest tier that still reaches back further
//! than its floor ([`size_floor`]) is deleted, whole buckets at a time, and
//! the file is compacted (redb reuses freed pages but never shrinks a file
//! by itself). Interval samples go first, then minutes, hours, days; the cut
//! is recorded as that tier's purge cutoff, so queries know the rows are
//! gone, and separately for `netmon status`.
use std::time::Duration;

use crate::store::layout::{self, Bytes};
use crate::store::rollup::Tier;
use crate::store::types::TimeMs;

/// How long each tier is kept; `None` keeps forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Interval samples (default 2 h).
    pub interval: Option<Duration>,
    /// Minute rollups (default 2 days).
    pub minute: Option<Duration>,
    /// Hour rollups (default 90 days).
    pub hour: Option<Duration>,
    /// Day rollups (default forever).
    pub day: Option<Duration>,
    /// Size cap of the file in bytes (default none): the oldest, finest
    /// rows go first when it is reached.
    pub max_size: Option<u64>,
}

/// The defaults keep the file of a machine with 50 always-active
/// processes under 150 MB and with 500 under 1 GiB after 30 days (the disk
/// benchmark, `benches/disk.rs`): at a 1 s interval each always-active
/// process adds about 0.18–0.25 MB of interval rows an hour (traffic and
/// quality) and 0.5 MB of minute rows a day, so 48 h of intervals and 30
/// days of minutes (the earlier defaults) took about 600 and 780 MB for 50
/// processes. Two hours of 1 s samples (so "the last hour at 1 s" is
/// always there), two days of minutes and 90 days of hours answer recent
/// windows at full precision and older ones at the hour.
impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            interval: Some(Duration::from_secs(2 * 3_600)),
            minute: Some(Duration::from_secs(2 * DAY)),
            hour: Some(Duration::from_secs(90 * DAY)),
            day: None,
            max_size: None,
        }
    }
}

/// The size cap acts when the file passes this share of `max_size`
/// (numerator, denominator). Half: redb grows a file by up to doubling it
/// when it runs out of pages (measured: 3.2 → 6.4 MB for one more page), so
/// a file kept under half the cap at each check stays under the cap until
/// the next one.
pub const SIZE_HIGH_WATER: (u64, u64) = (1, 2);

/// How far back a tier keeps data before the size cap moves on to the next
/// coarser tier: the finest tier is thinned first, but never below this
/// while a coarser tier has rows older than its own floor. (The day tier is
/// cut only when it is the only tier left with rows.)
#[must_use]
pub const fn size_floor(tier: Tier) -> TimeMs {
    const HOUR: TimeMs = 3_600_000;
    match tier {
        Tier::Interval => HOUR,
        Tier::Minute => 24 * HOUR,
        Tier::Hour => 7 * 24 * HOUR,
        Tier::Day => TimeMs::MAX,
    }
}

/// Rows of one tier (every table of it), and its oldest row's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierRows {
    /// The tier.
    pub tier: Tier,
    /// Rows in all its tables.
    pub rows: u64,
    /// Time key of its oldest row (`None`: no rows).
    pub oldest_ms: Option<TimeMs>,
}

/// Rows and oldest time of every tier.
///
/// # Errors
/// On storage errors.
pub fn tier_rows(txn: &redb::ReadTransaction) -> Result<Vec<TierRows>, crate::store::StoreError> {
    use redb::ReadableTableMetadata as _;
    let mut out = Vec::new();
    for tier in Tier::ALL {
        let mut t = TierRows {
            tier,
            rows: 0,
            oldest_ms: None,
        };
        for def in tables_of(tier) {
            let table = match txn.open_table(def) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            t.rows += table.len()?;
            if let Some((k, _)) = redb::ReadableTable::first(&table)? {
                let ts = layout::key_time(k.value())?;
                t.oldest_ms = Some(t.oldest_ms.map_or(ts, |o: TimeMs| o.min(ts)));
            }
        }
        out.push(t);
    }
    Ok(out)
}

/// Bytes of every tier's tables (redb's own table statistics: stored,
/// metadata and fragmented bytes of their pages), finest first: where the
/// file's space goes (the rest is the snapshot, processes, events and
/// free pages).
///
/// # Errors
/// On storage errors.
pub fn tier_bytes(
    txn: &redb::ReadTransaction,
) -> Result<Vec<(Tier, u64)>, crate::store::StoreError> {
    use redb::ReadableTableMetadata as _;
    let mut out = Vec::new();
    for tier in Tier::ALL {
        let mut bytes = 0u64;
        for def in tables_of(tier) {
            let table = match txn.open_table(def) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let s = table.stats()?;
            bytes += s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
        }
        out.push((tier, bytes));
    }
    Ok(out)
}

/// Where the size cap cuts: the finest tier reaching back further than its
/// floor (else the finest with rows), and a cutoff a quarter of its span
/// after its oldest row, aligned to its buckets and past at least one.
#[must_use]
pub fn size_cut(tiers: &[TierRows], now: TimeMs) -> Option<(Tier, TimeMs)> {
    let with_rows = || tiers.iter().filter_map(|t| Some((t.tier, t.oldest_ms?)));
    // The day tier is the last resort: only when no finer tier has rows.
    let (tier, oldest) = with_rows()
        .find(|(tier, oldest)| {
            *tier != Tier::Day && now.saturating_sub(*oldest) > size_floor(*tier)
        })
        .or_else(|| with_rows().next())?;
    let step = tier.width_ms().unwrap_or(1);
    let quarter = tier.bucket(oldest + now.saturating_sub(oldest) / 4);
    Some((tier, quarter.max(tier.bucket(oldest) + step)))
}

/// Deletes every row of `tier` older than `cutoff`, in `txn`. Returns the
/// rows deleted.
///
/// # Errors
/// On storage errors.
pub fn delete_before(
    txn: &redb::WriteTransaction,
    tier: Tier,
    cutoff: TimeMs,
) -> Result<u64, crate::store::StoreError> {
    let end = layout::time_key(cutoff);
    let mut deleted = 0;
    for def in tables_of(tier) {
        let mut table = txn.open_table(def)?;
        for r in table.extract_from_if(..end.as_slice(), |_, _| true)? {
            r?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

impl Retention {
    /// Retention of one tier.
    #[must_use]
    pub const fn of(&self, tier: Tier) -> Option<Duration> {
        match tier {
            Tier::Interval => self.interval,
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
            Tier::Day => self.day,
        }
    }

    /// The oldest time a tier keeps at `now` (rows with an earlier key are
    /// purged), or `None` when kept forever. A rollup bucket is purged only
    /// once all of it is older than the cutoff.
    #[must_use]
    pub fn cutoff(&self, tier: Tier, now: TimeMs) -> Option<TimeMs> {
        let keep = u64::try_from(self.of(tier)?.as_millis()).unwrap_or(u64::MAX);
        let raw = now.saturating_sub(keep);
        // A bucket starting before `raw` still holds newer data unless it
        // also ends before `raw`: cut at the start of `raw`'s bucket.
        Some(tier.bucket(raw))
    }
}

/// Tables of a tier that retention applies to.
#[must_use]
pub fn tables_of(tier: Tier) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = match tier {
        Tier::Interval => vec![layout::INTERVAL],
        _ => [
            tier.proc_table(),
            tier.remote_table(),
            tier.iface_table(),
            tier.machine_table(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    out.push(crate::store::ifcount::table_of(tier));
    out.push(crate::store::devcount::table_of(tier));
    out.push(crate::store::quality::table_of(tier));
    out
}

/// What one purge call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Rows deleted.
    pub deleted: u64,
    /// True when rows older than a cutoff remain (call again).
    pub more: bool,
}

/// Deletes up to `max_rows` expired rows in `txn`.
///
/// # Errors
/// On storage errors.
pub fn purge(
    txn: &redb::WriteTransaction,
    retention: &Retention,
    now: TimeMs,
    max_rows: u64,
) -> Result<PurgeReport, crate::store::StoreError> {
    let mut report = PurgeReport::default();
    for tier in Tier::ALL {
        let Some(cutoff) = retention.cutoff(tier, now) else {
            continue;
        };
        let end = layout::time_key(cutoff);
        for def in tables_of(tier) {
            let budget = max_rows.saturating_sub(report.deleted);
            if budget == 0 {
                // Out of budget: there may be more; the next call finds out.
                report.more = true;
                return Ok(report);
            }
            let mut table = txn.open_table(def)?;
            let mut removed = 0u64;
            for r in table.extract_from_if(..end.as_slice(), |_, _| true)? {
                r?;
                removed += 1;
                if removed == budget {
                    report.more = true;
                    break;
                }
            }
            report.deleted += removed;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(tier: Tier, oldest_ms: Option<TimeMs>) -> TierRows {
        TierRows {
            tier,
            rows: u64::from(oldest_ms.is_some()),
            oldest_ms,
        }
    }

    #[test]
    fn size_cut_takes_the_finest_tier_beyond_its_floor() {
        const H: TimeMs = 3_600_000;
        let now = 1_000 * H;
        // Interval samples reach back 48 h: a quarter of that goes.
        let tiers = [
            rows(Tier::Interval, Some(now - 48 * H)),
            rows(Tier::Minute, Some(now - 30 * 24 * H)),
            rows(Tier::Hour, Some(now - 400 * H)),
            rows(Tier::Day, Some(now - 800 * H)),
        ];
        assert_eq!(size_cut(&tiers, now), Some((Tier::Interval, now - 36 * H)));
        // Interval samples already thinned to their floor: minutes next,
        // cut on a minute boundary.
        let thinned = [
            rows(Tier::Interval, Some(now - H / 2)),
            tiers[1],
            tiers[2],
            tiers[3],
        ];
        let (tier, cut) = size_cut(&thinned, now).expect("a cut");
        assert_eq!(tier, Tier::Minute);
        assert_eq!(cut % 60_000, 0);
        assert_eq!(cut, now - 30 * 24 * H + (30 * 24 * H) / 4);
        // Nothing beyond its floor: the finest tier with rows, at least one
        // bucket.
        let young = [
            rows(Tier::Interval, None),
            rows(Tier::Minute, Some(now - 5 * 60_000)),
            rows(Tier::Hour, None),
            rows(Tier::Day, None),
        ];
        let (tier, cut) = size_cut(&young, now).expect("a cut");
        assert_eq!(tier, Tier::Minute);
        assert!(cut > now - 5 * 60_000 && cut <= now, "{cut}");
        assert_eq!(size_cut(&[rows(Tier::Interval, None)], now), None);
    }

    #[test]
    fn cutoff_keeps_partial_buckets() {
        let r = Retention::default();
        let now = 10 * 86_400_000 + 30 * 60_000 + 5;
        // 2 h back lands mid-hour; the minute cutoff is aligned down.
        let c = r.cutoff(Tier::Interval, now).expect("interval expires");
        assert_eq!(c, now - 2 * 3_600_000);
        let m = r
            .cutoff(Tier::Minute, 40 * 86_400_000 + 90_001)
            .expect("minutes expire");
        assert_eq!(m % 60_000, 0);
        assert!(m <= 40 * 86_400_000 + 90_001 - 2 * 86_400_000);
        assert_eq!(r.cutoff(Tier::Day, now), None);
    }
}
