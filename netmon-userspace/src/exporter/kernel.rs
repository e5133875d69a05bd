//! Self metrics of the kernel side (daemons on the kernel source only):
//! programs attached, map fill, overflow traffic and failed inserts, read
//! from the pinned objects with `netmon status`'s own code
//! ([`crate::cli::status::status`]) at each scrape.
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::wire::Status;

/// Writes the `netmon_programs_*`, `netmon_map_*` and `netmon_overflow_*`
/// families.
///
/// # Errors
/// Only from the writer.
pub fn encode(enc: &mut DescriptorEncoder, st: &Status) -> Result<(), std::fmt::Error> {
    let attached = st.programs.iter().filter(|p| p.attached).count();
    ConstGauge::new(attached as f64).encode(enc.encode_descriptor(
        "netmon_programs_attached",
        "eBPF programs pinned and attached.",
        None,
        MetricType::Gauge,
    )?)?;
    ConstGauge::new(st.programs.len() as f64).encode(enc.encode_descriptor(
        "netmon_programs_expected",
        "eBPF programs netmon loads (all should be attached).",
        None,
        MetricType::Gauge,
    )?)?;
    let mut m = enc.encode_descriptor(
        "netmon_map_entries",
        "Entries in each kernel map.",
        None,
        MetricType::Gauge,
    )?;
    for map in &st.maps {
        ConstGauge::new(map.entries as f64)
            .encode(m.encode_family(&[("map", map.name.as_str())])?)?;
    }
    let mut m = enc.encode_descriptor(
        "netmon_map_max_entries",
        "Capacity of each kernel map (netmon_map_entries / this = fill).",
        None,
        MetricType::Gauge,
    )?;
    for map in &st.maps {
        ConstGauge::new(f64::from(map.max_entries))
            .encode(m.encode_family(&[("map", map.name.as_str())])?)?;
    }
    let mut m = enc.encode_descriptor(
        "netmon_overflow",
        "IP bytes counted while the flow map was full (still counted, but not per socket).",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    for (dir, c) in [("tx", &st.overflow.tx), ("rx", &st.overflow.rx)] {
        m.encode_family(&[("direction", dir)])?
            .encode_counter::<NoLabelSet, _, u64>(&c.ip_bytes, None)?;
    }
    enc.encode_descriptor(
        "netmon_map_failed_inserts",
        "Flow map inserts that failed (map full): the drop counter.",
        None,
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, _, u64>(&st.overflow.failed_inserts, None)
}
