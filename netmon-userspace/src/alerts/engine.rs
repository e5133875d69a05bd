//! Rule evaluation: per-rule accumulators fed by each committed drain step's
//! per process deltas, seeded at start from the history with the query
//! layer's scan ([`crate::query::scan`]) and process predicate
//! ([`crate::query::ProcFacts::passes`]), so an alert counts exactly what
//! `netmon usage --filter ... --class ...` shows for the same window.
//!
//! # Cost per interval
//! Proportional to the step's processes plus the rules, not to history:
//! - each process's matching scopes (distinct filter sets) are computed
//!   once per process identity and cached;
//! - a step adds each process delta to its scopes' sums (one add per
//!   matching scope), then each rule updates its accumulator from its
//!   scope's sum: a rolling window is a queue of (interval, bytes) with a
//!   running sum, a period or cycle a running sum reset at its boundary, a
//!   rate the start of the current run above the threshold;
//! - rules that read the store after the step (endpoint scopes, RTT and
//!   retransmission windows) read what it committed: the current minute's
//!   remote rows and the step's TCP samples, each row or sample matched
//!   against its own process's scopes; sample windows are updated by
//!   merging, never re-sorted (both below).
//!
//! # Exactly once across crashes
//! Evaluation runs after the drain's commit, in its own durable
//! transaction ([`super::state::commit`]) that records the new rule states
//! and the events together; actions are queued only after it committed.
//! - Crash before that commit: nothing says it fired; the restarted engine
//!   rebuilds its sums from the committed history (which holds the step),
//!   the condition is true again at the next evaluation and fires once.
//!   The actions never ran (they are queued after the commit), so nothing
//!   was sent twice.
//! - Crash after it: the state says fired (in this cycle, since when); the
//!   restarted engine does not fire again. An action still queued when the
//!   process died is lost, not repeated: delivery is at most once, and the
//!   event stays in history (`netmon alerts`).
//! - The drain's lazy commits (drain invariant 7) are made durable by this
//!   durable commit, so a stored state never refers to history a crash can
//!   roll back.
//!
//! A condition that became true while the daemon was down fires at the
//! first step after the restart (the step that takes the downtime's deltas).
//! Rate rules need consecutive intervals: a restart begins a new run.
//!
//! # Scopes by endpoint
//! A rule with a remote, port or protocol term (or a `remote=NET/LEN`
//! network) counts the per endpoint rows, not its processes' deltas:
//! after each step the engine reads the current minute's remote rows
//! (rows plus the snapshot's pending pieces, through the query layer's
//! scan; the hour's while the minute tier does not cover it) and takes
//! the difference from what it read the step before (a new minute starts
//! from zero), so each step adds exactly the bytes the drain just
//! committed for those endpoints (a step's pieces carry its drain
//! minute). The cost is the current minute's endpoints, each checked
//! against its process's scopes only, not the history. At start, cycles and periods are
//! seeded from the remote rows resolved to the window
//! ([`crate::query::edges`]); rolling windows also need each byte's time,
//! which remote rows (kept per bucket) do not have, so each row's bytes
//! are spread over its process's interval rows of that bucket ([`spread`]:
//! exact when that process's bucket went to one endpoint, or in the same
//! proportion all along).
//!
//! # Scopes by interface
//! A rule with interface terms counts the per interface rows (local
//! sockets' IP bytes by destination class, what `netmon usage --by
//! interface` shows as `tx`/`rx`), through the query layer's scan. Their
//! interval rows carry the drain time, so each step reads the rows
//! committed since the last read, and at start rolling windows are seeded
//! with each row's own time (exact, no spreading) and cycles from the
//! planner's segments. Interface names (for `interface=wwan*`) are looked
//! up once per index ([`crate::query::ifaces::interface_name`]).
//!
//! # RTT and retransmissions
//! `rtt_p95` and `retrans_rate` rules keep, per drain time in their window,
//! the TCP quality samples their scope passes (one per TCP flow with
//! packets in the interval: its smoothed RTT, and its retransmitted and
//! sent data segments; stored per remote key, each RTT as its histogram
//! bucket reports it, see [`crate::store::quality`]), read after each step
//! through
//! [`crate::query::quality::scoped_samples`] and at start for the whole
//! window. The p95 is the nearest rank over the window's RTT samples, as
//! `netmon usage` reports `rtt_p95`; the retransmission rate is
//! retransmitted over sent data segments. The window is kept as a sorted
//! Vec of its RTTs and running segment sums ([`SampleWindow`]): a step
//! merges its samples in and the expired ones out, and each sample is
//! matched against its process's scopes only. Below `min_samples` /
//! `min_segments` the window says nothing and the rule keeps its state.
//!
//! # Throughput against its baseline
//! The throughput notice needs byte counts only: the mean rate of the
//! window's *busy* minutes (a minute at `min_rate` or more: there was
//! demand) against the same mean over the same hour (24 h steps) of the
//! last 7 days, read from the history once an hour. It says "busy minutes
//! moved less than they usually do at this hour", which a slow link causes
//! and so does lighter use at full speed: a hint, not a measurement of
//! the link (the RTT and retransmission rules measure it).
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::alerts::AlertError;
use crate::alerts::config::{Compiled, Condition, Direction, Rule, Scope};
use crate::alerts::cycle;
use crate::alerts::state::{self, RuleState};
use crate::clock::rfc3339_from_unix_ms;
use crate::model::{ProcessId, ProcessInfo};
use crate::query::AppRules;
use crate::query::edges;
use crate::query::facts::{Facts, ProcFacts};
use crate::query::scan::{self, Kind, Subject};
use crate::query::usage::{RowFilter, remote_ip};
use crate::store::quality::QualityStats;
use crate::store::query::Segment;
use crate::store::{DestClass, ProcessRecord, RemoteKey, Store, Tier, TimeMs, TimeRange, Traffic};
use crate::wire::{AlertEvent, SCHEMA_VERSION};

/// Cached process identities before the cache is cleared.
const PROC_CACHE_MAX: usize = 65_536;

/// A process's derived names and the scopes whose filters it passes.
#[derive(Clone, Debug)]
struct ProcScopes {
    app: String,
    scopes: Box<[u32]>,
}

/// A rule's running sums.
#[derive(Clone, Debug)]
enum Acc {
    /// Bytes per interval in the window, oldest first, and their sum.
    Rolling {
        buckets: VecDeque<(TimeMs, u64)>,
        sum: u64,
    },
    /// Bytes since the current period or cycle began.
    Cycle { range: TimeRange, sum: u64 },
    /// Start of the current run above the threshold.
    Rate { above_since: Option<TimeMs> },
    /// Known apps live in the state.
    NewApp,
    /// Bytes per minute in the window, and the baseline of `hour`.
    Quality {
        minutes: VecDeque<(TimeMs, u64)>,
        hour: Option<TimeMs>,
        baseline_bps: Option<u64>,
    },
    /// TCP samples of the window, kept up to date step by step.
    Samples(SampleWindow),
}

/// The TCP samples of a rule's window: per drain time (for expiry), all
/// their RTTs in one sorted Vec (the p95 is an index into it) and the
/// running segment sums. [`Self::extend`] stages a step's RTTs and
/// [`Self::expire`] merges them in and the expired ones out in one pass,
/// O(window + step) per step instead of re-sorting the whole window.
#[derive(Clone, Debug, Default)]
struct SampleWindow {
    steps: VecDeque<SampleStep>,
    /// Every RTT of `steps`, ascending, once [`Self::expire`] ran since
    /// the last [`Self::extend`].
    sorted: Vec<u32>,
    /// RTTs of the steps added since, not yet in `sorted`.
    staged: Vec<u32>,
    /// The previous `sorted`'s buffer, reused by the next merge.
    spare: Vec<u32>,
    retrans_segs: u64,
    data_segs: u64,
}

impl SampleWindow {
    /// Appends `new` steps (later than the ones held, in time order).
    fn extend(&mut self, new: VecDeque<SampleStep>) {
        for s in &new {
            self.staged.extend_from_slice(&s.rtts);
            self.retrans_segs = self.retrans_segs.saturating_add(s.retrans_segs);
            self.data_segs = self.data_segs.saturating_add(s.data_segs);
        }
        self.steps.extend(new);
    }

