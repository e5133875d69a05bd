//! LAN device counters on `/metrics`: `netmon_device_bytes_total` and
//! `netmon_device_packets_total`, one series per device MAC, LAN
//! interface, direction and class, from the device history
//! ([`crate::store::devcount`], the rows `netmon devices` reads).
//!
//! Labels: `device` (the `[devices] merge` name the MAC belongs to, else
//! its name from the config or a lease, else the MAC), `mac`
//! (`aa:bb:cc:dd:ee:ff`), `interface` (the LAN interface's name),
//! `direction` (`tx`: the device sent, `rx`: the device received, as in
//! `netmon devices`), `class` (`host`, `forwarded_local`,
//! `forwarded_internet`, `not_ip`). Bytes are frame bytes (link-layer
//! header included), as the tc programs count them.
//!
//! Like the traffic counters ([`crate::exporter`]), every value is a
//! function of the committed history: all device rows ever kept, summed
//! per key. Epochs that are over are folded into a cache once; a fresh
//! exporter recomputes the same numbers, so a restart never resets a
//! series.
//!
//! Bounded cardinality: the kernel's device map holds at most 8,192
//! (interface, MAC, direction, class) keys and sends the traffic of any
//! further device to its per-interface overflow keys, which appear here as
//! `device="overflow"`, `mac="00:00:00:00:00:00"`. History can hold more
//! MACs than one map did (a map recreated by `netmon unload` and a new
//! load); the exporter keeps at most [`MAX_DEVICES`] (interface, MAC)
//! pairs, admitted in the order they first appear in history (epoch, then
//! interface index and MAC); the traffic of pairs beyond that is added to
//! their interface's overflow series, so `sum()` per interface stays the
//! interface's device total. A pair first seen in the current epoch is
//! admitted provisionally: at the cap, a pair with a smaller (interface,
//! MAC) first seen later in the same epoch takes its place. Renaming a
//! device (a new lease, a `[devices]` edit) changes its `device` label:
//! the series with the new label starts at the device's whole total.
use std::collections::{HashMap, HashSet};

use netmon_common::device::{
    DEV_CLASS_FWD_INTERNET, DEV_CLASS_FWD_LOCAL, DEV_CLASS_HOST, DEV_CLASS_NOT_IP,
    DEVICE_OVERFLOW_MAC,
};
use netmon_common::iface::IFACE_DIR_EGRESS;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::devices::{Naming, format_mac};
use crate::exporter::metrics::{ExporterConfig, segments};
use crate::query::QueryError;
use crate::query::scan::{self, Kind};
use crate::store::Store;

/// Most (interface, MAC) pairs with series of their own: the kernel
/// device map's size.
pub const MAX_DEVICES: usize = 8_192;

/// The `device` label of the overflow series.
pub const OVERFLOW: &str = "overflow";

/// A history row's key: interface index, MAC, direction, class.
type Key = (u32, [u8; 6], u8, u8);

/// Packets and bytes.
type Count = (u64, u64);

/// What earlier scrapes folded (a cache: recomputable from history).
#[derive(Debug, Default)]
pub struct DeviceState {
    /// Epochs below this are folded into `folded`.
    until: u64,
    /// Per key, everything up to `until`.
    folded: HashMap<Key, Count>,
    /// Per (interface, MAC): the first epoch it has rows in.
    first: HashMap<(u32, [u8; 6]), u64>,
}

/// One series of the device families.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceSeries {
    /// `device` label.
    pub device: String,
    /// `mac` label.
    pub mac: String,
    /// `interface` label.
    pub interface: String,
    /// `direction` label (`tx`: the device sent).
    pub direction: &'static str,
    /// `class` label.
    pub class: &'static str,
    /// Packets.
    pub packets: u64,
    /// Frame bytes.
    pub bytes: u64,
}

