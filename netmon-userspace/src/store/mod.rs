//! The history store: one redb file holding the committed snapshot, interval
//! samples, rollups, processes and daemon events.
//!
//! - [`layout`]: every table and the byte layout of its keys and values;
//! - [`schema`]: version check and migrations on open;
//! - [`rollup`]: tiers, and how a [`Batch`] is added to all of them;
//! - [`retention`]: bounded purge;
//! - [`compact`]: giving free pages back after the purge;
//! - [`query`]: the read API (plain data, no formatting);
//! - [`unit`]: service/container names (destination classes and service
//!   ports are in [`crate::model`]).
//!
//! Invariants this module keeps:
//! 1. [`Store::commit`] writes a whole [`Batch`] — interval row, every
//!    rollup tier, flushed remote pieces, processes, snapshot chunks,
//!    events — in one write transaction, or nothing. (Remote rollups lag:
//!    their bytes wait in the snapshot entries until flushed, see
//!    [`RemotePending`]; a reader adds the committed pending pieces.) A [`Batch::lazy`] commit is made with
//!    [`redb::Durability::None`]: redb writes its pages but not the file
//!    header, and frees no page until the next durable commit, so after a
//!    crash (process or machine) the file opens at the last durable commit,
//!    whole; a lazy commit is never partly visible.
//! 2. The store never overwrites a file that is not a redb file: open checks
//!    the magic bytes first ([`StoreError::NotRedb`]).
//! 3. After an I/O error (disk full) redb refuses further writes on that
//!    handle; the store drops it and reopens on the next call, so a later
//!    commit succeeds once space returns. The failed transaction left the
//!    file as of the last successful commit.
pub mod compact;
pub mod devcount;
pub mod ifcount;
pub mod layout;
pub mod names;
pub mod quality;
pub mod query;
pub mod retention;
pub mod rollup;
pub mod schema;
pub mod snapchunks;
pub mod sums;
pub mod types;
pub mod unit;

/// Moved to [`crate::model`]; re-exported at their old paths.
pub use crate::model::{class, service};

use std::io::Read as _;
use std::path::{Path, PathBuf};

use netmon_common::{FlowKey, OverflowCounters};
use redb::{ReadableDatabase as _, ReadableTable as _};

pub use class::DestClass;
pub use retention::{PurgeReport, Retention, TierRows};
pub use rollup::Tier;
pub use service::{ConnDir, service_of};
pub use snapchunks::SnapshotChunks;
pub use types::{
    Batch, DaemonEvent, OVERFLOW, OVERFLOW_COMM, ProcessRecord, QualitySample, RemoteKey,
    RemotePending, SnapEntry, TimeMs, TimeRange, Traffic, UNATTRIBUTED, UNATTRIBUTED_COMM,
    pseudo_process,
};
pub use unit::unit_of_cgroup;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file at the db path is not a redb file; it was left untouched.
    #[error("{} is not a netmon database (no redb header); refusing to open or overwrite it", path.display())]
    NotRedb {
        /// The file.
        path: PathBuf,
    },
    /// A redb file without netmon's schema version.
    #[error("the redb file has tables but no netmon schema version: not a netmon database")]
    NotNetmon,
    /// Written by a newer netmon.
    #[error(
        "schema version {found} is newer than this netmon supports ({supported}); upgrade netmon"
    )]
    NewerSchema {
        /// Version in the file.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// Written by an older netmon and opened read-only: a reader does not
    /// migrate.
    #[error(
        "schema version {found} is older than this netmon's: start `netmon daemon` once to migrate it, then query again"
    )]
    OlderSchema {
        /// Version in the file.
        found: u32,
    },
    /// Opened read-only, the file needs the recovery redb runs after a
    /// crash, which writes: a reader does not.
    #[error(
        "the database was not closed cleanly (the daemon stopped abruptly): start `netmon daemon` once to recover it, then query again"
    )]
    NeedsRecovery,
    /// Opening failed; names the file.
    #[error("cannot open store {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// A file system operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// redb failed.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// Stored bytes did not decode.
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
}

macro_rules! redb_into {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
redb_into!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl StoreError {
    /// True for I/O failures (disk full, EIO): the handle is dropped and
    /// reopened on the next call.
    #[must_use]
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            Self::Db(redb::Error::Io(_) | redb::Error::PreviousIo) | Self::Io { .. }
        )
    }
}

