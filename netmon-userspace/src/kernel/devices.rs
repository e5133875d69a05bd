//! The device side of the tc programs: which watched interfaces are LAN
//! interfaces (`--lan-interface GLOB` or `[interfaces] lan = [...]`), the
//! flags the programs read from `NETMON_LAN`, the overflow rows of
//! `NETMON_DEVICES`, and reading that map summed over CPUs.
//!
//! Flags: a watched interface matching a LAN glob gets
//! [`LAN_COUNT`] (count its devices) when it is Ethernet (link type
//! `ARPHRD_ETHER`: the programs read MAC addresses at offsets 0 and 6 of
//! the frame), and [`LAN_LOCAL`] (traffic forwarded to or from it is
//! local); the bridge it is a port of (its master) gets [`LAN_LOCAL`] too,
//! so traffic routed through the bridge's address to another LAN device
//! stays local. Link types and masters come from a `RTM_GETLINK` netlink
//! dump of the current network namespace (sysfs shows the namespace it was
//! mounted in, which is not this one under `nsenter --net`).
use aya::maps::{HashMap, MapData, PerCpuHashMap, PerCpuValues};
use netmon_common::{
    device::{DEV_CLASSES, DEVICE_OVERFLOW_MAC, DeviceKey, LAN_COUNT, LAN_LOCAL},
    iface::{IFACE_DIR_EGRESS, IFACE_DIR_INGRESS, IfaceCounters},
    names::{MAP_DEVICES, MAP_LAN},
};

use super::{KernelError, pins::PinPaths, tc::Watched};

/// `BPF_NOEXIST`: insert only if absent (keeps counters across re-runs).
const BPF_NOEXIST: u64 = 1;

fn map_err(op: &'static str, map: &'static str, e: impl ToString) -> KernelError {
    KernelError::MapOp {
        op,
        map,
        source: std::io::Error::other(e.to_string()),
    }
}

/// One link of a `RTM_GETLINK` dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// `ARPHRD_*` link type (1: Ethernet).
    pub kind: u16,
    /// The master's index (the bridge of a port), if any.
    pub master: Option<u32>,
}

const ARPHRD_ETHER: u16 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const IFLA_MASTER: u16 = 10;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the messages of one `recv` of a link dump into `out`; true when
/// the dump is done.
fn parse_links(mut buf: &[u8], out: &mut Vec<Link>) -> bool {
    while buf.len() >= 16 {
        let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) else {
            return true;
        };
        let len = len as usize;
        if len < 16 || len > buf.len() {
            return true;
        }
        match kind {
            NLMSG_DONE | NLMSG_ERROR => return true,
            RTM_NEWLINK if len >= 32 => {
                let msg = &buf[..len];
                let mut link = Link {
                    ifindex: u32_at(msg, 20).unwrap_or(0),
                    kind: u16_at(msg, 18).unwrap_or(0),
                    master: None,
                };
                let mut at = 32;
                while let (Some(alen), Some(atype)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
                    let alen = usize::from(alen);
                    if alen < 4 {
                        break;
                    }
                    if atype & 0x3fff == IFLA_MASTER {
                        link.master = u32_at(msg, at + 4);
                    }
                    at += (alen + 3) & !3;
                }
                out.push(link);
            }
            _ => {}
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    false
}

/// Every link of this thread's network namespace.
///
/// # Errors
/// Netlink socket failures.
pub fn links() -> Result<Vec<Link>, KernelError> {
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let io = |what: &str, e| KernelError::io(format!("netlink link dump: {what}"), e);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| io("socket", e))?;
    socket.bind_auto().map_err(|e| io("bind", e))?;
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    // NLM_F_REQUEST | NLM_F_DUMP.
    req[6..8].copy_from_slice(&0x0301u16.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    socket
        .send_to(&req, &SocketAddr::new(0, 0), 0)
        .map_err(|e| io("send", e))?;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let n = socket.recv(&mut buf, 0).map_err(|e| io("recv", e))?;
        if n == 0 || parse_links(&buf, &mut out) {
            return Ok(out);
        }
    }
}

/// The `NETMON_LAN` entries for `interfaces` given the LAN globs and the
/// namespace's `links`: `(ifindex, flags)`, masters included.
///
/// # Errors
/// A LAN pattern that is not a valid glob.
pub fn lan_flags(
    interfaces: &[Watched],
    lan: Option<&[String]>,
    links: &[Link],
) -> Result<Vec<(u32, u32)>, KernelError> {
    let Some(lan) = lan.filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let names = super::tc::select(
        interfaces.iter().map(|w| (w.name.as_str(), true, false)),
        Some(lan),
    )?;
    let mut out: Vec<(u32, u32)> = Vec::new();
    for w in interfaces.iter().filter(|w| names.contains(&w.name)) {
        let link = links.iter().find(|l| l.ifindex == w.ifindex);
        let flags = if link.is_some_and(|l| l.kind == ARPHRD_ETHER) {
            LAN_COUNT | LAN_LOCAL
        } else {
            tracing::warn!(
                interface = %w.name,
                "LAN interface is not Ethernet: its traffic is local, but no devices are counted on it"
            );
            LAN_LOCAL
        };
        out.push((w.ifindex, flags));
        if let Some(master) = link.and_then(|l| l.master) {
            out.push((master, LAN_LOCAL));
        }
    }
    out.sort_unstable();
    out.dedup_by(|a, b| {
        if a.0 == b.0 {
            b.1 |= a.1;
            true
        } else {
            false
        }
    });
    Ok(out)
}

