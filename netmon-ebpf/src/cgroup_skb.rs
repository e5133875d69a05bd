//! `netmon_egress` / `netmon_ingress`: count every packet of every socket.
//!
//! Per packet: parse the headers (fixed-size loads), one hash lookup, two
//! or three atomic adds (none for a connected TCP socket's own
//! transmissions, which its socket lock serializes: see `add_serialized`). Only a flow's first packet does more: it reads the owner from
//! socket storage and inserts the entry (with this packet already counted).
//! A TCP listener's handshake packets always miss, and are added to the
//! listener's one folded entry there (see `is_connection`).
//!
//! TCP packets of an established socket (all received ones, sent ones with
//! payload) also read the socket's TCP state (`bpf_tcp_sock`, one helper
//! call): a segment whose sequence lies before `snd_nxt`
//! (egress) or `rcv_nxt` (ingress) carries data already sent or received,
//! and that many of its payload bytes (all, or the overlapping part of a
//! partly new segment, GSO super-packets included: they are one sequence
//! range) are added to `retrans_bytes` as well (a fourth atomic add, only
//! when non-zero). On ingress, the socket's RTT and segment counts are
//! stored in the flow as a [`netmon_common::TcpSample`] (plain stores: a
//! gauge).
//!
//! Why this is exact on egress: the hook runs synchronously inside
//! `__tcp_transmit_skb` (`ip_queue_xmit` → `ip_finish_output`), under the
//! socket lock, before `tcp_event_new_data_sent` advances `snd_nxt`; new
//! data therefore starts exactly at `snd_nxt` and every retransmission
//! (RTO, fast retransmit, loss probe) before it. On ingress the hook runs in
//! `tcp_filter`, before the segment is processed but without the socket
//! lock; "before `rcv_nxt`" is exact for duplicates of in-order data; a
//! duplicate of data the socket holds out of order (or still in its
//! backlog), or data the socket then drops (receive queue full), counts as
//! new: the README lists these cases.
//!
//! Ownership never comes from `bpf_get_current_pid_tgid()` here: in
//! cgroup_skb it names whatever task happens to run (softirq, the peer on
//! loopback), not the socket's owner (see `docs/kernel-notes.md`).
//!
//! Both programs always return 1: netmon observes, it never drops.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_NOEXIST, bpf_sock, bpf_tcp_sock},
    helpers::generated::{
        bpf_get_listener_sock, bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_sk_fullsock,
        bpf_sk_storage_get, bpf_tcp_sock,
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use netmon_common::{DirCounters, FLOW_F_OWNED, FlowKey, FlowValue, SockOwner, TcpSample};

use crate::{
    headers::{self, Addr, IPPROTO_TCP},
    maps::{NETMON_FLOWS, NETMON_OVERFLOW, NETMON_OWNERS, NETMON_SCRATCH},
};

const EEXIST: i32 = 17;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Egress,
    Ingress,
}

#[cgroup_skb(egress)]
pub fn netmon_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, Direction::Egress);
    1
}

#[cgroup_skb(ingress)]
pub fn netmon_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, Direction::Ingress);
    1
}

