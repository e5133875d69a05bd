//! `netmon-names-client`: the client side of the name tests
//! (`tests/names.rs`). Runs its steps in order, in one process, and prints
//! one `done` [`Report`] with one [`ConnReport`] per TCP connection or QUIC
//! datagram, in step order (`written`: payload bytes handed to the kernel,
//! `read`: bytes read back), the tests' ground truth.
//!
//! Steps (positional arguments):
//! - `resolve:NAME`, `resolve6:NAME`: asks the DNS server (`--dns`, over
//!   UDP) for NAME's A (AAAA) record (hickory-proto encodes the query and
//!   decodes the answer); the address becomes the target of the next
//!   connections;
//! - `port:P`: the TCP port of the next `tcp:` steps (`--port` first);
//! - `tcp:PREFIX:N`: connects to the target at `--port`, writes the prefix
//!   (`none`, `tls=SNI`: a real rustls ClientHello for SNI, `http=HOST`: an
//!   HTTP/1 request line and `Host` header), then N bytes, shuts down its
//!   sending half and reads to EOF;
//! - `quic:SNI`: sends the first datagram of a real QUIC client (quinn-proto
//!   with rustls) for SNI to the target at `--quic-port`, from a connected
//!   UDP socket;
//! - `sleep:MS`.
//!
//! `--target` sets the target without DNS (a literal address).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket},
    str::FromStr as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use hickory_proto::{
    op::{Message, MessageType, Query},
    rr::{Name, RData, RecordType},
};
use netmon_tests::report::{ConnReport, DONE, Report};

#[derive(Parser)]
struct Args {
    /// DNS server for `resolve:` steps.
    #[arg(long)]
    dns: Option<SocketAddr>,
    /// Target address before any `resolve:` step.
    #[arg(long)]
    target: Option<IpAddr>,
    /// TCP port of `tcp:` steps.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// UDP port of `quic:` steps.
    #[arg(long, default_value_t = 443)]
    quic_port: u16,
    /// Steps, in order.
    steps: Vec<String>,
}

fn main() {
    if let Err(e) = run(&Args::parse()) {
        eprintln!("netmon-names-client: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> anyhow::Result<()> {
    let mut target = a.target;
    let mut port = a.port;
    let mut done = Report::new(DONE);
    let start = Instant::now();
    for step in &a.steps {
        let (kind, rest) = step.split_once(':').unwrap_or((step, ""));
        match kind {
            "resolve" | "resolve6" => {
                let dns = a.dns.context("resolve: needs --dns")?;
                let kind = if kind == "resolve" {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                target = Some(resolve(dns, rest, kind)?);
            }
            "port" => port = rest.parse().context("port:P")?,
            "tcp" => {
                let ip = target.context("tcp: needs a target")?;
                let (prefix, n) = rest.rsplit_once(':').context("tcp:PREFIX:N")?;
                let n: u64 = n.parse().context("tcp: N")?;
                done.conns
                    .push(tcp(SocketAddr::new(ip, port), &prefix_bytes(prefix)?, n)?);
            }
            "quic" => {
                let ip = target.context("quic: needs a target")?;
                done.conns
                    .push(quic(SocketAddr::new(ip, a.quic_port), rest)?);
            }
            "sleep" => std::thread::sleep(Duration::from_millis(rest.parse()?)),
            _ => bail!("unknown step {step}"),
        }
    }
    done.written = done.conns.iter().map(|c| c.written).sum();
    done.read = done.conns.iter().map(|c| c.read).sum();
    done.elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    println!("{}", serde_json::to_string(&done)?);
    Ok(())
}

/// The first A (or AAAA) record the server gives for `name`.
fn resolve(dns: SocketAddr, name: &str, kind: RecordType) -> anyhow::Result<IpAddr> {
    let mut q = Message::new();
    q.set_id(0x4e4d)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true);
    q.add_query(Query::query(Name::from_str(name)?, kind));
    let sock = UdpSocket::bind(SocketAddr::new(
        if dns.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    ))?;
    sock.connect(dns)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.send(&q.to_vec()?)?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).context("DNS answer")?;
    let answer = Message::from_vec(&buf[..n])?;
    answer
        .answers()
        .iter()
        .find_map(|r| match r.data() {
            RData::A(a) if kind == RecordType::A => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) if kind == RecordType::AAAA => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no {kind} record for {name}: {answer:?}"))
}

fn prefix_bytes(prefix: &str) -> anyhow::Result<Vec<u8>> {
    Ok(match prefix.split_once('=') {
        None if prefix == "none" => Vec::new(),
        Some(("tls", sni)) => client_hello(sni)?,
        Some(("http", host)) => format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        _ => bail!("unknown prefix {prefix}"),
    })
}

fn client_config() -> anyhow::Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth())
}

/// The bytes a rustls client sends first for `sni`.
fn client_hello(sni: &str) -> anyhow::Result<Vec<u8>> {
    let server = rustls::pki_types::ServerName::try_from(sni.to_owned())?;
    let mut conn = rustls::ClientConnection::new(Arc::new(client_config()?), server)?;
    let mut out = Vec::new();
    conn.write_tls(&mut out)?;
    Ok(out)
}

fn tcp(to: SocketAddr, prefix: &[u8], n: u64) -> anyhow::Result<ConnReport> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .with_context(|| format!("connect {to}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(prefix)?;
    let chunk = [0x5au8; 8192];
    let mut left = n;
    while left > 0 {
        let k = usize::try_from(left.min(chunk.len() as u64))?;
        s.write_all(&chunk[..k])?;
        left -= k as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut read = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        read += k as u64;
    }
    Ok(ConnReport {
        local_port: s.local_addr()?.port(),
        remote_port: to.port(),
        written: prefix.len() as u64 + n,
        read,
        datagrams: 0,
    })
}

/// Sends a real QUIC client's first datagram (its Initial) for `sni`.
fn quic(to: SocketAddr, sni: &str) -> anyhow::Result<ConnReport> {
    let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(client_config()?)?;
    let config = quinn_proto::ClientConfig::new(Arc::new(quic));
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let (_, mut conn) = endpoint.connect(Instant::now(), config, to, sni)?;
    let mut buf = Vec::new();
    let t = conn
        .poll_transmit(Instant::now(), 1, &mut buf)
        .context("no QUIC datagram to send")?;
    let sock = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))?;
    sock.connect(to)?;
    let sent = sock.send(&buf[..t.size])?;
    Ok(ConnReport {
        local_port: sock.local_addr()?.port(),
        remote_port: to.port(),
        written: sent as u64,
        read: 0,
        datagrams: 1,
    })
}
