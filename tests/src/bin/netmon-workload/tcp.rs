//! TCP workloads.
//!
//! Connections end gracefully: each side shuts down its sending half when it
//! has sent everything and closes only after reading the peer's FIN. So
//! every segment of the connection, the last ACK included, is sent and
//! received by a full socket that still belongs to the workload, which is
//! what makes a namespace's MIB octet counters equal to the sum of its
//! sockets' counts. (A socket closed early becomes a timewait socket, whose
//! packets no socket hook sees; `--close-at-once` does that on purpose.)

use std::{
    io::{self, BufRead as _, Read as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netmon_tests::report::{ConnReport, DONE, READY, Report};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    elapsed_ms, emit, left,
    send_method::{SendMethod, Sender},
    sock,
};

/// Write chunk size.
const CHUNK: usize = 128 * 1024;

/// `tcp-server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port (reported in `ready`).
    #[arg(long)]
    listen: SocketAddr,
    /// Bytes to send to the client.
    #[arg(long, default_value_t = 0)]
    send: u64,
    /// Receive buffer of the listener (inherited by the connection).
    #[arg(long)]
    rcvbuf: Option<i32>,
    /// Sleep this long after accepting before reading or sending anything.
    #[arg(long, default_value_t = 0)]
    delay_read_ms: u64,
    /// After `done`, keep the socket open until a line arrives on stdin.
    #[arg(long)]
    hold: bool,
    /// Keep the connection open: no shutdown after sending; read exactly
    /// `--expect` bytes instead of reading to EOF. The socket stays
    /// established (and visible to sock_diag) until the process exits.
    #[arg(long)]
    keep_open: bool,
    /// With `--keep-open`: bytes to read from the peer.
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// Extra IP header bytes on every segment this side sends (see
    /// `sock::set_ip_options`); fails if the kernel refuses them.
    #[arg(long)]
    ip_options: bool,
}

/// `tcp-client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// Bytes to send.
    #[arg(long, default_value_t = 0)]
    send: u64,
    /// Stop sending after this many seconds even if fewer bytes went out.
    #[arg(long)]
    seconds: Option<f64>,
    /// Send buffer (`SO_SNDBUFFORCE`).
    #[arg(long)]
    sndbuf: Option<i32>,
    /// Write everything, then close at once without reading (data still
    /// queued); reports the send queue length right before the close.
    #[arg(long)]
    close_at_once: bool,
    /// After connecting, print `ready` and wait for a line on stdin.
    #[arg(long)]
    wait_go: bool,
    /// After `done`, keep the socket open until a line arrives on stdin.
    #[arg(long)]
    hold: bool,
    /// Keep the connection open: no shutdown after sending; read exactly
    /// `--expect` bytes instead of reading to EOF. The socket stays
    /// established (and visible to sock_diag) until the process exits.
    #[arg(long)]
    keep_open: bool,
    /// With `--keep-open`: bytes to read from the peer.
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// How to hand the bytes to the socket.
    #[arg(long, value_enum, default_value_t)]
    method: SendMethod,
    /// Extra IP header bytes on every segment this side sends (see
    /// `sock::set_ip_options`); fails if the kernel refuses them.
    #[arg(long)]
    ip_options: bool,
    /// Fork first: a child that never execs does all the work and reports
    /// (with its own pid); the parent waits for it and prints nothing.
    #[arg(long)]
    fork: bool,
    /// Read `tcpi_rtt` every this many milliseconds while the exchange
    /// runs; the report carries the samples' median and 95th percentile.
    #[arg(long)]
    rtt_every_ms: Option<u64>,
}

/// `tcp-accept-many`.
#[derive(clap::Args)]
pub struct AcceptManyArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Connections to accept.
    #[arg(long)]
    count: usize,
}

/// `fork-accept`.
#[derive(clap::Args)]
pub struct ForkAcceptArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Bytes the child sends.
    #[arg(long)]
    send: u64,
    /// Keep the connection open: no shutdown after sending; read exactly
    /// `--expect` bytes instead of reading to EOF. The socket stays
    /// established (and visible to sock_diag) until the process exits.
    #[arg(long)]
    keep_open: bool,
    /// With `--keep-open`: bytes to read from the peer.
    #[arg(long, default_value_t = 0)]
    expect: u64,
}

