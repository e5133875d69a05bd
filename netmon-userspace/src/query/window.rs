//! Time arguments: `--since 24h` (a duration before now, `humantime`
//! syntax: `90s`, `1h`, `7d`, `30d`, `1h 30m`) or an RFC 3339 instant
//! (`2026-11-23T08:00:00Z`, `jiff`); `--until` likewise, default now.
//!
//! Also what an answer really covers ([`Coverage`]): every answer says
//! whether it is exactly the asked window, and if not which time it covers
//! and why, so no reader is silently given a wider window than it asked for.
use crate::store::query::Segment;
use crate::store::{Tier, TimeMs, TimeRange};

/// A time argument that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is neither a duration (1h, 24h, 7d, 30d) nor an RFC 3339 time (2026-11-23T08:00:00Z)"
)]
pub struct TimeParseError {
    input: String,
}

/// A point in time as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// This long before now.
    Ago(u64),
    /// This instant, unix ms.
    At(TimeMs),
}

impl std::str::FromStr for TimeArg {
    type Err = TimeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(d) = humantime::parse_duration(s) {
            return Ok(Self::Ago(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        }
        if let Ok(t) = s.parse::<jiff::Timestamp>() {
            return Ok(Self::At(u64::try_from(t.as_millisecond()).unwrap_or(0)));
        }
        Err(TimeParseError {
            input: s.to_owned(),
        })
    }
}

impl TimeArg {
    /// Unix ms given `now`.
    #[must_use]
    pub const fn resolve(self, now: TimeMs) -> TimeMs {
        match self {
            Self::Ago(ms) => now.saturating_sub(ms),
            Self::At(t) => t,
        }
    }
}

/// A step (`5s`, `1m`, `1h`, `1d`, any `humantime` duration) in ms.
///
/// # Errors
/// When not a positive duration.
pub fn parse_step(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    match u64::try_from(d.as_millis()) {
        Ok(0) | Err(_) => Err(format!("{s:?}: the step must be at least 1ms")),
        Ok(ms) => Ok(ms),
    }
}

/// Why an answer covers more than the asked window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Widening {
    /// The finer tiers were purged at an edge: rows of `tier` (the finest
    /// kept there) were read whole.
    Purged(Tier),
    /// Remote endpoints are kept per `tier` bucket: in an edge bucket,
    /// `processes` (process, class) pairs had traffic both inside and
    /// outside the window to more than one endpoint, so their rows could
    /// not be split at the window's edge and were counted whole.
    RemoteBuckets {
        /// Bucket width of the rows read whole.
        tier: Tier,
        /// How many (process, class) pairs were counted whole.
        processes: u64,
    },
}

/// The time an answer really covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// The time the rows read cover; `None` for an empty window. Contains
    /// the asked window (a widened answer covers more, never less).
    pub covered: Option<TimeRange>,
    /// Why `covered` is wider than asked (empty: the answer is exactly the
    /// asked window, to the byte).
    pub widened: Vec<Widening>,
}

impl Coverage {
    /// True when the answer is exactly the asked window.
    #[must_use]
    pub fn exact(&self) -> bool {
        self.widened.is_empty()
    }

    /// Adds `range` to the covered time.
    pub fn extend(&mut self, range: &TimeRange) {
        self.covered = Some(match self.covered.take() {
            None => range.clone(),
            Some(c) => c.start.min(range.start)..c.end.max(range.end),
        });
    }

    /// Records a reason, once.
    pub fn widen(&mut self, why: Widening) {
        if !self.widened.contains(&why) {
            self.widened.push(why);
        }
    }
}

/// The end of the time rows keyed in `[from, to)` of `tier` cover: the end
/// of the bucket of the last key (`to` for interval samples).
#[must_use]
pub const fn bucket_end(tier: Tier, to: TimeMs) -> TimeMs {
    match tier.width_ms() {
        Some(w) => to.div_ceil(w).saturating_mul(w),
        None => to,
    }
}

/// What reading `segments` covers for the asked `range`: the union of
/// their buckets, and [`Widening::Purged`] where it exceeds `range`.
#[must_use]
pub fn coverage_of(range: &TimeRange, segments: &[Segment]) -> Coverage {
    let mut c = Coverage::default();
    for s in segments {
        let real = s.from..bucket_end(s.tier, s.to);
        if real.start < range.start || real.end > range.end {
            c.widen(Widening::Purged(s.tier));
        }
        c.extend(&real);
    }
    c
}

/// A bad window (`--until` before `--since`, `--since` in the future).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The end is before the start.
    #[error("--until ({until}) is before --since ({since}): nothing to answer")]
    Inverted {
        /// The start, RFC 3339.
        since: String,
        /// The end, RFC 3339.
        until: String,
    },
    /// The start is in the future.
    #[error("--since ({since}) is in the future: nothing has been counted yet")]
    Future {
        /// The start, RFC 3339.
        since: String,
    },
}

/// Checks a resolved window `[from, until)` against `now`.
///
/// # Errors
/// [`WindowError`] for an inverted window or a start in the future.
pub fn check_window(from: TimeMs, until: TimeMs, now: TimeMs) -> Result<(), WindowError> {
    let t = crate::clock::rfc3339_from_unix_ms;
    if from > now {
        return Err(WindowError::Future { since: t(from) });
    }
    if until < from {
        return Err(WindowError::Inverted {
            since: t(from),
            until: t(until),
        });
    }
    Ok(())
}

/// Now, unix ms.
#[must_use]
pub fn now_ms() -> TimeMs {
    crate::clock::now_rfc3339().1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_instants() {
        assert_eq!("1h".parse(), Ok(TimeArg::Ago(3_600_000)));
        assert_eq!("7d".parse(), Ok(TimeArg::Ago(7 * 86_400_000)));
        assert_eq!(
            "2000-02-29T00:00:00.123Z".parse(),
            Ok(TimeArg::At(951_782_400_123))
        );
        assert!("yesterday".parse::<TimeArg>().is_err());
        assert_eq!(TimeArg::Ago(10).resolve(100), 90);
        assert_eq!(TimeArg::Ago(1000).resolve(100), 0);
        assert_eq!(parse_step("1m"), Ok(60_000));
        assert!(parse_step("0s").is_err());
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(check_window(10, 20, 30).is_ok());
        assert!(check_window(10, 10, 30).is_ok(), "empty is fine");
        assert!(matches!(
            check_window(20, 10, 30),
            Err(WindowError::Inverted { .. })
        ));
        assert!(matches!(
            check_window(40, 50, 30),
            Err(WindowError::Future { .. })
        ));
    }

    #[test]
    fn coverage_rounds_rollup_segments_to_whole_buckets() {
        const H: u64 = 3_600_000;
        let segs = [
            Segment {
                tier: Tier::Hour,
                from: H,
                to: 2 * H + 7,
            },
            Segment {
                tier: Tier::Interval,
                from: 2 * H + 7,
                to: 2 * H + 9,
            },
        ];
        let c = coverage_of(&((H + 5)..(2 * H + 9)), &segs);
        assert_eq!(c.covered, Some(H..3 * H));
        assert_eq!(c.widened, vec![Widening::Purged(Tier::Hour)]);
        let whole = [Segment {
            tier: Tier::Hour,
            from: H,
            to: 2 * H,
        }];
        let exact = coverage_of(&(H..2 * H), &whole);
        assert_eq!(exact.covered, Some(H..2 * H));
        assert!(exact.exact());
    }
}
