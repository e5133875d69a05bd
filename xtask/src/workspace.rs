//! Where things live: the workspace root, the target directory, the repo-local
//! tool folder and the toolchain pin files.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

/// Paths of the netmon workspace xtask works on.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    /// Absolute. `$CARGO_TARGET_DIR` when set (made absolute against xtask's
    /// working directory, as cargo does), else `<root>/target`.
    target_dir: PathBuf,
    /// Whether `target_dir` came from `$CARGO_TARGET_DIR`: then the cargo
    /// commands xtask runs get the absolute form of it, so they agree with
    /// xtask whatever their working directory.
    target_dir_from_env: bool,
}

impl Workspace {
    /// The workspace xtask was built from (the parent of xtask's manifest
    /// directory).
    pub fn locate() -> anyhow::Result<Self> {
        // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it so a
        // moved checkout is still found. The compile-time value is the fallback.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let root = manifest_dir
            .parent()
            .ok_or_else(|| {
                anyhow!(
                    "xtask manifest dir {} has no parent",
                    manifest_dir.display()
                )
            })?
            .to_path_buf();
        let cwd = std::env::current_dir().context("current directory")?;
        let (target_dir, target_dir_from_env) = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => (cwd.join(dir), true),
            _ => (root.join("target"), false),
        };
        Ok(Self {
            root,
            target_dir,
            target_dir_from_env,
        })
    }

    /// The workspace root (where the top-level Cargo.toml is).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The value to pass as `CARGO_TARGET_DIR` to child cargo commands, if the
    /// user chose one.
    pub fn target_dir_override(&self) -> Option<&Path> {
        self.target_dir_from_env
            .then_some(self.target_dir.as_path())
    }

    /// A binary cargo built: `<target>/<release|debug>/<name>`.
    pub fn binary(&self, release: bool, name: &str) -> PathBuf {
        let profile = if release { "release" } else { "debug" };
        self.target_dir.join(profile).join(name)
    }

    /// Repo-local tool folder (gitignored): bpf-linker, its LLVM links and the
    /// setup stamp.
    pub fn tools_dir(&self) -> PathBuf {
        self.root.join(".tools")
    }

    /// `rust-toolchain.toml` pinning the stable toolchain netmon builds with.
    pub fn stable_pin_file(&self) -> PathBuf {
        self.root.join("rust-toolchain.toml")
    }

    /// `netmon-ebpf/rust-toolchain.toml` pinning the nightly the eBPF crate
    /// builds with.
    pub fn nightly_pin_file(&self) -> PathBuf {
        self.root.join("netmon-ebpf").join("rust-toolchain.toml")
    }

    /// The kernel test crate's directory.
    pub fn tests_dir(&self) -> PathBuf {
        self.root.join("tests")
    }
}
