//! The history commands against a daemon on the simulated source: every
//! `usage --by`, filters, `history`, `procs` and `export` are checked
//! exactly against the scenario's ground truth, which the test computes
//! from its own flow list (see `cli_support`).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use std::collections::BTreeMap;

use cli_support::{C, Daemon, ExportLine, HistoryDoc, Pair, ProcsDoc, Scenario, UsageDoc, add};

/// Config with one app rule: the web service's processes are "web".
const CONFIG: &str = "[[apps.rule]]\nname = \"web\"\nunit = \"web.service\"\n";

fn by_key(
    doc: &UsageDoc,
    key: impl Fn(&cli_support::UsageRow) -> String,
) -> BTreeMap<String, Pair> {
    let mut out = BTreeMap::new();
    for r in &doc.rows {
        assert!(
            out.insert(key(r), (r.tx, r.rx)).is_none(),
            "duplicate group {}",
            r.key
        );
    }
    out
}

fn app_of(p: Option<&cli_support::Proc>) -> String {
    match p {
        None => "[unattributed]".to_owned(),
        Some(p) if p.cgroup.ends_with("web.service") => "web".to_owned(),
        Some(p) => p.exe.rsplit('/').next().unwrap().to_owned(),
    }
}

fn usage(d: &Daemon, by: &str, extra: &[&str]) -> UsageDoc {
    let mut args = vec!["usage", "--since", "1h", "--by", by, "--format", "json"];
    args.extend_from_slice(extra);
    let doc: UsageDoc = d.json(&args);
    assert_eq!(doc.schema_version, 1);
    assert_eq!(doc.by, by);
    doc
}

