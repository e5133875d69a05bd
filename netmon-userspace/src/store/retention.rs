//! Retention: how long each tier is kept, and the bounded purge.
//!
//! Purge deletes rows whose time key is older than `now - keep` for each
//! tier, at most `max_rows` per call, in its own write transaction. The
//! daemon calls it between drains, so a drain never waits for more than one
//! batch (a few ms at the default batch size); a large backlog (first start
//! after a long downtime, shortened retention) drains over several intervals.
//! Purge removes whole rows of a tier only; rows of coarser tiers hold the
//! same bytes, so totals over kept tiers stay exact.
use std::time::Duration;

use crate::store::layout::{self, Bytes};
use crate::store::rollup::Tier;
use crate::store::types::TimeMs;

/// How long each tier is kept; `None` keeps forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Interval samples (default 48 h).
    pub interval: Option<Duration>,
    /// Minute rollups (default 30 days).
    pub minute: Option<Duration>,
    /// Hour rollups (default 400 days).
    pub hour: Option<Duration>,
    /// Day rollups (default forever).
    pub day: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            interval: Some(Duration::from_secs(2 * DAY)),
            minute: Some(Duration::from_secs(30 * DAY)),
            hour: Some(Duration::from_secs(400 * DAY)),
            day: None,
        }
    }
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
        Tier::Interval => vec![layout::INTERVAL, layout::QUALITY],
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

    #[test]
    fn cutoff_keeps_partial_buckets() {
        let r = Retention::default();
        let now = 10 * 86_400_000 + 30 * 60_000 + 5;
        // 48 h back lands mid-hour; the minute cutoff is aligned down.
        let c = r.cutoff(Tier::Interval, now).expect("interval expires");
        assert_eq!(c, now - 2 * 86_400_000);
        let m = r
            .cutoff(Tier::Minute, 40 * 86_400_000 + 90_001)
            .expect("minutes expire");
        assert_eq!(m % 60_000, 0);
        assert!(m <= 40 * 86_400_000 + 90_001 - 30 * 86_400_000);
        assert_eq!(r.cutoff(Tier::Day, now), None);
    }
}
