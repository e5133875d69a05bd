//! `netmon report --out FILE.json`: the data behind a report's charts and
//! tables (the `.svg`, `.png` and `.html` forms draw exactly these numbers).
use serde::{Deserialize, Serialize};

use super::{Counters, Totals};

/// A report over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Title shown on the charts.
    pub title: String,
    /// Host the report is about.
    pub host: String,
    /// When made, RFC 3339 UTC.
    pub generated_at: String,
    /// Window start, RFC 3339 UTC.
    pub from: String,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end (exclusive), RFC 3339 UTC.
    pub until: String,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// Grouping of [`Report::groups`] (`app`, `process`, `user`, `class`).
    pub by: String,
    /// Step of the series, ms.
    pub step_ms: u64,
    /// Tier the series was read from.
    pub tier: String,
    /// Start of each step, unix ms (the series' x axis).
    pub times_unix_ms: Vec<u64>,
    /// The largest groups (most IP bytes first), then `other` for the rest
    /// when there is a rest.
    pub groups: Vec<ReportGroup>,
    /// Traffic per destination class (internet, lan, loopback).
    pub classes: Vec<ReportGroup>,
    /// Everything in the window.
    pub total: Totals,
}

/// One group of a [`Report`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportGroup {
    /// Group name (`other`: everything outside the top groups).
    pub name: String,
    /// True for the `other` row.
    pub other: bool,
    /// Sent in the window.
    pub tx: Counters,
    /// Received in the window.
    pub rx: Counters,
    /// Share of the window's IP bytes (both directions), 0..1.
    pub share: f64,
    /// Payload bytes (sent + received) per step, aligned with
    /// [`Report::times_unix_ms`]; empty for classes.
    pub series_payload_bytes: Vec<u64>,
}
