//! Interface counting (tc programs): what no socket owns, reconciled with
//! the interfaces' own counters.
//!
//! A router namespace R forwards between two namespaces A and B over two
//! veth pairs (`nmra`/`nmrb` in R). netmon is loaded inside R (`nsenter
//! --net`, so the bpffs pins stay in the host's mount namespace) watching
//! `nmr*`. Ground truth netmon never computes: the interfaces' own counters
//! (`ip -s -j link`, stats64) and the workloads' own datagram counts.
//! - forwarded UDP A → B and UDP A → a socket in R: per interface and
//!   direction, netmon's totals equal the interface counters to the byte and
//!   packet; forwarded bytes on `nmra` ingress and `nmrb` egress and
//!   local-socket bytes on `nmra` ingress equal the datagrams' frame sizes
//!   (payload + 28 + 14);
//! - frames injected with an `AF_PACKET` socket on `nmra`: counted as
//!   other-socket (not a local socket), exact, and reconciled;
//! - an interface added after the load is picked up by the next `netmon
//!   load` and counted exactly from then on.

use std::{
    collections::HashMap,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    check::UDP4_OVERHEAD,
    cmd,
    netmon::{NETMON_TIMEOUT, netmon_bin},
    netns::Netns,
    require_root,
    router::{Router, Stats, quiet},
    scenario, workload_exe,
};

/// Ethernet header on veth.
const ETH: u64 = 14;
const ROUNDS: u64 = 400;
const SIZES: &str = "1,64,512,1000,1400";

fn router() -> Router {
    Router::new("nmr", 210, "if")
}

/// A third interface `nmrc` in R, up, its peer `nm0` (MAC returned)
/// in a new namespace tagged `tag`.
fn add_nmrc(router: &Router, tag: &str) -> (Netns, String) {
    let c = Netns::new(tag);
    let peer = router.mac(9);
    cmd::run_args(
        "ip",
        &[
            "link",
            "add",
            "nmrc",
            "netns",
            router.r.name(),
            "type",
            "veth",
            "peer",
            "name",
            "nm0",
            "netns",
            c.name(),
            "address",
            &peer,
        ],
    );
    router.r.ip(&["link", "set", "nmrc", "up"]);
    c.ip(&["link", "set", "nm0", "up"]);
    (c, peer)
}

/// netmon loaded inside R's network namespace; unloaded on drop.
struct Loaded {
    pin_dir: PathBuf,
    netns: PathBuf,
}

impl Loaded {
    fn new(router: &Router, cg: &CgroupGuard) -> Self {
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/netmon-test-ifaces-{}",
            netmon_tests::unique_suffix()
        ));
        let loaded = Self {
            pin_dir,
            netns: router.r.path(),
        };
        loaded.load(cg);
        loaded
    }

    /// `netmon load` (again: picks up interfaces that appeared since).
    fn load(&self, cg: &CgroupGuard) {
        let cgroup = format!("--cgroup={}", cg.path().display());
        let mut c = self.command(&["load", "--watch-interface", "nmr*", &cgroup]);
        let _said = cmd::run(&mut c);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg(netmon_bin())
            .args(args)
            .arg("--pin-dir")
            .arg(&self.pin_dir);
        c
    }

    /// `netmon interfaces --json`: name → (rx, tx) totals and classes.
    fn read(&self) -> HashMap<String, serde_json::Value> {
        let text = cmd::run(&mut self.command(&["interfaces", "--json"]));
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("netmon interfaces: bad JSON ({e}):\n{text}"));
        doc["interfaces"]
            .as_array()
            .unwrap_or_else(|| panic!("netmon interfaces: no list:\n{text}"))
            .iter()
            .filter_map(|i| Some((i["name"].as_str()?.to_owned(), i.clone())))
            .collect()
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let mut c = Command::new(netmon_bin());
        c.arg("unload").arg("--pin-dir").arg(&self.pin_dir);
        if let Err(e) = cmd::try_run(&mut c, NETMON_TIMEOUT) {
            eprintln!("netmon-tests: {e}");
        }
    }
}

/// `doc[dir][class][what]` as u64.
fn field(doc: &HashMap<String, serde_json::Value>, ifname: &str, path: [&str; 3]) -> u64 {
    doc.get(ifname).map_or(0, |i| {
        i[path[0]][path[1]][path[2]]
            .as_u64()
            .unwrap_or_else(|| panic!("no {path:?} in {i}"))
    })
}

