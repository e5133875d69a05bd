//! Workload processes: `netmon-workload` (or any program) started inside the
//! test's cgroup and, optionally, a network namespace; killed and reaped on
//! drop.
//!
//! The child joins the cgroup and the namespace between `fork` and `exec`
//! (`pre_exec`), so every socket it ever creates belongs to both. Its stdout
//! is read line by line on a thread; [`Workload::wait_event`] waits for a
//! [`Report`] line with a deadline, so no test can hang on a workload.

use std::{
    ffi::OsStr,
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use crate::{
    cgroup::CgroupGuard,
    netns::Netns,
    report::{DONE, Report},
};

/// Default deadline for a workload event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running workload process.
#[derive(Debug)]
pub struct Workload {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    exited: Option<ExitStatus>,
}

impl Workload {
    /// Starts `exe ARGS` in `cgroup` and, if given, the network namespace
    /// `netns`, with piped stdin and stdout (stderr is inherited).
    #[track_caller]
    #[must_use]
    pub fn spawn<I, S>(exe: &Path, args: I, cgroup: &CgroupGuard, netns: Option<&Netns>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(exe);
        cmd.args(args);
        let name = crate::cmd::describe(&cmd);
        let procs = OpenOptions::new()
            .write(true)
            .open(cgroup.procs_file())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", cgroup.procs_file().display()));
        let ns: Option<File> = netns.map(Netns::open);
        let procs_fd = procs.as_raw_fd();
        let ns_fd = ns.as_ref().map(AsRawFd::as_raw_fd);
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only async-signal-safe system calls (prctl, write, setns) on
        // file descriptors that stay open in the parent until spawn returns
        // (`procs` and `ns` are dropped after it). It allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with the test thread that started it, should the test
                // process be killed before its guards run.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process (this child) into the cgroup.
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = ns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{name}`: {e}"));
        drop((procs, ns));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            name,
            child,
            stdin,
            lines,
            exited: None,
        }
    }

    /// The workload's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `timeout`) for a report line with `event` and returns it;
    /// panics on timeout or if the workload ends first.
    #[track_caller]
    pub fn wait_event_for(&mut self, event: &str, timeout: Duration) -> Report {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => match serde_json::from_str::<Report>(&line) {
                    Ok(report) if report.event == event => return report,
                    Ok(_) => {}
                    Err(_) => eprintln!("[{}] {line}", self.name),
                },
                Err(RecvTimeoutError::Timeout) => {
                    panic!("`{}`: no \"{event}\" within {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    panic!(
                        "`{}` ended ({status}) before printing \"{event}\"",
                        self.name
                    )
                }
            }
        }
    }

    /// [`Self::wait_event_for`] with [`EVENT_TIMEOUT`].
    #[track_caller]
    pub fn wait_event(&mut self, event: &str) -> Report {
        self.wait_event_for(event, EVENT_TIMEOUT)
    }

    /// Waits for the `done` report and for the process to exit successfully.
    #[track_caller]
    pub fn wait_done(&mut self) -> Report {
        let report = self.wait_event(DONE);
        let status = self.wait_exit(EVENT_TIMEOUT);
        assert!(status.success(), "`{}` exited with {status}", self.name);
        report
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Sends one line to the workload's stdin.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of `{}` closed", self.name));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to `{}`: {e}", self.name));
    }

    /// Waits up to `timeout` for the process to exit; panics (after killing
    /// it) if it does not.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                Ok(None) => panic!("`{}` still running after {timeout:?}", self.name),
                Err(e) => panic!("waiting for `{}`: {e}", self.name),
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Still running: the test failed or gave up on it.
        if let Err(e) = self.child.kill() {
            eprintln!("netmon-tests: cannot kill `{}`: {e}", self.name);
        }
        if let Err(e) = self.child.wait() {
            eprintln!("netmon-tests: cannot reap `{}`: {e}", self.name);
        }
    }
}
