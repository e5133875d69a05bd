//! `netmon_exec`: a process's identity, recorded the moment it execs.
//!
//! A process that connects, sends and exits within a millisecond is gone
//! from `/proc` before any drain can read its exe and command line. This
//! program runs on the raw tracepoint `sched_process_exec` (fired by
//! `exec_binprm` once the new program is in place; `TP_PROTO(struct
//! task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`), in the
//! context of the process itself (`current == p`, its new `mm` installed),
//! and writes into `NETMON_EXECS`, keyed by (tgid, start time):
//! - the executable's path, assembled from `bprm->file`'s dentry up to the
//!   root of the process's mount namespace, crossing mount points as the
//!   kernel's `d_path` does: the file `/proc/PID/exe` names (for a script,
//!   the interpreter; for a symlink such as `python3`, its target);
//! - the start of its argument area (`mm->arg_start..arg_end`, read from the
//!   new program's stack, which exec has just written);
//! - when, in boot time.
//!
//! A raw tracepoint rather than the `sched:sched_process_exec` trace event:
//! it needs no tracefs mount (not mounted on every host), hands over `bprm`
//! (the opened file) instead of the file name as passed to `execve`, and
//! skips filling a trace record. Tracepoints need no kprobes or trampolines
//! (neither is available on every kernel netmon runs on).
//!
//! Struct offsets come from the kernel's BTF through the loader
//! (`NETMON_EXEC_OFFSETS`); without them nothing is recorded. Every pointer
//! is read with `bpf_probe_read_kernel` (fault-safe); a failed read on the
//! dentry walk falls back to `bprm->filename`, flagged `EXE_F_FILENAME`.
//! Runs once per exec, never per packet.
//!
//! `netmon_fork` covers children that never exec (a forked worker, a
//! subshell): they run their parent's program with its arguments, so the
//! parent's record is copied under the child's key when the child is
//! created.

use core::mem::MaybeUninit;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{
            bpf_get_current_task, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
            bpf_probe_read_kernel_str, bpf_probe_read_user,
        },
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use netmon_common::TaskOffsets;
use netmon_common::exec::{
    ARGS_CAP, ARGS_F_TRUNCATED, EXE_F_FILENAME, EXE_F_RESOLVED, EXE_F_TRUNCATED, EXE_PATH_END,
    ExecIdentity, ExecKey, ExecOffsets,
};

use crate::maps::{
    ExecScratch, NETMON_EXEC_OFFSETS, NETMON_EXEC_SCRATCH, NETMON_EXECS, NETMON_TASK_OFFSETS, Walk,
};
use crate::sock::process_start_boottime_ns;

/// Steps of the dentry walk (one per path component or mount crossing)
/// before a path counts as truncated. Executables sit a handful of
/// directories deep; containers add a mount crossing or two.
const MAX_STEPS: u32 = 32;

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn netmon_exec(ctx: RawTracePointContext) -> i32 {
    record(&ctx);
    0
}

#[inline(always)]
fn record(ctx: &RawTracePointContext) {
    // SAFETY: a plain read of a static; volatile so the loader's value is used.
    let off: ExecOffsets = unsafe { core::ptr::read_volatile(&NETMON_EXEC_OFFSETS) };
    if off.valid == 0 {
        return;
    }
    let Some(scratch) = NETMON_EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU array value: this CPU's, used by this program only
    // while it runs (tracepoint programs do not nest on one CPU).
    let scratch = unsafe { &mut *scratch };
    let id = &mut scratch.id;
    // The scratch value still holds the previous exec's bytes past the
    // lengths set below; readers never look past them.
    // SAFETY: helper without arguments.
    id.exec_boottime_ns = unsafe { bpf_ktime_get_boot_ns() };
    id.exe_off = 0;
    id.exe_len = 0;
    id.exe_flags = 0;
    id.args_len = 0;
    id.args_flags = 0;
    id._pad = [0; 3];
    let bprm: *const u8 = ctx.arg(2);
    if exe_path(&off, bprm, scratch).is_none() {
        exe_filename(&off, bprm, &mut scratch.id);
    }
    args(&off, &mut scratch.id);
    let key = ExecKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        start_boottime_ns: process_start_boottime_ns(),
    };
    // LRU: an insert evicts the least recently used entry when full.
    let _ = NETMON_EXECS.insert(&key, &scratch.id, 0);
}

