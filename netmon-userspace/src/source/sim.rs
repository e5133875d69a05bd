//! A simulated [`CounterSource`] and [`Resolver`] driven by a traffic script.
//!
//! # Script format
//!
//! A script is TOML (or JSON when the file name ends in `.json`; same
//! fields). Time is counted in **ticks** of `tick_ms` milliseconds. Traffic
//! of tick `t` is counted "at" `t`: a reading at tick `k` includes every
//! tick `<= k`.
//!
//! ```toml
//! tick_ms = 1000          # length of a tick (default 1000)
//! max_flows = 65536       # reported flow map capacity (default 65536)
//! resets = [500]          # maps recreated (netmon unload/load) just before these ticks
//!
//! [[processes]]           # who owns sockets; pid reuse = same pid, other start_ticks
//! pid = 100
//! start_ticks = 5000      # /proc/PID/stat field 22
//! comm = "curl"
//! exe = "/usr/bin/curl"   # optional, as are cmdline, uid (0), ppid, cgroup
//! start_tick = 0          # lifetime in script ticks (default 0 .. forever);
//! exit_tick = 100         # every flow of its sockets must lie inside it
//!
//! [[sockets]]
//! cookie = 1                              # unique per socket
//! owner = { pid = 100, start_ticks = 5000 } # omit: nobody known ("[unattributed]")
//! closed_at = 60                          # released at this tick (optional)
//! local_port = 443                        # optional (default 10000 + cookie % 50000)
//! accepted_from = 9                       # optional: accepted from listener socket 9
//!                                         # (inbound: service = local_port)
//!
//! [[sockets.flows]]                       # one per remote endpoint
//! remote = "93.184.216.34"
//! port = 443
//! protocol = 6                            # default 6 (TCP)
//! ifindex = 2                             # default 2; 1 is loopback
//! from = 0                                # first and last tick with traffic
//! to = 59
//! tx = { packets = 2, ip_bytes = 1080, payload_bytes = 1000 }   # per tick
//! rx = { packets = 1, ip_bytes = 540, payload_bytes = 500 }
//! tcp = { srtt_us = 20000, data_segs = 2, retrans_segs = 0 }     # optional
//! name = { server_name = "www.example.org", source = "sni", after = 2 } # optional:
//!                                         # the server name, reported once per kernel entry
//!                                         # in the first reading at tick >= from + after;
//!                                         # the first `after` ticks carry headers only
//!                                         # (tx/rx with payload and retrans bytes 0)
//!
//! [[overflow]]                            # traffic that found the flow map full
//! from = 10
//! to = 20
//! tx = { packets = 1, ip_bytes = 100, payload_bytes = 60 }
//! rx = { packets = 0, ip_bytes = 0, payload_bytes = 0 }
//! failed_inserts = 1
//! ```
//!
//! # The simulated kernel
//!
//! The counters are a **pure function** of the script, the current tick and
//! a small [`SimState`] (retire ticks), like the real pinned maps that live
//! on in the kernel whatever the daemon does:
//! - a flow's map entry holds the traffic of ticks `t` in `(e, k]`, where `e`
//!   is the later of "just before the last reset" and the tick the flow was
//!   last retired at; the entry exists iff that is at least one tick, and its
//!   `first_boottime_ns` is derived from its first counted tick, so a
//!   recreated entry is told apart from the old one;
//! - [`CounterSource::retire`] records `(flow, current tick)` and returns
//!   the value at that tick: traffic after it starts a new entry from zero,
//!   exactly as a kernel map entry deleted and recreated by the next packet.
//!
//! In daemon mode ([`SimSource::persistent`]) the current tick comes from the
//! wall clock, `(now - state.start_ms) / tick_ms`, and the state lives in a
//! file next to the script. The state file is replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) **before** `retire`
//! returns, so whatever instant a SIGKILL hits, the file says either "not
//! retired" (the flow is still in the map, nothing happened) or "retired at
//! tick r" (the flow is gone, as in the kernel after a delete). The daemon
//! restarted on the same script and state file therefore sees exactly the
//! counters a real kernel would show it: a crash can neither add nor remove
//! simulated traffic. (What the drain does with them is its own argument —
//! see [`crate::drain`].)
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netmon_common::{DirCounters, FLOW_F_OWNED, FlowKey, FlowValue, OverflowCounters, SockOwner};

use crate::model::{
    ConnDir, DestClass, OVERFLOW, ProcessId, ProcessInfo, Traffic, UNATTRIBUTED, classify_raw,
    unix_ms_now,
};
use crate::ownership::{Owners, Resolver};
use crate::source::{CounterSource, FlowReading, Reading, SourceError};

/// Clock ticks per second of `/proc/PID/stat` start times (USER_HZ).
const USER_HZ: u64 = 100;

const fn default_tick_ms() -> u64 {
    1000
}
const fn default_max_flows() -> u32 {
    65_536
}
const fn default_protocol() -> u8 {
    6
}
const fn default_ifindex() -> u32 {
    2
}

