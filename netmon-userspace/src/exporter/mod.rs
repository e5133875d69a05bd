//! The Prometheus exporter: `GET /metrics` on the daemon's HTTP server
//! (OpenMetrics text through the `prometheus-client` crate: HELP, TYPE,
//! UNIT, `_total`), behind the server's Host and bearer-token rules.
//!
//! # Counters that never reset
//!
//! Every traffic series is a deterministic function of the committed
//! history (read through [`crate::query::scan`], never kept as bytes of its
//! own): a restarted, crashed or upgraded daemon recomputes exactly the
//! value the series had, and continues from there. The exporter keeps a
//! cache of what it already folded (see [`Exporter`]), but the cache is only
//! a speed-up: a fresh exporter recomputes the same numbers.
//!
//! # Bounded cardinality: epochs and membership
//!
//! Time is cut into epochs (`epoch_secs`, default one UTC hour). At the
//! start of every epoch the groups (label values of `group_by`, default
//! `app` and `user`) are ranked by IP bytes (both directions, every class)
//! over the previous `rank_epochs` epochs (default 24: the last day); the
//! `top` largest (default 200) are the *members* of that epoch. A member's
//! series counts its bytes during the epochs it was a member; everything
//! else goes to the series whose group labels are all `other`. So:
//! - `sum()` over a metric equals the host total at every scrape, exactly;
//! - no series ever goes down: a group entering the top N does not take
//!   its earlier bytes out of `other`, and its own series starts from the
//!   bytes of its first member epoch (not from its all-time total);
//! - the first epoch of a fresh store has no ranking yet: all of it is in
//!   `other`.
//!
//! What `rate()` shows when membership changes: at an epoch boundary where
//! a group leaves the top N its series stops growing (`rate()` falls to 0)
//! and `other`'s rate rises by that group's traffic; a group entering gets
//! a series that grows from then on. `sum(rate(...))` is continuous across
//! such a boundary and per-group rates are exact within an epoch. A group
//! that has not been a member for `rank_epochs` epochs is retired: its
//! series is no longer emitted (Prometheus marks it stale) and its final
//! value is added to `other`, so `sum()` stays exact and nothing goes
//! down, but `rate(...{app="other"})` over a window spanning that moment
//! shows the retired total as one burst (use `sum(rate(...))`, or the
//! members' rates, for smooth graphs). A group that comes back before it
//! is retired continues its series; one that comes back later starts a
//! new one from 0 (its `_created` timestamp, the start of its first member
//! epoch, says so; `other`'s is the start of the first epoch in history).
//! So at most `top` members, `other`, and the groups
//! retired within the last `rank_epochs` epochs are emitted; with stable
//! traffic that is `top + 1` label sets per direction and class.
//!
//! Limits, written down: an epoch's rows are read from the finest tier no
//! coarser than the epoch (hour rollups for 1 h epochs, kept 90 days by
//! default); history older than that tier's retention is read from coarser
//! rollups and each of its buckets counts in the epoch where it starts, so
//! when rows age past that retention, member series can move between
//! groups for those old epochs (the sum stays exact). Group names come
//! from the process records and the `[apps]` rules: changing the rules
//! renames history, which moves bytes between series.
//!
//! # Grouping by service port
//!
//! `group_by` may include `service_port`: three labels, `protocol`,
//! `service_port` and `port_dir` (`in`/`out`; `direction` is already the
//! tx/rx label), the groups of `netmon usage --by port` (see
//! [`crate::model::service`] for how the side is decided). The rows are
//! then the per remote rows (minute, hour and day, completed by the
//! snapshot's pending pieces, as every remote answer reads them) plus the
//! process rows of traffic with no endpoint (labels `none`): the remote
//! rows of a process and class add up exactly to its process rows, so
//! `sum()` is the same host total. Process labels (`app`, `user`, ...)
//! combine with it: a group is e.g. (`nginx`, `tcp`, `443`, `in`). Epochs
//! must be whole minutes (the finest remote tier); history written before
//! the minute tier existed is read from the hour rows, each counted in the
//! epoch where its hour starts, and carries `port_dir="unknown"` where no
//! direction was recorded (its port is the remote port as stored).
//!
//! # LAN devices
//!
//! On a gateway with LAN interfaces, `netmon_device_bytes_total` and
//! `netmon_device_packets_total` count per device MAC, interface,
//! direction and class, from the device history, with the same
//! never-reset rule and their own bound ([`devices`]).
pub mod devices;
pub mod drain;
pub mod host;
pub mod kernel;
pub mod metrics;

pub use metrics::{Exporter, ExporterConfig, GroupLabel, Snapshot};
