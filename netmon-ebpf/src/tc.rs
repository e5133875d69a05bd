//! `netmon_tc_ingress` / `netmon_tc_egress`: count everything a watched
//! interface moves, socket or not (forwarded, `AF_PACKET`, kernel-generated),
//! into `NETMON_IFACES` (see `netmon_common::iface` for what the bytes
//! include).
//!
//! Per packet: classify, one per-CPU hash lookup, two plain adds (the value
//! is this CPU's own, so no atomics and no locks). An interface's first
//! packet of a class on a CPU inserts the entry.
//!
//! Classification:
//! - egress: `skb->sk` an `AF_INET`/`AF_INET6` full socket (or a request
//!   socket's listener, for SYN-ACKs) with an owner recorded by
//!   `netmon_sock_create` → local socket; any other socket (`AF_PACKET`, the
//!   kernel's own control sockets, sockets opened before the load) → other
//!   socket; no socket and `skb->skb_iif` set →
//!   forwarded; no socket otherwise → no socket (kernel-generated).
//! - ingress: `skb->sk` is not set yet at tc ingress, so the packet's
//!   addresses and ports are looked up (`bpf_skc_lookup_tcp`,
//!   `bpf_sk_lookup_udp`, the interface's network namespace): found → local
//!   socket, otherwise no socket. Only IPv4 and IPv6 without extension
//!   headers, TCP and UDP, first fragments are looked up.
//!
//! Both programs return `TCX_NEXT` (-1, `TC_ACT_UNSPEC` under clsact): netmon
//! observes, it never changes a verdict.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        __sk_buff, BPF_F_CURRENT_NETNS, bpf_hdr_start_off::BPF_HDR_START_NET, bpf_sock,
        bpf_sock_tuple,
    },
    helpers::generated::{
        bpf_get_listener_sock, bpf_sk_fullsock, bpf_sk_lookup_udp, bpf_sk_release,
        bpf_sk_storage_get, bpf_skb_load_bytes_relative, bpf_skc_lookup_tcp,
    },
    macros::classifier,
    programs::TcContext,
};
use netmon_common::iface::{
    IFACE_CLASS_FORWARDED, IFACE_CLASS_LOCAL_SOCKET, IFACE_CLASS_NO_SOCKET,
    IFACE_CLASS_OTHER_SOCKET, IFACE_DIR_EGRESS, IFACE_DIR_INGRESS, IfaceCounters, IfaceKey,
};

use crate::maps::{NETMON_IFACES, NETMON_OWNERS};

/// `TCX_NEXT`: let the next program (or the stack) decide.
const TCX_NEXT: i32 = -1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[classifier]
pub fn netmon_tc_ingress(ctx: TcContext) -> i32 {
    let class = if ingress_has_socket(&ctx) {
        IFACE_CLASS_LOCAL_SOCKET
    } else {
        IFACE_CLASS_NO_SOCKET
    };
    count(&ctx, IFACE_DIR_INGRESS, class);
    TCX_NEXT
}

#[classifier]
pub fn netmon_tc_egress(ctx: TcContext) -> i32 {
    let class = egress_class(&ctx);
    count(&ctx, IFACE_DIR_EGRESS, class);
    TCX_NEXT
}

#[inline(always)]
fn skb(ctx: &TcContext) -> *mut __sk_buff {
    ctx.as_ptr().cast()
}

#[inline(always)]
fn count(ctx: &TcContext, direction: u8, class: u8) {
    let skb = skb(ctx);
    // SAFETY: `skb` is this program's context; reading its fields is what
    // the verifier allows for sched_cls programs.
    let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
    let key = IfaceKey {
        ifindex,
        direction,
        class,
        _pad: [0; 2],
    };
    if let Some(value) = NETMON_IFACES.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value: only this CPU writes it, and the pointer
        // is valid for this program run (the map is never shrunk by us).
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(len);
        }
        return;
    }
    let first = IfaceCounters {
        packets: 1,
        bytes: u64::from(len),
    };
    // A lost insert (map full) is not recorded: the capacity is sized for
    // every interface's eight keys; userspace compares the map's fill with
    // the capacity in `status`.
    let _ = NETMON_IFACES.insert(&key, &first, 0);
}