/// A traffic script. See the module documentation for the file format.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Length of a tick in ms.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Reported flow map capacity.
    #[serde(default = "default_max_flows")]
    pub max_flows: u32,
    /// Maps are recreated just before each of these ticks.
    #[serde(default)]
    pub resets: Vec<u64>,
    /// Processes.
    #[serde(default)]
    pub processes: Vec<SimProcess>,
    /// Sockets and their traffic.
    #[serde(default)]
    pub sockets: Vec<SimSocket>,
    /// Overflow traffic.
    #[serde(default)]
    pub overflow: Vec<SimOverflow>,
}

/// A process of a script.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimProcess {
    /// pid.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// Executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// uid.
    #[serde(default)]
    pub uid: u32,
    /// Parent pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// First script tick it lives.
    #[serde(default)]
    pub start_tick: u64,
    /// Last script tick it lives (none: to the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_tick: Option<u64>,
}

/// A socket of a script.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSocket {
    /// Socket cookie, unique per socket.
    pub cookie: u64,
    /// Owner; `None` for a socket nobody can be found for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ProcessId>,
    /// Tick at which the socket is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u64>,
    /// Local port (default `10000 + cookie % 50000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// Cookie of the listener the socket was accepted from: its owner
    /// record is the listener's, cloned (as the kernel's `BPF_F_CLONE`
    /// storage does), and its flows are inbound to `local_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_from: Option<u64>,
    /// Traffic per remote endpoint.
    #[serde(default)]
    pub flows: Vec<SimFlow>,
}

/// Traffic of one socket with one remote endpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFlow {
    /// Remote address.
    pub remote: IpAddr,
    /// Remote port.
    pub port: u16,
    /// IP protocol.
    #[serde(default = "default_protocol")]
    pub protocol: u8,
    /// Interface.
    #[serde(default = "default_ifindex")]
    pub ifindex: u32,
    /// First tick with traffic.
    pub from: u64,
    /// Last tick with traffic.
    pub to: u64,
    /// Sent per tick.
    pub tx: DirCounters,
    /// Received per tick.
    pub rx: DirCounters,
    /// TCP state the kernel would sample (RTT, segment counts); none: the
    /// flow carries no TCP sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SimTcp>,
    /// The flow's server name, as the name capture would report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SimName>,
}

/// A simulated flow's server name. Honours the source contract
/// ([`Reading::names`]): the first `after` ticks of the flow carry no
/// payload (a handshake), and the name is reported in the first reading
/// at a tick of at least `from + after`, once per kernel entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimName {
    /// The name.
    pub server_name: String,
    /// How it was learned.
    pub source: crate::source::NameSource,
    /// Header-only ticks before the name (and the first payload).
    #[serde(default)]
    pub after: u64,
}

impl SimFlow {
    /// Its traffic over the ticks `[lo, hi]`: header-only ticks (see
    /// [`SimName::after`]) without payload.
    #[must_use]
    pub fn traffic(&self, lo: u64, hi: u64) -> Traffic {
        let after = self.name.as_ref().map_or(0, |n| n.after);
        let first_payload = self.from.saturating_add(after);
        let headers =
            overlap(self.from, first_payload.saturating_sub(1), lo, hi) * u64::from(after > 0);
        let full = overlap(first_payload.max(self.from), self.to, lo, hi);
        let bare = |d: DirCounters| DirCounters {
            payload_bytes: 0,
            retrans_bytes: 0,
            ..d
        };
        Traffic {
            tx: mul(self.tx, full).saturating_add(mul(bare(self.tx), headers)),
            rx: mul(self.rx, full).saturating_add(mul(bare(self.rx), headers)),
        }
    }

    /// The flow's name as the source reports it.
    #[must_use]
    pub fn flow_name(&self) -> Option<crate::source::FlowName> {
        self.name.as_ref().map(|n| crate::source::FlowName {
            server_name: n.server_name.clone(),
            source: n.source,
        })
    }
}

/// A flow's TCP state: a constant smoothed RTT and segment counts per tick
/// (the kernel's cumulative counters are these times the counted ticks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTcp {
    /// Smoothed RTT, µs (0: no measurement yet).
    pub srtt_us: u32,
    /// Data segments sent per tick, retransmissions included.
    pub data_segs: u32,
    /// Segments retransmitted per tick.
    #[serde(default)]
    pub retrans_segs: u32,
}

/// Overflow traffic over a tick range.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimOverflow {
    /// First tick.
    pub from: u64,
    /// Last tick.
    pub to: u64,
    /// Sent per tick.
    pub tx: DirCounters,
    /// Received per tick.
    pub rx: DirCounters,
    /// Failed inserts per tick.
    #[serde(default)]
    pub failed_inserts: u64,
}

/// Errors of the simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading or writing a file failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TOML script did not parse.
    #[error("{}: {source}", path.display())]
    Toml {
        /// Which file.
        path: PathBuf,
        /// Why (with line and column).
        source: toml::de::Error,
    },
    /// A JSON script or state file did not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The script contradicts itself.
    #[error("invalid script: {0}")]
    Invalid(String),
}

