//! Remote-keyed rows (remote, port, protocol answers) resolved to the asked
//! window wherever the stored rows allow it, and flagged where they don't.
//!
//! Remote endpoints are kept per minute, hour and day (`REMOTE_*` rows plus
//! the snapshot's pending pieces, see [`crate::store::query`]); process rows
//! are kept down to each interval. A window edge inside a minute therefore
//! cuts a remote bucket in two, and the remote rows alone cannot say which
//! side a byte was on. The per process rows can, because the remote rows of
//! a (process, class) in a bucket add up exactly to that process's rows for
//! that class in that bucket (both are written from the same deltas, at the
//! same drain time). So for each edge bucket and each (process, class):
//! - all of its bucket's process bytes inside the window: its remote rows
//!   count whole (exact) — always the case when drains are a minute or more
//!   apart (one drain per minute bucket);
//! - none inside: its remote rows are left out (exact);
//! - some inside, to one remote endpoint only: that endpoint gets exactly
//!   the process bytes inside the window (exact) — the common case of a
//!   short-lived process, or one talking to one server;
//! - some inside, to several endpoints: no stored row says how the inside
//!   bytes split between them. Its rows count whole, and the answer's
//!   [`Coverage`] says so ([`Widening::RemoteBuckets`]), with the covered
//!   time extended to the bucket (at most a minute at each edge, where the
//!   minute tier is kept).
//!
//! Traffic with no endpoint (the [`OVERFLOW`] pseudo-process: counted while
//! the flow map was full) has no remote rows; it is handed on as its process
//! rows, so that a remote-keyed answer's total is the same as a process
//! answer's over the same window.
use std::collections::{BTreeMap, HashMap};

use crate::model::ProcessId;
use crate::query::QueryError;
use crate::query::scan::{self, Kind, Row, Subject};
use crate::query::window::{Coverage, Widening, bucket_end};
use crate::store::{DestClass, OVERFLOW, RemoteKey, Store, Tier, TimeMs, TimeRange, Traffic};

/// An edge bucket: a remote bucket not wholly inside the window.
type Bucket = (Tier, TimeMs);

/// One edge bucket's remote rows, per (process, class) and endpoint.
type Held = BTreeMap<(ProcessId, DestClass), BTreeMap<RemoteKey, Traffic>>;

/// Per (process, class): traffic.
type ProcSums = HashMap<(ProcessId, DestClass), Traffic>;

/// Process traffic per (process, class) over `range`, as a process answer
/// would read it.
fn proc_sums(store: &mut Store, range: &TimeRange) -> Result<ProcSums, QueryError> {
    let (segs, _) = scan::plan_for(store, range, Kind::Process)?;
    let mut out = ProcSums::new();
    scan::rows(store, &segs, Kind::Process, |row| {
        if let Subject::Process(id) = row.subject {
            let e = out.entry((id, row.class)).or_default();
            *e = e.add(row.traffic);
        }
    })?;
    Ok(out)
}

