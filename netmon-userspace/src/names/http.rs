//! HTTP/1 `Host` header of a request, parsed with `httparse`.

/// The host of the `Host` header (port removed) of the HTTP/1 request at the
/// start of `payload`, if its headers are complete in `payload` or at least
/// the `Host` header was read before the cut.
#[must_use]
pub fn host(payload: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    // A partial parse still fills the headers read so far.
    match req.parse(payload) {
        Ok(_) => {}
        Err(_) => return None,
    }
    req.method?;
    let value = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))?
        .value;
    let value = std::str::from_utf8(value).ok()?.trim();
    super::normalize(strip_port(value))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → the host part.
fn strip_port(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_requests() {
        assert_eq!(
            host(b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: Files.Example.org:8080\r\n\r\n")
                .as_deref(),
            Some("files.example.org")
        );
        assert_eq!(
            host(b"POST / HTTP/1.0\r\nhost: a.example\r\nContent-Length: 3\r\n\r\nabc").as_deref(),
            Some("a.example")
        );
        // Cut after the Host header: still found.
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: b.example\r\nAccept: */").as_deref(),
            Some("b.example")
        );
    }

    #[test]
    fn no_host() {
        assert_eq!(host(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(host(b"\x16\x03\x01\x00"), None);
        assert_eq!(host(b"SSH-2.0-OpenSSH_9.6\r\n"), None);
        // A literal address is no name.
        assert_eq!(host(b"GET / HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n"), None);
        assert_eq!(host(b"GET / HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n"), None);
    }
}
