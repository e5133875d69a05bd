//! The ways a program can hand bytes to a TCP socket. netmon counts below
//! all of them (at the cgroup_skb hooks); the `io_paths` kernel test sends
//! with each and checks the counts are exact.
use std::{
    io::{self, Write as _},
    net::TcpStream,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, bail};

/// Default pipe capacity (16 pages).
const PIPE_CAPACITY: usize = 64 * 1024;

/// How `tcp-client --method` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SendMethod {
    /// write(2).
    #[default]
    Write,
    /// sendmsg(2) with two iovecs per call.
    Sendmsg,
    /// sendfile(2) from a memfd.
    Sendfile,
    /// splice(2) from a pipe.
    Splice,
    /// io_uring `IORING_OP_SEND`.
    IoUring,
}

/// A writer that sends chunks of 0x5a bytes with one method.
pub struct Sender {
    method: SendMethod,
    /// memfd holding one chunk (sendfile).
    memfd: Option<std::fs::File>,
    /// pipe (splice): read end, write end.
    pipe: Option<(OwnedFd, OwnedFd)>,
    ring: Option<io_uring::IoUring>,
    buf: Vec<u8>,
}

impl Sender {
    /// Prepares the method's resources for chunks of `chunk` bytes.
    pub fn new(method: SendMethod, chunk: usize) -> anyhow::Result<Self> {
        let buf = vec![0x5a_u8; chunk];
        let mut sender = Self {
            method,
            memfd: None,
            pipe: None,
            ring: None,
            buf,
        };
        match method {
            SendMethod::Write | SendMethod::Sendmsg => {}
            SendMethod::Sendfile => {
                // SAFETY: a NUL-terminated name and no flags; the returned fd
                // is checked and then owned by the File.
                let fd = unsafe { libc::memfd_create(c"netmon-workload".as_ptr(), 0) };
                if fd < 0 {
                    return Err(io::Error::last_os_error()).context("memfd_create");
                }
                // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
                let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
                file.write_all(&sender.buf).context("fill memfd")?;
                sender.memfd = Some(file);
            }
            SendMethod::Splice => {
                let mut fds = [0_i32; 2];
                // SAFETY: `fds` has room for the two descriptors pipe2 writes.
                if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                    return Err(io::Error::last_os_error()).context("pipe2");
                }
                // SAFETY: both are fresh descriptors from pipe2, owned here.
                sender.pipe =
                    Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) });
            }
            SendMethod::IoUring => {
                sender.ring = Some(io_uring::IoUring::new(8).context("io_uring_setup")?);
            }
        }
        Ok(sender)
    }

    /// Sends at most `want` (<= chunk) bytes; returns how many went out.
    pub fn send(&mut self, stream: &TcpStream, want: usize) -> anyhow::Result<usize> {
        let fd = stream.as_raw_fd();
        let want = want.min(self.buf.len());
        let n: isize = match self.method {
            SendMethod::Write => return retry(|| (&*stream).write(&self.buf[..want])),
            SendMethod::Sendmsg => {
                let half = want / 2;
                let mut iov = [
                    libc::iovec {
                        iov_base: self.buf.as_ptr() as *mut _,
                        iov_len: half,
                    },
                    libc::iovec {
                        iov_base: self.buf[half..].as_ptr() as *mut _,
                        iov_len: want - half,
                    },
                ];
                // SAFETY: zeroed msghdr is valid; the iovecs point into
                // `self.buf`, which outlives the call.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = iov.len();
                // SAFETY: `fd` is an open socket; `msg` is fully initialised.
                unsafe { libc::sendmsg(fd, &msg, 0) }
            }
            SendMethod::Sendfile => {
                let Some(file) = &self.memfd else {
                    bail!("no memfd")
                };
                let mut offset: libc::off_t = 0;
                // SAFETY: both fds are open; `offset` is a valid out pointer.
                unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut offset, want) }
            }
            SendMethod::Splice => {
                // A pipe holds 64 KiB by default: fill no more than that, or
                // the write blocks before splice can drain it.
                let want = want.min(PIPE_CAPACITY);
                let Some((read_end, write_end)) = &self.pipe else {
                    bail!("no pipe")
                };
                let mut filled = 0;
                while filled < want {
                    // SAFETY: writing from `self.buf` into our own pipe.
                    let w = unsafe {
                        libc::write(
                            write_end.as_raw_fd(),
                            self.buf[filled..want].as_ptr().cast(),
                            want - filled,
                        )
                    };
                    if w < 0 {
                        return Err(io::Error::last_os_error()).context("write to pipe");
                    }
                    filled += w as usize;
                    if w == 0 {
                        break;
                    }
                }
                let mut moved = 0;
                while moved < filled {
                    // SAFETY: splicing between two open fds we own/hold; null
                    // offsets are valid for pipes and sockets.
                    let s = unsafe {
                        libc::splice(
                            read_end.as_raw_fd(),
                            std::ptr::null_mut(),
                            fd,
                            std::ptr::null_mut(),
                            filled - moved,
                            0,
                        )
                    };
                    if s < 0 {
                        return Err(io::Error::last_os_error()).context("splice");
                    }
                    moved += s as usize;
                }
                moved as isize
            }
            SendMethod::IoUring => {
                let Some(ring) = &mut self.ring else {
                    bail!("no ring")
                };
                let entry = io_uring::opcode::Send::new(
                    io_uring::types::Fd(fd),
                    self.buf.as_ptr(),
                    want as u32,
                )
                .build()
                .user_data(1);
                // SAFETY: the buffer (`self.buf`) outlives the operation: we
                // wait for its completion below before returning.
                unsafe { ring.submission().push(&entry) }
                    .map_err(|_| anyhow::anyhow!("submission queue full"))?;
                ring.submit_and_wait(1).context("io_uring_enter")?;
                let Some(cqe) = ring.completion().next() else {
                    bail!("no completion")
                };
                if cqe.result() < 0 {
                    return Err(io::Error::from_raw_os_error(-cqe.result()))
                        .context("io_uring send");
                }
                cqe.result() as isize
            }
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err).context(format!("{:?}", self.method));
        }
        Ok(n as usize)
    }
}

fn retry(mut f: impl FnMut() -> io::Result<usize>) -> anyhow::Result<usize> {
    match f() {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e).context("write"),
    }
}
