//! The socket behind another process's fd, whatever its state:
//! `pidfd_open(pid)` + `pidfd_getfd(pidfd, fd)` (Linux 5.6) duplicate the
//! fd into netmon, `fstat` gives the socket inode and
//! `getsockopt(SO_COOKIE)` its cookie. The duplicate is closed at once.
//!
//! sock_diag lists only sockets in the kernel's hash tables; a TCP socket
//! whose connection finished (both FINs) but whose fd is still open is no
//! longer there, and this is the only way left to map its cookie to an fd.
//!
//! `pidfd_getfd` needs ptrace access to the target
//! (`PTRACE_MODE_ATTACH_REALCREDS`): root has it; otherwise only processes
//! of the same user that yama's `ptrace_scope` allows. nix 0.30 wraps
//! neither call, hence `libc::syscall`.
//!
//! Closing the duplicate is harmless while the process still holds its fd;
//! if it closed its own copy in between, netmon's close releases the socket
//! exactly as the process's close would have (same FIN, same accounting: the
//! eBPF programs attribute by cookie, not by the closing task).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A pidfd: a handle on one process that stays valid (and names that
/// process, never a later one with the same pid) until closed.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid, 0)`.
    ///
    /// # Errors
    /// `ESRCH` when the process is gone, `ENOSYS` on kernels before 5.3.
    pub fn open(pid: u32) -> io::Result<Self> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes (pid_t, unsigned int flags) by value and
        // touches no memory of ours.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0_u32) };
        Ok(Self(owned_from_rc(rc)?))
    }

    /// Duplicates the process's `fd` into this process (close-on-exec).
    ///
    /// # Errors
    /// `EBADF` when the process has no such fd, `EPERM` without ptrace
    /// access to it, `ESRCH` when it is exiting, `ENOSYS` before 5.6.
    pub fn get_fd(&self, fd: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_getfd takes (int pidfd, int targetfd, unsigned int
        // flags) by value; `self.0` is an open pidfd for the whole call.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0_u32) };
        owned_from_rc(rc)
    }
}

/// The new fd a successful fd-returning `syscall` gave, or its error.
fn owned_from_rc(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor owned by
    // nobody else in this process; wrapping it makes its close unique.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SO_COOKIE` of a socket (the cookie the eBPF programs key flows by).
///
/// # Errors
/// `ENOTSOCK` when `fd` is not a socket.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    getsockopt_u64(fd, libc::SO_COOKIE)
}

/// An `int` socket option at `SOL_SOCKET` (`SO_DOMAIN`, `SO_ACCEPTCONN`).
///
/// # Errors
/// `ENOTSOCK` when `fd` is not a socket, `ENOPROTOOPT` for an unknown option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    getsockopt_raw(
        fd,
        opt,
        std::ptr::from_mut(&mut v).cast(),
        size_of::<libc::c_int>(),
    )?;
    Ok(v)
}

/// A `u64` socket option at `SOL_SOCKET` (`SO_COOKIE`, `SO_NETNS_COOKIE`).
///
/// # Errors
/// As [`getsockopt_int`].
pub fn getsockopt_u64(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<u64> {
    let mut v: u64 = 0;
    getsockopt_raw(fd, opt, std::ptr::from_mut(&mut v).cast(), size_of::<u64>())?;
    Ok(v)
}

fn getsockopt_raw(
    fd: BorrowedFd<'_>,
    opt: libc::c_int,
    out: *mut libc::c_void,
    size: usize,
) -> io::Result<()> {
    let mut len =
        libc::socklen_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `out` points to a live local of `size` bytes (the callers
    // above pass their own variable and its size); the kernel writes at most
    // `len` bytes there and updates `len`.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, out, &raw mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The inode of the file `fd` refers to (for a socket, the number in its
/// `socket:[N]` link).
///
/// # Errors
/// When `fstat` fails.
pub fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_ino)
}

/// Inode and cookie of socket `fd` of the process behind `pidfd`; the
/// duplicate is closed before returning.
///
/// # Errors
/// As [`PidFd::get_fd`], or `ENOTSOCK` when the fd is (no longer) a socket.
pub fn probe(pidfd: &PidFd, fd: RawFd) -> io::Result<(u64, u64)> {
    let dup = pidfd.get_fd(fd)?;
    Ok((inode(dup.as_fd())?, socket_cookie(dup.as_fd())?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::ownership::fd_scan::socket_inode_of_fd;

    #[test]
    fn own_fds_give_their_inode_and_cookie() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = PidFd::open(std::process::id()).unwrap();
        for fd in [l.as_fd(), u.as_fd()] {
            let want_inode = socket_inode_of_fd(Path::new("/proc/self"), fd.as_raw_fd())
                .unwrap()
                .unwrap();
            let (ino, cookie) = probe(&me, fd.as_raw_fd()).unwrap();
            assert_eq!((ino, cookie), (want_inode, socket_cookie(fd).unwrap()));
        }
        // Not a socket, and no such fd.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let err = probe(&me, f.as_raw_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
        let err = me.get_fd(1 << 20).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn gone_process_is_esrch() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let err = PidFd::open(pid).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }

    /// A socket whose connection finished (both FINs exchanged) while a
    /// child process holds its only fd: still probed, with the cookie the
    /// socket had when open.
    #[test]
    fn finished_socket_of_a_child() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let cookie = socket_cookie(server.as_fd()).unwrap();
        let mut child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::from(OwnedFd::from(server)))
            .spawn()
            .unwrap();
        let guard = scopeguard_kill(&mut child);
        let pidfd = PidFd::open(guard.id()).unwrap();
        match pidfd.get_fd(0) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let what = format!("ptrace access to a child (yama ptrace_scope): {e}");
                let _ = crate::testing::require(false, "finished_socket_of_a_child", &what);
                return;
            }
            r => drop(r.unwrap()),
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // The child never closes: shut its side down through a duplicate.
        let dup = pidfd.get_fd(0).unwrap();
        nix::sys::socket::shutdown(dup.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
        drop(dup);
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &client, &mut buf).unwrap(), 0);
        let (_, got) = probe(&pidfd, 0).unwrap();
        assert_eq!(got, cookie);
    }

    /// Kills and reaps the child when dropped.
    fn scopeguard_kill(child: &mut std::process::Child) -> KillOnDrop<'_> {
        KillOnDrop(child)
    }

    struct KillOnDrop<'a>(&'a mut std::process::Child);

    impl KillOnDrop<'_> {
        fn id(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
