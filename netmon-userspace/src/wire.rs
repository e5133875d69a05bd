//! JSON wire types: every document netmon prints or serves is defined here,
//! once. Units are explicit in field names; times are RFC 3339 UTC plus unix
//! milliseconds; every top-level document carries `schema_version`.
//!
//! Changing a field's meaning or removing one bumps [`SCHEMA_VERSION`];
//! adding a field does not.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

mod query;
pub use query::*;
mod alerts;
pub use alerts::*;
mod http;
pub use http::*;
mod report;
pub use report::*;
mod devices;
pub use devices::*;

/// Version of the JSON documents.
pub const SCHEMA_VERSION: u32 = 1;

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets (`sk_buff`s at the hook; one GSO packet may be several on the wire).
    pub packets: u64,
    /// IP bytes: IP + transport headers + payload, as the kernel's IP MIB counts.
    pub ip_bytes: u64,
    /// L4 payload bytes on the wire: every copy, TCP retransmissions and
    /// duplicates included.
    pub payload_bytes: u64,
    /// What the application wrote (tx) or read (rx):
    /// `payload_bytes - retrans_bytes`.
    pub app_bytes: u64,
    /// Payload that carried data already sent (tx) or already received
    /// (rx): TCP retransmissions and duplicates; 0 for other protocols.
    pub retrans_bytes: u64,
}

impl From<netmon_common::DirCounters> for Counters {
    fn from(c: netmon_common::DirCounters) -> Self {
        Self {
            packets: c.packets,
            ip_bytes: c.ip_bytes,
            payload_bytes: c.payload_bytes,
            app_bytes: c.app_bytes(),
            retrans_bytes: c.retrans_bytes,
        }
    }
}

/// Back from a document to the kernel's counters (`app_bytes` is derived,
/// so nothing is lost).
impl From<&Counters> for netmon_common::DirCounters {
    fn from(c: &Counters) -> Self {
        Self {
            packets: c.packets,
            ip_bytes: c.ip_bytes,
            payload_bytes: c.payload_bytes,
            retrans_bytes: c.retrans_bytes,
        }
    }
}

impl Counters {
    /// Field-wise saturating sum.
    #[must_use]
    pub const fn plus(self, o: Self) -> Self {
        Self {
            packets: self.packets.saturating_add(o.packets),
            ip_bytes: self.ip_bytes.saturating_add(o.ip_bytes),
            payload_bytes: self.payload_bytes.saturating_add(o.payload_bytes),
            app_bytes: self.app_bytes.saturating_add(o.app_bytes),
            retrans_bytes: self.retrans_bytes.saturating_add(o.retrans_bytes),
        }
    }
}

/// `netmon snapshot`: the kernel's current counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When read, RFC 3339 UTC.
    pub taken_at: String,
    /// When read, unix milliseconds.
    pub taken_at_unix_ms: u64,
    /// Per process, most total bytes first.
    pub processes: Vec<ProcessCounters>,
    /// Per flow (socket × remote endpoint); only with `--sockets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<Vec<SocketCounters>>,
    /// Traffic counted while the flow map was full.
    pub overflow: Overflow,
    /// Sum of every flow and the overflow.
    pub totals: Totals,
}

/// One process's counters in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCounters {
    /// Process id; 0 = traffic no process could be found for.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// Executable path (null when the process was gone before it was seen).
    pub exe: Option<String>,
    /// Command line.
    pub cmdline: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// User name.
    pub user: Option<String>,
    /// cgroup v2 path.
    pub cgroup: Option<String>,
    /// Number of flows.
    pub sockets: u64,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

/// One flow's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketCounters {
    /// Socket cookie (`ss -e` shows it as `sk:<hex>`).
    pub cookie: u64,
    /// Owner pid (0 = unknown).
    pub pid: u32,
    /// Owner start time, clock ticks since boot.
    pub start_ticks: u64,
    /// Owner command name.
    pub comm: String,
    /// `tcp`, `udp`, `udplite`, `icmp`, `icmpv6`, `sctp` or `other`.
    pub protocol: String,
    /// IP protocol number.
    pub protocol_number: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Local address.
    pub local_addr: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address.
    pub remote_addr: IpAddr,
    /// Remote port.
    pub remote_port: u16,
    /// Interface of the first packet.
    pub ifindex: u32,
    /// Network namespace cookie of the socket (0 when unknown).
    pub netns_cookie: u64,
    /// The socket was closed by its last fd holder.
    pub closed: bool,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
    /// TCP flows of an established socket: its state as the latest packet
    /// saw it; absent for other flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpState>,
    /// The server name the flow was opened to (TLS SNI, HTTP Host, QUIC,
    /// DNS), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// A TCP connection's quality as its latest packet saw it (the kernel's