/// A process that forks without exec runs its parent's program: its record
/// is a copy of the parent's, made when it is created (raw tracepoint
/// `sched_process_fork`, `TP_PROTO(struct task_struct *parent, struct
/// task_struct *child)`, in the parent's context). Threads (clones sharing
/// the thread group) are skipped: they are the same process.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn netmon_fork(ctx: RawTracePointContext) -> i32 {
    fork(&ctx);
    0
}

#[inline(always)]
fn fork(ctx: &RawTracePointContext) {
    // SAFETY: plain reads of statics; volatile so the loader's values are used.
    let (off, task): (ExecOffsets, TaskOffsets) = unsafe {
        (
            core::ptr::read_volatile(&NETMON_EXEC_OFFSETS),
            core::ptr::read_volatile(&NETMON_TASK_OFFSETS),
        )
    };
    if off.valid == 0 || task.group_leader == 0 || task.start_boottime == 0 {
        return;
    }
    let child: *const u8 = ctx.arg(1);
    match read::<*const u8>(at(child, task.group_leader)) {
        // A new process leads its own thread group; a thread does not.
        Some(leader) if leader == child => {}
        _ => return,
    }
    let (Some(tgid), Some(start)) = (
        read::<u32>(at(child, off.task_tgid)),
        read::<u64>(at(child, task.start_boottime)),
    ) else {
        return;
    };
    let parent = ExecKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        start_boottime_ns: process_start_boottime_ns(),
    };
    let Some(record) = NETMON_EXECS.get_ptr(&parent) else {
        // The parent exec'd before netmon loaded: nothing to copy.
        return;
    };
    let key = ExecKey {
        tgid,
        _pad: 0,
        start_boottime_ns: start,
    };
    // SAFETY: a value of the map, alive while this program runs (RCU); the
    // helper copies it.
    let _ = NETMON_EXECS.insert(&key, unsafe { &*record }, 0);
}

/// `*(T *)ptr`, fault-safe.
#[inline(always)]
fn read<T: Copy>(ptr: *const u8) -> Option<T> {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: probe reads are fault-safe; the destination is a local of the
    // read size.
    let ret =
        unsafe { bpf_probe_read_kernel(v.as_mut_ptr().cast(), size_of::<T>() as u32, ptr.cast()) };
    // SAFETY: the helper filled all of `v` (it returned 0).
    (ret == 0).then(|| unsafe { v.assume_init() })
}

/// `ptr + off`, as the kernel's pointer arithmetic on struct members.
#[inline(always)]
fn at(ptr: *const u8, off: u32) -> *const u8 {
    ptr.wrapping_add(off as usize)
}

