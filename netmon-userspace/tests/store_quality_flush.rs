//! Quality rollups are written once a minute (`netmon::store::quality`):
//! the interval rows after the store's mark wait for their minute to end
//! and readers add them to the rollups. Every interval row must be in the
//! rollup tiers exactly once — through SIGKILLs mid-commit, lazy commits
//! rolled back, reopening, the wall clock set back, a purge or a size cut
//! after a long stop — and every window must answer the same from the
//! interval tier and from the rollups.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netmon::model::{ConnDir, DestClass};
use netmon::store::quality::{QualityRow, QualityStats};
use netmon::store::query::Segment;
use netmon::store::{Batch, Retention, Store, Tier, TimeMs};

/// 2023-11-14T22:13:20Z: any fixed time, not on a minute boundary.
const BASE: TimeMs = 1_700_000_000_000;
/// Drain times step by this much: a minute ends every eight or nine.
const STEP: TimeMs = 7_000;
/// Set (to the database path) in the child the kill test starts.
const CHILD_ENV: &str = "NETMON_QUALITY_FLUSH_CHILD";
const KILLS: usize = 30;

/// The rows one drain at `ts` hands the store: a function of `ts` alone,
/// so the truth of any set of committed drains can be recomputed.
fn rows_at(ts: TimeMs) -> Vec<QualityRow> {
    let mut rng = fastrand::Rng::with_seed(ts);
    let mut keys: Vec<(u32, u8)> = (0..rng.usize(1..5))
        .map(|_| (rng.u32(1..6), rng.u8(1..4)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(pid, host)| {
            let mut stats = QualityStats {
                samples: rng.u64(1..4),
                retrans_segs: rng.u64(0..3),
                data_segs: rng.u64(3..50),
                ..QualityStats::default()
            };
            stats.rtt.add(rng.u32(1_000..90_000), stats.samples);
            QualityRow {
                pid,
                start_ticks: 100 + u64::from(pid),
                addr: [10, 0, 0, host, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                port: 443,
                ip_version: 4,
                protocol: 6,
                class: DestClass::Lan.to_byte(),
                dir: ConnDir::Out.to_byte(),
                stats,
            }
        })
        .collect()
}

fn commit(store: &mut Store, ts: TimeMs, lazy: bool) {
    store
        .commit(&Batch {
            ts_ms: ts,
            quality: rows_at(ts),
            lazy,
            ..Batch::default()
        })
        .expect("commit");
}

/// Stats per (time key, pid, host byte) of `segments`.
type Answer = BTreeMap<(TimeMs, u32, u8), QualityStats>;

fn read(store: &mut Store, segments: &[Segment]) -> Answer {
    let mut out = Answer::new();
    store
        .quality_rows(segments, |ts, rk, s| {
            out.entry((ts, rk.process.pid, rk.addr[3]))
                .or_default()
                .merge(s);
        })
        .expect("quality rows");
    out
}

fn whole(tier: Tier) -> Segment {
    Segment {
        tier,
        from: 0,
        to: u64::MAX / 2,
    }
}

/// The interval rows' drain times, each checked to hold exactly the rows
/// of its one drain.
fn drain_times(store: &mut Store) -> Vec<TimeMs> {
    let mut per_ts: BTreeMap<TimeMs, Vec<(u32, u8, QualityStats)>> = BTreeMap::new();
    store
        .quality_rows(&[whole(Tier::Interval)], |ts, rk, s| {
            per_ts
                .entry(ts)
                .or_default()
                .push((rk.process.pid, rk.addr[3], s.clone()));
        })
        .expect("interval rows");
    for (ts, got) in &per_ts {
        let want: Vec<_> = rows_at(*ts)
            .into_iter()
            .map(|r| (r.pid, r.addr[3], r.stats))
            .collect();
        assert_eq!(got, &want, "the interval row at {ts}: one drain's rows");
    }
    per_ts.into_keys().collect()
}

/// What the rows of drains `times` sum to per bucket of `tier`.
fn truth(times: &[TimeMs], tier: Tier) -> Answer {
    let mut out = Answer::new();
    for &ts in times {
        for r in rows_at(ts) {
            out.entry((tier.bucket(ts), r.pid, r.addr[3]))
                .or_default()
                .merge(&r.stats);
        }
    }
    out
}

/// Every rollup tier answers, per bucket, what the interval rows hold.
fn assert_exact(store: &mut Store, what: &str) -> Vec<TimeMs> {
    let times = drain_times(store);
    assert!(!times.is_empty(), "{what}: no drain committed");
    for tier in Tier::ROLLUPS {
        assert_eq!(
            read(store, &[whole(tier)]),
            truth(&times, tier),
            "{what}: {tier:?} tier"
        );
    }
    times
}

/// The kill test's child: commits drains from after the last one stored,
/// most of them lazy, until it is killed.
fn child(db: &Path) -> ! {
    let (mut store, _) = Store::open(db, Retention::default()).expect("child opens");
    let last = drain_times(&mut store).last().copied();
    let mut ts = last.map_or(BASE, |t| t + STEP);
    let mut rng = fastrand::Rng::with_seed(ts);
    loop {
        commit(&mut store, ts, !rng.u8(..).is_multiple_of(4));
        ts += STEP;
    }
}

#[test]
fn sigkill_mid_commit_loses_and_doubles_no_flush() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&db));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("q.redb");
    let mut rng = fastrand::Rng::with_seed(0x9f1);
    let mut stored = 0;
    for i in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "sigkill_mid_commit_loses_and_doubles_no_flush",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, &db)
            .spawn()
            .expect("child starts");
        std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("child reaped");
        assert!(!status.success(), "run {i}: the child ended by itself");
        if db.exists() {
            let (mut store, _) = Store::open(&db, Retention::default()).expect("store opens");
            if !drain_times(&mut store).is_empty() {
                stored = assert_exact(&mut store, &format!("after kill {i}")).len();
            }
        }
    }
    let (mut store, _) = Store::open(&db, Retention::default()).expect("store opens");
    let times = assert_exact(&mut store, "after the kills");
    assert_eq!(times.len(), stored);
    let minutes = times
        .iter()
        .map(|t| Tier::Minute.bucket(*t))
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        minutes.len() >= 10,
        "the children crossed minutes ({} over {} drains)",
        minutes.len(),
        times.len()
    );
    // Read-only (a query command with no daemon) answers the same.
    drop(store);
    let mut ro = Store::open_read_only(&db, Retention::default()).expect("read-only");
    assert_exact(&mut ro, "read-only");
}

