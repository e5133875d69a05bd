//! Map key and value types shared by the eBPF programs and userspace.
//!
//! Layout rules (checked by the `const` asserts at the bottom):
//! - `#[repr(C)]`, fixed-width integers and byte arrays only, no `bool`/`usize`;
//! - every padding byte is a named `_pad*` field that both sides zero, so keys
//!   hash and compare identically in the kernel and in userspace;
//! - 8-byte alignment (the kernel's hash map value alignment).

/// Counters for one direction of one flow.
///
/// Written only with atomic adds by the cgroup_skb programs; monotonic for the
/// life of the map entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct DirCounters {
    /// Packets (`sk_buff`s) seen at the hook. On loopback and veth one GSO
    /// packet can stand for several wire segments.
    pub packets: u64,
    /// IP bytes: the L3 length at the hook (`skb->len`), IP and transport
    /// headers included, exactly what the kernel's IP MIB octet counters count.
    pub ip_bytes: u64,
    /// L4 payload bytes: `ip_bytes` less the IP header (with IPv6 extension
    /// headers) and the transport header (TCP with options, UDP's 8 bytes,
    /// ICMP's 8 bytes). Every copy on the wire: TCP retransmissions and
    /// duplicates included.
    pub payload_bytes: u64,
    /// The part of `payload_bytes` that carried data already sent (egress:
    /// TCP sequence numbers before the socket's `snd_nxt`) or already
    /// received (ingress: before `rcv_nxt`). For UDP received: datagrams the
    /// kernel dropped after the hook (receive buffer full), which the
    /// application never read. Always 0 otherwise.
    /// `payload_bytes - retrans_bytes` is what the application
    /// moved (its `app_bytes`). Defaults to 0 when a self-describing
    /// input (a simulation script) leaves it out.
    #[cfg_attr(feature = "user", serde(default))]
    pub retrans_bytes: u64,
}

impl DirCounters {
    /// Adds `other` to `self`, saturating (counters never wrap in practice:
    /// 2^64 bytes is 16 EiB).
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self {
            packets: self.packets.saturating_add(other.packets),
            ip_bytes: self.ip_bytes.saturating_add(other.ip_bytes),
            payload_bytes: self.payload_bytes.saturating_add(other.payload_bytes),
            retrans_bytes: self.retrans_bytes.saturating_add(other.retrans_bytes),
        }
    }

    /// `self - earlier` field by field, or `None` if any field went backwards
    /// (the entry was recreated: a reset, never a negative delta).
    #[must_use]
    pub const fn checked_sub(self, earlier: Self) -> Option<Self> {
        let (Some(packets), Some(ip_bytes), Some(payload_bytes), Some(retrans_bytes)) = (
            self.packets.checked_sub(earlier.packets),
            self.ip_bytes.checked_sub(earlier.ip_bytes),
            self.payload_bytes.checked_sub(earlier.payload_bytes),
            self.retrans_bytes.checked_sub(earlier.retrans_bytes),
        ) else {
            return None;
        };
        Some(Self {
            packets,
            ip_bytes,
            payload_bytes,
            retrans_bytes,
        })
    }

    /// True when all counters are zero.
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.packets == 0
            && self.ip_bytes == 0
            && self.payload_bytes == 0
            && self.retrans_bytes == 0
    }

    /// What the application moved: `payload_bytes - retrans_bytes`.
    #[must_use]
    pub const fn app_bytes(&self) -> u64 {
        self.payload_bytes.saturating_sub(self.retrans_bytes)
    }
}

/// Who created a socket: stored in socket-local storage at `sock_create` (in
/// the creating process's context) and copied into each of the socket's flows
/// when the flow is first seen.
///
/// Accepted sockets never run `sock_create`; the storage map's `BPF_F_CLONE`
/// flag copies the listener's owner into them, and userspace refines the owner
/// from `/proc` where a different process holds the fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct SockOwner {
    /// Process id (thread group id) of the creator.
    pub tgid: u32,
    /// Thread id of the creator.
    pub tid: u32,
    /// Real uid of the creator.
    pub uid: u32,
    /// Real gid of the creator.
    pub gid: u32,
    /// cgroup v2 id of the creator (the socket's cgroup).
    pub cgroup_id: u64,
    /// The creating process's start time, ns since boot (CLOCK_BOOTTIME):
    /// `task->group_leader->start_boottime`, the value `/proc/PID/stat`'s
    /// field 22 shows in clock ticks. 0 when the kernel offsets were unknown.
    pub start_boottime_ns: u64,
    /// When the socket was created, ns since boot (CLOCK_BOOTTIME).
    pub created_boottime_ns: u64,
    /// Network namespace cookie of the socket.
    pub netns_cookie: u64,
    /// Cookie of the socket this owner was recorded for. Differs from the
    /// flow's cookie when the storage was cloned into an accepted socket: then
    /// userspace checks which process really holds the accepted socket.
    pub sock_cookie: u64,
    /// `comm` of the creating thread, NUL padded.
    pub comm: [u8; 16],
}

