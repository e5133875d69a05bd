//! Plain data types the store takes and returns. No formatting here: the CLI
//! and other readers render them.
use netmon_common::FlowKey;

use crate::model::{ConnDir, DestClass, ProcessId, ProcessInfo};
pub use crate::model::{
    OVERFLOW, OVERFLOW_COMM, TimeMs, TimeRange, Traffic, UNATTRIBUTED, UNATTRIBUTED_COMM,
    pseudo_process,
};
use crate::store::names::NameId;

/// A stored process: what the resolver knew plus when it was seen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRecord {
    /// Identity and details (the latest the resolver gave).
    pub info: ProcessInfo,
    /// Container or service name derived from the cgroup path
    /// (see [`crate::store::unit_of_cgroup`]).
    pub unit: Option<String>,
    /// First interval with traffic.
    pub first_seen_ms: TimeMs,
    /// Last interval with traffic, at minute resolution: the row is
    /// rewritten at most once a minute (write amplification), so this is the
    /// start of the minute of the last traffic, or later.
    pub last_seen_ms: TimeMs,
}

/// The committed state of one flow: what the drain subtracts the next
/// reading from, and the flow's bytes not yet added to the remote rollups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapEntry {
    /// Counters as last committed.
    pub counters: Traffic,
    /// The kernel entry's creation time (`FlowValue::first_boottime_ns`): a
    /// different value under the same key means the entry was deleted and
    /// recreated, so the new counters start from zero.
    pub first_boottime_ns: u64,
    /// Bytes of this flow counted in the per process rows but not yet in the
    /// remote rollups (see [`RemotePending`]).
    pub pending: RemotePending,
}

/// A flow's bytes not yet added to the `REMOTE_*` rollups.
///
/// Remote rollups are not read-modify-written every interval: each flow
/// keeps its unflushed bytes here, in its snapshot entry, split in at most
/// two pieces by UTC minute. The drain adds a piece to `REMOTE_MINUTE`,
/// `REMOTE_HOUR` and `REMOTE_DAY` ("flushes" it) once its minute is over
/// (in bounded batches),
/// and everything when the flow leaves the snapshot (retired, vanished,
/// reset) or its owner or class changes. Rows and entry change in the same
/// transaction, so every byte is in exactly one of them; readers of remote
/// usage add the pieces of the committed snapshot to the rows
/// ([`crate::store::query::pending_remote_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemotePending {
    /// The process both pieces are counted for.
    pub process: ProcessId,
    /// Their destination class.
    pub class: DestClass,
    /// Their service port ([`crate::model::service`]).
    pub port: u16,
    /// Their direction.
    pub dir: ConnDir,
    /// Their server name: the flow's name (`NameId::NONE` until it has
    /// one). Not in the snapshot chunks: kept in
    /// [`crate::store::names::FLOW_NAMES`] per flow.
    pub name: NameId,
    /// Bytes of minute `older_minute` (zero unless a minute ended since the
    /// last flush while `newer` held bytes).
    pub older: Traffic,
    /// Start of the UTC minute of `older`.
    pub older_minute: TimeMs,
    /// Bytes of minute `newer_minute`.
    pub newer: Traffic,
    /// Start of the UTC minute of `newer`.
    pub newer_minute: TimeMs,
}

impl Default for RemotePending {
    fn default() -> Self {
        Self {
            process: ProcessId {
                pid: 0,
                start_ticks: 0,
            },
            class: DestClass::Unknown,
            port: 0,
            dir: ConnDir::Out,
            name: NameId::NONE,
            older: Traffic::default(),
            older_minute: 0,
            newer: Traffic::default(),
            newer_minute: 0,
        }
    }
}

