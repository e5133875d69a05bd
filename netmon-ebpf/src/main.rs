//! netmon's eBPF programs.
//!
//! - [`cgroup_skb`]: `netmon_egress` / `netmon_ingress` count every packet of
//!   every socket in the attached cgroup subtree into the flow map.
//! - [`sock`]: `netmon_sock_create` records who created a socket (socket-local
//!   storage, cloned into accepted sockets); `netmon_sock_release` marks a
//!   socket closed so userspace can retire its flows once read.
//! - [`exec`]: `netmon_exec` records each new program's exe path and
//!   arguments at exec, so processes that exit before a drain keep a name.
//!
//! - [`capture`]: called from the cgroup_skb programs, copies each flow's
//!   first outgoing payload and every DNS answer to a ring buffer, so
//!   userspace can name flows.
//!
//! - [`udp_drop`]: `netmon_udp_drop` moves UDP datagrams the kernel drops
//!   for a full receive buffer (already counted at ingress) into the flow's
//!   rx `retrans_bytes`.
//!
//! - [`tc`]: `netmon_tc_ingress` / `netmon_tc_egress` count everything a
//!   watched interface receives and sends, split by socket class.
//!
//! The maps are declared in [`maps`]; their names and value types come from
//! `netmon-common`, the one place that defines the contract.
#![no_std]
#![no_main]
// Atomic adds: the bpf target has no CAS, so core's atomics lack fetch_add.
#![feature(core_intrinsics)]
// `asm!` on the bpf target: word loads from packet memory (headers.rs).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod capture;
mod cgroup_skb;
mod exec;
mod headers;
mod maps;
mod sock;
mod tc;
mod udp_drop;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs that can reach a panic, so this is
    // never executed; `unreachable_unchecked` keeps it out of the object.
    unsafe { core::hint::unreachable_unchecked() }
}

/// GPL-compatible: `bpf_probe_read_kernel` and `bpf_get_current_task` are
/// GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
