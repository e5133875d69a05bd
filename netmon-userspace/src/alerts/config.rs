//! `[alerts]` and `[tariff]` of `config.toml`: the file's shape, and its
//! compilation into checked [`Rule`]s, [`Action`]s and a [`Tariff`].
//!
//! ```toml
//! [alerts]
//! timezone = "Europe/Berlin"     # cycles and calendar periods (default: local)
//!
//! [[alerts.action]]              # "log" exists without being declared
//! name = "hook"
//! kind = "webhook"               # log | exec | webhook | desktop
//! url = "https://example.net/netmon"
//! bearer_token = "..."           # optional: Authorization: Bearer ...
//! hmac_secret = "..."            # optional: X-Netmon-Signature: sha256=HEX
//! retries = 5                    # after the first try (default 3)
//! backoff = "1s"                 # first wait, doubled each retry
//! timeout = "10s"
//!
//! [[alerts.action]]
//! name = "script"
//! kind = "exec"
//! command = ["/usr/local/bin/on-alert", "--quiet"]   # argv, no shell
//! # shell = true; command = ["echo $NETMON_RULE >> /tmp/x"]  # one string, sh -c
//!
//! [[alerts.action]]
//! name = "popup"
//! kind = "desktop"
//! user = "alice"                 # notify-send on alice's session bus
//!
//! [[alerts.rule]]
//! name = "firefox-daily"
//! filters = ["app=firefox"]      # the CLI's --filter vocabulary;
//!                                # globs on names (app=fire*, cgroup=/user.slice/*)
//!                                # and networks (remote=10.0.0.0/8)
//!                                # interface=wwan0 (or wwan*, or an index) alone:
//!                                # that interface's local sockets' IP bytes
//!                                # (volume, rate and quota rules)
//! class = "internet"             # optional destination class
//! direction = "both"             # tx | rx | both (default)
//! kind = "volume"                # volume | rate | quota | new_app | quality
//!                                # | rtt_p95 | retrans_rate
//! over = "5GiB"
//! window = "24h"                 # rolling; or period = "day" | "week" | "month"
//! hysteresis = 0.1               # clears below over × (1 − 0.1)
//! repeat = "1h"                  # fire again every hour while true
//! actions = ["log", "hook"]      # default ["log"]
//!
//! [[alerts.rule]]
//! name = "download-burst"
//! kind = "rate"
//! direction = "rx"
//! over = "50Mbit/s"
//! for = "5m"
//!
//! [[alerts.rule]]
//! name = "cap"
//! kind = "quota"
//! cap = "100GiB"                 # default: the tariff's cap
//! levels = [80, 90, 100]         # percent, each fires once per cycle
//!                                # (class: internet unless given)
//! project = true                 # also fire once when the projection passes the cap
//! # reset_day = 15 | period_days = 30, start = "2026-01-01": default the tariff's cycle
//!
//! [[alerts.rule]]
//! name = "new-apps"
//! kind = "new_app"               # class defaults to internet
//!
//! [[alerts.rule]]                # "connections are slow"
//! name = "rtt"
//! filters = ["port=tcp/443"]     # remote, port and protocol terms too
//! kind = "rtt_p95"               # 95th percentile of the RTT samples
//! over = "150ms"                 # (one per TCP flow and interval)
//! window = "5m"                  # rolling (default 5m)
//! min_samples = 10               # fewer in the window: no change (default 10)
//!
//! [[alerts.rule]]
//! name = "loss"
//! kind = "retrans_rate"          # retransmitted ÷ sent data segments
//! over = "2%"                    # or 0.02
//! window = "5m"
//! min_segments = 100             # fewer sent in the window: no change
//!
//! [[alerts.rule]]                # "the internet got slow"
//! name = "slow"
//! kind = "quality"               # class internet, direction rx by default
//! below = 0.5                    # busy-minute throughput < 50 % of its baseline
//! min_rate = "1Mbit/s"           # a minute is busy (demand) from this rate on
//! window = "15m"                 # busy minutes averaged (at least 3)
//!
//! [tariff]
//! currency = "EUR"
//! price_per_gib = 0.0            # inside the included volume
//! included = "50GiB"
//! price_over_per_gib = 2.0       # after it
//! classes = ["internet"]         # default internet only
//! cap = "100GiB"                 # for `netmon quota` and quota rules
//! reset_day = 1                  # 1..=31: the cycle starts that day each month
//!                                # (a short month: its last day)
//! # period_days = 30; start = "2026-01-07"   # or a fixed N-day cycle
//!
//! [tariff.interface.wwan0]       # a tariff of its own for one interface
//! currency = "EUR"               # (same fields, nothing inherited from
//! price_per_gib = 5.0            # [tariff]; that interface's local
//! cap = "10GiB"                  # sockets' IP bytes): `netmon cost
//! reset_day = 15                 # --interface wwan0`, quota rules on
//!                                # interface=wwan0 take its cap and cycle
//! ```
//!
//! `[tariff]` prices every interface; with only `[tariff.interface.*]`
//! tables there is no such tariff.
//!
//! Sizes take `B`, `KB`/`MB`/`GB`/`TB` (10³) and `KiB`/`MiB`/`GiB`/`TiB`
//! (2¹⁰); rates take those per second (`MB/s`) or bits (`Mbit/s`, `kbit/s`).
//! Every mistake is reported with the line of the rule or action it is in
//! ([`compile`]).
use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;

use crate::query::terms::{FilterKey, FilterTerm, parse_class};
use crate::store::DestClass;

/// A float that compares by bits, so the file's types stay `Eq`.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Num(pub f64);

impl PartialEq for Num {
    fn eq(&self, o: &Self) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}
impl Eq for Num {}

/// `[alerts]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// IANA time zone of cycles and calendar periods (default: the system's).
    pub timezone: Option<Spanned<String>>,
    /// Actions by name.
    #[serde(default)]
    pub action: Vec<Spanned<ActionFile>>,
    /// Rules.
    #[serde(default)]
    pub rule: Vec<Spanned<RuleFile>>,
}

