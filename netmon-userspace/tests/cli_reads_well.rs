//! A user's stumbles, one test each (all found by trying the CLI as a new
//! user would):
//! - a bad window (`--until` before `--since`, `--since` in the future)
//!   answered "0 groups" with exit 0, and `procs` listed `[unattributed]`;
//!   now exit 2 with one line;
//! - `--db FILE` with a daemon running answered with the daemon's data; a
//!   query on an empty file turned it into a 1 MB database; now `--db`
//!   reads that file only, read-only, and never creates or writes one;
//! - `export --help` said the default was a table but printed NDJSON;
//! - help texts showed rustdoc links (`[`crate::api`]`);
//! - the daemon's log written to a file carried ANSI colour codes;
//! - the man page cited `netmon-load(1)` and others no one could install;
//! - as non-root, `snapshot`, `status` and `unload` all said "loading eBPF
//!   programs needs root";
//! - `unload --pin-dir DIR` on an ordinary directory removed it;
//! - `history` printed one row per 5 s (720 rows for an hour) with idle
//!   steps as zero traffic and rates over the whole step.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cli_support::{BIN, C, Daemon, HistoryDoc, Scenario, UsageDoc, run_with};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn one_line_error(out: &Output, code: i32) -> String {
    let e = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    assert!(e.starts_with("netmon: "), "{e}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    e
}

#[test]
fn bad_windows_exit_2_with_one_line() {
    let nowhere = [
        "--socket",
        "/nonexistent/netmon.sock",
        "--db",
        "/nonexistent/db",
    ];
    for cmd in ["usage", "history", "procs", "export"] {
        let out = run_with(&[cmd, "--since", "1h", "--until", "2h"], &nowhere);
        let e = one_line_error(&out, 2);
        assert!(e.contains("before --since"), "{cmd}: {e}");
        let out = run_with(&[cmd, "--since", "2999-01-01T00:00:00Z"], &nowhere);
        let e = one_line_error(&out, 2);
        assert!(e.contains("in the future"), "{cmd}: {e}");
    }
}

