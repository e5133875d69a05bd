//! The map operations aya does not offer, as raw `bpf(2)` calls: batched
//! lookup (read 256k flows in a few hundred syscalls instead of half a
//! million), lookup-and-delete (remove a flow and get its final value
//! atomically, so retiring a closed socket loses no byte), and an update of
//! the socket-storage map keyed by a socket fd (aya 0.16 has no
//! socket-storage map type in userspace), and a batched delete of given
//! keys (forget thousands of closed-socket marks in one syscall).
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
/// `BPF_NOEXIST`: create only, never overwrite.
const BPF_NOEXIST: u64 = 1;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Keys deleted per `BPF_MAP_DELETE_BATCH` call.
const DELETE_CHUNK: usize = 4096;

/// `bpf_attr` for the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn sys_bpf<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<()> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`,
    // fully initialised; the kernel reads at most `size_of::<A>()` bytes and
    // writes only fields of that prefix. Pointers inside it (set by callers)
    // point to buffers sized for the map's key/value and the given count.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<A>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Removes `key` and returns the value it had at that instant, or `None` if
/// it was not there.
///
/// # Errors
/// Any failure other than "no such key".
pub fn lookup_and_delete<K: Pod, V: Pod + Default>(
    map: BorrowedFd<'_>,
    key: &K,
) -> std::io::Result<Option<V>> {
    let mut value = V::default();
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: std::ptr::from_ref(key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        ..ElemAttr::default()
    };
    match sys_bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) {
        Ok(()) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `value` in a socket-storage map for the socket behind `sock`
/// (the key of such a map is a socket fd), unless the socket has a value
/// already. Returns false when it had one (`EEXIST`).
///
/// # Errors
/// Any other failure (not a socket, wrong map, no memory).
pub fn sk_storage_create<V: Pod>(
    map: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    value: &V,
) -> std::io::Result<bool> {
    let key: i32 = sock.as_raw_fd();
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_ref(value) as u64,
        flags: BPF_NOEXIST,
        ..ElemAttr::default()
    };
    match sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads every entry of a hash map with `BPF_MAP_LOOKUP_BATCH`.
///
/// Entries inserted or deleted while the walk runs may or may not be seen
/// (each bucket is read under its lock); values are copies taken when their
/// bucket was read. Monotonic counters stay exact: what a walk misses, the
/// next one sees.
///
/// # Errors
/// Syscall failures other than the end of the map.
pub fn lookup_batch<K: Pod + Default, V: Pod + Default>(
    map: BorrowedFd<'_>,
) -> std::io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    lookup_batch_each(map, |k, v| out.push((k, v)))?;
    Ok(out)
}

/// [`lookup_batch`] handing each entry to `f` as it is read, through one
/// buffer of [`LOOKUP_CHUNK`] keys and values reused for every syscall: the
/// caller keeps only what it needs, in the shape it needs, and a map of
/// 100k flows is never held twice (a growing list of pairs, then its
/// conversion).
///
/// # Errors
/// Syscall failures other than the end of the map.
pub fn lookup_batch_each<K: Pod + Default, V: Pod + Default>(
    map: BorrowedFd<'_>,
    mut f: impl FnMut(K, V),
) -> std::io::Result<()> {
    let mut chunk: u32 = LOOKUP_CHUNK;
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    let mut in_batch: u32 = 0;
    let mut first = true;
    loop {
        keys.resize(chunk as usize, K::default());
        values.resize(chunk as usize, V::default());
        let mut out_batch: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&in_batch) as u64
            },
            out_batch: std::ptr::from_mut(&mut out_batch) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let filled = (attr.count as usize).min(chunk as usize);
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                for (k, v) in keys.iter().zip(&values).take(filled) {
                    f(*k, *v);
                }
                return Ok(());
            }
            // A bucket holds more entries than `chunk`: retry with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < (1 << 20) => {
                chunk *= 4;
                continue;
            }
            Err(e) => return Err(e),
        }
        for (k, v) in keys.iter().zip(&values).take(filled) {
            f(*k, *v);
        }
        in_batch = out_batch;
        first = false;
    }
}

/// Reads every element of a per-CPU array of `len` elements with
/// `BPF_MAP_LOOKUP_BATCH`, a few syscalls where a lookup per index costs
/// `len`. Returns the values flat, index-major: element `i` on CPU `c` is at
/// `i * cpus + c`, `cpus` being the possible CPUs (`aya::util::nr_cpus`).
///
/// `V`'s size must be a multiple of 8 (the kernel lays per-CPU values out
/// at 8-byte strides).
///
/// # Errors
/// Syscall failures other than the end of the array.
pub fn lookup_percpu_array<V: Pod + Default>(
    map: BorrowedFd<'_>,
    len: u32,
    cpus: usize,
) -> std::io::Result<Vec<V>> {
    const { assert!(size_of::<V>().is_multiple_of(8)) };
    let mut out: Vec<V> = vec![V::default(); len as usize * cpus];
    let mut keys: Vec<u32> = vec![0; len as usize];
    let mut done: usize = 0;
    let mut in_batch: u32 = 0;
    while done < len as usize {
        let mut out_batch: u32 = 0;
        let want = len as usize - done;
        let mut attr = BatchAttr {
            in_batch: if done == 0 {
                0
            } else {
                std::ptr::from_ref(&in_batch) as u64
            },
            out_batch: std::ptr::from_mut(&mut out_batch) as u64,
            keys: keys[done..].as_mut_ptr() as u64,
            values: out[done * cpus..].as_mut_ptr() as u64,
            count: want as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        done += (attr.count as usize).min(want);
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        in_batch = out_batch;
    }
    // An array's batch walks its indexes in order from 0.
    out.truncate(done * cpus);
    Ok(out)
}

/// Entries read per `BPF_MAP_LOOKUP_BATCH` call (grown only when one hash
/// bucket holds more). Small enough that the kernel's bounce buffer and
/// ours stay in the CPU cache between the kernel's copy and the caller's
/// (512 flows: ~120 KB; 4096 were ~1 MB each side, a `vmalloc` per call
/// in the kernel); it adds one syscall per 512 entries. Not measured
/// alone: the README's churn figures include it, and `kernel_read/*` of
/// `cargo bench -p netmon-userspace --bench kernel_drain` is what would.
const LOOKUP_CHUNK: u32 = 512;

/// Deletes `keys` from a hash map with `BPF_MAP_DELETE_BATCH`, a few
/// thousand a syscall; keys that are not there are skipped. Returns how many
/// were deleted.
///
/// The kernel deletes the keys in order and stops at the first failure,
/// saying how many it processed; a missing key (`ENOENT`) is stepped over
/// and the rest sent again.
///
/// # Errors
/// Any failure other than a missing key.
pub fn delete_batch<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> std::io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let n = rest.len().min(DELETE_CHUNK);
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = sys_bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        let done = (attr.count as usize).min(n);
        deleted += done;
        match result {
            Ok(()) => rest = &rest[n..],
            // `keys[done]` was not there: skip it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[(done + 1).min(n)..],
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
