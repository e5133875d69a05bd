//! Exactness of the history: every tier, every grouping and every window
//! equals the simulated ground truth, across rollup boundaries, a purge, pid
//! reuse, resets and overflow. The drain runs in-process on the simulated
//! source with an injected clock (one tick = 7 minutes, so 3 days pass in a
//! few hundred steps).
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::model::{ConnDir, DestClass, OVERFLOW, ProcessId, TimeMs, Traffic, UNATTRIBUTED};
use netmon::query::Dimension;
use netmon::query::scan::tier_sums;
use netmon::query::series::{SeriesQuery, series};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{DaemonEvent, Retention, Store, Tier};

mod query_support;

/// 2024-03-09T23:13:20Z: not aligned to any bucket.
const BASE: TimeMs = 1_710_026_000_000;
const STEP: TimeMs = 7 * 60_000;

fn at(tick: u64) -> TimeMs {
    BASE + tick * STEP
}

fn busy_script() -> Script {
    let mut b = ScriptBuilder::new(1000);
    let curl = b.process(100, 5_000, "curl", 0..=120);
    let curl2 = b.process(100, 9_000, "curl", 200..=u64::MAX); // pid reuse
    let sshd = b.process(22, 10, "sshd", 0..=u64::MAX);
    let dns = b.process(53, 11, "resolved", 0..=u64::MAX);
    b.socket(1, Some(curl), Some(100)).flow(
        1,
        "93.184.216.34:443",
        3..=100,
        per_tick(3, 1400),
        per_tick(9, 12_000),
    );
    b.socket(2, Some(curl2), Some(400)).flow(
        2,
        "93.184.216.34:443",
        210..=390,
        per_tick(2, 700),
        per_tick(5, 5000),
    );
    // An inbound session: accepted on port 22 from an ephemeral port.
    b.accepted(3, Some(sshd), None, 99, 22).flow(
        3,
        "192.168.1.20:51000",
        0..=600,
        per_tick(1, 90),
        per_tick(1, 60),
    );
    // Unconnected UDP: one socket, several remotes, one loopback.
    b.socket(4, Some(dns), None)
        .flow(4, "1.1.1.1:53", 10..=500, per_tick(1, 40), per_tick(1, 120))
        .flow(
            4,
            "[2606:4700::1111]:53",
            50..=450,
            per_tick(1, 40),
            per_tick(1, 140),
        )
        .flow(
            4,
            "127.0.0.1:5353",
            0..=600,
            per_tick(2, 30),
            per_tick(2, 30),
        );
    // Nobody known.
    b.socket(5, None, Some(300)).flow(
        5,
        "10.1.2.3:8080",
        250..=290,
        per_tick(1, 10),
        per_tick(1, 20),
    );
    // Short sockets opened and closed again and again.
    for i in 0..30u64 {
        let start = 20 * i;
        b.socket(100 + i, Some(sshd), Some(start + 4)).flow(
            100 + i,
            "100.64.0.7:443",
            start..=start + 3,
            per_tick(4, 400),
            per_tick(4, 800),
        );
    }
    b.overflow(300..=320, per_tick(2, 500), per_tick(1, 100), 3);
    b.build().expect("valid script")
}

struct Run {
    store: Store,
    source: SimSource,
    resolver: SimResolver,
    drain: Drain,
    _dir: tempfile::TempDir,
}

fn start(script: &Script) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let drain = Drain::new(&mut store).expect("drain starts");
    Run {
        source: SimSource::new(Arc::new(script.clone())),
        resolver: SimResolver::new(script),
        store,
        drain,
        _dir: dir,
    }
}

fn drive(run: &mut Run, ticks: std::ops::RangeInclusive<u64>) {
    for k in ticks {
        run.source.set_tick(k);
        run.drain
            .step(
                &mut run.source,
                &mut run.resolver,
                &mut run.store,
                at(k),
                Vec::new(),
            )
            .expect("step commits");
    }
}

fn by_process(run: &mut Run, range: &std::ops::Range<TimeMs>) -> BTreeMap<ProcessId, Traffic> {
    query_support::by_process(&mut run.store, range)
}

