//! `netmon_tc_ingress` / `netmon_tc_egress`: count everything a watched
//! interface moves, socket or not (forwarded, `AF_PACKET`, kernel-generated),
//! into `NETMON_IFACE_SLOTS` / `NETMON_IFACES` (see `netmon_common::iface`
//! for what the bytes include), and on LAN interfaces per device into
//! `NETMON_DEVICES` (see `netmon_common::device`).
//!
//! Per packet: classify, one per-CPU array lookup (the interface's slot in
//! `NETMON_IFACE_SLOTS`, which also holds its LAN flags) and two plain adds
//! (the value is this CPU's own, so no atomics and no locks); on a LAN
//! interface the same for the device: one per-CPU array lookup (its slot in
//! `NETMON_DEVICE_SLOTS`, see `netmon_common::device`) and two adds. An
//! interface without a slot (see `netmon_common::iface`) is counted in the
//! per-CPU hash `NETMON_IFACES` and its LAN flags read from `NETMON_LAN`; a
//! device whose slot another device holds on this CPU, in the per-CPU hash
//! `NETMON_DEVICES`. An interface's (device's) first packet of a class on a
//! CPU inserts the hash entry.
//!
//! Classification:
//! - egress: `skb->sk` an `AF_INET`/`AF_INET6` full socket (or a request
//!   socket's listener, for SYN-ACKs) with an owner recorded by
//!   `netmon_sock_create` → local socket; any other socket (`AF_PACKET`, the
//!   kernel's own control sockets, sockets opened before the load) → other
//!   socket; no socket and `skb->skb_iif` set →
//!   forwarded; no socket otherwise → no socket (kernel-generated).
//! - ingress: IPv4/IPv6 packets are looked up in the FIB
//!   (`bpf_fib_lookup`, the route the stack will take, with the
//!   interface's forwarding setting): routed or bridged out of another
//!   interface → forwarded. Otherwise (addressed to the host) the packet's
//!   addresses and ports are looked up (`bpf_skc_lookup_tcp`,
//!   `bpf_sk_lookup_udp`, the interface's network namespace): found → local
//!   socket, otherwise no socket. Only IPv4 and IPv6 without extension
//!   headers, TCP and UDP, first fragments are looked up for sockets.
//!   The lookup passes `BPF_FIB_LOOKUP_SKIP_NEIGH` (Linux 6.5+, no
//!   neighbour lookup per packet); a kernel that refuses the flag answers
//!   with an error, read as "not forwarded" (ingress then splits local
//!   socket / no socket only, as before the FIB lookup).
//!   The FIB lookup costs more than the rest of the program (58 of 82 ns
//!   per forwarded 64-byte packet, `bpftool prog run`), so its answer is
//!   remembered per CPU for the rest of the clock tick, keyed by the
//!   lookup's inputs (interface, family, TOS, addresses) in a direct-mapped
//!   per-CPU array (`NETMON_ROUTE_MEMO`, see `remembered_route`): a route or
//!   address change shows by the next tick (1/`CONFIG_HZ` s) at the latest.
//!
//! tc ingress runs before netfilter: the FIB sees the packet's addresses
//! before any DNAT. A reply to a masqueraded (SNAT) connection is addressed
//! to the host and is classed no socket on the interface it arrives on,
//! although conntrack then rewrites and forwards it; so is a packet to a
//! DNAT port forward. Its forwarding is exact on the egress side (the
//! interface it leaves by counts it forwarded) and on the LAN side's device
//! rows.
//!
//! Both programs return `TCX_NEXT` (-1, `TC_ACT_UNSPEC` under clsact): netmon
//! observes, it never changes a verdict.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        __sk_buff, BPF_F_CURRENT_NETNS, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup as FibParams,
        bpf_hdr_start_off::BPF_HDR_START_NET, bpf_sock, bpf_sock_tuple,
    },
    helpers::generated::{
        bpf_fib_lookup, bpf_get_listener_sock, bpf_jiffies64, bpf_sk_fullsock, bpf_sk_lookup_udp,
        bpf_sk_release, bpf_sk_storage_get, bpf_skb_load_bytes_relative, bpf_skc_lookup_tcp,
    },
    macros::classifier,
    programs::TcContext,
};
use netmon_common::device::{
    DEV_CLASS_FWD_INTERNET, DEV_CLASS_FWD_LOCAL, DEV_CLASS_HOST, DEV_CLASS_NOT_IP,
    DEVICE_OVERFLOW_MAC, DEVICE_SLOTS, DeviceKey, DeviceSlot, LAN_COUNT, LAN_LOCAL, LAN_SLOTS,
    device_slot_index, mac_word,
};
use netmon_common::iface::{
    IFACE_CLASS_FORWARDED, IFACE_CLASS_LOCAL_SOCKET, IFACE_CLASS_NO_SOCKET,
    IFACE_CLASS_OTHER_SOCKET, IFACE_DIR_EGRESS, IFACE_DIR_INGRESS, IFACE_SLOTS, IfaceCounters,
    IfaceKey, IfaceSlot,
};

