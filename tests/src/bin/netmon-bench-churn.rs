//! `netmon-bench-churn`: what `netmon daemon` costs on a server making many
//! short connections. Run as root by `cargo xtask bench` (or alone, after
//! `cargo build --release -p netmon-tests --bins`).
//!
//! netmon is loaded into a pin directory of its own and attached to a cgroup
//! of its own; the real daemon (`$NETMON_BIN`, the release build) drains it
//! into a fresh history file at its default interval. A child process of
//! this binary joins the cgroup and makes short loopback connections at up
//! to `--rate` a second for `--seconds`: each one connects (from one of
//! `--peers` source addresses in 127.1.0.0/16, so the server sees that many
//! peers), writes `--send` bytes, the server reads them, writes `--send`
//! bytes back and closes, the client reads to EOF and closes. The child
//! counts every byte from its own system calls' return values.
//!
//! Measured on the daemon, from `/proc/PID/{stat,status,io}`:
//! - CPU (utime + stime) as a percentage of one core during the storm and
//!   during the idle time after it;
//! - `VmHWM` (peak resident set) and `VmRSS` at the end of the storm, and
//!   `VmRSS`/`VmHWM` after `--idle` seconds without traffic;
//! - bytes the daemon wrote (`write_bytes`), in all and per connection, and
//!   the history file's growth;
//! - whether the history's totals for the child equal the child's own
//!   counts, to the byte (waiting up to a minute more for a drain that
//!   fell behind, and saying how long it took).
//!
//! The figures are printed as text and as one JSON line (`churn: {...}`).
//! It measures and reports; it never asserts (exit 1 only when the run
//! itself could not be made). On a shared machine the CPU figure includes
//! the daemon waiting for cores: compare runs made side by side.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use netmon_tests::{
    cgroup::CgroupGuard,
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

/// How long, after the idle time, the history may take to catch up with
/// the workload before the totals are called inexact.
const SETTLE_MAX: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "netmon daemon cost under short-connection churn (root)")]
struct Args {
    /// Connections a second the clients aim at.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seconds without traffic after the churn before the last reading.
    #[arg(long, default_value_t = 60.0)]
    idle: f64,
    /// Payload bytes each way per connection.
    #[arg(long, default_value_t = 1000)]
    send: usize,
    /// Client source addresses (127.1.0.1 ...).
    #[arg(long, default_value_t = 100)]
    peers: u32,
    /// Client threads (and as many server threads).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// The daemon's `--interval` (its default when absent).
    #[arg(long)]
    interval: Option<String>,
    /// Extra daemon config (TOML text appended to the config file).
    #[arg(long, default_value = "")]
    config: String,
    /// Print `netmon status` of the daemon at the end.
    #[arg(long)]
    status: bool,
    /// Copy the history file here at the end (to look into it).
    #[arg(long, value_name = "FILE")]
    keep_db: Option<PathBuf>,
    #[command(subcommand)]
    storm: Option<StormCmd>,
}

/// The child's side (internal).
#[derive(clap::Subcommand)]
enum StormCmd {
    /// Join CGROUP, then make the connections and print one JSON report.
    #[command(hide = true)]
    Storm {
        /// cgroup directory to join.
        #[arg(long)]
        cgroup: PathBuf,
        /// Connections a second.
        #[arg(long)]
        rate: u64,
        /// Seconds.
        #[arg(long)]
        seconds: f64,
        /// Bytes each way.
        #[arg(long)]
        send: usize,
        /// Source addresses.
        #[arg(long)]
        peers: u32,
        /// Threads per side.
        #[arg(long)]
        threads: usize,
    },
}

/// What the child counted from its own system calls.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StormReport {
    /// Connections completed (payload both ways, closed).
    connections: u64,
    /// Connections that failed (refused, reset, timed out).
    failed: u64,
    /// Payload bytes written by client and server sockets together.
    tx: u64,
    /// Payload bytes read by client and server sockets together.
    rx: u64,
    /// Seconds from the first connection to the last close.
    elapsed_s: f64,
}

/// One reading of the daemon's `/proc` files.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
    /// Peak resident set, kB.
    hwm_kb: u64,
    /// Resident set now, kB.
    rss_kb: u64,
    /// Bytes sent to the storage layer (`write_bytes`).
    write_bytes: u64,
    /// When.
    at: Option<Instant>,
}

fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the `)` closing comm: utime is field 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    Ok(ProcSample {
        cpu_ticks: num(11) + num(12),
        hwm_kb: field(&status, "VmHWM:"),
        rss_kb: field(&status, "VmRSS:"),
        write_bytes: field(&io, "write_bytes:"),
        at: Some(Instant::now()),
    })
}

/// The first number after `name` at the start of a line.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU between two samples as a percentage of one core.
fn cpu_pct(a: &ProcSample, b: &ProcSample) -> f64 {
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64(),
        _ => 0.0,
    };
    if secs <= 0.0 {
        return 0.0;
    }
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / hz / secs * 100.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1000.0
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(StormCmd::Storm {
        cgroup,
        rate,
        seconds,
        send,
        peers,
        threads,
    }) = args.storm
    {
        std::fs::write(cgroup.join("cgroup.procs"), "0")
            .with_context(|| format!("joining cgroup {}", cgroup.display()))?;
        let report = storm(rate, seconds, send, peers, threads)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("netmon-bench-churn loads eBPF programs: run it as root");
    }
    run(&args)
}

/// The parent: netmon, the daemon, the child, the readings.
fn run(args: &Args) -> anyhow::Result<()> {
    let cgroup = CgroupGuard::new("churn");
    let netmon = Netmon::load(&cgroup);
    let dir = tempfile::tempdir().context("scratch directory")?;
    let db = dir.path().join("netmon.redb");
    let socket = dir.path().join("netmon.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[http]\nlisten = []\n\n{}\n", args.config))?;
    let mut daemon = Command::new(netmon_bin());
    daemon
        .arg("daemon")
        .arg("--pin-dir")
        .arg(netmon.pin_dir())
        .arg("--cgroup")
        .arg(cgroup.path())
        .arg("--db")
        .arg(&db)
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(i) = &args.interval {
        daemon.arg("--interval").arg(i);
    }
    let mut daemon = Guarded(daemon.spawn().context("starting netmon daemon")?);
    let pid = daemon.0.id();
    let deadline = Instant::now() + NETMON_TIMEOUT;
    while !socket.exists() {
        if let Some(status) = daemon.0.try_wait()? {
            bail!("netmon daemon exited at start: {status}");
        }
        if Instant::now() > deadline {
            bail!("netmon daemon: no socket after {NETMON_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Let the first steps (open, adoption) pass before the baseline.
    thread::sleep(Duration::from_secs(2));
    let size0 = file_size(&db);
    let s0 = sample(pid)?;

    let mut child = Guarded(
        Command::new(std::env::current_exe()?)
            .arg("storm")
            .arg("--cgroup")
            .arg(cgroup.path())
            .args(["--rate", &args.rate.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--send", &args.send.to_string()])
            .args(["--peers", &args.peers.to_string()])
            .args(["--threads", &args.threads.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the churn child")?,
    );
    let child_pid = child.0.id();
    let mut peak_rss = 0;
    let limit = Instant::now() + Duration::from_secs_f64(args.seconds + 120.0);
    while child.0.try_wait()?.is_none() {
        if Instant::now() > limit {
            bail!("the churn child did not finish");
        }
        peak_rss = peak_rss.max(sample(pid)?.rss_kb);
        thread::sleep(Duration::from_millis(500));
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let report: StormReport = serde_json::from_str(out.trim())
        .with_context(|| format!("the churn child's report: {out}"))?;
    let s1 = sample(pid)?;
    let size1 = file_size(&db);

    // Idle, then the last reading.
    let idle_start = Instant::now();
    let mut idle_peak = 0;
    while idle_start.elapsed() < Duration::from_secs_f64(args.idle) {
        thread::sleep(Duration::from_millis(500));
        idle_peak = idle_peak.max(sample(pid)?.rss_kb);
    }
    let s2 = sample(pid)?;
    let size2 = file_size(&db);

    // A drain that fell behind (steps of several seconds under churn) may
    // still be committing the storm's last steps: wait for it, a bounded
    // time, rather than call a late history inexact. More than the truth
    // never settles: that is reported at once.
    let settle_start = Instant::now();
    let (h_tx, h_rx) = loop {
        let (tx, rx) = history_payload(&socket, child_pid)?;
        let short = tx < report.tx || rx < report.rx;
        let over = tx > report.tx || rx > report.rx;
        if !short || over || settle_start.elapsed() > SETTLE_MAX {
            break (tx, rx);
        }
        thread::sleep(Duration::from_millis(500));
    };
    let settle_s = settle_start.elapsed().as_secs_f64();
    let status = if args.status {
        let mut c = Command::new(netmon_bin());
        c.args(["status", "--pin-dir"])
            .arg(netmon.pin_dir())
            .arg("--socket")
            .arg(&socket);
        let out = c.output().context("netmon status")?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        None
    };
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(i32::try_from(pid).unwrap_or(i32::MAX), libc::SIGTERM) };
    let _ = daemon.0.wait();
    if let Some(keep) = &args.keep_db {
        std::fs::copy(&db, keep)
            .with_context(|| format!("copying the history to {}", keep.display()))?;
    }

    let storm_s = report.elapsed_s.max(1e-9);
    let conns = report.connections.max(1);
    let cpu_storm = cpu_pct(&s0, &s1);
    let cpu_idle = cpu_pct(&s1, &s2);
    let written_storm = s1.write_bytes.saturating_sub(s0.write_bytes);
    let written_idle = s2.write_bytes.saturating_sub(s1.write_bytes);
    let exact = h_tx == report.tx && h_rx == report.rx;
    println!(
        "churn: {} connections in {:.1} s ({:.0}/s, target {}/s), {} failed, {} peers, {} B each way",
        report.connections,
        report.elapsed_s,
        report.connections as f64 / storm_s,
        args.rate,
        report.failed,
        args.peers,
        args.send
    );
    println!(
        "  totals: workload tx {} rx {} B; history tx {} rx {} B: {}",
        report.tx,
        report.rx,
        h_tx,
        h_rx,
        if exact { "exact" } else { "NOT EXACT" }
    );
    if settle_s >= 0.5 {
        println!("  (the history caught up {settle_s:.1} s after the idle time)");
    }
    println!(
        "  daemon CPU: {cpu_storm:.1} % of a core during the churn (from baseline to the child's exit), {cpu_idle:.1} % idle"
    );
    println!(
        "  daemon memory: VmHWM {:.1} MB at the end of the churn (VmRSS {:.1}, sampled peak {:.1}); after {:.0} s idle VmRSS {:.1} MB (VmHWM {:.1})",
        mb(s1.hwm_kb),
        mb(s1.rss_kb),
        mb(peak_rss),
        args.idle,
        mb(s2.rss_kb),
        mb(s2.hwm_kb),
    );
    println!(
        "  daemon writes: {written_storm} B during the churn ({:.1} B/connection), {written_idle} B idle; file {size0} -> {size1} -> {size2} B",
        written_storm as f64 / conns as f64,
    );
    if let Some(s) = &status {
        println!("{s}");
    }
    let json = serde_json::json!({
        "connections": report.connections,
        "failed": report.failed,
        "rate": report.connections as f64 / storm_s,
        "exact": exact,
        "settle_s": settle_s,
        "cpu_storm_pct": cpu_storm,
        "cpu_idle_pct": cpu_idle,
        "vmhwm_storm_kb": s1.hwm_kb,
        "vmrss_storm_kb": s1.rss_kb,
        "vmrss_idle_kb": s2.rss_kb,
        "vmhwm_idle_kb": s2.hwm_kb,
        "idle_peak_rss_kb": idle_peak,
        "write_bytes_storm": written_storm,
        "write_bytes_idle": written_idle,
        "file_bytes": [size0, size1, size2],
    });
    println!("churn: {json}");
    drop(dir);
    Ok(())
}

/// A child killed and reaped on drop if still running.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The history's payload (tx, rx) for `pid` over the last hour.
fn history_payload(socket: &Path, pid: u32) -> anyhow::Result<(u64, u64)> {
    let mut c = Command::new(netmon_bin());
    c.args([
        "usage", "--since", "1h", "--by", "process", "--json", "--socket",
    ])
    .arg(socket);
    let out = c.output().context("netmon usage")?;
    if !out.status.success() {
        bail!(
            "netmon usage: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut tx = 0;
    let mut rx = 0;
    for row in v["rows"].as_array().into_iter().flatten() {
        if row["pid"].as_u64() == Some(u64::from(pid)) {
            tx += row["tx"]["payload_bytes"].as_u64().unwrap_or(0);
            rx += row["rx"]["payload_bytes"].as_u64().unwrap_or(0);
        }
    }
    Ok((tx, rx))
}

/// The child: a listener served by `threads` threads, `threads` clients
/// paced to `rate` connections a second in all.
fn storm(
    rate: u64,
    seconds: f64,
    send: usize,
    peers: u32,
    threads: usize,
) -> anyhow::Result<StormReport> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.set_reuse_address(true)?;
    listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    listener.listen(4096)?;
    let listener: TcpListener = listener.into();
    listener.set_nonblocking(true)?;
    let server = listener.local_addr()?;
    let listener = Arc::new(listener);
    let stop = Arc::new(AtomicBool::new(false));
    let tx = Arc::new(AtomicU64::new(0));
    let rx = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads = threads.max(1);
    let mut servers = Vec::new();
    for _ in 0..threads {
        let (listener, stop, tx, rx, failed) = (
            Arc::clone(&listener),
            Arc::clone(&stop),
            Arc::clone(&tx),
            Arc::clone(&rx),
            Arc::clone(&failed),
        );
        servers.push(thread::spawn(move || {
            let mut buf = vec![0u8; send.max(1)];
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if serve_one(&s, &mut buf, send, &tx, &rx).is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let mut p = libc::pollfd {
                            fd: listener.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd for the call's duration.
                        unsafe { libc::poll(&raw mut p, 1, 50) };
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut clients = Vec::new();
    for t in 0..threads {
        let (tx, rx, done, failed) = (
            Arc::clone(&tx),
            Arc::clone(&rx),
            Arc::clone(&done),
            Arc::clone(&failed),
        );
        clients.push(thread::spawn(move || {
            let mut buf = vec![0u8; send.max(1)];
            let mut k: u64 = 0;
            loop {
                let n = k * threads as u64 + t as u64;
                k += 1;
                let due = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                let now = Instant::now();
                if due >= end || now >= end {
                    break;
                }
                if due > now {
                    thread::sleep(due - now);
                }
                let peer = u32::try_from(n % u64::from(peers.max(1))).unwrap_or(0) + 1;
                let from = Ipv4Addr::new(127, 1, (peer >> 8) as u8, (peer & 0xff) as u8);
                match client_one(from, server, &mut buf, send, &tx, &rx) {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for c in clients {
        let _ = c.join();
    }
    // Let the servers finish what was accepted, then stop them.
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        let _ = s.join();
    }
    Ok(StormReport {
        connections: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        tx: tx.load(Ordering::Relaxed),
        rx: rx.load(Ordering::Relaxed),
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Server side of one connection: read `send` bytes, write `send`, close.
fn serve_one(
    s: &TcpStream,
    buf: &mut [u8],
    send: usize,
    tx: &AtomicU64,
    rx: &AtomicU64,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut got = 0;
    while got < send {
        let n = (&*s).read(&mut buf[..send - got])?;
        if n == 0 {
            break;
        }
        rx.fetch_add(n as u64, Ordering::Relaxed);
        got += n;
    }
    write_counted(s, &buf[..send], tx)
}

/// Client side of one connection: connect from `from`, write `send`, read
/// to EOF, close.
fn client_one(
    from: Ipv4Addr,
    server: SocketAddr,
    buf: &mut [u8],
    send: usize,
    tx: &AtomicU64,
    rx: &AtomicU64,
) -> std::io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the given size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    sock.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write_counted(&s, &buf[..send], tx)?;
    loop {
        let n = (&s).read(buf)?;
        if n == 0 {
            return Ok(());
        }
        rx.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// `write_all`, counting what each write returned.
fn write_counted(s: &TcpStream, mut data: &[u8], tx: &AtomicU64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = (&*s).write(data)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        tx.fetch_add(n as u64, Ordering::Relaxed);
        data = &data[n..];
    }
    Ok(())
}
