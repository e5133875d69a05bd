//! The [`Resolver`] for kernel readings: turns each new socket's kernel
//! owner record into a [`ProcessInfo`], correcting it from sock_diag and
//! `/proc` where the creator is not the holder.
//!
//! Per new socket (cookie not in the cache), by what the kernel recorded:
//! - **created by its owner** (`FLOW_F_OWNED`, `owner.sock_cookie` = the
//!   flow's cookie): the creator, unless its fd now lives only in another
//!   process (passed over a Unix socket with `SCM_RIGHTS`, or inherited
//!   across fork, and the creator closed its copy): then that process.
//!   Checked as follows, cheapest first; every "keep" keeps the creator:
//!   1. the socket is released (closed mark) or the creator is pid 0: keep.
//!      A short-lived process that connected, sent and exited before the
//!      drain keeps its bytes — never [`UNATTRIBUTED_COMM`].
//!   2. sock_diag exact lookups (host namespace, then the creator's) give the
//!      inode; no dump, no sweep of namespaces ([`SockLookup::find_exact`]).
//!      Not found (gone meanwhile, ICMP/raw have no diag) or inode 0
//!      (orphaned, `TIME_WAIT`): keep.
//!   3. the creator's fd table (`/proc/TGID/fd`, read once per pass and
//!      shared by all its new sockets) holds the inode: keep. This is the
//!      common case; its cost is one netlink round trip per new socket plus
//!      one `readlink` per fd of each creator with new sockets.
//!   4. otherwise (passed away, or the creator exited while another process
//!      holds the fd): the full `/proc/*/fd` index, built at most once per
//!      pass, and the first live holder wins; none: keep.
//!
//!   Ownership is decided once, when the socket is first seen: an fd passed
//!   on after that is not followed (that would mean re-checking every
//!   socket every pass). Identity = (tgid, `start_boottime` in clock
//!   ticks), exactly `/proc/PID/stat` field 22. exe, cmdline, user, parent
//!   and cgroup come from `/proc/PID` only if that entry has the same start
//!   time (a reused pid is another process); otherwise (the process exited,
//!   however short its life) from what the kernel recorded: exe and cmdline
//!   at its exec ([`ExecIdentities`], when the exec map is open), user from
//!   the socket's uid, cgroup from the socket's cgroup id ([`CgroupPaths`]).
//! - **accepted** (owned, other `sock_cookie`: the storage was cloned from
//!   the listener): the process holding the socket's fd owns it. The inode
//!   comes from sock_diag; the listener owner's fds are checked first, then
//!   its descendants' (a forked worker), then every process's. A holder
//!   other than the listener owner wins; with none, the listener owner keeps
//!   it.
//! - **released, accepted or not owned**: the process that released the
//!   socket (`ClosedSock::released_by`: `sock_release` runs in the context
//!   of the task that dropped the last reference, the last fd holder) owns
//!   it, before any lookup. This is what makes a worker of a pre-forked
//!   pool exact for a connection that lived less than a drain interval:
//!   by the drain, no fd is left to find. Kernel threads (a deferred close)
//!   are skipped; the rules below apply then. When the releaser is the
//!   owner in socket storage itself (a server that accepts and closes in
//!   the process that listens), `sock_release` makes no closed mark and
//!   sets `FLOW_F_OWNER_RELEASED` on the flow instead: the owner is the
//!   releaser, with no lookup.
//! - **not owned** (opened before netmon loaded, or a kernel socket):
//!   sock_diag → inode, the `/proc/*/fd` scan → pid. Not found: pid 0,
//!   comm [`UNATTRIBUTED_COMM`] (kernel-sent packets such as `TIME_WAIT`
//!   ACKs and resets, sockets whose process is gone).
//!
//! **Finished connections.** An accepted or unowned socket that is still
//! open (no closed mark) but that sock_diag does not list with an inode
//! (the connection finished: the socket left the tables, or only a
//! `TIME_WAIT` twin with inode 0 remains) is looked up by its fds instead:
//! after every other new socket of the pass, one [`CookieSweep`] for all
//! such sockets maps cookie → inode (`pidfd_getfd` + `SO_COOKIE`), visiting
//! the listener owners' descendants, then the owners, then every process,
//! and stopping once all are found. The inode is then attributed exactly as
//! above. Created sockets never sweep: their creator keeps them when the
//! exact lookups miss (short-lived creators keep their bytes).
//!
//! Results are cached by cookie until [`Resolver::forget`]. The `/proc` scan,
//! the sock_diag dumps and the fd sweep happen at most once per
//! [`Resolver::resolve`] call, and only when some new socket needs them, so
//! the cost of a call grows with the number of new sockets, not with all of
//! them.

