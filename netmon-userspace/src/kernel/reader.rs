//! [`KernelSource`]: the [`CounterSource`] backed by the pinned eBPF maps.
use std::{collections::HashMap, os::fd::AsFd, path::Path};

use aya::maps::{MapData, PerCpuArray};
use netmon_common::{
    ClosedSock, FLOW_F_CLOSED, FLOW_F_OWNER_RELEASED, FlowKey, FlowValue, OverflowCounters,
    SockOwner,
    names::{MAP_CLOSED, MAP_FLOWS, MAP_OVERFLOW},
};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    KernelArgs, KernelError, bpf_sys,
    loader::{self, AttachOutcome},
    pins::PinPaths,
};
use crate::source::{CounterSource, FlowReading, Reading, SourceError};

/// What reading the pinned maps is, for the not-root message.
const READ_NEEDS: &str =
    "reading the kernel counters (netmon snapshot, netmon top without a daemon)";

/// The pinned maps of one netmon load.
pub struct KernelSource {
    paths: PinPaths,
    flows: MapData,
    closed: MapData,
    overflow: PerCpuArray<MapData, OverflowCounters>,
    max_flows: u32,
    /// Cookies of closed marks that had no flow at the last read.
    flowless: FxHashSet<u64>,
    /// Sockets released by their owner ([`FLOW_F_OWNER_RELEASED`]) that
    /// still had another flow at the last read (see [`close_siblings`]).
    released_siblings: FxHashSet<u64>,
    /// Cookies of the closed marks of the last read, sorted: what
    /// [`CounterSource::forget_closed`] deletes (a socket its owner
    /// released has no mark, and deleting a missing key is still a
    /// syscall's worth of work per key).
    marked: Vec<u64>,
    /// The interface map (`None` when the load counts no interfaces).
    /// Opened with the others, before the daemon drops its privileges.
    ifaces: Option<super::tc::IfaceMap>,
    /// Flows and closed marks of the last read: the next read's lists are
    /// sized from them, so they are allocated once, not grown by doubling
    /// (a list of 100k flows is 23 MB; growing it held up to 1.5 times that).
    last_len: (usize, usize),
    /// The name capture ring, opened by the daemon only (`None` in
    /// `snapshot`/`status`, or with `[names] enabled = false`).
    names: Option<super::capture::NameCapture>,
}

impl KernelSource {
    /// Loads and attaches the programs unless a previous load is pinned at
    /// `args.pin_dir`, then opens the pinned maps. Used by the daemon.
    ///
    /// # Errors
    /// Load, attach and pin failures ([`KernelError`]).
    pub fn open_or_attach(args: &KernelArgs) -> Result<(Self, AttachOutcome), KernelError> {
        // The daemon does not turn the kernel's BPF run-time statistics on:
        // while they are on, every BPF program run on the machine (ours and
        // everyone else's) pays two clock reads — measured here, 108 → 187 ns
        // per run of netmon_egress. `netmon status --sample` turns them on
        // for a measurement window only.
        // Every capability the daemon will use, named if one is missing,
        // before the load fails on the first.
        crate::privilege::require(crate::privilege::LOAD_CAPS)?;
        let outcome = loader::attach(args)?;
        let mut source = Self::open(&args.pin_dir)?;
        source.names = super::capture::NameCapture::open(&source.paths, args.names)?;
        Ok((source, outcome))
    }

