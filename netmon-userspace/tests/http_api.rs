//! The HTTP API against a daemon on the simulated source: every endpoint's
//! document equals what the CLI prints for the same window (the CLI reads
//! the socket; both go through the same request handling), the totals
//! equal the scenario's own ground truth, bad requests get JSON errors with
//! the right status, the Host/Origin rules and token auth hold, and a
//! non-loopback listen address without auth stops the daemon at start.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;
mod http_support;

use std::time::{Duration, Instant};

use cli_support::{C, Scenario, run_with};
use http_support::{Events, add_rsync, daemon, daemon_output, free_port, get, request};
use serde_json::Value;

fn rfc(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap())
        .unwrap()
        .to_string()
}

fn now_ms() -> u64 {
    netmon::model::unix_ms_now()
}

/// Query-string escaping of a value (enough for times and KEY=VALUE).
fn esc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
        .replace('=', "%3D")
        .replace('/', "%2F")
}

#[test]
fn every_endpoint_equals_the_cli_and_the_ground_truth() {
    let s = Scenario::standard();
    let (d, port) = daemon(&s, "");
    d.settle(&s);
    let (from, until) = (rfc(now_ms() - 3_600_000), rfc(now_ms() + 1));
    let window = ["--since", from.as_str(), "--until", until.as_str()];
    let qw = format!("since={}&until={}", esc(&from), esc(&until));

    for by in [
        "process",
        "app",
        "user",
        "cgroup",
        "container",
        "remote",
        "port",
        "protocol",
        "class",
    ] {
        let mut args = vec!["usage", "--by", by, "--format", "json"];
        args.extend_from_slice(&window);
        let cli: Value = d.json(&args);
        let r = get(port, &format!("/api/v1/usage?{qw}&by={by}"));
        assert_eq!(r.status, 200, "{by}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let api: Value = r.json();
        assert_eq!(api, cli, "usage --by {by}");
        assert_eq!(api["schema_version"], 1);
    }
    // The totals are the scenario's own sums (computed from its flow list).
    let (tx, rx) = s.grand_total();
    let u: cli_support::UsageDoc = get(port, &format!("/api/v1/usage?{qw}&by=class")).json();
    assert_eq!((u.total.tx, u.total.rx), (tx, rx));

    // A filter and a class, repeated parameters.
    let mut args = vec![
        "usage", "--by", "remote", "--filter", "app=web", "--class", "internet", "--format", "json",
    ];
    args.extend_from_slice(&window);
    let cli: Value = d.json(&args);
    let api: Value = get(
        port,
        &format!(
            "/api/v1/usage?{qw}&by=remote&filter={}&class=internet",
            esc("app=web")
        ),
    )
    .json();
    assert_eq!(api, cli);
    let api: Value = get(port, &format!("/api/v1/usage?{qw}&by=app&limit=1")).json();
    assert_eq!(api["rows"].as_array().unwrap().len(), 1);
    assert!(api["groups_total"].as_u64().unwrap() > 1);

    // history: everything, one process, one app, one class, a fixed step.
    for (cli_extra, q) in [
        (vec![], String::new()),
        (
            vec!["--pid", "100:5000"],
            format!("&pid={}", esc("100:5000")),
        ),
        (vec!["--app", "web"], "&app=web".to_owned()),
        (
            vec!["--class", "lan", "--step", "1s"],
            "&class=lan&step=1s".to_owned(),
        ),
    ] {
        let mut args = vec!["history", "--format", "json"];
        args.extend_from_slice(&window);
        args.extend_from_slice(&cli_extra);
        let cli: Value = d.json(&args);
        let api: Value = get(port, &format!("/api/v1/history?{qw}{q}")).json();
        assert_eq!(api, cli, "history {cli_extra:?}");
    }
    let h: cli_support::HistoryDoc = get(port, &format!("/api/v1/history?{qw}")).json();
    assert_eq!((h.total.tx, h.total.rx), (tx, rx));

    // procs and export.
    let mut args = vec!["procs", "--format", "json"];
    args.extend_from_slice(&window);
    let cli: Value = d.json(&args);
    assert_eq!(
        get(port, &format!("/api/v1/procs?{qw}")).json::<Value>(),
        cli
    );
    let mut args = vec!["export", "--format", "json"];
    args.extend_from_slice(&window);
    let cli: Value = d.json(&args);
    let api: Value = get(port, &format!("/api/v1/export?{qw}")).json();
    assert_eq!(api, cli);
    let sum = |k: &str| -> u64 {
        api["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (sum("tx_ip_bytes"), sum("rx_payload_bytes")),
        (tx.ip_bytes, rx.payload_bytes)
    );

    // ping and status.
    let ping: Value = get(port, "/api/v1/ping").json();
    assert_eq!(ping["schema_version"], 1);
    assert_eq!(ping["db"], d.db().to_str().unwrap());
    let st: Value = get(port, "/api/v1/status").json();
    assert_eq!(st["source"], "simulated");
    assert_eq!(st["interval_ms"], 50);
    assert_eq!(st["latest_sample_unix_ms"], ping["latest_sample_unix_ms"]);
    assert!(st["kernel"].is_null());
    assert!(st["uptime_ms"].as_u64().unwrap() > 0);

    // The dashboard and its files are served from the binary.
    let page = get(port, "/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/uPlot.iife.min.js"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    for a in [
        "dashboard.js",
        "dashboard.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "uPlot.LICENSE.txt",
    ] {
        let r = get(port, &format!("/assets/{a}"));
        assert_eq!(r.status, 200, "{a}");
        assert!(!r.body.is_empty());
    }
}

#[test]
fn bad_requests_get_json_errors_with_the_right_status() {
    let s = Scenario::standard();
    let (_d, port) = daemon(&s, "");
    for (path, status, kind) in [
        ("/api/v1/usage?by=moon", 400, "bad_request"),
        ("/api/v1/usage?since=yesterday", 400, "bad_request"),
        ("/api/v1/usage?sinse=1h", 400, "bad_request"),
        ("/api/v1/usage?filter=nonsense", 400, "bad_request"),
        ("/api/v1/usage?limit=100000", 400, "bad_request"),
        ("/api/v1/usage?since=1h&until=2h", 400, "bad_request"),
        ("/api/v1/history?since=30d&step=1ms", 400, "bad_request"),
        ("/api/v1/history?since=1000d&step=1s", 400, "bad_request"),
        ("/api/v1/history?pid=abc", 400, "bad_request"),
        ("/api/v1/export?since=30d", 400, "bad_request"),
        ("/api/v1/live?by=remote", 400, "bad_request"),
        ("/api/v1/nothing", 404, "not_found"),
        ("/assets/nothing.js", 404, "not_found"),
    ] {
        let r = get(port, path);
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_kind(), kind, "{path}");
    }
    let r = request(port, "POST", "/api/v1/usage", &[], b"");
    assert_eq!(
        (r.status, r.error_kind().as_str()),
        (405, "method_not_allowed")
    );
    let long = format!("/api/v1/usage?by={}", "a".repeat(9000));
    let r = get(port, &long);
    assert_eq!((r.status, r.error_kind().as_str()), (414, "too_large"));
    // Login on a server without auth: nothing to log in to.
    let r = request(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        b"{\"token\":\"x\"}",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn loopback_server_rejects_foreign_hosts_and_cross_origin_writes() {
    let s = Scenario::standard();
    let (_d, port) = daemon(&s, "");
    for host in [
        "localhost",
        "localhost:1",
        "127.0.0.1",
        "[::1]:9847",
        "dash.localhost",
    ] {
        let r = request(port, "GET", "/api/v1/ping", &[("Host", host)], b"");
        assert_eq!(r.status, 200, "Host {host}");
    }
    // A page on evil.example that rebinds its name to 127.0.0.1 still
    // sends its own name.
    for host in [
        "evil.example",
        "evil.example:9847",
        "10.1.2.3",
        "localhost.evil.example",
    ] {
        for path in ["/", "/api/v1/usage", "/api/v1/live"] {
            let r = request(port, "GET", path, &[("Host", host)], b"");
            assert_eq!(r.status, 403, "Host {host} {path}");
            assert_eq!(r.error_kind(), "bad_host");
        }
    }
    let body = b"{}";
    for (name, value) in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = request(port, "POST", "/api/v1/logout", &[(name, value)], body);
        assert_eq!(
            (r.status, r.error_kind().as_str()),
            (403, "cross_origin"),
            "{name}"
        );
    }
    let own = format!("http://127.0.0.1:{port}");
    let r = request(
        port,
        "POST",
        "/api/v1/logout",
        &[("Origin", own.as_str())],
        body,
    );
    assert_eq!(r.status, 204);
}

#[test]
fn tokens_sessions_and_revocation() {
    let s = Scenario::standard();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let (d, port) = daemon(
        &s,
        &format!("auth = \"token\"\ntokens = \"{}\"\n", tokens.display()),
    );
    let cfg = d.dir.path().join("config.toml");
    let cfg = cfg.to_str().unwrap();

    // Nothing yet: 401 with a challenge; the page itself loads (to log in).
    let r = get(port, "/api/v1/usage");
    assert_eq!((r.status, r.error_kind().as_str()), (401, "unauthorized"));
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(get(port, "/").status, 200);

    let out = run_with(&["token", "create", "--name", "ci", "--config", cfg], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        !std::fs::read_to_string(&tokens).unwrap().contains(&secret),
        "stored hashed"
    );
    let bearer = format!("Bearer {secret}");
    let r = request(
        port,
        "GET",
        "/api/v1/usage",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = request(
        port,
        "GET",
        "/api/v1/usage",
        &[("Authorization", "Bearer netmon_0000")],
        b"",
    );
    assert_eq!(r.status, 401);

    // Login: an HttpOnly, SameSite=Strict cookie that works alone.
    let body = format!("{{\"token\":\"{secret}\"}}");
    let r = request(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let set = r.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let r = request(port, "GET", "/api/v1/status", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 200);
    let r = request(
        port,
        "POST",
        "/api/v1/login",
        &[],
        b"{\"token\":\"netmon_nope\"}",
    );
    assert_eq!(r.status, 401);
    let r = request(port, "POST", "/api/v1/login", &[], b"not json");
    assert_eq!((r.status, r.error_kind().as_str()), (400, "bad_request"));
    let big = vec![b'x'; 20 * 1024];
    let r = request(port, "POST", "/api/v1/login", &[], &big);
    assert_eq!(r.status, 413);

    // Revoked: 403 for the token and the session made from it.
    let out = run_with(&["token", "revoke", "--name", "ci", "--config", cfg], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = request(
        port,
        "GET",
        "/api/v1/usage",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!((r.status, r.error_kind().as_str()), (403, "forbidden"));
    let r = request(port, "GET", "/api/v1/usage", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 403);
    let out = run_with(&["token", "list", "--config", cfg, "--format", "json"], &[]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["tokens"][0]["name"], "ci");
    assert!(list["tokens"][0]["revoked_unix_ms"].is_u64());
    let out = run_with(&["token", "revoke", "--name", "ci", "--config", cfg], &[]);
    assert!(!out.status.success());
}

#[test]
fn non_loopback_without_auth_refuses_to_start() {
    let s = Scenario::standard();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("script.toml"), s.toml()).unwrap();
    let port = free_port();
    for (listen, needle) in [
        (format!("0.0.0.0:{port}"), "refusing to listen on 0.0.0.0"),
        (format!("[::]:{port}"), "without auth"),
    ] {
        let started = Instant::now();
        let out = daemon_output(dir.path(), &format!("[http]\nlisten = \"{listen}\"\n"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(!dir.path().join("sock").exists(), "nothing started");
    }
    // TLS half-configured is refused too.
    let out = daemon_output(
        dir.path(),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\ncert = \"/nonexistent.pem\"\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both cert and key"));
}

/// One process sending for 8 s (160 ticks of 50 ms).
fn steady() -> Scenario {
    let mut s = Scenario {
        procs: Vec::new(),
        flows: Vec::new(),
    };
    add_rsync(&mut s, "93.184.216.34", 160);
    s
}

#[derive(serde::Deserialize, Debug)]
struct TopDoc {
    schema_version: u32,
    since_unix_ms: u64,
    interval_ms: u64,
    by: String,
    source: String,
    rows: Vec<TopRow>,
}

#[derive(serde::Deserialize, Debug)]
struct TopRow {
    key: String,
    tx_bytes_per_sec: f64,
    tx: C,
    rx: C,
}

#[test]
fn live_stream_rates_and_totals() {
    let s = steady();
    let (d, port) = daemon(&s, "");
    let mut ev = Events::open(port, "/api/v1/live?by=app", &[]);
    let mut moving = false;
    let mut last: Option<TopDoc> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read until the flow is over and two documents agree on the totals.
    loop {
        let doc: TopDoc = serde_json::from_str(&ev.next_data()).unwrap();
        assert_eq!(
            (doc.schema_version, doc.by.as_str(), doc.source.as_str()),
            (1, "app", "daemon")
        );
        if let Some(r) = doc.rows.iter().find(|r| r.key == "rsync") {
            moving |= r.tx_bytes_per_sec > 0.0;
        }
        let done = last.as_ref().is_some_and(|l| {
            let t = |d: &TopDoc| d.rows.iter().map(|r| (r.tx, r.rx)).collect::<Vec<_>>();
            t(l) == t(&doc) && doc.rows.iter().all(|r| r.tx_bytes_per_sec == 0.0)
        });
        if done && moving {
            last = Some(doc);
            break;
        }
        assert!(Instant::now() < deadline, "the stream never settled");
        assert!(doc.interval_ms > 0);
        last = Some(doc);
    }
    assert!(moving, "rates above zero while the flow ran");
    // Totals since the stream's start equal `usage` for the same window.
    let doc = last.unwrap();
    let since = rfc(doc.since_unix_ms);
    let u: cli_support::UsageDoc = d.json(&[
        "usage", "--by", "app", "--since", &since, "--format", "json",
    ]);
    let row = u.rows.iter().find(|r| r.key == "rsync").unwrap();
    let live = doc.rows.iter().find(|r| r.key == "rsync").unwrap();
    assert_eq!((live.tx, live.rx), (row.tx, row.rx));
    assert!(live.tx.payload_bytes > 0 && live.tx.payload_bytes % 4000 == 0);

    // Groupings interval samples do not carry are refused; a slow second
    // stream does not hold the first.
    let _idle = Events::open(port, "/api/v1/live?by=app", &[]);
    let _ = ev.next_data();
    let _ = ev.next_data();
}

#[test]
fn streams_are_bounded_and_idle_readers_hold_nothing() {
    let mut s = Scenario::standard();
    add_rsync(&mut s, "93.184.216.34", 200);
    let (d, port) = daemon(&s, "");
    // 32 streams whose clients never read: the next one is refused...
    let idle: Vec<Events> = (0..32)
        .map(|_| Events::open(port, "/api/v1/live?by=process", &[]))
        .collect();
    let r = get(port, "/api/v1/live?by=app");
    assert_eq!((r.status, r.error_kind().as_str()), (503, "busy"));
    // ... while the drain goes on and queries are answered.
    let latest = || -> u64 {
        let v: Value = get(port, "/api/v1/ping").json();
        v["latest_sample_unix_ms"].as_u64().unwrap()
    };
    let first = latest();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(latest() > first, "the drain kept committing");
    let u: cli_support::UsageDoc =
        d.json(&["usage", "--since", "1h", "--by", "app", "--format", "json"]);
    assert!(u.rows.iter().any(|r| r.key == "rsync"));
    // Closing streams frees their slots.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!("GET /api/v1/live HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        if &head[9..12] == b"200" {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a tool the TLS test needs; under CI a missing tool fails.
fn tool(name: &str, args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new(name).args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{name}: {e} (.ci/run installs it)"
            );
            // To the stderr fd: libtest captures `eprintln!` of passing tests.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n*** SKIPPED: the TLS test needs {name}: {e} ***\n").as_bytes(),
            );
            None
        }
    }
}

#[test]
fn tls_serves_https_and_marks_the_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let Some(o) = tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tokens = dir.path().join("tokens.json");
    let s = Scenario::standard();
    let (d, port) = daemon(
        &s,
        &format!(
            "cert = \"{}\"\nkey = \"{}\"\nauth = \"token\"\ntokens = \"{}\"\n",
            cert.display(),
            key.display(),
            tokens.display()
        ),
    );
    let cfg = d.dir.path().join("config.toml");
    let out = run_with(
        &[
            "token",
            "create",
            "--name",
            "tls",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let url = format!("https://localhost:{port}");
    let Some(o) = tool(
        "curl",
        &[
            "-sS",
            "--cacert",
            cert.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {secret}"),
            &format!("{url}/api/v1/ping"),
        ],
    ) else {
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ping: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ping["schema_version"], 1);
    let o = tool(
        "curl",
        &[
            "-sS",
            "-i",
            "--cacert",
            cert.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("{{\"token\":\"{secret}\"}}"),
            &format!("{url}/api/v1/login"),
        ],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
    let cookie = text
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_default();
    assert!(
        cookie.contains("; secure") && cookie.contains("httponly"),
        "{text}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let r = std::panic::catch_unwind(|| get(port, "/api/v1/ping"));
    assert!(r.map_or(true, |resp| resp.status != 200));
}

/// `GET /api/v1/sockets`: a process's sockets now are the script's sockets
/// of that process — endpoints, protocol, open, and every byte the
/// simulated kernel counted for them (the script's per tick counts times
/// its ticks); bad or ambiguous pids get 400.
#[test]
fn sockets_now_are_the_scripts_sockets() {
    let s = Scenario::standard();
    let (d, port) = daemon(&s, "");
    d.settle(&s);
    // curl, pid 100 started at 5000: the first process of the scenario.
    let owner = s.procs.iter().position(|p| p.start_ticks == 5000).unwrap();
    let mut want: Vec<Value> = s
        .flows
        .iter()
        .filter(|f| f.owner == Some(owner))
        .map(|f| {
            let ticks = f.to - f.from + 1;
            let c = |(packets, ip, payload): (u64, u64, u64)| {
                serde_json::json!({"packets": packets * ticks, "ip_bytes": ip * ticks, "payload_bytes": payload * ticks})
            };
            serde_json::json!({
                "cookie": f.cookie,
                "remote_addr": f.remote,
                "remote_port": f.port,
                "protocol": if f.protocol == 6 { "tcp" } else { "udp" },
                // The simulated kernel's local port rule.
                "local_port": f.cookie % 50_000 + 10_000,
                "tx": c(f.tx),
                "rx": c(f.rx),
            })
        })
        .collect();
    assert!(want.len() >= 2, "the scenario gives curl several sockets");
    want.sort_by_key(|w| w["cookie"].as_u64().unwrap());

    let r = get(port, "/api/v1/sockets?pid=100:5000");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let doc: Value = r.json();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(
        (doc["pid"].as_u64(), doc["start_ticks"].as_u64()),
        (Some(100), Some(5000))
    );
    assert_eq!(doc["comm"], "curl");
    assert_eq!(doc["sockets_total"].as_u64(), Some(want.len() as u64));
    let taken = doc["taken_at_unix_ms"].as_u64().unwrap();
    assert!(
        taken <= now_ms() && taken + 60_000 > now_ms(),
        "a reading of now"
    );
    let mut got: Vec<Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let c = |d: &Value| {
                serde_json::json!({"packets": d["packets"], "ip_bytes": d["ip_bytes"], "payload_bytes": d["payload_bytes"]})
            };
            assert_eq!(r["closed"], false, "{r}");
            assert_eq!((r["pid"].as_u64(), r["start_ticks"].as_u64()), (Some(100), Some(5000)));
            if r["ip_version"] == 4 {
                assert_eq!(r["local_addr"], "10.0.0.1", "the simulated local address");
            }
            serde_json::json!({
                "cookie": r["cookie"],
                "remote_addr": r["remote_addr"],
                "remote_port": r["remote_port"],
                "protocol": r["protocol"],
                "local_port": r["local_port"],
                "tx": c(&r["tx"]),
                "rx": c(&r["rx"]),
            })
        })
        .collect();
    got.sort_by_key(|g| g["cookie"].as_u64().unwrap());
    assert_eq!(got, want);
    // Busiest first, and `limit` keeps the totals of all.
    let one: Value = get(port, "/api/v1/sockets?pid=100:5000&limit=1").json();
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one["sockets_total"], doc["sockets_total"]);
    assert_eq!(one["total"], doc["total"]);
    let busiest = want
        .iter()
        .max_by_key(|w| {
            w["tx"]["ip_bytes"].as_u64().unwrap() + w["rx"]["ip_bytes"].as_u64().unwrap()
        })
        .unwrap();
    assert_eq!(one["rows"][0]["cookie"], busiest["cookie"]);

    // pid 100 was two processes (pid reuse), both with sockets now.
    let r = get(port, "/api/v1/sockets?pid=100");
    assert_eq!((r.status, r.error_kind().as_str()), (400, "bad_request"));
    // sshd by its bare pid.
    let sshd: Value = get(port, "/api/v1/sockets?pid=200").json();
    assert_eq!(
        (sshd["comm"].as_str(), sshd["sockets_total"].as_u64()),
        (Some("sshd"), Some(1))
    );
    // A process with no socket now: an empty answer.
    let none: Value = get(port, "/api/v1/sockets?pid=4242:1").json();
    assert_eq!(none["sockets_total"], 0);
    for bad in [
        "",
        "?pid=x",
        "?pid=100:5000&limit=100000",
        "?pid=1&since=1h",
    ] {
        let r = get(port, &format!("/api/v1/sockets{bad}"));
        assert_eq!(
            (r.status, r.error_kind().as_str()),
            (400, "bad_request"),
            "{bad}"
        );
    }
}
