//! The socket server's limits and the CLI's messages when it cannot reach
//! the data: malformed and oversized requests get error replies and the
//! server carries on; no daemon, a daemon on another socket, bad arguments.
mod cli_support;

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;

use cli_support::{Daemon, Scenario, run_with};

#[derive(serde::Deserialize, Debug)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(serde::Deserialize, Debug)]
struct ErrorBody {
    kind: String,
    message: String,
}

#[derive(serde::Deserialize, Debug)]
struct PongReply {
    ok: Pong,
}

#[derive(serde::Deserialize, Debug)]
struct Pong {
    schema_version: u32,
    db: String,
}

#[test]
fn server_survives_bad_requests_and_cli_explains_failures() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, "");
    let sock = d.socket();

    // Permissions: 0660 with group netmon when it exists, else root only.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    let has_group = nix::unistd::Group::from_name("netmon").unwrap().is_some();
    assert_eq!(mode, if has_group { 0o660 } else { 0o600 });

    // Malformed JSON: error reply, and the same connection still answers.
    let (mut conn, line) = cli_support::raw_request(&sock, b"{not json\n");
    let e: ErrorReply = serde_json::from_str(&line).unwrap();
    assert_eq!(e.error.kind, "bad_request");
    conn.get_mut()
        .write_all(b"{\"method\":\"ping\"}\n")
        .unwrap();
    let mut pong = String::new();
    conn.read_line(&mut pong).unwrap();
    let p: PongReply = serde_json::from_str(&pong).unwrap();
    assert_eq!(p.ok.schema_version, 1);
    assert_eq!(std::path::Path::new(&p.ok.db), d.db());

    // Unknown method, unknown grouping, bad filter: error replies.
    for (req, kind) in [
        (&b"{\"method\":\"drop_tables\"}\n"[..], "bad_request"),
        (b"{\"method\":\"usage\",\"from_ms\":0,\"until_ms\":1,\"by\":\"moon\"}\n", "bad_request"),
        (b"{\"method\":\"usage\",\"from_ms\":0,\"until_ms\":1,\"by\":\"app\",\"filters\":[\"x\"]}\n", "bad_request"),
        (b"{\"method\":\"history\",\"from_ms\":0,\"until_ms\":86400000000,\"step_ms\":1}\n", "invalid"),
        // A window that ends before it starts (procs listed [unattributed]).
        (b"{\"method\":\"procs\",\"from_ms\":10,\"until_ms\":5}\n", "bad_request"),
    ] {
        let (_, line) = cli_support::raw_request(&sock, req);
        let e: ErrorReply = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(e.error.kind, kind, "{}: {}", String::from_utf8_lossy(req), e.error.message);
    }

    // Oversized: 70 KiB without a newline gets too_large and a closed connection.
    let big = vec![b'x'; 70 * 1024];
    let (mut conn, line) = cli_support::raw_request(&sock, &big);
    let e: ErrorReply = serde_json::from_str(&line).unwrap();
    assert_eq!(e.error.kind, "too_large");
    let mut rest = String::new();
    assert_eq!(
        conn.read_line(&mut rest).unwrap_or(0),
        0,
        "connection closed after too_large"
    );
    // ... and the server carries on.
    let (_, line) = cli_support::raw_request(&sock, b"{\"method\":\"ping\"}\n");
    assert!(serde_json::from_str::<PongReply>(&line).is_ok(), "{line}");

    // `--db` names the file the daemon holds: said so (the CLI reads the
    // file it is given, never the daemon's answer instead).
    let other = d.dir.path().join("other.sock");
    let out = run_with(
        &["usage", "--since", "1h"],
        &[
            "--socket",
            other.to_str().unwrap(),
            "--db",
            d.db().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by a running netmon daemon"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn without_daemon_or_database_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sock");
    let db = dir.path().join("none.redb");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("db = {:?}\n", db.to_str().unwrap())).unwrap();
    let out = run_with(
        &["usage", "--since", "1h"],
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not running") && err.contains("sudo netmon daemon"),
        "{err}"
    );
    assert!(!db.exists(), "the CLI must not create a database");
    let out = run_with(
        &["usage", "--since", "1h"],
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no database at"), "{err}");
    assert!(!db.exists(), "the CLI must not create a database");
    // Bad arguments: usage message, exit 2.
    let out = run_with(&["usage", "--by", "moon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_with(&["history", "--pid", "1", "--app", "x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_with(&["usage", "--since", "yesterday"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_pipe_ends_quietly() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, "");
    d.settle(&s);
    // 60 000 NDJSON lines; the reader takes one and goes away.
    let mut child = std::process::Command::new(cli_support::BIN)
        .args([
            "history", "--since", "1m", "--step", "1ms", "--format", "ndjson", "--socket",
        ])
        .arg(d.socket())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("\"schema_version\":1"), "{first}");
    drop(out);
    let status = child.wait_with_output().unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        status.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn completions_and_man_page() {
    let out = run_with(&["completions", "bash"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("usage") && text.contains("--since"),
        "bash completion lists commands and flags"
    );
    let out = run_with(&["man"], &[]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(".ie"),
        "roff"
    );
    let out = run_with(&["man", "usage"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("netmon\\-usage"));
    assert_eq!(run_with(&["man", "nope"], &[]).status.code(), Some(1));
}
