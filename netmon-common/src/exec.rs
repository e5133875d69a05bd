//! Process identity recorded at `exec`: the key and value of the exec map and
//! the kernel offsets the exec program needs.
//!
//! The `netmon_exec` program (raw tracepoint `sched_process_exec`) writes one
//! [`ExecIdentity`] per successful `execve` into an LRU hash keyed by the
//! process ([`ExecKey`]: tgid and start time, the same pair a socket's
//! [`crate::SockOwner`] records); `netmon_fork` (`sched_process_fork`)
//! copies the parent's record to a new child process, which runs the same
//! program until it execs. Userspace reads it for processes that are
//! gone from `/proc` by the time the drain looks: exe path and command line
//! survive a process that lived one millisecond.
//!
//! Layout rules as in [`crate::flow`]: `#[repr(C)]`, fixed-width fields,
//! explicit padding, sizes asserted below.

/// Bytes of [`ExecIdentity::exe`]. The program assembles the path back to
/// front ending at [`EXE_PATH_END`], so a path keeps at most that many bytes;
/// the other half is room the verifier needs to prove every component write
/// stays inside the buffer.
pub const EXE_BUF: usize = 512;
/// Where the exe path ends in [`ExecIdentity::exe`] (exclusive); also the
/// longest path kept.
pub const EXE_PATH_END: usize = 256;
/// Bytes of [`ExecIdentity::args`]: the start of the argument area.
pub const ARGS_CAP: usize = 512;

/// [`ExecIdentity::exe_flags`]: the path is complete, resolved from the
/// executable's dentry up to the root of the process's mount namespace
/// (what `readlink /proc/PID/exe` shows from inside that namespace).
pub const EXE_F_RESOLVED: u16 = 1;
/// [`ExecIdentity::exe_flags`]: the path had more components or bytes than
/// fit; `exe` holds only its tail.
pub const EXE_F_TRUNCATED: u16 = 2;
/// [`ExecIdentity::exe_flags`]: `exe` holds the file name as passed to
/// `execve` (`bprm->filename`, possibly relative), because the kernel
/// offsets for the dentry walk were unknown.
pub const EXE_F_FILENAME: u16 = 4;
/// [`ExecIdentity::args_flags`]: the argument area was longer than
/// [`ARGS_CAP`]; `args` holds its start.
pub const ARGS_F_TRUNCATED: u16 = 1;

/// Key of the exec map: one process (a reused pid is another key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecKey {
    /// Process id (thread group id).
    pub tgid: u32,
    /// Zero.
    pub _pad: u32,
    /// `task->group_leader->start_boottime` (ns since boot), as in
    /// [`crate::SockOwner::start_boottime_ns`]; `exec` keeps it (the thread
    /// that execs takes over the leader's start time).
    pub start_boottime_ns: u64,
}

/// What the exec program records about a process at its last `exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecIdentity {
    /// When the exec happened, ns since boot (CLOCK_BOOTTIME).
    pub exec_boottime_ns: u64,
    /// Start of the path in [`Self::exe`].
    pub exe_off: u16,
    /// Length of the path in [`Self::exe`] (0: unknown).
    pub exe_len: u16,
    /// `EXE_F_*` bits.
    pub exe_flags: u16,
    /// Bytes of [`Self::args`] in use: the NUL-separated arguments as the
    /// new program's stack holds them (`mm->arg_start..arg_end`).
    pub args_len: u16,
    /// `ARGS_F_*` bits.
    pub args_flags: u16,
    /// Zero.
    pub _pad: [u16; 3],
    /// The executable's path at `exe[exe_off..exe_off + exe_len]`, no NUL.
    pub exe: [u8; EXE_BUF],
    /// The arguments, NUL separated.
    pub args: [u8; ARGS_CAP],
}

impl ExecIdentity {
    /// An empty record (nothing known).
    pub const ZERO: Self = Self {
        exec_boottime_ns: 0,
        exe_off: 0,
        exe_len: 0,
        exe_flags: 0,
        args_len: 0,
        args_flags: 0,
        _pad: [0; 3],
        exe: [0; EXE_BUF],
        args: [0; ARGS_CAP],
    };

