//! Issue 15: server names per flow, from the kernel's capture of each
//! flow's first payload (TLS SNI, HTTP/1 `Host`, QUIC Initial SNI) and of
//! the DNS answers each process receives.
//!
//! Everything runs in a pair of test namespaces: a DNS server (Debian's
//! dnsmasq, A and AAAA records, CNAME chains), a TCP sink and the client
//! (`netmon-names-client`, which resolves with its own queries, sends real
//! rustls ClientHellos, HTTP/1 requests and quinn Initials, and reports
//! its own byte counts: the ground truth). netmon's answer is
//! `netmon usage --by server_name`, one row per name of the client's
//! process, compared to the byte with the client's counts per connection.
//!
//! Under `CI=true` a missing dnsmasq fails the tests (`.ci/run` installs
//! it); elsewhere they say SKIPPED.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    cmd,
    daemon::{self, Daemon, DaemonPaths},
    netmon::{NETMON_TIMEOUT, Netmon, netmon_bin},
    netns::{Netns, NetnsPair},
    report::{DONE, READY, Report},
    require_root, scenario,
    workload::Workload,
    workload_exe,
};
use serde_json::Value;

/// The client binary of these tests.
fn client_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netmon-names-client"))
}

/// dnsmasq's path, or `None` (SKIPPED) outside CI; fails in CI.
fn require_dnsmasq(test: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join("dnsmasq");
        if p.exists() {
            return Some(p);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: dnsmasq is missing (Debian's dnsmasq-base; .ci/run installs it)"
    );
    let _ = std::io::stderr().write_all(
        format!("\n*** SKIPPED: no dnsmasq: kernel test `{test}` did not run. ***\n").as_bytes(),
    );
    None
}

/// A dnsmasq in `ns`, answering on `listen` port 53 with `records`
/// (dnsmasq options), killed on drop. Started in the test cgroup like any
/// workload, so its own sockets are counted too.
fn dnsmasq(exe: &Path, cg: &CgroupGuard, ns: &Netns, listen: IpAddr, extra: &[String]) -> Workload {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--no-poll".to_owned(),
        "--bind-interfaces".to_owned(),
        "--pid-file=".to_owned(),
        "--user=root".to_owned(),
        format!("--listen-address={listen}"),
        "--port=53".to_owned(),
    ];
    args.extend(extra.iter().cloned());
    let w = Workload::spawn(exe, &args, cg, Some(ns));
    // Until it answers on port 53 (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.exec(&["ss", "-Hlun", "sport", "=", ":53"]);
        if out.contains(&listen.to_string()) {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not listen on {listen}:53"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the client in `ns` with `args`; its `done` report.
fn client(cg: &CgroupGuard, ns: &Netns, args: &[String]) -> Report {
    let mut w = Workload::spawn(client_exe(), args, cg, Some(ns));
    let done: Report = w.wait_event(DONE);
    assert!(
        w.wait_exit(Duration::from_secs(30)).success(),
        "client failed"
    );
    done
}

/// A TCP sink in `ns` on `ip`: reads each connection to EOF, answers
/// `reply` bytes. Returns it and its port.
fn start_sink(cg: &CgroupGuard, ns: &Netns, ip: IpAddr, reply: u64) -> (Workload, u16) {
    let listen = SocketAddr::new(ip, 0).to_string();
    let reply = reply.to_string();
    let mut w = Workload::spawn(
        workload_exe!(),
        [
            "tcp-serve",
            "--listen",
            &listen,
            "--workers",
            "0",
            "--send",
            &reply,
        ],
        cg,
        Some(ns),
    );
    let port = scenario::first_port(&w.wait_event(READY));
    (w, port)
}

/// Per server name (`None`: no name), (tx, rx) app bytes of `pid`, from
/// `netmon usage --by server_name`.
fn by_name(paths: &DaemonPaths, pid: u32) -> BTreeMap<Option<String>, (u64, u64)> {
    let mut c = std::process::Command::new(netmon_bin());
    c.args([
        "usage",
        "--since",
        "1h",
        "--json",
        "--by",
        "server_name",
        "--filter",
    ])
    .arg(format!("pid={pid}"))
    .arg("--socket")
    .arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`netmon usage --by server_name` JSON: {e}\n{}",
            out.chars().take(2000).collect::<String>()
        )
    });
    let mut m = BTreeMap::new();
    for row in v["rows"].as_array().expect("rows") {
        let name = row["server_name"].as_str().map(str::to_owned);
        let e = m.entry(name).or_insert((0, 0));
        e.0 += row["tx"]["app_bytes"].as_u64().expect("tx app_bytes");
        e.1 += row["rx"]["app_bytes"].as_u64().expect("rx app_bytes");
    }
    m
}

