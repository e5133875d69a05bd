//! UDP workloads.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    ptr, thread,
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
    /// The system call that receives.
    #[arg(long, value_enum, default_value_t)]
    method: RecvMethod,
    /// Wait this long after reporting ready before the first read: a slow
    /// receiver, whose full buffer makes the kernel drop datagrams.
    #[arg(long, default_value_t = 0)]
    start_delay_ms: u64,
}

/// How `udp-recv --method` receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RecvMethod {
    /// recv(2), one datagram a call.
    #[default]
    Recv,
    /// recvmmsg(2), up to [`BATCH`] datagrams a call (`MSG_WAITFORONE`).
    Recvmmsg,
}

/// How `udp-send --method` sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SendMethod {
    /// send(2) / sendto(2), one datagram a call.
    #[default]
    Send,
    /// sendmmsg(2), up to [`BATCH`] datagrams a call.
    Sendmmsg,
}

/// Datagrams per sendmmsg / recvmmsg call.
const BATCH: usize = 32;
/// Receive buffer per datagram: any UDP payload fits.
const MAX_DATAGRAM: usize = 65536;

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
    /// The system call that sends.
    #[arg(long, value_enum, default_value_t)]
    method: SendMethod,
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
    thread::sleep(Duration::from_millis(a.start_delay_ms));
    let (expect, idle, method) = (a.expect, Duration::from_millis(a.idle_ms), a.method);
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            thread::spawn(move || match method {
                RecvMethod::Recv => recv_one(&s, expect, idle, deadline),
                RecvMethod::Recvmmsg => recvmmsg_one(&s, expect, idle, deadline),
            })
        })
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

/// [`recv_one`] with recvmmsg(2): each call waits like one `recv` (the
/// socket's `SO_RCVTIMEO`: the deadline before the first datagram, the idle
/// time after it) for its first datagram, then (`MSG_WAITFORONE`) takes what
/// else is queued without waiting, up to [`BATCH`] and never beyond
/// `expect`. Counts datagrams and bytes from each message's `msg_len`.
fn recvmmsg_one(
    s: &UdpSocket,
    expect: u64,
    idle: Duration,
    deadline: Instant,
) -> anyhow::Result<ConnReport> {
    let mut conn = ConnReport {
        local_port: s.local_addr()?.port(),
        ..ConnReport::default()
    };
    let mut bufs = vec![0_u8; BATCH * MAX_DATAGRAM];
    let mut iovs: Vec<libc::iovec> = bufs
        .as_chunks_mut::<MAX_DATAGRAM>()
        .0
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data (integers and null pointers); all
    // zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    while conn.datagrams < expect {
        let Ok(left) = left(deadline) else { break };
        let wait = if conn.datagrams == 0 {
            left
        } else {
            idle.min(left)
        };
        s.set_read_timeout(Some(wait))?;
        let want = usize::try_from(expect - conn.datagrams)
            .unwrap_or(usize::MAX)
            .min(BATCH);
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_name = ptr::null_mut();
            m.msg_hdr.msg_namelen = 0;
            m.msg_hdr.msg_iov = ptr::from_mut(iov);
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = ptr::null_mut();
            m.msg_hdr.msg_controllen = 0;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: `msgs` holds `want` <= BATCH initialized mmsghdrs, each
        // with one iovec of `iovs` pointing into its own MAX_DATAGRAM bytes
        // of `bufs`; `bufs` and `iovs` are not touched while the kernel
        // writes (during the call only). No timeout pointer: the wait is
        // SO_RCVTIMEO.
        let rc = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                msgs.as_mut_ptr(),
                u32::try_from(want).unwrap_or(1),
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        let Ok(got) = usize::try_from(rc) else {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => break,
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e).context("recvmmsg"),
            }
        };
        if got == 0 || got > want {
            bail!("recvmmsg returned {got} for a batch of {want}");
        }
        for m in msgs.iter().take(got) {
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                bail!("recvmmsg: datagram truncated to {} bytes", m.msg_len);
            }
            conn.datagrams += 1;
            conn.read += u64::from(m.msg_len);
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
    if a.method == SendMethod::Sendmmsg {
        let mut done = sendmmsg_all(&s, a, &buf, start, deadline)?;
        done.elapsed_ms = elapsed_ms(start);
        return emit(&done);
    }
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

