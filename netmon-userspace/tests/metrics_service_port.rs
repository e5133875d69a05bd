//! The exporter grouped by service port (`group_by` with `service_port`)
//! on the simulated source: a server accepting connections on 443 and 22
//! from several clients (inbound), clients connecting out to 443 and 8080
//! (outbound), and traffic counted while the flow map was full (no
//! endpoint), drained every 10 s with one-minute epochs, the daemon
//! restarted (store reopened, new drain, new exporter) in the middle.
//!
//! Checked at every drain: `sum()` over the series equals the host total
//! (`netmon usage`'s process answer) and the script's own total; a fresh
//! exporter (what a restarted daemon starts with) has the same values as
//! the one that kept running; no series goes down; at most `top` groups
//! plus `other`. At the end: each `(protocol, service_port, port_dir)`
//! series' increase since the first ranked epoch equals `netmon usage --by
//! port` over that time and the script's declared bytes per service, to
//! the byte.
//!
//! And through the real daemon: that history (played in-process, ending a
//! minute or more before now) served by `netmon daemon` with `group_by =
//! ["service_port"]` in its config; the scraped `/metrics` has per service
//! exactly what the CLI's `netmon usage --by port` says since the first
//! ranked minute, `other` exactly the first minute, and after a SIGKILL and
//! restart the same values and `_created` times.
mod cli_support;
mod http_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::exporter::{Exporter, ExporterConfig, GroupLabel, Snapshot};
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::{Dimension, GroupKey, protocol_label};
use netmon::query::usage::{UsageQuery, usage};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{Retention, Store, TimeMs, Traffic};

/// A UTC midnight.
const BASE: TimeMs = 1_710_028_800_000;
/// One tick, one drain.
const TICK: TimeMs = 10_000;
/// Ticks played: 8 minutes.
const TICKS: u64 = 48;
/// The daemon restarts before this tick.
const RESTART: u64 = 27;

fn script() -> Script {
    let mut b = ScriptBuilder::new(TICK);
    let web = b.process(80, 8, "nginx", 0..=u64::MAX);
    let ssh = b.process(81, 8, "sshd", 0..=u64::MAX);
    let curl = b.process(90, 9, "curl", 0..=u64::MAX);
    let app = b.process(91, 9, "backend", 0..=u64::MAX);
    let mut cookie = 0_u64;
    let mut next = || {
        cookie += 1;
        cookie
    };
    // Inbound: short connections from changing ephemeral ports, every tick.
    for t in 0..=TICKS {
        for c in 0..3_u64 {
            let k = next();
            b.accepted(k, Some(web), Some(t + 1), 1_000_000, 443).flow(
                k,
                &format!("192.0.2.{}:{}", 10 + c, 40_000 + t * 3 + c),
                t..=t,
                per_tick(3, 700 + c),
                per_tick(9, 12_000 + 11 * t),
            );
        }
        if t % 2 == 0 {
            let k = next();
            b.accepted(k, Some(ssh), Some(t + 1), 1_000_001, 22).flow(
                k,
                &format!("198.51.100.7:{}", 50_000 + t),
                t..=t,
                per_tick(5, 2_000),
                per_tick(4, 300),
            );
        }
    }
    // Outbound: long-lived client connections.
    let k = next();
    b.socket(k, Some(curl), None).flow(
        k,
        "203.0.113.5:443",
        0..=TICKS,
        per_tick(4, 900),
        per_tick(20, 25_000),
    );
    let k = next();
    b.socket(k, Some(app), None).flow(
        k,
        "127.0.0.1:8080",
        0..=TICKS,
        per_tick(6, 4_000),
        per_tick(6, 3_500),
    );
    // The same backend also talks to a remote 443: one app, two services.
    let k = next();
    b.socket(k, Some(app), None).flow(
        k,
        "203.0.113.9:443",
        10..=TICKS,
        per_tick(2, 100),
        per_tick(2, 150),
    );
    b.overflow(5..=15, per_tick(1, 500), per_tick(1, 600), 3);
    b.build().expect("valid script")
}

fn cfg(top: usize, group_by: Vec<GroupLabel>) -> ExporterConfig {
    ExporterConfig {
        top,
        group_by,
        epoch_secs: 60,
        rank_epochs: 10,
    }
}

/// IP bytes of both directions.
fn ip(t: &Traffic) -> u64 {
    t.tx.ip_bytes + t.rx.ip_bytes
}

