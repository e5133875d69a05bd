//! Every table of the store, with the byte layout of its keys and values.
//!
//! Conventions:
//! - All tables are `&[u8] → &[u8]` except [`META`] (`&str → &[u8]`). redb
//!   compares `&[u8]` keys lexicographically, so every integer in a key is
//!   **big-endian**: then byte order is numeric order, a time prefix makes a
//!   table sorted by time, and a range scan `[t0, t1)` is one contiguous
//!   B-tree walk (queries and retention rely on this).
//! - Times are ms since the Unix epoch (UTC), `u64`. Rollup keys hold the
//!   bucket start (aligned to the UTC minute, hour, day).
//! - Counter values ([`Traffic`], [`SnapEntry`], [`OverflowCounters`]) are
//!   postcard: each `u64` is a LEB128 varint, fields in declaration order
//!   (tx packets, tx ip_bytes, tx payload_bytes, tx retrans_bytes,
//!   rx packets, rx ip_bytes, rx payload_bytes, rx retrans_bytes, ...).
//!   Small numbers take one or two bytes, which roughly halves the file
//!   against fixed 64-byte values. Values need no ordering, so no
//!   big-endian there. Schemas 1 and 2 had no `retrans_bytes` (six varints
//!   a [`Traffic`], see [`Traffic2`]); their tables are read only by the
//!   migration to schema 3.
//! - Rarely written, evolving records (processes, events) are JSON so fields
//!   can be added without a migration.
//! - Table names end in `.v<N>`: a migration that changes a layout writes a
//!   new table instead of reinterpreting old bytes.
use netmon_common::{FlowKey, OverflowCounters};
use redb::TableDefinition;

use crate::model::ConnDir;
use crate::model::DestClass;
use crate::model::ProcessId;
use crate::store::types::{RemoteKey, SnapEntry, TimeMs, Traffic};

/// A byte table.
pub type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Store-wide values.
/// - `"schema_version"` → `u32` big-endian ([`crate::store::schema::CURRENT`]).
/// - `"overflow_snapshot"` → postcard [`OverflowCounters`]: the overflow
///   counters as last committed (schemas 1 and 2: [`OverflowCounters2`];
///   the migration to 3 rewrites the value in place).
pub const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("meta.v1");
/// [`META`] key of the schema version.
pub const META_SCHEMA: &str = "schema_version";
/// [`META`] key of the overflow snapshot.
pub const META_OVERFLOW: &str = "overflow_snapshot";

/// The committed snapshot (drain invariant 1): every flow the kernel still
/// holds, with its last committed counters and its bytes not yet in the
/// remote rollups ([`crate::store::RemotePending`]), packed [`SNAP_CHUNK`]
/// flows to a row, in two tables: [`SNAPSHOT_KEYS`] holds what rarely
/// changes (flow key, kernel entry time, owner), [`SNAPSHOT`] what changes
/// whenever the flow has traffic (counters, pending pieces).
///
/// Why chunks: the drain rewrites every changed flow's entry each interval.
/// One B-tree row per flow made that 100k separate inserts (key compare,
/// leaf split, page copy each) at 100k live sockets; a chunk row is one
/// insert of a few KiB, and an interval rewrites only the chunks holding a
/// changed flow. Why two tables: a busy flow changes only its counters, so
/// an interval rewrites [`SNAPSHOT`] chunks (~17 bytes a flow) and leaves
/// [`SNAPSHOT_KEYS`] (~55 bytes a flow) alone unless a flow came, went, was
/// reset, changed owner, or its current-hour remote piece started anew (an
/// hour change, a flush). The current-hour piece is stored as the counters
/// it started from (in the keys record), not as its bytes: both grow by the
/// same delta each interval, so the base does not change — a quarter of
/// the bytes a one-table record took are written and fsynced per interval.
/// Flows are kept in slots (a slab: a new flow takes a freed slot or a new
/// one at the end) so a flow stays in its chunk for life and a chunk never
/// outgrows [`SNAP_CHUNK`] flows, whatever the key mix (one UDP socket with
/// 10k peers does not make one huge row).
///
/// Both tables:
/// - key (4 bytes): chunk index u32 BE; chunk `c` holds slots
///   `c * SNAP_CHUNK .. (c + 1) * SNAP_CHUNK`. A chunk with no flow has no
///   row in either table; a chunk with flows has a row in both, holding the
///   same slots in the same order.
///
/// [`SNAPSHOT`] value: per occupied slot, in increasing slot order (the
/// order of the [`SNAPSHOT_KEYS`] row):
///   - counters: 8 LEB128 varints (tx packets, tx ip_bytes, tx payload_bytes,
///     tx retrans_bytes, rx packets, rx ip_bytes, rx payload_bytes,
///     rx retrans_bytes);
///   - flags u8: bit 0 = the `newer` piece follows here (only when it is not
///     `counters - base` of the keys record: never written by this drain
///     unless a counter saturated), bit 1 = an `older` piece follows, other
///     bits zero;
///   - bit 0: minute index varint (UTC minute start / 60 000), then 8 varint
///     counters (`newer`); bit 1: the same for `older`.
///
/// Varints are LEB128 as postcard writes a `u64` (7 bits a byte, low
/// first, high bit = more), so small numbers take one or two bytes.
pub const SNAPSHOT: Bytes = TableDefinition::new("snapshot.v4");

/// Schema 3's [`SNAPSHOT`]: pieces by UTC hour (hour index varints) and
/// keys records without service port and direction; read only by the
/// migration to schema 4.
pub const SNAPSHOT_V3: Bytes = TableDefinition::new("snapshot.v3");
/// Schema 3's [`SNAPSHOT_KEYS`].
pub const SNAPSHOT_KEYS_V3: Bytes = TableDefinition::new("snapshot.keys.v3");

/// Schema 2's [`SNAPSHOT`]: the same chunks with 6 varints a counter set
/// (no `retrans_bytes`); read only by the migration to schema 3.
pub const SNAPSHOT_V2: Bytes = TableDefinition::new("snapshot.v2");
/// Schema 2's [`SNAPSHOT_KEYS`] (6 varints a base).
pub const SNAPSHOT_KEYS_V2: Bytes = TableDefinition::new("snapshot.keys.v2");

/// The rarely changing half of the snapshot (see [`SNAPSHOT`]).
/// - key (4 bytes): chunk index u32 BE.
/// - value: per occupied slot, in increasing slot order:
///   - slot offset in the chunk, u8;
///   - the flow key, 28 bytes: cookie u64 BE, remote address 16 bytes,
///     remote port u16 BE, ip_version u8, protocol u8 (the first 28 bytes of
///     [`encode_flow_key`]);
///   - `first_boottime_ns` varint;
///   - the owner, class and service the pending pieces count for: pid
///     varint, start_ticks varint, [`DestClass`] u8, service port u16 BE,
///     [`ConnDir`] u8 (schema 3 had neither of the last two);
///   - u8 1 when the flow has a `newer` piece held as a base, then its
///     minute index varint (schema 3: hour index) and the base: 8 varint
///     counters, the flow's counters when the piece began
///     (`newer = counters - base`); else u8 0.
pub const SNAPSHOT_KEYS: Bytes = TableDefinition::new("snapshot.keys.v4");

/// Records per [`SNAPSHOT`] chunk.
pub const SNAP_CHUNK: u32 = 256;

/// Schema 1's snapshot, read only by the migration to schema 2: one row per
/// flow.
/// - key (32 bytes): [`encode_flow_key`].
/// - value: postcard [`SnapEntryV1`].
pub const SNAPSHOT_V1: Bytes = TableDefinition::new("snapshot.v1");