/// One `[[alerts.action]]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFile {
    /// Name rules refer to.
    pub name: String,
    /// `log`, `exec`, `webhook`, `desktop`.
    pub kind: String,
    /// exec: argv (or one shell string with `shell = true`).
    pub command: Option<Vec<String>>,
    /// exec: run `command[0]` with `/bin/sh -c`.
    #[serde(default)]
    pub shell: bool,
    /// exec, webhook: give up after this long (default 10s).
    pub timeout: Option<String>,
    /// webhook: URL.
    pub url: Option<String>,
    /// webhook: bearer token.
    pub bearer_token: Option<String>,
    /// webhook: HMAC-SHA256 key for the signature header.
    pub hmac_secret: Option<String>,
    /// webhook: retries after the first try (default 3).
    pub retries: Option<u32>,
    /// webhook: first wait between tries, doubled each time (default 1s).
    pub backoff: Option<String>,
    /// desktop: whose session to notify.
    pub user: Option<String>,
}

/// One `[[alerts.rule]]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Unique name.
    pub name: String,
    /// `volume`, `rate`, `quota`, `new_app`, `quality`, `rtt_p95`,
    /// `retrans_rate`.
    pub kind: String,
    /// Process-level `KEY=VALUE` filters (all must hold).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Destination class.
    pub class: Option<String>,
    /// `tx`, `rx`, `both`.
    pub direction: Option<String>,
    /// volume: size; rate: rate.
    pub over: Option<String>,
    /// volume: rolling window.
    pub window: Option<String>,
    /// volume: calendar period (`day`, `week`, `month`).
    pub period: Option<String>,
    /// rate: how long it must hold.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Fraction below the threshold at which it clears (0 ≤ h < 1).
    pub hysteresis: Option<Num>,
    /// Fire again this often while true.
    pub repeat: Option<String>,
    /// quota: cap (default: the tariff's).
    pub cap: Option<String>,
    /// quota: warning levels in percent.
    pub levels: Option<Vec<u32>>,
    /// quota: fire when the projected cycle total passes the cap.
    #[serde(default)]
    pub project: bool,
    /// quota: reset day of month.
    pub reset_day: Option<u8>,
    /// quota: N-day cycle length.
    pub period_days: Option<u32>,
    /// quota: first day of the N-day cycle (`YYYY-MM-DD`).
    pub start: Option<String>,
    /// quality: fire below this fraction of the baseline throughput.
    pub below: Option<Num>,
    /// quality: a minute counts as demand from this rate on.
    pub min_rate: Option<String>,
    /// rtt_p95: fewest RTT samples in the window for a verdict.
    pub min_samples: Option<u64>,
    /// retrans_rate: fewest sent data segments in the window for a verdict.
    pub min_segments: Option<u64>,
    /// Action names (default `["log"]`).
    pub actions: Option<Vec<String>>,
}

/// `[tariff]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffFile {
    /// Currency code for display.
    pub currency: Option<String>,
    /// Price per GiB inside the included volume.
    pub price_per_gib: Option<Num>,
    /// Included volume.
    pub included: Option<String>,
    /// Price per GiB past the included volume.
    pub price_over_per_gib: Option<Num>,
    /// Which destination classes count (default internet).
    pub classes: Option<Vec<String>>,
    /// Volume cap.
    pub cap: Option<String>,
    /// Reset day of month.
    pub reset_day: Option<u8>,
    /// N-day cycle length.
    pub period_days: Option<u32>,
    /// First day of the N-day cycle.
    pub start: Option<String>,
    /// Time zone of the cycle (default `[alerts] timezone`, else local).
    pub timezone: Option<String>,
    /// `[tariff.interface.NAME]`: a tariff of its own for that interface's
    /// traffic (same fields, nothing inherited).
    #[serde(default)]
    pub interface: std::collections::BTreeMap<String, TariffFile>,
}

/// Which directions a rule counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent.
    Tx,
    /// Received.
    Rx,
    /// Both.
    Both,
}

impl Direction {
    /// The name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tx => "tx",
            Self::Rx => "rx",
            Self::Both => "both",
        }
    }
}

/// A calendar period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// Midnight to midnight.
    Day,
    /// Monday to Monday.
    Week,
    /// First of the month to the first of the next.
    Month,
}

/// A billing cycle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cycle {
    /// Monthly from this day (1..=31; clamped to the month's last day).
    Monthly {
        /// Reset day.
        day: u8,
    },
    /// Every `days` days from `start`.
    Days {
        /// Length.
        days: u32,
        /// First day.
        start: jiff::civil::Date,
    },
    /// A calendar period (volume rules with `period`).
    Calendar(Period),
}

/// What a rule watches.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// More than `over` bytes in the last `window`.
    Rolling {
        /// Threshold, bytes.
        over: u64,
        /// Window.
        window_ms: u64,
    },
    /// More than `over` bytes in the current calendar period (once a period).
    InPeriod {
        /// Threshold, bytes.
        over: u64,
        /// The period.
        cycle: Cycle,
    },
    /// Above `over_bps` bits/s in every interval for `for_ms`.
    Rate {
        /// Threshold, bits per second.
        over_bps: u64,
        /// Duration.
        for_ms: u64,
    },
    /// Levels of a cap, once per cycle each.
    Quota {
        /// Cap, bytes.
        cap: u64,
        /// Levels, percent, ascending.
        levels: Vec<u32>,
        /// Fire when the projection passes the cap.
        project: bool,
        /// The cycle.
        cycle: Cycle,
    },
    /// An app with traffic in scope for the first time.
    NewApp,
    /// Throughput of busy minutes below a fraction of the same hour's
    /// over the last 7 days.
    Quality {
        /// Fraction of the baseline, 0 < f < 1.
        below: f64,
        /// A minute is busy (demand) from this rate on, bits/s.
        min_bps: u64,
        /// Busy minutes averaged, ms.
        window_ms: u64,
    },
    /// The 95th percentile of the window's TCP RTT samples above `over_us`.
    RttP95 {
        /// Threshold, µs.
        over_us: u64,
        /// Rolling window, ms.
        window_ms: u64,
        /// Fewest samples for a verdict.
        min_samples: u64,
    },
    /// Retransmitted over sent data segments in the window above `over`.
    RetransRate {
        /// Threshold, 0 < over < 1.
        over: f64,
        /// Rolling window, ms.
        window_ms: u64,
        /// Fewest sent data segments for a verdict.
        min_segments: u64,
    },
}

