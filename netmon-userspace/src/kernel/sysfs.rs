//! Facts about the running system the loader checks before touching the
//! kernel: root, cgroup v2 mount, bpffs, kernel version; and the network
//! interfaces of this namespace (`/sys/class/net`), which answers name.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, FsType, statfs};

use super::KernelError;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: FsType = FsType(0xcafe_4a11);
/// Where bpffs lives by convention.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Minimum kernel: sk_storage with BPF_F_CLONE (5.2), cgroup sock_release
/// (5.9), bpf_link for cgroups (5.7), lookup-and-delete on hash maps (5.14),
/// bpf_get_netns_cookie in cgroup_sock (5.8). Tested on 6.18.
pub const MIN_KERNEL: (u32, u32) = (5, 15);

/// Where the kernel lists this network namespace's interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// Interface names of this network namespace, by index (empty when
/// `/sys/class/net` cannot be read).
#[must_use]
pub fn interface_names() -> HashMap<u32, String> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir(SYS_CLASS_NET) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(i) = std::fs::read_to_string(e.path().join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                out.insert(i, name);
            }
        }
    }
    out
}

/// The index of the interface named `name` in this network namespace now.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    std::fs::read_to_string(Path::new(SYS_CLASS_NET).join(name).join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// True if the effective user is root, or the process holds `CAP_BPF`
/// (the systemd unit's `netmon` user; what else it needs is checked by
/// [`crate::privilege::require`]).
#[must_use]
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
        || caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_BPF).unwrap_or(false)
}

/// The cgroup v2 mount point, from `/proc/mounts` (first `cgroup2` entry:
/// `/sys/fs/cgroup` on unified systems, `/sys/fs/cgroup/unified` on hybrid).
///
/// # Errors
/// [`KernelError::NoCgroup2`] when none is mounted.
pub fn cgroup2_root() -> Result<PathBuf, KernelError> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| KernelError::io("read /proc/mounts", e))?;
    cgroup2_root_in(&mounts).ok_or(KernelError::NoCgroup2)
}

/// The first cgroup2 mount point in a `/proc/mounts` text.
#[must_use]
pub fn cgroup2_root_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_path(mount_point)))
    })
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Checks that `path` is a directory on cgroup v2.
///
/// # Errors
/// [`KernelError::NotACgroup`] otherwise.
pub fn check_cgroup2_dir(path: &Path) -> Result<(), KernelError> {
    match statfs(path) {
        Ok(fs) if fs.filesystem_type() == CGROUP2_SUPER_MAGIC && path.is_dir() => Ok(()),
        _ => Err(KernelError::NotACgroup(path.to_path_buf())),
    }
}

/// True if `path` is on bpffs.
#[must_use]
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts bpffs at [`BPFFS_ROOT`] if it is not mounted there yet.
///
/// # Errors
/// [`KernelError::NoBpffs`] if mounting fails.
pub fn ensure_bpffs() -> Result<(), KernelError> {
    let root = Path::new(BPFFS_ROOT);
    if is_bpffs(root) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(KernelError::NoBpffs)
}

/// The running kernel's release string (`uname -r`).
#[must_use]
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Parses "6.18.44-fc-v657" into (6, 18).
#[must_use]
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks the running kernel is at least [`MIN_KERNEL`].
///
/// # Errors
/// [`KernelError::KernelTooOld`] when it is older.
pub fn check_kernel_version() -> Result<(), KernelError> {
    let release = kernel_release();
    match parse_release(&release) {
        Some(v) if v < MIN_KERNEL => Err(KernelError::KernelTooOld {
            found: release,
            needed: "5.15",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_cgroup2_mount() {
        let mounts = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            cgroup2_root_in(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn no_cgroup2_mount() {
        assert_eq!(cgroup2_root_in("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn unescapes_spaces() {
        let mounts = "cgroup2 /mnt/my\\040cg cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_root_in(mounts), Some(PathBuf::from("/mnt/my cg")));
    }

    #[test]
    fn parses_release() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn tmp_is_not_a_cgroup() {
        assert!(matches!(
            check_cgroup2_dir(Path::new("/tmp")),
            Err(KernelError::NotACgroup(_))
        ));
    }

    #[test]
    fn loopback_is_listed_by_name_and_index() {
        let lo = std::fs::read_to_string("/sys/class/net/lo/ifindex")
            .expect("/sys/class/net/lo")
            .trim()
            .parse::<u32>()
            .expect("an index");
        assert_eq!(interface_index("lo"), Some(lo));
        assert_eq!(interface_names().get(&lo).map(String::as_str), Some("lo"));
        assert_eq!(interface_index("../lo"), None);
        assert_eq!(interface_index("no-such-interface-0"), None);
    }
}
