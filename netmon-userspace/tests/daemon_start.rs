//! Regressions of the daemon's start and of who may read its files:
//! - a failed start left an empty `.redb` and the socket behind; now it
//!   removes what it made (and a store that is refused creates nothing);
//! - the history was world-readable (`-rw-r--r--` in a 0755 directory); now
//!   the database and a directory the daemon creates are closed to other
//!   users, and an existing database is fixed on start;
//! - "not readable by this user" was printed for a database any user could
//!   read; the message now says what is true.
mod cli_support;

#[path = "../src/testing.rs"]
mod testing;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cli_support::{BIN, Daemon, Scenario};

fn daemon(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .arg("daemon")
        .args(args)
        .args(["--interval", "50ms"])
        .env("NETMON_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run netmon daemon")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    std::fs::write(t.join("config.toml"), cli_support::with_http_off("")).expect("config");
    let before = entries(t);
    // The source fails after the store and the socket were made.
    let out = daemon(&[
        "--simulate".as_ref(),
        t.join("no-such-script.toml").as_os_str(),
        "--db".as_ref(),
        t.join("var/lib/netmon.redb").as_os_str(),
        "--socket".as_ref(),
        t.join("run/netmon.sock").as_os_str(),
        "--config".as_ref(),
        t.join("config.toml").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-script.toml"), "{err}");
    assert_eq!(entries(t), before, "no database, directory or socket left");

    // A refused store: nothing else is created, the file is untouched.
    std::fs::write(t.join("notes.txt"), b"not a database").expect("file");
    let out = daemon(&[
        "--simulate".as_ref(),
        t.join("no-such-script.toml").as_os_str(),
        "--db".as_ref(),
        t.join("notes.txt").as_os_str(),
        "--socket".as_ref(),
        t.join("netmon.sock").as_os_str(),
        "--config".as_ref(),
        t.join("config.toml").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a netmon database"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!t.join("netmon.sock").exists());
    assert_eq!(
        std::fs::read(t.join("notes.txt")).expect("read"),
        b"not a database"
    );
}

#[test]
fn a_second_daemon_on_a_live_socket_creates_nothing() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, "");
    let other = tempfile::tempdir().expect("tempdir");
    let out = daemon(&[
        "--simulate".as_ref(),
        d.dir.path().join("script.toml").as_os_str(),
        "--db".as_ref(),
        other.path().join("new.redb").as_os_str(),
        "--socket".as_ref(),
        d.socket().as_os_str(),
        "--config".as_ref(),
        d.dir.path().join("config.toml").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    assert!(entries(other.path()).is_empty(), "no empty database left");
    // The first daemon still answers.
    let (_, line) = cli_support::raw_request(&d.socket(), b"{\"method\":\"ping\"}\n");
    assert!(line.contains("\"ok\""), "{line}");
}

#[test]
fn the_database_is_closed_to_other_users_and_fixed_on_start() {
    let s = Scenario::standard();
    let mut d = Daemon::start(&s, "");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
    assert_eq!(mode(&d.db()) & 0o007, 0, "{:o}", mode(&d.db()));
    d.stop();
    std::fs::set_permissions(d.db(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    d.spawn();
    assert_eq!(
        mode(&d.db()) & 0o007,
        0,
        "fixed on start: {:o}",
        mode(&d.db())
    );
    assert_eq!(mode(&d.db()) & 0o022, 0, "nobody but the owner writes");
}

/// Runs `netmon usage` as user nobody against `db`, no daemon answering.
fn usage_as_nobody_output(bin: &Path, dir: &Path, db: &Path) -> std::process::Output {
    Command::new(bin)
        .args(["usage", "--since", "1h", "--format", "json", "--socket"])
        .arg(dir.join("no.sock"))
        .arg("--db")
        .arg(db)
        .uid(65534)
        .gid(65534)
        .env("NETMON_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run netmon as nobody")
}

fn usage_as_nobody(bin: &Path, dir: &Path, db: &Path) -> String {
    let out = usage_as_nobody_output(bin, dir, db);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_not_readable_message_tells_the_truth() {
    let test = "the_not_readable_message_tells_the_truth";
    if !testing::require(
        testing::is_root(),
        test,
        "root (to run the CLI as another user)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = t.join("netmon");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let db = t.join("netmon.redb");
    drop(netmon::store::Store::open(&db, netmon::store::Retention::default()).expect("store"));

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = usage_as_nobody(&bin, t, &db);
    assert!(
        err.contains("is not readable by this user") && err.contains("mode 600"),
        "{err}"
    );

    // A file the user may read is read (read-only, `--db` never writes).
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = usage_as_nobody_output(&bin, t, &db);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("usage JSON");
    assert!(doc.get("schema_version").is_some(), "{doc}");

    let private = t.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let hidden = private.join("netmon.redb");
    std::fs::copy(&db, &hidden).expect("copy");
    let err = usage_as_nobody(&bin, t, &hidden);
    assert!(err.contains("which this user cannot enter"), "{err}");
    assert!(!err.contains("there is no database"), "{err}");
}
