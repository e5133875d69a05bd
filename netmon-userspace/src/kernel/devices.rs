//! The device side of the tc programs: which watched interfaces are LAN
//! interfaces (`--lan-interface GLOB` or `[interfaces] lan = [...]`), the
//! flags the programs read from `NETMON_LAN`, the overflow rows of
//! `NETMON_DEVICES`, and reading that map summed over CPUs.
//!
//! Flags: a watched interface matching a LAN glob gets
//! [`LAN_COUNT`] (count its devices) when it is Ethernet
//! (`/sys/class/net/NAME/type` = 1: the programs read MAC addresses at
//! offsets 0 and 6 of the frame), and [`LAN_LOCAL`] (traffic forwarded
//! to or from it is local); the bridge it is a port of
//! (`/sys/class/net/NAME/master`) gets [`LAN_LOCAL`] too, so traffic routed
//! through the bridge's address to another LAN device stays local.
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

/// The `NETMON_LAN` entries for `interfaces` given the LAN globs:
/// `(ifindex, flags)`, masters included. `sys` is `/sys/class/net`.
///
/// # Errors
/// A LAN pattern that is not a valid glob.
pub fn lan_flags(
    interfaces: &[Watched],
    lan: Option<&[String]>,
    sys: &std::path::Path,
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
        let dir = sys.join(&w.name);
        let ethernet = std::fs::read_to_string(dir.join("type")).is_ok_and(|t| t.trim() == "1");
        let flags = if ethernet {
            LAN_COUNT | LAN_LOCAL
        } else {
            tracing::warn!(
                interface = %w.name,
                "LAN interface is not Ethernet: its traffic is local, but no devices are counted on it"
            );
            LAN_LOCAL
        };
        out.push((w.ifindex, flags));
        if let Ok(master) = std::fs::read_link(dir.join("master"))
            && let Some(name) = master.file_name()
            && let Ok(index) = std::fs::read_to_string(sys.join(name).join("ifindex"))
            && let Ok(index) = index.trim().parse::<u32>()
        {
            out.push((index, LAN_LOCAL));
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
/// rows only). Nothing to do without LAN globs.
///
/// # Errors
/// A bad glob, pinned maps that cannot be opened or written.
pub fn prepare(
    paths: &PinPaths,
    interfaces: &[Watched],
    lan: Option<&[String]>,
) -> Result<(), KernelError> {
    let flags = lan_flags(interfaces, lan, std::path::Path::new("/sys/class/net"))?;
    if flags.is_empty() {
        return Ok(());
    }
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
    for (ifindex, f) in flags {
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
    Ok(())
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
        let dir = tempfile::tempdir().expect("tempdir");
        let mk = |name: &str, ty: &str, index: u32| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("type"), format!("{ty}\n")).expect("type");
            std::fs::write(d.join("ifindex"), format!("{index}\n")).expect("ifindex");
        };
        mk("br0", "1", 5);
        mk("lan1", "1", 6);
        mk("wg0", "65534", 7);
        mk("wan", "1", 8);
        std::os::unix::fs::symlink("../br0", dir.path().join("lan1/master")).expect("link");
        let w = |name: &str, ifindex| Watched {
            name: name.to_owned(),
            ifindex,
        };
        let watched = [w("lan1", 6), w("wg0", 7), w("wan", 8)];
        let lan = ["lan*".to_owned(), "wg0".to_owned()];
        let flags = lan_flags(&watched, Some(&lan), dir.path()).expect("flags");
        assert_eq!(
            flags,
            vec![(5, LAN_LOCAL), (6, LAN_COUNT | LAN_LOCAL), (7, LAN_LOCAL)]
        );
        assert!(
            lan_flags(&watched, None, dir.path())
                .expect("none")
                .is_empty()
        );
    }
}
