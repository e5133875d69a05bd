//! Adoption: owner records for sockets that existed before the programs.
//!
//! `sock_create` records the owner of every socket created after the load;
//! a server started earlier has none, so the connections its listener
//! accepts later would inherit nothing (`BPF_F_CLONE` clones what the
//! listener has). At load, and whenever the daemon starts on pinned maps,
//! [`adopt`] writes an owner record into the socket-storage map for every
//! inet socket any process holds, in every network namespace:
//! `/proc/*/fd` gives (pid, fd, inode), `pidfd_getfd` a duplicate of the fd
//! in netmon, and the storage map takes a socket fd as its key. The record
//! names the lowest pid holding the socket (the parent of a pre-forked
//! pool), with that process's identity read from `/proc`, and the socket's
//! own cookie, exactly as `sock_create` would have written it (only
//! `created_boottime_ns` is 0: unknown).
//!
//! Listeners go first, so the connections they accept from then on inherit
//! the owner in the kernel; then every other socket.
//!
//! **Races, and how they are closed.**
//! - A socket created while adoption runs was created after the programs
//!   were attached (adoption starts after attach), so `sock_create` gave it
//!   an owner; the update is create-only (`BPF_NOEXIST`) and never replaces
//!   a kernel record ([`AdoptStats::had_owner`]).
//! - A socket created just before the attach whose fd the creating syscall
//!   had not yet installed when its process's table was read: the whole
//!   scan runs twice, the second pass adopting only what the first did not
//!   see; a `socket()`/`accept()` call is microseconds, a pass is not.
//! - Connections that completed their handshake on a not-yet-adopted
//!   listener and wait in its accept queue have no record and no fd to reach
//!   them by. Their packets stay exactly counted; their owner is found at
//!   the drain by the fd scan while open, and from the releasing process
//!   (`ClosedSock::released_by`) once closed.
//!
//! **Pre-forked pools.** All workers hold the listener; the record names
//! its lowest pid. Accepted sockets inherit it with the listener's
//! cookie, which marks them as accepted: the drain gives their bytes to the
//! process that holds the accepted fd while it is open (exact, from
//! `/proc/PID/fd`), and to the process that released it once closed
//! (exact: `sock_release` runs in the context of the last holder). What
//! stays with the listener's owner: the handshake packets, which the kernel
//! counts on the listener (see `netmon_ebpf`'s `is_connection`), and an
//! accepted socket that several processes held where the one that closed
//! last is not the one that did the I/O.
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use netmon_common::SockOwner;

use super::fd_scan::socket_fds;
use super::pidfd::{PidFd, getsockopt_int, getsockopt_u64, inode, socket_cookie};
use super::procfs::{ProcFacts, ProcFs, clock_ticks_per_second};
use crate::kernel::bpf_sys;

/// What [`adopt`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptStats {
    /// Processes whose fd table was read.
    pub processes: usize,
    /// Distinct inet sockets found.
    pub sockets: usize,
    /// Of which listening.
    pub listeners: usize,
    /// Owner records written.
    pub adopted: usize,
    /// Sockets that had a record already (created after the attach).
    pub had_owner: usize,
    /// Sockets that could not be reached (closed meanwhile, no permission).
    pub failed: usize,
}

/// One socket to adopt: its first holder and one fd of it there.
#[derive(Clone, Copy)]
struct Candidate {
    pid: u32,
    fd: i32,
    inode: u64,
}

/// Writes an owner record for every inet socket held by a process under
/// `proc`, into the socket-storage map `owners` (see the module doc).
/// Best effort per socket: a socket that closes meanwhile is skipped.
pub fn adopt(owners: BorrowedFd<'_>, proc: &ProcFs) -> AdoptStats {
    let mut adopter = Adopter {
        owners,
        proc,
        ticks_per_second: clock_ticks_per_second(),
        cgroup_root: crate::kernel::sysfs::cgroup2_root().ok(),
        facts: HashMap::new(),
        pidfds: HashMap::new(),
        seen: HashSet::new(),
        stats: AdoptStats::default(),
    };
    for _pass in 0..2 {
        adopter.pass();
    }
    adopter.stats
}

struct Adopter<'a> {
    owners: BorrowedFd<'a>,
    proc: &'a ProcFs,
    ticks_per_second: u64,
    cgroup_root: Option<PathBuf>,
    /// Owner template per pid (`None`: gone), read once.
    facts: HashMap<u32, Option<SockOwner>>,
    /// pidfd per pid for the current pass (`None`: could not be opened).
    pidfds: HashMap<u32, Option<PidFd>>,
    /// Inodes handled by an earlier pass.
    seen: HashSet<u64>,
    stats: AdoptStats,
}