impl RemotePending {
    /// True when nothing is pending.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.older.is_zero() && self.newer.is_zero()
    }

    /// True when a piece belongs to a minute before `minute` (a flush is
    /// due).
    #[must_use]
    pub const fn has_before(&self, minute: TimeMs) -> bool {
        (!self.older.is_zero() && self.older_minute < minute)
            || (!self.newer.is_zero() && self.newer_minute < minute)
    }

    /// The remote key of the pieces for flow `flow`.
    #[must_use]
    pub const fn remote_key(&self, flow: &FlowKey) -> RemoteKey {
        RemoteKey {
            process: self.process,
            addr: flow.remote_addr,
            port: self.port,
            dir: self.dir,
            ip_version: flow.ip_version,
            protocol: flow.protocol,
            class: self.class,
            name: self.name,
        }
    }

    /// The non-empty pieces, `(minute start, bytes)`.
    pub fn pieces(&self) -> impl Iterator<Item = (TimeMs, Traffic)> {
        [
            (self.older_minute, self.older),
            (self.newer_minute, self.newer),
        ]
        .into_iter()
        .filter(|(_, t)| !t.is_zero())
    }
}

/// One TCP flow's connection quality over one interval, as the drain saw
/// it: who and where (the remote rollups' key fields), the smoothed RTT at
/// the end of the interval, and the segments sent and retransmitted within
/// it. The drain aggregates them per key ([`crate::store::quality`]);
/// schema 5 stored them one by one (`store::layout::QUALITY_V2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QualitySample {
    /// Owner pid (0: unattributed).
    pub pid: u32,
    /// Owner start time, clock ticks.
    pub start_ticks: u64,
    /// Remote address, kernel encoding.
    pub addr: [u8; 16],
    /// Service port ([`crate::model::service`]).
    pub port: u16,
    /// IP version.
    pub ip_version: u8,
    /// IP protocol number (6).
    pub protocol: u8,
    /// [`DestClass`] byte.
    pub class: u8,
    /// [`ConnDir`] byte.
    pub dir: u8,
    /// Smoothed RTT in microseconds at the flow's latest packet; 0 when the
    /// socket had no RTT measurement yet.
    pub srtt_us: u32,
    /// Segments retransmitted within the interval.
    pub retrans_segs: u32,
    /// Data segments sent within the interval (retransmissions included).
    pub data_segs: u32,
    /// Delivery rate of the latest rate sample, bytes per second; 0 without.
    pub delivery_rate: u64,
}

impl QualitySample {
    /// The remote rollups' key of the sample's flow.
    #[must_use]
    pub fn remote_key(&self) -> Option<RemoteKey> {
        Some(RemoteKey {
            process: ProcessId {
                pid: self.pid,
                start_ticks: self.start_ticks,
            },
            addr: self.addr,
            port: self.port,
            dir: ConnDir::from_byte(self.dir)?,
            ip_version: self.ip_version,
            protocol: self.protocol,
            class: DestClass::from_byte(self.class)?,
            name: NameId::NONE,
        })
    }
}

/// Per (process, remote address, service) key of the "where did it go"
/// rollups: the service port and direction, not the ephemeral port, so a
/// server's connections from one peer to one port are one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteKey {
    /// The process.
    pub process: ProcessId,
    /// Remote address, kernel encoding (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// Service port, host order: the local port of an inbound flow, the
    /// remote port of an outbound one ([`crate::model::service`]).
    pub port: u16,
    /// Who connected.
    pub dir: ConnDir,
    /// IP version, 4 or 6.
    pub ip_version: u8,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination class of `addr`.
    pub class: DestClass,
    /// The server name the flows were opened to ([`crate::store::names`]);
    /// `NameId::NONE` when unknown (and in quality samples, which carry no
    /// name).
    pub name: NameId,
}

