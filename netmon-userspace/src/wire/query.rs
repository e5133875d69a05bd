//! Documents of the history commands (`usage`, `history`, `procs`,
//! `export`, `top`) and of the daemon socket protocol.
//!
//! Every top-level document and every NDJSON line carries
//! `schema_version`; times come as RFC 3339 UTC (`from`) plus unix ms
//! (`from_unix_ms`); byte counts are in fields named `..._bytes` and rates in
//! `..._bytes_per_sec`.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Counters, Totals};

/// Identity fields of a group, filled according to the grouping (a process
/// row has pid, comm, exe, app, user, ...; a port row has protocol and
/// remote_port). Absent fields are omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFields {
    /// Process id (`--by process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Process start time, clock ticks since boot (`--by process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// Command name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// App name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// User name (or uid as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Real uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// cgroup v2 path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Container or systemd unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Remote address (`--by remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<IpAddr>,
    /// Remote port (`--by port`, outbound rows and rows without a
    /// direction: there the service port is the remote one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    /// Service port (`--by port`): the local port of inbound flows, the
    /// remote port of outbound ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u16>,
    /// `in` (a peer connected to this host) or `out` (`--by port`); absent
    /// for history recorded before directions were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Protocol name (`--by port`, `--by protocol`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Interface index (`--by interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// Interface name, as known to the answering host now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Destination class (`--by class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Command line (`--by process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Server name (`--by server_name`; absent for traffic without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Registered domain (`--by domain`; absent without a server name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Service (`--by service`; absent without a server name or a
    /// catalogue entry for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `--by remote`: every server name of the remote's traffic, most
    /// bytes first (`server_name` is the first); absent without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
    /// `ptr` when `server_name` is the remote's PTR name (`--by remote`
    /// rows without a stored name, `[names] reverse_lookup = true`): a
    /// label of the address looked up at query time, not a name any flow
    /// was opened to; absent for stored names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_source: Option<String>,
}

/// `netmon usage`: totals over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Window start asked, RFC 3339 UTC.
    pub from: String,
    /// Window start asked, unix ms.
    pub from_unix_ms: u64,
    /// Window end asked (exclusive), RFC 3339 UTC.
    pub until: String,
    /// Window end asked, unix ms.
    pub until_unix_ms: u64,
    /// Start of the time the rows read really cover: `from` when `exact`,
    /// earlier when rows had to be counted whole beyond the window (purged
    /// finer tiers, or remote endpoints kept per minute; `note` says which);
    /// null for an empty window.
    pub covered_from_unix_ms: Option<u64>,
    /// End of the covered time.
    pub covered_until_unix_ms: Option<u64>,
    /// Start of the covered time, RFC 3339 UTC.
    #[serde(default)]
    pub covered_from: Option<String>,
    /// End of the covered time, RFC 3339 UTC.
    #[serde(default)]
    pub covered_until: Option<String>,
    /// True when the answer is exactly the asked window, to the byte; false
    /// when some rows could only be read whole beyond it (see `note`).
    #[serde(default)]
    pub exact: bool,
    /// One line saying why the covered time differs from the asked window
    /// (null when exact).
    #[serde(default)]
    pub note: Option<String>,
    /// Grouping (`process`, `app`, ...).
    pub by: String,
    /// Filters applied, as `KEY=VALUE`.
    pub filters: Vec<String>,
    /// Destination class filter.
    pub class: Option<String>,
    /// Groups before `-n` cut the list.
    pub groups_total: u64,
    /// Groups, most IP bytes (tx + rx) first.
    pub rows: Vec<UsageRow>,
    /// Sum over all groups (also those cut by `-n`).
    pub total: Totals,
}

/// One group of [`Usage`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The group as one string (`curl`, `1234:5678`, `tcp/443`, ...).
    pub key: String,
    /// Identity fields.
    #[serde(flatten)]
    pub fields: GroupFields,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
    /// Share of the total IP bytes (both directions), 0..1.
    pub share: f64,
    /// The group's TCP connections: median RTT over the window's samples
    /// (one per connection and interval), milliseconds; absent without TCP
    /// samples (kept as long as interval samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p50_ms: Option<f64>,
    /// 95th percentile of the same samples, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p95_ms: Option<f64>,
    /// TCP segments retransmitted in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrans_segs: Option<u64>,
    /// TCP data segments sent in the window (retransmissions included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_segs_out: Option<u64>,
    /// `retrans_segs / data_segs_out`, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrans_rate: Option<f64>,
    /// `--by interface` on an interface netmon's tc programs watch:
    /// everything the interface moved in the window, by class. Its
    /// `total` is what the interface's own counters say for the window;
    /// `tx`/`rx` above are the IP bytes local processes' sockets moved
    /// through it (the `local_socket` class, without link-layer headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_counters: Option<InterfaceTraffic>,
}

