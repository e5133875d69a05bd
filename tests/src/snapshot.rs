//! `netmon snapshot --sockets --json`, deserialized with types written here,
//! independently of netmon's own, from the documented contract:
//!
//! ```text
//! {"schema_version":1, "taken_at":"RFC3339", "taken_at_unix_ms":N,
//!  "processes":[{"pid","start_ticks","comm","exe"|null,"cmdline"|null,"uid",
//!                "user"|null,"cgroup"|null,"sockets","tx":{..},"rx":{..}}],
//!  "sockets":[{"cookie","pid","start_ticks","comm","protocol","protocol_number",
//!              "ip_version","local_addr","local_port","remote_addr","remote_port",
//!              "ifindex","netns_cookie","closed","tx","rx","tcp"?}],
//!  "overflow":{"tx","rx","failed_inserts"}, "totals":{"tx","rx"}}
//! ```
//! One `sockets` entry per flow (socket × remote endpoint); pid 0 means
//! unattributed; totals are all flows plus overflow.

use std::{
    iter::Sum,
    net::IpAddr,
    ops::{Add, AddAssign},
};

use serde::Deserialize;

/// The schema version these types read.
pub const SCHEMA_VERSION: u32 = 1;

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Counters {
    /// Packets seen at the hook.
    pub packets: u64,
    /// IP bytes (IP and transport headers plus payload).
    pub ip_bytes: u64,
    /// L4 payload bytes (every copy on the wire).
    pub payload_bytes: u64,
    /// Payload the application moved: `payload_bytes - retrans_bytes`.
    pub app_bytes: u64,
    /// Payload that repeated data already sent or received (TCP).
    pub retrans_bytes: u64,
}

impl Add for Counters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            packets: self.packets + o.packets,
            ip_bytes: self.ip_bytes + o.ip_bytes,
            payload_bytes: self.payload_bytes + o.payload_bytes,
            app_bytes: self.app_bytes + o.app_bytes,
            retrans_bytes: self.retrans_bytes + o.retrans_bytes,
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl Sum for Counters {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// Both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TxRx {
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

impl Add for TxRx {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            tx: self.tx + o.tx,
            rx: self.rx + o.rx,
        }
    }
}

impl Sum for TxRx {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// One process.
#[derive(Clone, Debug, Deserialize)]
pub struct Process {
    /// Pid (0: unattributed traffic).
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// Executable path, if the process still exists.
    pub exe: Option<String>,
    /// Command line, if the process still exists.
    pub cmdline: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// User name.
    pub user: Option<String>,
    /// cgroup path.
    pub cgroup: Option<String>,
    /// Number of flows.
    pub sockets: u64,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

/// One flow: a socket talking to one remote endpoint.
#[derive(Clone, Debug, Deserialize)]
pub struct Socket {
    /// Socket cookie.
    pub cookie: u64,
    /// Owner pid (0: unattributed).
    pub pid: u32,
    /// Owner start time in clock ticks.
    pub start_ticks: u64,
    /// Owner command name.
    pub comm: String,
    /// "tcp", "udp", "icmp", "icmpv6" or "other".
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
    /// Network namespace cookie.
    pub netns_cookie: u64,
    /// The socket was released (its last fd closed).
    pub closed: bool,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
    /// TCP flows: the connection's state as its latest packet saw it.
    #[serde(default)]
    pub tcp: Option<TcpSample>,
}

/// `"tcp"` of a TCP flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TcpSample {
    /// Smoothed RTT in microseconds (null before the first measurement).
    pub srtt_us: Option<u32>,
    /// Lowest RTT of the last five minutes in microseconds.
    #[serde(default)]
    pub min_rtt_us: Option<u32>,
    /// Segments retransmitted.
    pub retrans_segs: u32,
    /// Data segments sent, retransmissions included.
    pub data_segs_out: u32,
    /// Delivery rate of the latest rate sample, bytes per second.
    pub delivery_rate_bytes_per_sec: Option<u64>,
}

impl Socket {
    /// Both directions.
    #[must_use]
    pub fn txrx(&self) -> TxRx {
        TxRx {
            tx: self.tx,
            rx: self.rx,
        }
    }
}

/// Traffic of flows that found the flow map full.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Overflow {
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
    /// Flow insertions that failed.
    pub failed_inserts: u64,
}

/// A whole snapshot.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot {
    /// Must be [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When, RFC 3339.
    pub taken_at: String,
    /// When, ms since the epoch.
    pub taken_at_unix_ms: u64,
    /// Per process.
    pub processes: Vec<Process>,
    /// Per flow.
    pub sockets: Vec<Socket>,
    /// Overflow entry.
    pub overflow: Overflow,
    /// All flows plus overflow.
    pub totals: TxRx,
}

impl Snapshot {
    /// Parses netmon's output; panics with the text if it does not match.
    #[track_caller]
    #[must_use]
    pub fn parse(json: &str) -> Self {
        let snap: Self = serde_json::from_str(json).unwrap_or_else(|e| {
            let head: String = json.chars().take(2000).collect();
            panic!("snapshot JSON does not match the contract: {e}\n{head}")
        });
        assert_eq!(
            snap.schema_version, SCHEMA_VERSION,
            "unexpected schema_version"
        );
        snap
    }

