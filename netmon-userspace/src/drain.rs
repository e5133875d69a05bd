//! One drain step: read the counters, compute deltas against the last
//! committed snapshot, attribute them, commit everything in one transaction.
//!
//! # Why no byte is lost or counted twice
//!
//! Invariants, each kept by the code named:
//! 1. **The in-memory snapshot equals the committed `snapshot` table.** It is
//!    loaded at start ([`Drain::new`]), changed only after
//!    [`Store::commit`] returned `Ok`, and reloaded after a failed commit.
//!    A step builds its changes as a list of slot writes beside the
//!    snapshot, encodes the touched chunks from snapshot + changes, and
//!    applies the list only after the commit.
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
//! 8. **Remote bytes are in the rows or in the snapshot, never both.** A
//!    flow's delta goes to the per process rows at once, but to the remote
//!    rollups only through its snapshot entry's [`RemotePending`] pieces
//!    (one for the current UTC minute, one for an earlier minute at most).
//!    A piece is moved to `REMOTE_MINUTE`/`REMOTE_HOUR`/`REMOTE_DAY`
//!    ("flushed") in the same commit that removes it from the entry:
//!    - when its minute is over, at most [`FLUSH_PER_STEP`] flows a step
//!      (the flows with an old piece are listed once per minute change and
//!      taken from that list step by step, so a minute change at 100k live
//!      sockets costs a few ms over a few dozen steps, not one long step);
//!    - at once when the flow leaves the snapshot (retired, carried,
//!      vanished, reset: everything pending goes with the old entry), when
//!      its owner, class, service port or direction changes (the pieces
//!      belong to the old key), and when a third minute would be needed
//!      (the older piece goes first);
//!    - never in the background while the flow's server name is not
//!      decided (no payload yet): its pieces wait for the name
//!      (the `names` submodule).
//!
//!    Readers add the committed pending pieces to the remote rows
//!    ([`crate::store::query::pending_remote_rows`]), so remote answers
//!    are exact and include the current minute. Why: with one distinct
//!    remote per socket, writing remote rows every interval was one
//!    B-tree read-modify-write per flow per table per interval — 40% of a
//!    drain at 100k sockets. Flushed once a minute, a busy flow costs one
//!    read-modify-write per remote tier per minute, and flows sharing a
//!    remote key (a server's connections from one peer to one service
//!    port) share it.
//!
//! # The step, phase by phase
//!
//! [`Drain::step`] runs these in this order (`step_inner` lists them in
//! one short function; each is a method of [`Drain`] working on the
//! step's `StepState`):
//! 1. **begin**: reload after a failed commit (invariant 1), read the
//!    source, pick this step's share of the background flush (8).
//! 2. **carry**: values retired by a failed commit are counted now (3).
//! 3. **diff**: each flow of the reading against its committed entry:
//!    deltas (2), resets (4); closed quiescent flows listed to retire, if
//!    their entry is durable (7).
//! 4. **resolve**: owners of sockets with bytes and no cached owner; each
//!    delta goes to the rows, its pending remote pieces (8) and its TCP
//!    quality sample (aggregated per remote key: the store gets one
//!    quality row per key, not per connection); its new entry becomes a
//!    slot write.
//! 5. **vanish**: committed flows the source no longer holds leave (5).
//! 6. **retire**: the listed flows are removed from the source, their
//!    final values counted (3). Last before the commit, to keep the
//!    retire→commit window short.
//! 7. **flush**: finished minutes' remote pieces of untouched flows (8).
//! 8. **batch**: overflow, events, the snapshot chunks the slot writes
//!    touch ([`SnapshotChunks`], the store's byte format), lazy or durable
//!    (7).
//! 9. **commit**: one transaction (2); only after it succeeded are the slot
//!    writes applied (1); a failure carries the retired values (3).
//!
//! Before `commit`, a phase adds to the step's state and its slot write
//! list and touches only caches (owners, scratch marks, the flush queue):
//! the in-memory snapshot (slots, index, overflow, commit numbers) changes
//! in `commit` alone, so a failure in any phase leaves it as the last
//! commit left it.
//!
//! # Cost per step (issue #3)
//!
//! Measured with `cargo bench -p netmon-userspace --bench drain` (numbers
//! in the issue): at 100k live sockets a step was 0.5 s, dominated by the
//! remote rollups' read-modify-writes, one B-tree row write per flow for
//! the snapshot, and SipHash lookups. What a step does per flow now:
//! - finds the flow's slot by its position in the last reading
//!   ([`Drain`]'s `hints`: a map dump comes in a stable order), falling back
//!   to the index, a hash map; maps keyed by what a remote peer picks
//!   (addresses, ports) use foldhash with a per-map seed, maps keyed by
//!   kernel cookies, pids and interfaces use FxHash (fast, not
//!   collision-resistant, and nobody outside picks those keys);
//! - takes the owner from the slot (a cache of the owner map);
//! - adds the delta to per process and interface maps (hundreds of
//!   entries) and to the flow's pending remote pieces (invariant 8);
//! - re-encodes its chunk: the snapshot is a slab of slots packed
//!   [`crate::store::layout::SNAP_CHUNK`] to a stored row, split in a
//!   counters table rewritten with any change (~17 bytes a flow) and a keys
//!   table rewritten only when a flow comes, goes, changes owner or starts
//!   a new current-minute remote piece ([`crate::store::layout::SNAPSHOT`]),
//!   so a step writes one or two rows per touched chunk instead of one per
//!   changed flow.
//!
//! Attribution: each flow's delta goes to the [`ProcessInfo`] the
//! [`Resolver`] gives for its cookie, or to [`UNATTRIBUTED`]; overflow
//! counters go to [`OVERFLOW`] with class [`DestClass::Unknown`].
use netmon_common::{FlowKey, FlowValue, OverflowCounters};
use rustc_hash::{FxHashMap, FxHashSet};

/// Who a flow's bytes are counted for in the remote rollups: owner,
/// destination class, service port and direction (see
/// [`crate::store::service`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Who {
    id: ProcessId,
    class: DestClass,
    port: u16,
    dir: ConnDir,
    /// The flow's server name ([`names`]).
    name: NameId,
}

impl Who {
    /// With the flow's server name.
    const fn named(self, name: NameId) -> Self {
        Self { name, ..self }
    }
}

