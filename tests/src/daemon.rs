//! `netmon daemon` as a child process the test can SIGKILL and restart, and
//! `netmon usage` read back from its history database.
//!
//! The daemon runs in the test's own cgroup-less context (it makes no network
//! traffic of its own) and re-opens the programs a [`crate::netmon::Netmon`]
//! guard loaded, so the pins outlive every daemon instance and are removed by
//! that guard.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    cgroup::CgroupGuard,
    cmd,
    netmon::{NETMON_TIMEOUT, netmon_bin},
    snapshot::Counters,
};

/// Drain interval the test daemons use.
pub const INTERVAL: &str = "200ms";

/// Where a daemon keeps its state.
#[derive(Clone, Debug)]
pub struct DaemonPaths {
    /// bpffs pin directory (already loaded).
    pub pin_dir: PathBuf,
    /// cgroup the programs are attached to.
    pub cgroup: PathBuf,
    /// History database.
    pub db: PathBuf,
    /// Query socket (unique, so no other daemon answers).
    pub socket: PathBuf,
}

/// A running `netmon daemon`; killed on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    exited: bool,
}

impl Daemon {
    /// Starts `netmon daemon` and waits until its query socket exists (it has
    /// opened the kernel counters and the database).
    #[track_caller]
    #[must_use]
    pub fn start(paths: &DaemonPaths) -> Self {
        Self::start_with(Command::new(netmon_bin()), paths)
    }

    /// [`Daemon::start`] inside the network namespace at `netns` (`nsenter
    /// --net`, which execs netmon: the child is the daemon itself).
    #[track_caller]
    #[must_use]
    pub fn start_in_netns(paths: &DaemonPaths, netns: &Path) -> Self {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", netns.display()))
            .arg(netmon_bin());
        Self::start_with(c, paths)
    }

    /// [`Daemon::start_in_netns`] with the config file `config`.
    #[track_caller]
    #[must_use]
    pub fn start_in_netns_with_config(paths: &DaemonPaths, netns: &Path, config: &Path) -> Self {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", netns.display()))
            .arg(netmon_bin())
            .arg("daemon")
            .arg("--pin-dir")
            .arg(&paths.pin_dir)
            .arg("--cgroup")
            .arg(&paths.cgroup)
            .arg("--config")
            .arg(config);
        Self::spawn(c, paths)
    }

    /// Starts `c` (netmon, or a wrapper that execs it) with the daemon's
    /// arguments and waits for its socket.
    #[track_caller]
    fn start_with(mut c: Command, paths: &DaemonPaths) -> Self {
        c.arg("daemon")
            .arg("--pin-dir")
            .arg(&paths.pin_dir)
            .arg("--cgroup")
            .arg(&paths.cgroup);
        Self::spawn(c, paths)
    }

    /// [`Daemon::start`] with the config file `config` (its `[http]`
    /// server, `[http.metrics]` exporter and token file, for example).
    #[track_caller]
    #[must_use]
    pub fn start_with_config(paths: &DaemonPaths, config: &Path) -> Self {
        let mut c = Command::new(netmon_bin());
        c.arg("daemon")
            .arg("--pin-dir")
            .arg(&paths.pin_dir)
            .arg("--cgroup")
            .arg(&paths.cgroup)
            .arg("--config")
            .arg(config);
        Self::spawn(c, paths)
    }

    /// `netmon daemon --simulate SCRIPT --config CONFIG`: a daemon on the
    /// simulated source (no kernel programs; `paths.pin_dir` and
    /// `paths.cgroup` are not used), next to real-kernel daemons.
    #[track_caller]
    #[must_use]
    pub fn start_simulated(paths: &DaemonPaths, script: &Path, config: &Path) -> Self {
        let mut c = Command::new(netmon_bin());
        c.arg("daemon")
            .arg("--simulate")
            .arg(script)
            .arg("--config")
            .arg(config);
        Self::spawn(c, paths)
    }

