//! Alerts in the real daemon binary on the simulated source: SIGKILLed
//! again and again in the middle of a cycle, the daemon never fires a
//! notice twice (the history holds each exactly once, the exec action
//! received each at most once), every notice fires, and the exec action
//! gets the event JSON. Also `netmon alerts check`, `netmon alerts`,
//! `netmon quota` and `netmon cost` against figures computed here from the
//! script.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmon::source::sim::{ScriptBuilder, per_tick};
use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_netmon");
const TICK_MS: u64 = 50;
const LAST_TICK: u64 = 120;
/// firefox's IP bytes a tick, to the internet.
const FF: u64 = 1000;

/// The event fields this test reads, written separately from netmon's.
#[derive(Debug, Deserialize)]
struct Event {
    rule: String,
    transition: String,
    value_bytes: Option<u64>,
    level_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Listing {
    schema_version: u32,
    rules: Vec<RuleRow>,
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
struct RuleRow {
    name: String,
    active: bool,
}

#[derive(Debug, Deserialize)]
struct QuotaDoc {
    used_bytes: u64,
    cap_bytes: u64,
    remaining_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct CostDoc {
    used_bytes: u64,
    cost: f64,
    currency: String,
    #[serde(default)]
    rows: Vec<CostRow>,
}

#[derive(Debug, Deserialize)]
struct CostRow {
    key: String,
    used_bytes: u64,
    cost: f64,
}

fn config(dir: &Path) -> String {
    format!(
        r#"
[alerts]
timezone = "UTC"
[[alerts.action]]
name = "tee"
kind = "exec"
command = ["/usr/bin/tee", "-a", "{}"]
[[alerts.rule]]
name = "day"
filters = ["app=firefox"]
kind = "volume"
over = "30000"
period = "day"
actions = ["tee"]
[[alerts.rule]]
name = "cap"
kind = "quota"
levels = [25, 50, 75, 100]
actions = ["tee"]
[tariff]
currency = "EUR"
price_per_gib = 2.0
cap = "100000"
reset_day = 1
"#,
        dir.join("events.ndjson").display()
    )
}

fn spawn(dir: &Path) -> Child {
    Command::new(BIN)
        .args(["daemon", "--simulate"])
        .arg(dir.join("script.toml"))
        .arg("--db")
        .arg(dir.join("db.redb"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--interval", "50ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn daemon")
}

fn netmon(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("--db")
        .arg(dir.join("db.redb"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("NETMON_LOG", "warn")
        .output()
        .expect("run netmon")
}

fn plain(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("NETMON_LOG", "warn")
        .output()
        .expect("run netmon")
}

#[test]
fn sigkill_mid_cycle_never_fires_twice_and_exec_gets_the_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let mut b = ScriptBuilder::new(TICK_MS);
    let ff = b.process(100, 10, "firefox", 0..=u64::MAX);
    let sshd = b.process(22, 11, "sshd", 0..=u64::MAX);
    b.socket(1, Some(ff), None).flow(
        1,
        "93.184.216.34:443",
        0..=LAST_TICK,
        per_tick(0, 0),
        per_tick(1, FF - 40),
    );
    // LAN traffic: counted by no rule (quota counts the internet only).
    b.socket(2, Some(sshd), None).flow(
        2,
        "192.168.1.20:22",
        0..=LAST_TICK,
        per_tick(1, 5000),
        per_tick(1, 5000),
    );
    b.build()
        .expect("script")
        .save(&p.join("script.toml"))
        .expect("save script");
    std::fs::write(p.join("config.toml"), config(p)).expect("config");

    let check = plain(&[
        "alerts",
        "check",
        p.join("config.toml").to_str().expect("utf-8"),
    ]);
    assert!(check.status.success(), "{check:?}");
    std::fs::write(
        p.join("bad.toml"),
        "[[alerts.rule]]\nname = \"x\"\nkind = \"volume\"\nover = \"1GB\"\n",
    )
    .expect("bad config");
    let bad = plain(&[
        "alerts",
        "check",
        p.join("bad.toml").to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("line 1") && err.contains("window"),
        "{err}"
    );

    // SIGKILL at varied points over the script's 6 s, then a clean stop
    // after its end.
    let kills = [370u64, 230, 610, 450, 290, 530, 410, 330];
    let started = Instant::now();
    for ms in kills {
        let mut child = spawn(p);
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let mut child = spawn(p);
    let end = Duration::from_millis((LAST_TICK + 1) * TICK_MS + 1500);
    while started.elapsed() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    assert!(child.wait().expect("wait").success());
    // Let the last exec (tee) finish.
    std::thread::sleep(Duration::from_millis(300));

    // History: each notice exactly once.
    let out = netmon(p, &["alerts", "--json", "--since", "1h"]);
    assert!(out.status.success(), "{out:?}");
    let listing: Listing = serde_json::from_slice(&out.stdout).expect("alerts JSON");
    assert_eq!(listing.schema_version, 1);
    let fired: Vec<(String, Option<u32>)> = listing
        .events
        .iter()
        .map(|e| (e.rule.clone(), e.level_percent))
        .collect();
    assert_eq!(
        fired,
        vec![
            ("cap".to_owned(), Some(25)),
            ("day".to_owned(), None),
            ("cap".to_owned(), Some(50)),
            ("cap".to_owned(), Some(75)),
            ("cap".to_owned(), Some(100)),
        ],
        "{listing:?}"
    );
    // Each fired once its threshold was passed, counting firefox's bytes
    // only (whole ticks of FF).
    for e in &listing.events {
        let v = e.value_bytes.expect("value");
        assert_eq!(v % FF, 0, "{e:?}");
        match (e.rule.as_str(), e.level_percent) {
            ("day", _) => assert!(v > 30_000, "{e:?}"),
            ("cap", Some(l)) => assert!(v >= u64::from(l) * 1000, "{e:?}"),
            _ => panic!("unexpected {e:?}"),
        }
        assert!(e.transition == "fired" || e.transition == "level");
    }
    assert!(listing.rules.iter().any(|r| r.name == "day" && r.active));
    // The exec action: JSON on stdin, never twice (a SIGKILL between the
    // commit and the action may lose one: at most once).
    let lines = std::fs::read_to_string(p.join("events.ndjson")).expect("exec output");
    let got: Vec<Event> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    let mut keys: Vec<_> = got
        .iter()
        .map(|e| (e.rule.clone(), e.level_percent))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "an event reached the action twice: {lines}");
    assert!(n >= 1, "the action ran");

    // Quota and cost from the store (daemon stopped): firefox's bytes.
    let total = (LAST_TICK + 1) * FF;
    let out = netmon(p, &["quota", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let q: QuotaDoc = serde_json::from_slice(&out.stdout).expect("quota JSON");
    assert_eq!(
        (q.used_bytes, q.cap_bytes, q.remaining_bytes),
        (total, 100_000, 0)
    );
    let out = netmon(p, &["cost", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let c: CostDoc = serde_json::from_slice(&out.stdout).expect("cost JSON");
    assert_eq!((c.used_bytes, c.currency.as_str()), (total, "EUR"));
    #[expect(clippy::cast_precision_loss, reason = "test figures")]
    let want = total as f64 / 1_073_741_824.0 * 2.0;
    assert!((c.cost - want).abs() < 1e-12, "{} vs {want}", c.cost);
    // Today, per app: firefox is the only app on the internet (sshd's LAN
    // traffic is not billed). The run is seconds long, so it is all today
    // unless it straddled midnight UTC.
    let out = netmon(p, &["cost", "--period", "day", "--by", "app", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let c: CostDoc = serde_json::from_slice(&out.stdout).expect("cost JSON");
    if c.used_bytes == total {
        assert_eq!(c.rows.len(), 1, "{c:?}");
        assert_eq!(
            (c.rows[0].key.as_str(), c.rows[0].used_bytes),
            ("firefox", total)
        );
        assert!((c.rows[0].cost - want).abs() < 1e-12, "{c:?}");
    }
}
