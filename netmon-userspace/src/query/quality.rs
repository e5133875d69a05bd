//! TCP quality rows of a window, one per remote key and drain time, with
//! their drain time, restricted the way a usage question is (process
//! filters, remote/port/protocol terms, a destination class): the per
//! interval reader the alert engine's RTT and retransmission rules keep
//! running windows from ([`crate::alerts::engine`]). `netmon usage` merges
//! the rows of every tier per group ([`crate::query::usage`]). Rows are
//! per remote key, not per flow ([`crate::store::quality`]).

use crate::query::QueryError;
use crate::query::terms::FilterTerm;
use crate::query::usage::RowFilter;
use crate::store::quality::QualityStats;
use crate::store::query::Segment;
use crate::store::{DestClass, RemoteKey, Store, Tier, TimeMs, TimeRange};

/// Calls `f(drain time, key, stats)` for every interval quality row whose
/// drain time lies in `range` and whose endpoint passes the remote, port
/// and protocol terms of `filters` and `class`, oldest first, in one read
/// transaction. The process terms are the caller's to apply (with
/// [`crate::query::ProcFacts::passes`]: the caller usually knows its
/// processes already).
///
/// # Errors
/// On storage errors.
pub fn scoped_samples(
    store: &mut Store,
    filters: &[FilterTerm],
    class: Option<DestClass>,
    range: &TimeRange,
    mut f: impl FnMut(TimeMs, &RemoteKey, &QualityStats),
) -> Result<(), QueryError> {
    let rf = RowFilter::new(filters, class);
    let seg = Segment {
        tier: Tier::Interval,
        from: range.start,
        to: range.end,
    };
    store.quality_rows(&[seg], |ts, rk, s| {
        if rf.class_ok(rk.class) && rf.remote_ok(rk) {
            f(ts, rk, s);
        }
    })?;
    Ok(())
}
