//! One window, one total, whichever `--by`: remote, port and protocol
//! answers used to be widened silently to whole hours (the remote rollups'
//! bucket) while the answer claimed the asked window, so two groupings of
//! the same window disagreed. Now, for random windows and every grouping:
//! an answer that says it is exact has the simulation's ground truth for
//! the window, group by group, and the same total as the answer by process,
//! to the byte; an answer that is not exact says so (covered range wider
//! than asked, a reason) and lies between the truth of the window and the
//! truth of what it claims to cover.
//!
//! The drain runs in-process on the simulated source with an injected
//! clock: one tick is 5 minutes, so hours hold 12 ticks and windows cut
//! hours at random places.
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::{Dimension, GroupKey};
use netmon::query::usage::{UsageQuery, usage};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, Truth, per_tick};
use netmon::store::{OVERFLOW, Retention, Store, TimeMs, Traffic};

/// 2024-03-09T23:13:20Z: not aligned to any bucket.
const BASE: TimeMs = 1_710_026_000_000;
const STEP: TimeMs = 5 * 60_000;
const LAST: u64 = 400;

const fn at(tick: u64) -> TimeMs {
    BASE + tick * STEP
}

/// Short processes with one server each, long ones with several endpoints
/// (some in the same class, so an hour cut in two cannot always be split),
/// a socket nobody owns, loopback, and overflow.
fn script() -> Script {
    let mut b = ScriptBuilder::new(1000);
    let browser = b.process(10, 100, "browser", 0..=u64::MAX);
    let resolver = b.process(11, 110, "resolved", 0..=u64::MAX);
    let mut cookie = 1;
    b.socket(cookie, Some(browser), None)
        .flow(
            cookie,
            "93.184.216.34:443",
            0..=300,
            per_tick(4, 1500),
            per_tick(9, 9000),
        )
        .flow(
            cookie,
            "151.101.1.69:443",
            40..=LAST,
            per_tick(2, 700),
            per_tick(3, 3000),
        );
    cookie += 1;
    b.socket(cookie, Some(resolver), None)
        .flow(
            cookie,
            "1.1.1.1:53",
            0..=LAST,
            per_tick(1, 60),
            per_tick(1, 120),
        )
        .flow(
            cookie,
            "[2606:4700::1111]:53",
            20..=350,
            per_tick(1, 70),
            per_tick(1, 140),
        )
        .flow(
            cookie,
            "127.0.0.53:53",
            0..=LAST,
            per_tick(2, 40),
            per_tick(2, 40),
        );
    // Short-lived: one server each, a few ticks, often inside one hour.
    for i in 0..40u64 {
        let start = 9 * i + 3;
        let p = b.process(
            1000 + u32::try_from(i).expect("small"),
            7,
            "curl",
            start..=start + 4,
        );
        cookie += 1;
        b.socket(cookie, Some(p), Some(start + 4)).flow(
            cookie,
            &format!("203.0.113.{}:{}", i % 5, 8000 + i % 3),
            start..=start + 2 + i % 3,
            per_tick(3, 300 + i),
            per_tick(5, 4000 + i),
        );
    }
    cookie += 1;
    b.socket(cookie, None, Some(200)).flow(
        cookie,
        "10.1.2.3:8080",
        150..=199,
        per_tick(1, 10),
        per_tick(1, 20),
    );
    b.overflow(250..=270, per_tick(2, 500), per_tick(1, 100), 3);
    b.build().expect("valid script")
}

fn truth_of(script: &Script, range: &std::ops::Range<TimeMs>) -> Truth {
    let first = range.start.saturating_sub(BASE).div_ceil(STEP);
    let end = range.end.saturating_sub(BASE).div_ceil(STEP);
    if end > first {
        script.truth(first..=end - 1)
    } else {
        Truth::default()
    }
}

fn sum(t: &BTreeMap<GroupKey, Traffic>) -> Traffic {
    t.values().fold(Traffic::default(), |a, b| a.add(*b))
}

fn ip(t: &Traffic) -> u64 {
    t.tx.ip_bytes + t.rx.ip_bytes
}

