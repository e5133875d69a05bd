//! A store as a real machine's after 30 days with 500 processes, for the
//! query and HTTP benchmarks: filled through `Store::commit` as the drain
//! would, one batch per hour for 30 days (every process, two destination
//! classes), then one per minute for the last 2 hours and one per 5 s for
//! the last 5 minutes, so window edges read minute and interval rows.
use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::store::{Batch, DestClass, Store, Traffic};
use netmon_common::DirCounters;

/// Processes in the store.
pub const PROCS: u32 = 500;
/// An hour, ms.
pub const HOUR: u64 = 3_600_000;
/// A day, ms.
pub const DAY: u64 = 24 * HOUR;

fn info(i: u32) -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid: 1000 + i,
            start_ticks: u64::from(i) * 7,
        },
        comm: format!("app{}", i % 50),
        exe: Some(format!("/usr/bin/app{}", i % 50)),
        cmdline: Some(format!("app{} --worker {i}", i % 50)),
        uid: 1000 + i % 5,
        user: None,
        ppid: Some(1),
        cgroup: Some(format!("/system.slice/app{}.service", i % 50)),
    }
}

fn batch(ts: u64, procs: &[ProcessInfo]) -> Batch {
    let t = |n: u64| Traffic {
        tx: DirCounters {
            packets: n,
            ip_bytes: n * 1100,
            payload_bytes: n * 1000,
            retrans_bytes: n,
        },
        rx: DirCounters {
            packets: n / 2,
            ip_bytes: n * 600,
            payload_bytes: n * 500,
            retrans_bytes: 0,
        },
    };
    let mut b = Batch {
        ts_ms: ts,
        processes: procs.to_vec(),
        ..Batch::default()
    };
    for (i, p) in procs.iter().enumerate() {
        let n = 1 + (i as u64 % 17);
        b.proc_rows.push((p.id, DestClass::Internet, t(n)));
        b.proc_rows.push((p.id, DestClass::Lan, t(n / 3 + 1)));
    }
    b
}

/// Fills `store` with 30 days before `now`.
pub fn fill(store: &mut Store, now: u64) {
    let procs: Vec<ProcessInfo> = (0..PROCS).map(info).collect();
    let mut ts = now - 30 * DAY;
    while ts < now - 2 * HOUR {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += HOUR;
    }
    while ts < now - 5 * 60_000 {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 60_000;
    }
    while ts < now {
        store.commit(&batch(ts, &procs)).expect("commit");
        ts += 5_000;
    }
}

/// One drain's batch at `ts`: every process, as [`fill`] writes them (for
/// benchmarks that keep committing while they measure, as a daemon does).
#[allow(dead_code, reason = "used by the benchmarks that run a drain")]
pub fn drain_batch(ts: u64) -> Batch {
    let procs: Vec<ProcessInfo> = (0..PROCS).map(info).collect();
    batch(ts, &procs)
}
