//! Ownership: which process a socket belongs to.
//!
//! The kernel records the creator of every socket (`SockOwner`, copied into
//! each flow). This stage turns that into a [`ProcessInfo`] — identity
//! (pid, start time), exe, cmdline, user, cgroup — and corrects it where the
//! creator is not the holder:
//! - accepted sockets inherit the listener's owner (`BPF_F_CLONE`); when
//!   `owner.sock_cookie != flow cookie` the socket was accepted, and the
//!   process that really holds its fd is looked up;
//! - sockets whose creator no longer holds them (fd passed over a Unix
//!   socket, or inherited by a child, and the creator's copy closed) go to
//!   the process that holds the fd; a creator that exited with nobody else
//!   holding the socket keeps it;
//! - sockets opened before netmon loaded have no owner (`FLOW_F_OWNED` clear):
//!   sock_diag gives their inode, `/proc/PID/fd` the pid.
//!
//! A TCP socket whose connection finished while its fd is still open is
//! gone from sock_diag; for those, the fds themselves are probed
//! (`pidfd_getfd` + `SO_COOKIE`, [`cookie_sweep`]) to map cookie to inode.
//!
//! Each socket is resolved once, when first seen, and cached by cookie: the
//! cost grows with new sockets, not with all of them.

pub mod adopt;
pub mod cookie_sweep;
pub mod exec_identity;
pub mod fd_scan;
pub mod kernel;
pub mod pidfd;
pub mod procfs;
pub mod sock_diag;
pub mod sock_lookup;

use rustc_hash::FxHashMap;

pub use crate::model::{ProcessId, ProcessInfo};
use crate::source::Reading;

/// The owners of a reading's sockets: a [`ProcessId`] per cookie and one
/// [`ProcessInfo`] per process, so thousands of short sockets of one
/// process share one copy of its strings (exe, cmdline, cgroup) instead of
/// a copy each. Keyed by kernel socket cookies and pids, which no remote
/// peer picks: FxHash.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    by_cookie: FxHashMap<u64, ProcessId>,
    infos: FxHashMap<ProcessId, ProcessInfo>,
}

impl Owners {
    /// Records `info` as the owner of `cookie`; the info is cloned only for
    /// the first socket of its process.
    pub fn insert_ref(&mut self, cookie: u64, info: &ProcessInfo) {
        self.by_cookie.insert(cookie, info.id);
        self.infos.entry(info.id).or_insert_with(|| info.clone());
    }

    /// Records `info` as the owner of `cookie` (the latest info of a process
    /// wins).
    pub fn insert(&mut self, cookie: u64, info: ProcessInfo) {
        self.by_cookie.insert(cookie, info.id);
        self.infos.insert(info.id, info);
    }

    /// The owner of `cookie`.
    #[must_use]
    pub fn get(&self, cookie: &u64) -> Option<&ProcessInfo> {
        self.infos.get(self.by_cookie.get(cookie)?)
    }

    /// Sockets with an owner.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }

    /// No socket has an owner.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }

    /// Each owning process once.
    pub fn values(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.infos.values()
    }

    /// The owner of each socket, by cookie, and each process's info.
    #[must_use]
    pub fn into_parts(self) -> (FxHashMap<u64, ProcessId>, FxHashMap<ProcessId, ProcessInfo>) {
        (self.by_cookie, self.infos)
    }
}

impl FromIterator<(u64, ProcessInfo)> for Owners {
    fn from_iter<I: IntoIterator<Item = (u64, ProcessInfo)>>(iter: I) -> Self {
        let mut owners = Self::default();
        for (cookie, info) in iter {
            owners.insert(cookie, info);
        }
        owners
    }
}

#[cfg(test)]
impl std::ops::Index<&u64> for Owners {
    type Output = ProcessInfo;

    /// The owner of a cookie; panics when it has none (as `HashMap` does).
    fn index(&self, cookie: &u64) -> &ProcessInfo {
        self.get(cookie)
            .unwrap_or_else(|| panic!("no owner for socket cookie {cookie}"))
    }
}

/// Attributes flows to processes.
pub trait Resolver {
    /// Resolves the owners of the reading's flows whose socket was not seen
    /// before and returns the owner of every flow's socket.
    fn resolve(&mut self, reading: &Reading) -> Owners;

    /// Forgets sockets that are gone (their flows were retired).
    fn forget(&mut self, cookies: &[u64]);
}