use crate::maps::{NETMON_DEVICES, NETMON_IFACES, NETMON_LAN, NETMON_OWNERS};

/// `TCX_NEXT`: let the next program (or the stack) decide.
const TCX_NEXT: i32 = -1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `ETH_P_IP` / `ETH_P_IPV6` as `skb->protocol` holds them (big-endian).
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// The network header of an ingress packet.
enum L3 {
    V4([u8; 20]),
    V6([u8; 40]),
    Other,
}

/// Where the FIB sends an ingress packet.
enum Route {
    /// Not IP.
    NotIp,
    /// Delivered to the host (or dropped by it).
    Host,
    /// Routed or bridged out of this interface.
    Forwarded(u32),
}

#[classifier]
pub fn netmon_tc_ingress(ctx: TcContext) -> i32 {
    let skb = skb(&ctx);
    // SAFETY: reading fields of this program's context.
    let (ifindex, protocol) = unsafe { ((*skb).ifindex, (*skb).protocol) };
    let l3 = network_header(&ctx, protocol);
    let route = remembered_route(&ctx, ifindex, &l3);
    let class = if route.forwarded {
        IFACE_CLASS_FORWARDED
    } else if ingress_has_socket(&ctx, &l3) {
        IFACE_CLASS_LOCAL_SOCKET
    } else {
        IFACE_CLASS_NO_SOCKET
    };
    count(&ctx, iface_slot(ifindex), IFACE_DIR_INGRESS, class);
    if route.in_flags & LAN_COUNT != 0 {
        // The sender: the source MAC.
        count_device(
            &ctx,
            6,
            IFACE_DIR_INGRESS,
            route.device_class,
            route.in_flags,
        );
    }
    TCX_NEXT
}

#[classifier]
pub fn netmon_tc_egress(ctx: TcContext) -> i32 {
    let class = egress_class(&ctx);
    let skb = skb(&ctx);
    // SAFETY: reading fields of this program's context.
    let (ifindex, protocol, iif) =
        unsafe { ((*skb).ifindex, (*skb).protocol, (*skb).ingress_ifindex) };
    let slot = iface_slot(ifindex);
    count(&ctx, slot, IFACE_DIR_EGRESS, class);
    let flags = match slot {
        // SAFETY: this CPU's slot, as in `count`.
        Some(s) => unsafe { (*s).lan_flags },
        None => lan_flags(ifindex),
    };
    if flags & LAN_COUNT != 0 {
        let proto = u16::from_be(protocol as u16);
        let device_class = if proto != ETH_P_IP && proto != ETH_P_IPV6 {
            DEV_CLASS_NOT_IP
        } else if class == IFACE_CLASS_FORWARDED {
            forwarded_class(iif)
        } else {
            DEV_CLASS_HOST
        };
        // The receiver: the destination MAC.
        count_device(&ctx, 0, IFACE_DIR_EGRESS, device_class, flags);
    }
    TCX_NEXT
}