impl Script {
    /// Loads a script (TOML, or JSON for `*.json`) and validates it.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse or is inconsistent.
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            op: "read script",
            path: path.to_owned(),
            source,
        })?;
        let script: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|source| SimError::Json {
                path: path.to_owned(),
                source,
            })?
        } else {
            toml::from_str(&text).map_err(|source| SimError::Toml {
                path: path.to_owned(),
                source,
            })?
        };
        script.validate()?;
        Ok(script)
    }

    /// Writes the script (TOML, or JSON for `*.json`).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), SimError> {
        let text = if path.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(self).map_err(|source| SimError::Json {
                path: path.to_owned(),
                source,
            })?
        } else {
            toml::to_string(self).map_err(|e| SimError::Invalid(e.to_string()))?
        };
        std::fs::write(path, text).map_err(|source| SimError::Io {
            op: "write script",
            path: path.to_owned(),
            source,
        })
    }

    /// Checks the script for contradictions: unique cookies, unique flows per
    /// socket, owners that exist and live while their flows send, `from <= to`,
    /// non-zero tick.
    ///
    /// # Errors
    /// [`SimError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Invalid(m));
        if self.tick_ms == 0 {
            return bad("tick_ms must be > 0".into());
        }
        let procs: HashMap<ProcessId, &SimProcess> =
            self.processes.iter().map(|p| (p.id(), p)).collect();
        if procs.len() != self.processes.len() {
            return bad("two processes with the same (pid, start_ticks)".into());
        }
        let mut cookies = HashSet::new();
        for s in &self.sockets {
            if !cookies.insert(s.cookie) {
                return bad(format!("cookie {} used twice", s.cookie));
            }
            let mut keys = HashSet::new();
            for f in &s.flows {
                if f.from > f.to {
                    return bad(format!("socket {}: flow with from > to", s.cookie));
                }
                if !keys.insert((f.remote, f.port, f.protocol)) {
                    return bad(format!(
                        "socket {}: two flows to {}:{}",
                        s.cookie, f.remote, f.port
                    ));
                }
                if let Some(owner) = s.owner {
                    let Some(p) = procs.get(&owner) else {
                        return bad(format!(
                            "socket {}: owner {owner:?} is not in processes",
                            s.cookie
                        ));
                    };
                    if f.from < p.start_tick || p.exit_tick.is_some_and(|e| f.to > e) {
                        return bad(format!(
                            "socket {}: traffic outside its process's lifetime",
                            s.cookie
                        ));
                    }
                }
            }
        }
        if self.resets.contains(&0) {
            return bad("a reset must be before a tick > 0".into());
        }
        for o in &self.overflow {
            if o.from > o.to {
                return bad("overflow with from > to".into());
            }
        }
        Ok(())
    }

    /// The last tick with any traffic.
    #[must_use]
    pub fn last_tick(&self) -> u64 {
        let flows = self
            .sockets
            .iter()
            .flat_map(|s| s.flows.iter().map(|f| f.to));
        flows
            .chain(self.overflow.iter().map(|o| o.to))
            .max()
            .unwrap_or(0)
    }

    /// Ground truth: all traffic of ticks in `ticks`, by process, remote,
    /// class and interface. Overflow is under [`OVERFLOW`] and
    /// [`DestClass::Unknown`]; ownerless sockets under [`UNATTRIBUTED`].
    #[must_use]
    pub fn truth(&self, ticks: RangeInclusive<u64>) -> Truth {
        let mut t = Truth::default();
        for s in &self.sockets {
            let owner = s.owner.unwrap_or(UNATTRIBUTED);
            for f in &s.flows {
                let n = overlap(f.from, f.to, *ticks.start(), *ticks.end());
                if n == 0 {
                    continue;
                }
                let traffic = f.traffic(*ticks.start(), *ticks.end());
                let raw = raw_addr(f.remote);
                add(
                    t.per_name
                        .entry((owner, f.name.as_ref().map(|n| n.server_name.clone())))
                        .or_default(),
                    traffic,
                );
                let class = classify_raw(&raw, ip_version(f.remote), f.ifindex);
                add(t.per_process.entry(owner).or_default(), traffic);
                add(
                    t.per_remote
                        .entry((owner, f.remote, f.port, f.protocol))
                        .or_default(),
                    traffic,
                );
                let (dir, port) = s.service(f.port);
                add(
                    t.per_service
                        .entry((owner, f.remote, port, dir, f.protocol))
                        .or_default(),
                    traffic,
                );
                add(t.per_class.entry(class).or_default(), traffic);
                add(
                    t.per_process_class.entry((owner, class)).or_default(),
                    traffic,
                );
                add(t.per_iface.entry(f.ifindex).or_default(), traffic);
            }
        }
        for o in &self.overflow {
            let n = overlap(o.from, o.to, *ticks.start(), *ticks.end());
            if n == 0 {
                continue;
            }
            let traffic = Traffic {
                tx: mul(o.tx, n),
                rx: mul(o.rx, n),
            };
            add(t.per_process.entry(OVERFLOW).or_default(), traffic);
            add(t.per_class.entry(DestClass::Unknown).or_default(), traffic);
            add(
                t.per_process_class
                    .entry((OVERFLOW, DestClass::Unknown))
                    .or_default(),
                traffic,
            );
            t.failed_inserts += o.failed_inserts * n;
        }
        t
    }
}

