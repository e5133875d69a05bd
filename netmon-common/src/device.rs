//! Per-device counters written by the tc programs on LAN interfaces (the
//! interfaces whose flags in `NETMON_LAN` include [`LAN_COUNT`]): per
//! interface, device MAC address, direction and class, the packets and
//! bytes the device exchanged through this host.
//!
//! The device is the frame's *source* MAC on ingress (the device sent it)
//! and its *destination* MAC on egress (the device receives it); a
//! broadcast or multicast destination is its own row (the group address).
//! Bytes are `skb->len` at the tc hook, as in `crate::iface`: link-layer
//! header included, so per interface and direction the device rows add up
//! to the interface's counters exactly.
//!
//! Classes: where the packet goes (ingress) or comes from (egress):
//! - [`DEV_CLASS_HOST`]: the host itself. Ingress: the FIB says the packet
//!   is not forwarded (addressed to one of the host's addresses, broadcast,
//!   multicast, or forwarding disabled). Egress: sent by the host (a socket
//!   or the kernel), not forwarded;
//! - [`DEV_CLASS_FWD_LOCAL`]: forwarded (routed or bridged) to/from an
//!   interface flagged [`LAN_LOCAL`] (a LAN interface or its bridge);
//! - [`DEV_CLASS_FWD_INTERNET`]: forwarded to/from any other interface;
//! - [`DEV_CLASS_NOT_IP`]: not IPv4/IPv6 (ARP, LLDP, ...).
//!
//! Map layout: a per-CPU array of [`DEVICE_SLOTS`] [`DeviceSlot`]s in front
//! of a per-CPU hash of [`DeviceKey`] → `IfaceCounters`, as for interfaces
//! (see `crate::iface`). On a LAN interface flagged [`LAN_SLOTS`], a
//! device's packet goes to the slot [`device_slot_index`] of the CPU it runs
//! on: the first device to reach a free slot on a CPU claims it there for
//! good, and a device whose slot another device holds on that CPU is counted
//! in the hash. A CPU's slot is only ever written by that CPU (no atomics,
//! no locks), and per CPU each device is counted in exactly one place, so a
//! key's count is the slots' sum plus the hash's sum (the reader adds them).
//! A slot costs an array lookup and two compares per packet, where the hash
//! costs a hash of the key, a bucket walk and a key compare.
//!
//! The slots of a removed interface cannot be freed (userspace writes a
//! per-CPU slot on every CPU at once, which would race with live devices in
//! the same slot on other CPUs). Instead the loader marks the interface
//! [`LAN_RETIRED`] in `NETMON_LAN` once its final counts are committed, and
//! the reader leaves out every slot of a retired interface; an interface
//! that later reuses the index is counted in the hash only (no
//! [`LAN_SLOTS`]), so a retired slot never counts again.
//!
//! Bound: the map holds `DEFAULT_MAX_DEVICE_KEYS` keys. The loader inserts
//! per LAN interface the eight [`DEVICE_OVERFLOW_MAC`] keys up front; a
//! device whose key cannot be inserted (map full) is counted there, so no
//! byte is lost, only its attribution.

/// The all-zero MAC: the overflow row of an interface (no device sends
/// from it).
pub const DEVICE_OVERFLOW_MAC: [u8; 6] = [0; 6];

/// `NETMON_LAN` flag: count devices on this interface.
pub const LAN_COUNT: u32 = 1;
/// `NETMON_LAN` flag: traffic forwarded to/from this interface is local
/// (a LAN interface, or the bridge a LAN port belongs to).
pub const LAN_LOCAL: u32 = 2;

/// `NETMON_LAN` flag: devices of this interface may use the slots of
/// `NETMON_DEVICE_SLOTS` (see the module docs).
pub const LAN_SLOTS: u32 = 4;
/// `NETMON_LAN` flag: the interface is gone and its final counts are
/// committed: the reader leaves out its slots.
pub const LAN_RETIRED: u32 = 8;

/// Exchanged with the host itself.
pub const DEV_CLASS_HOST: u8 = 0;
/// Forwarded to or from a local (LAN) interface.
pub const DEV_CLASS_FWD_LOCAL: u8 = 1;
/// Forwarded to or from a non-LAN interface (the internet side).
pub const DEV_CLASS_FWD_INTERNET: u8 = 2;
/// Not IP (ARP and other link-layer protocols).
pub const DEV_CLASS_NOT_IP: u8 = 3;
/// Number of classes.
pub const DEV_CLASSES: u8 = 4;

/// Key of the device map.
///
/// Layout (12 bytes): `ifindex` u32, `mac` 6 bytes, `direction` u8
/// (`crate::iface::IFACE_DIR_*`), `class` u8 (`DEV_CLASS_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// The LAN interface's index.
    pub ifindex: u32,
    /// The device's MAC address.
    pub mac: [u8; 6],
    /// `crate::iface::IFACE_DIR_INGRESS` (the device sent) or
    /// `IFACE_DIR_EGRESS` (the device received).
    pub direction: u8,
    /// One of the `DEV_CLASS_*` constants.
    pub class: u8,
}

const _: () = assert!(size_of::<DeviceKey>() == 12);

/// Slots of the per-CPU device array (a power of two).
pub const DEVICE_SLOTS: u32 = 512;

/// One device's slot in the per-CPU device array, on one CPU.
///
/// Layout (144 bytes): `mac` u64 (the MAC's six bytes, little-endian, in
/// the low 48 bits), `ifindex` u32 (0: the slot is free), 4 bytes of zero
/// padding, then the counters per direction (`crate::iface::IFACE_DIR_*`)
/// and class (`DEV_CLASS_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSlot {
    /// The device's MAC, see [`mac_word`].
    pub mac: u64,
    /// The LAN interface (0: the slot is free).
    pub ifindex: u32,
    /// Always zero.
    pub _pad: u32,
    /// Counters per direction and class.
    pub counters: [[crate::iface::IfaceCounters; DEV_CLASSES as usize]; 2],
}

const _: () = {
    assert!(size_of::<DeviceSlot>() == 144);
    assert!(DEVICE_SLOTS.is_power_of_two());
};

/// A MAC address as the low 48 bits of a u64 (little-endian bytes).
#[inline(always)]
#[must_use]
pub const fn mac_word(mac: [u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// The MAC address of a [`mac_word`].
#[must_use]
pub const fn word_mac(word: u64) -> [u8; 6] {
    let b = word.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// The slot of the device `mac` (a [`mac_word`]) on interface `ifindex`: a
/// multiplicative hash of both, so devices of one vendor (same upper
/// bytes) and of several interfaces spread over the array.
#[inline(always)]
#[must_use]
pub const fn device_slot_index(ifindex: u32, mac: u64) -> u32 {
    let x = (mac ^ ((ifindex as u64) << 48)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> (64 - DEVICE_SLOTS.trailing_zeros())) as u32
}

#[cfg(feature = "user")]
mod user {
    use super::{DeviceKey, DeviceSlot};
    // SAFETY: `#[repr(C)]`, u64 + two u32 + u64 counters, no padding (size
    // checked above): every bit pattern is valid.
    unsafe impl aya::Pod for DeviceSlot {}
    // SAFETY: `#[repr(C)]`, fixed-width fields, no padding (12 bytes, align
    // 4, checked above): every bit pattern is valid.
    unsafe impl aya::Pod for DeviceKey {}
}