/// `udp-send --method sendmmsg`: the same datagrams as the `send` loop (in
/// the same order: each round one to each destination, sizes in turn), up to
/// [`BATCH`] a call. Counts what the kernel reports sent: the return value
/// (messages sent; a partial batch's rest goes in the next call) and each
/// sent message's `msg_len`. Checks the clock before every call.
fn sendmmsg_all(
    s: &UdpSocket,
    a: &SendArgs,
    buf: &[u8],
    start: Instant,
    deadline: Instant,
) -> anyhow::Result<Report> {
    let dests: Vec<socket2::SockAddr> = a.to.iter().map(|&to| to.into()).collect();
    let total = a.count.saturating_mul(a.to.len() as u64);
    let send_for = a.seconds.map(Duration::from_secs_f64);
    let mut done = Report::new(DONE);
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: mmsghdr is plain old data (integers and null pointers); all
    // zero is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // Datagram `i` goes to `dests[i % dests.len()]` with size
    // `sizes[i % sizes.len()]`, as in the `send` loop.
    let mut next: u64 = 0;
    while next < total {
        if send_for.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let n = usize::try_from(total - next).unwrap_or(BATCH).min(BATCH);
        let mut sizes = [0_usize; BATCH];
        for (j, ((m, iov), size)) in msgs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(sizes.iter_mut())
            .take(n)
            .enumerate()
        {
            let i = next + j as u64;
            *size = a.sizes[(i % a.sizes.len() as u64) as usize];
            let to = &dests[(i % dests.len() as u64) as usize];
            // The kernel only reads a send's iovecs: the shared payload is
            // never written through this pointer.
            iov.iov_base = buf.as_ptr().cast_mut().cast();
            iov.iov_len = *size;
            let (name, namelen) = if a.connect {
                (ptr::null_mut(), 0)
            } else {
                (to.as_ptr().cast_mut().cast(), to.len())
            };
            m.msg_hdr.msg_name = name;
            m.msg_hdr.msg_namelen = namelen;
            m.msg_hdr.msg_iov = ptr::from_mut(iov);
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = ptr::null_mut();
            m.msg_hdr.msg_controllen = 0;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // Send the batch; a partial return leaves the rest for the next call.
        let mut off = 0;
        while off < n {
            left(deadline)
                .with_context(|| format!("sending, {} datagrams done", done.datagrams_sent))?;
            let pending = &mut msgs[off..n];
            // SAFETY: `pending` is initialized mmsghdrs, each naming a live
            // destination address of `dests` (or none) and one iovec of
            // `iovs` that covers `size` <= buf.len() bytes of `buf`; all of
            // them outlive the call, and the kernel writes only `msg_len`.
            let rc = unsafe {
                libc::sendmmsg(
                    s.as_raw_fd(),
                    pending.as_mut_ptr(),
                    u32::try_from(pending.len()).unwrap_or(1),
                    0,
                )
            };
            let Ok(sent) = usize::try_from(rc) else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e)
                    .with_context(|| format!("sendmmsg, {} datagrams done", done.datagrams_sent));
            };
            if sent == 0 || sent > pending.len() {
                bail!("sendmmsg returned {sent} for a batch of {}", pending.len());
            }
            for (m, &size) in pending.iter().zip(&sizes[off..n]).take(sent) {
                let len = m.msg_len as usize;
                if len != size {
                    bail!("short datagram: {len} of {size} bytes");
                }
                done.datagrams_sent += 1;
                done.written += u64::from(m.msg_len);
            }
            off += sent;
        }
        next += n as u64;
    }
    Ok(done)
}
