//! Time arguments: `--since 24h` (a duration before now, `humantime`
//! syntax: `90s`, `1h`, `7d`, `30d`, `1h 30m`) or an RFC 3339 instant
//! (`2026-11-23T08:00:00Z`, `jiff`); `--until` likewise, default now.
use crate::store::TimeMs;

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
}
