//! `cargo xtask build`, and building the netmon binary for the other commands.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cmd;
use crate::setup::{self, Tools};
use crate::workspace::Workspace;

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// Setup, then `cargo build` of the default members.
pub fn build(ws: &Workspace, args: &BuildArgs) -> anyhow::Result<()> {
    let tools = setup::ensure(ws)?;
    let mut cargo = tools.cargo()?;
    cargo.arg("build");
    if args.release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo)
}

/// Builds the `netmon` binary (eBPF object embedded) and returns its path.
pub fn netmon(tools: &Tools, release: bool) -> anyhow::Result<PathBuf> {
    let mut cargo = tools.cargo()?;
    // No `-p`: the same package selection (default members) as `cargo build`,
    // hence the same feature resolution, so this reuses `cargo xtask build`'s
    // artifacts instead of building netmon (and its eBPF object) again.
    cargo.args(["build", "--bin", "netmon"]);
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).context("build netmon")?;
    let bin = tools.workspace().binary(release, "netmon");
    anyhow::ensure!(
        bin.is_file(),
        "cargo built netmon but {} is missing",
        bin.display()
    );
    Ok(bin)
}
