//! Compaction: giving the file's free pages back to the file system.
//!
//! redb reuses the pages a purge frees but never shrinks a file by itself,
//! and it grows a file below 4 GiB by doubling it, so a history at steady
//! state (as much purged as written) sits in a file up to twice the pages
//! it uses (measured before this module: 50 always-active processes, 92 MB
//! of rows in a 169 MB file; see `benches/disk.rs`).
//! [`Store::compact_if_sparse`], at most once per [`CHECK_EVERY`] of drain
//! time, counts the pages in use and compacts
//! ([`redb::Database::compact`]) when the free space is at least [`SPARSE`]
//! of the file and [`MIN_FREE`] bytes. The daemon does not call it after
//! its purges: measured with the disk bench, the file was back above its
//! uncompacted size within the next hour at 1 s (redb doubles the file
//! again), and a compaction cannot be interrupted (README, disk figures);
//! the disk bench does, to measure it.
//!
//! Exclusive access: redb compacts only while no read transaction is
//! live. The daemon calls [`Store::compact`] (through the size cap) from
//! its loop holding the store's lock,
//! which every query thread takes for its whole read, so none is; a read
//! transaction held elsewhere makes the compaction wait for the next
//! check (an info line, not an error). Cost and bounds: counting the pages
//! reads every page once, and compaction moves the pages above the used
//! size into the free ones below it, several passes of commits over pages
//! in use; queries and the next drain wait for it (the drain then takes
//! the whole gap's deltas: nothing is lost, drain invariant 6). Measured
//! with the disk benchmark: see the README's disk figures. The size cap
//! ([`crate::store::Store::enforce_max_size`]) compacts through the same
//! [`Store::compact`].
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError, TimeMs};

/// Shortest drain time between two looks at the free pages.
pub const CHECK_EVERY: TimeMs = 3_600_000;

/// Compact when the free pages are at least this share of the file
/// (numerator, denominator).
pub const SPARSE: (u64, u64) = (1, 4);

/// ... and at least this many bytes.
pub const MIN_FREE: u64 = 16 << 20;

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// File size before, bytes.
    pub before: u64,
    /// Bytes of the pages in use before.
    pub in_use: u64,
    /// File size after, bytes.
    pub after: u64,
    /// How long it took (counting the pages and compacting).
    pub took: Duration,
}

/// True when `file` bytes holding `in_use` bytes of pages are worth
/// compacting ([`SPARSE`], [`MIN_FREE`]).
#[must_use]
pub const fn is_sparse(file: u64, in_use: u64) -> bool {
    let free = file.saturating_sub(in_use);
    free >= MIN_FREE && free.saturating_mul(SPARSE.1) >= file.saturating_mul(SPARSE.0)
}

impl Store {
    /// Bytes of the pages in use (redb's allocated pages), read in a write
    /// transaction that is then aborted. Reads every page of the file.
    ///
    /// # Errors
    /// On storage errors.
    pub fn pages_in_use(&mut self) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            Ok(stats.allocated_pages() * stats.page_size() as u64)
        })
    }

    /// Compacts the file ([`redb::Database::compact`]). Returns false when
    /// it could not run now (a read transaction is live: logged at info,
    /// the freed pages are reused meanwhile) or had nothing to move.
    ///
    /// # Errors
    /// On storage errors.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db()?;
        let Some(db) = self.db.as_mut() else {
            return Ok(false);
        };
        match db.compact() {
            Ok(moved) => Ok(moved),
            Err(redb::CompactionError::TransactionInProgress) => {
                tracing::info!("compaction deferred: a read transaction is live");
                Ok(false)
            }
            Err(e) => {
                let e = StoreError::Db(e.into());
                if e.is_io() {
                    self.db = None;
                }
                Err(e)
            }
        }
    }

    /// At drain time `now`: when [`CHECK_EVERY`] has passed
    /// since the last look (or none was made by this handle), counts the
    /// pages in use and compacts if the file [`is_sparse`].
    ///
    /// # Errors
    /// On storage errors.
    pub fn compact_if_sparse(&mut self, now: TimeMs) -> Result<Option<Compaction>, StoreError> {
        if self
            .compact_checked
            .is_some_and(|t| now >= t && now - t < CHECK_EVERY)
        {
            return Ok(None);
        }
        self.compact_checked = Some(now);
        let started = Instant::now();
        let before = self.file_size()?;
        if before < MIN_FREE {
            return Ok(None);
        }
        let in_use = self.pages_in_use()?;
        if !is_sparse(before, in_use) || !self.compact()? {
            return Ok(None);
        }
        Ok(Some(Compaction {
            before,
            in_use,
            after: self.file_size()?,
            took: started.elapsed(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_needs_a_quarter_and_sixteen_mib_free() {
        const MB: u64 = 1 << 20;
        assert!(is_sparse(169 * MB, 92 * MB));
        assert!(!is_sparse(169 * MB, 150 * MB), "an eighth free");
        assert!(!is_sparse(20 * MB, 8 * MB), "12 MiB free");
        assert!(is_sparse(64 * MB, 48 * MB));
        assert!(!is_sparse(10 * MB, 20 * MB), "more in use than the file");
    }
}
