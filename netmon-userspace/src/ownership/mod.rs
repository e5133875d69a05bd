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

use crate::source::Reading;

/// A process's identity: a reused pid is a different process.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProcessId {
    /// Process id (tgid). 0 for traffic no process owns (kernel sockets,
    /// sockets whose owner could not be found).
    pub pid: u32,
    /// Start time in clock ticks since boot, as `/proc/PID/stat` field 22
    /// shows it (the kernel's `start_boottime` / (1e9 / USER_HZ)).
    pub start_ticks: u64,
}

/// What is known about a process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    /// Identity.
    pub id: ProcessId,
    /// Command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Executable path, if the process was alive when first seen.
    pub exe: Option<String>,
    /// Command line, arguments joined by spaces.
    pub cmdline: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// User name of `uid`, if it has one.
    pub user: Option<String>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// cgroup v2 path (from `/proc/PID/cgroup`), e.g. `/system.slice/nginx.service`.
    pub cgroup: Option<String>,
}

/// What `readlink /proc/PID/exe` appends when the file was removed or
/// replaced after the process started (a package upgrade).
const DELETED_SUFFIX: &str = " (deleted)";

impl ProcessInfo {
    /// The default app name: the one definition every grouping, filter and
    /// reader uses when no `[apps]` rule of the config matches
    /// (`crate::query::apps`).
    ///
    /// It is the executable's file name — `/usr/bin/python3.11` gives
    /// `python3.11` whether the program was started as `python3` or
    /// `python3.11`, whatever its threads call themselves (`comm`), and also
    /// after its file was replaced (`" (deleted)"` is dropped). Only when the
    /// executable is unknown (a process that started before netmon loaded
    /// and exited before a drain saw it; a kernel socket) is it `comm`.
    #[must_use]
    pub fn default_app(&self) -> String {
        self.exe
            .as_deref()
            .map(|e| e.strip_suffix(DELETED_SUFFIX).unwrap_or(e))
            .and_then(|e| e.rsplit('/').next())
            .filter(|s| !s.is_empty())
            .map_or_else(|| self.comm.clone(), str::to_owned)
    }

    /// `self` with each unknown field (exe, cmdline, user, parent, cgroup)
    /// taken from `older`, an earlier view of the same process: a process
    /// seen alive once and resolved again after it exited (a restarted
    /// daemon) keeps what was known.
    #[must_use]
    pub fn with_missing_from(mut self, older: &Self) -> Self {
        if self.id != older.id {
            return self;
        }
        let fill = |new: &mut Option<String>, old: &Option<String>| {
            if new.is_none() {
                new.clone_from(old);
            }
        };
        fill(&mut self.exe, &older.exe);
        fill(&mut self.cmdline, &older.cmdline);
        fill(&mut self.user, &older.user);
        fill(&mut self.cgroup, &older.cgroup);
        if self.ppid.is_none() {
            self.ppid = older.ppid;
        }
        self
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, exe: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid,
                start_ticks: 9,
            },
            comm: "c".into(),
            exe: exe.map(Into::into),
            cmdline: exe.map(|e| format!("{e} --flag")),
            uid: 0,
            user: exe.map(|_| "root".into()),
            ppid: exe.map(|_| 1),
            cgroup: exe.map(|_| "/a".into()),
        }
    }

    #[test]
    fn missing_fields_come_from_the_same_process_only() {
        let old = info(5, Some("/bin/x"));
        assert_eq!(info(5, None).with_missing_from(&old), old);
        // Known fields win over older ones.
        let newer = info(5, Some("/bin/y"));
        assert_eq!(newer.clone().with_missing_from(&old), newer);
        // Another process (pid reused) takes nothing.
        assert_eq!(info(6, None).with_missing_from(&old), info(6, None));
    }
}
