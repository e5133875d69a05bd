//! The device side of the tc programs: which watched interfaces are LAN
//! interfaces (`--lan-interface GLOB` or `[interfaces] lan = [...]`), the
//! flags the programs read from `NETMON_LAN`, the overflow rows of
//! `NETMON_DEVICES`, and reading the device counters (the slots of
//! `NETMON_DEVICE_SLOTS` plus that map) summed over CPUs.
//!
//! Flags: a watched interface matching a LAN glob gets
//! [`LAN_COUNT`] (count its devices) when it is Ethernet (link type
//! `ARPHRD_ETHER`: the programs read MAC addresses at offsets 0 and 6 of
//! the frame), and [`LAN_LOCAL`] (traffic forwarded to or from it is
//! local); the bridge it is a port of (its master) gets [`LAN_LOCAL`] too,
//! so traffic routed through the bridge's address to another LAN device
//! stays local. A counted interface gets [`LAN_SLOTS`] too unless its index
//! was retired before (see `netmon_common::device`). Link types and masters come from a `RTM_GETLINK` netlink
//! dump of the current network namespace (sysfs shows the namespace it was
//! mounted in, which is not this one under `nsenter --net`).
use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData, PerCpuHashMap, PerCpuValues};
use netmon_common::{
    device::{
        DEV_CLASSES, DEVICE_OVERFLOW_MAC, DEVICE_SLOTS, DeviceKey, DeviceSlot, LAN_COUNT,
        LAN_LOCAL, LAN_RETIRED, LAN_SLOTS, word_mac,
    },
    iface::{IFACE_DIR_EGRESS, IFACE_DIR_INGRESS, IfaceCounters},
    names::{MAP_DEVICE_SLOTS, MAP_DEVICES, MAP_LAN},
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

/// The flags to write for an interface whose entry in `NETMON_LAN` is
/// `old` (0 when absent) and whose computed flags are `new`: a counted
/// interface may use the device slots, unless its index was retired (then
/// its old slots stay left out, and it counts in the hash only).
#[must_use]
pub fn merged_flags(old: u32, new: u32) -> u32 {
    let flags = old | new;
    if flags & LAN_RETIRED != 0 {
        flags & !LAN_SLOTS
    } else if flags & LAN_COUNT != 0 {
        flags | LAN_SLOTS
    } else {
        flags
    }
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
    let mut written = Vec::with_capacity(flags.len());
    for &(ifindex, f) in &flags {
        let old = lan_map.get(&ifindex, 0).unwrap_or(0);
        let f = merged_flags(old, f);
        lan_map
            .insert(&ifindex, &f, 0)
            .map_err(|e| map_err("insert", MAP_LAN, e))?;
        written.push((ifindex, f));
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
    Ok(written)
}

/// The pinned device counters (hash, slots, LAN flags), opened once for
/// the drain.
pub struct DeviceMap {
    map: PerCpuHashMap<MapData, DeviceKey, IfaceCounters>,
    /// The slot array; `None` for a load without one (an older netmon's).
    slots: Option<MapData>,
    /// `NETMON_LAN`, for the retired interfaces.
    lan: Option<HashMap<MapData, u32, u32>>,
    /// Possible CPUs: the per-CPU values per slot.
    cpus: usize,
}

impl DeviceMap {
    /// Opens the device map pinned under `paths`; `None` when the load has
    /// none (a load older than device counting).
    ///
    /// # Errors
    /// A pinned map that cannot be opened.
    pub fn open(paths: &PinPaths) -> Result<Option<Self>, KernelError> {
        let Some(data) = paths.pinned_map(MAP_DEVICES)? else {
            return Ok(None);
        };
        let map = PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(data))
            .map_err(|e| map_err("open", MAP_DEVICES, e))?;
        let lan = match paths.pinned_map(MAP_LAN)? {
            Some(data) => Some(
                HashMap::try_from(aya::maps::Map::HashMap(data))
                    .map_err(|e| map_err("open", MAP_LAN, e))?,
            ),
            None => None,
        };
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| KernelError::io(what, e))?
            .get() as usize;
        Ok(Some(Self {
            map,
            slots: paths.pinned_map(MAP_DEVICE_SLOTS)?,
            lan,
            cpus,
        }))
    }

    /// Keys in the map (overflow rows included).
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.map.keys().filter(Result::is_ok).count()
    }

    /// Every key summed over CPUs and over slots and hash (overflow rows
    /// with zero counts left out, slots of retired interfaces too).
    ///
    /// # Errors
    /// Map read failures.
    pub fn entries(&self) -> Result<Vec<(DeviceKey, IfaceCounters)>, KernelError> {
        let mut hash = Vec::new();
        for item in self.map.iter() {
            let (key, values) = item.map_err(|e| map_err("iterate", MAP_DEVICES, e))?;
            hash.extend(values.iter().map(|v| (key, *v)));
        }
        let slots = match &self.slots {
            Some(data) => {
                use std::os::fd::AsFd as _;
                super::bpf_sys::lookup_percpu_array::<DeviceSlot>(
                    data.fd().as_fd(),
                    DEVICE_SLOTS,
                    self.cpus,
                )
                .map_err(|e| KernelError::MapOp {
                    op: "read",
                    map: MAP_DEVICE_SLOTS,
                    source: e,
                })?
            }
            None => Vec::new(),
        };
        let retired = self.retired();
        Ok(merge(hash, &slots, |ifindex| retired.contains(&ifindex)))
    }

    /// The LAN interfaces marked [`LAN_RETIRED`].
    fn retired(&self) -> Vec<u32> {
        self.lan.as_ref().map_or_else(Vec::new, |lan| {
            lan.iter()
                .filter_map(Result::ok)
                .filter(|(_, f)| f & LAN_RETIRED != 0)
                .map(|(i, _)| i)
                .collect()
        })
    }

    /// Forgets the devices of `ifindexes` (interfaces gone, their final
    /// counts committed): removes their hash keys and marks those whose
    /// devices used slots [`LAN_RETIRED`], so their slots are left out from
    /// now on. Returns the hash keys removed.
    ///
    /// # Errors
    /// Map delete or write failures.
    pub fn forget(&mut self, ifindexes: &[u32]) -> Result<usize, KernelError> {
        if let Some(lan) = &mut self.lan {
            for &ifindex in ifindexes {
                let Ok(flags) = lan.get(&ifindex, 0) else {
                    continue;
                };
                if flags & LAN_SLOTS != 0 && flags & LAN_RETIRED == 0 {
                    lan.insert(&ifindex, &((flags | LAN_RETIRED) & !LAN_SLOTS), 0)
                        .map_err(|e| map_err("retire", MAP_LAN, e))?;
                }
            }
        }
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

/// Sums per-CPU device counters by key: `hash` holds the hash map's
/// (key, one CPU's value) pairs, `slots` every CPU's value of every slot
/// (any order: a slot names its device itself); slots of interfaces
/// `retired` says so are left out, and so are keys that counted no packet
/// (the overflow rows before any overflow).
#[must_use]
pub fn merge(
    hash: impl IntoIterator<Item = (DeviceKey, IfaceCounters)>,
    slots: &[DeviceSlot],
    retired: impl Fn(u32) -> bool,
) -> Vec<(DeviceKey, IfaceCounters)> {
    let mut sums: BTreeMap<DeviceKey, IfaceCounters> = BTreeMap::new();
    let mut add = |key: DeviceKey, c: &IfaceCounters| {
        if c.packets == 0 {
            return;
        }
        let sum = sums.entry(key).or_default();
        sum.packets = sum.packets.saturating_add(c.packets);
        sum.bytes = sum.bytes.saturating_add(c.bytes);
    };
    for (key, c) in hash {
        add(key, &c);
    }
    for slot in slots
        .iter()
        .filter(|s| s.ifindex != 0 && !retired(s.ifindex))
    {
        for (direction, classes) in (0u8..).zip(&slot.counters) {
            for (class, c) in (0u8..).zip(classes) {
                let key = DeviceKey {
                    ifindex: slot.ifindex,
                    mac: word_mac(slot.mac),
                    direction,
                    class,
                };
                add(key, c);
            }
        }
    }
    sums.into_iter().collect()
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
    fn slots_and_hash_add_up_per_device_and_cpu() {
        use netmon_common::device::{DEV_CLASS_FWD_INTERNET, DEV_CLASS_HOST, mac_word};
        let a = [2, 0, 0, 0, 0, 0xa];
        let b = [2, 0, 0, 0, 0, 0xb];
        let c = |packets, bytes| IfaceCounters { packets, bytes };
        let key = |ifindex, mac, direction, class| DeviceKey {
            ifindex,
            mac,
            direction,
            class,
        };
        let slot = |ifindex, mac, dir: usize, class: usize, count: IfaceCounters| {
            let mut s = DeviceSlot {
                mac: mac_word(mac),
                ifindex,
                ..DeviceSlot::default()
            };
            s.counters[dir][class] = count;
            s
        };
        // Two CPUs, two slots: on CPU 0 `a` holds slot 0 and `b` counts in
        // the hash; on CPU 1 `b` holds it and `a` counts in the hash. Slot 1
        // belongs to interface 9, retired, on CPU 0, and is free on CPU 1.
        let slots = [
            slot(5, a, 0, 2, c(3, 300)),
            slot(5, b, 0, 2, c(4, 400)),
            slot(9, a, 1, 0, c(100, 10_000)),
            DeviceSlot::default(),
        ];
        let hash = [
            (key(5, b, 0, 2), c(1, 64)),
            (key(5, a, 0, 2), c(2, 128)),
            (key(5, a, 1, 0), c(0, 0)),
            (key(5, DEVICE_OVERFLOW_MAC, 0, 0), c(0, 0)),
        ];
        let merged = merge(hash, &slots, |i| i == 9);
        assert_eq!(
            merged,
            vec![
                (
                    key(5, a, IFACE_DIR_INGRESS, DEV_CLASS_FWD_INTERNET),
                    c(5, 428)
                ),
                (
                    key(5, b, IFACE_DIR_INGRESS, DEV_CLASS_FWD_INTERNET),
                    c(5, 464)
                ),
            ]
        );
        // Not retired, interface 9's slot counts, as its own device key.
        let merged = merge([], &slots, |_| false);
        assert!(merged.contains(&(key(9, a, IFACE_DIR_EGRESS, DEV_CLASS_HOST), c(100, 10_000))));
        assert_eq!(merged.len(), 3);
    }

    #[test]
    fn retired_interfaces_never_use_slots_again() {
        assert_eq!(
            merged_flags(0, LAN_COUNT | LAN_LOCAL),
            LAN_COUNT | LAN_LOCAL | LAN_SLOTS
        );
        assert_eq!(merged_flags(0, LAN_LOCAL), LAN_LOCAL);
        let retired = LAN_COUNT | LAN_LOCAL | LAN_RETIRED;
        assert_eq!(merged_flags(retired, LAN_COUNT | LAN_LOCAL), retired);
        assert_eq!(
            merged_flags(LAN_COUNT | LAN_SLOTS, LAN_COUNT),
            LAN_COUNT | LAN_SLOTS
        );
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
