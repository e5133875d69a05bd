//! Issue 8 §1: a server started before `netmon load`.
//!
//! The bug: a listener that predates the programs has no owner record in
//! socket storage, so the connections it accepted afterwards inherited
//! nothing; the daemon resolved them only at its next drain, and a
//! connection shorter than one interval was gone by then: most of the bytes
//! of short connections and downloads went to `[unattributed]`.
//!
//! Each test starts the server first, loads netmon, then makes 2,000
//! connections of 10,000 bytes each way, one after the other (each lives
//! well under a millisecond on loopback or veth), and takes a snapshot
//! while the processes live but after every connection closed. Checked to
//! the byte against the workloads' own counts (payload, per process and per
//! connection: every connection is present as a flow of the process that
//! served it) and against the namespaces' MIB octets (IP bytes); no flow is
//! unattributed. Variants: server and client on one namespace's loopback;
//! server and client in two namespaces joined by a veth; a pre-forked pool
//! of 4 workers accepting on the listener their parent opened.

use std::{collections::HashMap, net::IpAddr, net::SocketAddr, time::Duration};

use netmon_tests::{
    cgroup::CgroupGuard,
    check, mib,
    netmon::Netmon,
    netns::{Netns, NetnsPair},
    report::{DONE, READY, Report},
    require_root, scenario,
    snapshot::Snapshot,
    workload::Workload,
    workload_exe,
};

const CONNECTIONS: usize = 2_000;
const BYTES: u64 = 10_000;

/// Where the server and the client run.
enum Place {
    /// One namespace, over its loopback.
    Loopback,
    /// Client in `pair.a`, server in `pair.b`.
    Veth,
}

fn preexisting_server(name: &str, place: &Place, workers: usize) {
    if !require_root(name) {
        return;
    }
    let cg = CgroupGuard::new("presrv");
    let exe = workload_exe!();
    let (single, pair);
    let (server_ns, client_ns, server_ip, quiet): (&Netns, &Netns, IpAddr, Vec<&Netns>) =
        match place {
            Place::Loopback => {
                single = Netns::new("presrv");
                (
                    &single,
                    &single,
                    IpAddr::from([127, 0, 0, 1]),
                    vec![&single],
                )
            }
            Place::Veth => {
                pair = NetnsPair::new("presrv");
                (&pair.b, &pair.a, pair.b.v4().into(), vec![&pair.a, &pair.b])
            }
        };
    let listen = SocketAddr::new(server_ip, 0).to_string();
    let workers_arg = workers.to_string();
    let bytes = BYTES.to_string();
    let mut server = Workload::spawn(
        exe,
        [
            "tcp-serve",
            "--listen",
            &listen,
            "--workers",
            &workers_arg,
            "--send",
            &bytes,
        ],
        &cg,
        Some(server_ns),
    );
    let ready = server.wait_event(READY);
    let port = scenario::first_port(&ready);
    let parent_pid = ready.pid;

    // The server (and its workers) exist before the programs do.
    let netmon = Netmon::load(&cg);
    let before = mib::wait_quiet(&quiet);
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
        Some(client_ns),
    );
    let c = client.wait_event(DONE);
    assert!(
        client.wait_exit(Duration::from_secs(30)).success(),
        "client failed"
    );
    server.send_line("stop");
    let served: Vec<Report> = (0..workers.max(1))
        .map(|_| server.wait_event(DONE))
        .collect();
    let after = mib::wait_quiet(&quiet);
    let snap = netmon.snapshot();
    server.send_line("exit");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "server failed"
    );

    // Ground truth: every connection moved BYTES each way.
    assert_eq!(c.conns.len(), CONNECTIONS, "client connections");
    assert!(
        c.conns
            .iter()
            .all(|k| k.written == BYTES && k.read == BYTES),
        "a client connection moved other than {BYTES} B each way"
    );
    let per_server: usize = served.iter().map(|s| s.conns.len()).sum();
    assert_eq!(per_server, CONNECTIONS, "connections served");
    eprintln!(
        "  {CONNECTIONS} connections in {} ms; served per process: {:?}",
        c.elapsed_ms,
        served.iter().map(|s| s.conns.len()).collect::<Vec<_>>()
    );
    if workers > 1 {
        for s in &served {
            assert_ne!(s.pid, parent_pid, "a worker's report came from the parent");
        }
    }

    let retrans = check::retrans(&before, &after);
    assert_eq!(
        retrans, 0,
        "TCP retransmitted {retrans} segments: the payload ground truth needs a lossless run"
    );
    check::assert_consistent(&snap);
    assert!(
        snap.processes_with_pid(0).next().is_none(),
        "[unattributed] holds bytes: {}",
        snap.process_list()
    );
    check::assert_payload(&snap, &c, "client", c.written, c.read);
    for s in &served {
        check::assert_payload(&snap, s, "server process", s.written, s.read);
        check::assert_live_identity(&snap, s, "server process", exe, &cg);
    }
    assert_every_connection(&snap, &c, &served, port);
    // Issue 8 §1b: the listener's handshake packets are one entry, not one
    // per client, owned by the listener's owner (the server, or the pool's
    // parent: the lowest pid holding it).
    let listener: Vec<_> = snap
        .sockets
        .iter()
        .filter(|f| f.local_port == port && f.remote_port == 0)
        .collect();
    assert!(
        matches!(listener.as_slice(), [f] if f.pid == parent_pid
            && f.tx.payload_bytes == 0 && f.rx.payload_bytes == 0
            && f.tx.packets == CONNECTIONS as u64),
        "the listener's handshake entry (one SYN-ACK sent per connection): {listener:#?}"
    );
    if workers > 0 {
        // The pool's parent never accepted: it may own the listener's
        // handshake packets, never a byte of payload.
        for p in snap.processes_with_pid(parent_pid) {
            assert_eq!(
                (p.tx.payload_bytes, p.rx.payload_bytes),
                (0, 0),
                "pool parent {parent_pid} credited with payload\n{}",
                snap.process_list()
            );
        }
    }
    // Per namespace: (locals, MIB readings index).
    let sides: Vec<(&str, IpAddr, usize)> = match place {
        Place::Loopback => vec![("namespace", server_ip, 0)],
        Place::Veth => vec![
            ("client namespace", client_ns.v4().into(), 0),
            ("server namespace", server_ip, 1),
        ],
    };
    for (what, local, i) in sides {
        check::assert_ip_bytes_match_mib(what, &snap, &[local], &before[i], &after[i]);
    }
}

