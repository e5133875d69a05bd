//! Loading, attaching, pinning and unloading the eBPF programs.
//!
//! Invariants:
//! 1. A pin directory is either fully loaded (every map, program and link
//!    pinned) or absent: loads happen in a sibling `<dir>-loading-<pid>`
//!    directory that is renamed into place only when complete, and removed on
//!    any failure, so nothing half-attached is left behind.
//! 2. Attach order is ownership first (`sock_create`, `sock_release`), then
//!    counting, so a socket created during the load still gets an owner.
//!    The exec recorders (`netmon_exec`, `netmon_fork`: raw tracepoints,
//!    not cgroup-scoped) come last: a process that execs before they are
//!    attached is named from `/proc`, as before they existed.
//! 3. Sockets older than the programs are adopted after the attach, on every
//!    [`attach`] (a fresh load, or a daemon starting on pinned maps): each
//!    gets an owner record written from userspace
//!    ([`crate::ownership::adopt`], which says how the races are closed), so
//!    a server started before netmon passes its owner on to the connections
//!    it accepts, in the kernel.
use std::{
    fs::File,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    maps::MapData,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, RawTracePoint,
        links::{FdLink, PinnedLink},
    },
};
use netmon_common::{
    TaskOffsets,
    names::{
        GLOBAL_TASK_OFFSETS, MAP_CLOSED, MAP_FLOWS, MAP_OWNERS, MAPS, PROG_EGRESS, PROG_INGRESS,
        PROG_SOCK_CREATE, PROG_SOCK_RELEASE, PROGRAMS,
    },
};
use netmon_common::{
    capture::CAPTURE_MAPS,
    exec::ExecOffsets,
    names::{
        GLOBAL_EXEC_OFFSETS, PROG_EXEC, PROG_FORK, PROG_UDP_DROP, TRACEPOINT_EXEC, TRACEPOINT_FORK,
        TRACEPOINT_UDP_DROP,
    },
};

use super::{
    KernelArgs, KernelError,
    pins::{LoadState, PinLock, PinPaths},
    sysfs,
};

/// The eBPF object built by build.rs (aya-build), embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmon"));

/// What [`attach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachOutcome {
    /// Programs loaded and attached now.
    Loaded,
    /// A previous load is still pinned and attached; it was reused.
    AlreadyLoaded,
}

/// Checks everything a load needs, before touching the kernel.
fn preflight(args: &KernelArgs) -> Result<PathBuf, KernelError> {
    if !sysfs::is_root() {
        return Err(KernelError::NotRoot(
            "loading eBPF programs (netmon load, netmon daemon)",
        ));
    }
    sysfs::check_kernel_version()?;
    let cgroup = match &args.cgroup {
        Some(path) => path.clone(),
        None => sysfs::cgroup2_root()?,
    };
    sysfs::check_cgroup2_dir(&cgroup)?;
    sysfs::ensure_bpffs()?;
    Ok(cgroup)
}

/// Loads and attaches the programs and pins everything under
/// `args.pin_dir`, or reuses a previous load found there.
///
/// # Errors
/// Every failure the user can cause has its own [`KernelError`] variant.
pub fn attach(args: &KernelArgs) -> Result<AttachOutcome, KernelError> {
    let paths = PinPaths::new(&args.pin_dir);
    let cgroup = preflight(args)?;
    if paths.is_loaded() {
        adopt_existing(&paths);
        for iface in super::tc::attach_new(&paths, args.watch.as_deref(), args.lan.as_deref())? {
            tracing::info!("tc programs attached to new interface {}", iface.name);
        }
        return Ok(AttachOutcome::AlreadyLoaded);
    }
    let parent = args.pin_dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|source| KernelError::PinDirNotWritable {
        path: parent.to_path_buf(),
        source,
    })?;
    if !sysfs::is_bpffs(parent) {
        return Err(KernelError::PinDirNotBpffs(args.pin_dir.clone()));
    }
    // A crashed earlier load may have left a partial directory: remove it.
    if args.pin_dir.exists() {
        remove_pins(&paths);
    }
    let staging = staging_dir(&args.pin_dir);
    remove_pins(&PinPaths::new(&staging));
    let result = load_into(args, &cgroup, &PinPaths::new(&staging)).and_then(|()| {
        std::fs::rename(&staging, &args.pin_dir).map_err(|source| KernelError::PinDirNotWritable {
            path: args.pin_dir.clone(),
            source,
        })
    });
    if let Err(err) = result {
        remove_pins(&PinPaths::new(&staging));
        return Err(err);
    }
    let state = LoadState {
        cgroup,
        max_flows: args.max_flows,
        max_closed: args.max_closed,
        loaded_at_unix_ms: crate::model::unix_ms_now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // The state file only feeds `status`; failing to write it is not fatal.
    if let Err(err) = state.write(&paths) {
        tracing::warn!("could not record load state: {err}");
    }
    adopt_existing(&paths);
    Ok(AttachOutcome::Loaded)
}

