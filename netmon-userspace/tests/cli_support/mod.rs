//! Shared by the `cli_*` tests: a traffic scenario written here (its own
//! ground truth, computed independently of netmon's code), a simulated
//! daemon running the real binary, and separately written types for the
//! JSON documents.
#![allow(dead_code, reason = "each test file uses a part")]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub const BIN: &str = env!("CARGO_BIN_EXE_netmon");
pub const TICK_MS: u64 = 50;

/// Per tick counters of one direction: (packets, ip_bytes, payload_bytes).
pub type Per = (u64, u64, u64);

#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: &'static str,
    pub exe: &'static str,
    pub uid: u32,
    pub cgroup: &'static str,
}

#[derive(Clone, Debug)]
pub struct Flow {
    pub cookie: u64,
    /// Index into the procs, `None`: nobody known.
    pub owner: Option<usize>,
    pub remote: &'static str,
    pub port: u16,
    pub protocol: u8,
    pub ifindex: u32,
    pub from: u64,
    pub to: u64,
    pub tx: Per,
    pub rx: Per,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct C {
    pub packets: u64,
    pub ip_bytes: u64,
    pub payload_bytes: u64,
}

impl C {
    fn add(self, o: Self) -> Self {
        Self {
            packets: self.packets + o.packets,
            ip_bytes: self.ip_bytes + o.ip_bytes,
            payload_bytes: self.payload_bytes + o.payload_bytes,
        }
    }
}

/// (tx, rx).
pub type Pair = (C, C);

pub fn add(a: Pair, b: Pair) -> Pair {
    (a.0.add(b.0), a.1.add(b.1))
}

impl Flow {
    pub fn ticks(&self) -> u64 {
        self.to - self.from + 1
    }

    pub fn total(&self) -> Pair {
        let n = self.ticks();
        let c = |p: Per| C {
            packets: p.0 * n,
            ip_bytes: p.1 * n,
            payload_bytes: p.2 * n,
        };
        (c(self.tx), c(self.rx))
    }

    /// Destination class by the documented rules.
    pub fn class(&self) -> &'static str {
        if self.ifindex == 1 || self.remote.starts_with("127.") || self.remote == "::1" {
            "loopback"
        } else if self.remote.starts_with("10.") || self.remote.starts_with("192.168.") {
            "lan"
        } else {
            "internet"
        }
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub procs: Vec<Proc>,
    pub flows: Vec<Flow>,
}

impl Scenario {
    /// Curl (twice: pid reuse), sshd, and a socket nobody owns; internet,
    /// LAN and loopback destinations on three interfaces; TCP and UDP.
    pub fn standard() -> Self {
        let procs = vec![
            Proc {
                pid: 100,
                start_ticks: 5000,
                comm: "curl",
                exe: "/usr/bin/curl",
                uid: 1000,
                cgroup: "/system.slice/web.service",
            },
            Proc {
                pid: 200,
                start_ticks: 6000,
                comm: "sshd",
                exe: "/usr/sbin/sshd",
                uid: 0,
                cgroup: "/system.slice/ssh.service",
            },
            Proc {
                pid: 100,
                start_ticks: 9000,
                comm: "curl",
                exe: "/usr/bin/curl",
                uid: 1000,
                cgroup: "/user.slice/session-1.scope",
            },
        ];
        let flows = vec![
            Flow {
                cookie: 1,
                owner: Some(0),
                remote: "93.184.216.34",
                port: 443,
                protocol: 6,
                ifindex: 2,
                from: 0,
                to: 9,
                tx: (2, 1080, 1000),
                rx: (1, 540, 500),
            },
            Flow {
                cookie: 2,
                owner: Some(1),
                remote: "192.168.1.5",
                port: 22,
                protocol: 6,
                ifindex: 2,
                from: 0,
                to: 19,
                tx: (1, 100, 48),
                rx: (1, 200, 148),
            },
            Flow {
                cookie: 3,
                owner: Some(2),
                remote: "127.0.0.1",
                port: 8080,
                protocol: 6,
                ifindex: 1,
                from: 5,
                to: 14,
                tx: (3, 3000, 2880),
                rx: (3, 300, 180),
            },
            Flow {
                cookie: 4,
                owner: Some(0),
                remote: "2001:db8::1",
                port: 53,
                protocol: 17,
                ifindex: 3,
                from: 2,
                to: 7,
                tx: (1, 90, 42),
                rx: (1, 190, 142),
            },
            Flow {
                cookie: 5,
                owner: None,
                remote: "10.0.0.1",
                port: 123,
                protocol: 17,
                ifindex: 2,
                from: 0,
                to: 3,
                tx: (1, 76, 48),
                rx: (1, 76, 48),
            },
        ];
        Self { procs, flows }
    }

