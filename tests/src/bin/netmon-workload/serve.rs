//! Many short TCP connections: a server (optionally a pre-forked pool of
//! workers accepting on one inherited listener) and a client, plus the
//! socket churn of the soak test.
//!
//! Each connection of `tcp-serve` / `tcp-connect-many`: the client connects,
//! writes `--send` bytes and shuts down its sending half; the server reads
//! to EOF, writes its `--send` bytes, shuts down and closes; the client
//! reads to EOF and closes. Both sides shut down after sending and close
//! after the peer's FIN, so every segment passes a socket hook (see the TCP
//! workload's doc).

use std::{
    io::{self, BufRead as _, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netmon_tests::report::{ConnReport, DONE, READY, Report};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{elapsed_ms, emit, left, sock};

/// `tcp-serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Forked workers accepting on the listener (0: the process serves).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Bytes sent back on each connection.
    #[arg(long)]
    send: u64,
    /// Count connection errors (resets) instead of failing on them.
    #[arg(long)]
    tolerate_resets: bool,
}

/// `tcp-connect-many`.
#[derive(clap::Args)]
pub struct ConnectManyArgs {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// Connections, one after the other.
    #[arg(long)]
    count: usize,
    /// Bytes sent on each connection.
    #[arg(long)]
    send: u64,
}

/// The serving loop's input: the listener and a descriptor that becomes
/// readable when it is time to stop.
struct Serve<'a> {
    listener: &'a TcpListener,
    stop: RawFd,
    send: u64,
    tolerate_resets: bool,
}

