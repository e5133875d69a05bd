//! [`ExecMap`]: the pinned exec map (`NETMON_EXECS`), read by the ownership
//! resolver for processes gone from `/proc`.
//!
//! Records are only looked up, never deleted by userspace: `snapshot` and
//! `top` read them too, and a restarted daemon resolves its sockets again.
//! The map is an LRU hash, so it stays bounded without userspace help: a new
//! exec evicts the least recently used record when it is full.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError};
use netmon_common::{
    exec::{ExecIdentity, ExecKey},
    names::MAP_EXECS,
};

use super::{KernelError, pins::PinPaths};
use crate::ownership::exec_identity::ExecRecords;

/// The pinned exec map of one netmon load.
pub struct ExecMap {
    map: HashMap<MapData, ExecKey, ExecIdentity>,
}

impl ExecMap {
    /// Opens `maps/NETMON_EXECS` under `pin_dir`; `Ok(None)` when a load
    /// without it (an older netmon) is pinned there.
    ///
    /// # Errors
    /// The pin exists but cannot be opened, or is not an LRU hash of the
    /// expected key and value sizes.
    pub fn open(pin_dir: &Path) -> Result<Option<Self>, KernelError> {
        let path = PinPaths::new(pin_dir).map(MAP_EXECS);
        if !path.exists() {
            return Ok(None);
        }
        let pinned = |message: String| KernelError::PinnedMap {
            path: path.clone(),
            message,
        };
        let data = MapData::from_pin(&path).map_err(|e| pinned(e.to_string()))?;
        let map = HashMap::try_from(Map::LruHashMap(data)).map_err(|e| pinned(e.to_string()))?;
        Ok(Some(Self { map }))
    }

    /// The record of `key`, if the map holds one.
    ///
    /// # Errors
    /// System call failures other than "not found".
    pub fn get(&self, key: &ExecKey) -> Result<Option<ExecIdentity>, KernelError> {
        match self.map.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(KernelError::MapOp {
                op: "lookup",
                map: MAP_EXECS,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

impl ExecRecords for ExecMap {
    fn get(&mut self, key: &ExecKey) -> Option<ExecIdentity> {
        match ExecMap::get(self, key) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!("reading the exec map: {err}");
                None
            }
        }
    }
}