/// Bit in [`FlowValue::flags`]: the owner was found in socket storage.
/// Without it the socket predates netmon (or is a kernel socket) and userspace
/// resolves the owner through sock_diag and `/proc`.
pub const FLOW_F_OWNED: u16 = 1;

/// Bit in [`FlowValue::flags`]: the socket was released. Set by
/// `sock_release` on the flow of a connected socket (and on a listener's
/// folded entry), so the flow is known closed even when the closed-socket
/// map was full; the only write to a flow value besides the counters.
pub const FLOW_F_CLOSED: u16 = 2;

/// Bit in [`FlowValue::flags`]: the flow's first outgoing payload was
/// looked at for name capture (copied to the capture ring, or skipped while
/// capture is off), see [`crate::capture`]. Set by the egress program with
/// an atomic OR on the 64-bit word holding `local_port`, `flags` and
/// `ifindex`, after
/// the record is submitted; `sock_release`'s plain store of
/// [`FLOW_F_CLOSED`] can at worst drop this bit (the next payload is then
/// copied once more, a duplicate userspace ignores), never lose its own.
pub const FLOW_F_CAPTURED: u16 = 4;

/// Bit in [`FlowValue::flags`], set with [`FLOW_F_CLOSED`] when the process
/// that released the socket is the owner in socket storage (same tgid and
/// start time as [`FlowValue::owner`]): its creator, or for an accepted
/// socket the listener's owner. The releaser then needs no closed-socket
/// map entry (`NETMON_CLOSED`): the flow says who released it. Under
/// connection churn that map was read, sorted and deleted from once per
/// socket. Set only on a connected socket's one flow; userspace treats
/// every flow of the same cookie as closed.
pub const FLOW_F_OWNER_RELEASED: u16 = 8;

/// Key of the flow map: one socket talking to one remote endpoint.
///
/// A connected socket has one flow; an unconnected UDP or raw socket has one
/// per peer, so "where did it go" stays exact for them too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct FlowKey {
    /// Socket cookie (`bpf_get_socket_cookie`), unique per socket for the
    /// life of the kernel; `ss -e` shows it as `sk:<hex>`.
    pub cookie: u64,
    /// Remote IP address, network byte order: 4 bytes then 12 zero bytes for
    /// IPv4, 16 bytes for IPv6.
    pub remote_addr: [u8; 16],
    /// Remote port, host byte order (0 for protocols without ports).
    pub remote_port: u16,
    /// IP version of the packets: 4 or 6.
    pub ip_version: u8,
    /// IP protocol number of the transport (`IPPROTO_TCP` = 6, UDP = 17, ...).
    pub protocol: u8,
    /// Zero.
    pub _pad: u32,
}

/// Value of the flow map.
///
/// `tx`/`rx` are changed only by adds (atomic, or plain where the socket
/// lock serializes the writers: a connected TCP socket's own
/// transmissions); every other field is written once, when the cgroup_skb
/// program inserts the entry, except the [`FLOW_F_CLOSED`] bit of `flags`,
/// set once by `sock_release`, and the TCP sample, stored by the ingress
/// program.
///
/// Field order is a cost: the sending side (`tx`) and the receiving side
/// (`rx` and the TCP sample, both written by the ingress program) often run
/// on different CPUs (a bulk sender and the softirq that processes its
/// peer's ACKs), so they sit more than a cache line apart, with the
/// write-once fields between them, and no packet makes the line the other
/// side writes bounce between CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct FlowValue {
    /// Sent by the socket (egress hook).
    pub tx: DirCounters,
    /// Local IP address, same encoding as [`FlowKey::remote_addr`].
    pub local_addr: [u8; 16],
    /// Local port, host byte order.
    pub local_port: u16,
    /// `FLOW_F_*` bits.
    pub flags: u16,
    /// Interface of the first packet (`skb->ifindex`; 1 is loopback).
    pub ifindex: u32,
    /// When the first packet was seen, ns since boot (CLOCK_BOOTTIME).
    pub first_boottime_ns: u64,
    /// The socket's owner, valid when `flags & FLOW_F_OWNED`.
    pub owner: SockOwner,
    /// Delivered to the socket (ingress hook).
    pub rx: DirCounters,
    /// TCP only: the socket's state as its latest received packet saw it.
    pub tcp: TcpSample,
}

