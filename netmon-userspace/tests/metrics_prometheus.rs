//! The exporter against a real Prometheus (Debian's `prometheus` package,
//! started by the kernel suite's `netmon_tests::prometheus`;
//! under `CI=true` a missing binary fails the test, elsewhere it says so
//! and returns): two simulated daemons as two hosts with bearer tokens and
//! `top = 2`, scraped every second. Checked through Prometheus's HTTP API:
//! `sum()` per host, class and direction equals `netmon usage`'s totals to
//! the byte; after a SIGKILL and restart mid-traffic, `resets()` is 0 for
//! every series and each app's increase over the period equals `netmon
//! usage` for that period, per app, class and direction; the deploy/ rules
//! load (`promtool check rules`, and Prometheus evaluates them); the Grafana
//! JSON parses and names only metrics the exporter emits. Host A also has
//! simulated LAN device history (`device_support`): Prometheus's
//! `netmon_device_bytes_total` and `netmon_device_packets_total` per
//! device, direction and class equal the rows the test wrote.
//!
//! The fleet view against the same kind of setup: the Hosts page of one
//! daemon (`[fleet] prometheus`), in headless Chromium (Debian's
//! `chromium` and `chromium-driver`, driven with `fantoccini`), shows both
//! hosts up with today's bytes equal to each daemon's `netmon usage`, and a
//! host's per-app breakdown equal to its usage per app (top 2 + `other`).
mod browser_support;
mod cli_support;
mod device_support;
mod http_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use browser_support::{severe_logs, wait_for};
use cli_support::{Scenario, UsageDoc, run_with};
use http_support::{daemon, daemon_with, free_port, request};
use netmon_tests::prometheus::{self, Prometheus};

const METRICS: &str = "top = 2\ngroup_by = [\"app\"]\nepoch_secs = 1\nrank_epochs = 3600\n";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The standard scenario stretched to 2 s of traffic (40 ticks per flow).
fn scenario() -> Scenario {
    let mut s = Scenario::standard();
    for f in &mut s.flows {
        f.from = 0;
        f.to = 40;
    }
    s
}

/// The exporter's recording and alerting rules, evaluated by the test's
/// Prometheus.
fn rules() -> PathBuf {
    deploy().join("prometheus/netmon.rules.yml")
}

/// `netmon usage` of a daemon as `{(class, direction): ip bytes}` or per app.
fn usage(d: &cli_support::Daemon, since: &str, by_app: bool) -> BTreeMap<Vec<String>, u64> {
    let mut out = BTreeMap::new();
    for class in ["loopback", "lan", "internet"] {
        let doc: UsageDoc = d.json(&[
            "usage",
            "--since",
            since,
            "--by",
            if by_app { "app" } else { "class" },
            "--class",
            class,
            "--format",
            "json",
        ]);
        for r in &doc.rows {
            for (dir, c) in [("tx", &r.tx), ("rx", &r.rx)] {
                let mut k = vec![class.to_owned(), dir.to_owned()];
                if by_app {
                    k.push(r.key.clone());
                }
                *out.entry(k).or_default() += c.ip_bytes;
            }
        }
    }
    out.retain(|_, v| *v > 0);
    out
}

