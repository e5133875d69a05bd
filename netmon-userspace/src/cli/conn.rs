//! How a history command reaches the data: with `--db FILE`, that file and
//! nothing else; otherwise the daemon's socket first and, when no daemon
//! answers, the database file directly (redb lets a reader open a file only
//! while no daemon holds it). The file is opened read-only: a query never
//! creates, migrates or writes a file. Anything else: one line saying what
//! is wrong and what to do.
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;

use crate::api::client::Client;
use crate::api::{self, ApiError, handler};
use crate::query::AppRules;
use crate::query::window::{TimeArg, check_window, now_ms};
use crate::store::{Store, StoreError};
use crate::wire::Request;

/// Where to find the daemon or the database.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnArgs {
    /// Daemon socket.
    #[arg(long, value_name = "PATH", default_value = api::DEFAULT_SOCKET, env = "NETMON_SOCKET")]
    pub socket: PathBuf,
    /// Read this database file (read-only), not the daemon. Without it: the
    /// daemon on --socket, else the config file's `db`, else
    /// /var/lib/netmon/netmon.redb.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Config file, for `db` and the `[apps]` rules when reading the
    /// database directly (default /etc/netmon/config.toml, may be missing).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A time window.
#[derive(Clone, Debug, clap::Args)]
pub struct WindowArgs {
    /// Start: a duration before now (1h, 24h, 7d, 30d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "24h")]
    pub since: TimeArg,
    /// End (exclusive), same forms; default now.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<TimeArg>,
}

impl WindowArgs {
    /// `(from, until)` in unix ms.
    ///
    /// # Errors
    /// A [`crate::cli::UsageError`] (exit 2) for `--until` before `--since`
    /// or `--since` in the future.
    pub fn resolve(&self) -> anyhow::Result<(u64, u64)> {
        let now = now_ms();
        let until = self.until.map_or(now, |u| u.resolve(now));
        let from = self.since.resolve(now);
        check_window(from, until, now).map_err(|e| crate::cli::UsageError(e.to_string()))?;
        Ok((from, until))
    }
}

/// A connection to the data.
#[derive(Debug)]
pub enum Backend {
    /// Through the daemon.
    Daemon(Client),
    /// The database file, read in this process.
    File {
        /// The store.
        store: Box<Store>,
        /// App rules from the config file.
        apps: AppRules,
    },
}

fn is_locked(e: &StoreError) -> bool {
    match e {
        StoreError::Open { source, .. } => is_locked(source),
        StoreError::Db(redb::Error::DatabaseAlreadyOpen) => true,
        StoreError::Db(redb::Error::Io(io)) => io.kind() == ErrorKind::WouldBlock,
        _ => false,
    }
}

fn is_denied(e: &StoreError) -> bool {
    match e {
        StoreError::Open { source, .. } => is_denied(source),
        StoreError::Io { source, .. } => source.kind() == ErrorKind::PermissionDenied,
        StoreError::Db(redb::Error::Io(io)) => io.kind() == ErrorKind::PermissionDenied,
        _ => false,
    }
}

/// Why this user cannot open `db` directly, as things are: its directory is
/// closed to them, or the file is unreadable, or readable but not writable
/// (redb opens a file read-write to lock it, so reading needs write access).
fn db_denied_message(db: &Path, socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;

    use nix::unistd::{AccessFlags, Gid, Group, Uid, User, access};
    let what = match std::fs::metadata(db) {
        Err(_) => {
            let dir = db.parent().unwrap_or(Path::new("/"));
            format!(
                "{} is in {}, which this user cannot enter",
                db.display(),
                dir.display()
            )
        }
        Ok(m) => {
            let owner = User::from_uid(Uid::from_raw(m.uid()))
                .ok()
                .flatten()
                .map_or_else(|| m.uid().to_string(), |u| u.name);
            let group = Group::from_gid(Gid::from_raw(m.gid()))
                .ok()
                .flatten()
                .map_or_else(|| m.gid().to_string(), |g| g.name);
            let whose = format!("mode {:o}, owner {owner}, group {group}", m.mode() & 0o777);
            if access(db, AccessFlags::R_OK).is_ok() {
                format!(
                    "{} ({whose}) is readable by this user, but opening it was denied",
                    db.display()
                )
            } else {
                format!("{} ({whose}) is not readable by this user", db.display())
            }
        }
    };
    format!(
        "the netmon daemon is not running (nothing answers on {}) and {what}: start the daemon \
         (`sudo netmon daemon`) to query through its socket, or run as root",
        socket.display()
    )
}

