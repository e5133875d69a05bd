//! The daemon as its systemd unit runs it: an unprivileged user holding
//! exactly the unit's capabilities (`setpriv`, util-linux, stands in for
//! systemd, which is not PID 1 on the test machines).
//!
//! 1. With the unit's set the daemon loads, counts a TCP transfer to the
//!    byte and answers queries; after loading it runs with the smaller
//!    run-time set (read from `/proc/PID/status`, not from netmon), and a
//!    file outside its Landlock ruleset that its user may read by file
//!    permissions is refused to its sandboxed threads.
//! 2. With any one capability of the set missing it stops at once with one
//!    line naming that capability.
//! 3. `netmon load` (which checks only for CAP_BPF up front) with one
//!    load-time capability missing fails: the kernel refuses the programs
//!    without CAP_PERFMON (EINVAL) or CAP_NET_ADMIN (EPERM), and the pin
//!    directory cannot be made in a root-owned 0700 bpffs directory
//!    without CAP_DAC_OVERRIDE: each is needed.
//! 4. The two the daemon keeps after loading (CAP_SYS_PTRACE,
//!    CAP_DAC_READ_SEARCH) are what finds the owner of a socket another user
//!    opened before the load: `netmon snapshot` (the same resolver as the
//!    drain, no up-front check) run with the daemon's run-time set
//!    attributes the server's bytes, and without either one leaves them
//!    unattributed.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    cmd,
    daemon::{self, DaemonPaths, UsageRow},
    netmon::{NETMON_TIMEOUT, netmon_bin},
    netns::Netns,
    report::{DONE, READY, Report},
    require_root, scenario,
    snapshot::Snapshot,
    workload::Workload,
    workload_exe,
};

/// The unit file: the capability set is read from it, so the test and the
/// unit cannot disagree.
const UNIT: &str = include_str!("../../deploy/netmon.service.in");
/// The user and group the daemon runs as here (numeric: no account needed).
const UID: u32 = 1_999_000_123;
/// Transfer size each way.
const BYTES: u64 = 4 * 1024 * 1024;

/// `CAP_BPF` etc. from the unit's `CapabilityBoundingSet=`.
fn unit_caps() -> Vec<String> {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has CapabilityBoundingSet=");
    let ambient = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit has AmbientCapabilities=");
    assert_eq!(
        line, ambient,
        "bounding and ambient sets differ in the unit"
    );
    line.split_whitespace().map(str::to_owned).collect()
}

/// Capability numbers (linux/capability.h), for reading /proc masks.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other} to cap_number"),
    }
}

/// The group the daemon runs with: `netmon` when this machine has it (the
/// daemon gives its socket to that group, which needs membership without
/// CAP_CHOWN), else the same number as the user.
fn gid() -> u32 {
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    group
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some("netmon"))
                .then(|| f.nth(1).and_then(|g| g.parse().ok()))
                .flatten()
        })
        .unwrap_or(UID)
}

/// `setpriv` running `program` as [`UID`] with exactly `caps` (bounding,
/// inheritable and ambient sets) and no_new_privs, as systemd would.
fn as_service(caps: &[String], program: &Path) -> Command {
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={UID}"))
        .arg(format!("--regid={}", gid()))
        .arg("--clear-groups")
        .arg(format!("--inh-caps=-all{list}"))
        .arg(format!("--ambient-caps=-all{list}"))
        .arg(format!("--bounding-set=-all{list}"))
        .arg("--no-new-privs")
        .arg("--")
        .arg(program);
    c
}

/// bpffs must be mounted before an unprivileged daemon runs (systemd mounts
/// it at boot; mounting needs CAP_SYS_ADMIN in the initial namespace).
fn ensure_bpffs() {
    let fs_type = cmd::run_args("stat", &["-f", "-c", "%T", "/sys/fs/bpf"]);
    if fs_type.trim() != "bpf_fs" {
        cmd::run_args("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]);
    }
}

/// A pin directory inside a root-owned mode-0700 directory on bpffs, as
/// systemd mounts /sys/fs/bpf itself (netmon's own mount, used on these
/// machines, is mode 1777); unloaded and removed (as root) on drop.
struct Pins(PathBuf);

impl Pins {
    fn new() -> Self {
        let parent = PathBuf::from(format!(
            "/sys/fs/bpf/netmon-test-priv-{}",
            netmon_tests::unique_suffix()
        ));
        fs::create_dir(&parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o700)).expect("chmod");
        Self(parent.join("netmon"))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if self.0.exists() {
            let mut c = Command::new(netmon_bin());
            c.arg("unload").arg("--pin-dir").arg(&self.0);
            if let Err(e) = cmd::try_run(&mut c, NETMON_TIMEOUT) {
                eprintln!("netmon-tests: {e}");
            }
        }
        if let Some(parent) = self.0.parent()
            && let Err(e) = fs::remove_dir(parent)
        {
            eprintln!("netmon-tests: cannot remove {}: {e}", parent.display());
        }
    }
}

