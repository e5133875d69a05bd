//! Noticing new interfaces while the daemon runs: a `NETLINK_ROUTE` socket
//! subscribed to the link group (`RTMGRP_LINK`) wakes the daemon whenever
//! a link is added, changed (up, renamed) or removed in its network
//! namespace; the daemon then attaches the pinned tc programs to watched
//! interfaces that have none yet ([`super::tc::attach_new`]). A USB modem,
//! a VPN tunnel or a container's veth is counted from the drain after it
//! appears, without a reload.
//!
//! The messages themselves are not parsed: any link message means "look
//! again", and the look is the same listing the load does (names, flags and
//! the `watch` globs). A burst of messages (a bridge with many ports coming
//! up) costs one rescan per drain. A receive buffer overrun (`ENOBUFS`)
//! also means "look again". Sockets come from `netlink-sys`, already used
//! for sock_diag.
//!
//! What is missed: packets an interface moves between its creation and the
//! next drain's rescan (at most one interval); they show in `netmon
//! interfaces` as the interface's counters above netmon's (the baseline is
//! read just before attaching).
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::KernelError;

/// `RTMGRP_LINK` (linux/rtnetlink.h): link added, changed or removed.
const RTMGRP_LINK: u32 = 1;

/// A subscription to link changes in this thread's network namespace.
pub struct LinkWatch {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkWatch {
    /// Opens the subscription (no privilege needed).
    ///
    /// # Errors
    /// When the netlink socket cannot be created or bound.
    pub fn open() -> Result<Self, KernelError> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| KernelError::io("netlink route socket", e))?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(|e| KernelError::io("netlink route socket: join the link group", e))?;
        socket
            .set_non_blocking(true)
            .map_err(|e| KernelError::io("netlink route socket: non-blocking", e))?;
        Ok(Self {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Reads every pending message; true when any arrived (or some were
    /// lost to an overrun) since the last call.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(0) => return changed,
                Ok(_) => changed = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return changed,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading link changes; rescanning interfaces");
                    return true;
                }
            }
        }
    }
}
