//! Who a LAN device is: names and addresses for the MAC addresses the tc
//! programs count (`netmon_common::device`), read when a question is
//! answered, never on the packet path.
//!
//! Sources, first match wins for the name:
//! 1. static names in the config (`[devices] names = { "MAC" = "NAME" }`);
//! 2. DHCP lease files (`[devices] leases = [paths]`), format detected
//!    from the content:
//!    - dnsmasq (`EXPIRY MAC IP HOSTNAME CLIENT-ID` per line; `*` for no
//!      hostname),
//!    - ISC dhcpd (`lease IP { ... hardware ethernet MAC; client-hostname
//!      "NAME"; }`; the last block of a MAC wins),
//!    - Kea memfile CSV (header `address,hwaddr,...,hostname,...`),
//!    - systemd-networkd's DHCP server (`[DHCPServer] PersistLeases=`,
//!      one JSON file per interface, `/var/lib/systemd/network/
//!      dhcp-server-lease/IFNAME`, a runtime copy under
//!      `/run/systemd/netif/dhcp-server-lease/`): since systemd 256 an
//!      object with a `Leases` array whose entries carry `HardwareAddress`
//!      (bytes), `Address` (bytes) or `AddressString`, `Hostname` and
//!      `ClientId`; systemd 255 wrote the bare array with `ClientId`,
//!      `Address` and `Hostname` only. The MAC is `HardwareAddress`, or
//!      the `ClientId` when it is of type 1 (Ethernet: type byte then the
//!      MAC); a lease with neither (a DUID client id) is skipped;
//! 3. the neighbour table, IPv4 and IPv6 (a netlink dump,
//!    [`crate::kernel::neigh`]; `/proc/net/arp`, IPv4 only, if netlink
//!    fails) gives addresses, not names;
//! 4. with `[names] reverse_lookup = true`, the PTR name of one of the
//!    device's addresses, looked up when a query shows the device
//!    ([`crate::names::ptr`]; the API handler adds it).
//!
//! A device is its MAC: an address change (a new lease, a new neighbour
//! entry) never makes a new device. A MAC with the locally administered bit
//! (`02` in the first octet) is shown as randomised; `[devices] merge =
//! { "NAME" = [MACs] }` adds several MACs (a phone's per-network random
//! addresses) up as one device.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `[devices]` of the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// DHCP lease files (or directories of them) to read names and
    /// addresses from.
    #[serde(default)]
    pub leases: Vec<PathBuf>,
    /// Static names: MAC → name.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Devices made of several MACs: name → MACs.
    #[serde(default)]
    pub merge: BTreeMap<String, Vec<String>>,
}

static CONFIG: OnceLock<DevicesConfig> = OnceLock::new();

/// Sets the configuration the answers use (once, at daemon start; later
/// calls are ignored).
pub fn set_config(config: DevicesConfig) {
    let _ = CONFIG.set(config);
}

/// The configuration set with [`set_config`], or an empty one.
#[must_use]
pub fn config() -> DevicesConfig {
    CONFIG.get().cloned().unwrap_or_default()
}

/// `aa:bb:cc:dd:ee:ff`.
#[must_use]
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), any case.
#[must_use]
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for o in &mut out {
        *o = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The locally administered bit: a randomised (private) address.
#[must_use]
pub const fn is_randomised(mac: &[u8; 6]) -> bool {
    mac[0] & 0x02 != 0
}

/// The group bit: broadcast or multicast, not one device.
#[must_use]
pub const fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 0x01 != 0
}

/// One lease: a MAC, its address and the hostname the client gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's MAC.
    pub mac: [u8; 6],
    /// The leased address.
    pub addr: IpAddr,
    /// The client's hostname, if it sent one.
    pub hostname: Option<String>,
}

fn hostname(s: &str) -> Option<String> {
    let s = s.trim().trim_matches('"');
    (!s.is_empty() && s != "*").then(|| s.to_owned())
}

/// dnsmasq's lease file.
#[must_use]
pub fn parse_dnsmasq(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(Lease {
                mac: parse_mac(f.get(1)?)?,
                addr: f.get(2)?.parse().ok()?,
                hostname: f.get(3).and_then(|h| hostname(h)),
            })
        })
        .collect()
}

