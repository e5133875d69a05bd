//! The daemon's query API: JSON over a Unix socket.
//!
//! Protocol (documented for other clients too): the client connects to the
//! socket (default [`DEFAULT_SOCKET`]) and writes one
//! [`crate::wire::Request`] as a single JSON line; the server answers each
//! line with one [`crate::wire::Reply`] line, and the client may send
//! another request on the same connection. Limits, kept by [`server`]:
//! - a request line longer than [`MAX_REQUEST_BYTES`] gets a `too_large`
//!   error reply and the connection is closed (the rest of the line cannot
//!   be skipped safely);
//! - a line that is not a valid request gets a `bad_request` error reply and
//!   the connection stays usable;
//! - a request line must arrive whole within [`REQUEST_TIMEOUT`]: of the
//!   connection's opening for the first request, of its first byte for the
//!   next ones (between requests a connection may stay idle for
//!   [`IDLE_TIMEOUT`], so `top` keeps one connection);
//! - a reply the client does not read within [`WRITE_TIMEOUT`] closes the
//!   connection;
//! - at most [`MAX_CONNECTIONS_PER_UID`] connections per client user (the
//!   peer's uid, from `SO_PEERCRED`) and [`MAX_CONNECTIONS`] in all; a
//!   connection over either limit gets a `busy` error line and is closed at
//!   once. Accepting never waits, so a flood of idle or half-sent
//!   connections from one user cannot delay another user's query.
//!
//! Answers are computed by [`handler::answer`], which the CLI also calls
//! directly on the database file when no daemon runs, so both paths give
//! the same documents.
//!
//! Socket permissions ([`crate::access`]): mode 0660 and group `netmon` when
//! that group exists (members may query), else 0600 (root only).
pub mod client;
pub mod handler;
pub mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use server::{bind, serve, serve_listener};

use crate::query::AppRules;
use crate::store::Store;

/// Where the daemon listens by default.
pub const DEFAULT_SOCKET: &str = "/run/netmon/netmon.sock";
/// Group allowed on the socket, when it exists.
pub const SOCKET_GROUP: &str = crate::access::GROUP;
/// Largest request line accepted, newline included.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Connections served at once, all users together.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections served at once per client uid.
pub const MAX_CONNECTIONS_PER_UID: usize = 16;
/// A connection idle between requests is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request must arrive whole this soon (see the module docs).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply not read by the client this soon closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server answers from: the daemon's store (shared with the drain
/// loop, which holds the lock for its whole step — read, resolve and
/// commit — while a query holds it for its read) and the app rules.
#[derive(Clone, Debug)]
pub struct Handle {
    /// The store.
    pub store: Arc<Mutex<Store>>,
    /// App name rules (config `[apps]`).
    pub apps: Arc<AppRules>,
    /// The drain's committed readings, for live per-socket answers (the
    /// daemon connects it with [`crate::drain::Drain::set_tap`]).
    pub live: crate::live::Tap,
}

impl Handle {
    /// A handle on a shared store.
    #[must_use]
    pub fn new(store: Arc<Mutex<Store>>, apps: AppRules) -> Self {
        Self {
            store,
            apps: Arc::new(apps),
            live: crate::live::Tap::default(),
        }
    }
}

/// Errors of the API server and client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A socket operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("another netmon daemon is already listening on {}", .0.display())]
    InUse(PathBuf),
    /// The daemon answered with an error.
    #[error("{message}")]
    Remote {
        /// Error kind from the reply.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The reply did not parse.
    #[error("malformed reply from the daemon: {0}")]
    BadReply(String),
}