/// Invariant 3: owner records for the sockets that predate the programs.
/// Not fatal when it fails: the counters stay exact, and the drain still
/// finds owners through sock_diag, `/proc` and the releasing process.
fn adopt_existing(paths: &PinPaths) {
    let path = paths.map(MAP_OWNERS);
    match MapData::from_pin(&path) {
        Ok(map) => {
            let stats = crate::ownership::adopt::adopt(
                map.fd().as_fd(),
                &crate::ownership::procfs::ProcFs::new(),
            );
            tracing::info!(?stats, "adopted sockets older than the programs");
        }
        Err(e) => tracing::warn!("cannot open {} to adopt older sockets: {e}", path.display()),
    }
}

fn staging_dir(pin_dir: &Path) -> PathBuf {
    let mut name = pin_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    // bpffs refuses names with a dot.
    name.push(format!("-loading-{}", std::process::id()));
    pin_dir.with_file_name(name)
}

fn load_into(args: &KernelArgs, cgroup: &Path, paths: &PinPaths) -> Result<(), KernelError> {
    for dir in ["maps", "progs", "links"] {
        let dir = paths.root.join(dir);
        std::fs::create_dir_all(&dir).map_err(|source| KernelError::PinDirNotWritable {
            path: dir.clone(),
            source,
        })?;
    }
    let offsets = task_offsets();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_FLOWS, args.max_flows)
        .map_max_entries(MAP_CLOSED, args.max_closed)
        .override_global(GLOBAL_TASK_OFFSETS, &offsets, true)
        .override_global(GLOBAL_EXEC_OFFSETS, &exec_offsets(), true)
        .load(EBPF_OBJECT)
        .map_err(KernelError::Load)?;

    for name in MAPS.into_iter().chain(CAPTURE_MAPS) {
        let path = paths.map(name);
        let map = ebpf.map(name).ok_or_else(|| KernelError::Pin {
            what: name.to_owned(),
            path: path.clone(),
            message: "map missing from the eBPF object".to_owned(),
        })?;
        map.pin(&path).map_err(|e| KernelError::Pin {
            what: name.to_owned(),
            path: path.clone(),
            message: e.to_string(),
        })?;
    }

    let cgroup_fd = File::open(cgroup)
        .map_err(|e| KernelError::io(format!("open cgroup {}", cgroup.display()), e))?;
    for name in PROGRAMS {
        let program = ebpf.program_mut(name).ok_or_else(|| KernelError::Pin {
            what: name.to_owned(),
            path: paths.prog(name),
            message: "program missing from the eBPF object".to_owned(),
        })?;
        let attach_err = |source| KernelError::Attach {
            program: name,
            cgroup: cgroup.to_path_buf(),
            source,
        };
        let verifier = |source| KernelError::Verifier {
            program: name,
            source,
        };
        let link: FdLink = match name {
            PROG_SOCK_CREATE | PROG_SOCK_RELEASE => {
                let prog: &mut CgroupSock = program.try_into().map_err(verifier)?;
                prog.load().map_err(verifier)?;
                pin_prog(prog.pin(paths.prog(name)), name, paths)?;
                let id = prog
                    .attach(&cgroup_fd, CgroupAttachMode::Single)
                    .map_err(attach_err)?;
                fd_link(prog.take_link(id).map_err(attach_err)?, name, paths)?
            }
            PROG_EGRESS | PROG_INGRESS => {
                let prog: &mut CgroupSkb = program.try_into().map_err(verifier)?;
                prog.load().map_err(verifier)?;
                pin_prog(prog.pin(paths.prog(name)), name, paths)?;
                let attach_type = if name == PROG_EGRESS {
                    CgroupSkbAttachType::Egress
                } else {
                    CgroupSkbAttachType::Ingress
                };
                let id = prog
                    .attach(&cgroup_fd, attach_type, CgroupAttachMode::Single)
                    .map_err(attach_err)?;
                fd_link(prog.take_link(id).map_err(attach_err)?, name, paths)?
            }
            PROG_EXEC | PROG_FORK | PROG_UDP_DROP => {
                // Not cgroup-scoped: every exec and fork on the machine is
                // recorded (the map is LRU-bounded; entries of processes
                // that never own a counted socket are evicted unread).
                let tracepoint = match name {
                    PROG_EXEC => TRACEPOINT_EXEC,
                    PROG_FORK => TRACEPOINT_FORK,
                    _ => TRACEPOINT_UDP_DROP,
                };
                let prog: &mut RawTracePoint = program.try_into().map_err(verifier)?;
                prog.load().map_err(verifier)?;
                pin_prog(prog.pin(paths.prog(name)), name, paths)?;
                let tracepoint_err = |source| KernelError::AttachTracepoint {
                    program: name,
                    tracepoint,
                    source,
                };
                let id = prog.attach(tracepoint).map_err(tracepoint_err)?;
                FdLink::from(prog.take_link(id).map_err(tracepoint_err)?)
            }
            _ => unreachable_program(name)?,
        };
        let path = paths.link(name);
        link.pin(&path).map_err(|e| KernelError::Pin {
            what: name.to_owned(),
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    super::tc::attach(&mut ebpf, paths, args.watch.as_deref(), args.lan.as_deref())?;
    Ok(())
}

fn unreachable_program(name: &str) -> Result<FdLink, KernelError> {
    Err(KernelError::Pin {
        what: name.to_owned(),
        path: PathBuf::new(),
        message: "unknown program name (names::PROGRAMS and the loader disagree)".to_owned(),
    })
}

/// A program's link as an [`FdLink`] (the pinnable kind).
fn fd_link<L>(link: L, name: &str, paths: &PinPaths) -> Result<FdLink, KernelError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    FdLink::try_from(link).map_err(|e| KernelError::Pin {
        what: name.to_owned(),
        path: paths.link(name),
        message: e.to_string(),
    })
}

fn pin_prog(
    result: Result<(), aya::pin::PinError>,
    name: &str,
    paths: &PinPaths,
) -> Result<(), KernelError> {
    result.map_err(|e| KernelError::Pin {
        what: name.to_owned(),
        path: paths.prog(name),
        message: e.to_string(),
    })
}

/// The kernel's task_struct offsets, or zeros (no process start times) if
/// the BTF can't be read.
fn task_offsets() -> TaskOffsets {
    match super::task_offsets::task_offsets() {
        Ok(offsets) => offsets,
        Err(err) => {
            tracing::warn!("process start times unavailable: {err}");
            TaskOffsets::default()
        }
    }
}

/// The offsets `netmon_exec` follows, or unknown (the program then records
/// nothing) if the BTF can't be read.
fn exec_offsets() -> ExecOffsets {
    match super::exec_offsets::exec_offsets() {
        Ok(offsets) => offsets,
        Err(err) => {
            tracing::warn!("exe and cmdline of short-lived processes unavailable: {err}");
            ExecOffsets::UNKNOWN
        }
    }
}

/// Detaches the programs and removes every pin under `pin_dir`. Refuses
/// while a daemon holds the directory's [`PinLock`] unless `force`.
///
/// # Errors
/// [`KernelError::NotLoaded`] if nothing is pinned there;
/// [`KernelError::PinDirNotBpffs`] (and nothing removed) if `pin_dir` is
/// not on bpffs; [`KernelError::InUse`] naming the daemon's pid.
pub fn detach(pin_dir: &Path, force: bool) -> Result<(), KernelError> {
    if !sysfs::is_root() {
        return Err(KernelError::NotRoot(
            "netmon unload (it detaches the programs and removes their pins)",
        ));
    }
    let paths = PinPaths::new(pin_dir);
    if let Some(pid) = PinLock::holder(&paths) {
        if !force {
            return Err(KernelError::InUse {
                pin_dir: pin_dir.to_path_buf(),
                pid,
            });
        }
        tracing::warn!(?pid, pin_dir = %pin_dir.display(), "unloading under a running daemon (--force)");
    }
    if !pin_dir.exists() {
        return Err(KernelError::NotLoaded(pin_dir.to_path_buf()));
    }
    // Only ever remove what is on bpffs: a mistyped --pin-dir must not
    // delete an ordinary directory.
    if !sysfs::is_bpffs(pin_dir) {
        return Err(KernelError::PinDirNotBpffs(pin_dir.to_path_buf()));
    }
    remove_pins(&paths);
    LoadState::remove(&paths);
    if pin_dir.exists() {
        return Err(KernelError::io(
            format!("remove {}", pin_dir.display()),
            std::io::Error::other("directory still present after unpinning"),
        ));
    }
    Ok(())
}

/// Unpins links (detaching them once their last fd closes), programs and
/// maps, then removes the directories. Best effort: used on cleanup paths.
fn remove_pins(paths: &PinPaths) {
    super::tc::remove_pins(paths);
    for name in PROGRAMS {
        if let Ok(link) = PinnedLink::from_pin(paths.link(name)) {
            // Unpinning drops the last reference: the link detaches.
            let _ = link.unpin();
        }
        let _ = std::fs::remove_file(paths.link(name));
        let _ = std::fs::remove_file(paths.prog(name));
    }
    for name in MAPS.into_iter().chain(CAPTURE_MAPS) {
        let _ = std::fs::remove_file(paths.map(name));
    }
    for dir in ["links", "progs", "maps"] {
        let _ = std::fs::remove_dir(paths.root.join(dir));
    }
    let _ = std::fs::remove_dir(&paths.root);
}
