//! What `/proc/PID` tells about a process: identity (pid, start time in
//! clock ticks), comm, exe, cmdline, uid, parent, cgroup v2 path.
//!
//! Every file of one process is read through one directory handle
//! (`procfs::process::Process` holds an `O_PATH` fd of `/proc/PID`): if the
//! process dies and its pid is reused while we read, the reads fail instead of
//! mixing two processes. Callers still compare the start time with what they
//! expect, since the pid may have been reused before we opened it.
//!
//! Parsing uses the `procfs` crate (MIT/Apache-2.0, widely used, handles the
//! `comm` with spaces and parentheses in `stat`). The root is configurable so
//! tests run on fixture trees.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ::procfs::process::Process;

/// The running kernel's `USER_HZ` (`sysconf(_SC_CLK_TCK)`), the unit of
/// `/proc/PID/stat`'s start time; 100 if sysconf has no answer (the value
/// every Linux architecture netmon runs on uses).
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => u64::try_from(t).unwrap_or(100),
        _ => 100,
    }
}

/// Converts the kernel's `start_boottime` (ns since boot) to clock ticks the
/// way the kernel does for `/proc/PID/stat` (`nsec_to_clock_t`: integer
/// division by the tick length, for `USER_HZ` dividing 1e9 evenly).
#[must_use]
pub fn ns_to_ticks(ns: u64, ticks_per_second: u64) -> u64 {
    ns / (1_000_000_000 / ticks_per_second.clamp(1, 1_000_000_000))
}

/// Facts about a live process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcFacts {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks since boot (`stat` field 22).
    pub start_ticks: u64,
    /// Parent pid.
    pub ppid: u32,
    /// `comm` of the process (its main thread).
    pub comm: String,
    /// Executable path (`exe` link), if readable.
    pub exe: Option<String>,
    /// Arguments joined by spaces; `None` when empty (kernel threads,
    /// zombies).
    pub cmdline: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// cgroup v2 path (the `0::` line of `cgroup`).
    pub cgroup: Option<String>,
}

