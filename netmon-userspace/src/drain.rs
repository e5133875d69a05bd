//! One drain step: read the counters, compute deltas against the last
//! committed snapshot, attribute them, commit everything in one transaction.
//!
//! # Why no byte is lost or counted twice
//!
//! Invariants, each kept by the code named:
//! 1. **The in-memory snapshot equals the committed `snapshot` table.** It is
//!    loaded at start ([`Drain::new`]), changed only after
//!    [`Store::commit`] returned `Ok`, and reloaded after a failed commit.
//! 2. **Bytes are in exactly one place.** For a flow the source holds, every
//!    byte it counted is either in the stored rows (the part up to the
//!    snapshot value) or in `value − snapshot` (not yet stored). A step adds
//!    `value − snapshot` to the rows *and* sets the snapshot to `value` in
//!    one write transaction ([`Store::commit`]), so the sum rows + (value −
//!    snapshot) is the same before and after it — and after a crash at any
//!    instant, because the transaction either happened or did not. On
//!    restart the drain subtracts the committed snapshot from the counters
//!    the kernel kept counting meanwhile.
//! 3. **Removal only through retire, only when quiescent.** A closed flow
//!    whose value equals its snapshot (no byte uncommitted) is removed with
//!    [`CounterSource::retire`], which returns the final value atomically with
//!    the removal; the final value's excess over the snapshot is added in the
//!    same commit that removes the snapshot entry. If that commit fails, the
//!    retired values are carried in memory ([`Drain`]'s `carry`) and
//!    committed by a later step. The one window left: bytes arriving on an
//!    already released, quiescent socket between the read and the retire
//!    exist only in memory until the commit; a crash (not a failed commit)
//!    in those milliseconds loses them. The kernel has no transactional
//!    delete to close it; it is bounded by what a closed socket sends in
//!    one step's retire→commit time.
//! 4. **Resets are never negative.** A counter lower than the snapshot
//!    ([`netmon_common::DirCounters::checked_sub`] → `None`), or a different
//!    `first_boottime_ns` under the same key, is a new kernel entry (maps
//!    recreated): its whole value is new traffic. Bytes the old entry
//!    counted after the last commit went with it (nobody could read them).
//!    Logged and recorded as [`DaemonEvent::Reset`].
//! 5. **Vanished flows are dropped.** A snapshot entry whose flow is gone
//!    and was not retired by this step (retired just before a crash, or maps
//!    recreated) has all its readable bytes stored already; it is removed from
//!    the snapshot ([`DaemonEvent::Vanished`]).
//! 6. **Late is merged, not lost.** Deltas are stored at the time of the
//!    reading that saw them; a slow step or a downtime puts the whole gap
//!    into one interval row.
//! 7. **A lazy commit is rolled back whole, never across a retire.** Most
//!    commits are lazy ([`Batch::lazy`]: atomic, visible at once, not
//!    waited for on disk); after a crash the file opens at the last
//!    *durable* commit, rows and snapshot together, so invariant 2 holds
//!    there and the restarted drain takes the delta from that snapshot
//!    against the counters the kernel still holds — nothing lost, nothing
//!    doubled. That is only true while the kernel still has the bytes, so a
//!    commit is durable whenever the step removed anything from the source
//!    (retired flows, carried values) — the kernel no longer holds those —
//!    and whenever it records events; and at least every
//!    [`DURABLE_EVERY_MS`]. What a lazy commit does **not** survive is
//!    power loss or a kernel crash: the kernel counters die with it, so the
//!    history since the last durable commit (at most [`DURABLE_EVERY_MS`]
//!    of traffic) is lost, where a durable-only drain would lose one
//!    interval. A crash of the daemon process alone (SIGKILL, panic, OOM)
//!    loses nothing.
//!
//! Attribution: each flow's delta goes to the [`ProcessInfo`] the
//! [`Resolver`] gives for its cookie, or to [`UNATTRIBUTED`]; overflow
//! counters go to [`OVERFLOW`] with class [`DestClass::Unknown`].
use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use netmon_common::{FlowKey, FlowValue, OverflowCounters};

use crate::ownership::{ProcessId, ProcessInfo, Resolver};
use crate::source::{CounterSource, FlowReading, Reading, SourceError};
use crate::store::class::classify_raw;
use crate::store::types::pseudo_process;
use crate::store::{
    Batch, DaemonEvent, DestClass, OVERFLOW, OVERFLOW_COMM, RemoteKey, SnapEntry, Store,
    StoreError, TimeMs, Traffic, UNATTRIBUTED, UNATTRIBUTED_COMM,
};

