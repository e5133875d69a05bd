//! Server names through the real binary: a daemon on the simulated
//! source, whose script gives some flows a name, answers `usage --by
//! server_name|domain|service|remote` over its socket with the JSON fields
//! the README promises (`server_name`, `domain`, `service`; absent for the
//! unnamed group, `[no name]` in tables), bytes equal to the script's own
//! per tick counts; the configured services catalogue is the one used; a
//! catalogue that does not exist stops the start with one line;
//! `[names] enabled = false` stores no name.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use cli_support::{daemon_command, run_with, wait_for_socket, with_http_off};

/// Ticks of 50 ms; every flow ends by tick 8.
const SCRIPT: &str = r#"
tick_ms = 50

[[processes]]
pid = 10
start_ticks = 100
comm = "browser"
exe = "/usr/bin/browser"

[[processes]]
pid = 20
start_ticks = 200
comm = "tool"
exe = "/usr/bin/tool"

[[sockets]]
cookie = 1
owner = { pid = 10, start_ticks = 100 }
[[sockets.flows]]
remote = "198.51.100.7"
port = 443
from = 0
to = 7
tx = { packets = 2, ip_bytes = 1080, payload_bytes = 1000 }
rx = { packets = 3, ip_bytes = 3120, payload_bytes = 3000 }
name = { server_name = "www.netflix.com", source = "sni", after = 2 }

[[sockets]]
cookie = 2
owner = { pid = 10, start_ticks = 100 }
[[sockets.flows]]
remote = "198.51.100.7"
port = 443
from = 1
to = 6
tx = { packets = 1, ip_bytes = 240, payload_bytes = 200 }
rx = { packets = 1, ip_bytes = 540, payload_bytes = 500 }
name = { server_name = "cdn.example.org", source = "dns" }

[[sockets]]
cookie = 3
owner = { pid = 20, start_ticks = 200 }
[[sockets.flows]]
remote = "203.0.113.9"
port = 80
from = 0
to = 8
tx = { packets = 1, ip_bytes = 140, payload_bytes = 100 }
rx = { packets = 2, ip_bytes = 2080, payload_bytes = 2000 }
name = { server_name = "api.github.com", source = "host" }

[[sockets]]
cookie = 4
owner = { pid = 20, start_ticks = 200 }
[[sockets.flows]]
remote = "203.0.113.10"
port = 9000
from = 0
to = 8
tx = { packets = 1, ip_bytes = 90, payload_bytes = 50 }
rx = { packets = 1, ip_bytes = 90, payload_bytes = 50 }
"#;

/// (tx ip bytes, rx ip bytes) of each flow, from the script: ticks ×
/// per tick (the Netflix flow's first two ticks carry headers only, whose
/// IP bytes count too).
const NETFLIX: (u64, u64) = (8 * 1080, 8 * 3120);
const EXAMPLE: (u64, u64) = (6 * 240, 6 * 540);
const GITHUB: (u64, u64) = (9 * 140, 9 * 2080);
const UNNAMED: (u64, u64) = (9 * 90, 9 * 90);

#[derive(Debug, Deserialize)]
struct Doc {
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    key: String,
    server_name: Option<String>,
    domain: Option<String>,
    service: Option<String>,
    remote_addr: Option<String>,
    #[serde(default)]
    server_names: Vec<String>,
    tx: Ip,
    rx: Ip,
}

#[derive(Debug, Deserialize)]
struct Ip {
    ip_bytes: u64,
}

struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), config);
    let child = daemon_command(dir.path())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_socket(&dir.path().join("sock"));
    Daemon { dir, child }
}

fn write_files(dir: &Path, config: &str) {
    std::fs::write(dir.join("script.toml"), SCRIPT).unwrap();
    std::fs::write(
        dir.join("services.toml"),
        "[[service]]\nname = \"Example CDN\"\ndomains = [\"example.org\"]\n",
    )
    .unwrap();
    let config = config.replace("DIR", dir.to_str().unwrap());
    std::fs::write(dir.join("config.toml"), with_http_off(&config)).unwrap();
}