#[test]
fn every_command_matches_ground_truth() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, CONFIG);
    d.settle(&s);
    let grand = s.grand_total();

    // --- usage, every --by ---
    let proc_key = |p: Option<&cli_support::Proc>| {
        p.map_or("0:0".to_owned(), |p| format!("{}:{}", p.pid, p.start_ticks))
    };
    type KeyFn = Box<dyn Fn(&cli_support::UsageRow) -> String>;
    let cases: Vec<(&str, BTreeMap<String, Pair>, KeyFn)> = vec![
        (
            "process",
            s.truth(|_, p| Some(proc_key(p))),
            Box::new(|r| format!("{}:{}", r.pid.unwrap(), r.start_ticks.unwrap())),
        ),
        (
            "app",
            s.truth(|_, p| Some(app_of(p))),
            Box::new(|r| r.app.clone().unwrap()),
        ),
        (
            "user",
            // Traffic of no process is no user's: `-`.
            s.truth(|_, p| Some(p.map_or_else(|| "-".to_owned(), |p| p.uid.to_string()))),
            Box::new(|r| r.user.clone().unwrap()),
        ),
        (
            "cgroup",
            s.truth(|_, p| Some(p.map_or("-", |p| p.cgroup).to_owned())),
            Box::new(|r| r.cgroup.clone().unwrap_or_else(|| "-".into())),
        ),
        (
            "container",
            s.truth(|_, p| {
                Some(
                    p.map_or("-", |p| p.cgroup.rsplit('/').next().unwrap())
                        .to_owned(),
                )
            }),
            Box::new(|r| r.container.clone().unwrap_or_else(|| "-".into())),
        ),
        (
            "remote",
            s.truth(|f, _| Some(f.remote.to_owned())),
            Box::new(|r| r.remote_addr.clone().unwrap()),
        ),
        (
            "port",
            s.truth(|f, _| {
                Some(format!(
                    "{}/{}",
                    if f.protocol == 6 { "tcp" } else { "udp" },
                    f.port
                ))
            }),
            // Outbound flows: the service port is the remote one.
            Box::new(|r| {
                assert_eq!(r.direction.as_deref(), Some("out"), "{r:?}");
                format!(
                    "{}/{}",
                    r.protocol.clone().unwrap(),
                    r.service_port.unwrap()
                )
            }),
        ),
        (
            "protocol",
            s.truth(|f, _| Some(if f.protocol == 6 { "tcp" } else { "udp" }.to_owned())),
            Box::new(|r| r.protocol.clone().unwrap()),
        ),
        (
            "interface",
            s.truth(|f, _| Some(f.ifindex.to_string())),
            Box::new(|r| r.ifindex.unwrap().to_string()),
        ),
        (
            "class",
            s.truth(|f, _| Some(f.class().to_owned())),
            Box::new(|r| r.class.clone().unwrap()),
        ),
    ];
    for (by, expected, key) in &cases {
        let doc = usage(&d, by, &[]);
        assert_eq!(&by_key(&doc, key), expected, "--by {by}");
        assert_eq!((doc.total.tx, doc.total.rx), grand, "--by {by} total");
        assert_eq!(doc.groups_total as usize, expected.len(), "--by {by}");
        let shares: f64 = doc.rows.iter().map(|r| r.share).sum();
        assert!(
            (shares - 1.0).abs() < 1e-9,
            "--by {by}: shares sum to {shares}"
        );
        // Sorted: most IP bytes first.
        let ip: Vec<u64> = doc
            .rows
            .iter()
            .map(|r| r.tx.ip_bytes + r.rx.ip_bytes)
            .collect();
        assert!(ip.windows(2).all(|w| w[0] >= w[1]), "--by {by}: {ip:?}");
    }

    // --- filters, --class, -n ---
    let doc = usage(&d, "remote", &["--filter", "app=web"]);
    assert_eq!(
        by_key(&doc, |r| r.remote_addr.clone().unwrap()),
        s.truth(|f, p| (app_of(p) == "web").then(|| f.remote.to_owned()))
    );
    let doc = usage(&d, "process", &["--class", "lan"]);
    assert_eq!(
        by_key(&doc, |r| format!(
            "{}:{}",
            r.pid.unwrap(),
            r.start_ticks.unwrap()
        )),
        s.truth(|f, p| (f.class() == "lan").then(|| proc_key(p)))
    );
    let doc = usage(
        &d,
        "app",
        &["--filter", "port=udp/53", "--filter", "pid=100"],
    );
    assert_eq!(
        by_key(&doc, |r| r.app.clone().unwrap()),
        s.truth(|f, p| (f.port == 53 && p.is_some_and(|p| p.pid == 100)).then(|| app_of(p)))
    );
    let all = usage(&d, "process", &[]);
    let top1 = usage(&d, "process", &["-n", "1"]);
    assert_eq!(top1.rows.len(), 1);
    assert_eq!(top1.rows[0].key, all.rows[0].key);
    assert_eq!(top1.groups_total, all.groups_total);
    assert_eq!(
        (top1.total.tx, top1.total.rx),
        grand,
        "-n cuts rows, not the total"
    );
    // An empty time range is an empty answer, not an error.
    let empty: UsageDoc = d.json(&[
        "usage",
        "--by",
        "app",
        "--format",
        "json",
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2000-01-02T00:00:00Z",
    ]);
    assert!(empty.rows.is_empty());
    assert_eq!(empty.total.tx, C::default());

    // --- history ---
    let h: HistoryDoc = d.json(&[
        "history", "--since", "1h", "--step", "1m", "--format", "json",
    ]);
    assert_eq!(
        (h.schema_version, h.step_ms, h.tier.as_str()),
        (1, 60_000, "minute")
    );
    assert_eq!((h.total.tx, h.total.rx), grand);
    assert_eq!(
        h.points.len() as u64,
        (h.until_unix_ms - h.from_unix_ms) / 60_000
    );
    let sum = h.points.iter().fold(Pair::default(), |a, p| {
        add(a, (p.tx.unwrap_or_default(), p.rx.unwrap_or_default()))
    });
    assert_eq!(sum, grand);
    // Default step: interval samples hold a 10 minute window.
    let h: HistoryDoc = d.json(&["history", "--since", "10m", "--format", "json"]);
    assert_eq!((h.step_ms, h.tier.as_str()), (5_000, "interval"));
    assert_eq!((h.total.tx, h.total.rx), grand);
    for (args, expected) in [
        (
            vec!["--pid", "100:5000"],
            s.truth(|_, p| p.filter(|p| p.start_ticks == 5000).map(|_| "x".into())),
        ),
        (
            vec!["--pid", "100"],
            s.truth(|_, p| p.filter(|p| p.pid == 100).map(|_| "x".into())),
        ),
        (
            vec!["--app", "curl"],
            s.truth(|_, p| (app_of(p) == "curl").then(|| "x".into())),
        ),
        (
            vec!["--user", "1000"],
            s.truth(|_, p| p.filter(|p| p.uid == 1000).map(|_| "x".into())),
        ),
        (
            vec!["--cgroup", "/system.slice"],
            s.truth(|_, p| {
                p.filter(|p| p.cgroup.starts_with("/system.slice/"))
                    .map(|_| "x".into())
            }),
        ),
        (
            vec!["--remote", "93.184.216.34", "--step", "1h"],
            s.truth(|f, _| (f.remote == "93.184.216.34").then(|| "x".into())),
        ),
    ] {
        let mut a = vec!["history", "--since", "1h", "--format", "json"];
        a.extend_from_slice(&args);
        let h: HistoryDoc = d.json(&a);
        assert_eq!((h.total.tx, h.total.rx), expected["x"], "history {args:?}");
    }
    // Remote endpoints are kept per minute: a finer step is refused with a
    // reason.
    let out = d.run(&[
        "history",
        "--since",
        "1h",
        "--remote",
        "93.184.216.34",
        "--step",
        "30s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of 1m"));

    // --- procs ---
    let p: ProcsDoc = d.json(&["procs", "--since", "1h", "--format", "json"]);
    assert_eq!(p.schema_version, 1);
    let seen: BTreeMap<String, Pair> = p
        .processes
        .iter()
        .map(|x| (format!("{}:{}", x.pid, x.start_ticks), (x.tx, x.rx)))
        .collect();
    assert_eq!(seen, s.truth(|_, p| Some(proc_key(p))));
    for x in &p.processes {
        if let Some(sp) = s
            .procs
            .iter()
            .find(|sp| sp.pid == x.pid && sp.start_ticks == x.start_ticks)
        {
            assert_eq!(
                (
                    x.comm.as_str(),
                    x.exe.as_deref(),
                    x.uid,
                    x.cgroup.as_deref()
                ),
                (sp.comm, Some(sp.exe), sp.uid, Some(sp.cgroup))
            );
            assert_eq!(x.app, app_of(Some(sp)));
            assert_eq!(x.container.as_deref(), sp.cgroup.rsplit('/').next());
            assert!(x.first_seen_unix_ms <= x.last_seen_unix_ms);
        }
    }

    // --- export (NDJSON by default when piped; CSV) ---
    let out = d.run(&["export", "--since", "1h"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<ExportLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l.schema_version == 1 && (l.tier == "interval" || l.tier == "minute")),
        "rows of whole minutes inside the window may come from the minute tier"
    );
    assert!(
        lines
            .windows(2)
            .all(|w| w[0].time_unix_ms <= w[1].time_unix_ms),
        "oldest first"
    );
    let mut per: BTreeMap<String, Pair> = BTreeMap::new();
    for l in &lines {
        let e = per
            .entry(format!("{}:{}", l.pid, l.start_ticks))
            .or_default();
        *e = add(
            *e,
            (
                C {
                    packets: l.tx_packets,
                    ip_bytes: l.tx_ip_bytes,
                    payload_bytes: l.tx_payload_bytes,
                },
                C {
                    packets: l.rx_packets,
                    ip_bytes: l.rx_ip_bytes,
                    payload_bytes: l.rx_payload_bytes,
                },
            ),
        );
    }
    assert_eq!(per, s.truth(|_, p| Some(proc_key(p))));
    let loopback: u64 = lines
        .iter()
        .filter(|l| l.class == "loopback")
        .map(|l| l.tx_payload_bytes)
        .sum();
    assert_eq!(
        loopback,
        s.truth(|f, _| (f.class() == "loopback").then(|| "x".into()))["x"]
            .0
            .payload_bytes
    );
    let csv = d.run(&["export", "--since", "1h", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("time,time_unix_ms,tier,pid,start_ticks,")
    );
    assert_eq!(rows.count(), lines.len());

    // --- the same answers straight from the file once the daemon is gone ---
    let mut d = d;
    let before = usage(&d, "app", &[]);
    d.stop();
    let direct: UsageDoc = {
        let out = cli_support::run_with(
            &[
                "usage",
                "--since",
                "1h",
                "--by",
                "app",
                "--format",
                "json",
                "--config",
                d.dir.path().join("config.toml").to_str().unwrap(),
            ],
            &[
                "--socket",
                d.socket().to_str().unwrap(),
                "--db",
                d.db().to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(
        by_key(&direct, |r| r.key.clone()),
        by_key(&before, |r| r.key.clone())
    );
}
