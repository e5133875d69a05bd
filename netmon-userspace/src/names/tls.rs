//! TLS ClientHello server name indication, parsed with `tls-parser`.
//!
//! Encrypted Client Hello (ECH): the ClientHello on the wire is the outer
//! one, whose SNI names the client-facing server (often a CDN's shared
//! name, e.g. `cloudflare-ech.com`); the real name is encrypted. netmon then
//! reports the outer name, which is what an observer of the connection can
//! know.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_plaintext,
};

/// The host name of the first `host_name` entry of the SNI extension of a
/// ClientHello at the start of `payload` (one or more TLS records; the
/// ClientHello must be whole in the first record), normalised by
/// [`super::normalize`].
#[must_use]
pub fn sni(payload: &[u8]) -> Option<String> {
    let (_, record) = parse_tls_plaintext(payload).ok()?;
    record.msg.iter().find_map(|msg| match msg {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => {
            sni_of_extensions(hello.ext?)
        }
        _ => None,
    })
}

/// The SNI host name in a ClientHello's extensions block.
#[must_use]
pub fn sni_of_extensions(ext: &[u8]) -> Option<String> {
    let (_, extensions) = parse_tls_client_hello_extensions(ext).ok()?;
    extensions.iter().find_map(|e| match e {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(kind, _)| *kind == SNIType::HostName)
            .and_then(|(_, name)| super::normalize(std::str::from_utf8(name).ok()?)),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// The first bytes a real rustls client sends for `name`.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("client");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("write");
        out
    }

    #[test]
    fn sni_of_a_rustls_client_hello() {
        let hello = client_hello("Video.Example.COM");
        assert_eq!(sni(&hello).as_deref(), Some("video.example.com"));
    }

    #[test]
    fn truncated_or_other_bytes_have_no_name() {
        let hello = client_hello("a.example");
        assert_eq!(sni(&hello[..hello.len() / 2]), None);
        assert_eq!(sni(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(sni(&[]), None);
    }

    /// An address literal gets no SNI from rustls (RFC 6066 forbids it).
    #[test]
    fn literal_address_has_no_sni() {
        let hello = client_hello("192.0.2.7");
        assert_eq!(sni(&hello), None);
    }
}
