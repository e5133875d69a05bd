//! Server names, registered domains and services (`--by server_name`,
//! `--by domain`, `--by service` and their filters), to the byte against
//! the simulation's own ground truth: the script says which name each flow
//! was opened to; the domains and services expected here are written by
//! hand, not computed by netmon.
//!
//! What is checked:
//! - random windows: every name group equals the script's bytes for the
//!   name, unnamed traffic is its own group, and the groups add up to the
//!   per process total (per name + unnamed = per remote, to the byte);
//! - flows whose first readings carry only handshake bytes (no payload,
//!   no name yet) are counted under their name entirely;
//! - two names on one address split that address's bytes exactly;
//! - a restarted drain keeps the names of the flows it reloads;
//! - a name reported after the flow's first payload (a source breaking
//!   its contract) is ignored: the flow stays unnamed, its bytes exact;
//! - `[names] enabled = false` stores no name;
//! - an edited services catalogue re-classifies the history.
use std::collections::BTreeMap;
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::query::AppRules;
use netmon::query::domains::{Catalogue, set_catalogue};
use netmon::query::export::export_remote;
use netmon::query::facts::Facts;
use netmon::query::terms::{Dimension, FilterTerm, GroupKey};
use netmon::query::usage::{UsageAnswer, UsageQuery, usage};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, Truth, per_tick};
use netmon::source::{CounterSource, NameSource, Reading, SourceError};
use netmon::store::{OVERFLOW, Retention, Store, TimeMs, Traffic};

/// 2024-03-09T23:13:20Z: not aligned to any bucket.
const BASE: TimeMs = 1_710_026_000_000;
/// One tick: five minutes (drains a minute or more apart: exact answers).
const STEP: TimeMs = 5 * 60_000;
const LAST: u64 = 300;

const fn at(tick: u64) -> TimeMs {
    BASE + tick * STEP
}

/// Each name of the script with its registered domain and service, as a
/// person reads them (the Public Suffix List; the built-in catalogue).
const NAMES: [(&str, &str, Option<&str>); 7] = [
    ("www.example.com", "example.com", None),
    ("static.example.com", "example.com", None),
    ("www.netflix.com", "netflix.com", Some("Netflix")),
    ("rr1.googlevideo.com", "googlevideo.com", Some("YouTube")),
    ("api.github.com", "github.com", Some("GitHub")),
    ("deb.debian.org", "debian.org", Some("Debian mirrors")),
    ("news.bbc.co.uk", "bbc.co.uk", None),
];