/// The `NETMON_LAN` flags of `ifindex` (0 for an interface not listed).
#[inline(always)]
fn lan_flags(ifindex: u32) -> u32 {
    // SAFETY: the value is copied out at once; the loader writes the map
    // only when interfaces are attached, and a torn read of a u32 is
    // impossible.
    unsafe { NETMON_LAN.get(&ifindex) }.copied().unwrap_or(0)
}

/// The device class of traffic forwarded to or from `ifindex`.
#[inline(always)]
fn forwarded_class(ifindex: u32) -> u8 {
    if lan_flags(ifindex) & LAN_LOCAL != 0 {
        DEV_CLASS_FWD_LOCAL
    } else {
        DEV_CLASS_FWD_INTERNET
    }
}

/// Device counters in slots (see `netmon_common::device`), per CPU.
#[aya_ebpf::macros::btf_map]
pub static NETMON_DEVICE_SLOTS: aya_ebpf::btf_maps::PerCpuArray<
    DeviceSlot,
    { DEVICE_SLOTS as usize },
> = aya_ebpf::btf_maps::PerCpuArray::new();

/// Adds the packet to the device whose MAC is at `mac_offset` in the frame:
/// in its slot on this CPU when the interface's `flags` allow slots and the
/// slot is free or the device's, otherwise in the hash, or in the
/// interface's overflow row when the hash is full.
#[inline(always)]
fn count_device(ctx: &TcContext, mac_offset: usize, direction: u8, class: u8, flags: u32) {
    let skb = skb(ctx);
    // SAFETY: reading fields of this program's context.
    let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // The Ethernet header is in the linear data of every frame the stack
    // builds or receives; read it directly (no helper call) when it is, and
    // through the helper otherwise.
    let mac: [u8; 6] = if data + 14 <= data_end {
        // SAFETY: the check above, visible to the verifier, proves the
        // frame's first 14 bytes are readable packet data, and
        // `mac_offset` is 0 or 6.
        unsafe { core::ptr::read_unaligned((data + mac_offset) as *const [u8; 6]) }
    } else {
        ctx.load(mac_offset).unwrap_or(DEVICE_OVERFLOW_MAC)
    };
    if flags & LAN_SLOTS != 0 {
        let word = mac_word(mac);
        if let Some(s) = NETMON_DEVICE_SLOTS.get_ptr_mut(device_slot_index(ifindex, word)) {
            // SAFETY: this CPU's value of an array slot, valid for this
            // program run; only this CPU writes it (userspace only reads the
            // slots, see `netmon_common::device`), and tc programs do not
            // nest on a CPU. The masks keep the indexes in bounds
            // (directions are 0..2, classes 0..4).
            unsafe {
                if (*s).ifindex == 0 {
                    (*s).mac = word;
                    (*s).ifindex = ifindex;
                }
                if (*s).ifindex == ifindex && (*s).mac == word {
                    let c = &mut (*s).counters[usize::from(direction & 1)][usize::from(class & 3)];
                    c.packets += 1;
                    c.bytes += u64::from(len);
                    return;
                }
            }
        }
    }
    let mut key = DeviceKey {
        ifindex,
        mac,
        direction,
        class,
    };
    if let Some(value) = NETMON_DEVICES.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value, as in `count`.
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
    if NETMON_DEVICES.insert(&key, &first, 0).is_ok() {
        return;
    }
    // Full: the overflow row, inserted by the loader for every LAN
    // interface, direction and class.
    key.mac = DEVICE_OVERFLOW_MAC;
    if let Some(value) = NETMON_DEVICES.get_ptr_mut(&key) {
        // SAFETY: as above.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(len);
        }
    }
}

/// The IPv4 or IPv6 header of a packet whose `skb->protocol` says so.
#[inline(always)]
fn network_header(ctx: &TcContext, protocol: u32) -> L3 {
    match u16::from_be(protocol as u16) {
        ETH_P_IP => load::<20>(ctx, 0).map_or(L3::Other, L3::V4),
        ETH_P_IPV6 => load::<40>(ctx, 0).map_or(L3::Other, L3::V6),
        _ => L3::Other,
    }
}

