//! Reading the IP and transport headers of a packet at a cgroup_skb hook.
//!
//! At both cgroup_skb hooks `skb->data` points at the IP header (egress: in
//! `ip_finish_output`/`ip6_finish_output`, before fragmentation; ingress: the
//! kernel pushes back to the network header before running the program, after
//! reassembly), so offset 0 of `bpf_skb_load_bytes` is the IP header and
//! `skb->len` is the IP packet length.
//!
//! Common packets (IPv4 without options, IPv6 without extension headers,
//! TCP/UDP/ICMP, headers in the linear data) are read directly from packet
//! memory, with no helper call. Everything else takes fixed-size
//! `bpf_skb_load_bytes` loads: one IP header, a bounded walk over IPv6
//! extension headers and one transport header.

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, programs::SkBuffContext};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

const IPPROTO_ICMP: u8 = 1;
/// TCP's protocol number.
pub const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_UDPLITE: u8 = 136;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;
// IPv6 extension headers.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Extension headers walked at most; more than this is treated as a packet
/// without a readable transport header (payload = rest of the packet).
const MAX_EXT_HEADERS: usize = 4;

/// An IP address as four 32-bit words in memory (network) byte order: the
/// bytes of [`netmon_common::FlowKey::remote_addr`], IPv4 in the first word
/// and zeros after. Words, not bytes: the bpf backend copies and zeroes a
/// `[u8; 16]` one byte at a time (and calls a byte-loop `memset`), which was
/// most of the per-packet cost.
pub type Addr = [u32; 4];

/// What the counting programs need from a packet's headers.
pub struct Headers {
    /// 4 or 6.
    pub ip_version: u8,
    /// Transport protocol number.
    pub protocol: u8,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port, host order (0 without ports).
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// IP header(s) plus transport header length: `len - header_len` is the
    /// L4 payload.
    pub header_len: u32,
    /// TCP: the sequence number of the first payload byte, host order
    /// (meaningless for other protocols).
    pub seq: u32,
}

/// Parses the headers of the packet in `ctx`; `None` if it is not IP or too
/// short to hold the headers it claims.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Headers> {
    // `skb->protocol` (the EtherType, network byte order) is set before both
    // hooks run (`ip_output`/`ip6_output` on egress, the device on ingress):
    // reading it saves a `bpf_skb_load_bytes` per packet.
    let skb = ctx.as_ptr().cast::<__sk_buff>();
    // SAFETY: reading fields of this program's own context.
    let (protocol, data, data_end) = unsafe {
        (
            (*skb).protocol,
            (*skb).data as usize,
            (*skb).data_end as usize,
        )
    };
    match u16::from_be(protocol as u16) {
        ETH_P_IP => {
            // Fast path: the IPv4 header (without options) and the first
            // bytes of the transport header are in the skb's linear data —
            // read them directly instead of through helper calls.
            if data + V4_FAST_LEN <= data_end {
                // SAFETY: the verifier-visible check above proves
                // `data..data + V4_FAST_LEN` is readable packet data.
                if let Some(h) = unsafe { fast_v4(data) } {
                    return Some(h);
                }
            }
            parse_v4(ctx)
        }
        ETH_P_IPV6 => {
            if data + V6_FAST_LEN <= data_end {
                // SAFETY: as above, for `V6_FAST_LEN` bytes.
                if let Some(h) = unsafe { fast_v6(data) } {
                    return Some(h);
                }
            }
            parse_v6(ctx)
        }
        _ => None,
    }
}

/// IPv4 header without options (20) + the transport bytes the fast path
/// reads: ports (4), TCP's sequence number (4) and data offset (byte 12):
/// 33, rounded to 40 (the smallest TCP packet; UDP and ICMP packets this
/// short take the slow path).
const V4_FAST_LEN: usize = 40;
/// IPv6 fixed header (40) + ports, sequence number and TCP data offset
/// (13): 53, rounded up.
const V6_FAST_LEN: usize = 56;