/// The last TCP state a flow's packets saw (`struct bpf_tcp_sock` at the
/// ingress hook, before the kernel processed the packet), written with
/// plain stores on every packet an established TCP socket receives (the
/// ACKs of what it sent included, so the send-side counts are current as of
/// the latest ACK); all zero for other flows.
/// Userspace reads it at each drain: the RTT is a gauge, the two segment
/// counts are monotonic for the life of the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct TcpSample {
    /// `tcp_sock.srtt_us`: the smoothed RTT in microseconds, shifted left
    /// by 3 (as the kernel keeps it); 0 before the first RTT measurement.
    pub srtt_us8: u32,
    /// `tcp_sock.total_retrans`: segments retransmitted since the start.
    pub total_retrans: u32,
    /// `tcp_sock.data_segs_out`: data segments sent, retransmissions
    /// included (the retransmission rate's denominator).
    pub data_segs_out: u32,
    /// `tcp_sock.rate_delivered`: segments delivered in the last rate sample.
    pub rate_delivered: u32,
    /// `tcp_sock.rate_interval_us`: that sample's interval.
    pub rate_interval_us: u32,
    /// `tcp_sock.mss_cache`: the MSS, bytes (rate = delivered x mss /
    /// interval, as `tcpi_delivery_rate` computes it).
    pub mss_cache: u32,
    /// `tcp_sock.rtt_min`'s current minimum: the lowest RTT seen in the
    /// last five minutes, in microseconds (`tcpi_min_rtt`, the path's base
    /// latency without queueing). `mdev_us` (`tcpi_rttvar`) is not among
    /// the fields `bpf_tcp_sock` exposes; the RTT's spread comes from the
    /// samples instead (p50/p95 per window).
    pub rtt_min_us: u32,
    /// Zero.
    pub _pad: u32,
}

impl TcpSample {
    /// Smoothed RTT in microseconds (`tcpi_rtt`), `None` before the first
    /// measurement.
    #[must_use]
    pub const fn srtt_us(&self) -> Option<u32> {
        if self.srtt_us8 == 0 {
            None
        } else {
            Some(self.srtt_us8 >> 3)
        }
    }

    /// The lowest RTT of the last five minutes in microseconds
    /// (`tcpi_min_rtt`), `None` before the first RTT measurement.
    #[must_use]
    pub const fn min_rtt_us(&self) -> Option<u32> {
        if self.srtt_us8 == 0 || self.rtt_min_us == 0 || self.rtt_min_us == u32::MAX {
            None
        } else {
            Some(self.rtt_min_us)
        }
    }

    /// Delivery rate of the last rate sample in bytes per second
    /// (`tcpi_delivery_rate`), `None` without a sample.
    #[must_use]
    pub const fn delivery_rate_bps(&self) -> Option<u64> {
        if self.rate_delivered == 0 || self.rate_interval_us == 0 {
            return None;
        }
        Some(
            self.rate_delivered as u64 * self.mss_cache as u64 * 1_000_000
                / self.rate_interval_us as u64,
        )
    }
}

/// Value of the closed-socket map, keyed by socket cookie (`u64`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct ClosedSock {
    /// When the last fd holder closed it, ns since boot (CLOCK_BOOTTIME).
    /// Packets may still follow (queued data, FIN, retransmits): they keep
    /// being counted in the socket's flows.
    pub released_boottime_ns: u64,
    /// The process that released it (`sock_release` runs in the context of
    /// the task dropping the last reference: the last fd holder, or the
    /// exiting process). Its `sock_cookie` is the released socket's cookie.
    /// For an accepted socket of a pre-forked worker pool this is the worker
    /// that held it, which the listener's cloned owner cannot say.
    pub released_by: SockOwner,
}

/// Traffic counted while the flow map was full, summed over all sockets.
/// One entry per CPU; userspace sums them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct OverflowCounters {
    /// Egress traffic of flows that could not be inserted.
    pub tx: DirCounters,
    /// Ingress traffic of flows that could not be inserted.
    pub rx: DirCounters,
    /// Failed flow insertions (each packet of an uninsertable flow retries).
    pub failed_inserts: u64,
}

/// Offsets into the running kernel's `struct task_struct`, read from its BTF
/// by the loader and written into the programs' read-only data before load.
/// All zero means unknown: the programs then record no process start time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// Byte offset of `task_struct.group_leader` (a pointer).
    pub group_leader: u32,
    /// Byte offset of `task_struct.start_boottime` (u64 ns).
    pub start_boottime: u32,
}

const _: () = {
    assert!(size_of::<DirCounters>() == 32);
    assert!(size_of::<SockOwner>() == 72);
    assert!(size_of::<FlowKey>() == 32);
    assert!(size_of::<TcpSample>() == 32);
    assert!(size_of::<FlowValue>() == 64 + 72 + 16 + 8 + 8 + 32);
    // The two sides' counters are more than a cache line apart.
    assert!(core::mem::offset_of!(FlowValue, rx) - core::mem::offset_of!(FlowValue, tx) >= 64 + 32);
    assert!(size_of::<ClosedSock>() == 8 + 72);
    assert!(size_of::<OverflowCounters>() == 72);
    assert!(size_of::<TaskOffsets>() == 8);
    assert!(align_of::<FlowValue>() == 8);
    assert!(align_of::<FlowKey>() == 8);
};

#[cfg(feature = "user")]
mod user {
    use super::{
        ClosedSock, FlowKey, FlowValue, OverflowCounters, SockOwner, TaskOffsets, TcpSample,
    };

    // SAFETY: all of these are #[repr(C)], contain only integers and byte
    // arrays, have no implicit padding (sizes asserted above equal the sum of
    // the fields) and every bit pattern is a valid value.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockOwner {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ClosedSock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OverflowCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TaskOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TcpSample {}
}
