//! The neighbour table (IPv4 ARP and IPv6 neighbour discovery entries) of
//! the current network namespace, from one `RTM_GETNEIGH` netlink dump:
//! which address each LAN MAC has now ([`crate::devices`]).
//!
//! `/proc/net/arp` has IPv4 only; IPv6 neighbours exist only over netlink.
//! Messages are built and parsed with `netlink-packet-route`, the
//! rust-netlink family's route-message crate (the same `netlink-packet-core`
//! and `netlink-sys` the sock_diag lookups use), synchronously: one
//! request, read to `NLMSG_DONE`.
//!
//! Kept: entries with a 6-byte link-layer address in a state that says the
//! address was reachable (`REACHABLE`, `STALE`, `DELAY`, `PROBE`,
//! `PERMANENT`, `NOARP`); `INCOMPLETE` and `FAILED` entries have no MAC.
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Receive buffer: the kernel sizes dump messages to at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// The kernel answers at once; a longer wait means something is wrong.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of [`neighbours`].
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// The netlink socket could not be created or used.
    #[error("neighbour table netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// A reply could not be parsed or the kernel answered with an error.
    #[error("neighbour table dump: {0}")]
    Dump(String),
}

/// The neighbour of one message: its address and MAC, if it has both and
/// a usable state.
fn entry(msg: &NeighbourMessage) -> Option<(IpAddr, [u8; 6])> {
    if matches!(
        msg.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for a in &msg.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    let mac = mac.filter(|m| *m != [0; 6])?;
    Some((addr?, mac))
}

/// Every usable neighbour entry (IPv4 and IPv6) of this network namespace
/// as (address, MAC).
///
/// # Errors
/// [`NeighError`] when netlink fails.
pub fn neighbours() -> Result<Vec<(IpAddr, [u8; 6])>, NeighError> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let timeout =
        nix::sys::time::TimeVal::new(i64::try_from(RECV_TIMEOUT.as_secs()).unwrap_or(i64::MAX), 0);
    nix::sys::socket::setsockopt(
        &socket.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &timeout,
    )
    .map_err(std::io::Error::from)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    // Family AF_UNSPEC (the default header): both IPv4 and IPv6.
    let mut packet = NetlinkMessage::new(
        header,
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()).into(),
    );
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0)?;

    let mut found = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        buf.clear();
        let n = socket.recv(&mut buf, libc::MSG_TRUNC)?;
        if n > buf.len() {
            return Err(NeighError::Dump(format!("reply of {n} bytes truncated")));
        }
        let mut off = 0;
        while off < buf.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..])
                .map_err(|e| NeighError::Dump(e.to_string()))?;
            let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
            if len == 0 {
                return Err(NeighError::Dump("zero-length netlink message".into()));
            }
            // NLMSG_ALIGN: messages start on 4-byte boundaries.
            off = off.saturating_add(len.next_multiple_of(4));
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => {
                    found.extend(entry(&m));
                }
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(found),
                        Some(code) => Err(NeighError::Dump(
                            std::io::Error::from_raw_os_error(-code.get()).to_string(),
                        )),
                    };
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dump works in any namespace (loopback has no neighbours, so
    /// the answer may be empty) and keeps only entries with a MAC.
    #[test]
    fn this_namespace_dumps() {
        let all = neighbours().expect("RTM_GETNEIGH dump");
        assert!(all.iter().all(|(_, mac)| *mac != [0; 6]));
    }
}
