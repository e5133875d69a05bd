//! `netmon_udp_drop`: UDP datagrams the kernel drops after the ingress hook
//! counted them.
//!
//! The cgroup ingress hook runs in `udp_queue_rcv_one_skb` (IPv4) and
//! `udpv6_queue_rcv_one_skb` (IPv6) through `sk_filter_trim_cap`, before the
//! datagram is queued. When the socket's receive buffer is full the queue
//! refuses it (`-ENOMEM`, counted as `RcvbufErrors`; `-ENOBUFS` when the
//! protocol's memory limit is hit, counted as `MemErrors`) and both paths
//! fire the raw tracepoint `udp_fail_queue_rcv_skb` (`TP_PROTO(int rc,
//! struct sock *sk, struct sk_buff *skb)` on 6.10 and later) right before
//! freeing it: the application never reads those bytes.
//!
//! The hook remembers, per CPU, the socket, flow key and payload of the last
//! UDP datagram it counted ([`crate::maps::NETMON_UDP_LAST`]: one per-CPU
//! lookup and a few stores per received UDP datagram); this program, when
//! the dropping socket is that socket, adds the payload to the flow's rx
//! `retrans_bytes` (one atomic add), so rx `app_bytes` is what the program
//! can read. Between the hook and the tracepoint the same CPU runs only this
//! datagram's receive path (a softirq, or a process with bottom halves
//! off), so the remembered datagram is the dropped one; the socket compare
//! guards the case of a socket outside the attached cgroup, whose hook does
//! not run. Nothing is read from kernel structures, so no offsets are
//! needed. A datagram whose flow went to overflow (map full) stays counted.
//! Drops before the queue (bad checksum, a socket filter) never reach the
//! queue nor this tracepoint; the socket filter drops after the hook are
//! not subtracted (the README says so).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext as _,
    bindings::__sk_buff,
    macros::raw_tracepoint,
    programs::{RawTracePointContext, SkBuffContext},
};
use netmon_common::FlowKey;

use crate::maps::{NETMON_FLOWS, NETMON_UDP_LAST};

/// Called by the ingress hook for every UDP datagram it counted: remembers
/// it as this CPU's last one.
#[inline(always)]
pub(crate) fn remember(ctx: &SkBuffContext, key: &FlowKey, payload: u32) {
    let Some(last) = NETMON_UDP_LAST.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: reading `__sk_buff.sk` of the hook's own context; the pointer
    // is only stored as a number, to be compared (never dereferenced).
    let sk = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).__bindgen_anon_2.sk } as u64;
    // SAFETY: `last` is this CPU's slot; nothing else runs on this CPU while
    // the program does. Aligned field stores.
    unsafe {
        core::ptr::addr_of_mut!((*last).sk).write(sk);
        core::ptr::addr_of_mut!((*last).payload).write(u64::from(payload));
        core::ptr::addr_of_mut!((*last).key).write(*key);
    }
}

#[raw_tracepoint(tracepoint = "udp_fail_queue_rcv_skb")]
pub fn netmon_udp_drop(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(1);
    let Some(last) = NETMON_UDP_LAST.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, as in `remember`.
    let (seen, payload) = unsafe { ((*last).sk, (*last).payload) };
    if sk == 0 || seen != sk {
        return 0;
    }
    // SAFETY: as above; the key was fully written by `remember`. The slot is
    // consumed so one datagram is never subtracted twice.
    let key = unsafe {
        core::ptr::addr_of_mut!((*last).sk).write(0);
        *core::ptr::addr_of!((*last).key)
    };
    if let Some(value) = NETMON_FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live flow entry; its counters change only atomically.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*value).rx.retrans_bytes),
                payload,
            );
        }
    }
    0
}
