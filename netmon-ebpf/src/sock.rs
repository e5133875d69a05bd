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
use netmon_common::{
    ClosedSock, FLOW_F_CLOSED, FLOW_F_OWNER_RELEASED, FlowKey, SockOwner, TaskOffsets,
};

use crate::maps::{NETMON_CLOSED, NETMON_FLOWS, NETMON_OWNERS, NETMON_TASK_OFFSETS};

#[cgroup_sock(sock_create)]
pub fn netmon_sock_create(ctx: SockContext) -> i32 {
    sock_create(&ctx);
    1
}

#[cgroup_sock(sock_release)]
pub fn netmon_sock_release(ctx: SockContext) -> i32 {
    let closed = ClosedSock {
        // SAFETY: helper without arguments.
        released_boottime_ns: unsafe { bpf_ktime_get_boot_ns() },
        // The releasing task: the last fd holder (see `ClosedSock`).
        released_by: current_owner(&ctx),
    };
    let by_owner = released_by_owner(&ctx, &closed.released_by);
    let flag = if by_owner {
        FLOW_F_CLOSED | FLOW_F_OWNER_RELEASED
    } else {
        FLOW_F_CLOSED
    };
    let marked = mark_flow_closed(&ctx, closed.released_by.sock_cookie, flag);
    if by_owner && marked {
        // The flow says who released it (`FLOW_F_OWNER_RELEASED`): no
        // closed mark to insert, read and delete per connection.
        return 1;
    }
    // A full map loses the releaser, and the notice for sockets with one
    // flow per peer (unconnected UDP); connected sockets' flows carry
    // their own mark (above).
    let _ = NETMON_CLOSED.insert(&closed.released_by.sock_cookie, &closed, 0);
    1
}

/// Whether `by` (the releasing task) is the socket's owner in storage:
/// same process (tgid and start time), not a kernel thread. Accepted
/// sockets carry the listener's owner, so a server that accepts and closes
/// in the process that listens is its own releaser too.
#[inline(always)]
fn released_by_owner(ctx: &SockContext, by: &SockOwner) -> bool {
    if by.tgid == 0 {
        return false;
    }
    // SAFETY: `ctx.sock` is this program's socket; without the create flag
    // the helper only looks the storage up (null when there is none).
    let owner = unsafe {
        bpf_sk_storage_get(
            NETMON_OWNERS.as_ptr(),
            ctx.sock.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<SockOwner>();
    if owner.is_null() {
        return false;
    }
    // SAFETY: non-null: a live `SockOwner` in this socket's storage.
    let (tgid, start) = unsafe { ((*owner).tgid, (*owner).start_boottime_ns) };
    tgid == by.tgid && start == by.start_boottime_ns
}

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_UDPLITE: u32 = 136;

/// Sets `flag` ([`FLOW_F_CLOSED`], with [`FLOW_F_OWNER_RELEASED`] when the
/// owner released it) on the flow of a connected TCP or UDP socket,
/// keyed by the socket's peer as the packets were (an IPv4-mapped peer of
/// an IPv6 socket as IPv4). An unconnected socket (no peer) has at most the
/// entry a listener's handshakes fold into (remote all zero), IPv4 or IPv6
/// (a dual-stack listener can have both). One to two hash lookups per
/// closed socket, never per packet. True when a connected socket's flow
/// was found and marked.
#[inline(always)]
fn mark_flow_closed(ctx: &SockContext, cookie: u64, flag: u16) -> bool {
    let sk = ctx.sock;
    // SAFETY: `ctx.sock` is this program's `bpf_sock` context; these fields
    // are readable in cgroup_sock programs (`bpf_sock_is_valid_access`).
    // Volatile: one load of each field's own size (the verifier refuses a
    // wider load of the context, which LLVM would make of `dst_ip6`).
    let (family, protocol, port, v4, v6) = unsafe {
        let ip6 = core::ptr::addr_of!((*sk).dst_ip6).cast::<u32>();
        (
            core::ptr::addr_of!((*sk).family).read_volatile(),
            core::ptr::addr_of!((*sk).protocol).read_volatile(),
            core::ptr::addr_of!((*sk).dst_port).read_volatile(),
            core::ptr::addr_of!((*sk).dst_ip4).read_volatile(),
            [
                ip6.read_volatile(),
                ip6.add(1).read_volatile(),
                ip6.add(2).read_volatile(),
                ip6.add(3).read_volatile(),
            ],
        )
    };
    let protocol_byte = match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE => protocol as u8,
        _ => return false,
    };
    let remote_port = u16::from_be(port);
    let (version, addr): (u8, [u32; 4]) = match family {
        AF_INET => (4, [v4, 0, 0, 0]),
        AF_INET6 if v6[0] == 0 && v6[1] == 0 && v6[2] == 0xffff_u32.to_be() => {
            (4, [v6[3], 0, 0, 0])
        }
        AF_INET6 => (6, v6),
        _ => return false,
    };
    let unconnected = remote_port == 0 && addr == [0; 4];
    let mut key = FlowKey {
        cookie,
        remote_addr: [0; 16],
        remote_port,
        ip_version: version,
        protocol: protocol_byte,
        _pad: 0,
    };
    // SAFETY: `[u32; 4]` and `[u8; 16]` have the same size; the address is
    // stored in memory (network) order either way.
    key.remote_addr = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(addr) };
    if unconnected {
        // A listener's folded entry, or none: the socket may have one flow
        // per peer, which only the closed mark reaches.
        set_closed(&key, FLOW_F_CLOSED);
        if family == AF_INET6 {
            key.ip_version = 4;
            set_closed(&key, FLOW_F_CLOSED);
        }
        return false;
    }
    set_closed(&key, flag)
}

/// Sets `flag` on the flow of `key`; false when there is none.
#[inline(always)]
fn set_closed(key: &FlowKey, flag: u16) -> bool {
    match NETMON_FLOWS.get_ptr_mut(key) {
        Some(v) => {
            // SAFETY: `v` points into a live map entry; `flags` is written
            // only here after the insert (see `FLOW_F_CLOSED`), and a
            // socket is released once.
            unsafe { (*v).flags |= flag };
            true
        }
        None => false,
    }
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

/// The current task as the owner of the context's socket.
#[inline(always)]
fn current_owner(ctx: &SockContext) -> SockOwner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    SockOwner {
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
    }
}

#[inline(always)]
fn sock_create(ctx: &SockContext) {
    let owner = current_owner(ctx);
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