impl Adopter<'_> {
    fn pass(&mut self) {
        let mut pids = self.proc.pids();
        pids.sort_unstable();
        // First holder (lowest pid) of each socket not seen yet.
        let mut found: Vec<Candidate> = Vec::new();
        let mut this_pass: HashSet<u64> = HashSet::new();
        for pid in pids {
            let Ok(fds) = socket_fds(&self.proc.pid_dir(pid)) else {
                continue;
            };
            self.stats.processes += 1;
            for (fd, inode) in fds {
                if !self.seen.contains(&inode) && this_pass.insert(inode) {
                    found.push(Candidate { pid, fd, inode });
                }
            }
        }
        // Listeners first: adopt them as they are found, keep the rest.
        let mut rest = Vec::new();
        for c in found {
            self.seen.insert(c.inode);
            match self.open(c) {
                Ok(Some((dup, true))) => {
                    self.stats.listeners += 1;
                    self.write(c.pid, dup.as_fd());
                }
                Ok(Some((_, false))) => rest.push(c),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("adopt pid {} fd {}: {e}", c.pid, c.fd);
                    self.stats.failed += 1;
                }
            }
        }
        for c in rest {
            match self.open(c) {
                Ok(Some((dup, _))) => self.write(c.pid, dup.as_fd()),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("adopt pid {} fd {}: {e}", c.pid, c.fd);
                    self.stats.failed += 1;
                }
            }
        }
        self.pidfds.clear();
    }

    /// A duplicate of the candidate's fd if it still is the same inet
    /// socket, with whether it listens.
    fn open(&mut self, c: Candidate) -> io::Result<Option<(OwnedFd, bool)>> {
        let pidfd = self
            .pidfds
            .entry(c.pid)
            .or_insert_with(|| PidFd::open(c.pid).ok())
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        let dup = pidfd.get_fd(c.fd)?;
        // The fd may have been closed and reused since the table was read.
        if inode(dup.as_fd())? != c.inode {
            return Ok(None);
        }
        let domain = getsockopt_int(dup.as_fd(), libc::SO_DOMAIN)?;
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return Ok(None);
        }
        let listening = getsockopt_int(dup.as_fd(), libc::SO_ACCEPTCONN)? != 0;
        Ok(Some((dup, listening)))
    }

    /// Writes `pid`'s owner record for the socket `sock` (create only).
    fn write(&mut self, pid: u32, sock: BorrowedFd<'_>) {
        let Some(mut owner) = self.owner_template(pid) else {
            self.stats.failed += 1;
            return;
        };
        let (Ok(cookie), Ok(netns)) = (
            socket_cookie(sock),
            getsockopt_u64(sock, libc::SO_NETNS_COOKIE),
        ) else {
            self.stats.failed += 1;
            return;
        };
        owner.sock_cookie = cookie;
        owner.netns_cookie = netns;
        self.stats.sockets += 1;
        match bpf_sys::sk_storage_create(self.owners, sock, &owner) {
            Ok(true) => self.stats.adopted += 1,
            Ok(false) => self.stats.had_owner += 1,
            Err(e) => {
                tracing::debug!("adopt pid {pid} socket {cookie}: {e}");
                self.stats.failed += 1;
            }
        }
    }

    /// `pid` as a [`SockOwner`] (socket fields left 0), read once.
    fn owner_template(&mut self, pid: u32) -> Option<SockOwner> {
        if let Some(known) = self.facts.get(&pid) {
            return *known;
        }
        let owner = self.proc.facts(pid).map(|f| self.owner_of(&f));
        self.facts.insert(pid, owner);
        owner
    }

    fn owner_of(&self, f: &ProcFacts) -> SockOwner {
        let tick_ns = 1_000_000_000 / self.ticks_per_second.clamp(1, 1_000_000_000);
        let gid = ::procfs::process::Process::new_with_root(self.proc.pid_dir(f.pid))
            .and_then(|p| p.status())
            .map_or(0, |s| s.rgid);
        let cgroup_id = match (&self.cgroup_root, &f.cgroup) {
            (Some(root), Some(path)) => cgroup_id(root, path),
            _ => 0,
        };
        let mut comm = [0u8; 16];
        for (d, s) in comm.iter_mut().zip(f.comm.bytes().take(15)) {
            *d = s;
        }
        SockOwner {
            tgid: f.pid,
            tid: f.pid,
            uid: f.uid,
            gid,
            cgroup_id,
            start_boottime_ns: f.start_ticks.saturating_mul(tick_ns),
            created_boottime_ns: 0,
            netns_cookie: 0,
            sock_cookie: 0,
            comm,
        }
    }
}

/// The cgroup v2 id of `path` (relative to the hierarchy's root): the inode
/// of its directory, which is what `bpf_get_current_cgroup_id` returns.
fn cgroup_id(root: &Path, path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(root.join(path.trim_start_matches('/'))).map_or(0, |m| m.ino())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use std::net::{TcpListener, UdpSocket};
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn sockopts_tell_inet_and_listeners() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("[::1]:0").unwrap();
        let (x, _y) = UnixDatagram::pair().unwrap();
        assert_eq!(
            getsockopt_int(l.as_fd(), libc::SO_DOMAIN).unwrap(),
            libc::AF_INET
        );
        assert_eq!(
            getsockopt_int(u.as_fd(), libc::SO_DOMAIN).unwrap(),
            libc::AF_INET6
        );
        assert_eq!(
            getsockopt_int(x.as_fd(), libc::SO_DOMAIN).unwrap(),
            libc::AF_UNIX
        );
        assert_ne!(getsockopt_int(l.as_fd(), libc::SO_ACCEPTCONN).unwrap(), 0);
        assert_eq!(getsockopt_int(u.as_fd(), libc::SO_ACCEPTCONN).unwrap(), 0);
        assert_ne!(getsockopt_u64(l.as_fd(), libc::SO_NETNS_COOKIE).unwrap(), 0);
    }

    #[test]
    fn own_owner_template_matches_proc() {
        let proc = ProcFs::new();
        let me = std::process::id();
        let f = proc.facts(me).unwrap();
        let stdin = std::io::stdin();
        let a = Adopter {
            owners: stdin.as_fd(),
            proc: &proc,
            ticks_per_second: clock_ticks_per_second(),
            cgroup_root: None,
            facts: HashMap::new(),
            pidfds: HashMap::new(),
            seen: HashSet::new(),
            stats: AdoptStats::default(),
        };
        let o = a.owner_of(&f);
        assert_eq!((o.tgid, o.uid), (me, f.uid));
        let ticks = crate::ownership::procfs::ns_to_ticks(o.start_boottime_ns, a.ticks_per_second);
        assert_eq!(
            ticks, f.start_ticks,
            "start time round-trips to /proc's ticks"
        );
    }
}
