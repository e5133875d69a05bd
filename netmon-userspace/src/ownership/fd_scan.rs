//! Which processes hold a socket: `/proc/PID/fd/N -> socket:[INODE]`.
//!
//! [`FdIndex`] answers "who holds inode I" for one resolve pass. It reads
//! each process's fd table at most once per pass and the whole of `/proc`
//! at most once per pass, and only when asked: a pass that meets no socket
//! needing it reads nothing.
//!
//! Hand-rolled rather than `procfs`'s `Process::fd()`, which opens, reads the
//! link of and stats every fd (four system calls per fd); a full scan of a
//! busy server reads tens of thousands of fds, one `readlinkat` each here.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::procfs::ProcFs;

/// Parses an fd link target `socket:[12345]` to the inode 12345.
#[must_use]
pub fn parse_socket_link(link: &OsStr) -> Option<u64> {
    let s = link
        .as_bytes()
        .strip_prefix(b"socket:[")?
        .strip_suffix(b"]")?;
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The socket inode `PID_DIR/fd/FD` refers to; `Ok(None)` if that fd is not
/// a socket.
///
/// # Errors
/// When the fd does not exist or cannot be read.
pub fn socket_inode_of_fd(pid_dir: &Path, fd: i32) -> std::io::Result<Option<u64>> {
    let link = std::fs::read_link(pid_dir.join("fd").join(fd.to_string()))?;
    Ok(parse_socket_link(link.as_os_str()))
}

/// Every socket inode the process at `pid_dir` holds an fd to.
///
/// # Errors
/// When its fd directory cannot be read (gone, or no permission). Fds
/// closed while reading are skipped.
pub fn socket_inodes(pid_dir: &Path) -> std::io::Result<HashSet<u64>> {
    Ok(socket_fds(pid_dir)?.into_iter().map(|(_, i)| i).collect())
}

/// Every socket fd of the process at `pid_dir`, with the inode its link
/// names, in directory order.
///
/// # Errors
/// When its fd directory cannot be read (gone, or no permission). Fds
/// closed while reading are skipped.
pub fn socket_fds(pid_dir: &Path) -> std::io::Result<Vec<(i32, u64)>> {
    let fd_dir = pid_dir.join("fd");
    // Every link is read relative to one handle of the fd directory
    // (`readlinkat`): a `readlink` of the full path walks `/proc/PID/fd`
    // again for each fd, which made reading a table about 4x slower.
    let dir = std::fs::File::open(&fd_dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&fd_dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if let Some(fd) = name.to_str().and_then(|n| n.parse().ok())
            && let Ok(link) = nix::fcntl::readlinkat(&dir, name.as_os_str())
            && let Some(inode) = parse_socket_link(link.as_os_str())
        {
            out.push((fd, inode));
        }
    }
    Ok(out)
}

/// Socket holders, read lazily from one `/proc` for one resolve pass.
///
/// Invariant: a table once read is never re-read within the pass, so the
/// cost of a pass is bounded by one read of every fd table plus one of every
/// `stat` (for the process tree), whatever the number of sockets resolved.
pub struct FdIndex {
    proc: ProcFs,
    per_pid: HashMap<u32, HashSet<u64>>,
    all: Option<HashMap<u64, Vec<u32>>>,
    children: Option<HashMap<u32, Vec<u32>>>,
}

impl FdIndex {
    /// An empty index over `proc`; nothing is read yet.
    #[must_use]
    pub fn new(proc: ProcFs) -> Self {
        Self {
            proc,
            per_pid: HashMap::new(),
            all: None,
            children: None,
        }
    }

    /// True if `pid` holds an fd to socket `inode`.
    pub fn holds(&mut self, pid: u32, inode: u64) -> bool {
        if let Some(all) = &self.all {
            return all.get(&inode).is_some_and(|h| h.contains(&pid));
        }
        let proc = &self.proc;
        self.per_pid
            .entry(pid)
            .or_insert_with(|| socket_inodes(&proc.pid_dir(pid)).unwrap_or_default())
            .contains(&inode)
    }

    /// Records `pid`'s socket inodes, read in full by the caller during this
    /// pass, so that neither [`Self::holds`] nor [`Self::holders`] reads its
    /// table again. Ignored once the full map exists (it was read then).
    pub fn learn(&mut self, pid: u32, inodes: HashSet<u64>) {
        if self.all.is_none() {
            self.per_pid.insert(pid, inodes);
        }
    }

    /// Every process holding socket `inode`, from a scan of all of `/proc`
    /// (done on first use).
    pub fn holders(&mut self, inode: u64) -> &[u32] {
        let proc = &self.proc;
        let per_pid = &mut self.per_pid;
        let all = self.all.get_or_insert_with(|| {
            let mut all: HashMap<u64, Vec<u32>> = HashMap::new();
            for pid in proc.pids() {
                let inodes = match per_pid.remove(&pid) {
                    Some(known) => known,
                    None => socket_inodes(&proc.pid_dir(pid)).unwrap_or_default(),
                };
                for i in inodes {
                    all.entry(i).or_default().push(pid);
                }
            }
            all
        });
        all.get(&inode).map_or(&[], Vec::as_slice)
    }

    /// Every descendant of `pid` (children, grandchildren, ...), breadth
    /// first. Uses `task/*/children` where the kernel has it, else a
    /// parent map built once from every process's `stat`.
    pub fn descendants(&mut self, pid: u32) -> Vec<u32> {
        // Real process trees are far smaller; the bound only stops a corrupt
        // fixture or a pid loop from running forever.
        const MAX: usize = 1 << 16;
        let mut out = Vec::new();
        let mut seen = HashSet::from([pid]);
        let mut queue = std::collections::VecDeque::from([pid]);
        while let Some(p) = queue.pop_front() {
            for child in self.children_of(p) {
                if out.len() < MAX && seen.insert(child) {
                    out.push(child);
                    queue.push_back(child);
                }
            }
        }
        out
    }

    fn children_of(&mut self, pid: u32) -> Vec<u32> {
        if self.children.is_none()
            && let Some(kids) = self.proc.children(pid)
        {
            return kids;
        }
        let proc = &self.proc;
        self.children
            .get_or_insert_with(|| proc.children_map())
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::ownership::procfs::tests::write_fixture;

    #[test]
    fn parses_links() {
        assert_eq!(parse_socket_link(OsStr::new("socket:[22716]")), Some(22716));
        assert_eq!(parse_socket_link(OsStr::new("pipe:[22716]")), None);
        assert_eq!(parse_socket_link(OsStr::new("socket:[]")), None);
        assert_eq!(parse_socket_link(OsStr::new("/tmp/socket:[1]")), None);
    }

    #[test]
    fn fixture_holders_and_descendants() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write_fixture(root, 10, 1, 5, 0);
        write_fixture(root, 11, 10, 6, 0);
        write_fixture(root, 12, 11, 7, 0);
        write_fixture(root, 20, 1, 8, 0);
        let link = |pid: u32, fd: u32, target: &str| {
            std::os::unix::fs::symlink(target, root.join(format!("{pid}/fd/{fd}"))).unwrap();
        };
        link(10, 3, "socket:[100]");
        link(12, 4, "socket:[100]");
        link(12, 5, "pipe:[100]");
        link(20, 3, "socket:[200]");
        let proc = ProcFs::with_root(root);
        let mut index = FdIndex::new(proc);
        assert!(index.holds(10, 100));
        assert!(!index.holds(11, 100));
        assert!(!index.holds(10, 200));
        // Fixtures have no task/*/children: the stat-based parent map is used.
        let mut d = index.descendants(10);
        d.sort_unstable();
        assert_eq!(d, vec![11, 12]);
        let mut h = index.holders(100).to_vec();
        h.sort_unstable();
        assert_eq!(h, vec![10, 12]);
        assert_eq!(index.holders(200), &[20]);
        assert!(index.holders(300).is_empty());
        // Answers stay the same once the full map exists.
        assert!(index.holds(12, 100));
        assert!(!index.holds(20, 100));
    }

    #[test]
    fn own_socket_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode_of_fd(Path::new("/proc/self"), l.as_raw_fd())
            .unwrap()
            .unwrap();
        let proc = ProcFs::new();
        let mut index = FdIndex::new(proc);
        let me = std::process::id();
        assert!(index.holds(me, inode));
        assert!(index.holders(inode).contains(&me));
    }
}