impl Condition {
    /// The kind's name.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Rolling { .. } | Self::InPeriod { .. } => "volume",
            Self::Rate { .. } => "rate",
            Self::Quota { .. } => "quota",
            Self::NewApp => "new_app",
            Self::Quality { .. } => "quality",
            Self::RttP95 { .. } => "rtt_p95",
            Self::RetransRate { .. } => "retrans_rate",
        }
    }
}

/// Which traffic a rule counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Filters (the query vocabulary): process keys, remote, port, protocol.
    pub filters: Vec<FilterTerm>,
    /// Destination class.
    pub class: Option<DestClass>,
    /// Glob patterns on app, comm, user, cgroup or container
    /// (`app=fire*`), all must match.
    pub patterns: Vec<(FilterKey, glob::Pattern)>,
    /// Remote networks (`remote=10.0.0.0/8`), all must contain the remote.
    pub nets: Vec<(std::net::IpAddr, u8)>,
    /// Interfaces (`interface=wwan0`, `interface=wwan*`, `interface=3`):
    /// the scope counts the per interface rows (local sockets' IP bytes,
    /// `usage --by interface`'s `tx`/`rx`), and each pattern must match
    /// the interface's name or its index.
    pub ifaces: Vec<glob::Pattern>,
}

impl Scope {
    /// True when a remote, port or protocol term restricts it: its traffic
    /// comes from the per endpoint rows, not the per process ones.
    #[must_use]
    pub fn by_endpoint(&self) -> bool {
        !self.nets.is_empty() || self.filters.iter().any(|t| t.key.needs_remote())
    }

    /// True when interface terms restrict it: its traffic comes from the
    /// per interface rows.
    #[must_use]
    pub fn by_interface(&self) -> bool {
        !self.ifaces.is_empty()
    }

    /// True when interface `ifindex` (named `name` when known) matches
    /// every interface pattern, by name or by index.
    #[must_use]
    pub fn iface_matches(&self, ifindex: u32, name: Option<&str>) -> bool {
        let index = ifindex.to_string();
        self.ifaces
            .iter()
            .all(|p| p.matches(&index) || name.is_some_and(|n| p.matches(n)))
    }

    /// True when the process's names match every pattern.
    #[must_use]
    pub fn patterns_match(&self, f: &crate::query::ProcFacts) -> bool {
        let info = &f.record.info;
        self.patterns.iter().all(|(k, p)| match k {
            FilterKey::App => p.matches(&f.app),
            FilterKey::Comm => p.matches(&info.comm),
            FilterKey::User => p.matches(&f.user),
            FilterKey::Cgroup => info.cgroup.as_deref().is_some_and(|c| p.matches(c)),
            FilterKey::Container => f.record.unit.as_deref().is_some_and(|u| p.matches(u)),
            _ => false,
        })
    }

    /// True when every network contains `ip`.
    #[must_use]
    pub fn nets_contain(&self, ip: std::net::IpAddr) -> bool {
        self.nets.iter().all(|(net, len)| in_net(ip, *net, *len))
    }

    /// The scope's terms as written (`KEY=VALUE`).
    #[must_use]
    pub fn terms(&self) -> Vec<String> {
        let mut v: Vec<String> = self.filters.iter().map(ToString::to_string).collect();
        v.extend(self.patterns.iter().map(|(k, p)| {
            FilterTerm {
                key: *k,
                value: p.as_str().to_owned(),
            }
            .to_string()
        }));
        v.extend(self.nets.iter().map(|(n, l)| format!("remote={n}/{l}")));
        v.extend(
            self.ifaces
                .iter()
                .map(|p| format!("interface={}", p.as_str())),
        );
        v
    }
}

/// True when `ip` lies in `net`/`len` (an IPv4 address never lies in an
/// IPv6 network, nor the other way).
fn in_net(ip: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    let (a, b, bits): (u128, u128, u32) = match (ip, net) {
        (V4(a), V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (V6(a), V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (b >> shift)
}

/// `ADDR/LEN`: a network.
fn parse_net(v: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, l) = v
        .split_once('/')
        .ok_or_else(|| format!("{v:?} is not a network (like 10.0.0.0/8)"))?;
    let ip: std::net::IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not an IP address"))?;
    let len: u8 = l
        .trim()
        .parse()
        .map_err(|_| format!("{l:?} is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length {len} is over {max}"));
    }
    Ok((ip, len))
}

/// A checked rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// What it counts.
    pub scope: Scope,
    /// Directions.
    pub direction: Direction,
    /// What it watches.
    pub condition: Condition,
    /// Clears below threshold × (1 − this).
    pub hysteresis: f64,
    /// Fire again this often while true.
    pub repeat_ms: Option<u64>,
    /// Indices into [`Compiled::actions`].
    pub actions: Vec<usize>,
    /// A hash of the definition: stored state of a changed rule is dropped.
    pub fingerprint: u64,
}

/// A checked action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// One NDJSON line on stdout.
    Log,
    /// Run a command.
    Exec {
        /// argv; with `shell`, `["/bin/sh", "-c", line]`.
        argv: Vec<String>,
        /// Kill after.
        timeout: Duration,
    },
    /// POST the event.
    Webhook {
        /// Where.
        url: String,
        /// Bearer token.
        bearer: Option<String>,
        /// HMAC key.
        hmac_secret: Option<String>,
        /// Retries after the first try.
        retries: u32,
        /// First wait.
        backoff: Duration,
        /// Per try.
        timeout: Duration,
    },
    /// notify-send as `user`.
    Desktop {
        /// User name.
        user: String,
    },
}

/// A named action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Name.
    pub name: String,
    /// What it does.
    pub kind: ActionKind,
}

