//! Least privilege for the daemon: the capabilities it needs, dropping the
//! rest once the kernel side is loaded, a Landlock ruleset, and a report of
//! what it runs with (read back by `netmon status`).
//!
//! Two sets, each capability's reason written next to it in [`LOAD_CAPS`]:
//! - [`LOAD_CAPS`], what starting needs (load, attach, pin, and the two
//!   kept below; the systemd unit grants exactly these to the `netmon` user,
//!   and `netmon daemon` refuses to start without one of them, naming it:
//!   [`require`], called when the kernel side is opened);
//! - [`RUN_CAPS`], what the drain still needs afterwards (ownership of
//!   sockets held by other users' processes). [`after_load`] trims the
//!   effective, inheritable and ambient sets to it, the permitted set and,
//!   when it may (root: `CAP_SETPCAP`), the bounding set to both, and sets
//!   `no_new_privs`. The drain thread keeps [`LOAD_CAPS`] permitted, not
//!   effective, to load the programs again when `netmon unload --force`
//!   (or anything else) removed them under the running daemon
//!   ([`reloading`] raises them for that load only); every other thread
//!   drops them from its permitted set when it starts
//!   ([`drop_reload_caps`]).
//!
//! Capabilities are per thread: [`after_load`] trims the calling thread and
//! checks that it is the only one (every later thread inherits its sets).
//! The daemon's runtime is single-threaded until then; a runtime that
//! started worker threads earlier would leave them their privileges (the
//! daemon logs a warning).
//!
//! Landlock. A Landlock domain denies ptrace-class access to every process
//! outside it, even with `CAP_SYS_PTRACE` (measured on 6.18: reading
//! `/proc/PID/fd/N` of a process outside the domain fails with `EACCES`);
//! the drain must read other processes' `/proc/PID/fd`, `/proc/PID/exe` and
//! call `pidfd_getfd`, so the drain thread cannot be inside a domain without
//! losing the owners of handed-off and pre-existing sockets. The ruleset is
//! therefore enforced on every other thread the daemon starts: the tokio
//! blocking pool that parses and answers queries ([`sandbox_thread`] is the
//! runtime's thread-start hook). Those threads may read and write only the
//! state and runtime directories and read the config file, `/proc`, the pin
//! directory and the time zone files ([`Sandbox`]). `NETMON_LANDLOCK_PROBE`
//! (a file path) makes the daemon try to read that file from a sandboxed
//! thread after the drop and record the outcome in its report: how an
//! operator (and the kernel suite) sees the ruleset is active.
pub mod notify;

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use caps::{CapSet, Capability};
use landlock::{
    ABI, Access as _, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr as _, RulesetCreated,
    RulesetCreatedAttr as _, RulesetStatus,
};
use serde::{Deserialize, Serialize};

/// Capabilities the daemon needs to start (and `netmon load` to load): the
/// systemd unit's `CapabilityBoundingSet=`/`AmbientCapabilities=`. Each one
/// was removed in turn (a user other than root, `setpriv`, kernel 6.18) and
/// what failed is written next to it; the kernel suite repeats this
/// (`tests/tests/privilege.rs`). Not needed, so not granted:
/// `CAP_SYS_ADMIN` (it would stand in for `CAP_PERFMON` and `CAP_NET_ADMIN`;
/// entering other network namespaces with setns(2) fails without it, and the
/// owners of sockets opened there before the load were still found through
/// `/proc/PID/fd`) and `CAP_SYS_RESOURCE` (BPF memory is charged to the
/// memory cgroup since 5.11, not to `RLIMIT_MEMLOCK`).
pub const LOAD_CAPS: &[Capability] = &[
    // Without it: bpf(BPF_MAP_CREATE / BPF_PROG_LOAD) is refused (EPERM).
    Capability::CAP_BPF,
    // Without it: the verifier rejects netmon_sock_create (EINVAL, "program
    // of this type cannot use helper bpf_get_current_task": the programs
    // read the task's start time).
    Capability::CAP_PERFMON,
    // Without it: BPF_PROG_LOAD of netmon_sock_create is refused (EPERM:
    // cgroup_sock and cgroup_skb are networking program types).
    Capability::CAP_NET_ADMIN,
    // Without it: a socket another user's process accepted on a listener
    // opened before the load stays unattributed (readlink of
    // /proc/PID/fd/N and pidfd_getfd(2) need ptrace access).
    Capability::CAP_SYS_PTRACE,
    // Without it: the same, listing another user's /proc/PID/fd (mode 0500)
    // is refused. Kept after load, when CAP_DAC_OVERRIDE (which covers it)
    // is dropped.
    Capability::CAP_DAC_READ_SEARCH,
    // Without it: "cannot write pin directory .../netmon-loading-PID/maps:
    // Permission denied": systemd mounts /sys/fs/bpf mode 0700 root, and
    // the load stages its pins beside the pin directory.
    Capability::CAP_DAC_OVERRIDE,
];