    /// The process entries with `pid` (several if the pid was reused).
    pub fn processes_with_pid(&self, pid: u32) -> impl Iterator<Item = &Process> {
        self.processes.iter().filter(move |p| p.pid == pid)
    }

    /// The one process entry with `pid`; panics (listing what is there) if
    /// there is none or more than one.
    #[track_caller]
    #[must_use]
    pub fn process(&self, pid: u32) -> &Process {
        let found: Vec<&Process> = self.processes_with_pid(pid).collect();
        match found.as_slice() {
            [p] => p,
            [] => panic!(
                "pid {pid} missing from the snapshot; processes: {}",
                self.process_list()
            ),
            many => panic!(
                "pid {pid} appears {} times in the snapshot: {many:?}",
                many.len()
            ),
        }
    }

    /// The flows owned by `pid`.
    pub fn sockets_of(&self, pid: u32) -> impl Iterator<Item = &Socket> {
        self.sockets.iter().filter(move |s| s.pid == pid)
    }

    /// Sum over the flows for which `keep` holds.
    pub fn sum_sockets(&self, keep: impl Fn(&Socket) -> bool) -> TxRx {
        self.sockets
            .iter()
            .filter(|s| keep(s))
            .map(Socket::txrx)
            .sum()
    }

    /// Sum over all process entries.
    #[must_use]
    pub fn sum_processes(&self) -> TxRx {
        self.processes
            .iter()
            .map(|p| TxRx { tx: p.tx, rx: p.rx })
            .sum()
    }

    /// `pid comm tx rx` of every process, for failure messages.
    #[must_use]
    pub fn process_list(&self) -> String {
        self.processes
            .iter()
            .map(|p| {
                format!(
                    "[{} {} tx {}/{} rx {}/{}]",
                    p.pid,
                    p.comm,
                    p.tx.payload_bytes,
                    p.tx.ip_bytes,
                    p.rx.payload_bytes,
                    p.rx.ip_bytes
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One line per flow, for failure messages.
    #[must_use]
    pub fn socket_list(&self) -> String {
        self.sockets
            .iter()
            .map(|s| {
                format!(
                    "  {} pid {} {} {}:{} -> {}:{} closed={} tx {:?} rx {:?}\n",
                    s.cookie,
                    s.pid,
                    s.protocol,
                    s.local_addr,
                    s.local_port,
                    s.remote_addr,
                    s.remote_port,
                    s.closed,
                    s.tx,
                    s.rx
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"schema_version":1,"taken_at":"2026-01-01T00:00:00Z","taken_at_unix_ms":1,
      "processes":[{"pid":7,"start_ticks":9,"comm":"w","exe":null,"cmdline":null,"uid":0,
        "user":"root","cgroup":null,"sockets":2,
        "tx":{"packets":2,"ip_bytes":140,"payload_bytes":100,"app_bytes":100,"retrans_bytes":0},
        "rx":{"packets":1,"ip_bytes":52,"payload_bytes":0,"app_bytes":0,"retrans_bytes":0}}],
      "sockets":[{"cookie":5,"pid":7,"start_ticks":9,"comm":"w","protocol":"udp",
        "protocol_number":17,"ip_version":6,"local_addr":"fd00:200:1::1","local_port":1,
        "remote_addr":"fd00:200:1::2","remote_port":2,"ifindex":3,"netns_cookie":4,
        "closed":true,"tx":{"packets":2,"ip_bytes":140,"payload_bytes":100,"app_bytes":100,"retrans_bytes":0},
        "rx":{"packets":1,"ip_bytes":52,"payload_bytes":0,"app_bytes":0,"retrans_bytes":0}}],
      "overflow":{"tx":{"packets":0,"ip_bytes":0,"payload_bytes":0,"app_bytes":0,"retrans_bytes":0},
        "rx":{"packets":0,"ip_bytes":0,"payload_bytes":0,"app_bytes":0,"retrans_bytes":0},"failed_inserts":0},
      "totals":{"tx":{"packets":2,"ip_bytes":140,"payload_bytes":100,"app_bytes":100,"retrans_bytes":0},
        "rx":{"packets":1,"ip_bytes":52,"payload_bytes":0,"app_bytes":0,"retrans_bytes":0}},"extra_field":true}"#;

    #[test]
    fn parses_contract_and_sums() {
        let snap = Snapshot::parse(SAMPLE);
        assert_eq!(snap.process(7).tx.payload_bytes, 100);
        assert_eq!(snap.sockets_of(7).count(), 1);
        let v6 = snap.sum_sockets(|s| s.local_addr.is_ipv6());
        assert_eq!(v6.tx.ip_bytes, 140);
        assert_eq!(v6, snap.totals);
        assert_eq!(snap.sum_processes(), snap.totals);
    }

    #[test]
    #[should_panic(expected = "does not match the contract")]
    fn rejects_missing_fields() {
        let _ = Snapshot::parse(r#"{"schema_version":1}"#);
    }
}
