//! Documents only the HTTP API serves (the rest of its answers are the
//! socket's documents, unchanged): the daemon's status, the login, a
//! process's sockets now.
use serde::{Deserialize, Serialize};

use super::{SocketCounters, Status, Totals};

/// `GET /api/v1/status`: the daemon and, for the kernel source, the kernel
/// side's health (`netmon status`'s document).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// netmon version.
    pub version: String,
    /// Host name.
    pub host: String,
    /// Daemon start, RFC 3339 UTC.
    pub started: String,
    /// Daemon start, unix ms.
    pub started_unix_ms: u64,
    /// Time since start, ms.
    pub uptime_ms: u64,
    /// `kernel` or `simulated`.
    pub source: String,
    /// Drain interval, ms.
    pub interval_ms: u64,
    /// The store.
    pub db: String,
    /// Newest committed drain, unix ms (null: none yet).
    pub latest_sample_unix_ms: Option<u64>,
    /// The kernel side (programs, map fill, overflow and failed inserts);
    /// null for the simulated source or when it cannot be read.
    pub kernel: Option<Status>,
    /// Why `kernel` is null for the kernel source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_error: Option<String>,
    /// LAN interface globs devices are counted on (`[interfaces] lan`);
    /// empty: device counting is off.
    #[serde(default)]
    pub lan_interfaces: Vec<String>,
}

/// `POST /api/v1/login` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// A token from `netmon token create`.
    pub token: String,
}

/// `POST /api/v1/login` answer (the session is in the `Set-Cookie` header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The session lasts this long, seconds.
    pub expires_in_s: u64,
}

/// `GET /api/v1/sockets?pid=PID:START_TICKS`: a process's sockets as the
/// drain's last committed reading had them ("sockets now").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sockets {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Time of the reading (a drain), RFC 3339 UTC.
    pub taken_at: String,
    /// Time of the reading, unix ms.
    pub taken_at_unix_ms: u64,
    /// The process.
    pub pid: u32,
    /// Its start time, clock ticks since boot.
    pub start_ticks: u64,
    /// Its command name (`[unattributed]` when the daemon knows none).
    pub comm: String,
    /// Sockets of the process in the reading (`rows` may hold fewer).
    pub sockets_total: u64,
    /// Busiest first: endpoints, protocol, `closed` (released, not yet
    /// retired), TCP state, and the bytes each socket counted so far.
    pub rows: Vec<SocketCounters>,
    /// Sum over all `sockets_total` sockets.
    pub total: Totals,
}