/// First bytes of every redb file (redb's `MAGICNUMBER`, from its file
/// format documentation).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// redb's page cache when none is configured: small, because a monitoring
/// agent must stay small (redb's own default is 1 GiB, and the cache grows
/// toward its limit as the file is read). The drain touches a few pages per
/// interval; queries over long windows read more, and are slower with a
/// smaller cache, not wrong. Configurable with `db_cache_mib`
/// ([`crate::config`]).
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// redb's page cache of a read-only open ([`Store::open_read_only`]: a
/// query command reading the file while no daemon runs). A query reads
/// each page it needs about once; redb's own default (1 GiB) would let one
/// `--since 30d` question keep the pages it read for as long as it runs.
pub const READ_ONLY_CACHE_BYTES: usize = 4 << 20;

/// The history store.
pub struct Store {
    path: PathBuf,
    /// `None` after an I/O error until reopened (invariant 3).
    db: Option<redb::Database>,
    /// Set instead of `db` by [`Store::open_read_only`].
    read_only: Option<redb::ReadOnlyDatabase>,
    retention: Retention,
    /// redb's cache limit, kept for reopening.
    cache_bytes: usize,
    /// Readers' sums of closed segments ([`sums`]), told of every commit.
    sums: sums::SegmentSums,
    /// The quality rows not yet rolled up, as committed through `db`
    /// (`None`: not loaded; see [`Store::with_quality`]).
    quality: Option<quality::Pending>,
    /// Drain time of the last look at the free pages ([`compact`]).
    compact_checked: Option<TimeMs>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .finish()
    }
}

/// One flow of the committed snapshot, in its slot (see
/// [`layout::SNAPSHOT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapRecord {
    /// Slot number (chunk × [`layout::SNAP_CHUNK`] + offset).
    pub slot: u32,
    /// The flow.
    pub key: FlowKey,
    /// Its committed state.
    pub entry: SnapEntry,
}

/// The committed drain state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per flow, in slot order.
    pub flows: Vec<SnapRecord>,
    /// Overflow counters.
    pub overflow: OverflowCounters,
}

impl Store {
    /// Opens (or creates) the store at `path`, migrating an older schema.
    /// Returns the migration events, for the caller to record.
    ///
    /// # Errors
    /// [`StoreError::Open`] naming the file, around [`StoreError::NotRedb`],
    /// [`StoreError::NewerSchema`], [`StoreError::NotNetmon`] or a redb error.
    pub fn open(path: &Path, retention: Retention) -> Result<(Self, Vec<DaemonEvent>), StoreError> {
        Self::open_with_cache(path, retention, DEFAULT_CACHE_BYTES)
    }

