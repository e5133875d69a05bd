//! Alerts on the simulated source, in process: the real drain commits each
//! step into a real store, the real engine evaluates it. The traffic is
//! written here with its own per tick figures (firefox receives exactly
//! 1000 IP bytes a tick from an internet address), so when each condition
//! must fire is computed below from those figures, not from netmon.
//! Covers: every condition kind at its exact interval and not before,
//! hysteresis and repeat, cycle boundaries (reset day 31 in a 30-day month,
//! two time zones), restart without re-firing, a condition that became
//! true while down, a crash between the drain's commit and the alert
//! commit; exec receiving the JSON and the environment; a loopback webhook
//! retried after a 500 with its signature; a slow action not blocking.
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmon::alerts::actions::{Dispatcher, signature};
use netmon::alerts::config::{Compiled, compile};
use netmon::alerts::engine::Engine;
use netmon::alerts::state;
use netmon::drain::Drain;
use netmon::query::AppRules;
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, SimTcp, per_tick};
use netmon::store::{Retention, Store, TimeMs};
use netmon::wire::AlertEvent;

const TICK_MS: TimeMs = 1000;
/// firefox's IP bytes per tick (rx), to the internet.
const FF: u64 = 1000;

fn ts(base: &str) -> TimeMs {
    let t: jiff::Timestamp = base.parse().expect("timestamp");
    u64::try_from(t.as_millisecond()).expect("after 1970")
}

/// firefox receives FF bytes a tick over `ff`, sshd talks to the LAN all
/// the time, curl talks to the internet from tick 12.
fn script(ff: std::ops::RangeInclusive<u64>) -> Script {
    let mut b = ScriptBuilder::new(TICK_MS);
    let firefox = b.process(100, 10, "firefox", 0..=u64::MAX);
    let sshd = b.process(22, 11, "sshd", 0..=u64::MAX);
    let curl = b.process(300, 12, "curl", 12..=u64::MAX);
    b.socket(1, Some(firefox), None).flow(
        1,
        "93.184.216.34:443",
        ff,
        per_tick(0, 0),
        per_tick(1, FF - 40),
    );
    b.socket(2, Some(sshd), None).flow(
        2,
        "192.168.1.20:51000",
        0..=1000,
        per_tick(3, 5000),
        per_tick(3, 5000),
    );
    b.socket(3, Some(curl), None).flow(
        3,
        "1.1.1.1:443",
        12..=1000,
        per_tick(1, 100),
        per_tick(1, 100),
    );
    b.build().expect("valid script")
}

struct Run {
    store: Store,
    source: SimSource,
    resolver: SimResolver,
    drain: Drain,
    rules: Compiled,
    engine: Option<Engine>,
    base: TimeMs,
    /// Length of a script tick (the drain steps once a tick).
    tick_ms: TimeMs,
    events: Vec<AlertEvent>,
    _dir: tempfile::TempDir,
}

fn rules(text: &str) -> Compiled {
    let file = netmon::config::parse(text, Path::new("t.toml")).expect("config parses");
    compile(&file.alerts, file.tariff.as_ref(), text).expect("rules compile")
}

impl Run {
    fn new(script: &Script, config: &str, base: TimeMs) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) =
            Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store");
        let drain = Drain::new(&mut store).expect("drain");
        let rules = rules(config);
        let engine = Engine::start(&rules, AppRules::default(), &mut store, base).expect("engine");
        Self {
            source: SimSource::new(Arc::new(script.clone())),
            resolver: SimResolver::new(script),
            store,
            drain,
            rules,
            engine: Some(engine),
            base,
            tick_ms: script.tick_ms,
            events: Vec::new(),
            _dir: dir,
        }
    }

    fn at(&self, tick: u64) -> TimeMs {
        self.base + tick * self.tick_ms
    }

    /// Drains tick `k`; the engine (if running) evaluates it.
    fn step(&mut self, k: u64) {
        self.source.set_tick(k);
        let now = self.at(k);
        let report = self
            .drain
            .step(
                &mut self.source,
                &mut self.resolver,
                &mut self.store,
                now,
                Vec::new(),
            )
            .expect("step commits");
        if let Some(e) = &mut self.engine {
            let fired = e.step(&mut self.store, now, &report.per_process);
            self.events.extend(fired);
        }
    }

    fn drive(&mut self, ticks: std::ops::RangeInclusive<u64>) {
        for k in ticks {
            self.step(k);
        }
    }

    /// The daemon stops (engine and drain state dropped) and starts again
    /// at tick `k`, as after a SIGKILL: only the store survives.
    fn restart(&mut self, k: u64) {
        self.engine = None;
        self.drain = Drain::new(&mut self.store).expect("drain");
        let now = self.at(k);
        self.engine = Some(
            Engine::start(&self.rules, AppRules::default(), &mut self.store, now).expect("engine"),
        );
    }

    /// (tick, rule, transition) of every event.
    fn fired(&self) -> Vec<(u64, String, String)> {
        self.events
            .iter()
            .map(|e| {
                (
                    (e.time_unix_ms - self.base) / self.tick_ms,
                    e.rule.clone(),
                    e.transition.clone(),
                )
            })
            .collect()
    }
}

fn ev(tick: u64, rule: &str, tr: &str) -> (u64, String, String) {
    (tick, rule.to_owned(), tr.to_owned())
}

const BASE: &str = "2026-06-10T10:00:00Z";

const ROLLING: &str = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "ff"
filters = ["app=firefox"]
class = "internet"
direction = "rx"
kind = "volume"
over = "5500"
window = "10s"
hysteresis = 0.5
[[alerts.rule]]
name = "ff-repeat"
filters = ["app=firefox"]
kind = "volume"
over = "5500"
window = "10s"
repeat = "3s"
[[alerts.rule]]
name = "ff-tx"
filters = ["app=firefox"]
direction = "tx"
kind = "volume"
over = "1"
window = "10s"
"#;

