//! What `netmon-workload` prints: one JSON object per line on stdout.
//!
//! A workload prints `{"event":"ready",...}` once its sockets exist (with the
//! ports it bound) and `{"event":"done",...}` with its own counts when its
//! traffic is over. These counts are the tests' ground truth: they come from
//! the return values of the workload's own `write`/`read`/`send`/`recv`
//! calls, independent of netmon and of the kernel's MIB.

use serde::{Deserialize, Serialize};

/// `event` of the line printed once the workload's sockets are set up.
pub const READY: &str = "ready";
/// `event` of the line printed when the workload's traffic is over.
pub const DONE: &str = "done";

/// One line of workload output. Fields a workload has nothing to say about
/// stay zero / empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// [`READY`] or [`DONE`].
    pub event: String,
    /// The printing process's pid.
    pub pid: u32,
    /// Its start time in clock ticks (`/proc/self/stat` field 22).
    pub start_ticks: u64,
    /// Ports the workload bound (listeners, UDP receivers), in order.
    pub ports: Vec<u16>,
    /// Payload bytes handed to the kernel (sum of `write`/`send` results).
    pub written: u64,
    /// Payload bytes received (sum of `read`/`recv` results).
    pub read: u64,
    /// Datagrams (UDP) or echo requests (ICMP) sent.
    pub datagrams_sent: u64,
    /// Datagrams or echo replies received.
    pub datagrams_received: u64,
    /// TCP: `tcpi_bytes_sent` at the end, payload sent including
    /// retransmissions (summed over connections).
    pub tcp_bytes_sent: u64,
    /// TCP: `tcpi_bytes_retrans`, payload retransmitted.
    pub tcp_bytes_retrans: u64,
    /// TCP: `tcpi_bytes_received`, payload received (duplicates excluded).
    pub tcp_bytes_received: u64,
    /// TCP: `tcpi_total_retrans`, segments retransmitted (summed over
    /// connections).
    pub tcp_total_retrans: u64,
    /// TCP: `tcpi_data_segs_out`, data segments sent, retransmissions
    /// included (summed over connections).
    pub tcp_data_segs_out: u64,
    /// TCP: `tcpi_rtt`, the smoothed RTT in microseconds at the end (of the
    /// last connection read).
    pub tcp_rtt_us: u64,
    /// TCP: `tcpi_rttvar`, its mean deviation in microseconds.
    pub tcp_rttvar_us: u64,
    /// TCP: `tcpi_min_rtt`, the lowest RTT of the last five minutes in
    /// microseconds.
    pub tcp_min_rtt_us: u64,
    /// TCP client with `--rtt-every-ms`: median of the `tcpi_rtt` samples
    /// taken during the exchange, microseconds.
    pub tcp_rtt_p50_us: u64,
    /// Their 95th percentile (nearest rank).
    pub tcp_rtt_p95_us: u64,
    /// TCP: bytes still in the send queue when the socket was closed
    /// (`SIOCOUTQ` right before `close`).
    pub queued_at_close: u64,
    /// Wall time from start to the report, in milliseconds.
    pub elapsed_ms: u64,
    /// Per connection / per socket detail where the workload has several.
    pub conns: Vec<ConnReport>,
}

/// One connection or socket of a workload with several.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnReport {
    /// Local port.
    pub local_port: u16,
    /// Remote port (0 for an unconnected socket).
    pub remote_port: u16,
    /// Payload bytes written.
    pub written: u64,
    /// Payload bytes read.
    pub read: u64,
    /// Datagrams received.
    pub datagrams: u64,
}

impl Report {
    /// A report of `event` for the calling process.
    #[must_use]
    pub fn new(event: &str) -> Self {
        let pid = std::process::id();
        Self {
            event: event.to_owned(),
            pid,
            start_ticks: crate::procfs::start_ticks(pid).unwrap_or_default(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_missing_fields() {
        let mut r = Report::new(DONE);
        r.written = 42;
        r.conns.push(ConnReport {
            local_port: 1,
            datagrams: 3,
            ..ConnReport::default()
        });
        let line = serde_json::to_string(&r).unwrap_or_default();
        let back: Result<Report, _> = serde_json::from_str(&line);
        assert_eq!(back.ok(), Some(r));
        let sparse: Result<Report, _> = serde_json::from_str(r#"{"event":"ready","ports":[80]}"#);
        assert_eq!(sparse.ok().map(|r| r.ports), Some(vec![80]));
    }
}