    /// Drops the steps that left the window `(ts − window, ts]` and
    /// brings `sorted` up to date.
    fn expire(&mut self, ts: TimeMs, window_ms: u64) {
        let mut del: Vec<u32> = Vec::new();
        while self
            .steps
            .front()
            .is_some_and(|s| s.ts.saturating_add(window_ms) <= ts)
        {
            if let Some(s) = self.steps.pop_front() {
                del.extend_from_slice(&s.rtts);
                self.retrans_segs = self.retrans_segs.saturating_sub(s.retrans_segs);
                self.data_segs = self.data_segs.saturating_sub(s.data_segs);
            }
        }
        if del.is_empty() && self.staged.is_empty() {
            return;
        }
        del.sort_unstable();
        let mut add = std::mem::take(&mut self.staged);
        add.sort_unstable();
        let old = std::mem::take(&mut self.sorted);
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        out.reserve(old.len() + add.len());
        // Merge `old` and `add`; every value of `del` is in one of them (it
        // came from a held or staged step): one removal per occurrence.
        let (mut i, mut j, mut d) = (0, 0, 0);
        loop {
            let v = match (old.get(i), add.get(j)) {
                (Some(a), Some(b)) if a <= b => {
                    i += 1;
                    *a
                }
                (_, Some(b)) => {
                    j += 1;
                    *b
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (None, None) => break,
            };
            while del.get(d).is_some_and(|x| *x < v) {
                d += 1;
            }
            if del.get(d) == Some(&v) {
                d += 1;
            } else {
                out.push(v);
            }
        }
        self.sorted = out;
        self.spare = old;
        add.clear();
        self.staged = add;
    }
}

/// The TCP quality samples of one drain time that a rule's scope passes.
#[derive(Clone, Debug, Default)]
struct SampleStep {
    ts: TimeMs,
    /// RTTs, µs (samples with an RTT measurement only).
    rtts: Vec<u32>,
    retrans_segs: u64,
    data_segs: u64,
}

impl SampleStep {
    /// Adds one key's row: each RTT sample as its histogram reports it
    /// (within 1.6 %, see [`crate::store::quality`]).
    fn add(&mut self, s: &QualityStats) {
        for (v, n) in s.rtt.values() {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            self.rtts.extend(std::iter::repeat_n(v, n));
        }
        self.retrans_segs = self.retrans_segs.saturating_add(s.retrans_segs);
        self.data_segs = self.data_segs.saturating_add(s.data_segs);
    }
}

/// Appends the row `s` of drain time `ts` to `steps` (in time order).
fn push_sample(steps: &mut VecDeque<SampleStep>, ts: TimeMs, s: &QualityStats) {
    match steps.back_mut() {
        Some(last) if last.ts == ts => last.add(s),
        _ => {
            let mut st = SampleStep {
                ts,
                ..SampleStep::default()
            };
            st.add(s);
            steps.push_back(st);
        }
    }
}

/// One minute.
const MINUTE: TimeMs = 60_000;
/// One hour.
const HOUR: TimeMs = 3_600_000;
/// Busy minutes needed for a mean (window and baseline).
const MIN_BUSY: usize = 3;

/// Bits per second of `bytes` in a minute.
fn minute_bps(bytes: u64) -> u64 {
    u64::try_from(u128::from(bytes) * 8 * 1000 / u128::from(MINUTE)).unwrap_or(u64::MAX)
}

/// Mean rate of the minutes at `min_bps` or more, if there are
/// [`MIN_BUSY`] of them.
fn busy_mean(minutes: impl Iterator<Item = u64>, min_bps: u64) -> Option<u64> {
    let busy: Vec<u64> = minutes.map(minute_bps).filter(|r| *r >= min_bps).collect();
    (busy.len() >= MIN_BUSY).then(|| {
        let n = u64::try_from(busy.len()).unwrap_or(u64::MAX);
        busy.iter().fold(0u64, |a, b| a.saturating_add(*b)) / n
    })
}

/// Adds `b` bytes at `ts` to per minute buckets (in time order).
fn add_minute(minutes: &mut VecDeque<(TimeMs, u64)>, ts: TimeMs, b: u64) {
    let m = ts - ts % MINUTE;
    match minutes.back_mut() {
        Some((last, v)) if *last == m => *v = v.saturating_add(b),
        _ => minutes.push_back((m, b)),
    }
}

/// One rule at run time.
#[derive(Clone, Debug)]
struct Live {
    rule: Rule,
    scope: usize,
    state: RuleState,
    acc: Acc,
    dirty: bool,
}

/// A remote bucket: (start, width), ms.
type Bucket = (TimeMs, TimeMs);

/// Per scope sums of one step: (tx, rx) IP bytes.
type Sums = Vec<(u64, u64)>;

/// The evaluator.
#[derive(Debug)]
pub struct Engine {
    tz: jiff::tz::TimeZone,
    apps: AppRules,
    scopes: Vec<Scope>,
    live: Vec<Live>,
    cache: FxHashMap<ProcessId, ProcScopes>,
    sums: Sums,
    /// Scopes of new_app rules (their rows are looked at per app).
    new_app_scopes: Vec<usize>,
    last_ts: Option<TimeMs>,
    seq: u64,
    /// Fired events not yet stored (their commit failed; retried next step).
    pending: Vec<AlertEvent>,
    /// Per scope: the endpoint terms and class as the query applies them.
    row_filters: Vec<RowFilter>,
    /// Endpoint scopes whose bytes rules sum (volume, rate, quota).
    endpoint_scopes: Vec<usize>,
    /// Per endpoint scope: (bucket, tx, rx) read so far in that bucket.
    endpoint_hour: FxHashMap<usize, (Bucket, u64, u64)>,
    /// Per endpoint scope: this step's (tx, rx), set by [`Self::step`].
    endpoint_step: FxHashMap<usize, (u64, u64)>,
    /// A read of the endpoint rows failed since the last good one.
    endpoint_missed: bool,
    /// TCP samples are read up to (excluding) this drain time.
    samples_to: TimeMs,
    /// Interface scopes (their rules sum the per interface rows).
    iface_scopes: Vec<usize>,
    /// Per interface scope: this step's (tx, rx), set by [`Self::step`].
    iface_step: FxHashMap<usize, (u64, u64)>,
    /// Per interface rows are read up to (excluding) this drain time.
    iface_to: TimeMs,
    /// Interface names by index, looked up once each.
    iface_names: FxHashMap<u32, Option<String>>,
}

fn pick(d: Direction, tx: u64, rx: u64) -> u64 {
    match d {
        Direction::Tx => tx,
        Direction::Rx => rx,
        Direction::Both => tx.saturating_add(rx),
    }
}

fn facts_of(info: &ProcessInfo, apps: &AppRules) -> ProcFacts {
    let record = ProcessRecord {
        info: info.clone(),
        unit: info
            .cgroup
            .as_deref()
            .and_then(crate::store::unit_of_cgroup),
        first_seen_ms: 0,
        last_seen_ms: 0,
    };
    Facts::from_records(vec![record], apps).get(info.id)
}

fn scopes_of(f: &ProcFacts, scopes: &[Scope]) -> ProcScopes {
    let matching: Vec<u32> = scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| f.passes(&s.filters) && s.patterns_match(f))
        .filter_map(|(i, _)| u32::try_from(i).ok())
        .collect();
    ProcScopes {
        app: f.app.clone(),
        scopes: matching.into_boxed_slice(),
    }
}

/// Segments that read `range` at the finest resolution the store still
/// holds for all of it (interval rows, else minute rows), so rows keep
/// their own times; the query planner's coarse-where-aligned plan when
/// neither does. Rolling windows and minute rates need the times; cycle
/// sums do not and use the planner.
fn fine_plan(store: &mut Store, range: &TimeRange) -> Result<Vec<Segment>, AlertError> {
    for tier in [Tier::Interval, Tier::Minute] {
        if store.purged_before(tier)? <= tier.bucket(range.start) {
            return Ok(vec![Segment {
                tier,
                from: tier.bucket(range.start),
                to: range.end,
            }]);
        }
    }
    Ok(scan::plan_for(store, range, Kind::Process)?.0)
}

