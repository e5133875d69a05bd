//! Server names in the store: the name part of remote rollup keys, and the
//! committed per flow names the drain keeps for its pending pieces.
//!
//! # What is stored
//!
//! A flow's server name ([`FlowName`]: the name and how it was learned, see
//! [`crate::source`]) becomes part of its remote rollup key
//! ([`RemoteKey::name`]), so `REMOTE_MINUTE`/`REMOTE_HOUR`/`REMOTE_DAY`
//! rows are per (process, remote address, service, **server name**) and a
//! name is kept exactly as long as the rows that carry it (the remote
//! tiers' retention): purging a row purges its name, and nothing else in
//! the file holds names of flows that are gone. Registered domains and
//! services are not stored: they are derived from the name when a query
//! asks ([`crate::query::domains`]), so an edited services catalogue
//! re-classifies the history too.
//!
//! # In memory: [`NameId`]
//!
//! Keys are `Copy` and hashed per flow, so a name travels as a [`NameId`], a
//! small index into a process-wide interner ([`NameId::of`],
//! [`NameId::get`]). Ids are never written to disk and mean nothing to
//! another process; the interner only grows (one entry per distinct name
//! and source this process met, a few dozen bytes each).
//!
//! # Byte layouts
//!
//! - A name inside a key ([`encode_name`]): the [`NameSource`] byte (0: no
//!   name, then nothing follows; 1 sni, 2 host, 3 quic, 4 dns), then the
//!   name's UTF-8 bytes to the end of the key. It is the last field of a
//!   key, so prefix scans over the fields before it are unchanged.
//! - [`FLOW_NAMES`]: the committed names of the snapshot's flows.
//!   Key: the flow key as [`crate::store::layout::encode_flow_key`] (32 bytes).
//!   Value: [`encode_name`] of its name. Written in the same commit as the
//!   snapshot chunks, so the pending pieces of a flow (which are counted
//!   under its name, see [`crate::store::RemotePending::name`]) are labelled
//!   the same by the drain after a restart and by readers
//!   ([`crate::store::query::pending_remote_rows`]). Rows of flows that
//!   left the snapshot are deleted by a later commit (at most a minute
//!   later); until then no reader sees them, since readers only label the
//!   snapshot's flows.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use netmon_common::FlowKey;
use redb::{ReadableTable as _, TableDefinition};

use crate::source::{FlowName, NameSource};
use crate::store::StoreError;
use crate::store::layout::{self, Bytes, LayoutError};

/// The committed server names of the snapshot's flows (see the module docs).
pub const FLOW_NAMES: Bytes = TableDefinition::new("snapshot.names.v1");

/// A server name (with its source) as a small `Copy` id; `NONE` for flows
/// without a name. Only meaningful inside this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(u32);

/// The process-wide interner behind [`NameId`].
#[derive(Default)]
struct Interner {
    /// Names by id − 1.
    names: Vec<Arc<FlowName>>,
    ids: HashMap<Arc<FlowName>, NameId>,
}

static NAMES: LazyLock<RwLock<Interner>> = LazyLock::new(|| RwLock::new(Interner::default()));

impl NameId {
    /// No name.
    pub const NONE: Self = Self(0);

    /// The id of `name`, interned on first use.
    #[must_use]
    pub fn of(name: &FlowName) -> Self {
        if let Ok(i) = NAMES.read()
            && let Some(id) = i.ids.get(name)
        {
            return *id;
        }
        // A poisoned lock only means a panic elsewhere mid-insert of a
        // complete entry: the table is still consistent.
        let mut i = NAMES
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(id) = i.ids.get(name) {
            return *id;
        }
        let id = Self(u32::try_from(i.names.len() + 1).unwrap_or(u32::MAX));
        let name = Arc::new(name.clone());
        i.names.push(Arc::clone(&name));
        i.ids.insert(name, id);
        id
    }

    /// The name behind the id (`None` for [`Self::NONE`]).
    #[must_use]
    pub fn get(self) -> Option<Arc<FlowName>> {
        let n = usize::try_from(self.0.checked_sub(1)?).ok()?;
        let i = NAMES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        i.names.get(n).cloned()
    }