/// Waits (bounded) until `pid`'s named bytes reach `want`'s totals, then
/// returns netmon's answer.
fn settle(
    paths: &DaemonPaths,
    pid: u32,
    want: &BTreeMap<Option<String>, (u64, u64)>,
) -> BTreeMap<Option<String>, (u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = by_name(paths, pid);
        let done = want
            .iter()
            .all(|(k, (tx, rx))| got.get(k).is_some_and(|g| g.0 >= *tx && g.1 >= *rx));
        if done || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The client's expected bytes per name: connection i of `report` under
/// `names[i]`.
fn expected(report: &Report, names: &[Option<&str>]) -> BTreeMap<Option<String>, (u64, u64)> {
    assert_eq!(report.conns.len(), names.len(), "connections: {report:?}");
    let mut m = BTreeMap::new();
    for (c, n) in report.conns.iter().zip(names) {
        let e = m.entry(n.map(str::to_owned)).or_insert((0, 0));
        e.0 += c.written;
        e.1 += c.read;
    }
    m
}

/// Named rows equal the expectation exactly; the unnamed row (which also
/// holds the client's DNS traffic) holds at least the unnamed connections.
fn assert_names(
    got: &BTreeMap<Option<String>, (u64, u64)>,
    want: &BTreeMap<Option<String>, (u64, u64)>,
    dns_bytes: bool,
) {
    for (name, w) in want {
        let g = got.get(name).copied().unwrap_or_default();
        if name.is_none() && dns_bytes {
            assert!(
                g.0 >= w.0 && g.1 >= w.1,
                "unnamed: got {g:?}, want at least {w:?}: {got:#?}"
            );
        } else {
            assert_eq!(g, *w, "bytes of {name:?}: {got:#?}");
        }
    }
    for name in got.keys().flatten() {
        assert!(
            want.contains_key(&Some(name.clone())),
            "unexpected name {name}: {got:#?}"
        );
    }
}

/// Dropped in field order: the daemon before the load, the load before
/// the namespaces and the cgroup.
struct Setup {
    daemon: Daemon,
    paths: DaemonPaths,
    _dir: tempfile::TempDir,
    netmon: Netmon,
    pair: NetnsPair,
    cg: CgroupGuard,
}

fn setup(tag: &str) -> Setup {
    setup_with(tag, None)
}

/// [`setup`] with the daemon reading `config` (TOML text).
fn setup_with(tag: &str, config: Option<&str>) -> Setup {
    let cg = CgroupGuard::new(tag);
    let pair = NetnsPair::new(tag);
    setup_in(tag, cg, pair, config)
}

/// [`setup_with`] in a cgroup and namespace pair made before.
fn setup_in(tag: &str, cg: CgroupGuard, pair: NetnsPair, config: Option<&str>) -> Setup {
    let netmon = Netmon::load(&cg);
    let dir = tempfile::Builder::new()
        .prefix(&format!("netmon-test-{tag}-"))
        .tempdir()
        .expect("temp dir");
    let paths = daemon::paths_in(dir.path(), netmon.pin_dir(), &cg);
    let daemon = match config {
        None => Daemon::start(&paths),
        Some(text) => {
            let file = dir.path().join("config.toml");
            std::fs::write(&file, text).expect("write config");
            Daemon::start_with_config(&paths, &file)
        }
    };
    Setup {
        daemon,
        paths,
        _dir: dir,
        netmon,
        pair,
        cg,
    }
}

/// DNS names, asked directly and through a caching stub on 127.0.0.53:
/// CNAME chains lead back to the asked name; two names of one address
/// split by which answer each connection followed.
#[test]
fn dns_names_direct_and_through_a_loopback_stub() {
    if !require_root("dns_names_direct_and_through_a_loopback_stub") {
        return;
    }
    let Some(dnsmasq_exe) = require_dnsmasq("dns_names_direct_and_through_a_loopback_stub") else {
        return;
    };
    let mut s = setup("names-dns");
    let server: IpAddr = s.pair.b.v4().into();
    let records = vec![
        format!("--host-record=edge.cdn.test,{server}"),
        "--cname=www.names.test,mid.cdn.test".to_owned(),
        "--cname=mid.cdn.test,edge.cdn.test".to_owned(),
        format!("--host-record=api.names.test,{server}"),
        format!("--host-record=stub.names.test,{server}"),
        format!("--host-record=edge6.cdn.test,{}", s.pair.b.v6()),
        "--cname=six.names.test,edge6.cdn.test".to_owned(),
        "--local-ttl=300".to_owned(),
    ];
    let _dns = dnsmasq(&dnsmasq_exe, &s.cg, &s.pair.b, server, &records);
    let stub_ip: IpAddr = "127.0.0.53".parse().expect("ip");
    let _stub = dnsmasq(
        &dnsmasq_exe,
        &s.cg,
        &s.pair.a,
        stub_ip,
        &[format!("--server={server}")],
    );
    let (mut sink, port) = start_sink(&s.cg, &s.pair.b, server, 1_500);
    let port = port.to_string();
    let (mut sink6, port6) = start_sink(&s.cg, &s.pair.b, s.pair.b.v6().into(), 800);

    // Directly: www (a CNAME chain) then api, same address.
    let direct = client(
        &s.cg,
        &s.pair.a,
        &[
            format!("--dns={server}:53"),
            format!("--port={port}"),
            "resolve:www.names.test".into(),
            "tcp:none:3000".into(),
            "tcp:none:4000".into(),
            "resolve:api.names.test".into(),
            "tcp:none:5000".into(),
            // AAAA through a CNAME.
            "resolve6:six.names.test".into(),
            format!("port:{port6}"),
            "tcp:none:2500".into(),
        ],
    );
    // Through the stub on loopback.
    let stubbed = client(
        &s.cg,
        &s.pair.a,
        &[
            "--dns=127.0.0.53:53".into(),
            format!("--port={port}"),
            "resolve:stub.names.test".into(),
            "tcp:none:6000".into(),
        ],
    );
    let want_direct = expected(
        &direct,
        &[
            Some("www.names.test"),
            Some("www.names.test"),
            Some("api.names.test"),
            Some("six.names.test"),
        ],
    );
    let want_stub = expected(&stubbed, &[Some("stub.names.test")]);
    let got_direct = settle(&s.paths, direct.pid, &want_direct);
    let got_stub = settle(&s.paths, stubbed.pid, &want_stub);
    sink.send_line("stop");
    sink6.send_line("stop");
    assert_names(&got_direct, &want_direct, true);
    assert_names(&got_stub, &want_stub, true);
    s.daemon.stop();
}

/// Names the client sent: two TLS SNI names on one address split exactly,
/// an HTTP/1 Host, a QUIC Initial's SNI; a connection to a literal address
/// from a process that never used DNS, with no SNI, has no name.
#[test]
fn sni_host_and_quic_names_split_one_address() {
    if !require_root("sni_host_and_quic_names_split_one_address") {
        return;
    }
    let mut s = setup("names-sni");
    let server: IpAddr = s.pair.b.v4().into();
    let (mut sink, port) = start_sink(&s.cg, &s.pair.b, server, 700);
    let report = client(
        &s.cg,
        &s.pair.a,
        &[
            format!("--target={server}"),
            format!("--port={port}"),
            "tcp:tls=video.names.test:30000".into(),
            "tcp:tls=chat.names.test:5000".into(),
            "tcp:tls=video.names.test:1000".into(),
            "tcp:http=files.names.test:2000".into(),
            "tcp:none:900".into(),
            "quic:q.names.test".into(),
        ],
    );
    let want = expected(
        &report,
        &[
            Some("video.names.test"),
            Some("chat.names.test"),
            Some("video.names.test"),
            Some("files.names.test"),
            None,
            Some("q.names.test"),
        ],
    );
    let got = settle(&s.paths, report.pid, &want);
    sink.send_line("stop");
    assert_names(&got, &want, false);
    s.daemon.stop();
}

/// An answer used past its TTL names nothing; an address answered later
/// under another name maps to the new name.
#[test]
fn ttl_expiry_and_address_reuse() {
    if !require_root("ttl_expiry_and_address_reuse") {
        return;
    }
    let Some(dnsmasq_exe) = require_dnsmasq("ttl_expiry_and_address_reuse") else {
        return;
    };
    let mut s = setup("names-ttl");
    let server: IpAddr = s.pair.b.v4().into();
    // TTL 1 s: netmon uses an answer at least 10 s (its floor for short
    // TTLs), so the client waits 11 s for the expiry.
    let records = vec![
        format!("--host-record=old.names.test,{server}"),
        format!("--host-record=new.names.test,{server}"),
        "--local-ttl=1".to_owned(),
    ];
    let _dns = dnsmasq(&dnsmasq_exe, &s.cg, &s.pair.b, server, &records);
    let (mut sink, port) = start_sink(&s.cg, &s.pair.b, server, 100);
    let report = client(
        &s.cg,
        &s.pair.a,
        &[
            format!("--dns={server}:53"),
            format!("--port={port}"),
            "resolve:old.names.test".into(),
            "tcp:none:1000".into(),
            "resolve:new.names.test".into(),
            "tcp:none:2000".into(),
            "sleep:11000".into(),
            "tcp:none:4000".into(),
        ],
    );
    let want = expected(
        &report,
        &[Some("old.names.test"), Some("new.names.test"), None],
    );
    let got = settle(&s.paths, report.pid, &want);
    sink.send_line("stop");
    assert_names(&got, &want, true);
    s.daemon.stop();
}

/// `[names] enabled = false`: the kernel copies nothing (the capture ring
/// stays empty, `netmon status` says so) and no flow gets a name.
#[test]
fn names_off_copies_nothing() {
    if !require_root("names_off_copies_nothing") {
        return;
    }
    let mut s = setup_with("names-off", Some("[names]\nenabled = false\n"));
    let server: IpAddr = s.pair.b.v4().into();
    let (mut sink, port) = start_sink(&s.cg, &s.pair.b, server, 300);
    let report = client(
        &s.cg,
        &s.pair.a,
        &[
            format!("--target={server}"),
            format!("--port={port}"),
            "tcp:tls=off.names.test:4000".into(),
            "tcp:http=off2.names.test:1000".into(),
        ],
    );
    let want = expected(&report, &[None, None]);
    let got = settle(&s.paths, report.pid, &want);
    sink.send_line("stop");
    assert_eq!(got, want, "no names with [names] enabled = false");
    let status = s.netmon.status();
    assert_eq!(
        status["name_capture"]["records"].as_u64(),
        Some(0),
        "nothing copied: {}",
        status["name_capture"]
    );
    s.daemon.stop();
}

/// A dnsmasq in the test's own (root) namespace on 127.0.0.1 and a free
/// port, logging every query it gets to `log`; `records` are
/// dnsmasq options. The daemon runs in the root namespace, so this is
/// where its reverse lookups go (`[names] resolver`).
fn dnsmasq_on_loopback(
    exe: &Path,
    cg: &CgroupGuard,
    log: &Path,
    records: &[String],
) -> (Workload, u16) {
    // A port free now (tests run in parallel in one process).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free loopback port")
        .port();
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--no-poll".to_owned(),
        "--bind-interfaces".to_owned(),
        "--pid-file=".to_owned(),
        "--user=root".to_owned(),
        "--listen-address=127.0.0.1".to_owned(),
        format!("--port={port}"),
        "--log-queries".to_owned(),
        format!("--log-facility={}", log.display()),
    ];
    args.extend(records.iter().cloned());
    let w = Workload::spawn(exe, &args, cg, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = cmd::try_run(
            std::process::Command::new("ss").args(["-Hlun", "sport", "=", &format!(":{port}")]),
            NETMON_TIMEOUT,
        )
        .unwrap_or_default();
        if out.contains("127.0.0.1") {
            break (w, port);
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `netmon usage --by remote` rows of `pid` to `remote`: (server_name,
/// name_source, tx app bytes, rx app bytes) summed.
fn by_remote(
    paths: &DaemonPaths,
    pid: u32,
    remote: IpAddr,
) -> (Option<String>, Option<String>, u64, u64) {
    let mut c = std::process::Command::new(netmon_bin());
    c.args([
        "usage", "--since", "1h", "--json", "--by", "remote", "--filter",
    ])
    .arg(format!("pid={pid}"))
    .arg("--socket")
    .arg(&paths.socket);
    let out = cmd::try_run(&mut c, NETMON_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("usage --by remote JSON: {e}\n{out}"));
    let mut got = (None, None, 0, 0);
    for row in v["rows"].as_array().expect("rows") {
        if row["remote_addr"].as_str() != Some(remote.to_string().as_str()) {
            continue;
        }
        got.0 = row["server_name"].as_str().map(str::to_owned);
        got.1 = row["name_source"].as_str().map(str::to_owned);
        got.2 += row["tx"]["app_bytes"].as_u64().expect("tx app_bytes");
        got.3 += row["rx"]["app_bytes"].as_u64().expect("rx app_bytes");
    }
    got
}

/// PTR questions dnsmasq logged for `remote`.
fn ptr_queries(log: &Path, remote: IpAddr) -> usize {
    let IpAddr::V4(v4) = remote else {
        panic!("an IPv4 remote")
    };
    let [a, b, c, d] = v4.octets();
    let qname = format!("{d}.{c}.{b}.{a}.in-addr.arpa");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("query[PTR]") && l.contains(&qname))
        .count()
}

/// The opt-in reverse lookup, off and on: a client connects to a literal
/// address without SNI (no name of its own). Off (the default, here with
/// the resolver configured anyway), netmon sends no PTR question, however
/// often the remote is shown; on, the remote's `--by remote` row is
/// labelled with its PTR name (`name_source: "ptr"`) after a first query
/// queued the lookup, and the bytes under it equal the client's own counts.
fn reverse_lookup(tag: &str, on: bool) {
    let Some(dnsmasq_exe) = require_dnsmasq(tag) else {
        return;
    };
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = log_dir.path().join("dnsmasq.log");
    // The pair first (its address goes in dnsmasq's record), dnsmasq next
    // (its port goes in the daemon's config), the daemon last.
    let cg = CgroupGuard::new(tag);
    let pair = NetnsPair::new(tag);
    let server: IpAddr = pair.b.v4().into();
    // Its own cgroup, dropped after it (locals drop in reverse order).
    let cg_dns = CgroupGuard::new(&format!("{tag}-dns"));
    let (_dns, port) = dnsmasq_on_loopback(
        &dnsmasq_exe,
        &cg_dns,
        &log,
        &[
            format!("--host-record=sink.ptr.test,{server}"),
            "--local-ttl=300".to_owned(),
        ],
    );
    let config = format!("[names]\nreverse_lookup = {on}\nresolver = \"127.0.0.1:{port}\"\n");
    let mut s = setup_in(tag, cg, pair, Some(&config));
    let (mut sink, sport) = start_sink(&s.cg, &s.pair.b, server, 900);
    let report = client(
        &s.cg,
        &s.pair.a,
        &[
            format!("--target={server}"),
            format!("--port={sport}"),
            "tcp:none:7000".into(),
            "tcp:none:3000".into(),
        ],
    );
    let want = expected(&report, &[None, None]);
    let got = settle(&s.paths, report.pid, &want);
    sink.send_line("stop");
    assert_eq!(got, want, "the flows themselves stay unnamed");
    let (tx, rx) = want[&None];
    // Ask for the remote repeatedly (bounded): on, the label arrives.
    let deadline = Instant::now() + Duration::from_secs(if on { 20 } else { 5 });
    let mut row = by_remote(&s.paths, report.pid, server);
    while Instant::now() < deadline && (row.0.is_none() || !on) {
        std::thread::sleep(Duration::from_millis(300));
        row = by_remote(&s.paths, report.pid, server);
    }
    if on {
        assert_eq!(
            row,
            (
                Some("sink.ptr.test".to_owned()),
                Some("ptr".to_owned()),
                tx,
                rx
            ),
            "the remote's PTR label and the client's bytes"
        );
        assert!(ptr_queries(&log, server) >= 1, "asked dnsmasq");
    } else {
        assert_eq!(row, (None, None, tx, rx), "no label with the lookup off");
        assert_eq!(
            ptr_queries(&log, server),
            0,
            "no PTR question with reverse_lookup off: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    s.daemon.stop();
}

#[test]
fn reverse_lookup_off_sends_nothing() {
    if !require_root("reverse_lookup_off_sends_nothing") {
        return;
    }
    reverse_lookup("names-ptr-off", false);
}

#[test]
fn reverse_lookup_on_labels_the_remote() {
    if !require_root("reverse_lookup_on_labels_the_remote") {
        return;
    }
    reverse_lookup("names-ptr-on", true);
}