impl SimSocket {
    /// Its local port.
    #[must_use]
    pub fn local_port(&self) -> u16 {
        self.local_port
            .unwrap_or_else(|| u16::try_from(self.cookie % 50_000 + 10_000).unwrap_or(10_000))
    }

    /// The direction and service port of its flow to remote port `port`,
    /// as the script declares them: inbound to the local port when
    /// accepted from a listener, else outbound to the remote port.
    #[must_use]
    pub fn service(&self, port: u16) -> (ConnDir, u16) {
        if self.accepted_from.is_some() {
            (ConnDir::In, self.local_port())
        } else {
            (ConnDir::Out, port)
        }
    }
}

impl SimProcess {
    /// Identity.
    #[must_use]
    pub const fn id(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }

    /// As the resolver reports it.
    #[must_use]
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            id: self.id(),
            comm: self.comm.clone(),
            exe: self.exe.clone(),
            cmdline: self.cmdline.clone(),
            uid: self.uid,
            user: None,
            ppid: self.ppid,
            cgroup: self.cgroup.clone(),
        }
    }
}

/// What a script sends, summed several ways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Truth {
    /// Per process.
    pub per_process: BTreeMap<ProcessId, Traffic>,
    /// Per process and destination class.
    pub per_process_class: BTreeMap<(ProcessId, DestClass), Traffic>,
    /// Per (process, remote, remote port, protocol).
    pub per_remote: BTreeMap<(ProcessId, IpAddr, u16, u8), Traffic>,
    /// Per (process, remote, service port, direction, protocol), as the
    /// script declares each socket's side ([`SimSocket::service`]).
    pub per_service: BTreeMap<(ProcessId, IpAddr, u16, ConnDir, u8), Traffic>,
    /// Per destination class.
    pub per_class: BTreeMap<DestClass, Traffic>,
    /// Per interface (overflow has none).
    pub per_iface: BTreeMap<u32, Traffic>,
    /// Per (process, server name as the script gives it; `None`: the flow
    /// has none). Overflow has no name and is not here.
    pub per_name: BTreeMap<(ProcessId, Option<String>), Traffic>,
    /// Failed flow inserts.
    pub failed_inserts: u64,
}

impl Truth {
    /// Everything.
    #[must_use]
    pub fn total(&self) -> Traffic {
        self.per_class
            .values()
            .fold(Traffic::default(), |a, b| a.add(*b))
    }
}

fn add(acc: &mut Traffic, t: Traffic) {
    *acc = acc.add(t);
}

const fn mul(d: DirCounters, n: u64) -> DirCounters {
    DirCounters {
        packets: d.packets.saturating_mul(n),
        ip_bytes: d.ip_bytes.saturating_mul(n),
        payload_bytes: d.payload_bytes.saturating_mul(n),
        retrans_bytes: d.retrans_bytes.saturating_mul(n),
    }
}

/// Number of ticks in `[a, b] ∩ [c, d]`.
const fn overlap(a: u64, b: u64, c: u64, d: u64) -> u64 {
    let lo = if a > c { a } else { c };
    let hi = if b < d { b } else { d };
    if lo > hi { 0 } else { hi - lo + 1 }
}

fn raw_addr(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

const fn ip_version(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }
}

/// First counted tick of a flow starting at `from` in an entry whose epoch
/// is `e` (see [`SimSource`]'s `epoch`).
const fn from_epoch(from: u64, e: u64) -> u64 {
    let after = e.saturating_add(1);
    if from > after { from } else { after }
}

/// The constant fields of a socket's flow values: local endpoint and the
/// owner the kernel recorded.
fn base_value(socket: &SimSocket, owner: Option<&SimProcess>) -> FlowValue {
    let mut value = FlowValue {
        local_addr: raw_addr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        local_port: socket.local_port(),
        ..FlowValue::default()
    };
    if let Some(p) = owner {
        let mut comm = [0u8; 16];
        for (d, s) in comm.iter_mut().zip(p.comm.bytes().take(15)) {
            *d = s;
        }
        value.flags = FLOW_F_OWNED;
        value.owner = SockOwner {
            tgid: p.pid,
            tid: p.pid,
            uid: p.uid,
            start_boottime_ns: p.start_ticks * (1_000_000_000 / USER_HZ),
            sock_cookie: socket.accepted_from.unwrap_or(socket.cookie),
            comm,
            ..SockOwner::default()
        };
    }
    value
}

/// Counters for `payload` bytes in `packets` packets with 40 bytes of headers
/// each (IPv4 + TCP without options), for building scripts.
#[must_use]
pub const fn per_tick(packets: u64, payload: u64) -> DirCounters {
    DirCounters {
        packets,
        ip_bytes: payload + 40 * packets,
        payload_bytes: payload,
        retrans_bytes: 0,
    }
}

/// Builds scripts in code (tests, benchmarks).
#[derive(Clone, Debug)]
pub struct ScriptBuilder {
    script: Script,
}

impl ScriptBuilder {
    /// An empty script with ticks of `tick_ms`.
    #[must_use]
    pub fn new(tick_ms: u64) -> Self {
        Self {
            script: Script {
                tick_ms,
                max_flows: default_max_flows(),
                resets: Vec::new(),
                processes: Vec::new(),
                sockets: Vec::new(),
                overflow: Vec::new(),
            },
        }
    }