/// Calls `f` with the remote rows of `range`, resolved to the window where
/// the stored rows allow it (see the module docs), plus the [`OVERFLOW`]
/// rows when `with_overflow`. Returns what the rows cover; rows counted
/// whole widen it only when `wanted` says the answer keeps one of them (a
/// filter that drops them leaves the answer exact).
///
/// # Errors
/// On storage errors.
pub fn remote_rows(
    store: &mut Store,
    range: &TimeRange,
    with_overflow: bool,
    mut wanted: impl FnMut(&RemoteKey) -> bool,
    mut f: impl FnMut(Row),
) -> Result<Coverage, QueryError> {
    // The window as process rows resolve it (wider only where the finer
    // tiers are purged): every remote answer is measured against it.
    let (psegs, mut coverage) = scan::plan_for(store, range, Kind::Process)?;
    let Some(window) = coverage.covered.clone() else {
        return Ok(coverage);
    };
    let (rsegs, _) = scan::plan_for(store, &window, Kind::Remote)?;
    // Nothing is stored after the newest interval sample: a bucket that
    // only reaches past the window's end into that empty time (the current
    // hour, for a window ending now) is not cut by the window.
    let empty_after = scan::latest_sample(store)?.is_some_and(|l| l < window.end);
    let mut edges: Vec<Bucket> = Vec::new();
    for s in &rsegs {
        let Some(w) = s.tier.width_ms() else {
            continue;
        };
        if s.to <= s.from {
            continue;
        }
        for b in [s.tier.bucket(s.from), s.tier.bucket(s.to - 1)] {
            let cut = b < window.start || (b + w > window.end && !empty_after);
            if cut && !edges.contains(&(s.tier, b)) {
                edges.push((s.tier, b));
            }
        }
    }
    // Remote rows of edge buckets wait here, per bucket, process and class.
    let mut held: Vec<Held> = edges.iter().map(|_| Held::new()).collect();
    scan::rows(store, &rsegs, Kind::Remote, |row| {
        let Subject::Remote(rk) = row.subject else {
            return;
        };
        let b = (row.tier, row.tier.bucket(row.ts));
        match edges
            .iter()
            .position(|e| *e == b)
            .and_then(|i| held.get_mut(i))
        {
            None => f(row),
            Some(h) => {
                let e = h
                    .entry((rk.process, row.class))
                    .or_default()
                    .entry(rk)
                    .or_default();
                *e = e.add(row.traffic);
            }
        }
    })?;
    let mut whole: BTreeMap<Tier, u64> = BTreeMap::new();
    for (&(tier, start), h) in edges.iter().zip(held) {
        if h.is_empty() {
            continue;
        }
        let bucket = start..bucket_end(tier, start + 1);
        let inner = start.max(window.start)..bucket.end.min(window.end);
        let full = proc_sums(store, &bucket)?;
        let inside = if inner.start < inner.end {
            proc_sums(store, &inner)?
        } else {
            ProcSums::new()
        };
        for ((process, class), keys) in &h {
            if keys.is_empty() {
                continue;
            }
            let all = full.get(&(*process, *class)).copied().unwrap_or_default();
            let inn = inside.get(&(*process, *class)).copied().unwrap_or_default();
            let remote_sum = keys.values().fold(Traffic::default(), |a, t| a.add(*t));
            let emit = |f: &mut dyn FnMut(Row), rk: RemoteKey, traffic: Traffic| {
                f(Row {
                    ts: start,
                    tier,
                    subject: Subject::Remote(rk),
                    class: *class,
                    traffic,
                });
            };
            if remote_sum == all && inn == all {
                for (rk, t) in keys {
                    emit(&mut f, *rk, *t);
                }
            } else if remote_sum == all && inn.is_zero() {
                // Wholly outside the window.
            } else if remote_sum == all && keys.len() == 1 {
                if let Some(rk) = keys.keys().next() {
                    emit(&mut f, *rk, inn);
                }
            } else if keys.keys().any(&mut wanted) {
                for (rk, t) in keys {
                    emit(&mut f, *rk, *t);
                }
                *whole.entry(tier).or_default() += 1;
                coverage.extend(&bucket);
            }
        }
    }
    for (tier, processes) in whole {
        coverage.widen(Widening::RemoteBuckets { tier, processes });
    }
    if with_overflow {
        scan::rows(store, &psegs, Kind::Process, |row| {
            if row.subject == Subject::Process(OVERFLOW) {
                f(row);
            }
        })?;
    }
    Ok(coverage)
}

/// Remote totals per key (process, address, service port, direction,
/// protocol, class) over `range`, read as every remote answer reads them
/// ([`remote_rows`]: rollups plus the snapshot's pending pieces, edges
/// resolved to the window), and what they cover. Overflow traffic has no
/// key and is not here.
///
/// # Errors
/// On storage errors.
pub fn remote_totals(
    store: &mut Store,
    range: &TimeRange,
) -> Result<(BTreeMap<RemoteKey, Traffic>, Coverage), QueryError> {
    let mut out: BTreeMap<RemoteKey, Traffic> = BTreeMap::new();
    let coverage = remote_rows(
        store,
        range,
        false,
        |_| true,
        |row| {
            if let Subject::Remote(k) = row.subject {
                let e = out.entry(k).or_default();
                *e = e.add(row.traffic);
            }
        },
    )?;
    Ok((out, coverage))
}
