//! A router namespace R forwarding between two namespaces A and B over two
//! veth pairs: R's ends are `{prefix}a` and `{prefix}b`, A's and B's `nm0`.
//! A side 10.{net+1}.S.0/24, B side 10.{net+2}.S.0/24 (S from the pid, so
//! parallel runs do not collide); R is `.1` on both, A and B `.2` with a
//! default route through R. Neighbours are static (no ARP), IPv4 forwarding
//! is on in R. Namespaces go with the value.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    thread,
    time::{Duration, Instant},
};

use crate::{cmd, netns::Netns};

/// R, A and B (see the module docs).
pub struct Router {
    /// The router.
    pub r: Netns,
    /// Behind `{prefix}a`.
    pub a: Netns,
    /// Behind `{prefix}b`.
    pub b: Netns,
    /// The third octet of both networks.
    pub subnet: u8,
    net: u8,
}

impl Router {
    /// Builds R, A and B, namespaces tagged `{tag}r`, `{tag}a`, `{tag}b`.
    #[must_use]
    pub fn new(prefix: &str, net: u8, tag: &str) -> Self {
        let subnet = u8::try_from(std::process::id() % 200 + 20).unwrap_or(20);
        let r = Netns::new(&format!("{tag}r"));
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let me = |host: u8| mac(net, subnet, host);
        for (side, ns, host) in [(1u8, &a, 1u8), (2, &b, 3)] {
            let rname = format!("{prefix}{}", if side == 1 { 'a' } else { 'b' });
            cmd::run_args(
                "ip",
                &[
                    "link",
                    "add",
                    &rname,
                    "netns",
                    r.name(),
                    "address",
                    &me(host),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "nm0",
                    "netns",
                    ns.name(),
                    "address",
                    &me(host + 1),
                ],
            );
            let prefix = format!("10.{}.{subnet}", u16::from(net) + u16::from(side));
            r.ip(&["addr", "add", &format!("{prefix}.1/24"), "dev", &rname]);
            ns.ip(&["addr", "add", &format!("{prefix}.2/24"), "dev", "nm0"]);
            r.ip(&["link", "set", &rname, "up"]);
            ns.ip(&["link", "set", "nm0", "up"]);
            r.ip(&[
                "neigh",
                "replace",
                &format!("{prefix}.2"),
                "lladdr",
                &me(host + 1),
                "dev",
                &rname,
                "nud",
                "permanent",
            ]);
            ns.ip(&[
                "neigh",
                "replace",
                &format!("{prefix}.1"),
                "lladdr",
                &me(host),
                "dev",
                "nm0",
                "nud",
                "permanent",
            ]);
            ns.ip(&["route", "add", "default", "via", &format!("{prefix}.1")]);
        }
        r.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        Self {
            r,
            a,
            b,
            subnet,
            net,
        }
    }

    /// The MAC of host `host`: R's ends are 1 (A side) and 3 (B side), A's
    /// `nm0` 2, B's 4; others are free for more interfaces.
    #[must_use]
    pub fn mac(&self, host: u8) -> String {
        mac(self.net, self.subnet, host)
    }

    /// Address `.host` on side 1 (A's network) or 2 (B's).
    #[must_use]
    pub fn addr(&self, side: u8, host: u8) -> IpAddr {
        let second = u8::try_from(u16::from(self.net) + u16::from(side)).unwrap_or(u8::MAX);
        Ipv4Addr::new(10, second, self.subnet, host).into()
    }
}

fn mac(net: u8, subnet: u8, host: u8) -> String {
    format!("02:00:00:{net:02x}:{subnet:02x}:{host:02x}")
}

/// A gateway: router namespace `r` with a LAN bridge `{prefix}br` whose
/// ports `{prefix}l1..3` lead to three device namespaces (`nm0` each,
/// 10.{net}.S.11..13/24, the bridge .1) and a WAN interface `{prefix}w` to
/// a WAN namespace (10.{net+1}.S.2/24, R .1), with nftables masquerade on
/// the WAN side. IPv6 is off everywhere and every neighbour and bridge
/// forwarding entry is static, so the only IP packets are the tests' and
/// no frame is flooded.
pub struct Lan {
    /// The router.
    pub r: Netns,
    /// The devices.
    pub devices: [Netns; 3],
    /// The WAN side.
    pub wan: Netns,
    /// The third octet of both networks.
    pub subnet: u8,
    net: u8,
}

