//! The capture ring's reading side: the daemon's [`NameCapture`] turns the
//! kernel's capture records into per-flow names ([`crate::names`]) at each
//! read of the kernel source.
//!
//! Only the daemon opens it ([`super::reader::KernelSource::open_or_attach`]):
//! the ring has one consumer, and `snapshot`/`status` without a daemon must
//! not take the records the daemon is due. The daemon writes the capture
//! switch (`[names] enabled`) into the config map when it opens the ring;
//! a `netmon load` without a daemon leaves it off, so nothing is copied
//! that nobody reads.

use std::path::Path;

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use netmon_common::capture::{
    CaptureConfig, CaptureHeader, CaptureStats, MAP_CAPTURE_CONFIG, MAP_CAPTURE_RING,
    MAP_CAPTURE_STATS,
};

use super::{KernelError, pins::PinPaths};
use crate::{names::Namer, source::FlowReading};

/// Most records taken from the ring in one read (a bound on one drain's
/// work; the rest waits for the next read).
const MAX_RECORDS_PER_READ: usize = 65_536;

/// The open capture ring and the naming state fed from it.
pub struct NameCapture {
    ring: RingBuf<MapData>,
    namer: Namer,
}

fn map_err(path: &Path, e: impl std::fmt::Display) -> KernelError {
    KernelError::PinnedMap {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Turns capture on or off in the kernel (the config map), if the load
/// has the capture maps (a load by an older netmon has not: then `false`).
///
/// # Errors
/// When the pinned config map cannot be opened or written.
pub fn set_enabled(paths: &PinPaths, enabled: bool) -> Result<bool, KernelError> {
    let Some(map) = paths.pinned_map(MAP_CAPTURE_CONFIG)? else {
        return Ok(false);
    };
    let path = paths.map(MAP_CAPTURE_CONFIG);
    let mut config: Array<MapData, CaptureConfig> =
        Array::try_from(Map::Array(map)).map_err(|e| map_err(&path, e))?;
    let value = CaptureConfig {
        enabled: u32::from(enabled),
        _pad: 0,
    };
    config.set(0, &value, 0).map_err(|e| map_err(&path, e))?;
    Ok(true)
}

/// Records written and lost (ring full) since the load, summed over CPUs;
/// `None` for a load without the capture maps.
///
/// # Errors
/// When the pinned stats map cannot be read.
pub fn stats(paths: &PinPaths) -> Result<Option<CaptureStats>, KernelError> {
    let Some(map) = paths.pinned_map(MAP_CAPTURE_STATS)? else {
        return Ok(None);
    };
    let path = paths.map(MAP_CAPTURE_STATS);
    let stats: PerCpuArray<MapData, CaptureStats> =
        PerCpuArray::try_from(Map::PerCpuArray(map)).map_err(|e| map_err(&path, e))?;
    let per_cpu = stats.get(&0, 0).map_err(|e| map_err(&path, e))?;
    Ok(Some(per_cpu.iter().fold(
        CaptureStats::default(),
        |a, s| CaptureStats {
            records: a.records.saturating_add(s.records),
            lost: a.lost.saturating_add(s.lost),
        },
    )))
}

impl NameCapture {
    /// Opens the pinned ring and sets the capture switch to `enabled`.
    /// `None` when capture is off or the load has no capture maps.
    ///
    /// # Errors
    /// When the pinned maps cannot be opened or written.
    pub fn open(paths: &PinPaths, enabled: bool) -> Result<Option<Self>, KernelError> {
        if !set_enabled(paths, enabled)? || !enabled {
            return Ok(None);
        }
        let Some(map) = paths.pinned_map(MAP_CAPTURE_RING)? else {
            return Ok(None);
        };
        let path = paths.map(MAP_CAPTURE_RING);
        let ring = RingBuf::try_from(Map::RingBuf(map)).map_err(|e| map_err(&path, e))?;
        Ok(Some(Self {
            ring,
            namer: Namer::default(),
        }))
    }

    /// Drains the ring (after the flows were read: see
    /// `netmon_common::capture`) and returns the names decided for `flows`.
    pub fn names(
        &mut self,
        flows: &[FlowReading],
    ) -> std::collections::HashMap<netmon_common::FlowKey, crate::source::FlowName> {
        let mut records = 0;
        for _ in 0..MAX_RECORDS_PER_READ {
            let Some(item) = self.ring.next() else { break };
            records += 1;
            if let Some((header, payload)) = split_record(&item) {
                self.namer.ingest(&header, payload);
            }
        }
        if records != 0 {
            tracing::debug!(records, stats = ?self.namer.stats(), "capture records read");
        }
        let names = self.namer.name_flows(flows, boottime_ns());
        for (key, name) in &names {
            tracing::debug!(
                cookie = key.cookie,
                remote = %crate::names::remote_ip(key),
                port = key.remote_port,
                server_name = %name.server_name,
                source = ?name.source,
                "flow named"
            );
        }
        names
    }
}

impl NameCapture {
    /// Forgets retired flows (see [`Namer::forget`]).
    pub fn forget(&mut self, keys: &[netmon_common::FlowKey]) {
        self.namer.forget(keys);
    }
}

/// A record's header and payload; `None` for a record shorter than it
/// claims.
fn split_record(bytes: &[u8]) -> Option<(CaptureHeader, &[u8])> {
    let size = size_of::<CaptureHeader>();
    let head = bytes.get(..size)?;
    // SAFETY: `head` is exactly size_of::<CaptureHeader>() bytes, and
    // CaptureHeader is a #[repr(C)] integers-only type (aya::Pod) for which
    // every bit pattern is valid; read_unaligned needs no alignment.
    let header = unsafe { head.as_ptr().cast::<CaptureHeader>().read_unaligned() };
    let payload = bytes.get(size..size + usize::from(header.len))?;
    Some((header, payload))
}

/// CLOCK_BOOTTIME in ns (the kernel's `bpf_ktime_get_boot_ns`); 0 if the
/// clock cannot be read (DNS answers are then only dropped by the table's
/// size bound).
fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every kernel netmon loads on.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_and_short_ones_are_refused() {
        let header = CaptureHeader {
            kind: 2,
            len: 3,
            owner_tgid: 9,
            ..CaptureHeader::default()
        };
        let mut bytes = Vec::new();
        // SAFETY: viewing a Pod value's bytes.
        bytes.extend_from_slice(unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&header).cast::<u8>(),
                size_of::<CaptureHeader>(),
            )
        });
        bytes.extend_from_slice(b"abc");
        let (h, p) = split_record(&bytes).expect("whole");
        assert_eq!((h, p), (header, &b"abc"[..]));
        assert!(split_record(&bytes[..bytes.len() - 1]).is_none());
        assert!(split_record(&bytes[..4]).is_none());
    }
}
