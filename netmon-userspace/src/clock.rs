//! Wall-clock helpers for documents (RFC 3339 UTC + unix milliseconds), on
//! `jiff` (well-kept, no hand-rolled calendar code).
/// Now as (RFC 3339 UTC, unix milliseconds).
#[must_use]
pub fn now_rfc3339() -> (String, u64) {
    let ms = crate::model::unix_ms_now();
    (rfc3339_from_unix_ms(ms), ms)
}

/// Formats unix milliseconds as RFC 3339 UTC with millisecond precision.
#[must_use]
pub fn rfc3339_from_unix_ms(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| format!("@{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_unix_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_from_unix_ms(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
    }
}