fn script() -> Script {
    let mut b = ScriptBuilder::new(1000);
    let browser = b.process(10, 100, "browser", 0..=u64::MAX);
    let resolver = b.process(11, 110, "resolved", 0..=u64::MAX);
    // Two names on one address (a CDN): the handshake ticks come first.
    b.socket(1, Some(browser), None)
        .flow(
            1,
            "93.184.216.34:443",
            0..=LAST,
            per_tick(4, 1500),
            per_tick(9, 9000),
        )
        .name("www.example.com", NameSource::Sni, 2);
    b.socket(2, Some(browser), None)
        .flow(
            2,
            "93.184.216.34:443",
            10..=250,
            per_tick(2, 700),
            per_tick(3, 3000),
        )
        .name("static.example.com", NameSource::Sni, 1);
    b.socket(3, Some(browser), Some(261))
        .flow(
            3,
            "151.101.1.69:443",
            40..=260,
            per_tick(2, 300),
            per_tick(8, 11_000),
        )
        .name("www.netflix.com", NameSource::Quic, 0);
    b.socket(4, Some(browser), None)
        .flow(
            4,
            "142.250.0.1:443",
            100..=LAST,
            per_tick(1, 90),
            per_tick(5, 7000),
        )
        .name("rr1.googlevideo.com", NameSource::Dns, 1);
    b.socket(5, Some(browser), None)
        .flow(
            5,
            "212.58.244.1:80",
            0..=LAST,
            per_tick(1, 200),
            per_tick(1, 900),
        )
        .name("news.bbc.co.uk", NameSource::Host, 0);
    // Resolver traffic has no name.
    b.socket(6, Some(resolver), None)
        .flow(6, "1.1.1.1:53", 0..=LAST, per_tick(1, 60), per_tick(1, 120))
        .flow(
            6,
            "127.0.0.53:53",
            0..=LAST,
            per_tick(2, 40),
            per_tick(2, 40),
        );
    // Short processes: half of them named, some with a handshake tick.
    let mut cookie = 10;
    for i in 0..30u64 {
        let start = 9 * i + 3;
        let p = b.process(
            1000 + u32::try_from(i).expect("small"),
            7,
            "curl",
            start..=start + 5,
        );
        cookie += 1;
        b.socket(cookie, Some(p), Some(start + 5)).flow(
            cookie,
            &format!("140.82.112.{}:443", i % 3),
            start..=start + 2 + i % 3,
            per_tick(3, 300 + i),
            per_tick(5, 4000 + i),
        );
        if i % 2 == 0 {
            b.name("api.github.com", NameSource::Host, i % 4 / 2);
        }
    }
    // Nobody known owns it; it still has a name.
    cookie += 1;
    b.socket(cookie, None, Some(201))
        .flow(
            cookie,
            "151.101.2.132:80",
            150..=199,
            per_tick(1, 10),
            per_tick(1, 20),
        )
        .name("deb.debian.org", NameSource::Dns, 0);
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

/// The script's bytes grouped as `by` groups them.
fn expected(by: Dimension, truth: &Truth) -> BTreeMap<GroupKey, Traffic> {
    let mut out: BTreeMap<GroupKey, Traffic> = BTreeMap::new();
    let mut put = |k: GroupKey, t: Traffic| {
        if !t.is_zero() {
            let e = out.entry(k).or_default();
            *e = e.add(t);
        }
    };
    for ((_, name), t) in &truth.per_name {
        let row = name
            .as_deref()
            .map(|n| NAMES.iter().find(|r| r.0 == n).expect("a listed name"));
        let key = match by {
            Dimension::ServerName => GroupKey::ServerName(name.clone()),
            Dimension::Domain => GroupKey::Domain(row.map(|r| r.1.to_owned())),
            _ => GroupKey::Service(row.and_then(|r| r.2.map(str::to_owned))),
        };
        put(key, *t);
    }
    put(
        GroupKey::NoEndpoint,
        truth
            .per_process
            .get(&OVERFLOW)
            .copied()
            .unwrap_or_default(),
    );
    out
}

/// Drains `script` over `ticks` into `store` with a fresh drain.
fn drain_into<S: CounterSource>(
    script: &Script,
    store: &mut Store,
    source: &mut S,
    set_tick: impl Fn(&mut S, u64),
    ticks: std::ops::RangeInclusive<u64>,
    names: bool,
) {
    let mut drain = Drain::new(store).expect("drain starts");
    drain.set_names(names);
    let mut resolver = SimResolver::new(script);
    for k in ticks {
        set_tick(source, k);
        drain
            .step(source, &mut resolver, store, at(k), Vec::new())
            .expect("step commits");
    }
}

fn ask(
    store: &mut Store,
    facts: &Facts,
    window: &std::ops::Range<TimeMs>,
    by: Dimension,
    filters: &[&str],
) -> UsageAnswer {
    usage(
        store,
        facts,
        &UsageQuery {
            range: window.clone(),
            by,
            filters: filters
                .iter()
                .map(|f| f.parse::<FilterTerm>().expect("filter"))
                .collect(),
            class: None,
            limit: None,
        },
    )
    .expect("usage")
}

fn groups(a: &UsageAnswer) -> BTreeMap<GroupKey, Traffic> {
    a.groups
        .iter()
        .map(|g| (g.key.clone(), g.traffic))
        .collect()
}

fn sum<'a>(t: impl IntoIterator<Item = &'a Traffic>) -> Traffic {
    t.into_iter().fold(Traffic::default(), |a, b| a.add(*b))
}

fn sim_tick(s: &mut SimSource, k: u64) {
    s.set_tick(k);
}

