//! What `netmon daemon` does before its first drain, so that a start either
//! succeeds or leaves the machine as it found it.
//!
//! The order ([`crate::daemon::run`]): the config is read and the pin
//! directory locked ([`crate::kernel::pins::PinLock`]) before any file is
//! made; then the database ([`open_store`]), the socket and the kernel
//! side. [`Undo`] remembers every file and directory the start created and
//! removes them if the start fails before the first drain can run: a failed
//! start leaves no empty database and no socket behind.
//!
//! The database and its directory are private ([`crate::access`]): a new
//! database is created with the restricted mode before redb writes a byte,
//! an existing one is fixed once it is known to be a netmon database (a
//! foreign file named with `--db` is refused, never chmod-ed). A directory
//! is restricted when netmon creates it, and the default directory
//! (`/var/lib/netmon`) is fixed on every start; a directory chosen with
//! `--db` that already exists keeps its mode (the file's own mode protects
//! it).
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::access::{self, Kind};
use crate::config::Config;
use crate::store::{DaemonEvent, Store, StoreError};

/// Why the start failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store refused to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StartError {
    let path = path.to_owned();
    move |source| StartError::Io { op, path, source }
}

/// Files and directories a start created, removed on drop unless
/// [`Self::disarm`]ed (files first, then directories, newest first; a
/// directory is only removed if empty).
#[derive(Debug, Default)]
pub struct Undo {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Undo {
    /// Remembers a file the start created.
    pub fn file(&mut self, path: &Path) {
        self.files.push(path.to_owned());
    }

    /// Remembers the directories above `path` that do not exist yet (call
    /// before creating them).
    pub fn missing_parents(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if d.exists() {
                break;
            }
            missing.push(d.to_owned());
            dir = d.parent();
        }
        // Outermost first, so the innermost is removed first.
        self.dirs.extend(missing.into_iter().rev());
    }

    /// The start succeeded: keep everything.
    pub fn disarm(&mut self) {
        self.files.clear();
        self.dirs.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for f in self.files.iter().rev() {
            match std::fs::remove_file(f) {
                Ok(()) => tracing::info!(file = %f.display(), "failed start: removed"),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "failed start: cannot remove")
                }
            }
        }
        for d in self.dirs.iter().rev() {
            // Only if empty: something else may have put files there since.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Opens the daemon's store at `cfg.db` with the configured cache, private
/// to root and the netmon group (see the module docs). What it creates is
/// recorded in `undo`.
///
/// # Errors
/// The store's refusal (not redb, newer schema, ...) or a file operation
/// naming the path.
pub fn open_store(cfg: &Config, undo: &mut Undo) -> Result<(Store, Vec<DaemonEvent>), StartError> {
    let db = cfg.db.as_path();
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let before = undo.dirs.len();
        undo.missing_parents(db);
        let created = undo.dirs.len() > before;
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let default_dir = Path::new(crate::config::DEFAULT_DB).parent();
        if created || Some(dir) == default_dir {
            access::restrict(dir, Kind::Dir).map_err(io("restrict permissions of", dir))?;
        }
    }
    let new = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(Kind::File.mode(false))
        .open(db)
    {
        Ok(_) => {
            undo.file(db);
            true
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io("create", db)(e)),
    };
    // redb initialises an empty file; an existing one is checked first.
    let opened = Store::open_with_cache(db, cfg.retention, cfg.db_cache_bytes)?;
    let mode = access::restrict(db, Kind::File).map_err(io("restrict permissions of", db))?;
    tracing::info!(db = %db.display(), new, mode = format!("{mode:o}"), "store open");
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn config(db: PathBuf) -> Config {
        crate::config::FileConfig::default()
            .resolve(None, Some(db), &crate::kernel::KernelArgs::default())
            .unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_store_and_its_new_directory_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("a/b/netmon.redb");
        let mut undo = Undo::default();
        let (store, _) = open_store(&config(db.clone()), &mut undo).unwrap();
        drop(store);
        undo.disarm();
        drop(undo);
        assert_eq!(
            mode(&db) & 0o077 & !0o040,
            0,
            "no world bits, no group write"
        );
        assert_eq!(mode(db.parent().unwrap()) & 0o007, 0);
        assert!(std::fs::metadata(&db).unwrap().len() > 0, "a redb file");
    }

    #[test]
    fn an_existing_world_readable_store_is_fixed() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("netmon.redb");
        drop(Store::open(&db, crate::store::Retention::default()).unwrap());
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir_mode = mode(tmp.path());
        let mut undo = Undo::default();
        drop(open_store(&config(db.clone()), &mut undo).unwrap());
        assert_eq!(mode(&db) & 0o007, 0, "{:o}", mode(&db));
        // The temp directory was not created by netmon: left as it was.
        assert_eq!(mode(tmp.path()), dir_mode);
    }

    #[test]
    fn a_foreign_file_is_neither_opened_nor_chmod_ed() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("notes.txt");
        std::fs::write(&db, b"my notes, not a database").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut undo = Undo::default();
        let err = open_store(&config(db.clone()), &mut undo).unwrap_err();
        let text = crate::api::handler::chain_text(&err);
        assert!(text.contains("not a netmon database"), "{text}");
        drop(undo);
        assert_eq!(mode(&db), 0o644);
        assert_eq!(std::fs::read(&db).unwrap(), b"my notes, not a database");
    }

    #[test]
    fn undo_removes_what_a_failed_start_created() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("new/dir/netmon.redb");
        let sock = tmp.path().join("run/netmon.sock");
        let mut undo = Undo::default();
        drop(open_store(&config(db.clone()), &mut undo).unwrap());
        undo.missing_parents(&sock);
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        std::fs::write(&sock, b"").unwrap();
        undo.file(&sock);
        drop(undo);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