/// A scratch directory the service user owns (history, socket, report).
fn service_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-priv-")
        .tempdir()
        .expect("temp dir");
    std::os::unix::fs::chown(dir.path(), Some(UID), Some(gid())).expect("chown the scratch dir");
    fs::write(dir.path().join("config.toml"), "").expect("empty config");
    dir
}

fn daemon_command(caps: &[String], pins: &Pins, cg: &CgroupGuard, dir: &Path) -> Command {
    let mut c = as_service(caps, &netmon_bin());
    c.arg("daemon")
        .arg("--pin-dir")
        .arg(&pins.0)
        .arg("--cgroup")
        .arg(cg.path())
        .arg("--db")
        .arg(dir.join("netmon.redb"))
        .arg("--socket")
        .arg(dir.join("netmon.sock"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--interval", daemon::INTERVAL]);
    c
}

/// The daemon child; killed on drop if still running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn row<'a>(rows: &'a [UsageRow], r: &Report, what: &str) -> &'a UsageRow {
    rows.iter()
        .find(|row| row.pid == Some(r.pid) && row.start_ticks == Some(r.start_ticks))
        .unwrap_or_else(|| panic!("{what} (pid {}) not in `netmon usage`: {rows:#?}", r.pid))
}

/// A `/proc/PID/status` mask line (`CapEff`, `CapPrm`, ...).
fn proc_mask(pid: u32, field: &str) -> u64 {
    proc_mask_of(&pid.to_string(), field)
}

/// A `/proc/WHO/status` mask line; `who` is a pid or `PID/task/TID`.
fn proc_mask_of(who: &str, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{who}/status")).expect("daemon status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{who}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("hex mask")
}

fn mask(caps: &[&str]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1_u64 << cap_number(c)))
}