/// A map keyed by something a remote peer chooses (its address and port):
/// foldhash, seeded per map, so colliding keys cannot be prepared offline.
type PeerMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set of the same kind.
type PeerSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use crate::ownership::{ProcessId, ProcessInfo, Resolver};
use crate::source::{CounterSource, FlowReading, Reading, SourceError};
use crate::store::class::classify_raw;
use crate::store::names::NameId;
use crate::store::service::service_of;
use crate::store::types::pseudo_process;
use crate::store::{
    Batch, ConnDir, DaemonEvent, DestClass, OVERFLOW, OVERFLOW_COMM, QualitySample, RemoteKey,
    RemotePending, SnapEntry, SnapshotChunks, Store, StoreError, Tier, TimeMs, Traffic,
    UNATTRIBUTED, UNATTRIBUTED_COMM,
};

mod ifaces;
mod names;

/// A durable commit is made at least this often (ms of drain time); the
/// commits between are lazy (invariant 7).
pub const DURABLE_EVERY_MS: TimeMs = 10_000;

/// Flows whose pending remote pieces of a finished minute are flushed per
/// step, at most (invariant 8). Forced flushes (a flow leaving, changing
/// owner) come on top. Measured at ~5 µs per flow when there were two
/// remote tables (hour, day; a read-modify-write in each, 100k distinct
/// keys); the minute table adds a third (not re-measured: ~7.5 µs
/// expected), so 2048 flows add ~15 ms to a step, and 100k flows with
/// distinct keys are flushed in 49 steps after a minute ends (a flow with
/// traffic in a third minute before its turn flushes its oldest piece at
/// once). Flows
/// sharing a remote key (a server's connections from one peer to one
/// service) share its read-modify-write.
/// While commits are mostly lazy (short intervals), a step due the periodic
/// durable commit (whose fsync is the slowest part of a step) flushes
/// nothing; with intervals of [`DURABLE_EVERY_MS`] or more every commit is
/// durable and every step flushes.
pub const FLUSH_PER_STEP: usize = 2048;

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
        crate::model::unix_ms_now()
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
    /// Flows whose pending remote pieces were flushed (invariant 8).
    pub remote_flushed: usize,
    /// Per process and class deltas committed.
    pub per_process: Vec<(ProcessInfo, DestClass, Traffic)>,
    /// The drain gave back memory a burst of flows had needed
    /// ([`Drain::trim`]): a good time to return freed heap to the system.
    pub trimmed: bool,
}

/// A flow's committed snapshot entry and the commit that wrote it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FlowKey,
    entry: SnapEntry,
    /// [`Drain::seq`] of the commit that wrote `entry`; the entry is durable
    /// when this is at most [`Drain::durable_seq`] (invariant 7).
    seq: u64,
    /// The flow's owner as [`Drain::owners`] had it when the entry was
    /// written (`None`: unknown then): saves a lookup in that map per flow
    /// and step. Not stored; a cache of `owners[key.cookie]`.
    owner: Option<ProcessId>,
    /// TCP flows: the socket's `(total_retrans, data_segs_out)` as the
    /// last committed reading had them, the base of the next interval's
    /// quality sample. Not stored: `None` after a (re)load, and the first
    /// interval after it records the RTT but no segment counts.
    tcp: Option<(u32, u32)>,
}

/// Per slot scratch marks of the current step (compared with
/// [`Drain::step_no`], so they never need clearing).
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    /// Step in which the flow was in the reading.
    seen: u64,
    /// Step in which the slot got a change (`change` is its index).
    changed: u64,
    change: u32,
    /// Step in which the slot is due a background flush.
    flush: u64,
}

/// A slot write of this step, applied after the commit (invariant 1).
/// 12 bytes: the new records are in [`Changes::puts`], so the frees (half
/// the writes under connection churn) take no room for a record.
#[derive(Clone, Copy, Debug)]
struct Change {
    slot: u32,
    /// Index of the new record in [`Changes::puts`]; [`Change::FREE`]: the
    /// slot is freed. (`seq` is set when applied.)
    put: u32,
    /// The slot's `SNAPSHOT_KEYS` record changes too (a flow comes or
    /// goes, is reset or changes owner), not only its counters.
    keys: bool,
}

/// The drain: the committed snapshot, the retired-but-uncommitted carry and
/// the owner cache.
#[derive(Debug)]
pub struct Drain {
    /// Invariant 1: the committed `snapshot` table, slot by slot (`None`:
    /// free). Slot `s` is stored in chunk `s / SNAP_CHUNK`.
    slots: Vec<Option<Slot>>,
    /// Slot of every flow in `slots`.
    index: PeerMap<FlowKey, u32>,
    /// Free slots below `slots.len()`; the last is reused first.
    free: Vec<u32>,
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
    carry: PeerMap<FlowKey, Carried>,
    /// Failed commits since the last success, and the first error.
    failures: u64,
    first_error: Option<String>,
    /// Drain time of the last durable commit (`None`: none yet by this
    /// drain, so the next one is durable). Invariant 7.
    last_durable: Option<TimeMs>,
    /// Owner of every socket resolved so far. The [`Resolver`] is asked
    /// only about sockets not in here, and only when they have bytes to
    /// attribute; an entry goes when the socket is forgotten.
    owners: FxHashMap<u64, ProcessId>,
    /// What is known of each owner (the latest the resolver gave). Pruned
    /// to the processes in `owners` every [`PRUNE_EVERY`] forgotten sockets.
    infos: FxHashMap<ProcessId, ProcessInfo>,
    /// Sockets forgotten since `infos` was last pruned.
    forgotten: usize,
    /// Invariant 8: the minute whose list of flows with older pieces was
    /// built (`None`: build it at the next step).
    flush_minute: Option<TimeMs>,
    /// Invariant 8: slots that may hold pieces of a minute before
    /// `flush_minute`; [`FLUSH_PER_STEP`] are taken a step. A slot reused
    /// meanwhile by another flow is harmless: only old pieces are flushed.
    flush_queue: Vec<u32>,
    /// Scratch marks per slot.
    marks: Vec<Mark>,
    /// The slot of each flow of the last reading, by position: sources
    /// list flows in a stable order (a map dump), so this finds most flows
    /// without a hash lookup (a cache miss per flow at 100k flows). Only a
    /// hint: checked against the slot's key.
    hints: Vec<u32>,
    /// Steps begun (stamps of `marks`).
    step_no: u64,
    /// The last commit was lazy (see [`FLUSH_PER_STEP`]).
    last_lazy: bool,
    /// Live readers of committed readings ([`Drain::set_tap`]).
    tap: Option<crate::live::Tap>,
    /// The committed interface counters ([`ifaces`]).
    ifc: ifaces::IfDrain,
    /// Server names of flows ([`names`]).
    names: names::FlowNames,
}

/// [`Drain::trim`] leaves a slab shorter than this alone.
const TRIM_MIN_SLOTS: usize = 4096;