/// An interface's own traffic over a window, per direction (see
/// [`UsageRow::interface_counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceTraffic {
    /// Received.
    pub rx: InterfaceDirection,
    /// Sent.
    pub tx: InterfaceDirection,
}

/// One direction of [`InterfaceTraffic`]: `total` is the sum of the four
/// classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDirection {
    /// Everything.
    pub total: FrameCount,
    /// Local IP sockets: what processes own.
    pub local_socket: FrameCount,
    /// Forwarded by the host (routed or NATed through it).
    pub forwarded: FrameCount,
    /// Sockets with no recorded owner: `AF_PACKET` (tcpdump, DHCP
    /// clients), the kernel's control sockets, sockets opened before netmon
    /// loaded (sent only).
    pub other_socket: FrameCount,
    /// No socket: sent by the kernel on its own (ARP, neighbour
    /// discovery), or received for no local socket.
    pub no_socket: FrameCount,
}

/// Packets and bytes as an interface counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameCount {
    /// Packets (a GSO packet is one, as virtual devices count it).
    pub packets: u64,
    /// Bytes of whole frames, link-layer header included (14 B on
    /// Ethernet, 0 on tun/WireGuard); a VLAN tag carried in metadata is not.
    pub frame_bytes: u64,
}

/// `netmon history`: a time series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Start of the first step, RFC 3339 UTC (aligned to the step).
    pub from: String,
    /// Start of the first step, unix ms.
    pub from_unix_ms: u64,
    /// End of the last step, RFC 3339 UTC.
    pub until: String,
    /// End of the last step, unix ms.
    pub until_unix_ms: u64,
    /// Step in ms.
    pub step_ms: u64,
    /// Tier read: `interval`, `minute`, `hour` or `day`.
    pub tier: String,
    /// Selection, as `KEY=VALUE` filters (empty: everything).
    pub filters: Vec<String>,
    /// Destination class filter.
    pub class: Option<String>,
    /// One point per step, oldest first, steps without data included (as
    /// gaps).
    pub points: Vec<HistoryPoint>,
    /// Sum of the points.
    pub total: Totals,
    /// Start of the time the points' traffic really covers (the asked
    /// window unless `exact` is false), unix ms; null for an empty window.
    #[serde(default)]
    pub covered_from_unix_ms: Option<u64>,
    /// End of the covered time, unix ms.
    #[serde(default)]
    pub covered_until_unix_ms: Option<u64>,
    /// True when the points hold exactly the traffic of the asked window.
    #[serde(default)]
    pub exact: bool,
    /// One line saying why not (null when exact).
    #[serde(default)]
    pub note: Option<String>,
}

/// One step of [`History`]. A step for which no row of the selection is
/// stored (nothing counted: idle, or no daemon running) has `tx` and `rx`
/// null: a gap, not zero traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Step start, RFC 3339 UTC.
    pub time: String,
    /// Step start, unix ms.
    pub time_unix_ms: u64,
    /// How much of the step lies inside the window and before now, ms:
    /// what a rate over this step divides by (the first and last steps can
    /// be partial).
    #[serde(default)]
    pub span_ms: u64,
    /// Sent in the step (inside the window); null: no data.
    pub tx: Option<Counters>,
    /// Received in the step (inside the window); null: no data.
    pub rx: Option<Counters>,
}

/// `netmon procs`: processes seen in a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procs {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Window start, RFC 3339 UTC.
    pub from: String,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end, RFC 3339 UTC.
    pub until: String,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// Processes, most IP bytes in the window first.
    pub processes: Vec<ProcSeen>,
}

/// `netmon events`: what the daemon recorded about its own life in a
/// window: starts and stops, counter resets, kernel loads lost and loaded
/// again (gaps in counting), slow drains, write failures recovered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Window start, RFC 3339 UTC.
    pub from: String,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end, RFC 3339 UTC.
    pub until: String,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// Oldest first.
    pub events: Vec<EventRow>,
}