impl Lan {
    /// Builds the gateway, namespaces tagged `{tag}r`, `{tag}d1..3`,
    /// `{tag}w`.
    #[must_use]
    pub fn new(prefix: &str, net: u8, tag: &str) -> Self {
        let subnet = u8::try_from(std::process::id() % 200 + 20).unwrap_or(20);
        let no_v6 = |ns: &Netns| {
            ns.exec(&[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        };
        let r = Netns::new(&format!("{tag}r"));
        let devices = [1, 2, 3].map(|i| Netns::new(&format!("{tag}d{i}")));
        let wan = Netns::new(&format!("{tag}w"));
        for ns in std::iter::once(&r).chain(&devices).chain([&wan]) {
            no_v6(ns);
        }
        r.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        let lan = Self {
            r,
            devices,
            wan,
            subnet,
            net,
        };
        let br = format!("{prefix}br");
        lan.r.ip(&[
            "link",
            "add",
            &br,
            "address",
            &lan.mac(1),
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        lan.r
            .ip(&["addr", "add", &format!("{}/24", lan.addr(1)), "dev", &br]);
        lan.r.ip(&["link", "set", &br, "up"]);
        for (i, d) in lan.devices.iter().enumerate() {
            let host = 11 + u8::try_from(i).unwrap_or(0);
            let port = format!("{prefix}l{}", i + 1);
            cmd::run_args(
                "ip",
                &[
                    "link",
                    "add",
                    &port,
                    "netns",
                    lan.r.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "nm0",
                    "netns",
                    d.name(),
                    "address",
                    &lan.mac(host),
                ],
            );
            lan.r.ip(&["link", "set", &port, "master", &br]);
            lan.r.ip(&["link", "set", &port, "up"]);
            d.ip(&[
                "addr",
                "add",
                &format!("{}/24", lan.addr(host)),
                "dev",
                "nm0",
            ]);
            d.ip(&["link", "set", "nm0", "up"]);
            d.ip(&["route", "add", "default", "via", &lan.addr(1).to_string()]);
            lan.r.exec(&[
                "bridge",
                "fdb",
                "replace",
                &lan.mac(host),
                "dev",
                &port,
                "master",
                "static",
            ]);
            lan.r.ip(&[
                "neigh",
                "replace",
                &lan.addr(host).to_string(),
                "lladdr",
                &lan.mac(host),
                "dev",
                &br,
                "nud",
                "permanent",
            ]);
            for other in 1..=4u8 {
                let (ip, mac) = if other == 4 {
                    (lan.addr(1), lan.mac(1))
                } else {
                    (lan.addr(10 + other), lan.mac(10 + other))
                };
                if ip != lan.addr(host) {
                    d.ip(&[
                        "neigh",
                        "replace",
                        &ip.to_string(),
                        "lladdr",
                        &mac,
                        "dev",
                        "nm0",
                        "nud",
                        "permanent",
                    ]);
                }
            }
        }
        let w = format!("{prefix}w");
        cmd::run_args(
            "ip",
            &[
                "link",
                "add",
                &w,
                "netns",
                lan.r.name(),
                "address",
                &lan.mac(30),
                "type",
                "veth",
                "peer",
                "name",
                "nm0",
                "netns",
                lan.wan.name(),
                "address",
                &lan.mac(31),
            ],
        );
        lan.r
            .ip(&["addr", "add", &format!("{}/24", lan.wan_addr(1)), "dev", &w]);
        lan.wan.ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.wan_addr(2)),
            "dev",
            "nm0",
        ]);
        lan.r.ip(&["link", "set", &w, "up"]);
        lan.wan.ip(&["link", "set", "nm0", "up"]);
        lan.r.ip(&[
            "neigh",
            "replace",
            &lan.wan_addr(2).to_string(),
            "lladdr",
            &lan.mac(31),
            "dev",
            &w,
            "nud",
            "permanent",
        ]);
        lan.wan.ip(&[
            "neigh",
            "replace",
            &lan.wan_addr(1).to_string(),
            "lladdr",
            &lan.mac(30),
            "dev",
            "nm0",
            "nud",
            "permanent",
        ]);
        lan.r.exec(&["nft", "add", "table", "ip", "netmon_nat"]);
        lan.r.exec(&[
            "nft",
            "add chain ip netmon_nat post { type nat hook postrouting priority 100 ; }",
        ]);
        lan.r.exec(&[
            "nft",
            "add",
            "rule",
            "ip",
            "netmon_nat",
            "post",
            "oifname",
            &w,
            "masquerade",
        ]);
        lan
    }

    /// MAC `02:00:00:{net}:{subnet}:{host}`: the bridge 1, device `i` (0..3)
    /// `11 + i`, R's WAN end 30, the WAN namespace 31.
    #[must_use]
    pub fn mac(&self, host: u8) -> String {
        mac(self.net, self.subnet, host)
    }

    /// LAN address `.host` (the bridge 1, device `i` `11 + i`).
    #[must_use]
    pub fn addr(&self, host: u8) -> IpAddr {
        Ipv4Addr::new(10, self.net, self.subnet, host).into()
    }

    /// WAN address `.host` (R 1, the WAN namespace 2).
    #[must_use]
    pub fn wan_addr(&self, host: u8) -> IpAddr {
        let second = self.net.saturating_add(1);
        Ipv4Addr::new(10, second, self.subnet, host).into()
    }
}

/// (rx bytes, rx packets, tx bytes, tx packets) of an interface's own counters.
pub type Stats = [u64; 4];

/// Every interface of `ns` and its own counters (`ip -s -j link`, stats64).
#[must_use]
pub fn link_stats(ns: &Netns) -> HashMap<String, Stats> {
    let text = ns.ip(&["-s", "-j", "link", "show"]);
    let links: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j: {e}:\n{text}"));
    let get = |l: &serde_json::Value, dir: &str, what: &str| {
        l["stats64"][dir][what]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.{what} in {l}"))
    };
    links
        .as_array()
        .unwrap_or_else(|| panic!("ip -j: not a list:\n{text}"))
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap_or_default().to_owned(),
                [
                    get(l, "rx", "bytes"),
                    get(l, "rx", "packets"),
                    get(l, "tx", "bytes"),
                    get(l, "tx", "packets"),
                ],
            )
        })
        .collect()
}

/// Waits until the namespace's interface counters stop moving (300 ms unchanged, at
/// most 10 s) and returns them.
#[must_use]
pub fn quiet(ns: &Netns) -> HashMap<String, Stats> {
    let start = Instant::now();
    let mut last = link_stats(ns);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "interfaces of {} never went quiet",
            ns.name()
        );
        thread::sleep(Duration::from_millis(50));
        let now = link_stats(ns);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}