#[test]
fn rolling_volume_fires_at_the_exact_interval_with_hysteresis_and_repeat() {
    let mut run = Run::new(&script(0..=20), ROLLING, ts(BASE));
    run.drive(0..=40);
    // Window (t−10s, t] holds the deltas of the last 10 ticks. firefox: FF
    // a tick on ticks 0..=20. Sum > 5500 first at tick 5 (6 ticks).
    // After tick 20 the sum at tick k is (30 − k)·FF: cleared with
    // hysteresis 0.5 at ≤ 2750 (tick 28), without at ≤ 5500 (tick 25).
    // Repeat every 3 s while true: 8, 11, ..., 23.
    let mut want = vec![ev(5, "ff", "fired"), ev(5, "ff-repeat", "fired")];
    for k in [8, 11, 14, 17, 20, 23] {
        want.push(ev(k, "ff-repeat", "repeat"));
    }
    want.push(ev(25, "ff-repeat", "cleared"));
    want.push(ev(28, "ff", "cleared"));
    let mut got = run.fired();
    got.sort();
    want.sort();
    assert_eq!(got, want, "ff-tx never fires: firefox sends nothing");
    let first = &run.events[0];
    assert_eq!(first.value_bytes, Some(6 * FF));
    assert_eq!(first.threshold_bytes, Some(5500));
}

const KINDS: &str = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "rate"
filters = ["app=firefox"]
direction = "rx"
kind = "rate"
over = "6kbit/s"
for = "3s"
[[alerts.rule]]
name = "day"
filters = ["app=firefox"]
kind = "volume"
over = "5500"
period = "day"
[[alerts.rule]]
name = "new"
kind = "new_app"
"#;

#[test]
fn rate_period_and_new_app_fire_when_they_should() {
    let mut run = Run::new(&script(0..=20), KINDS, ts(BASE));
    run.drive(0..=30);
    // Rate: FF bytes a tick = 8000 bit/s > 6000 from the first interval
    // with a known length (tick 1, run started at tick 0's reading time):
    // sustained 3 s at tick 3. Zero from tick 21: cleared.
    // Day: more than 5500 bytes today at tick 5, once.
    // New app: firefox (tick 0) and curl (tick 12) reach the internet;
    // sshd only the LAN.
    let mut want = vec![
        ev(0, "new", "new_app"),
        ev(3, "rate", "fired"),
        ev(5, "day", "fired"),
        ev(12, "new", "new_app"),
        ev(21, "rate", "cleared"),
    ];
    let mut got = run.fired();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let apps: Vec<_> = run.events.iter().filter_map(|e| e.app.clone()).collect();
    assert_eq!(apps, vec!["firefox", "curl"]);
    let rate = run
        .events
        .iter()
        .find(|e| e.rule == "rate")
        .expect("rate event");
    assert_eq!(rate.rate_bits_per_s, Some(FF * 8));
}

fn quota(tz: &str) -> String {
    format!(
        r#"
[alerts]
timezone = "{tz}"
[[alerts.rule]]
name = "cap"
filters = ["app=firefox"]
kind = "quota"
cap = "20000"
levels = [50, 100]
reset_day = 31
"#
    )
}

#[test]
fn quota_levels_once_per_cycle_reset_day_31_in_april() {
    // 30 s before 30 April 00:00 UTC: with reset day 31 the April cycle
    // starts on its last day, the 30th, at tick 30.
    let mut run = Run::new(&script(0..=60), &quota("UTC"), ts("2026-04-29T23:59:30Z"));
    run.drive(0..=45);
    // Cycle 1: FF·(k+1) ≥ 50 % of 20000 at tick 9, 100 % at 19.
    // Cycle 2 from tick 30: FF·(k−29) ≥ 10000 at tick 39.
    assert_eq!(
        run.fired(),
        vec![
            ev(9, "cap", "level"),
            ev(19, "cap", "level"),
            ev(39, "cap", "level")
        ]
    );
    assert_eq!(
        run.events[2].cycle_start_unix_ms,
        Some(ts("2026-04-30T00:00:00Z"))
    );
    assert_eq!(
        run.events[2].cycle_end_unix_ms,
        Some(ts("2026-05-31T00:00:00Z"))
    );
    assert_eq!(run.events[1].level_percent, Some(100));
}

#[test]
fn cycles_are_in_the_configured_zone() {
    // 14:59:30 UTC is 23:59:30 in Tokyo (UTC+9): Tokyo's cycle (reset day
    // 31 → 30 April) begins at tick 30, UTC's does not within the run.
    let base = ts("2026-04-29T14:59:30Z");
    let mut tokyo = Run::new(&script(0..=60), &quota("Asia/Tokyo"), base);
    tokyo.drive(0..=45);
    let mut utc = Run::new(&script(0..=60), &quota("UTC"), base);
    utc.drive(0..=45);
    assert_eq!(
        tokyo.fired(),
        vec![
            ev(9, "cap", "level"),
            ev(19, "cap", "level"),
            ev(39, "cap", "level")
        ]
    );
    assert_eq!(
        utc.fired(),
        vec![ev(9, "cap", "level"), ev(19, "cap", "level")]
    );
}