/// (time, tx, rx) IP bytes of an interval row.
type TimedBytes = (TimeMs, u64, u64);

/// A row the seed adds up: time, process, class, traffic, endpoint.
type SeedRow = (TimeMs, ProcessId, DestClass, Traffic, Option<RemoteKey>);

/// `b` split in proportion to `weights` (the remainder to the last
/// non-zero weight); `None` when every weight is zero.
fn share(b: u64, weights: &[u64]) -> Option<Vec<u64>> {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut out: Vec<u64> = weights
        .iter()
        .map(|w| u64::try_from(u128::from(b) * u128::from(*w) / total).unwrap_or(u64::MAX))
        .collect();
    let rest = b.saturating_sub(out.iter().fold(0u64, |a, x| a.saturating_add(*x)));
    if let Some(i) = weights.iter().rposition(|w| *w > 0) {
        out[i] = out[i].saturating_add(rest);
    }
    Some(out)
}

/// Remote rows are kept per bucket (an hour, or a minute), so a rolling
/// window seeded from them needs their times: each remote row's bytes are
/// spread over its process's interval rows (same class, same bucket,
/// inside the window) in proportion to their bytes. Exact when the
/// process's traffic of that bucket went to one endpoint, or in the same
/// proportion all along; bytes with no interval row to follow (purged
/// tiers) stay at the bucket's first time inside the window.
fn spread(
    store: &mut Store,
    range: &TimeRange,
    remote: &[scan::Row],
) -> Result<Vec<SeedRow>, AlertError> {
    let mut fine: FxHashMap<(ProcessId, DestClass), Vec<TimedBytes>> = FxHashMap::default();
    let segs = fine_plan(store, range)?;
    scan::rows(store, &segs, Kind::Process, |r| {
        if let Subject::Process(id) = r.subject {
            fine.entry((id, r.class)).or_default().push((
                r.ts,
                r.traffic.tx.ip_bytes,
                r.traffic.rx.ip_bytes,
            ));
        }
    })?;
    let traffic = |tx: u64, rx: u64| {
        let mut t = Traffic::default();
        t.tx.ip_bytes = tx;
        t.rx.ip_bytes = rx;
        t
    };
    let mut out = Vec::new();
    for r in remote {
        let Subject::Remote(rk) = r.subject else {
            continue;
        };
        let b0 = r.tier.bucket(r.ts);
        let lo = b0.max(range.start);
        let hi = crate::query::window::bucket_end(r.tier, b0 + 1).min(range.end);
        let times: Vec<TimedBytes> = fine
            .get(&(rk.process, r.class))
            .map(|v| {
                v.iter()
                    .filter(|x| x.0 >= lo && x.0 < hi)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let (btx, brx) = (r.traffic.tx.ip_bytes, r.traffic.rx.ip_bytes);
        let wtx: Vec<u64> = times.iter().map(|x| x.1).collect();
        let wrx: Vec<u64> = times.iter().map(|x| x.2).collect();
        let (stx, srx) = (share(btx, &wtx), share(brx, &wrx));
        for (i, (ts, _, _)) in times.iter().enumerate() {
            let tx = stx.as_ref().map_or(0, |v| v[i]);
            let rx = srx.as_ref().map_or(0, |v| v[i]);
            if tx > 0 || rx > 0 {
                out.push((*ts, rk.process, r.class, traffic(tx, rx), Some(rk)));
            }
        }
        let (ltx, lrx) = (
            if stx.is_none() { btx } else { 0 },
            if srx.is_none() { brx } else { 0 },
        );
        if ltx > 0 || lrx > 0 {
            out.push((lo, rk.process, r.class, traffic(ltx, lrx), Some(rk)));
        }
    }
    Ok(out)
}

/// Process `id`'s names and scopes, cached in `cache` (`facts` loaded on
/// a miss).
fn proc_scopes<'a>(
    cache: &'a mut FxHashMap<ProcessId, ProcScopes>,
    apps: &AppRules,
    scopes: &[Scope],
    store: &mut Store,
    id: ProcessId,
    facts: &mut Option<Facts>,
) -> Result<&'a ProcScopes, AlertError> {
    match cache.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            let f = match facts {
                Some(f) => f,
                None => facts.insert(Facts::load(store, apps)?),
            };
            Ok(v.insert(scopes_of(&f.get(id), scopes)))
        }
    }
}

fn fresh_state(rule: &Rule) -> RuleState {
    RuleState {
        kind: rule.condition.kind().to_owned(),
        fingerprint: rule.fingerprint,
        ..RuleState::default()
    }
}

impl Engine {
    /// Builds the rules, loads their stored state, and seeds the sums from
    /// the history up to the last committed step. New rule states (a new
    /// or changed rule, a new cycle) are written at once.
    ///
    /// # Errors
    /// Storage and query errors.
    pub fn start(
        compiled: &Compiled,
        apps: AppRules,
        store: &mut Store,
        now: TimeMs,
    ) -> Result<Self, AlertError> {
        let mut scopes: Vec<Scope> = Vec::new();
        let mut stored = state::load(store)?;
        let mut live = Vec::new();
        for rule in &compiled.rules {
            let scope = scopes
                .iter()
                .position(|s| *s == rule.scope)
                .unwrap_or_else(|| {
                    scopes.push(rule.scope.clone());
                    scopes.len() - 1
                });
            let (state, dirty) = match stored.remove(&rule.name) {
                Some(s) if s.fingerprint == rule.fingerprint => (s, false),
                _ => (fresh_state(rule), true),
            };
            let acc = match &rule.condition {
                Condition::Rolling { .. } => Acc::Rolling {
                    buckets: VecDeque::new(),
                    sum: 0,
                },
                Condition::InPeriod { cycle, .. } | Condition::Quota { cycle, .. } => Acc::Cycle {
                    range: cycle::bounds(cycle, &compiled.tz, now),
                    sum: 0,
                },
                Condition::Rate { .. } => Acc::Rate { above_since: None },
                Condition::NewApp => Acc::NewApp,
                Condition::Quality { .. } => Acc::Quality {
                    minutes: VecDeque::new(),
                    hour: None,
                    baseline_bps: None,
                },
                Condition::RttP95 { .. } | Condition::RetransRate { .. } => {
                    Acc::Samples(SampleWindow::default())
                }
            };
            live.push(Live {
                rule: rule.clone(),
                scope,
                state,
                acc,
                dirty,
            });
        }
        let new_app_scopes = live
            .iter()
            .filter(|l| matches!(l.rule.condition, Condition::NewApp))
            .map(|l| l.scope)
            .collect();
        let mut endpoint_scopes: Vec<usize> = live
            .iter()
            .filter(|l| scopes[l.scope].by_endpoint() && !matches!(l.acc, Acc::Samples(_)))
            .map(|l| l.scope)
            .collect();
        endpoint_scopes.sort_unstable();
        endpoint_scopes.dedup();
        let mut iface_scopes: Vec<usize> = live
            .iter()
            .filter(|l| scopes[l.scope].by_interface())
            .map(|l| l.scope)
            .collect();
        iface_scopes.sort_unstable();
        iface_scopes.dedup();
        let last_ts = scan::latest_sample(store)?;
        let mut engine = Self {
            tz: compiled.tz.clone(),
            apps,
            sums: vec![(0, 0); scopes.len()],
            row_filters: scopes
                .iter()
                .map(|s| RowFilter::new(&s.filters, s.class))
                .collect(),
            scopes,
            live,
            cache: FxHashMap::default(),
            new_app_scopes,
            last_ts,
            seq: state::last_seq(store)?,
            pending: Vec::new(),
            endpoint_scopes,
            endpoint_hour: FxHashMap::default(),
            endpoint_step: FxHashMap::default(),
            endpoint_missed: false,
            samples_to: last_ts.map_or(0, |t| t.saturating_add(1)),
            iface_scopes,
            iface_step: FxHashMap::default(),
            // Without interval rows the history (all seeded) ends before
            // `now`: the first step reads from there, never from 1970.
            iface_to: last_ts.map_or(now, |t| t.saturating_add(1)),
            iface_names: FxHashMap::default(),
        };
        engine.seed(store, now)?;
        if let Some(t) = last_ts {
            engine.endpoint_hour = engine.endpoint_cums(store, t, &mut None)?;
        }
        engine.commit(store)?;
        Ok(engine)
    }

