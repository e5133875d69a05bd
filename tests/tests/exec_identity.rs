//! Issue 10: a process that lived a few milliseconds kept its pid, start
//! time and bytes but lost its exe, cmdline and cgroup (null in `procs` and
//! `usage`), so `--by app` and `--by container` misfiled exactly the
//! short-lived processes. netmon now records exe and arguments at exec
//! (`netmon_exec`, raw tracepoint `sched_process_exec`) and maps the cgroup
//! id the socket recorded to its path.
//!
//! 200 clients, each exec'd into a child cgroup, connect, send a byte count
//! of their own and exit within milliseconds; every other one does so in a
//! forked child that never execs (its identity is its parent's, copied at
//! fork by `netmon_fork`). The daemon is started only
//! after the last one exited, so `/proc` has none of them when the drain
//! first looks: everything it reports about them comes from the kernel.
//! Ground truth: the arguments the test passed, the binary it ran, the
//! cgroup it made, and each client's own byte counts.

use std::{collections::BTreeMap, path::Path, thread, time::Duration, time::Instant};

use netmon_tests::{
    cgroup::{CgroupGuard, cgroup2_root},
    check, cmd,
    daemon::{self, Daemon, DaemonPaths},
    mib,
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
    netns::NetnsPair,
    report::Report,
    require_root, scenario,
    snapshot::Counters,
    workload::Workload,
    workload_exe,
};
use serde::Deserialize;

const CLIENTS: usize = 200;
/// Clients alive at once.
const WAVE: usize = 10;

/// Client `i` sends its own number of bytes, so a misattributed byte shows.
fn bytes_of(i: usize) -> u64 {
    10_000 + 37 * i as u64
}

/// `netmon procs --json`, as far as this test reads it (written here, not
/// taken from netmon's types).
#[derive(Debug, Deserialize)]
struct Procs {
    processes: Vec<ProcSeen>,
}

#[derive(Clone, Debug, Deserialize)]
struct ProcSeen {
    pid: u32,
    start_ticks: u64,
    exe: Option<String>,
    cmdline: Option<String>,
    cgroup: Option<String>,
}

/// `netmon usage --by process --json`.
#[derive(Debug, Deserialize)]
struct Usage {
    rows: Vec<UsageRow>,
}

#[derive(Clone, Debug, Deserialize)]
struct UsageRow {
    pid: Option<u32>,
    start_ticks: Option<u64>,
    exe: Option<String>,
    cmdline: Option<String>,
    cgroup: Option<String>,
    tx: Counters,
    rx: Counters,
}

fn query<T: for<'de> Deserialize<'de>>(paths: &DaemonPaths, args: &[&str]) -> T {
    let mut c = std::process::Command::new(netmon_bin());
    c.args(args)
        .args(["--since", "1h", "--json", "--socket"])
        .arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`netmon {}` JSON: {e}\n{}",
            args.join(" "),
            out.chars().take(2000).collect::<String>()
        )
    })
}

/// One client: what it was started with and what it reported.
struct Client {
    cmdline: String,
    report: Report,
}

