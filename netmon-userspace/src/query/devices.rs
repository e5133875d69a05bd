//! LAN devices over a window: the device counters
//! ([`crate::store::devcount`]) read from the same segments as the
//! interface counters ([`crate::query::scan::plan_for`] with
//! [`Kind::Interface`]), one row per device (MAC, or the MACs a `[devices]
//! merge` entry groups), named as [`crate::devices`] says.
//!
//! Per LAN interface and direction the rows (overflow included) add up to
//! the interface's counters over the same window: every frame has exactly
//! one source and one destination MAC.
use std::collections::{BTreeMap, BTreeSet};

use netmon_common::device::{
    DEV_CLASS_FWD_INTERNET, DEV_CLASS_FWD_LOCAL, DEV_CLASS_HOST, DEV_CLASS_NOT_IP,
    DEVICE_OVERFLOW_MAC,
};
use netmon_common::iface::IFACE_DIR_EGRESS;

use crate::devices::{Naming, format_mac, is_group, is_randomised};
use crate::query::QueryError;
use crate::query::scan::{self, Kind};
use crate::store::devcount::DevRow;
use crate::store::{Store, TimeRange};
use crate::wire::{DeviceDirection, DeviceHistory, DevicePoint, DeviceRow, Devices};

/// The device id of the overflow row.
pub const OVERFLOW: &str = "overflow";

fn add(row: &mut DeviceRow, r: &DevRow) {
    let d = if r.direction == IFACE_DIR_EGRESS {
        &mut row.rx
    } else {
        &mut row.tx
    };
    let class = match r.class {
        DEV_CLASS_HOST => &mut d.host,
        DEV_CLASS_FWD_LOCAL => &mut d.forwarded_local,
        DEV_CLASS_FWD_INTERNET => &mut d.forwarded_internet,
        DEV_CLASS_NOT_IP => &mut d.not_ip,
        _ => return,
    };
    class.add(r.packets, r.bytes);
    d.total.add(r.packets, r.bytes);
}

fn total(d: &DeviceDirection) -> u64 {
    d.total.frame_bytes
}

/// True when `row` answers to `wanted`: its id, name, a MAC or an address.
fn matches(row: &DeviceRow, wanted: &str) -> bool {
    let w = wanted.to_ascii_lowercase();
    row.device.eq_ignore_ascii_case(&w)
        || row
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&w))
        || row.macs.contains(&w)
        || row.addresses.iter().any(|a| a.to_string() == w)
}

/// The device table for `range`, named with `naming`, only `device` if
/// given.
///
/// # Errors
/// On storage errors.
pub fn devices(
    store: &mut Store,
    range: &TimeRange,
    naming: &Naming,
    device: Option<&str>,
) -> Result<Devices, QueryError> {
    let (segments, coverage) = scan::plan_for(store, range, Kind::Interface)?;
    let ifnames = store.ifcount_names()?;
    let mut rows: BTreeMap<String, DeviceRow> = BTreeMap::new();
    let mut ifaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut macs: BTreeMap<String, BTreeSet<[u8; 6]>> = BTreeMap::new();
    store.devcount_rows(&segments, |_, r| {
        let id = if r.mac == DEVICE_OVERFLOW_MAC {
            OVERFLOW.to_owned()
        } else {
            naming
                .merged(&r.mac)
                .map_or_else(|| format_mac(&r.mac), str::to_owned)
        };
        let row = rows.entry(id.clone()).or_insert_with(|| DeviceRow {
            device: id.clone(),
            ..DeviceRow::default()
        });
        add(row, &r);
        if r.mac != DEVICE_OVERFLOW_MAC {
            macs.entry(id.clone()).or_default().insert(r.mac);
        }
        ifaces.entry(id).or_default().insert(
            ifnames
                .get(&r.ifindex)
                .cloned()
                .unwrap_or_else(|| r.ifindex.to_string()),
        );
    })?;
    let mut out: Vec<DeviceRow> = rows
        .into_values()
        .map(|mut row| {
            let own = macs.remove(&row.device).unwrap_or_default();
            let mut addrs = BTreeSet::new();
            for mac in &own {
                if row.name.is_none()
                    && let Some((name, source)) = naming.name(mac)
                {
                    row.name = Some(name.clone());
                    row.name_source = Some(*source);
                }
                row.randomised |= is_randomised(mac) && !is_group(mac);
                row.group |= is_group(mac);
                addrs.extend(naming.addrs(mac));
            }
            row.macs = own.iter().map(format_mac).collect();
            row.addresses = addrs.into_iter().collect();
            row.interfaces = ifaces
                .remove(&row.device)
                .unwrap_or_default()
                .into_iter()
                .collect();
            row
        })
        .filter(|row| device.is_none_or(|d| matches(row, d)))
        .collect();
    out.sort_by(|a, b| {
        (total(&b.tx) + total(&b.rx))
            .cmp(&(total(&a.tx) + total(&a.rx)))
            .then_with(|| a.device.cmp(&b.device))
    });
    Ok(Devices {
        schema_version: crate::wire::SCHEMA_VERSION,
        from_unix_ms: range.start,
        until_unix_ms: range.end,
        exact: coverage.exact(),
        devices: out,
    })
}

