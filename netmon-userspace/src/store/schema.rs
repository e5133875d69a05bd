//! Schema version and migrations.
//!
//! The version lives in [`layout::META`] under [`layout::META_SCHEMA`]
//! (`u32` BE). On open:
//! - no tables at all: a fresh file; every table is created and
//!   [`CURRENT`] written;
//! - a version below [`CURRENT`]: each step of [`MIGRATIONS`] from it runs,
//!   in the open's write transaction (all or nothing), and a
//!   [`DaemonEvent::Migration`] is returned for the caller to record;
//! - a version above [`CURRENT`]: refused ([`StoreError::NewerSchema`]): an
//!   older netmon must not write a layout it does not know;
//! - tables but no version: not a netmon store, refused.
use redb::ReadableDatabase as _;

use crate::store::StoreError;
use crate::store::layout;
use crate::store::types::DaemonEvent;

/// The layout this build writes.
///
/// - 1: first released layout.
/// - 2: the snapshot packed into chunks (`snapshot.v2`, see
///   [`layout::SNAPSHOT`]) carrying each flow's bytes not yet in the remote
///   rollups ([`crate::store::RemotePending`]); `REMOTE_*` rows are written
///   when an hour is over instead of every interval. Row layouts of every
///   other table are unchanged.
pub const CURRENT: u32 = 2;

/// One migration: from `.0` to `.0 + 1`.
pub type Migration = (u32, fn(&redb::WriteTransaction) -> Result<(), StoreError>);

/// Migration steps, in order. A step that changes a layout writes
/// `*.v<N+1>` tables from the old ones and deletes them (see [`layout`]'s
/// conventions).
pub const MIGRATIONS: &[Migration] = &[(1, v1_to_v2)];

/// 1 → 2: `snapshot.v1` (one row per flow) → `snapshot.v2` chunks. Flows
/// take slots in key order. Schema 1 wrote every delta to the remote
/// rollups at once, so nothing is pending; the remote tables keep their
/// layout and rows.
fn v1_to_v2(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use redb::ReadableTable as _;
    {
        let old = match txn.open_table(layout::SNAPSHOT_V1) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut new = txn.open_table(layout::SNAPSHOT)?;
        if let Some(old) = old {
            let mut chunk = 0u32;
            let mut offset = 0u32;
            let mut buf = Vec::new();
            for row in old.iter()? {
                let (k, v) = row?;
                let key = layout::decode_flow_key(k.value())?;
                let e: layout::SnapEntryV1 = layout::decode(v.value())?;
                let entry = crate::store::SnapEntry {
                    counters: e.counters,
                    first_boottime_ns: e.first_boottime_ns,
                    pending: crate::store::RemotePending::default(),
                };
                let off = u8::try_from(offset).map_err(|_| StoreError::NotNetmon)?;
                layout::encode_snap_record(&mut buf, off, &key, &entry);
                offset += 1;
                if offset == layout::SNAP_CHUNK {
                    new.insert(layout::encode_chunk_key(chunk).as_slice(), buf.as_slice())?;
                    buf.clear();
                    offset = 0;
                    chunk += 1;
                }
            }
            if !buf.is_empty() {
                new.insert(layout::encode_chunk_key(chunk).as_slice(), buf.as_slice())?;
            }
        }
    }
    match txn.delete_table(layout::SNAPSHOT_V1) {
        Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads the stored version, `None` for a file with no meta table.
fn stored_version(db: &redb::Database) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(layout::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(v) = meta.get(layout::META_SCHEMA)? else {
        return Ok(None);
    };
    let b = v.value();
    let bytes: [u8; 4] = b.try_into().map_err(|_| StoreError::NotNetmon)?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

/// Brings `db` to [`CURRENT`], creating every table. Returns the migration
/// events to record.
///
/// # Errors
/// [`StoreError::NewerSchema`], [`StoreError::NotNetmon`], storage errors.
pub fn prepare(db: &redb::Database) -> Result<Vec<DaemonEvent>, StoreError> {
    let found = stored_version(db)?;
    let mut events = Vec::new();
    let txn = db.begin_write()?;
    match found {
        Some(v) if v > CURRENT => {
            return Err(StoreError::NewerSchema {
                found: v,
                supported: CURRENT,
            });
        }
        Some(v) => {
            for (from, step) in MIGRATIONS.iter().filter(|(from, _)| *from >= v) {
                step(&txn)?;
                events.push(DaemonEvent::Migration {
                    from: *from,
                    to: from + 1,
                });
            }
        }
        None => {
            if txn.list_tables()?.next().is_some() {
                return Err(StoreError::NotNetmon);
            }
        }
    }
    {
        let mut meta = txn.open_table(layout::META)?;
        meta.insert(layout::META_SCHEMA, CURRENT.to_be_bytes().as_slice())?;
    }
    for def in layout::ALL_BYTE_TABLES {
        txn.open_table(def)?;
    }
    txn.commit()?;
    Ok(events)
}
