//! Running things as root: directly when xtask is root, else through
//! `sudo -E` (keeps `NETMON_BIN` and friends), else not at all.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;

use crate::cmd;

/// How xtask can run a program as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// xtask's effective uid is 0.
    Root,
    /// Not root, but `sudo` is on `PATH` (it may ask for a password).
    Sudo(PathBuf),
    /// Not root and no sudo.
    Unavailable,
}

impl Privilege {
    /// The current process's situation.
    pub fn detect() -> Self {
        if is_root() {
            Self::Root
        } else if let Some(sudo) = cmd::find_in_path("sudo") {
            Self::Sudo(sudo)
        } else {
            Self::Unavailable
        }
    }

    /// The prefix (program and arguments) to put before a command to run it
    /// as root; empty when already root. Fails, naming `what`, without a way
    /// to become root.
    pub fn prefix(&self, what: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Self::Root => Ok(Vec::new()),
            Self::Sudo(sudo) => Ok(vec![sudo.to_string_lossy().into_owned(), "-E".to_owned()]),
            Self::Unavailable => bail!(
                "{what} needs root (it loads eBPF programs) and sudo is not installed: run it as root"
            ),
        }
    }

    /// `program args...` to be run as root (see [`Privilege::prefix`]).
    pub fn command(&self, what: &str, program: impl AsRef<OsStr>) -> anyhow::Result<Command> {
        let prefix = self.prefix(what)?;
        Ok(match prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg("--").arg(program);
                command
            }
        })
    }
}

/// Whether the effective user id is 0.
fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions, touches no memory of ours and
    // cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_the_program_itself() {
        let command = Privilege::Root
            .command("netmon", "/bin/netmon")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(cmd::display(&command), "/bin/netmon");
    }

    #[test]
    fn sudo_keeps_the_environment() {
        let command = Privilege::Sudo("/usr/bin/sudo".into())
            .command("netmon", "/bin/netmon")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(cmd::display(&command), "/usr/bin/sudo -E -- /bin/netmon");
    }

    #[test]
    fn without_root_or_sudo_the_error_says_root_is_needed() {
        let err = Privilege::Unavailable
            .command("netmon", "/bin/netmon")
            .err()
            .unwrap_or_else(|| panic!("must fail"));
        let msg = err.to_string();
        assert!(
            msg.contains("needs root") && msg.contains("netmon"),
            "{msg}"
        );
    }
}
