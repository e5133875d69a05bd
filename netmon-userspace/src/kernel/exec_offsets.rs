//! Offsets the `netmon_exec` and `netmon_fork` programs follow (`linux_binprm`, `file`,
//! `path`, `dentry`, `qstr`, `vfsmount`, `mount`, `task_struct`,
//! `mm_struct`), read from the running kernel's BTF like
//! [`super::task_offsets`] reads `task_struct`'s. Unknown offsets leave the
//! program disabled ([`ExecOffsets::UNKNOWN`]): short-lived processes then
//! keep only what their sockets recorded (pid, start time, comm, uid,
//! cgroup id).

use std::path::Path;

use netmon_common::exec::ExecOffsets;

use super::task_offsets::{TaskOffsetsError, VMLINUX_BTF, btf::Btf};

/// Errors finding the offsets (a struct or member missing or odd).
#[derive(Debug, thiserror::Error)]
pub enum ExecOffsetsError {
    /// The BTF could not be read or parsed.
    #[error(transparent)]
    Btf(#[from] TaskOffsetsError),
    /// No complete struct of that name in the BTF.
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(&'static str),
    /// The struct has no member of that name.
    #[error("struct {0} has no member {1}")]
    NoMember(&'static str, &'static str),
    /// The member is not where or what the program expects (not byte
    /// aligned, not a pointer where one is read, wrong size).
    #[error("{0}.{1} has an unexpected type or offset")]
    BadMember(&'static str, &'static str),
}

/// What the program reads at a member.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A pointer (8 bytes).
    Ptr,
    /// An integer of this many bytes.
    Int(u32),
    /// An embedded struct (no check beyond its presence).
    Struct,
}

/// Reads the offsets from the running kernel's BTF.
///
/// # Errors
/// As [`exec_offsets_from_btf`], or when the file cannot be read.
pub fn exec_offsets() -> Result<ExecOffsets, ExecOffsetsError> {
    let path = Path::new(VMLINUX_BTF);
    let data = std::fs::read(path).map_err(|source| TaskOffsetsError::Read {
        path: path.to_owned(),
        source,
    })?;
    exec_offsets_from_btf(&data)
}

/// Reads the offsets from a raw BTF blob.
///
/// # Errors
/// A malformed blob, a missing struct or member, or a member of an
/// unexpected type.
pub fn exec_offsets_from_btf(data: &[u8]) -> Result<ExecOffsets, ExecOffsetsError> {
    let parse = |source| TaskOffsetsError::Parse {
        path: std::path::PathBuf::new(),
        source,
    };
    let btf = Btf::parse(data).map_err(parse)?;
    let member = |st: &'static str, name: &'static str, kind: Kind| {
        let id = btf.find_struct(st).ok_or(ExecOffsetsError::NoStruct(st))?;
        let m = btf
            .find_member(id, name)
            .map_err(parse)?
            .ok_or(ExecOffsetsError::NoMember(st, name))?;
        let bad = || ExecOffsetsError::BadMember(st, name);
        if m.bit_offset % 8 != 0 {
            return Err(bad());
        }
        let ok = match kind {
            Kind::Ptr => btf.is_pointer(m.type_id).map_err(parse)?,
            Kind::Int(size) => btf.size_of(m.type_id).map_err(parse)? == Some(size),
            Kind::Struct => btf.size_of(m.type_id).map_err(parse)?.is_some(),
        };
        if ok { Ok(m.bit_offset / 8) } else { Err(bad()) }
    };
    Ok(ExecOffsets {
        valid: 1,
        binprm_file: member("linux_binprm", "file", Kind::Ptr)?,
        binprm_filename: member("linux_binprm", "filename", Kind::Ptr)?,
        file_f_path: member("file", "f_path", Kind::Struct)?,
        path_mnt: member("path", "mnt", Kind::Ptr)?,
        path_dentry: member("path", "dentry", Kind::Ptr)?,
        dentry_d_parent: member("dentry", "d_parent", Kind::Ptr)?,
        dentry_d_name: member("dentry", "d_name", Kind::Struct)?,
        qstr_len: member("qstr", "len", Kind::Int(4))?,
        qstr_name: member("qstr", "name", Kind::Ptr)?,
        vfsmount_mnt_root: member("vfsmount", "mnt_root", Kind::Ptr)?,
        mount_mnt: member("mount", "mnt", Kind::Struct)?,
        mount_mnt_parent: member("mount", "mnt_parent", Kind::Ptr)?,
        mount_mnt_mountpoint: member("mount", "mnt_mountpoint", Kind::Ptr)?,
        task_mm: member("task_struct", "mm", Kind::Ptr)?,
        mm_arg_start: member("mm_struct", "arg_start", Kind::Int(8))?,
        mm_arg_end: member("mm_struct", "arg_end", Kind::Int(8))?,
        task_tgid: member("task_struct", "tgid", Kind::Int(4))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use super::super::task_offsets::btf::builder::BtfBuilder;
    use super::*;

    /// Every struct the program follows, with members at made-up offsets
    /// (qstr's `len` inside an anonymous union, as in the kernel).
    fn blob(qstr_len_size: u32) -> Vec<u8> {
        let mut b = BtfBuilder::new();
        let int = b.int("unsigned int", qstr_len_size);
        let u32t = b.int("u32", 4);
        let ul = b.int("long unsigned int", 8);
        let ch = b.int("char", 1);
        let p = b.ptr(ch);
        let path = b.composite(
            false,
            "path",
            16,
            false,
            &[("mnt", p, 0, 0), ("dentry", p, 64, 0)],
        );
        let hl = b.composite(
            false,
            "",
            8,
            false,
            &[("hash", u32t, 0, 0), ("len", int, 32, 0)],
        );
        let u = b.composite(
            true,
            "",
            8,
            false,
            &[("", hl, 0, 0), ("hash_len", ul, 0, 0)],
        );
        let qstr = b.composite(
            false,
            "qstr",
            16,
            false,
            &[("", u, 0, 0), ("name", p, 64, 0)],
        );
        let vfsmount = b.composite(false, "vfsmount", 24, false, &[("mnt_root", p, 0, 0)]);
        b.composite(
            false,
            "linux_binprm",
            400,
            false,
            &[("file", p, 8 * 64, 0), ("filename", p, 8 * 96, 0)],
        );
        b.composite(false, "file", 200, false, &[("f_path", path, 8 * 16, 0)]);
        b.composite(
            false,
            "dentry",
            200,
            false,
            &[("d_parent", p, 8 * 24, 0), ("d_name", qstr, 8 * 32, 0)],
        );
        b.composite(
            false,
            "mount",
            300,
            false,
            &[
                ("mnt_parent", p, 8 * 16, 0),
                ("mnt_mountpoint", p, 8 * 24, 0),
                ("mnt", vfsmount, 8 * 32, 0),
            ],
        );
        let pid_t = b.int("int", 4);
        b.composite(
            false,
            "task_struct",
            4000,
            false,
            &[("tgid", pid_t, 8 * 1500, 0), ("mm", p, 8 * 2000, 0)],
        );
        let inner = b.composite(
            false,
            "",
            800,
            false,
            &[("arg_start", ul, 8 * 300, 0), ("arg_end", ul, 8 * 308, 0)],
        );
        b.composite(false, "mm_struct", 1000, false, &[("", inner, 0, 0)]);
        b.build()
    }

    #[test]
    fn reads_every_offset_from_a_small_blob() {
        let o = exec_offsets_from_btf(&blob(4)).unwrap();
        assert_eq!(
            o,
            ExecOffsets {
                valid: 1,
                binprm_file: 64,
                binprm_filename: 96,
                file_f_path: 16,
                path_mnt: 0,
                path_dentry: 8,
                dentry_d_parent: 24,
                dentry_d_name: 32,
                qstr_len: 4,
                qstr_name: 8,
                vfsmount_mnt_root: 0,
                mount_mnt: 32,
                mount_mnt_parent: 16,
                mount_mnt_mountpoint: 24,
                task_mm: 2000,
                mm_arg_start: 300,
                mm_arg_end: 308,
                task_tgid: 1500,
            }
        );
    }

    #[test]
    fn a_member_of_the_wrong_size_is_refused() {
        assert!(matches!(
            exec_offsets_from_btf(&blob(8)),
            Err(ExecOffsetsError::BadMember("qstr", "len"))
        ));
    }

    /// The running kernel: every offset found, and the ones whose place is
    /// fixed by the kernel's source are where that source puts them.
    #[test]
    fn reads_the_running_kernel() {
        let btf = Path::new(VMLINUX_BTF).exists();
        let what = format!("{VMLINUX_BTF} (a kernel with CONFIG_DEBUG_INFO_BTF)");
        if !crate::testing::require(btf, "reads_the_running_kernel", &what) {
            return;
        }
        let o = exec_offsets().unwrap();
        assert_eq!(o.valid, 1);
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }
        assert_eq!((o.path_mnt, o.path_dentry), (0, 8));
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const unsigned char *name; }
        assert_eq!((o.qstr_len, o.qstr_name), (4, 8));
        // struct vfsmount { struct dentry *mnt_root; ... }
        assert_eq!(o.vfsmount_mnt_root, 0);
        assert_eq!(
            o.mm_arg_end,
            o.mm_arg_start + 8,
            "arg_start, arg_end adjacent"
        );
    }
}