    /// [`Self::open`] with redb's page cache limited to `cache_bytes`.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_with_cache(
        path: &Path,
        retention: Retention,
        cache_bytes: usize,
    ) -> Result<(Self, Vec<DaemonEvent>), StoreError> {
        let wrap = |e: StoreError| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        };
        let db = open_db(path, cache_bytes).map_err(wrap)?;
        let events = schema::prepare(&db).map_err(wrap)?;
        Ok((
            Self {
                path: path.to_owned(),
                db: Some(db),
                read_only: None,
                retention,
                cache_bytes,
                sums: sums::SegmentSums::default(),
                quality: None,
                compact_checked: None,
            },
            events,
        ))
    }

    /// Opens an existing store for reading only: never creates, migrates
    /// or writes the file (what query commands use). Every write method
    /// fails on such a store.
    ///
    /// # Errors
    /// [`StoreError::Open`] naming the file, around an I/O error (missing
    /// file, a directory), [`StoreError::NotRedb`] (also for an empty
    /// file), [`StoreError::NotNetmon`], [`StoreError::NewerSchema`],
    /// [`StoreError::OlderSchema`] or a redb error (file in use).
    pub fn open_read_only(path: &Path, retention: Retention) -> Result<Self, StoreError> {
        let wrap = |e: StoreError| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        };
        let io = |op, source| StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        };
        let mut f = std::fs::File::open(path)
            .map_err(|e| io("open", e))
            .map_err(wrap)?;
        if f.metadata()
            .map_err(|e| io("stat", e))
            .map_err(wrap)?
            .is_dir()
        {
            return Err(wrap(io(
                "open",
                std::io::Error::other("is a directory, not a database file"),
            )));
        }
        let mut head = Vec::with_capacity(REDB_MAGIC.len());
        f.by_ref()
            .take(REDB_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|e| io("read", e))
            .map_err(wrap)?;
        if head != REDB_MAGIC {
            return Err(wrap(StoreError::NotRedb {
                path: path.to_owned(),
            }));
        }
        let db = redb::Builder::new()
            .set_cache_size(READ_ONLY_CACHE_BYTES)
            .open_read_only(path)
            .map_err(|e| match e {
                redb::DatabaseError::RepairAborted => StoreError::NeedsRecovery,
                e => StoreError::Db(e.into()),
            })
            .map_err(wrap)?;
        schema::check_current(&db).map_err(wrap)?;
        Ok(Self {
            path: path.to_owned(),
            db: None,
            read_only: Some(db),
            retention,
            cache_bytes: READ_ONLY_CACHE_BYTES,
            sums: sums::SegmentSums::default(),
            quality: None,
            compact_checked: None,
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Retention in force.
    #[must_use]
    pub const fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Size of the file in bytes.
    ///
    /// # Errors
    /// When the file cannot be stat'ed.
    pub fn file_size(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|source| StoreError::Io {
                op: "stat",
                path: self.path.clone(),
                source,
            })
    }

    /// A handle to read with: the read-only one, else [`Store::db`].
    pub(crate) fn reader(&mut self) -> Result<&dyn redb::ReadableDatabase, StoreError> {
        if self.read_only.is_some() {
            return self
                .read_only
                .as_ref()
                .map(|d| d as &dyn redb::ReadableDatabase)
                .ok_or(StoreError::NotNetmon);
        }
        Ok(self.db()?)
    }

    /// The open handle, reopening after an I/O error.
    pub(crate) fn db(&mut self) -> Result<&redb::Database, StoreError> {
        if self.read_only.is_some() {
            return Err(StoreError::Io {
                op: "write",
                path: self.path.clone(),
                source: std::io::Error::other("opened read-only"),
            });
        }
        if self.db.is_none() {
            // What the old handle committed lazily may be gone.
            self.quality = None;
            let db = open_db(&self.path, self.cache_bytes)?;
            schema::prepare(&db)?;
            self.db = Some(db);
        }
        self.db.as_ref().ok_or(StoreError::NotNetmon)
    }

    /// Runs `f` on the handle; drops the handle after an I/O error.
    fn with_db<T>(
        &mut self,
        f: impl FnOnce(&redb::Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = f(self.db()?);
        if let Err(e) = &result
            && e.is_io()
        {
            self.db = None;
        }
        result
    }

    /// [`Self::with_db`] with the pending quality rows ([`quality::Pending`])
    /// for `f` to read and change in its transaction: kept when `f`
    /// succeeds (its transaction committed), dropped otherwise (reloaded
    /// from the file by the next caller).
    fn with_quality<T>(
        &mut self,
        f: impl FnOnce(&redb::Database, &mut Option<quality::Pending>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Open (or reopen, which drops the held rows) before taking them.
        self.db()?;
        let mut pending = self.quality.take();
        let result = self.with_db(|db| f(db, &mut pending));
        if result.is_ok() {
            self.quality = pending;
        }
        result
    }

    /// Reads the committed snapshot.
    ///
    /// # Errors
    /// On storage errors.
    pub fn load_snapshot(&mut self) -> Result<Snapshot, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let mut flows = Vec::new();
            let names = names::read_flow_names_in(&txn)?;
            read_snapshot(&txn, |slot, key, mut entry| {
                entry.pending.name = names.get(&key).copied().unwrap_or_default();
                flows.push(SnapRecord { slot, key, entry });
            })?;
            let meta = txn.open_table(layout::META)?;
            let overflow = match meta.get(layout::META_OVERFLOW)? {
                Some(v) => layout::decode(v.value())?,
                None => OverflowCounters::default(),
            };
            Ok(Snapshot { flows, overflow })
        })
    }

    /// Commits `batch` atomically (invariant 1).
    ///
    /// # Errors
    /// On storage errors; nothing of the batch is then stored.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // Before the write: a failed commit may still have written rows.
        self.sums.written(batch.ts_ms);
        self.with_quality(|db, pending| {
            let mut txn = db.begin_write()?;
            if batch.lazy {
                txn.set_durability(redb::Durability::None)
                    .map_err(|e| StoreError::Db(e.into()))?;
            }
            rollup::apply(&txn, batch)?;
            quality::Pending::of(pending, &txn)?.commit(&txn, batch.ts_ms, &batch.quality)?;
            write_processes(&txn, batch)?;
            write_snapshot(&txn, batch)?;
            write_events(&txn, batch.ts_ms, &batch.events)?;
            ifcount::write(&txn, batch.ts_ms, &batch.ifcount)?;
            names::write_flow_names(&txn, &batch.flow_names)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Records events alone.
    ///
    /// # Errors
    /// On storage errors.
    pub fn record_events(
        &mut self,
        ts_ms: TimeMs,
        events: Vec<DaemonEvent>,
    ) -> Result<(), StoreError> {
        self.commit(&Batch {
            ts_ms,
            events,
            ..Batch::default()
        })
    }

    /// Deletes up to `max_rows` rows older than retention at `now`, in one
    /// transaction, and records the cutoffs so queries know what is gone.
    ///
    /// # Errors
    /// On storage errors.
    pub fn purge(&mut self, now: TimeMs, max_rows: u64) -> Result<PurgeReport, StoreError> {
        let retention = self.retention;
        self.with_quality(|db, pending| {
            let txn = db.begin_write()?;
            if let Some(cutoff) = retention.cutoff(Tier::Interval, now) {
                quality::Pending::of(pending, &txn)?.flush_before(&txn, cutoff)?;
            }
            let report = retention::purge(&txn, &retention, now, max_rows)?;
            {
                let mut meta = txn.open_table(layout::META)?;
                for tier in Tier::ALL {
                    if let Some(cutoff) = retention.cutoff(tier, now) {
                        raise_time(&mut meta, &purged_key(tier), cutoff)?;
                    }
                }
            }
            txn.commit()?;
            Ok(report)
        })
    }

    /// The readers' sums of closed segments ([`sums`]).
    pub fn sums_mut(&mut self) -> &mut sums::SegmentSums {
        &mut self.sums
    }

    /// Rows and oldest time of every tier, for `netmon status`.
    ///
    /// # Errors
    /// On storage errors.
    pub fn tier_rows(&mut self) -> Result<Vec<TierRows>, StoreError> {
        let txn = self.reader()?.begin_read()?;
        retention::tier_rows(&txn)
    }

    /// Bytes per tier ([`retention::tier_bytes`]), for the disk benchmark.
    ///
    /// # Errors
    /// On storage errors.
    pub fn tier_bytes(&mut self) -> Result<Vec<(Tier, u64)>, StoreError> {
        let txn = self.reader()?.begin_read()?;
        retention::tier_bytes(&txn)
    }

    /// Where the size cap last cut `tier`: its rows before this time were
    /// deleted to keep the file under `max_size` (`None`: never).
    ///
    /// # Errors
    /// On storage errors.
    pub fn size_purged_before(&mut self, tier: Tier) -> Result<Option<TimeMs>, StoreError> {
        let txn = self.reader()?.begin_read()?;
        let meta = txn.open_table(layout::META)?;
        Ok(meta
            .get(size_purged_key(tier).as_str())?
            .map(|v| decode_be_u64(v.value())))
    }

    /// Keeps the file under `[retention] max_size`: when it has passed
    /// [`retention::SIZE_HIGH_WATER`] of it, deletes the oldest quarter of
    /// the finest tier ([`retention::size_cut`]), records the cut, and
    /// compacts the file. Returns the tier, cutoff and rows deleted when it
    /// cut; the daemon calls it again at its next purge while the file is
    /// still over.
    ///
    /// # Errors
    /// On storage errors. A compaction that cannot run now (a reader holds
    /// a transaction) is not an error: the freed pages are reused and the
    /// next call compacts.
    pub fn enforce_max_size(
        &mut self,
        now: TimeMs,
    ) -> Result<Option<(Tier, TimeMs, u64)>, StoreError> {
        let Some(max) = self.retention.max_size else {
            return Ok(None);
        };
        let (num, den) = retention::SIZE_HIGH_WATER;
        if self.file_size()? <= max / den * num {
            return Ok(None);
        }
        let tiers = self.tier_rows()?;
        let Some((tier, cutoff)) = retention::size_cut(&tiers, now) else {
            return Ok(None);
        };
        let deleted = self.with_quality(|db, pending| {
            let txn = db.begin_write()?;
            if tier == Tier::Interval {
                quality::Pending::of(pending, &txn)?.flush_before(&txn, cutoff)?;
            }
            let deleted = retention::delete_before(&txn, tier, cutoff)?;
            {
                let mut meta = txn.open_table(layout::META)?;
                for key in [purged_key(tier), size_purged_key(tier)] {
                    raise_time(&mut meta, &key, cutoff)?;
                }
            }
            txn.commit()?;
            Ok(deleted)
        })?;
        if let Err(e) = self.compact() {
            // The cut is committed; the freed pages are reused meanwhile.
            tracing::warn!(error = %e, "compaction after the size cap failed");
        }
        Ok(Some((tier, cutoff, deleted)))
    }

    /// Rows of `tier` older than this may have been purged (0: none were).
    ///
    /// # Errors
    /// On storage errors.
    pub fn purged_before(&mut self, tier: Tier) -> Result<TimeMs, StoreError> {
        let txn = self.reader()?.begin_read()?;
        let meta = txn.open_table(layout::META)?;
        Ok(meta
            .get(purged_key(tier).as_str())?
            .map(|v| decode_be_u64(v.value()))
            .unwrap_or(0))
    }
}

impl Store {
    /// The first minute the remote minute tier holds whole
    /// ([`layout::META_REMOTE_MINUTE_FROM`]; 0: every minute it covers).
    ///
    /// # Errors
    /// On storage errors.
    pub fn remote_minute_from(&mut self) -> Result<TimeMs, StoreError> {
        let txn = self.reader()?.begin_read()?;
        let meta = txn.open_table(layout::META)?;
        Ok(meta
            .get(layout::META_REMOTE_MINUTE_FROM)?
            .map(|v| decode_be_u64(v.value()))
            .unwrap_or(0))
    }
}

/// Sets the time at `key` of [`layout::META`] to `ts` unless it is already
/// later (cutoffs only move forward).
fn raise_time(
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    ts: TimeMs,
) -> Result<(), StoreError> {
    let old = meta
        .get(key)?
        .map(|v| decode_be_u64(v.value()))
        .unwrap_or(0);
    if ts > old {
        meta.insert(key, ts.to_be_bytes().as_slice())?;
    }
    Ok(())
}

/// [`layout::META`] key of the size cap's last cut of a tier:
/// `"size_purged_before.<tier>"` → `u64` BE ms.
fn size_purged_key(tier: Tier) -> String {
    format!("size_purged_before.{}", tier.name())
}

/// [`layout::META`] key of a tier's purge cutoff: `"purged_before.<tier>"` →
/// `u64` BE ms. Rows with an older time key may be gone.
fn purged_key(tier: Tier) -> String {
    format!("purged_before.{}", tier.name())
}

fn decode_be_u64(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Opens or creates the redb file, refusing non-redb files (invariant 2).
fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut head = Vec::with_capacity(REDB_MAGIC.len());
            f.by_ref()
                .take(REDB_MAGIC.len() as u64)
                .read_to_end(&mut head)
                .map_err(|source| StoreError::Io {
                    op: "read",
                    path: path.to_owned(),
                    source,
                })?;
            if !head.is_empty() && head != REDB_MAGIC {
                return Err(StoreError::NotRedb {
                    path: path.to_owned(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    op: "create directory",
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        Err(source) => {
            return Err(StoreError::Io {
                op: "open",
                path: path.to_owned(),
                source,
            });
        }
    }
    Ok(redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)?)
}

fn write_processes(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if batch.processes.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(layout::PROCESSES)?;
    let ts = batch.ts_ms;
    for info in &batch.processes {
        let key = layout::encode_process(info.id);
        let old: Option<ProcessRecord> = match table.get(key.as_slice())? {
            Some(v) => Some(serde_json::from_slice(v.value()).map_err(layout::LayoutError::from)?),
            None => None,
        };
        // Same process (pid and start time): what an earlier drain knew and
        // this one does not (the process exited, the daemon restarted) is
        // kept, never replaced by null.
        let info = match &old {
            Some(r) => info.clone().with_missing_from(&r.info),
            None => info.clone(),
        };
        let unit = info.cgroup.as_deref().and_then(unit_of_cgroup);
        let new = match old {
            None => ProcessRecord {
                info,
                unit,
                first_seen_ms: ts,
                last_seen_ms: ts,
            },
            Some(r)
                if r.info == info
                    && Tier::Minute.bucket(ts) <= Tier::Minute.bucket(r.last_seen_ms) =>
            {
                continue;
            }
            Some(r) => ProcessRecord {
                info,
                unit,
                first_seen_ms: r.first_seen_ms.min(ts),
                last_seen_ms: r.last_seen_ms.max(ts),
            },
        };
        let json = serde_json::to_vec(&new).map_err(layout::LayoutError::from)?;
        table.insert(key.as_slice(), json.as_slice())?;
    }
    Ok(())
}

/// Calls `f(slot, key, entry)` for every flow of the committed snapshot
/// (both halves of each chunk, see [`layout::SNAPSHOT`]).
///
/// # Errors
/// On storage errors, or when the two tables disagree.
pub(crate) fn read_snapshot(
    txn: &redb::ReadTransaction,
    mut f: impl FnMut(u32, FlowKey, SnapEntry),
) -> Result<(), StoreError> {
    let keys = txn.open_table(layout::SNAPSHOT_KEYS)?;
    let hot = txn.open_table(layout::SNAPSHOT)?;
    let mut hot_rows = hot.iter()?;
    for row in keys.iter()? {
        let (k, v) = row?;
        let chunk = layout::decode_chunk_key(k.value())?;
        let Some(h) = hot_rows.next() else {
            return Err(layout::LayoutError::Chunk {
                chunk,
                reason: "no counters row",
            }
            .into());
        };
        let (hk, hv) = h?;
        if layout::decode_chunk_key(hk.value())? != chunk {
            return Err(layout::LayoutError::Chunk {
                chunk,
                reason: "counters row of another chunk",
            }
            .into());
        }
        layout::decode_snap_chunk(chunk, v.value(), hv.value(), &mut f)?;
    }
    if let Some(h) = hot_rows.next() {
        let (hk, _) = h?;
        return Err(layout::LayoutError::Chunk {
            chunk: layout::decode_chunk_key(hk.value())?,
            reason: "counters row without keys",
        }
        .into());
    }
    Ok(())
}

fn write_chunks(
    txn: &redb::WriteTransaction,
    def: layout::Bytes,
    chunks: &[(u32, Vec<u8>)],
) -> Result<(), StoreError> {
    if chunks.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(def)?;
    // The drain hands them in chunk order (see rollup::add_all on why order
    // matters).
    for (chunk, bytes) in chunks {
        let key = layout::encode_chunk_key(*chunk);
        if bytes.is_empty() {
            table.remove(key.as_slice())?;
        } else {
            table.insert(key.as_slice(), bytes.as_slice())?;
        }
    }
    Ok(())
}

fn write_snapshot(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    write_chunks(txn, layout::SNAPSHOT, &batch.snapshot_chunks)?;
    write_chunks(txn, layout::SNAPSHOT_KEYS, &batch.snapshot_key_chunks)?;
    if let Some(o) = &batch.overflow_snapshot {
        let mut meta = txn.open_table(layout::META)?;
        meta.insert(
            layout::META_OVERFLOW,
            layout::encode_overflow(o)?.as_slice(),
        )?;
    }
    Ok(())
}

fn write_events(
    txn: &redb::WriteTransaction,
    ts: TimeMs,
    events: &[DaemonEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(layout::EVENTS)?;
    let first = layout::encode_event_key(ts, 0);
    let last = layout::encode_event_key(ts, u32::MAX);
    let mut seq = match table.range(first.as_slice()..=last.as_slice())?.next_back() {
        Some(row) => {
            let (k, _) = row?;
            let b = k.value();
            u32::from_be_bytes([b[8], b[9], b[10], b[11]]).saturating_add(1)
        }
        None => 0,
    };
    for event in events {
        let json = serde_json::to_vec(event).map_err(layout::LayoutError::from)?;
        table.insert(
            layout::encode_event_key(ts, seq).as_slice(),
            json.as_slice(),
        )?;
        seq = seq.saturating_add(1);
    }
    Ok(())
}