    /// Adds a process living from `start_tick` to `exit_tick`.
    pub fn process(
        &mut self,
        pid: u32,
        start_ticks: u64,
        comm: &str,
        lifetime: RangeInclusive<u64>,
    ) -> ProcessId {
        self.script.processes.push(SimProcess {
            pid,
            start_ticks,
            comm: comm.to_owned(),
            exe: Some(format!("/usr/bin/{comm}")),
            cmdline: Some(comm.to_owned()),
            uid: 1000,
            ppid: Some(1),
            cgroup: Some(format!("/system.slice/{comm}.service")),
            start_tick: *lifetime.start(),
            exit_tick: (*lifetime.end() != u64::MAX).then_some(*lifetime.end()),
        });
        ProcessId { pid, start_ticks }
    }

    /// Adds a socket.
    pub fn socket(
        &mut self,
        cookie: u64,
        owner: Option<ProcessId>,
        closed_at: Option<u64>,
    ) -> &mut Self {
        self.script.sockets.push(SimSocket {
            cookie,
            owner,
            closed_at,
            local_port: None,
            accepted_from: None,
            flows: Vec::new(),
        });
        self
    }

    /// Adds a socket accepted from listener `listener` on `local_port`
    /// (inbound: its flows' service port is `local_port`).
    pub fn accepted(
        &mut self,
        cookie: u64,
        owner: Option<ProcessId>,
        closed_at: Option<u64>,
        listener: u64,
        local_port: u16,
    ) -> &mut Self {
        self.script.sockets.push(SimSocket {
            cookie,
            owner,
            closed_at,
            local_port: Some(local_port),
            accepted_from: Some(listener),
            flows: Vec::new(),
        });
        self
    }

    /// Adds a flow to socket `cookie` (which must exist): `ticks` of
    /// constant traffic to `remote:port` (`"1.2.3.4:443"`), TCP on
    /// interface 2 (1 for loopback addresses).
    ///
    /// # Panics
    /// When `remote` does not parse or the socket does not exist (builder
    /// misuse in a test).
    #[expect(
        clippy::expect_used,
        reason = "builder for tests and benchmarks: misuse is a bug in the caller"
    )]
    pub fn flow(
        &mut self,
        cookie: u64,
        remote: &str,
        ticks: RangeInclusive<u64>,
        tx: DirCounters,
        rx: DirCounters,
    ) -> &mut Self {
        let sa: std::net::SocketAddr = remote.parse().expect("remote must be ip:port");
        let ifindex = if sa.ip().is_loopback() { 1 } else { 2 };
        // From the end: flows are usually added to the socket just added
        // (linear, not quadratic, for the 100k-socket benchmarks).
        let socket = self
            .script
            .sockets
            .iter_mut()
            .rev()
            .find(|s| s.cookie == cookie)
            .expect("socket exists");
        socket.flows.push(SimFlow {
            remote: sa.ip(),
            port: sa.port(),
            protocol: 6,
            ifindex,
            from: *ticks.start(),
            to: *ticks.end(),
            tx,
            rx,
            tcp: None,
            name: None,
        });
        self
    }

    /// Gives the flow added last a server name, reported after `after`
    /// header-only ticks (see [`SimName`]).
    ///
    /// # Panics
    /// When no flow was added yet (builder misuse in a test).
    pub fn name(
        &mut self,
        server_name: &str,
        source: crate::source::NameSource,
        after: u64,
    ) -> &mut Self {
        self.last_flow().name = Some(SimName {
            server_name: server_name.to_owned(),
            source,
            after,
        });
        self
    }

    /// Gives the flow added last TCP state (see [`SimTcp`]).
    ///
    /// # Panics
    /// When no flow was added yet (builder misuse in a test).
    pub fn tcp(&mut self, tcp: SimTcp) -> &mut Self {
        self.last_flow().tcp = Some(tcp);
        self
    }

    /// The flow added last.
    #[expect(
        clippy::expect_used,
        reason = "builder for tests and benchmarks: misuse is a bug in the caller"
    )]
    fn last_flow(&mut self) -> &mut SimFlow {
        self.script
            .sockets
            .last_mut()
            .and_then(|s| s.flows.last_mut())
            .expect("a flow was added")
    }

    /// Maps are recreated just before `tick`.
    pub fn reset_before(&mut self, tick: u64) -> &mut Self {
        self.script.resets.push(tick);
        self
    }

    /// Overflow traffic.
    pub fn overflow(
        &mut self,
        ticks: RangeInclusive<u64>,
        tx: DirCounters,
        rx: DirCounters,
        failed_inserts: u64,
    ) -> &mut Self {
        self.script.overflow.push(SimOverflow {
            from: *ticks.start(),
            to: *ticks.end(),
            tx,
            rx,
            failed_inserts,
        });
        self
    }

    /// The script, validated.
    ///
    /// # Errors
    /// When it is inconsistent.
    pub fn build(&self) -> Result<Script, SimError> {
        self.script.validate()?;
        Ok(self.script.clone())
    }
}

