//! Host vitals for the fleet view, read from procfs at each scrape: CPU
//! time, memory, the store's filesystem and per-interface counters. Named
//! `netmon_host_*` so they never collide with node_exporter's `node_*`;
//! node_exporter remains the tool for full host metrics. Any source that
//! cannot be read is left out of that scrape (logged at debug level).
use std::path::Path;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Writes the `netmon_host_*` families and `netmon_store_size_bytes`.
///
/// # Errors
/// Only from the writer.
pub fn encode(enc: &mut DescriptorEncoder, store_path: &Path) -> Result<(), std::fmt::Error> {
    use procfs::{Current as _, CurrentSI as _};
    if let Ok(stat) = procfs::KernelStats::current() {
        let tps = procfs::ticks_per_second() as f64;
        let t = stat.total;
        let mut m = enc.encode_descriptor(
            "netmon_host_cpu",
            "CPU time of the whole host by mode (from /proc/stat).",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for (mode, v) in [
            ("user", t.user + t.nice),
            (
                "system",
                t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0),
            ),
            ("idle", t.idle + t.iowait.unwrap_or(0)),
            ("steal", t.steal.unwrap_or(0)),
        ] {
            let secs = v as f64 / tps;
            m.encode_family(&[("mode", mode)])?
                .encode_counter::<NoLabelSet, _, u64>(&secs, None)?;
        }
    }
    if let Ok(mem) = procfs::Meminfo::current() {
        let mut m = enc.encode_descriptor(
            "netmon_host_memory",
            "Host memory: total and available (from /proc/meminfo).",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for (kind, v) in [
            ("total", mem.mem_total),
            ("available", mem.mem_available.unwrap_or(mem.mem_free)),
        ] {
            ConstGauge::new(v as f64).encode(m.encode_family(&[("kind", kind)])?)?;
        }
    }
    let dir = store_path.parent().unwrap_or(store_path);
    if let Ok(fs) = nix::sys::statvfs::statvfs(dir) {
        let frag = fs.fragment_size() as f64;
        let mut m = enc.encode_descriptor(
            "netmon_host_store_filesystem",
            "Size and space available to netmon of the filesystem holding the history store.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for (kind, v) in [
            ("size", fs.blocks() as f64 * frag),
            ("available", fs.blocks_available() as f64 * frag),
        ] {
            ConstGauge::new(v).encode(m.encode_family(&[("kind", kind)])?)?;
        }
    }
    if let Ok(meta) = std::fs::metadata(store_path) {
        ConstGauge::new(meta.len() as f64).encode(enc.encode_descriptor(
            "netmon_store_size",
            "Size of the history store file.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?)?;
    }
    if let Ok(devs) = procfs::net::dev_status() {
        let mut names: Vec<_> = devs.keys().cloned().collect();
        names.sort();
        let mut m = enc.encode_descriptor(
            "netmon_host_interface",
            "Bytes per network interface and direction, as the interface counts them (from /proc/net/dev).",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for n in &names {
            if let Some(d) = devs.get(n) {
                for (dir, v) in [("tx", d.sent_bytes), ("rx", d.recv_bytes)] {
                    m.encode_family(&[("interface", n.as_str()), ("direction", dir)])?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "netmon_host_interface_packets",
            "Packets per network interface and direction (from /proc/net/dev).",
            None,
            MetricType::Counter,
        )?;
        for n in &names {
            if let Some(d) = devs.get(n) {
                for (dir, v) in [("tx", d.sent_packets), ("rx", d.recv_packets)] {
                    m.encode_family(&[("interface", n.as_str()), ("direction", dir)])?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
        }
    }
    Ok(())
}