pub fn server(a: &ServerArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let listener = listen(a.listen, a.rcvbuf)?;
    emit(&Report {
        ports: vec![listener.local_addr()?.port()],
        ..Report::new(READY)
    })?;
    // IPv6: on the listener, whose options the SYN-ACK carries and the
    // accepted socket inherits. (Set on an established IPv6 socket instead,
    // they were measured (kernel 6.18) to make segments exceed the MTU:
    // `Ip6FragFails`, local "packet too big", a stalled connection.)
    if a.ip_options && a.listen.is_ipv6() {
        sock::set_ip_options(&listener, true).context("setting IP options")?;
    }
    let stream = accept(&listener, deadline)?;
    // IPv4: on the accepted socket, since a listener's options do not carry
    // over (the SYN-ACK and the connection echo the SYN's options instead,
    // and NOPs are not echoed).
    if a.ip_options && a.listen.is_ipv4() {
        sock::set_ip_options(&stream, false).context("setting IP options")?;
    }
    thread::sleep(Duration::from_millis(a.delay_read_ms));
    let (written, read) = exchange(
        &stream,
        a.send,
        None,
        ending(a.keep_open, a.expect),
        SendMethod::Write,
        deadline,
    )?;
    let mut done = Report {
        written,
        read,
        ..Report::new(DONE)
    };
    add_tcp_info(&mut done, &stream)?;
    done.elapsed_ms = elapsed_ms(start);
    finish(&done, stream, a.hold, deadline)
}

pub fn client(a: &ClientArgs, deadline: Instant) -> anyhow::Result<()> {
    if a.fork && !in_forked_child()? {
        return Ok(());
    }
    let start = Instant::now();
    let socket = Socket::new(
        Domain::for_address(a.connect),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(bytes) = a.sndbuf {
        sock::force_sndbuf(&socket, bytes).context("SO_SNDBUFFORCE")?;
    }
    if a.ip_options {
        // Before connecting: the SYN carries them too.
        sock::set_ip_options(&socket, a.connect.is_ipv6()).context("setting IP options")?;
    }
    socket
        .connect_timeout(&a.connect.into(), left(deadline)?)
        .context("connect")?;
    let stream: TcpStream = socket.into();
    if a.wait_go {
        emit(&Report {
            ports: vec![stream.local_addr()?.port()],
            ..Report::new(READY)
        })?;
        wait_stdin_line(deadline)?;
    }
    if a.close_at_once {
        stream.set_write_timeout(Some(left(deadline)?))?;
        let written = write_n(&stream, a.send, None, true, a.method, deadline)?;
        let queued_at_close = sock::outq(&stream)?;
        drop(stream);
        return emit(&Report {
            written,
            queued_at_close,
            elapsed_ms: elapsed_ms(start),
            ..Report::new(DONE)
        });
    }
    let send_for = a.seconds.map(Duration::from_secs_f64);
    let sampler = a
        .rtt_every_ms
        .map(|ms| RttSampler::start(&stream, Duration::from_millis(ms)))
        .transpose()?;
    let (written, read) = exchange(
        &stream,
        a.send,
        send_for,
        ending(a.keep_open, a.expect),
        a.method,
        deadline,
    )?;
    let mut done = Report {
        written,
        read,
        ..Report::new(DONE)
    };
    if let Some(s) = sampler {
        (done.tcp_rtt_p50_us, done.tcp_rtt_p95_us) = s.finish()?;
    }
    add_tcp_info(&mut done, &stream)?;
    done.elapsed_ms = elapsed_ms(start);
    finish(&done, stream, a.hold, deadline)
}

/// Prints `done`; with `hold`, keeps the process and its socket alive until
/// the test says so (a line on stdin), so a snapshot sees a live process.
fn finish(done: &Report, stream: TcpStream, hold: bool, deadline: Instant) -> anyhow::Result<()> {
    emit(done)?;
    if hold {
        wait_stdin_line(deadline)?;
    }
    drop(stream);
    Ok(())
}

pub fn accept_many(a: &AcceptManyArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let listener = listen(a.listen, None)?;
    emit(&Report {
        ports: vec![listener.local_addr()?.port()],
        ..Report::new(READY)
    })?;
    let mut handles = Vec::with_capacity(a.count);
    for _ in 0..a.count {
        let stream = accept(&listener, deadline)?;
        handles.push(thread::spawn(
            move || -> anyhow::Result<(ConnReport, libc::tcp_info)> {
                let conn = ConnReport {
                    local_port: stream.local_addr()?.port(),
                    remote_port: stream.peer_addr()?.port(),
                    read: read_to_eof(&stream, deadline)?,
                    ..ConnReport::default()
                };
                let info = sock::tcp_info(&stream)?;
                Ok((conn, info))
            },
        ));
    }
    let mut done = Report::new(DONE);
    for h in handles {
        let (conn, info) = h
            .join()
            .map_err(|_| anyhow::anyhow!("connection thread panicked"))??;
        done.read += conn.read;
        done.tcp_bytes_sent += info.tcpi_bytes_sent;
        done.tcp_bytes_retrans += info.tcpi_bytes_retrans;
        done.tcp_bytes_received += info.tcpi_bytes_received;
        done.conns.push(conn);
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}

pub fn fork_accept(a: &ForkAcceptArgs, deadline: Instant) -> anyhow::Result<()> {
    let listener = listen(a.listen, None)?;
    emit(&Report {
        ports: vec![listener.local_addr()?.port()],
        ..Report::new(READY)
    })?;
    // SAFETY: the process is single-threaded here (no thread has been
    // started) and stdout was flushed by `emit`, so the child starts from a
    // consistent copy of the process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!("fork: {}", io::Error::last_os_error());
    }
    if child == 0 {
        let code = match fork_child(&listener, a.send, ending(a.keep_open, a.expect), deadline) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("netmon-workload fork-accept child: {e:#}");
                1
            }
        };
        std::process::exit(code);
    }
    // The parent keeps its listener open until the child is done, like a
    // pre-forking server; the accepted socket exists only in the child.
    wait_child(child)?;
    drop(listener);
    Ok(())
}