#[test]
fn short_lived_processes_keep_exe_cmdline_and_cgroup() {
    if !require_root("short_lived_processes_keep_exe_cmdline_and_cgroup") {
        return;
    }
    let cg = CgroupGuard::new("ident");
    let pair = NetnsPair::new("ident");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-ident-")
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let exe = workload_exe!();
    let (mut server, connect) =
        scenario::tcp_accept_many(exe, &cg, &pair.b, pair.b.v4().into(), CLIENTS);
    let mut clients: Vec<Client> = Vec::with_capacity(CLIENTS);
    while clients.len() < CLIENTS {
        let first = clients.len();
        let mut wave: Vec<(String, Workload)> = (first..CLIENTS.min(first + WAVE))
            .map(|i| {
                let mut args = vec![
                    "tcp-client".to_owned(),
                    "--connect".to_owned(),
                    connect.clone(),
                    "--send".to_owned(),
                    bytes_of(i).to_string(),
                ];
                // Every other client works in a forked child that never
                // execs: it runs its parent's program and arguments.
                if i % 2 == 1 {
                    args.push("--fork".to_owned());
                }
                let cmdline = format!("{} {}", exe.display(), args.join(" "));
                (cmdline, Workload::spawn(exe, &args, &cg, Some(&pair.a)))
            })
            .collect();
        clients.extend(wave.iter_mut().map(|(cmdline, w)| Client {
            cmdline: cmdline.clone(),
            report: w.wait_done(),
        }));
    }
    let server = server.wait_done();
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let retrans = check::retrans(&before, &after);

    // Ground truth first.
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.report.written, bytes_of(i), "client {i} wrote");
        if retrans == 0 {
            assert_eq!(
                c.report.tcp_bytes_sent, c.report.written,
                "client {i}: tcpi_bytes_sent"
            );
        }
    }
    let sent: u64 = clients.iter().map(|c| c.report.tcp_bytes_sent).sum();
    assert_eq!(
        server.read,
        clients.iter().map(|c| c.report.written).sum::<u64>()
    );
    // Every client is gone before any drain: what netmon says about them
    // cannot come from /proc.
    for c in &clients {
        assert!(
            !Path::new(&format!("/proc/{}", c.report.pid)).exists()
                || netmon_tests::procfs::start_ticks(c.report.pid) != Some(c.report.start_ticks),
            "client {} still alive",
            c.report.pid
        );
    }

    let mut d = Daemon::start(&paths);
    // Until every client's bytes are committed (the flows of closed sockets
    // wait in the kernel for the daemon), bounded in time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let usage = loop {
        let usage: Usage = query(&paths, &["usage", "--by", "process"]);
        let got: u64 = usage
            .rows
            .iter()
            .filter(|r| clients.iter().any(|c| Some(c.report.pid) == r.pid))
            .map(|r| r.tx.payload_bytes)
            .sum();
        if got >= sent || Instant::now() > deadline {
            break usage;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let procs: Procs = query(&paths, &["procs"]);
    d.stop();

    let exe_path = std::fs::canonicalize(exe)
        .expect("workload path")
        .display()
        .to_string();
    let root = cgroup2_root();
    let cgroup = format!(
        "/{}",
        cg.path()
            .strip_prefix(&root)
            .expect("test cgroup under the cgroup2 root")
            .display()
    );
    let mut failures = Vec::new();
    for c in &clients {
        let r = &c.report;
        let want = (
            Some(exe_path.as_str()),
            Some(c.cmdline.as_str()),
            Some(cgroup.as_str()),
        );
        let rows: Vec<&UsageRow> = usage
            .rows
            .iter()
            .filter(|u| u.pid == Some(r.pid) && u.start_ticks == Some(r.start_ticks))
            .collect();
        match rows.as_slice() {
            [u] if (u.exe.as_deref(), u.cmdline.as_deref(), u.cgroup.as_deref()) == want
                && u.tx.payload_bytes == r.tcp_bytes_sent
                && u.rx.payload_bytes == 0 => {}
            other => failures.push(format!(
                "usage, pid {} (sent {}): {other:?}",
                r.pid, r.tcp_bytes_sent
            )),
        }
        let seen: Vec<&ProcSeen> = procs
            .processes
            .iter()
            .filter(|p| p.pid == r.pid && p.start_ticks == r.start_ticks)
            .collect();
        match seen.as_slice() {
            [p] if (p.exe.as_deref(), p.cmdline.as_deref(), p.cgroup.as_deref()) == want => {}
            other => failures.push(format!("procs, pid {}: {other:?}", r.pid)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed (want exe {exe_path}, cgroup {cgroup}):\n{}",
        failures.len(),
        2 * CLIENTS,
        failures.join("\n")
    );

    let mut lifetimes: Vec<u64> = clients.iter().map(|c| c.report.elapsed_ms).collect();
    lifetimes.sort_unstable();
    let per_ms: BTreeMap<&str, u64> = [
        ("median", lifetimes[CLIENTS / 2]),
        ("p95", lifetimes[CLIENTS * 95 / 100]),
        ("max", lifetimes[CLIENTS - 1]),
    ]
    .into();
    eprintln!(
        "  ok all {CLIENTS} exited clients named (exe, cmdline, cgroup) and exact; lifetimes in ms: {per_ms:?}"
    );
}