    /// Opens the maps pinned under `pin_dir` (no load).
    ///
    /// Without root the pins cannot be read: [`KernelError::NotRoot`] says
    /// so, naming what this is for. Used by `snapshot`
    /// and `status`, with or without a running daemon.
    ///
    /// # Errors
    /// [`KernelError::NotLoaded`] if nothing is pinned there.
    pub fn open(pin_dir: &Path) -> Result<Self, KernelError> {
        let paths = PinPaths::new(pin_dir);
        if !paths.map(MAP_FLOWS).exists() {
            if !super::sysfs::is_root() {
                return Err(KernelError::NotRoot(READ_NEEDS));
            }
            return Err(KernelError::NotLoaded(pin_dir.to_path_buf()));
        }
        let open = |name: &'static str| {
            let path = paths.map(name);
            MapData::from_pin(&path).map_err(|e| {
                if !super::sysfs::is_root() {
                    KernelError::NotRoot(READ_NEEDS)
                } else {
                    KernelError::PinnedMap {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                }
            })
        };
        let flows = open(MAP_FLOWS)?;
        let info = flows.info().map_err(|e| KernelError::PinnedMap {
            path: paths.map(MAP_FLOWS),
            message: e.to_string(),
        })?;
        // Maps pinned by a netmon whose flow value had another layout (an
        // upgrade while the programs stayed loaded) cannot be read as this
        // one's: say so instead of reading garbage.
        let want = size_of::<FlowValue>();
        if usize::try_from(info.value_size()).ok() != Some(want) {
            return Err(KernelError::PinnedMap {
                path: paths.map(MAP_FLOWS),
                message: format!(
                    "flow values of {} bytes, this netmon's are {want}: pinned by another \
                     netmon version; run `netmon unload`, then load again",
                    info.value_size()
                ),
            });
        }
        let max_flows = info.max_entries();
        let closed = open(MAP_CLOSED)?;
        let overflow_path = paths.map(MAP_OVERFLOW);
        let overflow = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(open(MAP_OVERFLOW)?))
            .map_err(|e| KernelError::PinnedMap {
                path: overflow_path,
                message: e.to_string(),
            })?;

