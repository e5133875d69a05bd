//! RTT and retransmission rules on a real kernel: a bulk upload over a
//! shaped, lossy veth (a `tbf` standing queue of tens of milliseconds, 2 %
//! of the data packets dropped) makes the `rtt_p95` and `retrans_rate`
//! rules scoped to the server's address fire, and their last event (the
//! rules repeat every interval while true, over a window that holds the
//! whole upload) matches the client's own `TCP_INFO`:
//! - `retrans_segs` and `data_segs` equal `tcpi_total_retrans` and
//!   `tcpi_data_segs_out` (the scope takes only the client's connection);
//! - `rtt_p95_us` is within 20 % of the 95th percentile of the client's
//!   `tcpi_rtt`, read every 100 ms (two samplings of one smoothed RTT);
//! - a rule with a threshold far above any RTT here never fires, and
//!   neither does one scoped to another address.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use netmon_tests::{
    cgroup::CgroupGuard,
    daemon::{self, Daemon},
    netmon::Netmon,
    netns::NetnsPair,
    report::READY,
    require_root, scenario, shaping,
    workload::Workload,
    workload_exe,
};
use serde::Deserialize;

const BYTES: u64 = 16 * 1024 * 1024;

/// The event fields read here (written apart from netmon's types).
#[derive(Debug, Deserialize)]
struct Event {
    rule: String,
    transition: String,
    #[serde(default)]
    rtt_p95_us: Option<u64>,
    #[serde(default)]
    retrans_segs: Option<u64>,
    #[serde(default)]
    data_segs: Option<u64>,
}

fn config(out: &Path, server: IpAddr) -> String {
    format!(
        r#"
[[alerts.action]]
name = "tee"
kind = "exec"
command = ["/usr/bin/tee", "-a", "{out}"]
[[alerts.rule]]
name = "rtt"
filters = ["remote={server}"]
kind = "rtt_p95"
over = "5ms"
window = "1h"
min_samples = 3
repeat = "1ms"
actions = ["tee"]
[[alerts.rule]]
name = "loss"
filters = ["remote={server}"]
kind = "retrans_rate"
over = "0.1%"
window = "1h"
min_segments = 100
repeat = "1ms"
actions = ["tee"]
[[alerts.rule]]
name = "rtt-never"
filters = ["remote={server}"]
kind = "rtt_p95"
over = "30s"
window = "1h"
min_samples = 1
actions = ["tee"]
[[alerts.rule]]
name = "elsewhere"
filters = ["remote=192.0.2.1"]
kind = "rtt_p95"
over = "1us"
window = "1h"
min_samples = 1
actions = ["tee"]
"#,
        out = out.display()
    )
}

#[test]
fn rtt_and_retransmission_rules_fire_on_a_slow_lossy_link() {
    if !require_root("rtt_and_retransmission_rules_fire_on_a_slow_lossy_link") {
        return;
    }
    let cg = CgroupGuard::new("alertq");
    let pair = NetnsPair::new("alertq");
    shaping::shape_egress(&pair.a, 20, 400);
    shaping::drop_ingress(&pair.b, 20);
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-alertq-")
        .tempdir()
        .expect("temp dir");
    let out = dir.path().join("events.ndjson");
    let server_ip: IpAddr = pair.b.v4().into();
    std::fs::write(dir.path().join("config.toml"), config(&out, server_ip)).expect("config");

    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let mut d = Daemon::start_with_config(&paths, &dir.path().join("config.toml"));

    let exe = workload_exe!();
    let listen = SocketAddr::new(server_ip, 0).to_string();
    let mut server = Workload::spawn(exe, ["tcp-server", "--listen", &listen], &cg, Some(&pair.b));
    let connect =
        SocketAddr::new(server_ip, scenario::first_port(&server.wait_event(READY))).to_string();
    let bytes = BYTES.to_string();
    let mut client = Workload::spawn(
        exe,
        [
            "tcp-client",
            "--connect",
            &connect,
            "--send",
            &bytes,
            "--rtt-every-ms",
            "100",
        ],
        &cg,
        Some(&pair.a),
    );
    let (c, s) = (client.wait_done(), server.wait_done());
    assert_eq!((c.written, s.read), (BYTES, BYTES), "ground truth");
    assert!(
        c.tcp_total_retrans > 0,
        "the lossy link made no retransmission: the test would prove nothing"
    );
    assert!(
        c.tcp_rtt_p95_us > 5_000,
        "the standing queue did not raise the RTT over 5 ms ({} µs): the test would prove nothing",
        c.tcp_rtt_p95_us
    );
    // Intervals after the last packet: the repeats then carry every sample.
    std::thread::sleep(Duration::from_millis(1500));
    let events: Vec<Event> = std::fs::read_to_string(&out)
        .expect("exec output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    d.stop();
    for never in ["rtt-never", "elsewhere"] {
        assert!(
            events.iter().all(|e| e.rule != never),
            "{never} fired: {events:?}"
        );
    }
    let fired = |rule: &str| {
        events
            .iter()
            .filter(|e| e.rule == rule && e.transition == "fired")
            .count()
    };
    assert_eq!((fired("rtt"), fired("loss")), (1, 1), "{events:?}");
    let last = |rule: &str| {
        events
            .iter()
            .rfind(|e| e.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} event"))
    };
    let loss = last("loss");
    assert_eq!(
        (loss.retrans_segs, loss.data_segs),
        (Some(c.tcp_total_retrans), Some(c.tcp_data_segs_out)),
        "loss rule's window (left) vs the client's tcpi_total_retrans, tcpi_data_segs_out"
    );
    let p95 = last("rtt").rtt_p95_us.expect("rtt_p95_us") as f64;
    let truth = c.tcp_rtt_p95_us as f64;
    assert!(
        (p95 - truth).abs() <= truth * 0.2,
        "rtt rule's p95 {p95} µs vs the client's tcpi_rtt p95 {truth} µs: more than 20 % apart"
    );
    eprintln!(
        "  ok: rtt p95 {p95} µs vs tcpi_rtt p95 {truth} µs; {} of {} segments retransmitted",
        c.tcp_total_retrans, c.tcp_data_segs_out
    );
}
