//! Destination classes: where a flow's remote end is, so that "internet
//! usage" never includes loopback or local-network traffic.
//!
//! Rules, first match wins:
//! 1. [`DestClass::Loopback`]: interface index 1 (`lo`), 127.0.0.0/8, `::1`,
//!    and the IPv4-mapped `::ffff:127.0.0.0/104`.
//! 2. [`DestClass::Lan`]: RFC 1918 (10/8, 172.16/12, 192.168/16), CGNAT
//!    100.64/10, link-local 169.254/16, IPv6 unique-local fc00::/7 and
//!    link-local fe80::/10; multicast (224/4, ff00::/8) and the limited
//!    broadcast 255.255.255.255 (sent to the local network, never to a
//!    host on the internet: mDNS, SSDP, router advertisements, DHCP); and
//!    the IPv4-mapped forms of the IPv4 ranges.
//! 3. [`DestClass::Internet`]: everything else.
//!
//! [`DestClass::Unknown`] is for traffic with no remote address at all (the
//! kernel's overflow counters).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a row's traffic went. Stored as one byte (the discriminant), so the
/// values must never be renumbered.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum DestClass {
    /// This host.
    Loopback = 0,
    /// Local or private network.
    Lan = 1,
    /// Anything else.
    Internet = 2,
    /// No remote address known (overflow counters).
    Unknown = 3,
}

impl DestClass {
    /// All classes, in byte order.
    pub const ALL: [Self; 4] = [Self::Loopback, Self::Lan, Self::Internet, Self::Unknown];

    /// The stored byte.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Parses a stored byte; `None` for bytes no version wrote.
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Loopback),
            1 => Some(Self::Lan),
            2 => Some(Self::Internet),
            3 => Some(Self::Unknown),
            _ => None,
        }
    }

    /// Lower-case name (`loopback`, `lan`, `internet`, `unknown`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Lan => "lan",
            Self::Internet => "internet",
            Self::Unknown => "unknown",
        }
    }
}

/// Interface index of `lo` on Linux.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Classifies a remote address as the kernel stores it
/// ([`netmon_common::FlowKey::remote_addr`] with its `ip_version`), given the
/// interface the flow was seen on.
#[must_use]
pub fn classify_raw(addr: &[u8; 16], ip_version: u8, ifindex: u32) -> DestClass {
    if ifindex == LOOPBACK_IFINDEX {
        return DestClass::Loopback;
    }
    classify(&raw_to_ip(addr, ip_version))
}

/// Decodes the kernel's 16-byte address: IPv4 in the first 4 bytes when
/// `ip_version == 4`, else 16 bytes of IPv6.
#[must_use]
pub fn raw_to_ip(addr: &[u8; 16], ip_version: u8) -> IpAddr {
    if ip_version == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

/// Classifies an address (no interface information).
#[must_use]
pub fn classify(ip: &IpAddr) -> DestClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(*v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> DestClass {
    let [a, b, ..] = ip.octets();
    if a == 127 {
        DestClass::Loopback
    } else if ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64)
        || ip.is_multicast()
        || ip.is_broadcast()
    {
        DestClass::Lan
    } else {
        DestClass::Internet
    }
}

fn classify_v6(ip: &Ipv6Addr) -> DestClass {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        DestClass::Loopback
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 || ip.is_multicast() {
        DestClass::Lan
    } else {
        DestClass::Internet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> DestClass {
        classify(&s.parse().expect("test address"))
    }

    #[test]
    fn loopback() {
        assert_eq!(c("127.0.0.1"), DestClass::Loopback);
        assert_eq!(c("127.255.1.2"), DestClass::Loopback);
        assert_eq!(c("::1"), DestClass::Loopback);
        assert_eq!(c("::ffff:127.0.0.1"), DestClass::Loopback);
    }

    #[test]
    fn lan_ranges_and_their_edges() {
        for lan in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.3.4",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "::ffff:192.168.0.1",
            "::ffff:100.64.0.1",
            // Multicast and broadcast stay on the local network.
            "ff02::2",
            "ff02::fb",
            "ff05::1:3",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::ffff:224.0.0.1",
        ] {
            assert_eq!(c(lan), DestClass::Lan, "{lan}");
        }
        for inet in [
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "11.0.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "fec0::1",
            "fbff::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(c(inet), DestClass::Internet, "{inet}");
        }
    }

    #[test]
    fn loopback_interface_wins_over_address() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[8, 8, 8, 8]);
        assert_eq!(classify_raw(&raw, 4, 2), DestClass::Internet);
        assert_eq!(classify_raw(&raw, 4, LOOPBACK_IFINDEX), DestClass::Loopback);
    }

    #[test]
    fn raw_addresses_decode() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(raw_to_ip(&raw, 4), IpAddr::V4(Ipv4Addr::LOCALHOST));
        raw[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(raw_to_ip(&raw, 4).to_string(), "10.0.0.1");
        assert_eq!(
            raw_to_ip(&Ipv6Addr::LOCALHOST.octets(), 6),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn raw_v6_decodes_all_bytes() {
        let ip: Ipv6Addr = "fe80::1".parse().expect("test address");
        assert_eq!(classify_raw(&ip.octets(), 6, 3), DestClass::Lan);
    }

    #[test]
    fn byte_round_trip() {
        for class in DestClass::ALL {
            assert_eq!(DestClass::from_byte(class.to_byte()), Some(class));
        }
        assert_eq!(DestClass::from_byte(9), None);
    }
}