fn bytes_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn db_reads_that_file_only_and_never_writes() {
    // A: a finished history (daemon stopped); B: a running daemon with
    // other traffic.
    let a = Scenario::standard();
    let mut da = Daemon::start(&a, "");
    da.settle(&a);
    da.stop();
    let mut b = Scenario::standard();
    b.flows.truncate(1);
    let db_ = Daemon::start(&b, "");
    db_.settle(&b);

    let a_db = da.db();
    let before = bytes_of(&a_db);
    let doc: UsageDoc = db_.json(&[
        "usage",
        "--since",
        "1h",
        "--by",
        "class",
        "--format",
        "json",
        "--db",
        a_db.to_str().unwrap(),
    ]);
    assert_eq!(
        (doc.total.tx, doc.total.rx),
        a.grand_total(),
        "--db answers from that file, not the running daemon"
    );
    assert!(doc.exact);
    assert_eq!(bytes_of(&a_db), before, "reading never writes the file");

    // The running daemon's own file is in use: said so, not read.
    let out = db_.run(&["usage", "--db", db_.db().to_str().unwrap()]);
    let e = one_line_error(&out, 1);
    assert!(e.contains("in use"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.path().join("missing.redb");
    for (path, what) in [
        (empty.as_path(), "not a netmon database"),
        (missing.as_path(), "no database at"),
        (dir.path(), "directory"),
    ] {
        let out = db_.run(&["procs", "--db", path.to_str().unwrap()]);
        let e = one_line_error(&out, 1);
        assert!(e.contains(what), "{}: {e}", path.display());
    }
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "still empty");
    assert!(!missing.exists(), "no file created");
}

#[test]
fn helps_say_what_happens_without_rustdoc_links() {
    let subs = [
        "load",
        "unload",
        "snapshot",
        "status",
        "daemon",
        "top",
        "usage",
        "history",
        "procs",
        "export",
        "completions",
        "man",
    ];
    for sub in subs {
        let out = run_with(&[sub, "--help"], &[]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("[`"), "{sub} --help: {text}");
        assert!(!text.contains("crate::"), "{sub} --help: {text}");
    }
    let out = run_with(&["export", "--help"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let format = text
        .split("--format")
        .nth(1)
        .and_then(|t| t.split("\n      --").next())
        .unwrap();
    assert!(format.contains("NDJSON"), "{format}");
    assert!(!format.contains("table on a terminal"), "{format}");
}

#[test]
fn daemon_log_in_a_file_has_no_colour() {
    let s = Scenario::standard();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("script.toml"), s.toml()).unwrap();
    std::fs::write(p.join("config.toml"), cli_support::with_http_off("")).unwrap();
    let log = std::fs::File::create(p.join("log")).unwrap();
    let mut child = cli_support::daemon_command(p)
        .env("NETMON_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    cli_support::wait_for_socket(&p.join("sock"));
    // Let it drain a few times, then stop it the usual way.
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(p.join("log")).unwrap_or_default()
    );
    let text = std::fs::read_to_string(p.join("log")).unwrap();
    assert!(text.contains("INFO"), "the log has lines: {text}");
    assert!(!text.contains('\u{1b}'), "no escape codes: {text:?}");
}

#[test]
fn man_pages_cited_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with(&["man", "--out-dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let re = regex::Regex::new(r"(netmon(?:\\-[a-z]+)*)\((\d)\)").unwrap();
    let mut cited = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for cap in re.captures_iter(&page) {
            let name = format!("{}.{}", cap[1].replace("\\-", "-"), &cap[2]);
            assert!(dir.path().join(&name).exists(), "{name} is cited");
            cited += 1;
        }
    }
    assert!(dir.path().join("netmon.1").exists());
    assert!(dir.path().join("netmon-usage.1").exists());
    assert!(cited >= 10, "the main page cites the subcommand pages");
    assert!(!dir.path().join("netmon-help.1").exists());
}

/// `netmon ARGS` as an unprivileged user (nobody) when we are root.
fn as_nobody(args: &[&str]) -> Output {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(args)
        .env("NETMON_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn non_root_is_told_what_the_command_needs() {
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pins");
    for (args, says) in [
        (
            vec!["snapshot", "--pin-dir", pins.to_str().unwrap()],
            "reading the kernel counters",
        ),
        (vec!["status"], "netmon status"),
        (
            vec!["unload", "--pin-dir", pins.to_str().unwrap()],
            "netmon unload",
        ),
    ] {
        let out = as_nobody(&args);
        let e = one_line_error(&out, 1);
        assert!(
            e.contains("needs root") && e.contains(says),
            "{args:?}: {e}"
        );
        assert!(!e.contains("loading eBPF"), "{args:?}: {e}");
    }
}

#[test]
fn unload_never_removes_an_ordinary_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("not-bpffs");
    std::fs::create_dir_all(pins.join("maps")).unwrap();
    std::fs::write(pins.join("keep.txt"), b"mine").unwrap();
    let out = run_with(&["unload", "--pin-dir", pins.to_str().unwrap()], &[]);
    let e = one_line_error(&out, 1);
    assert!(pins.join("keep.txt").exists() && pins.join("maps").exists());
    assert!(!e.contains("removed"), "{e}");
    if nix::unistd::geteuid().is_root() {
        assert!(e.contains("not on a bpf filesystem"), "{e}");
    }
}

#[test]
fn history_fills_a_screen_with_gaps_and_honest_rates() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, "");
    d.settle(&s);
    // A table without --step: a screenful, not 720 rows.
    let out = d.run_width(&["history", "--since", "1h", "--format", "table"], 100);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows = text.lines().skip(1).take_while(|l| !l.is_empty()).count();
    assert!((30..=61).contains(&rows), "{rows} rows:\n{text}");
    assert!(
        text.contains("step 1m") || text.contains("step 2m"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.ends_with(" -")), "gaps shown as -");
    // JSON: steps without data are null, not zero; the rest is the truth.
    let h: HistoryDoc = d.json(&[
        "history", "--since", "10m", "--step", "1m", "--format", "json",
    ]);
    assert!(h.points.iter().any(|p| p.tx.is_none() && p.rx.is_none()));
    assert!(h.points.iter().all(|p| p.tx.is_some() == p.rx.is_some()));
    let sum = h
        .points
        .iter()
        .filter_map(|p| p.tx.zip(p.rx))
        .fold((C::default(), C::default()), cli_support::add);
    assert_eq!(sum, s.grand_total());
    // A day step over two hours covers two hours: what rates divide by.
    let h: HistoryDoc = d.json(&[
        "history", "--since", "2h", "--step", "1d", "--format", "json",
    ]);
    let span: u64 = h.points.iter().map(|p| p.span_ms).sum();
    assert_eq!(span, 2 * 3_600_000);
    assert_eq!((h.total.tx, h.total.rx), s.grand_total());
}