/// What the ingress program needs from the FIB for one packet.
struct IngressRoute {
    /// The FIB routes or bridges it out of an interface.
    forwarded: bool,
    /// Its `DEV_CLASS_*` for device counting.
    device_class: u8,
    /// The `NETMON_LAN` flags of the interface it arrived on.
    in_flags: u32,
}

/// Interface counters in slots (see `netmon_common::iface`), per CPU.
#[aya_ebpf::macros::btf_map]
pub static NETMON_IFACE_SLOTS: aya_ebpf::btf_maps::PerCpuArray<
    IfaceSlot,
    { IFACE_SLOTS as usize },
> = aya_ebpf::btf_maps::PerCpuArray::new();

/// Slots of [`NETMON_ROUTE_MEMO`] per CPU (a power of two).
const MEMO_SLOTS: u32 = 256;

/// One remembered FIB answer: the lookup's inputs, the clock tick it was
/// made in, and what the ingress program derived from it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RouteMemo {
    /// `jiffies` when the FIB answered (0: empty slot).
    jiffies: u64,
    /// The interface the packet arrived on (0: empty slot).
    ifindex: u32,
    /// `family << 8 | tos` of the lookup.
    family_tos: u32,
    /// Source address (IPv4 in the first word).
    src: [u32; 4],
    /// Destination address (IPv4 in the first word).
    dst: [u32; 4],
    /// [`IngressRoute::in_flags`].
    in_flags: u32,
    /// [`IngressRoute::device_class`], and 0x100 when forwarded.
    class: u32,
}

/// The last FIB answers of this CPU, direct-mapped by a hash of the
/// lookup's inputs (see [`remembered_route`]).
#[aya_ebpf::macros::btf_map]
pub static NETMON_ROUTE_MEMO: aya_ebpf::btf_maps::PerCpuArray<RouteMemo, { MEMO_SLOTS as usize }> =
    aya_ebpf::btf_maps::PerCpuArray::new();

/// The FIB's answer for an ingress packet, remembered per CPU for the rest
/// of the clock tick (`jiffies`, 1/`CONFIG_HZ` s: 4 ms at HZ 250) and for
/// the same interface, addresses and TOS: a FIB lookup costs more than the
/// rest of the program, and a stream of packets asks it the same question.
/// A route or address change is seen by the next tick at the latest, where
/// a lookup per packet sees it a few microseconds before the stack does.
#[inline(always)]
fn remembered_route(ctx: &TcContext, ifindex: u32, l3: &L3) -> IngressRoute {
    let (family_tos, src, dst) = match l3 {
        L3::Other => {
            return IngressRoute {
                forwarded: false,
                device_class: DEV_CLASS_NOT_IP,
                in_flags: lan_flags(ifindex),
            };
        }
        L3::V4(ip) => (
            (AF_INET << 8) | u32::from(ip[1]),
            [
                u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
                0,
                0,
                0,
            ],
            [
                u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
                0,
                0,
                0,
            ],
        ),
        L3::V6(ip) => {
            let word = |at: usize| u32::from_ne_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
            (
                AF_INET6 << 8,
                [word(8), word(12), word(16), word(20)],
                [word(24), word(28), word(32), word(36)],
            )
        }
    };
    // SAFETY: a helper without arguments or side effects.
    let now = unsafe { bpf_jiffies64() };
    let slot = (dst[0] ^ dst[3] ^ src[0].rotate_left(16) ^ src[3] ^ ifindex)
        .wrapping_mul(0x9e37_79b1)
        >> (32 - MEMO_SLOTS.trailing_zeros());
    let memo = NETMON_ROUTE_MEMO.get_ptr_mut(slot);
    if let Some(m) = memo {
        // SAFETY: this CPU's own slot, valid for this program run; no
        // other program run on this CPU interleaves with this one (tc
        // programs run with migration and softirqs disabled).
        let m = unsafe { &*m };
        if m.jiffies == now
            && m.ifindex == ifindex
            && m.family_tos == family_tos
            && m.src == src
            && m.dst == dst
        {
            return IngressRoute {
                forwarded: m.class & 0x100 != 0,
                device_class: m.class as u8,
                in_flags: m.in_flags,
            };
        }
    }
    let in_flags = lan_flags(ifindex);
    let (forwarded, device_class) = match route(ctx, ifindex, l3) {
        Route::Forwarded(out) => (
            true,
            if in_flags & LAN_COUNT != 0 {
                forwarded_class(out)
            } else {
                DEV_CLASS_FWD_INTERNET
            },
        ),
        _ => (false, DEV_CLASS_HOST),
    };
    if let Some(m) = memo {
        // SAFETY: as above.
        unsafe {
            *m = RouteMemo {
                jiffies: now,
                ifindex,
                family_tos,
                src,
                dst,
                in_flags,
                class: u32::from(device_class) | if forwarded { 0x100 } else { 0 },
            };
        }
    }
    IngressRoute {
        forwarded,
        device_class,
        in_flags,
    }
}