/// A [`SNAPSHOT_V1`] value: 6 varint counters, then `first_boottime_ns`
/// varint. Schema 1 added every delta to the remote rollups at once, so a
/// migrated entry has nothing pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapEntryV1 {
    /// Counters as last committed.
    pub counters: Traffic2,
    /// The kernel entry's creation time.
    pub first_boottime_ns: u64,
}

/// Processes ever seen with traffic.
/// - key (12 bytes): [`encode_process`] — pid u32 BE, start_ticks u64 BE.
/// - value: JSON [`crate::store::ProcessRecord`].
pub const PROCESSES: Bytes = TableDefinition::new("processes.v1");

/// Daemon events.
/// - key (12 bytes): time u64 BE, sequence u32 BE (0, 1, ... for events
///   sharing a millisecond).
/// - value: JSON [`crate::store::DaemonEvent`] (`{"kind": "...", ...}`).
pub const EVENTS: Bytes = TableDefinition::new("events.v1");

/// Interval samples: one row per drain holding every process's deltas.
/// One row per interval (instead of one per process) makes the hot write a
/// single insert and keeps the per-row overhead out of the largest tier.
/// - key (8 bytes): drain time u64 BE.
/// - value: postcard [`IntervalRecord`].
pub const INTERVAL: Bytes = TableDefinition::new("interval.v2");

/// Per process rollups, one table per tier ([`PROC_MINUTE`], [`PROC_HOUR`],
/// [`PROC_DAY`]).
/// - key (11–19 bytes, schema 8): [`encode_proc_key`] — bucket start u64
///   BE, pid varint, start_ticks varint, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const PROC_MINUTE: Bytes = TableDefinition::new("proc.minute.v3");
/// See [`PROC_MINUTE`].
pub const PROC_HOUR: Bytes = TableDefinition::new("proc.hour.v3");
/// See [`PROC_MINUTE`].
pub const PROC_DAY: Bytes = TableDefinition::new("proc.day.v3");

/// Schemas 3 to 7's per process tiers: 21-byte keys
/// ([`encode_proc_key_v2`]: pid u32 BE, start_ticks u64 BE), each with the
/// table that replaces it; read only by the migration to schema 8.
pub const PROC_TABLES_V2: [(Bytes, Bytes); 3] = [
    (TableDefinition::new("proc.minute.v2"), PROC_MINUTE),
    (TableDefinition::new("proc.hour.v2"), PROC_HOUR),
    (TableDefinition::new("proc.day.v2"), PROC_DAY),
];

/// Per (process, remote address, service port, direction) rollups, minute,
/// hour and day tiers, kept as long as the per process tiers of the same
/// width, so a remote, port or protocol answer resolves a window at the
/// same granularity as a process answer (down to the minute; see
/// `crate::query::edges` for edges inside a minute). Keyed by the service
/// port, not the ephemeral one ([`crate::model::service`]): rows grow with
/// services and peers, not with connections.
/// Keyed by the server name too (schema 5): the rows of one endpoint
/// split by the name its flows were opened to ([`crate::store::names`]).
/// - key (schema 8; 27 bytes for an IPv4 peer without a name, against 43
///   in schema 7): [`encode_remote_key`] — bucket start u64 BE, then
///   [`put_remote_key`] (pid varint, start_ticks varint, the remote
///   address without its trailing zero bytes: length u8 then the bytes,
///   service port varint, [`ConnDir`] u8, ip_version u8, protocol u8,
///   [`DestClass`] u8), then the server name
///   ([`crate::store::names::encode_name`]: source byte, 0 for none, and
///   the name's bytes to the end of the key). Queries read these tables by
///   time range only, so nothing after the bucket needs a fixed width.
/// - value: postcard [`Traffic`].
pub const REMOTE_MINUTE: Bytes = TableDefinition::new("remote.minute.v5");
/// See [`REMOTE_MINUTE`].
pub const REMOTE_HOUR: Bytes = TableDefinition::new("remote.hour.v5");
/// See [`REMOTE_MINUTE`].
pub const REMOTE_DAY: Bytes = TableDefinition::new("remote.day.v5");

/// Schemas 5 to 7's remote tiers: 43-byte keys and the name
/// ([`decode_remote_key_v4`]), each with the table that replaces it; read
/// only by the migration to schema 8.
pub const REMOTE_TABLES_V4: [(Bytes, Bytes); 3] = [
    (TableDefinition::new("remote.minute.v4"), REMOTE_MINUTE),
    (TableDefinition::new("remote.hour.v4"), REMOTE_HOUR),
    (TableDefinition::new("remote.day.v4"), REMOTE_DAY),
];

/// Schema 4's remote tiers: 42-byte keys ([`decode_remote_key_v3`], no
/// server name); read only by the migration to schema 5, which writes the
/// current tables in the current layout.
pub const REMOTE_TABLES_V3: [(Bytes, Bytes); 3] = [
    (TableDefinition::new("remote.minute.v3"), REMOTE_MINUTE),
    (TableDefinition::new("remote.hour.v3"), REMOTE_HOUR),
    (TableDefinition::new("remote.day.v3"), REMOTE_DAY),
];

/// Schema 3's hour rollups per (process, remote endpoint): 41-byte keys
/// ([`decode_remote_key_v2`]: the remote port, no direction); read only by
/// the migration to schema 4.
pub const REMOTE_HOUR_V2: Bytes = TableDefinition::new("remote.hour.v2");
/// Schema 3's day rollups, see [`REMOTE_HOUR_V2`].
pub const REMOTE_DAY_V2: Bytes = TableDefinition::new("remote.day.v2");

/// [`META`] key: the first minute the [`REMOTE_MINUTE`] tier holds whole
/// (`u64` BE ms). Written by the migration to schema 4 (remote bytes of
/// earlier minutes are in the hour and day tiers only); absent: from the
/// beginning.
pub const META_REMOTE_MINUTE_FROM: &str = "remote_minute_from";

/// [`META`] key: quality interval rows at or after this time (`u64` BE ms)
/// are not yet in the quality rollup tiers, every earlier one is
/// ([`crate::store::quality`], schema 7). Absent: 0 (nothing rolled yet).
pub const META_QUALITY_ROLLED: &str = "quality_rolled_until";

/// Per interface rollups.
/// - key (13 bytes): bucket start u64 BE, ifindex u32 BE, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const IFACE_MINUTE: Bytes = TableDefinition::new("iface.minute.v2");
/// See [`IFACE_MINUTE`].
pub const IFACE_HOUR: Bytes = TableDefinition::new("iface.hour.v2");
/// See [`IFACE_MINUTE`].
pub const IFACE_DAY: Bytes = TableDefinition::new("iface.day.v2");

/// Machine totals (every process, overflow included).
/// - key (9 bytes): bucket start u64 BE, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const MACHINE_MINUTE: Bytes = TableDefinition::new("machine.minute.v2");
/// See [`MACHINE_MINUTE`].
pub const MACHINE_HOUR: Bytes = TableDefinition::new("machine.hour.v2");
/// See [`MACHINE_MINUTE`].
pub const MACHINE_DAY: Bytes = TableDefinition::new("machine.day.v2");

