//! A real Prometheus (Debian's `prometheus` package, which `.ci/run`
//! installs) for the exporter tests, here and in `netmon-userspace/tests`:
//! it scrapes netmon daemons every second with bearer tokens (job
//! `netmonN`, label `host="hN"` for the N-th target), and is asked through
//! its HTTP query API. Killed on drop.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// One series of an instant query: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// A loopback port nobody listens on now.
#[track_caller]
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// True if `prometheus` and `promtool` are installed. Their absence fails
/// under `CI=true`; elsewhere it is said on stderr and the caller returns.
#[track_caller]
#[must_use]
pub fn available() -> bool {
    let runs = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("prometheus") && runs("promtool");
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus/promtool missing (.ci/run installs Debian's prometheus package)"
        );
        // To the stderr fd: libtest captures `eprintln!` of passing tests.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"\n*** SKIPPED: prometheus/promtool not installed (apt-get install prometheus) ***\n",
        );
    }
    ok
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("netmon-tests: cannot kill prometheus: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("netmon-tests: cannot reap prometheus: {e}");
        }
    }
}

impl Prometheus {
    /// Starts Prometheus on a free port, scraping every `(port, token
    /// file)` of `targets` on loopback every second, evaluating `rules`
    /// (a rule file) if given, and waits until it is ready.
    #[track_caller]
    #[must_use]
    pub fn start(targets: &[(u16, PathBuf)], rules: Option<&Path>) -> Self {
        Self::start_on(free_port(), targets, rules)
    }

    /// [`Prometheus::start`] listening on `port`.
    #[track_caller]
    #[must_use]
    pub fn start_on(port: u16, targets: &[(u16, PathBuf)], rules: Option<&Path>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netmon-test-prom-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut cfg = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n".to_owned();
        if let Some(rules) = rules {
            cfg += &format!("rule_files:\n  - {}\n", rules.display());
        }
        cfg += "scrape_configs:\n";
        for (i, (target, token)) in targets.iter().enumerate() {
            cfg += &format!(
                "  - job_name: netmon{i}\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n        labels:\n          host: h{i}\n",
                token.display()
            );
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, cfg).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let p = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&p.url("/-/ready")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "prometheus never became ready (log: {})",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The port it listens on.
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An instant query: every series' labels and value.
    #[track_caller]
    #[must_use]
    pub fn query(&self, q: &str) -> Vec<Sample> {
        let body = ureq::get(&self.url("/api/v1/query"))
            .query("query", q)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        let Some(result) = v["data"]["result"].as_array() else {
            panic!("{q}: no result: {body}");
        };
        result
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let val: f64 = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{q}: not a number in {s}"));
                (labels, val)
            })
            .collect()
    }

    /// `{(values of the labels `keys`): value}` of a query, zeros left out;
    /// every value must be an exact byte or packet count.
    #[track_caller]
    #[must_use]
    pub fn by(&self, q: &str, keys: &[&str]) -> BTreeMap<Vec<String>, u64> {
        self.query(q)
            .into_iter()
            .filter(|(_, v)| *v != 0.0)
            .map(|(l, v)| {
                assert!(
                    v.fract() == 0.0 && (0.0..2_f64.powi(53)).contains(&v),
                    "{q}: {v} is not an exact count"
                );
                let k = keys
                    .iter()
                    .map(|k| l.get(*k).cloned().unwrap_or_default())
                    .collect();
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a non-negative integer below 2^53 (checked above)"
                )]
                (k, v as u64)
            })
            .collect()
    }
}