/// ISC dhcpd's `dhcpd.leases`.
#[must_use]
pub fn parse_isc(text: &str) -> Vec<Lease> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("lease ") {
        rest = &rest[start + 6..];
        let Some(open) = rest.find('{') else { break };
        let addr = rest[..open].trim().parse::<IpAddr>().ok();
        let Some(close) = rest.find('}') else { break };
        let body = &rest[open + 1..close];
        rest = &rest[close + 1..];
        let mut mac = None;
        let mut name = None;
        for stmt in body.split(';') {
            let stmt = stmt.trim();
            if let Some(m) = stmt.strip_prefix("hardware ethernet") {
                mac = parse_mac(m);
            } else if let Some(h) = stmt.strip_prefix("client-hostname") {
                name = hostname(h);
            }
        }
        if let (Some(addr), Some(mac)) = (addr, mac) {
            out.push(Lease {
                mac,
                addr,
                hostname: name,
            });
        }
    }
    out
}

/// Kea's memfile CSV (`kea-leases4.csv`).
#[must_use]
pub fn parse_kea_csv(text: &str) -> Vec<Lease> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name| cols.iter().position(|c| *c == name);
    let (Some(a), Some(h)) = (col("address"), col("hwaddr")) else {
        return Vec::new();
    };
    let n = col("hostname");
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Some(Lease {
                mac: parse_mac(f.get(h)?)?,
                addr: f.get(a)?.trim().parse().ok()?,
                hostname: n.and_then(|n| f.get(n)).and_then(|s| hostname(s)),
            })
        })
        .collect()
}

/// One lease of systemd-networkd's DHCP server lease file (see the
/// module docs; unknown keys ignored).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkdLease {
    #[serde(default)]
    client_id: Vec<u8>,
    #[serde(default)]
    hardware_address: Vec<u8>,
    #[serde(default)]
    address: Vec<u8>,
    #[serde(default)]
    address_string: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
}

/// The file: an object with `Leases` (systemd >= 256) or the bare array
/// (systemd 255).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum NetworkdFile {
    Object {
        #[serde(rename = "Leases", default)]
        leases: Vec<NetworkdLease>,
    },
    Array(Vec<NetworkdLease>),
}

/// systemd-networkd's DHCP server lease file (JSON; an unreadable file
/// gives no leases).
#[must_use]
pub fn parse_networkd(text: &str) -> Vec<Lease> {
    let leases = match serde_json::from_str::<NetworkdFile>(text) {
        Ok(NetworkdFile::Object { leases } | NetworkdFile::Array(leases)) => leases,
        Err(e) => {
            tracing::warn!(error = %e, "systemd-networkd lease file");
            return Vec::new();
        }
    };
    leases
        .into_iter()
        .filter_map(|l| {
            let mac: [u8; 6] = match (l.hardware_address.len(), l.client_id.as_slice()) {
                (6, _) => l.hardware_address.as_slice().try_into().ok()?,
                (_, [1, mac @ ..]) => mac.try_into().ok()?,
                _ => return None,
            };
            let addr = match <[u8; 4]>::try_from(l.address.as_slice()) {
                Ok(b) => IpAddr::from(b),
                Err(_) => l.address_string.as_deref()?.parse().ok()?,
            };
            Some(Lease {
                mac,
                addr,
                hostname: l.hostname.as_deref().and_then(hostname),
            })
        })
        .collect()
}

/// Any of the lease formats, told apart by the content.
#[must_use]
pub fn parse_leases(text: &str) -> Vec<Lease> {
    let json = text.trim_start();
    if json.starts_with('{') || json.starts_with('[') {
        parse_networkd(text)
    } else if text.starts_with("address,") {
        parse_kea_csv(text)
    } else if text.contains("lease ") && text.contains('{') {
        parse_isc(text)
    } else {
        parse_dnsmasq(text)
    }
}

/// `/proc/net/arp`: complete entries (flags 0x2) as (address, MAC).
#[must_use]
pub fn parse_arp(text: &str) -> Vec<(IpAddr, [u8; 6])> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = parse_mac(f.get(3)?)?;
            (flags & 0x2 != 0 && mac != [0; 6]).then_some((f.first()?.parse().ok()?, mac))
        })
        .collect()
}

/// The files of a `[devices] leases` entry: the path itself, or every
/// file in it when it is a directory (systemd-networkd keeps one file per
/// interface in `/var/lib/systemd/network/dhcp-server-lease/`), sorted.
fn lease_files(path: &std::path::Path) -> Vec<PathBuf> {
    match std::fs::read_dir(path) {
        Ok(dir) => {
            let mut files: Vec<PathBuf> = dir
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        }
        Err(_) => vec![path.to_path_buf()],
    }
}