/// Schema 2's tables whose values were a postcard [`Traffic2`], each with
/// the table that replaces it (same keys, [`Traffic`] values); read only by
/// the migration to schema 3.
pub const TRAFFIC_TABLES_V2: [(Bytes, Bytes); 11] = [
    (TableDefinition::new("proc.minute.v1"), PROC_TABLES_V2[0].0),
    (TableDefinition::new("proc.hour.v1"), PROC_TABLES_V2[1].0),
    (TableDefinition::new("proc.day.v1"), PROC_TABLES_V2[2].0),
    (TableDefinition::new("remote.hour.v1"), REMOTE_HOUR_V2),
    (TableDefinition::new("remote.day.v1"), REMOTE_DAY_V2),
    (TableDefinition::new("iface.minute.v1"), IFACE_MINUTE),
    (TableDefinition::new("iface.hour.v1"), IFACE_HOUR),
    (TableDefinition::new("iface.day.v1"), IFACE_DAY),
    (TableDefinition::new("machine.minute.v1"), MACHINE_MINUTE),
    (TableDefinition::new("machine.hour.v1"), MACHINE_HOUR),
    (TableDefinition::new("machine.day.v1"), MACHINE_DAY),
];

/// Schema 2's [`INTERVAL`]: postcard [`IntervalRecord2`] values.
pub const INTERVAL_V1: Bytes = TableDefinition::new("interval.v1");

/// Schema 5's TCP connection quality per interval: one row per drain with
/// a sample of every TCP flow that had packets in the interval; read only
/// by the migration to schema 6 (per key rows, [`crate::store::quality`]).
/// - key (8 bytes): drain time u64 BE.
/// - value: postcard `Vec<`[`crate::store::QualitySample`]`>` (a varint length, then
///   each sample's fields in order; the address as 16 bytes; `port` is the
///   service port, `dir` the [`ConnDir`] byte).
pub const QUALITY_V2: Bytes = TableDefinition::new("quality.v2");

/// Schema 3's [`QUALITY_V2`]: samples without `dir` and with the remote port
/// ([`QualitySampleV1`]); read only by the migration to schema 4.
pub const QUALITY_V1: Bytes = TableDefinition::new("quality.v1");

/// A [`QUALITY_V1`] sample: [`crate::store::QualitySample`]'s fields before
/// `dir` was added, in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QualitySampleV1 {
    /// Owner pid.
    pub pid: u32,
    /// Owner start time.
    pub start_ticks: u64,
    /// Remote address.
    pub addr: [u8; 16],
    /// Remote port.
    pub port: u16,
    /// IP version.
    pub ip_version: u8,
    /// IP protocol.
    pub protocol: u8,
    /// Class byte.
    pub class: u8,
    /// Smoothed RTT, µs.
    pub srtt_us: u32,
    /// Segments retransmitted.
    pub retrans_segs: u32,
    /// Data segments sent.
    pub data_segs: u32,
    /// Delivery rate, B/s.
    pub delivery_rate: u64,
}

impl From<QualitySampleV1> for crate::store::QualitySample {
    fn from(q: QualitySampleV1) -> Self {
        Self {
            pid: q.pid,
            start_ticks: q.start_ticks,
            addr: q.addr,
            port: q.port,
            ip_version: q.ip_version,
            protocol: q.protocol,
            class: q.class,
            dir: ConnDir::Unknown.to_byte(),
            srtt_us: q.srtt_us,
            retrans_segs: q.retrans_segs,
            data_segs: q.data_segs,
            delivery_rate: q.delivery_rate,
        }
    }
}

/// Every table a fresh store creates.
pub const ALL_BYTE_TABLES: [Bytes; 18] = [
    SNAPSHOT,
    SNAPSHOT_KEYS,
    PROCESSES,
    EVENTS,
    INTERVAL,
    PROC_MINUTE,
    PROC_HOUR,
    PROC_DAY,
    REMOTE_MINUTE,
    REMOTE_HOUR,
    REMOTE_DAY,
    IFACE_MINUTE,
    IFACE_HOUR,
    IFACE_DAY,
    MACHINE_MINUTE,
    MACHINE_HOUR,
    MACHINE_DAY,
    crate::store::names::FLOW_NAMES,
];

/// The value of an [`INTERVAL`] row (postcard: a varint length, then each
/// element's fields in order).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntervalRecord {
    /// Per process and class deltas.
    pub procs: Vec<IntervalProc>,
    /// Per interface and class deltas.
    pub ifaces: Vec<IntervalIface>,
}

/// One process's delta in an [`IntervalRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntervalProc {
    /// pid (varint).
    pub pid: u32,
    /// start_ticks (varint).
    pub start_ticks: u64,
    /// [`DestClass`] byte.
    pub class: u8,
    /// The delta.
    pub traffic: Traffic,
}

/// One interface's delta in an [`IntervalRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntervalIface {
    /// Interface index (varint).
    pub ifindex: u32,
    /// [`DestClass`] byte.
    pub class: u8,
    /// The delta.
    pub traffic: Traffic,
}

/// [`netmon_common::DirCounters`] as schemas 1 and 2 stored it (no
/// `retrans_bytes`: read as 0, which is what those netmon versions
/// counted as application bytes: all payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirCounters2 {
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub ip_bytes: u64,
    /// Payload bytes.
    pub payload_bytes: u64,
}

impl From<DirCounters2> for netmon_common::DirCounters {
    fn from(d: DirCounters2) -> Self {
        Self {
            packets: d.packets,
            ip_bytes: d.ip_bytes,
            payload_bytes: d.payload_bytes,
            retrans_bytes: 0,
        }
    }
}

/// [`Traffic`] as schemas 1 and 2 stored it: six varints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic2 {
    /// Sent.
    pub tx: DirCounters2,
    /// Received.
    pub rx: DirCounters2,
}

impl From<Traffic2> for Traffic {
    fn from(t: Traffic2) -> Self {
        Self {
            tx: t.tx.into(),
            rx: t.rx.into(),
        }
    }
}

/// [`OverflowCounters`] as schemas 1 and 2 stored it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverflowCounters2 {
    /// Sent.
    pub tx: DirCounters2,
    /// Received.
    pub rx: DirCounters2,
    /// Failed inserts.
    pub failed_inserts: u64,
}

impl From<OverflowCounters2> for OverflowCounters {
    fn from(o: OverflowCounters2) -> Self {
        Self {
            tx: o.tx.into(),
            rx: o.rx.into(),
            failed_inserts: o.failed_inserts,
        }
    }
}

/// An [`INTERVAL_V1`] value: the fields of [`IntervalRecord`]'s elements
/// in the same order (postcard writes a tuple as it writes a struct), with
/// [`Traffic2`] counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntervalRecord2 {
    /// Per process and class deltas: pid, start_ticks, class, traffic.
    pub procs: Vec<(u32, u64, u8, Traffic2)>,
    /// Per interface and class deltas: ifindex, class, traffic.
    pub ifaces: Vec<(u32, u8, Traffic2)>,
}

impl From<IntervalRecord2> for IntervalRecord {
    fn from(r: IntervalRecord2) -> Self {
        Self {
            procs: r
                .procs
                .into_iter()
                .map(|(pid, start_ticks, class, t)| IntervalProc {
                    pid,
                    start_ticks,
                    class,
                    traffic: t.into(),
                })
                .collect(),
            ifaces: r
                .ifaces
                .into_iter()
                .map(|(ifindex, class, t)| IntervalIface {
                    ifindex,
                    class,
                    traffic: t.into(),
                })
                .collect(),
        }
    }
}

