//! `cargo xtask package`: the Debian package, `target/debian/netmon_VERSION_ARCH.deb`.
//!
//! Built with `dpkg-deb` from a staged tree, not cargo-deb: the files are
//! exactly [`crate::install::files`] (one list for `install` and the
//! package, so they cannot drift apart), `dpkg-deb` is part of dpkg and so
//! present on every Debian/Ubuntu machine and in CI, and cargo-deb would be
//! one more tool to build there (minutes on CI's cores) for what is a
//! control file and three maintainer scripts (deploy/debian/).
//!
//! The package installs under `/usr` (unit in `/usr/lib/systemd/system`,
//! zsh completion in Debian's `vendor-completions`, man page gzipped),
//! marks `/etc/netmon/config.toml` a conffile (dpkg never overwrites a
//! changed one), depends on the libc version the binary needs (the highest
//! `GLIBC_x.y` symbol version it references) and on `passwd` (postinst's
//! `groupadd`/`useradd`). postinst creates the `netmon` group and user and
//! `/var/lib/netmon`; it enables and starts nothing: `dpkg -i` then
//! `systemctl enable --now netmon` is the whole setup.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::cmd;
use crate::install::{self, Layout};
use crate::workspace::Workspace;

/// Maintainer scripts.
const POSTINST: &str = include_str!("../../deploy/debian/postinst");
const PRERM: &str = include_str!("../../deploy/debian/prerm");
const POSTRM: &str = include_str!("../../deploy/debian/postrm");

/// Options of `cargo xtask package`.
#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Package this netmon binary instead of building the release one.
    #[arg(long, value_name = "FILE")]
    pub bin: Option<PathBuf>,
    /// Directory for the .deb (default: `<target>/debian`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `cargo xtask package`.
pub fn package(ws: &Workspace, args: &PackageArgs) -> anyhow::Result<()> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => {
            let tools = crate::setup::ensure(ws)?;
            crate::build::netmon(&tools, true)?
        }
    };
    let out = args.out.clone().unwrap_or_else(|| {
        // <target>/release/netmon → <target>/debian
        let bin = ws.binary(true, "netmon");
        bin.ancestors()
            .nth(2)
            .unwrap_or(Path::new("."))
            .join("debian")
    });
    let deb = build_deb(&bin, &out)?;
    eprintln!("built {}", deb.display());
    eprintln!(
        "install: dpkg -i {} && systemctl enable --now netmon",
        deb.display()
    );
    Ok(())
}

