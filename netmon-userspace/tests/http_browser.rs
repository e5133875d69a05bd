//! The dashboard in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver, with the `fantoccini` client) against a
//! daemon on the simulated source. Checks that the page loads with no
//! console errors, that the top table's numbers are the API's, that the
//! live chart moves while simulated traffic flows, and that a drill-down
//! opens with the process's remotes and its sockets now (the API's rows);
//! saves a screenshot of each view under
//! `target/tmp/dashboard/` for a person to look at. The Devices panel is
//! checked on simulated device history against the rows the test wrote.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! them the test says so and passes, except under `CI=true`, where a missing
//! browser is a failure.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod browser_support;
mod cli_support;
mod device_support;
mod http_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browser_support::{severe_logs, wait_for};
use cli_support::Scenario;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

/// The standard scenario plus one process sending for 40 s, so the live
/// chart has something to show while the test runs.
fn scenario() -> Scenario {
    let mut s = Scenario::standard();
    http_support::add_rsync(&mut s, "198.51.100.7", 800);
    s
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn eval(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn dashboard_in_headless_chromium() {
    let Some((_driver, c)) = browser_support::browser("the browser test", 1280, 1800).await else {
        return;
    };
    let s = scenario();
    let (d, port) = http_support::daemon(&s, "");

    // Let the standard flows finish (1 s of ticks) before the page reads.
    std::thread::sleep(Duration::from_millis(1500));
    let first_load = Instant::now();
    c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    wait_for(
        &c,
        "return document.body.dataset.ready === 'true'",
        "the page to be ready",
    )
    .await;
    eprintln!("first render (page ready): {:?}", first_load.elapsed());

    // The live chart moves while rsync sends.
    let updates = |v: Value| v.as_str().unwrap_or("0").parse::<u64>().unwrap_or(0);
    let u0 = updates(wait_for(&c, "const e = document.getElementById('live-chart'); return Number(e.dataset.updates) > 1 ? e.dataset.updates : null", "live updates").await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let u1 = updates(
        eval(
            &c,
            "return document.getElementById('live-chart').dataset.updates",
        )
        .await,
    );
    assert!(u1 > u0, "the live chart updated: {u0} -> {u1}");
    let rate: f64 = eval(
        &c,
        "return document.getElementById('live-chart').dataset.lastRate",
    )
    .await
    .as_str()
    .unwrap()
    .parse()
    .unwrap();
    assert!(rate > 0.0, "live rate while traffic flows");
    let series = eval(
        &c,
        "return document.querySelectorAll('#live-chart .u-series').length",
    )
    .await;
    assert!(
        series.as_u64().unwrap() >= 3,
        "time + sent + received series: {series}"
    );
    shot(&c, "overview").await;

    // Top table: numbers equal the API's for the same window (finished
    // processes exactly; the still-running rsync between two API reads).
    let loads = eval(
        &c,
        "return document.getElementById('top-table').dataset.loads",
    )
    .await;
    let before: Value =
        http_support::get(port, "/api/v1/usage?since=1h&by=process&limit=500").json();
    click(&c, "#ranges button[data-range='1h']").await;
    wait_for(
        &c,
        &format!("return document.getElementById('top-table').dataset.loads !== {loads}"),
        "the top table to reload",
    )
    .await;
    let table = eval(&c, "return Array.from(document.querySelectorAll('#top-table tbody tr')).map(r => [r.dataset.key, Number(r.cells[5].dataset.value), Number(r.cells[6].dataset.value)])").await;
    let after: Value =
        http_support::get(port, "/api/v1/usage?since=1h&by=process&limit=500").json();
    let rows = table.as_array().unwrap();
    assert_eq!(
        rows.len(),
        after["rows"].as_array().unwrap().len(),
        "{table}"
    );
    let find = |doc: &Value, key: &str| -> (u64, u64) {
        let r = doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .unwrap();
        (
            r["tx"]["payload_bytes"].as_u64().unwrap(),
            r["rx"]["payload_bytes"].as_u64().unwrap(),
        )
    };
    for r in rows {
        let key = r[0].as_str().unwrap();
        let shown = (r[1].as_u64().unwrap(), r[2].as_u64().unwrap());
        let (lo, hi) = (find(&before, key), find(&after, key));
        if key == "300:7000" {
            assert!(
                lo.0 <= shown.0 && shown.0 <= hi.0,
                "{key}: {shown:?} within {lo:?}..{hi:?}"
            );
        } else {
            assert_eq!(shown, hi, "{key}");
            assert_eq!(lo, hi, "{key} finished");
        }
    }
    // Domains next to the remote hosts: the API's groups, labelled as the
    // API names them (this scenario has no server names: "[no name]").
    wait_for(
        &c,
        "return document.querySelectorAll('#domains-table tbody tr td.num').length > 0",
        "the domains table",
    )
    .await;
    let domains = eval(&c, "return Array.from(document.querySelectorAll('#domains-table tbody tr')).map(r => r.cells[0].textContent)").await;
    let api: Value = http_support::get(port, "/api/v1/usage?since=1h&by=domain&limit=20").json();
    let want: Vec<Value> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!(
                r["domain"]
                    .as_str()
                    .or(r["comm"].as_str())
                    .unwrap_or("[no name]")
            )
        })
        .collect();
    assert!(want.contains(&json!("[no name]")), "{api}");
    assert_eq!(domains, Value::Array(want));
    // Sorting and filtering work from the keyboard-reachable buttons.
    click(&c, "#top-table th[data-col='name'] button").await;
    let sorted = eval(&c, "return document.querySelector('#top-table th[data-col=\"name\"]').getAttribute('aria-sort')").await;
    assert_eq!(sorted, json!("ascending"));
    c.find(Locator::Css("#top-filter"))
        .await
        .unwrap()
        .send_keys("sshd")
        .await
        .unwrap();
    let shown = eval(
        &c,
        "return document.querySelectorAll('#top-table tbody tr').length",
    )
    .await;
    assert_eq!(shown, json!(1));
    c.find(Locator::Css("#top-filter"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    eval(
        &c,
        "document.getElementById('top-filter').dispatchEvent(new Event('input')); return 1",
    )
    .await;

    // Drill-down into curl (pid 100, first start): its remote hosts.
    click(&c, "#top-table tbody tr[data-key='100:5000'] button.open").await;
    wait_for(&c, "const d = document.getElementById('drill'); return !d.hidden && d.dataset.key === '100:5000' && document.querySelectorAll('#drill-remotes tbody tr td.num').length > 0", "the drill-down").await;
    let remotes = eval(&c, "return Array.from(document.querySelectorAll('#drill-remotes tbody tr')).map(r => r.cells[0].textContent)").await;
    let remotes: Vec<&str> = remotes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        remotes.contains(&"93.184.216.34") && remotes.contains(&"2001:db8::1"),
        "{remotes:?}"
    );
    // Its sockets now: the API's rows (same reading: the table keeps the
    // reading's time), with endpoints and bytes so far.
    wait_for(
        &c,
        "return document.querySelectorAll('#drill-sockets tbody tr[data-cookie]').length > 0",
        "the sockets now",
    )
    .await;
    let shown = eval(&c, "return Array.from(document.querySelectorAll('#drill-sockets tbody tr')).map(r => [Number(r.dataset.cookie), r.cells[1].textContent, r.cells[2].textContent, r.cells[3].textContent, Number(r.cells[5].dataset.value), Number(r.cells[6].dataset.value)])").await;
    let api: Value = http_support::get(port, "/api/v1/sockets?pid=100:5000&limit=50").json();
    let endpoint = |a: &Value, p: &Value| {
        let a = a.as_str().unwrap();
        if a.contains(':') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    let want: Vec<Value> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["cookie"],
                endpoint(&r["local_addr"], &r["local_port"]),
                endpoint(&r["remote_addr"], &r["remote_port"]),
                if r["closed"] == true {
                    "closed"
                } else {
                    "open"
                },
                r["tx"]["payload_bytes"],
                r["rx"]["payload_bytes"]
            ])
        })
        .collect();
    // curl's flows are over: its numbers no longer move between readings.
    let shown_rows: Vec<Value> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.as_array().unwrap().clone();
            // "open, N retrans" for TCP: the state word is the first.
            r[3] = json!(r[3].as_str().unwrap().split(',').next().unwrap());
            Value::Array(r)
        })
        .collect();
    assert_eq!(shown_rows, want, "sockets now: table = API");
    assert!(
        remotes
            .iter()
            .all(|r| want.iter().any(|w| w[2].as_str().unwrap().contains(r))),
        "every remote host of curl has a socket now: {remotes:?}"
    );
    c.execute(
        "document.getElementById('drill').scrollIntoView(); return 1",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "drill-down").await;

    // History at 24 h.
    click(&c, "#ranges button[data-range='24h']").await;
    wait_for(
        &c,
        "return document.getElementById('history-note').textContent.includes('24 h')",
        "the 24 h history",
    )
    .await;
    c.execute(
        "document.getElementById('history-section').scrollIntoView(); return 1",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "history-24h").await;

    // A phone-sized window.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.execute("window.scrollTo(0, 0); return 1", vec![])
        .await
        .unwrap();
    shot(&c, "phone").await;

    let errors = severe_logs(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let shown_error = eval(
        &c,
        "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent",
    )
    .await;
    assert_eq!(shown_error, json!(""), "the page shows no error");
    c.close().await.unwrap();
    drop(d);
}