    /// Adds the database, socket and interval to `c`, starts it and waits
    /// for the query socket.
    #[track_caller]
    fn spawn(mut c: Command, paths: &DaemonPaths) -> Self {
        c.arg("--db")
            .arg(&paths.db)
            .arg("--socket")
            .arg(&paths.socket)
            .args(["--interval", INTERVAL])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let line = cmd::describe(&c);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let mut daemon = Self {
            child,
            exited: false,
        };
        let deadline = Instant::now() + NETMON_TIMEOUT;
        while !paths.socket.exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                daemon.exited = true;
                panic!("`{line}` exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "`{line}`: no socket {} after {NETMON_TIMEOUT:?}",
                paths.socket.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// The daemon's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no final drain, no cleanup.
    #[track_caller]
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait(Duration::from_secs(10));
        assert!(!status.success(), "daemon survived SIGKILL: {status}");
    }

    /// SIGTERM: the daemon drains one last time and exits 0.
    #[track_caller]
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait(NETMON_TIMEOUT);
        assert!(
            status.success(),
            "daemon exited with {status} after SIGTERM"
        );
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap_or(i32::MAX);
        // SAFETY: kill has no memory preconditions; the pid is our unreaped
        // child, so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    #[track_caller]
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = true;
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!("daemon {} still running after {timeout:?}", self.child.id()),
                Err(e) => panic!("waiting for the daemon: {e}"),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        if let Err(e) = self.child.kill() {
            eprintln!("netmon-tests: cannot kill the daemon: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("netmon-tests: cannot reap the daemon: {e}");
        }
    }
}

/// `netmon usage --by process --json`, as far as the test reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct Usage {
    /// Schema version (1).
    pub schema_version: u32,
    /// One row per process.
    pub rows: Vec<UsageRow>,
    /// Sum over all rows.
    pub total: UsageTotals,
}

/// One process's totals over the window.
#[derive(Clone, Debug, Deserialize)]
pub struct UsageRow {
    /// The group as text.
    pub key: String,
    /// Pid.
    pub pid: Option<u32>,
    /// Start time in clock ticks.
    pub start_ticks: Option<u64>,
    /// Command name.
    pub comm: Option<String>,
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

/// Sum over all rows.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct UsageTotals {
    /// Sent.
    pub tx: Counters,
    /// Received.
    pub rx: Counters,
}

/// Reads the last hour's per-process totals (directly from the database
/// when no daemon answers on `paths.socket`).
#[track_caller]
#[must_use]
pub fn usage(paths: &DaemonPaths) -> Usage {
    let mut c = Command::new(netmon_bin());
    c.args(["usage", "--since", "1h", "--by", "process", "--json"]);
    // `--db` always reads the file (refused while a daemon holds it): ask
    // the daemon while its socket is there.
    if paths.socket.exists() {
        c.arg("--socket").arg(&paths.socket);
    } else {
        c.arg("--db").arg(&paths.db);
    }
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let usage: Usage = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`netmon usage` JSON: {e}\n{}",
            out.chars().take(2000).collect::<String>()
        )
    });
    assert_eq!(usage.schema_version, 1, "usage schema_version");
    usage
}

/// `netmon usage --since 1h --by BY --json` as untyped JSON (for fields
/// the typed [`Usage`] does not read), directly from the database when no
/// daemon answers.
#[track_caller]
#[must_use]
pub fn usage_by(paths: &DaemonPaths, by: &str) -> serde_json::Value {
    let mut c = Command::new(netmon_bin());
    c.args(["usage", "--since", "1h", "--by", by, "--json", "--db"])
        .arg(&paths.db)
        .arg("--socket")
        .arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`netmon usage --by {by}` JSON: {e}\n{}",
            out.chars().take(2000).collect::<String>()
        )
    })
}

/// The paths under `dir` for a daemon of `pin_dir`/`cgroup`.
#[must_use]
pub fn paths_in(dir: &Path, pin_dir: &Path, cgroup: &CgroupGuard) -> DaemonPaths {
    DaemonPaths {
        pin_dir: pin_dir.to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        db: dir.join("netmon.redb"),
        socket: dir.join("netmon.sock"),
    }
}

/// Milliseconds since the Unix epoch, by the wall clock the daemon uses.
#[must_use]
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Polls `read` (a daemon answer) until it stays the same over three reads
/// 300 ms apart, i.e. over several drain intervals, so everything counted
/// before the call is committed; the wall-clock time after that.
///
/// # Panics
/// When the answer still changes after 30 s (`what` names it).
pub fn settled<T: PartialEq>(what: &str, mut read: impl FnMut() -> T) -> u64 {
    let start = Instant::now();
    let mut last = read();
    let mut same = 0;
    while same < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon's {what} never settled"
        );
        thread::sleep(Duration::from_millis(300));
        let now = read();
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    now_ms()
}