#[test]
fn names_domains_and_services_are_exact_over_random_windows() {
    let script = script();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let mut source = SimSource::new(Arc::new(script.clone()));
    // A restart half-way: the second drain reloads the flows' names.
    drain_into(
        &script,
        &mut store,
        &mut source,
        sim_tick,
        0..=LAST / 2,
        true,
    );
    drain_into(
        &script,
        &mut store,
        &mut source,
        sim_tick,
        LAST / 2 + 1..=LAST + 2,
        true,
    );
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");

    let mut rng = fastrand::Rng::with_seed(15);
    for round in 0..60 {
        let window = if round == 0 {
            0..u64::MAX / 2
        } else {
            let a = rng.u64(BASE - 3_600_000..at(LAST));
            a..a + rng.u64(0..if round % 4 == 0 { 30 } else { 3 } * 3_600_000)
        };
        let truth = truth_of(&script, &window);
        let by_process = ask(&mut store, &facts, &window, Dimension::Process, &[]);
        let by_remote = ask(&mut store, &facts, &window, Dimension::Remote, &[]);
        assert_eq!(by_process.total, truth.total(), "window {window:?}");
        for by in [Dimension::ServerName, Dimension::Domain, Dimension::Service] {
            let answer = ask(&mut store, &facts, &window, by, &[]);
            assert!(answer.coverage.exact(), "--by {by:?} over {window:?}");
            let got = groups(&answer);
            assert_eq!(got, expected(by, &truth), "--by {by:?} over {window:?}");
            assert_eq!(sum(got.values()), answer.total);
            assert_eq!(
                answer.total, by_remote.total,
                "--by {by:?}: same total as --by remote"
            );
            assert_eq!(answer.total, by_process.total);
        }
        // Filters: a domain (suffix), a name, a service.
        let domain = ask(
            &mut store,
            &facts,
            &window,
            Dimension::Remote,
            &["domain=example.com"],
        );
        let want = sum(truth
            .per_name
            .iter()
            .filter(|((_, n), _)| n.as_deref().is_some_and(|n| n.ends_with("example.com")))
            .map(|(_, t)| t));
        assert_eq!(domain.total, want, "domain=example.com over {window:?}");
        let name = ask(
            &mut store,
            &facts,
            &window,
            Dimension::Process,
            &["server_name=WWW.example.com"],
        );
        let want = sum(truth
            .per_name
            .iter()
            .filter(|((_, n), _)| n.as_deref() == Some("www.example.com"))
            .map(|(_, t)| t));
        assert_eq!(name.total, want, "server_name= over {window:?}");
        let yt = ask(
            &mut store,
            &facts,
            &window,
            Dimension::Domain,
            &["service=youtube"],
        );
        let want = sum(truth
            .per_name
            .iter()
            .filter(|((_, n), _)| n.as_deref() == Some("rr1.googlevideo.com"))
            .map(|(_, t)| t));
        assert_eq!(yt.total, want, "service=youtube over {window:?}");
    }

    // Two names on one address: that address's bytes split exactly.
    let all = 0..u64::MAX / 2;
    let truth = script.truth(0..=u64::MAX);
    let cdn = ask(
        &mut store,
        &facts,
        &all,
        Dimension::ServerName,
        &["remote=93.184.216.34"],
    );
    let got = groups(&cdn);
    assert_eq!(got.len(), 2, "{got:?}");
    for n in ["www.example.com", "static.example.com"] {
        let want = sum(truth
            .per_name
            .iter()
            .filter(|((_, x), _)| x.as_deref() == Some(n))
            .map(|(_, t)| t));
        assert_eq!(
            got.get(&GroupKey::ServerName(Some(n.to_owned()))),
            Some(&want),
            "{n}"
        );
    }

    // An edited catalogue re-classifies the history at once.
    let text = "[[service]]\nname = \"Example CDN\"\ndomains = [\"example.com\"]\n";
    set_catalogue(
        Catalogue::with_overrides(text, std::path::Path::new("services.toml")).expect("parses"),
    );
    let answer = ask(&mut store, &facts, &all, Dimension::Service, &[]);
    set_catalogue(Catalogue::builtin());
    let want = sum(truth
        .per_name
        .iter()
        .filter(|((_, n), _)| n.as_deref().is_some_and(|n| n.ends_with("example.com")))
        .map(|(_, t)| t));
    assert_eq!(
        groups(&answer).get(&GroupKey::Service(Some("Example CDN".to_owned()))),
        Some(&want)
    );
}