/// Errors decoding stored bytes.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A key had the wrong length or an unknown class byte.
    #[error("malformed {table} key ({len} bytes)")]
    Key {
        /// Table name.
        table: &'static str,
        /// Its length.
        len: usize,
    },
    /// A postcard value did not decode.
    #[error("malformed value: {0}")]
    Postcard(#[from] postcard::Error),
    /// A JSON value did not decode.
    #[error("malformed JSON value: {0}")]
    Json(#[from] serde_json::Error),
    /// A snapshot chunk did not decode.
    #[error("malformed snapshot chunk {chunk}: {reason}")]
    Chunk {
        /// Chunk index.
        chunk: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Encodes a postcard value.
///
/// # Errors
/// Only if serialization fails, which the plain structs here never do.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, LayoutError> {
    Ok(postcard::to_stdvec(value)?)
}

/// Decodes a postcard value.
///
/// # Errors
/// When `bytes` is not a valid encoding of `T`.
pub fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, LayoutError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Decodes a postcard [`Traffic`].
///
/// # Errors
/// When malformed.
pub fn decode_traffic(bytes: &[u8]) -> Result<Traffic, LayoutError> {
    decode(bytes)
}

/// Encodes an [`OverflowCounters`].
///
/// # Errors
/// Never in practice.
pub fn encode_overflow(value: &OverflowCounters) -> Result<Vec<u8>, LayoutError> {
    encode(value)
}

/// [`SNAPSHOT`] key of chunk `c`.
#[must_use]
pub const fn encode_chunk_key(c: u32) -> [u8; 4] {
    c.to_be_bytes()
}

/// Inverse of [`encode_chunk_key`].
///
/// # Errors
/// When `b` is not 4 bytes.
pub fn decode_chunk_key(b: &[u8]) -> Result<u32, LayoutError> {
    let a: [u8; 4] = b.try_into().map_err(|_| LayoutError::Key {
        table: "snapshot",
        len: b.len(),
    })?;
    Ok(u32::from_be_bytes(a))
}

const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation intended: the low 7 bits, with the continuation bit.
        #[expect(clippy::cast_possible_truncation, reason = "masked to 7 bits")]
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    #[expect(clippy::cast_possible_truncation, reason = "below 0x80 here")]
    out.push(v as u8);
}

fn put_traffic(out: &mut Vec<u8>, t: &Traffic) {
    for v in [
        t.tx.packets,
        t.tx.ip_bytes,
        t.tx.payload_bytes,
        t.tx.retrans_bytes,
        t.rx.packets,
        t.rx.ip_bytes,
        t.rx.payload_bytes,
        t.rx.retrans_bytes,
    ] {
        put_varint(out, v);
    }
}

/// The `newer` piece as the keys record holds it: its minute and the counters
/// it started from (`counters - newer`), or `None` when there is no such
/// piece or it cannot be told that way (then the counters record holds it).
fn newer_base(e: &SnapEntry) -> Option<(TimeMs, Traffic)> {
    if e.pending.newer.is_zero() {
        return None;
    }
    Some((
        e.pending.newer_minute,
        e.counters.checked_sub(e.pending.newer)?,
    ))
}

/// Appends one [`SNAPSHOT_KEYS`] record (slot `offset` of its chunk).
pub fn encode_snap_keys_record(out: &mut Vec<u8>, offset: u8, key: &FlowKey, e: &SnapEntry) {
    out.push(offset);
    out.extend_from_slice(&encode_flow_key(key)[..28]);
    put_varint(out, e.first_boottime_ns);
    put_varint(out, u64::from(e.pending.process.pid));
    put_varint(out, e.pending.process.start_ticks);
    out.push(e.pending.class.to_byte());
    out.extend_from_slice(&e.pending.port.to_be_bytes());
    out.push(e.pending.dir.to_byte());
    match newer_base(e) {
        Some((minute, base)) => {
            out.push(1);
            put_varint(out, minute / MINUTE_MS);
            put_traffic(out, &base);
        }
        None => out.push(0),
    }
}

/// Appends one keys record as schemas 2 and 3 wrote it (no service port
/// or direction; a `newer` base under its hour index): fixtures for the
/// migration tests.
#[cfg(test)]
pub(crate) fn encode_snap_keys_record_v3(
    out: &mut Vec<u8>,
    offset: u8,
    key: &FlowKey,
    e: &SnapEntry,
) {
    out.push(offset);
    out.extend_from_slice(&encode_flow_key(key)[..28]);
    put_varint(out, e.first_boottime_ns);
    put_varint(out, u64::from(e.pending.process.pid));
    put_varint(out, e.pending.process.start_ticks);
    out.push(e.pending.class.to_byte());
    match newer_base(e) {
        Some((at, base)) => {
            out.push(1);
            put_varint(out, at / HOUR_MS);
            put_traffic(out, &base);
        }
        None => out.push(0),
    }
}

/// Appends one [`SNAPSHOT`] record.
pub fn encode_snap_record(out: &mut Vec<u8>, e: &SnapEntry) {
    put_traffic(out, &e.counters);
    let p = &e.pending;
    let explicit = !p.newer.is_zero() && newer_base(e).is_none();
    let flags = u8::from(explicit) | (u8::from(!p.older.is_zero()) << 1);
    out.push(flags);
    if flags & 1 != 0 {
        put_varint(out, p.newer_minute / MINUTE_MS);
        put_traffic(out, &p.newer);
    }
    if flags & 2 != 0 {
        put_varint(out, p.older_minute / MINUTE_MS);
        put_traffic(out, &p.older);
    }
}

/// True when the [`SNAPSHOT_KEYS`] record of a flow would change from `a`
/// to `b` (same flow key).
#[must_use]
pub fn snap_keys_differ(a: &SnapEntry, b: &SnapEntry) -> bool {
    a.first_boottime_ns != b.first_boottime_ns
        || a.pending.process != b.pending.process
        || a.pending.class != b.pending.class
        || a.pending.port != b.pending.port
        || a.pending.dir != b.pending.dir
        || newer_base(a) != newer_base(b)
}

/// How a schema wrote its snapshot chunks.
#[derive(Clone, Copy, Debug)]
struct ChunkFormat {
    /// Varints per direction: 4, or 3 in schema 2's chunks.
    dir_fields: usize,
    /// Width of a piece's time index: a minute (schema 4), an hour before.
    piece_ms: u64,
    /// Keys records carry service port and direction (schema 4).
    service: bool,
}

/// The current [`SNAPSHOT`] format.
const FORMAT_V4: ChunkFormat = ChunkFormat {
    dir_fields: 4,
    piece_ms: MINUTE_MS,
    service: true,
};

/// A cursor over a chunk's bytes.
struct Cursor<'a> {
    b: &'a [u8],
    chunk: u32,
    format: ChunkFormat,
}

