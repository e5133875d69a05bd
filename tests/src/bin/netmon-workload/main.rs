//! `netmon-workload`: the traffic the kernel test suite and the benchmark
//! measure netmon against.
//!
//! Each subcommand does one kind of network work, bounded in bytes and in
//! time (`--timeout-secs`, default 60: every blocking call has a deadline),
//! and prints JSON lines on stdout (see `netmon_tests::report`): `ready` once
//! its sockets exist, `done` with its own exact counts, taken from the return
//! values of its own system calls. Those counts are the ground truth.

mod icmp;
mod send_method;
mod serve;
mod sock;
mod tcp;
mod udp;

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use netmon_tests::report::Report;

#[derive(Parser)]
#[command(about = "Workloads for netmon's kernel test suite")]
struct Cli {
    /// Give up (exit non-zero) when the work is not done after this long.
    #[arg(long, global = true, default_value_t = 60)]
    timeout_secs: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Accept one TCP connection; send N bytes while reading to EOF.
    TcpServer(tcp::ServerArgs),
    /// Connect over TCP; send N bytes while reading to EOF.
    TcpClient(tcp::ClientArgs),
    /// Accept K connections; read each to EOF, send nothing.
    TcpAcceptMany(tcp::AcceptManyArgs),
    /// Listen, then fork: the child accepts and sends; the parent waits.
    ForkAccept(tcp::ForkAcceptArgs),
    /// Receive datagrams on K UDP sockets.
    UdpRecv(udp::RecvArgs),
    /// Send datagrams from one unconnected UDP socket to each destination.
    UdpSend(udp::SendArgs),
    /// Echo requests over a raw ICMP socket.
    IcmpPing(icmp::PingArgs),
    /// Serve short connections (optionally from a pre-forked pool).
    TcpServe(serve::ServeArgs),
    /// Make K short connections one after the other.
    TcpConnectMany(serve::ConnectManyArgs),
    /// Create and close sockets of every kind (the soak test).
    SockChurn(serve::ChurnArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let deadline = Instant::now() + Duration::from_secs(cli.timeout_secs);
    match cli.cmd {
        Cmd::TcpServer(a) => tcp::server(&a, deadline),
        Cmd::TcpClient(a) => tcp::client(&a, deadline),
        Cmd::TcpAcceptMany(a) => tcp::accept_many(&a, deadline),
        Cmd::ForkAccept(a) => tcp::fork_accept(&a, deadline),
        Cmd::UdpRecv(a) => udp::recv(&a, deadline),
        Cmd::UdpSend(a) => udp::send(&a, deadline),
        Cmd::IcmpPing(a) => icmp::ping(&a, deadline),
        Cmd::TcpServe(a) => serve::serve(&a, deadline),
        Cmd::TcpConnectMany(a) => serve::connect_many(&a, deadline),
        Cmd::SockChurn(a) => serve::churn(&a, deadline),
    }
}

/// Prints one report line and flushes (the test waits for it).
fn emit(report: &Report) -> anyhow::Result<()> {
    let line = serde_json::to_string(report).context("serializing report")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing report")
}

/// Time left until `deadline`, or an error once it has passed.
fn left(deadline: Instant) -> anyhow::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    anyhow::ensure!(!d.is_zero(), "time limit reached");
    Ok(d)
}

/// Milliseconds since `start`.
fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
