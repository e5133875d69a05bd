//! Regressions of the daemon and its pin directory:
//! - `netmon unload` while a daemon ran silently stopped the counting (of
//!   20 MB sent, 5.9 MB were recorded; the daemon logged nothing and kept
//!   answering). Now unload refuses, naming the daemon's pid; with `--force`
//!   the daemon notices within one interval, loads the programs again,
//!   counts what follows exactly and records the gap as a `kernel_lost`
//!   event that `netmon events` shows;
//! - two daemons drained the same maps (each logging "committed flows
//!   vanished" every interval). Now a second daemon on the same pin
//!   directory is refused with one line naming the first's pid, and creates
//!   nothing.

use std::{
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    cmd,
    daemon::{self, Daemon, INTERVAL},
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
    netns::NetnsPair,
    require_root, scenario, workload_exe,
};

const BYTES: u64 = 8 * 1024 * 1024;

#[test]
fn one_daemon_per_pin_directory_and_unload_under_it() {
    if !require_root("one_daemon_per_pin_directory_and_unload_under_it") {
        return;
    }
    let cg = CgroupGuard::new("pins");
    let pair = NetnsPair::new("pins");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-pins-")
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let mut d = Daemon::start(&paths);
    let pid = format!("pid {}", d.pid());

    // Unload is refused while the daemon drains the pins.
    let mut c = netmon.command(&["unload", "--pin-dir"]);
    c.arg(netmon.pin_dir());
    let out = cmd::output(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1), "unload under a daemon: {out:?}");
    assert!(
        out.stderr.contains(&pid) && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert!(netmon.pin_dir().join("links").exists(), "still loaded");

    // A second daemon on the same pins: one line naming the first, nothing made.
    let other = tempfile::Builder::new()
        .prefix("netmon-test-pins2-")
        .tempdir()
        .expect("temp dir");
    let mut c = std::process::Command::new(netmon_bin());
    c.arg("daemon")
        .arg("--pin-dir")
        .arg(netmon.pin_dir())
        .arg("--cgroup")
        .arg(cg.path())
        .arg("--db")
        .arg(other.path().join("netmon.redb"))
        .arg("--socket")
        .arg(other.path().join("netmon.sock"));
    let out = cmd::output(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1), "second daemon: {out:?}");
    assert!(out.stderr.contains(&pid), "{}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(other.path()).expect("read dir").count(),
        0,
        "the refused daemon created nothing"
    );

    // --force: the daemon notices, loads again and keeps counting.
    let mut c = netmon.command(&["unload", "--force", "--pin-dir"]);
    c.arg(netmon.pin_dir());
    cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let interval = Duration::from_millis(
        INTERVAL
            .strip_suffix("ms")
            .and_then(|ms| ms.parse().ok())
            .expect("INTERVAL in ms"),
    );
    let deadline = Instant::now() + 10 * interval + Duration::from_secs(2);
    while !netmon.pin_dir().join("links").exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not load the programs again"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // Traffic after the reload is counted exactly.
    let run = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &pair.b,
        pair.b.v4().into(),
        &pair.a,
        BYTES,
        0,
    );
    thread::sleep(3 * interval);
    d.stop();
    let c = run.client;
    let usage = daemon::usage(&paths);
    let client_row = usage
        .rows
        .iter()
        .find(|r| r.pid == Some(c.pid))
        .unwrap_or_else(|| panic!("no row for the client: {:#?}", usage.rows));
    assert_eq!(
        client_row.tx.payload_bytes, c.tcp_bytes_sent,
        "client tx payload in the history vs its socket's tcpi_bytes_sent"
    );

    // The gap is in the history.
    let mut c = netmon.command(&["events", "--since", "1h", "--format", "json", "--db"]);
    c.arg(&paths.db).arg("--socket").arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("events JSON");
    let lost: Vec<_> = doc["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "kernel_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{doc:#}");
    let details = &lost[0]["details"];
    let (intact, noticed, back) = (
        details["intact_ms"].as_u64().expect("intact_ms"),
        details["noticed_ms"].as_u64().expect("noticed_ms"),
        details["reattached_ms"].as_u64().expect("reattached_ms"),
    );
    assert!(intact <= noticed && noticed <= back, "{details}");
    eprintln!(
        "  ok unload refused ({pid}), second daemon refused, --force reloaded: gap {} ms",
        back - intact
    );
}
