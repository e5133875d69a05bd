//! Issue 8 §4: service ports, not ephemeral ports.
//!
//! The bug: `netmon usage --by port` grouped a server's inbound
//! connections by each client's ephemeral port (hundreds of rows like
//! `tcp/52310`), and the per-remote rollups kept one row per connection.
//! Now each flow has a direction (accepted from a listener: in) and a
//! service port (the local port of an inbound flow), and rollups are keyed
//! by (remote address, service port, direction).
//!
//! A server in one namespace accepts 2,000 connections from one client in
//! another, each moving 10,000 bytes each way, with the daemon draining.
//! The server's answer by port is one row, `tcp/PORT in`; by remote, one
//! row for the client (beside the listener's handshake entry, remote
//! `0.0.0.0`, which carries no payload); the client's answer by port is one
//! row, `tcp/PORT out`. App bytes are exact to the byte against the
//! workloads' own counts.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    check, cmd,
    daemon::{self, Daemon, DaemonPaths},
    mib,
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
    netns::NetnsPair,
    report::{DONE, READY, Report},
    require_root, scenario,
    workload::Workload,
    workload_exe,
};
use serde_json::Value;

const CONNECTIONS: usize = 2_000;
const BYTES: u64 = 10_000;

/// `netmon usage --by BY --filter pid=PID --json` from the daemon.
fn usage(paths: &DaemonPaths, by: &str, pid: u32) -> Value {
    let mut c = std::process::Command::new(netmon_bin());
    c.args(["usage", "--since", "1h", "--json", "--by", by, "--filter"])
        .arg(format!("pid={pid}"))
        .arg("--socket")
        .arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`netmon usage --by {by}` JSON: {e}\n{}",
            out.chars().take(2000).collect::<String>()
        )
    })
}

fn rows(v: &Value) -> &Vec<Value> {
    v["rows"].as_array().expect("rows")
}

fn app(row: &Value, dir: &str) -> u64 {
    row[dir]["app_bytes"].as_u64().expect("app_bytes")
}

#[test]
fn inbound_connections_are_one_service_row() {
    if !require_root("inbound_connections_are_one_service_row") {
        return;
    }
    let cg = CgroupGuard::new("svcport");
    let pair = NetnsPair::new("svcport");
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-svcport-")
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let mut d = Daemon::start(&paths);
    let quiet = [&pair.a, &pair.b];
    let before = mib::wait_quiet(&quiet);

    let exe = workload_exe!();
    let server_ip: IpAddr = pair.b.v4().into();
    let client_ip: IpAddr = pair.a.v4().into();
    let listen = SocketAddr::new(server_ip, 0).to_string();
    let bytes = BYTES.to_string();
    let mut server = Workload::spawn(
        exe,
        [
            "tcp-serve",
            "--listen",
            &listen,
            "--workers",
            "0",
            "--send",
            &bytes,
        ],
        &cg,
        Some(&pair.b),
    );
    let port = scenario::first_port(&server.wait_event(READY));
    let connect = SocketAddr::new(server_ip, port).to_string();
    let count = CONNECTIONS.to_string();
    let mut client = Workload::spawn(
        exe,
        [
            "tcp-connect-many",
            "--connect",
            &connect,
            "--count",
            &count,
            "--send",
            &bytes,
        ],
        &cg,
        Some(&pair.a),
    );
    let c: Report = client.wait_event(DONE);
    assert!(
        client.wait_exit(Duration::from_secs(30)).success(),
        "client failed"
    );
    server.send_line("stop");
    let served: Report = server.wait_event(DONE);
    let after = mib::wait_quiet(&quiet);

    // Ground truth: every connection moved BYTES each way, losslessly.
    assert_eq!(c.conns.len(), CONNECTIONS, "client connections");
    assert_eq!(served.conns.len(), CONNECTIONS, "connections served");
    assert!(
        c.conns
            .iter()
            .all(|k| k.written == BYTES && k.read == BYTES),
        "a client connection moved other than {BYTES} B each way"
    );
    let retrans = check::retrans(&before, &after);
    assert_eq!(
        retrans, 0,
        "TCP retransmitted {retrans} segments: the received ground truth needs a lossless run"
    );
    let server_tx: u64 = served.conns.iter().map(|k| k.written).sum();
    let server_rx: u64 = served.conns.iter().map(|k| k.read).sum();
    let client_tx: u64 = c.conns.iter().map(|k| k.written).sum();
    let client_rx: u64 = c.conns.iter().map(|k| k.read).sum();

    // Until every connection's bytes are committed (closed sockets' flows
    // wait in the kernel for the daemon), bounded in time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_port = loop {
        let v = usage(&paths, "port", served.pid);
        let got: u64 = rows(&v).iter().map(|r| app(r, "rx")).sum();
        if got >= server_rx || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    server.send_line("exit");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "server failed"
    );

    // The server: one port row, inbound, on the listening port.
    let r = rows(&by_port);
    assert_eq!(
        r.len(),
        1,
        "one port row for {CONNECTIONS} connections: {r:#?}"
    );
    assert_eq!(r[0]["key"], format!("tcp/{port} in"));
    assert_eq!(r[0]["service_port"].as_u64(), Some(u64::from(port)));
    assert_eq!(r[0]["direction"], "in");
    assert_eq!(app(&r[0], "tx"), server_tx, "server app bytes sent");
    assert_eq!(app(&r[0], "rx"), server_rx, "server app bytes received");

    // By remote: the client, once (the listener's handshake entry, remote
    // unspecified, carries no payload).
    let by_remote = usage(&paths, "remote", served.pid);
    let (client_rows, other): (Vec<&Value>, Vec<&Value>) = rows(&by_remote)
        .iter()
        .partition(|r| r["remote_addr"] == client_ip.to_string());
    assert_eq!(client_rows.len(), 1, "one remote row: {by_remote:#}");
    assert_eq!(app(client_rows[0], "tx"), server_tx);
    assert_eq!(app(client_rows[0], "rx"), server_rx);
    for o in &other {
        assert_eq!(
            o["remote_addr"], "0.0.0.0",
            "only the handshake entry: {o:#}"
        );
        assert_eq!(o["tx"]["payload_bytes"].as_u64(), Some(0));
        assert_eq!(o["rx"]["payload_bytes"].as_u64(), Some(0));
    }

    // The client: one port row, outbound, to the same port.
    let by_port = usage(&paths, "port", c.pid);
    let r = rows(&by_port);
    assert_eq!(r.len(), 1, "one port row for the client: {r:#?}");
    assert_eq!(r[0]["key"], format!("tcp/{port} out"));
    assert_eq!(app(&r[0], "tx"), client_tx, "client app bytes sent");
    assert_eq!(app(&r[0], "rx"), client_rx, "client app bytes received");
    d.stop();
}