/// Per watched interface and direction, netmon's total moved exactly as the
/// interface's own counters between the two readings.
#[track_caller]
fn assert_reconciled(
    netmon: (
        &HashMap<String, serde_json::Value>,
        &HashMap<String, serde_json::Value>,
    ),
    stats: (&HashMap<String, Stats>, &HashMap<String, Stats>),
) {
    for ifname in ["nmra", "nmrb"] {
        let s0 = stats.0[ifname];
        let s1 = stats.1[ifname];
        for (i, (dir, what)) in [
            ("rx", "bytes"),
            ("rx", "packets"),
            ("tx", "bytes"),
            ("tx", "packets"),
        ]
        .into_iter()
        .enumerate()
        {
            let counted = field(netmon.1, ifname, [dir, "total", what])
                - field(netmon.0, ifname, [dir, "total", what]);
            let truth = s1[i] - s0[i];
            assert_eq!(
                counted, truth,
                "{ifname} {dir} {what}: netmon counted {counted}, the interface {truth}"
            );
            // netmon's own reconciliation agrees: what it cannot explain
            // did not move.
            let unexplained = |doc: &HashMap<String, serde_json::Value>| {
                doc[ifname][dir]["unexplained"][what].as_i64()
            };
            assert!(unexplained(netmon.0).is_some(), "{ifname} has no baseline");
            assert_eq!(
                unexplained(netmon.0),
                unexplained(netmon.1),
                "{ifname} {dir} {what}: unexplained remainder moved"
            );
        }
    }
}

fn delta(
    netmon: (
        &HashMap<String, serde_json::Value>,
        &HashMap<String, serde_json::Value>,
    ),
    ifname: &str,
    dir: &str,
    class: &str,
) -> (u64, u64) {
    let d = |what| {
        field(netmon.1, ifname, [dir, class, what]) - field(netmon.0, ifname, [dir, class, what])
    };
    (d("packets"), d("bytes"))
}

#[test]
fn forwarded_and_local_traffic_reconciles_with_interface_counters() {
    if !require_root("forwarded_and_local_traffic_reconciles_with_interface_counters") {
        return;
    }
    let cg = CgroupGuard::new("ifaces");
    let router = router();
    let netmon = Loaded::new(&router, &cg);
    let stats0 = quiet(&router.r);
    let n0 = netmon.read();

    // Forwarded: A → B through R.
    let fwd = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &router.b,
        router.addr(2, 2),
        &router.a,
        1,
        ROUNDS,
        SIZES,
    );
    // Local: A → a socket in R.
    let local = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &router.r,
        router.addr(1, 1),
        &router.a,
        1,
        ROUNDS,
        SIZES,
    );
    let stats1 = quiet(&router.r);
    let n1 = netmon.read();

    assert_reconciled((&n0, &n1), (&stats0, &stats1));
    let frames = |run: &scenario::UdpRun| {
        (
            run.sender.datagrams_sent,
            run.sender.written + run.sender.datagrams_sent * (UDP4_OVERHEAD + ETH),
        )
    };
    assert_eq!(
        delta((&n0, &n1), "nmrb", "tx", "forwarded"),
        frames(&fwd),
        "forwarded A → B leaving nmrb"
    );
    assert_eq!(
        delta((&n0, &n1), "nmra", "rx", "local_socket"),
        frames(&local),
        "A → R's socket arriving on nmra"
    );
    assert_eq!(
        delta((&n0, &n1), "nmra", "rx", "forwarded"),
        frames(&fwd),
        "A → B arriving on nmra: the FIB forwards it"
    );
    assert_eq!(
        delta((&n0, &n1), "nmrb", "tx", "local_socket"),
        (0, 0),
        "R has no socket talking to B"
    );
}