/// The 32-bit word at `data + OFF` in packet memory, in memory byte order.
///
/// An `ldxw` written out: the IP header is often not 4-byte aligned, so a
/// Rust `u32` read would be undefined behaviour and `read_unaligned` becomes
/// four byte loads; the verifier allows unaligned packet loads wherever the
/// CPU does them efficiently (x86-64, arm64).
///
/// # Safety
/// `data` is the packet's data pointer and `data + OFF + 4 <= data_end` has
/// been checked on it (the verifier rejects the program otherwise).
#[inline(always)]
unsafe fn packet_word<const OFF: i16>(data: usize) -> u32 {
    let word: u64;
    // SAFETY: a 4-byte load from checked packet memory (the caller's
    // contract); no stack, no side effects.
    unsafe {
        core::arch::asm!(
            "{word} = *(u32 *)({data} + {off})",
            word = lateout(reg) word,
            data = in(reg) data,
            off = const OFF,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    word as u32
}

/// The byte at `data + off` in packet memory.
///
/// # Safety
/// As [`packet_word`], for one byte.
#[inline(always)]
unsafe fn packet_byte(data: usize, off: usize) -> u8 {
    // SAFETY: checked packet memory (the caller's contract); bytes need no
    // alignment.
    unsafe { *((data + off) as *const u8) }
}

/// Headers from directly read words, for the common shapes only (IPv4
/// without options, not a fragment; TCP, UDP or ICMP); `None` sends the
/// packet to the general, helper-based path.
///
/// # Safety
/// `data..data + V4_FAST_LEN` is checked packet memory.
#[inline(always)]
unsafe fn fast_v4(data: usize) -> Option<Headers> {
    // SAFETY: every offset + 4 is within V4_FAST_LEN (the contract).
    let (w0, w1, w2, src, dst, ports, seq) = unsafe {
        (
            packet_word::<0>(data),
            packet_word::<4>(data),
            packet_word::<8>(data),
            packet_word::<12>(data),
            packet_word::<16>(data),
            packet_word::<20>(data),
            packet_word::<24>(data),
        )
    };
    let (b0, b1) = (w0.to_ne_bytes(), w1.to_ne_bytes());
    // Version 4, IHL 5; fragment offset 0 (bytes 6-7 without the flags).
    if b0[0] != 0x45 || (b1[2] & 0x1f) != 0 || b1[3] != 0 {
        return None;
    }
    let protocol = w2.to_ne_bytes()[1];
    // SAFETY: the TCP data offset byte is at 20 + 12 < V4_FAST_LEN.
    let (sport, dport, l4_len) =
        fast_l4(protocol, ports, || unsafe { packet_byte(data, 20 + 12) })?;
    Some(Headers {
        ip_version: 4,
        protocol,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        sport,
        dport,
        header_len: 20 + l4_len,
        seq: u32::from_be(seq),
    })
}

/// As [`fast_v4`] for IPv6 without extension headers.
///
/// # Safety
/// `data..data + V6_FAST_LEN` is checked packet memory.
#[inline(always)]
unsafe fn fast_v6(data: usize) -> Option<Headers> {
    // SAFETY: every offset + 4 is within V6_FAST_LEN (the contract).
    let (w1, src, dst, ports, seq) = unsafe {
        (
            packet_word::<4>(data),
            [
                packet_word::<8>(data),
                packet_word::<12>(data),
                packet_word::<16>(data),
                packet_word::<20>(data),
            ],
            [
                packet_word::<24>(data),
                packet_word::<28>(data),
                packet_word::<32>(data),
                packet_word::<36>(data),
            ],
            packet_word::<40>(data),
            packet_word::<44>(data),
        )
    };
    let protocol = w1.to_ne_bytes()[2];
    // SAFETY: the TCP data offset byte is at 40 + 12 < V6_FAST_LEN.
    let (sport, dport, l4_len) =
        fast_l4(protocol, ports, || unsafe { packet_byte(data, 40 + 12) })?;
    Some(Headers {
        ip_version: 6,
        protocol,
        src,
        dst,
        sport,
        dport,
        header_len: 40 + l4_len,
        seq: u32::from_be(seq),
    })
}

/// Transport header length and ports for TCP (data offset byte read only
/// for TCP), UDP and ICMP (no ports: every ICMP packet of a socket and peer
/// is one flow, as in the slow path); `None` for anything else (slow path).
#[inline(always)]
fn fast_l4(
    protocol: u8,
    ports: u32,
    tcp_doff_byte: impl FnOnce() -> u8,
) -> Option<(u16, u16, u32)> {
    match protocol {
        IPPROTO_TCP => {
            let (sport, dport) = port_pair(ports);
            Some((sport, dport, u32::from(tcp_doff_byte() >> 4) * 4))
        }
        IPPROTO_UDP => {
            let (sport, dport) = port_pair(ports);
            Some((sport, dport, 8))
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Some((0, 0, 8)),
        _ => None,
    }
}

/// (source, destination) port, host order, from the transport header's
/// first word as loaded (memory order).
#[inline(always)]
fn port_pair(word: u32) -> (u16, u16) {
    let b = word.to_ne_bytes();
    (
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    )
}

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext) -> Option<Headers> {
    // Words, so the buffer is 4-byte aligned and read a word at a time.
    let ip: [u32; 5] = ctx.load(0).ok()?;
    let (b0, b1, b2) = (
        ip[0].to_ne_bytes(),
        ip[1].to_ne_bytes(),
        ip[2].to_ne_bytes(),
    );
    let ihl = u32::from(b0[0] & 0x0f) * 4;
    let protocol = b2[1];
    // A non-first fragment carries no transport header. (Hooks see whole
    // datagrams; this only guards against surprises.)
    let first_fragment = (b1[2] & 0x1f) == 0 && b1[3] == 0;
    let (sport, dport, l4_len, seq) = if first_fragment {
        transport(ctx, ihl, protocol)
    } else {
        (0, 0, 0, 0)
    };
    Some(Headers {
        ip_version: 4,
        protocol,
        src: [ip[3], 0, 0, 0],
        dst: [ip[4], 0, 0, 0],
        sport,
        dport,
        header_len: ihl + l4_len,
        seq,
    })
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext) -> Option<Headers> {
    let ip: [u32; 10] = ctx.load(0).ok()?;
    let src = [ip[2], ip[3], ip[4], ip[5]];
    let dst = [ip[6], ip[7], ip[8], ip[9]];
    let mut next = ip[1].to_ne_bytes()[2];
    let mut offset: u32 = 40;
    let mut has_transport = true;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => {}
            _ => break,
        }
        let ext: [u8; 4] = ctx.load(offset as usize).ok()?;
        let len = match next {
            NEXTHDR_FRAGMENT => {
                let frag_offset = (u16::from(ext[2]) << 5) | u16::from(ext[3] >> 3);
                if frag_offset != 0 {
                    has_transport = false;
                }
                8
            }
            NEXTHDR_AUTH => (u32::from(ext[1]) + 2) * 4,
            _ => (u32::from(ext[1]) + 1) * 8,
        };
        next = ext[0];
        offset += len;
    }
    let (sport, dport, l4_len, seq) = match next {
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => {
            (0, 0, 0, 0)
        }
        _ if !has_transport => (0, 0, 0, 0),
        _ => transport(ctx, offset, next),
    };
    Some(Headers {
        ip_version: 6,
        protocol: next,
        src,
        dst,
        sport,
        dport,
        header_len: offset + l4_len,
        seq,
    })
}