/// The FIB's answer for an ingress packet (see the module docs).
#[inline(always)]
fn route(ctx: &TcContext, ifindex: u32, l3: &L3) -> Route {
    // SAFETY: a zeroed parameter block is a valid value of this plain-data
    // struct.
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    p.ifindex = ifindex;
    match l3 {
        L3::Other => return Route::NotIp,
        L3::V4(ip) => {
            p.family = AF_INET as u8;
            // Writing a union field is safe; these are the IPv4 arms.
            p.__bindgen_anon_2.tos = ip[1];
            p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
            p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        }
        L3::V6(ip) => {
            p.family = AF_INET6 as u8;
            // SAFETY: writing the IPv6 arms of the zeroed unions.
            unsafe {
                let mut i = 0;
                while i < 4 {
                    let s = 8 + i * 4;
                    let d = 24 + i * 4;
                    p.__bindgen_anon_3.ipv6_src[i] =
                        u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
                    p.__bindgen_anon_4.ipv6_dst[i] =
                        u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
                    i += 1;
                }
            }
        }
    }
    // SAFETY: the context and a parameter block of the size given, as the
    // helper expects.
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &raw mut p,
            size_of::<FibParams>() as i32,
            BPF_FIB_LOOKUP_SKIP_NEIGH,
        )
    };
    match u32::try_from(ret) {
        Ok(BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FRAG_NEEDED) => {
            Route::Forwarded(p.ifindex)
        }
        _ => Route::Host,
    }
}

#[inline(always)]
fn skb(ctx: &TcContext) -> *mut __sk_buff {
    ctx.as_ptr().cast()
}

/// The interface array's slot of `ifindex` on this CPU, if the loader gave
/// it one.
#[inline(always)]
fn iface_slot(ifindex: u32) -> Option<*mut IfaceSlot> {
    let slot = NETMON_IFACE_SLOTS.get_ptr_mut(ifindex % IFACE_SLOTS)?;
    // SAFETY: this CPU's value of an array slot, valid for this program run.
    (unsafe { (*slot).ifindex } == ifindex).then_some(slot)
}

#[inline(always)]
fn count(ctx: &TcContext, slot: Option<*mut IfaceSlot>, direction: u8, class: u8) {
    let skb = skb(ctx);
    // SAFETY: `skb` is this program's context; reading its fields is what
    // the verifier allows for sched_cls programs.
    let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
    if let Some(s) = slot {
        // SAFETY: a per-CPU value: only this CPU writes it (the loader
        // writes a slot only before attaching to its interface), and the
        // pointer is valid for this program run. The masks keep the
        // indexes in bounds (directions are 0..2, classes 0..4).
        unsafe {
            let c = &mut (*s).counters[usize::from(direction & 1)][usize::from(class & 3)];
            c.packets += 1;
            c.bytes += u64::from(len);
        }
        return;
    }
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
fn ingress_has_socket(ctx: &TcContext, l3: &L3) -> bool {
    // SAFETY: a zeroed tuple is a valid value of this plain-data union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let (protocol, size) = match l3 {
        L3::V4(ip) => {
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
        L3::V6(ip) => {
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
        L3::Other => return false,
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