/// `netmon usage --by port` over `range`: per `[protocol, port, dir]`
/// label values (as the exporter writes them), tx and rx.
fn usage_by_port(
    store: &mut Store,
    range: std::ops::Range<TimeMs>,
) -> BTreeMap<Vec<String>, Traffic> {
    let facts = Facts::load(store, &AppRules::default()).expect("facts");
    let answer = usage(
        store,
        &facts,
        &UsageQuery {
            range,
            by: Dimension::Port,
            filters: Vec::new(),
            class: None,
            limit: None,
        },
    )
    .expect("usage");
    assert!(answer.coverage.exact(), "{:?}", answer.coverage);
    answer
        .groups
        .into_iter()
        .map(|g| {
            let k = match g.key {
                GroupKey::Port {
                    protocol,
                    port,
                    dir,
                } => vec![
                    protocol_label(protocol),
                    port.to_string(),
                    dir.label().unwrap_or("unknown").to_owned(),
                ],
                GroupKey::NoEndpoint => vec!["none".to_owned(); 3],
                other => panic!("not a port group: {other:?}"),
            };
            (k, g.traffic)
        })
        .collect()
}

/// The host total as a process answer reads it.
fn host_total(store: &mut Store, end: TimeMs) -> Traffic {
    let facts = Facts::load(store, &AppRules::default()).expect("facts");
    usage(
        store,
        &facts,
        &UsageQuery {
            range: BASE..end,
            by: Dimension::Class,
            filters: Vec::new(),
            class: None,
            limit: None,
        },
    )
    .expect("usage")
    .total
}

/// Per group (all classes summed): the series' traffic.
fn per_group(s: &Snapshot) -> BTreeMap<Vec<String>, Traffic> {
    let mut out: BTreeMap<Vec<String>, Traffic> = BTreeMap::new();
    for ((g, _), t) in &s.series {
        let e = out.entry(g.clone()).or_default();
        *e = e.add(*t);
    }
    out
}

