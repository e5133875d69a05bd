//! UDP workloads.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netmon_tests::report::{ConnReport, DONE, READY, Report};

use crate::{elapsed_ms, emit, left, sock};

/// `udp-recv`.
#[derive(clap::Args)]
pub struct RecvArgs {
    /// Address to bind the sockets to (each on a free port).
    #[arg(long)]
    bind: IpAddr,
    /// Number of sockets.
    #[arg(long, default_value_t = 1)]
    sockets: usize,
    /// Datagrams to expect per socket; a socket stops once it has them.
    #[arg(long, default_value_t = u64::MAX)]
    expect: u64,
    /// Receive buffer per socket (`SO_RCVBUFFORCE`).
    #[arg(long)]
    rcvbuf: Option<i32>,
    /// After the first datagram, stop when nothing arrives for this long.
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
}

/// `udp-send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Destination (repeatable); every round sends one datagram to each.
    #[arg(long, required = true)]
    to: Vec<SocketAddr>,
    /// Rounds.
    #[arg(long)]
    count: u64,
    /// Payload sizes, used in turn (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    sizes: Vec<usize>,
    /// Stop after this many seconds even if fewer rounds were sent.
    #[arg(long)]
    seconds: Option<f64>,
    /// Connect the socket (one destination only) and use `send`: no route
    /// lookup per datagram (the benchmark's packet rate).
    #[arg(long)]
    connect: bool,
    /// Extra IP header bytes on every datagram: IPv4 options (4 bytes) or an
    /// IPv6 destination options header (8 bytes); see
    /// `sock::set_ip_options`. Fails if the kernel refuses them.
    #[arg(long)]
    ip_options: bool,
}

pub fn recv(a: &RecvArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut sockets = Vec::with_capacity(a.sockets);
    for _ in 0..a.sockets {
        let s = UdpSocket::bind(SocketAddr::new(a.bind, 0))
            .with_context(|| format!("bind {}", a.bind))?;
        if let Some(bytes) = a.rcvbuf {
            sock::force_rcvbuf(&s, bytes).context("SO_RCVBUFFORCE")?;
        }
        sockets.push(s);
    }
    let ports = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()?;
    emit(&Report {
        ports,
        ..Report::new(READY)
    })?;
    let (expect, idle) = (a.expect, Duration::from_millis(a.idle_ms));
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|s| thread::spawn(move || recv_one(&s, expect, idle, deadline)))
        .collect();
    let mut done = Report::new(DONE);
    for h in handles {
        let conn = h
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
        done.datagrams_received += conn.datagrams;
        done.read += conn.read;
        done.conns.push(conn);
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}

fn recv_one(
    s: &UdpSocket,
    expect: u64,
    idle: Duration,
    deadline: Instant,
) -> anyhow::Result<ConnReport> {
    let mut conn = ConnReport {
        local_port: s.local_addr()?.port(),
        ..ConnReport::default()
    };
    let mut buf = vec![0_u8; 65536];
    while conn.datagrams < expect {
        let Ok(left) = left(deadline) else { break };
        let wait = if conn.datagrams == 0 {
            left
        } else {
            idle.min(left)
        };
        s.set_read_timeout(Some(wait))?;
        match s.recv(&mut buf) {
            Ok(n) => {
                conn.datagrams += 1;
                conn.read += n as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("recv"),
        }
    }
    Ok(conn)
}

pub fn send(a: &SendArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let Some(first) = a.to.first() else {
        bail!("no destination")
    };
    if a.sizes.is_empty() || a.sizes.iter().any(|&s| s > 65000) {
        bail!("sizes must be 1..=65000 bytes");
    }
    let any: IpAddr = if first.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        [0_u16; 8].into()
    };
    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
    if a.ip_options {
        sock::set_ip_options(&s, first.is_ipv6()).context("setting IP options")?;
    }
    s.set_write_timeout(Some(left(deadline)?))?;
    if a.connect {
        if a.to.len() != 1 {
            bail!("--connect takes exactly one --to");
        }
        s.connect(first)
            .with_context(|| format!("connect {first}"))?;
    }
    let buf = vec![0xa5_u8; a.sizes.iter().copied().max().unwrap_or(0)];
    let send_for = a.seconds.map(Duration::from_secs_f64);
    let mut done = Report::new(DONE);
    let mut sizes = a.sizes.iter().copied().cycle();
    'rounds: for round in 0..a.count {
        // Checking the clock every 64 rounds keeps it off the fast path.
        if round % 64 == 0 {
            if send_for.is_some_and(|d| start.elapsed() >= d) {
                break 'rounds;
            }
            left(deadline).with_context(|| format!("sending, {round} rounds done"))?;
        }
        for to in &a.to {
            let size = sizes.next().unwrap_or(0);
            let sent = if a.connect {
                s.send(&buf[..size])
            } else {
                s.send_to(&buf[..size], to)
            };
            let n = sent.with_context(|| format!("send to {to}"))?;
            if n != size {
                bail!("short datagram: {n} of {size} bytes");
            }
            done.datagrams_sent += 1;
            done.written += n as u64;
        }
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}