/// A checked tariff.
#[derive(Clone, Debug, PartialEq)]
pub struct Tariff {
    /// Currency code.
    pub currency: String,
    /// Price per GiB inside the included volume.
    pub price_per_gib: f64,
    /// Included bytes (`None`: everything at `price_per_gib`).
    pub included: Option<u64>,
    /// Price per GiB past the included volume.
    pub price_over_per_gib: f64,
    /// Classes that count.
    pub classes: Vec<DestClass>,
    /// Cap, bytes.
    pub cap: Option<u64>,
    /// The billing cycle.
    pub cycle: Cycle,
    /// Zone of the cycle.
    pub tz: jiff::tz::TimeZone,
    /// The interface whose traffic it prices (`None`: every interface).
    pub interface: Option<String>,
}

/// Everything checked.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Zone of cycles and periods.
    pub tz: jiff::tz::TimeZone,
    /// Rules.
    pub rules: Vec<Rule>,
    /// Actions; index 0 is the built-in `log`.
    pub actions: Vec<Action>,
    /// The tariff, if configured.
    pub tariff: Option<Tariff>,
    /// Tariffs of single interfaces, by interface name.
    pub iface_tariffs: Vec<Tariff>,
}

impl Compiled {
    /// The tariff of `interface` (`None`: the `[tariff]` of every
    /// interface).
    #[must_use]
    pub fn tariff_for(&self, interface: Option<&str>) -> Option<&Tariff> {
        match interface {
            None => self.tariff.as_ref(),
            Some(i) => self
                .iface_tariffs
                .iter()
                .find(|t| t.interface.as_deref() == Some(i)),
        }
    }
}

impl Default for Compiled {
    fn default() -> Self {
        Self {
            tz: jiff::tz::TimeZone::UTC,
            rules: Vec::new(),
            actions: vec![log_action()],
            tariff: None,
            iface_tariffs: Vec::new(),
        }
    }
}

fn log_action() -> Action {
    Action {
        name: "log".to_owned(),
        kind: ActionKind::Log,
    }
}

/// 1-based line of byte offset `at` in `text` (0 when `text` is empty:
/// compiled without the file's text).
fn line_of(text: &str, at: usize) -> usize {
    if text.is_empty() {
        return 0;
    }
    text.get(..at.min(text.len()))
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

fn at_line(text: &str, span: &std::ops::Range<usize>, what: &str, msg: &str) -> String {
    match line_of(text, span.start) {
        0 => format!("{what}: {msg}"),
        n => format!("line {n}: {what}: {msg}"),
    }
}

/// Parses a size: `123`, `5GiB`, `1.5 GB`, `500MB`.
///
/// # Errors
/// A message naming the accepted units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 500MB, 5GiB, 123456)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1_048_576.0,
        "GiB" => 1_073_741_824.0,
        "TiB" => 1_099_511_627_776.0,
        u => {
            return Err(format!(
                "unknown size unit {u:?} in {s:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let v = (n * mult).round();
    if !(0.0..1.8e19).contains(&v) {
        return Err(format!("{s:?} is out of range"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "range checked above"
    )]
    Ok(v as u64)
}

/// Parses a rate into bits per second: `50Mbit/s`, `10MB/s`, `1GiB/s`.
///
/// # Errors
/// A message naming the accepted units.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let body = t
        .strip_suffix("/s")
        .ok_or_else(|| format!("{s:?} is not a rate (like 50Mbit/s or 10MB/s)"))?;
    let bits = [
        ("Gbit", 1e9),
        ("Mbit", 1e6),
        ("kbit", 1e3),
        ("Kbit", 1e3),
        ("bit", 1.0),
    ];
    for (unit, mult) in bits {
        if let Some(num) = body.strip_suffix(unit) {
            let n: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a rate (like 50Mbit/s or 10MB/s)"))?;
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a rate in bits/s far below u64::MAX; negative parses fail"
            )]
            return Ok((n * mult).round().max(0.0) as u64);
        }
    }
    parse_size(body).map(|b| b.saturating_mul(8))
}

/// A fraction in (0, 1): `"2%"`, `"0.5 %"` or `"0.02"`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (t, 1.0),
    };
    let v = num
        .parse::<f64>()
        .map(|v| v / scale)
        .map_err(|_| format!("{s:?} is not a fraction (like 2% or 0.02)"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{s:?} must lie between 0 and 100 % (exclusive)"))
    }
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_cycle(
    reset_day: Option<u8>,
    period_days: Option<u32>,
    start: Option<&str>,
) -> Result<Option<Cycle>, String> {
    match (reset_day, period_days, start) {
        (None, None, None) => Ok(None),
        (Some(d), None, None) => {
            if (1..=31).contains(&d) {
                Ok(Some(Cycle::Monthly { day: d }))
            } else {
                Err(format!("reset_day must be 1..=31, not {d}"))
            }
        }
        (None, Some(n), Some(s)) => {
            if n == 0 {
                return Err("period_days must be > 0".to_owned());
            }
            let start: jiff::civil::Date = s
                .parse()
                .map_err(|e| format!("start {s:?} is not a date (YYYY-MM-DD): {e}"))?;
            Ok(Some(Cycle::Days { days: n, start }))
        }
        (None, Some(_), None) => Err("period_days needs start = \"YYYY-MM-DD\"".to_owned()),
        (None, None, Some(_)) => Err("start needs period_days".to_owned()),
        _ => Err("give either reset_day or period_days with start, not both".to_owned()),
    }
}

fn parse_tz(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))
}

/// The system's zone, UTC when it cannot be found.
fn local_tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)
}