use std::collections::HashMap;

use netmon_common::{FLOW_F_OWNED, FLOW_F_OWNER_RELEASED, SockOwner};
use rustc_hash::FxHashMap;

use super::cookie_sweep::CookieSweep;
use super::exec_identity::{CgroupPaths, ExecIdentities, ExecRecords};
use super::fd_scan::FdIndex;
use super::procfs::{ProcFacts, ProcFs, UserNames, clock_ticks_per_second, ns_to_ticks};
use super::sock_lookup::SockLookup;
use super::{Owners, ProcessId, ProcessInfo, Resolver};
use crate::source::{FlowReading, Reading};

/// `comm` of traffic no process could be found for.
pub use crate::model::UNATTRIBUTED_COMM;

/// Resolves socket owners on the running kernel.
pub struct KernelResolver {
    proc: ProcFs,
    ticks_per_second: u64,
    lookup: SockLookup,
    users: UserNames,
    /// Invariant: holds exactly the sockets resolved and not forgotten; an
    /// entry is never recomputed while present.
    cache: FxHashMap<u64, ProcessId>,
    /// The info of every process in `cache`, with the number of its cached
    /// sockets: one copy per process, dropped with its last socket.
    infos: FxHashMap<ProcessId, (ProcessInfo, usize)>,
    /// Cookie → inode through the fds themselves, for sockets sock_diag no
    /// longer lists; its inode → cookie cache lives across passes.
    sweep: CookieSweep,
    /// `/proc` facts read during the current pass, by pid (`None`: gone).
    /// Cleared at the end of each pass, so a pid reused later is re-read.
    pass_facts: HashMap<u32, Option<ProcFacts>>,
    /// Exe and cmdline recorded at exec, for processes gone from `/proc`.
    execs: Option<ExecIdentities>,
    /// cgroup id → path, for processes gone from `/proc`.
    cgroups: CgroupPaths,
}

impl Default for KernelResolver {
    fn default() -> Self {
        Self::new()
    }
}

/// The owner in socket storage of a socket whose flows say that owner
/// released it ([`FLOW_F_OWNER_RELEASED`]): `sock_release` made no closed
/// mark for it, the owner is its releaser.
fn owner_released(flows: &[FlowReading]) -> Option<SockOwner> {
    flows
        .iter()
        .map(|f| f.value)
        .find(|v| v.flags & FLOW_F_OWNER_RELEASED != 0 && v.flags & FLOW_F_OWNED != 0)
        .map(|v| v.owner)
}