/// True when the device of `mac` answers to `wanted` (its device id, name,
/// MAC or a current address).
fn mac_matches(mac: &[u8; 6], naming: &Naming, wanted: &str) -> bool {
    let w = wanted.to_ascii_lowercase();
    naming
        .merged(mac)
        .is_some_and(|m| m.eq_ignore_ascii_case(&w))
        || naming
            .name(mac)
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(&w))
        || format_mac(mac) == w
        || naming.addrs(mac).iter().any(|a| a.to_string() == w)
}

/// One device's traffic per `step_ms` over `range` (`netmon history
/// --device`): a point per step that has rows, times the step starts.
///
/// # Errors
/// [`QueryError::Invalid`] for a zero step; storage errors.
pub fn series(
    store: &mut Store,
    range: &TimeRange,
    step_ms: u64,
    naming: &Naming,
    device: &str,
) -> Result<DeviceHistory, QueryError> {
    if step_ms == 0 {
        return Err(QueryError::Invalid("step must be > 0".to_owned()));
    }
    let (segments, coverage) = scan::plan_for(store, range, Kind::Interface)?;
    let mut points: BTreeMap<u64, DeviceRow> = BTreeMap::new();
    store.devcount_rows(&segments, |ts, r| {
        if r.mac == DEVICE_OVERFLOW_MAC || !mac_matches(&r.mac, naming, device) {
            return;
        }
        let start = range.start + (ts.saturating_sub(range.start) / step_ms) * step_ms;
        add(points.entry(start).or_default(), &r);
    })?;
    Ok(DeviceHistory {
        schema_version: crate::wire::SCHEMA_VERSION,
        device: device.to_owned(),
        from_unix_ms: range.start,
        until_unix_ms: range.end,
        step_ms,
        exact: coverage.exact(),
        points: points
            .into_iter()
            .map(|(start_unix_ms, row)| DevicePoint {
                start_unix_ms,
                tx: row.tx,
                rx: row.rx,
            })
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::DevicesConfig;
    use crate::store::devcount::DevBatch;
    use crate::store::ifcount::IfBatch;
    use crate::store::{Batch, Retention};

    /// A row on interface 4 for MAC `da:00:00:00:00:LAST` (0: overflow).
    pub(crate) fn row(last: u8, direction: u8, class: u8, bytes: u64) -> DevRow {
        DevRow {
            ifindex: 4,
            mac: if last == 0 {
                DEVICE_OVERFLOW_MAC
            } else {
                [0xda, 0, 0, 0, 0, last]
            },
            direction,
            class,
            packets: 1,
            bytes,
        }
    }

    /// Two random MACs merged by name add up into one device; the
    /// overflow row is its own; a device filter picks by name; classes add
    /// up to the total.
    #[test]
    fn merged_macs_are_one_device_and_overflow_is_its_own_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) =
            Store::open(&dir.path().join("h.redb"), Retention::default()).expect("opens");
        let t0: u64 = 1_800_000_000_000;
        store
            .commit(&Batch {
                ts_ms: t0,
                ifcount: IfBatch {
                    names: vec![(4, "lan0".to_owned())],
                    devices: DevBatch {
                        rows: vec![
                            row(1, 0, DEV_CLASS_FWD_INTERNET, 100),
                            row(2, 0, DEV_CLASS_HOST, 10),
                            row(2, IFACE_DIR_EGRESS, DEV_CLASS_FWD_LOCAL, 5),
                            row(0, 0, DEV_CLASS_NOT_IP, 60),
                        ],
                        snapshot: Vec::new(),
                    },
                    ..IfBatch::default()
                },
                ..Batch::default()
            })
            .expect("commit");
        let config = DevicesConfig {
            merge: [(
                "phone".to_owned(),
                vec![
                    "da:00:00:00:00:01".to_owned(),
                    "da:00:00:00:00:02".to_owned(),
                ],
            )]
            .into(),
            ..DevicesConfig::default()
        };
        let naming = Naming::load(&config, "");
        let doc = devices(&mut store, &(t0..t0 + 1000), &naming, None).expect("query");
        assert_eq!(doc.devices.len(), 2, "{doc:?}");
        let phone = &doc.devices[0];
        assert_eq!(phone.device, "phone");
        assert_eq!(phone.macs, vec!["da:00:00:00:00:01", "da:00:00:00:00:02"]);
        assert!(phone.randomised);
        assert_eq!(phone.interfaces, vec!["lan0"]);
        assert_eq!(phone.tx.total.frame_bytes, 110);
        assert_eq!(phone.tx.forwarded_internet.frame_bytes, 100);
        assert_eq!(phone.rx.forwarded_local.frame_bytes, 5);
        assert_eq!(doc.devices[1].device, OVERFLOW);
        assert_eq!(doc.devices[1].tx.not_ip.frame_bytes, 60);
        let only = devices(&mut store, &(t0..t0 + 1000), &naming, Some("PHONE")).expect("query");
        assert_eq!(only.devices.len(), 1);
        let h = series(&mut store, &(t0..t0 + 1000), 500, &naming, "phone").expect("series");
        assert_eq!(h.points.len(), 1);
        assert_eq!(h.points[0].start_unix_ms, t0);
        assert_eq!(h.points[0].tx.total.frame_bytes, 110, "{h:?}");
    }
}
