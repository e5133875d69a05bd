//! The socket server (see the [`crate::api`] docs for the protocol and its
//! limits).
//!
//! Each connection is a task, admitted by [`Slots`] (per-uid and total
//! limits) without ever waiting; each request runs on the blocking pool with
//! the store locked ([`crate::api::Handle`]), so a slow query delays the
//! drain by at most its own duration and never blocks the runtime. Every
//! read and write of a connection has a deadline, so a client that stops
//! sending or stops reading only holds its own slot, and not for long.
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::access;
use crate::api::handler::{self, HandlerError};
use crate::api::{
    ApiError, Handle, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID, MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT, WRITE_TIMEOUT,
};
use crate::wire::{ErrorBody, Reply, Request};

/// Creates the socket at `path` with its permissions: the parent directory
/// is created (0755) if missing; a stale socket file is replaced, a live
/// one (another daemon answers) is an error. Mode and group as
/// [`access::restrict`] gives a socket.
///
/// # Errors
/// [`ApiError::InUse`], or the failing file operation.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, ApiError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| ApiError::Io {
            op,
            path: p,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", dir))?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ApiError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io("remove stale socket", path))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io("bind", path))?;
    let mode = match access::restrict(path, access::Kind::Socket) {
        Ok(mode) => mode,
        Err(e) => {
            // Bound but not usable: leave nothing behind.
            let _ = std::fs::remove_file(path);
            return Err(io("restrict permissions of", path)(e));
        }
    };
    let group = access::group();
    listener
        .set_nonblocking(true)
        .map_err(io("set non-blocking", path))?;
    tracing::info!(socket = %path.display(), mode = format!("{mode:o}"), group = group.as_ref().map(|g| g.name.as_str()), "query socket ready");
    Ok(listener)
}

/// Binds `path` ([`bind`]) and serves until the task is dropped.
///
/// # Errors
/// When the socket cannot be created; accept errors are logged and retried.
pub async fn serve(path: PathBuf, handle: Handle) -> Result<(), ApiError> {
    let listener = bind(&path)?;
    serve_listener(listener, path, handle).await
}

/// Serves on a listener from [`bind`] (`path` is for messages).
///
/// # Errors
/// When the listener cannot be registered with the runtime.
pub async fn serve_listener(
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    handle: Handle,
) -> Result<(), ApiError> {
    let listener = UnixListener::from_std(listener).map_err(|source| ApiError::Io {
        op: "register",
        path,
        source,
    })?;
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // A peer whose credentials can't be read shares one bucket.
                let uid = stream.peer_cred().map_or(u32::MAX, |c| c.uid());
                let Some(slot) = slots.admit(uid) else {
                    tracing::debug!(uid, "query connection refused: busy");
                    refuse_busy(&stream, uid);
                    continue;
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, handle).await {
                        tracing::debug!(error = %e, "query connection ended");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the query socket failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connections being served, per client uid and in all.
#[derive(Clone, Debug)]
pub struct Slots {
    total: usize,
    per_uid: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// One admitted connection; frees its place when dropped.
#[derive(Debug)]
pub struct Slot {
    uid: u32,
    open: Arc<Mutex<Open>>,
}

impl Slots {
    /// At most `total` connections, `per_uid` of them from one uid.
    #[must_use]
    pub fn new(total: usize, per_uid: usize) -> Self {
        Self {
            total,
            per_uid,
            open: Arc::default(),
        }
    }

    /// A slot for a connection from `uid`, or `None` over a limit.
    #[must_use]
    pub fn admit(&self, uid: u32) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.by_uid.get(&uid).copied().unwrap_or(0);
        if open.total >= self.total || mine >= self.per_uid {
            return None;
        }
        open.total += 1;
        open.by_uid.insert(uid, mine + 1);
        Some(Slot {
            uid,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_uid.remove(&self.uid);
            }
        }
    }
}

/// Tells a refused client why, without waiting: a fresh socket's send
/// buffer takes one short line; if it does not, the client just sees the
/// connection close.
fn refuse_busy(stream: &UnixStream, uid: u32) {
    let line = error_line(
        "busy",
        format!(
            "too many connections (at most {MAX_CONNECTIONS_PER_UID} per user, uid {uid}, \
             and {MAX_CONNECTIONS} in all); try again"
        ),
    );
    let _ = stream.try_write(&line);
}

fn error_line(kind: &str, message: String) -> Vec<u8> {
    reply_line(&Reply::<()>::Error(ErrorBody {
        kind: kind.to_owned(),
        message,
    }))
}

fn reply_line<T: serde::Serialize>(reply: &Reply<T>) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"kind":"internal","message":"encoding the reply: {e}"}}}}"#)
            .into_bytes()
    });
    line.push(b'\n');
    line
}