impl Cursor<'_> {
    const fn err(&self, reason: &'static str) -> LayoutError {
        LayoutError::Chunk {
            chunk: self.chunk,
            reason,
        }
    }

    fn byte(&mut self) -> Result<u8, LayoutError> {
        let (&first, rest) = self.b.split_first().ok_or(self.err("truncated"))?;
        self.b = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LayoutError> {
        if self.b.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, LayoutError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    fn dir(&mut self) -> Result<netmon_common::DirCounters, LayoutError> {
        Ok(netmon_common::DirCounters {
            packets: self.varint()?,
            ip_bytes: self.varint()?,
            payload_bytes: self.varint()?,
            retrans_bytes: if self.format.dir_fields == 4 {
                self.varint()?
            } else {
                0
            },
        })
    }

    fn traffic(&mut self) -> Result<Traffic, LayoutError> {
        Ok(Traffic {
            tx: self.dir()?,
            rx: self.dir()?,
        })
    }

    /// A piece's start time from its index.
    fn piece_time(&mut self) -> Result<TimeMs, LayoutError> {
        self.varint()?
            .checked_mul(self.format.piece_ms)
            .ok_or(self.err("piece time out of range"))
    }
}

/// Decodes chunk `chunk` from its [`SNAPSHOT_KEYS`] and [`SNAPSHOT`] rows,
/// calling `f(slot, key, entry)` for each flow.
///
/// # Errors
/// When the bytes are not chunks this layout writes, or the rows disagree.
pub fn decode_snap_chunk(
    chunk: u32,
    keys: &[u8],
    hot: &[u8],
    f: impl FnMut(u32, FlowKey, SnapEntry),
) -> Result<(), LayoutError> {
    decode_snap_chunk_with(FORMAT_V4, chunk, keys, hot, f)
}

/// [`decode_snap_chunk`] for schema 3's chunks ([`SNAPSHOT_V3`],
/// [`SNAPSHOT_KEYS_V3`]: hour pieces, no service in the keys records), for
/// the migration. Pieces come with their hour start in the `*_minute`
/// fields; service port and direction are left at their defaults.
///
/// # Errors
/// As [`decode_snap_chunk`].
pub fn decode_snap_chunk_v3(
    chunk: u32,
    keys: &[u8],
    hot: &[u8],
    f: impl FnMut(u32, FlowKey, SnapEntry),
) -> Result<(), LayoutError> {
    let format = ChunkFormat {
        dir_fields: 4,
        piece_ms: HOUR_MS,
        service: false,
    };
    decode_snap_chunk_with(format, chunk, keys, hot, f)
}

/// [`decode_snap_chunk`] for schema 2's chunks ([`SNAPSHOT_V2`],
/// [`SNAPSHOT_KEYS_V2`]: 6 varints a counter set), for the migration.
///
/// # Errors
/// As [`decode_snap_chunk`].
pub fn decode_snap_chunk_v2(
    chunk: u32,
    keys: &[u8],
    hot: &[u8],
    f: impl FnMut(u32, FlowKey, SnapEntry),
) -> Result<(), LayoutError> {
    let format = ChunkFormat {
        dir_fields: 3,
        piece_ms: HOUR_MS,
        service: false,
    };
    decode_snap_chunk_with(format, chunk, keys, hot, f)
}

fn decode_snap_chunk_with(
    format: ChunkFormat,
    chunk: u32,
    keys: &[u8],
    hot: &[u8],
    mut f: impl FnMut(u32, FlowKey, SnapEntry),
) -> Result<(), LayoutError> {
    let mut k = Cursor {
        b: keys,
        chunk,
        format,
    };
    let mut h = Cursor {
        b: hot,
        chunk,
        format,
    };
    let base = chunk
        .checked_mul(SNAP_CHUNK)
        .ok_or(k.err("chunk index out of range"))?;
    let mut last: Option<u8> = None;
    while !k.b.is_empty() {
        let offset = k.byte()?;
        if u32::from(offset) >= SNAP_CHUNK || last.is_some_and(|l| l >= offset) {
            return Err(k.err("slot offsets out of order"));
        }
        last = Some(offset);
        let mut kb = [0u8; 32];
        kb[..28].copy_from_slice(k.take(28)?);
        let key = decode_flow_key(&kb)?;
        let first_boottime_ns = k.varint()?;
        let mut pending = crate::store::RemotePending {
            process: ProcessId {
                pid: u32::try_from(k.varint()?).map_err(|_| k.err("pid out of range"))?,
                start_ticks: k.varint()?,
            },
            class: DestClass::from_byte(k.byte()?).ok_or(k.err("unknown class"))?,
            ..crate::store::RemotePending::default()
        };
        if format.service {
            let p = k.take(2)?;
            pending.port = u16::from_be_bytes([p[0], p[1]]);
            pending.dir = ConnDir::from_byte(k.byte()?).ok_or(k.err("unknown direction"))?;
        }
        let newer_base = match k.byte()? {
            0 => None,
            1 => Some((k.piece_time()?, k.traffic()?)),
            _ => return Err(k.err("unknown newer flag")),
        };
        if h.b.is_empty() {
            return Err(h.err("fewer counters than keys"));
        }
        let counters = h.traffic()?;
        let flags = h.byte()?;
        if flags & !3 != 0 || (flags & 1 != 0 && newer_base.is_some()) {
            return Err(h.err("unknown flags"));
        }
        if let Some((at, base)) = newer_base {
            pending.newer_minute = at;
            pending.newer = counters
                .checked_sub(base)
                .ok_or(h.err("counters below the newer piece's base"))?;
        }
        if flags & 1 != 0 {
            pending.newer_minute = h.piece_time()?;
            pending.newer = h.traffic()?;
        }
        if flags & 2 != 0 {
            pending.older_minute = h.piece_time()?;
            pending.older = h.traffic()?;
        }
        f(
            base + u32::from(offset),
            key,
            SnapEntry {
                counters,
                first_boottime_ns,
                pending,
            },
        );
    }
    if !h.b.is_empty() {
        return Err(h.err("more counters than keys"));
    }
    Ok(())
}

/// A flow key as 32 bytes (as [`SNAPSHOT_V1`] keys; the snapshot chunks
/// keep its first 28): cookie u64 BE | remote_addr \[16\] | remote_port u16 BE |
/// ip_version u8 | protocol u8 | 4 zero bytes.
#[must_use]
pub fn encode_flow_key(key: &FlowKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[0..8].copy_from_slice(&key.cookie.to_be_bytes());
    out[8..24].copy_from_slice(&key.remote_addr);
    out[24..26].copy_from_slice(&key.remote_port.to_be_bytes());
    out[26] = key.ip_version;
    out[27] = key.protocol;
    out
}

/// Inverse of [`encode_flow_key`].
///
/// # Errors
/// When `b` is not 32 bytes.
pub fn decode_flow_key(b: &[u8]) -> Result<FlowKey, LayoutError> {
    let err = || LayoutError::Key {
        table: "snapshot",
        len: b.len(),
    };
    if b.len() != 32 {
        return Err(err());
    }
    let mut remote_addr = [0u8; 16];
    remote_addr.copy_from_slice(&b[8..24]);
    Ok(FlowKey {
        cookie: be_u64(&b[0..8]),
        remote_addr,
        remote_port: u16::from_be_bytes([b[24], b[25]]),
        ip_version: b[26],
        protocol: b[27],
        _pad: 0,
    })
}

/// [`PROCESSES`] key: pid u32 BE | start_ticks u64 BE.
#[must_use]
pub fn encode_process(id: ProcessId) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&id.pid.to_be_bytes());
    out[4..12].copy_from_slice(&id.start_ticks.to_be_bytes());
    out
}

/// Inverse of [`encode_process`] (reads the first 12 bytes of `b`).
///
/// # Errors
/// When `b` is shorter than 12 bytes.
pub fn decode_process(b: &[u8]) -> Result<ProcessId, LayoutError> {
    if b.len() < 12 {
        return Err(LayoutError::Key {
            table: "processes",
            len: b.len(),
        });
    }
    Ok(ProcessId {
        pid: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        start_ticks: be_u64(&b[4..12]),
    })
}

/// [`EVENTS`] key: time u64 BE | sequence u32 BE.
#[must_use]
pub fn encode_event_key(ts: TimeMs, seq: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Time prefix of any time-keyed table (the first 8 bytes).
#[must_use]
pub const fn time_key(ts: TimeMs) -> [u8; 8] {
    ts.to_be_bytes()
}

/// Reads the leading time of a time-keyed key.
///
/// # Errors
/// When `b` is shorter than 8 bytes.
pub fn key_time(b: &[u8]) -> Result<TimeMs, LayoutError> {
    if b.len() < 8 {
        return Err(LayoutError::Key {
            table: "time-keyed",
            len: b.len(),
        });
    }
    Ok(be_u64(&b[0..8]))
}

/// Reads a schema 8 rollup key after its 8-byte bucket: varints and bytes,
/// every error a [`LayoutError::Key`] naming the table and the length.
struct KeyReader<'a> {
    b: &'a [u8],
    table: &'static str,
    len: usize,
}

