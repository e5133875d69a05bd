//! The raw `bpf(2)` call the benchmarks use to load their empty comparison
//! programs (a few instructions, no ELF, no loader library), shared by
//! `netmon-bench-kernel` and `netmon-bench-forward`, and the program test
//! run (`BPF_PROG_TEST_RUN`) `netmon-bench-forward` times programs with.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `bpf(cmd, attr, 128)`: what the command returns (0, or an fd).
fn bpf_raw(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, writable `union bpf_attr` prefix of the
    // size passed; the pointers in it (instructions, license, paths,
    // buffers) outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The pinned object at `path` (`BPF_OBJ_GET`), e.g. a program netmon
/// pinned.
///
/// # Errors
/// A path with a NUL byte, or the kernel's error.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a pin path with a NUL byte"))?;
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET, &mut attr)
}

/// Offsets in `struct __sk_buff` (the context a test run takes) of the
/// two fields [`test_run_skb`] sets.
const SKB_INGRESS_IFINDEX: usize = 36;
const SKB_IFINDEX: usize = 40;
/// `offsetof(struct __sk_buff, cb)`: the context passed ends there (the
/// kernel accepts a shorter context; fields after it stay zero).
const SKB_CTX_LEN: usize = 48;

/// Runs the `sched_cls` program `prog` `repeat` times on the Ethernet frame
/// `frame` as if on interface `ifindex` (of the calling thread's network
/// namespace), arrived on `ingress_ifindex` (0: none), through
/// `BPF_PROG_TEST_RUN`: the kernel's average nanoseconds per run and the
/// program's return value.
///
/// # Errors
/// The kernel's error (`ENODEV` for an interface not in this namespace).
pub fn test_run_skb(
    prog: &OwnedFd,
    frame: &[u8],
    ifindex: u32,
    ingress_ifindex: u32,
    repeat: u32,
) -> io::Result<(u32, i32)> {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[SKB_INGRESS_IFINDEX..SKB_INGRESS_IFINDEX + 4]
        .copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let fd = u32::try_from(prog.as_raw_fd()).map_err(|_| io::Error::other("a negative fd"))?;
    let size = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&fd.to_ne_bytes());
    attr[8..12].copy_from_slice(&size.to_ne_bytes());
    attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
    attr[32..36].copy_from_slice(&repeat.to_ne_bytes());
    attr[40..44].copy_from_slice(&(SKB_CTX_LEN as u32).to_ne_bytes());
    attr[48..56].copy_from_slice(&(ctx.as_ptr() as u64).to_ne_bytes());
    bpf_raw(BPF_PROG_TEST_RUN, &mut attr)?;
    let word = |at: usize| u32::from_ne_bytes([attr[at], attr[at + 1], attr[at + 2], attr[at + 3]]);
    Ok((word(36), word(4) as i32))
}

/// `bpf(cmd, attr, 128)`: the fd the command returns (a program or a link).
///
/// # Errors
/// The kernel's error for the command.
pub fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    let fd = bpf_raw(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf(2) returned a bad fd"))?;
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
