//! Who traffic belongs to: a process's identity ([`ProcessId`]), what is
//! known about it ([`ProcessInfo`]) and the two pseudo-processes traffic of
//! no process is kept under ([`UNATTRIBUTED`], [`OVERFLOW`]).
//!
//! # Persisted format
//!
//! A [`ProcessInfo`] is stored as JSON (serde's default representation of
//! the struct, field names as written here) inside the store's process
//! records (`crate::store::layout::PROCESSES`), in alert state and in the
//! socket API's documents, e.g.
//!
//! ```json
//! {"id":{"pid":4242,"start_ticks":812345},"comm":"curl",
//!  "exe":"/usr/bin/curl","cmdline":"curl https://example.org","uid":1000,
//!  "user":"alice","ppid":4100,"cgroup":"/user.slice/user-1000.slice"}
//! ```
//!
//! Compatibility rule, so every netmon reads every file written before and
//! after it: fields are never renamed, removed or retyped; a new field is
//! added as an `Option` (a missing field reads as `None`, so older records
//! still load) and unknown fields are ignored on read (no
//! `deny_unknown_fields`, so an older netmon reads a newer record). A change
//! that cannot follow this needs a new table version and a migration
//! (`crate::store::schema`). `tests::json_format_is_stable` holds the rule.

/// A process's identity: a reused pid is a different process.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProcessId {
    /// Process id (tgid). 0 for traffic no process owns (kernel sockets,
    /// sockets whose owner could not be found).
    pub pid: u32,
    /// Start time in clock ticks since boot, as `/proc/PID/stat` field 22
    /// shows it (the kernel's `start_boottime` / (1e9 / USER_HZ)).
    pub start_ticks: u64,
}

/// What is known about a process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    /// Identity.
    pub id: ProcessId,
    /// Command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Executable path, if the process was alive when first seen.
    pub exe: Option<String>,
    /// Command line, arguments joined by spaces.
    pub cmdline: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// User name of `uid`, if it has one.
    pub user: Option<String>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// cgroup v2 path (from `/proc/PID/cgroup`), e.g. `/system.slice/nginx.service`.
    pub cgroup: Option<String>,
}

/// What `readlink /proc/PID/exe` appends when the file was removed or
/// replaced after the process started (a package upgrade).
const DELETED_SUFFIX: &str = " (deleted)";

impl ProcessInfo {
    /// The default app name: the one definition every grouping, filter and
    /// reader uses when no `[apps]` rule of the config matches
    /// (`crate::query::apps`).
    ///
    /// It is the executable's file name — `/usr/bin/python3.11` gives
    /// `python3.11` whether the program was started as `python3` or
    /// `python3.11`, whatever its threads call themselves (`comm`), and also
    /// after its file was replaced (`" (deleted)"` is dropped). Only when the
    /// executable is unknown (a process that started before netmon loaded
    /// and exited before a drain saw it; a kernel socket) is it `comm`.
    #[must_use]
    pub fn default_app(&self) -> String {
        self.exe
            .as_deref()
            .map(|e| e.strip_suffix(DELETED_SUFFIX).unwrap_or(e))
            .and_then(|e| e.rsplit('/').next())
            .filter(|s| !s.is_empty())
            .map_or_else(|| self.comm.clone(), str::to_owned)
    }

    /// `self` with each unknown field (exe, cmdline, user, parent, cgroup)
    /// taken from `older`, an earlier view of the same process: a process
    /// seen alive once and resolved again after it exited (a restarted
    /// daemon) keeps what was known.
    #[must_use]
    pub fn with_missing_from(mut self, older: &Self) -> Self {
        if self.id != older.id {
            return self;
        }
        let fill = |new: &mut Option<String>, old: &Option<String>| {
            if new.is_none() {
                new.clone_from(old);
            }
        };
        fill(&mut self.exe, &older.exe);
        fill(&mut self.cmdline, &older.cmdline);
        fill(&mut self.user, &older.user);
        fill(&mut self.cgroup, &older.cgroup);
        if self.ppid.is_none() {
            self.ppid = older.ppid;
        }
        self
    }
}

/// The pseudo-process traffic with no known owner is stored under.
pub const UNATTRIBUTED: ProcessId = ProcessId {
    pid: 0,
    start_ticks: 0,
};
/// `comm` of [`UNATTRIBUTED`].
pub const UNATTRIBUTED_COMM: &str = "[unattributed]";
/// The pseudo-process the kernel's overflow counters (traffic that found the
/// flow map full) are stored under. Same pid as [`UNATTRIBUTED`]; the start
/// time tells them apart.
pub const OVERFLOW: ProcessId = ProcessId {
    pid: 0,
    start_ticks: u64::MAX,
};
/// `comm` of [`OVERFLOW`].
pub const OVERFLOW_COMM: &str = "[overflow]";

/// A pseudo-process's info.
#[must_use]
pub fn pseudo_process(id: ProcessId, comm: &str) -> ProcessInfo {
    ProcessInfo {
        id,
        comm: comm.to_owned(),
        exe: None,
        cmdline: None,
        uid: 0,
        user: None,
        ppid: None,
        cgroup: None,
    }
}

/// The info of [`UNATTRIBUTED`]: the owner used when a resolver has nothing
/// for a socket.
#[must_use]
pub fn unattributed() -> ProcessInfo {
    pseudo_process(UNATTRIBUTED, UNATTRIBUTED_COMM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, exe: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid,
                start_ticks: 9,
            },
            comm: "c".into(),
            exe: exe.map(Into::into),
            cmdline: exe.map(|e| format!("{e} --flag")),
            uid: 0,
            user: exe.map(|_| "root".into()),
            ppid: exe.map(|_| 1),
            cgroup: exe.map(|_| "/a".into()),
        }
    }

    #[test]
    fn missing_fields_come_from_the_same_process_only() {
        let old = info(5, Some("/bin/x"));
        assert_eq!(info(5, None).with_missing_from(&old), old);
        // Known fields win over older ones.
        let newer = info(5, Some("/bin/y"));
        assert_eq!(newer.clone().with_missing_from(&old), newer);
        // Another process (pid reused) takes nothing.
        assert_eq!(info(6, None).with_missing_from(&old), info(6, None));
    }

    #[test]
    fn json_format_is_stable() {
        // Field names and shapes as stored (see the module doc): a change
        // here breaks every file written before it.
        let full = info(5, Some("/bin/x"));
        assert_eq!(
            serde_json::to_string(&full).expect("serializes"),
            r#"{"id":{"pid":5,"start_ticks":9},"comm":"c","exe":"/bin/x","cmdline":"/bin/x --flag","uid":0,"user":"root","ppid":1,"cgroup":"/a"}"#
        );
        // An older record without the optional fields, and a newer one with
        // a field this version does not know, both read.
        let old: ProcessInfo =
            serde_json::from_str(r#"{"id":{"pid":5,"start_ticks":9},"comm":"c","uid":0}"#)
                .expect("older record reads");
        assert_eq!(old, info(5, None));
        let newer: ProcessInfo = serde_json::from_str(
            r#"{"id":{"pid":5,"start_ticks":9},"comm":"c","uid":0,"added_later":[1,2]}"#,
        )
        .expect("newer record reads");
        assert_eq!(newer, info(5, None));
    }
}