/// The ground truth of `truth` grouped as `by` groups it (names of process
/// groups from the stored facts; bytes from the script).
fn expected(by: Dimension, truth: &Truth, facts: &Facts) -> BTreeMap<GroupKey, Traffic> {
    let mut out: BTreeMap<GroupKey, Traffic> = BTreeMap::new();
    let mut put = |k: GroupKey, t: Traffic| {
        if !t.is_zero() {
            let e = out.entry(k).or_default();
            *e = e.add(t);
        }
    };
    let overflow = truth
        .per_process
        .get(&OVERFLOW)
        .copied()
        .unwrap_or_default();
    match by {
        Dimension::Remote | Dimension::Port | Dimension::Protocol => {
            for ((_, addr, port, proto), t) in &truth.per_remote {
                let k = match by {
                    Dimension::Remote => GroupKey::Remote(*addr),
                    Dimension::Port => GroupKey::Port {
                        protocol: *proto,
                        port: *port,
                    },
                    _ => GroupKey::Protocol(*proto),
                };
                put(k, *t);
            }
            put(GroupKey::NoEndpoint, overflow);
        }
        Dimension::Interface => {
            for (i, t) in &truth.per_iface {
                put(GroupKey::Interface(*i), *t);
            }
            put(GroupKey::NoEndpoint, overflow);
        }
        Dimension::Class => {
            for (c, t) in &truth.per_class {
                put(GroupKey::Class(*c), *t);
            }
        }
        _ => {
            for (id, t) in &truth.per_process {
                let g = facts.get(*id).group(by).expect("a process dimension");
                put(g, *t);
            }
        }
    }
    out
}

/// The script drained into a fresh store, tick by tick: the script, the
/// store, its facts, and the directory that holds it.
fn drained() -> (Script, Store, Facts, tempfile::TempDir) {
    let script = script();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let mut drain = Drain::new(&mut store).expect("drain starts");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    for k in 0..=LAST + 2 {
        source.set_tick(k);
        drain
            .step(&mut source, &mut resolver, &mut store, at(k), Vec::new())
            .expect("step commits");
    }
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    (script, store, facts, dir)
}

#[test]
fn every_grouping_answers_the_asked_window_or_says_it_does_not() {
    let (script, mut store, facts, _dir) = drained();
    let dims = [
        Dimension::Process,
        Dimension::App,
        Dimension::User,
        Dimension::Cgroup,
        Dimension::Container,
        Dimension::Remote,
        Dimension::Port,
        Dimension::Interface,
        Dimension::Protocol,
        Dimension::Class,
    ];
    let mut rng = fastrand::Rng::with_seed(10);
    let (mut exact_cut, mut flagged) = (0, 0);
    for round in 0..120 {
        // Mostly windows of minutes to a few hours, cut anywhere.
        let a = rng.u64(BASE - 3_600_000..at(LAST));
        let len = if round % 4 == 0 {
            rng.u64(0..30 * 3_600_000)
        } else {
            rng.u64(0..3 * 3_600_000)
        };
        let b = a + len;
        let window = a..b;
        let truth = truth_of(&script, &window);
        let ask = |store: &mut Store, by| {
            usage(
                store,
                &facts,
                &UsageQuery {
                    range: window.clone(),
                    by,
                    filters: Vec::new(),
                    class: None,
                    limit: None,
                },
            )
            .expect("usage")
        };
        let by_process = ask(&mut store, Dimension::Process);
        assert!(
            by_process.coverage.exact(),
            "process rows resolve any window"
        );
        assert_eq!(by_process.total, truth.total(), "window {window:?}");
        for by in dims {
            let answer = ask(&mut store, by);
            let got: BTreeMap<GroupKey, Traffic> = answer
                .groups
                .iter()
                .map(|g| (g.key.clone(), g.traffic))
                .collect();
            assert_eq!(sum(&got), answer.total, "--by {by:?}: groups add up");
            if answer.coverage.exact() {
                assert_eq!(
                    got,
                    expected(by, &truth, &facts),
                    "--by {by:?} over {window:?} claims to be exact"
                );
                assert_eq!(
                    answer.total, by_process.total,
                    "--by {by:?}: one window, one total"
                );
                let hour = 3_600_000;
                if by.needs_remote()
                    && !a.is_multiple_of(hour)
                    && len > 0
                    && !truth.per_remote.is_empty()
                {
                    exact_cut += 1;
                }
            } else {
                flagged += 1;
                let covered = answer.coverage.covered.clone().expect("covered");
                assert!(
                    covered.start <= a && covered.end >= b && covered != window,
                    "--by {by:?}: not exact, so it covers more than {window:?}: {covered:?}"
                );
                assert!(by.needs_remote(), "only remote-keyed rows are ever widened");
                let wide = truth_of(&script, &covered).total();
                assert!(
                    ip(&truth.total()) <= ip(&answer.total) && ip(&answer.total) <= ip(&wide),
                    "--by {by:?}: between the window's truth and the covered time's"
                );
            }
        }
    }
    assert!(
        exact_cut > 20,
        "windows cutting hours were resolved exactly ({exact_cut})"
    );
    assert!(flagged > 0, "ambiguous edges were flagged ({flagged})");
}

