//! The exporter on the real kernel, scraped by a real Prometheus (Debian's
//! `prometheus` package, which `.ci/run` installs; missing, it fails under
//! `CI=true` and is said loudly elsewhere).
//!
//! Two "hosts": `h0`, a daemon on the real kernel attached to the test's own
//! cgroup and pin directory, and `h1`, a daemon on the simulated source;
//! distinct ports, stores and bearer tokens, `top = 2` by `app`, one-second
//! epochs, both scraped every second. Three apps (`alpha`, `beta`, `gamma`:
//! copies of the workload binary, so the app is the executable name) send
//! known TCP traffic from inside the cgroup, over the LAN (a veth pair the
//! test creates) and over a namespace's loopback, each bounded in bytes and
//! time, in two rounds of the same volumes (so the ranking stays alpha,
//! beta, then gamma in `other`).
//!
//! Checked through Prometheus's HTTP API against `netmon usage` of the same
//! daemon, to the byte:
//! - per host, class and direction: `sum()` over the series equals the
//!   host's total (after each round, and for the simulated host);
//! - per app, class and direction: the increase of each series over the
//!   second round equals `netmon usage`'s difference over that round, the
//!   two members on their own series and `gamma` in `other` (a member's
//!   series starts at its first member epoch, so its latest value alone is
//!   not its all-time total; the increase over a period is exact);
//! - and the workloads' own counts bound it from below: each app's IP
//!   bytes sent exceed the payload its processes wrote.
//!
//! Seen on the way: a LAN server's handshake (SYN in, SYN-ACK out, the
//! first ACK in) is recorded with remote 0.0.0.0 and so in class
//! `internet`; the test requires `lan` and `loopback` and is exact for
//! whatever classes there are.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    cmd,
    daemon::{self, Daemon, DaemonPaths},
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
    netns::{Netns, NetnsPair},
    prometheus::{self, Prometheus},
    report::READY,
    require_root, scenario,
    workload::Workload,
    workload_exe,
};

/// Per app: (bytes over the LAN, bytes over loopback), sent by its client
/// and echoed by nobody (the server only reads), per round.
const APPS: [(&str, u64, u64); 3] = [
    ("alpha", 3 << 20, 0),
    ("beta", 0, 2 << 20),
    ("gamma", 1 << 20, 256 << 10),
];

/// `[http.metrics]` of both daemons.
const METRICS: &str = "top = 2\ngroup_by = [\"app\"]\nepoch_secs = 1\nrank_epochs = 3600\n";

/// Key of a value: (class, direction) or (class, direction, app).
type Key = Vec<String>;

/// One daemon's files: config with `[http]` on `port`, token auth, the
/// exporter settings; and a token for Prometheus in `prom.token`.
struct Host {
    paths: DaemonPaths,
    config: PathBuf,
    port: u16,
    token_file: PathBuf,
}

impl Host {
    fn new(dir: &Path, paths: DaemonPaths) -> Self {
        let port = prometheus::free_port();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\nauth = \"token\"\ntokens = \"{}\"\n[http.metrics]\n{METRICS}",
                dir.join("tokens.json").display()
            ),
        )
        .expect("config");
        let mut c = Command::new(netmon_bin());
        c.args(["token", "create", "--name", "prometheus", "--config"])
            .arg(&config);
        let token = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        let token_file = dir.join("prom.token");
        std::fs::write(&token_file, token.trim()).expect("token file");
        Self {
            paths,
            config,
            port,
            token_file,
        }
    }

    /// `netmon usage --by BY --class CLASS --json` of the running daemon,
    /// as `{(class, direction[, app]): ip bytes}` over every class.
    fn usage(&self, by_app: bool) -> BTreeMap<Key, u64> {
        let mut out = BTreeMap::new();
        for class in ["loopback", "lan", "internet"] {
            let mut c = Command::new(netmon_bin());
            c.args(["usage", "--since", "1h", "--json", "--class", class, "--by"])
                .arg(if by_app { "app" } else { "class" })
                .arg("--socket")
                .arg(&self.paths.socket);
            let text = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
            let doc: serde_json::Value = serde_json::from_str(&text).expect("usage JSON");
            assert_eq!(doc["exact"], true, "the asked window: {text}");
            for row in doc["rows"].as_array().expect("rows") {
                for dir in ["tx", "rx"] {
                    let mut k = vec![class.to_owned(), dir.to_owned()];
                    if by_app {
                        k.push(row["key"].as_str().expect("key").to_owned());
                    }
                    *out.entry(k).or_default() += row[dir]["ip_bytes"].as_u64().expect("ip_bytes");
                }
            }
        }
        out.retain(|_, v| *v > 0);
        out
    }
}

