//! sock_diag (netlink `NETLINK_SOCK_DIAG`): a socket's inode and uid from
//! its cookie and addresses.
//!
//! Two requests, both `SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`:
//! - an exact lookup (no `NLM_F_DUMP`): the kernel looks the socket up in
//!   its hash tables by the 4-tuple, then checks `idiag_cookie` against the
//!   socket it found (`sock_diag_check_cookie`, `-ESTALE` on a mismatch), so
//!   a hit is always the right socket. O(1) per socket.
//! - a dump of one family and protocol, filtered here by cookie: the
//!   fallback when the lookup finds nothing (a socket bound to a device, a
//!   `SO_REUSEPORT` group where the lookup picks a sibling).
//!
//! The lookup's address order differs by protocol (kernel
//! `inet_diag_find_one_icsk` and `udp_diag.c`): TCP takes the socket's view
//! (`src` = local), UDP the receiving packet's ("src and dst are swapped for
//! historical reasons": `src` = remote). UDP tries the kernel's order first,
//! then the other one; the cookie check makes a wrong hit impossible.
//!
//! A netlink socket only sees the network namespace it was created in:
//! [`SockDiag::in_netns`] creates one inside another namespace.
//!
//! Packets are built and parsed with `netlink-packet-sock-diag` and sent with
//! `netlink-sys` (the rust-netlink crates, MIT, kept current).

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

/// `AF_INET` as the diag requests spell it.
pub const AF_INET: u8 = netlink_packet_sock_diag::AF_INET;
/// `AF_INET6` as the diag requests spell it.
pub const AF_INET6: u8 = netlink_packet_sock_diag::AF_INET6;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Receive buffer size: the kernel sizes dump messages to the reader's
/// buffer, at most 32 KiB per datagram; twice that leaves room.
const RECV_BUF: usize = 64 * 1024;
/// A netlink request to the kernel is answered at once; a wait this long
/// means something is badly wrong and the drain must not hang on it.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors talking sock_diag.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    /// The netlink socket could not be created, configured or used.
    #[error("sock_diag netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// Entering another network namespace failed.
    #[error("entering network namespace {path}: {source}")]
    Netns {
        /// The namespace file.
        path: String,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// The kernel answered with an error other than "no such socket".
    #[error("sock_diag request failed: {0}")]
    Kernel(std::io::Error),
    /// A reply could not be parsed.
    #[error("bad sock_diag reply: {0}")]
    Decode(String),
}

/// What to look up: one socket by its endpoints and cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockQuery {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// IP protocol (only TCP and UDP have diag lookups here).
    pub protocol: u8,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// Interface index for scoped (IPv6 link-local) addresses, else 0.
    pub ifindex: u32,
    /// Socket cookie.
    pub cookie: u64,
}

/// A socket as sock_diag describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// Socket cookie.
    pub cookie: u64,
    /// Inode of the socket (`socket:[INODE]` in `/proc/PID/fd`); 0 for
    /// sockets no file refers to (`TIME_WAIT`, request sockets, kernel
    /// sockets).
    pub inode: u64,
    /// Owner uid of the socket (its creator's fsuid).
    pub uid: u32,
    /// Address family reported (`AF_INET` or `AF_INET6`).
    pub family: u8,
    /// TCP state number (`TCP_ESTABLISHED` = 1, ...; UDP uses the same).
    pub state: u8,
}

/// Converts a cookie to `idiag_cookie`: two host-order `u32`s, low half
/// first (kernel `sock_diag_check_cookie`).
#[must_use]
pub fn cookie_to_diag(cookie: u64) -> [u8; 8] {
    let mut out = [0; 8];
    // Truncations intended: the two 32-bit halves.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "splitting into 32-bit halves"
    )]
    let (lo, hi) = (cookie as u32, (cookie >> 32) as u32);
    out[..4].copy_from_slice(&lo.to_ne_bytes());
    out[4..].copy_from_slice(&hi.to_ne_bytes());
    out
}