#[test]
fn reopen_clock_set_back_purge_and_size_cut_keep_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("q.redb");
    let (mut store, _) = Store::open(&db, Retention::default()).expect("opens");
    let mut ts = BASE;
    // Three minutes, reopened mid-minute (the pending rows reload).
    for k in 0..26 {
        commit(&mut store, ts, k % 3 != 0);
        ts += STEP;
        if k == 12 {
            drop(store);
            store = Store::open(&db, Retention::default()).expect("reopens").0;
        }
    }
    assert_exact(&mut store, "reopened mid-minute");
    // The wall clock set back two minutes: rows before the mark go to
    // every tier at once, later ones wait again.
    ts -= 120_000 + 500;
    for _ in 0..20 {
        commit(&mut store, ts, false);
        ts += STEP;
    }
    assert_exact(&mut store, "clock set back");
    // A window answers the same from every tier that covers it.
    let (from, to) = (Tier::Hour.bucket(BASE), Tier::Hour.bucket(BASE) + 3_600_000);
    let sum = |a: Answer| {
        let mut m: BTreeMap<(u32, u8), QualityStats> = BTreeMap::new();
        for ((_, pid, host), s) in a {
            m.entry((pid, host)).or_default().merge(&s);
        }
        m
    };
    let by_interval = sum(read(
        &mut store,
        &[Segment {
            tier: Tier::Interval,
            from,
            to,
        }],
    ));
    for tier in Tier::ROLLUPS {
        let seg = Segment {
            tier,
            from: tier.bucket(from),
            to,
        };
        assert_eq!(sum(read(&mut store, &[seg])), by_interval, "{tier:?}");
    }

    // A stop of three hours: the purge deletes interval rows that were
    // never rolled up (their minute did not end while the daemon ran); it
    // rolls them up first.
    let last = ts;
    let rolled_before = read(&mut store, &[whole(Tier::Day)]);
    while store
        .purge(last + 3 * 3_600_000, 1_000)
        .expect("purge")
        .more
    {}
    assert!(drain_times(&mut store).is_empty(), "interval tier purged");
    assert_eq!(
        read(&mut store, &[whole(Tier::Day)]),
        rolled_before,
        "the purge kept every row in the rollups"
    );
    drop(store);
    let (mut store, _) = Store::open(&db, Retention::default()).expect("reopens");
    assert_eq!(
        read(&mut store, &[whole(Tier::Day)]),
        rolled_before,
        "and reopening adds nothing twice"
    );

    // The size cap cutting interval rows still pending: rolled up first.
    let db2 = dir.path().join("cap.redb");
    let cap = Retention {
        max_size: Some(1),
        ..Retention::default()
    };
    let (mut store, _) = Store::open(&db2, cap).expect("opens");
    // Eight drains in one minute: all pending when the cap cuts the
    // oldest quarter of them.
    let m0 = Tier::Minute.bucket(BASE) + 60_000;
    for k in 0..8 {
        commit(&mut store, m0 + k * STEP, false);
    }
    let before = read(&mut store, &[whole(Tier::Day)]);
    let cut = store.enforce_max_size(m0 + 8 * STEP).expect("size cap");
    assert!(
        matches!(cut, Some((Tier::Interval, _, n)) if n > 0),
        "{cut:?}"
    );
    assert_eq!(read(&mut store, &[whole(Tier::Day)]), before, "size cut");
    drop(store);
    let (mut store, _) = Store::open(&db2, cap).expect("reopens");
    assert_eq!(read(&mut store, &[whole(Tier::Day)]), before, "size cut");
}
