//! The kernel's BPF run-time statistics: `netmon status --sample SECONDS`
//! turns them on for its window only and reports exactly one egress run and
//! one ingress run per datagram of a UDP burst inside the window; neither a
//! running daemon nor `status` leaves them on (while on, every BPF program on
//! the machine pays two clock reads per run).

use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    daemon::{self, Daemon},
    netmon::Netmon,
    netns::NetnsPair,
    require_root, scenario, workload_exe,
};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const ROUNDS: u64 = 2000;
/// The sampling window: the burst takes well under a second.
const SAMPLE_SECONDS: &str = "6";

/// Whether the sysctl holds the statistics on. (It shows only its own
/// setting, not the `BPF_ENABLE_STATS` fds netmon uses; whether those are
/// open shows in whether run counts grow.)
fn sysctl_on() -> bool {
    std::fs::read_to_string(STATS_SYSCTL)
        .unwrap_or_else(|e| panic!("{STATS_SYSCTL}: {e}"))
        .trim()
        == "1"
}

/// Cumulative run count of the egress program (`netmon status`).
fn egress_run_count(netmon: &Netmon) -> u64 {
    let doc = netmon.status();
    doc["programs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "netmon_egress"))
        .and_then(|p| p["run_count"].as_u64())
        .unwrap_or_else(|| panic!("no netmon_egress run_count in {doc}"))
}

/// `name`'s entry in the status document's sample.
fn sampled(doc: &serde_json::Value, name: &str) -> (u64, Option<u64>) {
    let programs = doc["sample"]["programs"]
        .as_array()
        .unwrap_or_else(|| panic!("no sample.programs in {doc}"));
    let p = programs
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the sample: {doc}"));
    let runs = p["runs"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}.runs: {p}"));
    (runs, p["avg_ns"].as_u64())
}

#[test]
fn status_sample_counts_every_run_and_leaves_stats_off() {
    if !require_root("status_sample_counts_every_run_and_leaves_stats_off") {
        return;
    }
    let cg = CgroupGuard::new("stats");
    let pair = NetnsPair::new("stats");
    let netmon = Netmon::load(&cg);
    let was_on = sysctl_on();
    if was_on {
        eprintln!(
            "  NOTE: {STATS_SYSCTL} is 1 on this machine; whether netmon leaves the \
             statistics off cannot be checked here (the sample still is)"
        );
    }
    let rx_ip = pair.b.v4().into();
    let burst = |rounds: u64| {
        scenario::udp_burst(
            workload_exe!(),
            &cg,
            &pair.b,
            rx_ip,
            &pair.a,
            1,
            rounds,
            "100",
        )
    };

    // A daemon runs throughout: it must not turn the statistics on.
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-stats-")
        .tempdir()
        .expect("temp dir");
    let mut d = Daemon::start(&daemon::paths_in(dir.path(), netmon.pin_dir(), &cg));
    let first = burst(200);
    assert_eq!(first.receiver.datagrams_received, 200, "first burst");
    if !was_on {
        assert_eq!(
            egress_run_count(&netmon),
            0,
            "runs were counted while only the daemon ran: it turned BPF run statistics on"
        );
    }

    let pin_dir = netmon.pin_dir().to_str().expect("UTF-8 pin dir");
    let status = netmon
        .command(&[
            "status",
            "--pin-dir",
            pin_dir,
            "--sample",
            SAMPLE_SECONDS,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netmon status --sample");
    // The burst must fall inside the window, which opens milliseconds after
    // the start.
    thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let run = burst(ROUNDS);
    let took = started.elapsed();
    let out = status.wait_with_output().expect("wait for netmon status");
    assert!(
        out.status.success(),
        "netmon status --sample failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        took < Duration::from_secs(4),
        "the burst took {took:?}, longer than the sampling window allows"
    );

    let (egress, egress_avg) = sampled(&doc, "netmon_egress");
    let (ingress, ingress_avg) = sampled(&doc, "netmon_ingress");
    assert_eq!(
        egress, run.sender.datagrams_sent,
        "egress runs in the window (left: netmon) vs datagrams sent"
    );
    assert_eq!(
        ingress, run.receiver.datagrams_received,
        "ingress runs in the window (left: netmon) vs datagrams received"
    );
    assert!(
        egress_avg.is_some_and(|ns| ns > 0) && ingress_avg.is_some_and(|ns| ns > 0),
        "average run times: egress {egress_avg:?}, ingress {ingress_avg:?}"
    );
    eprintln!(
        "  ok {egress} egress runs (avg {egress_avg:?} ns), {ingress} ingress runs (avg {ingress_avg:?} ns)"
    );
    if !was_on {
        let after_sample = egress_run_count(&netmon);
        let last = burst(200);
        assert_eq!(last.receiver.datagrams_received, 200, "last burst");
        assert_eq!(
            egress_run_count(&netmon),
            after_sample,
            "runs were still counted after `netmon status --sample` ended: it left BPF run statistics on"
        );
    }
    d.stop();
}