/// The simulated kernel's mutable state: what the drain did to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimState {
    /// Wall time of tick 0 (daemon mode).
    pub start_ms: u64,
    /// Per flow (index in script order: sockets, then their flows): the
    /// tick it was last retired at.
    pub retired: BTreeMap<usize, u64>,
    /// Cookies whose closed marks were forgotten.
    pub forgotten: Vec<u64>,
}

/// One flow of the script with its precomputed key.
#[derive(Clone, Debug)]
struct FlatFlow {
    key: FlowKey,
    socket: usize,
    flow: usize,
    /// The value's fields that never change (owner, local endpoint,
    /// interface), built once: a read then only fills in the counters.
    base: FlowValue,
}

/// Where the current tick comes from.
#[derive(Clone, Debug)]
enum Ticker {
    /// Set by the caller ([`SimSource::set_tick`]).
    Manual(u64),
    /// Wall clock since `SimState::start_ms`.
    Wall,
}

/// The simulated counter source.
#[derive(Debug)]
pub struct SimSource {
    script: Arc<Script>,
    flows: Vec<FlatFlow>,
    by_key: HashMap<FlowKey, usize>,
    state: SimState,
    ticker: Ticker,
    state_path: Option<PathBuf>,
    /// Retire calls that removed something (for tests).
    pub retire_calls: u64,
    /// Per flow: the kernel entry (`first_boottime_ns`) whose name was
    /// reported.
    named: HashMap<usize, u64>,
}

impl SimSource {
    /// A source whose tick the caller sets (starts at 0).
    #[must_use]
    pub fn new(script: Arc<Script>) -> Self {
        let mut flows = Vec::new();
        let proc_index: HashMap<ProcessId, usize> = script
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id(), i))
            .collect();
        for (si, s) in script.sockets.iter().enumerate() {
            let owner = s.owner.and_then(|id| proc_index.get(&id).copied());
            let base = base_value(s, owner.map(|i| &script.processes[i]));
            for (fi, f) in s.flows.iter().enumerate() {
                let key = FlowKey {
                    cookie: s.cookie,
                    remote_addr: raw_addr(f.remote),
                    remote_port: f.port,
                    ip_version: ip_version(f.remote),
                    protocol: f.protocol,
                    _pad: 0,
                };
                flows.push(FlatFlow {
                    key,
                    socket: si,
                    flow: fi,
                    base: FlowValue {
                        ifindex: f.ifindex,
                        ..base
                    },
                });
            }
        }
        let by_key = flows.iter().enumerate().map(|(i, f)| (f.key, i)).collect();
        Self {
            script,
            flows,
            by_key,
            state: SimState::default(),
            ticker: Ticker::Manual(0),
            state_path: None,
            retire_calls: 0,
            named: HashMap::new(),
        }
    }

    /// A wall-clock driven source whose state persists in `state_path`
    /// (created with `start_ms = now` if missing). See the module docs for
    /// why a crash can't change what it reports.
    ///
    /// # Errors
    /// When the state file cannot be read, parsed or created.
    pub fn persistent(script: Arc<Script>, state_path: &Path) -> Result<Self, SimError> {
        let mut me = Self::new(script);
        me.ticker = Ticker::Wall;
        me.state_path = Some(state_path.to_owned());
        match std::fs::read(state_path) {
            Ok(bytes) => {
                me.state = serde_json::from_slice(&bytes).map_err(|source| SimError::Json {
                    path: state_path.to_owned(),
                    source,
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                me.state.start_ms = unix_ms_now();
                me.save_state()?;
            }
            Err(source) => {
                return Err(SimError::Io {
                    op: "read sim state",
                    path: state_path.to_owned(),
                    source,
                });
            }
        }
        Ok(me)
    }

    /// The default state file of a script: `<script>.state`.
    #[must_use]
    pub fn state_path_for(script: &Path) -> PathBuf {
        let mut s = script.as_os_str().to_owned();
        s.push(".state");
        PathBuf::from(s)
    }

    /// Sets the current tick (manual mode).
    pub fn set_tick(&mut self, tick: u64) {
        self.ticker = Ticker::Manual(tick);
    }

    /// The current tick.
    #[must_use]
    pub fn tick(&self) -> u64 {
        match self.ticker {
            Ticker::Manual(t) => t,
            Ticker::Wall => unix_ms_now().saturating_sub(self.state.start_ms) / self.script.tick_ms,
        }
    }

    /// The state (retire ticks, forgotten cookies).
    #[must_use]
    pub const fn state(&self) -> &SimState {
        &self.state
    }

    /// The script.
    #[must_use]
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Replaces the state file atomically: temp file, fsync, rename, fsync
    /// of the directory.
    fn save_state(&self) -> Result<(), SimError> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        let io = |op, source| SimError::Io {
            op,
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&self.state).map_err(|source| SimError::Json {
            path: path.clone(),
            source,
        })?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("fsync directory of", e))?;
        }
        Ok(())
    }

    /// `e`: traffic of ticks after it counts in the current entry.
    fn epoch(&self, flow: Option<usize>, tick: u64) -> Option<u64> {
        let reset = self
            .script
            .resets
            .iter()
            .filter(|r| **r <= tick)
            .max()
            .map(|r| r.saturating_sub(1));
        let retired = flow.and_then(|f| self.state.retired.get(&f).copied());
        match (reset, retired) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ticks `(e, k] ∩ [from, to]` → (count, first tick).
    fn counted(&self, from: u64, to: u64, flow: Option<usize>, tick: u64) -> (u64, u64) {
        let lo = match self.epoch(flow, tick) {
            Some(e) => from.max(e + 1),
            None => from,
        };
        (overlap(lo, to, lo, tick), lo)
    }

    /// The kernel's value of flow `i` at `tick`, `None` when it has no entry.
    fn value_of(&self, i: usize, tick: u64) -> Option<FlowValue> {
        self.value_at(i, tick, self.reset_epoch(tick))
    }

    /// [`Self::value_of`] with the reset part of [`Self::epoch`] computed
    /// once per read.
    fn value_at(&self, i: usize, tick: u64, reset: Option<u64>) -> Option<FlowValue> {
        let ff = &self.flows[i];
        let f = &self.script.sockets[ff.socket].flows[ff.flow];
        let retired = self.state.retired.get(&i).copied();
        let lo = match (reset, retired) {
            (Some(a), Some(b)) => from_epoch(f.from, a.max(b)),
            (Some(e), None) | (None, Some(e)) => from_epoch(f.from, e),
            (None, None) => f.from,
        };
        let n = overlap(lo, f.to, lo, tick);
        if n == 0 {
            return None;
        }
        let mut value = ff.base;
        let t = f.traffic(lo, tick);
        value.tx = t.tx;
        value.rx = t.rx;
        if let Some(t) = f.tcp {
            let per = |x: u32| u32::try_from(u64::from(x).saturating_mul(n)).unwrap_or(u32::MAX);
            value.tcp = netmon_common::TcpSample {
                srtt_us8: t.srtt_us.saturating_mul(8),
                total_retrans: per(t.retrans_segs),
                data_segs_out: per(t.data_segs),
                ..netmon_common::TcpSample::default()
            };
        }
        value.first_boottime_ns = lo
            .saturating_mul(self.script.tick_ms)
            .saturating_mul(1_000_000)
            .saturating_add(1);
        Some(value)
    }

    /// The flow-independent part of [`Self::epoch`]: just before the last
    /// reset at or before `tick`.
    fn reset_epoch(&self, tick: u64) -> Option<u64> {
        self.script
            .resets
            .iter()
            .filter(|r| **r <= tick)
            .max()
            .map(|r| r.saturating_sub(1))
    }

    fn overflow_at(&self, tick: u64) -> OverflowCounters {
        let mut out = OverflowCounters::default();
        for o in &self.script.overflow {
            let (n, _) = self.counted(o.from, o.to, None, tick);
            out.tx = out.tx.saturating_add(mul(o.tx, n));
            out.rx = out.rx.saturating_add(mul(o.rx, n));
            out.failed_inserts += o.failed_inserts * n;
        }
        out
    }
}

