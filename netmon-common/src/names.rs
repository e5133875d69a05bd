//! The one place that names each map, program and pin.
//!
//! The eBPF crate declares its maps with these exact names (`export_name`), and
//! userspace finds, pins and re-opens them by the same constants.

/// Flow counters: [`crate::FlowKey`] → [`crate::FlowValue`], a hash map.
pub const MAP_FLOWS: &str = "NETMON_FLOWS";
/// Socket owners recorded at socket creation: socket-local storage of
/// [`crate::SockOwner`], cloned into accepted sockets (`BPF_F_CLONE`).
pub const MAP_OWNERS: &str = "NETMON_OWNERS";
/// Sockets released (closed by their last fd holder): cookie → [`crate::ClosedSock`].
pub const MAP_CLOSED: &str = "NETMON_CLOSED";
/// Traffic that found the flow map full: a per-CPU array of one
/// [`crate::OverflowCounters`].
pub const MAP_OVERFLOW: &str = "NETMON_OVERFLOW";

/// The `.rodata` global holding [`crate::TaskOffsets`], set by the loader from
/// the running kernel's BTF before the programs are verified.
pub const GLOBAL_TASK_OFFSETS: &str = "NETMON_TASK_OFFSETS";

/// cgroup_skb program counting packets leaving sockets.
pub const PROG_EGRESS: &str = "netmon_egress";
/// cgroup_skb program counting packets reaching sockets.
pub const PROG_INGRESS: &str = "netmon_ingress";
/// cgroup/sock_create program recording a new socket's owner.
pub const PROG_SOCK_CREATE: &str = "netmon_sock_create";
/// cgroup/sock_release program marking a socket closed.
pub const PROG_SOCK_RELEASE: &str = "netmon_sock_release";

/// All programs, in the order the loader attaches them: ownership first, so no
/// socket created during attach is counted without an owner it could have had.
pub const PROGRAMS: [&str; 7] = [
    PROG_SOCK_CREATE,
    PROG_SOCK_RELEASE,
    PROG_EGRESS,
    PROG_INGRESS,
    PROG_EXEC,
    PROG_FORK,
    PROG_UDP_DROP,
];

/// All maps userspace pins.
pub const MAPS: [&str; 5] = [MAP_FLOWS, MAP_OWNERS, MAP_CLOSED, MAP_OVERFLOW, MAP_EXECS];

/// Default bpffs directory under which maps and links are pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netmon";

/// Default capacity of [`MAP_FLOWS`]: a busy server's sockets, with room for
/// unconnected UDP sockets that talk to several peers.
pub const DEFAULT_MAX_FLOWS: u32 = 262_144;
/// Default capacity of [`MAP_CLOSED`].
pub const DEFAULT_MAX_CLOSED: u32 = 65_536;

