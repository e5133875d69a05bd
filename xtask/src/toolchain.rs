//! The pinned toolchains: reading `rust-toolchain.toml`, asking rustup and
//! rustc about them, installing them.
//!
//! The pins live only in the two `rust-toolchain.toml` files (workspace root:
//! stable; `netmon-ebpf/`: nightly). xtask never names a version itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow, bail};

use crate::cmd;

/// What a `rust-toolchain.toml` pins (its `[toolchain]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// `channel = "..."`: a version (`1.99.1`) or a dated nightly.
    pub channel: String,
    /// `components = [...]`, in file order (empty when absent).
    pub components: Vec<String>,
    /// `profile = "..."`; rustup's default when absent.
    pub profile: Option<String>,
}

impl Pin {
    /// Reads and parses a `rust-toolchain.toml`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        parse_pin(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// `rustup toolchain install` with the pinned profile and components. Does
    /// nothing (quickly) when they are all installed already.
    pub fn install(&self) -> anyhow::Result<()> {
        let mut rustup = Command::new("rustup");
        rustup.args(["toolchain", "install", &self.channel]);
        if let Some(profile) = &self.profile {
            rustup.args(["--profile", profile]);
        }
        for component in &self.components {
            rustup.args(["-c", component]);
        }
        cmd::run(&mut rustup).context("install a pinned toolchain (is rustup installed?)")
    }

    /// Pinned components rustup does not list as installed for this
    /// toolchain. Fails if the toolchain itself is not installed.
    pub fn missing_components(&self) -> anyhow::Result<Vec<String>> {
        let listed = cmd::output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            &self.channel,
        ]))?;
        Ok(missing_components(&listed, &self.components))
    }

    /// `rustc -vV` of this toolchain (never installs it).
    pub fn rustc_version_verbose(&self) -> anyhow::Result<String> {
        cmd::output(self.rustup_run("rustc").arg("-vV"))
    }

    /// The toolchain's sysroot (`rustc --print sysroot`).
    pub fn sysroot(&self) -> anyhow::Result<PathBuf> {
        let out = cmd::output(self.rustup_run("rustc").args(["--print", "sysroot"]))?;
        Ok(PathBuf::from(out.trim()))
    }

    /// `rustup run <channel> <program>`: runs one of this toolchain's tools
    /// whatever `PATH`, `RUSTUP_TOOLCHAIN` or the working directory say.
    pub fn rustup_run(&self, program: &str) -> Command {
        let mut rustup = Command::new("rustup");
        rustup.args(["run", &self.channel, program]);
        rustup
    }
}

/// Parses the `[toolchain]` table of a `rust-toolchain.toml`: `channel`
/// (required), `components` and `profile`. Other keys (`targets`, `path`) are
/// ignored: xtask does not use them.
///
/// A small hand parser rather than the `toml` crate: the file format is tiny
/// and xtask's dependencies are kept to a minimum. It accepts `#` comments,
/// blank lines and arrays spread over several lines.
pub fn parse_pin(text: &str) -> anyhow::Result<Pin> {
    let mut section = String::new();
    let mut channel = None;
    let mut components = Vec::new();
    let mut profile = None;
    let mut lines = text.lines().map(strip_comment);
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.trim().clone_into(&mut section);
            continue;
        }
        if section != "toolchain" {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("expected `key = value`, found `{line}`"))?;
        let key = key.trim();
        let mut value = value.trim().to_owned();
        if value.starts_with('[') {
            while !value.contains(']') {
                let next = lines
                    .next()
                    .ok_or_else(|| anyhow!("array `{key}` has no closing `]`"))?;
                value.push_str(next.trim());
            }
        }
        match key {
            "channel" => channel = Some(parse_string(&value)?),
            "profile" => profile = Some(parse_string(&value)?),
            "components" => components = parse_string_array(&value)?,
            _ => {}
        }
    }
    let channel = channel.ok_or_else(|| anyhow!("no `channel = \"...\"` in [toolchain]"))?;
    if channel.is_empty() {
        bail!("`channel` is empty");
    }
    Ok(Pin {
        channel,
        components,
        profile,
    })
}

