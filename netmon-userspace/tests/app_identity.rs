//! One program is one app (issue 10): `--by app` once split `python3.11`
//! into `python3` (short-lived processes whose exe was unknown fell back to
//! `comm`) and `python3.11` (processes whose exe `/proc` showed). The app is
//! now defined once — the config's rules, else the executable's file name —
//! and short-lived processes have their exe (recorded at exec).
//!
//! Simulated traffic through the real drain and store; the answers go
//! through the query layer every reader uses, and are compared with the
//! script's own ground truth.
use std::collections::BTreeMap;
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::model::ProcessId;
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::{Dimension, FilterKey, FilterTerm, GroupKey};
use netmon::query::usage::{UsageQuery, usage};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{Retention, Store, TimeMs, Traffic};

const BASE: TimeMs = 1_710_026_000_000;
const STEP: TimeMs = 1_000;
const LAST: u64 = 40;

struct Setup {
    script: Script,
    python: Vec<ProcessId>,
    curl: ProcessId,
    web: ProcessId,
}

/// Five python processes of one executable, started under different names
/// and living from 1 tick to the whole run, one with its file replaced;
/// `curl` whose exe is unknown; a server a rule names.
fn setup() -> Setup {
    let mut b = ScriptBuilder::new(STEP);
    let lives = [0..=u64::MAX, 3..=3, 5..=6, 10..=10, 12..=30];
    let python: Vec<ProcessId> = lives
        .iter()
        .enumerate()
        .map(|(i, life)| b.process(100 + i as u32, 1000 + i as u64, "python3", life.clone()))
        .collect();
    let curl = b.process(200, 2000, "curl", 7..=8);
    let web = b.process(300, 3000, "srv", 0..=u64::MAX);
    for (i, p) in python.iter().enumerate() {
        let i = i as u64;
        let (from, to) = match lives[i as usize].clone().into_inner() {
            (0, _) => (0, LAST),
            (a, z) => (a, z),
        };
        b.socket(10 + i, Some(*p), None).flow(
            10 + i,
            "93.184.216.34:443",
            from..=to,
            per_tick(1, 100 + i),
            per_tick(2, 1000 + i),
        );
    }
    b.socket(20, Some(curl), None).flow(
        20,
        "1.1.1.1:443",
        7..=8,
        per_tick(1, 77),
        per_tick(1, 777),
    );
    b.socket(30, Some(web), None).flow(
        30,
        "10.0.0.9:80",
        0..=LAST,
        per_tick(1, 50),
        per_tick(1, 60),
    );
    let mut script = b.build().expect("valid script");
    for p in &mut script.processes {
        match (p.pid, p.comm.as_str()) {
            (200, _) => p.exe = None,
            (300, _) => p.exe = Some("/opt/site/bin/srv".into()),
            // A thread of it named itself; the file was upgraded under one.
            (101, _) => {
                p.comm = "Socket Thread".into();
                p.exe = Some("/usr/bin/python3.11".into());
            }
            (103, _) => p.exe = Some("/usr/bin/python3.11 (deleted)".into()),
            _ => p.exe = Some("/usr/bin/python3.11".into()),
        }
    }
    Setup {
        script,
        python,
        curl,
        web,
    }
}

fn drained(script: &Script) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("h.redb"), Retention::default()).expect("store opens");
    let mut drain = Drain::new(&mut store).expect("drain starts");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(script);
    for k in 0..=LAST {
        source.set_tick(k);
        drain
            .step(
                &mut source,
                &mut resolver,
                &mut store,
                BASE + k * STEP,
                Vec::new(),
            )
            .expect("step commits");
    }
    (store, dir)
}

fn rules() -> AppRules {
    toml::from_str(
        r#"
        [[rule]]
        name = "website"
        exe = "/opt/site/"
        "#,
    )
    .expect("rules parse")
}

fn by(
    store: &mut Store,
    facts: &Facts,
    dim: Dimension,
    filters: Vec<FilterTerm>,
) -> BTreeMap<GroupKey, Traffic> {
    let q = UsageQuery {
        range: BASE..BASE + (LAST + 1) * STEP,
        by: dim,
        filters,
        class: None,
        limit: None,
    };
    usage(store, facts, &q)
        .expect("usage answers")
        .groups
        .into_iter()
        .map(|g| (g.key, g.traffic))
        .collect()
}

fn sum<'a>(t: impl IntoIterator<Item = &'a Traffic>) -> Traffic {
    t.into_iter().fold(Traffic::default(), |a, b| a.add(*b))
}

#[test]
fn one_program_is_one_app_however_long_its_processes_live() {
    let s = setup();
    let (mut store, _dir) = drained(&s.script);
    let facts = Facts::load(&mut store, &rules()).expect("facts load");
    let truth = s.script.truth(0..=LAST).per_process;
    let apps = by(&mut store, &facts, Dimension::App, Vec::new());

    let python_truth = sum(s.python.iter().map(|p| &truth[p]));
    let want: BTreeMap<GroupKey, Traffic> = [
        (GroupKey::App("python3.11".into()), python_truth),
        (GroupKey::App("curl".into()), truth[&s.curl]),
        (GroupKey::App("website".into()), truth[&s.web]),
    ]
    .into();
    assert_eq!(apps, want, "one row per program, exact");

    // The same definition behind filters and per process answers.
    let filtered = by(
        &mut store,
        &facts,
        Dimension::Process,
        vec![FilterTerm {
            key: FilterKey::App,
            value: "python3.11".into(),
        }],
    );
    let mut pids: Vec<ProcessId> = filtered
        .keys()
        .map(|k| match k {
            GroupKey::Process(id) => *id,
            other => panic!("not a process: {other:?}"),
        })
        .collect();
    pids.sort_unstable();
    assert_eq!(pids, s.python);
    assert_eq!(sum(filtered.values()), python_truth);
    for p in &s.python {
        assert_eq!(facts.get(*p).app, "python3.11", "{p:?}");
    }
    // Every byte in exactly one app: the sum over apps is the total by
    // process.
    let procs = by(&mut store, &facts, Dimension::Process, Vec::new());
    assert_eq!(sum(apps.values()), sum(procs.values()));
}
