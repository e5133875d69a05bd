//! The raw `bpf(2)` call the benchmarks use to load their empty comparison
//! programs (a few instructions, no ELF, no loader library), shared by
//! `netmon-bench-kernel` and `netmon-bench-forward`.
use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd};

/// `bpf(cmd, attr, 128)`: the fd the command returns (a program or a link).
///
/// # Errors
/// The kernel's error for the command.
pub fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, writable `union bpf_attr` prefix of the
    // size passed; the pointers in it (instructions, license) outlive the
    // call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf(2) returned a bad fd"))?;
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
