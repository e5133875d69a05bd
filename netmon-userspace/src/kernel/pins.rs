//! Paths of everything netmon pins, the small state file that records how
//! it was loaded (bpffs holds only BPF objects, so the cgroup path and map
//! sizes live in a JSON file next to the pins' owner, under /run/netmon), and
//! the lock that makes one daemon the only drainer of a pin directory
//! ([`PinLock`]).
use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::KernelError;

/// Paths under one pin directory.
#[derive(Clone, Debug)]
pub struct PinPaths {
    /// The pin directory itself.
    pub root: PathBuf,
}

impl PinPaths {
    /// Paths under `root`.
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Pin of map `name`.
    #[must_use]
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    /// Opens the map pinned as `name`; `None` when this load has none (a
    /// load by an older netmon, or a feature turned off).
    ///
    /// # Errors
    /// A pinned map that cannot be opened.
    pub fn pinned_map(&self, name: &str) -> Result<Option<aya::maps::MapData>, KernelError> {
        let path = self.map(name);
        if !path.exists() {
            return Ok(None);
        }
        aya::maps::MapData::from_pin(&path)
            .map(Some)
            .map_err(|e| KernelError::PinnedMap {
                path,
                message: e.to_string(),
            })
    }

    /// Pin of program `name`.
    #[must_use]
    pub fn prog(&self, name: &str) -> PathBuf {
        self.root.join("progs").join(name)
    }

    /// Pin of the link attaching program `name`.
    #[must_use]
    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// True if a previous load left its links pinned here.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        netmon_common::names::PROGRAMS
            .iter()
            .all(|p| self.link(p).exists())
    }

    /// The state file recording how this pin directory was loaded.
    #[must_use]
    pub fn state_file(&self) -> PathBuf {
        let flat: String = self
            .root
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from("/run/netmon/pins").join(format!("{flat}.json"))
    }

    /// The lock file of this pin directory ([`PinLock`]): beside the state
    /// file, as bpffs holds no regular files.
    #[must_use]
    pub fn lock_file(&self) -> PathBuf {
        self.state_file().with_extension("lock")
    }
}

/// An exclusive claim on a pin directory: one pin directory, one draining
/// daemon. Two daemons draining the same maps would each retire flows the
/// other then finds vanished, and both histories would be wrong.
///
/// The claim is an `flock(2)` on [`PinPaths::lock_file`], which holds the
/// holder's pid as text (for messages only: the lock, not the pid, decides).
/// The kernel drops the lock when the holder exits, however it exits, so a
/// crashed daemon never blocks the next one. The file itself stays (removing
/// a lock file races with a process that has just opened it).
#[derive(Debug)]
pub struct PinLock {
    _file: File,
}