fn compile_action(a: &ActionFile) -> Result<ActionKind, String> {
    let timeout = a
        .timeout
        .as_deref()
        .map_or(Ok(10_000), parse_duration_ms)
        .map(Duration::from_millis)?;
    let only = |allowed: &[&str]| -> Result<(), String> {
        let given = [
            ("command", a.command.is_some()),
            ("shell", a.shell),
            ("timeout", a.timeout.is_some()),
            ("url", a.url.is_some()),
            ("bearer_token", a.bearer_token.is_some()),
            ("hmac_secret", a.hmac_secret.is_some()),
            ("retries", a.retries.is_some()),
            ("backoff", a.backoff.is_some()),
            ("user", a.user.is_some()),
        ];
        match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            Some((k, _)) => Err(format!("`{k}` does not apply to kind {:?}", a.kind)),
            None => Ok(()),
        }
    };
    match a.kind.as_str() {
        "log" => {
            only(&[])?;
            Ok(ActionKind::Log)
        }
        "exec" => {
            only(&["command", "shell", "timeout"])?;
            let cmd = a
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or("exec needs command = [\"/path/to/program\", \"arg\", ...]")?;
            let argv = if a.shell {
                if cmd.len() != 1 {
                    return Err("with shell = true, command is one string".to_owned());
                }
                vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd[0].clone()]
            } else {
                cmd
            };
            Ok(ActionKind::Exec { argv, timeout })
        }
        "webhook" => {
            only(&[
                "url",
                "bearer_token",
                "hmac_secret",
                "retries",
                "backoff",
                "timeout",
            ])?;
            let url = a.url.clone().ok_or("webhook needs url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("url {url:?} must start with http:// or https://"));
            }
            Ok(ActionKind::Webhook {
                url,
                bearer: a.bearer_token.clone(),
                hmac_secret: a.hmac_secret.clone(),
                retries: a.retries.unwrap_or(3),
                backoff: Duration::from_millis(
                    a.backoff.as_deref().map_or(Ok(1000), parse_duration_ms)?,
                ),
                timeout,
            })
        }
        "desktop" => {
            only(&["user"])?;
            let user = a
                .user
                .clone()
                .ok_or("desktop needs user = \"NAME\" (whose session bus to notify)")?;
            Ok(ActionKind::Desktop { user })
        }
        k => Err(format!(
            "unknown action kind {k:?} (log, exec, webhook, desktop)"
        )),
    }
}

fn fingerprint(r: &RuleFile) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    // Stable across runs and builds: FxHasher has no random seed.
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(format!("{r:?}").as_bytes());
    h.finish()
}