/// The directories the daemon's sandboxed query threads must be able to
/// read for `config`'s lease entries: a directory entry itself, a file's
/// parent (a DHCP server replaces its lease file by rename, so a rule on
/// the file alone would stop matching).
#[must_use]
pub fn lease_dirs(config: &DevicesConfig) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config
        .leases
        .iter()
        .filter_map(|p| {
            if p.is_dir() {
                Some(p.clone())
            } else {
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map(std::path::Path::to_path_buf)
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Where a device's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// `[devices] names` or `merge`.
    Config,
    /// A DHCP lease.
    Lease,
    /// The PTR name of one of its addresses (`[names] reverse_lookup`,
    /// [`crate::names::ptr`]), where no config or lease names it.
    Ptr,
}

/// Names and addresses of MACs, as known now.
#[derive(Clone, Debug, Default)]
pub struct Naming {
    names: BTreeMap<[u8; 6], (String, NameSource)>,
    addrs: BTreeMap<[u8; 6], BTreeSet<IpAddr>>,
    merged: BTreeMap<[u8; 6], String>,
}

impl Naming {
    /// From the config, its lease files and the neighbour table text
    /// (`/proc/net/arp`). Unreadable lease files are skipped with a
    /// warning: a missing lease file must not stop an answer.
    #[must_use]
    pub fn load(config: &DevicesConfig, arp: &str) -> Self {
        let mut out = Self::default();
        for path in config.leases.iter().flat_map(|p| lease_files(p)) {
            match std::fs::read_to_string(&path) {
                Ok(text) => out.add_leases(&parse_leases(&text)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "lease file"),
            }
        }
        for (addr, mac) in parse_arp(arp) {
            out.addrs.entry(mac).or_default().insert(addr);
        }
        for (mac, name) in &config.names {
            if let Some(mac) = parse_mac(mac) {
                out.names.insert(mac, (name.clone(), NameSource::Config));
            }
        }
        for (name, macs) in &config.merge {
            for mac in macs.iter().filter_map(|m| parse_mac(m)) {
                out.merged.insert(mac, name.clone());
                out.names.insert(mac, (name.clone(), NameSource::Config));
            }
        }
        out
    }

    /// The naming a question is answered with now: the configured names
    /// and lease files, and the neighbour table (IPv4 and IPv6, one
    /// netlink dump, [`crate::kernel::neigh`]; `/proc/net/arp` if netlink
    /// fails).
    #[must_use]
    pub fn now() -> Self {
        match crate::kernel::neigh::neighbours() {
            Ok(neigh) => {
                let mut n = Self::load(&config(), "");
                n.add_neighbours(&neigh);
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "neighbour table over netlink; reading /proc/net/arp");
                let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
                Self::load(&config(), &arp)
            }
        }
    }

    /// Adds neighbour entries (address, MAC): addresses only, no names.
    pub fn add_neighbours(&mut self, neigh: &[(IpAddr, [u8; 6])]) {
        for (addr, mac) in neigh {
            self.addrs.entry(*mac).or_default().insert(*addr);
        }
    }

    /// Adds leases (names do not replace config names).
    pub fn add_leases(&mut self, leases: &[Lease]) {
        for l in leases {
            self.addrs.entry(l.mac).or_default().insert(l.addr);
            if let Some(h) = &l.hostname {
                let e = self
                    .names
                    .entry(l.mac)
                    .or_insert_with(|| (h.clone(), NameSource::Lease));
                if e.1 == NameSource::Lease {
                    e.0.clone_from(h);
                }
            }
        }
    }

    /// The name of `mac` and where it came from.
    #[must_use]
    pub fn name(&self, mac: &[u8; 6]) -> Option<&(String, NameSource)> {
        self.names.get(mac)
    }

    /// The addresses `mac` has now (leases and neighbours).
    #[must_use]
    pub fn addrs(&self, mac: &[u8; 6]) -> Vec<IpAddr> {
        self.addrs
            .get(mac)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The merged device `mac` belongs to, if any.
    #[must_use]
    pub fn merged(&self, mac: &[u8; 6]) -> Option<&str> {
        self.merged.get(mac).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0xaa, 0xbb, 0xcc, 0, 0, 1];

    #[test]
    fn macs_parse_and_print() {
        assert_eq!(parse_mac("AA-bb-cc-00-00-01"), Some(A));
        assert_eq!(format_mac(&A), "aa:bb:cc:00:00:01");
        assert_eq!(parse_mac("aa:bb:cc:00:00"), None);
        assert_eq!(parse_mac("aa:bb:cc:00:00:01:02"), None);
        assert!(is_randomised(&[0xda, 0, 0, 0, 0, 1]));
        assert!(
            !is_randomised(&[0x00, 0x1b, 0x63, 0, 0, 1]),
            "a vendor (OUI) address"
        );
        assert!(is_group(&[0xff; 6]));
    }

    #[test]
    fn lease_formats() {
        let dnsmasq = "1700000000 aa:bb:cc:00:00:01 192.168.1.10 laptop 01:aa:bb\n\
                       1700000000 aa:bb:cc:00:00:02 192.168.1.11 * *\n";
        let l = parse_leases(dnsmasq);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hostname.as_deref(), Some("laptop"));
        assert_eq!(l[1].hostname, None);
        let isc = "# comment\nlease 192.168.1.20 {\n  starts 4 2026/01/01 00:00:00;\n  \
                   hardware ethernet aa:bb:cc:00:00:01;\n  client-hostname \"tv\";\n}\n";
        let l = parse_leases(isc);
        assert_eq!(
            l,
            vec![Lease {
                mac: A,
                addr: "192.168.1.20".parse().expect("ip"),
                hostname: Some("tv".to_owned())
            }]
        );
        let kea = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n\
                   192.168.1.30,aa:bb:cc:00:00:01,,3600,1700000000,1,0,0,printer,0\n";
        assert_eq!(parse_leases(kea)[0].hostname.as_deref(), Some("printer"));
    }

    /// systemd-networkd's lease file as systemd 256+ writes it (keys and
    /// value shapes of `dhcp_server_lease_append_json`), and as 255 wrote
    /// it (a bare array, the MAC only in an Ethernet client id).
    #[test]
    fn networkd_lease_files() {
        let v256 = r#"{
  "BootID" : "d7f5041316de4f1f992a8a2822218a71",
  "Address" : [ 192, 168, 124, 1 ],
  "PrefixLength" : 24,
  "Leases" : [
    {
      "ClientId" : [ 1, 170, 187, 204, 0, 0, 1 ],
      "Address" : [ 192, 168, 124, 26 ],
      "AddressString" : "192.168.124.26",
      "Hostname" : "laptop",
      "HardwareAddressType" : 1,
      "HardwareAddressLength" : 6,
      "HardwareAddress" : [ 170, 187, 204, 0, 0, 1 ],
      "ExpirationUSec" : 86163519771,
      "ExpirationRealtimeUSec" : 1785791504658855
    },
    {
      "ClientId" : [ 255, 1, 2, 3, 4, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8 ],
      "Address" : [ 192, 168, 124, 27 ],
      "AddressString" : "192.168.124.27",
      "HardwareAddressType" : 1,
      "HardwareAddressLength" : 6,
      "HardwareAddress" : [ 170, 187, 204, 0, 0, 2 ],
      "ExpirationUSec" : 86163519771
    },
    {
      "ClientId" : [ 255, 1, 2, 3, 4 ],
      "AddressString" : "192.168.124.28",
      "Hostname" : "duid-only"
    }
  ]
}
"#;
        let l = parse_leases(v256);
        assert_eq!(
            l,
            vec![
                Lease {
                    mac: A,
                    addr: "192.168.124.26".parse().expect("ip"),
                    hostname: Some("laptop".to_owned())
                },
                Lease {
                    mac: [0xaa, 0xbb, 0xcc, 0, 0, 2],
                    addr: "192.168.124.27".parse().expect("ip"),
                    hostname: None
                },
            ]
        );
        let v255 = r#"[{"ClientId":[1,170,187,204,0,0,1],"Address":[10,0,0,9],"Hostname":"nas","ExpirationUSec":5000000}]"#;
        assert_eq!(
            parse_leases(v255),
            vec![Lease {
                mac: A,
                addr: "10.0.0.9".parse().expect("ip"),
                hostname: Some("nas".to_owned())
            }]
        );
        assert!(parse_leases("{ \"Leases\": [").is_empty(), "a torn file");
    }

    #[test]
    fn config_names_win_and_merge_groups() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device\n\
                   10.0.0.5         0x1         0x2         aa:bb:cc:00:00:01     *        br0\n\
                   10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        br0\n";
        let cfg = DevicesConfig {
            names: [("aa:bb:cc:00:00:01".to_owned(), "nas".to_owned())].into(),
            merge: [(
                "phone".to_owned(),
                vec![
                    "da:00:00:00:00:01".to_owned(),
                    "da:00:00:00:00:02".to_owned(),
                ],
            )]
            .into(),
            ..DevicesConfig::default()
        };
        let mut n = Naming::load(&cfg, arp);
        n.add_leases(&parse_dnsmasq("0 aa:bb:cc:00:00:01 10.0.0.7 laptop *\n"));
        assert_eq!(n.name(&A), Some(&("nas".to_owned(), NameSource::Config)));
        assert_eq!(
            n.addrs(&A),
            vec![
                "10.0.0.5".parse::<IpAddr>().expect("ip"),
                "10.0.0.7".parse().expect("ip")
            ]
        );
        assert_eq!(n.merged(&[0xda, 0, 0, 0, 0, 2]), Some("phone"));
    }
}
