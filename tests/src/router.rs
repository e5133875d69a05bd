//! A router namespace R forwarding between two namespaces A and B over two
//! veth pairs: R's ends are `{prefix}a` and `{prefix}b`, A's and B's `nm0`.
//! A side 10.{net+1}.S.0/24, B side 10.{net+2}.S.0/24 (S from the pid, so
//! parallel runs do not collide); R is `.1` on both, A and B `.2` with a
//! default route through R. Neighbours are static (no ARP), IPv4 forwarding
//! is on in R. Namespaces go with the value.
use std::net::{IpAddr, Ipv4Addr};

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
