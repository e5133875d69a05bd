//! [`ExecMap`]: the pinned exec map (`NETMON_EXECS`), read by the ownership
//! resolver for processes gone from `/proc`.
//!
//! Entries are taken (looked up and deleted in one system call) only for
//! processes that have exited: their entry is never needed again by the
//! kernel side, and taking it frees the slot. Entries of processes that never
//! own a socket, or that are still alive when resolved, stay until the LRU
//! evicts them.

use std::{os::fd::AsFd, path::Path};

use aya::maps::MapData;
use netmon_common::{
    exec::{ExecIdentity, ExecKey},
    names::MAP_EXECS,
};

use super::{KernelError, bpf_sys, pins::PinPaths};
use crate::ownership::exec_identity::ExecRecords;

/// The pinned exec map of one netmon load.
pub struct ExecMap {
    map: MapData,
}

impl ExecMap {
    /// Opens `maps/NETMON_EXECS` under `pin_dir`; `Ok(None)` when a load
    /// without it (an older netmon) is pinned there.
    ///
    /// # Errors
    /// The pin exists but cannot be opened.
    pub fn open(pin_dir: &Path) -> Result<Option<Self>, KernelError> {
        let path = PinPaths::new(pin_dir).map(MAP_EXECS);
        if !path.exists() {
            return Ok(None);
        }
        let map = MapData::from_pin(&path).map_err(|e| KernelError::PinnedMap {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(Self { map }))
    }

    /// Looks `key` up and deletes it.
    ///
    /// # Errors
    /// System call failures other than "not found".
    pub fn take(&self, key: &ExecKey) -> Result<Option<ExecIdentity>, KernelError> {
        bpf_sys::lookup_and_delete::<ExecKey, ExecIdentity>(self.map.fd().as_fd(), key).map_err(
            |source| KernelError::MapOp {
                op: "lookup and delete",
                map: MAP_EXECS,
                source,
            },
        )
    }
}

impl ExecRecords for ExecMap {
    fn take(&mut self, key: &ExecKey) -> Option<ExecIdentity> {
        match ExecMap::take(self, key) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!("reading the exec map: {err}");
                None
            }
        }
    }
}