/// `infos` is pruned after this many forgotten sockets.
const PRUNE_EVERY: usize = 4096;

/// Remote bytes flushed in one step, by minute and key.
type RemoteAcc = PeerMap<(TimeMs, RemoteKey), Traffic>;

/// Deltas of one step, aggregated for the store.
#[derive(Default)]
struct Accum {
    processes: FxHashMap<ProcessId, ProcessInfo>,
    procs: FxHashMap<(ProcessId, DestClass), Traffic>,
    ifaces: FxHashMap<(u32, DestClass), Traffic>,
    remotes: RemoteAcc,
    /// TCP flows' samples, aggregated per remote key before the store
    /// sees them (rows follow keys, not connections).
    quality: crate::store::quality::QualityAcc,
}

impl Accum {
    /// Adds a flow's delta to the per process and interface rows; returns
    /// who it was counted for (the remote key's fields).
    fn add_flow(
        &mut self,
        key: &FlowKey,
        value: &FlowValue,
        owner: Option<&ProcessInfo>,
        delta: Traffic,
    ) -> Who {
        let class = classify_raw(&key.remote_addr, key.ip_version, value.ifindex);
        let id = owner.map_or(UNATTRIBUTED, |o| o.id);
        let (dir, port) = service_of(key, value);
        let who = Who {
            id,
            class,
            port,
            dir,
            name: NameId::NONE,
        };
        if delta.is_zero() {
            return who;
        }
        self.processes.entry(id).or_insert_with(|| {
            owner
                .cloned()
                .unwrap_or_else(|| pseudo_process(UNATTRIBUTED, UNATTRIBUTED_COMM))
        });
        bump(self.procs.entry((id, class)).or_default(), delta);
        bump(
            self.ifaces.entry((value.ifindex, class)).or_default(),
            delta,
        );
        who
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

    /// Adds `t` to the remote rows of `minute` (invariant 8).
    fn emit(&mut self, minute: TimeMs, rk: RemoteKey, t: Traffic) {
        if !t.is_zero() {
            bump(self.remotes.entry((minute, rk)).or_default(), t);
        }
    }

    /// Flushes every piece of `p` (the flow leaves or changes key).
    fn flush_all(&mut self, p: &mut RemotePending, flow: &FlowKey) {
        let rk = p.remote_key(flow);
        for (minute, t) in p.pieces() {
            self.emit(minute, rk, t);
        }
        p.older = Traffic::default();
        p.newer = Traffic::default();
    }

    /// Flushes the pieces of `p` from minutes before `minute`; true if any.
    fn flush_before(&mut self, p: &mut RemotePending, flow: &FlowKey, minute: TimeMs) -> bool {
        let rk = p.remote_key(flow);
        let mut any = false;
        if !p.older.is_zero() {
            self.emit(p.older_minute, rk, p.older);
            p.older = Traffic::default();
            any = true;
        }
        if !p.newer.is_zero() && p.newer_minute < minute {
            self.emit(p.newer_minute, rk, p.newer);
            p.newer = Traffic::default();
            any = true;
        }
        any
    }

    /// Adds delta `d`, counted at `minute` for `who`, to the pending
    /// pieces of `p`, flushing what must go first (invariant 8).
    fn add_pending(
        &mut self,
        p: &mut RemotePending,
        flow: &FlowKey,
        who: Who,
        minute: TimeMs,
        d: Traffic,
    ) {
        if d.is_zero() {
            return;
        }
        if !p.is_empty()
            && (p.process != who.id
                || p.class != who.class
                || p.port != who.port
                || p.dir != who.dir
                || p.name != who.name)
        {
            self.flush_all(p, flow);
        }
        if p.is_empty() {
            p.process = who.id;
            p.class = who.class;
            p.port = who.port;
            p.dir = who.dir;
            p.name = who.name;
        }
        if p.newer.is_zero() {
            if !p.older.is_zero() && p.older_minute == minute {
                // Only after a clock step back: same minute as the older piece.
                p.older = p.older.add(d);
            } else {
                p.newer = d;
                p.newer_minute = minute;
            }
        } else if p.newer_minute == minute {
            p.newer = p.newer.add(d);
        } else {
            if !p.older.is_zero() {
                let rk = p.remote_key(flow);
                self.emit(p.older_minute, rk, p.older);
            }
            p.older = p.newer;
            p.older_minute = p.newer_minute;
            p.newer = d;
            p.newer_minute = minute;
        }
    }
}

/// The quality sample of a TCP flow with packets in this interval, and the
/// segment counts to remember for the next one. `base`: the counts of the
/// last committed reading (`(0, 0)` for a new flow, `None` when unknown
/// after a reload: no segment counts this time).
fn quality_of(
    f: &FlowReading,
    who: Who,
    base: Option<(u32, u32)>,
) -> (Option<QualitySample>, Option<(u32, u32)>) {
    let t = &f.value.tcp;
    if f.key.protocol != IPPROTO_TCP || *t == netmon_common::TcpSample::default() {
        return (None, base);
    }
    let now = (t.total_retrans, t.data_segs_out);
    // A count below its base is a new socket under the same key: from 0.
    let since = |cur: u32, old: u32| cur.checked_sub(old).unwrap_or(cur);
    let (retrans_segs, data_segs) =
        base.map_or((0, 0), |(r, s)| (since(now.0, r), since(now.1, s)));
    let sample = QualitySample {
        pid: who.id.pid,
        start_ticks: who.id.start_ticks,
        addr: f.key.remote_addr,
        port: who.port,
        ip_version: f.key.ip_version,
        protocol: f.key.protocol,
        class: who.class.to_byte(),
        dir: who.dir.to_byte(),
        srtt_us: t.srtt_us().unwrap_or(0),
        retrans_segs,
        data_segs,
        delivery_rate: t.delivery_rate_bps().unwrap_or(0),
    };
    (Some(sample), Some(now))
}

/// IP protocol number of TCP.
const IPPROTO_TCP: u8 = 6;

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

/// A flow of the reading with a delta.
struct Changed {
    /// Position in the reading.
    i: usize,
    /// The delta (invariant 4).
    d: Traffic,
    /// Its committed slot (`None`: new, or a carried key seen again).
    prev: Option<u32>,
    /// Taken as a reset of the committed entry.
    reset: bool,
    /// Its owner, when known before resolving.
    owner: Option<ProcessId>,
}

impl Change {
    /// [`Change::put`] of a freed slot.
    const FREE: u32 = u32::MAX;
}

/// The slot writes of one step, and the slots they take.
struct Changes {
    list: Vec<Change>,
    /// The records the writes of `list` put.
    puts: Vec<Slot>,
    /// Free slots taken (from the end of [`Drain::free`]).
    used_free: usize,
    /// The next slot past the end of [`Drain::slots`] to hand out.
    next_new: u32,
}

impl Changes {
    /// The record `c` puts (`None`: `c` frees its slot).
    fn put(&self, c: &Change) -> Option<&Slot> {
        if c.put == Change::FREE {
            None
        } else {
            self.puts.get(slot_index(c.put))
        }
    }
}

/// The working state of one step, handed from phase to phase
/// ([`Drain::step_inner`]).
struct StepState {
    /// Time of the reading.
    now: TimeMs,
    /// [`Drain::step_no`] of this step (the stamp of its marks).
    step: u64,
    /// The UTC minute of `now` (invariant 8).
    minute: TimeMs,
    reading: Reading,
    if_reading: crate::source::IfaceReading,
    if_batch: crate::store::ifcount::IfBatch,
    /// Events to record in this step's commit.
    events: Vec<DaemonEvent>,
    /// Rows for the store.
    acc: Accum,
    /// Slot writes, applied after the commit (invariant 1).
    ch: Changes,
    report: StepReport,
    /// Flows taken as reset (invariant 4).
    resets: u64,
    /// Invariant 7: a closed, quiescent flow whose snapshot entry is not
    /// durable yet is not retired; this commit is made durable instead,
    /// and the next step retires it.
    need_durable: bool,
    /// Slots due the background flush this step (invariant 8).
    flush_now: Vec<u32>,
    /// Values retired by an earlier step whose commit failed (invariant 3).
    carry: PeerMap<FlowKey, Carried>,
    /// Flows of the reading with a delta.
    changed: Vec<Changed>,
    /// Closed, quiescent flows to retire, and their positions in the reading.
    to_retire: Vec<FlowKey>,
    retire_idx: Vec<usize>,
    /// Reading flows found in the snapshot (invariant 5).
    matched: usize,
    /// The slot of each flow of the reading ([`Drain`]'s `hints` once
    /// committed).
    hints: Vec<u32>,
    /// Flows retired by this step: final value and owner (carried if the
    /// commit fails).
    retired_now: Vec<(FlowKey, FlowValue)>,
    /// Owners of `retired_now`, in the same order.
    retired_owners: Vec<Option<ProcessId>>,
    /// Sockets with no flow left in the source once this step commits.
    done_cookies: FxHashSet<u64>,
}

fn slot_index(s: u32) -> usize {
    usize::try_from(s).unwrap_or(usize::MAX)
}

impl Drain {
    /// Loads the committed snapshot.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn new(store: &mut Store) -> Result<Self, DrainError> {
        let mut me = Self {
            slots: Vec::new(),
            index: PeerMap::default(),
            free: Vec::new(),
            overflow: OverflowCounters::default(),
            seq: 0,
            durable_seq: 0,
            stale: false,
            carry: PeerMap::default(),
            failures: 0,
            first_error: None,
            last_durable: None,
            owners: FxHashMap::default(),
            infos: FxHashMap::default(),
            forgotten: 0,
            flush_minute: None,
            flush_queue: Vec::new(),
            marks: Vec::new(),
            hints: Vec::new(),
            step_no: 0,
            last_lazy: false,
            tap: None,
            ifc: ifaces::IfDrain::default(),
            names: names::FlowNames::default(),
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
        let len = snapshot
            .flows
            .iter()
            .map(|r| slot_index(r.slot).saturating_add(1))
            .max()
            .unwrap_or(0);
        self.slots = vec![None; len];
        self.index = PeerMap::default();
        self.index.reserve(snapshot.flows.len());
        for r in snapshot.flows {
            self.slots[slot_index(r.slot)] = Some(Slot {
                key: r.key,
                entry: r.entry,
                seq: 1,
                owner: None,
                tcp: None,
            });
            self.index.insert(r.key, r.slot);
        }
        // Lowest free slot last: reused first.
        self.free = (0..len)
            .rev()
            .filter(|s| self.slots[*s].is_none())
            .filter_map(|s| u32::try_from(s).ok())
            .collect();
        self.overflow = snapshot.overflow;
        self.ifc = ifaces::IfDrain::load(store)?;
        self.load_names(store)?;
        self.seq = 1;
        self.durable_seq = 0;
        self.last_durable = None;
        self.flush_minute = None;
        self.flush_queue.clear();
        Ok(())
    }