/// One event of [`Events`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// When it was recorded (the drain that committed it), RFC 3339 UTC.
    pub time: String,
    /// The same, unix ms.
    pub time_unix_ms: u64,
    /// What happened: `start`, `stop`, `reset`, `vanished`, `overflow`,
    /// `migration`, `write_recovered`, `slow_drain`, `kernel_lost`.
    pub kind: String,
    /// The event's fields (e.g. for `kernel_lost`: `intact_ms`,
    /// `noticed_ms`, `reattached_ms`, `reason`).
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One process of [`Procs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSeen {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks since boot.
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// Executable path.
    pub exe: Option<String>,
    /// Command line.
    pub cmdline: Option<String>,
    /// App name.
    pub app: String,
    /// Real uid.
    pub uid: u32,
    /// User name.
    pub user: Option<String>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// cgroup v2 path.
    pub cgroup: Option<String>,
    /// Container or unit.
    pub container: Option<String>,
    /// First traffic, RFC 3339 UTC.
    pub first_seen: String,
    /// First traffic, unix ms.
    pub first_seen_unix_ms: u64,
    /// Last traffic (minute resolution), RFC 3339 UTC.
    pub last_seen: String,
    /// Last traffic, unix ms.
    pub last_seen_unix_ms: u64,
    /// Sent in the window.
    pub tx: Counters,
    /// Received in the window.
    pub rx: Counters,
}

/// `netmon export`: raw stored rows (JSON: this document; NDJSON and CSV:
/// one [`ExportRow`] per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Window start, RFC 3339 UTC.
    pub from: String,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end, RFC 3339 UTC.
    pub until: String,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// Rows, oldest first.
    pub rows: Vec<ExportRow>,
}

/// One stored row: a process's traffic to one destination class in one
/// interval sample or rollup bucket. Flat, so CSV columns are its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRow {
    /// Row time (drain time, or bucket start), RFC 3339 UTC.
    pub time: String,
    /// Row time, unix ms.
    pub time_unix_ms: u64,
    /// `interval`, `minute`, `hour` or `day` (rows come from the coarsest
    /// tier that covers whole buckets of the window).
    pub tier: String,
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks since boot.
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// App name.
    pub app: String,
    /// User name (or uid).
    pub user: String,
    /// Destination class.
    pub class: String,
    /// Packets sent.
    pub tx_packets: u64,
    /// IP bytes sent.
    pub tx_ip_bytes: u64,
    /// Payload bytes sent.
    pub tx_payload_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// IP bytes received.
    pub rx_ip_bytes: u64,
    /// Payload bytes received.
    pub rx_payload_bytes: u64,
    /// Application bytes sent (`tx_payload_bytes - tx_retrans_bytes`).
    pub tx_app_bytes: u64,
    /// Retransmitted payload bytes sent.
    pub tx_retrans_bytes: u64,
    /// Application bytes received (`rx_payload_bytes - rx_retrans_bytes`).
    pub rx_app_bytes: u64,
    /// Duplicate payload bytes received.
    pub rx_retrans_bytes: u64,
    /// `netmon export --remote`: the row's remote endpoint and names
    /// (absent in per process rows).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<ExportRemote>,
}

/// The endpoint fields of a remote [`ExportRow`] (`netmon export
/// --remote`): flat in JSON, extra CSV columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRemote {
    /// Remote address.
    pub remote_addr: IpAddr,
    /// Service port: the remote port of outbound flows, the local one of
    /// inbound ones.
    pub service_port: u16,
    /// `in` or `out`; absent for history recorded before directions were
    /// kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Protocol name.
    pub protocol: String,
    /// The server name the flows were opened to (SNI, Host, QUIC, DNS);
    /// absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Its registered domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Its service (services catalogue); absent without a match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `netmon top`: one refresh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Top {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When measured, RFC 3339 UTC.
    pub taken_at: String,
    /// When measured, unix ms.
    pub taken_at_unix_ms: u64,
    /// Totals count from here, unix ms (when `top` started).
    pub since_unix_ms: u64,
    /// Length of the interval the rates are over, ms.
    pub interval_ms: u64,
    /// Grouping.
    pub by: String,
    /// `daemon` (history store through the socket) or `kernel` (pinned maps).
    pub source: String,
    /// Groups, highest current rate (tx + rx) first.
    pub rows: Vec<TopRow>,
}

