//! Service ports and directions: which side of a flow offers the service.
//!
//! Remote rollups and `--by port` group by the **service port** and the
//! **direction**, not by both ports: a server's 2,000 connections from
//! 2,000 ephemeral client ports are one `tcp/443 in` row, and storage grows
//! with services and peers, not with connections.
//!
//! Where direction is decided: in userspace, at the drain, from fields the
//! kernel writes once into the flow value when it inserts the entry
//! ([`FlowValue::owner`], [`FlowValue::local_port`], [`FlowValue::flags`]).
//! The kernel already tells accepted sockets apart: the socket-storage map
//! is created with `BPF_F_CLONE`, so a socket accepted from a listener
//! starts with a copy of the listener's owner record, whose `sock_cookie`
//! names the listener, not the accepted socket. No per-packet work is
//! added; the rule, in order:
//! 1. a TCP listener's folded handshake entry (remote `::`/0, see
//!    `netmon_ebpf`'s `is_connection`): **in**, service = local port;
//! 2. an owner record cloned from a listener (`FLOW_F_OWNED`, owner
//!    `sock_cookie` non-zero and not the flow's cookie): **in** (accepted),
//!    service = local port. Exact for every socket accepted after load;
//! 3. otherwise, for protocols with ports (TCP, UDP, UDP-Lite, SCTP), the
//!    bound well-known side: **in** when the local port is below the
//!    ephemeral range ([`EPHEMERAL_LOW`], Linux's default
//!    `ip_local_port_range` starts at 32768) and the remote port is inside
//!    it, service = local port; else **out**, service = remote port. This
//!    covers UDP servers (no accept), sockets accepted before netmon loaded
//!    (adopted with their own cookie) and sockets with no owner record. A
//!    client whose ephemeral ports lie below 32768 (a changed
//!    `ip_local_port_range`) talking to a server port below it is counted
//!    as out from the server's side; a connect() from a bound low port to a
//!    high one as in;
//! 4. protocols without ports (ICMP, raw): **out**, the flow's port field
//!    as it is (0).
//!
//! Rows written by schema 3 and earlier carry no direction
//! ([`ConnDir::Unknown`]) and the remote port as it was.
use netmon_common::{FLOW_F_OWNED, FlowKey, FlowValue};

/// First port of Linux's default ephemeral range
/// (`net.ipv4.ip_local_port_range` = 32768 60999).
pub const EPHEMERAL_LOW: u16 = 32_768;

/// Which side opened a flow.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ConnDir {
    /// This host connected (or sent first, for UDP): the service port is
    /// the remote one.
    #[default]
    Out,
    /// A peer connected to this host (accepted from a listener, or to a
    /// bound well-known UDP port): the service port is the local one.
    In,
    /// Not recorded (history written before directions were kept).
    Unknown,
}

impl ConnDir {
    /// Stored byte.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Out => 0,
            Self::In => 1,
            Self::Unknown => 2,
        }
    }

    /// Inverse of [`Self::to_byte`].
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Out),
            1 => Some(Self::In),
            2 => Some(Self::Unknown),
            _ => None,
        }
    }

    /// `in`, `out`, or `None` when unknown.
    #[must_use]
    pub const fn label(self) -> Option<&'static str> {
        match self {
            Self::Out => Some("out"),
            Self::In => Some("in"),
            Self::Unknown => None,
        }
    }
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_UDPLITE: u8 = 136;

/// True for protocols whose flows have ports.
const fn has_ports(protocol: u8) -> bool {
    matches!(
        protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    )
}

/// The direction and service port of a flow (see the module docs for the
/// rule).
#[must_use]
pub fn service_of(key: &FlowKey, value: &FlowValue) -> (ConnDir, u16) {
    if !has_ports(key.protocol) {
        return (ConnDir::Out, key.remote_port);
    }
    let folded = key.protocol == IPPROTO_TCP && key.remote_port == 0 && key.remote_addr == [0; 16];
    let cloned = value.flags & FLOW_F_OWNED != 0
        && value.owner.sock_cookie != 0
        && value.owner.sock_cookie != key.cookie;
    if folded || cloned {
        return (ConnDir::In, value.local_port);
    }
    if value.local_port != 0 && value.local_port < EPHEMERAL_LOW && key.remote_port >= EPHEMERAL_LOW
    {
        return (ConnDir::In, value.local_port);
    }
    (ConnDir::Out, key.remote_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(protocol: u8, local: u16, remote: u16) -> (FlowKey, FlowValue) {
        (
            FlowKey {
                cookie: 7,
                remote_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                remote_port: remote,
                ip_version: 4,
                protocol,
                _pad: 0,
            },
            FlowValue {
                local_port: local,
                ..FlowValue::default()
            },
        )
    }

    #[test]
    fn accepted_sockets_are_inbound_on_the_local_port() {
        let (k, mut v) = flow(IPPROTO_TCP, 8443, 40_000);
        v.flags = FLOW_F_OWNED;
        v.owner.sock_cookie = 3; // the listener's record, cloned
        assert_eq!(service_of(&k, &v), (ConnDir::In, 8443));
        // Even with a client port below the ephemeral range.
        let (k, mut v) = flow(IPPROTO_TCP, 9000, 1_500);
        v.flags = FLOW_F_OWNED;
        v.owner.sock_cookie = 3;
        assert_eq!(service_of(&k, &v), (ConnDir::In, 9000));
    }

    #[test]
    fn connected_sockets_are_outbound_on_the_remote_port() {
        let (k, mut v) = flow(IPPROTO_TCP, 51_000, 443);
        v.flags = FLOW_F_OWNED;
        v.owner.sock_cookie = k.cookie;
        assert_eq!(service_of(&k, &v), (ConnDir::Out, 443));
        // Both ports high (peer to peer): the remote one.
        let (k, v) = flow(IPPROTO_UDP, 50_000, 40_000);
        assert_eq!(service_of(&k, &v), (ConnDir::Out, 40_000));
    }

    #[test]
    fn udp_servers_and_listeners_are_inbound() {
        let (k, v) = flow(IPPROTO_UDP, 53, 45_123);
        assert_eq!(service_of(&k, &v), (ConnDir::In, 53));
        let (mut k, v) = flow(IPPROTO_TCP, 443, 0);
        k.remote_addr = [0; 16];
        assert_eq!(service_of(&k, &v), (ConnDir::In, 443));
        let (k, v) = flow(1, 0, 0);
        assert_eq!(service_of(&k, &v), (ConnDir::Out, 0));
    }

    #[test]
    fn bytes_round_trip() {
        for d in [ConnDir::Out, ConnDir::In, ConnDir::Unknown] {
            assert_eq!(ConnDir::from_byte(d.to_byte()), Some(d));
        }
        assert_eq!(ConnDir::from_byte(3), None);
    }
}