/// A durable commit is made at least this often (ms of drain time); the
/// commits between are lazy (invariant 7).
pub const DURABLE_EVERY_MS: TimeMs = 10_000;

/// Where the drain's time comes from, so tests can simulate days in ms.
pub trait Clock {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> TimeMs;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimeMs {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Errors of a drain step. Nothing of the step is stored when it fails.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The counter source failed.
    #[error("reading counters: {0}")]
    Source(#[from] SourceError),
    /// The store failed.
    #[error("storing interval: {0}")]
    Store(#[from] StoreError),
}

/// A flow retired from the source whose final value is not committed yet.
#[derive(Clone, Debug)]
struct Carried {
    value: FlowValue,
    owner: Option<ProcessInfo>,
}

/// What one step did.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// Time of the reading.
    pub ts_ms: TimeMs,
    /// Flows in the reading.
    pub flows_read: usize,
    /// Flows with a delta.
    pub changed: usize,
    /// Flows retired.
    pub retired: usize,
    /// Flows taken as reset.
    pub resets: u64,
    /// Committed flows gone from the source.
    pub vanished: u64,
    /// Per process and class deltas committed.
    pub per_process: Vec<(ProcessInfo, DestClass, Traffic)>,
}

/// A flow's committed snapshot entry and the commit that wrote it.
#[derive(Clone, Copy, Debug)]
struct Committed {
    entry: SnapEntry,
    /// [`Drain::seq`] of the commit that wrote `entry`; the entry is durable
    /// when this is at most [`Drain::durable_seq`] (invariant 7).
    seq: u64,
}

/// The drain: the committed snapshot, the retired-but-uncommitted carry and
/// the owner cache.
#[derive(Debug)]
pub struct Drain {
    /// Invariant 1: the committed `snapshot` table, per flow.
    flows: HashMap<FlowKey, Committed>,
    /// Invariant 1: the committed overflow snapshot.
    overflow: OverflowCounters,
    /// Commits made by this drain (after a (re)load: 1, the loaded state).
    seq: u64,
    /// The last commit known durable (invariant 7); entries with a greater
    /// `seq` may still be rolled back by a crash.
    durable_seq: u64,
    /// Set after a failed commit: reload before the next step.
    stale: bool,
    /// Invariant 3: retired flows whose final value awaits a commit.
    carry: HashMap<FlowKey, Carried>,
    /// Failed commits since the last success, and the first error.
    failures: u64,
    first_error: Option<String>,
    /// Drain time of the last durable commit (`None`: none yet by this
    /// drain, so the next one is durable). Invariant 7.
    last_durable: Option<TimeMs>,
    /// Owner of every socket resolved so far. The [`Resolver`] is asked
    /// only about sockets not in here, and only when they have bytes to
    /// attribute; an entry goes when the socket is forgotten.
    owners: HashMap<u64, ProcessId>,
    /// What is known of each owner (the latest the resolver gave). Pruned
    /// to the processes in `owners` every [`PRUNE_EVERY`] forgotten sockets.
    infos: HashMap<ProcessId, ProcessInfo>,
    /// Sockets forgotten since `infos` was last pruned.
    forgotten: usize,
}

/// `infos` is pruned after this many forgotten sockets.
const PRUNE_EVERY: usize = 4096;

/// Deltas of one step, aggregated for the store.
#[derive(Default)]
struct Accum {
    processes: HashMap<ProcessId, ProcessInfo>,
    procs: HashMap<(ProcessId, DestClass), Traffic>,
    remotes: HashMap<RemoteKey, Traffic>,
    ifaces: HashMap<(u32, DestClass), Traffic>,
}

impl Accum {
    fn add_flow(
        &mut self,
        key: &FlowKey,
        value: &FlowValue,
        owner: Option<&ProcessInfo>,
        delta: Traffic,
    ) {
        if delta.is_zero() {
            return;
        }
        let class = classify_raw(&key.remote_addr, key.ip_version, value.ifindex);
        let id = owner.map_or(UNATTRIBUTED, |o| o.id);
        self.processes.entry(id).or_insert_with(|| {
            owner
                .cloned()
                .unwrap_or_else(|| pseudo_process(UNATTRIBUTED, UNATTRIBUTED_COMM))
        });
        bump(self.procs.entry((id, class)).or_default(), delta);
        let rk = RemoteKey {
            process: id,
            addr: key.remote_addr,
            port: key.remote_port,
            ip_version: key.ip_version,
            protocol: key.protocol,
            class,
        };
        bump(self.remotes.entry(rk).or_default(), delta);
        bump(
            self.ifaces.entry((value.ifindex, class)).or_default(),
            delta,
        );
    }