/// The `class` label of a `DEV_CLASS_*`.
#[must_use]
pub const fn class_label(class: u8) -> &'static str {
    match class {
        DEV_CLASS_HOST => "host",
        DEV_CLASS_FWD_LOCAL => "forwarded_local",
        DEV_CLASS_FWD_INTERNET => "forwarded_internet",
        DEV_CLASS_NOT_IP => "not_ip",
        _ => "unknown",
    }
}

/// The `direction` label of an `IFACE_DIR_*`, as the device sees it.
#[must_use]
pub const fn direction_label(direction: u8) -> &'static str {
    if direction == IFACE_DIR_EGRESS {
        "rx"
    } else {
        "tx"
    }
}

fn add(map: &mut HashMap<Key, Count>, key: Key, c: Count) {
    let e = map.entry(key).or_default();
    e.0 = e.0.saturating_add(c.0);
    e.1 = e.1.saturating_add(c.1);
}

impl DeviceState {
    /// The device series as of the newest committed drain, named with
    /// `naming`, at most [`MAX_DEVICES`] pairs (see the module docs).
    ///
    /// # Errors
    /// On storage errors.
    pub fn series(
        &mut self,
        store: &mut Store,
        cfg: &ExporterConfig,
        naming: &Naming,
    ) -> Result<Vec<DeviceSeries>, QueryError> {
        self.series_capped(store, cfg, naming, MAX_DEVICES)
    }

