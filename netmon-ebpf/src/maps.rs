//! The maps, named exactly as `netmon_common::names` says (`NETMON_*`).

use aya_ebpf::{
    bindings::{BPF_F_CLONE, BPF_F_NO_PREALLOC, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE},
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use netmon_common::exec::{ExecIdentity, ExecKey, ExecOffsets};
use netmon_common::names::DEFAULT_MAX_EXECS;
use netmon_common::{
    ClosedSock, FlowKey, FlowValue, OverflowCounters, SockOwner, TaskOffsets,
    names::{DEFAULT_MAX_CLOSED, DEFAULT_MAX_FLOWS},
};

/// Flow counters. Not preallocated: memory grows with live flows, and the
/// loader resizes it (`--max-flows`). When full, inserts fail and the packet
/// goes to [`NETMON_OVERFLOW`].
#[btf_map]
pub static NETMON_FLOWS: HashMap<
    FlowKey,
    FlowValue,
    { DEFAULT_MAX_FLOWS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Closed sockets: cookie → when released.
#[btf_map]
pub static NETMON_CLOSED: HashMap<
    u64,
    ClosedSock,
    { DEFAULT_MAX_CLOSED as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// Scratch space for the flow value a new flow's first packet builds before
/// inserting it: 192 bytes that would not fit the verifier's 512-byte stack
/// next to the caller's frame. Per CPU, so a program run owns its slot.
/// Not pinned: nothing outside the programs reads it.
#[btf_map]
pub static NETMON_SCRATCH: PerCpuArray<FlowValue, 1> = PerCpuArray::new();

/// The last UDP datagram the ingress hook counted on this CPU: its socket
/// (the kernel pointer, only ever compared), its flow key and payload. The
/// UDP receive path runs the hook (`sk_filter_trim_cap`) and, when the
/// receive queue refuses the datagram, the `udp_fail_queue_rcv_skb`
/// tracepoint on the same CPU with nothing in between that receives on
/// another socket, so `netmon_udp_drop` finds here the flow the dropped
/// datagram was counted in. Not pinned.
#[btf_map]
pub static NETMON_UDP_LAST: PerCpuArray<UdpLast, 1> = PerCpuArray::new();

/// Value of [`NETMON_UDP_LAST`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UdpLast {
    /// The receiving socket's kernel address; 0 once consumed.
    pub sk: u64,
    /// Payload bytes the hook counted for the datagram.
    pub payload: u64,
    /// The flow the datagram was counted in.
    pub key: FlowKey,
}

/// Traffic of flows that could not be inserted (map full).
#[btf_map]
pub static NETMON_OVERFLOW: PerCpuArray<OverflowCounters, 1> = PerCpuArray::new();

/// Socket-local storage of [`SockOwner`], declared by hand in the BTF map
/// format because aya-ebpf's `SkStorage` cannot carry `BPF_F_CLONE` (which
/// makes accepted sockets inherit the listener's owner).
#[repr(C)]
pub struct OwnerStorage {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const SockOwner,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; (BPF_F_NO_PREALLOC | BPF_F_CLONE) as usize],
}

// SAFETY: the fields are placeholder pointers that only describe the map in
// BTF; they are never dereferenced.
unsafe impl Sync for OwnerStorage {}

impl OwnerStorage {
    /// The map pointer to pass to `bpf_sk_storage_*` helpers.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }
}

/// Socket owners, see [`OwnerStorage`].
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "NETMON_OWNERS")]
pub static NETMON_OWNERS: OwnerStorage = OwnerStorage {
    r#type: core::ptr::null(),
    key: core::ptr::null(),
    value: core::ptr::null(),
    max_entries: core::ptr::null(),
    map_flags: core::ptr::null(),
};

/// `task_struct` offsets, written by the loader into `.rodata` before load
/// (`netmon_common::names::GLOBAL_TASK_OFFSETS`). Read with `read_volatile` so
/// the compiler does not fold the zero initializer.
#[unsafe(no_mangle)]
pub static NETMON_TASK_OFFSETS: TaskOffsets = TaskOffsets {
    group_leader: 0,
    start_boottime: 0,
};

/// Process identity at exec, see `netmon_common::exec`. LRU: when full, the
/// least recently used entry makes room (a process exec'd long ago, whose
/// identity userspace can still read from `/proc` if it lives), so the
/// program never fails to record and the map never grows past its size.
#[btf_map]
pub static NETMON_EXECS: LruHashMap<ExecKey, ExecIdentity, { DEFAULT_MAX_EXECS as usize }> =
    LruHashMap::new();

/// State of `netmon_exec`'s dentry walk, kept in map memory on purpose
/// (see `exec::exe_path`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Walk {
    /// Current `struct dentry *`.
    pub dentry: u64,
    /// Current `struct vfsmount *`.
    pub vfsmnt: u64,
    /// The `struct mount *` around it.
    pub mnt: u64,
    /// Where the path assembled so far starts in `ExecIdentity::exe`.
    pub cursor: u64,
}

/// `netmon_exec`'s per-CPU working space: the record being assembled (too
/// large for the 512-byte BPF stack), then copied into [`NETMON_EXECS`].
#[repr(C)]
pub struct ExecScratch {
    /// The record.
    pub id: ExecIdentity,
    /// The dentry walk.
    pub walk: Walk,
}

/// One [`ExecScratch`] per CPU.
#[btf_map]
pub static NETMON_EXEC_SCRATCH: PerCpuArray<ExecScratch, 1> = PerCpuArray::new();

/// Kernel struct offsets for `netmon_exec`, written by the loader into
/// `.rodata` before load (`netmon_common::names::GLOBAL_EXEC_OFFSETS`).
#[unsafe(no_mangle)]
pub static NETMON_EXEC_OFFSETS: ExecOffsets = ExecOffsets::UNKNOWN;
/// Interface counters of the tc programs, per CPU (see
/// `netmon_common::iface`). Preallocated: a handful of keys per interface.
#[btf_map]
pub static NETMON_IFACES: aya_ebpf::btf_maps::PerCpuHashMap<
    netmon_common::iface::IfaceKey,
    netmon_common::iface::IfaceCounters,
    { netmon_common::names::DEFAULT_MAX_IFACE_KEYS as usize },
> = aya_ebpf::btf_maps::PerCpuHashMap::new();
/// Per-device counters of the tc programs on LAN interfaces, per CPU (see
/// `netmon_common::device`).
#[btf_map]
pub static NETMON_DEVICES: aya_ebpf::btf_maps::PerCpuHashMap<
    netmon_common::device::DeviceKey,
    netmon_common::iface::IfaceCounters,
    { netmon_common::names::DEFAULT_MAX_DEVICE_KEYS as usize },
> = aya_ebpf::btf_maps::PerCpuHashMap::new();
/// LAN interfaces: ifindex → `netmon_common::device::LAN_*` flags, written
/// by the loader; read by the tc programs.
#[btf_map]
pub static NETMON_LAN: HashMap<u32, u32, { netmon_common::names::MAX_LAN_IFACES as usize }> =
    HashMap::new();
