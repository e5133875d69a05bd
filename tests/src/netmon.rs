//! The `netmon` binary under test, loaded into a unique bpffs pin directory
//! and attached to one test's cgroup.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
    time::Duration,
};

use crate::{cgroup::CgroupGuard, cmd, snapshot::Snapshot};

/// Time limit for one netmon command.
pub const NETMON_TIMEOUT: Duration = Duration::from_secs(60);

/// The netmon binary: `$NETMON_BIN`, else `<workspace>/target/release/netmon`
/// (said once on stderr). Panics if it does not exist.
#[track_caller]
#[must_use]
pub fn netmon_bin() -> PathBuf {
    static FALLBACK_NOTE: Once = Once::new();
    let path = if let Some(p) = std::env::var_os("NETMON_BIN") {
        PathBuf::from(p)
    } else {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/netmon");
        FALLBACK_NOTE.call_once(|| {
            eprintln!("netmon-tests: NETMON_BIN is not set; using {}", p.display());
        });
        p
    };
    assert!(
        path.is_file(),
        "netmon binary not found at {} (build it with `cargo build --release -p netmon-userspace` \
         or set NETMON_BIN)",
        path.display()
    );
    path
}

/// netmon loaded and attached to a cgroup; `netmon unload` on drop.
#[derive(Debug)]
pub struct Netmon {
    bin: PathBuf,
    pin_dir: PathBuf,
}

impl Netmon {
    /// `netmon load --pin-dir /sys/fs/bpf/netmon-test-<unique> --cgroup CG`.
    #[track_caller]
    #[must_use]
    pub fn load(cgroup: &CgroupGuard) -> Self {
        Self::load_with(cgroup, &[])
    }

    /// [`Self::load`] with extra arguments (e.g. `--max-flows 4`).
    #[track_caller]
    #[must_use]
    pub fn load_with(cgroup: &CgroupGuard, extra: &[&str]) -> Self {
        Self::load_bin(netmon_bin(), cgroup, extra)
    }

    /// [`Self::load_with`] with another `netmon` binary (the kernel bench's
    /// `--compare` build).
    #[track_caller]
    #[must_use]
    pub fn load_bin(bin: PathBuf, cgroup: &CgroupGuard, extra: &[&str]) -> Self {
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/netmon-test-{}",
            crate::unique_suffix()
        ));
        let guard = Self { bin, pin_dir };
        let mut c = guard.command(&["load"]);
        c.arg("--pin-dir")
            .arg(&guard.pin_dir)
            .arg("--cgroup")
            .arg(cgroup.path())
            .args(extra);
        if let Err(e) = cmd::try_run(&mut c, NETMON_TIMEOUT) {
            panic!("netmon load failed: {e}");
        }
        guard
    }

    /// The pin directory.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// `netmon ARGS` (not started).
    #[must_use]
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args);
        c
    }

    /// Runs `netmon ARGS --pin-dir <dir>` and returns stdout; panics on
    /// failure.
    #[track_caller]
    #[must_use]
    pub fn run(&self, args: &[&str]) -> String {
        let mut c = self.command(args);
        c.arg("--pin-dir").arg(&self.pin_dir);
        cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `netmon snapshot --sockets --json`, parsed.
    #[track_caller]
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::parse(&self.run(&["snapshot", "--sockets", "--json"]))
    }

    /// `netmon status --json`, as untyped JSON (its fields are for humans
    /// and for the overflow test, which looks only at what it needs).
    #[track_caller]
    #[must_use]
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON: {e}\n{out}"))
    }
}

/// One kernel map's `(entries, gone)` in a `netmon status --json` answer:
/// its entries, and those whose socket is gone. Panics with the answer if
/// the map is not listed.
#[track_caller]
#[must_use]
pub fn map_status(status: &serde_json::Value, name: &str) -> (u64, u64) {
    let m = status["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no map {name} in status:\n{status:#}"));
    let get = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{name}.{k}: {m:#}"));
    (get("entries"), get("gone"))
}

impl Drop for Netmon {
    fn drop(&mut self) {
        let mut c = self.command(&["unload"]);
        c.arg("--pin-dir").arg(&self.pin_dir);
        if let Err(e) = cmd::try_run(&mut c, NETMON_TIMEOUT) {
            eprintln!("netmon-tests: {e}");
        }
        if self.pin_dir.exists() {
            eprintln!(
                "netmon-tests: `netmon unload` left {} behind; removing it",
                self.pin_dir.display()
            );
            if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
                eprintln!(
                    "netmon-tests: cannot remove {}: {e}",
                    self.pin_dir.display()
                );
            }
        }
    }
}