/// Passes a [`SimSource`]'s readings on with every name one reading late,
/// so each name arrives after its flow's first payload.
struct LateNames {
    sim: SimSource,
    held: Reading,
}

impl CounterSource for LateNames {
    fn read(&mut self) -> Result<Reading, SourceError> {
        let mut r = self.sim.read()?;
        let now = std::mem::take(&mut r.names);
        r.names = std::mem::replace(&mut self.held.names, now);
        Ok(r)
    }
    fn retire(
        &mut self,
        keys: &[netmon_common::FlowKey],
    ) -> Result<Vec<(netmon_common::FlowKey, netmon_common::FlowValue)>, SourceError> {
        self.sim.retire(keys)
    }
    fn forget_closed(&mut self, cookies: &[u64]) -> Result<(), SourceError> {
        self.sim.forget_closed(cookies)
    }
}

#[test]
fn names_after_the_first_payload_are_ignored_and_disabled_names_store_nothing() {
    let mut b = ScriptBuilder::new(1000);
    let p = b.process(10, 100, "app", 0..=u64::MAX);
    b.socket(1, Some(p), None)
        .flow(
            1,
            "93.184.216.34:443",
            0..=40,
            per_tick(2, 500),
            per_tick(3, 900),
        )
        .name("www.example.com", NameSource::Sni, 0);
    b.socket(2, Some(p), None)
        .flow(
            2,
            "93.184.216.35:443",
            5..=40,
            per_tick(2, 500),
            per_tick(3, 900),
        )
        .name("static.example.com", NameSource::Sni, 2);
    let script = b.build().expect("valid");
    let truth = script.truth(0..=u64::MAX);
    let unnamed = |t: &Truth| sum(t.per_name.values());

    // Late names: each name comes a reading after its flow's first
    // payload, so every flow was decided unnamed.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("opens");
    let mut late = LateNames {
        sim: SimSource::new(Arc::new(script.clone())),
        held: Reading::default(),
    };
    drain_into(
        &script,
        &mut store,
        &mut late,
        |s: &mut LateNames, k| s.sim.set_tick(k),
        0..=42,
        true,
    );
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    let all = 0..u64::MAX / 2;
    let got = groups(&ask(&mut store, &facts, &all, Dimension::ServerName, &[]));
    assert_eq!(
        got,
        BTreeMap::from([(GroupKey::ServerName(None), unnamed(&truth))])
    );

    // `[names] enabled = false`: no name stored, every byte unnamed.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("opens");
    let mut source = SimSource::new(Arc::new(script.clone()));
    drain_into(&script, &mut store, &mut source, sim_tick, 0..=42, false);
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    let got = groups(&ask(&mut store, &facts, &all, Dimension::ServerName, &[]));
    assert_eq!(
        got,
        BTreeMap::from([(GroupKey::ServerName(None), unnamed(&truth))])
    );
    assert!(
        store.flow_names().expect("reads").is_empty(),
        "no name kept"
    );
}

