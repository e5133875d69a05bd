//! Running child processes: every command xtask runs for the user is echoed
//! first, so a failure can be reproduced by hand.

use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context as _, bail};

/// `program arg1 arg2 ...` as a shell-like line (for echoing, not for a shell).
pub fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Echoes `cmd` to stderr and runs it with inherited stdio; returns its exit
/// status. Fails only if it could not be started.
pub fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    eprintln!("$ {}", display(cmd));
    cmd.status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Like [`status`], but a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; a non-zero exit is an error that
/// quotes the command's stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            stderr.trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// The first executable file named `name` in `$PATH`.
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Says loudly that a test did not run: written to the stderr file
/// descriptor, because libtest captures `eprintln!` of passing tests and a
/// skip must be seen. (Callers fail under `CI` before getting here.)
#[cfg(test)]
pub fn say_skipped(msg: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("\n*** SKIPPED: {msg} ***\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_program_and_args() {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--release", "-p", "netmon-tests"]);
        assert_eq!(display(&cmd), "cargo test --release -p netmon-tests");
    }

    #[test]
    fn run_reports_a_failing_command() {
        let err = run(Command::new("false").stdout(Stdio::null()))
            .err()
            .unwrap_or_else(|| panic!("`false` must fail"));
        assert!(err.to_string().contains("`false` failed"), "{err}");
    }

    #[test]
    fn output_captures_stdout() {
        let out = output(Command::new("echo").arg("hello"))
            .unwrap_or_else(|e| panic!("echo failed: {e:#}"));
        assert_eq!(out, "hello\n");
    }

    #[test]
    fn find_in_path_finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-netmon-xtask").is_none());
    }
}
