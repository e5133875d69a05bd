//! Identity of processes that exited before the drain looked: the exe path
//! and command line the kernel recorded at their exec (`NETMON_EXECS`, see
//! `netmon_common::exec`), and their cgroup's path from the cgroup id their
//! sockets recorded.
//!
//! The resolver asks only for processes `/proc` no longer has (or has under a
//! reused pid). What it gets is kept here, in a bounded cache, for any other
//! socket of the same process first seen later (a socket inherited by a
//! child that sends after the creator exited), even if the kernel's LRU map
//! has evicted the record meanwhile. Userspace never deletes kernel records:
//! `snapshot` and `top` read them as well as the daemon, and a restarted
//! daemon resolves its sockets again.
//!
//! What is recorded and how it compares with `/proc`:
//! - `exe`: the path of the executed file resolved in the kernel from its
//!   dentry, as `readlink /proc/PID/exe` shows it from the process's own
//!   mount namespace (inside a container: the container's path). A path
//!   longer than the kernel kept (`EXE_PATH_END` bytes, or a walk of more
//!   than 32 steps) is not reported (`None`): a tail is not a path. A file
//!   name passed to `execve` (kept only when the walk failed) is reported
//!   only if it is absolute.
//! - `cmdline`: the arguments as the new program's stack held them at exec,
//!   joined by spaces like `/proc/PID/cmdline`; only the first `ARGS_CAP`
//!   bytes are kept. A later `setproctitle` is not seen.
//! - `cgroup`: the path of the cgroup the socket was created in, found by
//!   walking the cgroup v2 mount (cgroup v2 ids are the cgroup directories'
//!   inode numbers). A cgroup removed before the drain has no path.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use netmon_common::exec::{EXE_F_FILENAME, EXE_F_RESOLVED, ExecIdentity, ExecKey};

use super::procfs::join_cmdline;

/// Where exec records come from: the kernel map, or a fake in tests.
pub trait ExecRecords: Send {
    /// The record of `key`, if any.
    fn get(&mut self, key: &ExecKey) -> Option<ExecIdentity>;
}

impl ExecRecords for HashMap<ExecKey, ExecIdentity> {
    fn get(&mut self, key: &ExecKey) -> Option<ExecIdentity> {
        HashMap::get(self, key).copied()
    }
}

/// Exe and command line of one process, as recorded at its exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecFacts {
    /// When it exec'd, ns since boot.
    pub exec_boottime_ns: u64,
    /// Executable path (see the module doc for when it is `None`).
    pub exe: Option<String>,
    /// Arguments joined by spaces.
    pub cmdline: Option<String>,
}

impl ExecFacts {
    /// Decodes a kernel record.
    #[must_use]
    pub fn from_record(rec: &ExecIdentity) -> Self {
        let exe = rec
            .exe_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|p| {
                rec.exe_flags & EXE_F_RESOLVED != 0
                    || (rec.exe_flags & EXE_F_FILENAME != 0 && p.starts_with('/'))
            });
        Self {
            exec_boottime_ns: rec.exec_boottime_ns,
            exe,
            cmdline: join_cmdline(rec.args_bytes()),
        }
    }
}

/// Records read from the kernel and kept for later sockets, at most this
/// many (oldest dropped first).
pub const KEPT_RECORDS: usize = 16_384;

/// The exec records of exited processes, with a bounded cache.
pub struct ExecIdentities {
    source: Box<dyn ExecRecords>,
    kept: HashMap<ExecKey, Option<ExecFacts>>,
    order: VecDeque<ExecKey>,
}