#[test]
fn a_restart_does_not_fire_again_and_the_seeded_sums_are_exact() {
    let cfg = format!(
        "{ROLLING}{}",
        &KINDS[KINDS.find("[[alerts.rule]]").expect("rules")..]
    );
    let mut run = Run::new(&script(0..=20), &cfg, ts(BASE));
    run.drive(0..=9);
    let before = run.fired();
    run.restart(10);
    run.drive(10..=40);
    let after: Vec<_> = run.fired().into_iter().skip(before.len()).collect();
    // Nothing fired at 5 fires again; the rolling window rebuilt from the
    // history clears at exactly the ticks an uninterrupted run does (28,
    // 25); repeats continue from the stored last time; the rate rule stays
    // active across the restart and clears at 21.
    let mut want = vec![
        ev(11, "ff-repeat", "repeat"),
        ev(12, "new", "new_app"),
        ev(14, "ff-repeat", "repeat"),
        ev(17, "ff-repeat", "repeat"),
        ev(20, "ff-repeat", "repeat"),
        ev(21, "rate", "cleared"),
        ev(23, "ff-repeat", "repeat"),
        ev(25, "ff-repeat", "cleared"),
        ev(28, "ff", "cleared"),
    ];
    let mut got = after;
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // The stored history has every event once.
    let stored = state::events(&mut run.store, 0, 1000).expect("events");
    assert_eq!(stored.len(), run.events.len());
}

#[test]
fn true_while_down_fires_once_after_the_restart() {
    let mut run = Run::new(&script(0..=20), KINDS, ts(BASE));
    run.drive(0..=3);
    // Down from tick 4 to 8: the restarted drain takes ticks 4..=9 in one
    // step at tick 9; the day total (10·FF) passed 5500 while down.
    run.restart(9);
    run.drive(9..=12);
    let day: Vec<_> = run.fired().into_iter().filter(|e| e.1 == "day").collect();
    assert_eq!(day, vec![ev(9, "day", "fired")]);
    assert_eq!(
        run.events
            .iter()
            .find(|e| e.rule == "day")
            .and_then(|e| e.value_bytes),
        Some(10 * FF)
    );
}

#[test]
fn a_crash_between_the_drain_commit_and_the_alert_commit_fires_once() {
    let mut run = Run::new(&script(0..=20), KINDS, ts(BASE));
    run.drive(0..=4);
    // Tick 5 is committed by the drain; the process dies before the
    // engine stored anything.
    let engine = run.engine.take();
    run.step(5);
    drop(engine);
    run.restart(6);
    run.drive(6..=8);
    let day: Vec<_> = run.fired().into_iter().filter(|e| e.1 == "day").collect();
    assert_eq!(day, vec![ev(6, "day", "fired")]);
    // And after the commit: a restart right after tick 6 fires nothing more.
    run.restart(9);
    run.drive(9..=10);
    assert_eq!(run.fired().iter().filter(|e| e.1 == "day").count(), 1);
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sample_event() -> AlertEvent {
    AlertEvent {
        schema_version: 1,
        rule: "ff".into(),
        kind: "volume".into(),
        transition: "fired".into(),
        time_unix_ms: 1234,
        value_bytes: Some(6000),
        message: "ff: 6000 bytes".into(),
        ..AlertEvent::default()
    }
}

#[test]
fn exec_gets_the_event_on_stdin_and_in_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdin.json");
    let env = dir.path().join("env.txt");
    let cfg = rules(&format!(
        r#"
[[alerts.action]]
name = "tee"
kind = "exec"
command = ["/usr/bin/tee", "{}"]
[[alerts.action]]
name = "env"
kind = "exec"
shell = true
command = ["env > {}"]
"#,
        out.display(),
        env.display()
    ));
    let d = Dispatcher::start(&cfg.actions).expect("workers");
    let e = sample_event();
    d.send(&e, &[1, 2]);
    wait_for("the exec output", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n'))
            && std::fs::read_to_string(&env).is_ok_and(|s| s.contains("NETMON_VALUE_BYTES"))
    });
    let got: AlertEvent =
        serde_json::from_str(std::fs::read_to_string(&out).expect("read").trim()).expect("json");
    assert_eq!(got, e);
    let env = std::fs::read_to_string(&env).expect("read");
    assert!(env.lines().any(|l| l == "NETMON_VALUE_BYTES=6000"), "{env}");
    assert!(env.lines().any(|l| l == "NETMON_RULE=ff"), "{env}");
}

#[test]
fn webhook_posts_signed_json_and_retries_after_a_500() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (i, conn) in listener.incoming().take(2).enumerate() {
            let mut s = conn.expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("header line");
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().expect("length");
                }
                headers.push(line);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).expect("body");
            let status = if i == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .expect("reply");
            seen.push((headers, body));
        }
        seen
    });
    let cfg = rules(&format!(
        r#"
[[alerts.action]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/netmon"
bearer_token = "tok"
hmac_secret = "key"
retries = 2
backoff = "50ms"
"#
    ));
    let d = Dispatcher::start(&cfg.actions).expect("workers");
    d.send(&sample_event(), &[1]);
    let seen = server.join().expect("server");
    assert_eq!(seen.len(), 2, "a first try and one retry");
    for (headers, body) in &seen {
        let h = |name: &str| {
            headers
                .iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        assert!(headers[0].starts_with("POST /netmon "), "{headers:?}");
        assert_eq!(h("authorization"), "Bearer tok");
        assert_eq!(
            h("x-netmon-signature"),
            format!("sha256={}", signature("key", body))
        );
        let got: AlertEvent = serde_json::from_slice(body).expect("json body");
        assert_eq!(got, sample_event());
    }
}

#[test]
fn a_slow_action_never_blocks_the_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("done");
    let cfg = format!(
        r#"{}
[[alerts.action]]
name = "slow"
kind = "exec"
shell = true
timeout = "60s"
command = ["sleep 3; touch {} 2>/dev/null || true"]
"#,
        KINDS.replace(
            "kind = \"new_app\"",
            "kind = \"new_app\"\nactions = [\"slow\"]"
        ),
        marker.display(),
    );
    let mut run = Run::new(&script(0..=20), &cfg, ts(BASE));
    let compiled = run.rules.clone();
    let d = Dispatcher::start(&compiled.actions).expect("workers");
    // Every step's events go to the slow action (queue of 64): the steps
    // go on while it sleeps, and events beyond the queue are dropped for
    // it, never waited for.
    for k in 0..=20 {
        let before = run.events.len();
        run.step(k);
        for e in &run.events[before..] {
            for _ in 0..100 {
                d.send(e, &[1]);
            }
        }
    }
    assert!(
        !marker.exists(),
        "all steps ran while the first action still sleeps"
    );
    assert_eq!(run.fired().len(), 4, "every event was evaluated and stored");
    wait_for("the slow action", || marker.exists());
}