        let ifaces = super::tc::IfaceMap::open(&paths)?;
        Ok(Self {
            paths,
            flows,
            closed,
            overflow,
            max_flows,
            flowless: FxHashSet::default(),
            released_siblings: FxHashSet::default(),
            marked: Vec::new(),
            ifaces,
            last_len: (0, 0),
            names: None,
        })
    }

    /// What to check to notice that this load was unpinned or replaced
    /// ([`PinWatch`]).
    ///
    /// # Errors
    /// When the flow map's id cannot be read.
    pub fn watch(&self) -> Result<PinWatch, KernelError> {
        Ok(PinWatch {
            paths: self.paths.clone(),
            flows_id: map_id(&self.flows, &self.paths.map(MAP_FLOWS))?,
        })
    }

    /// All flows, unsorted.
    ///
    /// # Errors
    /// Syscall failures.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, KernelError> {
        bpf_sys::lookup_batch(self.flows.fd().as_fd()).map_err(|source| KernelError::MapOp {
            op: "batch lookup",
            map: MAP_FLOWS,
            source,
        })
    }

    /// Cookies of released sockets.
    ///
    /// # Errors
    /// Syscall failures.
    pub fn closed(&self) -> Result<HashMap<u64, ClosedSock>, KernelError> {
        Ok(
            bpf_sys::lookup_batch::<u64, ClosedSock>(self.closed.fd().as_fd())
                .map_err(|source| KernelError::MapOp {
                    op: "batch lookup",
                    map: MAP_CLOSED,
                    source,
                })?
                .into_iter()
                .collect(),
        )
    }

    /// Overflow counters summed over CPUs.
    ///
    /// # Errors
    /// Syscall failures.
    pub fn overflow(&self) -> Result<OverflowCounters, KernelError> {
        let per_cpu = self.overflow.get(&0, 0).map_err(|e| KernelError::MapOp {
            op: "lookup",
            map: MAP_OVERFLOW,
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(per_cpu
            .iter()
            .fold(OverflowCounters::default(), |acc, c| OverflowCounters {
                tx: acc.tx.saturating_add(c.tx),
                rx: acc.rx.saturating_add(c.rx),
                failed_inserts: acc.failed_inserts.saturating_add(c.failed_inserts),
            }))
    }

    /// Capacity of the flow map.
    #[must_use]
    pub const fn max_flows(&self) -> u32 {
        self.max_flows
    }

    /// Capacity of the closed-socket map.
    ///
    /// # Errors
    /// Syscall failures.
    pub fn max_closed(&self) -> Result<u32, KernelError> {
        self.closed
            .info()
            .map(|i| i.max_entries())
            .map_err(|e| KernelError::MapOp {
                op: "info",
                map: MAP_CLOSED,
                source: std::io::Error::other(e.to_string()),
            })
    }
}

fn map_id(map: &MapData, path: &Path) -> Result<u32, KernelError> {
    map.info()
        .map(|i| i.id())
        .map_err(|e| KernelError::PinnedMap {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The pins a [`KernelSource`] depends on. Its map fds keep the maps alive
/// whatever happens to the pins, so a daemon would go on reading frozen
/// counters after `netmon unload --force` (or `rm -r` of the pin directory)
/// detached the programs. [`Self::check`] notices: every program's link
/// must still be pinned, and the flow map pinned must still be the one
/// being read (a fresh `netmon load` makes new maps). A few `stat`s and one
/// `BPF_OBJ_GET` per call: the daemon checks once per interval.
#[derive(Clone, Debug)]
pub struct PinWatch {
    paths: PinPaths,
    flows_id: u32,
}

impl PinWatch {
    /// The pin directory watched.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.paths.root
    }

    /// `Ok` while the load is in place; otherwise what is missing.
    ///
    /// # Errors
    /// A one-line description of what disappeared or changed.
    pub fn check(&self) -> Result<(), String> {
        for program in netmon_common::names::PROGRAMS {
            let link = self.paths.link(program);
            if !link.exists() {
                return Err(format!(
                    "the link of {program} ({}) is gone",
                    link.display()
                ));
            }
        }
        let path = self.paths.map(MAP_FLOWS);
        let pinned = MapData::from_pin(&path)
            .map_err(|e| format!("the flow map pin {} is gone ({e})", path.display()))?;
        let id = map_id(&pinned, &path).map_err(|e| e.to_string())?;
        if id == self.flows_id {
            Ok(())
        } else {
            Err(format!(
                "{} is another map now (id {id}, was {}): netmon was loaded again",
                path.display(),
                self.flows_id
            ))
        }
    }
}

fn source_err(e: KernelError) -> SourceError {
    SourceError::Other(e.to_string())
}

/// Closed marks with no flow (`has_flow[i]` false for `closed[i]`), split
/// by whether they were flowless in the previous read too (those are freed).
fn flowless_marks(
    closed: &[(u64, SockOwner)],
    has_flow: &[bool],
    before: &FxHashSet<u64>,
) -> (Vec<u64>, FxHashSet<u64>) {
    let mut free = Vec::new();
    let mut now = FxHashSet::default();
    for ((cookie, _), _) in closed.iter().zip(has_flow).filter(|(_, has)| !**has) {
        if before.contains(cookie) {
            free.push(*cookie);
        } else {
            now.insert(*cookie);
        }
    }
    (free, now)
}

/// Marks closed every flow of a socket released by its owner. Only the
/// connected flow carries [`FLOW_F_OWNER_RELEASED`] (such a release makes
/// no closed mark), but a socket can have had other flows before it
/// connected (a TCP connect that failed, then another; UDP datagrams sent
/// before `connect`). `before`: the cookies this returned at the last read,
/// sockets whose flagged flow may be retired by now. Returns the cookies
/// that still have an unflagged flow, for the next read: almost always
/// none, so nothing is kept per socket.
fn close_siblings(flows: &mut [FlowReading], before: &FxHashSet<u64>) -> FxHashSet<u64> {
    let mut released: FxHashSet<u64> = before.clone();
    released.extend(
        flows
            .iter()
            .filter(|f| f.value.flags & FLOW_F_OWNER_RELEASED != 0)
            .map(|f| f.key.cookie),
    );
    let mut siblings = FxHashSet::default();
    if released.is_empty() {
        return siblings;
    }
    for f in flows
        .iter_mut()
        .filter(|f| f.value.flags & FLOW_F_OWNER_RELEASED == 0)
    {
        if released.contains(&f.key.cookie) {
            f.closed = true;
            siblings.insert(f.key.cookie);
        }
    }
    siblings
}

impl CounterSource for KernelSource {
    fn read(&mut self) -> Result<Reading, SourceError> {
        // Closed marks first: a socket marked closed after its flows were
        // read is simply seen as closed one drain later. Kept as a sorted
        // list of (cookie, releaser): a third of a hash map's memory.
        let (last_flows, last_closed) = self.last_len;
        let mut closed: Vec<(u64, SockOwner)> =
            Vec::with_capacity(last_closed.saturating_add(last_closed / 8));
        bpf_sys::lookup_batch_each::<u64, ClosedSock>(self.closed.fd().as_fd(), |c, m| {
            closed.push((c, m.released_by));
        })
        .map_err(|source| {
            source_err(KernelError::MapOp {
                op: "batch lookup",
                map: MAP_CLOSED,
                source,
            })
        })?;
        closed.sort_unstable_by_key(|(c, _)| *c);
        // Which marks have a flow: one binary search per flow, no hashing
        // (under churn the reading and the marks are tens of thousands).
        let mut has_flow = vec![false; closed.len()];
        // Read straight into the reading, one buffer of a few thousand
        // flows reused per syscall (no list of pairs converted afterwards).
        let mut flows: Vec<FlowReading> =
            Vec::with_capacity(last_flows.saturating_add(last_flows / 8));
        bpf_sys::lookup_batch_each::<FlowKey, FlowValue>(self.flows.fd().as_fd(), |key, value| {
            let mark = closed.binary_search_by_key(&key.cookie, |(c, _)| *c).ok();
            if let Some(i) = mark {
                has_flow[i] = true;
            }
            flows.push(FlowReading {
                key,
                value,
                closed: value.flags & FLOW_F_CLOSED != 0 || mark.is_some(),
            });
        })
        .map_err(|source| {
            source_err(KernelError::MapOp {
                op: "batch lookup",
                map: MAP_FLOWS,
                source,
            })
        })?;
        self.last_len = (flows.len(), closed.len());
        self.released_siblings = close_siblings(&mut flows, &self.released_siblings);
        self.marked.clear();
        self.marked.extend(closed.iter().map(|(c, _)| *c));
        // A closed mark whose socket has no flow (it never sent or received
        // a packet: UDP connect + close, socket + close) has no retire to
        // free it. The mark was read before the flows, so a packet counted
        // before the release would show as a flow here; a released socket
        // that had no packet by then gets none later (it is unhashed). The
        // mark is freed when a second read still finds no flow, one drain
        // interval of margin on top.
        let (free, flowless) = flowless_marks(&closed, &has_flow, &self.flowless);
        self.flowless = flowless;
        if !free.is_empty() {
            self.forget_closed(&free)?;
        }
        // Sized first: collected from a filter, the map would grow by
        // rehashing (under churn it holds tens of thousands of owners).
        let mut released_by: FxHashMap<u64, SockOwner> = FxHashMap::with_capacity_and_hasher(
            has_flow.iter().filter(|h| **h).count(),
            rustc_hash::FxBuildHasher,
        );
        released_by.extend(
            closed
                .iter()
                .zip(&has_flow)
                .filter(|(_, has)| **has)
                .map(|(mark, _)| *mark),
        );
        // The capture ring is drained after the flows were read.
        let names = self
            .names
            .as_mut()
            .map(|n| n.names(&flows))
            .unwrap_or_default();
        Ok(Reading {
            flows,
            overflow: self.overflow().map_err(source_err)?,
            max_flows: self.max_flows,
            names,
            released_by,
        })
    }

    fn retire(&mut self, keys: &[FlowKey]) -> Result<Vec<(FlowKey, FlowValue)>, SourceError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let removed =
                bpf_sys::lookup_and_delete::<FlowKey, FlowValue>(self.flows.fd().as_fd(), key)
                    .map_err(|source| {
                        source_err(KernelError::MapOp {
                            op: "lookup and delete",
                            map: MAP_FLOWS,
                            source,
                        })
                    })?;
            if let Some(value) = removed {
                out.push((*key, value));
            }
        }
        if let Some(names) = &mut self.names {
            names.forget(keys);
        }
        Ok(out)
    }

    fn forget_closed(&mut self, cookies: &[u64]) -> Result<(), SourceError> {
        // Only cookies the last read found a mark for (`marked`, sorted): a
        // mark made since is seen, and freed, at a later retire or as
        // flowless.
        let marked: Vec<u64> = cookies
            .iter()
            .copied()
            .filter(|c| self.marked.binary_search(c).is_ok())
            .collect();
        if marked.is_empty() {
            return Ok(());
        }
        // One syscall per few thousand marks; missing already is fine.
        bpf_sys::delete_batch(self.closed.fd().as_fd(), &marked).map_err(|source| {
            source_err(KernelError::MapOp {
                op: "batch delete",
                map: MAP_CLOSED,
                source,
            })
        })?;
        Ok(())
    }

    fn read_ifaces(&mut self) -> Result<crate::source::IfaceReading, SourceError> {
        match &self.ifaces {
            Some(m) => m.reading().map_err(source_err),
            None => Ok(crate::source::IfaceReading::default()),
        }
    }

    fn forget_ifaces(&mut self, ifindexes: &[u32]) -> Result<(), SourceError> {
        if let Some(m) = &mut self.ifaces {
            let n = m.forget(ifindexes).map_err(source_err)?;
            tracing::info!(
                interfaces = ?ifindexes,
                keys = n,
                "counters of removed interfaces committed and removed from the kernel map"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(cookie: u64, port: u16, flags: u16) -> FlowReading {
        FlowReading {
            key: FlowKey {
                cookie,
                remote_port: port,
                ..FlowKey::default()
            },
            value: FlowValue {
                flags,
                ..FlowValue::default()
            },
            closed: flags & FLOW_F_CLOSED != 0,
        }
    }

    /// Every flow of a socket its owner released is closed, also after the
    /// flagged flow was retired; other sockets' flows stay open.
    #[test]
    fn flows_of_a_socket_released_by_its_owner_are_all_closed() {
        let released = FLOW_F_CLOSED | FLOW_F_OWNER_RELEASED;
        let mut flows = vec![
            flow(1, 80, 0),
            flow(2, 80, 0),
            flow(1, 443, released),
            flow(3, 53, released),
        ];
        let kept = close_siblings(&mut flows, &FxHashSet::default());
        let closed: Vec<bool> = flows.iter().map(|f| f.closed).collect();
        assert_eq!(closed, [true, false, true, true]);
        assert_eq!(kept, FxHashSet::from_iter([1]));
        // The flagged flow of socket 1 was retired; its sibling stays closed
        // until it is gone too.
        let mut flows = vec![flow(1, 80, 0), flow(2, 80, 0)];
        let kept = close_siblings(&mut flows, &kept);
        assert!(flows[0].closed && !flows[1].closed);
        assert_eq!(kept, FxHashSet::from_iter([1]));
        let mut flows = vec![flow(2, 80, 0)];
        assert!(close_siblings(&mut flows, &kept).is_empty());
        assert!(!flows[0].closed);
    }

    /// A closed mark is freed at its second flowless read, never while its
    /// socket has a flow (the retire frees those).
    #[test]
    fn flowless_marks_are_freed_at_the_second_read() {
        let closed: Vec<(u64, SockOwner)> = [1, 2, 3]
            .into_iter()
            .map(|c| (c, SockOwner::default()))
            .collect();
        // Cookie 1 has a flow.
        let (free, seen) = flowless_marks(&closed, &[true, false, false], &FxHashSet::default());
        assert!(free.is_empty());
        assert_eq!(seen, FxHashSet::from_iter([2, 3]));
        // Cookie 3 got a flow meanwhile: kept for the retire.
        let (mut free, seen) = flowless_marks(&closed, &[true, false, true], &seen);
        free.sort_unstable();
        assert_eq!(free, vec![2]);
        assert!(seen.is_empty());
    }
}
