//! The kernel reader: loads, attaches and pins the eBPF programs ([`loader`]),
//! and reads their maps ([`reader`]). It never touches the store.
//!
//! Pin layout under the pin directory (default `/sys/fs/bpf/netmon`):
//! `maps/<MAP>` for every map in `netmon_common::names::MAPS`,
//! `progs/<PROGRAM>` and `links/<PROGRAM>` for every program; the interface
//! side ([`tc`]) adds `maps/NETMON_IFACES`, `progs/netmon_tc_ingress`,
//! `progs/netmon_tc_egress` and one `links/tc_<ingress|egress>_<ifindex>`
//! per watched interface and direction. While the links
//! are pinned the programs stay attached and keep counting, with or without a
//! daemon; a restarted daemon re-opens the same maps, so no byte is lost or
//! counted twice across restarts.
pub mod bpf_sys;
pub mod capture;
pub mod devices;
pub mod error;
pub mod exec_offsets;
pub mod execs;
pub mod linkwatch;
pub mod loader;
pub mod neigh;
pub mod pins;
pub mod reader;
pub mod sysfs;
pub mod task_offsets;
pub mod tc;

use std::path::PathBuf;

pub use error::KernelError;
use netmon_common::names::{DEFAULT_MAX_CLOSED, DEFAULT_MAX_FLOWS, DEFAULT_PIN_DIR};

/// Where the kernel side lives and how big its maps are.
#[derive(Clone, Debug, clap::Args)]
pub struct KernelArgs {
    /// bpffs directory the maps and links are pinned under.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// cgroup v2 directory to attach to (counts every socket created in
    /// that subtree). Default: the root of the cgroup v2 hierarchy.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Capacity of the flow map (socket × remote endpoint). When full, traffic
    /// is counted as overflow.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_flows: u32,
    /// Capacity of the closed-socket map.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLOSED, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_closed: u32,
    /// Interfaces to count with the tc programs (glob, repeatable).
    /// Default: every interface that is up, except loopback.
    #[arg(long = "watch-interface", value_name = "GLOB")]
    pub watch: Option<Vec<String>>,
    /// LAN interfaces (glob, repeatable; among the watched ones): their
    /// devices (MAC addresses) are counted, and traffic forwarded to or
    /// from them is local.
    #[arg(long = "lan-interface", value_name = "GLOB")]
    pub lan: Option<Vec<String>>,
    /// Capture server names (`[names] enabled`): the daemon turns the
    /// kernel's name capture on and reads it (see [`capture`]).
    #[arg(skip = true)]
    pub names: bool,
}

impl Default for KernelArgs {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            cgroup: None,
            max_flows: DEFAULT_MAX_FLOWS,
            max_closed: DEFAULT_MAX_CLOSED,
            watch: None,
            lan: None,
            names: true,
        }
    }
}