    /// Rules evaluated.
    #[must_use]
    pub fn rules(&self) -> usize {
        self.live.len()
    }

    /// Rebuilds the sums from the history: one scan per distinct range.
    #[expect(clippy::too_many_lines, reason = "one pass per range kind, each short")]
    fn seed(&mut self, store: &mut Store, now: TimeMs) -> Result<(), AlertError> {
        let end = now.saturating_add(1);
        // (range, fine: rows keep their own times, endpoint: remote rows).
        let mut ranges: Vec<(TimeRange, bool, bool)> = Vec::new();
        let mut want: Vec<Option<usize>> = Vec::new();
        // (rule, range, fine) of the interface rules.
        let mut iface_seed: Vec<(usize, TimeRange, bool)> = Vec::new();
        for (li, l) in self.live.iter_mut().enumerate() {
            let endpoint = self.scopes[l.scope].by_endpoint();
            let range = match (&l.rule.condition, &l.acc) {
                (_, Acc::Samples(_)) => None,
                (
                    Condition::Rolling { window_ms, .. } | Condition::Quality { window_ms, .. },
                    _,
                ) => Some((
                    now.saturating_sub(*window_ms).saturating_add(1)..end,
                    true,
                    endpoint,
                )),
                (_, Acc::Cycle { range, .. }) => {
                    // A new cycle since the stored state: its flags start over.
                    if l.state.cycle_start_ms != Some(range.start) {
                        l.state.cycle_start_ms = Some(range.start);
                        l.state.active = false;
                        l.state.levels_fired.clear();
                        l.state.projected_fired = false;
                        l.state.since_ms = Some(range.start);
                        l.dirty = true;
                    }
                    Some((range.start..end, false, endpoint))
                }
                // A rule without a baseline takes the apps already in the
                // history as known.
                (Condition::NewApp, _) if l.dirty => Some((0..end, false, false)),
                _ => None,
            };
            if self.scopes[l.scope].by_interface() {
                if let Some((r, fine, _)) = range {
                    iface_seed.push((li, r, fine));
                }
                want.push(None);
                continue;
            }
            want.push(range.map(|r| {
                ranges.iter().position(|x| *x == r).unwrap_or_else(|| {
                    ranges.push(r);
                    ranges.len() - 1
                })
            }));
        }
        let samples = self.live.iter().any(|l| matches!(l.acc, Acc::Samples(_)));
        for (li, range, fine) in iface_seed {
            let segs = if fine {
                fine_plan(store, &range)?
            } else {
                scan::plan_for(store, &range, Kind::Interface)?.0
            };
            let si = self.live[li].scope;
            let mut rows = self.iface_rows(store, &segs, si)?;
            rows.sort_by_key(|r| r.0);
            let l = &mut self.live[li];
            for (ts, tx, rx) in rows {
                let b = pick(l.rule.direction, tx, rx);
                match &mut l.acc {
                    Acc::Rolling { buckets, sum } if b > 0 => {
                        match buckets.back_mut() {
                            Some((last, v)) if *last == ts => *v += b,
                            _ => buckets.push_back((ts, b)),
                        }
                        *sum = sum.saturating_add(b);
                    }
                    Acc::Cycle { sum, .. } => *sum = sum.saturating_add(b),
                    _ => {}
                }
            }
        }
        if ranges.is_empty() && !samples {
            return Ok(());
        }
        let facts = Facts::load(store, &self.apps)?;
        for (ri, (range, fine, endpoint)) in ranges.iter().enumerate() {
            let mut rows: Vec<SeedRow> = Vec::new();
            if *endpoint {
                let mut remote = Vec::new();
                edges::remote_rows(store, range, false, |_| true, |r| remote.push(r))?;
                if *fine {
                    rows = spread(store, range, &remote)?;
                } else {
                    rows.extend(remote.iter().filter_map(|r| match r.subject {
                        Subject::Remote(rk) => {
                            Some((r.ts, rk.process, r.class, r.traffic, Some(rk)))
                        }
                        _ => None,
                    }));
                }
            } else {
                let segs = if *fine {
                    fine_plan(store, range)?
                } else {
                    scan::plan_for(store, range, Kind::Process)?.0
                };
                scan::rows(store, &segs, Kind::Process, |r| {
                    if let Subject::Process(id) = r.subject {
                        rows.push((r.ts, id, r.class, r.traffic, None));
                    }
                })?;
            }
            rows.sort_by_key(|r| r.0);
            for (ts, id, class, t, rk) in rows {
                let ps = match self.cache.get(&id) {
                    Some(p) => p.clone(),
                    None => {
                        let p = scopes_of(&facts.get(id), &self.scopes);
                        self.cache.insert(id, p.clone());
                        p
                    }
                };
                for (l, w) in self.live.iter_mut().zip(&want) {
                    if *w != Some(ri)
                        || !ps
                            .scopes
                            .contains(&u32::try_from(l.scope).unwrap_or(u32::MAX))
                    {
                        continue;
                    }
                    if self.scopes[l.scope].class.is_some_and(|c| c != class) {
                        continue;
                    }
                    if let Some(rk) = &rk
                        && !(self.row_filters[l.scope].remote_ok(rk)
                            && self.scopes[l.scope].nets_contain(remote_ip(rk)))
                    {
                        continue;
                    }
                    let b = pick(l.rule.direction, t.tx.ip_bytes, t.rx.ip_bytes);
                    match &mut l.acc {
                        Acc::Rolling { buckets, sum } => {
                            if b > 0 {
                                match buckets.back_mut() {
                                    Some((last, v)) if *last == ts => *v += b,
                                    _ => buckets.push_back((ts, b)),
                                }
                                *sum = sum.saturating_add(b);
                            }
                        }
                        Acc::Cycle { sum, .. } => *sum = sum.saturating_add(b),
                        Acc::NewApp => {
                            if b > 0 && l.state.known_apps.insert(ps.app.clone()) {
                                l.dirty = true;
                            }
                        }
                        Acc::Quality { minutes, .. } => {
                            if b > 0 {
                                add_minute(minutes, ts, b);
                            }
                        }
                        Acc::Rate { .. } | Acc::Samples(_) => {}
                    }
                }
            }
        }
        // RTT and retransmission windows: the samples up to the last
        // committed step; the steps read the rest.
        let rules: Vec<(usize, TimeMs)> = self
            .live
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.rule.condition {
                Condition::RttP95 { window_ms, .. } | Condition::RetransRate { window_ms, .. } => {
                    Some((i, now.saturating_sub(window_ms).saturating_add(1)))
                }
                _ => None,
            })
            .collect();
        if let Some(from) = rules.iter().map(|r| r.1).min() {
            let range = from..self.samples_to.max(from);
            let got = self.read_samples(store, &rules, &range, &mut Some(facts))?;
            for ((i, _), steps) in rules.into_iter().zip(got) {
                if let Acc::Samples(w) = &mut self.live[i].acc {
                    *w = SampleWindow::default();
                    w.extend(steps);
                }
            }
        }
        Ok(())
    }

    /// Caches the scopes of this step's processes (from their own
    /// identity, without reading the process records).
    fn prime(&mut self, per_process: &[(ProcessInfo, DestClass, Traffic)]) {
        if self.cache.len() > PROC_CACHE_MAX {
            self.cache.clear();
        }
        for (info, _, _) in per_process {
            if !self.cache.contains_key(&info.id) {
                let p = scopes_of(&facts_of(info, &self.apps), &self.scopes);
                self.cache.insert(info.id, p);
            }
        }
    }

    /// The TCP samples of `range` (one read, through the query layer's
    /// sample reader), per drain time, for each `(rule, from)`: the samples
    /// at `from` or later that the rule's scope passes.
    fn read_samples(
        &mut self,
        store: &mut Store,
        rules: &[(usize, TimeMs)],
        range: &TimeRange,
        facts: &mut Option<Facts>,
    ) -> Result<Vec<VecDeque<SampleStep>>, AlertError> {
        let mut out = vec![VecDeque::new(); rules.len()];
        if rules.is_empty() || range.start >= range.end {
            return Ok(out);
        }
        let mut raw: Vec<(TimeMs, RemoteKey, QualityStats)> = Vec::new();
        crate::query::quality::scoped_samples(store, &[], None, range, |ts, rk, s| {
            raw.push((ts, *rk, s.clone()));
        })?;
        // Per scope, the indices of `rules` it serves: each sample is
        // checked against its process's scopes only, not every rule.
        let mut by_scope: Vec<Vec<usize>> = vec![Vec::new(); self.scopes.len()];
        for (j, &(i, _)) in rules.iter().enumerate() {
            by_scope[self.live[i].scope].push(j);
        }
        for (ts, rk, s) in raw {
            self.each_endpoint_scope(
                store,
                &rk,
                rk.class,
                facts,
                |si| by_scope.get(si).is_some_and(|js| !js.is_empty()),
                |si| {
                    for &j in &by_scope[si] {
                        if ts >= rules[j].1 {
                            push_sample(&mut out[j], ts, &s);
                        }
                    }
                },
            )?;
        }
        Ok(out)
    }

    /// Per endpoint scope: (bucket, tx, rx) of the remote rows of the
    /// bucket of `ts` (rows plus the snapshot's pending pieces, through the
    /// query layer's scan), that the scope's filters pass. The bucket is
    /// the minute (the finest remote tier, so a step reads about one
    /// minute's endpoints), or the hour while the minute tier does not
    /// cover it yet (a store migrated in this hour).
    fn endpoint_cums(
        &mut self,
        store: &mut Store,
        ts: TimeMs,
        facts: &mut Option<Facts>,
    ) -> Result<FxHashMap<usize, (Bucket, u64, u64)>, AlertError> {
        if self.endpoint_scopes.is_empty() {
            return Ok(FxHashMap::default());
        }
        let minute = ts - ts % MINUTE;
        let bucket = if minute >= store.remote_minute_from()?
            && store.purged_before(Tier::Minute)? <= minute
        {
            (minute, MINUTE)
        } else {
            (ts - ts % HOUR, HOUR)
        };
        self.bucket_cums(store, bucket, facts)
    }

    /// Per endpoint scope: (bucket, tx, rx) of the remote rows of `bucket`
    /// (see [`Self::endpoint_cums`]).
    fn bucket_cums(
        &mut self,
        store: &mut Store,
        bucket: Bucket,
        facts: &mut Option<Facts>,
    ) -> Result<FxHashMap<usize, (Bucket, u64, u64)>, AlertError> {
        let mut out: FxHashMap<usize, (Bucket, u64, u64)> = FxHashMap::default();
        let range = bucket.0..bucket.0 + bucket.1;
        let (segs, _) = scan::plan_for(store, &range, Kind::Remote)?;
        let mut rows: Vec<(RemoteKey, DestClass, Traffic)> = Vec::new();
        scan::rows(store, &segs, Kind::Remote, |r| {
            if let Subject::Remote(rk) = r.subject
                && r.tier.bucket(r.ts) >= bucket.0
            {
                rows.push((rk, r.class, r.traffic));
            }
        })?;
        let mut is_endpoint = vec![false; self.scopes.len()];
        for &si in &self.endpoint_scopes {
            is_endpoint[si] = true;
            out.insert(si, (bucket, 0, 0));
        }
        for (rk, class, t) in rows {
            self.each_endpoint_scope(
                store,
                &rk,
                class,
                facts,
                |si| is_endpoint.get(si).copied().unwrap_or(false),
                |si| {
                    if let Some(e) = out.get_mut(&si) {
                        e.1 = e.1.saturating_add(t.tx.ip_bytes);
                        e.2 = e.2.saturating_add(t.rx.ip_bytes);
                    }
                },
            )?;
        }
        Ok(out)
    }

    /// Calls `f(scope)` for each scope of `rk`'s process that is `wanted`
    /// and whose endpoint terms, networks and class pass the row (`rk`,
    /// `class`): a row is checked against its process's scopes only, not
    /// against every rule.
    fn each_endpoint_scope(
        &mut self,
        store: &mut Store,
        rk: &RemoteKey,
        class: DestClass,
        facts: &mut Option<Facts>,
        wanted: impl Fn(usize) -> bool,
        mut f: impl FnMut(usize),
    ) -> Result<(), AlertError> {
        let ip = remote_ip(rk);
        let ps = proc_scopes(
            &mut self.cache,
            &self.apps,
            &self.scopes,
            store,
            rk.process,
            facts,
        )?;
        for &sc in &*ps.scopes {
            let si = sc as usize;
            let rf = &self.row_filters[si];
            if wanted(si)
                && rf.class_ok(class)
                && rf.remote_ok(rk)
                && self.scopes[si].nets_contain(ip)
            {
                f(si);
            }
        }
        Ok(())
    }

    /// The per interface rows of `segments` that scope `si` passes
    /// (interface pattern and class), as (time, tx, rx) IP bytes, read
    /// through the query layer's scan.
    fn iface_rows(
        &mut self,
        store: &mut Store,
        segments: &[Segment],
        si: usize,
    ) -> Result<Vec<TimedBytes>, AlertError> {
        let mut raw: Vec<(TimeMs, u32, DestClass, Traffic)> = Vec::new();
        scan::rows(store, segments, Kind::Interface, |r| {
            if let Subject::Interface(i) = r.subject {
                raw.push((r.ts, i, r.class, r.traffic));
            }
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for (ts, i, class, t) in raw {
            if self.scopes[si].class.is_some_and(|c| c != class) || !self.iface_ok(store, si, i)? {
                continue;
            }
            out.push((ts, t.tx.ip_bytes, t.rx.ip_bytes));
        }
        Ok(out)
    }

    /// True when interface `i` matches scope `si`'s interface patterns (its
    /// name looked up once, through [`crate::query::ifaces::interface_name`]).
    fn iface_ok(&mut self, store: &mut Store, si: usize, i: u32) -> Result<bool, AlertError> {
        let name = match self.iface_names.get(&i) {
            Some(n) => n.clone(),
            None => {
                let n = crate::query::ifaces::interface_name(store, i)?;
                self.iface_names.insert(i, n.clone());
                n
            }
        };
        Ok(self.scopes[si].iface_matches(i, name.as_deref()))
    }

    /// This step's bytes of the interface scopes: the per interface rows
    /// committed since the last read (their interval rows carry the drain
    /// time). On a read error the step counts nothing for them and the
    /// next step reads from the same time.
    fn read_ifaces(&mut self, store: &mut Store, ts: TimeMs) -> Result<(), AlertError> {
        self.iface_step.clear();
        if self.iface_scopes.is_empty() {
            return Ok(());
        }
        let range = self.iface_to..ts.saturating_add(1).max(self.iface_to);
        let (segs, _) = scan::plan_for(store, &range, Kind::Interface)?;
        for si in self.iface_scopes.clone() {
            let (mut tx, mut rx) = (0u64, 0u64);
            for (_, t, r) in self.iface_rows(store, &segs, si)? {
                tx = tx.saturating_add(t);
                rx = rx.saturating_add(r);
            }
            self.iface_step.insert(si, (tx, rx));
        }
        self.iface_to = range.end;
        Ok(())
    }

    /// This step's bytes of the endpoint scopes: the bucket's sums now
    /// minus those read at the previous step (a new bucket starts from
    /// zero; after a failed read it first takes what the previous bucket
    /// got since its last read). On a
    /// read error the step counts nothing for them and the next step's
    /// difference takes it in.
    fn read_endpoints(&mut self, store: &mut Store, ts: TimeMs) -> Result<(), AlertError> {
        self.endpoint_step.clear();
        let now = self.endpoint_cums(store, ts, &mut None)?;
        let prev = self.endpoint_hour.values().next().map(|e| e.0);
        let tail = match prev {
            Some(b) if self.endpoint_missed && now.values().next().is_some_and(|n| n.0 != b) => {
                self.bucket_cums(store, b, &mut None)?
            }
            _ => FxHashMap::default(),
        };
        for (si, (bucket, tx, rx)) in &now {
            let last = self.endpoint_hour.get(si).copied();
            let (mut stx, mut srx) = match last {
                Some((b, ptx, prx)) if b == *bucket => {
                    (tx.saturating_sub(ptx), rx.saturating_sub(prx))
                }
                _ => (*tx, *rx),
            };
            if let (Some((_, ttx, trx)), Some((_, ptx, prx))) = (tail.get(si), last) {
                stx = stx.saturating_add(ttx.saturating_sub(ptx));
                srx = srx.saturating_add(trx.saturating_sub(prx));
            }
            self.endpoint_step.insert(*si, (stx, srx));
        }
        self.endpoint_hour = now;
        self.endpoint_missed = false;
        Ok(())
    }

    /// Appends the TCP samples committed since the last step to the RTT
    /// and retransmission windows. On a read error nothing is added and
    /// the next step reads from the same time.
    fn step_samples(&mut self, store: &mut Store, ts: TimeMs) -> Result<(), AlertError> {
        let range = self.samples_to..ts.saturating_add(1).max(self.samples_to);
        let rules: Vec<(usize, TimeMs)> = (0..self.live.len())
            .filter(|i| matches!(self.live[*i].acc, Acc::Samples(_)))
            .map(|i| (i, 0))
            .collect();
        let got = self.read_samples(store, &rules, &range, &mut None)?;
        for ((i, _), new) in rules.into_iter().zip(got) {
            if let Acc::Samples(w) = &mut self.live[i].acc {
                w.extend(new);
            }
        }
        self.samples_to = range.end;
        Ok(())
    }

    /// Evaluates one committed step at `ts` with its per process deltas,
    /// commits the new states and events, and returns the events to act
    /// on (empty when nothing fired, or when the commit failed: then they
    /// are retried with the next step).
    pub fn step(
        &mut self,
        store: &mut Store,
        ts: TimeMs,
        per_process: &[(ProcessInfo, DestClass, Traffic)],
    ) -> Vec<AlertEvent> {
        if let Err(e) = self.refresh_baselines(store, ts) {
            tracing::warn!(error = %e, "reading the quality baselines failed; retrying next interval");
        }
        self.prime(per_process);
        if let Err(e) = self.read_endpoints(store, ts) {
            self.endpoint_missed = true;
            tracing::warn!(error = %e, "reading the per endpoint rows failed; counted at the next interval");
        }
        if let Err(e) = self.read_ifaces(store, ts) {
            self.iface_step.clear();
            tracing::warn!(error = %e, "reading the per interface rows failed; counted at the next interval");
        }
        if let Err(e) = self.step_samples(store, ts) {
            tracing::warn!(error = %e, "reading the TCP samples failed; read at the next interval");
        }
        let fired = self.evaluate(ts, per_process);
        self.pending.extend(fired);
        match self.commit(store) {
            Ok(()) => std::mem::take(&mut self.pending),
            Err(e) => {
                tracing::error!(error = %e, "storing alert state failed; retrying next interval, no action runs before it is stored");
                Vec::new()
            }
        }
    }

    /// Quality rules: when the hour changed, the baseline of the new hour
    /// from the history: the mean rate of the busy minutes of the same
    /// hour on each of the last 7 days (24 h steps back), from the rows
    /// the query layer reads. One scan per rule and day, once an hour.
    fn refresh_baselines(&mut self, store: &mut Store, ts: TimeMs) -> Result<(), AlertError> {
        let hour = ts - ts % HOUR;
        let stale = self
            .live
            .iter()
            .any(|l| matches!(l.acc, Acc::Quality { hour: h, .. } if h != Some(hour)));
        if !stale {
            return Ok(());
        }
        let facts = Facts::load(store, &self.apps)?;
        // Per scope and direction: bytes per minute over the 7 hours.
        let mut per: Vec<(usize, Direction, FxHashMap<TimeMs, u64>)> = Vec::new();
        for l in &self.live {
            if matches!(l.acc, Acc::Quality { hour: h, .. } if h != Some(hour))
                && !per
                    .iter()
                    .any(|(s, d, _)| *s == l.scope && *d == l.rule.direction)
            {
                per.push((l.scope, l.rule.direction, FxHashMap::default()));
            }
        }
        for day in 1..=7u64 {
            let Some(from) = hour.checked_sub(day * 24 * HOUR) else {
                continue;
            };
            let segs = fine_plan(store, &(from..from + HOUR))?;
            let mut rows = Vec::new();
            scan::rows(store, &segs, Kind::Process, |r| {
                if let Subject::Process(id) = r.subject
                    && r.tier.width_ms().is_none_or(|w| w <= MINUTE)
                {
                    rows.push((r.ts, id, r.class, r.traffic));
                }
            })?;
            for (rts, id, class, t) in rows {
                let ps = self
                    .cache
                    .entry(id)
                    .or_insert_with(|| scopes_of(&facts.get(id), &self.scopes));
                for (s, d, m) in &mut per {
                    let si = u32::try_from(*s).unwrap_or(u32::MAX);
                    if !ps.scopes.contains(&si) || self.scopes[*s].class.is_some_and(|c| c != class)
                    {
                        continue;
                    }
                    let e = m.entry(rts - rts % MINUTE).or_insert(0);
                    *e = e.saturating_add(pick(*d, t.tx.ip_bytes, t.rx.ip_bytes));
                }
            }
        }
        for l in &mut self.live {
            if let (
                Acc::Quality {
                    hour: h,
                    baseline_bps,
                    ..
                },
                Condition::Quality { min_bps, .. },
            ) = (&mut l.acc, &l.rule.condition)
                && *h != Some(hour)
            {
                *h = Some(hour);
                *baseline_bps = per
                    .iter()
                    .find(|(s, d, _)| *s == l.scope && *d == l.rule.direction)
                    .and_then(|(_, _, m)| busy_mean(m.values().copied(), *min_bps));
            }
        }
        Ok(())
    }

    /// Writes dirty states and pending events.
    fn commit(&mut self, store: &mut Store) -> Result<(), AlertError> {
        if self.pending.is_empty() && !self.live.iter().any(|l| l.dirty) {
            return Ok(());
        }
        let states: Vec<(&str, &RuleState)> = self
            .live
            .iter()
            .filter(|l| l.dirty)
            .map(|l| (l.rule.name.as_str(), &l.state))
            .collect();
        state::commit(store, &states, &self.pending, &mut self.seq)?;
        for l in &mut self.live {
            l.dirty = false;
        }
        Ok(())
    }

    /// The evaluation proper, without storage (benchmarks and tests).
    pub fn evaluate(
        &mut self,
        ts: TimeMs,
        per_process: &[(ProcessInfo, DestClass, Traffic)],
    ) -> Vec<AlertEvent> {
        self.sums.fill((0, 0));
        if self.cache.len() > PROC_CACHE_MAX {
            self.cache.clear();
        }
        let mut new_apps: Vec<(usize, String)> = Vec::new();
        for (info, class, t) in per_process {
            let ps = match self.cache.get(&info.id) {
                Some(p) => p,
                None => {
                    let p = scopes_of(&facts_of(info, &self.apps), &self.scopes);
                    self.cache.entry(info.id).or_insert(p)
                }
            };
            for s in &*ps.scopes {
                let si = *s as usize;
                if self.scopes[si].class.is_some_and(|c| c != *class) {
                    continue;
                }
                let e = &mut self.sums[si];
                e.0 = e.0.saturating_add(t.tx.ip_bytes);
                e.1 = e.1.saturating_add(t.rx.ip_bytes);
                if self.new_app_scopes.contains(&si) && !t.is_zero() {
                    new_apps.push((si, ps.app.clone()));
                }
            }
        }
        // Endpoint scopes count their rows' bytes, not their processes'.
        for &si in &self.endpoint_scopes {
            self.sums[si] = self.endpoint_step.remove(&si).unwrap_or((0, 0));
        }
        // Interface scopes count their interfaces' rows.
        for &si in &self.iface_scopes {
            self.sums[si] = self.iface_step.remove(&si).unwrap_or((0, 0));
        }
        let dt = self.last_ts.map(|l| ts.saturating_sub(l));
        self.last_ts = Some(ts);
        let mut out = Vec::new();
        for l in &mut self.live {
            let (tx, rx) = self.sums[l.scope];
            let bytes = pick(l.rule.direction, tx, rx);
            l.update(ts, bytes, dt, &self.tz, &new_apps, &mut out);
        }
        out
    }
}

impl Live {
    /// Drops the sample steps that left the window `(ts − window, ts]`
    /// and returns the rest (`None`: not a sample rule).
    fn expire_samples(&mut self, ts: TimeMs, window_ms: u64) -> Option<&SampleWindow> {
        let Acc::Samples(w) = &mut self.acc else {
            return None;
        };
        w.expire(ts, window_ms);
        Some(w)
    }

    fn event(&self, ts: TimeMs, transition: &str, message: String) -> AlertEvent {
        AlertEvent {
            schema_version: SCHEMA_VERSION,
            rule: self.rule.name.clone(),
            kind: self.rule.condition.kind().to_owned(),
            transition: transition.to_owned(),
            time: rfc3339_from_unix_ms(ts),
            time_unix_ms: ts,
            message,
            filters: self.rule.scope.terms(),
            class: self.rule.scope.class.map(|c| c.name().to_owned()),
            direction: self.rule.direction.name().to_owned(),
            ..AlertEvent::default()
        }
    }

    fn fire(&mut self, ts: TimeMs, e: AlertEvent, out: &mut Vec<AlertEvent>) {
        self.state.last_fired_ms = Some(ts);
        self.state.fired_total += 1;
        self.dirty = true;
        out.push(e);
    }

    /// Fired / repeat / cleared for a value against a threshold.
    fn threshold(
        &mut self,
        ts: TimeMs,
        above: bool,
        below_clear: bool,
        mut make: impl FnMut(&Self, &str) -> AlertEvent,
        out: &mut Vec<AlertEvent>,
    ) {
        if above {
            if !self.state.active {
                self.state.active = true;
                self.state.since_ms = Some(ts);
                let e = make(self, "fired");
                self.fire(ts, e, out);
            } else if let Some(r) = self.rule.repeat_ms
                && self
                    .state
                    .last_fired_ms
                    .is_none_or(|l| ts.saturating_sub(l) >= r)
            {
                let e = make(self, "repeat");
                self.fire(ts, e, out);
            }
        } else if self.state.active && below_clear {
            self.state.active = false;
            self.state.since_ms = Some(ts);
            let e = make(self, "cleared");
            self.fire(ts, e, out);
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one arm per condition kind, each short"
    )]
    fn update(
        &mut self,
        ts: TimeMs,
        bytes: u64,
        dt: Option<u64>,
        tz: &jiff::tz::TimeZone,
        new_apps: &[(usize, String)],
        out: &mut Vec<AlertEvent>,
    ) {
        let clear_at = |over: u64, h: f64| -> u64 {
            #[expect(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a threshold scaled by 0 < 1 − h ≤ 1"
            )]
            let v = (over as f64 * (1.0 - h)) as u64;
            v
        };
        match self.rule.condition.clone() {
            Condition::Rolling { over, window_ms } => {
                let Acc::Rolling { buckets, sum } = &mut self.acc else {
                    return;
                };
                if bytes > 0 {
                    buckets.push_back((ts, bytes));
                    *sum = sum.saturating_add(bytes);
                }
                while let Some((t, b)) = buckets.front().copied() {
                    if t.saturating_add(window_ms) > ts {
                        break;
                    }
                    *sum = sum.saturating_sub(b);
                    buckets.pop_front();
                }
                let value = *sum;
                let clear = value <= clear_at(over, self.rule.hysteresis);
                self.threshold(
                    ts,
                    value > over,
                    clear,
                    |l, tr| AlertEvent {
                        value_bytes: Some(value),
                        threshold_bytes: Some(over),
                        window_ms: Some(window_ms),
                        ..l.event(
                            ts,
                            tr,
                            format!(
                                "{}: {value} bytes in the last {} ({tr}; threshold {over})",
                                l.rule.name,
                                humantime::format_duration(std::time::Duration::from_millis(
                                    window_ms
                                ))
                            ),
                        )
                    },
                    out,
                );
            }
            Condition::InPeriod { over, cycle }
            | Condition::Quota {
                cap: over, cycle, ..
            } => {
                let Acc::Cycle { range, sum } = &mut self.acc else {
                    return;
                };
                if ts >= range.end || ts < range.start {
                    *range = cycle::bounds(&cycle, tz, ts);
                    *sum = 0;
                    self.state.cycle_start_ms = Some(range.start);
                    self.state.active = false;
                    self.state.levels_fired.clear();
                    self.state.projected_fired = false;
                    self.state.since_ms = Some(range.start);
                    self.dirty = true;
                }
                *sum = sum.saturating_add(bytes);
                let (used, range) = (*sum, range.clone());
                let base = |l: &Self, tr: &str, msg: String| AlertEvent {
                    value_bytes: Some(used),
                    cycle_start_unix_ms: Some(range.start),
                    cycle_end_unix_ms: Some(range.end),
                    ..l.event(ts, tr, msg)
                };
                if let Condition::Quota {
                    levels, project, ..
                } = &self.rule.condition
                {
                    let cap = over;
                    let (levels, project) = (levels.clone(), *project);
                    // The highest level reached and not yet fired this
                    // cycle fires; the lower ones are passed with it.
                    let reached: Vec<u32> = levels
                        .iter()
                        .copied()
                        .filter(|p| {
                            u128::from(used) * 100 >= u128::from(cap) * u128::from(*p)
                                && !self.state.levels_fired.contains(p)
                        })
                        .collect();
                    if let Some(top) = reached.last().copied() {
                        self.state.levels_fired.extend(reached);
                        self.state.levels_fired.sort_unstable();
                        self.state.active = true;
                        self.state.since_ms.get_or_insert(ts);
                        let e = AlertEvent {
                            level_percent: Some(top),
                            cap_bytes: Some(cap),
                            ..base(
                                self,
                                "level",
                                format!(
                                    "{}: {top}% of the cap used ({used} of {cap} bytes this cycle)",
                                    self.rule.name
                                ),
                            )
                        };
                        self.fire(ts, e, out);
                    }
                    let elapsed = ts.saturating_sub(range.start);
                    let len = range.end.saturating_sub(range.start);
                    // A projection needs a tenth of the cycle (or a day).
                    if project
                        && !self.state.projected_fired
                        && elapsed > 0
                        && elapsed >= (len / 10).min(86_400_000)
                    {
                        let projected =
                            u64::try_from(u128::from(used) * u128::from(len) / u128::from(elapsed))
                                .unwrap_or(u64::MAX);
                        if projected > cap {
                            self.state.projected_fired = true;
                            let e = AlertEvent {
                                cap_bytes: Some(cap),
                                projected_bytes: Some(projected),
                                ..base(
                                    self,
                                    "projected",
                                    format!(
                                        "{}: this cycle is heading for {projected} bytes, over the cap of {cap}",
                                        self.rule.name
                                    ),
                                )
                            };
                            self.fire(ts, e, out);
                        }
                    }
                } else if used > over && !self.state.active {
                    self.state.active = true;
                    self.state.since_ms = Some(ts);
                    let e = AlertEvent {
                        threshold_bytes: Some(over),
                        ..base(
                            self,
                            "fired",
                            format!(
                                "{}: {used} bytes this period (threshold {over})",
                                self.rule.name
                            ),
                        )
                    };
                    self.fire(ts, e, out);
                }
            }
            Condition::Rate { over_bps, for_ms } => {
                let Acc::Rate { above_since } = &mut self.acc else {
                    return;
                };
                let Some(dt) = dt.filter(|d| *d > 0) else {
                    return;
                };
                let bps =
                    u64::try_from(u128::from(bytes) * 8000 / u128::from(dt)).unwrap_or(u64::MAX);
                let above = bps > over_bps;
                let start = if above {
                    *above_since.get_or_insert(ts.saturating_sub(dt))
                } else {
                    *above_since = None;
                    ts
                };
                let sustained = above && ts.saturating_sub(start) >= for_ms;
                let clear = !above && bps <= clear_at(over_bps, self.rule.hysteresis);
                self.threshold(
                    ts,
                    sustained,
                    clear,
                    |l, tr| AlertEvent {
                        rate_bits_per_s: Some(bps),
                        threshold_bits_per_s: Some(over_bps),
                        ..l.event(
                            ts,
                            tr,
                            format!(
                                "{}: {bps} bit/s ({tr}; threshold {over_bps} bit/s)",
                                l.rule.name
                            ),
                        )
                    },
                    out,
                );
            }
            Condition::Quality {
                below,
                min_bps,
                window_ms,
            } => {
                let Acc::Quality {
                    minutes,
                    baseline_bps,
                    ..
                } = &mut self.acc
                else {
                    return;
                };
                if bytes > 0 {
                    add_minute(minutes, ts, bytes);
                }
                while minutes
                    .front()
                    .is_some_and(|(m, _)| m.saturating_add(window_ms) <= ts)
                {
                    minutes.pop_front();
                }
                // Complete minutes only: the current one is still filling.
                let this = ts - ts % MINUTE;
                let current = busy_mean(
                    minutes.iter().filter(|(m, _)| *m < this).map(|(_, b)| *b),
                    min_bps,
                );
                let Some(base) = *baseline_bps else {
                    return;
                };
                #[expect(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "rates in bits/s, far below 2^52; 0 < below < 1"
                )]
                let limit = (base as f64 * below) as u64;
                #[expect(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "as above, 1 + h < 2"
                )]
                let clear_limit = (limit as f64 * (1.0 + self.rule.hysteresis)) as u64;
                let slow = current.is_some_and(|c| c < limit);
                // No demand (no busy minutes) clears it too.
                let clear = current.is_none_or(|c| c >= clear_limit);
                let rate = current.unwrap_or(0);
                self.threshold(
                    ts,
                    slow,
                    clear,
                    |l, tr| AlertEvent {
                        rate_bits_per_s: Some(rate),
                        threshold_bits_per_s: Some(limit),
                        baseline_bits_per_s: Some(base),
                        window_ms: Some(window_ms),
                        ..l.event(
                            ts,
                            tr,
                            format!(
                                "{}: busy-minute throughput {rate} bit/s, usually {base} bit/s at this hour ({tr})",
                                l.rule.name
                            ),
                        )
                    },
                    out,
                );
            }
            Condition::RttP95 {
                over_us,
                window_ms,
                min_samples,
            } => {
                let Some(w) = self.expire_samples(ts, window_ms) else {
                    return;
                };
                let n = u64::try_from(w.sorted.len()).unwrap_or(u64::MAX);
                // Too few samples say nothing: no transition either way.
                if n < min_samples {
                    return;
                }
                let p95 = crate::query::usage::percentile(&w.sorted, 95).map_or(0, u64::from);
                let clear = p95 <= clear_at(over_us, self.rule.hysteresis);
                self.threshold(
                    ts,
                    p95 > over_us,
                    clear,
                    |l, tr| AlertEvent {
                        rtt_p95_us: Some(p95),
                        threshold_us: Some(over_us),
                        samples: Some(n),
                        window_ms: Some(window_ms),
                        ..l.event(
                            ts,
                            tr,
                            format!(
                                "{}: RTT p95 {} over {n} samples in the last {} ({tr}; threshold {})",
                                l.rule.name,
                                humantime::format_duration(std::time::Duration::from_micros(p95)),
                                humantime::format_duration(std::time::Duration::from_millis(
                                    window_ms
                                )),
                                humantime::format_duration(std::time::Duration::from_micros(
                                    over_us
                                )),
                            ),
                        )
                    },
                    out,
                );
            }
            Condition::RetransRate {
                over,
                window_ms,
                min_segments,
            } => {
                let Some(w) = self.expire_samples(ts, window_ms) else {
                    return;
                };
                let (re, sent) = (w.retrans_segs, w.data_segs);
                if sent < min_segments {
                    return;
                }
                #[expect(clippy::cast_precision_loss, reason = "segment counts far below 2^52")]
                let rate = re as f64 / sent as f64;
                let clear = rate <= over * (1.0 - self.rule.hysteresis);
                self.threshold(
                    ts,
                    rate > over,
                    clear,
                    |l, tr| AlertEvent {
                        retrans_segs: Some(re),
                        data_segs: Some(sent),
                        retrans_rate: Some(rate),
                        threshold_rate: Some(over),
                        window_ms: Some(window_ms),
                        ..l.event(
                            ts,
                            tr,
                            format!(
                                "{}: {re} of {sent} data segments retransmitted ({:.2} %) in the last {} ({tr}; threshold {:.2} %)",
                                l.rule.name,
                                rate * 100.0,
                                humantime::format_duration(std::time::Duration::from_millis(
                                    window_ms
                                )),
                                over * 100.0,
                            ),
                        )
                    },
                    out,
                );
            }
            Condition::NewApp => {
                for (s, app) in new_apps {
                    if *s == self.scope && !self.state.known_apps.contains(app) {
                        self.state.known_apps.insert(app.clone());
                        let e = AlertEvent {
                            app: Some(app.clone()),
                            ..self.event(
                                ts,
                                "new_app",
                                format!(
                                    "{}: {app} talks to the internet for the first time",
                                    self.rule.name
                                ),
                            )
                        };
                        self.fire(ts, e, out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SampleStep, SampleWindow};
    use std::collections::VecDeque;

    /// The incremental window (merge in, merge out, running sums) equals
    /// the window recomputed from scratch (all RTTs sorted, sums folded)
    /// after every expiry, with repeated RTT values, empty steps, and
    /// steps that expire while still staged.
    #[test]
    fn sample_window_matches_a_full_recount() {
        let mut rng = fastrand::Rng::with_seed(12);
        let window_ms = 5_000;
        let mut w = SampleWindow::default();
        let mut all: Vec<SampleStep> = Vec::new();
        for step in 0..400u64 {
            // Once, a gap longer than the window (step 201).
            let ts = 1_000 * step + rng.u64(0..900) + if step > 200 { 9_000 } else { 0 };
            let n = rng.usize(0..6);
            let st = SampleStep {
                ts,
                rtts: (0..n).map(|_| rng.u32(1..40)).collect(),
                retrans_segs: rng.u64(0..3),
                data_segs: rng.u64(0..50),
            };
            all.push(st.clone());
            w.extend(VecDeque::from([st]));
            // Steps are staged for several steps at times (as at start,
            // when a whole window is added before the first expiry), and
            // some expire before they were ever merged.
            if rng.u8(0..4) == 0 {
                continue;
            }
            w.expire(ts, window_ms);
            let held: Vec<&SampleStep> = all.iter().filter(|s| s.ts + window_ms > ts).collect();
            let mut rtts: Vec<u32> = held.iter().flat_map(|s| s.rtts.clone()).collect();
            rtts.sort_unstable();
            assert_eq!(w.sorted, rtts, "step {step}");
            assert_eq!(
                w.retrans_segs,
                held.iter().map(|s| s.retrans_segs).sum::<u64>()
            );
            assert_eq!(w.data_segs, held.iter().map(|s| s.data_segs).sum::<u64>());
            assert_eq!(w.steps.len(), held.len());
        }
    }
}
