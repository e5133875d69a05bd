//! Per-device accounting on a gateway (tc programs on LAN interfaces).
//!
//! A router namespace R with a LAN bridge `gwbr` (ports `gwl1..3`) and
//! three device namespaces behind it, routing with nftables masquerade to a
//! WAN namespace (`gww`): see `netmon_tests::router::Lan`. netmon is loaded
//! inside R watching `gw*` with `gwl*` as LAN interfaces, and a daemon in R
//! drains into a history, naming devices from a dnsmasq lease file the test
//! writes. Traffic: device 1 → WAN (masqueraded UDP), device 2 ↔ WAN (a
//! masqueraded TCP connection, both ways), device 2 → device 3 (bridged),
//! R's socket → device 1, device 3 → R's socket, then device 1 changes its
//! address and sends to the WAN again.
//!
//! Ground truth netmon never computes: each device namespace's own IP MIB
//! counters (`IpExt.OutOctets`/`Ip.OutRequests` for what it sent,
//! `IpExt.InOctets`/`Ip.InReceives` for what it received) and the
//! workloads' own datagram counts. Per device, netmon's IP frames (bytes
//! minus the 14-byte Ethernet header per packet) equal the MIB to the byte
//! and packet; per class, the bytes equal the datagrams' frames; per LAN
//! port and direction, the device rows add up to the port's own counters
//! (`ip -s link`). NAT, measured: the TCP replies reach R's WAN interface
//! addressed to R (before conntrack undoes the masquerade), so its ingress
//! counts them `no_socket`, never `forwarded`; their frames are exactly
//! device 2's `forwarded_internet` receipts on the LAN side.
use std::{
    collections::HashMap,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    cgroup::CgroupGuard,
    check::UDP4_OVERHEAD,
    cmd,
    mib::wait_quiet,
    netmon::{NETMON_TIMEOUT, netmon_bin},
    require_root,
    router::{Lan, quiet},
    scenario, workload_exe,
};

/// Ethernet header on veth.
const ETH: u64 = 14;
const ROUNDS: u64 = 300;
const SIZES: &str = "1,64,512,1000,1400";

fn rfc3339(ms: u64) -> String {
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
}

/// `netmon devices --json` through the daemon over `[from, until)` (the
/// last hour for `None`): device id → row.
fn devices(
    socket: &std::path::Path,
    window: Option<(u64, u64)>,
) -> HashMap<String, serde_json::Value> {
    let mut c = Command::new(netmon_bin());
    c.args(["devices", "--json", "--socket"]).arg(socket);
    match window {
        Some((from, until)) => c.args(["--since", &rfc3339(from), "--until", &rfc3339(until)]),
        None => c.args(["--since", "1h"]),
    };
    let text = cmd::run(&mut c);
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("netmon devices: bad JSON ({e}):\n{text}"));
    doc["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("netmon devices: no list:\n{text}"))
        .iter()
        .filter_map(|d| Some((d["device"].as_str()?.to_owned(), d.clone())))
        .collect()
}

/// Waits until the history stops changing over several drains; the time
/// after that.
fn drained(socket: &std::path::Path) -> u64 {
    netmon_tests::daemon::settled("device history", || devices(socket, None))
}

/// `netmon usage --by interface --json` of the last hour, through the
/// daemon.
fn by_interface(socket: &std::path::Path) -> serde_json::Value {
    let mut c = Command::new(netmon_bin());
    c.args([
        "usage",
        "--since",
        "1h",
        "--by",
        "interface",
        "--json",
        "--socket",
    ])
    .arg(socket);
    let text = cmd::run(&mut c);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("usage --by interface: {e}\n{text}"))
}

/// `row[dir][class][what]`, 0 for a device not there.
fn get(
    doc: &HashMap<String, serde_json::Value>,
    id: &str,
    dir: &str,
    class: &str,
    what: &str,
) -> u64 {
    doc.get(id).map_or(0, |d| {
        d[dir][class][what]
            .as_u64()
            .unwrap_or_else(|| panic!("no {dir}.{class}.{what} in {d}"))
    })
}

/// A UDP burst from `from` to `addr` in `to` ([`ROUNDS`] rounds of
/// [`SIZES`]), its workloads in `cg`.
fn burst(
    cg: &CgroupGuard,
    to: &netmon_tests::netns::Netns,
    addr: std::net::IpAddr,
    from: &netmon_tests::netns::Netns,
) -> scenario::UdpRun {
    scenario::udp_burst(workload_exe!(), cg, to, addr, from, 1, ROUNDS, SIZES)
}

