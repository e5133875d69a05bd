//! A blocking client of the daemon socket (the CLI is synchronous).
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::ApiError;
use crate::wire::{Reply, Request};

/// How long to wait for a reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    /// Connects to the socket at `path`.
    ///
    /// # Errors
    /// [`ApiError::Io`] with the OS error (`NotFound`, `ConnectionRefused`:
    /// no daemon; `PermissionDenied`: not allowed).
    pub fn connect(path: &Path) -> Result<Self, ApiError> {
        let io = |op| {
            move |source| ApiError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let stream = UnixStream::connect(path).map_err(io("connect to"))?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io("set timeout on"))?;
        Ok(Self {
            stream: BufReader::new(stream),
            path: path.to_owned(),
        })
    }

    /// The socket.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `req` and reads its reply document.
    ///
    /// # Errors
    /// I/O errors, [`ApiError::Remote`] for an error reply,
    /// [`ApiError::BadReply`] when the reply does not parse as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, req: &Request) -> Result<T, ApiError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| ApiError::Io { op, path, source }
        };
        let mut line = serde_json::to_vec(req).map_err(|e| ApiError::BadReply(e.to_string()))?;
        line.push(b'\n');
        let sent = self.stream.get_mut().write_all(&line);
        let mut reply = String::new();
        // A connection the server refused (`busy`) is closed with its reason
        // already sent: the write may fail, the reason is still there to
        // read. (A write error is not passed on as such: a broken pipe here
        // is the daemon's doing, not a closed stdout, and must not exit 0.)
        match (sent, self.stream.read_line(&mut reply)) {
            (_, Ok(n)) if n > 0 => {}
            (Err(e), _) => {
                return Err(ApiError::BadReply(format!(
                    "the daemon closed the connection before the request was sent ({e})"
                )));
            }
            (Ok(()), Ok(_)) => {
                return Err(ApiError::BadReply(
                    "the daemon closed the connection without replying".to_owned(),
                ));
            }
            (Ok(()), Err(e)) => return Err(io("read from")(e)),
        }
        match serde_json::from_str::<Reply<T>>(&reply)
            .map_err(|e| ApiError::BadReply(e.to_string()))?
        {
            Reply::Ok(doc) => Ok(doc),
            Reply::Error(body) => Err(ApiError::Remote {
                kind: body.kind,
                message: body.message,
            }),
        }
    }
}
