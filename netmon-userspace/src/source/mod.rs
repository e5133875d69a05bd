//! Where counters come from: the [`CounterSource`] trait.
//!
//! The kernel implementation (`crate::kernel::reader::KernelSource`) reads the
//! pinned eBPF maps; a simulated implementation (`sim`) replays a traffic
//! script so the drain, store and query logic are tested without root.
//!
//! Contract every implementation keeps (the drain relies on it):
//! 1. A flow's counters are monotonic while its entry exists. A flow whose
//!    counters are lower than last read was recreated (map reset): the drain
//!    treats it as a reset, never as a negative delta.
//! 2. A flow is removed only through [`CounterSource::retire`], which returns
//!    the final value atomically with the removal, so no byte counted before
//!    the removal is lost.
//! 3. Overflow counters are monotonic too (summed over CPUs).

pub mod sim;

use std::collections::HashMap;

use netmon_common::{
    FlowKey, FlowValue, OverflowCounters, SockOwner,
    iface::{IfaceCounters, IfaceKey},
};

/// One flow as read from the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowReading {
    /// Socket cookie and remote endpoint.
    pub key: FlowKey,
    /// Counters, owner recorded by the kernel, local endpoint.
    pub value: FlowValue,
    /// The socket was released (its last fd closed). More packets can still
    /// follow (queued data, FIN, retransmits).
    pub closed: bool,
}

/// Everything read in one drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Every flow currently in the source.
    pub flows: Vec<FlowReading>,
    /// Traffic that found the flow map full, summed over CPUs.
    pub overflow: OverflowCounters,
    /// Capacity of the flow map (for fill level reporting).
    pub max_flows: u32,
    /// The process that released each closed socket of `flows` (the last
    /// fd holder), by cookie, where the source knows it. Keyed by kernel
    /// socket cookies (nobody outside picks them): FxHash, the cheapest
    /// hash for a map rebuilt at every read under connection churn.
    pub released_by: rustc_hash::FxHashMap<u64, SockOwner>,
    /// Server names learned for flows of `flows` since the previous read,
    /// each flow reported once (the drain keeps it for the flow's life).
    ///
    /// Contract: a flow that shows sent or received payload in a reading
    /// has its name (if the source will ever know one) in that reading or
    /// an earlier one, so the drain may decide a flow's name at the first
    /// reading with payload (or at its close/retire) and never revise it.
    pub names: HashMap<FlowKey, FlowName>,
}

/// The name a flow's server is known by, and how netmon learned it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FlowName {
    /// Lower-case host name without a trailing dot (e.g. `www.example.com`).
    pub server_name: String,
    /// Where the name came from.
    pub source: NameSource,
}

/// Where a flow's server name came from, best first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// TLS ClientHello server name indication.
    Sni,
    /// HTTP/1 `Host` header.
    Host,
    /// SNI of a QUIC Initial packet (decrypted with the public Initial keys).
    Quic,
    /// A DNS answer the same process received for the remote address.
    Dns,
}

/// Interface counters (the tc programs) read in one drain.
///
/// Contract: a key's counters are monotonic while it exists, like a flow's;
/// keys go only through [`CounterSource::forget_ifaces`], and only for
/// interfaces listed in `gone` (which move no more packets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceReading {
    /// Every traffic key (the loader's baselines excluded), summed over CPUs.
    pub counters: Vec<(IfaceKey, IfaceCounters)>,
    /// Current names of the interfaces in `counters` that still exist.
    pub names: Vec<(u32, String)>,
    /// Indexes in `counters` (or with baselines only) whose interface no
    /// longer exists.
    pub gone: Vec<u32>,
    /// Per-device counters of LAN interfaces, summed over CPUs (monotonic
    /// like `counters`; removed with their interface).
    pub devices: Vec<(netmon_common::device::DeviceKey, IfaceCounters)>,
}

/// Errors reading or changing a counter source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A kernel map operation failed.
    #[error("{op} on map {map}: {source}")]
    Map {
        /// What was attempted.
        op: &'static str,
        /// Which map.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: aya::maps::MapError,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

/// A source of per-flow counters.
pub trait CounterSource {
    /// Reads all flows, the closed marks and the overflow counters.
    ///
    /// # Errors
    /// When the underlying maps cannot be read.
    fn read(&mut self) -> Result<Reading, SourceError>;

    /// Removes `keys` and returns each removed flow's final value, read
    /// atomically with its removal. Keys already gone are skipped.
    ///
    /// # Errors
    /// When the underlying maps cannot be changed.
    fn retire(&mut self, keys: &[FlowKey]) -> Result<Vec<(FlowKey, FlowValue)>, SourceError>;

    /// Drops the closed marks of sockets that have no flows left.
    ///
    /// # Errors
    /// When the underlying maps cannot be changed.
    fn forget_closed(&mut self, cookies: &[u64]) -> Result<(), SourceError>;

    /// Reads the interface counters. Sources without interface counting
    /// return none (the default).
    ///
    /// # Errors
    /// When the underlying maps cannot be read.
    fn read_ifaces(&mut self) -> Result<IfaceReading, SourceError> {
        Ok(IfaceReading::default())
    }

    /// Removes every key of the interfaces `ifindexes` (gone, their final
    /// counters committed durably). The default has nothing to remove.
    ///
    /// # Errors
    /// When the underlying maps cannot be changed.
    fn forget_ifaces(&mut self, ifindexes: &[u32]) -> Result<(), SourceError> {
        let _ = ifindexes;
        Ok(())
    }
}