    fn add_overflow(&mut self, delta: Traffic) {
        if delta.is_zero() {
            return;
        }
        self.processes
            .entry(OVERFLOW)
            .or_insert_with(|| pseudo_process(OVERFLOW, OVERFLOW_COMM));
        bump(
            self.procs
                .entry((OVERFLOW, DestClass::Unknown))
                .or_default(),
            delta,
        );
    }
}

fn bump(acc: &mut Traffic, d: Traffic) {
    *acc = acc.add(d);
}

/// The delta of `value` against `prev` (invariant 4). Sets `reset` when the
/// entry is new under an existing key or went backwards.
fn delta_of(prev: Option<&SnapEntry>, value: &FlowValue, reset: &mut bool) -> Traffic {
    let now = Traffic::of(value);
    let Some(prev) = prev else { return now };
    if prev.first_boottime_ns != value.first_boottime_ns {
        *reset = true;
        return now;
    }
    now.checked_sub(prev.counters).unwrap_or_else(|| {
        *reset = true;
        now
    })
}

/// Overflow delta; `true` in `.1` when the counters went backwards.
fn overflow_delta(now: &OverflowCounters, prev: &OverflowCounters) -> (Traffic, u64, bool) {
    let t_now = Traffic {
        tx: now.tx,
        rx: now.rx,
    };
    let t_prev = Traffic {
        tx: prev.tx,
        rx: prev.rx,
    };
    match (
        t_now.checked_sub(t_prev),
        now.failed_inserts.checked_sub(prev.failed_inserts),
    ) {
        (Some(t), Some(f)) => (t, f, false),
        _ => (t_now, now.failed_inserts, true),
    }
}

impl Drain {
    /// Loads the committed snapshot.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn new(store: &mut Store) -> Result<Self, DrainError> {
        let mut me = Self {
            flows: HashMap::new(),
            overflow: OverflowCounters::default(),
            seq: 0,
            durable_seq: 0,
            stale: false,
            carry: HashMap::new(),
            failures: 0,
            first_error: None,
            last_durable: None,
            owners: HashMap::new(),
            infos: HashMap::new(),
            forgotten: 0,
        };
        me.load(store)?;
        Ok(me)
    }

    /// (Re)loads the committed snapshot. What it loads is not known durable
    /// (a lazy commit of this process may be in it), so its entries get
    /// `seq` 1, above `durable_seq` 0, until the next commit, which is
    /// durable (invariant 7).
    fn load(&mut self, store: &mut Store) -> Result<(), DrainError> {
        let snapshot = store.load_snapshot()?;
        self.flows = snapshot
            .flows
            .into_iter()
            .map(|(k, entry)| (k, Committed { entry, seq: 1 }))
            .collect();
        self.overflow = snapshot.overflow;
        self.seq = 1;
        self.durable_seq = 0;
        self.last_durable = None;
        Ok(())
    }

    /// Flows in the committed snapshot.
    #[must_use]
    pub fn snapshot_len(&self) -> usize {
        self.flows.len()
    }

    /// Failed commits since the last success.
    #[must_use]
    pub const fn failures(&self) -> u64 {
        self.failures
    }

