//! The few `/proc` facts the suite needs about a process.

use std::fs;

/// A process's start time in clock ticks since boot: field 22 of
/// `/proc/PID/stat`, the second half of netmon's process identity.
#[must_use]
pub fn start_ticks(pid: u32) -> Option<u64> {
    parse_start_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/PID/stat` line. `comm` (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
#[must_use]
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with field 3 (state); field 22 is 19 further on.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_after_odd_comm() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
    }

    #[test]
    fn own_start_ticks_readable_and_stable() {
        let me = std::process::id();
        let first = start_ticks(me);
        assert!(first.is_some());
        assert_eq!(first, start_ticks(me));
    }
}