/// Something the daemon wants remembered. Stored as JSON (see
/// `store::layout::EVENTS`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DaemonEvent {
    /// The daemon started.
    Start {
        /// netmon version.
        version: String,
        /// `kernel` or `simulated`.
        source: String,
    },
    /// The daemon stopped cleanly (after its final drain).
    Stop {
        /// Why (signal name).
        reason: String,
    },
    /// Counters went backwards or kernel entries were recreated (maps
    /// reloaded): the new values were taken as deltas from zero.
    Reset {
        /// How many flows were affected.
        flows: u64,
        /// Whether the overflow counters went backwards too.
        overflow: bool,
    },
    /// Committed flows vanished from the kernel without being retired by the
    /// drain (maps recreated, or a retire whose commit did not happen).
    Vanished {
        /// How many.
        flows: u64,
    },
    /// Traffic found the flow map full.
    Overflow {
        /// Failed flow insertions in this interval.
        failed_inserts: u64,
        /// Bytes (IP) counted as overflow in this interval, both directions.
        ip_bytes: u64,
    },
    /// The schema was migrated.
    Migration {
        /// Version found in the file.
        from: u32,
        /// Version written.
        to: u32,
    },
    /// Commits failed and have now succeeded again; nothing was lost (the
    /// snapshot only advances with a commit).
    WriteRecovered {
        /// Failed attempts.
        failures: u64,
        /// The first error.
        error: String,
    },
    /// A drain took longer than the interval.
    SlowDrain {
        /// How long it took.
        took_ms: u64,
        /// The interval.
        interval_ms: u64,
    },
    /// The kernel programs or maps the daemon drained disappeared (`netmon
    /// unload --force`, pins removed, or a new load): traffic between
    /// `intact_ms` and `reattached_ms` may be missing from the history
    /// (what the old maps had counted was drained).
    KernelLost {
        /// Last check that found the load in place, unix ms.
        intact_ms: u64,
        /// When the loss was noticed, unix ms.
        noticed_ms: u64,
        /// When counting resumed on a new load, unix ms; null when it could
        /// not, and the daemon exited.
        reattached_ms: Option<u64>,
        /// What was missing.
        reason: String,
    },
}

/// One interval's changes, committed atomically by
/// [`crate::store::Store::commit`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// When the counters were read.
    pub ts_ms: TimeMs,
    /// Every process with traffic in `proc_rows` or `remote_rows`.
    pub processes: Vec<ProcessInfo>,
    /// Deltas per process and destination class.
    pub proc_rows: Vec<(ProcessId, DestClass, Traffic)>,
    /// Flushed [`RemotePending`] pieces: `(UTC minute start, key, bytes)`,
    /// added to `REMOTE_MINUTE` at that minute, `REMOTE_HOUR` at its hour
    /// and `REMOTE_DAY` at its day.
    pub remote_rows: Vec<(TimeMs, RemoteKey, Traffic)>,
    /// Deltas per interface and destination class (overflow has no
    /// interface and is not here).
    pub iface_rows: Vec<(u32, DestClass, Traffic)>,
    /// `SNAPSHOT` chunks to replace: `(chunk index, encoded value)`, an
    /// empty value deleting the chunk (see `store::layout::SNAPSHOT`).
    pub snapshot_chunks: Vec<(u32, Vec<u8>)>,
    /// `SNAPSHOT_KEYS` chunks to replace, likewise.
    pub snapshot_key_chunks: Vec<(u32, Vec<u8>)>,
    /// New overflow snapshot, when it changed.
    pub overflow_snapshot: Option<netmon_common::OverflowCounters>,
    /// Events to record at `ts_ms`.
    pub events: Vec<DaemonEvent>,
    /// TCP flows' quality over the interval ending at `ts_ms`, one row
    /// per remote key ([`crate::store::quality`]).
    pub quality: Vec<crate::store::quality::QualityRow>,
    /// Server names of snapshot flows to store or (`NameId::NONE`) delete
    /// ([`crate::store::names::FLOW_NAMES`]).
    pub flow_names: Vec<(FlowKey, NameId)>,
    /// Interface counters (tc programs): deltas, snapshot and names
    /// ([`crate::store::ifcount`]).
    pub ifcount: crate::store::ifcount::IfBatch,
    /// Commit without waiting for the disk (redb [`redb::Durability::None`]).
    /// `false` (the default): durable when [`crate::store::Store::commit`]
    /// returns. A lazy commit is atomic and visible at once, survives a
    /// crash of the process only once a later durable commit is made, and
    /// is otherwise rolled back — together with the snapshot it advanced —
    /// to the last durable commit (see [`crate::drain`], invariant 7).
    pub lazy: bool,
}

impl Batch {
    /// True when committing it would change nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.proc_rows.is_empty()
            && self.remote_rows.is_empty()
            && self.iface_rows.is_empty()
            && self.snapshot_chunks.is_empty()
            && self.snapshot_key_chunks.is_empty()
            && self.overflow_snapshot.is_none()
            && self.events.is_empty()
            && self.quality.is_empty()
            && self.ifcount.is_empty()
            && self.flow_names.is_empty()
    }
}
