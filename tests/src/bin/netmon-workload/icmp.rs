//! ICMP echo over a raw socket (root) or a ping socket (`SOCK_DGRAM` +
//! `IPPROTO_ICMP`/`IPPROTO_ICMPV6`: needs the caller's group in the network
//! namespace's `net.ipv4.ping_group_range`, which is off by default).

use std::{
    io::{self, Read as _},
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use anyhow::{Context as _, bail};
use netmon_tests::report::{DONE, Report};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{elapsed_ms, emit, left};

/// `icmp-ping`.
#[derive(clap::Args)]
pub struct PingArgs {
    /// Address to ping (IPv4: ICMP, IPv6: ICMPv6).
    #[arg(long)]
    to: IpAddr,
    /// Echo requests to send, one at a time (each waits for its reply).
    #[arg(long)]
    count: u16,
    /// ICMP data bytes per request (after the 8-byte ICMP header).
    #[arg(long, default_value_t = 56)]
    size: usize,
    /// Socket kind.
    #[arg(long, value_enum, default_value_t)]
    socket: SocketKind,
}

/// The kind of ICMP socket `icmp-ping` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketKind {
    /// `SOCK_RAW`: the workload writes the whole ICMP message (root).
    #[default]
    Raw,
    /// `SOCK_DGRAM` ping socket: the kernel sets the echo id (the socket's
    /// "port") and the checksum, and delivers only this socket's replies.
    Ping,
}

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub fn ping(a: &PingArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let (domain, protocol, request, reply) = match a.to {
        IpAddr::V4(_) => (
            Domain::IPV4,
            Protocol::ICMPV4,
            ECHO_REQUEST_V4,
            ECHO_REPLY_V4,
        ),
        IpAddr::V6(_) => (
            Domain::IPV6,
            Protocol::ICMPV6,
            ECHO_REQUEST_V6,
            ECHO_REPLY_V6,
        ),
    };
    let socket = match a.socket {
        SocketKind::Raw => {
            Socket::new(domain, Type::RAW, Some(protocol)).context("raw ICMP socket (root?)")?
        }
        SocketKind::Ping => Socket::new(domain, Type::DGRAM, Some(protocol))
            .context("ping socket (is the group in net.ipv4.ping_group_range?)")?,
    };
    let ping = a.socket == SocketKind::Ping;
    let to = SocketAddr::new(a.to, 0).into();
    // The id field tells our replies from anything else the raw socket sees.
    // A ping socket's id is its local "port", which the kernel picks at the
    // first send (and writes into every request, whatever is in the buffer).
    let mut id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
    let mut done = Report::new(DONE);
    for seq in 0..a.count {
        let mut packet = vec![0_u8; 8 + a.size];
        packet[0] = request;
        packet[4..6].copy_from_slice(&id.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in packet[8..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        if a.to.is_ipv4() && !ping {
            // ICMPv6 checksums are filled in by the kernel, and so are all
            // of a ping socket's; raw ICMP ones are not.
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let n = socket.send_to(&packet, &to).context("send_to")?;
        if n != packet.len() {
            bail!("short send: {n} of {}", packet.len());
        }
        done.datagrams_sent += 1;
        done.written += a.size as u64;
        if ping {
            id = socket
                .local_addr()
                .ok()
                .and_then(|l| l.as_socket())
                .map(|l| l.port())
                .context("ping socket's local id after sending")?;
        }
        // Raw IPv4 sockets deliver the IP header too; raw IPv6 and all ping
        // sockets do not.
        let with_ip_header = a.to.is_ipv4() && !ping;
        let data = wait_reply(&socket, with_ip_header, reply, id, seq, deadline)?;
        done.datagrams_received += 1;
        done.read += data as u64;
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}

/// Receives until the echo reply (`id`, `seq`) arrives; returns its ICMP
/// data length. `ip_header`: the socket delivers the IP header before the
/// ICMP message.
fn wait_reply(
    mut socket: &Socket,
    ip_header: bool,
    reply: u8,
    id: u16,
    seq: u16,
    deadline: Instant,
) -> anyhow::Result<usize> {
    let mut buf = vec![0_u8; 65536];
    loop {
        socket.set_read_timeout(Some(left(deadline).context("waiting for an echo reply")?))?;
        let n = match socket.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("recv"),
        };
        let icmp = if ip_header {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            buf.get(ihl..n).unwrap_or_default()
        } else {
            buf.get(..n).unwrap_or_default()
        };
        if icmp.len() >= 8
            && icmp[0] == reply
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(icmp.len() - 8);
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2; checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }
}