/// Process identity at exec: [`crate::exec::ExecKey`] →
/// [`crate::exec::ExecIdentity`], an LRU hash (bounded: when full, the
/// least recently used entry is evicted).
pub const MAP_EXECS: &str = "NETMON_EXECS";
/// Per-CPU scratch space where `netmon_exec` assembles one
/// [`crate::exec::ExecIdentity`] (too large for the BPF stack). Not pinned.
pub const MAP_EXEC_SCRATCH: &str = "NETMON_EXEC_SCRATCH";
/// The `.rodata` global holding [`crate::exec::ExecOffsets`].
pub const GLOBAL_EXEC_OFFSETS: &str = "NETMON_EXEC_OFFSETS";
/// Raw tracepoint program on `sched_process_exec` recording each new
/// program's exe path and arguments.
pub const PROG_EXEC: &str = "netmon_exec";
/// The raw tracepoint [`PROG_EXEC`] attaches to.
pub const TRACEPOINT_EXEC: &str = "sched_process_exec";
/// Capacity of [`MAP_EXECS`]: execs between two drains that the drain can
/// still name after the process exited. Preallocated (LRU maps are), about
/// 1 KiB an entry.
pub const DEFAULT_MAX_EXECS: u32 = 8192;
/// Raw tracepoint program on `sched_process_fork` copying a parent's exec
/// record to a new child process (which runs the parent's program until it
/// execs).
pub const PROG_FORK: &str = "netmon_fork";
/// The raw tracepoint [`PROG_FORK`] attaches to.
pub const TRACEPOINT_FORK: &str = "sched_process_fork";
/// Raw tracepoint program on `udp_fail_queue_rcv_skb` moving a datagram the
/// kernel dropped for a full receive buffer (after the ingress hook counted
/// it) into its flow's rx `retrans_bytes`, so rx app bytes exclude it.
pub const PROG_UDP_DROP: &str = "netmon_udp_drop";
/// The raw tracepoint [`PROG_UDP_DROP`] attaches to.
pub const TRACEPOINT_UDP_DROP: &str = "udp_fail_queue_rcv_skb";
/// Interface counters of the tc programs: a per-CPU hash of
/// [`crate::iface::IfaceKey`] → [`crate::iface::IfaceCounters`]. Pinned with
/// the other maps but listed apart ([`IFACE_MAPS`]) so [`MAPS`] stays the
/// socket side's list.
pub const MAP_IFACES: &str = "NETMON_IFACES";
/// Maps of the interface side, pinned like [`MAPS`].
pub const IFACE_MAPS: [&str; 5] = [
    MAP_IFACES,
    MAP_DEVICES,
    MAP_LAN,
    MAP_IFACE_SLOTS,
    MAP_DEVICE_SLOTS,
];
/// Interface counters in slots: a per-CPU array of
/// [`crate::iface::IFACE_SLOTS`] [`crate::iface::IfaceSlot`]s, the fast path
/// in front of [`MAP_IFACES`] (see `crate::iface`). A load by an older
/// netmon has none.
pub const MAP_IFACE_SLOTS: &str = "NETMON_IFACE_SLOTS";
/// Per-device counters in slots: a per-CPU array of
/// [`crate::device::DEVICE_SLOTS`] [`crate::device::DeviceSlot`]s, the fast
/// path in front of [`MAP_DEVICES`] (see `crate::device`). A load by an
/// older netmon has none.
pub const MAP_DEVICE_SLOTS: &str = "NETMON_DEVICE_SLOTS";
/// Per-device counters of the tc programs on LAN interfaces: a per-CPU hash
/// of [`crate::device::DeviceKey`] → [`crate::iface::IfaceCounters`].
pub const MAP_DEVICES: &str = "NETMON_DEVICES";
/// LAN interfaces: a hash of ifindex (u32) → `crate::device::LAN_*` flags,
/// written by the loader.
pub const MAP_LAN: &str = "NETMON_LAN";
/// Capacity of [`MAP_DEVICES`]: 2 directions × 4 classes per device and
/// interface (most devices use 3–5 keys), so about 1000 devices; the rest
/// goes to the overflow keys (`crate::device::DEVICE_OVERFLOW_MAC`).
pub const DEFAULT_MAX_DEVICE_KEYS: u32 = 8192;
/// Capacity of [`MAP_LAN`].
pub const MAX_LAN_IFACES: u32 = 1024;
/// tc (tcx) program counting what a watched interface receives.
pub const PROG_TC_INGRESS: &str = "netmon_tc_ingress";
/// tc (tcx) program counting what a watched interface sends.
pub const PROG_TC_EGRESS: &str = "netmon_tc_egress";
/// Prefix of the pinned tc links: `links/<prefix><ingress|egress>_<ifindex>`
/// (bpffs names cannot hold the dots some interface names have).
pub const TC_LINK_PREFIX: &str = "tc_";
/// Capacity of [`MAP_IFACES`]: 2 directions × (4 classes + the baseline)
/// per interface, for over 1600 interfaces.
pub const DEFAULT_MAX_IFACE_KEYS: u32 = 16_384;