/// A `/proc` tree.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcFs {
    /// The real `/proc`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_root("/proc")
    }

    /// A `/proc`-shaped tree at `root` (tests use fixtures).
    #[must_use]
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/PID`.
    #[must_use]
    pub fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    fn open(&self, pid: u32) -> Option<Process> {
        Process::new_with_root(self.pid_dir(pid)).ok()
    }

    /// Start time of `pid` in clock ticks, if it exists.
    #[must_use]
    pub fn start_ticks(&self, pid: u32) -> Option<u64> {
        self.open(pid)?.stat().ok().map(|s| s.starttime)
    }

    /// Everything known about `pid`, or `None` if it does not exist (or
    /// its `stat` cannot be read). Other files that cannot be read leave
    /// their field empty.
    #[must_use]
    pub fn facts(&self, pid: u32) -> Option<ProcFacts> {
        let p = self.open(pid)?;
        let stat = p.stat().ok()?;
        let uid = match p.status() {
            Ok(s) => s.ruid,
            // The directory's owner is the process's effective uid.
            Err(_) => p.uid().ok()?,
        };
        let exe = p.exe().ok().map(|e| e.to_string_lossy().into_owned());
        let cmdline = p
            .read::<_, RawBytes>("cmdline")
            .ok()
            .and_then(|raw| join_cmdline(&raw.0));
        let cgroup = p
            .cgroups()
            .ok()
            .and_then(|groups| {
                groups
                    .0
                    .into_iter()
                    .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
            })
            .map(|g| g.pathname);
        Some(ProcFacts {
            pid,
            start_ticks: stat.starttime,
            ppid: u32::try_from(stat.ppid).unwrap_or(0),
            comm: stat.comm,
            exe,
            cmdline,
            uid,
            cgroup,
        })
    }

    /// Every pid (numeric entry) under the root.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Children of `pid` from `task/*/children`, or `None` when the kernel
    /// has no such files (`CONFIG_PROC_CHILDREN` off) or `pid` is gone.
    #[must_use]
    pub fn children(&self, pid: u32) -> Option<Vec<u32>> {
        let tasks = std::fs::read_dir(self.pid_dir(pid).join("task")).ok()?;
        let mut out = Vec::new();
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).ok()?;
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        Some(out)
    }

    /// parent pid → child pids, for every process (from each `stat`).
    #[must_use]
    pub fn children_map(&self) -> HashMap<u32, Vec<u32>> {
        let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
        for pid in self.pids() {
            if let Some(stat) = self.open(pid).and_then(|p| p.stat().ok()) {
                map.entry(u32::try_from(stat.ppid).unwrap_or(0))
                    .or_default()
                    .push(pid);
            }
        }
        map
    }

    /// The network namespace of `pid`: the inode of `ns/net`.
    #[must_use]
    pub fn netns_inode(&self, pid: u32) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.pid_dir(pid).join("ns/net"))
            .ok()
            .map(|m| m.ino())
    }
}

/// A file's bytes, undecoded (`cmdline` need not be UTF-8).
struct RawBytes(Vec<u8>);

impl ::procfs::FromRead for RawBytes {
    fn from_read<R: Read>(mut r: R) -> ::procfs::ProcResult<Self> {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        Ok(Self(buf))
    }
}

/// NUL-separated arguments → one line, arguments joined by spaces, invalid
/// UTF-8 replaced; `None` when there are no arguments.
pub(crate) fn join_cmdline(raw: &[u8]) -> Option<String> {
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// User names by uid, looked up once each (NSS lookups can be slow).
#[derive(Debug, Default)]
pub struct UserNames {
    cache: HashMap<u32, Option<String>>,
}

impl UserNames {
    /// The name of `uid`, if it has one.
    pub fn name(&mut self, uid: u32) -> Option<String> {
        self.cache
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
pub(crate) mod tests {
    use super::*;

    /// Writes a fixture process `pid` under `root`: stat with a comm holding
    /// a space and a parenthesis, status, cmdline with a non-UTF-8 byte,
    /// cgroup v1 and v2 lines, exe link.
    pub(crate) fn write_fixture(root: &Path, pid: u32, ppid: u32, start_ticks: u64, uid: u32) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        let stat = format!(
            "{pid} (my (odd) cmd) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start_ticks} \
             10000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        let status = format!(
            "Name:\tmy (odd) cmd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n\
             PPid:\t{ppid}\nTracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n\
             FDSize:\t64\nGroups:\t\nNStgid:\t{pid}\nNSpid:\t{pid}\nNSpgid:\t{pid}\nNSsid:\t{pid}\n\
             Threads:\t1\nSigQ:\t0/1\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
             SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n\
             CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
             CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\n\
             Cpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\nMems_allowed_list:\t0\n\
             voluntary_ctxt_switches:\t1\nnonvoluntary_ctxt_switches:\t0\n"
        );
        std::fs::write(dir.join("status"), status).unwrap();
        std::fs::write(dir.join("cmdline"), b"/usr/bin/odd\0--flag\0caf\xe9\0").unwrap();
        std::fs::write(
            dir.join("cgroup"),
            "5:cpu,cpuacct:/v1/path\n0::/system.slice/odd.service\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/odd", dir.join("exe")).unwrap();
    }

    #[test]
    fn parses_a_fixture_process() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 4242, 1, 987_654, 1000);
        let facts = ProcFs::with_root(tmp.path()).facts(4242).unwrap();
        assert_eq!(
            facts,
            ProcFacts {
                pid: 4242,
                start_ticks: 987_654,
                ppid: 1,
                comm: "my (odd) cmd".into(),
                exe: Some("/usr/bin/odd".into()),
                cmdline: Some("/usr/bin/odd --flag caf\u{fffd}".into()),
                uid: 1000,
                cgroup: Some("/system.slice/odd.service".into()),
            }
        );
        assert_eq!(
            ProcFs::with_root(tmp.path()).start_ticks(4242),
            Some(987_654)
        );
        assert_eq!(ProcFs::with_root(tmp.path()).facts(4243), None);
        assert_eq!(ProcFs::with_root(tmp.path()).pids(), vec![4242]);
    }

    #[test]
    fn children_map_from_fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 10, 1, 5, 0);
        write_fixture(tmp.path(), 11, 10, 6, 0);
        write_fixture(tmp.path(), 12, 10, 7, 0);
        let mut kids = ProcFs::with_root(tmp.path())
            .children_map()
            .remove(&10)
            .unwrap();
        kids.sort_unstable();
        assert_eq!(kids, vec![11, 12]);
    }

    #[test]
    fn cmdline_joining() {
        assert_eq!(join_cmdline(b""), None);
        assert_eq!(join_cmdline(b"a\0b c\0"), Some("a b c".into()));
    }

    #[test]
    fn ticks_conversion_matches_the_kernel() {
        // nsec_to_clock_t with USER_HZ = 100: 10 ms per tick, truncated.
        assert_eq!(ns_to_ticks(1_239_999_999, 100), 123);
        assert_eq!(ns_to_ticks(0, 100), 0);
        assert_eq!(ns_to_ticks(5_000_000, 1000), 5);
    }

    #[test]
    fn own_process_facts() {
        let me = std::process::id();
        let facts = ProcFs::new().facts(me).unwrap();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        // Field 22, counted after the last ')' (field 2 may contain spaces).
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let start: u64 = after_comm.split(' ').nth(22 - 3).unwrap().parse().unwrap();
        assert_eq!(facts.start_ticks, start);
        assert_eq!(facts.uid, nix::unistd::getuid().as_raw());
        assert_eq!(facts.ppid, nix::unistd::getppid().as_raw().cast_unsigned());
        assert_eq!(
            facts.exe.as_deref(),
            std::env::current_exe().unwrap().to_str()
        );
        let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let v2 = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned);
        assert_eq!(facts.cgroup, v2);
        assert!(ProcFs::new().netns_inode(me).is_some());
    }

    #[test]
    fn user_names() {
        let mut names = UserNames::default();
        assert_eq!(names.name(0).as_deref(), Some("root"));
        // A uid no system assigns.
        assert_eq!(names.name(4_000_000_123), None);
    }
}
