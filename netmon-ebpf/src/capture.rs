//! Name capture from the cgroup_skb programs (see `netmon_common::capture`).
//!
//! [`packet`] runs for every packet, before it is counted, with the flow's
//! entry when there is one. What it costs per packet:
//! - egress: nothing for packets without payload; for a TCP packet with
//!   payload (or a UDP one to port 443), one load of the flow's flags and a
//!   test of [`FLOW_F_CAPTURED`];
//! - ingress: a compare of the source port with 53.
//!
//! Only a flow's first payload (bit clear) and DNS answers take the slow
//! path ([`copy`], not inlined): read the capture switch, read the owner
//! from socket storage, copy at most [`CAPTURE_MAX`] payload bytes with
//! `bpf_skb_load_bytes` into a per-CPU scratch record and write it to the
//! ring with `bpf_ringbuf_output` (only the bytes used). Then, for a first
//! payload, the bit is set (atomic OR), after the record is in the ring: a
//! concurrent packet of the same flow that sees the bit set is counted after
//! the record exists (the `Reading::names` ordering promise); two that
//! both see it clear both copy (a duplicate userspace ignores).
//!
//! A flow's very first packet has no entry yet (`value` null): a first
//! datagram with payload (UDP, TCP fast open) is copied without setting the
//! bit, so the flow's next payload is copied once more. A TCP flow's first
//! egress packet is its SYN (no payload), so in practice only UDP/443 flows
//! send two records.
//!
//! With capture off (`[names] enabled = false`: the config map's flag 0)
//! nothing is copied, and the bit is still set so each flow takes the slow
//! path once.

use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::{
    EbpfContext as _,
    btf_maps::{Array, PerCpuArray, RingBuf},
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    macros::btf_map,
    programs::SkBuffContext,
};
use netmon_common::{
    FLOW_F_CAPTURED, FlowKey, FlowValue,
    capture::{
        CAPTURE_DNS, CAPTURE_FIRST_PAYLOAD, CAPTURE_MAX, CAPTURE_RING_BYTES, CaptureConfig,
        CaptureHeader, CaptureStats,
    },
};

use crate::headers::{Headers, IPPROTO_TCP};

const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
const QUIC_PORT: u16 = 443;

/// The capture ring (`netmon_common::capture::MAP_CAPTURE_RING`).
#[btf_map]
pub static NETMON_CAPTURE_RING: RingBuf<CaptureHeader, { CAPTURE_RING_BYTES as usize }> =
    RingBuf::new();

/// The capture switch, written by the daemon.
#[btf_map]
pub static NETMON_CAPTURE_CONFIG: Array<CaptureConfig, 1> = Array::new();

/// Records written and lost (ring full), per CPU.
#[btf_map]
pub static NETMON_CAPTURE_STATS: PerCpuArray<CaptureStats, 1> = PerCpuArray::new();

/// One record as written to the ring: too large for the BPF stack, so built
/// in a per-CPU slot (a program run owns its CPU's slot).
#[repr(C)]
pub struct CaptureScratch {
    header: CaptureHeader,
    data: [u8; CAPTURE_MAX],
}

/// Per-CPU record scratch space. Not pinned.
#[btf_map]
static NETMON_CAPTURE_SCRATCH: PerCpuArray<CaptureScratch, 1> = PerCpuArray::new();

/// Byte offset of the 64-bit word holding `local_port` (bits 0-15),
/// `flags` (bits 16-31) and `ifindex` (bits 32-63, little endian) in a flow
/// value. 64 bits: the bpf backend has atomic OR for 64-bit words only.
const FLAGS_WORD: usize = core::mem::offset_of!(FlowValue, local_port);

const _: () = {
    assert!(FLAGS_WORD % 8 == 0);
    assert!(core::mem::offset_of!(FlowValue, ifindex) == FLAGS_WORD + 4);
    assert!(core::mem::offset_of!(FlowValue, flags) == FLAGS_WORD + 2);
    assert!(core::mem::size_of::<CaptureHeader>() % 8 == 0);
};

/// Called for every packet before it is counted; `value` is the flow's
/// entry, or null before the flow's first packet is inserted.
#[inline(always)]
pub fn packet(
    ctx: &SkBuffContext,
    h: &Headers,
    key: &FlowKey,
    payload: u32,
    egress: bool,
    value: *mut FlowValue,
) {
    if payload == 0 {
        return;
    }
    if egress {
        if !(h.protocol == IPPROTO_TCP || (h.protocol == IPPROTO_UDP && h.dport == QUIC_PORT)) {
            return;
        }
        if !value.is_null() {
            // SAFETY: `value` points into a live flow entry; `flags` is a
            // plain u16 load (racing writers only ever set bits).
            let flags = unsafe { core::ptr::addr_of!((*value).flags).read_volatile() };
            if flags & FLOW_F_CAPTURED != 0 {
                return;
            }
        }
        first_payload(ctx, h, key, payload, value);
    } else if h.sport == DNS_PORT && (h.protocol == IPPROTO_UDP || h.protocol == IPPROTO_TCP) {
        copy(ctx, h, key, payload, CAPTURE_DNS);
    }
}

