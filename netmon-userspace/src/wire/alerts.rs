//! Documents of alerts, cost and quota: the event every action receives
//! ([`AlertEvent`], also stored in history), `netmon alerts` ([`Alerts`]),
//! `netmon cost` ([`Cost`]) and `netmon quota` ([`Quota`]).
use serde::{Deserialize, Serialize};

/// One fired notice: what the log line, the exec's stdin, the webhook body
/// and the history hold. Fields that do not apply to the rule's kind are
/// absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The rule's name.
    pub rule: String,
    /// `volume`, `rate`, `quota`, `new_app`, `quality`, `rtt_p95`,
    /// `retrans_rate`.
    pub kind: String,
    /// `fired` (became true), `repeat` (still true), `cleared` (no longer
    /// true), `level` (a quota level reached), `projected` (the cycle's
    /// projection passes the cap), `new_app`.
    pub transition: String,
    /// When, RFC 3339 UTC (the drain interval that made it true).
    pub time: String,
    /// When, unix ms.
    pub time_unix_ms: u64,
    /// One line for people.
    pub message: String,
    /// The rule's filters (`KEY=VALUE`).
    pub filters: Vec<String>,
    /// The rule's destination class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `tx`, `rx`, `both`.
    pub direction: String,
    /// IP bytes counted by the condition (window, period or cycle total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<u64>,
    /// The threshold in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_bytes: Option<u64>,
    /// The rolling window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// Rate of the interval, bits per second (IP bytes × 8); quality: the
    /// mean of the window's busy minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bits_per_s: Option<u64>,
    /// Rate threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_bits_per_s: Option<u64>,
    /// quality: the baseline (same hour, last 7 days), bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_bits_per_s: Option<u64>,
    /// Quota level reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_percent: Option<u32>,
    /// Quota cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_bytes: Option<u64>,
    /// The cycle's projected total at the rate so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_bytes: Option<u64>,
    /// Period or cycle start, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_start_unix_ms: Option<u64>,
    /// Period or cycle end (exclusive), unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_end_unix_ms: Option<u64>,
    /// new_app: the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// rtt_p95: the 95th percentile (nearest rank) of the window's RTT
    /// samples, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p95_us: Option<u64>,
    /// rtt_p95: the threshold, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_us: Option<u64>,
    /// rtt_p95: RTT samples in the window (one per TCP flow and interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// retrans_rate: segments retransmitted in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrans_segs: Option<u64>,
    /// retrans_rate: data segments sent in the window (retransmissions
    /// included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_segs: Option<u64>,
    /// retrans_rate: `retrans_segs` ÷ `data_segs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrans_rate: Option<f64>,
    /// retrans_rate: the threshold, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_rate: Option<f64>,
}

/// A rule's stored state, as `netmon alerts` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// The condition holds (fired and not cleared; for period and quota
    /// rules: fired in this cycle).
    pub active: bool,
    /// Since when it is in its current state (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix_ms: Option<u64>,
    /// Last event (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_unix_ms: Option<u64>,
    /// Events so far.
    pub fired_total: u64,
    /// Current period or cycle start (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_start_unix_ms: Option<u64>,
    /// Quota levels fired in this cycle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels_fired_percent: Vec<u32>,
}

/// `netmon alerts`: rules with their state, and recent events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Events since, unix ms.
    pub since_unix_ms: u64,
    /// Rules the daemon has evaluated, by name.
    pub rules: Vec<RuleStatus>,
    /// Events, oldest first.
    pub events: Vec<AlertEvent>,
}

/// One group of `netmon cost --by app`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// The group.
    pub key: String,
    /// IP bytes in the period.
    pub used_bytes: u64,
    /// Its share of the period's cost.
    pub cost: f64,
}

/// `netmon cost`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `cycle`, `month`, `day`.
    pub period: String,
    /// Period start, RFC 3339 in the tariff's zone.
    pub from: String,
    /// Period start, unix ms.
    pub from_unix_ms: u64,
    /// Period end (exclusive), RFC 3339 in the tariff's zone.
    pub until: String,
    /// Period end, unix ms.
    pub until_unix_ms: u64,
    /// Currency code.
    pub currency: String,
    /// The interface whose tariff this is (absent: every interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Classes counted.
    pub classes: Vec<String>,
    /// IP bytes (both directions) so far in the period.
    pub used_bytes: u64,
    /// Cost so far.
    pub cost: f64,
    /// The period's total at the rate so far.
    pub projected_bytes: u64,
    /// Its cost.
    pub projected_cost: f64,
    /// With `--by`: per group, most bytes first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<CostRow>,
}

/// `netmon quota`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Cycle start, RFC 3339 in the tariff's zone.
    pub cycle_start: String,
    /// Cycle start, unix ms.
    pub cycle_start_unix_ms: u64,
    /// Cycle end (exclusive), RFC 3339 in the tariff's zone.
    pub cycle_end: String,
    /// Cycle end, unix ms.
    pub cycle_end_unix_ms: u64,
    /// The interface whose tariff this is (absent: every interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Classes counted.
    pub classes: Vec<String>,
    /// The cap.
    pub cap_bytes: u64,
    /// IP bytes (both directions) so far.
    pub used_bytes: u64,
    /// `cap − used`, 0 when over.
    pub remaining_bytes: u64,
    /// `used / cap × 100`.
    pub used_percent: f64,
    /// Time left in the cycle, days.
    pub days_left: f64,
    /// `remaining ÷ days left` (whole days, today included).
    pub daily_budget_bytes: u64,
    /// The cycle's total at the rate so far.
    pub projected_bytes: u64,
}