impl<'a> KeyReader<'a> {
    /// After the bucket of `key` (at least 8 bytes, else an error).
    fn after_bucket(key: &'a [u8], table: &'static str) -> Result<(TimeMs, Self), LayoutError> {
        let err = LayoutError::Key {
            table,
            len: key.len(),
        };
        if key.len() < 8 {
            return Err(err);
        }
        Ok((
            be_u64(&key[..8]),
            Self {
                b: &key[8..],
                table,
                len: key.len(),
            },
        ))
    }

    const fn err(&self) -> LayoutError {
        LayoutError::Key {
            table: self.table,
            len: self.len,
        }
    }

    fn byte(&mut self) -> Result<u8, LayoutError> {
        let (&first, rest) = self.b.split_first().ok_or(self.err())?;
        self.b = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LayoutError> {
        if self.b.len() < n {
            return Err(self.err());
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, LayoutError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err())
    }

    fn process(&mut self) -> Result<ProcessId, LayoutError> {
        let pid = u32::try_from(self.varint()?).map_err(|_| self.err())?;
        Ok(ProcessId {
            pid,
            start_ticks: self.varint()?,
        })
    }

    fn class(&mut self) -> Result<DestClass, LayoutError> {
        DestClass::from_byte(self.byte()?).ok_or(self.err())
    }

    /// The fields [`put_remote_key`] writes; the name is left to the caller.
    fn remote_key(&mut self) -> Result<RemoteKey, LayoutError> {
        let process = self.process()?;
        let n = usize::from(self.byte()?);
        if n > 16 {
            return Err(self.err());
        }
        let mut addr = [0u8; 16];
        addr[..n].copy_from_slice(self.take(n)?);
        let port = u16::try_from(self.varint()?).map_err(|_| self.err())?;
        let dir = ConnDir::from_byte(self.byte()?).ok_or(self.err())?;
        let ip_version = self.byte()?;
        let protocol = self.byte()?;
        let class = self.class()?;
        Ok(RemoteKey {
            process,
            addr,
            port,
            dir,
            ip_version,
            protocol,
            class,
            name: crate::store::names::NameId::NONE,
        })
    }

    /// Errors unless every byte was read.
    fn end(&self) -> Result<(), LayoutError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}

/// Appends a process to a schema 8 rollup key: pid varint, start_ticks
/// varint.
fn put_process(out: &mut Vec<u8>, id: ProcessId) {
    put_varint(out, u64::from(id.pid));
    put_varint(out, id.start_ticks);
}

/// Appends the fields of a remote key but its name, as schema 8's remote
/// and quality rollup keys hold them after the bucket: pid varint,
/// start_ticks varint, the address without its trailing zero bytes
/// (length u8, then the bytes: an IPv4 address in the kernel encoding
/// takes 5 bytes), service port varint, direction u8, ip_version u8,
/// protocol u8, class u8. Every field has a known length, so the encoding
/// is unambiguous and a name can follow to the end of the key.
pub fn put_remote_key(out: &mut Vec<u8>, k: &RemoteKey) {
    put_process(out, k.process);
    let n = k.addr.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    #[expect(clippy::cast_possible_truncation, reason = "at most 16")]
    out.push(n as u8);
    out.extend_from_slice(&k.addr[..n]);
    put_varint(out, u64::from(k.port));
    out.push(k.dir.to_byte());
    out.push(k.ip_version);
    out.push(k.protocol);
    out.push(k.class.to_byte());
}

/// `PROC_*` key (schema 8): bucket u64 BE | pid varint | start_ticks varint
/// | class u8.
#[must_use]
pub fn encode_proc_key(bucket: TimeMs, id: ProcessId, class: DestClass) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&bucket.to_be_bytes());
    put_process(&mut out, id);
    out.push(class.to_byte());
    out
}

/// Inverse of [`encode_proc_key`].
///
/// # Errors
/// On a malformed key.
pub fn decode_proc_key(b: &[u8]) -> Result<(TimeMs, ProcessId, DestClass), LayoutError> {
    let (ts, mut r) = KeyReader::after_bucket(b, "proc")?;
    let id = r.process()?;
    let class = r.class()?;
    r.end()?;
    Ok((ts, id, class))
}

/// Schema 3 to 7's `PROC_*` key ([`PROC_TABLES_V2`]): bucket u64 BE | pid
/// u32 BE | start_ticks u64 BE | class u8.
#[must_use]
pub fn encode_proc_key_v2(bucket: TimeMs, id: ProcessId, class: DestClass) -> [u8; 21] {
    let mut out = [0u8; 21];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..20].copy_from_slice(&encode_process(id));
    out[20] = class.to_byte();
    out
}

/// Inverse of [`encode_proc_key_v2`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_proc_key_v2(b: &[u8]) -> Result<(TimeMs, ProcessId, DestClass), LayoutError> {
    let err = || LayoutError::Key {
        table: "proc.v2",
        len: b.len(),
    };
    if b.len() != 21 {
        return Err(err());
    }
    let class = DestClass::from_byte(b[20]).ok_or_else(err)?;
    Ok((be_u64(&b[0..8]), decode_process(&b[8..20])?, class))
}

/// `REMOTE_*` key (schema 8): bucket u64 BE | [`put_remote_key`] | name
/// ([`crate::store::names::encode_name`]).
#[must_use]
pub fn encode_remote_key(bucket: TimeMs, k: &RemoteKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(&bucket.to_be_bytes());
    put_remote_key(&mut out, k);
    crate::store::names::encode_name(&mut out, k.name);
    out
}

/// Inverse of [`encode_remote_key`].
///
/// # Errors
/// On a malformed key or name.
pub fn decode_remote_key(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    let (ts, mut r) = KeyReader::after_bucket(b, "remote")?;
    let mut rk = r.remote_key()?;
    rk.name = crate::store::names::decode_name(r.b, "remote")?;
    Ok((ts, rk))
}

/// Quality rollup key (schema 8, [`crate::store::quality`]): bucket u64 BE
/// | [`put_remote_key`] (no name: quality is kept per remote key without
/// the server name).
#[must_use]
pub fn encode_quality_key(bucket: TimeMs, k: &RemoteKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&bucket.to_be_bytes());
    put_remote_key(&mut out, k);
    out
}

/// Inverse of [`encode_quality_key`] (the name is
/// [`crate::store::names::NameId::NONE`]).
///
/// # Errors
/// On a malformed key.
pub fn decode_quality_key(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    let (ts, mut r) = KeyReader::after_bucket(b, "quality")?;
    let rk = r.remote_key()?;
    r.end()?;
    Ok((ts, rk))
}

/// Schema 5 to 7's remote key ([`REMOTE_TABLES_V4`], 43 bytes and the
/// name): [`encode_remote_key_v3`], then the name.
#[must_use]
pub fn encode_remote_key_v4(bucket: TimeMs, k: &RemoteKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&encode_remote_key_v3(bucket, k));
    crate::store::names::encode_name(&mut out, k.name);
    out
}

