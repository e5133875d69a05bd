//! netmon: exact, kernel-counted, per-process network accounting.
//!
//! Data flows one way (see `docs/architecture.md`):
//! kernel → [`kernel`] (reader) → [`ownership`] → drain → store → query →
//! api → [`cli`]. [`source`] is the seam between the kernel reader and the
//! rest (a simulated source stands beside it for tests); [`live`] answers
//! from the current kernel counters; [`wire`] holds every JSON document.
pub mod access;
pub mod alerts;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod drain;
pub mod exporter;
pub mod http;
pub mod kernel;
pub mod live;
pub mod model;
pub mod names;
pub mod ownership;
pub mod privilege;
pub mod query;
pub mod report;
pub mod source;
pub mod startup;
pub mod store;
#[cfg(test)]
pub mod testing;
pub mod wire;