/// Names turned off on a restart: what was flushed named stays named (its
/// retention), everything after, and the pieces still pending at the
/// restart, is unnamed, and no flow name is kept.
#[test]
fn names_turned_off_at_a_restart_stop_at_once() {
    let script = script();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let half = LAST / 2;
    drain_into(&script, &mut store, &mut source, sim_tick, 0..=half, true);
    assert!(!store.flow_names().expect("reads").is_empty());
    drain_into(
        &script,
        &mut store,
        &mut source,
        sim_tick,
        half + 1..=LAST + 2,
        false,
    );
    assert!(
        store.flow_names().expect("reads").is_empty(),
        "no name kept"
    );
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    let got = groups(&ask(
        &mut store,
        &facts,
        &(0..u64::MAX / 2),
        Dimension::ServerName,
        &[],
    ));
    // Ticks before `half` were flushed named (drains five minutes apart
    // flush every finished minute at the next step); tick `half` was still
    // pending when names went off.
    let before = script.truth(0..=half - 1);
    let all = script.truth(0..=u64::MAX);
    let mut want = expected(Dimension::ServerName, &before);
    want.remove(&GroupKey::NoEndpoint);
    want.remove(&GroupKey::ServerName(None));
    let named = sum(want.values());
    let overflow = all.per_process.get(&OVERFLOW).copied().unwrap_or_default();
    let rest = all
        .total()
        .checked_sub(named.add(overflow))
        .expect("named is part of the total");
    want.insert(GroupKey::ServerName(None), rest);
    want.insert(GroupKey::NoEndpoint, overflow);
    assert_eq!(got, want);
}

/// `netmon export --remote`: every remote row carries the server name its
/// flows were opened to, with the registered domain and service a person
/// reads for it (the `NAMES` table); over the whole history the rows
/// summed per name equal the script's bytes per name, to the byte, and
/// over random whole-minute windows they equal `usage --by server_name`'s
/// groups.
#[test]
fn export_remote_rows_carry_names_domains_and_services() {
    let script = script();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let mut source = SimSource::new(Arc::new(script.clone()));
    drain_into(
        &script,
        &mut store,
        &mut source,
        sim_tick,
        0..=LAST + 2,
        true,
    );
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    let mut rng = fastrand::Rng::with_seed(16);
    for round in 0..20 {
        let window = if round == 0 {
            0..u64::MAX / 2
        } else {
            // Whole minutes: export rows are whole buckets (a window
            // edge inside a minute reads that minute's row whole).
            let a = rng.u64(BASE - 3_600_000..at(LAST)) / 60_000 * 60_000;
            a..a + rng.u64(0..3 * 60) * 60_000
        };
        let truth = truth_of(&script, &window);
        let mut want: BTreeMap<Option<String>, Traffic> = BTreeMap::new();
        for ((_, name), t) in &truth.per_name {
            if !t.is_zero() {
                let e = want.entry(name.clone()).or_default();
                *e = e.add(*t);
            }
        }
        let rows = export_remote(&mut store, &facts, &window, &[], None).expect("export");
        let mut got: BTreeMap<Option<String>, Traffic> = BTreeMap::new();
        for r in &rows {
            let n = r.names.as_ref().expect("remote rows carry names");
            let listed = n
                .server_name
                .as_deref()
                .map(|s| NAMES.iter().find(|r| r.0 == s).expect("a listed name"));
            assert_eq!(n.domain.as_deref(), listed.map(|l| l.1), "{n:?}");
            assert_eq!(n.service.as_deref(), listed.and_then(|l| l.2), "{n:?}");
            let e = got.entry(n.server_name.clone()).or_default();
            *e = e.add(r.row.traffic);
        }
        got.retain(|_, t| !t.is_zero());
        if round == 0 {
            // The whole history: the script's own bytes per name.
            assert_eq!(got, want, "export --remote per name, whole history");
        }
        // Any window: the same rows `usage --by server_name` reads.
        let by_name: BTreeMap<Option<String>, Traffic> = groups(&ask(
            &mut store,
            &facts,
            &window,
            Dimension::ServerName,
            &[],
        ))
        .into_iter()
        .filter_map(|(k, t)| match k {
            GroupKey::ServerName(n) => Some((n, t)),
            _ => None,
        })
        .collect();
        assert_eq!(got, by_name, "export --remote per name over {window:?}");
        // A name filter keeps exactly that name's rows.
        let netflix = export_remote(
            &mut store,
            &facts,
            &window,
            &["service=Netflix".parse::<FilterTerm>().expect("filter")],
            None,
        )
        .expect("export");
        assert_eq!(
            sum(netflix.iter().map(|r| &r.row.traffic)),
            got.get(&Some("www.netflix.com".to_owned()))
                .copied()
                .unwrap_or_default(),
            "service=Netflix over {window:?}"
        );
    }
}