    /// Hands each committed reading, with its owners, to `tap` while a
    /// live reader wants them ([`crate::live::Tap::wanted`]).
    pub fn set_tap(&mut self, tap: crate::live::Tap) {
        self.tap = Some(tap);
    }

    /// Flows in the committed snapshot.
    #[must_use]
    pub fn snapshot_len(&self) -> usize {
        self.index.len()
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
        let mut result = self.step_inner(source, resolver, store, now, events);
        if let Ok(report) = &mut result {
            report.trimmed = self.trim();
        }
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

    /// After a burst of short connections, gives back what the live flows
    /// no longer need: the slab is cut after its last live slot and every
    /// table shrinks to its content. Runs only when the slab is at least
    /// [`TRIM_MIN_SLOTS`] long and under a quarter full, so the memory follows
    /// the live flows, not the most there ever were. Returns whether it ran.
    fn trim(&mut self) -> bool {
        let cap = self.slots.capacity();
        if cap < TRIM_MIN_SLOTS || self.index.len().saturating_mul(4) >= cap {
            return false;
        }
        let end = self
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        self.slots.truncate(end);
        self.slots.shrink_to_fit();
        let end_slot = u32::try_from(end).unwrap_or(u32::MAX);
        self.free.retain(|s| *s < end_slot);
        self.free.shrink_to_fit();
        self.marks.truncate(end);
        self.marks.shrink_to_fit();
        self.flush_queue.retain(|s| *s < end_slot);
        self.flush_queue.shrink_to_fit();
        self.hints.shrink_to_fit();
        self.index.shrink_to_fit();
        self.owners.shrink_to_fit();
        self.infos.shrink_to_fit();
        self.carry.shrink_to_fit();
        self.names.shrink();
        true
    }

    fn entry(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(slot_index(slot)).and_then(Option::as_ref)
    }

    fn mark_mut(&mut self, slot: u32) -> &mut Mark {
        let i = slot_index(slot);
        if i >= self.marks.len() {
            self.marks.resize(i + 1, Mark::default());
        }
        &mut self.marks[i]
    }

    fn mark(&self, slot: u32) -> Mark {
        self.marks
            .get(slot_index(slot))
            .copied()
            .unwrap_or_default()
    }

    /// Records a slot write of this step.
    fn change(&mut self, ch: &mut Changes, slot: u32, put: Option<Slot>) {
        let idx = u32::try_from(ch.list.len()).unwrap_or(u32::MAX);
        let keys = match (self.entry(slot), &put) {
            (Some(old), Some(new)) => {
                old.key != new.key || SnapshotChunks::keys_differ(&old.entry, &new.entry)
            }
            _ => true,
        };
        let step = self.step_no;
        let m = self.mark_mut(slot);
        debug_assert!(m.changed != step, "one change per slot and step");
        m.changed = step;
        m.change = idx;
        let put = match put {
            Some(p) => {
                ch.puts.push(p);
                u32::try_from(ch.puts.len() - 1).unwrap_or(Change::FREE)
            }
            None => Change::FREE,
        };
        ch.list.push(Change { slot, put, keys });
    }

    /// A slot for a new flow (taken for good only if the commit succeeds).
    fn alloc(&self, ch: &mut Changes) -> u32 {
        if ch.used_free < self.free.len() {
            ch.used_free += 1;
            self.free[self.free.len() - ch.used_free]
        } else {
            let s = ch.next_new;
            ch.next_new = ch.next_new.saturating_add(1);
            s
        }
    }

    /// The record slot `s` holds once this step's changes are applied
    /// (invariant 1: the snapshot itself changes only after the commit).
    fn record_after<'a>(&'a self, ch: &'a Changes, s: u32) -> Option<&'a Slot> {
        let m = self.mark(s);
        if m.changed == self.step_no {
            ch.put(&ch.list[slot_index(m.change)])
        } else {
            self.entry(s)
        }
    }

    /// One step, phase by phase in the order the invariants (module doc)
    /// give. Each phase reads and extends the step's [`StepState`]; nothing
    /// reaches the in-memory snapshot before the commit succeeded.
    fn step_inner(
        &mut self,
        source: &mut dyn CounterSource,
        resolver: &mut dyn Resolver,
        store: &mut Store,
        now: TimeMs,
        events: Vec<DaemonEvent>,
    ) -> Result<StepReport, DrainError> {
        let mut st = self.begin(source, store, now, events)?; // read; pick the flush batch (8)
        self.carry_in(&mut st); // 3: values retired by a failed commit
        self.diff(&mut st); // 2, 4: deltas against the snapshot
        self.resolve(&mut st, resolver); // owners of new sockets, deltas attributed
        self.vanish(&mut st); // 5: committed flows the source no longer has
        self.retire(&mut st, source)?; // 3: closed, quiescent flows leave the source
        self.flush(&mut st); // 8: finished minutes' remote pieces, bounded
        let batch = self.batch(&mut st); // events, snapshot chunks, durability (7)
        self.commit(st, batch, source, resolver, store) // 1: applied only after Ok
    }

    /// Reloads after a failed commit, reads the source and, after a minute
    /// change, lists the flows with pieces of an earlier minute; marks this
    /// step's share of them (invariant 8).
    fn begin(
        &mut self,
        source: &mut dyn CounterSource,
        store: &mut Store,
        now: TimeMs,
        events: Vec<DaemonEvent>,
    ) -> Result<StepState, DrainError> {
        if self.stale {
            self.load(store)?;
            self.stale = false;
        }
        self.step_no += 1;
        let step = self.step_no;
        let minute = Tier::Minute.bucket(now);
        let reading = source.read()?;
        self.take_names(&reading, minute);
        let if_reading = source.read_ifaces()?;
        let (if_batch, if_resets) = self.ifc.step(&if_reading);
        if if_resets > 0 {
            tracing::warn!(
                keys = if_resets,
                "interface counters reset (maps recreated): new values taken from zero"
            );
        }
        if self.flush_minute != Some(minute) {
            self.flush_queue = self
                .slots
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, s)| {
                    s.as_ref()
                        .is_some_and(|s| s.entry.pending.has_before(minute))
                })
                .filter_map(|(i, _)| u32::try_from(i).ok())
                .collect();
            self.flush_minute = Some(minute);
        }
        let durable_due = self
            .last_durable
            .is_none_or(|t| now.saturating_sub(t) >= DURABLE_EVERY_MS);
        let take = if durable_due && self.last_lazy {
            0
        } else {
            self.flush_queue.len().min(FLUSH_PER_STEP)
        };
        let flush_now = self.flush_queue.split_off(self.flush_queue.len() - take);
        for s in &flush_now {
            self.mark_mut(*s).flush = step;
        }
        let n = reading.flows.len();
        Ok(StepState {
            now,
            step,
            minute,
            report: StepReport {
                ts_ms: now,
                flows_read: n,
                ..StepReport::default()
            },
            reading,
            if_reading,
            if_batch,
            events,
            acc: Accum::default(),
            ch: Changes {
                list: Vec::with_capacity(n),
                puts: Vec::new(),
                used_free: 0,
                next_new: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            },
            resets: 0,
            need_durable: false,
            flush_now,
            carry: std::mem::take(&mut self.carry),
            changed: Vec::with_capacity(n),
            to_retire: Vec::new(),
            retire_idx: Vec::new(),
            matched: 0,
            hints: Vec::with_capacity(n),
            retired_now: Vec::new(),
            retired_owners: Vec::new(),
            done_cookies: FxHashSet::default(),
        })
    }

