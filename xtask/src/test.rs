//! `cargo xtask test`: lint, unit and simulated tests, then the kernel suite
//! as root.
//!
//! Rules for the kernel suite (it needs root, bpffs, cgroup v2, BTF):
//! - with `CI=true` it must run: if it cannot, the command fails at once and
//!   says why;
//! - elsewhere a loud `KERNEL SUITE SKIPPED: <why>` warning is printed and the
//!   command still exits non-zero, unless `--allow-skip` was given;
//! - `--no-kernel` leaves it out on purpose (a quick run).
//!
//! Every step runs even if an earlier one failed (so one run shows every
//! problem); the command fails if any did.

use anyhow::bail;

use crate::build;
use crate::cmd;
use crate::preflight;
use crate::privilege::Privilege;
use crate::setup::{self, Tools};
use crate::toolchain;
use crate::workspace::Workspace;

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Leave out the kernel suite (a quick run).
    #[arg(long)]
    pub no_kernel: bool,
    /// Leave out `cargo fmt --check` and clippy.
    #[arg(long)]
    pub no_lint: bool,
    /// Outside CI, exit 0 even when the kernel suite cannot run here (the
    /// warning is still printed).
    #[arg(long)]
    pub allow_skip: bool,
    /// Test-harness arguments for both test runs, after `--` (e.g. a test
    /// name filter).
    #[arg(last = true, value_name = "FILTER")]
    pub harness_args: Vec<String>,
}

/// What happens to the kernel suite in this run.
#[derive(Debug)]
enum KernelPlan {
    /// Run it, becoming root this way.
    Run(Privilege),
    /// `--no-kernel`.
    Disabled,
    /// It cannot run here, for these reasons.
    Blocked(Vec<String>),
}

/// Checks whether the kernel suite can run (before setup and builds, so CI
/// fails fast), then runs every step; fails if any failed or the kernel suite
/// was skipped without `--allow-skip` or `--no-kernel`.
pub fn test(ws: &Workspace, args: &TestArgs) -> anyhow::Result<()> {
    let ci = is_ci(std::env::var("CI").ok().as_deref());
    let plan = if args.no_kernel {
        KernelPlan::Disabled
    } else {
        let privilege = Privilege::detect();
        let blockers = preflight::blockers(&privilege);
        if blockers.is_empty() {
            KernelPlan::Run(privilege)
        } else {
            KernelPlan::Blocked(blockers)
        }
    };
    if let KernelPlan::Blocked(why) = &plan {
        if ci {
            bail!(
                "CI=true and the kernel suite cannot run here: {}",
                why.join("; ")
            );
        }
        warn_skipped(why);
    }

    let tools = setup::ensure(ws)?;
    let mut failed = Vec::new();
    if !args.no_lint {
        let mut fmt = tools.cargo()?;
        fmt.args(["fmt", "--all", "--", "--check"]);
        step(&mut failed, "rustfmt", &mut fmt)?;
        // The default members plus the kernel test crate (host code like any
        // other); the eBPF crate only builds for the bpf target.
        let mut clippy = tools.cargo()?;
        clippy.args([
            "clippy",
            "--workspace",
            "--exclude",
            "netmon-ebpf",
            "--all-targets",
        ]);
        clippy.args(["--", "-D", "warnings"]);
        step(&mut failed, "clippy", &mut clippy)?;
    }
    let mut unit = tools.cargo()?;
    // --no-fail-fast: one failing crate must not hide the others' results.
    unit.args(["test", "--no-fail-fast", "--"])
        .args(&args.harness_args);
    step(&mut failed, "unit and simulated tests", &mut unit)?;

    match &plan {
        KernelPlan::Run(privilege) => {
            kernel_suite(&tools, privilege, &args.harness_args, &mut failed)?;
        }
        KernelPlan::Disabled => eprintln!("xtask test: kernel suite left out (--no-kernel)"),
        KernelPlan::Blocked(why) => warn_skipped(why),
    }

    if !failed.is_empty() {
        bail!("xtask test failed: {}", failed.join(", "));
    }
    if let KernelPlan::Blocked(why) = &plan
        && !args.allow_skip
    {
        bail!(
            "kernel suite skipped ({}); pass --allow-skip to accept that, or --no-kernel",
            why.join("; ")
        );
    }
    eprintln!("xtask test: all steps passed");
    Ok(())
}

/// Builds release netmon, then runs the kernel test crate as root, one test
/// at a time (kernel state is shared), with `NETMON_BIN` naming the binary.
fn kernel_suite(
    tools: &Tools,
    privilege: &Privilege,
    harness_args: &[String],
    failed: &mut Vec<&'static str>,
) -> anyhow::Result<()> {
    let bin = match build::netmon(tools, true) {
        Ok(bin) => bin,
        Err(err) => {
            eprintln!("xtask test: {err:#}");
            failed.push("netmon release build");
            return Ok(());
        }
    };
    let mut suite = tools.cargo()?;
    suite
        .args([
            "test",
            "--release",
            "--no-fail-fast",
            "-p",
            "netmon-tests",
            "--",
        ])
        .arg("--test-threads=1")
        .args(harness_args)
        .env("NETMON_BIN", &bin);
    let prefix = privilege.prefix("the kernel suite")?;
    if !prefix.is_empty() {
        // cargo builds as the user and runs each test binary through sudo.
        let host_vv = tools.stable().rustc_version_verbose()?;
        let host = toolchain::host_triple(&host_vv)?;
        suite.env(runner_env_var(host), prefix.join(" "));
    }
    step(failed, "kernel suite", &mut suite)
}

/// Runs one step; records `name` in `failed` if it exits non-zero.
fn step(
    failed: &mut Vec<&'static str>,
    name: &'static str,
    command: &mut std::process::Command,
) -> anyhow::Result<()> {
    eprintln!("xtask test: {name}");
    if !cmd::status(command)?.success() {
        eprintln!("xtask test: {name} FAILED");
        failed.push(name);
    }
    Ok(())
}

/// The loud, multi-line notice that the kernel suite will not run.
fn warn_skipped(why: &[String]) {
    let rule = "=".repeat(72);
    eprintln!("{rule}");
    for reason in why {
        eprintln!("KERNEL SUITE SKIPPED: {reason}");
    }
    eprintln!("The kernel tests (real eBPF, real traffic) did not run: netmon is NOT");
    eprintln!("verified on this machine. In CI (CI=true) this is an error.");
    eprintln!("{rule}");
}

/// Whether the `CI` environment variable asks for CI behaviour.
fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("true") || v == "1" || v.eq_ignore_ascii_case("yes")
    })
}

/// `CARGO_TARGET_<TRIPLE>_RUNNER` for a host triple.
fn runner_env_var(host: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUNNER",
        host.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_detected_from_common_values() {
        for value in ["true", "TRUE", "1", "yes", " true\n"] {
            assert!(is_ci(Some(value)), "{value:?}");
        }
        for value in ["", "false", "0", "no"] {
            assert!(!is_ci(Some(value)), "{value:?}");
        }
        assert!(!is_ci(None));
    }

    #[test]
    fn runner_variable_follows_cargo_naming() {
        assert_eq!(
            runner_env_var("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER"
        );
        assert_eq!(
            runner_env_var("aarch64-unknown-linux-musl"),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER"
        );
    }

    #[test]
    fn failing_steps_are_recorded_and_passing_ones_not() {
        let mut failed = Vec::new();
        step(
            &mut failed,
            "passes",
            &mut std::process::Command::new("true"),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        step(
            &mut failed,
            "fails",
            &mut std::process::Command::new("false"),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(failed, ["fails"]);
    }
}
