//! Time series (`netmon history`): traffic per step over a window, for
//! everything or for the rows a set of filters selects.
//!
//! Step rules:
//! - without a step, the finest tier still holding the window's start (by
//!   retention and by what purge has removed) gives it: [`INTERVAL_STEP`]
//!   on interval samples, else the tier's bucket width;
//! - with a step, the coarsest tier whose bucket width divides it is read;
//!   if that tier no longer holds the window's start, the question is
//!   refused with the step to use instead (never silently coarser data);
//! - points are aligned to multiples of the step (UTC), so the first and
//!   last may reach beyond the window; each counts only the traffic inside
//!   the window (read from finer tiers at the edges, see
//!   [`crate::store::query::plan`]) and says how much of its step lies in
//!   the window and before now (`span_ms`), which is what a rate divides by;
//! - a step with no stored row for the selection is `None` (a gap: idle, or
//!   nothing was counting), not zero traffic;
//! - where an edge cannot be resolved (purged tiers, remote endpoints kept
//!   per minute) the answer's [`Coverage`] says so, as `usage`'s does.
use std::collections::HashMap;

use crate::query::QueryError;
use crate::query::facts::Facts;
use crate::query::scan::{self, Kind, Row, Subject};
use crate::query::terms::{Dimension, FilterKey, FilterTerm};
use crate::query::usage::{ProcCache, RowFilter};
use crate::query::window::{Coverage, coverage_of};
use crate::store::query::Segment;
use crate::store::rollup::Tier;
use crate::store::{DestClass, Store, TimeMs, TimeRange, Traffic};

/// Default step on interval samples.
pub const INTERVAL_STEP: u64 = 5_000;
/// Most points one series may have.
pub const MAX_POINTS: u64 = 100_000;

/// A history question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesQuery {
    /// The window.
    pub range: TimeRange,
    /// Step; `None` chooses (see the module doc).
    pub step_ms: Option<u64>,
    /// Which rows count.
    pub filters: Vec<FilterTerm>,
    /// Only this destination class.
    pub class: Option<DestClass>,
    /// "Now", for retention cutoffs.
    pub now_ms: TimeMs,
}

/// A series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesAnswer {
    /// Tier read.
    pub tier: Tier,
    /// Step.
    pub step_ms: u64,
    /// Aligned window the points cover.
    pub range: TimeRange,
    /// Every step, oldest first.
    pub points: Vec<SeriesPoint>,
    /// What the points really cover.
    pub coverage: Coverage,
    /// Sum of the points.
    pub total: Traffic,
}

fn kind_of(filters: &[FilterTerm]) -> Result<Kind, QueryError> {
    if filters.iter().any(|t| t.key == FilterKey::Interface) {
        return crate::query::usage::kind_for(Dimension::Interface, filters);
    }
    Ok(if filters.iter().any(|t| t.key.needs_remote()) {
        Kind::Remote
    } else {
        Kind::Process
    })
}

/// Step name: `5s`, `1m`, `1h`, `1d`, else milliseconds.
#[must_use]
pub fn step_name(ms: u64) -> String {
    for (unit, w) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= w && ms.is_multiple_of(w) {
            return format!("{}{unit}", ms / w);
        }
    }
    format!("{ms}ms")
}

/// One step of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Step start.
    pub start: TimeMs,
    /// The part of the step inside the window and before now, ms (what a
    /// rate divides by).
    pub span_ms: u64,
    /// Traffic in the step; `None` when no row of the selection is stored
    /// for it.
    pub traffic: Option<Traffic>,
}

/// Segments reading `[a, b)` so that no row straddles a step boundary: the
/// plan of each step's part of the window, adjacent segments merged.
fn step_segments(
    a: TimeMs,
    b: TimeMs,
    step: u64,
    finest: Tier,
    purged: &dyn Fn(Tier) -> TimeMs,
) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut p = a - a % step;
    while p < b {
        let sub = p.max(a)..(p.saturating_add(step)).min(b);
        for seg in crate::store::query::plan(&sub, finest, purged) {
            match out.last_mut() {
                Some(last) if last.tier == seg.tier && last.to == seg.from => last.to = seg.to,
                _ => out.push(seg),
            }
        }
        p = p.saturating_add(step);
    }
    out
}