#[inline(always)]
fn count(ctx: &SkBuffContext, direction: Direction) {
    let ip_len = ctx.skb.len();
    let Some(h) = headers::parse(ctx) else {
        return;
    };
    let payload = ip_len.saturating_sub(h.header_len);
    // Egress pure ACKs need nothing from the socket: no payload to classify,
    // and the RTT they could sample changes only with what arrives.
    let (tp, state) =
        if h.protocol == IPPROTO_TCP && (payload != 0 || direction == Direction::Ingress) {
            tcp_sock_of(ctx)
        } else {
            (core::ptr::null_mut(), 0)
        };
    let retrans = if payload == 0 || tp.is_null() {
        0
    } else {
        // SAFETY: `tp` is the non-null result of `bpf_tcp_sock` for this
        // packet's socket, valid while the program runs.
        let reference = unsafe {
            match direction {
                Direction::Egress => (*tp).snd_nxt,
                Direction::Ingress => (*tp).rcv_nxt,
            }
        };
        old_bytes(reference, h.seq, payload)
    };
    let packet = DirCounters {
        packets: 1,
        ip_bytes: u64::from(ip_len),
        payload_bytes: u64::from(payload),
        retrans_bytes: u64::from(retrans),
    };
    let (local_addr, local_port, remote_addr, remote_port) = match direction {
        Direction::Egress => (h.src, h.sport, h.dst, h.dport),
        Direction::Ingress => (h.dst, h.dport, h.src, h.sport),
    };
    // SAFETY: the context is this program's `__sk_buff`, the argument the
    // helper expects; it returns 0 when the packet has no socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = flow_key(cookie, &remote_addr, remote_port, h.ip_version, h.protocol);
    if direction == Direction::Ingress && is_udp(h.protocol) {
        crate::udp_drop::remember(ctx, &key, payload);
    }

    let existing = NETMON_FLOWS.get_ptr_mut(&key);
    // Name capture, before the packet is counted (see `capture`).
    let value_or_null = existing.unwrap_or(core::ptr::null_mut());
    crate::capture::packet(
        ctx,
        &h,
        &key,
        payload,
        direction == Direction::Egress,
        value_or_null,
    );
    if let Some(value) = existing {
        if direction == Direction::Egress && !tp.is_null() && state != TCP_SYN_RECV {
            // SAFETY: `value` is a live map entry; this is a connected TCP
            // socket's own transmission, serialized by its socket lock
            // (see `add_serialized`).
            unsafe { add_serialized(core::ptr::addr_of_mut!((*value).tx), &packet) };
        } else {
            add(value, direction, &packet);
        }
        // The sample is the receiving side's to write (see `FlowValue`'s
        // field order): every ACK brings the send-side counts up to date.
        if direction == Direction::Ingress && !tp.is_null() {
            // SAFETY: `value` is a live map entry, `tp` as above.
            unsafe { store_sample(value, tp) };
        }
        return;
    }
    let local = Local {
        addr: local_addr,
        port: local_port,
    };
    new_flow(ctx, &key, &packet, &local, direction);
}

/// UDP or UDP-Lite: the protocols whose receive path fires
/// `udp_fail_queue_rcv_skb`.
#[inline(always)]
const fn is_udp(protocol: u8) -> bool {
    protocol == 17 || protocol == 136
}

/// TCP states in which `snd_nxt` and `rcv_nxt` both hold (include/net/tcp_states.h):
/// ESTABLISHED, SYN_RECV (a fast-open child), FIN_WAIT1, FIN_WAIT2,
/// CLOSE_WAIT, LAST_ACK, CLOSING. Not SYN_SENT (no `rcv_nxt` yet), LISTEN
/// (the hook sees the listener for a handshake's last ACK) or CLOSE.
#[inline(always)]
const fn sequenced(state: u32) -> bool {
    matches!(state, 1 | 3 | 4 | 5 | 8 | 9 | 11)
}

/// The TCP socket of this packet when it is in a [`sequenced`] state; null
/// otherwise.
///
/// No `bpf_sk_fullsock` call: the cgroup hooks run only for full sockets
/// (`__cgroup_bpf_run_filter_skb` returns early otherwise) and `state` is a
/// `sock_common` field the verifier lets a program read from `skb->sk`;
/// `bpf_tcp_sock` itself returns NULL for anything but a full TCP socket.
///
/// Also returns the socket's state (0 with a null pointer).
#[inline(always)]
fn tcp_sock_of(ctx: &SkBuffContext) -> (*mut bpf_tcp_sock, u32) {
    // SAFETY: reading `__sk_buff.sk` of this program's own context (a
    // nullable socket pointer for the verifier).
    let sk = unsafe { (*skb(ctx)).__bindgen_anon_2.sk };
    if sk.is_null() {
        return (core::ptr::null_mut(), 0);
    }
    // SAFETY: `sk` is non-null; `state` is readable from a `sock_common`.
    let state = unsafe { (*sk).state };
    if !sequenced(state) {
        return (core::ptr::null_mut(), 0);
    }
    // SAFETY: `sk` is a socket pointer the helper accepts
    // (`ARG_PTR_TO_SOCK_COMMON`); NULL unless a full TCP socket.
    (unsafe { bpf_tcp_sock(sk) }, state)
}

