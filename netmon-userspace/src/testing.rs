//! Test support shared by the unit tests and, through `#[path]`, the
//! integration tests in `tests/`: how a test that needs something this
//! machine may lack (root, access to another process's fds) says so.
//!
//! Probe the capability first, then call [`require`]. Under `CI=true` a
//! missing capability fails the test: CI must run everything, never pass an
//! empty test. Elsewhere the skip is written to the stderr file descriptor
//! directly (libtest captures `eprintln!` of passing tests, so a skip would
//! be silent) and the test returns.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::io::Write as _;

/// True when `available`; otherwise fails under `CI=true`, or says loudly
/// that `test` did not run because it lacks `what` and returns false.
#[track_caller]
#[must_use]
pub fn require(available: bool, test: &str, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs {what}, which this machine lacks; under CI=true every test must run"
    );
    let msg = format!("\n*** SKIPPED: `{test}` did not run: it needs {what}. ***\n");
    let _ = std::io::stderr().write_all(msg.as_bytes());
    false
}

/// True when running as root (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