#[test]
fn every_tier_and_grouping_equals_ground_truth() {
    let script = busy_script();
    let mut run = start(&script);
    let last = script.last_tick() + 5;
    drive(&mut run, 0..=last);
    let truth = script.truth(0..=u64::MAX);

    for tier in Tier::ALL {
        let sums = tier_sums(&mut run.store, tier).expect("tier sums");
        assert_eq!(
            sums, truth.per_process_class,
            "tier {tier:?} differs from ground truth"
        );
    }
    let all = 0..u64::MAX / 2;
    assert_eq!(by_process(&mut run, &all), truth.per_process);

    let classes = query_support::by_class(&mut run.store, &all);
    assert_eq!(classes, truth.per_class);
    assert!(classes.contains_key(&DestClass::Loopback) && classes.contains_key(&DestClass::Lan));

    assert_eq!(by_remote(&mut run, &all), truth.per_service);

    let (ifaces, no_iface) = query_support::by_interface(&mut run.store, &all);
    assert_eq!(ifaces, truth.per_iface);
    // Overflow has no interface: its own group, so the totals agree.
    assert_eq!(no_iface, truth.per_process.get(&OVERFLOW).copied());

    // Internet only: no loopback or LAN bytes.
    let internet = query_support::usage_by(
        &mut run.store,
        &all,
        Dimension::Class,
        Some(DestClass::Internet),
    );
    assert_eq!(internet.total, truth.per_class[&DestClass::Internet]);

    // Every closed socket was retired once quiescent; the snapshot holds only
    // the sockets still open.
    let open_flows: usize = script
        .sockets
        .iter()
        .filter(|s| s.closed_at.is_none())
        .map(|s| s.flows.len())
        .sum();
    assert_eq!(
        run.drain.snapshot_len(),
        open_flows,
        "closed sockets were retired, open ones stay"
    );
    assert!(
        run.source.retire_calls > 0 && run.resolver.forgotten >= 30,
        "retire and forget were called"
    );
}

#[test]
fn windows_at_arbitrary_times_are_exact() {
    let script = busy_script();
    let mut run = start(&script);
    drive(&mut run, 0..=script.last_tick() + 2);
    // Unaligned windows crossing minute, hour and day boundaries: the drain
    // at time at(k) holds tick k's traffic.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..40 {
        let a = rng.u64(BASE..at(600));
        let b = rng.u64(a..at(620));
        let first = (a.saturating_sub(BASE)).div_ceil(STEP);
        let last_excl = (b.saturating_sub(BASE)).div_ceil(STEP);
        let truth = if last_excl > first {
            script.truth(first..=last_excl - 1).per_process
        } else {
            BTreeMap::new()
        };
        assert_eq!(
            by_process(&mut run, &(a..b)),
            truth,
            "window {a}..{b} (ticks {first}..{last_excl})"
        );
    }
    // Series at 1 h steps sum to the total.
    let range = Tier::Hour.bucket(BASE)..Tier::Hour.bucket(at(620)) + 3_600_000;
    let facts = netmon::query::Facts::load(&mut run.store, &netmon::query::AppRules::default())
        .expect("facts");
    let series = series(
        &mut run.store,
        &facts,
        &SeriesQuery {
            range,
            step_ms: Some(3_600_000),
            filters: Vec::new(),
            class: None,
            now_ms: at(620),
        },
    )
    .expect("series");
    let total = series.points.iter().fold(Traffic::default(), |a, p| {
        a.add(p.traffic.unwrap_or_default())
    });
    assert_eq!(total, script.truth(0..=u64::MAX).total());
    assert_eq!(series.total, total, "the answer's total is its points' sum");
    assert!(
        series.points.len() > 60
            && series
                .points
                .iter()
                .filter(|p| p.traffic.is_some_and(|t| !t.is_zero()))
                .count()
                > 60
    );
}

#[test]
fn purge_keeps_coarse_tiers_exact() {
    let script = busy_script();
    let mut run = start(&script);
    let last = script.last_tick() + 2;
    drive(&mut run, 0..=last);
    let truth = script.truth(0..=u64::MAX);
    // 50 days later: interval samples (48 h) and minute rollups (30 d) go.
    let now = at(last) + 50 * 86_400_000;
    let mut batches = 0;
    loop {
        let r = run.store.purge(now, 100).expect("purge");
        assert!(r.deleted <= 100, "a batch is bounded");
        batches += 1;
        if !r.more {
            break;
        }
    }
    assert!(batches > 1, "the purge took several bounded batches");
    assert!(
        tier_sums(&mut run.store, Tier::Interval)
            .expect("sums")
            .is_empty()
    );
    assert!(
        tier_sums(&mut run.store, Tier::Minute)
            .expect("sums")
            .is_empty()
    );
    for tier in [Tier::Hour, Tier::Day] {
        assert_eq!(
            tier_sums(&mut run.store, tier).expect("sums"),
            truth.per_process_class,
            "{tier:?}"
        );
    }
    // Totals over any range still equal the truth, edges rounded to hours.
    assert_eq!(by_process(&mut run, &(BASE..now)), truth.per_process);
    let a = Tier::Hour.bucket(at(200));
    let b = Tier::Hour.bucket(at(400));
    let ticks = (a - BASE).div_ceil(STEP)..=(b - BASE).div_ceil(STEP) - 1;
    assert_eq!(
        by_process(&mut run, &(a..b)),
        script.truth(ticks).per_process
    );
}