    pub fn last_tick(&self) -> u64 {
        self.flows.iter().map(|f| f.to).max().unwrap_or(0)
    }

    pub fn toml(&self) -> String {
        let mut s = format!("tick_ms = {TICK_MS}\n");
        for p in &self.procs {
            s += &format!(
                "[[processes]]\npid = {}\nstart_ticks = {}\ncomm = \"{}\"\nexe = \"{}\"\nuid = {}\ncgroup = \"{}\"\n",
                p.pid, p.start_ticks, p.comm, p.exe, p.uid, p.cgroup
            );
        }
        for f in &self.flows {
            s += &format!("[[sockets]]\ncookie = {}\n", f.cookie);
            if let Some(o) = f.owner {
                let p = &self.procs[o];
                s += &format!(
                    "owner = {{ pid = {}, start_ticks = {} }}\n",
                    p.pid, p.start_ticks
                );
            }
            let d = |p: Per| {
                format!(
                    "{{ packets = {}, ip_bytes = {}, payload_bytes = {} }}",
                    p.0, p.1, p.2
                )
            };
            s += &format!(
                "[[sockets.flows]]\nremote = \"{}\"\nport = {}\nprotocol = {}\nifindex = {}\nfrom = {}\nto = {}\ntx = {}\nrx = {}\n",
                f.remote,
                f.port,
                f.protocol,
                f.ifindex,
                f.from,
                f.to,
                d(f.tx),
                d(f.rx)
            );
        }
        s
    }

    /// Sum of flows grouped by `key` (flows giving `None` are left out).
    pub fn truth(
        &self,
        key: impl Fn(&Flow, Option<&Proc>) -> Option<String>,
    ) -> BTreeMap<String, Pair> {
        let mut out: BTreeMap<String, Pair> = BTreeMap::new();
        for f in &self.flows {
            let owner = f.owner.map(|i| &self.procs[i]);
            if let Some(k) = key(f, owner) {
                let e = out.entry(k).or_default();
                *e = add(*e, f.total());
            }
        }
        out
    }

    pub fn grand_total(&self) -> Pair {
        self.flows
            .iter()
            .fold(Pair::default(), |a, f| add(a, f.total()))
    }
}

/// `config` with the HTTP server off unless it has an `[http]` table of its
/// own: test daemons run in parallel, and the default address
/// (127.0.0.1:9847) is one port for all of them (a daemon that cannot bind
/// it warns on stderr, which tests of stderr would read).
pub fn with_http_off(config: &str) -> String {
    if config.contains("[http]") {
        config.to_owned()
    } else {
        format!("[http]\nlisten = []\n\n{config}")
    }
}

/// A daemon on the simulated source, killed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(scenario: &Scenario, config: &str) -> Self {
        Self::start_with(scenario, config, |_| {})
    }

    /// As [`Self::start`], after `fill` prepared the daemon's directory
    /// (e.g. wrote history into its `db.redb`).
    pub fn start_with(scenario: &Scenario, config: &str, fill: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("script.toml"), scenario.toml()).expect("script");
        std::fs::write(dir.path().join("config.toml"), with_http_off(config)).expect("config");
        fill(dir.path());
        let mut d = Self { dir, child: None };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let child = daemon_command(self.dir.path())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        wait_for_socket(&self.socket());
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("db.redb")
    }

    /// Stops the daemon (SIGTERM, final drain) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            let status = c.wait().expect("wait");
            assert!(status.success(), "daemon exit: {status}");
        }
    }

    /// Runs `netmon ARGS --socket SOCK`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with(args, &["--socket", self.socket().to_str().expect("utf-8")])
    }

    /// Runs `netmon ARGS --socket SOCK` with `COLUMNS=width` (tables are
    /// fitted to it).
    pub fn run_width(&self, args: &[&str], width: usize) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--socket", self.socket().to_str().expect("utf-8")])
            .env("NETMON_LOG", "warn")
            .env("COLUMNS", width.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run netmon")
    }

    /// Runs and parses JSON stdout, asserting success.
    pub fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until the script's traffic is all committed: past its last
    /// tick, and two reads of the total agree.
    pub fn settle(&self, scenario: &Scenario) {
        let end = Duration::from_millis((scenario.last_tick() + 1) * TICK_MS + 200);
        std::thread::sleep(end);
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let u: UsageDoc = self.json(&[
                "usage", "--since", "1h", "--by", "class", "--format", "json",
            ]);
            let t = (u.total.tx, u.total.rx);
            if last == Some(t) {
                return;
            }
            assert!(Instant::now() < deadline, "totals never settled");
            last = Some(t);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `netmon daemon` on `dir`'s `script.toml` and `config.toml`, with its
/// database and socket there, draining every 50 ms (stdout discarded).
pub fn daemon_command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["daemon", "--simulate"])
        .arg(dir.join("script.toml"))
        .arg("--db")
        .arg(dir.join("db.redb"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--interval", "50ms"])
        .stdout(Stdio::null());
    c
}

/// Waits (at most 20 s) until something answers on `socket`.
pub fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "daemon socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run_with(args: &[&str], extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(extra)
        .env("NETMON_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run netmon")
}