/// Schema 4's 42-byte remote key (and schema 6 and 7's quality rollup
/// key): bucket u64 BE | pid u32 BE | start_ticks u64 BE | remote_addr
/// \[16\] | service port u16 BE | direction u8 | ip_version u8 | protocol
/// u8 | class u8.
#[must_use]
pub fn encode_remote_key_v3(bucket: TimeMs, k: &RemoteKey) -> [u8; 42] {
    let mut out = [0u8; 42];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..20].copy_from_slice(&encode_process(k.process));
    out[20..36].copy_from_slice(&k.addr);
    out[36..38].copy_from_slice(&k.port.to_be_bytes());
    out[38] = k.dir.to_byte();
    out[39] = k.ip_version;
    out[40] = k.protocol;
    out[41] = k.class.to_byte();
    out
}

/// Inverse of [`encode_remote_key_v4`].
///
/// # Errors
/// On a wrong length, direction, class or name.
pub fn decode_remote_key_v4(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    if b.len() < 43 {
        return Err(LayoutError::Key {
            table: "remote.v4",
            len: b.len(),
        });
    }
    let (ts, mut rk) = decode_remote_key_v3(&b[..42])?;
    rk.name = crate::store::names::decode_name(&b[42..], "remote")?;
    Ok((ts, rk))
}

/// Decodes a schema 4 remote key ([`REMOTE_TABLES_V3`], 42 bytes, no name).
///
/// # Errors
/// On a wrong length, direction or class byte.
pub fn decode_remote_key_v3(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    let err = || LayoutError::Key {
        table: "remote.v3",
        len: b.len(),
    };
    if b.len() != 42 {
        return Err(err());
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&b[20..36]);
    let dir = ConnDir::from_byte(b[38]).ok_or_else(err)?;
    let class = DestClass::from_byte(b[41]).ok_or_else(err)?;
    Ok((
        be_u64(&b[0..8]),
        RemoteKey {
            process: decode_process(&b[8..20])?,
            addr,
            port: u16::from_be_bytes([b[36], b[37]]),
            dir,
            ip_version: b[39],
            protocol: b[40],
            class,
            name: crate::store::names::NameId::NONE,
        },
    ))
}

/// Decodes a schema 3 remote key ([`REMOTE_HOUR_V2`], 41 bytes: bucket,
/// pid, start_ticks, address, the remote port, ip_version, protocol,
/// class; no direction) as a key with [`ConnDir::Unknown`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_remote_key_v2(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    let err = || LayoutError::Key {
        table: "remote.v2",
        len: b.len(),
    };
    if b.len() != 41 {
        return Err(err());
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&b[20..36]);
    let class = DestClass::from_byte(b[40]).ok_or_else(err)?;
    Ok((
        be_u64(&b[0..8]),
        RemoteKey {
            process: decode_process(&b[8..20])?,
            addr,
            port: u16::from_be_bytes([b[36], b[37]]),
            dir: ConnDir::Unknown,
            ip_version: b[38],
            protocol: b[39],
            class,
            name: crate::store::names::NameId::NONE,
        },
    ))
}

/// `IFACE_*` key: bucket u64 BE | ifindex u32 BE | class u8.
#[must_use]
pub fn encode_iface_key(bucket: TimeMs, ifindex: u32, class: DestClass) -> [u8; 13] {
    let mut out = [0u8; 13];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..12].copy_from_slice(&ifindex.to_be_bytes());
    out[12] = class.to_byte();
    out
}

/// Inverse of [`encode_iface_key`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_iface_key(b: &[u8]) -> Result<(TimeMs, u32, DestClass), LayoutError> {
    let err = || LayoutError::Key {
        table: "iface",
        len: b.len(),
    };
    if b.len() != 13 {
        return Err(err());
    }
    let class = DestClass::from_byte(b[12]).ok_or_else(err)?;
    Ok((
        be_u64(&b[0..8]),
        u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        class,
    ))
}

/// `MACHINE_*` key: bucket u64 BE | class u8.
#[must_use]
pub fn encode_machine_key(bucket: TimeMs, class: DestClass) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8] = class.to_byte();
    out
}