/// `tcp-serve`: prints `ready` (with the port), serves until the first line
/// on stdin, then prints one `done` per serving process (pool workers, or
/// the process itself), each with one [`ConnReport`] per connection; exits
/// at the second line.
pub fn serve(a: &ServeArgs, deadline: Instant) -> anyhow::Result<()> {
    let listener = listen(a.listen)?;
    listener.set_nonblocking(true)?;
    if a.workers == 0 {
        emit(&Report {
            ports: vec![listener.local_addr()?.port()],
            ..Report::new(READY)
        })?;
        let done = serve_loop(
            &Serve {
                listener: &listener,
                stop: io::stdin().as_raw_fd(),
                send: a.send,
                tolerate_resets: a.tolerate_resets,
            },
            deadline,
        )?;
        io::stdin().lock().read_line(&mut String::new())?;
        emit(&done)?;
        return wait_line(io::stdin().as_raw_fd(), deadline);
    }
    let (stop_r, stop_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    let mut workers = Vec::new();
    for _ in 0..a.workers {
        let (report_r, report_w) = pipe()?;
        // SAFETY: single-threaded here (no thread was started) and stdout is
        // flushed after every line, so the child starts from a consistent
        // copy of the process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", io::Error::last_os_error());
        }
        if pid == 0 {
            drop((stop_w, exit_w, report_r));
            let s = Serve {
                listener: &listener,
                stop: stop_r.as_raw_fd(),
                send: a.send,
                tolerate_resets: a.tolerate_resets,
            };
            let code = match worker(&s, report_w, exit_r.as_raw_fd(), deadline) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("netmon-workload tcp-serve worker: {e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
        drop(report_w);
        workers.push((pid, report_r));
    }
    // The parent holds the listener too (like a pre-forking server's
    // master) but never accepts.
    emit(&Report {
        ports: vec![listener.local_addr()?.port()],
        ..Report::new(READY)
    })?;
    wait_line(io::stdin().as_raw_fd(), deadline)?;
    drop(stop_w);
    for (_, report_r) in &workers {
        let mut line = String::new();
        std::fs::File::from(report_r.try_clone()?)
            .read_to_string(&mut line)
            .context("reading a worker's report")?;
        let mut out = io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.flush()?;
    }
    wait_line(io::stdin().as_raw_fd(), deadline)?;
    drop(exit_w);
    for (pid, _) in workers {
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if rc != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("worker {pid} failed (wait status {status})");
        }
    }
    Ok(())
}

/// A pool worker: serve, write the report line into `report`, wait until
/// `exit` closes (the test's snapshot is taken while the worker lives).
fn worker(s: &Serve<'_>, report: OwnedFd, exit: RawFd, deadline: Instant) -> anyhow::Result<()> {
    let done = serve_loop(s, deadline)?;
    let mut line = serde_json::to_string(&done)?;
    line.push('\n');
    let mut f = std::fs::File::from(report);
    f.write_all(line.as_bytes())?;
    drop(f);
    wait_eof(exit, deadline)
}

/// Accepts and serves connections until `s.stop` is readable.
fn serve_loop(s: &Serve<'_>, deadline: Instant) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut done = Report::new(DONE);
    loop {
        let (listener_ready, stop_ready) = poll2(s.listener.as_raw_fd(), s.stop, left(deadline)?)?;
        if stop_ready {
            break;
        }
        if !listener_ready {
            continue;
        }
        let stream = match s.listener.accept() {
            Ok((stream, _)) => stream,
            // Another worker took it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e).context("accept"),
        };
        stream.set_nonblocking(false)?;
        match serve_one(&stream, s.send, deadline) {
            Ok(conn) => {
                let info = sock::tcp_info(&stream)?;
                done.written += conn.written;
                done.read += conn.read;
                done.tcp_bytes_sent += info.tcpi_bytes_sent;
                done.tcp_bytes_retrans += info.tcpi_bytes_retrans;
                done.tcp_bytes_received += info.tcpi_bytes_received;
                done.conns.push(conn);
            }
            // Counted in `datagrams_received` (see `churn`).
            Err(_) if s.tolerate_resets => done.datagrams_received += 1,
            Err(e) => return Err(e),
        }
    }
    done.elapsed_ms = elapsed_ms(start);
    Ok(done)
}

/// Reads to EOF, sends `send` bytes, shuts down.
fn serve_one(stream: &TcpStream, send: u64, deadline: Instant) -> anyhow::Result<ConnReport> {
    // Addresses first: a finished connection has no peer any more.
    let (local_port, remote_port) = (stream.local_addr()?.port(), stream.peer_addr()?.port());
    stream.set_read_timeout(Some(left(deadline)?))?;
    stream.set_write_timeout(Some(left(deadline)?))?;
    let read = read_to_eof(stream)?;
    let written = write_all_n(stream, send)?;
    stream.shutdown(Shutdown::Write)?;
    Ok(ConnReport {
        local_port,
        remote_port,
        written,
        read,
        datagrams: 0,
    })
}

/// `tcp-connect-many`: `count` connections one after the other; `done`
/// with one [`ConnReport`] per connection.
pub fn connect_many(a: &ConnectManyArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut done = Report::new(DONE);
    for i in 0..a.count {
        let stream = TcpStream::connect_timeout(&a.connect, left(deadline)?)
            .with_context(|| format!("connection {i}"))?;
        let (local_port, remote_port) = (stream.local_addr()?.port(), stream.peer_addr()?.port());
        stream.set_read_timeout(Some(left(deadline)?))?;
        stream.set_write_timeout(Some(left(deadline)?))?;
        let written = write_all_n(&stream, a.send)?;
        stream.shutdown(Shutdown::Write)?;
        let read = read_to_eof(&stream)?;
        let info = sock::tcp_info(&stream)?;
        done.written += written;
        done.read += read;
        done.tcp_bytes_sent += info.tcpi_bytes_sent;
        done.tcp_bytes_retrans += info.tcpi_bytes_retrans;
        done.tcp_bytes_received += info.tcpi_bytes_received;
        done.conns.push(ConnReport {
            local_port,
            remote_port,
            written,
            read,
            datagrams: 0,
        });
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}

/// `sock-churn`.
#[derive(clap::Args)]
pub struct ChurnArgs {
    /// A listener (`tcp-serve --tolerate-resets`) for the TCP kinds.
    #[arg(long)]
    tcp: SocketAddr,
    /// An address and port where nothing listens (refused connections) and
    /// UDP sockets connect to.
    #[arg(long)]
    closed: SocketAddr,
    /// Sockets of each kind.
    #[arg(long)]
    each: usize,
    /// Payload bytes each short connection sends.
    #[arg(long, default_value_t = 100)]
    send: u64,
}

/// `sock-churn`: `--each` sockets of every kind, one after the other:
/// `socket()` + `close()` (TCP and UDP), UDP `connect()` + `close()`
/// without a send, TCP connect + close without a send, short TCP
/// connections (send, read to EOF), refused connections, and connections
/// reset by an abortive close (`SO_LINGER` 0). `done`: payload written and
/// read; `datagrams_sent` counts refused connections (one RST each, sent by
/// the kernel's control socket), `datagrams_received` abortive closes.
pub fn churn(a: &ChurnArgs, deadline: Instant) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut done = Report::new(DONE);
    let domain = Domain::for_address(a.tcp);
    for _ in 0..a.each {
        left(deadline)?;
        drop(Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?);
        drop(Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?);
        let any: SocketAddr = if a.closed.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let u = UdpSocket::bind(any)?;
        u.connect(a.closed)?;
        drop(u);
        // Connect and close without a send: the server reads EOF.
        let s = TcpStream::connect_timeout(&a.tcp, left(deadline)?)?;
        s.set_read_timeout(Some(left(deadline)?))?;
        s.shutdown(Shutdown::Write)?;
        done.read += read_to_eof(&s)?;
        drop(s);
        // A short connection.
        let s = TcpStream::connect_timeout(&a.tcp, left(deadline)?)?;
        s.set_read_timeout(Some(left(deadline)?))?;
        s.set_write_timeout(Some(left(deadline)?))?;
        done.written += write_all_n(&s, a.send)?;
        s.shutdown(Shutdown::Write)?;
        done.read += read_to_eof(&s)?;
        drop(s);
        // Refused.
        match TcpStream::connect_timeout(&a.closed, left(deadline)?) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => done.datagrams_sent += 1,
            Err(e) => return Err(e).context("connecting to the closed port"),
            Ok(_) => bail!("{} accepted a connection", a.closed),
        }
        // Reset: abortive close right after the handshake.
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.connect_timeout(&a.tcp.into(), left(deadline)?)?;
        s.set_linger(Some(Duration::ZERO))?;
        drop(s);
        done.datagrams_received += 1;
    }
    done.elapsed_ms = elapsed_ms(start);
    emit(&done)
}

fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn read_to_eof(mut stream: &TcpStream) -> anyhow::Result<u64> {
    let mut buf = [0_u8; 16 * 1024];
    let mut read = 0_u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(read),
            Ok(n) => read += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(format!("read after {read} bytes")),
        }
    }
}

fn write_all_n(mut stream: &TcpStream, n: u64) -> anyhow::Result<u64> {
    let buf = [0x5a_u8; 16 * 1024];
    let mut written = 0_u64;
    while written < n {
        let want = usize::try_from(n - written)
            .unwrap_or(buf.len())
            .min(buf.len());
        match stream.write(&buf[..want]) {
            Ok(0) => bail!("write returned 0 after {written} bytes"),
            Ok(k) => written += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(format!("write after {written} bytes")),
        }
    }
    Ok(written)
}

/// A pipe (read end, write end), close-on-exec.
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints the kernel fills.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        bail!("pipe2: {}", io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Polls two descriptors for input (or hang-up) for at most `timeout`.
fn poll2(a: RawFd, b: RawFd, timeout: Duration) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of two pollfd for the whole call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// Waits (bounded) for one line on `fd` (stdin).
fn wait_line(fd: RawFd, deadline: Instant) -> anyhow::Result<()> {
    let (ready, _) = poll2(fd, fd, left(deadline)?)?;
    if !ready {
        bail!("no line on stdin before the time limit");
    }
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// Waits (bounded) until the write end of pipe `fd` is closed.
fn wait_eof(fd: RawFd, deadline: Instant) -> anyhow::Result<()> {
    let (ready, _) = poll2(fd, fd, left(deadline)?)?;
    if !ready {
        bail!("not told to exit before the time limit");
    }
    Ok(())
}