/// Ports, transport header length and (TCP) sequence number at `offset`.
#[inline(always)]
fn transport(ctx: &SkBuffContext, offset: u32, protocol: u8) -> (u16, u16, u32, u32) {
    match protocol {
        IPPROTO_TCP => {
            // Ports (word 0), sequence number (word 1) and the data offset
            // nibble (byte 12 = word 3, byte 0).
            let Ok(tcp) = ctx.load::<[u32; 4]>(offset as usize) else {
                return (0, 0, 0, 0);
            };
            let doff = u32::from(tcp[3].to_ne_bytes()[0] >> 4) * 4;
            let (sport, dport) = port_pair(tcp[0]);
            (sport, dport, doff, u32::from_be(tcp[1]))
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => match ctx.load::<u32>(offset as usize) {
            Ok(udp) => {
                let (sport, dport) = port_pair(udp);
                (sport, dport, 8, 0)
            }
            Err(_) => (0, 0, 0, 0),
        },
        IPPROTO_SCTP => match ctx.load::<u32>(offset as usize) {
            // SCTP common header is 12 bytes; chunk headers count as payload.
            Ok(sctp) => {
                let (sport, dport) = port_pair(sctp);
                (sport, dport, 12, 0)
            }
            Err(_) => (0, 0, 0, 0),
        },
        // ICMP echo and friends: type, code, checksum, 4 bytes of rest.
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (0, 0, 8, 0),
        _ => (0, 0, 0, 0),
    }
}