/// `(packets, frame bytes)` of UDP datagrams as the workloads sent them,
/// over `runs`: each payload plus its UDP/IPv4 and Ethernet headers.
fn frames(runs: &[&scenario::UdpRun]) -> (u64, u64) {
    runs.iter().fold((0, 0), |(p, b), run| {
        (
            p + run.sender.datagrams_sent,
            b + run.sender.written + run.sender.datagrams_sent * (UDP4_OVERHEAD + ETH),
        )
    })
}

/// `(packets, frame bytes)` of device `host` of `lan` in `doc`, for one
/// direction and class.
fn class_of(
    doc: &HashMap<String, serde_json::Value>,
    lan: &Lan,
    host: u8,
    dir: &str,
    class: &str,
) -> (u64, u64) {
    let id = lan.mac(host);
    (
        get(doc, &id, dir, class, "packets"),
        get(doc, &id, dir, class, "frame_bytes"),
    )
}

/// netmon loaded in R; unloaded on drop.
struct Loaded {
    pin_dir: PathBuf,
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

/// Device names and addresses from the sources beyond dnsmasq leases, on
/// a smaller gateway (net 240, interfaces `dn*`):
/// - device 1 gets an IPv6 address and sends to the router over IPv6: its
///   row lists that address (the neighbour table read over netlink);
/// - device 2 is named by a systemd-networkd DHCP server lease file (JSON,
///   in a directory named in `[devices] leases`);
/// - device 3 has no lease: with `[names] reverse_lookup = true` it is
///   named by the PTR record a dnsmasq in the router namespace serves for
///   its address (`name_source: "ptr"`), and the bytes under that name
///   equal device 3's own IP MIB counters, to the byte and packet.
#[test]
fn device_names_from_networkd_leases_ptr_and_ipv6_neighbours() {
    if !require_root("device_names_from_networkd_leases_ptr_and_ipv6_neighbours") {
        return;
    }
    let dnsmasq_exe = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(dnsmasq_exe) = dnsmasq_exe else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dnsmasq is missing (Debian's dnsmasq-base; .ci/run installs it)"
        );
        eprintln!(
            "\n*** SKIPPED: no dnsmasq: device_names_from_networkd_leases_ptr_and_ipv6_neighbours did not run. ***"
        );
        return;
    };
    let cg = CgroupGuard::new("devnames");
    let lan = Lan::new("dn", 240, "dn");
    let [d1, d2, d3] = &lan.devices;
    // IPv6 on the router's bridge and device 1 only (no DAD: at once).
    let r6 = format!("fd00:240:{}::1", lan.subnet);
    let d1_6 = format!("fd00:240:{}::11", lan.subnet);
    for (ns, dev, addr) in [(&lan.r, "dnbr", &r6), (d1, "nm0", &d1_6)] {
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=0",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
        ]);
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    let loaded = load_in_router(&lan, &cg, "devnames", "dn");

    // The PTR record of device 3, served in R on its loopback.
    let _dns = netmon_tests::workload::Workload::spawn(
        &dnsmasq_exe,
        [
            "--keep-in-foreground".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--no-poll".to_owned(),
            "--bind-interfaces".to_owned(),
            "--pid-file=".to_owned(),
            "--user=root".to_owned(),
            "--listen-address=127.0.0.1".to_owned(),
            "--port=53".to_owned(),
            format!("--host-record=charlie.ptr.test,{}", lan.addr(13)),
        ],
        &cg,
        Some(&lan.r),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lan
        .r
        .exec(&["ss", "-Hlun", "sport", "=", ":53"])
        .contains("127.0.0.1")
    {
        assert!(Instant::now() < deadline, "dnsmasq did not listen in R");
        thread::sleep(Duration::from_millis(50));
    }

    let dir = tempfile::Builder::new()
        .prefix("netmon-test-devnames-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    // systemd-networkd's per-interface lease file, in its directory.
    let lease_root = tempfile::Builder::new()
        .prefix("netmon-test-devnames-leases-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    let leases = lease_root.path().join("dhcp-server-lease");
    std::fs::create_dir(&leases).unwrap_or_else(|e| panic!("lease dir: {e}"));
    let mac2: Vec<String> = lan
        .mac(12)
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or(0).to_string())
        .collect();
    let ip2: Vec<String> = lan
        .addr(12)
        .to_string()
        .split('.')
        .map(str::to_owned)
        .collect();
    std::fs::write(
        leases.join("dnbr"),
        format!(
            "{{\"BootID\":\"00\",\"Address\":[10,240,{s},1],\"PrefixLength\":24,\"Leases\":[{{\"ClientId\":[1,{m}],\"Address\":[{a}],\"AddressString\":\"{ip}\",\"Hostname\":\"bravo-nd\",\"HardwareAddressType\":1,\"HardwareAddressLength\":6,\"HardwareAddress\":[{m}],\"ExpirationUSec\":86163519771}}]}}\n",
            s = lan.subnet,
            m = mac2.join(","),
            a = ip2.join(","),
            ip = lan.addr(12),
        ),
    )
    .unwrap_or_else(|e| panic!("lease file: {e}"));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[devices]\nleases = [{:?}]\n[names]\nreverse_lookup = true\nresolver = \"127.0.0.1:53\"\n",
            leases.display().to_string()
        ),
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    let paths = netmon_tests::daemon::paths_in(dir.path(), &loaded.pin_dir, &cg);
    let mut daemon =
        netmon_tests::daemon::Daemon::start_in_netns_with_config(&paths, &lan.r.path(), &config);

    let mib0 = wait_quiet(&[d3]);
    let t0 = drained(&paths.socket);
    let v6: std::net::IpAddr = r6.parse().unwrap_or_else(|e| panic!("{r6}: {e}"));
    let _d1_v6 = scenario::udp_burst(workload_exe!(), &cg, &lan.r, v6, d1, 1, 20, SIZES);
    let _d2 = scenario::udp_burst(workload_exe!(), &cg, &lan.r, lan.addr(1), d2, 1, 20, SIZES);
    let d3_sent = burst(&cg, &lan.r, lan.addr(1), d3);
    let mib1 = wait_quiet(&[d3]);
    let t1 = drained(&paths.socket);
    // The first answer queues device 3's PTR lookup; a later one has it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut doc = devices(&paths.socket, Some((t0, t1)));
    while doc.get(&lan.mac(13)).is_none_or(|d| d["name"].is_null()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        doc = devices(&paths.socket, Some((t0, t1)));
    }

    let row = |host: u8| {
        doc.get(&lan.mac(host))
            .unwrap_or_else(|| panic!("no row for device {host}: {doc:?}"))
    };
    let d1_addrs: Vec<&str> = row(11)["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses in {}", row(11)))
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let d1_6_parsed: std::net::IpAddr = d1_6.parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        d1_addrs.contains(&d1_6_parsed.to_string().as_str()),
        "device 1's IPv6 address from the neighbour table: {}",
        row(11)
    );
    assert_eq!(row(12)["name"], "bravo-nd", "{}", row(12));
    assert_eq!(row(12)["name_source"], "lease", "{}", row(12));
    assert_eq!(row(13)["name"], "charlie.ptr.test", "{}", row(13));
    assert_eq!(row(13)["name_source"], "ptr", "{}", row(13));
    let id3 = lan.mac(13);
    let (before, after) = (&mib0[0], &mib1[0]);
    for (dir, octets, packets) in [
        ("tx", "IpExt.OutOctets", "Ip.OutRequests"),
        ("rx", "IpExt.InOctets", "Ip.InReceives"),
    ] {
        let ip_packets =
            get(&doc, &id3, dir, "total", "packets") - get(&doc, &id3, dir, "not_ip", "packets");
        let ip_frames = get(&doc, &id3, dir, "total", "frame_bytes")
            - get(&doc, &id3, dir, "not_ip", "frame_bytes");
        assert_eq!(
            ip_packets,
            after.delta(before, packets),
            "device 3 {dir} packets"
        );
        assert_eq!(
            ip_frames - ETH * ip_packets,
            after.delta(before, octets),
            "device 3 ({}) {dir} IP bytes",
            row(13)["name"]
        );
    }
    assert_eq!(
        get(&doc, &id3, "tx", "host", "packets"),
        d3_sent.sender.datagrams_sent,
        "device 3 → R datagrams"
    );
    daemon.stop();
}