/// Writes `bytes` to the socket and reads one reply line.
pub fn raw_request(
    socket: &Path,
    bytes: &[u8],
) -> (std::io::BufReader<std::os::unix::net::UnixStream>, String) {
    use std::io::BufRead as _;
    let s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    w.write_all(bytes).expect("write");
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    (r, line)
}

// ---- Separately written document types (not netmon's wire module). ----

#[derive(Debug, Deserialize)]
pub struct Totals {
    pub tx: C,
    pub rx: C,
}

#[derive(Debug, Deserialize)]
pub struct UsageDoc {
    pub schema_version: u32,
    pub from_unix_ms: u64,
    pub until_unix_ms: u64,
    pub covered_from_unix_ms: Option<u64>,
    pub covered_until_unix_ms: Option<u64>,
    pub exact: bool,
    pub note: Option<String>,
    pub by: String,
    pub groups_total: u64,
    pub rows: Vec<UsageRow>,
    pub total: Totals,
}

#[derive(Debug, Deserialize)]
pub struct UsageRow {
    pub key: String,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub comm: Option<String>,
    pub app: Option<String>,
    pub user: Option<String>,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub remote_addr: Option<String>,
    pub remote_port: Option<u16>,
    #[serde(default)]
    pub service_port: Option<u16>,
    #[serde(default)]
    pub direction: Option<String>,
    pub protocol: Option<String>,
    pub ifindex: Option<u32>,
    pub class: Option<String>,
    pub tx: C,
    pub rx: C,
    pub share: f64,
}

#[derive(Debug, Deserialize)]
pub struct HistoryDoc {
    pub schema_version: u32,
    pub from_unix_ms: u64,
    pub until_unix_ms: u64,
    pub step_ms: u64,
    pub tier: String,
    pub points: Vec<Point>,
    pub total: Totals,
}

#[derive(Debug, Deserialize)]
pub struct Point {
    pub time: String,
    pub time_unix_ms: u64,
    pub span_ms: u64,
    /// Null for a step without data.
    pub tx: Option<C>,
    pub rx: Option<C>,
}

#[derive(Debug, Deserialize)]
pub struct ProcsDoc {
    pub schema_version: u32,
    pub processes: Vec<Seen>,
}

#[derive(Debug, Deserialize)]
pub struct Seen {
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: String,
    pub exe: Option<String>,
    pub app: String,
    pub uid: u32,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    pub tx: C,
    pub rx: C,
}

#[derive(Debug, Deserialize)]
pub struct ExportLine {
    pub schema_version: u32,
    pub time_unix_ms: u64,
    pub tier: String,
    pub pid: u32,
    pub start_ticks: u64,
    pub class: String,
    pub tx_packets: u64,
    pub tx_ip_bytes: u64,
    pub tx_payload_bytes: u64,
    pub rx_packets: u64,
    pub rx_ip_bytes: u64,
    pub rx_payload_bytes: u64,
}

#[derive(Debug, Deserialize)]
pub struct TopDoc {
    pub schema_version: u32,
    pub interval_ms: u64,
    pub by: String,
    pub source: String,
    pub rows: Vec<TopRow>,
}

#[derive(Debug, Deserialize)]
pub struct TopRow {
    pub key: String,
    pub pid: Option<u32>,
    pub tx_bytes_per_sec: f64,
    pub rx_bytes_per_sec: f64,
    pub tx: C,
    pub rx: C,
}

impl Daemon {
    /// Kills the daemon with SIGKILL (no final drain) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
            c.wait().expect("wait");
        }
    }
}