/// Sends `count` frames of `len` bytes (Ethernet header included, an
/// experimental ethertype nobody handles) on `ifname` inside `ns` with an
/// `AF_PACKET` socket, from a thread that joined the namespace.
fn inject(ns: &Netns, ifname: &str, dst: &str, count: u64, len: usize) {
    let file = ns.open();
    let ifname = std::ffi::CString::new(ifname).unwrap_or_default();
    let dst: Vec<u8> = dst
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap_or(0))
        .collect();
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a namespace fd we own.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
            assert_ne!(ifindex, 0, "no {ifname:?} in {}", ns.name());
            // SAFETY: plain socket creation; protocol 0: send only.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
            addr.sll_ifindex = i32::try_from(ifindex).unwrap_or_default();
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&dst[..6]);
            let mut frame = vec![0u8; len];
            frame[..6].copy_from_slice(&dst[..6]);
            frame[6..12].copy_from_slice(&[0x02, 0, 0, 0x11, 0xff, 0xfe]);
            frame[12..14].copy_from_slice(&[0x88, 0xb5]);
            for _ in 0..count {
                // SAFETY: frame and addr are valid for the lengths given.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        std::ptr::from_ref(&addr).cast(),
                        u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or_default(),
                    )
                };
                assert_eq!(
                    usize::try_from(n).ok(),
                    Some(len),
                    "AF_PACKET send: {}",
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: closing the socket created above.
            unsafe { libc::close(fd) };
        });
    });
}

#[test]
fn af_packet_frames_are_not_a_local_socket() {
    if !require_root("af_packet_frames_are_not_a_local_socket") {
        return;
    }
    const FRAMES: u64 = 100;
    const LEN: usize = 200;
    let cg = CgroupGuard::new("ifaces-pkt");
    let router = router();
    let netmon = Loaded::new(&router, &cg);
    let stats0 = quiet(&router.r);
    let n0 = netmon.read();

    inject(&router.r, "nmra", &router.mac(2), FRAMES, LEN);

    let stats1 = quiet(&router.r);
    let n1 = netmon.read();
    assert_reconciled((&n0, &n1), (&stats0, &stats1));
    assert_eq!(
        delta((&n0, &n1), "nmra", "tx", "other_socket"),
        (FRAMES, FRAMES * LEN as u64),
        "AF_PACKET frames leaving nmra"
    );
    assert_eq!(
        delta((&n0, &n1), "nmra", "tx", "local_socket"),
        (0, 0),
        "no local socket sent anything"
    );
}

#[test]
fn interface_added_after_load_is_picked_up_by_the_next_load() {
    if !require_root("interface_added_after_load_is_picked_up_by_the_next_load") {
        return;
    }
    const FRAMES: u64 = 50;
    const LEN: usize = 120;
    let cg = CgroupGuard::new("ifaces-new");
    let router = router();
    let netmon = Loaded::new(&router, &cg);
    let (_c, peer) = add_nmrc(&router, "ifc");
    assert!(
        !netmon.read().contains_key("nmrc"),
        "nmrc counted before it was attached"
    );
    netmon.load(&cg);
    let stats0 = quiet(&router.r);
    let n0 = netmon.read();
    inject(&router.r, "nmrc", &peer, FRAMES, LEN);
    let stats1 = quiet(&router.r);
    let n1 = netmon.read();
    assert_eq!(
        delta((&n0, &n1), "nmrc", "tx", "other_socket"),
        (FRAMES, FRAMES * LEN as u64),
        "AF_PACKET frames leaving the new interface"
    );
    let truth = stats1["nmrc"][2] - stats0["nmrc"][2];
    assert_eq!(
        field(&n1, "nmrc", ["tx", "total", "bytes"]) - field(&n0, "nmrc", ["tx", "total", "bytes"]),
        truth,
        "nmrc tx bytes against the interface counter"
    );
}

/// `netmon usage --by interface --json` over `[from, until)` (unix ms;
/// `None`: the last hour), through the daemon: name → the row's
/// `interface_counters`.
fn history(
    paths: &netmon_tests::daemon::DaemonPaths,
    window: Option<(u64, u64)>,
) -> HashMap<String, serde_json::Value> {
    let rfc3339 = |ms: u64| {
        cmd::run_args(
            "date",
            &[
                "-u",
                "-d",
                &format!("@{}.{:03}", ms / 1000, ms % 1000),
                "+%Y-%m-%dT%H:%M:%S.%3NZ",
            ],
        )
        .trim()
        .to_owned()
    };
    let mut c = Command::new(netmon_bin());
    c.args(["usage", "--by", "interface", "--json", "--socket"])
        .arg(&paths.socket);
    match window {
        Some((from, until)) => c.args(["--since", &rfc3339(from), "--until", &rfc3339(until)]),
        None => c.args(["--since", "1h"]),
    };
    let text = cmd::run(&mut c);
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("netmon usage --by interface: bad JSON ({e}):\n{text}"));
    doc["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("netmon usage: no rows:\n{text}"))
        .iter()
        .filter_map(|r| {
            Some((
                r["interface"].as_str()?.to_owned(),
                r.get("interface_counters")?.clone(),
            ))
        })
        .collect()
}

