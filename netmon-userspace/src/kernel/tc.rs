//! The interface side of the kernel reader: attaching `netmon_tc_ingress` /
//! `netmon_tc_egress` to the watched interfaces (tcx links, pinned under
//! `links/tc_<ingress|egress>_<ifindex>`), removing them, and reading
//! `NETMON_IFACES` summed over CPUs.
//!
//! Which interfaces: `--watch-interface GLOB` (repeatable) or the config's
//! `[interfaces] watch = [...]`; by default every interface that is up,
//! except loopback. Globs are `glob::Pattern`s (`*`, `?`, `[...]`), matched
//! against interface names in the network namespace netmon is loaded in.
//! An interface that goes away between listing and attaching is skipped
//! with a warning (a host's veths come and go); a failure to load the
//! programs is an error. Interfaces that appear after the load are picked
//! up by a running daemon at its next drain ([`rescan`], woken by
//! [`super::linkwatch`]), or by the next `netmon load` (or daemon start) on
//! the same pin directory: it finds the load pinned and attaches the pinned
//! programs to every watched interface without a link ([`attach_new`]).
//!
//! Attaching: aya picks tcx links on Linux 6.6+ (`TcAttach::Auto`); a tcx
//! link is an fd link and is pinned like the cgroup links. On older kernels
//! aya uses clsact (netlink), which cannot be pinned: the load then fails
//! with a clear error rather than counting without a way to detach.
use std::{collections::BTreeMap, path::PathBuf};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{SchedClassifier, TcAttachType, links::FdLink, links::PinnedLink},
};
use netmon_common::{
    iface::{
        IFACE_BASELINE, IFACE_CLASS_FORWARDED, IFACE_CLASS_LOCAL_SOCKET, IFACE_CLASS_NO_SOCKET,
        IFACE_CLASS_OTHER_SOCKET, IFACE_CLASSES, IFACE_DIR_EGRESS, IFACE_DIR_INGRESS, IFACE_SLOTS,
        IfaceCounters, IfaceKey, IfaceSlot,
    },
    names::{
        IFACE_MAPS, MAP_IFACE_SLOTS, MAP_IFACES, PROG_TC_EGRESS, PROG_TC_INGRESS, TC_LINK_PREFIX,
    },
};
use serde::Serialize;

use super::{KernelError, pins::PinPaths};

/// One interface selected for watching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Name in the current network namespace.
    pub name: String,
    /// Index in the current network namespace.
    pub ifindex: u32,
}