    /// True for [`Self::NONE`].
    #[must_use]
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// The stored byte of a source (0 is "no name").
#[must_use]
pub const fn source_byte(s: NameSource) -> u8 {
    match s {
        NameSource::Sni => 1,
        NameSource::Host => 2,
        NameSource::Quic => 3,
        NameSource::Dns => 4,
    }
}

/// Inverse of [`source_byte`].
#[must_use]
pub const fn source_of_byte(b: u8) -> Option<NameSource> {
    match b {
        1 => Some(NameSource::Sni),
        2 => Some(NameSource::Host),
        3 => Some(NameSource::Quic),
        4 => Some(NameSource::Dns),
        _ => None,
    }
}

/// Appends the key or value bytes of `name` (see the module docs).
pub fn encode_name(out: &mut Vec<u8>, name: NameId) {
    match name.get() {
        Some(n) => {
            out.push(source_byte(n.source));
            out.extend_from_slice(n.server_name.as_bytes());
        }
        None => out.push(0),
    }
}

/// Inverse of [`encode_name`] over the whole of `b`.
///
/// # Errors
/// On an empty slice, an unknown source byte or a name that is not UTF-8.
pub fn decode_name(b: &[u8], table: &'static str) -> Result<NameId, LayoutError> {
    let err = || LayoutError::Key {
        table,
        len: b.len(),
    };
    let (&first, rest) = b.split_first().ok_or_else(err)?;
    if first == 0 {
        return if rest.is_empty() {
            Ok(NameId::NONE)
        } else {
            Err(err())
        };
    }
    let source = source_of_byte(first).ok_or_else(err)?;
    let server_name = std::str::from_utf8(rest).map_err(|_| err())?.to_owned();
    Ok(NameId::of(&FlowName {
        server_name,
        source,
    }))
}

/// Writes a batch's flow name changes: a name puts, [`NameId::NONE`]
/// deletes.
///
/// # Errors
/// On storage errors.
pub fn write_flow_names(
    txn: &redb::WriteTransaction,
    changes: &[(FlowKey, NameId)],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut t = txn.open_table(FLOW_NAMES)?;
    for (key, name) in changes {
        let k = layout::encode_flow_key(key);
        if name.is_none() {
            t.remove(k.as_slice())?;
        } else {
            let mut v = Vec::with_capacity(32);
            encode_name(&mut v, *name);
            t.insert(k.as_slice(), v.as_slice())?;
        }
    }
    Ok(())
}

/// Every committed flow name (a file without the table has none).
///
/// # Errors
/// On storage errors or undecodable rows.
pub fn read_flow_names<T: redb::ReadableDatabase + ?Sized>(
    db: &T,
) -> Result<HashMap<FlowKey, NameId>, StoreError> {
    let txn = db.begin_read()?;
    read_flow_names_in(&txn)
}

/// [`read_flow_names`] in an open read transaction.
///
/// # Errors
/// On storage errors or undecodable rows.
pub fn read_flow_names_in(
    txn: &redb::ReadTransaction,
) -> Result<HashMap<FlowKey, NameId>, StoreError> {
    let t = match txn.open_table(FLOW_NAMES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = HashMap::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let key = layout::decode_flow_key(k.value())?;
        out.insert(key, decode_name(v.value(), "snapshot.names")?);
    }
    Ok(out)
}

impl crate::store::Store {
    /// Every committed flow name ([`FLOW_NAMES`]).
    ///
    /// # Errors
    /// On storage errors.
    pub fn flow_names(&mut self) -> Result<HashMap<FlowKey, NameId>, StoreError> {
        self.with_db(read_flow_names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_intern_and_round_trip() {
        let a = FlowName {
            server_name: "www.example.org".to_owned(),
            source: NameSource::Sni,
        };
        let b = FlowName {
            source: NameSource::Dns,
            ..a.clone()
        };
        let (ia, ib) = (NameId::of(&a), NameId::of(&b));
        assert_ne!(ia, ib, "the source is part of the id");
        assert_eq!(NameId::of(&a), ia);
        assert_eq!(ia.get().as_deref(), Some(&a));
        assert_eq!(NameId::NONE.get(), None);
        for id in [ia, ib, NameId::NONE] {
            let mut v = Vec::new();
            encode_name(&mut v, id);
            assert_eq!(decode_name(&v, "t").expect("decodes"), id);
        }
        let mut v = Vec::new();
        encode_name(&mut v, ia);
        assert_eq!(v[0], 1);
        assert_eq!(&v[1..], b"www.example.org");
        assert!(decode_name(&[], "t").is_err());
        assert!(decode_name(&[9, b'a'], "t").is_err());
        assert!(decode_name(&[0, b'a'], "t").is_err());
        assert!(decode_name(&[1, 0xff], "t").is_err());
    }
}
