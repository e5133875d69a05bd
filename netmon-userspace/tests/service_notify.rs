//! The daemon under systemd's `Type=notify` protocol, without systemd: the
//! test binds the notification socket itself and starts the daemon (on a
//! simulated source, no root needed) with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` as systemd sets them. The daemon must say `READY=1` only
//! once its query socket exists, ping `WATCHDOG=1` at half the watchdog
//! timeout, and say `STOPPING=1` on SIGTERM before exiting 0.
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
tick_ms = 100
[[processes]]
pid = 100
start_ticks = 5000
comm = "curl"
[[sockets]]
cookie = 1
owner = { pid = 100, start_ticks = 5000 }
[[sockets.flows]]
remote = "93.184.216.34"
port = 443
from = 0
to = 1000
tx = { packets = 2, ip_bytes = 1080, payload_bytes = 1000 }
rx = { packets = 1, ip_bytes = 540, payload_bytes = 500 }
"#;

/// Receives datagrams until one contains `want`; returns every line seen.
fn wait_for(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0_u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = text.lines().any(|l| l == want);
                seen.extend(text.lines().map(str::to_owned));
                if found {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    panic!("no {want} within 30 s; got {seen:?}");
}

#[test]
fn ready_watchdog_and_stopping_are_notified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("traffic.toml"), SCRIPT).expect("script");
    std::fs::write(d.join("config.toml"), "[http]\nlisten = []\n").expect("config");
    let notify = UnixDatagram::bind(d.join("notify")).expect("bind the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let socket = d.join("netmon.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmon"))
        .arg("daemon")
        .arg("--simulate")
        .arg(d.join("traffic.toml"))
        .arg("--db")
        .arg(d.join("netmon.redb"))
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(d.join("config.toml"))
        .args(["--interval", "50ms"])
        .env("NOTIFY_SOCKET", d.join("notify"))
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("daemon starts");
    let mut seen = Vec::new();
    wait_for(&notify, "READY=1", &mut seen);
    assert!(
        Path::new(&socket).exists(),
        "READY=1 before the query socket exists"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("STATUS=draining")),
        "no STATUS line: {seen:?}"
    );
    // Two pings: the watchdog runs, not just once.
    wait_for(&notify, "WATCHDOG=1", &mut seen);
    wait_for(&notify, "WATCHDOG=1", &mut seen);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    wait_for(&notify, "STOPPING=1", &mut seen);
    let status = child.wait().expect("reaped");
    assert!(status.success(), "exit after SIGTERM: {status}");
}