/// The Devices panel on simulated device history (`device_support`): every
/// number in the table is the sum of the rows the test wrote, per device,
/// direction and class; names come from the config and the lease, the
/// randomised MACs are marked, two MACs merged by name are one row,
/// sorting works, and a device's history chart adds up to its totals. A
/// daemon with no LAN interface says how to enable device counting
/// instead of showing an empty table.
#[tokio::test(flavor = "current_thread")]
async fn device_panel_in_headless_chromium() {
    let Some((_driver, c)) = browser_support::browser("the device panel test", 1400, 2400).await
    else {
        return;
    };
    let mut rows = Vec::new();
    let (d, port) = http_support::daemon_with(&Scenario::standard(), "", |dir| {
        rows = device_support::prepare(dir);
    });
    let truth = device_support::truth(&rows, device_support::device_id);
    // The API the panel reads: the configured LAN globs in the status, a
    // device history needs its device.
    let st: Value = http_support::get(port, "/api/v1/status").json();
    assert_eq!(st["lan_interfaces"], json!(["lan*"]), "{st}");
    let r = http_support::get(port, "/api/v1/devices/history?since=1h");
    assert_eq!((r.status, r.error_kind()), (400, "bad_request".to_owned()));

    c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    wait_for(
        &c,
        "return document.body.dataset.ready === 'true' && document.querySelectorAll('#devices-table tbody tr').length > 0",
        "the device table",
    )
    .await;
    assert_eq!(
        eval(&c, "return document.getElementById('devices-off').hidden").await,
        json!(true),
        "LAN interfaces configured: no hint"
    );
    let shown = eval(&c, "return Array.from(document.querySelectorAll('#devices-table tbody tr')).map(r => [r.dataset.device, r.cells[0].textContent, r.cells[1].textContent, r.cells[2].textContent, Array.from(r.cells).slice(3).map(c => Number(c.dataset.value))])").await;
    let shown = shown.as_array().unwrap();
    let devices: std::collections::BTreeSet<String> = truth.keys().map(|k| k.0.clone()).collect();
    assert_eq!(shown.len(), devices.len(), "one row per device: {shown:?}");
    for r in shown {
        let id = r[0].as_str().unwrap();
        let numbers: Vec<u64> = r[4]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let mut want = Vec::new();
        for dir in ["tx", "rx"] {
            let mut total = 0;
            for class in device_support::CLASSES {
                let b = truth
                    .get(&(id.to_owned(), dir.to_owned(), class.to_owned()))
                    .map_or(0, |v| v.1);
                total += b;
                want.push(b);
            }
            want.push(total);
        }
        assert_eq!(
            numbers, want,
            "{id}: host, fwd LAN, fwd internet, not IP, total (sent, received)"
        );
        let (name, macs, addrs) = (
            r[1].as_str().unwrap(),
            r[2].as_str().unwrap(),
            r[3].as_str().unwrap(),
        );
        match id {
            "00:11:22:33:44:01" => {
                assert_eq!(name, "nas", "config name");
                assert_eq!(macs, id, "not randomised");
                assert_eq!(addrs, "192.168.1.10", "lease address");
            }
            "da:11:22:33:44:02" => {
                assert_eq!(name, "phone", "lease name");
                assert_eq!(macs, "da:11:22:33:44:02randomised");
                assert_eq!(addrs, "192.168.1.23");
            }
            "tablet" => {
                assert_eq!(name, "tablet");
                assert_eq!(macs, "de:ad:00:00:00:05, de:ad:00:00:00:06randomised");
            }
            "ff:ff:ff:ff:ff:ff" => assert!(name.ends_with("broadcast/multicast"), "{name}"),
            "overflow" => assert!(name.starts_with("overflow"), "{name}"),
            _ => assert_eq!(name, id),
        }
    }
    // Default order: largest total first; sorting by name, then by what
    // the devices sent to the internet.
    let order = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let ids = "return Array.from(document.querySelectorAll('#devices-table tbody tr')).map(r => r.dataset.device)";
    let total_of = |id: &str| -> u64 {
        truth
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(_, v)| v.1)
            .sum()
    };
    let got = order(eval(&c, ids).await);
    let mut want = got.clone();
    want.sort_by(|a, b| total_of(b).cmp(&total_of(a)).then(a.cmp(b)));
    assert_eq!(got, want, "largest total first");
    click(
        &c,
        "#devices-table th[data-col='tx.forwarded_internet'] button",
    )
    .await;
    let got = order(eval(&c, ids).await);
    let fwd = |id: &str| {
        truth
            .get(&(
                id.to_owned(),
                "tx".to_owned(),
                "forwarded_internet".to_owned(),
            ))
            .map_or(0, |v| v.1)
    };
    assert!(
        got.windows(2).all(|w| fwd(&w[0]) >= fwd(&w[1])),
        "sorted by sent to the internet: {got:?}"
    );
    assert_eq!(
        eval(&c, "return document.querySelector('#devices-table th[data-col=\"tx.forwarded_internet\"]').getAttribute('aria-sort')").await,
        json!("descending")
    );

    // The phone's history: the chart's points add up to its totals.
    click(
        &c,
        "#devices-table tbody tr[data-device='da:11:22:33:44:02'] button.open",
    )
    .await;
    let sums = wait_for(
        &c,
        "const e = document.getElementById('device-chart'); return e.dataset.device === 'da:11:22:33:44:02' ? [Number(e.dataset.txBytes), Number(e.dataset.rxBytes), Number(e.dataset.points)] : null",
        "the device history chart",
    )
    .await;
    let phone = device_support::mac(&device_support::PHONE);
    let dir_total = |dir: &str| -> u64 {
        truth
            .iter()
            .filter(|(k, _)| k.0 == phone && k.1 == dir)
            .map(|(_, v)| v.1)
            .sum()
    };
    assert_eq!(
        sums[0].as_u64(),
        Some(dir_total("tx")),
        "sent over the window"
    );
    assert_eq!(
        sums[1].as_u64(),
        Some(dir_total("rx")),
        "received over the window"
    );
    assert!(sums[2].as_u64().unwrap() > 1, "a point per step: {sums}");
    assert!(
        eval(
            &c,
            "return document.querySelectorAll('#device-chart .u-series').length"
        )
        .await
        .as_u64()
        .unwrap()
            >= 3,
        "time + sent + received"
    );
    c.execute(
        "document.getElementById('devices-section').scrollIntoView(); return 1",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "devices").await;
    let errors = severe_logs(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // Leave the page before its daemon stops (the live stream would break).
    c.goto("about:blank").await.unwrap();
    drop(d);
    severe_logs(&c).await;

    // No LAN interface: the panel says how to enable device counting.
    let (plain, port) = http_support::daemon(&Scenario::standard(), "");
    c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    wait_for(
        &c,
        "return document.body.dataset.ready === 'true' && Number(document.getElementById('devices-table').dataset.loads) > 0",
        "the device panel",
    )
    .await;
    let hint = eval(&c, "const o = document.getElementById('devices-off'); return [o.hidden, o.textContent, document.getElementById('devices-wrap').hidden]").await;
    assert_eq!(hint[0], json!(false), "the hint is shown: {hint}");
    assert!(
        hint[1].as_str().unwrap().contains("lan = [")
            && hint[1].as_str().unwrap().contains("--lan-interface"),
        "says how to enable it: {hint}"
    );
    assert_eq!(hint[2], json!(true), "no empty table");
    c.execute(
        "document.getElementById('devices-section').scrollIntoView(); return 1",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "devices-off").await;
    let errors = severe_logs(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await.unwrap();
    drop(plain);
}
