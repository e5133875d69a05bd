//! `[retention] max_size`: the history file never grows past its cap.
//!
//! A store capped at 8 MB takes 15 minutes of 1 s interval samples for 50
//! processes, each interval with 800 TCP quality samples (about 30 MB
//! uncapped), with the size cap applied every 5 commits as the daemon
//! applies it at its purges. The file
//! stays under the cap throughout; the interval tier (the finest) is thinned
//! from its oldest end, and the cut is recorded both as the tier's purge
//! cutoff (queries know the rows are gone) and as the size cap's own mark
//! (`netmon status`); the minute tier still reaches back to the first
//! sample.

use netmon::ownership::{ProcessId, ProcessInfo};
use netmon::store::quality::{QualityAcc, QualityRow};
use netmon::store::{Batch, DestClass, QualitySample, Retention, Store, Tier, Traffic};
use netmon_common::DirCounters;

const BASE: u64 = 1_700_000_000_000;
const MAX: u64 = 8_000_000;
const PROCS: u32 = 50;

fn info(pid: u32) -> ProcessInfo {
    ProcessInfo {
        id: ProcessId {
            pid,
            start_ticks: 7,
        },
        comm: format!("proc{pid}"),
        exe: Some(format!("/usr/bin/proc{pid}")),
        cmdline: Some(format!("proc{pid} --serve")),
        uid: 0,
        user: Some("root".into()),
        ppid: Some(1),
        cgroup: None,
    }
}

/// Flow samples as the drain stores them: aggregated per remote key.
fn quality_rows(samples: impl Iterator<Item = QualitySample>) -> Vec<QualityRow> {
    let mut acc = QualityAcc::default();
    samples.for_each(|s| acc.add(&s));
    acc.take_rows()
}

fn batch(ts_ms: u64, tick: u64) -> Batch {
    let traffic = |n: u64| Traffic {
        tx: DirCounters {
            packets: n,
            ip_bytes: 1500 * n + tick,
            payload_bytes: 1400 * n + tick,
            ..DirCounters::default()
        },
        rx: DirCounters {
            packets: 2 * n,
            ip_bytes: 900 * n + tick,
            payload_bytes: 800 * n + tick,
            ..DirCounters::default()
        },
    };
    Batch {
        ts_ms,
        processes: (0..PROCS).map(|p| info(1000 + p)).collect(),
        proc_rows: (0..PROCS)
            .map(|p| {
                (
                    info(1000 + p).id,
                    DestClass::Internet,
                    traffic(u64::from(p) + 1),
                )
            })
            .collect(),
        quality: quality_rows((0..800u32).map(|i| QualitySample {
            pid: 1000 + i % PROCS,
            start_ticks: 7,
            addr: [
                10,
                0,
                (i >> 8) as u8,
                i as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            port: 443,
            ip_version: 4,
            protocol: 6,
            class: DestClass::Internet as u8,
            dir: netmon::model::ConnDir::Out as u8,
            srtt_us: 1000 + i,
            retrans_segs: i % 3,
            data_segs: 10 + i,
            delivery_rate: 1_000_000 + u64::from(i),
        })),
        lazy: !tick.is_multiple_of(10),
        ..Batch::default()
    }
}

#[test]
fn the_file_stays_under_max_size_and_the_finest_tier_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capped.redb");
    let retention = Retention {
        max_size: Some(MAX),
        ..Retention::default()
    };
    let (mut store, _) = Store::open(&path, retention).expect("open");
    let ticks = 15 * 60;
    let mut cuts = 0;
    let mut largest = 0;
    for tick in 0..ticks {
        let now = BASE + tick * 1000;
        store.commit(&batch(now, tick)).unwrap();
        if tick % 5 == 4 {
            let r = store.enforce_max_size(now).unwrap();
            cuts += usize::from(r.is_some());
        }
        let size = store.file_size().unwrap();
        largest = largest.max(size);
    }
    assert!(
        largest <= MAX,
        "the file reached {largest} B, over its cap of {MAX} B"
    );
    assert!(cuts > 0, "the cap never acted: the test wrote too little");

    let now = BASE + ticks * 1000;
    let tiers = store.tier_rows().unwrap();
    let interval = tiers.iter().find(|t| t.tier == Tier::Interval).unwrap();
    let minute = tiers.iter().find(|t| t.tier == Tier::Minute).unwrap();
    let cut = store
        .size_purged_before(Tier::Interval)
        .unwrap()
        .expect("the interval tier was thinned");
    assert!(cut > BASE && cut < now, "cut at {cut}");
    assert!(
        interval.oldest_ms.unwrap() >= cut,
        "interval rows older than the cut remain"
    );
    assert!(interval.rows > 0 && interval.rows < ticks, "{interval:?}");
    assert!(
        store.purged_before(Tier::Interval).unwrap() >= cut,
        "queries must know the interval rows before the cut are gone"
    );
    assert_eq!(
        minute.oldest_ms,
        Some(Tier::Minute.bucket(BASE)),
        "the minute tier keeps the whole span while finer rows can go"
    );
    assert_eq!(store.size_purged_before(Tier::Minute).unwrap(), None);
}

#[test]
fn without_max_size_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(&dir.path().join("free.redb"), Retention::default()).unwrap();
    for tick in 0..120 {
        store.commit(&batch(BASE + tick * 1000, tick)).unwrap();
    }
    assert_eq!(store.enforce_max_size(BASE + 120_000).unwrap(), None);
    let tiers = store.tier_rows().unwrap();
    assert_eq!(tiers[0].tier, Tier::Interval);
    // An interval row and a quality row per commit.
    assert_eq!(tiers[0].rows, 2 * 120);
    assert_eq!(tiers[0].oldest_ms, Some(BASE));
}