    /// Invariant 3: values retired in an earlier step whose commit failed
    /// are counted now, with everything their snapshot entry had pending.
    fn carry_in(&mut self, st: &mut StepState) {
        for (key, c) in &st.carry {
            let prev = self.index.get(key).copied();
            let mut reset = false;
            let entry = prev.and_then(|s| self.entry(s)).map(|s| s.entry);
            let d = delta_of(entry.as_ref(), &c.value, &mut reset);
            st.resets += u64::from(reset);
            let rkey = st
                .acc
                .add_flow(key, &c.value, c.owner.as_ref(), d)
                .named(self.names.of(key));
            if let (Some(s), Some(mut e)) = (prev, entry) {
                st.acc.flush_all(&mut e.pending, key);
                self.change(&mut st.ch, s, None);
            }
            let mut p = RemotePending::default();
            st.acc.add_pending(&mut p, key, rkey, st.minute, d);
            st.acc.flush_all(&mut p, key);
        }
    }

    /// Invariants 2 and 4: each flow of the reading against its committed
    /// entry. Flows with a delta are listed for `resolve`; closed flows
    /// without one are listed to retire when their entry is durable
    /// (invariant 7), else this commit is made durable so the next step can.
    fn diff(&mut self, st: &mut StepState) {
        let step = st.step;
        for (i, f) in st.reading.flows.iter().enumerate() {
            let slot = self
                .hints
                .get(i)
                .copied()
                .filter(|h| self.entry(*h).is_some_and(|e| e.key == f.key))
                .or_else(|| self.index.get(&f.key).copied());
            st.hints.push(slot.unwrap_or(u32::MAX));
            if let Some(s) = slot {
                st.matched += 1;
                self.mark_mut(s).seen = step;
            }
            // A carried key seen again is a new entry: the old one was retired.
            let prev = if st.carry.is_empty() || !st.carry.contains_key(&f.key) {
                slot
            } else {
                None
            };
            let committed = prev.and_then(|s| self.entry(s));
            let mut reset = false;
            let d = delta_of(committed.map(|c| &c.entry), &f.value, &mut reset);
            st.resets += u64::from(reset);
            if let Some(c) = committed
                && d.is_zero()
            {
                if f.closed {
                    if c.seq <= self.durable_seq {
                        st.to_retire.push(f.key);
                        st.retire_idx.push(i);
                    } else {
                        st.need_durable = true;
                    }
                }
                continue;
            }
            let owner = committed
                .and_then(|c| c.owner)
                .or_else(|| self.owners.get(&f.key.cookie).copied());
            st.changed.push(Changed {
                i,
                d,
                prev,
                reset,
                owner,
            });
        }
        st.report.changed = st.changed.len();
    }