/// firefox busy 10:00–10:59 UTC every day: 1 MB a minute on days 0..=6,
/// 400 kB a minute on day 7.
fn daily_script() -> Script {
    let mut b = ScriptBuilder::new(60_000);
    let firefox = b.process(100, 10, "firefox", 0..=u64::MAX);
    for day in 0..=7u64 {
        let per_min = if day == 7 { 400_000 } else { 1_000_000 };
        let from = day * 1440 + 600;
        b.socket(10 + day, Some(firefox), None).flow(
            10 + day,
            "93.184.216.34:443",
            from..=from + 59,
            per_tick(0, 0),
            per_tick(100, per_min - 4000),
        );
    }
    b.build().expect("valid script")
}

#[test]
fn quality_fires_when_busy_minutes_fall_below_half_their_baseline() {
    let cfg = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "slow"
filters = ["app=firefox"]
kind = "quality"
below = 0.5
min_rate = "20kbit/s"
window = "15m"
"#;
    let mut run = Run::new(&daily_script(), cfg, ts("2026-06-01T00:00:00Z"));
    // Minute steps through each day's busy hour (nothing moves between).
    for day in 0..=7 {
        run.drive(day * 1440 + 600..=day * 1440 + 661);
    }
    // Baseline at 10:00 on day 7: days 0..=6, 1 MB a minute = 133333 bit/s;
    // day 7 runs at 400 kB a minute = 53333 bit/s, under half of it. The
    // window needs 3 complete busy minutes: 10:00, 10:01, 10:02 are
    // complete at the step of 10:03. Days 1..=6 run at their baseline:
    // nothing; day 0 has none.
    assert_eq!(run.fired(), vec![ev(7 * 1440 + 603, "slow", "fired")]);
    let e = &run.events[0];
    assert_eq!(e.baseline_bits_per_s, Some(1_000_000 * 8 / 60));
    assert_eq!(e.rate_bits_per_s, Some(400_000 * 8 / 60));
}

#[test]
fn a_rolling_window_seeded_across_whole_hours_expires_minute_by_minute() {
    // Regression: seeding read the whole hours inside the window from the
    // hour rollups, stamped at the hour's start, so after a restart an
    // hour of traffic left the window at once instead of minute by minute.
    let cfg = r#"
[[alerts.rule]]
name = "big"
filters = ["app=firefox"]
kind = "volume"
over = "30MB"
window = "3h"
"#;
    let mut run = Run::new(&daily_script(), cfg, ts("2026-06-01T00:00:00Z"));
    // 1 MB a minute over 10:00..=10:59 (ticks 600..=659).
    run.drive(600..=661);
    // Restart at 12:00: the window (09:00, 12:00] holds two whole hours.
    run.restart(720);
    run.drive(720..=830);
    // > 30 MB from the 31st minute (tick 630). At tick T ≥ 780 the window
    // (T − 180, T] holds the minutes 600..=659 above T − 180: 839 − T of
    // them, ≤ 30 MB from T = 809.
    assert_eq!(
        run.fired(),
        vec![ev(630, "big", "fired"), ev(809, "big", "cleared")]
    );
}

/// One scripted TCP flow of the quality tests: ticks, smoothed RTT (µs),
/// data segments and retransmissions per tick, and whether the rules'
/// scope (`app=firefox`) takes it.
struct TcpFlow {
    ticks: std::ops::RangeInclusive<u64>,
    remote: &'static str,
    srtt_us: u32,
    data: u32,
    retrans: u32,
    firefox: bool,
}

/// firefox: five steady flows (20 ms, no loss) on ticks 0..=40 and one bad
/// flow (300 ms, 40 of 100 segments retransmitted) on 10..=20 to port 8443;
/// curl: a worse flow (500 ms, half lost) all along, outside the scope.
fn tcp_flows() -> Vec<TcpFlow> {
    let mut v: Vec<TcpFlow> = (0..5)
        .map(|_| TcpFlow {
            ticks: 0..=40,
            remote: "93.184.216.34:443",
            srtt_us: 20_000,
            data: 100,
            retrans: 0,
            firefox: true,
        })
        .collect();
    v.push(TcpFlow {
        ticks: 10..=20,
        remote: "93.184.216.35:8443",
        srtt_us: 300_000,
        data: 100,
        retrans: 40,
        firefox: true,
    });
    v.push(TcpFlow {
        ticks: 0..=40,
        remote: "93.184.216.36:443",
        srtt_us: 500_000,
        data: 100,
        retrans: 50,
        firefox: false,
    });
    v
}

fn tcp_script(flows: &[TcpFlow]) -> Script {
    let mut b = ScriptBuilder::new(TICK_MS);
    let firefox = b.process(100, 10, "firefox", 0..=u64::MAX);
    let curl = b.process(300, 12, "curl", 0..=u64::MAX);
    for (i, f) in flows.iter().enumerate() {
        let cookie = 50 + i as u64;
        b.socket(cookie, Some(if f.firefox { firefox } else { curl }), None)
            .flow(
                cookie,
                f.remote,
                f.ticks.clone(),
                per_tick(1, 1000),
                per_tick(1, 1000),
            )
            .tcp(SimTcp {
                srtt_us: f.srtt_us,
                data_segs: f.data,
                retrans_segs: f.retrans,
            });
    }
    b.build().expect("valid script")
}