    /// The recorded path bytes, or `None` when nothing was recorded or the
    /// bounds are inconsistent.
    #[must_use]
    pub fn exe_bytes(&self) -> Option<&[u8]> {
        let start = self.exe_off as usize;
        let end = start.checked_add(self.exe_len as usize)?;
        (self.exe_len > 0)
            .then(|| self.exe.get(start..end))
            .flatten()
    }

    /// The recorded argument bytes (NUL separated).
    #[must_use]
    pub fn args_bytes(&self) -> &[u8] {
        let len = (self.args_len as usize).min(ARGS_CAP);
        &self.args[..len]
    }
}

impl Default for ExecIdentity {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Offsets into the running kernel's structs that the exec program follows,
/// read from its BTF by the loader and written into the programs' read-only
/// data before load. `valid == 0` means unknown: the program then records
/// nothing (without them it cannot read `bprm` or the task), and userspace
/// knows short-lived processes only by what their sockets recorded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecOffsets {
    /// 1 when every offset below was read from the kernel's BTF.
    pub valid: u32,
    /// `linux_binprm.file` (`struct file *`).
    pub binprm_file: u32,
    /// `linux_binprm.filename` (`const char *`).
    pub binprm_filename: u32,
    /// `file.f_path` (`struct path`).
    pub file_f_path: u32,
    /// `path.mnt` (`struct vfsmount *`).
    pub path_mnt: u32,
    /// `path.dentry` (`struct dentry *`).
    pub path_dentry: u32,
    /// `dentry.d_parent` (`struct dentry *`).
    pub dentry_d_parent: u32,
    /// `dentry.d_name` (`struct qstr`).
    pub dentry_d_name: u32,
    /// `qstr.len` (`u32`).
    pub qstr_len: u32,
    /// `qstr.name` (`const unsigned char *`).
    pub qstr_name: u32,
    /// `vfsmount.mnt_root` (`struct dentry *`).
    pub vfsmount_mnt_root: u32,
    /// `mount.mnt` (the `struct vfsmount` embedded in `struct mount`).
    pub mount_mnt: u32,
    /// `mount.mnt_parent` (`struct mount *`).
    pub mount_mnt_parent: u32,
    /// `mount.mnt_mountpoint` (`struct dentry *`).
    pub mount_mnt_mountpoint: u32,
    /// `task_struct.mm` (`struct mm_struct *`).
    pub task_mm: u32,
    /// `mm_struct.arg_start` (`unsigned long`).
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end` (`unsigned long`).
    pub mm_arg_end: u32,
    /// `task_struct.tgid` (`pid_t`), read from a forked child.
    pub task_tgid: u32,
}

impl ExecOffsets {
    /// Nothing known (the initial value of the program's global).
    pub const UNKNOWN: Self = Self {
        valid: 0,
        binprm_file: 0,
        binprm_filename: 0,
        file_f_path: 0,
        path_mnt: 0,
        path_dentry: 0,
        dentry_d_parent: 0,
        dentry_d_name: 0,
        qstr_len: 0,
        qstr_name: 0,
        vfsmount_mnt_root: 0,
        mount_mnt: 0,
        mount_mnt_parent: 0,
        mount_mnt_mountpoint: 0,
        task_mm: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        task_tgid: 0,
    };
}

const _: () = {
    assert!(size_of::<ExecKey>() == 16);
    assert!(size_of::<ExecIdentity>() == 24 + EXE_BUF + ARGS_CAP);
    assert!(align_of::<ExecIdentity>() == 8);
    assert!(size_of::<ExecOffsets>() == 18 * 4);
    assert!(EXE_PATH_END * 2 == EXE_BUF);
    assert!(EXE_PATH_END.is_power_of_two() && ARGS_CAP.is_power_of_two());
};

#[cfg(feature = "user")]
mod user {
    use super::{ExecIdentity, ExecKey, ExecOffsets};

    // SAFETY: #[repr(C)], only integers and byte arrays, no implicit padding
    // (sizes asserted above equal the sum of the fields), every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for ExecKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ExecIdentity {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ExecOffsets {}
}