    /// Owners of the sockets with bytes to attribute and none cached (each
    /// owner's info kept once), then every delta added to the rows, the
    /// flow's pending remote pieces (invariant 8) and its quality sample,
    /// and its new entry listed as a slot write.
    fn resolve(&mut self, st: &mut StepState, resolver: &mut dyn Resolver) {
        self.resolve_owners(st, resolver);
        st.ch.puts.reserve_exact(st.changed.len());
        for c in &st.changed {
            let f = &st.reading.flows[c.i];
            let owner = c.owner.and_then(|id| self.infos.get(&id));
            let rkey = st
                .acc
                .add_flow(&f.key, &f.value, owner, c.d)
                .named(self.names.of(&f.key));
            let committed = c.prev.and_then(|s| self.entry(s));
            let mut pending = committed.map(|s| s.entry.pending).unwrap_or_default();
            if c.reset {
                // The old entry's bytes go with it (invariant 8).
                st.acc.flush_all(&mut pending, &f.key);
            }
            st.acc
                .add_pending(&mut pending, &f.key, rkey, st.minute, c.d);
            if let Some(s) = c.prev
                && self.mark(s).flush == st.step
                && !self.names.hold(&pending, &Traffic::of(&f.value), f.closed)
            {
                st.report.remote_flushed +=
                    usize::from(st.acc.flush_before(&mut pending, &f.key, st.minute));
            }
            let base = match committed {
                Some(_) if c.reset => Some((0, 0)),
                Some(e) => e.tcp,
                None => Some((0, 0)),
            };
            let (sample, tcp) = quality_of(f, rkey, base);
            if let Some(s) = &sample {
                st.acc.quality.add(s);
            }
            let entry = SnapEntry {
                counters: Traffic::of(&f.value),
                first_boottime_ns: f.value.first_boottime_ns,
                pending,
            };
            let slot = match c.prev {
                Some(s) => s,
                None => {
                    let s = self.alloc(&mut st.ch);
                    st.hints[c.i] = s;
                    s
                }
            };
            self.change(
                &mut st.ch,
                slot,
                Some(Slot {
                    key: f.key,
                    entry,
                    seq: 0,
                    owner: owner.map(|o| o.id),
                    tcp,
                }),
            );
        }
        // Per flow lists no later phase reads: freed now, before the
        // commit's peak (the batch, the redb pages, the slot writes).
        st.changed = Vec::new();
        st.reading.released_by = FxHashMap::default();
    }

    /// Asks the resolver about the changed and retiring sockets with no
    /// cached owner, and caches its answer.
    fn resolve_owners(&mut self, st: &mut StepState, resolver: &mut dyn Resolver) {
        let flows = &st.reading.flows;
        // Sized first: collected from filters, the list would grow by
        // doubling, copying its flows (~250 bytes each) every time.
        let mut unknown: Vec<FlowReading> =
            Vec::with_capacity(st.changed.len() + st.retire_idx.len());
        unknown.extend(
            st.changed
                .iter()
                .filter(|c| c.owner.is_none())
                .map(|c| flows[c.i])
                .chain(
                    st.retire_idx
                        .iter()
                        .map(|i| flows[*i])
                        .filter(|f| !self.owners.contains_key(&f.key.cookie)),
                ),
        );
        if unknown.is_empty() {
            return;
        }
        let mut released_by = FxHashMap::with_capacity_and_hasher(
            unknown.len().min(st.reading.released_by.len()),
            rustc_hash::FxBuildHasher,
        );
        released_by.extend(
            unknown
                .iter()
                .filter_map(|f| Some((f.key.cookie, *st.reading.released_by.get(&f.key.cookie)?))),
        );
        let resolved = resolver.resolve(&Reading {
            flows: unknown,
            overflow: st.reading.overflow,
            max_flows: st.reading.max_flows,
            released_by,
            names: std::collections::HashMap::new(),
        });
        if resolved.is_empty() {
            return;
        }
        let mut moved = false;
        let (by_cookie, infos) = resolved.into_parts();
        for (cookie, id) in by_cookie {
            moved |= self.owners.insert(cookie, id).is_some_and(|old| old != id);
        }
        self.infos.extend(infos);
        if moved {
            // A known socket got another owner (the resolver said more
            // than it was asked): drop every cached copy.
            for s in self.slots.iter_mut().flatten() {
                s.owner = None;
            }
            for c in &mut st.changed {
                c.owner = None;
            }
        }
        for c in st.changed.iter_mut().filter(|c| c.owner.is_none()) {
            c.owner = self.owners.get(&flows[c.i].key.cookie).copied();
        }
    }