#[expect(
    clippy::too_many_lines,
    reason = "one match over the rule kinds, each a few checks"
)]
fn compile_rule(r: &RuleFile, actions: &[Action], tariff: Option<&Tariff>) -> Result<Rule, String> {
    let mut filters = Vec::new();
    let (mut patterns, mut nets, mut ifaces) = (Vec::new(), Vec::new(), Vec::new());
    for f in &r.filters {
        if let Some((k, v)) = f.split_once('=')
            && k.trim() == "remote"
            && v.contains('/')
        {
            nets.push(parse_net(v.trim()).map_err(|e| format!("filter {f:?}: {e}"))?);
            continue;
        }
        let t: FilterTerm = f.parse().map_err(|e| format!("filter {f:?}: {e}"))?;
        let named = matches!(
            t.key,
            FilterKey::App
                | FilterKey::Comm
                | FilterKey::User
                | FilterKey::Cgroup
                | FilterKey::Container
        );
        if named && t.value.contains(['*', '?', '[']) {
            let p = glob::Pattern::new(&t.value).map_err(|e| format!("filter {f:?}: {e}"))?;
            patterns.push((t.key, p));
            continue;
        }
        if t.key == FilterKey::Interface {
            // A name, an index or a glob over names (`wwan*`).
            ifaces.push(glob::Pattern::new(&t.value).map_err(|e| format!("filter {f:?}: {e}"))?);
            continue;
        }
        filters.push(t);
    }
    let mut class = r.class.as_deref().map(parse_class).transpose()?;
    if let Some(i) = filters.iter().position(|t| t.key == FilterKey::Class) {
        let c = parse_class(&filters.remove(i).value)?;
        if class.is_some_and(|k| k != c) {
            return Err("class given twice, differently".to_owned());
        }
        class = Some(c);
    }
    if !ifaces.is_empty() {
        if !(filters.is_empty() && patterns.is_empty() && nets.is_empty()) {
            return Err(
                "interface totals are kept per interface only: an interface rule takes \
                 interface terms, a class and a direction (no process, remote, port or protocol)"
                    .to_owned(),
            );
        }
        if !matches!(r.kind.as_str(), "volume" | "rate" | "quota") {
            return Err(format!(
                "kind {:?} does not take an interface (volume, rate and quota do)",
                r.kind
            ));
        }
    }
    let endpoint = !nets.is_empty() || filters.iter().any(|t| t.key.needs_remote());
    let samples = matches!(r.kind.as_str(), "rtt_p95" | "retrans_rate");
    if endpoint && matches!(r.kind.as_str(), "new_app" | "quality") {
        return Err(format!(
            "kind {:?} takes process filters and a class only (no remote, port or protocol)",
            r.kind
        ));
    }
    if samples && r.direction.is_some() {
        return Err(format!(
            "`direction` does not apply to kind {:?} (RTT and retransmissions are per connection)",
            r.kind
        ));
    }
    let direction = match r.direction.as_deref() {
        None if r.kind == "quality" => Direction::Rx,
        None | Some("both") => Direction::Both,
        Some("tx") => Direction::Tx,
        Some("rx") => Direction::Rx,
        Some(d) => return Err(format!("direction {d:?}: tx, rx or both")),
    };
    let hysteresis = r.hysteresis.map_or(0.0, |h| h.0);
    if !(0.0..1.0).contains(&hysteresis) {
        return Err(format!("hysteresis must be in 0..1, not {hysteresis}"));
    }
    let repeat_ms = r.repeat.as_deref().map(parse_duration_ms).transpose()?;
    if repeat_ms == Some(0) {
        return Err("repeat must be > 0".to_owned());
    }
    let unused = |what: &[(&str, bool)]| -> Result<(), String> {
        match what.iter().find(|(_, set)| *set) {
            Some((k, _)) => Err(format!("`{k}` does not apply to kind {:?}", r.kind)),
            None => Ok(()),
        }
    };
    let cycle_given = r.reset_day.is_some() || r.period_days.is_some() || r.start.is_some();
    if r.kind != "rtt_p95" && r.min_samples.is_some() {
        unused(&[("min_samples", true)])?;
    }
    if r.kind != "retrans_rate" && r.min_segments.is_some() {
        unused(&[("min_segments", true)])?;
    }
    if !matches!(r.kind.as_str(), "quality") && (r.below.is_some() || r.min_rate.is_some()) {
        unused(&[("below/min_rate", true)])?;
    }
    let condition = match r.kind.as_str() {
        "volume" => {
            unused(&[
                ("for", r.for_.is_some()),
                ("cap", r.cap.is_some()),
                ("levels", r.levels.is_some()),
                ("project", r.project),
                ("reset_day/period_days/start", cycle_given),
            ])?;
            let over = parse_size(r.over.as_deref().ok_or("volume needs over = \"SIZE\"")?)?;
            match (r.window.as_deref(), r.period.as_deref()) {
                (Some(w), None) => {
                    let window_ms = parse_duration_ms(w)?;
                    if window_ms == 0 {
                        return Err("window must be > 0".to_owned());
                    }
                    Condition::Rolling { over, window_ms }
                }
                (None, Some(p)) => {
                    if repeat_ms.is_some() || r.hysteresis.is_some() {
                        return Err(
                            "a calendar period fires once a period: no repeat or hysteresis"
                                .to_owned(),
                        );
                    }
                    let period = match p {
                        "day" => Period::Day,
                        "week" => Period::Week,
                        "month" => Period::Month,
                        _ => return Err(format!("period {p:?}: day, week or month")),
                    };
                    Condition::InPeriod {
                        over,
                        cycle: Cycle::Calendar(period),
                    }
                }
                _ => {
                    return Err(
                        "volume needs exactly one of window = \"24h\" (rolling) or period = \"day\"|\"week\"|\"month\""
                            .to_owned(),
                    );
                }
            }
        }
        "rate" => {
            unused(&[
                ("window", r.window.is_some()),
                ("period", r.period.is_some()),
                ("cap", r.cap.is_some()),
                ("levels", r.levels.is_some()),
                ("project", r.project),
                ("reset_day/period_days/start", cycle_given),
            ])?;
            Condition::Rate {
                over_bps: parse_rate(r.over.as_deref().ok_or("rate needs over = \"RATE\"")?)?,
                for_ms: r.for_.as_deref().map_or(Ok(0), parse_duration_ms)?,
            }
        }
        "quota" => {
            unused(&[
                ("over", r.over.is_some()),
                ("window", r.window.is_some()),
                ("period", r.period.is_some()),
                ("for", r.for_.is_some()),
                ("repeat", r.repeat.is_some()),
                ("hysteresis", r.hysteresis.is_some()),
            ])?;
            let cap = match (&r.cap, tariff.and_then(|t| t.cap)) {
                (Some(c), _) => parse_size(c)?,
                (None, Some(c)) => c,
                (None, None) => {
                    return Err("quota needs cap = \"SIZE\" (or a [tariff] cap)".to_owned());
                }
            };
            if cap == 0 {
                return Err("cap must be > 0".to_owned());
            }
            let cycle = match parse_cycle(r.reset_day, r.period_days, r.start.as_deref())? {
                Some(c) => c,
                None => tariff.map(|t| t.cycle.clone()).ok_or(
                    "quota needs a cycle: reset_day = 1..31, or period_days with start (or a [tariff] cycle)",
                )?,
            };
            let mut levels = r.levels.clone().unwrap_or_else(|| vec![80, 90, 100]);
            levels.sort_unstable();
            levels.dedup();
            if levels.is_empty() || levels.contains(&0) {
                return Err("levels are percentages > 0, like [80, 90, 100]".to_owned());
            }
            // Like the tariff: the internet unless the rule says otherwise.
            class = class.or(Some(DestClass::Internet));
            Condition::Quota {
                cap,
                levels,
                project: r.project,
                cycle,
            }
        }
        "new_app" => {
            unused(&[
                ("over", r.over.is_some()),
                ("window", r.window.is_some()),
                ("period", r.period.is_some()),
                ("for", r.for_.is_some()),
                ("repeat", r.repeat.is_some()),
                ("hysteresis", r.hysteresis.is_some()),
                ("cap", r.cap.is_some()),
                ("levels", r.levels.is_some()),
                ("project", r.project),
                ("reset_day/period_days/start", cycle_given),
            ])?;
            class = class.or(Some(DestClass::Internet));
            Condition::NewApp
        }
        "quality" => {
            unused(&[
                ("over", r.over.is_some()),
                ("period", r.period.is_some()),
                ("for", r.for_.is_some()),
                ("cap", r.cap.is_some()),
                ("levels", r.levels.is_some()),
                ("project", r.project),
                ("reset_day/period_days/start", cycle_given),
            ])?;
            let below = r
                .below
                .ok_or("quality needs below = 0.5 (a fraction of the baseline throughput)")?
                .0;
            if !(below > 0.0 && below < 1.0) {
                return Err(format!("below must be in (0, 1), not {below}"));
            }
            let window_ms = r
                .window
                .as_deref()
                .map_or(Ok(15 * 60_000), parse_duration_ms)?;
            if window_ms < 3 * 60_000 {
                return Err("a quality window is at least 3m (it averages busy minutes)".to_owned());
            }
            class = class.or(Some(DestClass::Internet));
            Condition::Quality {
                below,
                min_bps: parse_rate(r.min_rate.as_deref().unwrap_or("1Mbit/s"))?,
                window_ms,
            }
        }
        "rtt_p95" | "retrans_rate" => {
            unused(&[
                ("period", r.period.is_some()),
                ("for", r.for_.is_some()),
                ("cap", r.cap.is_some()),
                ("levels", r.levels.is_some()),
                ("project", r.project),
                ("reset_day/period_days/start", cycle_given),
            ])?;
            let window_ms = r
                .window
                .as_deref()
                .map_or(Ok(5 * 60_000), parse_duration_ms)?;
            if window_ms == 0 {
                return Err("window must be > 0".to_owned());
            }
            let over = r.over.as_deref().ok_or_else(|| {
                format!(
                    "{} needs over = {}",
                    r.kind,
                    if r.kind == "rtt_p95" {
                        "\"150ms\""
                    } else {
                        "\"2%\" (or 0.02)"
                    }
                )
            })?;
            if r.kind == "rtt_p95" {
                let over_us = humantime::parse_duration(over)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .map_err(|e| format!("over {over:?} is not a duration like 150ms: {e}"))?;
                if over_us == 0 {
                    return Err("over must be > 0".to_owned());
                }
                Condition::RttP95 {
                    over_us,
                    window_ms,
                    min_samples: r.min_samples.unwrap_or(10).max(1),
                }
            } else {
                Condition::RetransRate {
                    over: parse_fraction(over)?,
                    window_ms,
                    min_segments: r.min_segments.unwrap_or(100).max(1),
                }
            }
        }
        k => {
            return Err(format!(
                "unknown kind {k:?} (volume, rate, quota, new_app, quality, rtt_p95, retrans_rate)"
            ));
        }
    };
    let names = r.actions.clone().unwrap_or_else(|| vec!["log".to_owned()]);
    let mut idx = Vec::new();
    for n in &names {
        let i = actions
            .iter()
            .position(|a| &a.name == n)
            .ok_or_else(|| format!("unknown action {n:?} (declare it with [[alerts.action]])"))?;
        idx.push(i);
    }
    Ok(Rule {
        name: r.name.clone(),
        scope: Scope {
            filters,
            class,
            patterns,
            nets,
            ifaces,
        },
        direction,
        condition,
        hysteresis,
        repeat_ms,
        actions: idx,
        fingerprint: fingerprint(r),
    })
}

