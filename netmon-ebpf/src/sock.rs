//! `netmon_sock_create` / `netmon_sock_release`: socket ownership.
//!
//! These run in the context of the process creating or closing the socket,
//! so here (unlike in cgroup_skb) the current task is the right owner.

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_task,
            bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_boot_ns,
            bpf_probe_read_kernel, bpf_sk_storage_get,
        },
    },
    macros::cgroup_sock,
    programs::SockContext,
};
use netmon_common::{ClosedSock, SockOwner, TaskOffsets};

use crate::maps::{NETMON_CLOSED, NETMON_OWNERS, NETMON_TASK_OFFSETS};

#[cgroup_sock(sock_create)]
pub fn netmon_sock_create(ctx: SockContext) -> i32 {
    sock_create(&ctx);
    1
}

#[cgroup_sock(sock_release)]
pub fn netmon_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: `ctx.sock` is this program's `bpf_sock` context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let closed = ClosedSock {
        // SAFETY: helper without arguments.
        released_boottime_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    // A full map loses only the early notice; userspace also retires flows
    // of sockets that sock_diag no longer lists.
    let _ = NETMON_CLOSED.insert(&cookie, &closed, 0);
    1
}

/// The current task's `comm`. Filled by the helper itself (NUL padded, or
/// all zeros on error): no zeroing first, which on bpf is a byte-loop
/// `memset` call.
#[inline(always)]
fn current_comm() -> [u8; 16] {
    let mut comm = core::mem::MaybeUninit::<[u8; 16]>::uninit();
    // SAFETY: the helper writes all 16 bytes of the buffer on success and on
    // failure alike (it zeroes the buffer when it fails).
    unsafe {
        bpf_get_current_comm(comm.as_mut_ptr().cast(), 16);
        comm.assume_init()
    }
}

#[inline(always)]
fn sock_create(ctx: &SockContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let owner = SockOwner {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        // SAFETY: helpers without pointer arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        start_boottime_ns: process_start_boottime_ns(),
        // SAFETY: as above.
        created_boottime_ns: unsafe { bpf_ktime_get_boot_ns() },
        // SAFETY: `ctx.sock` is this program's context, which the helper takes.
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.sock.cast()) },
        // SAFETY: as above.
        sock_cookie: unsafe { bpf_get_socket_cookie(ctx.sock.cast()) },
        comm: current_comm(),
    };
    let mut init = owner;
    // SAFETY: `ctx.sock` is a full socket (sock_create runs on a new socket);
    // `init` is a valid SockOwner the helper copies into new storage.
    let _ = unsafe {
        bpf_sk_storage_get(
            NETMON_OWNERS.as_ptr(),
            ctx.sock.cast(),
            core::ptr::from_mut(&mut init).cast(),
            u64::from(BPF_SK_STORAGE_GET_F_CREATE),
        )
    };
}

/// `current->group_leader->start_boottime`, with offsets the loader read from
/// the kernel's BTF; 0 if they are unknown or a read fails.
#[inline(always)]
pub(crate) fn process_start_boottime_ns() -> u64 {
    // SAFETY: a plain read of a static; volatile so the loader's value is used.
    let offsets: TaskOffsets = unsafe { core::ptr::read_volatile(&NETMON_TASK_OFFSETS) };
    if offsets.group_leader == 0 || offsets.start_boottime == 0 {
        return 0;
    }
    // SAFETY: helper without arguments; returns the current task_struct.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mut leader: *const u8 = core::ptr::null();
    // SAFETY: probe reads are fault-safe; the destination is a local of the
    // read size.
    let ret = unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(&mut leader).cast(),
            size_of::<*const u8>() as u32,
            task.wrapping_add(offsets.group_leader as usize).cast(),
        )
    };
    if ret != 0 || leader.is_null() {
        return 0;
    }
    let mut start: u64 = 0;
    // SAFETY: as above.
    let ret = unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(&mut start).cast(),
            size_of::<u64>() as u32,
            leader.wrapping_add(offsets.start_boottime as usize).cast(),
        )
    };
    if ret != 0 { 0 } else { start }
}