impl CounterSource for SimSource {
    fn read(&mut self) -> Result<Reading, SourceError> {
        let tick = self.tick();
        let reset = self.reset_epoch(tick);
        let mut flows = Vec::with_capacity(self.flows.len());
        let mut names = HashMap::new();
        for i in 0..self.flows.len() {
            if let Some(value) = self.value_at(i, tick, reset) {
                let ff = &self.flows[i];
                let f = &self.script.sockets[ff.socket].flows[ff.flow];
                if let Some(n) = &f.name
                    && tick >= f.from.saturating_add(n.after)
                    && self.named.get(&i) != Some(&value.first_boottime_ns)
                    && let Some(name) = f.flow_name()
                {
                    self.named.insert(i, value.first_boottime_ns);
                    names.insert(ff.key, name);
                }
                let closed = self.script.sockets[self.flows[i].socket]
                    .closed_at
                    .is_some_and(|c| c <= tick);
                flows.push(FlowReading {
                    key: self.flows[i].key,
                    value,
                    closed,
                });
            }
        }
        Ok(Reading {
            flows,
            overflow: self.overflow_at(tick),
            max_flows: self.script.max_flows,
            released_by: rustc_hash::FxHashMap::default(),
            names,
        })
    }

    fn retire(&mut self, keys: &[FlowKey]) -> Result<Vec<(FlowKey, FlowValue)>, SourceError> {
        let tick = self.tick();
        let mut out = Vec::new();
        for key in keys {
            let Some(&i) = self.by_key.get(key) else {
                continue;
            };
            if let Some(value) = self.value_of(i, tick) {
                self.state.retired.insert(i, tick);
                out.push((*key, value));
            }
        }
        if !out.is_empty() {
            self.retire_calls += 1;
            // The removal is durable before the values are handed out.
            self.save_state()
                .map_err(|e| SourceError::Other(e.to_string()))?;
        }
        Ok(out)
    }

    fn forget_closed(&mut self, cookies: &[u64]) -> Result<(), SourceError> {
        if cookies.is_empty() {
            return Ok(());
        }
        self.state.forgotten.extend_from_slice(cookies);
        self.save_state()
            .map_err(|e| SourceError::Other(e.to_string()))
    }
}

/// Resolves owners from the script (every socket's owner is known up front).
#[derive(Clone, Debug)]
pub struct SimResolver {
    owners: HashMap<u64, ProcessInfo>,
    /// Cookies forgotten so far (for tests).
    pub forgotten: u64,
}

