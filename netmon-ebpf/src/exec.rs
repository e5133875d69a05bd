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
use netmon_common::exec::{
    ARGS_CAP, ARGS_F_TRUNCATED, EXE_F_FILENAME, EXE_F_RESOLVED, EXE_F_TRUNCATED, EXE_PATH_END,
    ExecIdentity, ExecKey, ExecOffsets,
};

use crate::maps::{NETMON_EXEC_OFFSETS, NETMON_EXEC_SCRATCH, NETMON_EXECS};
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
    let Some(id) = NETMON_EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU array value: this CPU's, used by this program only
    // while it runs (tracepoint programs do not nest on one CPU).
    let id = unsafe { &mut *id };
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
    if exe_path(&off, bprm, id).is_none() {
        exe_filename(&off, bprm, id);
    }
    args(&off, id);
    let key = ExecKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        start_boottime_ns: process_start_boottime_ns(),
    };
    // LRU: an insert evicts the least recently used entry when full.
    let _ = NETMON_EXECS.insert(&key, id, 0);
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

/// Assembles the path of `bprm->file` back to front, ending at
/// [`EXE_PATH_END`]. `None` when a read failed (the caller falls back to the
/// file name).
#[inline(always)]
fn exe_path(off: &ExecOffsets, bprm: *const u8, id: &mut ExecIdentity) -> Option<()> {
    let file: *const u8 = read(at(bprm, off.binprm_file))?;
    let f_path = at(file, off.file_f_path);
    let mut dentry: *const u8 = read(at(f_path, off.path_dentry))?;
    let mut vfsmnt: *const u8 = read(at(f_path, off.path_mnt))?;
    // container_of(vfsmnt, struct mount, mnt)
    let mut mnt = vfsmnt.wrapping_sub(off.mount_mnt as usize);
    let mut cursor: u64 = EXE_PATH_END as u64;
    let mut flags = EXE_F_TRUNCATED;
    for _ in 0..MAX_STEPS {
        let mnt_root: *const u8 = read(at(vfsmnt, off.vfsmount_mnt_root))?;
        let parent: *const u8 = read(at(dentry, off.dentry_d_parent))?;
        if dentry == mnt_root || dentry == parent {
            if dentry != mnt_root {
                // The root of a file system that is not a mount's root: a
                // detached tree. `d_path` stops here too.
                flags = EXE_F_RESOLVED;
                break;
            }
            let mnt_parent: *const u8 = read(at(mnt, off.mount_mnt_parent))?;
            if mnt_parent == mnt || mnt_parent.is_null() {
                // The root of the mount namespace.
                flags = EXE_F_RESOLVED;
                break;
            }
            dentry = read(at(mnt, off.mount_mnt_mountpoint))?;
            mnt = mnt_parent;
            vfsmnt = at(mnt, off.mount_mnt);
            continue;
        }
        let d_name = at(dentry, off.dentry_d_name);
        let len = u64::from(read::<u32>(at(d_name, off.qstr_len))?);
        let name: *const u8 = read(at(d_name, off.qstr_name))?;
        if len == 0 || len + 1 > cursor {
            break;
        }
        cursor -= len + 1;
        // cursor < EXE_PATH_END here; the masks restate it for the verifier:
        // '/' at [0, 255], the name at [1, 256] for at most 255 bytes, so
        // every write ends inside the 512-byte buffer.
        let slash = masked::<{ EXE_PATH_END as u64 - 1 }>(cursor);
        let n = masked::<{ EXE_PATH_END as u64 - 1 }>(len);
        let base = id.exe.as_mut_ptr();
        // SAFETY: `slash` < EXE_PATH_END <= EXE_BUF.
        unsafe { *base.add(slash as usize) = b'/' };
        // SAFETY: fault-safe read into `exe[slash + 1 .. slash + 1 + n]`,
        // inside the buffer (see above).
        let ret = unsafe {
            bpf_probe_read_kernel(base.add(slash as usize + 1).cast(), n as u32, name.cast())
        };
        if ret != 0 {
            return None;
        }
        dentry = parent;
    }
    if cursor == EXE_PATH_END as u64 {
        // Nothing written: a file at the root itself, or no step left.
        return None;
    }
    id.exe_off = cursor as u16;
    id.exe_len = (EXE_PATH_END as u64 - cursor) as u16;
    id.exe_flags = flags;
    Some(())
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
