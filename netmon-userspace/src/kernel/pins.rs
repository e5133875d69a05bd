//! Paths of everything netmon pins, and the small state file that records how
//! it was loaded (bpffs holds only BPF objects, so the cgroup path and map
//! sizes live in a JSON file next to the pins' owner, under /run/netmon).
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
    }
}