/// `line` without a trailing `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `"text"` -> `text`.
fn parse_string(value: &str) -> anyhow::Result<String> {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("expected a \"quoted string\", found `{value}`"))
}

/// `["a", "b"]` -> `[a, b]` (a trailing comma is allowed).
fn parse_string_array(value: &str) -> anyhow::Result<Vec<String>> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| anyhow!("expected [\"a\", \"b\"], found `{value}`"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_string)
        .collect()
}

/// The LLVM major version from `rustc -vV` output (`LLVM version: 23.1.4` ->
/// 23).
pub fn llvm_major(rustc_vv: &str) -> anyhow::Result<u32> {
    let version = verbose_field(rustc_vv, "LLVM version")
        .ok_or_else(|| anyhow!("no `LLVM version:` line in rustc -vV output"))?;
    let major = version.split('.').next().unwrap_or(version);
    major
        .parse()
        .with_context(|| format!("LLVM version `{version}` does not start with a number"))
}

/// The host triple from `rustc -vV` output (`host: x86_64-unknown-linux-gnu`).
pub fn host_triple(rustc_vv: &str) -> anyhow::Result<&str> {
    verbose_field(rustc_vv, "host").ok_or_else(|| anyhow!("no `host:` line in rustc -vV output"))
}

/// The value of a `key: value` line of `rustc -vV`.
fn verbose_field<'a>(rustc_vv: &'a str, key: &str) -> Option<&'a str> {
    rustc_vv.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}

/// The pinned components absent from `rustup component list --installed`
/// output. Installed names carry the host triple (`rustfmt-x86_64-...`) except
/// target-independent ones (`rust-src`); the host triple is read from the
/// `rustc-<triple>` line every toolchain has.
pub fn missing_components(installed: &str, wanted: &[String]) -> Vec<String> {
    let names: Vec<&str> = installed.lines().map(str::trim).collect();
    let host = names.iter().find_map(|n| n.strip_prefix("rustc-"));
    wanted
        .iter()
        .filter(|want| {
            let with_host = host.map(|h| format!("{want}-{h}"));
            !names
                .iter()
                .any(|&have| have == want.as_str() || Some(have) == with_host.as_deref())
        })
        .cloned()
        .collect()
}

/// The libLLVM shared object in a toolchain's `lib/` directory:
/// `libLLVM.so.<ver>-rust-<ver>-nightly`. (Its neighbour
/// `libLLVM-<major>-rust-...so` is a linker script, not the library.)
pub fn find_libllvm(lib_dir: &Path) -> anyhow::Result<PathBuf> {
    let entries =
        std::fs::read_dir(lib_dir).with_context(|| format!("list {}", lib_dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", lib_dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    let name = pick_libllvm(&names).ok_or_else(|| {
        anyhow!(
            "no libLLVM.so.* in {} (does this nightly ship its LLVM as a shared library?)",
            lib_dir.display()
        )
    })?;
    Ok(lib_dir.join(name))
}