/// Stages the package tree under `out` and builds the .deb there; returns
/// its path.
pub fn build_deb(bin: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let version = version(bin)?;
    let arch = cmd::output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let name = format!("netmon_{version}_{arch}");
    let stage = out.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let layout = Layout {
        prefix: PathBuf::from("/usr"),
        zsh_dir: "share/zsh/vendor-completions",
        gzip_man: true,
    };
    let mut files = install::files(bin, &layout)?;
    files.push(install::File {
        path: PathBuf::from("/usr/share/doc/netmon/copyright"),
        contents: COPYRIGHT.as_bytes().to_vec(),
        mode: 0o644,
        config: false,
    });
    let mut size_bytes = 0_u64;
    for f in &files {
        let target = stage.join(f.path.strip_prefix("/").unwrap_or(&f.path));
        write(&target, &f.contents, f.mode)?;
        size_bytes += f.contents.len() as u64;
    }
    let conffiles: String = files
        .iter()
        .filter(|f| f.config)
        .map(|f| format!("{}\n", f.path.display()))
        .collect();
    let control = control(
        &version,
        &arch,
        &libc_depends(bin)?,
        size_bytes.div_ceil(1024),
    );
    let debian = stage.join("DEBIAN");
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    write(&debian.join("conffiles"), conffiles.as_bytes(), 0o644)?;
    write(&debian.join("postinst"), POSTINST.as_bytes(), 0o755)?;
    write(&debian.join("prerm"), PRERM.as_bytes(), 0o755)?;
    write(&debian.join("postrm"), POSTRM.as_bytes(), 0o755)?;
    let deb = out.join(format!("{name}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: netmon\n\n\
Files: *\n\
License: MIT or Apache-2.0\n";

fn control(version: &str, arch: &str, libc: &str, installed_kib: u64) -> String {
    format!(
        "Package: netmon\n\
Version: {version}\n\
Architecture: {arch}\n\
Maintainer: netmon developers <netmon@localhost>\n\
Installed-Size: {installed_kib}\n\
Depends: {libc}, passwd\n\
Recommends: systemd\n\
Section: net\n\
Priority: optional\n\
Description: exact, kernel-counted, per-process network accounting\n \
eBPF programs on cgroup hooks count every packet of every socket in the\n \
kernel; a daemon attributes each socket to its process and keeps an\n \
exactly-once history, queried with `netmon usage`, `top`, `history`.\n \
Nothing is enabled on install: `systemctl enable --now netmon`.\n"
    )
}

/// `netmon --version` → `0.1.0`.
fn version(bin: &Path) -> anyhow::Result<String> {
    let out = cmd::output(Command::new(bin).arg("--version"))?;
    out.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("`{} --version` printed {out:?}", bin.display()))
}

/// `libc6 (>= X.Y)` for the highest `GLIBC_X.Y` symbol version the binary
/// references (what dpkg-shlibdeps would find for a binary that links only
/// libc), or plain `libc6` when it references none.
fn libc_depends(bin: &Path) -> anyhow::Result<String> {
    let data = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    Ok(match max_glibc_version(&data) {
        Some((major, minor)) => format!("libc6 (>= {major}.{minor})"),
        None => "libc6".to_owned(),
    })
}

fn max_glibc_version(data: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_";
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = data[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let end = data[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(data.len(), |n| start + n);
        let text = std::str::from_utf8(&data[start..end]).unwrap_or("");
        let mut parts = text.split('.');
        if let (Some(Ok(major)), Some(Ok(minor))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u32>),
        ) {
            best = best.max(Some((major, minor)));
        }
        i = end.max(start);
    }
    best
}

fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_glibc_version_wins() {
        let data = b"\0GLIBC_2.3.4\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(max_glibc_version(data), Some((2, 34)));
        assert_eq!(max_glibc_version(b"nothing here"), None);
    }

    fn require_dpkg() -> bool {
        if cmd::find_in_path("dpkg-deb").is_some() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "dpkg-deb is missing");
        cmd::say_skipped("dpkg-deb is not installed");
        false
    }

    /// The .deb builds, `dpkg-deb --info`/`--contents` list what it should,
    /// and `dpkg --root` installs it into a throwaway root: files in place,
    /// the group, user and state directory created there by postinst (and
    /// not on this machine), nothing enabled.
    #[test]
    fn the_deb_builds_lists_its_files_and_installs_into_a_throwaway_root() {
        if !require_dpkg() {
            return;
        }
        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = install::tests::fake_netmon(scratch.path());
        let deb = build_deb(&bin, &scratch.path().join("out")).unwrap_or_else(|e| panic!("{e:#}"));

        let info = cmd::output(Command::new("dpkg-deb").arg("--info").arg(&deb))
            .unwrap_or_else(|e| panic!("{e:#}"));
        for want in [
            "Package: netmon",
            "Version: 0.1.0",
            "Depends: libc6",
            "passwd",
            "postinst",
            "prerm",
            "postrm",
            "conffiles",
        ] {
            assert!(info.contains(want), "{want} not in --info:\n{info}");
        }
        let contents = cmd::output(Command::new("dpkg-deb").arg("--contents").arg(&deb))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let expected = [
            "./usr/bin/netmon",
            "./usr/lib/systemd/system/netmon.service",
            "./usr/lib/sysusers.d/netmon.conf",
            "./etc/netmon/config.toml",
            "./usr/share/man/man1/netmon.1.gz",
            "./usr/share/bash-completion/completions/netmon",
            "./usr/share/zsh/vendor-completions/_netmon",
            "./usr/share/fish/vendor_completions.d/netmon.fish",
            "./usr/share/doc/netmon/copyright",
        ];
        for want in expected {
            assert!(
                contents
                    .lines()
                    .any(|l| l.ends_with(want) && l.contains("root/root")),
                "{want} (root-owned) not in --contents:\n{contents}"
            );
        }

        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "dpkg --root needs root");
            cmd::say_skipped("installing the .deb into a throwaway root needs root");
            return;
        }
        let root = scratch.path().join("root");
        for dir in ["etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            fs::create_dir_all(root.join(dir)).unwrap_or_else(|e| panic!("{e}"));
        }
        for (file, text) in [
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
            ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
            ("etc/gshadow", "root:*::\n"),
            ("var/lib/dpkg/status", ""),
        ] {
            fs::write(root.join(file), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let host_group = fs::read_to_string("/etc/group").unwrap_or_default();
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--install"])
            .arg(&deb)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "dpkg --root --install: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for want in expected {
            assert!(root.join(want).is_file(), "{want} not installed");
        }
        let group = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
        assert!(group.lines().any(|l| l.starts_with("netmon:")), "{group}");
        assert!(passwd.lines().any(|l| l.starts_with("netmon:")), "{passwd}");
        let state = fs::metadata(root.join("var/lib/netmon")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.permissions().mode() & 0o7777, 0o750);
        assert_eq!(
            fs::read_to_string("/etc/group").unwrap_or_default(),
            host_group,
            "postinst changed this machine's groups"
        );
        // Enabling is the user's step: no wants/ link anywhere.
        assert!(
            !root
                .join("etc/systemd/system/multi-user.target.wants")
                .exists()
        );
    }
}