/// Inverse of [`encode_machine_key`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_machine_key(b: &[u8]) -> Result<(TimeMs, DestClass), LayoutError> {
    let err = || LayoutError::Key {
        table: "machine",
        len: b.len(),
    };
    if b.len() != 9 {
        return Err(err());
    }
    let class = DestClass::from_byte(b[8]).ok_or_else(err)?;
    Ok((be_u64(&b[0..8]), class))
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_key_round_trip_and_order() {
        let mut k = FlowKey {
            cookie: 0x0102_0304_0506_0708,
            remote_port: 443,
            ip_version: 4,
            protocol: 6,
            ..FlowKey::default()
        };
        k.remote_addr[..4].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decode_flow_key(&encode_flow_key(&k)).expect("decodes"), k);
        let mut bigger = k;
        bigger.cookie += 1;
        assert!(encode_flow_key(&bigger) > encode_flow_key(&k));
    }

    #[test]
    fn time_keys_sort_numerically() {
        let id = ProcessId {
            pid: 7,
            start_ticks: 9,
        };
        let a = encode_proc_key(255, id, DestClass::Lan);
        let b = encode_proc_key(256, id, DestClass::Loopback);
        assert!(a < b, "big-endian time prefix must sort by time");
        assert_eq!(
            decode_proc_key(&b).expect("decodes"),
            (256, id, DestClass::Loopback)
        );
    }

    #[test]
    fn remote_iface_machine_round_trip() {
        let rk = RemoteKey {
            process: ProcessId {
                pid: 1,
                start_ticks: 2,
            },
            addr: [9; 16],
            port: 53,
            dir: ConnDir::In,
            ip_version: 6,
            protocol: 17,
            class: DestClass::Internet,
            name: crate::store::names::NameId::NONE,
        };
        assert_eq!(
            decode_remote_key(&encode_remote_key(5, &rk)).expect("decodes"),
            (5, rk)
        );
        let named = RemoteKey {
            name: crate::store::names::NameId::of(&crate::source::FlowName {
                server_name: "dns.example".to_owned(),
                source: crate::source::NameSource::Dns,
            }),
            ..rk
        };
        let k = encode_remote_key(5, &named);
        assert_eq!(decode_remote_key(&k).expect("decodes"), (5, named));
        assert_eq!(
            decode_quality_key(&encode_quality_key(5, &rk)).expect("decodes"),
            (5, rk)
        );
        // Schema 5 to 7's remote key: schema 4's 42 bytes, then the name.
        let k4 = encode_remote_key_v4(5, &named);
        assert_eq!(&k4[..42], encode_remote_key_v3(5, &rk).as_slice());
        assert_eq!(decode_remote_key_v4(&k4).expect("decodes"), (5, named));
        assert_eq!(
            decode_remote_key_v3(&encode_remote_key_v3(5, &rk)).expect("decodes"),
            (5, rk)
        );
        let id = ProcessId {
            pid: 4_000_000,
            start_ticks: u64::MAX,
        };
        assert_eq!(
            decode_proc_key_v2(&encode_proc_key_v2(5, id, DestClass::Lan)).expect("decodes"),
            (5, id, DestClass::Lan)
        );
        assert_eq!(
            decode_proc_key(&encode_proc_key(5, id, DestClass::Lan)).expect("decodes"),
            (5, id, DestClass::Lan)
        );
        assert_eq!(
            decode_iface_key(&encode_iface_key(5, 3, DestClass::Lan)).expect("decodes"),
            (5, 3, DestClass::Lan)
        );
        assert_eq!(
            decode_machine_key(&encode_machine_key(5, DestClass::Unknown)).expect("decodes"),
            (5, DestClass::Unknown)
        );
    }

    /// Schema 8's keys: an IPv4 peer's remote key without a name takes 27
    /// bytes (43 in schema 7), a process key 16 (21), a quality key 26
    /// (42), for the pids and start times of a machine up for weeks.
    #[test]
    fn compact_keys_are_compact() {
        let rk = RemoteKey {
            process: ProcessId {
                pid: 123_456,
                start_ticks: 200_000_000,
            },
            addr: [93, 184, 216, 34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 443,
            dir: ConnDir::Out,
            ip_version: 4,
            protocol: 6,
            class: DestClass::Internet,
            name: crate::store::names::NameId::NONE,
        };
        assert_eq!(encode_remote_key(5, &rk).len(), 27);
        assert_eq!(encode_remote_key_v4(5, &rk).len(), 43);
        assert_eq!(encode_quality_key(5, &rk).len(), 26);
        assert_eq!(encode_proc_key(5, rk.process, DestClass::Lan).len(), 16);
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(decode_proc_key(&[0; 20]).is_err());
        assert!(decode_proc_key_v2(&[0; 20]).is_err());
        let id = ProcessId {
            pid: 1,
            start_ticks: 2,
        };
        let k = encode_proc_key(5, id, DestClass::Lan);
        assert!(decode_proc_key(&k[..k.len() - 1]).is_err(), "truncated");
        let mut long = k.clone();
        long.push(0);
        assert!(decode_proc_key(&long).is_err(), "a byte too many");
        let rk = RemoteKey {
            process: id,
            addr: [1; 16],
            port: 53,
            dir: ConnDir::In,
            ip_version: 6,
            protocol: 17,
            class: DestClass::Internet,
            name: crate::store::names::NameId::NONE,
        };
        let mut q = encode_quality_key(5, &rk);
        q.push(0);
        assert!(decode_quality_key(&q).is_err(), "a byte too many");
        let mut bad_len = encode_quality_key(5, &rk);
        bad_len[10] = 17;
        assert!(decode_quality_key(&bad_len).is_err(), "a 17-byte address");
        let mut bad_class = encode_machine_key(1, DestClass::Lan);
        bad_class[8] = 200;
        assert!(decode_machine_key(&bad_class).is_err());
    }

    #[test]
    fn snapshot_chunks_round_trip() {
        use crate::store::RemotePending;
        let t = |n: u64| Traffic {
            tx: netmon_common::DirCounters {
                packets: n,
                ip_bytes: n * 1500,
                payload_bytes: n * 1460,
                retrans_bytes: n * 7,
            },
            rx: netmon_common::DirCounters {
                packets: 2 * n,
                ip_bytes: u64::MAX - n,
                payload_bytes: 0,
                retrans_bytes: u64::MAX,
            },
        };
        let key = |c: u64| FlowKey {
            cookie: c,
            remote_addr: [c as u8; 16],
            remote_port: 443,
            ip_version: 6,
            protocol: 17,
            _pad: 0,
        };
        let records = [
            (0u8, key(1), SnapEntry::default()),
            (
                7,
                key(u64::MAX),
                SnapEntry {
                    counters: t(9),
                    first_boottime_ns: 123_456_789,
                    pending: RemotePending {
                        process: ProcessId {
                            pid: u32::MAX,
                            start_ticks: 77,
                        },
                        class: DestClass::Lan,
                        older: t(1),
                        port: 8443,
                        dir: ConnDir::In,
                        name: crate::store::names::NameId::NONE,
                        older_minute: 60_000 * 28_333_320,
                        newer: t(2),
                        newer_minute: 60_000 * 28_333_321,
                    },
                },
            ),
            (
                255,
                key(3),
                SnapEntry {
                    counters: t(5),
                    first_boottime_ns: 1,
                    pending: RemotePending {
                        process: ProcessId {
                            pid: 4,
                            start_ticks: 5,
                        },
                        class: DestClass::Internet,
                        newer: t(5),
                        newer_minute: 60_000 * 9,
                        ..RemotePending::default()
                    },
                },
            ),
        ];
        let (mut keys, mut hot) = (Vec::new(), Vec::new());
        for (off, k, e) in &records {
            encode_snap_keys_record(&mut keys, *off, k, e);
            encode_snap_record(&mut hot, e);
        }
        let mut back = Vec::new();
        decode_snap_chunk(2, &keys, &hot, |slot, k, e| back.push((slot, k, e))).expect("decodes");
        let want: Vec<_> = records
            .iter()
            .map(|(off, k, e)| (2 * SNAP_CHUNK + u32::from(*off), *k, *e))
            .collect();
        assert_eq!(back, want);
        // An idle entry: 8 counters and the flags in the hot row.
        let mut one = Vec::new();
        encode_snap_record(&mut one, &SnapEntry::default());
        assert_eq!(one.len(), 8 + 1);
        // Truncated, mismatched or reordered chunks are errors, not garbage.
        let nothing = |_, _, _| ();
        assert!(decode_snap_chunk(0, &keys, &hot[..hot.len() - 1], nothing).is_err());
        assert!(decode_snap_chunk(0, &keys[..keys.len() - 1], &hot, nothing).is_err());
        let mut more = hot.clone();
        more.extend_from_slice(&one);
        assert!(decode_snap_chunk(0, &keys, &more, nothing).is_err());
        let mut k1 = Vec::new();
        encode_snap_keys_record(&mut k1, 0, &key(1), &SnapEntry::default());
        let twice = [k1.clone(), k1].concat();
        assert!(decode_snap_chunk(0, &twice, &[one.clone(), one].concat(), nothing).is_err());
    }

    #[test]
    fn traffic_varints_are_compact() {
        let t = Traffic::default();
        assert_eq!(encode(&t).expect("encodes").len(), 8, "eight zero varints");
    }

    #[test]
    fn schema_2_values_read_with_zero_retransmissions() {
        let old = Traffic2 {
            tx: DirCounters2 {
                packets: 3,
                ip_bytes: 4_000,
                payload_bytes: 3_900,
            },
            rx: DirCounters2 {
                packets: 1,
                ip_bytes: 52,
                payload_bytes: 0,
            },
        };
        let bytes = encode(&old).expect("encodes");
        assert_eq!(bytes.len(), 1 + 2 + 2 + 1 + 1 + 1, "six varints");
        let t: Traffic = decode::<Traffic2>(&bytes).expect("decodes").into();
        assert_eq!((t.tx.payload_bytes, t.tx.retrans_bytes), (3_900, 0));
        assert_eq!(t.tx.app_bytes(), 3_900);
        // A schema 2 interval record: elements are tuples of the same
        // varints as the struct fields.
        let rec = IntervalRecord2 {
            procs: vec![(7, 9, 2, old)],
            ifaces: vec![(1, 0, old)],
        };
        let back: IntervalRecord = decode::<IntervalRecord2>(&encode(&rec).expect("encodes"))
            .expect("decodes")
            .into();
        assert_eq!(back.procs[0].traffic, t);
        assert_eq!(back.ifaces[0].traffic, t);
        // Schema 2 snapshot chunks decode with the 3-field reader.
        let mut hot = Vec::new();
        for v in [3u64, 4_000, 3_900, 1, 52, 0] {
            put_varint(&mut hot, v);
        }
        hot.push(0);
        let mut keys = Vec::new();
        encode_snap_keys_record_v3(&mut keys, 0, &FlowKey::default(), &SnapEntry::default());
        let mut got = Vec::new();
        decode_snap_chunk_v2(0, &keys, &hot, |_, _, e| got.push(e)).expect("decodes");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].counters, t);
    }
}