impl ExecIdentities {
    /// Reads records from `source`.
    #[must_use]
    pub fn new(source: Box<dyn ExecRecords>) -> Self {
        Self {
            source,
            kept: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The exec facts of the exited process `tgid` started at
    /// `start_boottime_ns` (0: unknown), read from the kernel on first use.
    pub fn facts(&mut self, tgid: u32, start_boottime_ns: u64) -> Option<ExecFacts> {
        let key = ExecKey {
            tgid,
            _pad: 0,
            start_boottime_ns,
        };
        if let Some(found) = self.kept.get(&key) {
            return found.clone();
        }
        let facts = self.source.get(&key).map(|r| ExecFacts::from_record(&r));
        if start_boottime_ns == 0 {
            // Keyed by the pid alone: a later process with the same pid
            // would find this one's facts. Not kept.
            return facts;
        }
        if self.order.len() >= KEPT_RECORDS
            && let Some(old) = self.order.pop_front()
        {
            self.kept.remove(&old);
        }
        self.order.push_back(key);
        self.kept.insert(key, facts.clone());
        facts
    }

    /// Records kept in userspace.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

/// Most cgroup directories walked in one scan: a bound on the time one
/// scan takes on hosts with absurd numbers of cgroups.
pub const MAX_CGROUP_DIRS: usize = 100_000;

/// cgroup id → path under the cgroup v2 mount, e.g. `/system.slice/x.service`.
///
/// An unknown id triggers one walk of the mount per resolver pass at most;
/// paths found stay cached (ids are not reused while the system runs), up
/// to [`MAX_CGROUP_DIRS`] entries.
#[derive(Debug)]
pub struct CgroupPaths {
    root: Option<PathBuf>,
    cache: HashMap<u64, String>,
    scanned: bool,
}

impl CgroupPaths {
    /// Paths under the cgroup v2 mount `root` (`None`: no cgroup v2, every
    /// lookup fails).
    #[must_use]
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            cache: HashMap::new(),
            scanned: false,
        }
    }

    /// The path of cgroup `id`, walking the mount if it is not cached and no
    /// walk happened in this pass.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.cache.get(&id) {
            return Some(p.clone());
        }
        if self.scanned {
            return None;
        }
        self.scanned = true;
        let root = self.root.clone()?;
        let found = scan(&root);
        if self.cache.len() + found.len() > MAX_CGROUP_DIRS {
            self.cache.clear();
        }
        self.cache.extend(found);
        self.cache.get(&id).cloned()
    }

    /// Ends a resolver pass: the next unknown id may walk again.
    pub fn end_pass(&mut self) {
        self.scanned = false;
    }
}