fn token(d: &cli_support::Daemon) -> PathBuf {
    let cfg = d.dir.path().join("config.toml");
    let out = run_with(
        &[
            "token",
            "create",
            "--name",
            "prometheus",
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = d.dir.path().join("prom.token");
    std::fs::write(&file, String::from_utf8(out.stdout).expect("utf-8").trim()).expect("token");
    file
}

/// Waits until Prometheus's `sum by (class, direction)` for `host` equals
/// `want`; returns the last answer.
fn caught_up(p: &Prometheus, host: &str, want: &BTreeMap<Vec<String>, u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeMap<Vec<String>, u64> = p
            .by(
                &format!("sum by (class, direction) (netmon_ip_bytes_total{{host=\"{host}\"}})"),
                &["class", "direction"],
            )
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect();
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: prometheus {got:?} != usage {want:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_two_hosts_exactly_across_a_sigkill() {
    if !prometheus::available() {
        return;
    }
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(rules())
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let s = scenario();
    let tokens = |d: &str| {
        format!("auth = \"token\"\ntokens = \"{d}/tokens.json\"\n[http.metrics]\n{METRICS}")
    };
    let dir_a = tempfile::tempdir().expect("tmp");
    let dir_b = tempfile::tempdir().expect("tmp");
    let mut device_rows = Vec::new();
    let (a, port_a) = daemon_with(&s, &tokens(&dir_a.path().display().to_string()), |dir| {
        device_rows = device_support::prepare(dir);
    });
    let (mut b, port_b) = daemon(&s, &tokens(&dir_b.path().display().to_string()));
    let (tok_a, tok_b) = (token(&a), token(&b));
    // Without the token: 401.
    assert_eq!(request(port_a, "GET", "/metrics", &[], b"").status, 401);
    let prom = Prometheus::start(&[(port_a, tok_a), (port_b, tok_b)], Some(&rules()));

    // B is killed mid-traffic and restarted (its script plays again).
    std::thread::sleep(Duration::from_millis(1_000));
    b.sigkill();
    b.spawn();
    a.settle(&s);
    b.settle(&s);
    for (h, d) in [("h0", &a), ("h1", &b)] {
        caught_up(&prom, h, &usage(d, "1h", false));
    }
    // Quiet gap: the period starts in its middle.
    std::thread::sleep(Duration::from_millis(1_000));
    let u1 = usage(&b, "1h", true);
    let v1 = prom.by(
        "netmon_ip_bytes_total{host=\"h1\"}",
        &["class", "direction", "app"],
    );
    std::thread::sleep(Duration::from_millis(1_000));

    // Second period on B: new sockets (a new script), killed again
    // mid-traffic and restarted.
    let mut s2 = scenario();
    for f in &mut s2.flows {
        f.cookie += 100;
    }
    std::fs::write(b.dir.path().join("script.toml"), s2.toml()).expect("script");
    b.sigkill();
    b.spawn();
    std::thread::sleep(Duration::from_millis(1_000));
    b.sigkill();
    b.spawn();
    b.settle(&s);
    caught_up(&prom, "h1", &usage(&b, "1h", false));
    let v2 = prom.by(
        "netmon_ip_bytes_total{host=\"h1\"}",
        &["class", "direction", "app"],
    );
    let mut increase: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (k, v) in &v2 {
        let d = v - v1.get(k).copied().unwrap_or(0);
        if d > 0 {
            increase.insert(k.clone(), d);
        }
    }
    // netmon usage for the same period: the totals' difference.
    let mut truth = usage(&b, "1h", true);
    for (k, v) in &mut truth {
        *v -= u1.get(k).copied().unwrap_or(0);
    }
    truth.retain(|_, v| *v > 0);
    let apps: BTreeSet<&String> = increase.keys().map(|k| &k[2]).collect();
    assert!(
        apps.contains(&"other".to_owned()) && apps.len() == 3,
        "top 2 + other: {apps:?}"
    );
    // Members: their increase is their usage; other: the rest.
    let mut other: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (k, v) in &truth {
        if apps.contains(&k[2]) {
            assert_eq!(increase.get(k), Some(v), "{k:?}");
        } else {
            *other
                .entry(vec![k[0].clone(), k[1].clone(), "other".to_owned()])
                .or_default() += v;
        }
    }
    for (k, v) in &other {
        assert_eq!(increase.get(k), Some(v), "{k:?}");
    }
    let resets = prom
        .query("sum(resets(netmon_ip_bytes_total[5m])) + sum(resets(netmon_packets_total[5m]))");
    assert_eq!(resets.len(), 1);
    assert!(resets[0].1 == 0.0, "resets: {resets:?}");
    let series = prom.query("count by (host) (netmon_ip_bytes_total)");
    assert_eq!(series.len(), 2, "both hosts scraped: {series:?}");
    devices_equal_the_rows_written(&prom, &device_rows);

    // The rules evaluate: the recording rule exists for both hosts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom.query("instance:netmon_ip_bytes:rate5m").is_empty() {
        assert!(Instant::now() < deadline, "recording rule never evaluated");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The Grafana dashboard names only metrics the exporter emits.
    let r = request(
        port_a,
        "GET",
        "/metrics",
        &[(
            "Authorization",
            &format!(
                "Bearer {}",
                std::fs::read_to_string(a.dir.path().join("prom.token")).expect("token")
            ),
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("utf-8");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let emitted: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect();
    let json = std::fs::read_to_string(deploy().join("grafana/netmon.json")).expect("grafana");
    let dash: serde_json::Value = serde_json::from_str(&json).expect("grafana JSON parses");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 5, "{exprs:?}");
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                name == "up" || emitted.contains(&name),
                "{name} in {e:?} is not emitted: {emitted:?}"
            );
        }
    }
    drop(a);
}

/// Prometheus's own sums of the device counters of host h0 equal the
/// device rows the test wrote, per device label, direction and class;
/// one series per MAC, interface, direction and class; h1 has none.
fn devices_equal_the_rows_written(prom: &Prometheus, rows: &device_support::Rows) {
    let truth = device_support::truth(rows, device_support::label);
    let want_bytes: BTreeMap<Vec<String>, u64> = truth
        .iter()
        .map(|((d, dir, c), v)| (vec![d.clone(), dir.clone(), c.clone()], v.1))
        .collect();
    let want_packets: BTreeMap<Vec<String>, u64> = truth
        .iter()
        .map(|((d, dir, c), v)| (vec![d.clone(), dir.clone(), c.clone()], v.0))
        .collect();
    let keys = ["device", "direction", "class"];
    let deadline = Instant::now() + Duration::from_secs(30);
    let bytes = loop {
        let got = prom.by(
            "sum by (device, direction, class) (netmon_device_bytes_total{host=\"h0\"})",
            &keys,
        );
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        bytes, want_bytes,
        "device bytes: Prometheus vs the rows written"
    );
    let packets = prom.by(
        "sum by (device, direction, class) (netmon_device_packets_total{host=\"h0\"})",
        &keys,
    );
    assert_eq!(
        packets, want_packets,
        "device packets: Prometheus vs the rows written"
    );
    let per_mac: BTreeSet<(String, String, u8, u8)> = rows
        .iter()
        .map(|(_, r)| {
            (
                device_support::mac(&r.mac),
                if r.ifindex == 4 { "lan0" } else { "lan1" }.to_owned(),
                r.direction,
                r.class,
            )
        })
        .collect();
    let series = prom.query("netmon_device_bytes_total{host=\"h0\"}");
    assert_eq!(
        series.len(),
        per_mac.len(),
        "one series per MAC, interface, direction and class"
    );
    let printer = prom.by(
        "sum by (interface) (netmon_device_bytes_total{host=\"h0\",mac=\"00:11:22:33:44:03\"})",
        &["interface"],
    );
    assert_eq!(
        printer.keys().collect::<Vec<_>>(),
        [&vec!["lan1".to_owned()]],
        "the interface label"
    );
    let overflow = prom.query(
        "netmon_device_bytes_total{host=\"h0\",device=\"overflow\",mac=\"00:00:00:00:00:00\"}",
    );
    assert!(
        !overflow.is_empty(),
        "overflow rows are device=\"overflow\""
    );
    assert!(
        prom.query("netmon_device_bytes_total{host=\"h1\"}")
            .is_empty(),
        "no devices, no series"
    );
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Identifiers in a PromQL expression that name netmon metrics (or `up`).
fn metric_names(e: &str) -> Vec<String> {
    e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("netmon_") || *w == "up")
        .map(str::to_owned)
        .collect()
}

/// 1,000 simulated processes, each its own app, with `top = 20`: once the
/// first epoch is ranked, `/metrics` has exactly 20 apps plus `other` (no
/// more), and the sum over the series is the host total of `netmon usage`.
#[test]
fn a_thousand_processes_keep_the_series_at_the_limit() {
    let procs: Vec<cli_support::Proc> = (0..1000_u32)
        .map(|i| {
            let name: &'static str = Box::leak(format!("p{i}").into_boxed_str());
            let exe: &'static str = Box::leak(format!("/usr/bin/p{i}").into_boxed_str());
            cli_support::Proc {
                pid: 10_000 + i,
                start_ticks: 1,
                comm: name,
                exe,
                uid: 0,
                cgroup: "/user.slice",
            }
        })
        .collect();
    let flows = (0..1000_u64)
        .map(|i| cli_support::Flow {
            cookie: 1 + i,
            owner: Some(usize::try_from(i).expect("index")),
            remote: "127.0.0.1",
            port: 8080,
            protocol: 6,
            ifindex: 1,
            from: 0,
            to: 60,
            tx: (1, 100 + i, 48),
            rx: (1, 100, 48),
        })
        .collect();
    let s = Scenario { procs, flows };
    let (d, port) = daemon(
        &s,
        "[http.metrics]\ntop = 20\ngroup_by = [\"app\"]\nepoch_secs = 1\nrank_epochs = 3600\n",
    );
    d.settle(&s);
    let r = request(port, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("utf-8");
    let mut apps = BTreeSet::new();
    let mut sum = 0_u64;
    for l in text
        .lines()
        .filter(|l| l.starts_with("netmon_ip_bytes_total{"))
    {
        let app = l
            .split("app=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("app label");
        apps.insert(app.to_owned());
        sum += l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("value");
    }
    assert_eq!(apps.len(), 21, "{apps:?}");
    assert!(apps.contains("other"));
    let total: UsageDoc = d.json(&[
        "usage", "--since", "1h", "--by", "class", "--format", "json",
    ]);
    assert_eq!(sum, total.total.tx.ip_bytes + total.total.rx.ip_bytes);
}

/// `{(direction): ip bytes}` summed over classes, and the same per app.
fn totals(d: &cli_support::Daemon) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
    let mut host = BTreeMap::new();
    let mut apps = BTreeMap::new();
    for (k, v) in usage(d, "1h", true) {
        *host.entry(k[1].clone()).or_default() += v;
        *apps.entry((k[2].clone(), k[1].clone())).or_default() += v;
    }
    (host, apps)
}

#[tokio::test(flavor = "current_thread")]
async fn hosts_page_shows_both_hosts_from_prometheus() {
    if !prometheus::available() {
        return;
    }
    let Some((_driver, c)) = browser_support::browser("the Hosts page test", 1280, 1400).await
    else {
        return;
    };
    let s = scenario();
    let prom_port = free_port();
    let dir_a = tempfile::tempdir().expect("tmp");
    let dir_b = tempfile::tempdir().expect("tmp");
    let cfg = |d: &Path, fleet: bool| {
        let mut t = format!(
            "auth = \"token\"\ntokens = \"{}/tokens.json\"\n[http.metrics]\n{METRICS}",
            d.display()
        );
        if fleet {
            t += &format!("[fleet]\nprometheus = \"http://127.0.0.1:{prom_port}/\"\n");
        }
        t
    };
    let (a, port_a) = daemon(&s, &cfg(dir_a.path(), true));
    let (b, port_b) = daemon(&s, &cfg(dir_b.path(), false));
    a.settle(&s);
    b.settle(&s);
    let (tok_a, tok_b) = (token(&a), token(&b));
    let bearer = format!("Bearer {}", std::fs::read_to_string(&tok_a).expect("token"));
    let auth = [("Authorization", bearer.as_str())];
    let mut a = a;
    let mut b = b;
    let prom = Prometheus::start_on(
        prom_port,
        &[(port_a, tok_a), (port_b, tok_b.clone())],
        Some(&rules()),
    );
    // Traffic while Prometheus scrapes (for current rates and the graph):
    // both daemons play new sockets after a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query("up").iter().filter(|(_, v)| *v == 1.0).count() < 2 {
        assert!(Instant::now() < deadline, "both targets up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut s2 = scenario();
    for f in &mut s2.flows {
        f.cookie += 100;
    }
    for d in [&mut a, &mut b] {
        std::fs::write(d.dir.path().join("script.toml"), s2.toml()).expect("script");
        d.sigkill();
        d.spawn();
    }
    a.settle(&s2);
    b.settle(&s2);
    let truth = [("h0", totals(&a)), ("h1", totals(&b))];
    for (h, d) in [("h0", &a), ("h1", &b)] {
        caught_up(&prom, h, &usage(d, "1h", false));
    }

    // The API: behind the dashboard's auth; 404 where [fleet] is not set.
    assert_eq!(
        request(port_a, "GET", "/api/v1/fleet/hosts", &[], b"").status,
        401
    );
    let tb = format!("Bearer {}", std::fs::read_to_string(&tok_b).expect("token"));
    let off = request(
        port_b,
        "GET",
        "/api/v1/fleet/hosts",
        &[("Authorization", &tb)],
        b"",
    );
    assert_eq!(
        (off.status, off.error_kind()),
        (404, "fleet_off".to_owned())
    );
    let r = request(port_a, "GET", "/api/v1/fleet/host?job=x", &auth, b"");
    assert_eq!(r.status, 400, "instance missing");
    let doc: serde_json::Value = request(port_a, "GET", "/api/v1/fleet/hosts", &auth, b"").json();
    assert_eq!(doc["hosts"].as_array().map(Vec::len), Some(2), "{doc}");

    // The page, logged in with the token on the main page.
    c.goto(&format!("http://127.0.0.1:{port_a}/"))
        .await
        .expect("goto");
    wait_for(
        &c,
        "return !document.getElementById('login').hidden",
        "the login form",
    )
    .await;
    let tok = std::fs::read_to_string(a.dir.path().join("prom.token")).expect("token");
    c.find(fantoccini::Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(tok.trim())
        .await
        .expect("type");
    c.find(fantoccini::Locator::Css("#login-form button"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("click");
    wait_for(
        &c,
        "return !document.getElementById('hosts-link').hidden",
        "the Hosts link after login",
    )
    .await;
    // The 401s before the login are expected: the log starts here.
    severe_logs(&c).await;
    c.find(fantoccini::Locator::Css("#hosts-link"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    wait_for(
        &c,
        "return document.body.dataset.ready === 'true' && document.querySelectorAll('#hosts-table tbody tr[data-job]').length === 2",
        "two hosts on the Hosts page",
    )
    .await;
    let rows = c
        .execute(
            "return Array.from(document.querySelectorAll('#hosts-table tbody tr[data-job]')).map(r => [r.dataset.host, r.cells[1].dataset.value, Number(r.cells[4].dataset.value), Number(r.cells[5].dataset.value), r.cells[6].dataset.apps])",
            vec![],
        )
        .await
        .expect("rows");
    for (h, (host, _)) in &truth {
        let row = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r[0] == *h)
            .unwrap_or_else(|| panic!("{h} not shown: {rows}"));
        assert_eq!(row[1], "up", "{row}");
        let shown = (row[2].as_u64(), row[3].as_u64());
        let want = (host.get("tx").copied(), host.get("rx").copied());
        assert_eq!(
            shown, want,
            "{h}: today's bytes on the page vs netmon usage"
        );
        assert!(
            !row[4].as_str().unwrap_or_default().is_empty(),
            "{h}: top apps shown: {row}"
        );
    }

    // Into host h1: the 24-hour graph and today per app.
    c.find(fantoccini::Locator::Css(
        "#hosts-table tbody tr[data-host='h1'] button.open",
    ))
    .await
    .expect("host button")
    .click()
    .await
    .expect("click");
    wait_for(
        &c,
        "const d = document.getElementById('host-detail'); return !d.hidden && d.dataset.key !== '' && document.querySelectorAll('#host-apps tbody tr').length > 0",
        "the host's page",
    )
    .await;
    let last_tx: f64 = c
        .execute(
            "return document.getElementById('host-chart').dataset.lastTx",
            vec![],
        )
        .await
        .expect("chart")
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(last_tx > 0.0, "the 24 h graph has the recent traffic");
    let apps = c
        .execute(
            "return Array.from(document.querySelectorAll('#host-apps tbody tr')).map(r => [r.dataset.key, Number(r.cells[1].dataset.value), Number(r.cells[2].dataset.value)])",
            vec![],
        )
        .await
        .expect("apps");
    // Per app: Prometheus's own values (a member's series starts at its
    // first member epoch; earlier bytes are in other), and together the
    // host's usage total.
    let prom_apps = prom.by(
        "sum by (app, direction) (netmon_ip_bytes_total{host=\"h1\"})",
        &["app", "direction"],
    );
    let shown: BTreeMap<String, (u64, u64)> = apps
        .as_array()
        .expect("apps")
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_owned(),
                (r[1].as_u64().unwrap_or(0), r[2].as_u64().unwrap_or(0)),
            )
        })
        .collect();
    assert!(
        shown.len() == 3 && shown.contains_key("other"),
        "top 2 + other: {shown:?}"
    );
    for (app, got) in &shown {
        let want = (
            prom_apps
                .get(&vec![app.clone(), "tx".into()])
                .copied()
                .unwrap_or(0),
            prom_apps
                .get(&vec![app.clone(), "rx".into()])
                .copied()
                .unwrap_or(0),
        );
        assert_eq!(*got, want, "{app}: page vs Prometheus");
    }
    let host = &truth[1].1.0;
    assert_eq!(
        (
            shown.values().map(|v| v.0).sum::<u64>(),
            shown.values().map(|v| v.1).sum::<u64>()
        ),
        (
            host.get("tx").copied().unwrap_or(0),
            host.get("rx").copied().unwrap_or(0)
        ),
        "the apps sum to the host's usage"
    );
    // App bytes next to IP bytes: payload less retransmissions (none in a
    // simulation script), summed over the series.
    let u: UsageDoc = b.json(&[
        "usage", "--since", "1h", "--by", "class", "--format", "json",
    ]);
    let app_bytes = prom.by(
        "sum by (direction) (netmon_app_bytes_total{host=\"h1\"})",
        &["direction"],
    );
    assert_eq!(
        (
            app_bytes.get(&vec!["tx".to_owned()]),
            app_bytes.get(&vec!["rx".to_owned()])
        ),
        (
            Some(&u.total.tx.payload_bytes),
            Some(&u.total.rx.payload_bytes)
        ),
        "netmon_app_bytes_total vs usage payload (no retransmissions simulated)"
    );
    // The drain histogram counts the restarted daemon's drains.
    let drains = prom.query("netmon_drain_duration_seconds_count{host=\"h1\"}");
    assert!(
        drains.len() == 1 && drains[0].1 >= 1.0,
        "drain histogram: {drains:?}"
    );
    let png = c.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("hosts.png"), png).expect("png");
    let severe = severe_logs(&c).await;
    assert!(severe.is_empty(), "console errors: {severe:?}");
    let err = c
        .execute(
            "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent",
            vec![],
        )
        .await
        .expect("error box");
    assert_eq!(err, serde_json::json!(""), "the page shows no error");
    c.close().await.expect("close");
    drop(prom);
}