/// `TCP_SYN_RECV`: a fast-open child, whose SYN-ACK goes out from the
/// listener's context rather than under the child's own socket lock.
const TCP_SYN_RECV: u32 = 3;

/// Bytes of a segment of `payload` bytes starting at sequence `seq` that lie
/// before `reference` (`snd_nxt` or `rcv_nxt`), in sequence space modulo
/// 2^32 (as the kernel's `before()` compares).
#[inline(always)]
fn old_bytes(reference: u32, seq: u32, payload: u32) -> u32 {
    // The signed distance, as the kernel's before() computes it.
    let ahead = reference.wrapping_sub(seq) as i32;
    if ahead <= 0 {
        0
    } else {
        let ahead = ahead as u32;
        if ahead < payload { ahead } else { payload }
    }
}

/// Copies the TCP sample of `tp` into the flow.
///
/// # Safety
/// `value` points into a live flow entry; `tp` is a non-null `bpf_tcp_sock`
/// pointer of this program run.
#[inline(always)]
unsafe fn store_sample(value: *mut FlowValue, tp: *const bpf_tcp_sock) {
    // SAFETY: the caller's contract; single u32 loads from the tcp_sock
    // (the verifier rewrites them into the kernel's field reads) and
    // aligned u32 stores into map memory. Racing stores from another CPU
    // leave one of two recent samples: a gauge.
    unsafe {
        let t = core::ptr::addr_of_mut!((*value).tcp);
        core::ptr::addr_of_mut!((*t).srtt_us8).write((*tp).srtt_us);
        core::ptr::addr_of_mut!((*t).total_retrans).write((*tp).total_retrans);
        core::ptr::addr_of_mut!((*t).data_segs_out).write((*tp).data_segs_out);
        core::ptr::addr_of_mut!((*t).rate_delivered).write((*tp).rate_delivered);
        core::ptr::addr_of_mut!((*t).rate_interval_us).write((*tp).rate_interval_us);
        core::ptr::addr_of_mut!((*t).mss_cache).write((*tp).mss_cache);
        core::ptr::addr_of_mut!((*t).rtt_min_us).write((*tp).rtt_min);
    }
}

/// The flow map key, written a word at a time (see [`Addr`]): no zeroing
/// first, no byte copies.
#[inline(always)]
fn flow_key(cookie: u64, remote: &Addr, remote_port: u16, ip_version: u8, protocol: u8) -> FlowKey {
    let mut key = core::mem::MaybeUninit::<FlowKey>::uninit();
    let k = key.as_mut_ptr();
    // SAFETY: every field of the `#[repr(C)]` key (explicit padding field
    // included, so no byte is left uninitialised) is written through an
    // aligned field pointer before `assume_init`; the address field is 4-byte
    // aligned (checked below).
    unsafe {
        core::ptr::addr_of_mut!((*k).cookie).write(cookie);
        core::ptr::addr_of_mut!((*k).remote_addr)
            .cast::<Addr>()
            .write(*remote);
        core::ptr::addr_of_mut!((*k).remote_port).write(remote_port);
        core::ptr::addr_of_mut!((*k).ip_version).write(ip_version);
        core::ptr::addr_of_mut!((*k).protocol).write(protocol);
        core::ptr::addr_of_mut!((*k)._pad).write(0);
        key.assume_init()
    }
}

const _: () = {
    assert!(core::mem::offset_of!(FlowKey, remote_addr) % 4 == 0);
    assert!(core::mem::offset_of!(FlowValue, local_addr) % 4 == 0);
    assert!(core::mem::align_of::<FlowKey>() >= 4);
    assert!(core::mem::align_of::<FlowValue>() >= 4);
};

/// A flow's local endpoint, bundled: BPF functions take at most five
/// arguments.
struct Local {
    addr: Addr,
    port: u16,
}

