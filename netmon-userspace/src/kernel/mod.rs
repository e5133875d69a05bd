//! The kernel reader: loads, attaches and pins the eBPF programs, and reads
//! their maps. It never touches the store.
pub mod loader;