    /// Invariant 5: committed flows the reading lacks (and not carried)
    /// leave the snapshot, their pending pieces flushed. Skipped when the
    /// reading matched every committed flow (a reading holds each key
    /// once: it is a dump of a hash map).
    fn vanish(&mut self, st: &mut StepState) {
        if st.carry.is_empty() && st.matched == self.index.len() {
            return;
        }
        let gone: Vec<(u32, Slot)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((u32::try_from(i).ok()?, (*s)?)))
            .filter(|(s, e)| self.mark(*s).seen != st.step && !st.carry.contains_key(&e.key))
            .collect();
        for (s, mut e) in gone {
            st.acc.flush_all(&mut e.entry.pending, &e.key);
            self.change(&mut st.ch, s, None);
            st.report.vanished += 1;
        }
    }

    /// Invariant 3: the closed, quiescent flows `diff` listed are removed
    /// from the source, just before the commit; their final values' excess
    /// is counted and their entries leave the snapshot. The retired values
    /// become carried values only if the commit fails. Also decides which
    /// sockets are done (no flow of theirs left in the source).
    fn retire(
        &mut self,
        st: &mut StepState,
        source: &mut dyn CounterSource,
    ) -> Result<(), DrainError> {
        st.done_cookies = st.to_retire.iter().map(|k| k.cookie).collect();
        if !st.to_retire.is_empty() {
            let retired = match source.retire(&st.to_retire) {
                Ok(r) => r,
                Err(e) => {
                    // Nothing committed: what was carried stays carried.
                    self.carry = std::mem::take(&mut st.carry);
                    return Err(e.into());
                }
            };
            st.report.retired = retired.len();
            st.retired_owners.reserve_exact(retired.len());
            for (key, value) in &retired {
                let mut reset = false;
                let entry = self
                    .index
                    .get(key)
                    .and_then(|s| self.entry(*s))
                    .map(|s| s.entry);
                let d = delta_of(entry.as_ref(), value, &mut reset);
                st.resets += u64::from(reset);
                let owner = self
                    .owners
                    .get(&key.cookie)
                    .and_then(|id| self.infos.get(id));
                let rkey = st
                    .acc
                    .add_flow(key, value, owner, d)
                    .named(self.names.of(key));
                let mut p = RemotePending::default();
                st.acc.add_pending(&mut p, key, rkey, st.minute, d);
                st.acc.flush_all(&mut p, key);
                st.retired_owners.push(owner.map(|o| o.id));
            }
            // The source's list itself, not a copy: under churn it is the
            // largest list of a step after the reading.
            st.retired_now = retired;
            // Retired, or already gone: either way out of the snapshot,
            // with everything pending (invariant 8).
            for key in &st.to_retire {
                if let Some(s) = self.index.get(key).copied()
                    && let Some(mut e) = self.entry(s).map(|s| s.entry)
                {
                    st.acc.flush_all(&mut e.pending, key);
                    self.change(&mut st.ch, s, None);
                }
            }
            // A cookie is done when none of its flows stays in the source.
            // `retire_idx` lists the retiring flows' positions in the
            // reading, ascending: a merge walk, no set of keys.
            let mut retiring = st.retire_idx.iter().copied().peekable();
            for (i, f) in st.reading.flows.iter().enumerate() {
                if retiring.next_if_eq(&i).is_none() {
                    st.done_cookies.remove(&f.key.cookie);
                }
            }
        }
        st.to_retire = Vec::new();
        st.retire_idx = Vec::new();
        if !st.carry.is_empty() {
            let seen: PeerSet<FlowKey> = st.reading.flows.iter().map(|f| f.key).collect();
            for key in st.carry.keys() {
                if !seen.contains(key) {
                    st.done_cookies.insert(key.cookie);
                }
            }
        }
        Ok(())
    }

    /// Invariant 8: the bounded background flush, for the flows of this
    /// step's share that no other phase touched.
    fn flush(&mut self, st: &mut StepState) {
        let flush_now = std::mem::take(&mut st.flush_now);
        for s in flush_now {
            if self.mark(s).changed == st.step {
                continue;
            }
            if let Some(mut e) = self.entry(s).copied()
                && !self.names.hold(&e.entry.pending, &e.entry.counters, false)
                && st.acc.flush_before(&mut e.entry.pending, &e.key, st.minute)
            {
                st.report.remote_flushed += 1;
                self.change(&mut st.ch, s, Some(e));
            }
        }
    }

    /// The commit's contents: the overflow delta, the events the step saw,
    /// the aggregated rows, the snapshot chunks the changes touch, and
    /// whether it may be lazy (invariant 7: durable when the source lost
    /// bytes it held, when a retire waits for it, when there is something
    /// to record, and periodically).
    fn batch(&mut self, st: &mut StepState) -> Batch {
        let (ov, failed_inserts, ov_reset) = overflow_delta(&st.reading.overflow, &self.overflow);
        st.acc.add_overflow(ov);
        let mut events = std::mem::take(&mut st.events);
        let resets = st.resets;
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
        let vanished = st.report.vanished;
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
        st.report.resets = resets;

        let chunks = SnapshotChunks::encode(
            st.ch.list.iter().map(|c| (c.slot, c.keys)),
            st.ch.next_new,
            |s| self.record_after(&st.ch, s).map(|r| (&r.key, &r.entry)),
        );
        let acc = &mut st.acc;
        let lazy = st.carry.is_empty()
            && st.retired_now.is_empty()
            && !st.need_durable
            && events.is_empty()
            && st.if_reading.gone.is_empty()
            && self
                .last_durable
                .is_some_and(|t| st.now.saturating_sub(t) < DURABLE_EVERY_MS);
        let mut batch = Batch {
            ts_ms: st.now,
            processes: acc.processes.values().cloned().collect(),
            proc_rows: acc.procs.iter().map(|((id, c), t)| (*id, *c, *t)).collect(),
            remote_rows: std::mem::take(&mut acc.remotes)
                .into_iter()
                .map(|((h, k), t)| (h, k, t))
                .collect(),
            iface_rows: std::mem::take(&mut acc.ifaces)
                .into_iter()
                .map(|((i, c), t)| (i, c, t))
                .collect(),
            lazy,
            snapshot_chunks: chunks.rows,
            snapshot_key_chunks: chunks.key_rows,
            overflow_snapshot: (st.reading.overflow != self.overflow)
                .then_some(st.reading.overflow),
            events,
            quality: acc.quality.take_rows(),
            ifcount: std::mem::take(&mut st.if_batch),
            flow_names: self.names.take_writes(),
        };
        batch.proc_rows.sort_by_key(|(id, c, _)| (*id, *c));
        batch
    }

    /// Commits `batch` (invariant 2: rows and snapshot in one transaction),
    /// then, only once it succeeded, advances the in-memory snapshot
    /// (invariants 1 and 7), hands the reading to live readers and forgets
    /// the sockets that are done. A failed commit leaves the snapshot as it
    /// was and carries the retired values (invariant 3).
    fn commit(
        &mut self,
        st: StepState,
        mut batch: Batch,
        source: &mut dyn CounterSource,
        resolver: &mut dyn Resolver,
        store: &mut Store,
    ) -> Result<StepReport, DrainError> {
        let StepState {
            now,
            reading,
            if_reading,
            acc,
            ch,
            mut report,
            carry,
            hints,
            retired_now,
            retired_owners,
            done_cookies,
            ..
        } = st;
        // Removed interfaces wait for every commit to be durable ([`ifaces`],
        // invariant 3): when nothing else is to be written, an empty
        // durable commit makes it so.
        let wrote =
            !batch.is_empty() || (!if_reading.gone.is_empty() && self.durable_seq != self.seq);
        if wrote && let Err(e) = store.commit(&batch) {
            // Not committed: what was carried stays carried (invariant 3).
            self.carry = carry;
            for ((key, value), owner) in retired_now.into_iter().zip(retired_owners) {
                let owner = owner.and_then(|id| self.infos.get(&id)).cloned();
                self.carry.insert(key, Carried { value, owner });
            }
            return Err(e.into());
        }

        if wrote {
            self.seq += 1;
        }
        self.apply(ch);
        self.hints = hints;
        self.overflow = reading.overflow;
        self.ifc.apply(std::mem::take(&mut batch.ifcount));
        if wrote && !batch.lazy {
            self.durable_seq = self.seq;
            self.last_durable = Some(now);
        }
        // Interfaces gone: their final counters are committed, and every
        // commit is durable, so nothing can roll them back ([`ifaces`],
        // invariant 3).
        if !if_reading.gone.is_empty()
            && self.durable_seq == self.seq
            && let Err(e) = source.forget_ifaces(&if_reading.gone)
        {
            tracing::warn!(error = %e, "forgetting the counters of removed interfaces");
        }
        self.last_lazy = wrote && batch.lazy;
        self.failures = 0;
        self.first_error = None;
        // Live readers: the committed reading and its owners (before the
        // housekeeping forgets the owners of retired sockets).
        if let Some(tap) = self.tap.as_ref().filter(|t| t.wanted(now)) {
            let owners: FxHashMap<u64, ProcessId> = reading
                .flows
                .iter()
                .filter_map(|f| Some((f.key.cookie, *self.owners.get(&f.key.cookie)?)))
                .collect();
            let infos = owners
                .values()
                .filter_map(|id| Some((*id, self.infos.get(id)?.clone())))
                .collect();
            tap.publish(crate::live::Tapped {
                ts_ms: now,
                reading: self.names.label(reading),
                owners,
                infos,
            });
        }

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

    /// Applies a committed step's slot writes (invariant 1): frees first,
    /// so a key retired and seen again ends up at its new slot.
    fn apply(&mut self, ch: Changes) {
        let seq = self.seq;
        let taken = self.free.len() - ch.used_free;
        self.free.truncate(taken);
        let end = slot_index(ch.next_new);
        if self.slots.len() < end {
            self.slots.resize(end, None);
        }
        let mut freed = Vec::new();
        for c in ch.list.iter().filter(|c| c.put == Change::FREE) {
            if let Some(old) = self.slots[slot_index(c.slot)].take()
                && self.index.get(&old.key) == Some(&c.slot)
            {
                self.index.remove(&old.key);
            }
            freed.push(c.slot);
        }
        for c in &ch.list {
            if let Some(mut new) = ch.put(c).copied() {
                new.seq = seq;
                let slot = &mut self.slots[slot_index(c.slot)];
                // The index already holds a flow that keeps its slot.
                let fresh = slot.as_ref().is_none_or(|old| old.key != new.key);
                let key = new.key;
                *slot = Some(new);
                if fresh {
                    self.index.insert(key, c.slot);
                }
            }
        }
        // Slots handed out past the end but not used stay free.
        freed.sort_unstable_by(|a, b| b.cmp(a));
        self.free.extend(freed);
    }

    /// Drops the cached owners of `cookies`, and now and then the infos of
    /// processes no cached socket refers to.
    fn forget_owners(&mut self, cookies: &[u64]) {
        for c in cookies {
            self.owners.remove(c);
        }
        self.forgotten += cookies.len();
        if self.forgotten >= PRUNE_EVERY {
            let live: FxHashSet<ProcessId> = self.owners.values().copied().collect();
            self.infos.retain(|id, _| live.contains(id));
            self.forgotten = 0;
        }
    }
}