/// First packet of a flow: build the entry with its owner and this packet's
/// counts, insert it; on a lost insert race add to the winner's entry; when
/// the map is full count the packet as overflow.
///
/// Everything is passed by reference into the caller's frame (no copies:
/// the caller's and this function's stack frames together must stay within
/// the verifier's 512 bytes).
#[inline(never)]
fn new_flow(
    ctx: &SkBuffContext,
    key: &FlowKey,
    packet: &DirCounters,
    local: &Local,
    direction: Direction,
) {
    let (local_addr, local_port) = (&local.addr, local.port);
    // Not a connection's packet: fold it into one entry per socket.
    let folded;
    let key = if key.protocol == IPPROTO_TCP && !is_connection(ctx) {
        folded = flow_key(key.cookie, &[0; 4], 0, key.ip_version, key.protocol);
        if let Some(value) = NETMON_FLOWS.get_ptr_mut(&folded) {
            add(value, direction, packet);
            return;
        }
        &folded
    } else {
        key
    };
    // SAFETY: reading a field of this program's own context.
    let ifindex = unsafe { (*skb(ctx)).ifindex };
    // SAFETY: helper without arguments.
    let first_boottime_ns = unsafe { bpf_ktime_get_boot_ns() };
    let owner = owner_of(ctx);
    // Built field by field: `FlowValue::default()` (or any zeroed struct)
    // becomes a call to the bpf backend's byte-loop `memset` — 120 bytes
    // one at a time on every new flow.
    // The value is built in the per-CPU scratch slot, not on the stack.
    let Some(v) = NETMON_SCRATCH.get_ptr_mut(0) else {
        overflow(direction, packet);
        return;
    };
    // SAFETY: `v` is this CPU's scratch slot (nothing else runs on this CPU
    // while the program does); every field of the `#[repr(C)]` value (which
    // has no padding: checked below) is written through an aligned field
    // pointer before the value is read through `&*v`.
    let value: &FlowValue = unsafe {
        let (this, other) = match direction {
            Direction::Egress => (
                core::ptr::addr_of_mut!((*v).tx),
                core::ptr::addr_of_mut!((*v).rx),
            ),
            Direction::Ingress => (
                core::ptr::addr_of_mut!((*v).rx),
                core::ptr::addr_of_mut!((*v).tx),
            ),
        };
        this.write(*packet);
        zero_words::<COUNTER_WORDS>(other.cast());
        let flags = match owner {
            Some(owner) => {
                // `owner` points into the socket's storage, valid while
                // this program runs. A copy of an 8-aligned struct: word
                // loads and stores.
                core::ptr::addr_of_mut!((*v).owner).write(*owner);
                FLOW_F_OWNED
            }
            None => {
                zero_words::<OWNER_WORDS>(core::ptr::addr_of_mut!((*v).owner).cast());
                0
            }
        };
        core::ptr::addr_of_mut!((*v).local_addr)
            .cast::<Addr>()
            .write(*local_addr);
        core::ptr::addr_of_mut!((*v).local_port).write(local_port);
        core::ptr::addr_of_mut!((*v).flags).write(flags);
        core::ptr::addr_of_mut!((*v).ifindex).write(ifindex);
        core::ptr::addr_of_mut!((*v).first_boottime_ns).write(first_boottime_ns);
        // The first packet leaves no TCP sample (the next one will).
        zero_words::<SAMPLE_WORDS>(core::ptr::addr_of_mut!((*v).tcp).cast());
        &*v
    };
    match NETMON_FLOWS.insert(key, value, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(err) if err == -EEXIST => {
            if let Some(existing) = NETMON_FLOWS.get_ptr_mut(key) {
                add(existing, direction, packet);
            } else {
                overflow(direction, packet);
            }
        }
        Err(_) => overflow(direction, packet),
    }
}

/// `BPF_TCP_LISTEN`, a listener's `bpf_sock.state`.
const TCP_LISTEN: u32 = 10;
/// `SOCK_RAW`, the type of the kernel's per-CPU TCP control sockets.
const SOCK_RAW: u32 = 3;

