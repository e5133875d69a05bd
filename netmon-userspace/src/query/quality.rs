//! TCP quality samples of a window, one per flow and interval, with their
//! drain time, restricted the way a usage question is (process filters,
//! remote/port/protocol terms, a destination class): the per sample reader
//! the alert engine's RTT and retransmission rules keep running windows
//! from ([`crate::alerts::engine`]). `netmon usage` sums the same samples
//! per group ([`crate::query::usage`]).

use crate::query::QueryError;
use crate::query::terms::FilterTerm;
use crate::query::usage::RowFilter;
use crate::store::layout;
use crate::store::{DestClass, QualitySample, Store, TimeMs, TimeRange};

/// Calls `f(drain time, sample)` for every TCP quality sample whose drain
/// time lies in `range` and whose endpoint passes the remote, port and
/// protocol terms of `filters` and `class`, oldest first, in one read
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
    mut f: impl FnMut(TimeMs, &QualitySample),
) -> Result<(), QueryError> {
    let rf = RowFilter::new(filters, class);
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(layout::QUALITY)?;
    let (from, to) = (layout::time_key(range.start), layout::time_key(range.end));
    for row in table.range(from.as_slice()..to.as_slice())? {
        let (k, v) = row?;
        let ts = layout::key_time(k.value())?;
        let samples: Vec<QualitySample> = layout::decode(v.value())?;
        for s in &samples {
            let Some(rk) = s.remote_key() else { continue };
            if rf.class_ok(rk.class) && rf.remote_ok(&rk) {
                f(ts, s);
            }
        }
    }
    Ok(())
}

/// The nearest-rank 95th percentile of `rtts_us` (sorted in place), as
/// `netmon usage` reports `rtt_p95`.
pub fn p95(rtts_us: &mut [u32]) -> Option<u32> {
    rtts_us.sort_unstable();
    crate::query::usage::percentile(rtts_us, 95)
}