/// `v & MASK` in a form the compiler cannot drop: the verifier needs the
/// mask to bound buffer offsets and read sizes, even where the compiler can
/// prove it redundant from comparisons the verifier cannot follow.
#[inline(always)]
fn masked<const MASK: u64>(v: u64) -> u64 {
    let mut r = v;
    // SAFETY: one ALU instruction on a register.
    unsafe {
        core::arch::asm!(
            "{r} &= {m}",
            r = inout(reg) r,
            m = const MASK,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// How one step of the dentry walk ended.
enum Step {
    /// One component written or one mount crossed: go on.
    Next,
    /// The root of the mount namespace (or of a detached tree): complete.
    Root,
    /// No room left for the next component.
    Full,
    /// A read failed.
    Failed,
}

/// Assembles the path of `bprm->file` back to front, ending at
/// [`EXE_PATH_END`]. `None` when a read failed (the caller falls back to the
/// file name).
///
/// The walk's state (dentry, mount, cursor) lives in the per-CPU scratch
/// value, not in registers: values the verifier reads back from a map are
/// unknown to it, so every iteration reaches the loop head in the same
/// verifier state and is checked once, instead of once per path through all
/// earlier iterations (a register cursor made the verifier explore every
/// combination of "component" and "mount crossing" steps: over its limit of
/// a million instructions).
#[inline(always)]
fn exe_path(off: &ExecOffsets, bprm: *const u8, scratch: &mut ExecScratch) -> Option<()> {
    let file: *const u8 = read(at(bprm, off.binprm_file))?;
    let f_path = at(file, off.file_f_path);
    let dentry: *const u8 = read(at(f_path, off.path_dentry))?;
    let vfsmnt: *const u8 = read(at(f_path, off.path_mnt))?;
    set_walk(
        scratch,
        Walk {
            dentry: dentry as u64,
            vfsmnt: vfsmnt as u64,
            // container_of(vfsmnt, struct mount, mnt)
            mnt: (vfsmnt as u64).wrapping_sub(u64::from(off.mount_mnt)),
            cursor: EXE_PATH_END as u64,
        },
    );
    let mut flags = EXE_F_TRUNCATED;
    for _ in 0..MAX_STEPS {
        match step(off, scratch) {
            Step::Next => {}
            Step::Root => {
                flags = EXE_F_RESOLVED;
                break;
            }
            Step::Full => break,
            Step::Failed => return None,
        }
    }
    // SAFETY: a plain read of this CPU's scratch value.
    let cursor = unsafe { core::ptr::read_volatile(&scratch.walk.cursor) };
    if cursor >= EXE_PATH_END as u64 {
        // Nothing written: a file at the root itself, or no step left.
        return None;
    }
    let id = &mut scratch.id;
    id.exe_off = cursor as u16;
    id.exe_len = (EXE_PATH_END as u64 - cursor) as u16;
    id.exe_flags = flags;
    Some(())
}

/// One step of `d_path`: write the current dentry's name in front of the
/// path and go to its parent, or cross from a mount's root to its mount
/// point.
#[inline(always)]
fn step(off: &ExecOffsets, scratch: &mut ExecScratch) -> Step {
    // Volatile: the compiler must not carry the walk state over in
    // registers (see `exe_path`).
    // SAFETY: a plain read of this CPU's scratch value.
    let w = unsafe { core::ptr::read_volatile(&scratch.walk) };
    let (dentry, vfsmnt, mnt) = (
        w.dentry as *const u8,
        w.vfsmnt as *const u8,
        w.mnt as *const u8,
    );
    let (Some(mnt_root), Some(parent)) = (
        read::<*const u8>(at(vfsmnt, off.vfsmount_mnt_root)),
        read::<*const u8>(at(dentry, off.dentry_d_parent)),
    ) else {
        return Step::Failed;
    };
    if dentry == mnt_root || dentry == parent {
        if dentry != mnt_root {
            // The root of a file system that is not a mount's root: a
            // detached tree. `d_path` stops here too.
            return Step::Root;
        }
        let Some(mnt_parent) = read::<*const u8>(at(mnt, off.mount_mnt_parent)) else {
            return Step::Failed;
        };
        if mnt_parent == mnt || mnt_parent.is_null() {
            // The root of the mount namespace.
            return Step::Root;
        }
        let Some(mountpoint) = read::<*const u8>(at(mnt, off.mount_mnt_mountpoint)) else {
            return Step::Failed;
        };
        set_walk(
            scratch,
            Walk {
                dentry: mountpoint as u64,
                vfsmnt: at(mnt_parent, off.mount_mnt) as u64,
                mnt: mnt_parent as u64,
                cursor: w.cursor,
            },
        );
        return Step::Next;
    }
    let d_name = at(dentry, off.dentry_d_name);
    let (Some(len), Some(name)) = (
        read::<u32>(at(d_name, off.qstr_len)),
        read::<*const u8>(at(d_name, off.qstr_name)),
    ) else {
        return Step::Failed;
    };
    let len = u64::from(len);
    if len == 0 || len + 1 > w.cursor {
        return Step::Full;
    }
    let cursor = w.cursor - (len + 1);
    // cursor < EXE_PATH_END here; the masks restate it for the verifier
    // (which does not know the cursor read back from the map): '/' at
    // [0, 255], the name at [1, 256] for at most 255 bytes, so every write
    // ends inside the 512-byte buffer.
    let slash = masked::<{ EXE_PATH_END as u64 - 1 }>(cursor);
    let n = masked::<{ EXE_PATH_END as u64 - 1 }>(len);
    let base = scratch.id.exe.as_mut_ptr();
    // SAFETY: `slash` < EXE_PATH_END <= EXE_BUF.
    unsafe { *base.add(slash as usize) = b'/' };
    // SAFETY: fault-safe read into `exe[slash + 1 .. slash + 1 + n]`, inside
    // the buffer (see above).
    let ret = unsafe {
        bpf_probe_read_kernel(base.add(slash as usize + 1).cast(), n as u32, name.cast())
    };
    if ret != 0 {
        return Step::Failed;
    }
    set_walk(
        scratch,
        Walk {
            dentry: parent as u64,
            cursor,
            ..w
        },
    );
    Step::Next
}

/// Stores the walk state, volatile (see `exe_path`).
#[inline(always)]
fn set_walk(scratch: &mut ExecScratch, walk: Walk) {
    // SAFETY: a plain write of this CPU's scratch value.
    unsafe { core::ptr::write_volatile(&mut scratch.walk, walk) };
}

/// Fallback: `bprm->filename`, the name as passed to `execve`.
#[inline(always)]
fn exe_filename(off: &ExecOffsets, bprm: *const u8, id: &mut ExecIdentity) {
    let Some(filename) = read::<*const u8>(at(bprm, off.binprm_filename)) else {
        return;
    };
    // SAFETY: fault-safe string read into the first EXE_PATH_END bytes of
    // the buffer; the helper NUL-terminates and returns the length with it.
    let ret = unsafe {
        bpf_probe_read_kernel_str(
            id.exe.as_mut_ptr().cast(),
            EXE_PATH_END as u32,
            filename.cast(),
        )
    };
    if ret > 1 {
        id.exe_off = 0;
        id.exe_len = (ret - 1) as u16;
        id.exe_flags = EXE_F_FILENAME;
    }
}

/// The start of `current->mm`'s argument area.
#[inline(always)]
fn args(off: &ExecOffsets, id: &mut ExecIdentity) {
    // SAFETY: helper without arguments; returns the current task_struct.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Some(mm) = read::<*const u8>(at(task, off.task_mm)) else {
        return;
    };
    let (Some(start), Some(end)) = (
        read::<u64>(at(mm, off.mm_arg_start)),
        read::<u64>(at(mm, off.mm_arg_end)),
    ) else {
        return;
    };
    let len = end.saturating_sub(start);
    if len == 0 {
        return;
    }
    let dst = id.args.as_mut_ptr();
    let ret = if len >= ARGS_CAP as u64 {
        if len > ARGS_CAP as u64 {
            id.args_flags = ARGS_F_TRUNCATED;
        }
        // SAFETY: fault-safe read of user memory of the current process into
        // the whole `args` buffer.
        unsafe { bpf_probe_read_user(dst.cast(), ARGS_CAP as u32, start as *const _) }
    } else {
        let n = masked::<{ ARGS_CAP as u64 - 1 }>(len);
        // SAFETY: as above, `n` < ARGS_CAP bytes.
        unsafe { bpf_probe_read_user(dst.cast(), n as u32, start as *const _) }
    };
    if ret == 0 {
        id.args_len = len.min(ARGS_CAP as u64) as u16;
    } else {
        id.args_flags = 0;
    }
}