#[test]
fn service_port_series_equal_usage_by_port_across_a_restart() {
    let script = script();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("h.redb");
    let (mut store, _) = Store::open(&path, Retention::default()).expect("open");
    let mut drain = Drain::new(&mut store).expect("drain");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    let apps = AppRules::default();
    let by_port = || cfg(100, vec![GroupLabel::ServicePort]);
    let mixed = || cfg(2, vec![GroupLabel::App, GroupLabel::ServicePort]);
    // The default epochs (one hour: read from the hour rows), with the
    // default labels and the service.
    let hourly = || ExporterConfig {
        group_by: vec![GroupLabel::App, GroupLabel::User, GroupLabel::ServicePort],
        ..ExporterConfig::default()
    };
    let new = || {
        (
            Exporter::new(by_port()),
            Exporter::new(mixed()),
            Exporter::new(hourly()),
        )
    };
    let mut live = new();
    let mut prev: BTreeMap<Vec<String>, Traffic> = BTreeMap::new();
    let mut first_ranked: Option<BTreeMap<Vec<String>, Traffic>> = None;
    for k in 0..=TICKS {
        if k == RESTART {
            // A daemon restart: the store reopened, a new drain and new
            // exporters (the simulated kernel keeps its maps).
            drop(drain);
            drop(store);
            (store, _) = Store::open(&path, Retention::default()).expect("reopen");
            drain = Drain::new(&mut store).expect("drain");
            live = new();
        }
        source.set_tick(k);
        let now = BASE + k * TICK;
        drain
            .step(&mut source, &mut resolver, &mut store, now, Vec::new())
            .expect("step");
        let truth = script.truth(0..=k).total();
        let host = host_total(&mut store, now + 1);
        assert_eq!(host, truth, "tick {k}: the host total is the script's");
        for (exp, make) in [
            (&live.0, by_port as fn() -> _),
            (&live.1, mixed),
            (&live.2, hourly),
        ] {
            let snap = exp.snapshot(&mut store, &apps).expect("snapshot");
            let fresh = Exporter::new(make())
                .snapshot(&mut store, &apps)
                .expect("fresh");
            assert_eq!(
                snap, fresh,
                "tick {k}: a restarted daemon has the same values"
            );
            assert_eq!(snap.total(), host, "tick {k}: sum() is the host total");
            assert!(snap.members <= make().top, "tick {k}");
        }
        let mixed_snap = live.1.snapshot(&mut store, &apps).expect("snapshot");
        assert_eq!(
            mixed_snap.labels,
            ["app", "protocol", "service_port", "port_dir"]
        );
        if k >= 12 {
            // Ranked: two (app, service) members and `other`.
            let groups = per_group(&mixed_snap);
            assert_eq!(groups.len(), 3, "tick {k}: {:?}", groups.keys());
            assert!(groups.contains_key(&vec!["other".to_owned(); 4]));
        }
        let snap = live.0.snapshot(&mut store, &apps).expect("snapshot");
        let now_groups = per_group(&snap);
        for (g, t) in &now_groups {
            if let Some(p) = prev.get(g) {
                assert!(
                    t.tx.ip_bytes >= p.tx.ip_bytes && t.rx.packets >= p.rx.packets,
                    "tick {k}: {g:?} went down"
                );
            }
        }
        prev.clone_from(&now_groups);
        // The last drain of the first epoch (minute 0): what later
        // increases are measured from.
        if (k + 1) * TICK == 60_000 {
            first_ranked = Some(now_groups);
        }
    }
    let start = first_ranked.expect("first epoch seen");
    let end = BASE + TICKS * TICK + 1;
    let snap = live.0.snapshot(&mut store, &apps).expect("snapshot");
    let mut increase: BTreeMap<Vec<String>, Traffic> = BTreeMap::new();
    for (g, t) in per_group(&snap) {
        let s = start.get(&g).copied().unwrap_or_default();
        let d = Traffic {
            tx: netmon_common::DirCounters {
                packets: t.tx.packets - s.tx.packets,
                ip_bytes: t.tx.ip_bytes - s.tx.ip_bytes,
                payload_bytes: t.tx.payload_bytes - s.tx.payload_bytes,
                retrans_bytes: t.tx.retrans_bytes - s.tx.retrans_bytes,
            },
            rx: netmon_common::DirCounters {
                packets: t.rx.packets - s.rx.packets,
                ip_bytes: t.rx.ip_bytes - s.rx.ip_bytes,
                payload_bytes: t.rx.payload_bytes - s.rx.payload_bytes,
                retrans_bytes: t.rx.retrans_bytes - s.rx.retrans_bytes,
            },
        };
        if ip(&d) > 0 {
            increase.insert(g, d);
        }
    }
    // Every service (and the no-endpoint traffic) had bytes in minute 0,
    // so all are members from minute 1 on: `other` did not grow.
    assert!(
        !increase.contains_key(&vec!["other".to_owned(); 3]),
        "{:?}",
        increase.keys()
    );
    let want = usage_by_port(&mut store, BASE + 60_000..end);
    assert_eq!(increase, want, "series increase = usage --by port");
    // The text Prometheus scrapes: the same values under those labels,
    // each sample with its `_created`.
    let text =
        netmon::http::metrics::render(snap.clone(), by_port(), path.clone(), None).expect("render");
    let mut scraped: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("netmon_ip_bytes_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("sample");
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .expect("label")
                .to_owned()
        };
        let key = vec![label("protocol"), label("service_port"), label("port_dir")];
        *scraped.entry(key).or_default() += value.parse::<u64>().expect("value");
        assert!(
            lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with(&format!("netmon_ip_bytes_created{{{labels}}} "))),
            "{l} has its _created"
        );
    }
    let snapped: BTreeMap<Vec<String>, u64> = per_group(&snap)
        .into_iter()
        .map(|(g, t)| (g, ip(&t)))
        .collect();
    assert_eq!(scraped, snapped, "{text}");
    // And the script's own bytes per service over ticks 6..=TICKS.
    let truth = script.truth(6..=TICKS);
    let mut declared: BTreeMap<Vec<String>, Traffic> = BTreeMap::new();
    for ((_, _, port, dir, proto), t) in &truth.per_service {
        let e = declared
            .entry(vec![
                protocol_label(*proto),
                port.to_string(),
                dir.label().unwrap_or("unknown").to_owned(),
            ])
            .or_default();
        *e = e.add(*t);
    }
    let overflow = truth.total().tx.ip_bytes + truth.total().rx.ip_bytes
        - declared.values().map(ip).sum::<u64>();
    assert_eq!(
        increase
            .get(&vec!["none".to_owned(); 3])
            .map(ip)
            .unwrap_or(0),
        overflow,
        "no-endpoint traffic"
    );
    increase.remove(&vec!["none".to_owned(); 3]);
    assert_eq!(increase, declared, "series increase = the script's bytes");
    assert_eq!(
        declared
            .keys()
            .map(|k| k[1..].join(" "))
            .collect::<Vec<_>>(),
        ["22 in", "443 in", "443 out", "8080 out"]
    );
}

