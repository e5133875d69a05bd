//! Interface counters written by the tc programs (`netmon_tc_ingress` /
//! `netmon_tc_egress`): per interface, direction and class, the packets and
//! bytes the interface moved, whoever owned them.
//!
//! Bytes are `skb->len` at the tc hook: the whole frame as the device sees it,
//! link-layer header included (14 B on Ethernet, 0 on L3 devices such as tun
//! or WireGuard). A VLAN tag carried in skb metadata (hardware-accelerated,
//! the default on veth and most NICs) is in neither; one inline in the frame
//! is part of the L2 bytes. A GSO packet counts once with its full length,
//! its headers once, exactly as veth and most virtual devices count it in
//! their own statistics (a physical NIC that segments counts each wire
//! frame's headers: there the interface counter is larger).
//!
//! Map layout: a per-CPU hash of [`IfaceKey`] → [`IfaceCounters`]; per-CPU so
//! the per-packet path adds without atomics. Userspace sums the CPUs.
//! In front of it, a per-CPU array of [`IFACE_SLOTS`] [`IfaceSlot`]s: the
//! loader gives a watched interface the slot `ifindex % IFACE_SLOTS` when
//! that slot is free, before attaching the programs to it, and the programs
//! then count it there (an array lookup, where the hash costs a hash and a
//! key compare per packet); an interface without a slot is counted in the
//! hash. A key's counts are the sum of both (the reader adds them).

/// Traffic received by the interface (tc ingress).
pub const IFACE_DIR_INGRESS: u8 = 0;
/// Traffic sent by the interface (tc egress).
pub const IFACE_DIR_EGRESS: u8 = 1;

/// The packet belongs to a local process's IP socket: on egress `skb->sk`
/// is an `AF_INET`/`AF_INET6` socket (or a request socket's listener) whose
/// owner `netmon_sock_create` recorded — the bytes the cgroup hooks
/// attribute to processes; on ingress a TCP/UDP socket lookup on the
/// packet's addresses and ports found a socket in the interface's network
/// namespace.
pub const IFACE_CLASS_LOCAL_SOCKET: u8 = 0;
/// Forwarded. Egress: no socket, and the packet came in on another
/// interface (`skb->skb_iif` set). Ingress: the FIB routes (or bridges) it
/// out of an interface, before any DNAT (so a reply to a masqueraded
/// connection, addressed to the host, is [`IFACE_CLASS_NO_SOCKET`]).
pub const IFACE_CLASS_FORWARDED: u8 = 1;
/// Egress only: a socket without a recorded owner: `AF_PACKET` sockets
/// injecting frames (tcpdump, DHCP clients), the kernel's own control
/// sockets (ICMP errors, IGMP/MLD reports, RSTs for no socket), sockets
/// opened before the load.
pub const IFACE_CLASS_OTHER_SOCKET: u8 = 2;
/// No local socket. Egress: sent by the kernel without a socket (ARP,
/// neighbour discovery). Ingress: not forwarded and no socket matched —
/// ARP, ICMP, packets for no socket, non-first fragments, replies to
/// masqueraded connections (de-NATed and forwarded after tc).
pub const IFACE_CLASS_NO_SOCKET: u8 = 3;
/// Number of classes (classes are `0..IFACE_CLASSES`).
pub const IFACE_CLASSES: u8 = 4;
/// Not a class of traffic: the interface's own counters (rx for ingress, tx
/// for egress) when netmon attached, written once by the loader into CPU
/// 0's slot and never by the programs, so the reader can show the
/// interface's counters since the load next to netmon's.
pub const IFACE_BASELINE: u8 = 0xff;

/// Key of the interface map: one interface, one direction, one class.
///
/// Layout (8 bytes): `ifindex` u32, `direction` u8 ([`IFACE_DIR_INGRESS`] or
/// [`IFACE_DIR_EGRESS`]), `class` u8 (`IFACE_CLASS_*`), 2 bytes of zero
/// padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceKey {
    /// The interface's index in its network namespace.
    pub ifindex: u32,
    /// [`IFACE_DIR_INGRESS`] or [`IFACE_DIR_EGRESS`].
    pub direction: u8,
    /// One of the `IFACE_CLASS_*` constants.
    pub class: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}

/// Counters of one [`IfaceKey`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    /// Packets (skbs: a GSO packet is one).
    pub packets: u64,
    /// `skb->len` summed: link-layer header included.
    pub bytes: u64,
}

/// Slots of the interface array.
pub const IFACE_SLOTS: u32 = 64;

/// One interface's slot in the per-CPU interface array, on one CPU.
///
/// Layout (136 bytes): `ifindex` u32 (0: free), `lan_flags` u32, then the
/// counters per direction (`IFACE_DIR_*`) and class (`IFACE_CLASS_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// The interface counted here (0: the slot is free).
    pub ifindex: u32,
    /// The interface's `crate::device::LAN_*` flags when the loader gave it
    /// the slot; the programs read only `LAN_COUNT` from here.
    pub lan_flags: u32,
    /// Counters per direction and class.
    pub counters: [[IfaceCounters; IFACE_CLASSES as usize]; 2],
}

const _: () = {
    assert!(size_of::<IfaceKey>() == 8);
    assert!(size_of::<IfaceCounters>() == 16);
    assert!(size_of::<IfaceSlot>() == 136);
};

#[cfg(feature = "user")]
mod user {
    use super::{IfaceCounters, IfaceKey, IfaceSlot};
    // SAFETY: `#[repr(C)]`, fixed-width fields, padding explicit: every bit
    // pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for IfaceKey {}
    // SAFETY: as above, two u64 fields.
    unsafe impl aya::Pod for IfaceCounters {}
    // SAFETY: `#[repr(C)]`, two u32 then u64 counters (no padding, size
    // checked above): every bit pattern is valid.
    unsafe impl aya::Pod for IfaceSlot {}
}
