//! Name capture: what the cgroup_skb programs copy to userspace so flows can
//! be named (TLS SNI, HTTP `Host`, QUIC Initial SNI, DNS answers).
//!
//! Per flow, once: the first outgoing payload of each TCP flow and of each
//! UDP flow to port 443 (a QUIC Initial), at most [`CAPTURE_MAX`] bytes.
//! Per packet, on ingress only: DNS messages arriving from port 53 (UDP, or
//! TCP with payload). Each copy is one ring buffer record: a
//! [`CaptureHeader`] followed by `len` payload bytes.
//!
//! Ordering promise (the `Reading::names` contract rests on it): a record
//! is submitted to the ring before the packet it copies is added to the
//! flow's counters, so userspace, reading the flow map first and the ring
//! after, finds the capture of every flow whose payload it saw.
//!
//! The per-flow "already captured" mark is the [`crate::FLOW_F_CAPTURED`]
//! bit of the flow value, set after the record is submitted.

/// The capture ring buffer (`BPF_MAP_TYPE_RINGBUF`): [`CaptureHeader`] +
/// payload records, read by the daemon at each drain.
pub const MAP_CAPTURE_RING: &str = "NETMON_CAPTURE_RING";
/// Capture switch: an array of one [`CaptureConfig`], written by the daemon
/// (`[names] enabled`). All zero (the state after `netmon load` without a
/// daemon) means off: nothing is copied.
pub const MAP_CAPTURE_CONFIG: &str = "NETMON_CAPTURE_CONFIG";
/// Capture counters: a per-CPU array of one [`CaptureStats`].
pub const MAP_CAPTURE_STATS: &str = "NETMON_CAPTURE_STATS";
/// The capture maps, pinned with the others.
pub const CAPTURE_MAPS: [&str; 3] = [MAP_CAPTURE_RING, MAP_CAPTURE_CONFIG, MAP_CAPTURE_STATS];

/// Payload bytes copied per record at most. A TLS ClientHello with a
/// post-quantum hybrid key share (X25519MLKEM768, ~1.2 KB) is ~1.8 KB; a
/// QUIC client Initial is one datagram of at least 1200 bytes, usually at
/// most 1500; a DNS answer over UDP rarely exceeds 1232 bytes (EDNS
/// default). Longer payloads are cut (the parsers then see a truncated
/// message and may find no name).
pub const CAPTURE_MAX: usize = 2048;

/// Size of the capture ring in bytes (a power of two pages): about 500
/// full-size records, thousands of DNS answers, between two drains.
pub const CAPTURE_RING_BYTES: u32 = 1 << 20;

/// [`CaptureHeader::kind`]: the first outgoing payload of a flow.
pub const CAPTURE_FIRST_PAYLOAD: u8 = 1;
/// [`CaptureHeader::kind`]: a DNS message received from port 53.
pub const CAPTURE_DNS: u8 = 2;

/// Header of one capture record. `len` payload bytes follow it in the
/// ring record (the record is `size_of::<CaptureHeader>() + len` bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// The flow the packet is counted in (socket cookie and remote).
    pub key: crate::FlowKey,
    /// When the packet was seen, ns since boot (CLOCK_BOOTTIME).
    pub boottime_ns: u64,
    /// Start time of the socket's owner (see
    /// [`crate::SockOwner::start_boottime_ns`]); 0 without an owner record.
    pub owner_start_boottime_ns: u64,
    /// Process id of the socket's owner (socket storage); 0 when unknown.
    pub owner_tgid: u32,
    /// `CAPTURE_*` kind.
    pub kind: u8,
    /// Zero.
    pub _pad: u8,
    /// Payload bytes following the header.
    pub len: u16,
}

/// Value of [`MAP_CAPTURE_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// 1: copy first payloads and DNS answers; 0: copy nothing.
    pub enabled: u32,
    /// Zero.
    pub _pad: u32,
}

/// Value of [`MAP_CAPTURE_STATS`], one per CPU; userspace sums them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct CaptureStats {
    /// Records written to the ring.
    pub records: u64,
    /// Records lost because the ring was full.
    pub lost: u64,
}

const _: () = {
    assert!(size_of::<CaptureHeader>() == 32 + 8 + 8 + 4 + 1 + 1 + 2);
    assert!(align_of::<CaptureHeader>() == 8);
    assert!(size_of::<CaptureConfig>() == 8);
    assert!(size_of::<CaptureStats>() == 16);
    assert!(CAPTURE_MAX.is_power_of_two());
};

#[cfg(feature = "user")]
mod user {
    use super::{CaptureConfig, CaptureHeader, CaptureStats};

    // SAFETY: #[repr(C)], integers only, no implicit padding (sizes asserted
    // above), every bit pattern valid.
    unsafe impl aya::Pod for CaptureHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CaptureConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CaptureStats {}
}