/// What a threshold rule over the window (t − w, t] must do, from the
/// script's own per tick figures: `value(t)` is `None` when the window
/// says too little (no transition), fired when above `over`, cleared at
/// or below it.
fn expected_transitions(
    rule: &str,
    ticks: std::ops::RangeInclusive<u64>,
    mut value: impl FnMut(u64) -> Option<f64>,
    over: f64,
) -> Vec<(u64, String, String)> {
    let mut active = false;
    let mut out = Vec::new();
    for t in ticks {
        let Some(v) = value(t) else { continue };
        if v > over && !active {
            active = true;
            out.push(ev(t, rule, "fired"));
        } else if v <= over && active {
            active = false;
            out.push(ev(t, rule, "cleared"));
        }
    }
    out
}

/// The samples of the window (t − w, t] (ticks t−w+1..=t) that `keep`
/// takes: (srtt µs, data segments, retransmissions), one per flow and tick.
fn window_samples(
    flows: &[TcpFlow],
    t: u64,
    w: u64,
    keep: impl Fn(&TcpFlow) -> bool,
) -> Vec<(u32, u64, u64)> {
    let mut v = Vec::new();
    for k in t.saturating_sub(w - 1)..=t {
        for f in flows.iter().filter(|f| keep(f) && f.ticks.contains(&k)) {
            v.push((f.srtt_us, u64::from(f.data), u64::from(f.retrans)));
        }
    }
    v
}

/// Nearest-rank 95th percentile: the ⌈0.95·n⌉-th smallest.
fn p95_of(mut v: Vec<u32>) -> Option<u32> {
    v.sort_unstable();
    let n = v.len();
    (n > 0).then(|| v[(95 * n).div_ceil(100) - 1])
}

const TCP_RULES: &str = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "rtt"
filters = ["app=firefox"]
kind = "rtt_p95"
over = "100ms"
window = "5s"
min_samples = 3
[[alerts.rule]]
name = "rtt-8443"
filters = ["port=tcp/8443"]
kind = "rtt_p95"
over = "100ms"
window = "5s"
min_samples = 1
[[alerts.rule]]
name = "rtt-never"
filters = ["app=firefox"]
kind = "rtt_p95"
over = "100ms"
window = "5s"
min_samples = 1000
[[alerts.rule]]
name = "loss"
filters = ["app=firefox"]
kind = "retrans_rate"
over = "3%"
window = "5s"
min_segments = 1
"#;

fn tcp_expected(flows: &[TcpFlow]) -> Vec<(u64, String, String)> {
    let ff = |f: &TcpFlow| f.firefox;
    let mut want = expected_transitions(
        "rtt",
        0..=40,
        |t| {
            let s = window_samples(flows, t, 5, ff);
            (s.len() >= 3)
                .then(|| p95_of(s.iter().map(|x| x.0).collect()))
                .flatten()
                .map(f64::from)
        },
        100_000.0,
    );
    want.extend(expected_transitions(
        "rtt-8443",
        0..=40,
        |t| {
            let s = window_samples(flows, t, 5, |f| f.remote.ends_with(":8443"));
            p95_of(s.iter().map(|x| x.0).collect()).map(f64::from)
        },
        100_000.0,
    ));
    want.extend(expected_transitions(
        "loss",
        0..=40,
        |t| {
            let s = window_samples(flows, t, 5, ff);
            let (d, r) = s.iter().fold((0, 0), |(d, r), x| (d + x.1, r + x.2));
            #[expect(clippy::cast_precision_loss, reason = "small counts")]
            let rate = (d > 0).then(|| r as f64 / d as f64);
            rate
        },
        0.03,
    ));
    want.sort();
    want
}

#[test]
fn rtt_p95_and_retransmission_rules_fire_from_the_tcp_samples() {
    let flows = tcp_flows();
    let mut run = Run::new(&tcp_script(&flows), TCP_RULES, ts(BASE));
    run.drive(0..=40);
    let want = tcp_expected(&flows);
    // The p95 is not the maximum: one bad sample among the window's 26
    // stays under the 95th rank, two reach it.
    assert!(
        want.contains(&ev(11, "rtt", "fired")) && want.contains(&ev(10, "rtt-8443", "fired")),
        "the script exercises the rank: {want:?}"
    );
    let mut got = run.fired();
    got.sort();
    assert_eq!(got, want);
    let fired = run
        .events
        .iter()
        .find(|e| e.rule == "rtt" && e.transition == "fired")
        .expect("rtt fired");
    // Tick 11: ticks 7..=11 hold 5·5 steady samples and 2 bad ones.
    assert_eq!(fired.samples, Some(27));
    assert_eq!(fired.rtt_p95_us, Some(300_000));
    let loss = run
        .events
        .iter()
        .find(|e| e.rule == "loss" && e.transition == "fired")
        .expect("loss fired");
    let t = (loss.time_unix_ms - run.base) / TICK_MS;
    let s = window_samples(&flows, t, 5, |f| f.firefox);
    assert_eq!(loss.data_segs, Some(s.iter().map(|x| x.1).sum()));
    assert_eq!(loss.retrans_segs, Some(s.iter().map(|x| x.2).sum()));
}

#[test]
fn rtt_and_retransmission_windows_survive_a_restart() {
    let flows = tcp_flows();
    let mut run = Run::new(&tcp_script(&flows), TCP_RULES, ts(BASE));
    // Down after tick 12 (rules active), back at tick 13: the windows are
    // rebuilt from the stored samples, nothing fires twice, and the
    // clears come at the ticks an uninterrupted run has.
    run.drive(0..=12);
    run.restart(13);
    run.drive(13..=40);
    let mut got = run.fired();
    got.sort();
    assert_eq!(got, tcp_expected(&flows));
}

