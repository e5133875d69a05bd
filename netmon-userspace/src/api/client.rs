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
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(io("write to"))?;
        let mut reply = String::new();
        let n = self.stream.read_line(&mut reply).map_err(io("read from"))?;
        if n == 0 {
            return Err(ApiError::BadReply(
                "the daemon closed the connection without replying".to_owned(),
            ));
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
