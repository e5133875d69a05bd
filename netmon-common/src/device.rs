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

#[cfg(feature = "user")]
mod user {
    use super::DeviceKey;
    // SAFETY: `#[repr(C)]`, fixed-width fields, no padding (12 bytes, align
    // 4, checked above): every bit pattern is valid.
    unsafe impl aya::Pod for DeviceKey {}
}
