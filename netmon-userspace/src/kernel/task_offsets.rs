//! Offsets into the running kernel's `struct task_struct`, read from its BTF.
//!
//! The `sock_create` program records the creating process's start time as
//! `current->group_leader->start_boottime`; the layout of `task_struct`
//! changes with every kernel build, so the loader reads the two member
//! offsets from `/sys/kernel/btf/vmlinux` and writes them into the programs'
//! read-only data before load (all zero = unknown: no start time recorded,
//! userspace falls back to `/proc`).

pub(crate) mod btf;

use std::path::{Path, PathBuf};

use btf::Btf;
pub use btf::BtfError;
use netmon_common::TaskOffsets;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Errors finding the `task_struct` offsets.
#[derive(Debug, thiserror::Error)]
pub enum TaskOffsetsError {
    /// The BTF file could not be read (kernel built without
    /// `CONFIG_DEBUG_INFO_BTF`, or no sysfs).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The BTF is malformed or of an unknown newer format.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: BtfError,
    },
    /// No complete `struct task_struct` in the BTF.
    #[error("no struct task_struct in the kernel's BTF")]
    NoTaskStruct,
    /// `task_struct` has no member of that name.
    #[error("task_struct has no member {0}")]
    NoMember(&'static str),
    /// A member has an unexpected type or position (not byte aligned, not a
    /// pointer / not 8 bytes, offset beyond `u32`).
    #[error("task_struct.{0} has an unexpected type or offset")]
    BadMember(&'static str),
}

/// Reads the offsets of `task_struct.group_leader` and
/// `task_struct.start_boottime` from the running kernel's BTF.
///
/// # Errors
/// When `/sys/kernel/btf/vmlinux` is absent or unreadable, malformed, or
/// lacks either member.
pub fn task_offsets() -> Result<TaskOffsets, TaskOffsetsError> {
    task_offsets_from_file(Path::new(VMLINUX_BTF))
}

/// As [`task_offsets`], from the raw BTF file at `path`.
///
/// # Errors
/// As [`task_offsets`].
pub fn task_offsets_from_file(path: &Path) -> Result<TaskOffsets, TaskOffsetsError> {
    let data = std::fs::read(path).map_err(|source| TaskOffsetsError::Read {
        path: path.to_owned(),
        source,
    })?;
    task_offsets_from_btf(&data).map_err(|e| match e {
        TaskOffsetsError::Parse { source, .. } => TaskOffsetsError::Parse {
            path: path.to_owned(),
            source,
        },
        other => other,
    })
}

/// As [`task_offsets`], from a raw BTF blob already in memory.
///
/// # Errors
/// As [`task_offsets`] (a parse error names no path).
pub fn task_offsets_from_btf(data: &[u8]) -> Result<TaskOffsets, TaskOffsetsError> {
    let parse = |source| TaskOffsetsError::Parse {
        path: PathBuf::new(),
        source,
    };
    let btf = Btf::parse(data).map_err(parse)?;
    let task = btf
        .find_struct("task_struct")
        .ok_or(TaskOffsetsError::NoTaskStruct)?;
    let member = |name: &'static str| -> Result<(u32, u32), TaskOffsetsError> {
        let m = btf
            .find_member(task, name)
            .map_err(parse)?
            .ok_or(TaskOffsetsError::NoMember(name))?;
        if m.bit_offset % 8 != 0 {
            return Err(TaskOffsetsError::BadMember(name));
        }
        Ok((m.type_id, m.bit_offset / 8))
    };
    let (leader_type, group_leader) = member("group_leader")?;
    if !btf.is_pointer(leader_type).map_err(parse)? {
        return Err(TaskOffsetsError::BadMember("group_leader"));
    }
    let (start_type, start_boottime) = member("start_boottime")?;
    if btf.size_of(start_type).map_err(parse)? != Some(8) {
        return Err(TaskOffsetsError::BadMember("start_boottime"));
    }
    // Zero means "unknown" to the programs; neither member is first in
    // task_struct, so a zero here would be a misread.
    if group_leader == 0 || start_boottime == 0 {
        return Err(TaskOffsetsError::BadMember(if group_leader == 0 {
            "group_leader"
        } else {
            "start_boottime"
        }));
    }
    Ok(TaskOffsets {
        group_leader,
        start_boottime,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use super::btf::builder::BtfBuilder;
    use super::*;

    fn task_btf(leader_is_ptr: bool, start_size: u32) -> Vec<u8> {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        let start_int = b.int("start_int", start_size);
        let fwd = b.fwd("task_struct");
        let ptr = b.ptr(fwd);
        let leader_type = if leader_is_ptr { ptr } else { int };
        b.composite(
            false,
            "task_struct",
            4096,
            false,
            &[
                ("__state", int, 0, 0),
                ("group_leader", leader_type, 8 * 1304, 0),
                ("start_boottime", start_int, 8 * 1880, 0),
            ],
        );
        b.build()
    }

    #[test]
    fn reads_offsets_from_a_small_blob() {
        let offsets = task_offsets_from_btf(&task_btf(true, 8)).unwrap();
        assert_eq!(
            offsets,
            TaskOffsets {
                group_leader: 1304,
                start_boottime: 1880
            }
        );
    }

    #[test]
    fn checks_member_types() {
        assert!(matches!(
            task_offsets_from_btf(&task_btf(false, 8)),
            Err(TaskOffsetsError::BadMember("group_leader"))
        ));
        assert!(matches!(
            task_offsets_from_btf(&task_btf(true, 4)),
            Err(TaskOffsetsError::BadMember("start_boottime"))
        ));
    }

    #[test]
    fn missing_struct_or_member() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        b.fwd("task_struct");
        assert!(matches!(
            task_offsets_from_btf(&b.build()),
            Err(TaskOffsetsError::NoTaskStruct)
        ));
        b.composite(false, "task_struct", 16, false, &[("__state", int, 0, 0)]);
        assert!(matches!(
            task_offsets_from_btf(&b.build()),
            Err(TaskOffsetsError::NoMember("group_leader"))
        ));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = task_offsets_from_file(Path::new("/nonexistent/btf")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/btf"), "{err}");
    }

    /// The running kernel's BTF: offsets must be plausible and agree with an
    /// independent reading of the same file by `bpftool`, when installed.
    #[test]
    fn reads_the_running_kernel() {
        if !crate::testing::require(
            Path::new(VMLINUX_BTF).exists(),
            "reads_the_running_kernel",
            "the kernel's BTF (CONFIG_DEBUG_INFO_BTF)",
        ) {
            return;
        }
        let offsets = task_offsets().unwrap();
        // task_struct is several KiB; both members sit well inside it and
        // the pointer is 8-byte aligned.
        assert!(
            offsets.group_leader > 0 && offsets.group_leader < 16 * 1024,
            "{offsets:?}"
        );
        assert!(
            offsets.start_boottime > 0 && offsets.start_boottime < 16 * 1024,
            "{offsets:?}"
        );
        assert_eq!(offsets.group_leader % 8, 0);
        assert_eq!(offsets.start_boottime % 8, 0);
        match bpftool_offsets() {
            Some((leader, start)) => {
                assert_eq!(
                    (offsets.group_leader, offsets.start_boottime),
                    (leader, start)
                );
            }
            None => eprintln!("bpftool not available: offsets checked for plausibility only"),
        }
    }

    /// Offsets of the two members as `bpftool btf dump file ... format raw`
    /// prints them (`'group_leader' type_id=N bits_offset=B`).
    fn bpftool_offsets() -> Option<(u32, u32)> {
        let out = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", VMLINUX_BTF, "format", "raw"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find("STRUCT 'task_struct' size=")?;
        let body: Vec<&str> = text[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('\t'))
            .collect();
        let find = |name: &str| {
            let line = body
                .iter()
                .find(|l| l.trim_start().starts_with(&format!("'{name}' ")))?;
            let bits = line
                .split("bits_offset=")
                .nth(1)?
                .split_whitespace()
                .next()?;
            bits.parse::<u32>().ok().map(|b| b / 8)
        };
        Some((find("group_leader")?, find("start_boottime")?))
    }
}
