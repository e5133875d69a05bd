//! Running helper commands (`ip`, `sysctl`, `netmon`) with a time limit.

use std::{
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Time limit for helper commands unless a caller gives another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a helper command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("waiting for `{cmd}`: {source}")]
    Wait {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("`{cmd}` did not finish within {timeout:?} (killed)")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The limit.
        timeout: Duration,
    },
    /// The program exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The command line of `cmd`, for messages.
#[must_use]
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (killing it after `timeout`) and returns what it
/// printed, whatever its exit status.
///
/// # Errors
/// [`CmdError::Spawn`], [`CmdError::Wait`] or [`CmdError::Timeout`].
pub fn output(cmd: &mut Command, timeout: Duration) -> Result<Output, CmdError> {
    let line = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: line.clone(),
            source,
        })?;
    // Readers on their own threads: a child that fills a pipe must not block
    // on a parent that is only polling for its exit.
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Best effort: the child may have exited just now.
                let _ = child.kill();
                let _ = child.wait();
                return Err(CmdError::Timeout { cmd: line, timeout });
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(source) => return Err(CmdError::Wait { cmd: line, source }),
        }
    };
    Ok(Output {
        status,
        stdout: joined(stdout),
        stderr: joined(stderr),
    })
}

/// Runs `cmd` and returns its standard output if it exits successfully.
///
/// # Errors
/// As [`output`], plus [`CmdError::Failed`] for a non-zero exit.
pub fn try_run(cmd: &mut Command, timeout: Duration) -> Result<String, CmdError> {
    let out = output(cmd, timeout)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(CmdError::Failed {
            cmd: describe(cmd),
            status: out.status,
            stderr: out.stderr.trim().to_owned(),
        })
    }
}

/// Runs `cmd` (default time limit) and returns its standard output; panics
/// with the command line and its stderr if it fails.
#[track_caller]
#[must_use]
pub fn run(cmd: &mut Command) -> String {
    try_run(cmd, DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// `run(Command::new(program).args(args))`.
#[track_caller]
pub fn run_args(program: &str, args: &[&str]) -> String {
    run(Command::new(program).args(args))
}

fn reader<R: std::io::Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error ends the output early; the exit status still tells.
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn joined(handle: Option<thread::JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_failure() {
        let out = try_run(
            Command::new("sh").args(["-c", "echo hello"]),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(out.ok().as_deref(), Some("hello\n"));
        let err = try_run(
            Command::new("sh").args(["-c", "echo bad >&2; exit 3"]),
            DEFAULT_TIMEOUT,
        );
        match err {
            Err(CmdError::Failed { stderr, status, .. }) => {
                assert_eq!(stderr, "bad");
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn kills_after_timeout() {
        let start = Instant::now();
        let err = output(Command::new("sleep").arg("10"), Duration::from_millis(100));
        assert!(matches!(err, Err(CmdError::Timeout { .. })), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn large_output_does_not_block() {
        let out = try_run(
            Command::new("sh").args(["-c", "head -c 1000000 /dev/zero | tr '\\0' x"]),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(out.map(|s| s.len()).ok(), Some(1_000_000));
    }
}
