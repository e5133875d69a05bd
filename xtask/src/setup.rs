//! `cargo xtask setup`: the pinned toolchains and a bpf-linker built against
//! the pinned nightly's own libLLVM, in the repo-local `.tools/`.
//!
//! Layout of `.tools/` (gitignored):
//! - `llvm-<nightly>/lib/`: `libLLVM.so` and `<SONAME file name>`, both links
//!   to the nightly's `lib/libLLVM.so.<ver>-rust-<ver>-nightly`. The first is
//!   what bpf-linker's build (`LLVM_PREFIX`) links against; the second is what
//!   the built binary asks the loader for through its rpath, so it runs
//!   outside `rustup run` too.
//! - `bpf-linker/bin/bpf-linker`: `cargo install --root .tools/bpf-linker`.
//! - `setup.stamp`: see [`crate::stamp`].
//!
//! Idempotence: when the stamp matches the pins and a few cheap checks pass
//! (toolchains and components still installed, bpf-linker still runs), setup
//! does nothing and says so.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;
use crate::stamp::{self, Stamp};
use crate::toolchain::{self, Pin};
use crate::workspace::Workspace;

/// The bpf-linker release xtask installs. Its `llvm-<major>` feature must
/// match the nightly's LLVM major (read from `rustc -vV`).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// What later commands need from a completed setup.
#[derive(Debug, Clone)]
pub struct Tools {
    ws: Workspace,
    stable: Pin,
    linker_bin_dir: PathBuf,
}

impl Tools {
    /// The workspace these tools serve.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// The pinned stable toolchain.
    pub fn stable(&self) -> &Pin {
        &self.stable
    }

    /// `cargo`, run in the workspace root on the pinned stable toolchain, with
    /// `.tools/bpf-linker/bin` first in `PATH` (netmon-userspace's build.rs
    /// links the eBPF object with it) and the user's target dir, if any.
    pub fn cargo(&self) -> anyhow::Result<Command> {
        let mut cargo = Command::new("cargo");
        cargo
            .current_dir(self.ws.root())
            // Whatever toolchain ran xtask, build with the pinned one.
            .env("RUSTUP_TOOLCHAIN", &self.stable.channel)
            .env("PATH", self.path_with_linker()?);
        if let Some(dir) = self.ws.target_dir_override() {
            cargo.env("CARGO_TARGET_DIR", dir);
        }
        Ok(cargo)
    }

    /// `$PATH` with the bpf-linker directory prepended.
    fn path_with_linker(&self) -> anyhow::Result<OsString> {
        let current = std::env::var_os("PATH").unwrap_or_default();
        let dirs =
            std::iter::once(self.linker_bin_dir.clone()).chain(std::env::split_paths(&current));
        std::env::join_paths(dirs).context("build PATH with the bpf-linker directory")
    }
}

/// Makes sure the pinned toolchains and bpf-linker are installed; does
/// nothing when the stamp says they are and they still work.
pub fn ensure(ws: &Workspace) -> anyhow::Result<Tools> {
    let stable = Pin::read(&ws.stable_pin_file())?;
    let nightly = Pin::read(&ws.nightly_pin_file())?;
    let paths = SetupPaths::new(ws, &nightly);
    let old = stamp::read(&paths.stamp);

    match up_to_date(&paths, &stable, &nightly, old.as_ref()) {
        Ok(current) => eprintln!(
            "xtask setup: nothing to do (stable {}, {} with LLVM {}, bpf-linker {} in {})",
            current.stable,
            current.nightly,
            current.llvm_major,
            current.bpf_linker,
            relative(ws, &paths.linker_bin_dir).display(),
        ),
        Err(reason) => {
            eprintln!("xtask setup: {reason:#}; installing");
            install(ws, &paths, &stable, &nightly, old.as_ref())?;
        }
    }
    Ok(Tools {
        ws: ws.clone(),
        stable,
        linker_bin_dir: paths.linker_bin_dir,
    })
}

/// Where setup puts things (see the module docs).
struct SetupPaths {
    tools: PathBuf,
    stamp: PathBuf,
    llvm_prefix: PathBuf,
    linker_root: PathBuf,
    linker_bin_dir: PathBuf,
    linker: PathBuf,
}

impl SetupPaths {
    fn new(ws: &Workspace, nightly: &Pin) -> Self {
        let tools = ws.tools_dir();
        let linker_root = tools.join("bpf-linker");
        let linker_bin_dir = linker_root.join("bin");
        Self {
            stamp: tools.join("setup.stamp"),
            llvm_prefix: tools.join(format!("llvm-{}", nightly.channel)),
            linker: linker_bin_dir.join("bpf-linker"),
            linker_bin_dir,
            linker_root,
            tools,
        }
    }
}

