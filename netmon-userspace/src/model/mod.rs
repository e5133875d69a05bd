//! The shared model: the plain types and rules every stage speaks, so no
//! stage imports another stage for a type. The kernel reader, ownership,
//! the simulation, the drain, the store, queries and the edges import them
//! from here (the old paths, `crate::ownership::ProcessId`,
//! `crate::store::{Traffic, DestClass, ...}`, re-export them).
//!
//! - [`process`]: [`ProcessId`], [`ProcessInfo`] (its persisted JSON format
//!   and compatibility rule are documented there), the pseudo-processes
//!   [`UNATTRIBUTED`] and [`OVERFLOW`];
//! - [`traffic`]: [`Traffic`], [`TimeMs`]/[`TimeRange`] and the unix-ms clock
//!   [`unix_ms_now`];
//! - [`class`]: [`DestClass`], the destination classification and
//!   [`raw_to_ip`] (the kernel's 16-byte address as an [`std::net::IpAddr`]);
//! - [`service`]: [`ConnDir`] and which side of a flow offers the service.
pub mod class;
pub mod process;
pub mod service;
pub mod traffic;

pub use class::{DestClass, classify, classify_raw, raw_to_ip};
pub use process::{
    OVERFLOW, OVERFLOW_COMM, ProcessId, ProcessInfo, UNATTRIBUTED, UNATTRIBUTED_COMM,
    pseudo_process, unattributed,
};
pub use service::{ConnDir, service_of};
pub use traffic::{TimeMs, TimeRange, Traffic, unix_ms_now};
