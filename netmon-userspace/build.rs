//! Builds netmon-ebpf for the bpf target with aya-build (nested cargo on the
//! pinned nightly, linked by bpf-linker) and leaves the object in OUT_DIR,
//! where `kernel::loader` embeds it with `include_bytes_aligned!`.
//!
//! The nightly and bpf-linker come from `cargo xtask setup`, which puts
//! bpf-linker on `PATH`; the nightly is read from netmon-ebpf/rust-toolchain.toml
//! (`NETMON_NIGHTLY` overrides it; xtask does not set it, so plain cargo and
//! xtask builds share one eBPF build).
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=NETMON_NIGHTLY");
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "netmon-ebpf")
        .ok_or_else(|| anyhow!("netmon-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    let pin = root_dir.join("rust-toolchain.toml");
    println!("cargo::rerun-if-changed={pin}");
    let nightly = match std::env::var("NETMON_NIGHTLY") {
        Ok(n) => n,
        Err(_) => pinned_channel(pin.as_std_path())?,
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&nightly))
}

/// The `channel = "..."` line of the eBPF crate's rust-toolchain.toml.
fn pinned_channel(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow!("no channel line in {}", path.display()))
}
