//! [`KernelSource`]: the [`CounterSource`] backed by the pinned eBPF maps.
use std::{collections::HashMap, os::fd::AsFd, path::Path};

use aya::maps::{MapData, PerCpuArray};
use netmon_common::{
    ClosedSock, FlowKey, FlowValue, OverflowCounters,
    names::{MAP_CLOSED, MAP_FLOWS, MAP_OVERFLOW},
};

use super::{
    KernelArgs, KernelError, bpf_sys,
    loader::{self, AttachOutcome},
    pins::PinPaths,
};
use crate::source::{CounterSource, FlowReading, Reading, SourceError};

/// The pinned maps of one netmon load.
pub struct KernelSource {
    flows: MapData,
    closed: MapData,
    overflow: PerCpuArray<MapData, OverflowCounters>,
    max_flows: u32,
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
        let outcome = loader::attach(args)?;
        let source = Self::open(&args.pin_dir)?;
        Ok((source, outcome))
    }

    /// Opens the maps pinned under `pin_dir` (no load). Used by `snapshot`
    /// and `status`, with or without a running daemon.
    ///
    /// # Errors
    /// [`KernelError::NotLoaded`] if nothing is pinned there.
    pub fn open(pin_dir: &Path) -> Result<Self, KernelError> {
        let paths = PinPaths::new(pin_dir);
        if !paths.map(MAP_FLOWS).exists() {
            if !super::sysfs::is_root() {
                return Err(KernelError::NotRoot);
            }
            return Err(KernelError::NotLoaded(pin_dir.to_path_buf()));
        }
        let open = |name: &'static str| {
            let path = paths.map(name);
            MapData::from_pin(&path).map_err(|e| {
                if !super::sysfs::is_root() {
                    KernelError::NotRoot
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

        Ok(Self {
            flows,
            closed,
            overflow,
            max_flows,
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

fn source_err(e: KernelError) -> SourceError {
    SourceError::Other(e.to_string())
}

impl CounterSource for KernelSource {
    fn read(&mut self) -> Result<Reading, SourceError> {
        // Closed marks first: a socket marked closed after its flows were
        // read is simply seen as closed one drain later.
        let closed = self.closed().map_err(source_err)?;
        let flows = self
            .flows()
            .map_err(source_err)?
            .into_iter()
            .map(|(key, value)| FlowReading {
                key,
                value,
                closed: closed.contains_key(&key.cookie),
            })
            .collect();
        Ok(Reading {
            flows,
            overflow: self.overflow().map_err(source_err)?,
            max_flows: self.max_flows,
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
        Ok(out)
    }

    fn forget_closed(&mut self, cookies: &[u64]) -> Result<(), SourceError> {
        for cookie in cookies {
            // Missing already is fine.
            let _ = bpf_sys::lookup_and_delete::<u64, ClosedSock>(self.closed.fd().as_fd(), cookie)
                .map_err(|source| {
                    source_err(KernelError::MapOp {
                        op: "delete",
                        map: MAP_CLOSED,
                        source,
                    })
                })?;
        }
        Ok(())
    }
}