    fn series_capped(
        &mut self,
        store: &mut Store,
        cfg: &ExporterConfig,
        naming: &Naming,
        cap: usize,
    ) -> Result<Vec<DeviceSeries>, QueryError> {
        // Epochs before the newest committed drain's are over: no later
        // drain writes into them. Device rows come with interface rows, so
        // they have a drain time; rows newer than it (or with no drain at
        // all) are read again at every scrape until folded.
        let latest = scan::latest_sample(store)?;
        let ems = cfg.epoch_ms();
        let cur = latest.map_or(0, |l| l / ems);
        let end = crate::query::window::now_ms().max(latest.unwrap_or(0));
        let range = self.until.saturating_mul(ems)..end.saturating_add(1);
        let segs = segments(store, &range, cfg.tier(), Kind::Interface)?;
        let mut current: HashMap<Key, Count> = HashMap::new();
        let (folded, first) = (&mut self.folded, &mut self.first);
        store.devcount_rows(&segs, |ts, r| {
            let e = ts / ems;
            if r.mac != DEVICE_OVERFLOW_MAC {
                let f = first.entry((r.ifindex, r.mac)).or_insert(e);
                *f = (*f).min(e);
            }
            let key = (r.ifindex, r.mac, r.direction, r.class);
            add(
                if e < cur { &mut *folded } else { &mut current },
                key,
                (r.packets, r.bytes),
            );
        })?;
        self.until = cur;
        let mut ranked: Vec<(u64, u32, [u8; 6])> =
            self.first.iter().map(|((i, m), e)| (*e, *i, *m)).collect();
        ranked.sort_unstable();
        let members: HashSet<(u32, [u8; 6])> = ranked
            .into_iter()
            .take(cap)
            .map(|(_, i, m)| (i, m))
            .collect();
        let mut all: HashMap<Key, Count> = HashMap::new();
        for (k, c) in self.folded.iter().chain(current.iter()) {
            let key = if k.1 == DEVICE_OVERFLOW_MAC || members.contains(&(k.0, k.1)) {
                *k
            } else {
                (k.0, DEVICE_OVERFLOW_MAC, k.2, k.3)
            };
            add(&mut all, key, *c);
        }
        let ifnames = store.ifcount_names()?;
        let mut out: Vec<DeviceSeries> = all
            .into_iter()
            .map(|((ifindex, mac, direction, class), (packets, bytes))| {
                let device = if mac == DEVICE_OVERFLOW_MAC {
                    OVERFLOW.to_owned()
                } else {
                    naming
                        .merged(&mac)
                        .map(str::to_owned)
                        .or_else(|| naming.name(&mac).map(|(n, _)| n.clone()))
                        .unwrap_or_else(|| format_mac(&mac))
                };
                DeviceSeries {
                    device,
                    mac: format_mac(&mac),
                    interface: ifnames
                        .get(&ifindex)
                        .cloned()
                        .unwrap_or_else(|| ifindex.to_string()),
                    direction: direction_label(direction),
                    class: class_label(class),
                    packets,
                    bytes,
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A family: name (without unit and `_total`), HELP, unit, value.
type Family<'a> = (&'a str, &'a str, Option<&'a Unit>, fn(&DeviceSeries) -> u64);

/// Writes the two device families (nothing when there are no devices).
///
/// # Errors
/// Only from the writer.
pub fn encode(enc: &mut DescriptorEncoder, series: &[DeviceSeries]) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let families: [Family; 2] = [
        (
            "netmon_device",
            "Frame bytes (link-layer header included) per LAN device, interface, direction (tx: the device sent) and class (host, forwarded_local, forwarded_internet, not_ip); devices the kernel map could not hold are device=\"overflow\".",
            Some(&Unit::Bytes),
            |s| s.bytes,
        ),
        (
            "netmon_device_packets",
            "Frames per LAN device, labelled as netmon_device_bytes_total.",
            None,
            |s| s.packets,
        ),
    ];
    for (name, help, unit, pick) in families {
        let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
        for s in series {
            let labels: [(&str, &str); 5] = [
                ("device", &s.device),
                ("mac", &s.mac),
                ("interface", &s.interface),
                ("direction", s.direction),
                ("class", s.class),
            ];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&pick(s), None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DevicesConfig;
    use crate::query::devices::tests::row;
    use crate::store::devcount::{DevBatch, DevRow};
    use crate::store::ifcount::IfBatch;
    use crate::store::{Batch, Retention};
    use netmon_common::iface::IFACE_DIR_INGRESS;
    use std::collections::BTreeMap;

    const BASE: u64 = 1_700_000_000_000;

    /// Per (device, direction, class): frame bytes, summed over MACs and
    /// interfaces (what a `sum by (device, direction, class)` gives).
    fn bytes_by_device(series: &[DeviceSeries]) -> BTreeMap<(String, String, String), u64> {
        let mut out = BTreeMap::new();
        for s in series {
            *out.entry((s.device.clone(), s.direction.to_owned(), s.class.to_owned()))
                .or_default() += s.bytes;
        }
        out
    }

    /// Commits one drain: the device rows and, as every drain on a
    /// gateway has, a process row (the drain's time in the history).
    fn commit(store: &mut Store, ts: u64, rows: Vec<DevRow>) {
        let id = crate::model::ProcessId {
            pid: 1,
            start_ticks: 1,
        };
        let mut t = crate::store::Traffic::default();
        t.tx.packets = 1;
        t.tx.ip_bytes = 40;
        store
            .commit(&Batch {
                ts_ms: ts,
                processes: vec![crate::store::types::pseudo_process(id, "init")],
                proc_rows: vec![(id, crate::store::DestClass::Loopback, t)],
                ifcount: IfBatch {
                    names: vec![(4, "lan0".to_owned())],
                    devices: DevBatch {
                        rows,
                        snapshot: Vec::new(),
                    },
                    ..IfBatch::default()
                },
                ..Batch::default()
            })
            .expect("commit");
    }

    fn cfg() -> ExporterConfig {
        ExporterConfig {
            epoch_secs: 1,
            ..ExporterConfig::default()
        }
    }

    /// Drains over 12 one-second epochs with devices appearing one per
    /// epoch and a cap of 3: the cached exporter equals a fresh one after
    /// every drain, no series goes down, each member's value is the sum of
    /// its committed rows, the fourth device and later are in overflow,
    /// and the sum per interface equals everything committed.
    #[test]
    fn sums_exactly_never_resets_and_caps_devices() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut store, _) =
            Store::open(&dir.path().join("h.redb"), Retention::default()).expect("open");
        let naming = Naming::load(
            &DevicesConfig {
                names: [("da:00:00:00:00:01".to_owned(), "laptop".to_owned())].into(),
                ..DevicesConfig::default()
            },
            "",
        );
        let mut live = DeviceState::default();
        let mut truth: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        let mut total = 0_u64;
        let mut prev: BTreeMap<(String, String, &str, &str), u64> = BTreeMap::new();
        for e in 0..12_u64 {
            for k in 0..3_u64 {
                let ts = BASE + e * 1000 + k * 300;
                let newest = u8::try_from(e + 1).expect("small");
                let mut rows = vec![row(0, IFACE_DIR_INGRESS, DEV_CLASS_NOT_IP, 60)];
                for d in 1..=newest {
                    let b = 100 * u64::from(d) + e + k;
                    rows.push(row(d, IFACE_DIR_INGRESS, DEV_CLASS_FWD_INTERNET, b));
                    rows.push(row(d, IFACE_DIR_EGRESS, DEV_CLASS_HOST, b / 2));
                }
                for r in &rows {
                    total += r.bytes;
                    let dev = match r.mac[5] {
                        0 => OVERFLOW.to_owned(),
                        1 => "laptop".to_owned(),
                        d if d <= 3 => format_mac(&r.mac),
                        _ => OVERFLOW.to_owned(),
                    };
                    *truth
                        .entry((
                            dev,
                            direction_label(r.direction).to_owned(),
                            class_label(r.class).to_owned(),
                        ))
                        .or_default() += r.bytes;
                }
                commit(&mut store, ts, rows);
                let got = live
                    .series_capped(&mut store, &cfg(), &naming, 3)
                    .expect("series");
                let fresh = DeviceState::default()
                    .series_capped(&mut store, &cfg(), &naming, 3)
                    .expect("fresh");
                assert_eq!(got, fresh, "epoch {e} drain {k}: a restart sees the same");
                assert_eq!(bytes_by_device(&got), truth, "epoch {e} drain {k}");
                assert_eq!(got.iter().map(|s| s.bytes).sum::<u64>(), total);
                let macs: std::collections::BTreeSet<&str> =
                    got.iter().map(|s| s.mac.as_str()).collect();
                assert!(macs.len() <= 4, "3 devices + overflow: {macs:?}");
                for s in &got {
                    assert_eq!(s.interface, "lan0");
                    let key = (s.device.clone(), s.mac.clone(), s.direction, s.class);
                    if let Some(p) = prev.get(&key) {
                        assert!(s.bytes >= *p, "{key:?} went down");
                    }
                    prev.insert(key, s.bytes);
                }
            }
        }
    }

    /// The families' names, HELP, unit and labels.
    #[test]
    fn exposition() {
        let series = vec![DeviceSeries {
            device: "laptop".to_owned(),
            mac: "da:00:00:00:00:01".to_owned(),
            interface: "lan0".to_owned(),
            direction: "tx",
            class: "forwarded_internet",
            packets: 3,
            bytes: 1514,
        }];
        let mut reg = prometheus_client::registry::Registry::default();
        #[derive(Debug)]
        struct C(Vec<DeviceSeries>);
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                encode(&mut enc, &self.0)
            }
        }
        reg.register_collector(Box::new(C(series)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        for line in [
            "# TYPE netmon_device_bytes counter",
            "# UNIT netmon_device_bytes bytes",
            "netmon_device_bytes_total{device=\"laptop\",mac=\"da:00:00:00:00:01\",interface=\"lan0\",direction=\"tx\",class=\"forwarded_internet\"} 1514",
            "netmon_device_packets_total{device=\"laptop\",mac=\"da:00:00:00:00:01\",interface=\"lan0\",direction=\"tx\",class=\"forwarded_internet\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("# HELP netmon_device_bytes Frame bytes"));
    }
}
