//! Socket options and queries std does not offer.

use std::{io, os::fd::AsRawFd};

/// `SO_RCVBUFFORCE`: a receive buffer beyond `net.core.rmem_max` (root).
pub fn force_rcvbuf(fd: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
}

/// `SO_SNDBUFFORCE`: a send buffer beyond `net.core.wmem_max` (root).
pub fn force_sndbuf(fd: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, bytes)
}

fn set_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed; the fd is
    // a valid socket borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            libc::socklen_t::try_from(size_of::<i32>()).unwrap_or(4),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `TCP_INFO` of a TCP socket.
pub fn tcp_info(fd: &impl AsRawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).unwrap_or(0);
    // SAFETY: `info` is writable for `len` bytes and `len` is updated by the
    // kernel to what it wrote (older kernels write less; the rest stays 0).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(info)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes in a TCP socket's send queue not yet acknowledged (`SIOCOUTQ`).
pub fn outq(fd: &impl AsRawFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer, which is
    // valid for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if rc == 0 {
        Ok(u64::try_from(n).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until `fd` is readable (or a listener has a connection to accept);
/// false on timeout.
pub fn wait_readable(fd: &impl AsRawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// IPv4 options every packet of a socket with [`set_ip_options`] carries:
/// NOP, NOP, NOP, end of list. 4 bytes: IHL 6, a 24-byte IP header.
pub const IPV4_OPTIONS: [u8; 4] = [1, 1, 1, 0];

/// The IPv6 destination options header ([`set_ip_options`] on an IPv6
/// socket): next header (filled in by the kernel), length 0 (8 bytes in
/// all), one PadN option with 4 zero bytes.
pub const IPV6_DSTOPTS_HEADER: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];

/// Makes every packet `fd` sends carry extra IP header bytes: IPv4 options
/// ([`IPV4_OPTIONS`], `IP_OPTIONS`) or, with `v6`, a destination options
/// extension header ([`IPV6_DSTOPTS_HEADER`], `IPV6_DSTOPTS`, needs
/// `CAP_NET_RAW`). Reads the option back and fails unless the kernel holds
/// exactly those bytes: a refused option must never pass for a set one.
pub fn set_ip_options(fd: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name, value): (_, _, &[u8]) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS, &IPV6_DSTOPTS_HEADER)
    } else {
        (libc::IPPROTO_IP, libc::IP_OPTIONS, &IPV4_OPTIONS)
    };
    let len = libc::socklen_t::try_from(value.len()).unwrap_or(0);
    // SAFETY: `value` is readable for `len` bytes during the call; the fd is
    // a valid socket borrowed for the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut back = [0_u8; 64];
    let mut back_len = libc::socklen_t::try_from(back.len()).unwrap_or(0);
    // SAFETY: `back` is writable for `back_len` bytes, and the kernel writes
    // at most that many and updates `back_len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            back.as_mut_ptr().cast(),
            &raw mut back_len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let back = back.get(..back_len as usize).unwrap_or_default();
    if back != value {
        return Err(io::Error::other(format!(
            "socket option {name} reads back as {back:?}, set {value:?}"
        )));
    }
    Ok(())
}