/// Writes the LAN flags of `interfaces` into the pinned `NETMON_LAN` and
/// the overflow rows of each counted one into `NETMON_DEVICES` (absent
/// rows only), and returns the flags written. Nothing to do without LAN
/// globs.
///
/// # Errors
/// A bad glob, pinned maps that cannot be opened or written.
pub fn prepare(
    paths: &PinPaths,
    interfaces: &[Watched],
    lan: Option<&[String]>,
) -> Result<Vec<(u32, u32)>, KernelError> {
    if lan.is_none_or(<[String]>::is_empty) {
        return Ok(Vec::new());
    }
    let flags = lan_flags(interfaces, lan, &links()?)?;
    let open = |name: &'static str| {
        let path = paths.map(name);
        MapData::from_pin(&path).map_err(|e| KernelError::PinnedMap {
            path,
            message: e.to_string(),
        })
    };
    let mut lan_map: HashMap<MapData, u32, u32> =
        HashMap::try_from(aya::maps::Map::HashMap(open(MAP_LAN)?))
            .map_err(|e| map_err("open", MAP_LAN, e))?;
    let mut devices: PerCpuHashMap<MapData, DeviceKey, IfaceCounters> =
        PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(open(MAP_DEVICES)?))
            .map_err(|e| map_err("open", MAP_DEVICES, e))?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, e)| KernelError::io(what, e))?
        .get() as usize;
    for &(ifindex, f) in &flags {
        let old = lan_map.get(&ifindex, 0).unwrap_or(0);
        lan_map
            .insert(&ifindex, &(old | f), 0)
            .map_err(|e| map_err("insert", MAP_LAN, e))?;
        if f & LAN_COUNT == 0 {
            continue;
        }
        for direction in [IFACE_DIR_INGRESS, IFACE_DIR_EGRESS] {
            for class in 0..DEV_CLASSES {
                let key = DeviceKey {
                    ifindex,
                    mac: DEVICE_OVERFLOW_MAC,
                    direction,
                    class,
                };
                let zero = PerCpuValues::try_from(vec![IfaceCounters::default(); cpus])
                    .map_err(|e| KernelError::io("per-CPU zero", e))?;
                match devices.insert(&key, zero, BPF_NOEXIST) {
                    Ok(()) => {}
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(map_err("insert overflow", MAP_DEVICES, e)),
                }
            }
        }
    }
    Ok(flags)
}

/// The pinned device map, opened once for the drain.
pub struct DeviceMap {
    map: PerCpuHashMap<MapData, DeviceKey, IfaceCounters>,
}

impl DeviceMap {
    /// Opens the device map pinned under `paths`; `None` when the load has
    /// none (a load older than device counting).
    ///
    /// # Errors
    /// A pinned map that cannot be opened.
    pub fn open(paths: &PinPaths) -> Result<Option<Self>, KernelError> {
        let path = paths.map(MAP_DEVICES);
        if !path.exists() {
            return Ok(None);
        }
        let err = |e: &dyn std::fmt::Display| KernelError::PinnedMap {
            path: path.clone(),
            message: e.to_string(),
        };
        let data = MapData::from_pin(&path).map_err(|e| err(&e))?;
        let map =
            PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(data)).map_err(|e| err(&e))?;
        Ok(Some(Self { map }))
    }

    /// Keys in the map (overflow rows included).
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.map.keys().filter(Result::is_ok).count()
    }

    /// Every key summed over CPUs (overflow rows with zero counts left out).
    ///
    /// # Errors
    /// Map read failures.
    pub fn entries(&self) -> Result<Vec<(DeviceKey, IfaceCounters)>, KernelError> {
        let mut entries = Vec::new();
        for item in self.map.iter() {
            let (key, values) = item.map_err(|e| map_err("iterate", MAP_DEVICES, e))?;
            let mut sum = IfaceCounters::default();
            for v in values.iter() {
                sum.packets = sum.packets.saturating_add(v.packets);
                sum.bytes = sum.bytes.saturating_add(v.bytes);
            }
            if sum.packets != 0 {
                entries.push((key, sum));
            }
        }
        Ok(entries)
    }

    /// Removes every key of `ifindexes`. Returns the keys removed.
    ///
    /// # Errors
    /// Map delete failures.
    pub fn forget(&mut self, ifindexes: &[u32]) -> Result<usize, KernelError> {
        let keys: Vec<DeviceKey> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| ifindexes.contains(&k.ifindex))
            .collect();
        for key in &keys {
            match self.map.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("delete", MAP_DEVICES, e)),
            }
        }
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_ports_count_and_their_bridge_is_local() {
        let link = |ifindex, kind, master| Link {
            ifindex,
            kind,
            master,
        };
        let links = [
            link(5, 1, None),
            link(6, 1, Some(5)),
            link(7, 65534, None),
            link(8, 1, None),
        ];
        let w = |name: &str, ifindex| Watched {
            name: name.to_owned(),
            ifindex,
        };
        let watched = [w("lan1", 6), w("wg0", 7), w("wan", 8)];
        let lan = ["lan*".to_owned(), "wg0".to_owned()];
        let flags = lan_flags(&watched, Some(&lan), &links).expect("flags");
        assert_eq!(
            flags,
            vec![(5, LAN_LOCAL), (6, LAN_COUNT | LAN_LOCAL), (7, LAN_LOCAL)]
        );
        assert!(lan_flags(&watched, None, &links).expect("none").is_empty());
    }

    #[test]
    fn this_namespace_has_loopback() {
        let links = links().expect("dump");
        assert!(
            links.iter().any(|l| l.ifindex == 1 && l.kind == 772),
            "{links:?}"
        );
    }
}
