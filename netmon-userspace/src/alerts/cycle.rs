//! Billing cycles and calendar periods as `[start, end)` in unix ms, in a
//! configured time zone (jiff): a cycle starts at local midnight of its
//! first day, so a DST change inside a cycle moves nothing (the cycle is
//! one hour shorter or longer, as the calendar says).
//!
//! A monthly reset day past the end of a short month starts the cycle on
//! that month's last day (reset day 31: 30 April, 28 or 29 February).
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};

use crate::alerts::config::{Cycle, Period};
use crate::store::{TimeMs, TimeRange};

/// Local midnight of `d` in `tz`, unix ms (0 if out of range).
fn midnight_ms(d: Date, tz: &TimeZone) -> TimeMs {
    d.to_zoned(tz.clone())
        .ok()
        .and_then(|z| u64::try_from(z.timestamp().as_millisecond()).ok())
        .unwrap_or(0)
}

/// The day of month a monthly cycle starts in the month of `d`.
fn reset_in_month(d: Date, day: u8) -> Option<Date> {
    let day = i8::try_from(day).ok()?.min(d.days_in_month());
    Date::new(d.year(), d.month(), day).ok()
}

/// The first day of the cycle containing local date `d`, and of the next.
fn days_of(cycle: &Cycle, d: Date) -> Option<(Date, Date)> {
    match cycle {
        Cycle::Calendar(Period::Day) => Some((d, d.tomorrow().ok()?)),
        Cycle::Calendar(Period::Week) => {
            let back = i64::from(d.weekday().to_monday_zero_offset());
            let start = d.checked_sub(back.days()).ok()?;
            Some((start, start.checked_add(7.days()).ok()?))
        }
        Cycle::Calendar(Period::Month) => {
            let start = d.first_of_month();
            Some((start, start.checked_add(1.month()).ok()?))
        }
        Cycle::Monthly { day } => {
            let this = reset_in_month(d, *day)?;
            if d >= this {
                let next = reset_in_month(d.first_of_month().checked_add(1.month()).ok()?, *day)?;
                Some((this, next))
            } else {
                let prev = reset_in_month(d.first_of_month().checked_sub(1.month()).ok()?, *day)?;
                Some((prev, this))
            }
        }
        Cycle::Days { days, start } => {
            let n = i64::from(*days);
            let since = start.until(d).ok()?.get_days();
            let k = i64::from(since).div_euclid(n);
            let first = start.checked_add((k * n).days()).ok()?;
            Some((first, first.checked_add(n.days()).ok()?))
        }
    }
}

/// The cycle containing `now`, in unix ms.
#[must_use]
pub fn bounds(cycle: &Cycle, tz: &TimeZone, now: TimeMs) -> TimeRange {
    let ts = i64::try_from(now)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let d = ts.to_zoned(tz.clone()).date();
    match days_of(cycle, d) {
        Some((a, b)) => midnight_ms(a, tz)..midnight_ms(b, tz),
        None => now..now.saturating_add(1),
    }
}

/// `ms` as RFC 3339 in `tz` (with its offset).
#[must_use]
pub fn local_time(ms: TimeMs, tz: &TimeZone) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str, tz: &TimeZone) -> TimeMs {
        let dt: jiff::civil::DateTime = s.parse().expect("datetime");
        u64::try_from(
            dt.to_zoned(tz.clone())
                .expect("zoned")
                .timestamp()
                .as_millisecond(),
        )
        .expect("after 1970")
    }

    #[test]
    fn reset_day_31_is_the_last_day_of_short_months() {
        let tz = TimeZone::UTC;
        let c = Cycle::Monthly { day: 31 };
        // 15 April: the cycle began 31 March, ends 30 April.
        let b = bounds(&c, &tz, ms("2026-04-15T12:00", &tz));
        assert_eq!(b, ms("2026-03-31T00:00", &tz)..ms("2026-04-30T00:00", &tz));
        // 30 April is the new cycle's first day.
        let b = bounds(&c, &tz, ms("2026-04-30T00:00", &tz));
        assert_eq!(b, ms("2026-04-30T00:00", &tz)..ms("2026-05-31T00:00", &tz));
        // February, leap and not.
        let b = bounds(&c, &tz, ms("2026-02-28T00:00", &tz));
        assert_eq!(b, ms("2026-02-28T00:00", &tz)..ms("2026-03-31T00:00", &tz));
        let b = bounds(&c, &tz, ms("2028-02-28T23:59", &tz));
        assert_eq!(b, ms("2028-01-31T00:00", &tz)..ms("2028-02-29T00:00", &tz));
    }

    #[test]
    fn cycles_follow_the_zone() {
        let berlin = TimeZone::get("Europe/Berlin").expect("tzdb");
        let ny = TimeZone::get("America/New_York").expect("tzdb");
        let c = Cycle::Monthly { day: 1 };
        // 2026-03-01T03:00Z is 1 March 04:00 in Berlin (new cycle) but
        // still 28 February 22:00 in New York (old cycle).
        let now = ms("2026-03-01T03:00", &TimeZone::UTC);
        let b = bounds(&c, &berlin, now);
        assert_eq!(b.start, ms("2026-03-01T00:00", &berlin));
        assert_eq!(b.start, ms("2026-02-28T23:00", &TimeZone::UTC));
        let b = bounds(&c, &ny, now);
        assert_eq!(b.start, ms("2026-02-01T00:00", &ny));
        assert_eq!(b.end, ms("2026-03-01T05:00", &TimeZone::UTC));
        // A month with the DST change (29 March in Berlin) is an hour short.
        let b = bounds(&c, &berlin, ms("2026-03-15T00:00", &berlin));
        assert_eq!(b.end - b.start, (31 * 24 - 1) * 3_600_000);
    }

    #[test]
    fn n_day_cycles_and_periods() {
        let tz = TimeZone::UTC;
        let c = Cycle::Days {
            days: 30,
            start: "2026-01-07".parse().expect("date"),
        };
        let b = bounds(&c, &tz, ms("2026-02-06T00:00", &tz));
        assert_eq!(b, ms("2026-02-06T00:00", &tz)..ms("2026-03-08T00:00", &tz));
        let b = bounds(&c, &tz, ms("2026-01-01T00:00", &tz));
        assert_eq!(b, ms("2025-12-08T00:00", &tz)..ms("2026-01-07T00:00", &tz));
        // 2026-11-30 is a Monday.
        let w = bounds(
            &Cycle::Calendar(Period::Week),
            &tz,
            ms("2026-12-02T10:00", &tz),
        );
        assert_eq!(w, ms("2026-11-30T00:00", &tz)..ms("2026-12-07T00:00", &tz));
    }
}
