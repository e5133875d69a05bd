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
//!   (tx packets, tx ip_bytes, tx payload_bytes, rx packets, rx ip_bytes,
//!   rx payload_bytes, ...). Small numbers take one or two bytes, which
//!   roughly halves the file against fixed 48-byte values. Values need no
//!   ordering, so no big-endian there.
//! - Rarely written, evolving records (processes, events) are JSON so fields
//!   can be added without a migration.
//! - Table names end in `.v<N>`: a migration that changes a layout writes a
//!   new table instead of reinterpreting old bytes.
use netmon_common::{FlowKey, OverflowCounters};
use redb::TableDefinition;

use crate::ownership::ProcessId;
use crate::store::class::DestClass;
use crate::store::types::{RemoteKey, SnapEntry, TimeMs, Traffic};

/// A byte table.
pub type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Store-wide values.
/// - `"schema_version"` → `u32` big-endian ([`crate::store::schema::CURRENT`]).
/// - `"overflow_snapshot"` → postcard [`OverflowCounters`]: the overflow
///   counters as last committed.
pub const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("meta.v1");
/// [`META`] key of the schema version.
pub const META_SCHEMA: &str = "schema_version";
/// [`META`] key of the overflow snapshot.
pub const META_OVERFLOW: &str = "overflow_snapshot";

/// The last committed counters of every flow the kernel still holds.
/// - key (32 bytes): [`encode_flow_key`] — cookie u64 BE, remote address
///   16 bytes, remote port u16 BE, ip_version u8, protocol u8, 4 zero bytes.
/// - value: postcard [`SnapEntry`] (6 varint counters, then
///   `first_boottime_ns` varint).
pub const SNAPSHOT: Bytes = TableDefinition::new("snapshot.v1");

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
pub const INTERVAL: Bytes = TableDefinition::new("interval.v1");

/// Per process rollups, one table per tier ([`PROC_MINUTE`], [`PROC_HOUR`],
/// [`PROC_DAY`]).
/// - key (21 bytes): [`encode_proc_key`] — bucket start u64 BE, pid u32 BE,
///   start_ticks u64 BE, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const PROC_MINUTE: Bytes = TableDefinition::new("proc.minute.v1");
/// See [`PROC_MINUTE`].
pub const PROC_HOUR: Bytes = TableDefinition::new("proc.hour.v1");
/// See [`PROC_MINUTE`].
pub const PROC_DAY: Bytes = TableDefinition::new("proc.day.v1");

/// Per (process, remote endpoint) rollups, hour and day tiers only: a busy
/// host talks to many endpoints, and "where did it go" is asked over hours
/// and days, not seconds.
/// - key (41 bytes): [`encode_remote_key`] — bucket start u64 BE, pid u32 BE,
///   start_ticks u64 BE, remote address 16 bytes, remote port u16 BE,
///   ip_version u8, protocol u8, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const REMOTE_HOUR: Bytes = TableDefinition::new("remote.hour.v1");
/// See [`REMOTE_HOUR`].
pub const REMOTE_DAY: Bytes = TableDefinition::new("remote.day.v1");

/// Per interface rollups.
/// - key (13 bytes): bucket start u64 BE, ifindex u32 BE, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const IFACE_MINUTE: Bytes = TableDefinition::new("iface.minute.v1");
/// See [`IFACE_MINUTE`].
pub const IFACE_HOUR: Bytes = TableDefinition::new("iface.hour.v1");
/// See [`IFACE_MINUTE`].
pub const IFACE_DAY: Bytes = TableDefinition::new("iface.day.v1");

/// Machine totals (every process, overflow included).
/// - key (9 bytes): bucket start u64 BE, [`DestClass`] u8.
/// - value: postcard [`Traffic`].
pub const MACHINE_MINUTE: Bytes = TableDefinition::new("machine.minute.v1");
/// See [`MACHINE_MINUTE`].
pub const MACHINE_HOUR: Bytes = TableDefinition::new("machine.hour.v1");
/// See [`MACHINE_MINUTE`].
pub const MACHINE_DAY: Bytes = TableDefinition::new("machine.day.v1");

/// Every table a fresh store creates.
pub const ALL_BYTE_TABLES: [Bytes; 15] = [
    SNAPSHOT,
    PROCESSES,
    EVENTS,
    INTERVAL,
    PROC_MINUTE,
    PROC_HOUR,
    PROC_DAY,
    REMOTE_HOUR,
    REMOTE_DAY,
    IFACE_MINUTE,
    IFACE_HOUR,
    IFACE_DAY,
    MACHINE_MINUTE,
    MACHINE_HOUR,
    MACHINE_DAY,
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

/// Encodes a [`SnapEntry`].
///
/// # Errors
/// Never in practice.
pub fn encode_snap(value: &SnapEntry) -> Result<Vec<u8>, LayoutError> {
    encode(value)
}

/// [`SNAPSHOT`] key: cookie u64 BE | remote_addr \[16\] | remote_port u16 BE |
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

/// `PROC_*` key: bucket u64 BE | pid u32 BE | start_ticks u64 BE | class u8.
#[must_use]
pub fn encode_proc_key(bucket: TimeMs, id: ProcessId, class: DestClass) -> [u8; 21] {
    let mut out = [0u8; 21];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..20].copy_from_slice(&encode_process(id));
    out[20] = class.to_byte();
    out
}

/// Inverse of [`encode_proc_key`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_proc_key(b: &[u8]) -> Result<(TimeMs, ProcessId, DestClass), LayoutError> {
    let err = || LayoutError::Key {
        table: "proc",
        len: b.len(),
    };
    if b.len() != 21 {
        return Err(err());
    }
    let class = DestClass::from_byte(b[20]).ok_or_else(err)?;
    Ok((be_u64(&b[0..8]), decode_process(&b[8..20])?, class))
}

/// `REMOTE_*` key (41 bytes): bucket u64 BE | pid u32 BE | start_ticks u64 BE
/// | remote_addr \[16\] | remote_port u16 BE | ip_version u8 | protocol u8 |
/// class u8.
#[must_use]
pub fn encode_remote_key(bucket: TimeMs, k: &RemoteKey) -> [u8; 41] {
    let mut out = [0u8; 41];
    out[0..8].copy_from_slice(&bucket.to_be_bytes());
    out[8..20].copy_from_slice(&encode_process(k.process));
    out[20..36].copy_from_slice(&k.addr);
    out[36..38].copy_from_slice(&k.port.to_be_bytes());
    out[38] = k.ip_version;
    out[39] = k.protocol;
    out[40] = k.class.to_byte();
    out
}

/// Inverse of [`encode_remote_key`].
///
/// # Errors
/// On a wrong length or class byte.
pub fn decode_remote_key(b: &[u8]) -> Result<(TimeMs, RemoteKey), LayoutError> {
    let err = || LayoutError::Key {
        table: "remote",
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
            ip_version: b[38],
            protocol: b[39],
            class,
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
            ip_version: 6,
            protocol: 17,
            class: DestClass::Internet,
        };
        assert_eq!(
            decode_remote_key(&encode_remote_key(5, &rk)).expect("decodes"),
            (5, rk)
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

    #[test]
    fn malformed_keys_are_errors() {
        assert!(decode_proc_key(&[0; 20]).is_err());
        let mut bad_class = encode_machine_key(1, DestClass::Lan);
        bad_class[8] = 200;
        assert!(decode_machine_key(&bad_class).is_err());
    }

    #[test]
    fn traffic_varints_are_compact() {
        let t = Traffic::default();
        assert_eq!(encode(&t).expect("encodes").len(), 6, "six zero varints");
    }
}
