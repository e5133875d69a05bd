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
const IPPROTO_TCP: u8 = 6;
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

/// What the counting programs need from a packet's headers.
pub struct Headers {
    /// 4 or 6.
    pub ip_version: u8,
    /// Transport protocol number.
    pub protocol: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, host order (0 without ports).
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// IP header(s) plus transport header length: `len - header_len` is the
    /// L4 payload.
    pub header_len: u32,
}

/// Parses the headers of the packet in `ctx`; `None` if it is not IP or too
/// short to hold the headers it claims.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Headers> {
    // `skb->protocol` (the EtherType, network byte order) is set before both
    // hooks run (`ip_output`/`ip6_output` on egress, the device on ingress):
    // reading it saves a `bpf_skb_load_bytes` per packet.
    // SAFETY: reading a field of this program's own context.
    let skb = ctx.as_ptr().cast::<__sk_buff>();
    // SAFETY: as above.
    let (protocol, data, data_end) = unsafe {
        (
            (*skb).protocol,
            (*skb).data as usize,
            (*skb).data_end as usize,
        )
    };
    match u16::from_be(protocol as u16) {
        ETH_P_IP => {
            // Fast path: the IPv4 header (without options) and the first 20
            // bytes of the transport header are in the skb's linear data —
            // read them directly instead of through helper calls.
            if data + V4_FAST_LEN <= data_end {
                // SAFETY: the verifier-visible check above proves
                // `data..data + V4_FAST_LEN` is readable packet data.
                let bytes = unsafe { &*(data as *const [u8; V4_FAST_LEN]) };
                if let Some(h) = fast_v4(bytes) {
                    return Some(h);
                }
            }
            parse_v4(ctx)
        }
        ETH_P_IPV6 => {
            if data + V6_FAST_LEN <= data_end {
                // SAFETY: as above, for `V6_FAST_LEN` bytes.
                let bytes = unsafe { &*(data as *const [u8; V6_FAST_LEN]) };
                if let Some(h) = fast_v6(bytes) {
                    return Some(h);
                }
            }
            parse_v6(ctx)
        }
        _ => None,
    }
}

/// IPv4 header without options (20) + the transport bytes the fast path
/// reads: ports (4) and TCP's data offset (byte 12): 33, rounded to 40 (the
/// smallest TCP packet; UDP and ICMP packets this short take the slow path).
const V4_FAST_LEN: usize = 40;
/// IPv6 fixed header (40) + ports and TCP data offset (13): 53, rounded up.
const V6_FAST_LEN: usize = 56;

/// Headers from directly read bytes, for the common shapes only (IPv4
/// without options, not a fragment; IPv6 without extension headers);
/// `None` sends the packet to the general, helper-based path.
#[inline(always)]
fn fast_v4(ip: &[u8; V4_FAST_LEN]) -> Option<Headers> {
    if ip[0] != 0x45 || (ip[6] & 0x1f) != 0 || ip[7] != 0 {
        return None;
    }
    let protocol = ip[9];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    let (sport, dport, l4_len) = fast_transport(protocol, &ip[20..34])?;
    Some(Headers {
        ip_version: 4,
        protocol,
        src,
        dst,
        sport,
        dport,
        header_len: 20 + l4_len,
    })
}

#[inline(always)]
fn fast_v6(ip: &[u8; V6_FAST_LEN]) -> Option<Headers> {
    let protocol = ip[6];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let (sport, dport, l4_len) = fast_transport(protocol, &ip[40..54])?;
    Some(Headers {
        ip_version: 6,
        protocol,
        src,
        dst,
        sport,
        dport,
        header_len: 40 + l4_len,
    })
}

/// Ports and transport header length from the first 14 transport bytes, for
/// TCP, UDP and ICMP; `None` for anything else (slow path).
#[inline(always)]
fn fast_transport(protocol: u8, l4: &[u8]) -> Option<(u16, u16, u32)> {
    match protocol {
        IPPROTO_TCP => Some((ports(l4).0, ports(l4).1, u32::from(l4[12] >> 4) * 4)),
        IPPROTO_UDP => Some((ports(l4).0, ports(l4).1, 8)),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Some((0, 0, 8)),
        _ => None,
    }
}

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext) -> Option<Headers> {
    let ip: [u8; 20] = ctx.load(0).ok()?;
    let ihl = u32::from(ip[0] & 0x0f) * 4;
    let protocol = ip[9];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    // A non-first fragment carries no transport header. (Hooks see whole
    // datagrams; this only guards against surprises.)
    let frag_offset = (u16::from(ip[6] & 0x1f) << 8) | u16::from(ip[7]);
    let (sport, dport, l4_len) = if frag_offset == 0 {
        transport(ctx, ihl, protocol)
    } else {
        (0, 0, 0)
    };
    Some(Headers {
        ip_version: 4,
        protocol,
        src,
        dst,
        sport,
        dport,
        header_len: ihl + l4_len,
    })
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext) -> Option<Headers> {
    let ip: [u8; 40] = ctx.load(0).ok()?;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
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
    let (sport, dport, l4_len) = match next {
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => (0, 0, 0),
        _ if !has_transport => (0, 0, 0),
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
    })
}

/// Ports and transport header length at `offset`.
#[inline(always)]
fn transport(ctx: &SkBuffContext, offset: u32, protocol: u8) -> (u16, u16, u32) {
    match protocol {
        IPPROTO_TCP => {
            // Ports (0..4) and the data offset nibble (byte 12).
            let Ok(tcp) = ctx.load::<[u8; 14]>(offset as usize) else {
                return (0, 0, 0);
            };
            let doff = u32::from(tcp[12] >> 4) * 4;
            (ports(&tcp).0, ports(&tcp).1, doff)
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => match ctx.load::<[u8; 4]>(offset as usize) {
            Ok(udp) => (ports(&udp).0, ports(&udp).1, 8),
            Err(_) => (0, 0, 0),
        },
        IPPROTO_SCTP => match ctx.load::<[u8; 4]>(offset as usize) {
            // SCTP common header is 12 bytes; chunk headers count as payload.
            Ok(sctp) => (ports(&sctp).0, ports(&sctp).1, 12),
            Err(_) => (0, 0, 0),
        },
        // ICMP echo and friends: type, code, checksum, 4 bytes of rest.
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (0, 0, 8),
        _ => (0, 0, 0),
    }
}

#[inline(always)]
fn ports(h: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    )
}