/// A flow's first payload: copy it (when capture is on), then mark the flow.
#[inline(never)]
fn first_payload(
    ctx: &SkBuffContext,
    h: &Headers,
    key: &FlowKey,
    payload: u32,
    value: *mut FlowValue,
) {
    copy(ctx, h, key, payload, CAPTURE_FIRST_PAYLOAD);
    if value.is_null() {
        return;
    }
    // SAFETY: `value` points into a live flow entry; the word at FLAGS_WORD
    // is 8-byte aligned (asserted above) and inside the value. An atomic OR
    // keeps every other bit (FLOW_F_CLOSED from sock_release, the
    // write-once port and ifindex) as it is.
    unsafe {
        let word = value.cast::<u8>().add(FLAGS_WORD).cast::<u64>();
        atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, u64::from(FLOW_F_CAPTURED) << 16);
    }
}

/// Copies up to [`CAPTURE_MAX`] payload bytes of this packet, with a header,
/// to the ring, if capture is on.
#[inline(never)]
fn copy(ctx: &SkBuffContext, h: &Headers, key: &FlowKey, payload: u32, kind: u8) {
    match NETMON_CAPTURE_CONFIG.get(0) {
        Some(cfg) if cfg.enabled != 0 => {}
        _ => return,
    }
    let Some(rec) = NETMON_CAPTURE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let mut len = u64::from(payload);
    // SAFETY: a register move (`rX = rX`) that only hides the value from LLVM, so it
    // keeps the bounds checks below (it proves `payload != 0` from the
    // callers and would drop them; the verifier needs to see them).
    unsafe {
        core::arch::asm!("{len} = {len}", len = inout(reg) len, options(pure, nomem, nostack))
    };
    if len > CAPTURE_MAX as u64 {
        len = CAPTURE_MAX as u64;
    }
    // The verifier wants a non-zero length for `bpf_skb_load_bytes` (the
    // caller's payload check is out of its sight).
    if len == 0 {
        return;
    }
    let (tgid, start) = match crate::cgroup_skb::owner_of(ctx) {
        // SAFETY: the owner points into the socket's storage, valid while
        // the program runs.
        Some(owner) => unsafe { ((*owner).tgid, (*owner).start_boottime_ns) },
        None => (0, 0),
    };
    // SAFETY: `rec` is this CPU's scratch slot; header fields are written
    // through aligned field pointers; `bpf_skb_load_bytes` writes at most
    // `len` <= CAPTURE_MAX bytes into `data` (CAPTURE_MAX long) and fails
    // (leaving the record unsent) if the packet is shorter than offset + len.
    unsafe {
        let hd = core::ptr::addr_of_mut!((*rec).header);
        core::ptr::addr_of_mut!((*hd).key).write(*key);
        core::ptr::addr_of_mut!((*hd).boottime_ns).write(bpf_ktime_get_boot_ns());
        core::ptr::addr_of_mut!((*hd).owner_start_boottime_ns).write(start);
        core::ptr::addr_of_mut!((*hd).owner_tgid).write(tgid);
        core::ptr::addr_of_mut!((*hd).kind).write(kind);
        core::ptr::addr_of_mut!((*hd)._pad).write(0);
        core::ptr::addr_of_mut!((*hd).len).write(len as u16);
        let data = core::ptr::addr_of_mut!((*rec).data).cast::<core::ffi::c_void>();
        if bpf_skb_load_bytes(ctx.as_ptr(), h.header_len, data, len as u32) != 0 {
            return;
        }
    }
    let size = core::mem::size_of::<CaptureHeader>() + len as usize;
    // SAFETY: `rec` is valid for size_of::<CaptureScratch>() >= `size` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(rec.cast::<u8>(), size) };
    let ok = NETMON_CAPTURE_RING.output_untyped(bytes, 0).is_ok();
    if let Some(stats) = NETMON_CAPTURE_STATS.get_ptr_mut(0) {
        // SAFETY: this CPU's element; nothing else writes it while the
        // program runs.
        unsafe {
            if ok {
                (*stats).records += 1;
            } else {
                (*stats).lost += 1;
            }
        }
    }
}