/// Waits until the daemon's history of the last hour stops changing over
/// several drain intervals (everything the quiet interfaces counted is
/// committed), and returns the time after that.
fn drained(paths: &netmon_tests::daemon::DaemonPaths) -> u64 {
    netmon_tests::daemon::settled("interface history", || history(paths, None))
}

/// `doc[ifname][dir][class][what]` as u64 (0 for an interface not there).
fn hfield(doc: &HashMap<String, serde_json::Value>, ifname: &str, path: [&str; 3]) -> u64 {
    doc.get(ifname).map_or(0, |i| {
        i[path[0]][path[1]][path[2]]
            .as_u64()
            .unwrap_or_else(|| panic!("no {path:?} in {i}"))
    })
}

/// R with netmon loaded in it and a daemon draining it into a history in
/// a scratch directory. Fields drop in order: the daemon first, the
/// cgroup last.
struct Gateway {
    daemon: netmon_tests::daemon::Daemon,
    paths: netmon_tests::daemon::DaemonPaths,
    _dir: tempfile::TempDir,
    netmon: Loaded,
    router: Router,
    cg: CgroupGuard,
}

impl Gateway {
    fn new(tag: &str) -> Self {
        let cg = CgroupGuard::new(tag);
        let router = router();
        let netmon = Loaded::new(&router, &cg);
        let dir = tempfile::Builder::new()
            .prefix(&format!("netmon-test-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let paths = netmon_tests::daemon::paths_in(dir.path(), &netmon.pin_dir, &cg);
        let daemon = netmon_tests::daemon::Daemon::start_in_netns(&paths, &netmon.netns);
        Self {
            daemon,
            paths,
            _dir: dir,
            netmon,
            router,
            cg,
        }
    }
}

/// The daemon stores the interface counters in its history, exactly once
/// across a SIGKILL: over a window, `usage --by interface` equals the
/// interfaces' own counters for that window, to the byte and packet, per
/// interface and direction; forwarded and local-socket bytes equal the
/// datagrams' frames.
#[test]
fn interface_history_reconciles_with_interface_counters_over_a_window() {
    if !require_root("interface_history_reconciles_with_interface_counters_over_a_window") {
        return;
    }
    const FRAMES: u64 = 60;
    const LEN: usize = 300;
    // Bound in this order so the daemon drops first (a panic's unwinding).
    let Gateway {
        cg,
        router,
        netmon,
        _dir,
        paths,
        mut daemon,
    } = Gateway::new("ifaces-hist");

    let stats0 = quiet(&router.r);
    let t0 = drained(&paths);
    let h0 = history(&paths, None);

    let fwd = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &router.b,
        router.addr(2, 2),
        &router.a,
        1,
        ROUNDS,
        SIZES,
    );
    // A crash in the middle: the restarted daemon continues from its
    // committed snapshot, nothing lost or doubled.
    daemon.kill9();
    let local = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &router.r,
        router.addr(1, 1),
        &router.a,
        1,
        ROUNDS,
        SIZES,
    );
    std::fs::remove_file(&paths.socket).unwrap_or_else(|e| panic!("stale socket: {e}"));
    let mut daemon = netmon_tests::daemon::Daemon::start_in_netns(&paths, &netmon.netns);
    inject(&router.r, "nmra", &router.mac(2), FRAMES, LEN);

    let stats1 = quiet(&router.r);
    let t1 = drained(&paths);
    let h1 = history(&paths, None);
    let window = history(&paths, Some((t0, t1)));