fn usage(d: &Daemon, by: &str) -> Doc {
    let sock = d.dir.path().join("sock");
    let out = run_with(
        &["usage", "--since", "1h", "--by", by, "--format", "json"],
        &["--socket", sock.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the script is over and two answers agree.
fn settle(d: &Daemon) {
    std::thread::sleep(Duration::from_millis(10 * 50 + 300));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        let doc = usage(d, "process");
        let t: u64 = doc.rows.iter().map(|r| r.tx.ip_bytes + r.rx.ip_bytes).sum();
        if last == Some(t) {
            return;
        }
        assert!(Instant::now() < deadline, "totals never settled");
        last = Some(t);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn bytes(
    doc: &Doc,
    field: impl Fn(&Row) -> Option<String>,
) -> BTreeMap<Option<String>, (u64, u64)> {
    let mut out = BTreeMap::new();
    for r in &doc.rows {
        assert!(
            out.insert(field(r), (r.tx.ip_bytes, r.rx.ip_bytes))
                .is_none(),
            "one group per value: {}",
            r.key
        );
    }
    out
}

fn sum(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0 + b.0, a.1 + b.1)
}

#[test]
fn names_domains_and_services_through_the_socket() {
    let d = start("[names]\nservices = \"DIR/services.toml\"\n");
    settle(&d);
    let s = |x: &str| Some(x.to_owned());

    let by_name = usage(&d, "server_name");
    assert_eq!(
        bytes(&by_name, |r| r.server_name.clone()),
        BTreeMap::from([
            (s("www.netflix.com"), NETFLIX),
            (s("cdn.example.org"), EXAMPLE),
            (s("api.github.com"), GITHUB),
            (None, UNNAMED),
        ])
    );
    let unnamed = by_name
        .rows
        .iter()
        .find(|r| r.server_name.is_none())
        .unwrap();
    assert_eq!(unnamed.key, "[no name]");

    let by_domain = usage(&d, "domain");
    assert_eq!(
        bytes(&by_domain, |r| r.domain.clone()),
        BTreeMap::from([
            (s("netflix.com"), NETFLIX),
            (s("example.org"), EXAMPLE),
            (s("github.com"), GITHUB),
            (None, UNNAMED),
        ])
    );

    // The configured catalogue adds "Example CDN" to the built-in one.
    let by_service = usage(&d, "service");
    assert_eq!(
        bytes(&by_service, |r| r.service.clone()),
        BTreeMap::from([
            (s("Netflix"), NETFLIX),
            (s("Example CDN"), EXAMPLE),
            (s("GitHub"), GITHUB),
            (None, UNNAMED),
        ])
    );

    // One address, two names: the remote row names both, busiest first.
    let by_remote = usage(&d, "remote");
    let cdn = by_remote
        .rows
        .iter()
        .find(|r| r.remote_addr.as_deref() == Some("198.51.100.7"))
        .unwrap();
    assert_eq!((cdn.tx.ip_bytes, cdn.rx.ip_bytes), sum(NETFLIX, EXAMPLE));
    assert_eq!(cdn.server_name.as_deref(), Some("www.netflix.com"));
    assert_eq!(cdn.server_names, ["www.netflix.com", "cdn.example.org"]);

    // Filters, and the table's unnamed group.
    let sock = d.dir.path().join("sock");
    let out = run_with(
        &[
            "usage",
            "--since",
            "1h",
            "--by",
            "process",
            "--filter",
            "domain=example.org",
            "--format",
            "json",
        ],
        &["--socket", sock.to_str().unwrap()],
    );
    let doc: Doc = serde_json::from_slice(&out.stdout).unwrap();
    let t = doc
        .rows
        .iter()
        .fold((0, 0), |a, r| sum(a, (r.tx.ip_bytes, r.rx.ip_bytes)));
    assert_eq!(t, EXAMPLE);
    let out = run_with(
        &[
            "usage", "--since", "1h", "--by", "domain", "--format", "table",
        ],
        &["--socket", sock.to_str().unwrap()],
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("DOMAIN") && table.contains("[no name]"),
        "{table}"
    );
}

#[test]
fn names_can_be_turned_off_and_a_missing_catalogue_stops_the_start() {
    let d = start("[names]\nenabled = false\n");
    settle(&d);
    let by_name = usage(&d, "server_name");
    let all = [NETFLIX, EXAMPLE, GITHUB, UNNAMED]
        .into_iter()
        .fold((0, 0), sum);
    assert_eq!(
        bytes(&by_name, |r| r.server_name.clone()),
        BTreeMap::from([(None, all)])
    );
    drop(d);

    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), "[names]\nservices = \"DIR/missing.toml\"\n");
    let out = daemon_command(dir.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.path().join("db.redb").exists(), "nothing created");
}