/// Writes `bytes`, closing the connection (an error) when the client reads
/// nothing for [`WRITE_TIMEOUT`]. The deadline is per write that makes
/// progress, so a long reply to a client that keeps reading is not cut.
async fn write_within(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    mut bytes: &[u8],
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = tokio::time::timeout(WRITE_TIMEOUT, write.write(bytes))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client read nothing for {WRITE_TIMEOUT:?}"),
                )
            })??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = bytes.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// Serves one connection: one reply line per request line.
async fn connection(stream: UnixStream, handle: Handle) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX);
    // The first request must come at once; later ones may wait (top).
    let mut wait_for_first_byte = REQUEST_TIMEOUT;
    loop {
        let mut line = Vec::new();
        match tokio::time::timeout(wait_for_first_byte, reader.fill_buf()).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                if r?.is_empty() {
                    return Ok(());
                }
            }
        }
        let read = tokio::time::timeout(
            REQUEST_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        let n = match read {
            Err(_) => {
                tracing::debug!(
                    bytes = line.len(),
                    "request incomplete after {REQUEST_TIMEOUT:?}; closing"
                );
                return Ok(());
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        if line.len() >= MAX_REQUEST_BYTES && line.last() != Some(&b'\n') {
            let msg =
                format!("request larger than {MAX_REQUEST_BYTES} bytes; closing the connection");
            write_within(&mut write, &error_line("too_large", msg)).await?;
            write.shutdown().await?;
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match serde_json::from_slice::<Request>(&line) {
            Err(e) => error_line("bad_request", format!("not a valid request: {e}")),
            Ok(req) => run(&handle, req).await,
        };
        write_within(&mut write, &reply).await?;
        wait_for_first_byte = IDLE_TIMEOUT;
    }
}

/// Answers one request on the blocking pool.
async fn run(handle: &Handle, req: Request) -> Vec<u8> {
    let h = handle.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut store = h.store.lock().unwrap_or_else(PoisonError::into_inner);
        match handler::answer(&mut store, &h.apps, &req) {
            Ok(doc) => reply_line(&Reply::Ok(doc)),
            Err(e) => {
                if matches!(e, HandlerError::Query(crate::query::QueryError::Store(_))) {
                    tracing::warn!(error = %e, "query failed");
                }
                reply_line(&Reply::<()>::Error(e.body()))
            }
        }
    })
    .await;
    joined.unwrap_or_else(|e| error_line("internal", format!("query task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_limit_each_uid_and_the_total() {
        let slots = Slots::new(5, 2);
        let a1 = slots.admit(1).expect("first of uid 1");
        let a2 = slots.admit(1).expect("second of uid 1");
        assert!(slots.admit(1).is_none(), "third of uid 1");
        let b: Vec<_> = (0..3).map(|_| slots.admit(2)).collect();
        assert_eq!(b.iter().filter(|s| s.is_some()).count(), 2);
        let c = slots.admit(3).expect("uid 3 is not held back by 1 and 2");
        assert!(slots.admit(4).is_none(), "total reached");
        drop(a1);
        assert!(slots.admit(1).is_some(), "a freed slot is reusable");
        drop((a2, b, c));
        assert_eq!(slots.open.lock().unwrap().total, 0);
        assert!(slots.open.lock().unwrap().by_uid.is_empty());
    }
}
