//! The contract between netmon's eBPF programs and its userspace.
//!
//! Everything the kernel side writes and userspace reads is defined here, once:
//! the names of the maps and programs ([`names`]), and the `#[repr(C)]` key and
//! value types stored in them ([`flow`]). All types use fixed-width fields with
//! explicit padding, and their sizes are checked at compile time, so both sides
//! agree on every byte.
//!
//! The `user` feature adds `aya::Pod` (so userspace can read the maps) and serde
//! impls; the eBPF build leaves it off and stays `no_std`.
#![no_std]

pub mod capture;
pub mod device;
pub mod flow;
pub mod iface;
pub mod names;

pub use flow::{
    ClosedSock, DirCounters, FLOW_F_CAPTURED, FLOW_F_CLOSED, FLOW_F_OWNED, FLOW_F_OWNER_RELEASED,
    FlowKey, FlowValue, OverflowCounters, SockOwner, TaskOffsets, TcpSample,
};

/// Process identity recorded at `exec` ([`exec::ExecIdentity`]).
pub mod exec;