/// One group of [`Top`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    /// The group as one string.
    pub key: String,
    /// Identity fields.
    #[serde(flatten)]
    pub fields: GroupFields,
    /// A process with no controlling terminal (`/proc/PID/stat` tty_nr 0):
    /// a background process. Only for `--by process`, when still running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_tty: Option<bool>,
    /// Payload bytes sent per second over the last interval.
    pub tx_bytes_per_sec: f64,
    /// Payload bytes received per second over the last interval.
    pub rx_bytes_per_sec: f64,
    /// Sent since `since_unix_ms`.
    pub tx: Counters,
    /// Received since `since_unix_ms`.
    pub rx: Counters,
}

/// A request on the daemon socket: one JSON object on one line (at most
/// [`crate::api::MAX_REQUEST_BYTES`]), answered by one [`Reply`] line.
/// Times are unix ms, already resolved by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and identity: answered with [`Pong`].
    Ping,
    /// Answered with [`Usage`].
    Usage {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
        /// Grouping.
        by: String,
        /// `KEY=VALUE` filters.
        #[serde(default)]
        filters: Vec<String>,
        /// Destination class.
        #[serde(default)]
        class: Option<String>,
        /// At most this many rows.
        #[serde(default)]
        limit: Option<u64>,
    },
    /// Answered with [`History`].
    History {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
        /// Step; null lets the daemon choose.
        #[serde(default)]
        step_ms: Option<u64>,
        /// `KEY=VALUE` filters selecting the rows.
        #[serde(default)]
        filters: Vec<String>,
        /// Destination class.
        #[serde(default)]
        class: Option<String>,
    },
    /// Answered with [`Procs`].
    Procs {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
    },
    /// Answered with [`Export`].
    Export {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
        /// `KEY=VALUE` filters (process-level keys and class; with
        /// `remote` also remote, port, protocol and name keys).
        #[serde(default)]
        filters: Vec<String>,
        /// Destination class.
        #[serde(default)]
        class: Option<String>,
        /// Per process and remote endpoint rows, with their names
        /// ([`ExportRemote`]), instead of per process and class.
        #[serde(default)]
        remote: bool,
    },
    /// Answered with [`Events`].
    Events {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
    },
    /// Answered with [`super::Alerts`]: rule states and events since.
    Alerts {
        /// Events at or after this time.
        since_ms: u64,
        /// At most this many events (the newest).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// Answered with [`super::Devices`]: LAN devices over a window.
    Devices {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
        /// Only the device with this name, MAC or address.
        #[serde(default)]
        device: Option<String>,
    },
    /// Answered with [`super::DeviceHistory`]: one LAN device per step.
    DeviceHistory {
        /// Window start.
        from_ms: u64,
        /// Window end (exclusive).
        until_ms: u64,
        /// Step.
        step_ms: u64,
        /// The device: name, MAC or address.
        device: String,
    },
}

/// The answer to a [`Request`]: `{"ok": DOCUMENT}` or
/// `{"error": {"kind": ..., "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    /// The document the request asked for.
    Ok(T),
    /// Why there is none.
    Error(ErrorBody),
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `bad_request` (malformed or unknown request), `too_large` (the
    /// request line exceeded the limit; the connection is closed),
    /// `invalid` (well-formed but unanswerable, e.g. a step finer than the
    /// data kept), `internal` (the store failed).
    pub kind: String,
    /// One line for a person.
    pub message: String,
}

/// The answer to [`Request::Ping`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// netmon version of the daemon.
    pub version: String,
    /// The daemon's store.
    pub db: String,
    /// Newest interval sample, unix ms (null: none yet).
    pub latest_sample_unix_ms: Option<u64>,
    /// The history file's size and rows per tier (absent from daemons that
    /// predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

/// The history file: its size, its cap, and what each tier holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// `[retention] max_size` in bytes (null: no cap).
    pub max_size_bytes: Option<u64>,
    /// Per tier, finest first.
    pub tiers: Vec<TierStatus>,
}

/// What one tier of the history holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStatus {
    /// `interval`, `minute`, `hour` or `day`.
    pub tier: String,
    /// Rows in all of the tier's tables.
    pub rows: u64,
    /// Time of the oldest row, unix ms (null: no rows).
    pub oldest_unix_ms: Option<u64>,
    /// How long the tier is kept, seconds (null: forever).
    pub keep_secs: Option<u64>,
    /// Rows before this time were deleted to keep the file under
    /// `max_size` (null: never).
    pub size_purged_before_unix_ms: Option<u64>,
}