#[test]
fn pid_reuse_keeps_separate_histories() {
    let script = busy_script();
    let mut run = start(&script);
    drive(&mut run, 0..=script.last_tick() + 2);
    let procs = run.store.processes(&(0..u64::MAX / 2)).expect("processes");
    let curls: Vec<_> = procs.iter().filter(|p| p.info.id.pid == 100).collect();
    assert_eq!(curls.len(), 2, "same pid, two processes");
    assert!(curls[0].last_seen_ms < curls[1].first_seen_ms);
    let totals = by_process(&mut run, &(0..u64::MAX / 2));
    let truth = script.truth(0..=u64::MAX);
    for p in curls {
        assert_eq!(totals[&p.info.id], truth.per_process[&p.info.id]);
    }
    assert!(
        totals.contains_key(&UNATTRIBUTED),
        "ownerless socket stored as [unattributed]"
    );
    assert_eq!(
        procs
            .iter()
            .find(|p| p.info.id == UNATTRIBUTED)
            .map(|p| p.info.comm.as_str()),
        Some("[unattributed]")
    );
    let sshd = procs
        .iter()
        .find(|p| p.info.id.pid == 22)
        .expect("sshd stored");
    assert_eq!(sshd.unit.as_deref(), Some("sshd.service"));
}

#[test]
fn overflow_is_stored_as_a_pseudo_process_with_events() {
    let script = busy_script();
    let mut run = start(&script);
    drive(&mut run, 0..=script.last_tick() + 2);
    let totals = by_process(&mut run, &(0..u64::MAX / 2));
    let truth = script.truth(0..=u64::MAX);
    assert_eq!(totals[&OVERFLOW], truth.per_process[&OVERFLOW]);
    let events = run.store.events(&(0..u64::MAX / 2)).expect("events");
    let failed: u64 = events
        .iter()
        .filter_map(|(_, e)| match e {
            DaemonEvent::Overflow { failed_inserts, .. } => Some(*failed_inserts),
            _ => None,
        })
        .sum();
    assert_eq!(failed, truth.failed_inserts);
    let procs = run.store.processes(&(0..u64::MAX / 2)).expect("processes");
    assert!(
        procs
            .iter()
            .any(|p| p.info.id == OVERFLOW && p.info.comm == "[overflow]")
    );
}

#[test]
fn resets_take_new_values_from_zero() {
    let mut b = ScriptBuilder::new(1000);
    let p = b.process(7, 70, "app", 0..=u64::MAX);
    b.socket(1, Some(p), None).flow(
        1,
        "8.8.4.4:443",
        0..=50,
        per_tick(1, 1000),
        per_tick(1, 3000),
    );
    b.socket(2, Some(p), None)
        .flow(2, "8.8.4.4:80", 0..=50, per_tick(1, 10), per_tick(1, 30));
    b.overflow(0..=50, per_tick(1, 5), per_tick(1, 5), 1);
    b.reset_before(20).reset_before(35);
    let script = b.build().expect("valid");
    let mut run = start(&script);
    drive(&mut run, 0..=55);
    let truth = script.truth(0..=u64::MAX);
    assert_eq!(by_process(&mut run, &(0..u64::MAX / 2)), truth.per_process);
    let resets = run
        .store
        .events(&(0..u64::MAX / 2))
        .expect("events")
        .into_iter()
        .filter(|(_, e)| {
            matches!(
                e,
                DaemonEvent::Reset {
                    flows: 2,
                    overflow: true
                }
            )
        })
        .count();
    assert_eq!(
        resets, 2,
        "each reset recorded once, with both flows and the overflow counters"
    );
}

