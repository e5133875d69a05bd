//! A real TCP transfer between two namespaces crosses a volume threshold
//! and the daemon's exec action receives the event with the right bytes.
//!
//! The transfer runs while no daemon is up (the loaded programs count it);
//! the daemon then starts, its first drain takes the whole transfer in one
//! step, and the rule (`comm=netmon-workload`, tx, over 1 MB) fires once,
//! at that step: a condition that became true while the daemon was down.
//! The event's `value_bytes` is then every IP byte the two workloads sent,
//! which the namespaces' own `IpExt.OutOctets` counters measure
//! independently of netmon.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmon_tests::{
    cgroup::CgroupGuard, mib, netmon::Netmon, netmon::netmon_bin, netns::NetnsPair, require_root,
    scenario, workload_exe,
};
use serde::Deserialize;

const BYTES: u64 = 4 * 1024 * 1024;
const OVER: u64 = 1_000_000;

/// The event fields read here (written apart from netmon's types).
#[derive(Debug, Deserialize)]
struct Event {
    rule: String,
    transition: String,
    value_bytes: u64,
    threshold_bytes: u64,
}

/// The daemon child, killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(out: &Path) -> String {
    format!(
        r#"
[[alerts.action]]
name = "tee"
kind = "exec"
command = ["/usr/bin/tee", "-a", "{}"]
[[alerts.rule]]
name = "upload"
filters = ["comm=netmon-workload"]
direction = "tx"
kind = "volume"
over = "{OVER}"
window = "1h"
actions = ["tee", "log"]
"#,
        out.display()
    )
}

#[test]
fn a_real_transfer_crossing_a_volume_threshold_fires_exec_with_its_bytes() {
    if !require_root("a_real_transfer_crossing_a_volume_threshold_fires_exec_with_its_bytes") {
        return;
    }
    let cg = CgroupGuard::new("alerts");
    let pair = NetnsPair::new("alerts");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-alerts-")
        .tempdir()
        .expect("temp dir");
    let out = dir.path().join("events.ndjson");
    std::fs::write(dir.path().join("config.toml"), config(&out)).expect("config");

    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    let run = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &pair.b,
        pair.b.v4().into(),
        &pair.a,
        BYTES,
        0,
    );
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let sent = after[0].delta(&before[0], mib::IP4_OUT_OCTETS)
        + after[1].delta(&before[1], mib::IP4_OUT_OCTETS);
    assert_eq!(run.client.written, BYTES, "ground truth");

    let socket = dir.path().join("netmon.sock");
    let mut d = Guard(
        Command::new(netmon_bin())
            .arg("daemon")
            .arg("--pin-dir")
            .arg(netmon.pin_dir())
            .arg("--cgroup")
            .arg(cg.path())
            .arg("--db")
            .arg(dir.path().join("netmon.redb"))
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .args(["--interval", "200ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon"),
    );
    wait_for("the exec action's output", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n'))
    });
    // A few more intervals: nothing else may fire.
    std::thread::sleep(Duration::from_millis(1000));
    let pid = i32::try_from(d.0.id()).expect("pid");
    // SAFETY: kill has no memory preconditions; the pid is our unreaped
    // child, so it cannot have been reused.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
    assert!(d.0.wait().expect("wait").success(), "daemon exit");

    let text = std::fs::read_to_string(&out).expect("exec output");
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    assert_eq!(events.len(), 1, "one notice: {text}");
    let e = &events[0];
    assert_eq!(
        (e.rule.as_str(), e.transition.as_str(), e.threshold_bytes),
        ("upload", "fired", OVER)
    );
    assert_eq!(
        e.value_bytes, sent,
        "event value_bytes (left) vs both namespaces' IpExt.OutOctets (every byte the two workloads sent)"
    );
}
