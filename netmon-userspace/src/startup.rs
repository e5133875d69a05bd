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
//! A new database is built under a temporary name and linked into place
//! whole ([`create_store`]), so a crash during its creation never leaves a
//! file the next start cannot open.
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
    let new = !db.exists() && create_store(cfg, undo)?;
    // An existing file is checked (redb magic, schema) before its mode is.
    let opened = Store::open_with_cache(db, cfg.retention, cfg.db_cache_bytes)?;
    let mode = access::restrict(db, Kind::File).map_err(io("restrict permissions of", db))?;
    tracing::info!(db = %db.display(), new, mode = format!("{mode:o}"), "store open");
    Ok(opened)
}

/// The name a new database is built under, beside `db`, by process `pid`.
fn building_name(db: &Path, pid: u32) -> PathBuf {
    let name = db.file_name().unwrap_or_default().to_string_lossy();
    db.with_file_name(format!(".{name}.new-{pid}"))
}

/// Creates the database at `cfg.db` whole, or not at all: redb initialises
/// a file in several writes and marks it valid last, so a crash (SIGKILL,
/// power) during the first creation in place would leave a file that no
/// later start could open. The store is built under [`building_name`] with
/// its final mode, then linked into place (`link(2)` never replaces: a
/// database another process created meanwhile wins). Files left by a
/// builder that died are removed. Returns whether this call created it.
fn create_store(cfg: &Config, undo: &mut Undo) -> Result<bool, StartError> {
    let db = cfg.db.as_path();
    remove_dead_builders(db);
    let tmp = building_name(db, std::process::id());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(Kind::File.mode(false))
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    let built = Store::open_with_cache(&tmp, cfg.retention, cfg.db_cache_bytes)
        .map_err(StartError::from)
        .and_then(|(store, _)| {
            drop(store);
            access::restrict(&tmp, Kind::File).map_err(io("restrict permissions of", &tmp))
        })
        .and_then(|_| match std::fs::hard_link(&tmp, db) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("link the new database to", db)(e)),
        });
    let _ = std::fs::remove_file(&tmp);
    if matches!(built, Ok(true)) {
        undo.file(db);
    }
    built
}

/// Removes [`building_name`] files of processes that no longer exist.
fn remove_dead_builders(db: &Path) {
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let prefix = building_name(db, 0);
    let prefix = prefix
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .trim_end_matches('0')
        .to_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(file = %e.path().display(), "removing a database a crashed start left half-built");
            let _ = std::fs::remove_file(e.path());
        }
    }
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
    fn a_half_built_database_of_a_dead_start_is_removed_and_never_used() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("netmon.redb");
        // What a SIGKILL during redb's first initialisation leaves: bytes,
        // no magic. pid 0 never names a live process in /proc.
        let dead = building_name(&db, 0);
        std::fs::write(&dead, vec![0u8; 4096]).unwrap();
        let mut undo = Undo::default();
        drop(open_store(&config(db.clone()), &mut undo).unwrap());
        undo.disarm();
        assert!(!dead.exists(), "removed");
        let names = entries(tmp.path());
        assert_eq!(names, vec!["netmon.redb".to_owned()], "nothing else left");
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
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
