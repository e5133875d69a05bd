//! systemd's readiness and watchdog notifications (the `sd_notify`
//! protocol, through the `sd-notify` crate: a datagram to
//! `$NOTIFY_SOCKET`; nothing happens when the daemon was not started by
//! systemd with `Type=notify`).
//!
//! The watchdog is pinged by a task on the daemon's single-threaded
//! runtime, the thread that also runs the drain: a drain that hangs starves
//! the task, the pings stop, and systemd restarts the service
//! (`WatchdogSec=` in the unit).
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the daemon is ready (the query socket is bound and the
/// kernel side is loaded), with a status line for `systemctl status`.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "sd_notify READY failed");
    }
}

/// Tells systemd the daemon is stopping (the final drain runs).
pub fn stopping() {
    if let Err(e) = sd_notify::notify(&[NotifyState::Stopping]) {
        tracing::warn!(error = %e, "sd_notify STOPPING failed");
    }
}

/// Starts pinging the watchdog at half its timeout, when systemd set one
/// (`WATCHDOG_USEC` for this pid). Must be called inside the runtime.
pub fn spawn_watchdog() {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (timeout / 2).max(Duration::from_millis(100));
    tracing::info!(?timeout, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "sd_notify WATCHDOG failed");
            }
        }
    });
}
