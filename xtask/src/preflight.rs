//! Can the kernel suite run here? Root (or sudo), bpffs, cgroup v2, BTF and a
//! new enough kernel. Each check reads the same files the suite relies on and
//! names what is missing, so a skipped or failed run says exactly why.

use std::path::Path;

use crate::privilege::Privilege;

/// Oldest kernel netmon supports (cgroup programs, sk_storage with
/// `BPF_F_CLONE`, BPF links for cgroups, BTF).
pub const MIN_KERNEL: (u32, u32) = (6, 6);

/// Where bpffs must be (the loader mounts it there if it is absent).
const BPFFS: &str = "/sys/fs/bpf";

/// Where the cgroup v2 hierarchy may be mounted.
pub const CGROUP2_MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// Everything that keeps the kernel suite from running here; empty when it
/// can run.
pub fn blockers(privilege: &Privilege) -> Vec<String> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mounts = read("/proc/mounts");
    let filesystems = read("/proc/filesystems");
    let osrelease = read("/proc/sys/kernel/osrelease");
    let mut blockers = Vec::new();

    if *privilege == Privilege::Unavailable {
        blockers.push("not root, and sudo is not installed to become root".to_owned());
    }
    if mount_point(&mounts, "bpf", &[BPFFS]).is_none() {
        if !supports_fs(&filesystems, "bpf") {
            blockers.push(format!(
                "bpffs is not mounted at {BPFFS} and the kernel has no bpf filesystem (/proc/filesystems)"
            ));
        } else if !Path::new(BPFFS).is_dir() {
            blockers.push(format!(
                "bpffs is not mounted and {BPFFS} does not exist to mount it on"
            ));
        }
    }
    if mount_point(&mounts, "cgroup2", &CGROUP2_MOUNTS).is_none() {
        blockers.push(format!(
            "cgroup v2 is not mounted at {} (/proc/mounts)",
            CGROUP2_MOUNTS.join(" or ")
        ));
    }
    match kernel_version(&osrelease) {
        Some(version) if version >= MIN_KERNEL => {}
        Some(_) => blockers.push(format!(
            "kernel {} is older than {}.{}",
            osrelease.trim(),
            MIN_KERNEL.0,
            MIN_KERNEL.1
        )),
        None => blockers.push(format!(
            "cannot read the kernel version from /proc/sys/kernel/osrelease (`{}`)",
            osrelease.trim()
        )),
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        blockers.push(
            "no kernel BTF (/sys/kernel/btf/vmlinux missing: CONFIG_DEBUG_INFO_BTF)".to_owned(),
        );
    }
    blockers
}

/// The first of `candidates` where a filesystem of type `fstype` is mounted,
/// according to `/proc/mounts` text.
pub fn mount_point<'a>(mounts: &str, fstype: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().find(|candidate| {
        mounts.lines().any(|line| {
            let mut fields = line.split_whitespace();
            let (_source, target, kind) = (fields.next(), fields.next(), fields.next());
            target == Some(*candidate) && kind == Some(fstype)
        })
    })
}

/// Whether `/proc/filesystems` text lists `fstype` (`nodev\tbpf`).
pub fn supports_fs(filesystems: &str, fstype: &str) -> bool {
    filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// `(major, minor)` from a kernel release string (`6.18.44-fc-v657`).
pub fn kernel_version(osrelease: &str) -> Option<(u32, u32)> {
    let mut parts = osrelease.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
";

    #[test]
    fn finds_cgroup2_at_the_unified_mount() {
        assert_eq!(
            mount_point(MOUNTS, "cgroup2", &CGROUP2_MOUNTS),
            Some("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn finds_cgroup2_at_the_plain_mount() {
        let mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            mount_point(mounts, "cgroup2", &CGROUP2_MOUNTS),
            Some("/sys/fs/cgroup")
        );
    }

    #[test]
    fn a_v1_or_tmpfs_mount_is_not_cgroup2() {
        let mounts =
            "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/unified cgroup rw 0 0\n";
        assert_eq!(mount_point(mounts, "cgroup2", &CGROUP2_MOUNTS), None);
        assert_eq!(mount_point("", "cgroup2", &CGROUP2_MOUNTS), None);
    }

    #[test]
    fn bpffs_mount_is_found_only_at_its_path() {
        assert_eq!(mount_point(MOUNTS, "bpf", &[BPFFS]), Some(BPFFS));
        let elsewhere = "bpf /mnt/bpf bpf rw 0 0\n";
        assert_eq!(mount_point(elsewhere, "bpf", &[BPFFS]), None);
    }

    #[test]
    fn filesystems_list_is_matched_by_whole_name() {
        let filesystems = "nodev\tsysfs\nnodev\tbpf\n\text4\nnodev\tcgroup2\n";
        assert!(supports_fs(filesystems, "bpf"));
        assert!(supports_fs(filesystems, "ext4"));
        assert!(!supports_fs(filesystems, "cgroup"));
        assert!(!supports_fs("nodev\tsysfs\n", "bpf"));
    }

    #[test]
    fn kernel_versions_parse_and_compare() {
        assert_eq!(kernel_version("6.18.44-fc-v657\n"), Some((6, 18)));
        assert_eq!(kernel_version("6.6-rc1"), Some((6, 6)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_version(""), None);
        let supported = |release: &str| kernel_version(release).is_some_and(|v| v >= MIN_KERNEL);
        assert!(supported("6.18.44-fc-v657"));
        assert!(supported("6.6.0"));
        assert!(supported("7.0.1"));
        assert!(!supported("6.5.13"));
        assert!(!supported("5.15.0-91-generic"));
    }
}