/// Answers a history question.
///
/// # Errors
/// [`QueryError::Invalid`] when the step is finer than the data kept for the
/// window, or gives too many points; storage errors.
pub fn series(
    store: &mut Store,
    facts: &Facts,
    q: &SeriesQuery,
) -> Result<SeriesAnswer, QueryError> {
    let kind = kind_of(&q.filters)?;
    let retention = *store.retention();
    let mut purged = HashMap::new();
    for t in Tier::ALL {
        purged.insert(t, store.purged_before(t)?);
    }
    if kind == Kind::Remote {
        // The remote minute tier starts where the migration that created
        // it left off (see `scan::plan_for`).
        let floor = store.remote_minute_from()?;
        purged
            .entry(Tier::Minute)
            .and_modify(|p| *p = (*p).max(floor));
    }
    let holds = |t: Tier, start: TimeMs| {
        let start = t.bucket(start);
        purged.get(&t).copied().unwrap_or(0) <= start
            && retention.cutoff(t, q.now_ms).is_none_or(|c| c <= start)
    };
    let usable = |t: Tier| t >= kind.finest();
    let (tier, step) = match q.step_ms {
        None => {
            let tier = Tier::ALL
                .into_iter()
                .filter(|t| usable(*t))
                .find(|t| holds(*t, q.range.start))
                .unwrap_or(Tier::Day);
            (tier, tier.width_ms().unwrap_or(INTERVAL_STEP))
        }
        Some(step) => {
            let step = step.max(1);
            let tier = Tier::ALL
                .into_iter()
                .rev()
                .filter(|t| usable(*t))
                .find(|t| t.width_ms().is_none_or(|w| step.is_multiple_of(w)))
                .ok_or_else(|| {
                    QueryError::Invalid(format!(
                        "remote endpoints are kept per minute: use a step that is a multiple of 1m, not {}",
                        step_name(step)
                    ))
                })?;
            if !holds(tier, q.range.start) {
                let better = Tier::ALL
                    .into_iter()
                    .filter(|t| usable(*t))
                    .find(|t| holds(*t, q.range.start));
                let hint = better.map_or_else(String::new, |t| {
                    format!(
                        "; use --step {}",
                        step_name(t.width_ms().unwrap_or(INTERVAL_STEP))
                    )
                });
                return Err(QueryError::Invalid(format!(
                    "{} samples no longer reach back to the window's start{hint}",
                    tier.name()
                )));
            }
            (tier, step)
        }
    };
    let start = q.range.start - q.range.start % step;
    let end = if q.range.end <= q.range.start {
        start
    } else {
        q.range.end.div_ceil(step).saturating_mul(step)
    };
    let n = (end - start) / step;
    if n > MAX_POINTS {
        return Err(QueryError::Invalid(format!(
            "{n} points of {} is more than {MAX_POINTS}: use a larger --step or a shorter window",
            step_name(step)
        )));
    }
    let live_end = q.range.end.min(q.now_ms.max(q.range.start));
    let mut points: Vec<SeriesPoint> = (0..n)
        .map(|k| {
            let p = start + k * step;
            let lo = p.max(q.range.start);
            let hi = (p + step).min(live_end);
            SeriesPoint {
                start: p,
                span_ms: hi.saturating_sub(lo),
                traffic: None,
            }
        })
        .collect();
    let rf = RowFilter::new(&q.filters, q.class);
    let mut procs = ProcCache::new(facts, &q.filters, Dimension::Class);
    let mut add = |row: Row| {
        let keep = rf.class_ok(row.class)
            && match row.subject {
                Subject::Process(id) => procs.get(id).is_some(),
                Subject::Remote(rk) => rf.remote_ok(&rk) && procs.get(rk.process).is_some(),
                Subject::Interface(i) => rf.iface_ok(i),
            };
        if keep
            && row.ts >= start
            && let Ok(k) = usize::try_from((row.ts - start) / step)
            && let Some(p) = points.get_mut(k)
        {
            p.traffic = Some(p.traffic.unwrap_or_default().add(row.traffic));
        }
    };
    let (a, b) = (q.range.start, q.range.end.max(q.range.start));
    let coverage = if kind == Kind::Remote {
        // Whole steps, and the two edge steps resolved on their own.
        let a1 = a.div_ceil(step).saturating_mul(step).min(b);
        let b1 = (b - b % step).max(a1);
        let mut coverage = Coverage::default();
        for part in [a..a1, a1..b1, b1..b] {
            if part.start < part.end {
                let mut passing = ProcCache::new(facts, &q.filters, Dimension::Class);
                let wanted = |rk: &crate::store::RemoteKey| {
                    rf.class_ok(rk.class) && rf.remote_ok(rk) && passing.get(rk.process).is_some()
                };
                let c = crate::query::edges::remote_rows(store, &part, false, wanted, &mut add)?;
                if let Some(r) = &c.covered {
                    coverage.extend(r);
                }
                for w in c.widened {
                    coverage.widen(w);
                }
            }
        }
        coverage
    } else {
        let purged_fn = |t: Tier| purged.get(&t).copied().unwrap_or(0);
        // Nothing is stored after the newest sample: when the window ends
        // after it, the last step reads whole buckets (the current hour's
        // row, not its minutes and samples), exactly the same bytes.
        let empty_after = scan::latest_sample(store)?.is_some_and(|l| l < b);
        let read_end = if empty_after { end.max(b) } else { b };
        let segments = step_segments(a, read_end, step, kind.finest(), &purged_fn);
        scan::rows(store, &segments, kind, &mut add)?;
        let mut coverage = coverage_of(&(a..read_end), &segments);
        if let Some(c) = coverage.covered.as_mut() {
            c.end = c.end.min(b.max(c.start));
        }
        coverage
    };
    let total = points
        .iter()
        .filter_map(|p| p.traffic)
        .fold(Traffic::default(), Traffic::add);
    Ok(SeriesAnswer {
        tier,
        step_ms: step,
        range: start..end,
        points,
        coverage,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names() {
        assert_eq!(step_name(5_000), "5s");
        assert_eq!(step_name(60_000), "1m");
        assert_eq!(step_name(3_600_000), "1h");
        assert_eq!(step_name(86_400_000), "1d");
        assert_eq!(step_name(90_000), "90s");
        assert_eq!(step_name(250), "250ms");
    }
}