/// Plays `script` into a new store at `path`, one drain per tick from `base`.
fn play(path: &std::path::Path, script: &Script, base: TimeMs) {
    let (mut store, _) = Store::open(path, Retention::default()).expect("open");
    let mut drain = Drain::new(&mut store).expect("drain");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(script);
    for k in 0..=TICKS {
        source.set_tick(k);
        drain
            .step(
                &mut source,
                &mut resolver,
                &mut store,
                base + k * TICK,
                Vec::new(),
            )
            .expect("step");
    }
}

/// `/metrics`' `netmon_ip_bytes_total` per `[protocol, service_port,
/// port_dir]` (directions and classes summed), and every `_created` line.
fn scrape(port: u16) -> (BTreeMap<Vec<String>, u64>, Vec<String>) {
    let r = http_support::request(port, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("utf-8");
    let mut out: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("netmon_ip_bytes_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("sample");
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{name} in {l}"))
                .to_owned()
        };
        let key = vec![label("protocol"), label("service_port"), label("port_dir")];
        *out.entry(key).or_default() += value.parse::<u64>().expect("value");
    }
    let created = text
        .lines()
        .filter(|l| l.starts_with("netmon_ip_bytes_created{"))
        .map(str::to_owned)
        .collect();
    (out, created)
}

fn rfc3339(ms: TimeMs) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// `netmon usage --by port` (the CLI, through the daemon) from `since`:
/// IP bytes per `[protocol, service_port, port_dir]`, and the total.
fn cli_by_port(
    d: &cli_support::Daemon,
    since: &str,
    until: &str,
) -> (BTreeMap<Vec<String>, u64>, u64) {
    let doc: cli_support::UsageDoc = d.json(&[
        "usage", "--since", since, "--until", until, "--by", "port", "--format", "json",
    ]);
    assert!(doc.exact, "{:?}", doc.note);
    let mut out = BTreeMap::new();
    for r in &doc.rows {
        let key = match (&r.protocol, r.service_port, &r.direction) {
            (Some(p), Some(port), dir) => vec![
                p.clone(),
                port.to_string(),
                dir.clone().unwrap_or_else(|| "unknown".to_owned()),
            ],
            _ => vec!["none".to_owned(); 3],
        };
        *out.entry(key).or_default() += r.tx.ip_bytes + r.rx.ip_bytes;
    }
    out.retain(|_, v| *v > 0);
    (out, doc.total.tx.ip_bytes + doc.total.rx.ip_bytes)
}

#[test]
fn daemon_serves_service_port_series_equal_to_the_cli_across_a_sigkill() {
    let now: TimeMs = netmon::model::unix_ms_now();
    // Nine to ten minutes ago, on a minute: the history ends 8 minutes
    // later, a minute or more before now.
    let base = (now / 60_000 - 9) * 60_000;
    // A daemon with no traffic of its own, serving the played history.
    let quiet = cli_support::Scenario {
        procs: vec![cli_support::Proc {
            pid: 500,
            start_ticks: 1,
            comm: "idle",
            exe: "/usr/bin/idle",
            uid: 0,
            cgroup: "/user.slice",
        }],
        flows: Vec::new(),
    };
    let (mut d, port) = http_support::daemon(
        &quiet,
        "[http.metrics]\ntop = 100\ngroup_by = [\"service_port\"]\nepoch_secs = 60\nrank_epochs = 10\n",
    );
    d.stop();
    for entry in std::fs::read_dir(d.dir.path()).expect("dir") {
        let p = entry.expect("entry").path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("db.redb"))
        {
            std::fs::remove_file(&p).expect("rm");
        }
    }
    play(&d.db(), &script(), base);
    d.spawn();
    let until = rfc3339(now + 3_600_000);
    let (series, created) = scrape(port);
    eprintln!("scraped netmon_ip_bytes_total by service: {series:?}");
    let (_, host) = cli_by_port(&d, &rfc3339(base), &until);
    assert_eq!(series.values().sum::<u64>(), host, "sum() = host total");
    let (first, first_total) = cli_by_port(&d, &rfc3339(base), &rfc3339(base + 60_000));
    let (later, _) = cli_by_port(&d, &rfc3339(base + 60_000), &until);
    let mut members = series.clone();
    assert_eq!(
        members.remove(&vec!["other".to_owned(); 3]),
        Some(first_total),
        "other: the first (unranked) minute"
    );
    assert_eq!(
        members, later,
        "each service since minute 1: usage --by port"
    );
    assert_eq!(first.len(), 5, "four services and no-endpoint: {first:?}");
    assert_eq!(members.len(), 5, "{members:?}");

    d.sigkill();
    d.spawn();
    let (again, created_again) = scrape(port);
    assert_eq!(again, series, "a restarted daemon continues every series");
    assert_eq!(created_again, created, "and keeps their _created");
}
