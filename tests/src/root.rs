//! The root check every kernel test starts with.

use std::io::Write as _;

/// True when the suite can run (effective uid 0).
///
/// Not root: prints `SKIPPED: not root` to stderr and returns false, so the
/// test returns at once. Not root with `CI=true`: panics, because in CI the
/// kernel suite must run, never skip quietly.
#[track_caller]
#[must_use]
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: the kernel suite must run as root in CI (CI=true), but euid is {euid}"
    );
    // Written to the stderr file descriptor directly, not with `eprintln!`:
    // libtest captures the macros' output of passing tests, and a skip must
    // be seen.
    let msg = format!(
        "\n*** SKIPPED: not root (euid {euid}): kernel test `{test}` did not run. \
         Run `cargo xtask test` as root. ***\n"
    );
    let _ = std::io::stderr().write_all(msg.as_bytes());
    false
}