/// The message for a user the socket refused.
#[must_use]
pub fn denied_message(socket: &Path) -> String {
    let group = nix::unistd::Group::from_name(api::SOCKET_GROUP)
        .ok()
        .flatten();
    match group {
        Some(_) => format!(
            "not allowed to query {}: join the group {g} (sudo usermod -aG {g} $USER, then log in again), or run as root",
            socket.display(),
            g = api::SOCKET_GROUP
        ),
        None => format!(
            "not allowed to query {}: the socket is root-only because no group {g} exists; run as root, or create it \
             (sudo groupadd --system {g}; sudo usermod -aG {g} $USER) and restart the daemon",
            socket.display(),
            g = api::SOCKET_GROUP
        ),
    }
}

impl Backend {
    /// Connects: socket first, then the database file.
    ///
    /// # Errors
    /// One line naming the problem and what to do.
    pub fn connect(args: &ConnArgs) -> anyhow::Result<Self> {
        let file = crate::config::load(args.config.as_deref())?;
        let apps = file.apps.clone();
        // Reading the file here: services as the daemon would name them.
        crate::query::domains::set_catalogue(crate::query::domains::Catalogue::from_config(
            &file.names,
        )?);
        let retention = |db: &Path| {
            file.clone()
                .resolve(
                    None,
                    Some(db.to_path_buf()),
                    &crate::kernel::KernelArgs::default(),
                )
                .map(|c| c.retention)
                .unwrap_or_default()
        };
        if let Some(db) = &args.db {
            // Asked for this file: read it, whatever else runs.
            match std::fs::metadata(db) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    anyhow::bail!(db_denied_message(db, &args.socket));
                }
                Err(_) => anyhow::bail!("there is no database at {} (--db)", db.display()),
            }
            return match Store::open_read_only(db, retention(db)) {
                Ok(store) => Ok(Self::File {
                    store: Box::new(store),
                    apps,
                }),
                Err(e) if is_locked(&e) => anyhow::bail!(
                    "{} is in use by a running netmon daemon: query the daemon (leave out --db), or stop it first",
                    db.display()
                ),
                Err(e) if is_denied(&e) => anyhow::bail!(db_denied_message(db, &args.socket)),
                Err(e) => Err(anyhow::Error::new(e)),
            };
        }
        match Client::connect(&args.socket) {
            Ok(c) => return Ok(Self::Daemon(c)),
            Err(ApiError::Io { source, .. }) if source.kind() == ErrorKind::PermissionDenied => {
                anyhow::bail!(denied_message(&args.socket));
            }
            Err(ApiError::Io { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let db = file
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DB));
        if let Err(e) = std::fs::metadata(&db)
            && e.kind() == ErrorKind::PermissionDenied
        {
            anyhow::bail!(db_denied_message(&db, &args.socket));
        }
        if !db.exists() {
            anyhow::bail!(
                "the netmon daemon is not running (nothing answers on {}) and there is no database at {}: \
                 start it with `sudo netmon daemon` (or `cargo xtask run` from a source tree)",
                args.socket.display(),
                db.display()
            );
        }
        match Store::open_read_only(&db, retention(&db)) {
            Ok(store) => {
                tracing::info!(db = %db.display(), "no daemon on the socket; reading the database directly");
                Ok(Self::File {
                    store: Box::new(store),
                    apps,
                })
            }
            Err(e) if is_locked(&e) => anyhow::bail!(
                "a netmon daemon is using {} but does not answer on {}: pass the daemon's --socket, or check its log",
                db.display(),
                args.socket.display()
            ),
            Err(e) if is_denied(&e) => anyhow::bail!(db_denied_message(&db, &args.socket)),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "reading {} directly (no daemon on {})",
                    db.display(),
                    args.socket.display()
                )
            }),
        }
    }

    /// Asks `req` and returns its document.
    ///
    /// # Errors
    /// The daemon's or the query's error, as one line.
    pub fn call<T: DeserializeOwned>(&mut self, req: &Request) -> anyhow::Result<T> {
        match self {
            Self::Daemon(c) => Ok(c.call(req)?),
            Self::File { store, apps } => {
                let doc = handler::answer(store, apps, req)
                    .map_err(|e| anyhow::anyhow!(handler::chain_text(&e)))?;
                Ok(serde_json::from_value(serde_json::to_value(doc)?)?)
            }
        }
    }

    /// `daemon` or `file`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Daemon(_) => "daemon",
            Self::File { .. } => "file",
        }
    }
}