/// Capabilities kept after loading: what the drain's ownership resolution
/// uses every interval (the maps and programs are open by then).
pub const RUN_CAPS: &[Capability] = &[Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Environment variable naming a file a sandboxed thread tries to read after
/// the privilege drop (see the module docs).
pub const PROBE_ENV: &str = "NETMON_LANDLOCK_PROBE";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Capabilities the operation needs are not in the effective set.
    #[error(
        "missing capabilit{plural} {missing} (netmon needs {needed}; run it as root or with the capabilities of its systemd unit)",
        plural = if missing.contains(' ') { "ies" } else { "y" }
    )]
    Missing {
        /// The missing ones, space separated.
        missing: String,
        /// The whole set, space separated.
        needed: String,
    },
    /// Reading or changing the capability sets failed.
    #[error("capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
    /// Building the Landlock ruleset failed.
    #[error("landlock ruleset: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    /// The report file could not be written.
    #[error("writing {}: {source}", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The capabilities of `needed` missing from the calling thread's effective
/// set.
///
/// # Errors
/// When the sets cannot be read.
pub fn missing(needed: &[Capability]) -> Result<Vec<Capability>, PrivilegeError> {
    let effective = caps::read(None, CapSet::Effective)?;
    Ok(needed
        .iter()
        .filter(|c| !effective.contains(c))
        .copied()
        .collect())
}

/// Fails with one line naming what is missing unless every capability of
/// `needed` is effective.
///
/// # Errors
/// [`PrivilegeError::Missing`].
pub fn require(needed: &[Capability]) -> Result<(), PrivilegeError> {
    let lacking = missing(needed)?;
    if lacking.is_empty() {
        return Ok(());
    }
    Err(PrivilegeError::Missing {
        missing: names(&lacking).join(" "),
        needed: names(needed).join(" "),
    })
}

fn names(set: &[Capability]) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    v
}

/// The paths sandboxed threads may use.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The history database (its directory is read-write: redb may create
    /// files next to it).
    pub db: PathBuf,
    /// The query socket (its directory is read-write; the report goes there).
    pub socket: PathBuf,
    /// The config file (read-only, when it exists).
    pub config: PathBuf,
    /// The bpffs pin directory (read-only).
    pub pin_dir: PathBuf,
    /// More read-only paths the query threads read from: the directories of
    /// the configured DHCP lease files (the directory, not the file: a DHCP
    /// server replaces its lease file by rename).
    pub extra_read_only: Vec<PathBuf>,
}

impl Sandbox {
    fn read_write(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [&self.db, &self.socket]
            .iter()
            .filter_map(|p| p.parent())
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .collect();
        v.dedup();
        v
    }

    fn read_only(&self) -> Vec<PathBuf> {
        let mut v = vec![self.config.clone(), self.pin_dir.clone()];
        v.extend(self.extra_read_only.iter().cloned());
        v.extend(
            [
                "/proc",
                "/etc/localtime",
                "/etc/timezone",
                "/usr/share/zoneinfo",
            ]
            .map(PathBuf::from),
        );
        v
    }
}

/// What the daemon runs with, as `netmon status` shows it. Written by
/// [`after_load`] next to the query socket ([`report_path`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Privileges {
    /// The daemon's pid.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective capabilities after the drop (`CAP_*` names, sorted).
    pub effective: Vec<String>,
    /// Bounding set after the drop.
    pub bounding: Vec<String>,
    /// Capabilities dropped from the effective set after load.
    pub dropped: Vec<String>,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
    /// The Landlock ruleset.
    pub landlock: LandlockReport,
}