    /// One step at time `now`, with `events` to record in the same commit.
    ///
    /// # Errors
    /// When the source or the store fails. After a store failure nothing of
    /// the step is stored, the snapshot is unchanged, and retired values are
    /// carried to the next step (invariant 3).
    pub fn step(
        &mut self,
        source: &mut dyn CounterSource,
        resolver: &mut dyn Resolver,
        store: &mut Store,
        now: TimeMs,
        events: Vec<DaemonEvent>,
    ) -> Result<StepReport, DrainError> {
        let result = self.step_inner(source, resolver, store, now, events);
        if let Err(e) = &result {
            // Counted for any failure: a full disk can fail the snapshot
            // reload or the reopen too, not only the commit.
            self.failures += 1;
            if self.first_error.is_none() {
                self.first_error = Some(e.to_string());
            }
            self.stale = true;
        }
        result
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one linear sequence of the invariants' steps; splitting it hides the order"
    )]
    fn step_inner(
        &mut self,
        source: &mut dyn CounterSource,
        resolver: &mut dyn Resolver,
        store: &mut Store,
        now: TimeMs,
        mut events: Vec<DaemonEvent>,
    ) -> Result<StepReport, DrainError> {
        if self.stale {
            self.load(store)?;
            self.stale = false;
        }
        let reading = source.read()?;
        let mut acc = Accum::default();
        let mut puts: Vec<(FlowKey, SnapEntry)> = Vec::new();
        let mut dels: Vec<FlowKey> = Vec::new();
        let mut resets = 0u64;
        let mut report = StepReport {
            ts_ms: now,
            flows_read: reading.flows.len(),
            ..StepReport::default()
        };
        // Invariant 7: a closed, quiescent flow whose snapshot entry is not
        // durable yet is not retired; this commit is made durable instead,
        // and the next step retires it.
        let mut need_durable = false;

        // Retired in an earlier step whose commit failed (invariant 3).
        for (key, c) in &self.carry {
            let mut reset = false;
            let d = delta_of(self.flows.get(key).map(|c| &c.entry), &c.value, &mut reset);
            resets += u64::from(reset);
            acc.add_flow(key, &c.value, c.owner.as_ref(), d);
            dels.push(*key);
        }

        // Deltas against the snapshot (invariants 2 and 4).
        let mut changed: Vec<(usize, Traffic)> = Vec::new();
        let mut to_retire: Vec<FlowKey> = Vec::new();
        let mut retire_idx: Vec<usize> = Vec::new();
        // Reading flows found in the snapshot: when it is all of the
        // snapshot, nothing vanished (a reading holds each key once: it is
        // a dump of a hash map).
        let mut matched = 0usize;
        for (i, f) in reading.flows.iter().enumerate() {
            let committed = self.flows.get(&f.key);
            matched += usize::from(committed.is_some());
            // A carried key seen again is a new entry: the old one was retired.
            let prev = if self.carry.is_empty() || !self.carry.contains_key(&f.key) {
                committed
            } else {
                None
            };
            let mut reset = false;
            let d = delta_of(prev.map(|c| &c.entry), &f.value, &mut reset);
            resets += u64::from(reset);
            if let Some(prev) = prev
                && d.is_zero()
            {
                if f.closed {
                    if prev.seq <= self.durable_seq {
                        to_retire.push(f.key);
                        retire_idx.push(i);
                    } else {
                        need_durable = true;
                    }
                }
                continue;
            }
            changed.push((i, d));
        }
        report.changed = changed.len();

        // Owners: only sockets with bytes to attribute and no cached owner
        // are resolved; each owner's info is kept once.
        let unknown: Vec<FlowReading> = changed
            .iter()
            .map(|(i, _)| reading.flows[*i])
            .chain(retire_idx.iter().map(|i| reading.flows[*i]))
            .filter(|f| !self.owners.contains_key(&f.key.cookie))
            .collect();
        if !unknown.is_empty() {
            let resolved = resolver.resolve(&Reading {
                flows: unknown,
                overflow: reading.overflow,
                max_flows: reading.max_flows,
            });
            for (cookie, info) in resolved {
                self.owners.insert(cookie, info.id);
                self.infos.insert(info.id, info);
            }
        }
        let owner_of = |cookie: u64| self.owners.get(&cookie).and_then(|id| self.infos.get(id));
        for (i, d) in &changed {
            let f = &reading.flows[*i];
            acc.add_flow(&f.key, &f.value, owner_of(f.key.cookie), *d);
            puts.push((
                f.key,
                SnapEntry {
                    counters: Traffic::of(&f.value),
                    first_boottime_ns: f.value.first_boottime_ns,
                },
            ));
        }

        // Invariant 5.
        let mut vanished = 0u64;
        let mut seen: HashSet<FlowKey> = HashSet::new();
        if !self.carry.is_empty() || matched != self.flows.len() {
            seen = reading.flows.iter().map(|f| f.key).collect();
            for key in self.flows.keys() {
                if !seen.contains(key) && !self.carry.contains_key(key) {
                    dels.push(*key);
                    vanished += 1;
                }
            }
        }

        // Overflow.
        let (ov, failed_inserts, ov_reset) = overflow_delta(&reading.overflow, &self.overflow);
        acc.add_overflow(ov);
        let overflow_snapshot = (reading.overflow != self.overflow).then_some(reading.overflow);

        // Retire quiescent closed flows (invariant 3), just before the commit.
        let mut new_carry: HashMap<FlowKey, Carried> = HashMap::new();
        let mut done_cookies: HashSet<u64> = to_retire.iter().map(|k| k.cookie).collect();
        if !to_retire.is_empty() {
            let retired = source.retire(&to_retire)?;
            report.retired = retired.len();
            for (key, value) in &retired {
                let mut reset = false;
                let d = delta_of(self.flows.get(key).map(|c| &c.entry), value, &mut reset);
                resets += u64::from(reset);
                let owner = owner_of(key.cookie).cloned();
                acc.add_flow(key, value, owner.as_ref(), d);
                new_carry.insert(
                    *key,
                    Carried {
                        value: *value,
                        owner,
                    },
                );
            }
            // Retired, or already gone: either way out of the snapshot.
            dels.extend_from_slice(&to_retire);
            // A cookie is done when none of its flows stays in the source.
            let retiring: HashSet<FlowKey> = to_retire.iter().copied().collect();
            for f in &reading.flows {
                if !retiring.contains(&f.key) {
                    done_cookies.remove(&f.key.cookie);
                }
            }
        }
        for key in self.carry.keys() {
            if !seen.contains(key) {
                done_cookies.insert(key.cookie);
            }
        }

        if resets > 0 || ov_reset {
            tracing::warn!(
                flows = resets,
                overflow = ov_reset,
                "counters reset (maps recreated): new values taken from zero"
            );
            events.push(DaemonEvent::Reset {
                flows: resets,
                overflow: ov_reset,
            });
        }
        if vanished > 0 {
            tracing::warn!(flows = vanished, "committed flows vanished from the source");
            events.push(DaemonEvent::Vanished { flows: vanished });
        }
        if failed_inserts > 0 || !ov.is_zero() {
            tracing::warn!(
                failed_inserts,
                ip_bytes = ov.tx.ip_bytes + ov.rx.ip_bytes,
                "flow map full: traffic counted as overflow"
            );
            events.push(DaemonEvent::Overflow {
                failed_inserts,
                ip_bytes: ov.tx.ip_bytes.saturating_add(ov.rx.ip_bytes),
            });
        }
        if self.failures > 0 {
            events.push(DaemonEvent::WriteRecovered {
                failures: self.failures,
                error: self.first_error.clone().unwrap_or_default(),
            });
        }
        report.resets = resets;
        report.vanished = vanished;

        let mut batch = Batch {
            ts_ms: now,
            processes: acc.processes.values().cloned().collect(),
            proc_rows: acc.procs.iter().map(|((id, c), t)| (*id, *c, *t)).collect(),
            remote_rows: acc.remotes.into_iter().collect(),
            iface_rows: acc
                .ifaces
                .into_iter()
                .map(|((i, c), t)| (i, c, t))
                .collect(),
            // Invariant 7: durable when the source lost bytes it held, when
            // a retire waits for it, when there is something to record, and
            // periodically.
            lazy: self.carry.is_empty()
                && new_carry.is_empty()
                && !need_durable
                && events.is_empty()
                && self
                    .last_durable
                    .is_some_and(|t| now.saturating_sub(t) < DURABLE_EVERY_MS),
            snapshot_put: puts,
            snapshot_del: dels,
            overflow_snapshot,
            events,
        };
        batch.proc_rows.sort_by_key(|(id, c, _)| (*id, *c));
        let wrote = !batch.is_empty();
        if wrote && let Err(e) = store.commit(&batch) {
            self.carry.extend(new_carry);
            return Err(e.into());
        }

        // Committed: advance the in-memory snapshot (invariants 1 and 7).
        if wrote {
            self.seq += 1;
        }
        for key in &batch.snapshot_del {
            self.flows.remove(key);
        }
        let seq = self.seq;
        for (key, entry) in batch.snapshot_put {
            self.flows.insert(key, Committed { entry, seq });
        }
        self.overflow = reading.overflow;
        if wrote && !batch.lazy {
            self.durable_seq = self.seq;
            self.last_durable = Some(now);
        }
        self.carry.clear();
        self.failures = 0;
        self.first_error = None;

        // Housekeeping after the commit: losing it to a crash only leaks a
        // closed mark and a cache entry, never bytes.
        if !done_cookies.is_empty() {
            let cookies: Vec<u64> = done_cookies.into_iter().collect();
            if let Err(e) = source.forget_closed(&cookies) {
                tracing::warn!(error = %e, "forgetting closed sockets");
            }
            resolver.forget(&cookies);
            self.forget_owners(&cookies);
        }
        report.per_process = batch
            .proc_rows
            .iter()
            .filter_map(|(id, c, t)| Some((acc.processes.get(id)?.clone(), *c, *t)))
            .collect();
        Ok(report)
    }

    /// Drops the cached owners of `cookies`, and now and then the infos of
    /// processes no cached socket refers to.
    fn forget_owners(&mut self, cookies: &[u64]) {
        for c in cookies {
            self.owners.remove(c);
        }
        self.forgotten += cookies.len();
        if self.forgotten >= PRUNE_EVERY {
            let live: HashSet<ProcessId> = self.owners.values().copied().collect();
            self.infos.retain(|id, _| live.contains(id));
            self.forgotten = 0;
        }
    }
}
