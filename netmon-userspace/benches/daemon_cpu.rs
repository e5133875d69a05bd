//! Daemon CPU and disk at a 1 s interval with 500 active processes.
//!
//! Runs the real `netmon daemon --simulate` binary on a script of 500
//! processes, each with one socket sending and receiving every tick, for
//! `NETMON_CPU_SECS` seconds (default 60), then reads the daemon's utime +
//! stime from `/proc/PID/stat` and its `write_bytes`/`wchar` from
//! `/proc/PID/io`, and stops it with SIGTERM. Prints CPU as a percentage of
//! one core over the steady part (after a 5 s warm-up), bytes written per
//! interval, the file size, and the daemon's memory (`VmHWM`, the peak
//! resident set, and `VmRSS` at the end, from `/proc/PID/status`).
//!
//! `NETMON_CPU_CONFIG` is written as the daemon's config file (default
//! empty: the defaults), e.g. `db_cache_mib = 1024` for redb's own default
//! cache, to compare memory side by side.
//!
//! Run: `cargo bench -p netmon-userspace --bench daemon_cpu`
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmon::source::sim::{ScriptBuilder, per_tick};

const PROCS: u32 = 500;
const WARMUP: Duration = Duration::from_secs(5);

/// utime + stime (clock ticks), from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the `)` closing comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// A field of `/proc/PID/io`.
fn io_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`), in kB.
fn status_kb(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(name).and_then(|v| {
                    v.trim_start_matches(':')
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .ok()
                })
            })
        })
        .unwrap_or(0)
}

fn write_script(path: &Path) {
    let mut b = ScriptBuilder::new(1000);
    for i in 0..PROCS {
        let id = b.process(20_000 + i, 1, &format!("app{i}"), 0..=u64::MAX);
        let cookie = u64::from(i) + 1;
        b.socket(cookie, Some(id), None).flow(
            cookie,
            &format!("93.184.{}.{}:443", i / 250, i % 250 + 1),
            0..=u64::MAX / 2,
            per_tick(4, 4000),
            per_tick(6, 9000),
        );
    }
    b.build()
        .unwrap_or_else(|e| panic!("script: {e}"))
        .save(path)
        .unwrap_or_else(|e| panic!("saving the script: {e}"));
}

fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        eprintln!("SIGTERM: {e}");
    }
    let status = child.wait().unwrap_or_else(|e| panic!("waiting: {e}"));
    assert!(status.success(), "daemon stop: {status:?}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends
    }
    let secs: u64 = std::env::var("NETMON_CPU_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    let script = dir.path().join("script.json");
    write_script(&script);
    let db = dir.path().join("netmon.redb");
    // Defaults (or NETMON_CPU_CONFIG), not whatever /etc/netmon holds.
    let config = dir.path().join("config.toml");
    let text = std::env::var("NETMON_CPU_CONFIG").unwrap_or_default();
    std::fs::write(&config, &text).unwrap_or_else(|e| panic!("writing the config: {e}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmon"))
        .args(["daemon", "--interval", "1s", "--simulate"])
        .arg(&script)
        .arg("--db")
        .arg(&db)
        .arg("--socket")
        .arg(dir.path().join("s"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the daemon: {e}"));
    let pid = child.id();
    std::thread::sleep(WARMUP);
    let (c0, w0, ch0, t0) = (
        cpu_ticks(pid),
        io_field(pid, "write_bytes"),
        io_field(pid, "wchar"),
        Instant::now(),
    );
    let s0 = std::fs::metadata(&db).map_or(0, |m| m.len());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, w1, ch1, t1) = (
        cpu_ticks(pid),
        io_field(pid, "write_bytes"),
        io_field(pid, "wchar"),
        Instant::now(),
    );
    let s1 = std::fs::metadata(&db).map_or(0, |m| m.len());
    let (hwm, rss) = (status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS"));
    stop(&mut child);
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let wall = (t1 - t0).as_secs_f64();
    let cpu_s = (c1 - c0) as f64 / ticks_per_s;
    let intervals = wall.round().max(1.0);
    println!(
        "daemon, {PROCS} active processes, 1 s interval, {wall:.0} s: CPU {cpu_s:.2} s = {:.2}% of one core; \
         {:.0} bytes/interval written to disk (write_bytes), {:.0} bytes/interval passed to write (wchar); \
         file {s0} -> {s1} bytes; memory VmHWM {hwm} kB, VmRSS {rss} kB (config: {text:?})",
        100.0 * cpu_s / wall,
        (w1 - w0) as f64 / intervals,
        (ch1 - ch0) as f64 / intervals,
    );
}