/// firefox receives FF a tick from 93.184.216.34:443 and 500 B a tick over
/// DNS-over-TLS (9.9.9.9:853) on 0..=20; sshd talks to the LAN on port
/// 51000 (5120 B a tick each way); curl to 1.1.1.1:443 from tick 12.
fn endpoint_script() -> Script {
    let mut s = script(0..=20);
    // The same firefox, in a builder of its own for the extra socket.
    let mut b = ScriptBuilder::new(TICK_MS);
    let ff = b.process(100, 10, "firefox", 0..=u64::MAX);
    b.socket(9, Some(ff), None)
        .flow(9, "9.9.9.9:853", 0..=20, per_tick(0, 0), per_tick(1, 460));
    s.sockets.extend(b.build().expect("valid").sockets);
    s.validate().expect("valid script");
    s
}

const ENDPOINT_RULES: &str = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "remote"
filters = ["remote=93.184.216.34"]
kind = "volume"
over = "5500"
window = "10s"
[[alerts.rule]]
name = "remote-net"
filters = ["app=f*fox", "remote=93.184.216.0/24", "remote=93.0.0.0/8"]
kind = "volume"
over = "5500"
window = "10s"
[[alerts.rule]]
name = "other-net"
filters = ["remote=93.184.217.0/24"]
kind = "volume"
over = "1"
window = "10s"
[[alerts.rule]]
name = "dot"
filters = ["app=firefox", "port=tcp/853"]
direction = "rx"
kind = "rate"
over = "3kbit/s"
for = "2s"
[[alerts.rule]]
name = "https-day"
filters = ["port=tcp/443"]
class = "internet"
direction = "rx"
kind = "volume"
over = "20000"
period = "day"
[[alerts.rule]]
name = "not-lan"
filters = ["port=51000"]
class = "internet"
kind = "volume"
over = "1"
window = "10s"
[[alerts.rule]]
name = "lan"
filters = ["remote=192.168.1.20"]
direction = "tx"
kind = "volume"
over = "50000"
window = "1h"
repeat = "10s"
"#;

/// Fired and cleared events of a rolling volume rule named `rule` over
/// `window` ticks above `over`, for bytes per tick `per` on ticks 0..=40.
fn rolling_events(
    rule: &str,
    per: impl Fn(u64) -> u64,
    over: u64,
    window: u64,
) -> Vec<(u64, String, String, Option<u64>)> {
    let mut want = Vec::new();
    let mut active = false;
    for t in 0..=40u64 {
        let sum: u64 = (t.saturating_sub(window - 1)..=t).map(&per).sum();
        if sum > over && !active {
            active = true;
            want.push((t, rule.into(), "fired".into(), Some(sum)));
        } else if sum <= over && active {
            active = false;
            want.push((t, rule.into(), "cleared".into(), Some(sum)));
        }
    }
    want
}

/// Asserts that `want` holds each `(tick, rule, transition)` (the script
/// exercises it).
fn assert_exercised(want: &[(u64, String, String, Option<u64>)], cases: &[(u64, &str, &str)]) {
    for e in cases {
        assert!(
            want.iter().any(|w| (w.0, w.1.as_str(), w.2.as_str()) == *e),
            "the script exercises {e:?}: {want:?}"
        );
    }
}

/// Per tick IP bytes of the script's flows, from its own figures.
fn endpoint_expected() -> Vec<(u64, String, String, Option<u64>)> {
    let ff443 = |k: u64| if k <= 20 { FF } else { 0 };
    let dot = |k: u64| if k <= 20 { 500 } else { 0 };
    let curl = |k: u64| if k >= 12 { 140 } else { 0 };
    let lan_tx = 5120;
    // remote: the last 10 ticks of ff443 above 5500.
    let mut want = rolling_events("remote", ff443, 5500, 10);
    // remote-net: the same endpoint by network and app pattern.
    let same: Vec<_> = want
        .iter()
        .map(|(t, _, tr, v): &(u64, String, String, Option<u64>)| {
            (*t, "remote-net".to_owned(), tr.clone(), *v)
        })
        .collect();
    want.extend(same);
    // dot: 8·dot(k) bit/s per interval (from tick 1, the first with a
    // known length) above 3000 for 2 s.
    let mut since: Option<u64> = None;
    let mut active = false;
    for t in 1..=40u64 {
        let above = dot(t) * 8 > 3000;
        since = if above { since.or(Some(t - 1)) } else { None };
        let sustained = since.is_some_and(|s| t - s >= 2);
        if sustained && !active {
            active = true;
            want.push((t, "dot".into(), "fired".into(), None));
        } else if !above && active {
            active = false;
            want.push((t, "dot".into(), "cleared".into(), None));
        }
    }
    // https-day: rx to port 443 today (ff443 and curl) above 20000, once.
    let mut sum = 0;
    for t in 0..=40u64 {
        sum += ff443(t) + curl(t);
        if sum > 20000 {
            want.push((t, "https-day".into(), "fired".into(), Some(sum)));
            break;
        }
    }
    // lan: sshd's tx over the last hour above 50000, repeated every 10 s.
    let mut last: Option<u64> = None;
    for t in 0..=40u64 {
        let sum = lan_tx * (t + 1);
        if sum > 50000 {
            match last {
                None => want.push((t, "lan".into(), "fired".into(), Some(sum))),
                Some(l) if t - l >= 10 => {
                    want.push((t, "lan".into(), "repeat".into(), Some(sum)));
                }
                Some(_) => continue,
            }
            last = Some(t);
        }
    }
    want.sort();
    want
}

fn endpoint_events(run: &Run) -> Vec<(u64, String, String, Option<u64>)> {
    let mut got: Vec<_> = run
        .events
        .iter()
        .map(|e| {
            (
                (e.time_unix_ms - run.base) / run.tick_ms,
                e.rule.clone(),
                e.transition.clone(),
                e.value_bytes,
            )
        })
        .collect();
    got.sort();
    got
}