/// Waits for the forked `child`; fails unless it exited with 0.
fn wait_child(child: libc::pid_t) -> anyhow::Result<()> {
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` is a valid out pointer.
    let rc = unsafe { libc::waitpid(child, &raw mut status, 0) };
    if rc != child {
        bail!("waitpid: {}", io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("forked child failed (wait status {status})");
    }
    Ok(())
}

/// Forks. In the child: returns `true` (the caller goes on with the work).
/// In the parent: waits for the child, fails if it did, returns `false`.
fn in_forked_child() -> anyhow::Result<bool> {
    // SAFETY: the process is single-threaded here (no thread has been
    // started) and nothing is buffered on stdout yet.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!("fork: {}", io::Error::last_os_error());
    }
    if child == 0 {
        return Ok(true);
    }
    wait_child(child)?;
    Ok(false)
}

/// The forked child: accept, send, report, then stay alive (holding the
/// socket) until told to exit on stdin, so the test can take its snapshot
/// while the process exists.
fn fork_child(
    listener: &TcpListener,
    send: u64,
    end: Ending,
    deadline: Instant,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let stream = accept(listener, deadline)?;
    let (written, read) = exchange(&stream, send, None, end, SendMethod::Write, deadline)?;
    let mut done = Report {
        written,
        read,
        ..Report::new(DONE)
    };
    add_tcp_info(&mut done, &stream)?;
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)?;
    wait_stdin_line(deadline)?;
    drop(stream);
    Ok(())
}

fn listen(addr: SocketAddr, rcvbuf: Option<i32>) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if let Some(bytes) = rcvbuf {
        sock::force_rcvbuf(&socket, bytes).context("SO_RCVBUFFORCE")?;
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn accept(listener: &TcpListener, deadline: Instant) -> anyhow::Result<TcpStream> {
    if !sock::wait_readable(listener, left(deadline)?)? {
        bail!("no connection before the time limit");
    }
    Ok(listener.accept()?.0)
}

/// How a connection's exchange ends.
#[derive(Clone, Copy)]
enum Ending {
    /// Shut down the sending half after the last byte, read to EOF: both
    /// FINs are exchanged before the report.
    Close,
    /// No shutdown; read exactly this many bytes. The connection stays
    /// established.
    KeepOpen(u64),
}

fn ending(keep_open: bool, expect: u64) -> Ending {
    if keep_open {
        Ending::KeepOpen(expect)
    } else {
        Ending::Close
    }
}

/// Sends `send` bytes (on a second thread) while reading (to EOF, or the
/// expected bytes), then waits until everything sent was acknowledged;
/// returns (written, read).
fn exchange(
    stream: &TcpStream,
    send: u64,
    send_for: Option<Duration>,
    end: Ending,
    method: SendMethod,
    deadline: Instant,
) -> anyhow::Result<(u64, u64)> {
    let writer = stream.try_clone()?;
    stream.set_read_timeout(Some(left(deadline)?))?;
    stream.set_write_timeout(Some(left(deadline)?))?;
    let shutdown = matches!(end, Ending::Close);
    let handle =
        thread::spawn(move || write_n(&writer, send, send_for, shutdown, method, deadline));
    let limit = match end {
        Ending::Close => None,
        Ending::KeepOpen(n) => Some(n),
    };
    let read = read_until(stream, limit, deadline);
    let written = handle
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let (written, read) = (written?, read?);
    wait_acked(stream, deadline)?;
    Ok((written, read))
}

/// Waits until the peer has acknowledged everything sent, FIN included
/// (`SIOCOUTQ` is 0). From then on the socket transmits no more data, so
/// `TCP_INFO`'s byte counts are final: a retransmission after the report
/// would otherwise be on the wire (and counted by netmon) but not in it.
fn wait_acked(stream: &TcpStream, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let queued = sock::outq(stream)?;
        if queued == 0 {
            return Ok(());
        }
        left(deadline).with_context(|| format!("{queued} bytes still unacknowledged"))?;
        thread::sleep(Duration::from_millis(1));
    }
}

/// Writes up to `send` bytes (fewer only if `send_for` ran out), then, with
/// `shutdown`, shuts down the sending half.
fn write_n(
    stream: &TcpStream,
    send: u64,
    send_for: Option<Duration>,
    shutdown: bool,
    method: SendMethod,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut sender = Sender::new(method, CHUNK)?;
    let mut written = 0_u64;
    while written < send {
        if send_for.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        left(deadline).context("sending")?;
        let want = usize::try_from(send - written).unwrap_or(CHUNK).min(CHUNK);
        match sender.send(stream, want) {
            Ok(n) => written += n as u64,
            Err(e) => return Err(e).context(format!("{method:?} after {written} bytes")),
        }
    }
    if shutdown {
        stream
            .shutdown(Shutdown::Write)
            .context("shutdown(SHUT_WR)")?;
    }
    Ok(written)
}

fn read_to_eof(stream: &TcpStream, deadline: Instant) -> anyhow::Result<u64> {
    read_until(stream, None, deadline)
}

/// Reads to EOF (`limit` None) or exactly `limit` bytes (EOF before that is
/// an error).
fn read_until(
    mut stream: &TcpStream,
    limit: Option<u64>,
    deadline: Instant,
) -> anyhow::Result<u64> {
    stream.set_read_timeout(Some(left(deadline)?))?;
    let mut buf = vec![0_u8; 256 * 1024];
    let mut read = 0_u64;
    loop {
        let want = match limit {
            Some(n) if read >= n => return Ok(read),
            Some(n) => usize::try_from(n - read)
                .unwrap_or(buf.len())
                .min(buf.len()),
            None => buf.len(),
        };
        left(deadline).with_context(|| format!("reading, {read} bytes so far"))?;
        match stream.read(&mut buf[..want]) {
            Ok(0) if limit.is_none() => return Ok(read),
            Ok(0) => bail!("EOF after {read} of {limit:?} bytes"),
            Ok(n) => read += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(format!("read after {read} bytes")),
        }
    }
}

/// Reads `tcpi_rtt` periodically on a thread of its own.
struct RttSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: thread::JoinHandle<anyhow::Result<Vec<u32>>>,
}

impl RttSampler {
    fn start(stream: &TcpStream, every: Duration) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let stream = stream.try_clone()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut v = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(every);
                let rtt = sock::tcp_info(&stream).context("TCP_INFO")?.tcpi_rtt;
                if rtt > 0 {
                    v.push(rtt);
                }
            }
            Ok(v)
        });
        Ok(Self { stop, handle })
    }

    /// Stops and returns the (median, 95th percentile) of the samples,
    /// nearest rank.
    fn finish(self) -> anyhow::Result<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut v = self
            .handle
            .join()
            .map_err(|_| anyhow::anyhow!("RTT sampler panicked"))??;
        if v.is_empty() {
            bail!("no RTT sample");
        }
        v.sort_unstable();
        let rank = |p: usize| v[(p * v.len()).div_ceil(100).max(1) - 1];
        Ok((u64::from(rank(50)), u64::from(rank(95))))
    }
}

fn add_tcp_info(report: &mut Report, stream: &TcpStream) -> anyhow::Result<()> {
    let info = sock::tcp_info(stream).context("TCP_INFO")?;
    report.tcp_bytes_sent += info.tcpi_bytes_sent;
    report.tcp_bytes_retrans += info.tcpi_bytes_retrans;
    report.tcp_bytes_received += info.tcpi_bytes_received;
    report.tcp_total_retrans += u64::from(info.tcpi_total_retrans);
    report.tcp_data_segs_out += u64::from(info.tcpi_data_segs_out);
    report.tcp_rtt_us = u64::from(info.tcpi_rtt);
    report.tcp_rttvar_us = u64::from(info.tcpi_rttvar);
    report.tcp_min_rtt_us = u64::from(info.tcpi_min_rtt);
    Ok(())
}

/// Waits (bounded) for one line on stdin: the test's "go" / "exit" signal.
fn wait_stdin_line(deadline: Instant) -> anyhow::Result<()> {
    let stdin = io::stdin();
    if !sock::wait_readable(&stdin, left(deadline)?)? {
        bail!("no line on stdin before the time limit");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(())
}
