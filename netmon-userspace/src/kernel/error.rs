//! Errors of the kernel side, each naming what the user can do about it.
use std::path::PathBuf;

/// What can go wrong loading, attaching, pinning or reading.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The named operation needs root (CAP_BPF/CAP_SYS_ADMIN, or read
    /// access to the root-only pins); the text says what it is.
    #[error("{0} needs root (run it with sudo)")]
    NotRoot(&'static str),
    /// The daemon lacks capabilities (named in the message).
    #[error(transparent)]
    Privilege(#[from] crate::privilege::PrivilegeError),
    /// No cgroup v2 hierarchy mounted.
    #[error(
        "no cgroup v2 hierarchy is mounted (looked in /proc/mounts); netmon attaches to cgroup v2"
    )]
    NoCgroup2,
    /// `--cgroup` is not a cgroup v2 directory.
    #[error("{0} is not a cgroup v2 directory")]
    NotACgroup(PathBuf),
    /// bpffs is missing and could not be mounted.
    #[error("bpffs is not mounted at /sys/fs/bpf and mounting it failed: {0}")]
    NoBpffs(#[source] nix::Error),
    /// The pin directory is not on bpffs.
    #[error("pin directory {0} is not on a bpf filesystem (use a path under /sys/fs/bpf)")]
    PinDirNotBpffs(PathBuf),
    /// The pin directory can't be created or written.
    #[error("cannot write pin directory {path}: {source}")]
    PinDirNotWritable {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A running daemon drains this pin directory (`netmon unload` without
    /// `--force`).
    #[error(
        "a netmon daemon ({}) drains {}: unloading would stop its counting; stop the daemon first, \
         or pass --force (the daemon then notices, records the gap and loads the programs again)",
        .pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}")),
        .pin_dir.display()
    )]
    InUse {
        /// The pin directory.
        pin_dir: PathBuf,
        /// The daemon's pid, as its lock file records it.
        pid: Option<u32>,
    },
    /// Nothing is loaded at this pin directory.
    #[error("netmon is not loaded at {0} (start `netmon daemon` or run `netmon load`)")]
    NotLoaded(PathBuf),
    /// The kernel is older than what the programs need.
    #[error("kernel {found} is too old: netmon needs Linux {needed} or newer")]
    KernelTooOld {
        /// Running kernel.
        found: String,
        /// Minimum.
        needed: &'static str,
    },
    /// The verifier (or the loader) rejected a program.
    #[error("the kernel rejected program {program}: {source}")]
    Verifier {
        /// Program name.
        program: &'static str,
        /// Includes the verifier log.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The object could not be loaded (maps, BTF, relocations).
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    /// Attaching a program failed.
    #[error("attaching {program} to {cgroup} failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Target cgroup.
        cgroup: PathBuf,
        /// Why.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Pinning failed.
    #[error("pinning {what} at {path} failed: {message}")]
    Pin {
        /// Map or link name.
        what: String,
        /// Pin path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A pinned map is missing or of the wrong shape.
    #[error("pinned map {path}: {message}")]
    PinnedMap {
        /// Pin path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A map operation failed.
    #[error("{op} on map {map} failed: {source}")]
    MapOp {
        /// Operation.
        op: &'static str,
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Attaching a program to a raw tracepoint failed.
    #[error("attaching {program} to the raw tracepoint {tracepoint} failed: {source}")]
    AttachTracepoint {
        /// Program name.
        program: &'static str,
        /// Tracepoint name.
        tracepoint: &'static str,
        /// Why.
        #[source]
        source: aya::programs::ProgramError,
    },
}

impl KernelError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
