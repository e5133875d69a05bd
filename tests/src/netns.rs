//! Network namespaces for test traffic, joined by a veth pair.
//!
//! The addresses (10.200.X.1/24 and .2, fd00:200:X::1/64 and ::2) exist only
//! inside these namespaces, so nothing ever leaves the machine and two pairs
//! never interfere. The namespaces are kept quiet so that their IP MIB
//! counters move only with the tests' own traffic:
//! - neighbours are static (`nud permanent`): no ARP, no neighbour discovery;
//! - IPv6 duplicate address detection, router solicitations and link-local
//!   addresses are off (`addr_gen_mode` 1, `nodad`);
//! - MLD still reports the solicited-node groups when an address is added;
//!   its unsolicited report interval is cut to 10 ms, and
//!   [`crate::mib::wait_quiet`] waits for the reports to end.
//!
//! Measured (kernel 6.18): after the veth goes up, each namespace sends two
//! MLDv2 reports (76 B each: `Ip6OutOctets` +152) within 50 ms, then no
//! counter moves while idle (watched for 4 s). With the default 1 s report
//! interval the second report comes up to a second later.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use crate::cmd;

/// Name of the veth end in every namespace of a pair.
pub const VETH: &str = "nm0";

/// Sysctls that silence IPv6 chatter; set before the veth exists so that its
/// per-device settings inherit them from `default`.
const QUIET_SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.dad_transmits=0",
    "net.ipv6.conf.default.dad_transmits=0",
    "net.ipv6.conf.all.router_solicitations=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.default.addr_gen_mode=1",
    "net.ipv6.conf.all.mldv1_unsolicited_report_interval=10",
    "net.ipv6.conf.default.mldv1_unsolicited_report_interval=10",
    "net.ipv6.conf.all.mldv2_unsolicited_report_interval=10",
    "net.ipv6.conf.default.mldv2_unsolicited_report_interval=10",
];

/// One network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl Netns {
    /// A new, quiet namespace with loopback up and no other interface.
    #[track_caller]
    #[must_use]
    pub fn new(tag: &str) -> Self {
        let name = format!("netmon-{tag}-{}", crate::unique_suffix());
        cmd::run_args("ip", &["netns", "add", &name]);
        let ns = Self {
            name,
            v4: None,
            v6: None,
        };
        let mut sysctl = vec!["sysctl", "-q", "-w"];
        sysctl.extend_from_slice(QUIET_SYSCTLS);
        ns.exec(&sysctl);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (`ip netns` and `/run/netns/<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the file `setns(2)` takes.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Opens the namespace file (for `setns`).
    #[track_caller]
    #[must_use]
    pub fn open(&self) -> File {
        File::open(self.path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.path().display()))
    }

    /// This namespace's IPv4 address on the veth.
    #[track_caller]
    #[must_use]
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
            .unwrap_or_else(|| panic!("namespace {} has no veth address", self.name))
    }

    /// This namespace's IPv6 address on the veth.
    #[track_caller]
    #[must_use]
    pub fn v6(&self) -> Ipv6Addr {
        self.v6
            .unwrap_or_else(|| panic!("namespace {} has no veth address", self.name))
    }

    /// Runs `ip -n <ns> ARGS`.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        cmd::run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs `ip netns exec <ns> ARGS` and returns its stdout.
    #[track_caller]
    pub fn exec(&self, args: &[&str]) -> String {
        cmd::run(&mut self.exec_command(args))
    }

    /// The command `ip netns exec <ns> ARGS`, not started.
    #[must_use]
    pub fn exec_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let res = cmd::try_run(
            Command::new("ip").args(["netns", "delete", &self.name]),
            Duration::from_secs(30),
        );
        if let Err(e) = res {
            eprintln!("netmon-tests: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `a` is 10.200.X.1 / fd00:200:X::1,
/// `b` is .2 / ::2.
#[derive(Debug)]
pub struct NetnsPair {
    /// The `.1` side.
    pub a: Netns,
    /// The `.2` side.
    pub b: Netns,
    /// X in the addresses.
    pub subnet: u8,
}

impl NetnsPair {
    /// Creates both namespaces, the veth pair, addresses and static
    /// neighbours, then waits until both namespaces are quiet.
    #[track_caller]
    #[must_use]
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let subnet = NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let mut a = Netns::new(&format!("{tag}-a"));
        let mut b = Netns::new(&format!("{tag}-b"));
        let mac_a = format!("02:00:00:00:{subnet:02x}:01");
        let mac_b = format!("02:00:00:00:{subnet:02x}:02");
        // Created directly inside the namespaces: no name ever appears in the
        // host namespace, so pairs of concurrent runs cannot collide.
        cmd::run_args(
            "ip",
            &[
                "link",
                "add",
                VETH,
                "netns",
                a.name(),
                "address",
                &mac_a,
                "type",
                "veth",
                "peer",
                "name",
                VETH,
                "netns",
                b.name(),
                "address",
                &mac_b,
            ],
        );
        a.v4 = Some(Ipv4Addr::new(10, 200, subnet, 1));
        b.v4 = Some(Ipv4Addr::new(10, 200, subnet, 2));
        a.v6 = Some(Ipv6Addr::new(
            0xfd00,
            0x200,
            u16::from(subnet),
            0,
            0,
            0,
            0,
            1,
        ));
        b.v6 = Some(Ipv6Addr::new(
            0xfd00,
            0x200,
            u16::from(subnet),
            0,
            0,
            0,
            0,
            2,
        ));
        for (ns, peer, peer_mac) in [(&a, &b, &mac_b), (&b, &a, &mac_a)] {
            ns.ip(&["addr", "add", &format!("{}/24", ns.v4()), "dev", VETH]);
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/64", ns.v6()),
                "dev",
                VETH,
                "nodad",
            ]);
            ns.ip(&["link", "set", VETH, "up"]);
            for addr in [peer.v4().to_string(), peer.v6().to_string()] {
                ns.ip(&[
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    peer_mac,
                    "dev",
                    VETH,
                    "nud",
                    "permanent",
                ]);
            }
        }
        crate::mib::wait_quiet(&[&a, &b]);
        Self { a, b, subnet }
    }
}
