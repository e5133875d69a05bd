//! Traffic counters and time: [`Traffic`] (both directions of some
//! traffic), [`TimeMs`] (unix milliseconds, the one time unit every stage
//! stores and exchanges) and the system's unix-ms clock ([`unix_ms_now`]).
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use netmon_common::{DirCounters, FlowValue};

/// Milliseconds since the Unix epoch (UTC). Every time in the store is one.
pub type TimeMs = u64;

/// A half-open time range `[start, end)` in ms since the epoch.
pub type TimeRange = Range<TimeMs>;

/// Both directions of some traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Sent.
    pub tx: DirCounters,
    /// Received.
    pub rx: DirCounters,
}

impl Traffic {
    /// Field-wise saturating sum.
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            tx: self.tx.saturating_add(other.tx),
            rx: self.rx.saturating_add(other.rx),
        }
    }

    /// `self - earlier`, or `None` if any counter went backwards.
    #[must_use]
    pub const fn checked_sub(self, earlier: Self) -> Option<Self> {
        match (
            self.tx.checked_sub(earlier.tx),
            self.rx.checked_sub(earlier.rx),
        ) {
            (Some(tx), Some(rx)) => Some(Self { tx, rx }),
            _ => None,
        }
    }

    /// True when every counter is zero.
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.tx.is_zero() && self.rx.is_zero()
    }

    /// The counters of a flow value.
    #[must_use]
    pub const fn of(value: &FlowValue) -> Self {
        Self {
            tx: value.tx,
            rx: value.rx,
        }
    }
}

/// Now, in unix milliseconds (0 before 1970, `u64::MAX` past the year
/// 584 million): the one place netmon reads the wall clock as a number.
#[must_use]
pub fn unix_ms_now() -> TimeMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
