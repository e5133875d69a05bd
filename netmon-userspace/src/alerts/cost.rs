//! What traffic costs under a [`Tariff`]: the included volume at
//! `price_per_gib`, the rest at `price_over_per_gib`, per billing cycle.
//!
//! The cost of a period inside a cycle is what it added to the cycle's
//! bill: `C(used up to its end) − C(used up to its start)`, so a day after
//! the included volume ran out costs the higher price. A period across a
//! cycle boundary is split at it. Per app rows share a period's cost in
//! proportion to their bytes.
use crate::alerts::config::Tariff;

/// Bytes in a GiB.
pub const GIB: f64 = 1_073_741_824.0;

/// The cycle's bill for `used` bytes.
#[must_use]
pub fn bill(t: &Tariff, used: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "money, not counting")]
    let gib = |b: u64| b as f64 / GIB;
    match t.included {
        Some(inc) if used > inc => {
            gib(inc) * t.price_per_gib + gib(used - inc) * t.price_over_per_gib
        }
        _ => gib(used) * t.price_per_gib,
    }
}

/// Cost of the bytes between cycle usage `before` and `after`.
#[must_use]
pub fn added(t: &Tariff, before: u64, after: u64) -> f64 {
    bill(t, after.max(before)) - bill(t, before)
}

/// `used` over `elapsed` of `len`, carried to the whole length.
#[must_use]
pub fn project(used: u64, elapsed: u64, len: u64) -> u64 {
    if elapsed == 0 {
        return used;
    }
    u64::try_from(u128::from(used) * u128::from(len.max(elapsed)) / u128::from(elapsed))
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::config::Cycle;
    use crate::store::DestClass;

    fn tariff() -> Tariff {
        Tariff {
            currency: "EUR".into(),
            price_per_gib: 0.5,
            included: Some(10 << 30),
            price_over_per_gib: 2.0,
            classes: vec![DestClass::Internet],
            cap: None,
            cycle: Cycle::Monthly { day: 1 },
            tz: jiff::tz::TimeZone::UTC,
            interface: None,
        }
    }

    #[test]
    fn included_then_over() {
        let t = tariff();
        assert!((bill(&t, 4 << 30) - 2.0).abs() < 1e-9);
        assert!((bill(&t, 12 << 30) - (5.0 + 4.0)).abs() < 1e-9);
        // 2 GiB straddling the included edge: 1 at 0.5, 1 at 2.0.
        assert!((added(&t, 9 << 30, 11 << 30) - 2.5).abs() < 1e-9);
        assert_eq!(project(10, 1, 30), 300);
    }
}