#[test]
fn remote_and_port_scopes_count_their_endpoints_across_an_hour() {
    // The hour turns at tick 10: the per endpoint rows of the new hour
    // start from zero.
    let base = ts("2026-06-10T10:59:50Z");
    let mut run = Run::new(&endpoint_script(), ENDPOINT_RULES, base);
    run.drive(0..=40);
    let want = endpoint_expected();
    assert_exercised(
        &want,
        &[
            (5, "remote", "fired"),
            (5, "remote-net", "fired"),
            (25, "remote", "cleared"),
            (2, "dot", "fired"),
            (21, "dot", "cleared"),
            (19, "https-day", "fired"),
            (39, "lan", "repeat"),
        ],
    );
    assert_eq!(endpoint_events(&run), want);
}

#[test]
fn remote_and_port_scopes_are_rebuilt_exactly_after_restarts() {
    let base = ts("2026-06-10T10:59:50Z");
    let mut run = Run::new(&endpoint_script(), ENDPOINT_RULES, base);
    // Down after tick 7 and after tick 13 (each side of the hour), back
    // the next tick: the windows, the day total and the repeat times come
    // back from the history.
    run.drive(0..=7);
    run.restart(8);
    run.drive(8..=13);
    run.restart(14);
    run.drive(14..=40);
    assert_eq!(endpoint_events(&run), endpoint_expected());
}

/// Interface scopes: firefox receives 1000 IP bytes a tick from the
/// internet over interface 2 on 0..=20; a resolver on interface 3 (a
/// modem) sends 500 and receives 200 a tick to 8.8.8.8 all along; a
/// cache talks to 127.0.0.1 (interface 1, `lo`) sending 1000 a tick.
fn iface_script() -> Script {
    let mut b = ScriptBuilder::new(TICK_MS);
    let ff = b.process(100, 10, "firefox", 0..=u64::MAX);
    let dns = b.process(200, 20, "resolved", 0..=u64::MAX);
    let cache = b.process(300, 30, "cache", 0..=u64::MAX);
    b.socket(1, Some(ff), None).flow(
        1,
        "93.184.216.34:443",
        0..=20,
        per_tick(0, 0),
        per_tick(1, 960),
    );
    b.socket(2, Some(dns), None).flow(
        2,
        "8.8.8.8:53",
        0..=1000,
        per_tick(1, 460),
        per_tick(1, 160),
    );
    b.socket(3, Some(cache), None).flow(
        3,
        "127.0.0.1:6379",
        0..=1000,
        per_tick(1, 960),
        per_tick(0, 0),
    );
    let mut s = b.build().expect("valid script");
    for sock in &mut s.sockets {
        if sock.cookie == 2 {
            for f in &mut sock.flows {
                f.ifindex = 3;
            }
        }
    }
    s.validate().expect("valid script");
    s
}

const IFACE_RULES: &str = r#"
[alerts]
timezone = "UTC"
[[alerts.rule]]
name = "if2"
filters = ["interface=2"]
direction = "rx"
kind = "volume"
over = "5500"
window = "10s"
[[alerts.rule]]
name = "modem-rate"
filters = ["interface=3"]
direction = "tx"
kind = "rate"
over = "3kbit/s"
for = "2s"
[[alerts.rule]]
name = "modem-quota"
filters = ["interface=3"]
kind = "quota"
cap = "20000"
levels = [50, 100]
reset_day = 1
[[alerts.rule]]
name = "lo-day"
filters = ["interface=l?"]
kind = "volume"
over = "20000"
period = "day"
[[alerts.rule]]
name = "if2-lan"
filters = ["interface=2"]
class = "lan"
kind = "volume"
over = "1"
window = "1h"
"#;

/// The events the interface rules must give, from the script's own per
/// tick figures.
fn iface_expected() -> Vec<(u64, String, String, Option<u64>)> {
    let if2_rx = |k: u64| if k <= 20 { 1000 } else { 0 };
    let (modem_tx, modem_rx, lo_tx) = (500u64, 200u64, 1000u64);
    let mut want = rolling_events("if2", if2_rx, 5500, 10);
    // 8 · 500 bit/s from tick 1 (the first interval with a length) is
    // above 3000 all along: fired once the run is 2 s long.
    assert!(modem_tx * 8 > 3000);
    want.push((2, "modem-rate".into(), "fired".into(), None));
    // Quota: both directions, internet, against 20000: 50 % and 100 %.
    let mut fired = Vec::new();
    for t in 0..=40u64 {
        let used = (modem_tx + modem_rx) * (t + 1);
        let top = [50u64, 100]
            .into_iter()
            .filter(|p| used * 100 >= 20000 * p && !fired.contains(p))
            .max();
        if let Some(p) = top {
            fired.retain(|x| *x > p);
            fired.extend([50u64, 100].into_iter().filter(|x| *x <= p));
            want.push((t, "modem-quota".into(), "level".into(), Some(used)));
        }
    }
    // lo (index 1, matched by name) today above 20000, once.
    for t in 0..=40u64 {
        let sum = lo_tx * (t + 1);
        if sum > 20000 {
            want.push((t, "lo-day".into(), "fired".into(), Some(sum)));
            break;
        }
    }
    want.sort();
    want
}