/// Filters over remote-keyed rows obey the same rule: `--filter remote=X`
/// over a window is X's truth in that window, or says it is not.
#[test]
fn a_remote_filter_answers_the_window_or_says_it_does_not() {
    let (script, mut store, facts, _dir) = drained();
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut exact, mut flagged) = (0, 0);
    for _ in 0..60 {
        let a = rng.u64(BASE..at(LAST));
        let b = a + rng.u64(0..4 * 3_600_000);
        let truth = truth_of(&script, &(a..b));
        for remote in ["93.184.216.34", "203.0.113.2", "1.1.1.1"] {
            let addr: IpAddr = remote.parse().expect("addr");
            let answer = usage(
                &mut store,
                &facts,
                &UsageQuery {
                    range: a..b,
                    by: Dimension::Class,
                    filters: vec![format!("remote={remote}").parse().expect("filter")],
                    class: None,
                    limit: None,
                },
            )
            .expect("usage");
            let want = truth
                .per_remote
                .iter()
                .filter(|((_, r, _, _), _)| *r == addr)
                .fold(Traffic::default(), |s, (_, t)| s.add(*t));
            if answer.coverage.exact() {
                exact += 1;
                assert_eq!(answer.total, want, "remote={remote} over {a}..{b}");
            } else {
                flagged += 1;
                assert!(ip(&answer.total) >= ip(&want));
            }
        }
    }
    assert!(exact > 60, "most filtered windows are exact ({exact})");
    assert!(flagged > 0, "some were not ({flagged})");
}

/// `history` obeys the same rule, step by step: the points of a series sum
/// to the window's truth when it says it is exact, whatever the step and
/// wherever the window is cut; a step with nothing stored is a gap.
#[test]
fn series_points_hold_the_window_and_nothing_else() {
    use netmon::query::series::{SeriesQuery, series};
    let (script, mut store, facts, _dir) = drained();
    let mut rng = fastrand::Rng::with_seed(5);
    let steps = [60_000, 300_000, 3_600_000, 7_200_000, 86_400_000];
    let mut exact_remote = 0;
    for round in 0..60 {
        let a = rng.u64(BASE - 3_600_000..at(LAST + 20));
        let b = a + rng.u64(0..20 * 3_600_000);
        let truth = truth_of(&script, &(a..b));
        let remote = round % 3 == 0;
        let step = if remote {
            3_600_000
        } else {
            steps[rng.usize(..steps.len())]
        };
        let filters = if remote {
            vec!["remote=203.0.113.1".parse().expect("filter")]
        } else {
            Vec::new()
        };
        let s = series(
            &mut store,
            &facts,
            &SeriesQuery {
                range: a..b,
                step_ms: Some(step),
                filters,
                class: None,
                now_ms: at(LAST + 2),
            },
        )
        .expect("series");
        let sum = s
            .points
            .iter()
            .filter_map(|p| p.traffic)
            .fold(Traffic::default(), Traffic::add);
        assert_eq!(sum, s.total);
        assert!(
            s.points
                .iter()
                .all(|p| p.traffic.is_none_or(|t| !t.is_zero()))
        );
        let span: u64 = s.points.iter().map(|p| p.span_ms).sum();
        assert_eq!(
            span,
            b.min(at(LAST + 2)).saturating_sub(a),
            "spans add up to the window"
        );
        let want = if remote {
            let addr: IpAddr = "203.0.113.1".parse().expect("addr");
            truth
                .per_remote
                .iter()
                .filter(|((_, r, _, _), _)| *r == addr)
                .fold(Traffic::default(), |s, (_, t)| s.add(*t))
        } else {
            truth.total()
        };
        if s.coverage.exact() {
            exact_remote += usize::from(remote);
            assert_eq!(s.total, want, "{a}..{b} step {step} remote {remote}");
        } else {
            assert!(remote, "process rows resolve any window");
            assert!(ip(&s.total) >= ip(&want));
        }
    }
    assert!(exact_remote > 5, "remote series resolved ({exact_remote})");
}