fn compile_tariff(t: &TariffFile, default_tz: &jiff::tz::TimeZone) -> Result<Tariff, String> {
    let classes = match &t.classes {
        None => vec![DestClass::Internet],
        Some(cs) => cs
            .iter()
            .map(|c| parse_class(c))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let cycle = parse_cycle(t.reset_day, t.period_days, t.start.as_deref())?
        .unwrap_or(Cycle::Monthly { day: 1 });
    let price = |n: Option<Num>, what: &str| -> Result<f64, String> {
        let v = n.map_or(0.0, |n| n.0);
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(format!("{what} must be ≥ 0"))
        }
    };
    Ok(Tariff {
        currency: t.currency.clone().unwrap_or_default(),
        price_per_gib: price(t.price_per_gib, "price_per_gib")?,
        included: t.included.as_deref().map(parse_size).transpose()?,
        price_over_per_gib: price(t.price_over_per_gib, "price_over_per_gib")?,
        classes,
        cap: t.cap.as_deref().map(parse_size).transpose()?,
        cycle,
        tz: match &t.timezone {
            Some(z) => parse_tz(z)?,
            None => default_tz.clone(),
        },
        interface: None,
    })
}

/// `[tariff]`: the tariff of every interface (when any of its own fields
/// is set) and those of `[tariff.interface.NAME]`.
fn compile_tariffs(
    t: &TariffFile,
    default_tz: &jiff::tz::TimeZone,
) -> Result<(Option<Tariff>, Vec<Tariff>), String> {
    let own = TariffFile {
        interface: std::collections::BTreeMap::new(),
        ..t.clone()
    };
    let all = if own == TariffFile::default() && !t.interface.is_empty() {
        None
    } else {
        Some(compile_tariff(&own, default_tz)?)
    };
    let mut per = Vec::new();
    for (name, f) in &t.interface {
        let what = format!("interface {name:?}");
        if name.is_empty() || name.contains(['*', '?', '[', '/']) {
            return Err(format!("{what}: an interface name (no globs)"));
        }
        if !f.interface.is_empty() {
            return Err(format!("{what}: no interface tariffs inside one"));
        }
        let mut c = compile_tariff(f, default_tz).map_err(|e| format!("{what}: {e}"))?;
        c.interface = Some(name.clone());
        per.push(c);
    }
    Ok((all, per))
}