#[inline(always)]
fn egress_class(ctx: &TcContext) -> u8 {
    let skb = skb(ctx);
    // SAFETY: reading the `sk` field of this program's context; the verifier
    // types it as a nullable socket pointer.
    let (sk, iif) = unsafe { ((*skb).__bindgen_anon_2.sk, (*skb).ingress_ifindex) };
    if sk.is_null() {
        return if iif != 0 {
            IFACE_CLASS_FORWARDED
        } else {
            IFACE_CLASS_NO_SOCKET
        };
    }
    // SAFETY: `sk` is the non-null socket pointer of the context, the
    // argument both helpers expect; they return null when it is not a full
    // socket / has no listener.
    let mut full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        // SAFETY: as above.
        full = unsafe { bpf_get_listener_sock(sk) };
        if full.is_null() {
            return IFACE_CLASS_OTHER_SOCKET;
        }
    }
    // SAFETY: non-null full socket returned by the helper.
    let family = unsafe { (*full).family };
    if family != AF_INET && family != AF_INET6 {
        return IFACE_CLASS_OTHER_SOCKET;
    }
    // SAFETY: `full` is a full socket as the helper requires; no create
    // flag, so the value may be null. The map pointer is the sk_storage map.
    let owner = unsafe {
        bpf_sk_storage_get(
            NETMON_OWNERS.as_ptr(),
            full.cast(),
            core::ptr::null_mut(),
            0,
        )
    };
    if owner.is_null() {
        IFACE_CLASS_OTHER_SOCKET
    } else {
        IFACE_CLASS_LOCAL_SOCKET
    }
}

/// Reads `N` bytes at `offset` from the network header.
#[inline(always)]
fn load<const N: usize>(ctx: &TcContext, offset: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: `buf` is a writable stack buffer of exactly `N` bytes; the
    // helper bounds-checks the packet side and fails on a short packet.
    let ret = unsafe {
        bpf_skb_load_bytes_relative(
            ctx.as_ptr(),
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    (ret == 0).then_some(buf)
}

#[inline(always)]
fn ingress_has_socket(ctx: &TcContext) -> bool {
    let Some([first]) = load::<1>(ctx, 0) else {
        return false;
    };
    // SAFETY: a zeroed tuple is a valid value of this plain-data union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let (protocol, size) = match first >> 4 {
        4 => {
            let Some(ip) = load::<20>(ctx, 0) else {
                return false;
            };
            // Non-first fragments carry no ports.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return false;
            }
            let ihl = u32::from(ip[0] & 0x0f) * 4;
            let Some(ports) = load::<4>(ctx, ihl) else {
                return false;
            };
            // SAFETY: writing the ipv4 arm of the zeroed union.
            unsafe {
                let t = &mut tuple.__bindgen_anon_1.ipv4;
                t.saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
                t.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
                t.sport = u16::from_ne_bytes([ports[0], ports[1]]);
                t.dport = u16::from_ne_bytes([ports[2], ports[3]]);
            }
            (ip[9], 12u32)
        }
        6 => {
            let Some(ip) = load::<40>(ctx, 0) else {
                return false;
            };
            let Some(ports) = load::<4>(ctx, 40) else {
                return false;
            };
            // SAFETY: writing the ipv6 arm of the zeroed union.
            unsafe {
                let t = &mut tuple.__bindgen_anon_1.ipv6;
                let mut i = 0;
                while i < 4 {
                    let s = 8 + i * 4;
                    let d = 24 + i * 4;
                    t.saddr[i] = u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
                    t.daddr[i] = u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
                    i += 1;
                }
                t.sport = u16::from_ne_bytes([ports[0], ports[1]]);
                t.dport = u16::from_ne_bytes([ports[2], ports[3]]);
            }
            (ip[6], 36u32)
        }
        _ => return false,
    };
    #[expect(clippy::cast_sign_loss, reason = "the helper takes -1 as u64")]
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: the context and a tuple of the size given, as the helpers
    // expect; a returned socket is released below.
    let sk: *mut bpf_sock = unsafe {
        match protocol {
            IPPROTO_TCP => bpf_skc_lookup_tcp(ctx.as_ptr(), &raw mut tuple, size, netns, 0),
            IPPROTO_UDP => bpf_sk_lookup_udp(ctx.as_ptr(), &raw mut tuple, size, netns, 0),
            _ => return false,
        }
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` came from a lookup helper and is released exactly once.
    unsafe { bpf_sk_release(sk.cast()) };
    true
}