#[test]
fn interface_scopes_count_their_interfaces_by_index_name_class_and_direction() {
    // `interface=l?` matches index 1 by the system's name for it.
    let lo = std::fs::read_to_string("/sys/class/net/lo/ifindex").expect("/sys/class/net/lo");
    assert_eq!(lo.trim(), "1", "loopback is interface 1 in this namespace");
    let base = ts("2026-06-10T10:59:50Z");
    let mut run = Run::new(&iface_script(), IFACE_RULES, base);
    run.drive(0..=40);
    let want = iface_expected();
    assert_exercised(
        &want,
        &[
            (5, "if2", "fired"),
            (25, "if2", "cleared"),
            (14, "modem-quota", "level"),
            (28, "modem-quota", "level"),
            (20, "lo-day", "fired"),
        ],
    );
    assert_eq!(endpoint_events(&run), want);
    let ev = run
        .events
        .iter()
        .find(|e| e.rule == "lo-day")
        .expect("lo-day fired");
    assert_eq!(ev.filters, vec!["interface=l?".to_owned()]);
}

#[test]
fn interface_scopes_are_rebuilt_exactly_after_restarts() {
    let base = ts("2026-06-10T10:59:50Z");
    let mut run = Run::new(&iface_script(), IFACE_RULES, base);
    // Down after tick 7 and after tick 15 (windows, the quota's first
    // level and the day total already under way), back the next tick.
    run.drive(0..=7);
    run.restart(8);
    run.drive(8..=15);
    run.restart(16);
    run.drive(16..=40);
    assert_eq!(endpoint_events(&run), iface_expected());
}

const IFACE_TARIFFS: &str = r#"
[alerts]
timezone = "UTC"
[tariff]
currency = "EUR"
price_per_gib = 1.0
[tariff.interface.lo]
currency = "EUR"
price_per_gib = 3.0
classes = ["loopback"]
cap = "30000"
reset_day = 10
[tariff.interface.3]
currency = "USD"
included = "10000"
price_over_per_gib = 8.0
cap = "20000"
[[alerts.rule]]
name = "lo-cap"
filters = ["interface=lo"]
class = "loopback"
kind = "quota"
levels = [50]
"#;

#[test]
fn tariffs_by_interface_price_and_cap_their_own_traffic() {
    use netmon::cli::alerts::{CostPeriod, cost_doc, quota_doc};
    use netmon::cli::conn::Backend;
    let base = ts("2026-06-10T10:59:50Z");
    let mut run = Run::new(&iface_script(), IFACE_TARIFFS, base);
    run.drive(0..=40);
    // The quota rule on lo takes lo's tariff: cap 30000, its cycle
    // (from June 10, so the whole run); cache sends 1000 a tick.
    let lo_at = |t: u64| 1000 * (t + 1);
    let first = (0..=40u64)
        .find(|t| lo_at(*t) * 100 >= 30000 * 50)
        .expect("crosses 50 %");
    assert_eq!(
        endpoint_events(&run),
        vec![(
            first,
            "lo-cap".to_owned(),
            "level".to_owned(),
            Some(lo_at(first))
        )]
    );
    let now = run.at(40);
    let rules = run.rules.clone();
    let Run { store, _dir, .. } = run;
    let mut backend = Backend::File {
        store: Box::new(store),
        apps: AppRules::default(),
    };
    let gib = 1_073_741_824.0_f64;
    // lo: loopback traffic of interface 1 only.
    let lo = rules.tariff_for(Some("lo")).expect("lo's tariff");
    let q = quota_doc(&mut backend, lo, now).expect("quota");
    assert_eq!(
        (
            q.used_bytes,
            q.cap_bytes,
            q.remaining_bytes,
            q.interface.as_deref()
        ),
        (lo_at(40), 30000, 0, Some("lo"))
    );
    // 3 (the modem): 700 a tick to the internet; 10000 included, the rest
    // at 8 a GiB.
    let modem = rules.tariff_for(Some("3")).expect("3's tariff");
    let used = 700 * 41;
    let c = cost_doc(&mut backend, modem, CostPeriod::Cycle, false, now).expect("cost");
    #[expect(clippy::cast_precision_loss, reason = "test figures")]
    let want = (used - 10000) as f64 / gib * 8.0;
    assert_eq!((c.used_bytes, c.currency.as_str()), (used, "USD"));
    assert!((c.cost - want).abs() < 1e-12, "{} vs {want}", c.cost);
    let q = quota_doc(&mut backend, modem, now).expect("quota");
    assert_eq!((q.used_bytes, q.remaining_bytes), (used, 0));
    // [tariff] prices every interface's internet traffic: firefox's 21
    // ticks on interface 2 and the modem's.
    let all = rules
        .tariff_for(None)
        .expect("the tariff of every interface");
    let c = cost_doc(&mut backend, all, CostPeriod::Cycle, false, now).expect("cost");
    assert_eq!(c.used_bytes, 21 * 1000 + used);
    assert_eq!(c.interface, None);
    // Interface rows have no apps.
    let e = cost_doc(&mut backend, modem, CostPeriod::Cycle, true, now).expect_err("no per app");
    assert!(e.to_string().contains("per interface"), "{e}");
}

#[test]
fn interface_tariff_mistakes_are_named() {
    for (text, want) in [
        (
            "[tariff.interface.\"wwan*\"]\nprice_per_gib = 1.0\n",
            "no globs",
        ),
        (
            "[tariff.interface.wwan0]\nreset_day = 40\n",
            "interface \"wwan0\": reset_day",
        ),
    ] {
        let e = netmon::config::parse(text, Path::new("t.toml"))
            .expect_err(text)
            .to_string();
        assert!(e.contains(want) && e.contains("line 1:"), "{e}");
    }
    // Only interface tariffs: no tariff of every interface.
    let text = "[tariff.interface.wwan0]\ncap = \"1GiB\"\n";
    let file = netmon::config::parse(text, Path::new("t.toml")).expect("parses");
    let c = compile(&file.alerts, file.tariff.as_ref(), text).expect("compiles");
    assert!(c.tariff.is_none());
    assert_eq!(
        c.tariff_for(Some("wwan0")).and_then(|t| t.cap),
        Some(1 << 30)
    );
}
