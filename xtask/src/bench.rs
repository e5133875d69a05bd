//! `cargo xtask bench [--only PART] [-- ARGS]`: the criterion benchmarks of
//! netmon-userspace, then as root the kernel throughput benchmark (programs
//! attached vs not) and the daemon churn benchmark (the real daemon's CPU,
//! memory and disk under 10k short connections a second).

use std::path::Path;

use anyhow::Context as _;

use crate::build;
use crate::cmd;
use crate::privilege::Privilege;
use crate::setup;
use crate::workspace::Workspace;

/// The kernel throughput benchmark binary of the tests crate.
const KERNEL_BENCH: &str = "netmon-bench-kernel";
/// The daemon churn benchmark binary of the tests crate.
const CHURN_BENCH: &str = "netmon-bench-churn";

/// One part of `cargo xtask bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The criterion benchmarks of netmon-userspace.
    Criterion,
    /// `netmon-bench-kernel`: traffic throughput with the programs attached.
    Kernel,
    /// `netmon-bench-churn`: the daemon under short-connection churn.
    Churn,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Run only this part (default: all).
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Arguments for criterion, after `--` (e.g. a benchmark name filter or
    /// `--save-baseline NAME`).
    #[arg(last = true, value_name = "ARGS")]
    pub criterion_args: Vec<String>,
}

/// Setup, criterion benches, then the kernel benchmark if the tests crate
/// has it.
pub fn bench(ws: &Workspace, args: &BenchArgs) -> anyhow::Result<()> {
    let tools = setup::ensure(ws)?;
    let runs = |part: Part| args.only.is_none_or(|only| only == part);
    if runs(Part::Criterion) {
        if has_bench_targets(&ws.root().join("netmon-userspace")) {
            let mut criterion = tools.cargo()?;
            // `--bench '*'`: bench targets only (`--benches` would include the
            // library, whose libtest harness would take criterion's arguments).
            criterion
                .args(["bench", "-p", "netmon-userspace", "--bench", "*", "--"])
                .args(&args.criterion_args);
            cmd::run(&mut criterion).context("criterion benchmarks")?;
        } else {
            eprintln!(
                "xtask bench: netmon-userspace has no benchmarks yet; criterion part skipped"
            );
        }
    }

    let root_benches: Vec<(&str, &str)> = [
        (Part::Kernel, KERNEL_BENCH, "kernel throughput benchmark"),
        (Part::Churn, CHURN_BENCH, "daemon churn benchmark"),
    ]
    .into_iter()
    .filter(|(part, _, _)| runs(*part))
    .filter(|(_, bin, what)| {
        let declared = declares_bin(&ws.tests_dir(), bin);
        if !declared {
            eprintln!("xtask bench: the tests crate has no `{bin}` binary yet; {what} skipped");
        }
        declared
    })
    .map(|(_, bin, what)| (bin, what))
    .collect();
    if root_benches.is_empty() {
        return Ok(());
    }
    // Fail before building if root is out of reach.
    let mut commands = Vec::new();
    for (bin, what) in &root_benches {
        let bench_bin = ws.binary(true, bin);
        commands.push((Privilege::detect().command(what, &bench_bin)?, *what));
    }
    let netmon = build::netmon(&tools, true)?;
    let mut cargo = tools.cargo()?;
    // All of the crate's binaries: the benchmarks drive `netmon-workload`,
    // which must be as fresh as the benchmarks themselves.
    cargo.args(["build", "--release", "-p", "netmon-tests", "--bins"]);
    cmd::run(&mut cargo).context("build the kernel benchmarks")?;
    for (mut command, what) in commands {
        command.env("NETMON_BIN", &netmon);
        cmd::run(&mut command).context(what)?;
    }
    Ok(())
}

/// Whether the tests crate defines the binary `name`: by cargo's
/// auto-discovery (`src/bin/<name>.rs`, `src/bin/<name>/main.rs`) or a
/// `[[bin]]` entry in its manifest.
fn declares_bin(tests_dir: &Path, name: &str) -> bool {
    let bin_dir = tests_dir.join("src").join("bin");
    bin_dir.join(format!("{name}.rs")).is_file()
        || bin_dir.join(name).join("main.rs").is_file()
        || std::fs::read_to_string(tests_dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest_declares_bin(&manifest, name))
}

/// Whether a package has bench targets: auto-discovered (`benches/*.rs`,
/// `benches/<name>/main.rs`) or declared (`[[bench]]`).
fn has_bench_targets(package_dir: &Path) -> bool {
    let discovered = std::fs::read_dir(package_dir.join("benches")).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let path = entry.path();
            path.extension().is_some_and(|ext| ext == "rs") || path.join("main.rs").is_file()
        })
    });
    discovered
        || std::fs::read_to_string(package_dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[[bench]]"))
}

/// Whether a Cargo.toml has a `[[bin]]` table with `name = "<name>"`.
fn manifest_declares_bin(manifest: &str, name: &str) -> bool {
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if in_bin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
            && value.trim().trim_matches('"') == name
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_named_bin_table() {
        let manifest = "[package]\nname = \"netmon-tests\"\n\n[[bin]]\nname = \"netmon-bench-kernel\"\npath = \"src/bench.rs\"\n";
        assert!(manifest_declares_bin(manifest, KERNEL_BENCH));
    }

    #[test]
    fn package_name_or_other_bins_do_not_count() {
        let manifest = "[package]\nname = \"netmon-bench-kernel\"\n[[bin]]\nname = \"other\"\n[dependencies]\nname = \"netmon-bench-kernel\"\n";
        assert!(!manifest_declares_bin(manifest, KERNEL_BENCH));
    }

    #[test]
    fn bench_targets_are_found_by_file_or_manifest() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pkg = tmp.path();
        std::fs::write(pkg.join("Cargo.toml"), "[package]\nname = \"p\"\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        assert!(!has_bench_targets(pkg));
        std::fs::create_dir_all(pkg.join("benches").join("big"))
            .unwrap_or_else(|e| panic!("mkdir: {e}"));
        assert!(!has_bench_targets(pkg), "an empty bench dir is no bench");
        std::fs::write(
            pkg.join("benches").join("big").join("main.rs"),
            "fn main() {}",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        assert!(has_bench_targets(pkg));

        let declared = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::write(
            declared.path().join("Cargo.toml"),
            "[package]\nname = \"p\"\n\n[[bench]]\nname = \"x\"\npath = \"b/x.rs\"\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        assert!(has_bench_targets(declared.path()));
    }

    #[test]
    fn auto_discovered_bin_file_counts() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = tmp.path();
        let bin_dir = dir.join("src").join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        assert!(!declares_bin(dir, KERNEL_BENCH));
        std::fs::write(bin_dir.join(format!("{KERNEL_BENCH}.rs")), "fn main() {}")
            .unwrap_or_else(|e| panic!("write: {e}"));
        assert!(declares_bin(dir, KERNEL_BENCH));
        assert!(!declares_bin(dir, CHURN_BENCH));
    }
}
