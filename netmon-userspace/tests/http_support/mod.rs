//! Shared by the `http_*` tests: a free loopback port, a daemon on the
//! simulated source with an `[http]` section, and a minimal HTTP/1.1
//! client written here (so the tests can send any `Host`, `Origin` or
//! malformed request, which a full client would refuse or rewrite).
#![allow(dead_code, reason = "each test file uses a part")]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::cli_support::{BIN, Daemon, Flow, Proc, Scenario};

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A daemon serving HTTP on a fresh loopback port, with `extra` config
/// lines under `[http]`.
pub fn daemon(scenario: &Scenario, extra: &str) -> (Daemon, u16) {
    daemon_with(scenario, extra, |_| {})
}

/// As [`daemon`], after `fill` prepared the daemon's directory (e.g. wrote
/// history into its `db.redb`).
pub fn daemon_with(
    scenario: &Scenario,
    extra: &str,
    fill: impl FnOnce(&std::path::Path),
) -> (Daemon, u16) {
    let port = free_port();
    let config = format!(
        "[[apps.rule]]\nname = \"web\"\nunit = \"web.service\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}"
    );
    (Daemon::start_with(scenario, &config, fill), port)
}

/// One response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The error body's kind, asserting the shape `{"error":{kind,message}}`.
    pub fn error_kind(&self) -> String {
        let v: serde_json::Value = self.json();
        let m = v["error"]["message"].as_str().unwrap_or("");
        assert!(!m.is_empty(), "error without message: {v}");
        v["error"]["kind"].as_str().expect("error.kind").to_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head += &format!("Host: 127.0.0.1:{port}\r\n");
    }
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    parse(&raw)
}

pub fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[], b"")
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
}

/// An open Server-Sent Events stream.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// Opens `path` and checks the response head.
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n");
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        s.write_all(head.as_bytes()).expect("write");
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status");
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).expect("header");
            if l == "\r\n" {
                break;
            }
            if l.to_ascii_lowercase().starts_with("content-type") {
                assert!(l.contains("text/event-stream"), "{l}");
            }
        }
        Self { reader }
    }

    /// The next `data:` payload (chunk framing and keep-alive comments skipped).
    pub fn next_data(&mut self) -> String {
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("read event");
            assert!(n > 0, "stream closed");
            if let Some(d) = l
                .trim_end()
                .strip_prefix("data: ")
                .or_else(|| l.trim_end().strip_prefix("data:"))
            {
                return d.to_owned();
            }
        }
    }
}

/// A steady sender added to `s`: rsync (pid 300) sending 4000 payload
/// bytes per 50 ms tick to `remote` for `ticks` ticks.
pub fn add_rsync(s: &mut Scenario, remote: &'static str, ticks: u64) {
    s.procs.push(Proc {
        pid: 300,
        start_ticks: 7000,
        comm: "rsync",
        exe: "/usr/bin/rsync",
        uid: 1000,
        cgroup: "/user.slice/backup.service",
    });
    s.flows.push(Flow {
        cookie: 9,
        owner: Some(s.procs.len() - 1),
        remote,
        port: 873,
        protocol: 6,
        ifindex: 2,
        from: 0,
        to: ticks - 1,
        tx: (4, 4208, 4000),
        rx: (1, 52, 0),
    });
}

/// Runs `netmon daemon` on the simulated source with `config` in `dir`
/// (which holds `script.toml`) and waits for it to exit.
pub fn daemon_output(dir: &std::path::Path, config: &str) -> std::process::Output {
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).expect("config");
    std::process::Command::new(BIN)
        .args(["daemon", "--simulate"])
        .arg(dir.join("script.toml"))
        .arg("--db")
        .arg(dir.join("db.redb"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run the daemon")
}
