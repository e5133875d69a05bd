//! The drain-duration histogram (`netmon_drain_duration_seconds`): the
//! daemon's loop observes every drain step ([`observe`]), `/metrics`
//! writes the buckets. One per process: the daemon is the only process
//! that drains and serves `/metrics`.
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Unit;

/// Bucket bounds: 0.25 ms doubling to 4 s (a drain longer than the
/// interval is logged as slow anyway).
static DRAINS: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.000_25, 2.0, 15)));

/// Records one drain step's wall time.
pub fn observe(took: Duration) {
    DRAINS.observe(took.as_secs_f64());
}

/// Writes `netmon_drain_duration_seconds`.
///
/// # Errors
/// Only from the writer.
pub fn encode(enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    DRAINS.encode(enc.encode_descriptor(
        "netmon_drain_duration",
        "Wall time of each drain step (read the kernel maps, attribute, commit to history), since the daemon started.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_drains_are_counted() {
        observe(Duration::from_millis(3));
        let mut reg = prometheus_client::registry::Registry::default();
        #[derive(Debug)]
        struct C;
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                encode(&mut enc)
            }
        }
        reg.register_collector(Box::new(C));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
        assert!(
            out.contains("# TYPE netmon_drain_duration_seconds histogram"),
            "{out}"
        );
        let count = out
            .lines()
            .find_map(|l| l.strip_prefix("netmon_drain_duration_seconds_count "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("count");
        assert!(count >= 1, "{out}");
        assert!(
            out.contains("netmon_drain_duration_seconds_bucket{le=\"0.004\"}"),
            "{out}"
        );
    }
}