/// Inverse of [`cookie_to_diag`].
#[must_use]
pub fn cookie_from_diag(raw: [u8; 8]) -> u64 {
    let lo = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let hi = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    u64::from(lo) | (u64::from(hi) << 32)
}

/// A sock_diag netlink socket in one network namespace.
pub struct SockDiag {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens a sock_diag socket in the caller's network namespace.
    ///
    /// # Errors
    /// When the netlink socket cannot be created or bound.
    pub fn new() -> Result<Self, SockDiagError> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let timeout = nix::sys::time::TimeVal::new(
            i64::try_from(RECV_TIMEOUT.as_secs()).unwrap_or(i64::MAX),
            0,
        );
        nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &timeout,
        )
        .map_err(std::io::Error::from)?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Opens a sock_diag socket inside the network namespace `ns_path`
    /// (e.g. `/proc/PID/ns/net`). A netlink socket stays in the namespace it
    /// was created in, so a short-lived thread enters the namespace, creates
    /// the socket and exits; the caller's own namespace never changes. Needs
    /// `CAP_SYS_ADMIN`. The socket keeps the namespace alive: drop it when
    /// done.
    ///
    /// # Errors
    /// When the namespace cannot be opened or entered, or the socket cannot
    /// be created.
    pub fn in_netns(ns_path: &Path) -> Result<Self, SockDiagError> {
        let file = std::fs::File::open(ns_path)?;
        let path = ns_path.display().to_string();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |source| SockDiagError::Netns {
                        path: path.clone(),
                        source,
                    },
                )?;
                Self::new()
            })
            .join()
            .unwrap_or_else(|_| Err(SockDiagError::Decode("netns thread panicked".into())))
        })
    }

    /// Looks one socket up exactly. `Ok(None)` when the kernel has no such
    /// socket or the socket found has another cookie.
    ///
    /// # Errors
    /// When netlink fails or answers with an unexpected error.
    pub fn lookup(&mut self, q: &SockQuery) -> Result<Option<DiagSocket>, SockDiagError> {
        let local_first = (q.local, q.remote);
        let orders: &[_] = if q.protocol == IPPROTO_UDP {
            &[(q.remote, q.local), local_first]
        } else {
            &[local_first]
        };
        for &((src, sport), (dst, dport)) in orders {
            let id = SocketId {
                source_port: sport,
                destination_port: dport,
                source_address: src,
                destination_address: dst,
                interface_id: q.ifindex,
                cookie: cookie_to_diag(q.cookie),
            };
            let mut found = None;
            self.request(q.family, q.protocol, id, false, |s| found = Some(s))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Every socket of one family and protocol, passed to `each`, except
    /// `TIME_WAIT` ones: no file refers to those (inode 0, nothing a dump
    /// is asked for), and a host making many short connections holds
    /// hundreds of thousands of them (a minute of 8k connections/s), which
    /// made each dump cost a drain more than everything else it did. An
    /// exact lookup ([`Self::lookup`]) still finds them.
    ///
    /// # Errors
    /// When netlink fails or a reply cannot be parsed.
    pub fn dump(
        &mut self,
        family: u8,
        protocol: u8,
        each: impl FnMut(DiagSocket),
    ) -> Result<(), SockDiagError> {
        let id = if family == AF_INET6 {
            SocketId::new_v6()
        } else {
            SocketId::new_v4()
        };
        self.request(family, protocol, id, true, each)
    }

    /// States a request asks for: all of them for an exact lookup, all but
    /// `TIME_WAIT` for a dump (see [`Self::dump`]).
    fn states(dump: bool) -> StateFlags {
        if dump {
            StateFlags::all() - StateFlags::TIME_WAIT
        } else {
            StateFlags::all()
        }
    }

    /// Sends one request and feeds every socket in the reply to `each`.
    /// "No such socket" answers (`ENOENT`, `ESTALE`) feed nothing.
    fn request(
        &mut self,
        family: u8,
        protocol: u8,
        socket_id: SocketId,
        dump: bool,
        mut each: impl FnMut(DiagSocket),
    ) -> Result<(), SockDiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        header.sequence_number = seq;
        let request = InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states: Self::states(dump),
            socket_id,
        };
        let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, libc::MSG_TRUNC)?;
            if n > self.buf.len() {
                return Err(SockDiagError::Decode(format!(
                    "reply of {n} bytes truncated"
                )));
            }
            let mut off = 0;
            while off < self.buf.len() {
                let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&self.buf[off..])
                    .map_err(|e| SockDiagError::Decode(e.to_string()))?;
                let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
                if len == 0 {
                    return Err(SockDiagError::Decode("zero-length netlink message".into()));
                }
                // NLMSG_ALIGN: messages start on 4-byte boundaries.
                off = off.saturating_add(len.next_multiple_of(4));
                if msg.header.sequence_number != seq {
                    // A late answer to an earlier request that failed half-way.
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        each(DiagSocket {
                            cookie: cookie_from_diag(r.header.socket_id.cookie),
                            inode: u64::from(r.header.inode),
                            uid: r.header.uid,
                            family: r.header.family,
                            state: r.header.state,
                        });
                        if !dump {
                            return Ok(());
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code.map(|c| -c.get()) {
                            // An ACK, or "no such socket" (ESTALE: found, other cookie).
                            None | Some(libc::ENOENT | libc::ESTALE) => Ok(()),
                            Some(code) => Err(SockDiagError::Kernel(
                                std::io::Error::from_raw_os_error(code),
                            )),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

/// An IPv4 address as the IPv6 socket of a dual-stack server sees it
/// (`::ffff:a.b.c.d`); other addresses unchanged.
#[must_use]
pub fn to_v6_mapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 @ IpAddr::V6(_) => v6,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::ownership::fd_scan::socket_inode_of_fd;

    /// `SO_COOKIE` of a socket of this process (the cookie the eBPF programs
    /// see). nix 0.30 has no wrapper for this option.
    pub(crate) fn socket_cookie(fd: &impl AsRawFd) -> u64 {
        let mut cookie: u64 = 0;
        let mut len = libc::socklen_t::try_from(size_of::<u64>()).unwrap();
        // SAFETY: `cookie` and `len` are live locals; the kernel writes at
        // most `len` (8) bytes into `cookie` and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                std::ptr::from_mut(&mut cookie).cast(),
                &raw mut len,
            )
        };
        assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
        cookie
    }

    fn self_inode(fd: &impl AsRawFd) -> u64 {
        socket_inode_of_fd(Path::new("/proc/self"), fd.as_raw_fd())
            .unwrap()
            .unwrap()
    }

    fn query(
        protocol: u8,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        cookie: u64,
    ) -> SockQuery {
        SockQuery {
            family: if local.is_ipv4() { AF_INET } else { AF_INET6 },
            protocol,
            local: (local.ip(), local.port()),
            remote: (remote.ip(), remote.port()),
            ifindex: 0,
            cookie,
        }
    }

    #[test]
    fn cookie_round_trip() {
        for c in [0, 1, 0x1019, 0xdead_beef_0000_0001, u64::MAX] {
            assert_eq!(cookie_from_diag(cookie_to_diag(c)), c);
        }
        // Low half first, as the kernel compares `(u32)cookie == idiag_cookie[0]`.
        assert_eq!(
            cookie_to_diag(0x0000_0002_0000_0001)[..4],
            1u32.to_ne_bytes()
        );
    }

    #[test]
    fn v4_addresses_map_into_v6() {
        assert_eq!(
            to_v6_mapped(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string(),
            "::ffff:127.0.0.1"
        );
    }

    fn tcp_pair(any: &str) -> Option<(TcpListener, TcpStream, TcpStream)> {
        let listener = TcpListener::bind(any).ok()?;
        let client = TcpStream::connect(listener.local_addr().ok()?).ok()?;
        let (server, _) = listener.accept().ok()?;
        Some((listener, client, server))
    }

    #[test]
    fn exact_lookup_of_own_tcp_sockets_v4_and_v6() {
        let mut diag = SockDiag::new().unwrap();
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let pair = tcp_pair(any);
            let what = format!("a loopback address to bind {any}");
            if !crate::testing::require(pair.is_some(), "exact_lookup_of_own_tcp_sockets", &what) {
                continue;
            }
            let (_l, client, server) = pair.unwrap();
            for s in [&client, &server] {
                let cookie = socket_cookie(s);
                let q = query(
                    IPPROTO_TCP,
                    s.local_addr().unwrap(),
                    s.peer_addr().unwrap(),
                    cookie,
                );
                let found = diag.lookup(&q).unwrap().expect("own socket found");
                assert_eq!(found.cookie, cookie);
                assert_eq!(found.inode, self_inode(s));
                assert_eq!(found.uid, nix::unistd::geteuid().as_raw());
                // The wrong cookie finds nothing (the kernel checks it).
                assert_eq!(
                    diag.lookup(&SockQuery {
                        cookie: cookie ^ 1,
                        ..q
                    })
                    .unwrap(),
                    None
                );
            }
        }
    }

    #[test]
    fn exact_lookup_of_udp_connected_and_unconnected() {
        let mut diag = SockDiag::new().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        // Connected: b to a.
        let qb = query(
            IPPROTO_UDP,
            b.local_addr().unwrap(),
            a.local_addr().unwrap(),
            socket_cookie(&b),
        );
        let found = diag.lookup(&qb).unwrap().expect("connected UDP socket");
        assert_eq!(found.inode, self_inode(&b));
        // Unconnected: a, as seen in its flow towards b.
        let qa = query(
            IPPROTO_UDP,
            a.local_addr().unwrap(),
            b.local_addr().unwrap(),
            socket_cookie(&a),
        );
        let found = diag.lookup(&qa).unwrap().expect("unconnected UDP socket");
        assert_eq!(found.inode, self_inode(&a));
    }

    /// `TCP_TIME_WAIT` in `include/net/tcp_states.h`.
    const TCP_TIME_WAIT: u8 = 6;

    /// A connection closed by the client first leaves the client's side in
    /// `TIME_WAIT`: an exact lookup finds it, a dump does not list it.
    #[test]
    fn dump_leaves_out_time_wait() {
        let mut diag = SockDiag::new().unwrap();
        let (_l, client, mut server) = tcp_pair("127.0.0.1:0").unwrap();
        let q = query(
            IPPROTO_TCP,
            client.local_addr().unwrap(),
            client.peer_addr().unwrap(),
            socket_cookie(&client),
        );
        drop(client);
        // The server reads the FIN and closes: the client's side goes to
        // TIME_WAIT once the server's FIN is acknowledged.
        let mut buf = [0u8; 8];
        assert_eq!(std::io::Read::read(&mut server, &mut buf).unwrap(), 0);
        drop(server);
        let mut state = None;
        for _ in 0..200 {
            state = diag.lookup(&q).unwrap().map(|s| s.state);
            if state == Some(TCP_TIME_WAIT) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            state,
            Some(TCP_TIME_WAIT),
            "the client's side must be in TIME_WAIT"
        );
        let mut listed = 0;
        diag.dump(AF_INET, IPPROTO_TCP, |s| {
            listed += usize::from(s.cookie == q.cookie || s.state == TCP_TIME_WAIT);
        })
        .unwrap();
        assert_eq!(listed, 0, "a dump listed TIME_WAIT sockets");
    }

    #[test]
    fn dump_contains_own_socket() {
        let mut diag = SockDiag::new().unwrap();
        let (_l, client, _server) = tcp_pair("127.0.0.1:0").unwrap();
        let cookie = socket_cookie(&client);
        let mut hit = None;
        diag.dump(AF_INET, IPPROTO_TCP, |s| {
            if s.cookie == cookie {
                hit = Some(s);
            }
        })
        .unwrap();
        assert_eq!(hit.map(|s| s.inode), Some(self_inode(&client)));
    }
}
