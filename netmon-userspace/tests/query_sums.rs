//! The store's kept sums of closed segments (`netmon::store::sums`) never
//! change an answer: for random windows over three days of commits (hour,
//! minute and interval rows, windows cutting buckets anywhere), `usage` by
//! process with the sums kept equals the same question with them off, and
//! an answer that says it is exact has the test's own total of the batches
//! it committed in the window. It stays so while commits go on (new rows
//! land in open segments only), after a commit back in time (the wall
//! clock set back: every kept sum is dropped), and across a purge (the
//! purge cutoff is part of a sum's key).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::time::Duration;

use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::Dimension;
use netmon::query::usage::{UsageAnswer, UsageQuery, usage};
use netmon::store::{Batch, DestClass, Retention, Store, TimeMs, Traffic};
use netmon_common::DirCounters;

/// 2024-03-09T23:13:20Z: not aligned to any bucket.
const BASE: TimeMs = 1_710_026_000_000;
const MIN: TimeMs = 60_000;
const HOUR: TimeMs = 60 * MIN;

fn info(i: u32) -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid: 100 + i,
            start_ticks: u64::from(i),
        },
        comm: format!("p{i}"),
        exe: None,
        cmdline: None,
        uid: 0,
        user: None,
        ppid: None,
        cgroup: None,
    }
}

fn traffic(n: u64) -> Traffic {
    Traffic {
        tx: DirCounters {
            packets: n,
            ip_bytes: n * 100,
            payload_bytes: n * 60,
            retrans_bytes: 0,
        },
        rx: DirCounters {
            packets: n,
            ip_bytes: n * 50,
            payload_bytes: n * 10,
            retrans_bytes: 0,
        },
    }
}

struct World {
    store: Store,
    /// Every committed batch: time and its total.
    committed: Vec<(TimeMs, Traffic)>,
    _dir: tempfile::TempDir,
}

impl World {
    fn commit(&mut self, ts: TimeMs) {
        let procs: Vec<ProcessInfo> = (0..4).map(info).collect();
        let mut b = Batch {
            ts_ms: ts,
            processes: procs.clone(),
            ..Batch::default()
        };
        let mut total = Traffic::default();
        for (i, p) in procs.iter().enumerate() {
            let n = 1 + (ts / MIN + i as u64) % 7;
            for (class, t) in [
                (DestClass::Internet, traffic(n)),
                (DestClass::Lan, traffic(1)),
            ] {
                b.proc_rows.push((p.id, class, t));
                total = total.add(t);
            }
        }
        self.store.commit(&b).unwrap();
        self.committed.push((ts, total));
    }

    fn ask(&mut self, from: TimeMs, until: TimeMs) -> UsageAnswer {
        let facts = Facts::load(&mut self.store, &AppRules::default()).unwrap();
        let q = UsageQuery {
            range: from..until,
            by: Dimension::Process,
            filters: Vec::new(),
            class: None,
            limit: None,
        };
        usage(&mut self.store, &facts, &q).unwrap()
    }

    /// The question with the sums kept (asked twice: filled, then reused)
    /// equals it with them off; an exact answer has the committed total.
    fn check(&mut self, from: TimeMs, until: TimeMs) {
        self.store.sums_mut().set_enabled(false);
        let plain = self.ask(from, until);
        self.store.sums_mut().set_enabled(true);
        let filled = self.ask(from, until);
        let reused = self.ask(from, until);
        assert_eq!(filled, plain, "{from}..{until}");
        assert_eq!(reused, plain, "{from}..{until}");
        if plain.coverage.exact() {
            let want = self
                .committed
                .iter()
                .filter(|(ts, _)| (from..until).contains(ts))
                .fold(Traffic::default(), |a, (_, t)| a.add(*t));
            assert_eq!(plain.total, want, "exact {from}..{until}");
        }
    }
}

#[test]
fn kept_sums_never_change_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Short retention of the fine tiers, purged only when the test says.
    let retention = Retention {
        interval: Some(Duration::from_secs(3600)),
        minute: Some(Duration::from_secs(7200)),
        ..Retention::default()
    };
    let (store, _) = Store::open(&dir.path().join("db.redb"), retention).unwrap();
    let mut w = World {
        store,
        committed: Vec::new(),
        _dir: dir,
    };
    // Three days: hourly, then every minute for 3 h, then every 5 s.
    let mut ts = BASE;
    while ts < BASE + 3 * 24 * HOUR {
        w.commit(ts);
        ts += HOUR;
    }
    while ts < BASE + 3 * 24 * HOUR + 3 * HOUR {
        w.commit(ts);
        ts += MIN;
    }
    let end = ts + 10 * MIN;
    while ts < end {
        w.commit(ts);
        ts += 5_000;
    }
    let now = ts;
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..60 {
        let from = BASE - HOUR + rng.u64(0..now - BASE);
        let until = (from + 1 + rng.u64(0..4 * 24 * HOUR)).min(now + 1);
        w.check(from, until);
    }
    // Windows ending now, as the dashboard asks them.
    for back in [HOUR, 24 * HOUR, 3 * 24 * HOUR] {
        w.check(now - back, now + 1);
    }
    let (hits, _) = w.store.sums_mut().stats();
    assert!(hits > 0, "sums were reused");

    // Commits go on: new rows land in open segments.
    for _ in 0..30 {
        ts += 5_000;
        w.commit(ts);
        w.check(now - 24 * HOUR, ts + 1);
        w.check(BASE, ts + 1);
    }
    // The wall clock set back by two days: rows land in closed buckets.
    w.commit(BASE + 24 * HOUR + 17 * MIN);
    w.check(BASE, ts + 1);
    w.check(BASE + 20 * HOUR, BASE + 30 * HOUR);
    // A purge of interval and minute rows (the store's short retention):
    // the cutoffs move, and so do the keys.
    w.check(BASE, ts + 1);
    while w.store.purge(ts, 1_000).unwrap().more {}
    w.check(BASE, ts + 1);
    w.check(ts - 5 * HOUR, ts + 1);
}