/// Every cgroup directory under `root`: inode → path relative to `root`
/// (`/` for the root itself), breadth first, at most [`MAX_CGROUP_DIRS`].
fn scan(root: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut queue = VecDeque::from([(root.to_path_buf(), String::from("/"))]);
    while let Some((dir, rel)) = queue.pop_front() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        out.insert(meta.ino(), rel.clone());
        if out.len() >= MAX_CGROUP_DIRS {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel == "/" {
                    format!("/{name}")
                } else {
                    format!("{rel}/{name}")
                };
                queue.push_back((e.path(), child));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use netmon_common::exec::{ARGS_F_TRUNCATED, EXE_F_TRUNCATED, EXE_PATH_END};

    use super::*;

    fn record(path: &[u8], flags: u16, args: &[u8]) -> ExecIdentity {
        let mut r = ExecIdentity::ZERO;
        let off = EXE_PATH_END - path.len();
        r.exe[off..EXE_PATH_END].copy_from_slice(path);
        r.exe_off = u16::try_from(off).unwrap();
        r.exe_len = u16::try_from(path.len()).unwrap();
        r.exe_flags = flags;
        r.args[..args.len()].copy_from_slice(args);
        r.args_len = u16::try_from(args.len()).unwrap();
        r.exec_boottime_ns = 42;
        r
    }

    #[test]
    fn decodes_records() {
        let f = ExecFacts::from_record(&record(
            b"/usr/bin/python3.11",
            EXE_F_RESOLVED,
            b"python3\0-c\0print(1)\0",
        ));
        assert_eq!(f.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(f.cmdline.as_deref(), Some("python3 -c print(1)"));
        assert_eq!(f.exec_boottime_ns, 42);
        // A tail of a longer path is not a path.
        let f = ExecFacts::from_record(&record(b"/deep/x", EXE_F_TRUNCATED, b"x\0"));
        assert_eq!(f.exe, None);
        assert_eq!(f.cmdline.as_deref(), Some("x"));
        // The execve file name: only when absolute.
        let f = ExecFacts::from_record(&record(b"./x", EXE_F_FILENAME, b""));
        assert_eq!((f.exe, f.cmdline), (None, None));
        let f = ExecFacts::from_record(&record(b"/bin/x", EXE_F_FILENAME, b""));
        assert_eq!(f.exe.as_deref(), Some("/bin/x"));
        // Cut arguments keep what was read.
        let mut r = record(b"/bin/x", EXE_F_RESOLVED, b"x\0abc");
        r.args_flags = ARGS_F_TRUNCATED;
        assert_eq!(ExecFacts::from_record(&r).cmdline.as_deref(), Some("x abc"));
    }

    #[test]
    fn reads_once_and_keeps_a_bounded_cache() {
        let key = |tgid| ExecKey {
            tgid,
            _pad: 0,
            start_boottime_ns: 7,
        };
        let mut kernel: HashMap<ExecKey, ExecIdentity> = HashMap::new();
        for tgid in 0..(KEPT_RECORDS as u32 + 10) {
            kernel.insert(key(tgid), record(b"/bin/x", EXE_F_RESOLVED, b"x\0"));
        }
        /// A source that forgets what it was asked for (as an LRU map may
        /// evict it), so the cache is what answers a second time.
        struct Forgetful(HashMap<ExecKey, ExecIdentity>);
        impl ExecRecords for Forgetful {
            fn get(&mut self, key: &ExecKey) -> Option<ExecIdentity> {
                self.0.remove(key)
            }
        }
        let mut ids = ExecIdentities::new(Box::new(Forgetful(kernel)));
        assert_eq!(ids.facts(1, 7).unwrap().exe.as_deref(), Some("/bin/x"));
        // Gone from the source, answered from the cache.
        assert_eq!(ids.facts(1, 7).unwrap().exe.as_deref(), Some("/bin/x"));
        // Another start time is another process.
        assert_eq!(ids.facts(1, 8), None);
        for tgid in 2..(KEPT_RECORDS as u32 + 10) {
            assert!(ids.facts(tgid, 7).is_some());
        }
        assert_eq!(ids.kept(), KEPT_RECORDS);
        // The oldest were dropped from the cache and are gone from the
        // source: nothing left to answer with.
        assert_eq!(ids.facts(1, 7), None);

        // Without a start time nothing is kept: the pid alone may be reused.
        let mut kernel: HashMap<ExecKey, ExecIdentity> = HashMap::new();
        let unknown_start = ExecKey {
            tgid: 9,
            _pad: 0,
            start_boottime_ns: 0,
        };
        kernel.insert(unknown_start, record(b"/bin/x", EXE_F_RESOLVED, b"x\0"));
        let mut ids = ExecIdentities::new(Box::new(Forgetful(kernel)));
        assert!(ids.facts(9, 0).is_some());
        assert_eq!(ids.facts(9, 0), None);
        assert_eq!(ids.kept(), 0);
    }

    #[test]
    fn cgroup_paths_by_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("system.slice/a.service")).unwrap();
        std::fs::create_dir_all(root.join("user.slice")).unwrap();
        let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
        let mut paths = CgroupPaths::new(Some(root.to_path_buf()));
        assert_eq!(
            paths.path(ino("system.slice/a.service")).as_deref(),
            Some("/system.slice/a.service")
        );
        assert_eq!(paths.path(ino("")).as_deref(), Some("/"));
        // Created after the walk: found after the pass ends, not before.
        std::fs::create_dir(root.join("user.slice/late")).unwrap();
        let late = ino("user.slice/late");
        assert_eq!(paths.path(late), None);
        paths.end_pass();
        assert_eq!(paths.path(late).as_deref(), Some("/user.slice/late"));
        // Removed cgroups keep their cached path.
        std::fs::remove_dir(root.join("user.slice/late")).unwrap();
        paths.end_pass();
        assert_eq!(paths.path(late).as_deref(), Some("/user.slice/late"));
        assert_eq!(CgroupPaths::new(None).path(5), None);
        assert_eq!(paths.path(0), None);
    }
}