    for ifname in ["nmra", "nmrb"] {
        for (i, (dir, what)) in [
            ("rx", "frame_bytes"),
            ("rx", "packets"),
            ("tx", "frame_bytes"),
            ("tx", "packets"),
        ]
        .into_iter()
        .enumerate()
        {
            let truth = stats1[ifname][i] - stats0[ifname][i];
            let in_window = hfield(&window, ifname, [dir, "total", what]);
            assert_eq!(
                in_window, truth,
                "{ifname} {dir} {what}: history over the window {in_window}, the interface {truth}"
            );
            let cumulative = hfield(&h1, ifname, [dir, "total", what])
                - hfield(&h0, ifname, [dir, "total", what]);
            assert_eq!(
                cumulative, truth,
                "{ifname} {dir} {what}: cumulative history"
            );
            let classes: u64 = ["local_socket", "forwarded", "other_socket", "no_socket"]
                .iter()
                .map(|c| hfield(&window, ifname, [dir, c, what]))
                .sum();
            assert_eq!(classes, in_window, "{ifname} {dir} {what}: classes add up");
        }
    }
    let frames = |run: &scenario::UdpRun| {
        (
            run.sender.datagrams_sent,
            run.sender.written + run.sender.datagrams_sent * (UDP4_OVERHEAD + ETH),
        )
    };
    let class = |ifname: &str, dir: &str, class: &str| {
        (
            hfield(&window, ifname, [dir, class, "packets"]),
            hfield(&window, ifname, [dir, class, "frame_bytes"]),
        )
    };
    assert_eq!(
        class("nmrb", "tx", "forwarded"),
        frames(&fwd),
        "forwarded A → B"
    );
    assert_eq!(
        class("nmra", "rx", "local_socket"),
        frames(&local),
        "A → R's socket, counted while the daemon was down"
    );
    assert_eq!(
        class("nmra", "tx", "other_socket"),
        (FRAMES, FRAMES * LEN as u64),
        "AF_PACKET frames"
    );
    daemon.stop();
}

/// Every interface index in the pinned interface map (`netmon interfaces`).
fn map_indexes(netmon: &Loaded) -> Vec<u64> {
    let text = cmd::run(&mut netmon.command(&["interfaces", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("netmon interfaces: bad JSON ({e}):\n{text}"));
    doc["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("netmon interfaces: no list:\n{text}"))
        .iter()
        .filter_map(|i| i["ifindex"].as_u64())
        .collect()
}

/// Polls `done` every 100 ms for at most 15 s.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not after 15 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A running daemon attaches to an interface that appears (netlink link
/// notification) and counts it exactly from then on; when the interface is
/// removed, its keys leave the kernel map (after their final counts are
/// committed) and its link pins go, while its history stays under its name.
#[test]
fn daemon_attaches_new_interfaces_and_forgets_removed_ones() {
    if !require_root("daemon_attaches_new_interfaces_and_forgets_removed_ones") {
        return;
    }
    const FRAMES: u64 = 40;
    const LEN: usize = 150;
    let Gateway {
        cg: _cg,
        router,
        netmon,
        _dir,
        paths,
        mut daemon,
    } = Gateway::new("ifaces-live");

    let (_c, peer) = add_nmrc(&router, "ifl");
    let link_pins = || {
        std::fs::read_dir(netmon.pin_dir.join("links"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("tc_"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("tc links on nmrc", || link_pins() == 6);
    let ifindex: u64 = router
        .r
        .exec(&["cat", "/sys/class/net/nmrc/ifindex"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("nmrc ifindex: {e}"));

    let stats0 = quiet(&router.r);
    let h0 = history(&paths, None);
    inject(&router.r, "nmrc", &peer, FRAMES, LEN);
    let stats1 = quiet(&router.r);
    drained(&paths);
    let h1 = history(&paths, None);
    let d = |h1: &HashMap<String, serde_json::Value>, class: &str, what: &str| {
        hfield(h1, "nmrc", ["tx", class, what]) - hfield(&h0, "nmrc", ["tx", class, what])
    };
    assert_eq!(
        (
            d(&h1, "other_socket", "packets"),
            d(&h1, "other_socket", "frame_bytes")
        ),
        (FRAMES, FRAMES * LEN as u64),
        "AF_PACKET frames on the interface added under the running daemon"
    );
    assert_eq!(
        d(&h1, "total", "frame_bytes"),
        stats1["nmrc"][2] - stats0["nmrc"][2],
        "nmrc tx bytes against the interface counter"
    );
    assert!(map_indexes(&netmon).contains(&ifindex));

    router.r.ip(&["link", "del", "nmrc"]);
    wait_for("nmrc's keys removed from the map", || {
        !map_indexes(&netmon).contains(&ifindex)
    });
    wait_for("nmrc's link pins removed", || link_pins() == 4);
    let h2 = history(&paths, None);
    assert_eq!(
        h2.get("nmrc")
            .map(|_| d(&h2, "other_socket", "frame_bytes")),
        Some(FRAMES * LEN as u64),
        "the history keeps the removed interface under its name"
    );
    daemon.stop();
}