/// The Landlock part of [`Privileges`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LandlockReport {
    /// `enforced`, `partially enforced` (an older kernel ABI) or `not
    /// enforced` (no Landlock in this kernel).
    pub status: String,
    /// Which threads the ruleset covers.
    pub scope: String,
    /// Directories sandboxed threads may read and write.
    pub read_write: Vec<String>,
    /// Paths sandboxed threads may read.
    pub read_only: Vec<String>,
    /// The outcome of reading [`PROBE_ENV`]'s file from a sandboxed thread.
    pub probe: Option<Probe>,
}

/// A read attempted from a sandboxed thread.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    /// The file.
    pub path: String,
    /// Whether the read succeeded.
    pub allowed: bool,
    /// The error when it did not.
    pub error: Option<String>,
}

/// Where the daemon whose socket is `socket` writes its [`Privileges`].
#[must_use]
pub fn report_path(socket: &Path) -> PathBuf {
    socket.with_extension("privileges.json")
}

/// Reads the report of the daemon at `socket`, if one is there.
#[must_use]
pub fn read_report(socket: &Path) -> Option<Privileges> {
    let text = fs::read_to_string(report_path(socket)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What [`after_load`] kept effective: the most a thread started later may
/// have permitted ([`sandbox_thread`] trims it to this).
static RUN_SET: OnceLock<caps::CapsHashSet> = OnceLock::new();

/// The kernel load disappeared and the daemon loads it again: raises the
/// load capabilities the drain thread kept permitted ([`after_load`]), runs
/// `load`, and lowers them to what the drain uses, whatever `load` returned.
///
/// # Errors
/// When the capability sets cannot be changed (`load`'s own result is
/// returned otherwise).
pub fn reloading<T>(load: impl FnOnce() -> T) -> Result<T, PrivilegeError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let raised: caps::CapsHashSet = LOAD_CAPS
        .iter()
        .chain(RUN_CAPS)
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    let before = caps::read(None, CapSet::Effective)?;
    caps::set(None, CapSet::Effective, &raised)?;
    let out = load();
    caps::set(None, CapSet::Effective, &before)?;
    Ok(out)
}

/// The ruleset sandboxed threads restrict themselves with, once built.
static RULESET: OnceLock<Mutex<RulesetCreated>> = OnceLock::new();

/// The runtime's thread-start hook: restricts the new thread with the
/// Landlock ruleset once [`after_load`] has built it. A thread that cannot
/// be restricted aborts the daemon: it must not serve unrestricted.
pub fn sandbox_thread() {
    if let Err(e) = restrict_this_thread() {
        tracing::error!(error = %e, "cannot restrict a new thread with the Landlock ruleset");
        std::process::abort();
    }
}

/// Drops, on the calling thread, the load capabilities [`after_load`] left
/// permitted for a reload: for every thread but the drain's, called when it
/// starts. Nothing before [`after_load`].
///
/// # Errors
/// When the permitted set cannot be changed.
pub fn drop_reload_caps() -> Result<(), PrivilegeError> {
    if let Some(keep) = RUN_SET.get() {
        caps::set(None, CapSet::Permitted, keep)?;
    }
    Ok(())
}

fn restrict_this_thread() -> Result<(), PrivilegeError> {
    drop_reload_caps()?;
    let Some(ruleset) = RULESET.get() else {
        return Ok(());
    };
    let created = ruleset
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_clone()
        .map_err(|source| PrivilegeError::Report {
            path: PathBuf::from("landlock ruleset fd"),
            source,
        })?;
    created.restrict_self()?;
    Ok(())
}

/// Trims the effective capabilities to [`RUN_CAPS`] (the permitted set to
/// those and [`LOAD_CAPS`], see the module docs), sets `no_new_privs`, builds the
/// Landlock ruleset for later threads, probes it (when [`PROBE_ENV`] is
/// set), and writes the report next to the socket. Called once, after the
/// kernel side is loaded and before the runtime starts any other thread.
///
/// # Errors
/// When a capability set cannot be changed or the report cannot be
/// written. An unsupported Landlock is reported, not an error.
pub fn after_load(sandbox: &Sandbox) -> Result<Privileges, PrivilegeError> {
    let threads = thread_count();
    if threads != Some(1) {
        tracing::warn!(
            ?threads,
            "privileges trimmed on the calling thread only: other threads keep theirs"
        );
    }
    let before = caps::read(None, CapSet::Effective)?;
    let keep: caps::CapsHashSet = RUN_CAPS
        .iter()
        .copied()
        .filter(|c| before.contains(c))
        .collect();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the
    // next step removes. Without CAP_SETPCAP (the systemd unit) the bounding
    // set is already the unit's.
    // The drain thread keeps the load capabilities it had permitted, not
    // effective: a reload ([`reloading`]) raises them for the load only.
    // Every other thread drops them when it starts ([`sandbox_thread`]).
    let reload: caps::CapsHashSet = LOAD_CAPS
        .iter()
        .copied()
        .filter(|c| before.contains(c))
        .chain(keep.iter().copied())
        .collect();
    if before.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::read(None, CapSet::Bounding)? {
            if !reload.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &reload)?;
    let _ = RUN_SET.set(keep.clone());
    set_no_new_privs()?;
    let landlock = build_landlock(sandbox)?;
    let mut dropped: Vec<Capability> = before.difference(&keep).copied().collect();
    dropped.sort_by_key(ToString::to_string);
    let report = Privileges {
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        effective: sorted_names(&caps::read(None, CapSet::Effective)?),
        bounding: sorted_names(&caps::read(None, CapSet::Bounding)?),
        dropped: names(&dropped),
        no_new_privs: no_new_privs(),
        landlock,
    };
    let path = report_path(&sandbox.socket);
    let json = serde_json::to_string_pretty(&report).map_err(|e| PrivilegeError::Report {
        path: path.clone(),
        source: e.into(),
    })?;
    fs::write(&path, json).map_err(|source| PrivilegeError::Report {
        path: path.clone(),
        source,
    })?;
    tracing::info!(effective = ?report.effective, landlock = %report.landlock.status, "privileges dropped after load");
    Ok(report)
}

/// The daemon's one call after loading: [`after_load`], then tells systemd
/// it is ready and starts the watchdog pings ([`notify`]). Must be called
/// inside the runtime.
///
/// # Errors
/// As [`after_load`].
pub fn started(sandbox: &Sandbox) -> Result<Privileges, PrivilegeError> {
    let report = after_load(sandbox)?;
    notify::ready(&format!(
        "draining; capabilities {}; landlock {}",
        if report.effective.is_empty() {
            "none".to_owned()
        } else {
            report.effective.join(",")
        },
        report.landlock.status
    ));
    notify::spawn_watchdog();
    Ok(report)
}

/// The daemon is stopping: tells systemd, and removes the report (a stale
/// one would describe a process that is gone).
pub fn stopping(socket: &Path) {
    notify::stopping();
    let _ = fs::remove_file(report_path(socket));
}

fn sorted_names(set: &caps::CapsHashSet) -> Vec<String> {
    names(&set.iter().copied().collect::<Vec<_>>())
}

/// The newest Landlock ABI this code handles (best effort below it).
const LANDLOCK_ABI: ABI = ABI::V6;

fn build_landlock(sandbox: &Sandbox) -> Result<LandlockReport, PrivilegeError> {
    let rw: Vec<PathBuf> = sandbox.read_write();
    let ro: Vec<PathBuf> = sandbox.read_only();
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .create()?;
    let mut added_rw = Vec::new();
    let mut added_ro = Vec::new();
    for (paths, access, added) in [
        (&rw, AccessFs::from_all(LANDLOCK_ABI), &mut added_rw),
        (&ro, AccessFs::from_read(LANDLOCK_ABI), &mut added_ro),
    ] {
        for path in paths {
            // A path that does not exist (no config file, no /etc/timezone)
            // needs no rule.
            let Ok(fd) = PathFd::new(path) else { continue };
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(LANDLOCK_ABI)
            };
            created = created.add_rule(PathBeneath::new(fd, access))?;
            added.push(path.display().to_string());
        }
    }
    // Enforce once here, on a throwaway thread, to learn the status the
    // kernel gives (and to probe); then keep the ruleset for new threads.
    let probe_path = std::env::var_os(PROBE_ENV).map(PathBuf::from);
    let trial = created
        .try_clone()
        .map_err(|source| PrivilegeError::Report {
            path: PathBuf::from("landlock ruleset fd"),
            source,
        })?;
    let (status, probe) = std::thread::scope(|s| {
        s.spawn(
            move || -> Result<(RulesetStatus, Option<Probe>), PrivilegeError> {
                let status = trial.restrict_self()?.ruleset;
                Ok((status, probe_path.map(|p| probe(&p))))
            },
        )
        .join()
        .unwrap_or(Ok((RulesetStatus::NotEnforced, None)))
    })?;
    if let Some(p) = &probe {
        tracing::info!(path = %p.path, allowed = p.allowed, error = ?p.error, "landlock probe");
    }
    let _ = RULESET.set(Mutex::new(created));
    Ok(LandlockReport {
        status: match status {
            RulesetStatus::FullyEnforced => "enforced",
            RulesetStatus::PartiallyEnforced => "partially enforced",
            RulesetStatus::NotEnforced => "not enforced",
        }
        .to_owned(),
        scope: "query threads (the drain thread reads other processes' /proc/PID/fd, which a Landlock domain forbids)".to_owned(),
        read_write: added_rw,
        read_only: added_ro,
        probe,
    })
}

