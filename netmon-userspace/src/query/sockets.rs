//! "Sockets now": the live sockets of one process, from the reading the
//! drain committed last ([`crate::live::Tap`]) — local and remote endpoint,
//! protocol, open or closed, TCP state, and the bytes each socket counted
//! so far. The rows are built by [`crate::live::snapshot`], the code behind
//! `netmon snapshot --sockets`, from the tapped reading's flows of that
//! process only, so both answers are the same numbers for the same reading.
//!
//! The store holds no per-socket history (sockets are summed per process
//! into the rows, and remote endpoints per hour), so this query reads the
//! tap, not the store; it is answered only by a running daemon.

use crate::clock::rfc3339_from_unix_ms;
use crate::live::{Tapped, snapshot, unattributed};
use crate::ownership::{ProcessId, ProcessInfo};
use crate::source::Reading;
use crate::wire;

/// The process `pid` names in `tapped` (`start_ticks` given: that one).
/// A bare pid with sockets of several processes (pid reuse) is ambiguous;
/// one with none names the process `pid:0`, which has no sockets.
///
/// # Errors
/// An ambiguous bare pid, naming the candidates.
pub fn resolve_pid(
    tapped: &Tapped,
    pid: u32,
    start_ticks: Option<u64>,
) -> Result<ProcessId, String> {
    if let Some(start_ticks) = start_ticks {
        return Ok(ProcessId { pid, start_ticks });
    }
    let mut found: Vec<ProcessId> = tapped
        .owners
        .values()
        .filter(|id| id.pid == pid)
        .copied()
        .collect();
    found.sort_unstable_by_key(|id| id.start_ticks);
    found.dedup();
    match found.as_slice() {
        [] => Ok(ProcessId {
            pid,
            start_ticks: 0,
        }),
        [one] => Ok(*one),
        many => Err(format!(
            "pid {pid} names {} processes ({}); give PID:START_TICKS",
            many.len(),
            many.iter()
                .map(|id| format!("{}:{}", id.pid, id.start_ticks))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The sockets of `process` in `tapped`, busiest first, at most `limit`
/// rows (`sockets_total` counts them all; `total` sums them all).
#[must_use]
pub fn process_sockets(tapped: &Tapped, process: ProcessId, limit: usize) -> wire::Sockets {
    let flows = tapped
        .reading
        .flows
        .iter()
        .filter(|f| tapped.owners.get(&f.key.cookie) == Some(&process))
        .copied()
        .collect();
    let info: ProcessInfo = tapped
        .infos
        .get(&process)
        .cloned()
        .unwrap_or_else(|| ProcessInfo {
            id: process,
            ..unattributed()
        });
    let mine = Reading {
        flows,
        names: tapped.reading.names.clone(),
        ..Reading::default()
    };
    let mut owners = crate::ownership::Owners::default();
    for f in &mine.flows {
        owners.insert_ref(f.key.cookie, &info);
    }
    let snap = snapshot(
        &mine,
        &owners,
        true,
        (rfc3339_from_unix_ms(tapped.ts_ms), tapped.ts_ms),
    );
    let mut rows = snap.sockets.unwrap_or_default();
    let sockets_total = rows.len() as u64;
    rows.truncate(limit);
    wire::Sockets {
        schema_version: wire::SCHEMA_VERSION,
        taken_at: snap.taken_at,
        taken_at_unix_ms: snap.taken_at_unix_ms,
        pid: process.pid,
        start_ticks: process.start_ticks,
        comm: info.comm,
        sockets_total,
        rows,
        total: snap.totals,
    }
}

#[cfg(test)]
mod tests {
    use netmon_common::{DirCounters, FlowKey, FlowValue};
    use rustc_hash::FxHashMap;

    use super::*;
    use crate::source::FlowReading;

    fn flow(cookie: u64, port: u16, tx: u64, closed: bool) -> FlowReading {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[10, 0, 0, 1]);
        FlowReading {
            key: FlowKey {
                cookie,
                ip_version: 4,
                protocol: 6,
                remote_port: port,
                ..FlowKey::default()
            },
            value: FlowValue {
                tx: DirCounters {
                    packets: 1,
                    ip_bytes: tx + 52,
                    payload_bytes: tx,
                    retrans_bytes: 0,
                },
                local_addr: local,
                local_port: 40_000 + port,
                ..FlowValue::default()
            },
            closed,
        }
    }

    #[test]
    fn only_the_process_sockets_busiest_first() {
        let me = ProcessId {
            pid: 10,
            start_ticks: 1,
        };
        let other = ProcessId {
            pid: 10,
            start_ticks: 2,
        };
        let tapped = Tapped {
            ts_ms: 1_000,
            reading: Reading {
                flows: vec![
                    flow(1, 80, 100, false),
                    flow(2, 443, 900, true),
                    flow(3, 22, 5, false),
                    flow(4, 53, 7, false),
                ],
                ..Reading::default()
            },
            owners: FxHashMap::from_iter([(1, me), (2, me), (3, other)]),
            infos: FxHashMap::from_iter([(
                me,
                ProcessInfo {
                    id: me,
                    comm: "curl".into(),
                    ..unattributed()
                },
            )]),
        };
        let doc = process_sockets(&tapped, me, 10);
        assert_eq!(doc.comm, "curl");
        assert_eq!(doc.sockets_total, 2);
        let got: Vec<(u64, u16, u16, bool, u64)> = doc
            .rows
            .iter()
            .map(|r| {
                (
                    r.cookie,
                    r.local_port,
                    r.remote_port,
                    r.closed,
                    r.tx.payload_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(2, 40_443, 443, true, 900), (1, 40_080, 80, false, 100)]
        );
        assert_eq!(doc.rows[0].local_addr.to_string(), "10.0.0.1");
        assert_eq!(doc.total.tx.payload_bytes, 1000);
        let one = process_sockets(&tapped, me, 1);
        assert_eq!((one.rows.len(), one.sockets_total), (1, 2));
        assert_eq!(one.total.tx.payload_bytes, 1000, "totals cover every row");
        let none = process_sockets(
            &tapped,
            ProcessId {
                pid: 99,
                start_ticks: 0,
            },
            10,
        );
        assert_eq!(
            (none.sockets_total, none.comm.as_str()),
            (0, "[unattributed]")
        );
        assert_eq!(resolve_pid(&tapped, 10, Some(2)), Ok(other));
        let e = resolve_pid(&tapped, 10, None).expect_err("two processes");
        assert!(e.contains("10:1, 10:2"), "{e}");
        assert_eq!(
            resolve_pid(&tapped, 7, None).map(|id| id.start_ticks),
            Ok(0)
        );
    }
}