#[test]
fn daemon_with_the_units_capabilities_counts_exactly_and_drops_privileges() {
    if !require_root("daemon_with_the_units_capabilities_counts_exactly_and_drops_privileges") {
        return;
    }
    ensure_bpffs();
    let caps = unit_caps();
    let cg = CgroupGuard::new("priv");
    let ns = Netns::new("priv");
    let pins = Pins::new();
    let dir = service_dir();
    // A file the service user may read by its mode, outside every path of
    // the Landlock ruleset.
    let outside = tempfile::Builder::new()
        .prefix("netmon-test-outside-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = outside.path().join("secret");
    fs::write(&secret, "not for netmon\n").expect("write");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut cat = as_service(&[], Path::new("/bin/cat"));
    cat.arg(&secret);
    assert_eq!(
        cmd::try_run(&mut cat, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}")),
        "not for netmon\n",
        "control: the service user reads the file without Landlock"
    );

    let mut c = daemon_command(&caps, &pins, &cg, dir.path());
    c.env("NETMON_LANDLOCK_PROBE", &secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let line = cmd::describe(&c);
    let mut d = Running(c.spawn().unwrap_or_else(|e| panic!("`{line}`: {e}")));
    let report_path = dir.path().join("netmon.privileges.json");
    let deadline = Instant::now() + NETMON_TIMEOUT;
    while !report_path.exists() {
        if let Ok(Some(status)) = d.0.try_wait() {
            panic!("`{line}` exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "`{line}`: no privilege report");
        thread::sleep(Duration::from_millis(20));
    }
    // The report is written once, after the drop; give the write a moment.
    thread::sleep(Duration::from_millis(100));
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report_path).expect("report"))
            .expect("report JSON");
    let pid = d.0.id();

    // What the kernel says the daemon runs with now: the drain thread keeps
    // the unit's capabilities permitted (not effective), for loading again
    // after `netmon unload --force`.
    let kept = ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"];
    let unit: Vec<&str> = caps.iter().map(String::as_str).collect();
    assert_eq!(
        (
            proc_mask(pid, "CapEff"),
            proc_mask(pid, "CapPrm"),
            proc_mask(pid, "CapAmb")
        ),
        (mask(&kept), mask(&unit), 0),
        "effective, permitted, ambient after load (from /proc/{pid}/status)"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status.lines().any(|l| l == "NoNewPrivs:\t1"),
        "no_new_privs: {status}"
    );
    assert_eq!(report["uid"], UID);
    assert_eq!(report["landlock"]["status"], "enforced", "{report:#}");
    assert_eq!(
        report["landlock"]["probe"]["allowed"],
        false,
        "Landlock let a sandboxed thread read {}: {report:#}",
        secret.display()
    );
    let probe_error = report["landlock"]["probe"]["error"].as_str().unwrap_or("");
    assert!(probe_error.contains("Permission denied"), "{report:#}");

    // Traffic after the drop: drained and answered exactly.
    let run = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &ns,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &ns,
        BYTES,
        BYTES / 2,
    );
    let paths = DaemonPaths {
        pin_dir: pins.0.clone(),
        cgroup: cg.path().to_path_buf(),
        db: dir.path().join("netmon.redb"),
        socket: dir.path().join("netmon.sock"),
    };
    // Until the history stops changing: a fixed wait was too short on a
    // loaded CI machine (the drain's last interval had not run yet).
    daemon::settled("usage totals", || {
        let t = daemon::usage(&paths).total;
        (t.tx.payload_bytes, t.rx.payload_bytes)
    });
    let usage = daemon::usage(&paths);
    let (client, server) = (&run.client, &run.server);
    assert_eq!(
        (client.written, server.read),
        (BYTES, BYTES),
        "ground truth"
    );
    let c_row = row(&usage.rows, client, "client");
    let s_row = row(&usage.rows, server, "server");
    assert_eq!(
        (c_row.tx.payload_bytes, s_row.rx.payload_bytes),
        (client.tcp_bytes_sent, client.tcp_bytes_sent),
        "(client tx, server rx) payload in the history vs the client socket's tcpi_bytes_sent"
    );
    assert_eq!(
        (s_row.tx.payload_bytes, c_row.rx.payload_bytes),
        (server.tcp_bytes_sent, server.tcp_bytes_sent),
        "(server tx, client rx) payload in the history vs the server socket's tcpi_bytes_sent"
    );

    // `netmon status` shows what the daemon runs with.
    let mut st = Command::new(netmon_bin());
    st.args(["status", "--json", "--pin-dir"])
        .arg(&pins.0)
        .arg("--socket")
        .arg(&paths.socket);
    let doc: serde_json::Value = serde_json::from_str(
        &cmd::try_run(&mut st, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}")),
    )
    .expect("status JSON");
    assert_eq!(doc["daemon"]["pid"], pid);
    assert_eq!(doc["daemon"]["effective"], serde_json::json!(kept));
    // Every other thread (the query threads, started by now) dropped the
    // load capabilities from its permitted set.
    let mut others = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let tid = task.expect("task").file_name();
        if tid.to_string_lossy() == pid.to_string() {
            continue;
        }
        others += 1;
        assert_eq!(
            proc_mask_of(&format!("{pid}/task/{}", tid.to_string_lossy()), "CapPrm"),
            mask(&kept),
            "permitted set of thread {tid:?}"
        );
    }
    assert!(others > 0, "the daemon answered queries from other threads");

    // SIGTERM: the final drain, exit 0.
    let pid_i = i32::try_from(pid).expect("pid");
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid_i, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + NETMON_TIMEOUT;
    let exit = loop {
        if let Ok(Some(s)) = d.0.try_wait() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon still running after SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "daemon exit after SIGTERM: {exit}");
    eprintln!(
        "  ok uid {UID} with {} : counted {} B each way exactly, runs with {kept:?}, Landlock refused {}",
        caps.join(" "),
        client.tcp_bytes_sent,
        secret.display()
    );
}

#[test]
fn daemon_missing_any_one_capability_names_it_on_one_line() {
    if !require_root("daemon_missing_any_one_capability_names_it_on_one_line") {
        return;
    }
    ensure_bpffs();
    let caps = unit_caps();
    let cg = CgroupGuard::new("priv-missing");
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let pins = Pins::new();
        let dir = service_dir();
        let mut c = daemon_command(&fewer, &pins, &cg, dir.path());
        let out = cmd::output(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.status.success(), "started without {missing}");
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "without {missing}, stderr:\n{err}");
        assert!(
            err.starts_with("netmon: ") && err.contains(missing.as_str()),
            "without {missing}: {err}"
        );
        assert!(!pins.0.exists(), "without {missing} something was pinned");
        eprintln!("  ok without {missing}: {err}");
    }
}

