//! `netmon top` piped: NDJSON, one document per refresh, from the daemon.
//! Totals are exact multiples of the scenario's per-tick traffic (rates
//! depend on timing and are only checked for being positive).
mod cli_support;

use cli_support::{Daemon, Flow, Proc, Scenario, TopDoc};

#[test]
fn top_streams_ndjson_from_the_daemon() {
    let s = Scenario {
        procs: vec![Proc {
            pid: 7,
            start_ticks: 70,
            comm: "yes",
            exe: "/usr/bin/yes",
            uid: 0,
            cgroup: "/",
        }],
        flows: vec![Flow {
            cookie: 1,
            owner: Some(0),
            remote: "93.184.216.34",
            port: 443,
            protocol: 6,
            ifindex: 2,
            from: 0,
            to: 100_000,
            tx: (1, 1040, 1000),
            rx: (1, 540, 500),
        }],
    };
    let d = Daemon::start(&s, "");
    let out = d.run(&["top", "--interval", "400ms", "--count", "3", "--by", "app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<TopDoc> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    let last = &docs[2];
    assert_eq!(
        (last.schema_version, last.by.as_str(), last.source.as_str()),
        (1, "app", "daemon")
    );
    assert!(last.interval_ms >= 400);
    let row = last
        .rows
        .iter()
        .find(|r| r.key == "yes")
        .expect("the app's row");
    assert!(
        row.tx.payload_bytes > 0 && row.tx.payload_bytes.is_multiple_of(1000),
        "{row:?}"
    );
    assert_eq!(
        row.tx.payload_bytes / 1000,
        row.rx.payload_bytes / 500,
        "tx and rx of the same ticks"
    );
    assert!(
        docs.iter()
            .skip(1)
            .any(|d| d.rows.iter().any(|r| r.tx_bytes_per_sec > 0.0))
    );
    // --once: a single document.
    let out = d.run(&["top", "--once", "--interval", "200ms", "--format", "json"]);
    let one: TopDoc = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one.by, "process");
    assert!(!one.rows.is_empty(), "--once shows the running process");
    assert!(one.rows.iter().all(|r| r.pid == Some(7)), "{:?}", one.rows);
}
