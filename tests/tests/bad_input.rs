//! Bad input a user can give `netmon load`: a one-line error naming the
//! problem, a non-zero exit, no panic or backtrace, and nothing attached or
//! pinned afterwards.

use std::{path::Path, process::Command, time::Duration};

use netmon_tests::{cgroup::CgroupGuard, cmd, netmon::netmon_bin, require_root, unique_suffix};

/// Runs netmon with `args`; returns (exit code, stderr).
fn netmon(args: &[&str]) -> (i32, String) {
    let out = cmd::output(
        Command::new(netmon_bin()).args(args),
        Duration::from_secs(60),
    )
    .expect("netmon ran");
    (out.status.code().unwrap_or(-1), out.stderr)
}

fn assert_one_clean_line(stderr: &str, mentions: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got: {stderr:?}"
    );
    assert!(
        lines[0].contains(mentions),
        "error should name {mentions:?}: {stderr:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
}

/// No pin directory (finished or half-built) for `pin_dir` exists.
fn assert_nothing_pinned(pin_dir: &str) {
    assert!(!Path::new(pin_dir).exists(), "{pin_dir} was left behind");
    let name = Path::new(pin_dir)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    for entry in std::fs::read_dir("/sys/fs/bpf")
        .expect("read /sys/fs/bpf")
        .flatten()
    {
        let other = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !other.starts_with(&format!("{name}-loading")),
            "staging dir {other} left behind"
        );
    }
}

#[test]
fn cgroup_that_is_not_cgroup_v2_is_refused() {
    if !require_root("cgroup_that_is_not_cgroup_v2_is_refused") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/netmon-test-bad-{}", unique_suffix());
    let (code, stderr) = netmon(&["load", "--pin-dir", &pin_dir, "--cgroup", "/tmp"]);
    assert_eq!(code, 1, "{stderr}");
    assert_one_clean_line(&stderr, "/tmp is not a cgroup v2 directory");
    assert_nothing_pinned(&pin_dir);
}

#[test]
fn missing_cgroup_is_refused() {
    if !require_root("missing_cgroup_is_refused") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/netmon-test-bad-{}", unique_suffix());
    let (code, stderr) = netmon(&["load", "--pin-dir", &pin_dir, "--cgroup", "/no/such/cgroup"]);
    assert_eq!(code, 1, "{stderr}");
    assert_one_clean_line(&stderr, "/no/such/cgroup");
    assert_nothing_pinned(&pin_dir);
}

#[test]
fn pin_dir_outside_bpffs_is_refused() {
    if !require_root("pin_dir_outside_bpffs_is_refused") {
        return;
    }
    let cg = CgroupGuard::new("bad-pin");
    let pin_dir = format!("/tmp/netmon-test-pins-{}", unique_suffix());
    let cgroup = cg.path().display().to_string();
    let (code, stderr) = netmon(&["load", "--pin-dir", &pin_dir, "--cgroup", &cgroup]);
    assert_eq!(code, 1, "{stderr}");
    assert_one_clean_line(&stderr, "not on a bpf filesystem");
    assert!(!Path::new(&pin_dir).exists(), "{pin_dir} was created");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (code, stderr) = netmon(&["load", "--no-such-flag"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--no-such-flag") && stderr.contains("Usage"),
        "{stderr}"
    );
}

#[test]
fn snapshot_without_a_load_says_so() {
    if !require_root("snapshot_without_a_load_says_so") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/netmon-test-none-{}", unique_suffix());
    let (code, stderr) = netmon(&["snapshot", "--pin-dir", &pin_dir, "--json"]);
    assert_eq!(code, 1, "{stderr}");
    assert_one_clean_line(&stderr, "not loaded");
}