/// Why [`PinLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PinLockError {
    /// Another process holds the lock.
    #[error("{}", held_message(.pin_dir, *.pid))]
    Held {
        /// The pin directory.
        pin_dir: PathBuf,
        /// The holder's pid, as it recorded it.
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn held_message(pin_dir: &Path, pid: Option<u32>) -> String {
    let who = pid.map_or_else(|| "another process".to_owned(), |p| format!("pid {p}"));
    format!(
        "a netmon daemon ({who}) already drains {}: one pin directory, one daemon",
        pin_dir.display()
    )
}

impl PinLock {
    /// Takes the lock of `paths` without waiting, and records this process's
    /// pid in it.
    ///
    /// # Errors
    /// [`PinLockError::Held`] naming the holder's pid, or the I/O failure.
    pub fn acquire(paths: &PinPaths) -> Result<Self, PinLockError> {
        Self::acquire_at(&paths.lock_file(), &paths.root)
    }

    /// [`Self::acquire`] with the lock file at `path` (`pin_dir` is for
    /// messages).
    ///
    /// # Errors
    /// As [`Self::acquire`].
    pub fn acquire_at(path: &Path, pin_dir: &Path) -> Result<Self, PinLockError> {
        let path = path.to_path_buf();
        let io = |source| PinLockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(PinLockError::Held {
                    pin_dir: pin_dir.to_path_buf(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }

    /// The pid of the daemon holding the lock of `paths`, if one does
    /// (`Some(None)`: held, pid unknown). Does not take the lock.
    #[must_use]
    pub fn holder(paths: &PinPaths) -> Option<Option<u32>> {
        Self::holder_at(&paths.lock_file())
    }

    /// [`Self::holder`] of the lock file at `path`.
    #[must_use]
    pub fn holder_at(path: &Path) -> Option<Option<u32>> {
        let mut file = File::open(path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(TryLockError::WouldBlock) => Some(read_pid(&mut file)),
            // Cannot tell: say nobody, the caller's own checks follow.
            Err(TryLockError::Error(_)) => None,
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// How a pin directory was loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadState {
    /// cgroup v2 directory the programs are attached to.
    pub cgroup: PathBuf,
    /// Flow map capacity.
    pub max_flows: u32,
    /// Closed-socket map capacity.
    pub max_closed: u32,
    /// When loaded, unix milliseconds.
    pub loaded_at_unix_ms: u64,
    /// netmon version that loaded it.
    pub version: String,
}

impl LoadState {
    /// Writes the state file (atomically: temp file + rename).
    ///
    /// # Errors
    /// I/O failures.
    pub fn write(&self, paths: &PinPaths) -> Result<(), KernelError> {
        let path = paths.state_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KernelError::io(format!("create {}", dir.display()), e))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| KernelError::io("encode load state", e.into()))?;
        std::fs::write(&tmp, text)
            .map_err(|e| KernelError::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| KernelError::io(format!("rename to {}", path.display()), e))
    }

    /// Reads the state file, if there is one.
    #[must_use]
    pub fn read(paths: &PinPaths) -> Option<Self> {
        let text = std::fs::read(paths.state_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Removes the state file (missing is fine).
    pub fn remove(paths: &PinPaths) {
        let _ = std::fs::remove_file(paths.state_file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = PinPaths::new(Path::new("/sys/fs/bpf/netmon"));
        assert_eq!(
            p.map("NETMON_FLOWS"),
            Path::new("/sys/fs/bpf/netmon/maps/NETMON_FLOWS")
        );
        assert_eq!(
            p.link("netmon_egress"),
            Path::new("/sys/fs/bpf/netmon/links/netmon_egress")
        );
        assert_eq!(
            p.state_file(),
            Path::new("/run/netmon/pins/_sys_fs_bpf_netmon.json")
        );
        assert_eq!(
            p.lock_file(),
            Path::new("/run/netmon/pins/_sys_fs_bpf_netmon.lock")
        );
    }

    #[test]
    fn one_holder_at_a_time_and_its_pid_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("pins/x.lock");
        let pin_dir = Path::new("/sys/fs/bpf/netmon-x");
        assert_eq!(PinLock::holder_at(&lock), None, "no file: nobody");
        let held = PinLock::acquire_at(&lock, pin_dir).unwrap();
        let me = std::process::id();
        assert_eq!(PinLock::holder_at(&lock), Some(Some(me)));
        // flock belongs to the open file: a second open conflicts even in
        // this process, as a second daemon would.
        let err = PinLock::acquire_at(&lock, pin_dir).unwrap_err();
        assert!(matches!(err, PinLockError::Held { pid: Some(p), .. } if p == me));
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {me}")) && text.contains("/sys/fs/bpf/netmon-x"),
            "{text}"
        );
        drop(held);
        assert_eq!(PinLock::holder_at(&lock), None, "released on drop");
        let again = PinLock::acquire_at(&lock, pin_dir).unwrap();
        assert_eq!(PinLock::holder_at(&lock), Some(Some(me)));
        drop(again);
    }
}