#[test]
fn per_device_bytes_equal_each_devices_ip_mib_through_a_nat_gateway() {
    if !require_root("per_device_bytes_equal_each_devices_ip_mib_through_a_nat_gateway") {
        return;
    }
    let cg = CgroupGuard::new("gateway");
    let lan = Lan::new("gw", 230, "gw");
    let loaded = load_in_router(&lan, &cg, "gateway", "gw");

    let dir = tempfile::Builder::new()
        .prefix("netmon-test-gateway-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    // Outside the daemon's own directories, as on a real gateway: the
    // sandboxed query threads must still read it.
    let lease_dir = tempfile::Builder::new()
        .prefix("netmon-test-gateway-leases-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    let leases = lease_dir.path().join("dnsmasq.leases");
    let names = ["alpha", "bravo", "charlie"];
    let write_leases = |first: std::net::IpAddr| {
        let mut text = String::new();
        for (i, name) in names.iter().enumerate() {
            let host = 11 + u8::try_from(i).unwrap_or(0);
            let ip = if i == 0 { first } else { lan.addr(host) };
            text.push_str(&format!("0 {} {ip} {name} *\n", lan.mac(host)));
        }
        std::fs::write(&leases, text).unwrap_or_else(|e| panic!("lease file: {e}"));
    };
    write_leases(lan.addr(11));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[devices]\nleases = [{:?}]\n[http]\nlisten = \"127.0.0.1:{HTTP_PORT}\"\n",
            leases.display().to_string()
        ),
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    let paths = netmon_tests::daemon::paths_in(dir.path(), &loaded.pin_dir, &cg);
    let mut daemon =
        netmon_tests::daemon::Daemon::start_in_netns_with_config(&paths, &lan.r.path(), &config);

    let [d1, d2, d3] = &lan.devices;
    let mib0 = wait_quiet(&[d1, d2, d3]);
    let ports0 = quiet(&lan.r);
    let t0 = drained(&paths.socket);
    let ifaces0 = by_interface(&paths.socket);
    let metrics0 = device_metrics(&lan.r);

    let to_wan = burst(&cg, &lan.wan, lan.wan_addr(2), d1);
    let _tcp = scenario::tcp_exchange(
        workload_exe!(),
        &cg,
        &lan.wan,
        lan.wan_addr(2),
        d2,
        200_000,
        2_000_000,
    );
    let bridged = burst(&cg, d3, lan.addr(13), d2);
    let host_to_d1 = burst(&cg, d1, lan.addr(11), &lan.r);
    let d3_to_host = burst(&cg, &lan.r, lan.addr(1), d3);
    // Device 1 moves to a new address (a new lease): still the same device.
    let moved = lan.addr(21);
    d1.ip(&["addr", "flush", "dev", "nm0"]);
    d1.ip(&["addr", "add", &format!("{moved}/24"), "dev", "nm0"]);
    d1.ip(&[
        "route",
        "replace",
        "default",
        "via",
        &lan.addr(1).to_string(),
    ]);
    lan.r.ip(&[
        "neigh",
        "replace",
        &moved.to_string(),
        "lladdr",
        &lan.mac(11),
        "dev",
        "gwbr",
        "nud",
        "permanent",
    ]);
    write_leases(moved);
    let to_wan_again = burst(&cg, &lan.wan, lan.wan_addr(2), d1);

    let mib1 = wait_quiet(&[d1, d2, d3]);
    let ports1 = quiet(&lan.r);
    let t1 = drained(&paths.socket);
    let doc = devices(&paths.socket, Some((t0, t1)));
    let ifaces1 = by_interface(&paths.socket);
    let metrics1 = device_metrics(&lan.r);
    assert!(!metrics1.is_empty(), "no device counters on /metrics");

    // Per direction: the device rows add up to the LAN ports' own counters
    // (a device is behind one port: static forwarding entries; a broadcast,
    // such as device 1's gratuitous ARP when its address changed, is one
    // group row on every port it went out of).
    for (i, (dir, what)) in [
        ("tx", "frame_bytes"),
        ("tx", "packets"),
        ("rx", "frame_bytes"),
        ("rx", "packets"),
    ]
    .into_iter()
    .enumerate()
    {
        let counted: u64 = doc
            .values()
            .map(|d| {
                let ports = d["interfaces"].as_array().map_or(0, Vec::len);
                assert!(ports == 1 || d["group"] == true, "one port per device: {d}");
                d[dir]["total"][what]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{d}"))
            })
            .sum();
        // Device tx is a port's rx (index 0, 1), device rx its tx (2, 3).
        let truth: u64 = ["gwl1", "gwl2", "gwl3"]
            .iter()
            .map(|p| ports1[*p][i] - ports0[*p][i])
            .sum();
        assert_eq!(
            counted, truth,
            "devices' {dir} {what} {counted}, the LAN ports' {truth}"
        );
    }

    // NAT: the masqueraded replies are `no_socket` at the WAN interface's
    // ingress, and exactly device 2's forwarded receipts from the internet.
    let wan_rx = |doc: &serde_json::Value, class: &str| {
        doc["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["interface"] == "gww"))
            .map_or(0, |r| {
                r["interface_counters"]["rx"][class]["frame_bytes"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{r}"))
            })
    };
    let replies = wan_rx(&ifaces1, "no_socket") - wan_rx(&ifaces0, "no_socket");
    assert_eq!(
        wan_rx(&ifaces1, "forwarded") - wan_rx(&ifaces0, "forwarded"),
        0,
        "nothing arriving on the WAN side is addressed past R"
    );
    assert_eq!(
        replies,
        get(
            &doc,
            &lan.mac(12),
            "rx",
            "forwarded_internet",
            "frame_bytes"
        ),
        "the WAN interface's no-socket ingress is the masqueraded replies device 2 received"
    );
    eprintln!("gateway: {replies} B of masqueraded replies counted no_socket on the WAN ingress");

    // Per device: IP frames equal the device's own MIB counters.
    ip_equals_mib("netmon devices", &lan, (&mib0, &mib1), |id, dir| {
        (
            get(&doc, id, dir, "total", "packets") - get(&doc, id, dir, "not_ip", "packets"),
            get(&doc, id, dir, "total", "frame_bytes")
                - get(&doc, id, dir, "not_ip", "frame_bytes"),
        )
    });

    // Per class: the workloads' own datagrams.
    let class = |host: u8, dir: &str, class: &str| class_of(&doc, &lan, host, dir, class);
    assert_eq!(
        class(11, "tx", "forwarded_internet"),
        frames(&[&to_wan, &to_wan_again]),
        "device 1 → WAN (masqueraded), across its address change"
    );
    assert_eq!(
        class(11, "rx", "host"),
        frames(&[&host_to_d1]),
        "R → device 1"
    );
    assert_eq!(
        class(12, "tx", "forwarded_local"),
        frames(&[&bridged]),
        "device 2 → 3 sent"
    );
    assert_eq!(
        class(13, "rx", "forwarded_local"),
        frames(&[&bridged]),
        "device 2 → 3 received"
    );
    assert_eq!(
        class(13, "tx", "host"),
        frames(&[&d3_to_host]),
        "device 3 → R"
    );

    // Names from the lease file; the address change kept the device.
    let d1_row = &doc[&lan.mac(11)];
    assert_eq!(d1_row["name"], "alpha", "{d1_row}");
    assert_eq!(d1_row["name_source"], "lease", "{d1_row}");
    let addrs: Vec<String> = d1_row["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses in {d1_row}"))
        .iter()
        .filter_map(|a| a.as_str().map(ToOwned::to_owned))
        .collect();
    assert!(addrs.contains(&moved.to_string()), "{d1_row}");
    assert_eq!(doc[&lan.mac(12)]["name"], "bravo");
    assert!(
        !doc.contains_key("overflow"),
        "three devices fit the map: {doc:?}"
    );
    // The exporter's counters moved by exactly the devices' MIB counters.
    ip_equals_mib("/metrics", &lan, (&mib0, &mib1), |mac, dir| {
        ["host", "forwarded_local", "forwarded_internet"]
            .iter()
            .map(|c| metric_delta(&metrics0, &metrics1, mac, dir, c))
            .fold((0, 0), |(p, b), (dp, db)| (p + dp, b + db))
    });
    assert_eq!(
        metric_delta(
            &metrics0,
            &metrics1,
            &lan.mac(11),
            "tx",
            "forwarded_internet"
        ),
        frames(&[&to_wan, &to_wan_again]),
        "/metrics: device 1 → WAN (masqueraded), across its address change"
    );
    assert_eq!(
        metric_delta(&metrics0, &metrics1, &lan.mac(12), "tx", "forwarded_local"),
        frames(&[&bridged]),
        "/metrics: device 2 → 3 sent"
    );
    daemon.stop();
}

/// A LAN port removed while the daemon runs (a USB adapter unplugged, a
/// container's veth deleted), on a gateway of its own (net 250, interfaces
/// `gr*`): device 3 sends known datagrams to R through port `grl3` and
/// device 1 to the WAN; then `grl3` is deleted, so the drain commits its
/// final counts and forgets the interface (its device slots retired,
/// see `netmon_common::device`), and device 1 sends again. After several
/// more drains, device 3's totals still equal its own IP MIB counters to
/// the byte (a retired slot read again would count them a second time) and
/// device 1's both bursts.
#[test]
fn removed_lan_port_keeps_its_device_counted_once() {
    if !require_root("removed_lan_port_keeps_its_device_counted_once") {
        return;
    }
    let cg = CgroupGuard::new("gwremove");
    let lan = Lan::new("gr", 250, "gr");
    let loaded = load_in_router(&lan, &cg, "gwremove", "gr");
    let dir = tempfile::Builder::new()
        .prefix("netmon-test-gwremove-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap_or_else(|e| panic!("config: {e}"));
    let paths = netmon_tests::daemon::paths_in(dir.path(), &loaded.pin_dir, &cg);
    let mut daemon =
        netmon_tests::daemon::Daemon::start_in_netns_with_config(&paths, &lan.r.path(), &config);

    let [d1, _, d3] = &lan.devices;
    let mib0 = wait_quiet(&[d3]);
    let t0 = drained(&paths.socket);
    let to_host = burst(&cg, &lan.r, lan.addr(1), d3);
    let to_wan = burst(&cg, &lan.wan, lan.wan_addr(2), d1);
    let mib1 = wait_quiet(&[d3]);
    let before = devices(&paths.socket, Some((t0, drained(&paths.socket))));
    let d3_id = lan.mac(13);
    assert!(
        get(&before, &d3_id, "tx", "host", "packets") > 0,
        "device 3 counted before its port goes: {before:?}"
    );

    lan.r.ip(&["link", "del", "grl3"]);
    // Several drains see the port gone, commit, forget it.
    let again = burst(&cg, &lan.wan, lan.wan_addr(2), d1);
    thread::sleep(Duration::from_secs(3));
    let t1 = drained(&paths.socket);
    let doc = devices(&paths.socket, Some((t0, t1)));

    let class = |doc: &HashMap<String, serde_json::Value>, host: u8, dir: &str, class: &str| {
        class_of(doc, &lan, host, dir, class)
    };
    assert_eq!(
        class(&doc, 13, "tx", "host"),
        frames(&[&to_host]),
        "device 3 → R, counted once after its port was removed"
    );
    assert_eq!(
        class(&doc, 13, "tx", "host"),
        class(&before, 13, "tx", "host"),
        "device 3 unchanged by the removal"
    );
    let ip_packets =
        get(&doc, &d3_id, "tx", "total", "packets") - get(&doc, &d3_id, "tx", "not_ip", "packets");
    let ip_bytes = get(&doc, &d3_id, "tx", "total", "frame_bytes")
        - get(&doc, &d3_id, "tx", "not_ip", "frame_bytes")
        - ETH * ip_packets;
    assert_eq!(
        (ip_packets, ip_bytes),
        (
            mib1[0].delta(&mib0[0], "Ip.OutRequests"),
            mib1[0].delta(&mib0[0], "IpExt.OutOctets")
        ),
        "device 3's IP packets and bytes, its own MIB's"
    );
    assert_eq!(
        class(&doc, 11, "tx", "forwarded_internet"),
        frames(&[&to_wan, &again]),
        "device 1 → WAN, before and after the other port went"
    );
    daemon.stop();
}

/// The daemon's HTTP port in R (R's own namespace: nothing else listens).
const HTTP_PORT: u16 = 9790;

/// Per (MAC, direction, class): (packets, frame bytes).
type DeviceMetrics = HashMap<(String, String, String), (u64, u64)>;

/// The `netmon_device_*_total` counters of the daemon's `/metrics`, asked
/// with curl inside R, summed per MAC, direction and class (over the
/// `device` and `interface` labels); empty before any device was counted.
fn device_metrics(r: &netmon_tests::netns::Netns) -> DeviceMetrics {
    let text = r.exec(&[
        "curl",
        "-sSf",
        "--max-time",
        "20",
        &format!("http://127.0.0.1:{HTTP_PORT}/metrics"),
    ]);
    let mut out = DeviceMetrics::new();
    for line in text.lines() {
        let (packets, rest) = if let Some(rest) = line.strip_prefix("netmon_device_packets_total{")
        {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("netmon_device_bytes_total{") {
            (false, rest)
        } else {
            continue;
        };
        let (labels, value) = rest
            .rsplit_once("} ")
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: u64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value ({e}): {line}"));
        let label = |name: &str| -> String {
            let at = labels
                .find(&format!("{name}=\""))
                .unwrap_or_else(|| panic!("no {name} in {line}"));
            let v = &labels[at + name.len() + 2..];
            v[..v.find('"').unwrap_or(v.len())].to_owned()
        };
        let e = out
            .entry((label("mac"), label("direction"), label("class")))
            .or_default();
        if packets {
            e.0 += value;
        } else {
            e.1 += value;
        }
    }
    out
}

/// `after - before` of `(packets, frame bytes)` for one MAC, direction and
/// class (0 where absent).
fn metric_delta(
    before: &DeviceMetrics,
    after: &DeviceMetrics,
    mac: &str,
    dir: &str,
    class: &str,
) -> (u64, u64) {
    let key = (mac.to_owned(), dir.to_owned(), class.to_owned());
    let (b, a) = (
        before.get(&key).copied().unwrap_or_default(),
        after.get(&key).copied().unwrap_or_default(),
    );
    (a.0 - b.0, a.1 - b.1)
}

/// Per device and direction, `(IP packets, IP frame bytes)` as `what`
/// counted them (`counted(MAC, direction)`) equal the device namespace's
/// own IP MIB counters over the same period (frames less the Ethernet
/// header).
fn ip_equals_mib(
    what: &str,
    lan: &Lan,
    (mib0, mib1): (&[netmon_tests::mib::Mib], &[netmon_tests::mib::Mib]),
    counted: impl Fn(&str, &str) -> (u64, u64),
) {
    for (i, (before, after)) in mib0.iter().zip(mib1).enumerate() {
        let id = lan.mac(11 + u8::try_from(i).unwrap_or(0));
        for (dir, octets, packets) in [
            ("tx", "IpExt.OutOctets", "Ip.OutRequests"),
            ("rx", "IpExt.InOctets", "Ip.InReceives"),
        ] {
            let (ip_packets, ip_frames) = counted(&id, dir);
            let truth_packets = after.delta(before, packets);
            let truth_bytes = after.delta(before, octets);
            assert_eq!(
                ip_packets,
                truth_packets,
                "{what}: device {} ({id}) {dir} packets {ip_packets}, the device's {packets} {truth_packets}",
                i + 1
            );
            assert_eq!(
                ip_frames - ETH * ip_packets,
                truth_bytes,
                "{what}: device {} ({id}) {dir} IP bytes {}, the device's {octets} {truth_bytes}",
                i + 1,
                ip_frames - ETH * ip_packets
            );
        }
    }
}

/// `netmon load` run in R's namespace, watching R's interfaces named
/// `{prefix}*` with those named `{prefix}l*` as LAN, pinned in a pin
/// directory unique to this test (`tag`); unloaded when dropped.
fn load_in_router(lan: &Lan, cg: &CgroupGuard, tag: &str, prefix: &str) -> Loaded {
    let loaded = Loaded {
        pin_dir: PathBuf::from(format!(
            "/sys/fs/bpf/netmon-test-{tag}-{}",
            netmon_tests::unique_suffix()
        )),
    };
    let mut load = Command::new("nsenter");
    load.arg(format!("--net={}", lan.r.path().display()))
        .arg(netmon_bin())
        .args([
            "load",
            "--watch-interface",
            &format!("{prefix}*"),
            "--lan-interface",
            &format!("{prefix}l*"),
        ])
        .arg(format!("--cgroup={}", cg.path().display()))
        .arg("--pin-dir")
        .arg(&loaded.pin_dir);
    let _said = cmd::run(&mut load);
    loaded
}
