//! SNI of a QUIC version 1 client Initial packet.
//!
//! The Initial packet's keys are derived from public values (RFC 9001
//! §5.2: HKDF over the client's Destination Connection ID with a published
//! salt), so an observer can decrypt it. The key schedule, the header
//! protection and the AEAD are rustls's own (`rustls::quic::Keys::initial`
//! with the ring provider's TLS_AES_128_GCM_SHA256 suite, the one RFC 9001
//! fixes for Initials): no cryptography is written here, only the header
//! parsing (RFC 9000 §17.2) and the frame walk to the CRYPTO data, whose
//! ClientHello `tls-parser` reads.
//!
//! Limits: only the first Initial packet of the datagram is read, and the
//! ClientHello's SNI extension must lie within the CRYPTO bytes of that
//! datagram (a post-quantum ClientHello spread over two Initials may not
//! be named).

use rustls::{
    Side,
    quic::{Keys, Version},
};
use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_message_handshake};

const QUIC_V1: u32 = 1;

/// The SNI of the ClientHello in the QUIC v1 client Initial packet at the
/// start of `datagram`.
#[must_use]
pub fn initial_sni(datagram: &[u8]) -> Option<String> {
    let crypto = initial_crypto(datagram)?;
    let (_, msg) = parse_tls_message_handshake(&crypto).ok()?;
    match msg {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => {
            super::tls::sni_of_extensions(hello.ext?)
        }
        _ => None,
    }
}

/// A reader over a packet's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A variable-length integer (RFC 9000 §16).
    fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for b in self.take(len - 1)? {
            v = (v << 8) | u64::from(*b);
        }
        Some(v)
    }
}

/// The CRYPTO stream bytes from offset 0 carried by the first Initial
/// packet of `datagram`, decrypted.
fn initial_crypto(datagram: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor {
        buf: datagram,
        pos: 0,
    };
    let first = c.u8()?;
    // Long header, fixed bit, type Initial (0).
    if first & 0xc0 != 0xc0 || (first >> 4) & 0x03 != 0 {
        return None;
    }
    let version = u32::from_be_bytes(c.take(4)?.try_into().ok()?);
    if version != QUIC_V1 {
        return None;
    }
    let dcid_len = usize::from(c.u8()?);
    let dcid = c.take(dcid_len)?;
    let scid_len = usize::from(c.u8()?);
    c.take(scid_len)?;
    let token_len = usize::try_from(c.varint()?).ok()?;
    c.take(token_len)?;
    let length = usize::try_from(c.varint()?).ok()?;
    let pn_offset = c.pos;
    let end = pn_offset.checked_add(length)?;
    let packet = datagram.get(..end)?;

    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    let quic = suite.quic?;
    // As the server: its "remote" keys are the client's.
    let keys = Keys::initial(Version::V1, suite, quic, dcid, Side::Server);
    let mut packet = packet.to_vec();
    let sample_len = keys.remote.header.sample_len();
    let sample = packet
        .get(pn_offset + 4..pn_offset + 4 + sample_len)?
        .to_vec();
    let (head, rest) = packet.split_at_mut(pn_offset);
    let pn_field = rest.get_mut(..4)?;
    keys.remote
        .header
        .decrypt_in_place(&sample, &mut head[0], pn_field)
        .ok()?;
    let pn_len = usize::from(packet[0] & 0x03) + 1;
    let mut pn: u64 = 0;
    for b in packet.get(pn_offset..pn_offset + pn_len)? {
        pn = (pn << 8) | u64::from(*b);
    }
    let (header, payload) = packet.split_at_mut(pn_offset + pn_len);
    let plain = keys
        .remote
        .packet
        .decrypt_in_place(pn, header, payload)
        .ok()?;
    crypto_from_frames(plain)
}

/// Reassembles the CRYPTO frames of a decrypted Initial payload into the
/// contiguous stream from offset 0.
fn crypto_from_frames(plain: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor { buf: plain, pos: 0 };
    let mut pieces: Vec<(usize, &[u8])> = Vec::new();
    while c.pos < plain.len() {
        match c.varint()? {
            // PADDING, PING
            0x00 | 0x01 => {}
            // ACK, ACK with ECN counts
            t @ (0x02 | 0x03) => {
                c.varint()?;
                c.varint()?;
                let ranges = c.varint()?;
                c.varint()?;
                for _ in 0..ranges {
                    c.varint()?;
                    c.varint()?;
                }
                if t == 0x03 {
                    for _ in 0..3 {
                        c.varint()?;
                    }
                }
            }
            // CRYPTO
            0x06 => {
                let offset = usize::try_from(c.varint()?).ok()?;
                let len = usize::try_from(c.varint()?).ok()?;
                pieces.push((offset, c.take(len)?));
            }
            // CONNECTION_CLOSE (transport): nothing more to learn.
            _ => break,
        }
    }
    pieces.sort_by_key(|(offset, _)| *offset);
    let mut out = Vec::new();
    for (offset, data) in pieces {
        if offset > out.len() {
            break;
        }
        let skip = out.len() - offset;
        if let Some(new) = data.get(skip..) {
            out.extend_from_slice(new);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, SocketAddr},
        sync::Arc,
        time::Instant,
    };

    use super::*;

    /// The first datagram a real QUIC client (quinn-proto with rustls)
    /// sends to connect to `name`.
    fn quinn_initial(name: &str) -> Vec<u8> {
        let crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic");
        let config = quinn_proto::ClientConfig::new(Arc::new(quic));
        let mut endpoint = quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            None,
            false,
            None,
        );
        let server = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 443));
        let (_, mut conn) = endpoint
            .connect(Instant::now(), config, server, name)
            .expect("connect");
        let mut buf = Vec::new();
        let transmit = conn
            .poll_transmit(Instant::now(), 1, &mut buf)
            .expect("a first datagram");
        buf.truncate(transmit.size);
        buf
    }

    #[test]
    fn sni_of_a_quinn_initial() {
        let datagram = quinn_initial("media.example.net");
        assert!(datagram.len() >= 1200, "client Initials are padded");
        assert_eq!(initial_sni(&datagram).as_deref(), Some("media.example.net"));
    }

    #[test]
    fn damaged_or_other_datagrams_have_no_name() {
        let mut datagram = quinn_initial("a.example");
        assert_eq!(initial_sni(&datagram[..datagram.len() - 1]), None);
        let last = datagram.len() - 1;
        datagram[last] ^= 1;
        assert_eq!(initial_sni(&datagram), None, "the AEAD tag fails");
        assert_eq!(initial_sni(&[0x40, 1, 2, 3]), None);
        assert_eq!(initial_sni(&[]), None);
    }
}
