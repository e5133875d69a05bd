//! A child cgroup (v2) for one test's processes.
//!
//! netmon is attached to this cgroup only, so it counts the test's workloads
//! and nothing else running on the machine.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// Finds the cgroup v2 mount point in `/proc/mounts` (`/sys/fs/cgroup` on a
/// unified host, `/sys/fs/cgroup/unified` on a hybrid one).
#[track_caller]
#[must_use]
pub fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/mounts")
        .unwrap_or_else(|e| panic!("cannot read /proc/mounts: {e}"));
    parse_cgroup2_mount(&mounts)
        .unwrap_or_else(|| panic!("no cgroup2 file system mounted (see /proc/mounts)"))
}

/// The mount point of the first `cgroup2` line of a `/proc/mounts` text.
#[must_use]
pub fn parse_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
    })
}

/// A child cgroup under the v2 root with a unique name; dropping it kills the
/// processes left in it and removes the directory.
#[derive(Debug)]
pub struct CgroupGuard {
    path: PathBuf,
}

impl CgroupGuard {
    /// Creates `<cgroup2 root>/netmon-test-<tag>-<pid>-<n>`.
    #[track_caller]
    #[must_use]
    pub fn new(tag: &str) -> Self {
        let path = cgroup2_root().join(format!("netmon-test-{tag}-{}", crate::unique_suffix()));
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        Self { path }
    }

    /// The cgroup's directory (what `netmon load --cgroup` takes).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs`: writing `0` to it moves the writer into this cgroup.
    #[must_use]
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The processes in the cgroup now.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.procs_file())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    fn kill_all(&self) {
        // cgroup.kill (Linux 5.14+) kills every process at once, including
        // ones forked while we look; fall back to one SIGKILL per pid.
        if fs::write(self.path.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for pid in self.pids() {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill has no memory preconditions; a pid that exited
                // meanwhile makes it fail with ESRCH, which is fine.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !self.pids().is_empty() {
                self.kill_all();
            }
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!(
                        "netmon-tests: cannot remove cgroup {} (procs {:?}): {e}",
                        self.path.display(),
                        self.pids()
                    );
                    return;
                }
                // EBUSY until the killed processes have exited.
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_among_v1_mounts() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_cgroup2_mount("cgroup /x cgroup rw 0 0\n"), None);
    }
}
