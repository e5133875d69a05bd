//! The socket server (see the [`crate::api`] docs for the protocol).
//!
//! Each connection is a task; each request runs on the blocking pool with
//! the store locked ([`crate::api::Handle`]), so a slow query delays the
//! drain by at most its own duration and never blocks the runtime.
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::api::handler::{self, HandlerError};
use crate::api::{
    ApiError, Handle, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST_BYTES, SOCKET_GROUP,
};
use crate::wire::{ErrorBody, Reply, Request};

/// Creates the socket at `path` with its permissions: the parent directory
/// is created (0755) if missing; a stale socket file is replaced, a live
/// one (another daemon answers) is an error. Mode 0660 with group
/// [`SOCKET_GROUP`] when that group exists, else 0600.
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
    let group = nix::unistd::Group::from_name(SOCKET_GROUP).ok().flatten();
    let mode = if let Some(g) = &group {
        nix::unistd::chown(path, None, Some(g.gid)).map_err(|e| ApiError::Io {
            op: "chown",
            path: path.to_owned(),
            source: e.into(),
        })?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", path))?;
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, handle).await {
                        tracing::debug!(error = %e, "query connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the query socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
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

/// Serves one connection: one reply line per request line.
async fn connection(stream: UnixStream, handle: Handle) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        let n = match read {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        if line.len() >= MAX_REQUEST_BYTES && line.last() != Some(&b'\n') {
            let msg =
                format!("request larger than {MAX_REQUEST_BYTES} bytes; closing the connection");
            write.write_all(&error_line("too_large", msg)).await?;
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
        write.write_all(&reply).await?;
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