impl SimResolver {
    /// A resolver for `script`.
    #[must_use]
    pub fn new(script: &Script) -> Self {
        let procs: HashMap<ProcessId, &SimProcess> =
            script.processes.iter().map(|p| (p.id(), p)).collect();
        let owners = script
            .sockets
            .iter()
            .filter_map(|s| Some((s.cookie, procs.get(&s.owner?)?.info())))
            .collect();
        Self {
            owners,
            forgotten: 0,
        }
    }
}

impl Resolver for SimResolver {
    fn resolve(&mut self, reading: &Reading) -> Owners {
        let mut owners = Owners::default();
        for f in &reading.flows {
            if let Some(info) = self.owners.get(&f.key.cookie) {
                owners.insert_ref(f.key.cookie, info);
            }
        }
        owners
    }

    fn forget(&mut self, cookies: &[u64]) {
        self.forgotten += cookies.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Script {
        let mut b = ScriptBuilder::new(1000);
        let p = b.process(10, 1, "curl", 0..=u64::MAX);
        b.socket(1, Some(p), Some(5)).flow(
            1,
            "8.8.8.8:443",
            1..=4,
            per_tick(1, 100),
            per_tick(2, 300),
        );
        b.overflow(2..=3, per_tick(1, 10), per_tick(0, 0), 1);
        b.build().expect("valid")
    }

    #[test]
    fn counters_follow_ticks_and_retire_restarts_from_zero() {
        let s = Arc::new(script());
        let mut src = SimSource::new(s.clone());
        assert!(
            src.read().expect("reads").flows.is_empty(),
            "no traffic at tick 0"
        );
        src.set_tick(2);
        let r = src.read().expect("reads");
        assert_eq!(r.flows[0].value.tx.payload_bytes, 200);
        assert_eq!(r.overflow.failed_inserts, 1);
        let first = r.flows[0].value.first_boottime_ns;
        let key = r.flows[0].key;
        let retired = src.retire(&[key]).expect("retires");
        assert_eq!(retired[0].1.tx.payload_bytes, 200);
        src.set_tick(4);
        let r = src.read().expect("reads");
        assert_eq!(r.flows[0].value.tx.payload_bytes, 200, "ticks 3 and 4 only");
        assert_ne!(r.flows[0].value.first_boottime_ns, first, "a new entry");
        src.set_tick(5);
        assert!(src.read().expect("reads").flows[0].closed);
    }

    #[test]
    fn truth_sums_ranges() {
        let s = script();
        let t = s.truth(0..=u64::MAX);
        assert_eq!(
            t.per_process[&ProcessId {
                pid: 10,
                start_ticks: 1
            }]
                .rx
                .payload_bytes,
            4 * 300
        );
        assert_eq!(t.per_process[&OVERFLOW].tx.payload_bytes, 20);
        assert_eq!(t.failed_inserts, 2);
        assert_eq!(s.truth(3..=3).per_class[&DestClass::Internet].tx.packets, 1);
    }

    #[test]
    fn reset_recreates_entries() {
        let mut b = ScriptBuilder::new(1000);
        let p = b.process(10, 1, "x", 0..=u64::MAX);
        b.socket(1, Some(p), None)
            .flow(1, "10.0.0.2:80", 0..=9, per_tick(1, 1), per_tick(1, 1));
        b.reset_before(5);
        let mut src = SimSource::new(Arc::new(b.build().expect("valid")));
        src.set_tick(4);
        assert_eq!(
            src.read().expect("reads").flows[0].value.tx.payload_bytes,
            5
        );
        src.set_tick(5);
        assert_eq!(
            src.read().expect("reads").flows[0].value.tx.payload_bytes,
            1
        );
    }

    #[test]
    fn script_files_round_trip_and_invalid_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = script();
        for name in ["s.toml", "s.json"] {
            let path = dir.path().join(name);
            s.save(&path).expect("saves");
            assert_eq!(Script::load(&path).expect("loads"), s);
        }
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "tick_ms = 1000\nbogus = 1\n").expect("writes");
        let err = Script::load(&bad).expect_err("unknown field").to_string();
        assert!(err.contains("bad.toml") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn validation_rejects_traffic_after_exit() {
        let mut b = ScriptBuilder::new(1000);
        let p = b.process(10, 1, "x", 0..=3);
        b.socket(1, Some(p), None)
            .flow(1, "10.0.0.2:80", 0..=9, per_tick(1, 1), per_tick(1, 1));
        assert!(b.build().is_err());
    }

    #[test]
    fn persistent_state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.state");
        let s = Arc::new(script());
        let mut a = SimSource::persistent(s.clone(), &state).expect("opens");
        a.state.start_ms = 0; // far in the past: tick is huge, all traffic done
        a.save_state().expect("saves");
        let key = a.read().expect("reads").flows[0].key;
        assert_eq!(a.retire(&[key]).expect("retires").len(), 1);
        let mut b = SimSource::persistent(s, &state).expect("reopens");
        assert!(
            b.read().expect("reads").flows.is_empty(),
            "retired flow stays gone"
        );
    }
}