/// Every connection is one flow on each side, with BYTES of payload each
/// way, owned by the process that reported it (the client; the worker that
/// served it).
#[track_caller]
fn assert_every_connection(snap: &Snapshot, client: &Report, served: &[Report], port: u16) {
    let mut client_flows: HashMap<u16, Vec<_>> = HashMap::new();
    for f in snap.sockets_of(client.pid) {
        client_flows.entry(f.local_port).or_default().push(f);
    }
    let mut server_flows: HashMap<u16, Vec<_>> = HashMap::new();
    for f in snap
        .sockets
        .iter()
        .filter(|f| f.local_port == port && f.remote_port != 0)
    {
        server_flows.entry(f.remote_port).or_default().push(f);
    }
    for k in &client.conns {
        let flows = client_flows
            .get(&k.local_port)
            .map_or(&[][..], Vec::as_slice);
        assert!(
            matches!(flows, [f] if f.tx.payload_bytes == BYTES && f.rx.payload_bytes == BYTES
                && f.remote_port == port),
            "client connection from port {}: flows {flows:#?}",
            k.local_port
        );
    }
    for s in served {
        for k in &s.conns {
            let flows = server_flows
                .get(&k.remote_port)
                .map_or(&[][..], Vec::as_slice);
            assert!(
                matches!(flows, [f] if f.pid == s.pid && f.tx.payload_bytes == BYTES
                    && f.rx.payload_bytes == BYTES),
                "connection from client port {} served by pid {}: flows {flows:#?}",
                k.remote_port,
                s.pid
            );
        }
    }
    eprintln!(
        "  ok every connection: one flow each side, {BYTES} B each way, owned by its process"
    );
}

#[test]
fn server_started_before_load() {
    preexisting_server("server_started_before_load", &Place::Loopback, 0);
}

#[test]
fn server_in_another_namespace_started_before_load() {
    preexisting_server(
        "server_in_another_namespace_started_before_load",
        &Place::Veth,
        0,
    );
}

#[test]
fn preforked_pool_started_before_load() {
    preexisting_server("preforked_pool_started_before_load", &Place::Veth, 4);
}