impl KernelResolver {
    /// A resolver over the real `/proc`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_proc(ProcFs::new())
    }

    /// A resolver over the `/proc` tree `proc` (sock_diag always talks to
    /// the running kernel).
    #[must_use]
    pub fn with_proc(proc: ProcFs) -> Self {
        Self {
            lookup: SockLookup::new(proc.clone()),
            proc,
            ticks_per_second: clock_ticks_per_second(),
            users: UserNames::default(),
            cache: FxHashMap::default(),
            infos: FxHashMap::default(),
            sweep: CookieSweep::new(),
            pass_facts: HashMap::new(),
            execs: None,
            cgroups: CgroupPaths::new(crate::kernel::sysfs::cgroup2_root().ok()),
        }
    }

    /// Names exited processes from `records` (the kernel's exec map).
    #[must_use]
    pub fn with_exec_records(mut self, records: Box<dyn ExecRecords>) -> Self {
        self.execs = Some(ExecIdentities::new(records));
        self
    }

    /// Resolves cgroup ids under `root` instead of the cgroup v2 mount.
    #[must_use]
    pub fn with_cgroup_root(mut self, root: Option<std::path::PathBuf>) -> Self {
        self.cgroups = CgroupPaths::new(root);
        self
    }

    /// Opens the exec map pinned under `pin_dir` (read only), if there is
    /// one (a load by an older netmon has none: exited processes then keep
    /// only what their sockets recorded). A pin that cannot be opened is
    /// logged.
    #[must_use]
    pub fn with_exec_map(self, pin_dir: &std::path::Path) -> Self {
        match crate::kernel::execs::ExecMap::open(pin_dir) {
            Ok(Some(map)) => self.with_exec_records(Box::new(map)),
            Ok(None) => {
                tracing::warn!(
                    "no exec map under {}: processes that exit before a drain get no exe or cmdline",
                    pin_dir.display()
                );
                self
            }
            Err(err) => {
                tracing::warn!("{err}: processes that exit before a drain get no exe or cmdline");
                self
            }
        }
    }

    /// Caches `info` as the owner of `cookie` (invariant of `cache`).
    fn remember(&mut self, cookie: u64, info: ProcessInfo) {
        let id = info.id;
        if let Some(old) = self.cache.insert(cookie, id) {
            self.release(old);
        }
        match self.infos.get_mut(&id) {
            // The latest view wins, completed from the earlier one.
            Some(entry) => {
                entry.0 = info.with_missing_from(&entry.0);
                entry.1 += 1;
            }
            None => {
                self.infos.insert(id, (info, 1));
            }
        }
    }

    /// One cached socket of `id` fewer.
    fn release(&mut self, id: ProcessId) {
        if let Some(entry) = self.infos.get_mut(&id) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.infos.remove(&id);
            }
        }
    }

    /// Number of sockets cached.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Resolves one new socket from its flows (all of one cookie), or says
    /// that sock_diag gave no inode for it and the fd sweep should be tried.
    fn resolve_socket(&mut self, flows: &[FlowReading], index: &mut FdIndex) -> First {
        let Some(first) = flows.first() else {
            return First::Done(self.unattributed(None));
        };
        let cookie = first.key.cookie;
        let value = first.value;
        // Released: nobody holds an fd to it, no sweep can find it.
        let open = !flows.iter().any(|f| f.closed);
        if value.flags & FLOW_F_OWNED != 0 {
            let owner = value.owner;
            if owner.sock_cookie == cookie {
                return First::Done(self.created_holder(flows, &owner, index));
            }
            // Accepted: the storage was cloned from the listener.
            let inode = self
                .lookup
                .find(flows, Some(owner.tgid))
                .map_or(0, |s| s.inode);
            if inode == 0 && open {
                return First::Missed(None);
            }
            return First::Done(self.accepted(&owner, inode, index));
        }
        match self.lookup.find(flows, None) {
            Some(found) if found.inode != 0 => First::Done(self.unowned(found.inode, None, index)),
            // Not found, or only a `TIME_WAIT` twin (inode 0) of a socket
            // whose fd may still be open.
            found if open => First::Missed(found.map(|f| f.uid)),
            found => First::Done(self.unattributed(found.map(|f| f.uid))),
        }
    }

    /// Owner of a released socket the kernel recorded no creator for
    /// (accepted, or older than the programs): the process that released
    /// it, i.e. the last holder of its fd. `None` for created sockets (their
    /// creator keeps them, see the module doc), when nothing released it,
    /// for kernel threads (a deferred close), and for this process: the
    /// fd sweep ([`CookieSweep`]) holds a copy of a socket's fd for a moment
    /// (`pidfd_getfd`), and when the process closed its own fd meanwhile,
    /// the sweep's close is the last one (seen under connection churn: one
    /// socket in about 200,000 was the daemon's).
    fn released(&mut self, flows: &[FlowReading], by: &SockOwner) -> Option<ProcessInfo> {
        let first = flows.first()?;
        let created = first.value.flags & FLOW_F_OWNED != 0
            && first.value.owner.sock_cookie == first.key.cookie;
        if created
            || by.tgid == 0
            || by.tgid == std::process::id()
            || !flows.iter().any(|f| f.closed)
        {
            return None;
        }
        let info = self.owner_info(by);
        // kthreadd (2) and its children: a close deferred to a worker.
        if info.id.pid == 2 || info.ppid == Some(2) {
            return None;
        }
        Some(info)
    }

    /// Resolves a socket [`Self::resolve_socket`] missed, with the inode the
    /// fd sweep found (0: none).
    fn resolve_missed(
        &mut self,
        flows: &[FlowReading],
        uid: Option<u32>,
        inode: u64,
        index: &mut FdIndex,
    ) -> ProcessInfo {
        let value = flows.first().map(|f| f.value).unwrap_or_default();
        if value.flags & FLOW_F_OWNED != 0 {
            return self.accepted(&value.owner, inode, index);
        }
        if inode == 0 {
            return self.unattributed(uid);
        }
        self.unowned(inode, uid, index)
    }

    /// Owner of an accepted socket with `inode` (0: unknown): the process
    /// holding its fd, preferring the listener owner's descendants; the
    /// listener owner when none does.
    fn accepted(&mut self, owner: &SockOwner, inode: u64, index: &mut FdIndex) -> ProcessInfo {
        if inode != 0
            && let Some(pid) = accepted_holder(index, owner.tgid, inode)
            && let Some(info) = self.live_info(pid)
        {
            return info;
        }
        self.owner_info(owner)
    }

    /// Owner of a socket without a kernel owner, with `inode` (not 0).
    fn unowned(&mut self, inode: u64, uid: Option<u32>, index: &mut FdIndex) -> ProcessInfo {
        // Several holders: the socket was inherited across fork; the first in
        // /proc order (lowest pid, usually the parent) wins.
        let holders = index.holders(inode).to_vec();
        holders
            .into_iter()
            .find_map(|pid| self.live_info(pid))
            .unwrap_or_else(|| self.unattributed(uid))
    }

    /// Owner of a socket its kernel owner created: the creator, unless it no
    /// longer holds an fd to the socket and another live process does (the
    /// fd was passed over a Unix socket, or inherited across fork, and the
    /// creator closed its copy). See the module doc for the cost bounds.
    fn created_holder(
        &mut self,
        flows: &[FlowReading],
        owner: &SockOwner,
        index: &mut FdIndex,
    ) -> ProcessInfo {
        // Released: no process holds it any more, and the creator keeps the
        // bytes (short-lived processes). Pid 0: no process to check.
        if owner.tgid == 0 || flows.iter().any(|f| f.closed) {
            return self.owner_info(owner);
        }
        // Exact lookups only: a socket they miss (gone meanwhile, ICMP or
        // raw without diag) keeps its creator, and never costs a dump.
        let Some(inode) = self
            .lookup
            .find_exact(flows, owner.tgid)
            .map(|s| s.inode)
            .filter(|&i| i != 0)
        else {
            return self.owner_info(owner);
        };
        // The common case: one read of the creator's fd table per pass,
        // shared by all its new sockets.
        if index.holds(owner.tgid, inode) {
            return self.owner_info(owner);
        }
        // Passed away or creator gone: the full scan (once per pass). No
        // live holder (closed since the lookup): the creator keeps it.
        let holders = index.holders(inode).to_vec();
        holders
            .into_iter()
            .find_map(|pid| self.live_info(pid))
            .unwrap_or_else(|| self.owner_info(owner))
    }

    /// The sockets sock_diag gave no inode for: one fd sweep for all of them
    /// (accepted sockets' listener owners' descendants first, then the
    /// owners, then every process), then each is attributed as usual.
    fn resolve_all_missed(
        &mut self,
        missed: Vec<(u64, Vec<FlowReading>, Option<u32>)>,
        index: &mut FdIndex,
    ) {
        let mut first = Vec::new();
        for (_, flows, _) in &missed {
            let Some(v) = flows.first().map(|f| f.value) else {
                continue;
            };
            if v.flags & FLOW_F_OWNED != 0 && v.owner.tgid != 0 {
                first.extend(index.descendants(v.owner.tgid));
                first.push(v.owner.tgid);
            }
        }
        let wanted = missed.iter().map(|(c, _, _)| *c).collect();
        let found = self.sweep.find(&self.proc, &first, &wanted, index);
        for (cookie, flows, uid) in missed {
            let inode = found.get(&cookie).copied().unwrap_or(0);
            let info = self.resolve_missed(&flows, uid, inode, index);
            self.remember(cookie, info);
        }
    }

    /// The creator recorded by the kernel, completed from `/proc` while the
    /// same process (same start time) lives.
    fn owner_info(&mut self, owner: &SockOwner) -> ProcessInfo {
        let pid = owner.tgid;
        let kernel_ticks = (owner.start_boottime_ns != 0)
            .then(|| ns_to_ticks(owner.start_boottime_ns, self.ticks_per_second));
        let facts = (pid != 0)
            .then(|| self.facts(pid))
            .flatten()
            .filter(|f| match kernel_ticks {
                Some(t) => f.start_ticks == t,
                // No start time from the kernel: a process that started after
                // the socket was created cannot have created it (pid reused).
                None => {
                    let tick_ns = 1_000_000_000 / self.ticks_per_second.max(1);
                    owner.created_boottime_ns == 0
                        || f.start_ticks.saturating_mul(tick_ns) <= owner.created_boottime_ns
                }
            });
        match facts {
            Some(f) => self.info_from_facts(f),
            None => {
                let exec = (pid != 0)
                    .then(|| {
                        self.execs
                            .as_mut()
                            .and_then(|e| e.facts(pid, owner.start_boottime_ns))
                    })
                    .flatten()
                    // Without a start time the key is the pid alone: a
                    // record of an exec after the socket was created may
                    // belong to a later process with the same pid.
                    .filter(|e| {
                        owner.start_boottime_ns != 0
                            || owner.created_boottime_ns == 0
                            || e.exec_boottime_ns <= owner.created_boottime_ns
                    })
                    .unwrap_or_default();
                ProcessInfo {
                    id: ProcessId {
                        pid,
                        start_ticks: kernel_ticks.unwrap_or(0),
                    },
                    comm: comm_string(&owner.comm),
                    exe: exec.exe,
                    cmdline: exec.cmdline,
                    uid: owner.uid,
                    user: self.users.name(owner.uid),
                    ppid: None,
                    cgroup: (pid != 0)
                        .then(|| self.cgroups.path(owner.cgroup_id))
                        .flatten(),
                }
            }
        }
    }

    /// `/proc` facts of `pid`, read once per pass.
    fn facts(&mut self, pid: u32) -> Option<ProcFacts> {
        let proc = &self.proc;
        self.pass_facts
            .entry(pid)
            .or_insert_with(|| proc.facts(pid))
            .clone()
    }

    /// A live process found through `/proc`.
    fn live_info(&mut self, pid: u32) -> Option<ProcessInfo> {
        let facts = self.facts(pid)?;
        Some(self.info_from_facts(facts))
    }

    fn info_from_facts(&mut self, f: ProcFacts) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid: f.pid,
                start_ticks: f.start_ticks,
            },
            comm: f.comm,
            exe: f.exe,
            cmdline: f.cmdline,
            uid: f.uid,
            user: self.users.name(f.uid),
            ppid: Some(f.ppid),
            cgroup: f.cgroup,
        }
    }

    fn unattributed(&mut self, uid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            uid: uid.unwrap_or(0),
            user: uid.and_then(|u| self.users.name(u)),
            ..crate::model::unattributed()
        }
    }
}