/// Checks `[alerts]` and `[tariff]`. `text` is the file's text, for line
/// numbers (empty: none).
///
/// # Errors
/// The first mistake, with its line.
pub fn compile(
    alerts: &AlertsFile,
    tariff: Option<&Spanned<TariffFile>>,
    text: &str,
) -> Result<Compiled, String> {
    let tz = match &alerts.timezone {
        Some(z) => {
            parse_tz(z.get_ref()).map_err(|e| at_line(text, &z.span(), "[alerts] timezone", &e))?
        }
        None => local_tz(),
    };
    let (tariff, iface_tariffs) = match tariff {
        Some(t) => compile_tariffs(t.get_ref(), &tz)
            .map_err(|e| at_line(text, &t.span(), "[tariff]", &e))?,
        None => (None, Vec::new()),
    };
    let mut actions = vec![log_action()];
    for a in &alerts.action {
        let what = format!("action {:?}", a.get_ref().name);
        if actions.iter().any(|x| x.name == a.get_ref().name) {
            return Err(at_line(
                text,
                &a.span(),
                &what,
                "a second action of this name",
            ));
        }
        let kind = compile_action(a.get_ref()).map_err(|e| at_line(text, &a.span(), &what, &e))?;
        actions.push(Action {
            name: a.get_ref().name.clone(),
            kind,
        });
    }
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for r in &alerts.rule {
        let what = format!("rule {:?}", r.get_ref().name);
        if r.get_ref().name.is_empty() || !names.insert(r.get_ref().name.clone()) {
            return Err(at_line(
                text,
                &r.span(),
                &what,
                "names must be unique and not empty",
            ));
        }
        // A rule on one interface with a tariff of its own takes that
        // tariff's cap and cycle by default.
        let own = r.get_ref().filters.iter().find_map(|f| {
            let (k, v) = f.split_once('=')?;
            let v = v.trim();
            (k.trim() == "interface")
                .then(|| {
                    iface_tariffs
                        .iter()
                        .find(|t| t.interface.as_deref() == Some(v))
                })
                .flatten()
        });
        rules.push(
            compile_rule(r.get_ref(), &actions, own.or(tariff.as_ref()))
                .map_err(|e| at_line(text, &r.span(), &what, &e))?,
        );
    }
    Ok(Compiled {
        tz,
        rules,
        actions,
        tariff,
        iface_tariffs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Compiled, String> {
        let file = crate::config::parse(text, std::path::Path::new("c.toml"))
            .map_err(|e| e.to_string())?;
        compile(&file.alerts, file.tariff.as_ref(), text)
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("5GiB"), Ok(5 << 30));
        assert_eq!(parse_size("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_rate("50Mbit/s"), Ok(50_000_000));
        assert_eq!(parse_rate("10MB/s"), Ok(80_000_000));
        assert!(parse_rate("10MB").is_err());
    }

    #[test]
    fn a_full_file_compiles() {
        let c = check(
            r#"
[alerts]
timezone = "Europe/Berlin"
[[alerts.action]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:1/x"
hmac_secret = "k"
[[alerts.rule]]
name = "a"
filters = ["app=firefox"]
kind = "volume"
over = "5GiB"
window = "24h"
actions = ["log", "hook"]
[[alerts.rule]]
name = "q"
kind = "quota"
levels = [100, 80]
[tariff]
cap = "100GiB"
reset_day = 31
"#,
        )
        .expect("compiles");
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].actions, vec![0, 1]);
        assert!(matches!(
            &c.rules[1].condition,
            Condition::Quota { cap, levels, cycle: Cycle::Monthly { day: 31 }, .. }
                if *cap == 100 << 30 && levels == &vec![80, 100]
        ));
    }

    #[test]
    fn errors_name_the_line() {
        let text = "[[alerts.rule]]\nname = \"a\"\nkind = \"volume\"\nover = \"5GiB\"\nperiod = \"day\"\n[[alerts.rule]]\nname = \"b\"\nkind = \"volume\"\nover = \"lots\"\nwindow = \"1h\"\n";
        let e = check(text).expect_err("bad size");
        assert!(
            e.contains("line 6") && e.contains("rule \"b\"") && e.contains("lots"),
            "{e}"
        );
        let e = check(
            &text
                .replace("lots", "1GB")
                .replace("period = \"day\"\n", ""),
        )
        .expect_err("rule a has no window");
        assert!(e.contains("line 1") && e.contains("window"), "{e}");
        let e = check("[[alerts.rule]]\nname = \"a\"\nkind = \"rate\"\nover = \"1Mbit/s\"\nactions = [\"nope\"]\n")
            .expect_err("unknown action");
        assert!(e.contains("line 1") && e.contains("nope"), "{e}");
        let e = check(
            "[[alerts.rule]]\nname = \"a\"\nkind = \"quota\"\ncap = \"1GB\"\nreset_day = 32\n",
        )
        .expect_err("day 32");
        assert!(e.contains("reset_day"), "{e}");
        let e = check("[[alerts.rule]]\nname = \"a\"\nkind = \"volume\"\nwindw = \"1h\"\n")
            .expect_err("typo");
        assert!(e.contains("windw") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn quality_rules_and_endpoint_scopes_compile() {
        let c = check(
            r#"
[[alerts.rule]]
name = "rtt"
filters = ["port=tcp/443", "app=fire*", "remote=10.0.0.0/8"]
kind = "rtt_p95"
over = "150ms"
[[alerts.rule]]
name = "loss"
kind = "retrans_rate"
over = "2.5%"
window = "10m"
min_segments = 500
"#,
        )
        .expect("compiles");
        assert_eq!(
            c.rules[0].condition,
            Condition::RttP95 {
                over_us: 150_000,
                window_ms: 300_000,
                min_samples: 10
            }
        );
        let scope = &c.rules[0].scope;
        assert!(scope.by_endpoint());
        assert_eq!(
            scope.terms(),
            vec!["port=tcp/443", "app=fire*", "remote=10.0.0.0/8"]
        );
        assert!(scope.nets_contain("10.1.2.3".parse().expect("ip")));
        assert!(!scope.nets_contain("11.0.0.1".parse().expect("ip")));
        assert!(!scope.nets_contain("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(matches!(
            c.rules[1].condition,
            Condition::RetransRate { over, window_ms: 600_000, min_segments: 500 }
                if (over - 0.025).abs() < 1e-12
        ));
        assert!(!c.rules[1].scope.by_endpoint());
    }

    #[test]
    fn quality_and_scope_mistakes_are_named() {
        let rule = |body: &str| check(&format!("[[alerts.rule]]\nname = \"a\"\n{body}"));
        for (body, want) in [
            ("kind = \"rtt_p95\"\n", "over"),
            ("kind = \"rtt_p95\"\nover = \"fast\"\n", "fast"),
            ("kind = \"retrans_rate\"\nover = \"120%\"\n", "120%"),
            (
                "kind = \"retrans_rate\"\nover = \"1%\"\ndirection = \"tx\"\n",
                "direction",
            ),
            (
                "kind = \"rtt_p95\"\nover = \"1ms\"\nmin_segments = 3\n",
                "min_segments",
            ),
            (
                "kind = \"new_app\"\nfilters = [\"port=443\"]\n",
                "no remote",
            ),
            (
                "kind = \"volume\"\nover = \"1GB\"\nwindow = \"1h\"\nfilters = [\"interface=eth0\", \"app=curl\"]\n",
                "per interface only",
            ),
            (
                "kind = \"new_app\"\nfilters = [\"interface=eth0\"]\n",
                "does not take an interface",
            ),
            (
                "kind = \"volume\"\nover = \"1GB\"\nwindow = \"1h\"\nfilters = [\"remote=10.0.0.0/33\"]\n",
                "33",
            ),
            (
                "kind = \"volume\"\nover = \"1GB\"\nwindow = \"1h\"\nfilters = [\"app=[x\"]\n",
                "app=[x",
            ),
        ] {
            let e = rule(body).expect_err(body);
            assert!(e.contains("line 1") && e.contains(want), "{body}: {e}");
        }
    }
}
