//! Host-side stub of the eBPF crate.
//!
//! The programs live in the `netmon` binary target (`src/main.rs`), built for
//! the bpf target by aya-build from `netmon-userspace/build.rs`. This library
//! exists so that netmon-userspace can name this crate as a build-dependency:
//! cargo then reruns that build script whenever the eBPF sources change.
#![no_std]