impl Resolver for KernelResolver {
    fn resolve(&mut self, reading: &Reading) -> Owners {
        // New sockets with all their flows (an unconnected UDP socket has one
        // flow per peer; any of them may find it), in first-seen order: the
        // flows of unknown sockets, grouped by cookie (a sort of their
        // positions, no allocation per socket), groups ordered by their first
        // flow.
        let mut unknown: Vec<(u64, u32)> = reading
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| !self.cache.contains_key(&f.key.cookie))
            .map(|(i, f)| (f.key.cookie, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            let mut groups: Vec<(u32, usize, usize)> = Vec::new();
            let mut start = 0;
            while start < unknown.len() {
                let cookie = unknown[start].0;
                let end = start + unknown[start..].partition_point(|(c, _)| *c == cookie);
                groups.push((unknown[start].1, start, end));
                start = end;
            }
            groups.sort_unstable();
            let mut index = FdIndex::new(self.proc.clone());
            let mut missed = Vec::new();
            let mut flows: Vec<FlowReading> = Vec::new();
            for (_, start, end) in groups {
                let cookie = unknown[start].0;
                flows.clear();
                flows.extend(
                    unknown[start..end]
                        .iter()
                        .filter_map(|(_, i)| reading.flows.get(*i as usize).copied()),
                );
                // The releaser: from the closed mark, or the owner itself
                // when the flow says it released the socket (no mark then).
                let released = reading
                    .released_by
                    .get(&cookie)
                    .copied()
                    .or_else(|| owner_released(&flows));
                let first = match released.and_then(|r| self.released(&flows, &r)) {
                    Some(info) => First::Done(info),
                    None => self.resolve_socket(&flows, &mut index),
                };
                match first {
                    First::Done(info) => {
                        self.remember(cookie, info);
                    }
                    First::Missed(uid) => missed.push((cookie, flows.clone(), uid)),
                }
            }
            if !missed.is_empty() {
                self.resolve_all_missed(missed, &mut index);
            }
            self.lookup.end_pass();
            self.pass_facts.clear();
            self.cgroups.end_pass();
        }
        let mut owners = Owners::default();
        for f in &reading.flows {
            if let Some((info, _)) = self
                .cache
                .get(&f.key.cookie)
                .and_then(|id| self.infos.get(id))
            {
                owners.insert_ref(f.key.cookie, info);
            }
        }
        owners
    }

