//! Crash safety: the daemon is SIGKILLed at random points 50 times while
//! simulated traffic runs, and restarted each time. The store must open
//! every time and the final totals must equal the ground truth exactly.
//!
//! The simulated "kernel" lives outside the daemon process (a pure function
//! of the script, the wall clock and a state file; see
//! `netmon::source::sim`), as the real pinned maps outlive a daemon crash.
//! Closed sockets in the script send nothing after their close tick, so the
//! one window the drain documents as unclosable (bytes arriving on a closed,
//! quiescent socket between retire and commit, drain invariant 3) is not
//! exercised: with it, exact totals could not be promised.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmon::query::scan::tier_sums;
use netmon::source::sim::{Script, ScriptBuilder, SimSource, SimState, per_tick};
use netmon::store::{DaemonEvent, Retention, Store, Tier};

mod query_support;

const TICK_MS: u64 = 20;
const KILLS: usize = 50;

fn script() -> Script {
    let mut b = ScriptBuilder::new(TICK_MS);
    let mut rng = fastrand::Rng::with_seed(42);
    let procs: Vec<_> = (0..6)
        .map(|i| {
            b.process(
                1000 + i,
                100 + u64::from(i),
                &format!("app{i}"),
                0..=u64::MAX,
            )
        })
        .collect();
    // Long-lived sockets.
    for (i, p) in procs.iter().enumerate() {
        let cookie = 1 + i as u64;
        b.socket(cookie, Some(*p), None).flow(
            cookie,
            &format!("203.0.113.{}:443", i + 1),
            0..=600,
            per_tick(2, 1000 + i as u64),
            per_tick(3, 2000),
        );
    }
    // Short sockets opening and closing all the time (retire under fire).
    for c in 0..300u64 {
        let from = rng.u64(0..580);
        let to = from + rng.u64(0..20);
        let p = procs[rng.usize(..procs.len())];
        let cookie = 100 + c;
        b.socket(cookie, Some(p), Some(to + rng.u64(0..3))).flow(
            cookie,
            &format!("192.168.{}.{}:80", c % 7, c % 200 + 1),
            from..=to,
            per_tick(1, 100 + c),
            per_tick(1, 3 * c),
        );
    }
    b.overflow(100..=400, per_tick(1, 64), per_tick(1, 32), 1);
    b.build().expect("valid script")
}

fn daemon_command(dir: &Path, script: &Path, db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netmon"));
    cmd.arg("daemon")
        .arg("--simulate")
        .arg(script)
        .arg("--db")
        .arg(db)
        .args(["--interval", "50ms", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--socket")
        .arg(dir.join("netmon.sock"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .expect("log file");
    cmd.stdout(Stdio::null())
        .stderr(log)
        .env("RUST_LOG", "info");
    cmd
}

/// Waits (at most 60 s from `since`) until a daemon listens in `dir`.
fn wait_listening(dir: &Path, since: Instant) {
    while std::os::unix::net::UnixStream::connect(dir.join("netmon.sock")).is_err() {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the daemon never listened (see daemon.log)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    nix::sys::signal::kill(pid, signal).expect("signal delivered");
}

#[test]
fn sigkill_fifty_times_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.toml"), "[http]\nlisten = []\n").expect("config");
    let script_path = dir.path().join("traffic.toml");
    let script = script();
    script.save(&script_path).expect("script saved");
    let db: PathBuf = dir.path().join("netmon.redb");
    let mut rng = fastrand::Rng::with_seed(0x5eed);

    // Kill points are spread from start-up to a few intervals into the run.
    // The first run measures how long a start takes on this machine (it
    // listens once its store and source are open), so a loaded machine
    // stretches the range instead of killing every run before it drains.
    let mut kill_window = 300;
    for i in 0..KILLS {
        let started = Instant::now();
        let mut child = daemon_command(dir.path(), &script_path, &db)
            .spawn()
            .expect("daemon starts");
        if i == 0 {
            wait_listening(dir.path(), started);
            let ready = u64::try_from(started.elapsed().as_millis()).expect("ms");
            kill_window = kill_window.max(2 * ready + 100);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(20..kill_window)));
        kill(&mut child, nix::sys::signal::Signal::SIGKILL);
        let status = child.wait().expect("daemon reaped");
        assert!(
            !status.success(),
            "run {i}: the daemon exited by itself: {status:?} (see daemon.log)"
        );
        // The store opens after every crash.
        if db.exists() {
            Store::open(&db, Retention::default())
                .unwrap_or_else(|e| panic!("run {i}: store does not open: {e:?}"));
        }
    }

    // Let the script finish, then stop cleanly (final drain).
    let state: SimState = serde_json::from_slice(
        &std::fs::read(SimSource::state_path_for(&script_path)).expect("sim state exists"),
    )
    .expect("sim state parses");
    let end = state.start_ms + (script.last_tick() + 5) * TICK_MS;
    let mut child = daemon_command(dir.path(), &script_path, &db)
        .spawn()
        .expect("daemon starts");
    // Ready (its signal handlers are installed before it listens), so the
    // SIGTERM below asks for a clean stop even on a slow machine.
    wait_listening(dir.path(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    while netmon::drain::Clock::now_ms(&netmon::drain::SystemClock) < end + 300
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().expect("daemon reaped");
    assert!(status.success(), "clean stop: {status:?}");

    let (mut store, _) = Store::open(&db, Retention::default()).expect("store opens");
    let truth = script.truth(0..=u64::MAX);
    let totals = query_support::by_process(&mut store, &(0..u64::MAX / 2));
    assert_eq!(totals, truth.per_process, "totals after {KILLS} crashes");
    // Remote bytes go through the snapshot's pending pieces (drain
    // invariant 8): rows + pieces exact after the crashes too.
    let remotes = query_support::by_remote(&mut store, &(0..u64::MAX / 2));
    assert_eq!(
        remotes, truth.per_remote,
        "remote totals after {KILLS} crashes"
    );
    for tier in Tier::ALL {
        assert_eq!(
            tier_sums(&mut store, tier).expect("sums"),
            truth.per_process_class,
            "tier {tier:?}"
        );
    }
    let events = store.events(&(0..u64::MAX / 2)).expect("events");
    let starts = events
        .iter()
        .filter(|(_, e)| matches!(e, DaemonEvent::Start { .. }))
        .count();
    let stops = events
        .iter()
        .filter(|(_, e)| matches!(e, DaemonEvent::Stop { .. }))
        .count();
    assert_eq!(stops, 1, "only the last run stopped cleanly");
    assert!(
        starts > KILLS / 2,
        "most runs got far enough to record their start ({starts}; kills within {kill_window} ms)"
    );
}