/// The stamp setup would write now, given the nightly's `rustc -vV`.
fn wanted_stamp(stable: &Pin, nightly: &Pin, llvm_major: u32) -> Stamp {
    Stamp {
        stable: stable.channel.clone(),
        stable_components: stable.components.clone(),
        nightly: nightly.channel.clone(),
        nightly_components: nightly.components.clone(),
        llvm_major,
        bpf_linker: BPF_LINKER_VERSION.to_owned(),
    }
}

/// `Ok(stamp)` if nothing needs doing, else why not. Costs a handful of
/// process spawns (rustup, rustc -vV, bpf-linker --version): well under 2 s.
fn up_to_date(
    paths: &SetupPaths,
    stable: &Pin,
    nightly: &Pin,
    old: Option<&Stamp>,
) -> anyhow::Result<Stamp> {
    let Some(old) = old else {
        bail!("no setup stamp at {}", paths.stamp.display());
    };
    for pin in [stable, nightly] {
        let missing = pin
            .missing_components()
            .with_context(|| format!("toolchain {} not usable", pin.channel))?;
        if !missing.is_empty() {
            bail!("toolchain {} lacks {}", pin.channel, missing.join(", "));
        }
    }
    let llvm_major = toolchain::llvm_major(&nightly.rustc_version_verbose()?)?;
    let wanted = wanted_stamp(stable, nightly, llvm_major);
    if &wanted != old {
        bail!("pins changed since the last setup");
    }
    linker_version(&paths.linker)?;
    Ok(wanted)
}

/// Installs toolchains, (re)builds bpf-linker if needed, writes the stamp.
fn install(
    ws: &Workspace,
    paths: &SetupPaths,
    stable: &Pin,
    nightly: &Pin,
    old: Option<&Stamp>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&paths.tools)
        .with_context(|| format!("create {}", paths.tools.display()))?;
    stable.install()?;
    nightly.install()?;
    let llvm_major = toolchain::llvm_major(&nightly.rustc_version_verbose()?)
        .with_context(|| format!("LLVM version of {}", nightly.channel))?;
    let wanted = wanted_stamp(stable, nightly, llvm_major);

    let reusable = old.is_some_and(|old| wanted.linker_reusable_from(old))
        && linker_version(&paths.linker).is_ok();
    if reusable {
        eprintln!(
            "xtask setup: bpf-linker {BPF_LINKER_VERSION} already built for LLVM {llvm_major}"
        );
    } else {
        build_linker(paths, stable, nightly, llvm_major)?;
    }
    let version = linker_version(&paths.linker).context("the bpf-linker just installed")?;
    eprintln!(
        "xtask setup: {version} ready in {}",
        relative(ws, &paths.linker_bin_dir).display()
    );
    stamp::write(&paths.stamp, &wanted)
}

/// Links the nightly's libLLVM into `.tools/llvm-<nightly>/lib` and
/// `cargo install`s bpf-linker against it (about a minute).
fn build_linker(
    paths: &SetupPaths,
    stable: &Pin,
    nightly: &Pin,
    llvm_major: u32,
) -> anyhow::Result<()> {
    let sysroot = nightly.sysroot()?;
    let libllvm = toolchain::find_libllvm(&sysroot.join("lib"))?;
    link_llvm(&paths.llvm_prefix, &libllvm)?;

    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {llvm_major}); this takes a minute or two",
        libllvm.display()
    );
    let mut install = stable.rustup_run("cargo");
    install
        .current_dir(&paths.tools)
        .env("LLVM_PREFIX", &paths.llvm_prefix)
        // Build in cargo's own temporary directory, not the workspace's.
        .env_remove("CARGO_TARGET_DIR")
        // Inherited from `cargo xtask`; cargo install would warn that the
        // workspace's toolchain file chose the toolchain (rustup run did).
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
        .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
        // The crate's own lockfile: the dependency versions its release was
        // tested with.
        .arg("--locked")
        // Replace a binary built against another LLVM.
        .arg("--force")
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .arg("--root")
        .arg(&paths.linker_root);
    cmd::run(&mut install).context("build bpf-linker")?;
    remove_stale_llvm_dirs(&paths.tools, &paths.llvm_prefix)
}