#[cfg(test)]
mod quality_tests {
    //! The per interval TCP quality sample of a flow.
    use super::*;

    fn tcp_flow(total_retrans: u32, data_segs_out: u32) -> FlowReading {
        FlowReading {
            key: FlowKey {
                cookie: 1,
                protocol: IPPROTO_TCP,
                ip_version: 4,
                remote_port: 443,
                ..FlowKey::default()
            },
            value: FlowValue {
                tcp: netmon_common::TcpSample {
                    srtt_us8: 8 * 1500,
                    total_retrans,
                    data_segs_out,
                    rate_delivered: 10,
                    rate_interval_us: 1000,
                    mss_cache: 1448,
                    ..netmon_common::TcpSample::default()
                },
                ..FlowValue::default()
            },
            closed: false,
        }
    }

    const WHO: Who = Who {
        id: ProcessId {
            pid: 9,
            start_ticks: 3,
        },
        class: DestClass::Lan,
        port: 443,
        dir: ConnDir::Out,
        name: NameId::NONE,
    };

    #[test]
    fn counts_segments_since_the_last_reading() {
        let (s, base) = quality_of(&tcp_flow(5, 100), WHO, Some((0, 0)));
        let s = s.expect("a TCP flow with a sample has a quality sample");
        assert_eq!((s.srtt_us, s.retrans_segs, s.data_segs), (1500, 5, 100));
        assert_eq!(s.delivery_rate, 10 * 1448 * 1_000_000 / 1000);
        assert_eq!((s.pid, s.class), (9, DestClass::Lan.to_byte()));
        let (s, base) = quality_of(&tcp_flow(7, 160), WHO, base);
        let s = s.expect("sample");
        assert_eq!((s.retrans_segs, s.data_segs), (2, 60));
        assert_eq!(base, Some((7, 160)));
    }

    #[test]
    fn after_a_reload_the_first_interval_has_rtt_only() {
        let (s, base) = quality_of(&tcp_flow(5, 100), WHO, None);
        let s = s.expect("sample");
        assert_eq!((s.srtt_us, s.retrans_segs, s.data_segs), (1500, 0, 0));
        assert_eq!(base, Some((5, 100)));
    }

    #[test]
    fn udp_and_unsampled_flows_have_none() {
        let mut f = tcp_flow(1, 1);
        f.key.protocol = 17;
        assert_eq!(quality_of(&f, WHO, Some((0, 0))).0, None);
        let mut f = tcp_flow(1, 1);
        f.value.tcp = netmon_common::TcpSample::default();
        assert_eq!(quality_of(&f, WHO, Some((0, 0))).0, None);
    }
}