/// False when a TCP packet's socket is no connection: a listener (the
/// cgroup hooks see SYN, SYN-ACK and the handshake's last ACK on the
/// listener, `__cgroup_bpf_run_filter_skb` sets `skb->sk` to it) or the
/// kernel's raw TCP control socket (resets to refused connections). Keyed
/// by the peer, their packets would leave one entry per client for the
/// listener's lifetime (per CPU socket: forever); they are folded into one
/// entry per socket instead (remote `::`/0), owned by the listener.
/// Runs only on a flow-map miss, never for a connection's later packets.
#[inline(always)]
fn is_connection(ctx: &SkBuffContext) -> bool {
    // SAFETY: reading `__sk_buff.sk` of this program's own context.
    let sk = unsafe { (*skb(ctx)).__bindgen_anon_2.sk };
    if sk.is_null() {
        return true;
    }
    // SAFETY: `sk` is the non-null socket of this skb.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return true;
    }
    // SAFETY: `full` is a full socket, whose `state` and `type` the verifier
    // lets programs read.
    let (state, ty) = unsafe { ((*full).state, (*full).type_) };
    state != TCP_LISTEN && ty != SOCK_RAW
}

/// Words of a [`SockOwner`].
const OWNER_WORDS: usize = core::mem::size_of::<SockOwner>() / 8;
/// Words of a [`DirCounters`].
const COUNTER_WORDS: usize = core::mem::size_of::<DirCounters>() / 8;
/// Words of a [`TcpSample`].
const SAMPLE_WORDS: usize = core::mem::size_of::<TcpSample>() / 8;

const _: () = {
    assert!(core::mem::size_of::<SockOwner>() % 8 == 0);
    assert!(core::mem::align_of::<SockOwner>() == 8);
    assert!(core::mem::size_of::<TcpSample>() % 8 == 0);
    assert!(core::mem::offset_of!(FlowValue, tcp) % 8 == 0);
    // No padding in the flow value: every byte is written in `new_flow`.
    assert!(
        core::mem::size_of::<FlowValue>()
            == 2 * core::mem::size_of::<DirCounters>()
                + core::mem::size_of::<SockOwner>()
                + 16
                + 2
                + 2
                + 4
                + 8
                + core::mem::size_of::<TcpSample>()
    );
};

/// Zeroes `N` words at `p` with one store each. Volatile so that LLVM does
/// not turn the loop back into a `memset` call (a byte loop on bpf).
///
/// # Safety
/// `p` is valid and 8-byte aligned for `N` words of writes.
#[inline(always)]
unsafe fn zero_words<const N: usize>(p: *mut u64) {
    for i in 0..N {
        // SAFETY: within the `N` words the caller vouches for.
        unsafe { p.add(i).write_volatile(0) };
    }
}

/// The owner recorded at socket creation (or cloned from the listener): a
/// pointer into the socket's storage, valid while this program runs.
#[inline(always)]
pub(crate) fn owner_of(ctx: &SkBuffContext) -> Option<*const SockOwner> {
    // SAFETY: reading `__sk_buff.sk` of this program's own context; the
    // verifier types it as a nullable socket pointer.
    let sk = unsafe { (*skb(ctx)).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    // SAFETY: `sk` is the non-null socket of this skb; the helper returns
    // NULL for request and timewait sockets.
    let mut full: *mut bpf_sock = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        // A request socket (SYN-ACK, handshake ACK): owned by its listener.
        // SAFETY: as above; returns NULL unless `sk` is a listener or a
        // request socket.
        full = unsafe { bpf_get_listener_sock(sk) };
    }
    if full.is_null() {
        // TIME_WAIT: no owner in the kernel any more (userspace resolves the
        // cookie, which a timewait socket shares with its full socket).
        return None;
    }
    // SAFETY: `full` is a full socket as the helper requires; no create flag,
    // so value may be NULL. The map pointer is the sk_storage map.
    let owner = unsafe {
        bpf_sk_storage_get(
            NETMON_OWNERS.as_ptr(),
            full.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<SockOwner>();
    if owner.is_null() {
        return None;
    }
    Some(owner.cast_const())
}

/// This program's `__sk_buff`.
#[inline(always)]
fn skb(ctx: &SkBuffContext) -> *mut __sk_buff {
    ctx.as_ptr().cast()
}

#[inline(always)]
fn add(value: *mut FlowValue, direction: Direction, packet: &DirCounters) {
    // SAFETY: `value` points into a live map entry (or is derived from one);
    // the counters are 8-byte aligned u64s and only ever changed atomically.
    let counters = unsafe {
        match direction {
            Direction::Egress => core::ptr::addr_of_mut!((*value).tx),
            Direction::Ingress => core::ptr::addr_of_mut!((*value).rx),
        }
    };
    add_counters(counters, packet);
}

#[inline(always)]
fn add_counters(counters: *mut DirCounters, packet: &DirCounters) {
    // SAFETY: `counters` is a valid, aligned DirCounters in map memory; each
    // field is accessed only through atomics.
    // The bpf target has no compare-and-swap, so `AtomicU64::fetch_add` is
    // not offered; the intrinsic lowers to BPF_ATOMIC_ADD (`lock xadd`).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            core::ptr::addr_of_mut!((*counters).packets),
            packet.packets,
        );
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            core::ptr::addr_of_mut!((*counters).ip_bytes),
            packet.ip_bytes,
        );
        // Pure ACKs (and other empty segments) carry no payload: one
        // locked add fewer.
        if packet.payload_bytes != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*counters).payload_bytes),
                packet.payload_bytes,
            );
        }
        if packet.retrans_bytes != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*counters).retrans_bytes),
                packet.retrans_bytes,
            );
        }
    }
}