/// The `libLLVM.so.*` file among `names` (the one with the longest name if
/// there were several: the most specific version).
pub fn pick_libllvm(names: &[String]) -> Option<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("libLLVM.so."))
        .max_by_key(|n| (n.len(), *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_PIN: &str = r#"# The stable toolchain netmon builds with.
[toolchain]
channel = "1.99.1"
components = ["rustfmt", "clippy"]
profile = "minimal"
"#;

    fn parsed(text: &str) -> Pin {
        parse_pin(text).unwrap_or_else(|e| panic!("parse failed: {e:#}"))
    }

    #[test]
    fn parses_channel_components_and_profile() {
        assert_eq!(
            parsed(ROOT_PIN),
            Pin {
                channel: "1.99.1".into(),
                components: vec!["rustfmt".into(), "clippy".into()],
                profile: Some("minimal".into()),
            }
        );
    }

    #[test]
    fn parses_the_real_pin_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or_else(|| panic!("xtask has a parent dir"));
        for file in ["rust-toolchain.toml", "netmon-ebpf/rust-toolchain.toml"] {
            let pin = Pin::read(&root.join(file)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert!(!pin.channel.is_empty(), "{file}");
        }
    }

    #[test]
    fn parses_nightly_with_comments_and_multiline_array() {
        let pin = parsed(
            "[toolchain]  # the eBPF one\n\
             channel = \"nightly-2026-10-29\" # dated\n\
             components = [\n  \"rust-src\", # for build-std\n  \"llvm-tools\",\n]\n",
        );
        assert_eq!(pin.channel, "nightly-2026-10-29");
        assert_eq!(pin.components, ["rust-src", "llvm-tools"]);
        assert_eq!(pin.profile, None);
    }

    #[test]
    fn ignores_keys_outside_the_toolchain_table() {
        let pin = parsed("[other]\nchannel = \"wrong\"\n[toolchain]\nchannel = \"right\"\n");
        assert_eq!(pin.channel, "right");
    }

    #[test]
    fn rejects_missing_or_malformed_channel() {
        assert!(parse_pin("[toolchain]\ncomponents = [\"rust-src\"]\n").is_err());
        assert!(parse_pin("[toolchain]\nchannel = 1.99\n").is_err());
        assert!(parse_pin("[toolchain]\nchannel = \"\"\n").is_err());
        assert!(parse_pin("[toolchain]\ncomponents = [\"a\",\n").is_err());
    }

    const NIGHTLY_VV: &str = "rustc 1.101.0-nightly (92ffebece 2026-10-28)\n\
        binary: rustc\n\
        commit-hash: 92ffebeceaa0a071066f233873c2438e73d70fe7\n\
        commit-date: 2026-10-28\n\
        host: x86_64-unknown-linux-gnu\n\
        release: 1.101.0-nightly\n\
        LLVM version: 23.1.4\n";

    #[test]
    fn llvm_major_from_rustc_vv() {
        assert_eq!(llvm_major(NIGHTLY_VV).ok(), Some(23));
        assert_eq!(llvm_major("LLVM version: 9\n").ok(), Some(9));
        assert!(llvm_major("rustc 1.0\n").is_err());
        assert!(llvm_major("LLVM version: x.1\n").is_err());
    }

    #[test]
    fn host_triple_from_rustc_vv() {
        assert_eq!(
            host_triple(NIGHTLY_VV).ok(),
            Some("x86_64-unknown-linux-gnu")
        );
    }

    #[test]
    fn missing_components_matches_host_suffixed_names() {
        let installed = "cargo-x86_64-unknown-linux-gnu\nrust-src\n\
            rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n\
            rustfmt-x86_64-unknown-linux-gnu\n";
        let wanted = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        assert!(missing_components(installed, &wanted(&["rustfmt", "rust-src"])).is_empty());
        assert_eq!(
            missing_components(installed, &wanted(&["rustfmt", "clippy"])),
            ["clippy"]
        );
        // A prefix of an installed name is not that component.
        assert_eq!(missing_components(installed, &wanted(&["rust"])), ["rust"]);
        // Another target's component is not the host's.
        let other_target = "rustc-x86_64-unknown-linux-gnu\nclippy-aarch64-unknown-linux-gnu\n";
        assert_eq!(
            missing_components(other_target, &wanted(&["clippy"])),
            ["clippy"]
        );
    }

    #[test]
    fn picks_the_shared_object_not_the_linker_script() {
        let names = [
            "libLLVM-23-rust-1.101.0-nightly.so",
            "libLLVM.so.23.1-rust-1.101.0-nightly",
            "librustc_driver-23e18013e8e3f5f8.so",
        ]
        .map(String::from);
        assert_eq!(
            pick_libllvm(&names),
            Some("libLLVM.so.23.1-rust-1.101.0-nightly")
        );
        assert_eq!(pick_libllvm(&names[..1]), None);
    }
}
