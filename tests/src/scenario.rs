//! Traffic patterns several tests share: start the workloads, wait for their
//! reports, return the reports (the ground truth).

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use crate::{
    cgroup::CgroupGuard,
    netns::Netns,
    report::{READY, Report},
    workload::Workload,
};

/// A `tcp-accept-many` server for `count` connections on `ip` (port chosen
/// by the kernel) in `netns`, ready: the server and the address to connect
/// to.
#[track_caller]
#[must_use]
pub fn tcp_accept_many(
    exe: &Path,
    cgroup: &CgroupGuard,
    netns: &Netns,
    ip: IpAddr,
    count: usize,
) -> (Workload, String) {
    let listen = SocketAddr::new(ip, 0).to_string();
    let mut server = Workload::spawn(
        exe,
        [
            "tcp-accept-many",
            "--listen",
            &listen,
            "--count",
            &count.to_string(),
        ],
        cgroup,
        Some(netns),
    );
    let connect = SocketAddr::new(ip, first_port(&server.wait_event(READY))).to_string();
    (server, connect)
}

/// What a TCP exchange's two ends measured.
#[derive(Debug)]
pub struct TcpRun {
    /// The connecting side.
    pub client: Report,
    /// The accepting side.
    pub server: Report,
}

/// One TCP connection from `client_ns` to `server_ip` in `server_ns`: the
/// client sends `up` bytes while the server sends `down`, both at once; both
/// shut down gracefully. Asserts each side read what the other wrote.
#[track_caller]
#[must_use]
pub fn tcp_exchange(
    exe: &Path,
    cgroup: &CgroupGuard,
    server_ns: &Netns,
    server_ip: IpAddr,
    client_ns: &Netns,
    up: u64,
    down: u64,
) -> TcpRun {
    tcp_exchange_with(exe, cgroup, server_ns, server_ip, client_ns, up, down, &[])
}

/// [`tcp_exchange`] with `extra` arguments for both workloads (`tcp-server`
/// and `tcp-client` flags they share, such as `--ip-options`).
#[track_caller]
#[must_use]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per test reads better flat"
)]
pub fn tcp_exchange_with(
    exe: &Path,
    cgroup: &CgroupGuard,
    server_ns: &Netns,
    server_ip: IpAddr,
    client_ns: &Netns,
    up: u64,
    down: u64,
    extra: &[&str],
) -> TcpRun {
    let listen = SocketAddr::new(server_ip, 0).to_string();
    let down_s = down.to_string();
    let mut args = vec!["tcp-server", "--listen", &listen, "--send", &down_s];
    args.extend_from_slice(extra);
    let mut server = Workload::spawn(exe, &args, cgroup, Some(server_ns));
    let port = first_port(&server.wait_event(READY));
    let connect = SocketAddr::new(server_ip, port).to_string();
    let up_s = up.to_string();
    let mut args = vec!["tcp-client", "--connect", &connect, "--send", &up_s];
    args.extend_from_slice(extra);
    let mut client = Workload::spawn(exe, &args, cgroup, Some(client_ns));
    let run = TcpRun {
        client: client.wait_done(),
        server: server.wait_done(),
    };
    assert_eq!(
        (run.client.written, run.server.read),
        (up, up),
        "upstream bytes written/read"
    );
    assert_eq!(
        (run.server.written, run.client.read),
        (down, down),
        "downstream bytes written/read"
    );
    run
}

/// What a UDP burst's two ends measured.
#[derive(Debug)]
pub struct UdpRun {
    /// The sending process.
    pub sender: Report,
    /// The receiving process (one socket per destination port).
    pub receiver: Report,
}

/// `rounds` rounds of datagrams from one unconnected socket in `tx_ns` to
/// each of `sockets` receiving sockets at `rx_ip` in `rx_ns`; payload sizes
/// cycle through `sizes` (comma separated). Each receiving socket has a
/// 32 MiB buffer (far above what the burst needs), and the test asserts every
/// datagram arrived: UDP may drop, the ground truth must not.
#[track_caller]
#[must_use]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per test reads better flat"
)]
pub fn udp_burst(
    exe: &Path,
    cgroup: &CgroupGuard,
    rx_ns: &Netns,
    rx_ip: IpAddr,
    tx_ns: &Netns,
    sockets: usize,
    rounds: u64,
    sizes: &str,
) -> UdpRun {
    udp_burst_with(
        exe,
        cgroup,
        rx_ns,
        rx_ip,
        tx_ns,
        sockets,
        rounds,
        sizes,
        &[],
        &[],
    )
}

/// [`udp_burst`] with extra arguments for `udp-send` (`sender_extra`, such
/// as `--ip-options`) and for `udp-recv` (`receiver_extra`, such as
/// `--method recvmmsg`).
#[track_caller]
#[must_use]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per test reads better flat"
)]
pub fn udp_burst_with(
    exe: &Path,
    cgroup: &CgroupGuard,
    rx_ns: &Netns,
    rx_ip: IpAddr,
    tx_ns: &Netns,
    sockets: usize,
    rounds: u64,
    sizes: &str,
    sender_extra: &[&str],
    receiver_extra: &[&str],
) -> UdpRun {
    let (rx_ip_s, sockets_s, rounds_s) =
        (rx_ip.to_string(), sockets.to_string(), rounds.to_string());
    let mut args = vec![
        "udp-recv",
        "--bind",
        &rx_ip_s,
        "--sockets",
        &sockets_s,
        "--expect",
        &rounds_s,
        "--rcvbuf",
        "33554432",
    ];
    args.extend_from_slice(receiver_extra);
    let mut rx = Workload::spawn(exe, &args, cgroup, Some(rx_ns));
    let ready = rx.wait_event(READY);
    assert_eq!(
        ready.ports.len(),
        sockets,
        "udp-recv bound {:?}",
        ready.ports
    );
    let mut args = vec!["udp-send".to_owned()];
    for port in &ready.ports {
        args.push("--to".to_owned());
        args.push(SocketAddr::new(rx_ip, *port).to_string());
    }
    args.extend([
        "--count".to_owned(),
        rounds.to_string(),
        "--sizes".to_owned(),
        sizes.to_owned(),
    ]);
    args.extend(sender_extra.iter().map(|a| (*a).to_owned()));
    let mut tx = Workload::spawn(exe, &args, cgroup, Some(tx_ns));
    let run = UdpRun {
        sender: tx.wait_done(),
        receiver: rx.wait_done(),
    };
    let total = rounds * sockets as u64;
    assert_eq!(run.sender.datagrams_sent, total, "datagrams sent");
    assert_eq!(
        (run.receiver.datagrams_received, run.receiver.read),
        (run.sender.datagrams_sent, run.sender.written),
        "receiver (datagrams, bytes) vs sender's: UDP dropped datagrams (receive buffer? veth?)"
    );
    run
}

/// The single port a `ready` report carries.
#[track_caller]
#[must_use]
pub fn first_port(ready: &Report) -> u16 {
    match ready.ports.as_slice() {
        [port] => *port,
        other => panic!("expected one port in {ready:?}, got {other:?}"),
    }
}