    fn forget(&mut self, cookies: &[u64]) {
        for c in cookies {
            if let Some(id) = self.cache.remove(c) {
                self.release(id);
            }
        }
        // After a burst of short connections, give the memory back.
        if self.cache.capacity() > 1024 && self.cache.len() * 4 < self.cache.capacity() {
            self.cache.shrink_to_fit();
            self.infos.shrink_to_fit();
        }
    }
}

/// First step of resolving a socket.
enum First {
    /// Resolved.
    Done(ProcessInfo),
    /// Accepted or unowned, still open, and sock_diag gave no inode (not
    /// found, or only a `TIME_WAIT` twin with inode 0: the connection
    /// finished, the fd may still be held). The uid sock_diag saw, if any.
    Missed(Option<u32>),
}

/// The process holding an accepted socket's fd: a descendant of the listener
/// owner if one holds it (a forked worker), else the listener owner if it
/// does, else any other holder. `None` when no process holds it.
fn accepted_holder(index: &mut FdIndex, listener_owner: u32, inode: u64) -> Option<u32> {
    if listener_owner == 0 {
        // No process: every process would be its "descendant".
        return index.holders(inode).first().copied();
    }
    if let Some(child) = index
        .descendants(listener_owner)
        .into_iter()
        .find(|&d| index.holds(d, inode))
    {
        return Some(child);
    }
    if index.holds(listener_owner, inode) {
        return Some(listener_owner);
    }
    let holders = index.holders(inode);
    holders
        .iter()
        .copied()
        .find(|&p| p != listener_owner)
        .or_else(|| holders.first().copied())
}

// The daemon moves the resolver into its drain task.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<KernelResolver>();
};

/// `comm` bytes up to the first NUL, invalid UTF-8 replaced.
fn comm_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests;
