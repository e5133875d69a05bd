//! The dashboard's first render over a store of 30 days × 500 processes
//! (`common/fill.rs`; issue target: < 1 s in headless Chromium), two ways:
//! - **API time behind it**: the requests the page makes before it is
//!   ready (`dashboard.js` `start()`: the status and today's class totals,
//!   then the history, top and "who talks to whom" queries for the default
//!   1 h window), issued as the page issues them — the three groups at
//!   once — 20 times; p50 and max of the whole set, without and with the
//!   store's kept sums of closed segments (`netmon::store::sums`);
//! - **in headless Chromium** (Debian's `chromium` and `chromedriver`, as
//!   the browser test uses): 10 fresh page loads, each timed by the page
//!   itself from navigation start to `ready` (`performance.now()` when
//!   every view has rendered, the `data-ready-ms` attribute); p50 and max.
//!   Without the browser this part says so and is skipped.
//!
//! Plain `main` (not criterion): percentiles are the figures wanted. Run
//! with `cargo bench -p netmon-userspace --bench http_render`.
#![expect(clippy::unwrap_used, reason = "benchmark: a panic is the report")]

#[path = "common/fill.rs"]
mod fill;
#[path = "common/serve.rs"]
mod serve;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

fn get(port: u16, path: &str) {
    let (status, _) = serve::get(port, path);
    assert_eq!(status, 200, "{path}");
}

/// Runs `paths` at once, one thread each.
fn together(port: u16, groups: &[Vec<String>]) {
    std::thread::scope(|s| {
        for g in groups {
            s.spawn(move || {
                for p in g {
                    get(port, p);
                }
            });
        }
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The page's requests before `ready`, in its order and concurrency.
fn api_first_render(port: u16) -> Duration {
    let midnight = {
        let now = jiff::Zoned::now();
        now.start_of_day().unwrap().timestamp().to_string()
    };
    let start = Instant::now();
    get(port, "/api/v1/status");
    get(port, &format!("/api/v1/usage?since={midnight}&by=class"));
    let w = "since=1h";
    let mut history = vec![
        format!("/api/v1/usage?{w}&by=app&limit=6"),
        format!("/api/v1/history?{w}"),
    ];
    // The stacked chart asks one history per top app (6).
    for i in 0..6 {
        history.push(format!("/api/v1/history?{w}&app=app{i}"));
    }
    let top = vec![format!("/api/v1/usage?{w}&by=process&limit=500")];
    let wherev = vec![
        format!("/api/v1/usage?{w}&by=class"),
        format!("/api/v1/usage?{w}&by=remote&limit=20"),
        format!("/api/v1/usage?{w}&by=port&limit=20"),
    ];
    together(port, &[history, top, wherev]);
    start.elapsed()
}

fn report(what: &str, mut t: Vec<f64>) {
    t.sort_by(f64::total_cmp);
    println!(
        "{what}: n {}, p50 {:.1} ms, max {:.1} ms",
        t.len(),
        t[t.len() / 2],
        t[t.len() - 1]
    );
}

async fn chromium(port: u16) -> Option<Vec<f64>> {
    if !(Path::new(CHROMIUM).exists() && Path::new(DRIVER).exists()) {
        println!(
            "chromium: SKIPPED, needs {CHROMIUM} and {DRIVER} (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let driver_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Command::new(DRIVER)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", driver_port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1800", "--no-first-run", "--disable-extensions"]
        }),
    );
    let c =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .unwrap();
    let mut times = Vec::new();
    // One warm-up load (the browser's own start), then the measured ones.
    for i in 0..11 {
        c.goto(&format!("http://127.0.0.1:{port}/?load={i}"))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = loop {
            let v = c
                .execute("return document.body.dataset.readyMs || null", vec![])
                .await
                .unwrap();
            if let Some(s) = v.as_str() {
                break s.parse::<f64>().unwrap();
            }
            assert!(Instant::now() < deadline, "the page never got ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let shown_error = c
            .execute(
                "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            shown_error,
            serde_json::json!(""),
            "the page shows no error"
        );
        if i > 0 {
            times.push(ready);
        }
    }
    c.close().await.unwrap();
    let _ = driver.kill();
    let _ = driver.wait();
    Some(times)
}

fn main() {
    let served = serve::serve_filled();
    let port = served.port;
    served.drain_every_second();
    for on in [false, true] {
        served.keep_sums(on);
        api_first_render(port);
        let api: Vec<f64> = (0..20).map(|_| ms(api_first_render(port))).collect();
        report(
            &format!(
                "first render, API requests behind it (1 h window), kept sums {}",
                if on { "on" } else { "off" }
            ),
            api,
        );
    }
    let (n, p50, max) = served.drain_commits();
    println!(
        "drain commits meanwhile (the store is locked during each): {n}, p50 {p50:?}, max {max:?}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(t) = rt.block_on(chromium(port)) {
        report(
            "first render in headless Chromium (navigation start to every view drawn)",
            t,
        );
    }
}