#[test]
fn restart_resumes_from_the_committed_snapshot() {
    let script = busy_script();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.redb");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    for (from, to) in [
        (0, 150),
        (151, 151),
        (152, 400),
        (401, script.last_tick() + 2),
    ] {
        // A fresh store handle and drain each time, the source keeps counting.
        let (mut store, _) = Store::open(&path, Retention::default()).expect("reopens");
        let mut drain = Drain::new(&mut store).expect("drain");
        for k in (from..=to).step_by(3) {
            source.set_tick(k);
            drain
                .step(&mut source, &mut resolver, &mut store, at(k), Vec::new())
                .expect("step");
        }
        source.set_tick(to);
        drain
            .step(&mut source, &mut resolver, &mut store, at(to), Vec::new())
            .expect("step");
    }
    let (mut store, _) = Store::open(&path, Retention::default()).expect("reopens");
    let totals = query_support::by_process(&mut store, &(0..u64::MAX / 2));
    assert_eq!(totals, script.truth(0..=u64::MAX).per_process);
}

/// Remote totals keyed as [`netmon::source::sim::Truth::per_service`].
fn by_remote(
    run: &mut Run,
    range: &std::ops::Range<TimeMs>,
) -> BTreeMap<(ProcessId, IpAddr, u16, ConnDir, u8), Traffic> {
    query_support::by_service(&mut run.store, range)
}

/// Remote rollups are written once an hour is over, from pending pieces in
/// the snapshot (drain invariant 8): remote answers must still be exact at
/// every step — current hour included, each hour's bytes in that hour —
/// and an hour change with more flows than `FLUSH_PER_STEP` must be
/// flushed over several steps.
#[test]
fn remote_usage_is_exact_at_every_step_across_hour_changes() {
    const M: TimeMs = 60_000;
    const H: TimeMs = 3_600_000;
    let n = netmon::drain::FLUSH_PER_STEP as u64 * 2 + 500;
    let mut b = ScriptBuilder::new(1000);
    let procs: Vec<_> = (0..20)
        .map(|i| b.process(1000 + i, 7, &format!("p{i}"), 0..=u64::MAX))
        .collect();
    for c in 0..n {
        let owner = procs[usize::try_from(c % 20).expect("small")];
        // Most send throughout; some stop early (pieces wait, idle, for
        // the hour to end); some close (retired: flushed at once).
        let (to, closed) = match c % 10 {
            0 => (5, None),
            1 => (30 + c % 40, Some(31 + c % 40)),
            _ => (200, None),
        };
        b.socket(c + 1, Some(owner), closed).flow(
            c + 1,
            &format!(
                "203.{}.{}.{}:{}",
                c % 3,
                (c >> 8) % 256,
                c % 256,
                1 + c % 999
            ),
            0..=to,
            per_tick(1, 100 + c % 7),
            per_tick(2, 900),
        );
    }
    let script = b.build().expect("valid");
    let mut run = start(&script);
    // Ten minutes before an hour: hours change at ticks 10 and 70.
    let base = Tier::Hour.bucket(BASE) + H - 10 * M;
    let at1 = |k: u64| base + k * M;
    let hour_of = |k: u64| Tier::Hour.bucket(at1(k));
    let ticks_in = |h: TimeMs| (0..=130u64).filter(move |k| hour_of(*k) == h);
    let mut flushed_after_change = Vec::new();
    for k in 0..=130u64 {
        run.source.set_tick(k);
        let report = run
            .drain
            .step(
                &mut run.source,
                &mut run.resolver,
                &mut run.store,
                at1(k),
                Vec::new(),
            )
            .expect("step");
        assert!(report.remote_flushed <= netmon::drain::FLUSH_PER_STEP);
        if (10..14).contains(&k) {
            flushed_after_change.push(report.remote_flushed);
        }
        if [0, 9, 10, 11, 12, 13, 45, 69, 70, 72, 130].contains(&k) {
            let all = by_remote(&mut run, &(0..u64::MAX / 2));
            assert_eq!(all, script.truth(0..=k).per_service, "all time, tick {k}");
            for h in [hour_of(0), hour_of(0) + H, hour_of(0) + 2 * H] {
                let ticks: Vec<u64> = ticks_in(h).filter(|t| *t <= k).collect();
                let want = match (ticks.first(), ticks.last()) {
                    (Some(a), Some(z)) => script.truth(*a..=*z).per_service,
                    _ => BTreeMap::new(),
                };
                assert_eq!(
                    by_remote(&mut run, &(h..h + H)),
                    want,
                    "hour {h} at tick {k}"
                );
            }
        }
    }
    // Thousands of flows with bytes of the ended hour: spread over steps.
    let busy = flushed_after_change[..4].iter().filter(|f| **f > 0).count();
    assert!(busy >= 2, "{flushed_after_change:?}");
}
