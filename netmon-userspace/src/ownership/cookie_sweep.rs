//! Socket cookie → inode for sockets sock_diag no longer lists: a TCP
//! socket whose connection finished (both FINs) while its fd is still open
//! has left the kernel's socket tables (or left only a `TIME_WAIT` twin with
//! inode 0), so sock_diag cannot name its inode, but the fd still exists.
//!
//! A sweep walks processes in a given order, reads each one's
//! `/proc/PID/fd` (one `readlinkat` per fd, as [`FdIndex`] does) and, for
//! every `socket:[N]` fd whose inode it does not know yet, duplicates the fd
//! into netmon ([`super::pidfd::probe`]: `pidfd_getfd`, `fstat`,
//! `SO_COOKIE`, close). It stops as soon as every wanted cookie is found.
//! Works across network namespaces (an fd is an fd wherever its socket
//! lives).
//!
//! Cost: see the `cookie_sweep` numbers in the ownership report; the first
//! sweep probes every socket fd of the processes visited (four system calls
//! each), later sweeps only fds opened since (the cache), plus one
//! `readlinkat` per fd either way. Every table read is handed to the pass's
//! [`FdIndex`], so attributing the found inode reads no table twice.

use std::collections::{HashMap, HashSet};
use std::io;

use super::fd_scan::{FdIndex, socket_fds};
use super::pidfd::{PidFd, probe};
use super::procfs::ProcFs;

/// Sweeps after which an inode not seen again is forgotten even when no
/// sweep was complete (a complete sweep forgets every inode it did not see).
const MAX_AGE: u64 = 64;

#[derive(Clone, Copy, Debug)]
struct Known {
    cookie: u64,
    /// Generation of the sweep that last saw the inode in an fd table.
    seen: u64,
}

/// What one sweep did (for benchmarks and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Processes whose fd table was read.
    pub processes: usize,
    /// Socket fds met.
    pub socket_fds: usize,
    /// Fds duplicated and probed (the rest were known inodes).
    pub probed: usize,
}

/// Cookie → inode through other processes' fds, with an inode → cookie
/// cache kept across passes.
#[derive(Debug, Default)]
pub struct CookieSweep {
    /// Invariant: inode → the cookie of the socket that had that inode when
    /// last seen. An inode names one socket for as long as the socket is
    /// open, so an entry stays right while its inode keeps being seen;
    /// entries a complete sweep did not see, or not seen for [`MAX_AGE`]
    /// sweeps, are dropped (their socket closed; the inode may be reused).
    cache: HashMap<u64, Known>,
    generation: u64,
    /// Set when the kernel has no `pidfd_open`/`pidfd_getfd` (`ENOSYS`,
    /// before 5.6): no sweep is tried again.
    unsupported: bool,
    last: SweepStats,
}

impl CookieSweep {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of inodes cached.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// What the last sweep did.
    #[must_use]
    pub fn last_stats(&self) -> SweepStats {
        self.last
    }

    /// The inode of every `wanted` cookie some process holds an fd to:
    /// cached inodes first, then one sweep over `first` followed by every
    /// process of `proc`, stopping once all are found. Cookies nobody holds
    /// are absent from the answer. Every fd table read is handed to `index`.
    pub fn find(
        &mut self,
        proc: &ProcFs,
        first: &[u32],
        wanted: &HashSet<u64>,
        index: &mut FdIndex,
    ) -> HashMap<u64, u64> {
        let mut remaining = wanted.clone();
        let mut out = HashMap::new();
        for (&inode, k) in &self.cache {
            if remaining.remove(&k.cookie) {
                out.insert(k.cookie, inode);
            }
        }
        if remaining.is_empty() || self.unsupported {
            return out;
        }
        self.generation += 1;
        self.last = SweepStats::default();
        let mut visited = HashSet::new();
        let mut complete = true;
        let mut rest: Option<std::vec::IntoIter<u32>> = None;
        let mut queue = first.iter().copied();
        loop {
            if remaining.is_empty() {
                complete = false;
                break;
            }
            let pid = match queue.next() {
                Some(p) => p,
                None => match rest.get_or_insert_with(|| proc.pids().into_iter()).next() {
                    Some(p) => p,
                    None => break,
                },
            };
            if visited.insert(pid) {
                self.visit(proc, pid, &mut remaining, &mut out, index);
                if self.unsupported {
                    return out;
                }
            }
        }
        let generation = self.generation;
        if complete {
            self.cache.retain(|_, k| k.seen == generation);
        } else {
            self.cache.retain(|_, k| generation - k.seen < MAX_AGE);
        }
        tracing::debug!(?self.last, cached = self.cache.len(), "cookie sweep");
        out
    }

