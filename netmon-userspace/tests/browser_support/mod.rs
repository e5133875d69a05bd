//! Shared by the browser tests (`http_browser`, `metrics_prometheus`):
//! Debian's headless Chromium driven through chromedriver (WebDriver, with
//! the `fantoccini` client). Without `chromium` and `chromium-driver` a test
//! says so and passes, except under `CI=true`, where a missing browser is a
//! failure (`.ci/run` installs both).
#![allow(dead_code, reason = "each test file uses a part")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::http_support::free_port;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const DRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, killed on drop.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver's console log (`goog:loggingPrefs`): the browser's log
/// entries since the last call.
#[derive(Debug)]
pub struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// A headless Chromium session in a `width`x`height` window, or None (said
/// on stderr, and a failure under `CI=true`) when the browser is not
/// installed. `what` names the test in that message.
pub async fn browser(what: &str, width: u32, height: u32) -> Option<(Driver, Client)> {
    let missing: Vec<&str> = [CHROMIUM, DRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        let msg = format!(
            "{what} needs {missing:?} (apt-get install chromium chromium-driver; .ci/run does)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        // To the stderr fd: libtest captures `eprintln!` of passing tests.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n*** SKIPPED: {msg} ***\n").as_bytes(),
        );
        return None;
    }
    let port = free_port();
    let driver = Driver(
        Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}"), "--no-first-run", "--disable-extensions"]
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("webdriver session");
    Some((driver, c))
}

/// Runs `js` until it returns something other than null/false (30 s).
pub async fn wait_for(c: &Client, js: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.execute(js, vec![]).await.expect("execute");
        if !(v.is_null() || v == json!(false)) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The SEVERE entries of the browser's console log since the last read.
pub async fn severe_logs(c: &Client) -> Vec<String> {
    let v = c.issue_cmd(BrowserLog).await.expect("browser log");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}