fn probe(path: &Path) -> Probe {
    let result = fs::File::open(path).and_then(|mut f| {
        let mut byte = [0_u8; 1];
        f.read(&mut byte).map(|_| ())
    });
    Probe {
        path: path.display().to_string(),
        allowed: result.is_ok(),
        error: result.err().map(|e| e.to_string()),
    }
}

fn set_no_new_privs() -> Result<(), PrivilegeError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers, touches no memory
    // of ours and only ever removes privileges.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()))
    }
}

fn no_new_privs() -> bool {
    // SAFETY: PR_GET_NO_NEW_PRIVS takes plain integers and reads a flag.
    unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 }
}

/// `Threads:` of /proc/self/status.
fn thread_count() -> Option<u32> {
    status_field(&fs::read_to_string("/proc/self/status").ok()?, "Threads")?
        .parse()
        .ok()
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The capabilities in a `/proc/PID/status` hex mask (`CapEff:` etc.),
/// sorted by name.
#[must_use]
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    let set: Vec<Capability> = caps::all()
        .into_iter()
        .filter(|c| c.index() < 64 && mask & (1_u64 << c.index()) != 0)
        .collect();
    names(&set)
}

/// The live effective capabilities of process `pid`, from
/// `/proc/PID/status`; `None` when it is gone or unreadable.
#[must_use]
pub fn live_effective(pid: u32) -> Option<Vec<String>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = u64::from_str_radix(status_field(&status, "CapEff")?, 16).ok()?;
    Some(caps_from_mask(mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_caps_are_a_subset_of_load_caps() {
        for c in RUN_CAPS {
            assert!(LOAD_CAPS.contains(c), "{c} kept but not granted");
        }
    }

    #[test]
    fn missing_capabilities_are_named_on_one_line() {
        let e = PrivilegeError::Missing {
            missing: "CAP_BPF".to_owned(),
            needed: "CAP_BPF CAP_PERFMON".to_owned(),
        };
        let line = e.to_string();
        assert!(line.starts_with("missing capability CAP_BPF "), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn masks_decode_to_names() {
        // CAP_NET_ADMIN is 12, CAP_BPF 39 (linux/capability.h).
        assert_eq!(
            caps_from_mask((1 << 12) | (1 << 39)),
            ["CAP_BPF", "CAP_NET_ADMIN"]
        );
        assert!(caps_from_mask(0).is_empty());
    }

    #[test]
    fn status_fields_are_found_by_exact_name() {
        let s = "Name:\tnetmon\nCapEff:\t0000000000003000\nCapBnd:\tffff\nThreads:\t1\n";
        assert_eq!(status_field(s, "CapEff"), Some("0000000000003000"));
        assert_eq!(status_field(s, "Threads"), Some("1"));
        assert_eq!(status_field(s, "Cap"), None);
    }

    #[test]
    fn the_report_sits_next_to_the_socket() {
        assert_eq!(
            report_path(Path::new("/run/netmon/netmon.sock")),
            Path::new("/run/netmon/netmon.privileges.json")
        );
    }

    #[test]
    fn the_unit_grants_exactly_the_load_set() {
        let unit = include_str!("../../../deploy/netmon.service.in");
        for key in ["CapabilityBoundingSet=", "AmbientCapabilities="] {
            let line = unit
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in the unit"));
            let mut granted: Vec<&str> = line.split_whitespace().collect();
            granted.sort_unstable();
            assert_eq!(granted, names(LOAD_CAPS), "{key}");
        }
    }
}