    /// Reads `pid`'s fd table and probes its unknown socket fds.
    fn visit(
        &mut self,
        proc: &ProcFs,
        pid: u32,
        remaining: &mut HashSet<u64>,
        out: &mut HashMap<u64, u64>,
        index: &mut FdIndex,
    ) {
        // Gone, or no permission: nothing to learn from this process.
        let Ok(fds) = socket_fds(&proc.pid_dir(pid)) else {
            return;
        };
        self.last.processes += 1;
        self.last.socket_fds += fds.len();
        index.learn(pid, fds.iter().map(|&(_, i)| i).collect());
        // Opened on the first unknown fd; `Err` once it failed: skip the
        // rest of this process.
        let mut pidfd: Option<io::Result<PidFd>> = None;
        for (fd, link_inode) in fds {
            if let Some(k) = self.cache.get_mut(&link_inode) {
                k.seen = self.generation;
                if remaining.remove(&k.cookie) {
                    out.insert(k.cookie, link_inode);
                }
                continue;
            }
            let Ok(handle) = pidfd.get_or_insert_with(|| PidFd::open(pid)) else {
                return;
            };
            self.last.probed += 1;
            match probe(handle, fd) {
                // The inode of the duplicate, not of the link read before:
                // the fd may have been closed and reused in between.
                Ok((inode, cookie)) => {
                    self.cache.insert(
                        inode,
                        Known {
                            cookie,
                            seen: self.generation,
                        },
                    );
                    if remaining.remove(&cookie) {
                        out.insert(cookie, inode);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    // Closed meanwhile, or reused by something else.
                    Some(libc::EBADF | libc::ENOTSOCK) => {}
                    Some(libc::ENOSYS) => {
                        tracing::warn!(
                            "pidfd_getfd unavailable ({e}): finished sockets cannot be attributed"
                        );
                        self.unsupported = true;
                        return;
                    }
                    // EPERM (no ptrace access), ESRCH (exiting), others:
                    // skip the rest of this process.
                    _ => {
                        tracing::debug!("pidfd_getfd on pid {pid} fd {fd}: {e}");
                        return;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;

    use super::*;
    use crate::ownership::pidfd::socket_cookie;

    fn cookie(s: &impl AsFd) -> u64 {
        socket_cookie(s.as_fd()).unwrap()
    }

    #[test]
    fn finds_own_sockets_and_caches_them() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let proc = ProcFs::new();
        let me = std::process::id();
        let mut sweep = CookieSweep::new();
        let wanted = HashSet::from([cookie(&c), cookie(&u)]);
        let mut index = FdIndex::new(proc.clone());
        let found = sweep.find(&proc, &[me], &wanted, &mut index);
        assert_eq!(found.len(), 2, "{found:?}");
        for (ck, inode) in &found {
            assert!(wanted.contains(ck));
            // The pass's index got this process's table.
            assert!(index.holds(me, *inode));
        }
        let first = sweep.last_stats();
        assert_eq!(first.processes, 1, "stopped after the first process");
        assert!(first.probed >= 2);
        // Everything this process holds is cached: the listener is found
        // with no sweep at all.
        let again = sweep.find(
            &proc,
            &[me],
            &HashSet::from([cookie(&l)]),
            &mut FdIndex::new(proc.clone()),
        );
        assert_eq!(again.len(), 1);
        assert_eq!(sweep.last_stats(), first, "no new sweep");
    }

    #[test]
    fn unknown_cookie_sweeps_everything_once_and_prunes() {
        let proc = ProcFs::new();
        let me = std::process::id();
        let mut sweep = CookieSweep::new();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u_cookie = cookie(&u);
        // Cookie 0 belongs to no socket: the sweep visits every process.
        let none = HashSet::from([0]);
        assert!(
            sweep
                .find(&proc, &[me], &none, &mut FdIndex::new(proc.clone()))
                .is_empty()
        );
        assert!(sweep.last_stats().processes > 1);
        assert!(sweep.cache.values().any(|k| k.cookie == u_cookie));
        // The next complete sweep drops a closed socket's inode.
        drop(u);
        assert!(
            sweep
                .find(&proc, &[me], &none, &mut FdIndex::new(proc.clone()))
                .is_empty()
        );
        assert!(!sweep.cache.values().any(|k| k.cookie == u_cookie));
    }
}