#[test]
fn loading_fails_in_the_kernel_without_each_load_capability() {
    if !require_root("loading_fails_in_the_kernel_without_each_load_capability") {
        return;
    }
    ensure_bpffs();
    let caps = unit_caps();
    let cg = CgroupGuard::new("priv-load");
    // `netmon load` does not check up front: the kernel refuses.
    for missing in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_DAC_OVERRIDE",
    ] {
        assert!(
            caps.iter().any(|c| c == missing),
            "{missing} not in the unit"
        );
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let pins = Pins::new();
        let mut c = as_service(&fewer, &netmon_bin());
        c.arg("load")
            .arg("--pin-dir")
            .arg(&pins.0)
            .arg("--cgroup")
            .arg(cg.path());
        let out = cmd::output(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !out.status.success(),
            "`netmon load` succeeded without {missing}: {}",
            out.stderr
        );
        assert!(!pins.0.exists(), "a failed load left {}", pins.0.display());
        eprintln!("  ok load without {missing}: {}", out.stderr.trim());
    }
    // And with all of them it loads (the failures above are the missing
    // capability's, not the user's).
    let pins = Pins::new();
    let mut c = as_service(&caps, &netmon_bin());
    c.arg("load")
        .arg("--pin-dir")
        .arg(&pins.0)
        .arg("--cgroup")
        .arg(cg.path());
    cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(pins.0.exists());
}

#[test]
fn the_run_time_capabilities_find_other_users_socket_owners() {
    if !require_root("the_run_time_capabilities_find_other_users_socket_owners") {
        return;
    }
    ensure_bpffs();
    let cg = CgroupGuard::new("priv-owner");
    let ns = Netns::new("priv-owner");
    let pins = Pins::new();
    let exe = workload_exe!();
    let bytes = (BYTES / 4).to_string();
    let mut load = as_service(&unit_caps(), &netmon_bin());
    load.arg("load")
        .arg("--pin-dir")
        .arg(&pins.0)
        .arg("--cgroup")
        .arg(cg.path());
    cmd::try_run(&mut load, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    // Root's listener, created after the load by a parent that forks a
    // child to accept and send: the kernel records the parent (the
    // listener's owner, cloned into the accepted socket), and only a look
    // into another user's `/proc/PID/fd` finds that the child holds it.
    // Sockets older than the load are adopted at load (with the load-time
    // capabilities), so this is what the run-time set is for.
    let mut server = Workload::spawn(
        exe,
        [
            "fork-accept",
            "--listen",
            "127.0.0.1:0",
            "--send",
            &bytes,
            "--keep-open",
        ],
        &cg,
        Some(&ns),
    );
    let connect = format!(
        "127.0.0.1:{}",
        scenario::first_port(&server.wait_event(READY))
    );
    let mut client = Workload::spawn(
        exe,
        [
            "tcp-client",
            "--connect",
            &connect,
            "--hold",
            "--keep-open",
            "--expect",
            &bytes,
        ],
        &cg,
        Some(&ns),
    );
    let c = client.wait_event(DONE);
    assert_eq!(c.read, BYTES / 4, "ground truth");
    // Printed by the forked child, which holds the socket until "exit".
    let child = server.wait_event(DONE);
    // The snapshots below must reach the pins without CAP_DAC_READ_SEARCH
    // too (the daemon has them open from before its drop).
    let parent = pins.0.parent().expect("pin parent");
    fs::set_permissions(parent, fs::Permissions::from_mode(0o711)).expect("chmod");

    // The daemon's run-time set, plus CAP_BPF to open the pinned maps (the
    // daemon holds them open from before its drop).
    let run_time = ["CAP_BPF", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];
    let child_tx = |without: Option<&str>| -> u64 {
        let set: Vec<String> = run_time
            .iter()
            .filter(|c| Some(**c) != without)
            .map(|c| (*c).to_owned())
            .collect();
        let mut snap = as_service(&set, &netmon_bin());
        snap.args(["snapshot", "--sockets", "--json", "--pin-dir"])
            .arg(&pins.0);
        let out = cmd::try_run(&mut snap, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        Snapshot::parse(&out)
            .processes_with_pid(child.pid)
            .map(|p| p.tx.app_bytes)
            .sum()
    };
    // App bytes, not payload: on a busy machine loopback TCP can retransmit
    // (a 65,483 B segment was seen in CI), and what the client read is what
    // the application sent once.
    assert_eq!(
        child_tx(None),
        c.read,
        "the forked child's tx app bytes with the run-time set"
    );
    for missing in ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"] {
        assert_eq!(
            child_tx(Some(missing)),
            0,
            "without {missing} the child holding the socket was still found: the capability is not needed"
        );
        eprintln!(
            "  ok without {missing}: the child's {} B stay with the listener's owner",
            c.read
        );
    }
    client.send_line("exit");
    server.send_line("exit");
    assert!(
        client.wait_exit(Duration::from_secs(10)).success(),
        "client failed"
    );
    assert!(
        server.wait_exit(Duration::from_secs(10)).success(),
        "fork-accept failed"
    );
}