/// Waits until `host`'s history holds all of its finished traffic (the
/// totals stay the same over several drain intervals), then until `sum by
/// (class, direction)` of its series in `prom` equals those totals, and
/// returns them.
#[track_caller]
fn caught_up(prom: &Prometheus, name: &str, host: &Host) -> BTreeMap<Key, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = host.usage(false);
    loop {
        thread::sleep(Duration::from_millis(1_000));
        let now = host.usage(false);
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "{name}: usage never settled");
        last = now;
    }
    loop {
        let want = host.usage(false);
        let got = prom.by(
            &format!("sum by (class, direction) (netmon_ip_bytes_total{{host=\"{name}\"}})"),
            &["class", "direction"],
        );
        if got == want && !want.is_empty() {
            return want;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: prometheus sum() {got:?} != netmon usage {want:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// `host`'s series per (class, direction, app).
fn apps(prom: &Prometheus, name: &str) -> BTreeMap<Key, u64> {
    prom.by(
        &format!("netmon_ip_bytes_total{{host=\"{name}\"}}"),
        &["class", "direction", "app"],
    )
}

/// A simulated host's script: three processes (three apps) on the LAN,
/// the internet and loopback, for 2 s.
fn simulated_script() -> String {
    let mut s = "tick_ms = 50\n".to_owned();
    let procs = [
        (100, "curl", "/usr/bin/curl", "93.184.216.34", 443, 1, 2),
        (200, "sshd", "/usr/sbin/sshd", "192.168.1.20", 22, 2, 2),
        (300, "redis", "/usr/bin/redis", "127.0.0.1", 6379, 3, 1),
    ];
    for (pid, comm, exe, remote, port, cookie, ifindex) in procs {
        s += &format!(
            "[[processes]]\npid = {pid}\nstart_ticks = 1\ncomm = \"{comm}\"\nexe = \"{exe}\"\nuid = 0\ncgroup = \"/system.slice\"\n\
             [[sockets]]\ncookie = {cookie}\nowner = {{ pid = {pid}, start_ticks = 1 }}\n\
             [[sockets.flows]]\nremote = \"{remote}\"\nport = {port}\nprotocol = 6\nifindex = {ifindex}\nfrom = 0\nto = 40\n\
             tx = {{ packets = {p}, ip_bytes = {b}, payload_bytes = {pl} }}\nrx = {{ packets = 1, ip_bytes = 140, payload_bytes = 100 }}\n",
            p = cookie,
            b = 1000 * cookie,
            pl = 900 * cookie,
        );
    }
    s
}

/// One round of traffic: each app's client sends its bytes to a server of
/// the same app (over the veth pair, then over `pair.a`'s loopback), from
/// inside the cgroup. Returns each app's payload written.
fn round(
    cg: &CgroupGuard,
    pair: &NetnsPair,
    exes: &BTreeMap<&str, PathBuf>,
) -> BTreeMap<String, u64> {
    let mut written = BTreeMap::new();
    for (app, lan, lo) in APPS {
        let exe = &exes[app];
        for (bytes, server_ns, addr) in [
            (lan, &pair.b, pair.b.v4().to_string()),
            (lo, &pair.a, "127.0.0.1".to_owned()),
        ] {
            if bytes == 0 {
                continue;
            }
            let ns: &Netns = server_ns;
            let listen = format!("{addr}:0");
            let mut server =
                Workload::spawn(exe, ["tcp-server", "--listen", &listen], cg, Some(ns));
            let port = scenario::first_port(&server.wait_event(READY));
            let connect = SocketAddr::new(addr.parse().expect("address"), port).to_string();
            let mut client = Workload::spawn(
                exe,
                [
                    "tcp-client",
                    "--connect",
                    &connect,
                    "--send",
                    &bytes.to_string(),
                    "--timeout-secs",
                    "30",
                ],
                cg,
                Some(&pair.a),
            );
            let c = client.wait_done();
            let s = server.wait_done();
            assert_eq!((c.written, s.read), (bytes, bytes), "{app}: ground truth");
            *written.entry(app.to_owned()).or_default() += c.written;
        }
    }
    written
}

#[test]
fn prometheus_scrapes_a_real_kernel_host_and_a_simulated_one_exactly() {
    let name = "prometheus_scrapes_a_real_kernel_host_and_a_simulated_one_exactly";
    if !require_root(name) || !prometheus::available() {
        return;
    }
    let cg = CgroupGuard::new("prom");
    let pair = NetnsPair::new("prom");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-prom-hosts-")
        .tempdir()
        .expect("temp dir");
    // The apps: copies of the workload binary under their names.
    let exes: BTreeMap<&str, PathBuf> = APPS
        .iter()
        .map(|(app, _, _)| {
            let p = dir.path().join(app);
            std::fs::copy(workload_exe!(), &p).expect("copy the workload binary");
            (*app, p)
        })
        .collect();

    let real_dir = dir.path().join("real");
    let sim_dir = dir.path().join("sim");
    for d in [&real_dir, &sim_dir] {
        std::fs::create_dir(d).expect("host dir");
    }
    let real = Host::new(
        &real_dir,
        daemon::paths_in(&real_dir, netmon.pin_dir(), &cg),
    );
    let sim = Host::new(&sim_dir, daemon::paths_in(&sim_dir, netmon.pin_dir(), &cg));
    let script = sim_dir.join("script.toml");
    std::fs::write(&script, simulated_script()).expect("script");
    let _d0 = Daemon::start_with_config(&real.paths, &real.config);
    let _d1 = Daemon::start_simulated(&sim.paths, &script, &sim.config);
    // Without the token: 401.
    let anon = ureq::get(&format!("http://127.0.0.1:{}/metrics", real.port)).call();
    assert!(
        matches!(anon, Err(ureq::Error::StatusCode(401))),
        "/metrics without a token: {anon:?}"
    );
    let prom = Prometheus::start(
        &[
            (real.port, real.token_file.clone()),
            (sim.port, sim.token_file.clone()),
        ],
        None,
    );

    // Round 1 ranks the apps (a fresh store's first epoch is all `other`).
    let w1 = round(&cg, &pair, &exes);
    let t1 = caught_up(&prom, "h0", &real);
    // A quiet epoch or two, then the state before round 2.
    thread::sleep(Duration::from_millis(2_500));
    caught_up(&prom, "h0", &real);
    let (u1, v1) = (real.usage(true), apps(&prom, "h0"));
    assert_eq!(
        real.usage(false),
        t1,
        "no traffic of the cgroup while quiet"
    );

    let w2 = round(&cg, &pair, &exes);
    let t2 = caught_up(&prom, "h0", &real);
    let (u2, v2) = (real.usage(true), apps(&prom, "h0"));
    eprintln!("  h0 sum() per class and direction = netmon usage: {t2:?}");
    let classes: BTreeSet<&str> = t2.keys().map(|k| k[0].as_str()).collect();
    assert!(
        classes.contains("lan") && classes.contains("loopback"),
        "the test's classes: {classes:?}"
    );

    // netmon usage per app over round 2, and each app's payload against
    // what its processes wrote.
    let delta = |a: &BTreeMap<Key, u64>, b: &BTreeMap<Key, u64>| -> BTreeMap<Key, u64> {
        let mut d = BTreeMap::new();
        for (k, v) in b {
            let before = a.get(k).copied().unwrap_or(0);
            assert!(*v >= before, "{k:?} went down: {before} -> {v}");
            if *v > before {
                d.insert(k.clone(), v - before);
            }
        }
        d
    };
    let truth = delta(&u1, &u2);
    let increase = delta(&v1, &v2);
    let apps: BTreeSet<&str> = truth.keys().map(|k| k[2].as_str()).collect();
    assert_eq!(
        apps,
        APPS.iter().map(|a| a.0).collect(),
        "netmon usage names the apps by executable"
    );
    for (app, lan, lo) in APPS {
        let tx: u64 = truth
            .iter()
            .filter(|(k, _)| k[1] == "tx" && k[2] == app)
            .map(|(_, v)| v)
            .sum();
        assert!(
            tx > lan + lo && w2[app] == lan + lo && w1[app] == lan + lo,
            "{app}: IP bytes sent {tx} cover the payload written {}",
            w2[app]
        );
    }
    // Members (alpha, beta) on their own series, gamma in `other`.
    let mut want: BTreeMap<Key, u64> = BTreeMap::new();
    for (k, v) in &truth {
        let app = if k[2] == "gamma" { "other" } else { &k[2] };
        *want
            .entry(vec![k[0].clone(), k[1].clone(), app.to_owned()])
            .or_default() += v;
    }
    assert_eq!(
        increase, want,
        "h0: each series' increase over round 2 (left) vs netmon usage per app, class and direction (top 2 + other)"
    );
    eprintln!("  h0 per-app increases over round 2 = netmon usage: {want:?}");

    // The simulated host, scraped by the same Prometheus.
    let t_sim = caught_up(&prom, "h1", &sim);
    assert_eq!(
        t_sim.len(),
        6,
        "h1: three classes, two directions: {t_sim:?}"
    );
    eprintln!("  h1 sum() = netmon usage: {t_sim:?}");
    let resets = prom.query("sum(resets(netmon_ip_bytes_total[5m]))");
    assert!(
        resets.len() == 1 && resets[0].1 == 0.0,
        "resets: {resets:?}"
    );
}
