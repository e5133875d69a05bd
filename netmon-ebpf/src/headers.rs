//! Reading the IP and transport headers of a packet at a cgroup_skb hook.
//!
//! At both cgroup_skb hooks `skb->data` points at the IP header (egress: in
//! `ip_finish_output`/`ip6_finish_output`, before fragmentation; ingress: the
//! kernel pushes back to the network header before running the program, after
//! reassembly), so offset 0 of `bpf_skb_load_bytes` is the IP header and
//! `skb->len` is the IP packet length.
//!
//! Only fixed-size loads: at most one IP header, a bounded walk over IPv6
//! extension headers (none on ordinary traffic) and one transport header.

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
    let protocol = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).protocol };
    match u16::from_be(protocol as u16) {
        ETH_P_IP => parse_v4(ctx),
        ETH_P_IPV6 => parse_v6(ctx),
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