/// `prefix/lib/libLLVM.so` and `prefix/lib/<file name of libllvm>`, both
/// links to `libllvm` (replacing whatever was there).
fn link_llvm(prefix: &Path, libllvm: &Path) -> anyhow::Result<()> {
    let lib = prefix.join("lib");
    if lib.exists() {
        std::fs::remove_dir_all(&lib).with_context(|| format!("remove {}", lib.display()))?;
    }
    std::fs::create_dir_all(&lib).with_context(|| format!("create {}", lib.display()))?;
    let soname = libllvm
        .file_name()
        .with_context(|| format!("{} has no file name", libllvm.display()))?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = lib.join(name);
        std::os::unix::fs::symlink(libllvm, &link)
            .with_context(|| format!("link {} -> {}", link.display(), libllvm.display()))?;
    }
    Ok(())
}

/// Removes `.tools/llvm-*` folders of other nightlies (links only; the
/// current bpf-linker no longer uses them).
fn remove_stale_llvm_dirs(tools: &Path, keep: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(tools).with_context(|| format!("list {}", tools.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("list {}", tools.display()))?
            .path();
        let is_llvm_dir = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("llvm-"));
        if is_llvm_dir && path != keep {
            std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// `bpf-linker --version` (e.g. `bpf-linker 0.13.0`), failing unless it runs
/// (its libLLVM resolves) and reports [`BPF_LINKER_VERSION`].
fn linker_version(linker: &Path) -> anyhow::Result<String> {
    let out = cmd::output(Command::new(linker).arg("--version"))
        .with_context(|| format!("{} does not run", linker.display()))?;
    let version = out.trim().to_owned();
    if !reports_version(&version, BPF_LINKER_VERSION) {
        bail!(
            "{} reports `{version}`, want {BPF_LINKER_VERSION}",
            linker.display()
        );
    }
    Ok(version)
}

/// Whether `bpf-linker --version` output names exactly `version`.
fn reports_version(output: &str, version: &str) -> bool {
    output.split_whitespace().any(|word| word == version)
}

/// `path` relative to the workspace root when inside it (for messages).
fn relative<'a>(ws: &Workspace, path: &'a Path) -> &'a Path {
    path.strip_prefix(ws.root()).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_version_words_must_match_exactly() {
        assert!(reports_version("bpf-linker 0.13.0", "0.13.0"));
        assert!(!reports_version("bpf-linker 0.13.01", "0.13.0"));
        assert!(!reports_version("bpf-linker 10.13.0", "0.13.0"));
        assert!(!reports_version("", "0.13.0"));
    }

    #[test]
    fn wanted_stamp_comes_from_the_pins() {
        let stable = Pin {
            channel: "1.99.1".into(),
            components: vec!["rustfmt".into(), "clippy".into()],
            profile: Some("minimal".into()),
        };
        let nightly = Pin {
            channel: "nightly-2026-10-29".into(),
            components: vec!["rust-src".into()],
            profile: None,
        };
        let stamp = wanted_stamp(&stable, &nightly, 23);
        assert_eq!(stamp.stable, stable.channel);
        assert_eq!(stamp.stable_components, stable.components);
        assert_eq!(stamp.nightly, nightly.channel);
        assert_eq!(stamp.nightly_components, nightly.components);
        assert_eq!(stamp.llvm_major, 23);
        assert_eq!(stamp.bpf_linker, BPF_LINKER_VERSION);
    }

    #[test]
    fn link_llvm_makes_both_names_and_replaces_old_links() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = tmp.path();
        let fake_lib = dir
            .join("sysroot-lib")
            .join("libLLVM.so.23.1-rust-1.101.0-nightly");
        std::fs::create_dir_all(dir.join("sysroot-lib")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::write(&fake_lib, b"elf").unwrap_or_else(|e| panic!("write: {e}"));
        let prefix = dir.join("llvm-nightly");
        // Twice: the second run must replace the first run's links.
        for _ in 0..2 {
            link_llvm(&prefix, &fake_lib).unwrap_or_else(|e| panic!("link: {e:#}"));
        }
        for name in ["libLLVM.so", "libLLVM.so.23.1-rust-1.101.0-nightly"] {
            let target = std::fs::read_link(prefix.join("lib").join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(target, fake_lib);
        }
    }

    #[test]
    fn stale_llvm_dirs_are_removed_and_the_rest_kept() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let tools = tmp.path();
        for dir in ["llvm-old", "llvm-new", "bpf-linker"] {
            std::fs::create_dir_all(tools.join(dir)).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        remove_stale_llvm_dirs(tools, &tools.join("llvm-new")).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!tools.join("llvm-old").exists());
        assert!(tools.join("llvm-new").exists());
        assert!(tools.join("bpf-linker").exists());
    }
}