/// Adds a packet to the tx counters of a connected TCP socket with plain
/// (non-atomic) adds.
///
/// Exact because every transmission of a full TCP socket in a sequenced
/// state other than SYN_RECV is serialized by its socket lock: the hook
/// runs synchronously inside `__tcp_transmit_skb`, which is reached only
/// with the lock owned (sendmsg, `release_sock`'s deferred work) or with
/// the bottom-half spinlock held while no user owns it (ACKs from input
/// processing, the retransmit, delayed-ACK and TSQ handlers all check
/// `sock_owned_by_user` and defer). Replies the kernel sends for a socket
/// from its per-CPU control socket (resets, TIME_WAIT ACKs) are that
/// socket's packets, not this one's. The other writers of a flow value
/// touch other fields (rx counters, `flags`, the TCP sample), and readers
/// see each aligned 8-byte store whole. Three `lock`ed adds were a fifth of
/// a program run (`bpftool prog run` of a UDP packet: 47 ns per run, 37
/// with plain adds).
///
/// # Safety
/// `counters` is a valid, aligned `DirCounters` in map memory, the tx
/// counters of the socket whose transmission this program run sees.
#[inline(always)]
unsafe fn add_serialized(counters: *mut DirCounters, packet: &DirCounters) {
    // SAFETY: the caller's contract; volatile so each add stays one aligned
    // 8-byte read-modify-write the JIT emits as a single instruction pair
    // that no reader can observe torn.
    unsafe {
        let p = core::ptr::addr_of_mut!((*counters).packets);
        p.write_volatile(p.read_volatile() + packet.packets);
        let b = core::ptr::addr_of_mut!((*counters).ip_bytes);
        b.write_volatile(b.read_volatile() + packet.ip_bytes);
        let l = core::ptr::addr_of_mut!((*counters).payload_bytes);
        l.write_volatile(l.read_volatile() + packet.payload_bytes);
        if packet.retrans_bytes != 0 {
            let r = core::ptr::addr_of_mut!((*counters).retrans_bytes);
            r.write_volatile(r.read_volatile() + packet.retrans_bytes);
        }
    }
}

/// Counts a packet whose flow could not be inserted. Per-CPU entry, so plain
/// adds are race free.
#[inline(never)]
fn overflow(direction: Direction, packet: &DirCounters) {
    let Some(o) = NETMON_OVERFLOW.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU array element for this CPU; nothing else writes it while
    // this program runs (programs are not preempted on their CPU).
    unsafe {
        let dir = match direction {
            Direction::Egress => &mut (*o).tx,
            Direction::Ingress => &mut (*o).rx,
        };
        *dir = dir.saturating_add(*packet);
        (*o).failed_inserts += 1;
    }
}