/// `tcp_sock`, the values `TCP_INFO` reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpState {
    /// Smoothed RTT in microseconds (`tcpi_rtt`); null before the first
    /// measurement.
    pub srtt_us: Option<u32>,
    /// The lowest RTT of the last five minutes in microseconds
    /// (`tcpi_min_rtt`): the path's latency without queueing; null before
    /// the first measurement.
    #[serde(default)]
    pub min_rtt_us: Option<u32>,
    /// Segments retransmitted since the start (`tcpi_total_retrans`).
    pub retrans_segs: u32,
    /// Data segments sent, retransmissions included
    /// (`tcpi_data_segs_out`).
    pub data_segs_out: u32,
    /// Delivery rate of the latest rate sample, bytes per second
    /// (`tcpi_delivery_rate`); null without a sample.
    pub delivery_rate_bytes_per_sec: Option<u64>,
}

impl TcpState {
    /// The sample of a flow, `None` when the flow has none (not TCP, or no
    /// packet of an established socket yet).
    #[must_use]
    pub fn of(s: &netmon_common::TcpSample) -> Option<Self> {
        if *s == netmon_common::TcpSample::default() {
            return None;
        }
        Some(Self {
            srtt_us: s.srtt_us(),
            min_rtt_us: s.min_rtt_us(),
            retrans_segs: s.total_retrans,
            data_segs_out: s.data_segs_out,
            delivery_rate_bytes_per_sec: s.delivery_rate_bps(),
        })
    }
}

/// Overflow counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overflow {
    /// Sent while the flow map was full.
    pub tx: Counters,
    /// Received while the flow map was full.
    pub rx: Counters,
    /// Failed flow insertions (the drop counter: packets not attributable to
    /// a flow, still counted here).
    pub failed_inserts: u64,
}

/// Totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

/// `netmon status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// True when every program is pinned and attached.
    pub loaded: bool,
    /// Pin directory.
    pub pin_dir: String,
    /// cgroup the programs are attached to (null if unknown).
    pub cgroup: Option<String>,
    /// Running kernel release.
    pub kernel: String,
    /// Per program.
    pub programs: Vec<ProgramStatus>,
    /// Per map.
    pub maps: Vec<MapStatus>,
    /// Overflow counters.
    pub overflow: Overflow,
    /// When loaded, unix milliseconds.
    pub loaded_at_unix_ms: Option<u64>,
    /// The kernel's BPF run-time statistics over a sampling window
    /// (`netmon status --sample SECONDS`); null without `--sample`.
    #[serde(default)]
    pub sample: Option<StatsSample>,
    /// The name capture's ring counters since load (null for a load
    /// without name capture).
    #[serde(default)]
    pub name_capture: Option<NameCaptureStatus>,
}

/// Name capture counters of `netmon status`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCaptureStatus {
    /// Records (first payloads, DNS answers) written to the capture ring.
    pub records: u64,
    /// Records lost because the ring was full (the daemon drained it too
    /// late, or no daemon was reading while capture was on).
    pub lost: u64,
}

/// Program runs measured over a window with the kernel's BPF run-time
/// statistics turned on for that window only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsSample {
    /// Length of the window in seconds.
    pub seconds: f64,
    /// Per program, in the order of [`Status::programs`].
    pub programs: Vec<ProgramSample>,
}

/// One program's runs within a [`StatsSample`] window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSample {
    /// Program name.
    pub name: String,
    /// Runs within the window.
    pub runs: u64,
    /// Time spent in those runs, nanoseconds.
    pub run_time_ns: u64,
    /// `run_time_ns / runs` (null without runs).
    pub avg_ns: Option<u64>,
}

/// One program's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// Program name.
    pub name: String,
    /// Kernel program id.
    pub id: Option<u32>,
    /// Attached (its link is pinned).
    pub attached: bool,
    /// Runs counted by the kernel since load, while its BPF run-time
    /// statistics were on (`sysctl kernel.bpf_stats_enabled=1`, or during a
    /// `netmon status --sample` window); netmon never leaves them on.
    pub run_count: u64,
    /// Total run time in nanoseconds (same condition).
    pub run_time_ns: u64,
    /// Verified instructions.
    pub instructions: Option<u32>,
}

/// One map's fill level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapStatus {
    /// Map name.
    pub name: String,
    /// Entries now.
    pub entries: u64,
    /// Capacity.
    pub max_entries: u32,
    /// entries / max_entries, 0..1.
    pub fill: f64,
    /// Entries whose socket is gone: for the flow map, flows of released
    /// sockets (the drain retires them once their bytes are committed); for
    /// the closed map, marks with no flow left (freed by the drain's next
    /// reads). A number that keeps growing while the daemon runs is a leak.
    #[serde(default)]
    pub gone: u64,
}