/// Picks the interfaces to watch from `(name, is_up, is_loopback)` rows:
/// `watch` globs if given (any state), else every up non-loopback one.
///
/// # Errors
/// [`KernelError::Io`] for a pattern that is not a valid glob.
pub fn select<'a>(
    interfaces: impl IntoIterator<Item = (&'a str, bool, bool)>,
    watch: Option<&[String]>,
) -> Result<Vec<String>, KernelError> {
    let patterns = match watch {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|p| {
                    glob::Pattern::new(p).map_err(|e| {
                        KernelError::io(
                            format!("interface pattern {p:?}"),
                            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let mut out: Vec<String> = Vec::new();
    for (name, up, loopback) in interfaces {
        let wanted = match &patterns {
            None => up && !loopback,
            Some(ps) => ps.iter().any(|p| p.matches(name)),
        };
        if wanted && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// The interfaces of the current network namespace to watch.
fn watched(watch: Option<&[String]>) -> Result<Vec<Watched>, KernelError> {
    use nix::net::if_::InterfaceFlags;
    let rows: Vec<(String, bool, bool)> = nix::ifaddrs::getifaddrs()
        .map_err(|e| KernelError::io("list interfaces", e.into()))?
        .map(|a| {
            (
                a.interface_name,
                a.flags.contains(InterfaceFlags::IFF_UP),
                a.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            )
        })
        .collect();
    let names = select(rows.iter().map(|(n, u, l)| (n.as_str(), *u, *l)), watch)?;
    Ok(names
        .into_iter()
        .filter_map(|name| match nix::net::if_::if_nametoindex(name.as_str()) {
            Ok(ifindex) => Some(Watched { name, ifindex }),
            Err(err) => {
                tracing::warn!("interface {name} vanished before attach: {err}");
                None
            }
        })
        .collect())
}

/// Pin name of the link of `program` on interface `ifindex`.
fn link_name(ingress: bool, ifindex: u32) -> String {
    let dir = if ingress { "ingress" } else { "egress" };
    format!("{TC_LINK_PREFIX}{dir}_{ifindex}")
}

fn pin_err(what: &str, path: &std::path::Path, message: impl ToString) -> KernelError {
    KernelError::Pin {
        what: what.to_owned(),
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Pins the interface map, loads both tc programs and attaches them to every
/// watched interface, pinning each link. Returns the interfaces attached.
///
/// # Errors
/// Pin, verifier and attach failures other than a vanished interface.
pub fn attach(
    ebpf: &mut Ebpf,
    paths: &PinPaths,
    watch: Option<&[String]>,
    lan: Option<&[String]>,
) -> Result<Vec<Watched>, KernelError> {
    for name in IFACE_MAPS {
        let path = paths.map(name);
        let map = ebpf
            .map(name)
            .ok_or_else(|| pin_err(name, &path, "map missing from the eBPF object"))?;
        map.pin(&path).map_err(|e| pin_err(name, &path, e))?;
    }
    let interfaces = watched(watch)?;
    {
        let path = PathBuf::from(MAP_IFACES);
        let map = ebpf
            .map_mut(MAP_IFACES)
            .ok_or_else(|| pin_err(MAP_IFACES, &path, "map missing from the eBPF object"))?;
        let mut map: PerCpuHashMap<&mut MapData, IfaceKey, IfaceCounters> =
            PerCpuHashMap::try_from(map).map_err(|e| pin_err(MAP_IFACES, &path, e))?;
        write_baselines(&mut map, &interfaces)?;
    }
    let flags = super::devices::prepare(paths, &interfaces, lan)?;
    write_slots(paths, &interfaces, &flags)?;
    let mut attached = Vec::new();
    for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
        let verifier = |source| KernelError::Verifier {
            program: name,
            source,
        };
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| {
                pin_err(
                    name,
                    &paths.prog(name),
                    "program missing from the eBPF object",
                )
            })?
            .try_into()
            .map_err(verifier)?;
        prog.load().map_err(verifier)?;
        prog.pin(paths.prog(name))
            .map_err(|e| pin_err(name, &paths.prog(name), e))?;
        attached = attach_links(prog, name, paths, &interfaces)?;
    }
    Ok(attached)
}

/// Attaches `prog` (`name`) to every interface in `interfaces` that has no
/// link pinned yet, pinning each new link. Returns the interfaces attached.
fn attach_links(
    prog: &mut SchedClassifier,
    name: &'static str,
    paths: &PinPaths,
    interfaces: &[Watched],
) -> Result<Vec<Watched>, KernelError> {
    let ingress = name == PROG_TC_INGRESS;
    let attach_type = if ingress {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    };
    let mut attached = Vec::new();
    for iface in interfaces {
        let path = paths.link(&link_name(ingress, iface.ifindex));
        if path.exists() {
            continue;
        }
        let id = match prog.attach(iface.ifindex, attach_type) {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!("{name} not attached to {}: {err}", iface.name);
                continue;
            }
        };
        let link = prog.take_link(id).map_err(|source| KernelError::Verifier {
            program: name,
            source,
        })?;
        let link = FdLink::try_from(link).map_err(|e| {
            pin_err(
                name,
                &path,
                format!("not a tcx link (kernel older than 6.6?): {e}"),
            )
        })?;
        link.pin(&path).map_err(|e| pin_err(name, &path, e))?;
        attached.push(iface.clone());
    }
    Ok(attached)
}

/// For a load that is already pinned: attaches the pinned tc programs to
/// watched interfaces that have appeared since (no link pinned for their
/// index), recording their baselines first. Returns the interfaces newly
/// attached; none if the load has no tc programs pinned.
///
/// # Errors
/// Pinned map or program that cannot be opened, map writes, pin failures.
pub fn attach_new(
    paths: &PinPaths,
    watch: Option<&[String]>,
    lan: Option<&[String]>,
) -> Result<Vec<Watched>, KernelError> {
    let prog_paths = [PROG_TC_INGRESS, PROG_TC_EGRESS].map(|n| paths.prog(n));
    if prog_paths.iter().any(|p| !p.exists()) || !paths.map(MAP_IFACES).exists() {
        return Ok(Vec::new());
    }
    let new: Vec<Watched> = watched(watch)?
        .into_iter()
        .filter(|w| {
            !paths.link(&link_name(true, w.ifindex)).exists()
                || !paths.link(&link_name(false, w.ifindex)).exists()
        })
        .collect();
    if new.is_empty() {
        return Ok(new);
    }
    let path = paths.map(MAP_IFACES);
    let data = MapData::from_pin(&path).map_err(|e| KernelError::PinnedMap {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut map: PerCpuHashMap<MapData, IfaceKey, IfaceCounters> =
        PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(data))
            .map_err(|e| pin_err(MAP_IFACES, &path, e))?;
    write_baselines(&mut map, &new)?;
    let flags = if paths.map(netmon_common::names::MAP_LAN).exists() {
        super::devices::prepare(paths, &new, lan)?
    } else {
        Vec::new()
    };
    write_slots(paths, &new, &flags)?;
    let mut attached = Vec::new();
    for (name, prog_path) in [PROG_TC_INGRESS, PROG_TC_EGRESS]
        .into_iter()
        .zip(prog_paths)
    {
        let mut prog =
            SchedClassifier::from_pin(&prog_path).map_err(|source| KernelError::Verifier {
                program: name,
                source,
            })?;
        attached = attach_links(&mut prog, name, paths, &new)?;
    }
    Ok(attached)
}

/// For the running daemon, after [`super::linkwatch::LinkWatch`] saw a
/// link change: attaches the pinned programs to watched interfaces that
/// have none (with the load capabilities raised for the call, see
/// [`crate::privilege::reloading`]) and removes the link pins of
/// interfaces that are gone (the kernel detached their links with them).
/// Failures are logged: counting goes on for the interfaces attached.
pub fn rescan(pin_dir: &std::path::Path, watch: Option<&[String]>, lan: Option<&[String]>) {
    let paths = PinPaths::new(pin_dir);
    match crate::privilege::reloading(|| attach_new(&paths, watch, lan)) {
        Ok(Ok(new)) => {
            for iface in new {
                tracing::info!(
                    interface = %iface.name,
                    ifindex = iface.ifindex,
                    "tc programs attached to a new interface"
                );
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "attaching to new interfaces"),
        Err(e) => tracing::warn!(error = %e, "raising the capabilities to attach"),
    }
    let Ok(entries) = std::fs::read_dir(paths.root.join("links")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(ifindex) = name
            .strip_prefix(TC_LINK_PREFIX)
            .and_then(|rest| rest.rsplit_once('_'))
            .and_then(|(_, i)| i.parse::<u32>().ok())
        else {
            continue;
        };
        if interface_name(ifindex) == Ok(None)
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(error = %e, pin = %name, "removing the link pin of a removed interface");
        }
    }
}

/// The name of interface `ifindex` in this thread's network namespace;
/// `Ok(None)` when no interface has that index.
///
/// nix 0.30's `if_indextoname` returns `Ok("")` for an index that does not
/// exist (it checks the wrong sentinel), so an empty name counts as none.
///
/// # Errors
/// Any other failure (no socket could be opened).
pub fn interface_name(ifindex: u32) -> Result<Option<String>, nix::errno::Errno> {
    match nix::net::if_::if_indextoname(ifindex) {
        Ok(name) if name.is_empty() => Ok(None),
        Ok(name) => Ok(Some(name.to_string_lossy().into_owned())),
        Err(nix::errno::Errno::ENXIO | nix::errno::Errno::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The interfaces' own counters from `/proc/net/dev` (this thread's network
/// namespace): name → `[rx bytes, rx packets, tx bytes, tx packets]`.
fn proc_net_dev() -> Result<BTreeMap<String, [u64; 4]>, KernelError> {
    let text = std::fs::read_to_string("/proc/net/dev")
        .map_err(|e| KernelError::io("read /proc/net/dev", e))?;
    Ok(parse_proc_net_dev(&text))
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx_bytes
/// rx_packets errs drop fifo frame compressed multicast tx_bytes tx_packets
/// ...`. Lines that do not parse are skipped.
#[must_use]
pub fn parse_proc_net_dev(text: &str) -> BTreeMap<String, [u64; 4]> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        if fields.len() >= 10 {
            out.insert(
                name.trim().to_owned(),
                [fields[0], fields[1], fields[8], fields[9]],
            );
        }
    }
    out
}

/// Records each watched interface's own counters as its baseline (read
/// before attaching, so the packets of the attach window itself show up as
/// unexplained rather than as a negative remainder).
fn write_baselines<T: std::borrow::BorrowMut<MapData>>(
    map: &mut PerCpuHashMap<T, IfaceKey, IfaceCounters>,
    interfaces: &[Watched],
) -> Result<(), KernelError> {
    let counters = proc_net_dev()?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, e)| KernelError::io(what, e))?
        .get() as usize;
    for iface in interfaces {
        let Some(c) = counters.get(&iface.name) else {
            continue;
        };
        for (direction, packets, bytes) in [
            (IFACE_DIR_INGRESS, c[1], c[0]),
            (IFACE_DIR_EGRESS, c[3], c[2]),
        ] {
            let mut values = vec![IfaceCounters::default(); cpus];
            values[0] = IfaceCounters { packets, bytes };
            let values = PerCpuValues::try_from(values)
                .map_err(|e| KernelError::io("per-CPU baseline", e))?;
            let key = IfaceKey {
                ifindex: iface.ifindex,
                direction,
                class: IFACE_BASELINE,
                _pad: [0; 2],
            };
            map.insert(&key, values, 0)
                .map_err(|e| KernelError::MapOp {
                    op: "insert baseline",
                    map: MAP_IFACES,
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
    }
    Ok(())
}

/// Gives each of `interfaces` (about to be attached) the slot
/// `ifindex % IFACE_SLOTS` of the pinned interface array when the slot is
/// free, with its LAN `flags` and zero counters on every CPU. A slot that
/// already holds the interface is left as it is (its counters are live); one
/// held by another interface leaves this one to the hash. Nothing to do for
/// a load without the array (an older netmon's).
///
/// # Errors
/// A pinned array that cannot be opened, read or written.
fn write_slots(
    paths: &PinPaths,
    interfaces: &[Watched],
    flags: &[(u32, u32)],
) -> Result<(), KernelError> {
    let Some(mut slots) = open_slots(paths)? else {
        return Ok(());
    };
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, e)| KernelError::io(what, e))?
        .get() as usize;
    for iface in interfaces {
        let index = iface.ifindex % IFACE_SLOTS;
        let held = slots
            .get(&index, 0)
            .map_err(|e| slot_err("read", e))?
            .iter()
            .map(|s| s.ifindex)
            .max()
            .unwrap_or(0);
        if held != 0 {
            if held != iface.ifindex {
                tracing::debug!(
                    interface = %iface.name,
                    other = held,
                    "interface slot taken: counted in the hash"
                );
            }
            continue;
        }
        let slot = IfaceSlot {
            ifindex: iface.ifindex,
            lan_flags: flags
                .iter()
                .find(|(i, _)| *i == iface.ifindex)
                .map_or(0, |(_, f)| *f),
            ..IfaceSlot::default()
        };
        let values = PerCpuValues::try_from(vec![slot; cpus])
            .map_err(|e| KernelError::io("per-CPU slot", e))?;
        slots
            .set(index, values, 0)
            .map_err(|e| slot_err("write", e))?;
    }
    Ok(())
}

fn slot_err(op: &'static str, e: impl ToString) -> KernelError {
    KernelError::MapOp {
        op,
        map: MAP_IFACE_SLOTS,
        source: std::io::Error::other(e.to_string()),
    }
}

/// The pinned interface array; `None` for a load without one.
fn open_slots(paths: &PinPaths) -> Result<Option<PerCpuArray<MapData, IfaceSlot>>, KernelError> {
    let path = paths.map(MAP_IFACE_SLOTS);
    if !path.exists() {
        return Ok(None);
    }
    let err = |e: &dyn std::fmt::Display| KernelError::PinnedMap {
        path: path.clone(),
        message: e.to_string(),
    };
    let data = MapData::from_pin(&path).map_err(|e| err(&e))?;
    PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
        .map(Some)
        .map_err(|e| err(&e))
}

/// Unpins every tc link (detaching it), the tc programs and the interface
/// map. Best effort, like the loader's own cleanup.
pub fn remove_pins(paths: &PinPaths) {
    if let Ok(entries) = std::fs::read_dir(paths.root.join("links")) {
        for entry in entries.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(TC_LINK_PREFIX)
            {
                continue;
            }
            if let Ok(link) = PinnedLink::from_pin(entry.path()) {
                let _ = link.unpin();
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
        let _ = std::fs::remove_file(paths.prog(name));
    }
    for name in IFACE_MAPS {
        let _ = std::fs::remove_file(paths.map(name));
    }
}

/// Packets and bytes of one direction and class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Packets (a GSO packet is one).
    pub packets: u64,
    /// Bytes, link-layer header included (`skb->len` at tc).
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, c: &IfaceCounters) {
        self.packets = self.packets.saturating_add(c.packets);
        self.bytes = self.bytes.saturating_add(c.bytes);
    }

    fn plus(self, o: Self) -> Self {
        Self {
            packets: self.packets.saturating_add(o.packets),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }
}

/// One direction of one interface, by class (see `netmon_common::iface`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionCounts {
    /// Everything: the sum of the classes.
    pub total: Count,
    /// Local IP sockets: what the cgroup hooks attribute to processes.
    pub local_socket: Count,
    /// Forwarded by the host (egress: came in elsewhere; ingress: the FIB
    /// routes it on, before NAT).
    pub forwarded: Count,
    /// Sockets without a recorded owner (`AF_PACKET`, the kernel's control
    /// sockets, sockets opened before the load), egress only.
    pub other_socket: Count,
    /// No local socket (kernel-generated on egress; on ingress addressed
    /// to the host with no socket matched, masqueraded replies included).
    pub no_socket: Count,
    /// The interface's own counters (`/proc/net/dev`) since the load, when
    /// the baseline and the interface are both there.
    pub interface: Option<Count>,
    /// `interface - total`: what the interface counted and the tc hook did
    /// not. Packets moved while attaching (and, on physical NICs, the extra
    /// headers of GSO segments) land here; on veth it stays constant after
    /// the load.
    pub unexplained: Option<Unexplained>,
    #[serde(skip)]
    baseline: Option<Count>,
}

/// A signed difference of counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unexplained {
    /// Packets.
    pub packets: i64,
    /// Bytes.
    pub bytes: i64,
}

/// The counters of one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceCounts {
    /// Index in the namespace netmon was loaded in.
    pub ifindex: u32,
    /// Current name, if the interface still exists.
    pub name: Option<String>,
    /// Received (tc ingress).
    pub rx: DirectionCounts,
    /// Sent (tc egress).
    pub tx: DirectionCounts,
}

/// Folds per-key counters (already summed over CPUs) into per-interface
/// counts, sorted by ifindex.
#[must_use]
pub fn fold(entries: impl IntoIterator<Item = (IfaceKey, IfaceCounters)>) -> Vec<InterfaceCounts> {
    let mut by: BTreeMap<u32, InterfaceCounts> = BTreeMap::new();
    for (key, value) in entries {
        let entry = by.entry(key.ifindex).or_insert_with(|| InterfaceCounts {
            ifindex: key.ifindex,
            ..InterfaceCounts::default()
        });
        let dir = if key.direction == IFACE_DIR_EGRESS {
            &mut entry.tx
        } else {
            &mut entry.rx
        };
        match key.class {
            IFACE_CLASS_LOCAL_SOCKET => dir.local_socket.add(&value),
            IFACE_CLASS_FORWARDED => dir.forwarded.add(&value),
            IFACE_CLASS_OTHER_SOCKET => dir.other_socket.add(&value),
            IFACE_CLASS_NO_SOCKET => dir.no_socket.add(&value),
            IFACE_BASELINE => {
                dir.baseline = Some(Count {
                    packets: value.packets,
                    bytes: value.bytes,
                });
            }
            _ => continue,
        }
    }
    let mut out: Vec<InterfaceCounts> = by.into_values().collect();
    for i in &mut out {
        for d in [&mut i.rx, &mut i.tx] {
            d.total = d
                .local_socket
                .plus(d.forwarded)
                .plus(d.other_socket)
                .plus(d.no_socket);
        }
    }
    out
}

/// Fills `interface` and `unexplained` from the interface's current
/// counters `[rx bytes, rx packets, tx bytes, tx packets]`.
pub fn reconcile(i: &mut InterfaceCounts, now: [u64; 4]) {
    for (d, bytes, packets) in [(&mut i.rx, now[0], now[1]), (&mut i.tx, now[2], now[3])] {
        let Some(base) = d.baseline else { continue };
        let since = Count {
            packets: packets.saturating_sub(base.packets),
            bytes: bytes.saturating_sub(base.bytes),
        };
        d.interface = Some(since);
        let diff =
            |a: u64, b: u64| i64::try_from(i128::from(a) - i128::from(b)).unwrap_or(i64::MAX);
        d.unexplained = Some(Unexplained {
            packets: diff(since.packets, d.total.packets),
            bytes: diff(since.bytes, d.total.bytes),
        });
    }
}

/// Reads the pinned interface map under `pin_dir`, summed over CPUs, with
/// the interfaces' current names (in this process's network namespace).
///
/// # Errors
/// Not loaded (no interface map pinned), map read failures.
pub fn read(pin_dir: &std::path::Path) -> Result<Vec<InterfaceCounts>, KernelError> {
    let paths = PinPaths::new(pin_dir);
    let Some(map) = IfaceMap::open(&paths)? else {
        return Err(KernelError::NotLoaded(pin_dir.to_path_buf()));
    };
    let entries = map.entries()?;
    let mut out = fold(entries);
    let counters = proc_net_dev()?;
    for i in &mut out {
        i.name = interface_name(i.ifindex).ok().flatten();
        if let Some(c) = i.name.as_ref().and_then(|n| counters.get(n)) {
            reconcile(i, *c);
        }
    }
    Ok(out)
}

/// The pinned interface map, opened once for the drain.
pub struct IfaceMap {
    map: PerCpuHashMap<MapData, IfaceKey, IfaceCounters>,
    slots: Option<PerCpuArray<MapData, IfaceSlot>>,
    devices: Option<super::devices::DeviceMap>,
}

impl IfaceMap {
    /// Opens the interface map pinned under `paths`; `None` when the load
    /// has none (interface counting off).
    ///
    /// # Errors
    /// A pinned map that cannot be opened.
    pub fn open(paths: &PinPaths) -> Result<Option<Self>, KernelError> {
        let path = paths.map(MAP_IFACES);
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
        let slots = open_slots(paths)?;
        let devices = super::devices::DeviceMap::open(paths)?;
        Ok(Some(Self {
            map,
            slots,
            devices,
        }))
    }

    /// Every key summed over CPUs, baselines included: the hash's keys
    /// plus the slots' counters (a key in both is one entry, the sum).
    ///
    /// # Errors
    /// Map read failures.
    pub fn entries(&self) -> Result<Vec<(IfaceKey, IfaceCounters)>, KernelError> {
        let mut entries: BTreeMap<IfaceKey, IfaceCounters> = BTreeMap::new();
        let mut add = |key: IfaceKey, c: &IfaceCounters| {
            let sum = entries.entry(key).or_default();
            sum.packets = sum.packets.saturating_add(c.packets);
            sum.bytes = sum.bytes.saturating_add(c.bytes);
        };
        for item in self.map.iter() {
            let (key, values) = item.map_err(|e| KernelError::MapOp {
                op: "iterate",
                map: MAP_IFACES,
                source: std::io::Error::other(e.to_string()),
            })?;
            // A key inserted and not yet counted on any CPU still shows.
            add(key, &IfaceCounters::default());
            for v in values.iter() {
                add(key, v);
            }
        }
        if let Some(slots) = &self.slots {
            for index in 0..IFACE_SLOTS {
                let values = slots.get(&index, 0).map_err(|e| slot_err("read", e))?;
                for (key, c) in slot_entries(values.iter()) {
                    add(key, &c);
                }
            }
        }
        Ok(entries.into_iter().collect())
    }

    /// The drain's reading: traffic keys, the names of the interfaces that
    /// exist, and the indexes that no longer do.
    ///
    /// # Errors
    /// Map read failures.
    pub fn reading(&self) -> Result<crate::source::IfaceReading, KernelError> {
        let entries = self.entries()?;
        let mut indexes: Vec<u32> = entries.iter().map(|(k, _)| k.ifindex).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut out = crate::source::IfaceReading {
            counters: entries
                .into_iter()
                .filter(|(k, _)| k.class != IFACE_BASELINE)
                .collect(),
            devices: match &self.devices {
                Some(d) => d.entries()?,
                None => Vec::new(),
            },
            ..crate::source::IfaceReading::default()
        };
        for i in indexes {
            match interface_name(i) {
                Ok(Some(name)) => out.names.push((i, name)),
                Ok(None) => out.gone.push(i),
                // Anything else says nothing about the interface: keep it.
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Removes every key of `ifindexes` (classes and baselines). Returns
    /// the keys removed.
    ///
    /// # Errors
    /// Map read or delete failures.
    pub fn forget(&mut self, ifindexes: &[u32]) -> Result<usize, KernelError> {
        if let Some(d) = &mut self.devices {
            d.forget(ifindexes)?;
        }
        if let Some(slots) = &mut self.slots {
            for &ifindex in ifindexes {
                let index = ifindex % IFACE_SLOTS;
                let values = slots.get(&index, 0).map_err(|e| slot_err("read", e))?;
                if values.iter().any(|s| s.ifindex == ifindex) {
                    let free = PerCpuValues::try_from(vec![IfaceSlot::default(); values.len()])
                        .map_err(|e| KernelError::io("per-CPU slot", e))?;
                    slots.set(index, free, 0).map_err(|e| slot_err("free", e))?;
                }
            }
        }
        let keys: Vec<IfaceKey> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| ifindexes.contains(&k.ifindex))
            .collect();
        for key in &keys {
            match self.map.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(KernelError::MapOp {
                        op: "delete",
                        map: MAP_IFACES,
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        Ok(keys.len())
    }
}

/// The counters of one slot (its per-CPU values) as interface keys: per
/// direction and class with traffic, summed over CPUs; nothing for a free
/// slot.
fn slot_entries<'a>(values: impl Iterator<Item = &'a IfaceSlot>) -> Vec<(IfaceKey, IfaceCounters)> {
    let mut ifindex = 0;
    let mut sums = [[IfaceCounters::default(); IFACE_CLASSES as usize]; 2];
    for v in values {
        ifindex = ifindex.max(v.ifindex);
        for (sum, cpu) in sums.iter_mut().flatten().zip(v.counters.iter().flatten()) {
            sum.packets = sum.packets.saturating_add(cpu.packets);
            sum.bytes = sum.bytes.saturating_add(cpu.bytes);
        }
    }
    if ifindex == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (direction, classes) in [IFACE_DIR_INGRESS, IFACE_DIR_EGRESS].into_iter().zip(sums) {
        for (class, c) in (0..IFACE_CLASSES).zip(classes) {
            if c.packets != 0 {
                let key = IfaceKey {
                    ifindex,
                    direction,
                    class,
                    _pad: [0; 2],
                };
                out.push((key, c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counters_become_keys_summed_over_cpus() {
        let mut a = IfaceSlot {
            ifindex: 9,
            ..IfaceSlot::default()
        };
        let mut b = a;
        a.counters[usize::from(IFACE_DIR_EGRESS)][usize::from(IFACE_CLASS_FORWARDED)] =
            IfaceCounters {
                packets: 2,
                bytes: 200,
            };
        b.counters[usize::from(IFACE_DIR_EGRESS)][usize::from(IFACE_CLASS_FORWARDED)] =
            IfaceCounters {
                packets: 1,
                bytes: 60,
            };
        b.counters[usize::from(IFACE_DIR_INGRESS)][usize::from(IFACE_CLASS_NO_SOCKET)] =
            IfaceCounters {
                packets: 4,
                bytes: 4,
            };
        let key = |direction, class| IfaceKey {
            ifindex: 9,
            direction,
            class,
            _pad: [0; 2],
        };
        assert_eq!(
            slot_entries([a, b].iter()),
            vec![
                (
                    key(IFACE_DIR_INGRESS, IFACE_CLASS_NO_SOCKET),
                    IfaceCounters {
                        packets: 4,
                        bytes: 4
                    }
                ),
                (
                    key(IFACE_DIR_EGRESS, IFACE_CLASS_FORWARDED),
                    IfaceCounters {
                        packets: 3,
                        bytes: 260
                    }
                ),
            ]
        );
        assert!(
            slot_entries([IfaceSlot::default(); 2].iter()).is_empty(),
            "a free slot is no interface"
        );
    }

    #[test]
    fn an_index_no_interface_has_has_no_name() {
        assert_eq!(interface_name(u32::MAX - 7), Ok(None));
        // Loopback is index 1 in every network namespace.
        assert_eq!(interface_name(1), Ok(Some("lo".to_owned())));
    }

    #[test]
    fn default_is_up_non_loopback() {
        let rows = [
            ("lo", true, true),
            ("eth0", true, false),
            ("eth1", false, false),
        ];
        assert_eq!(select(rows, None).expect("select"), vec!["eth0"]);
    }

    #[test]
    fn globs_match_any_state() {
        let rows = [
            ("lo", true, true),
            ("veth1", false, false),
            ("veth1", false, false),
            ("wg0", true, false),
        ];
        let watch = ["veth*".to_owned(), "wg?".to_owned()];
        assert_eq!(
            select(rows, Some(&watch)).expect("select"),
            vec!["veth1", "wg0"]
        );
        assert!(select(rows, Some(&[])).expect("select").is_empty());
    }

    #[test]
    fn bad_glob_is_an_error() {
        let err = select([("a", true, false)], Some(&["[".to_owned()])).expect_err("bad glob");
        assert!(err.to_string().contains("interface pattern"), "{err}");
    }

    #[test]
    fn proc_net_dev_parses() {
        let text = "Inter-|   Receive                            |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
nmra: 11438      19    0    0    0     0          0         0     4698      15    0    0    0     0       0          0\n";
        let parsed = parse_proc_net_dev(text);
        assert_eq!(parsed["nmra"], [11438, 19, 4698, 15]);
        assert_eq!(parsed["lo"], [100, 2, 100, 2]);
    }

    #[test]
    fn reconcile_is_interface_minus_total() {
        let key = |direction, class| IfaceKey {
            ifindex: 3,
            direction,
            class,
            _pad: [0; 2],
        };
        let c = |packets, bytes| IfaceCounters { packets, bytes };
        let mut out = fold([
            (key(IFACE_DIR_INGRESS, IFACE_BASELINE), c(10, 1000)),
            (key(IFACE_DIR_INGRESS, IFACE_CLASS_NO_SOCKET), c(4, 400)),
            (key(IFACE_DIR_EGRESS, IFACE_CLASS_FORWARDED), c(1, 60)),
        ]);
        assert_eq!(
            out[0].rx.total,
            Count {
                packets: 4,
                bytes: 400
            },
            "baseline is no traffic"
        );
        reconcile(&mut out[0], [1490, 15, 60, 1]);
        assert_eq!(
            out[0].rx.interface,
            Some(Count {
                packets: 5,
                bytes: 490
            })
        );
        assert_eq!(
            out[0].rx.unexplained,
            Some(Unexplained {
                packets: 1,
                bytes: 90
            })
        );
        assert_eq!(out[0].tx.interface, None, "no egress baseline");
    }

    #[test]
    fn fold_sums_classes_into_totals() {
        let key = |direction, class| IfaceKey {
            ifindex: 7,
            direction,
            class,
            _pad: [0; 2],
        };
        let c = |packets, bytes| IfaceCounters { packets, bytes };
        let out = fold([
            (key(IFACE_DIR_EGRESS, IFACE_CLASS_LOCAL_SOCKET), c(1, 100)),
            (key(IFACE_DIR_EGRESS, IFACE_CLASS_FORWARDED), c(2, 20)),
            (key(IFACE_DIR_EGRESS, IFACE_CLASS_OTHER_SOCKET), c(3, 3)),
            (key(IFACE_DIR_INGRESS, IFACE_CLASS_NO_SOCKET), c(4, 40)),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].tx.total,
            Count {
                packets: 6,
                bytes: 123
            }
        );
        assert_eq!(
            out[0].rx.total,
            Count {
                packets: 4,
                bytes: 40
            }
        );
        assert_eq!(
            out[0].rx.no_socket,
            Count {
                packets: 4,
                bytes: 40
            }
        );
    }
}
