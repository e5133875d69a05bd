//! netmon: exact, kernel-counted, per-process network accounting.
//!
//! Data flows one way (see shared/ARCHITECTURE.md):
//! kernel → [`kernel`] (reader) → ownership → drain → store → query → api → cli.
pub mod kernel;
pub mod ownership;
pub mod source;
