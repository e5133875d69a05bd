//! Harness for netmon's kernel test suite.
//!
//! The suite is black-box: it drives the real `netmon` binary (path from
//! `NETMON_BIN`) and real workload processes (`netmon-workload`, built from
//! this crate), and compares what netmon reports with two independent kinds
//! of ground truth: the byte counts the workloads measure themselves, and the
//! kernel's own MIB counters of the network namespaces the traffic runs in.
//!
//! Every piece of kernel state a test creates is held by a guard whose `Drop`
//! removes it, also when the test panics:
//! - [`cgroup::CgroupGuard`]: a child cgroup v2 directory (kills what is left);
//! - [`netns::Netns`] / [`netns::NetnsPair`]: network namespaces joined by a
//!   veth pair, quiet (no ARP, ND, DAD, router solicitations) and static;
//! - [`netmon::Netmon`]: `netmon load` into a unique bpffs pin dir,
//!   `netmon unload` on drop;
//! - [`workload::Workload`]: a child process, killed and reaped on drop;
//! - [`prometheus::Prometheus`]: a real Prometheus scraping test daemons.
//!
//! Panics are the failure mode by design: this crate exists only to fail
//! tests with a clear message (`#[track_caller]` keeps the caller's location),
//! and the guards clean up during unwinding. Code that runs inside `Drop`
//! never panics; it reports problems on stderr.
//!
//! Tests call [`require_root`] first: without root they print a loud
//! `SKIPPED: not root` and return, except under `CI=true`, where a kernel
//! suite that quietly skips would be a defect, so they panic.

pub mod bpf_sys;
pub mod cgroup;
pub mod check;
pub mod cmd;
pub mod daemon;
pub mod mib;
pub mod netmon;
pub mod netns;
pub mod procfs;
pub mod prometheus;
pub mod report;
pub mod root;
pub mod router;
pub mod scenario;
pub mod shaping;
pub mod snapshot;
pub mod workload;

pub use root::require_root;

/// Unique suffix for names of kernel objects (cgroups, namespaces, pin dirs)
/// created by this process: `<pid>-<n>`.
#[must_use]
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Path of the `netmon-workload` binary, for integration tests (cargo sets
/// `CARGO_BIN_EXE_*` only when compiling them).
#[macro_export]
macro_rules! workload_exe {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_netmon-workload"))
    };
}
