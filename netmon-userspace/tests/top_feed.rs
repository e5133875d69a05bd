//! `netmon top` without a daemon reads the kernel counters through the
//! drain's seams (`CounterSource`, `Resolver`), so its feed runs here on the
//! simulated source: every row's totals since `top` started equal the
//! script's ground truth over the same ticks, to the byte, for process,
//! port and class groupings (the flow → group rules the history answers
//! use).
use std::collections::BTreeMap;
use std::sync::Arc;

use netmon::cli::top::{LiveFeed, Rates};
use netmon::model::{ConnDir, DestClass, ProcessId, Traffic};
use netmon::query::{AppRules, Dimension};
use netmon::source::sim::{Script, ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::wire::{Counters, TopRow};

const TICK_MS: u64 = 1000;
/// `top` starts at this tick, and reads again at [`LAST`].
const FIRST: u64 = 4;
const LAST: u64 = 90;

fn script() -> Script {
    let mut b = ScriptBuilder::new(TICK_MS);
    let curl = b.process(100, 5_000, "curl", 0..=u64::MAX);
    let sshd = b.process(22, 10, "sshd", 0..=u64::MAX);
    let dns = b.process(53, 11, "resolved", 0..=u64::MAX);
    b.socket(1, Some(curl), None).flow(
        1,
        "93.184.216.34:443",
        0..=60,
        per_tick(3, 1400),
        per_tick(9, 12_000),
    );
    // Starts after `top` did: counted whole.
    b.socket(2, Some(curl), None).flow(
        2,
        "93.184.216.35:443",
        20..=80,
        per_tick(2, 700),
        per_tick(5, 5000),
    );
    // Inbound: accepted on port 22 from an ephemeral port.
    b.accepted(3, Some(sshd), None, 99, 22).flow(
        3,
        "192.168.1.20:51000",
        0..=200,
        per_tick(1, 90),
        per_tick(1, 60),
    );
    b.socket(4, Some(dns), None)
        .flow(4, "1.1.1.1:53", 2..=70, per_tick(1, 40), per_tick(1, 120))
        .flow(4, "127.0.0.1:53", 0..=200, per_tick(1, 30), per_tick(1, 30));
    // Nobody known: `[unattributed]`.
    b.socket(5, None, None).flow(
        5,
        "10.1.2.3:9000",
        0..=200,
        per_tick(1, 10),
        per_tick(1, 20),
    );
    b.build().expect("valid script")
}

/// The rows of `top --by BY --source kernel` from tick [`FIRST`] to
/// [`LAST`] on the simulated source.
fn rows(script: &Script, by: Dimension) -> Vec<TopRow> {
    let mut source = SimSource::new(Arc::new(script.clone()));
    source.set_tick(FIRST);
    let mut feed = LiveFeed::new(source, SimResolver::new(script), AppRules::default(), by);
    let mut rates = Rates::new(feed.read(FIRST * TICK_MS).expect("first reading"));
    feed.source_mut().set_tick(LAST);
    let (dt, rows) = rates.step(feed.read(LAST * TICK_MS).expect("reading"));
    assert_eq!(dt, (LAST - FIRST) * TICK_MS);
    assert!(!rows.is_empty(), "top shows the traffic");
    rows
}

fn counters(t: Traffic) -> (Counters, Counters) {
    (t.tx.into(), t.rx.into())
}

#[test]
fn per_process_rows_equal_the_script() {
    let script = script();
    let truth = script.truth(FIRST + 1..=LAST).per_process;
    let got: BTreeMap<ProcessId, (Counters, Counters)> = rows(&script, Dimension::Process)
        .into_iter()
        .map(|r| {
            let id = ProcessId {
                pid: r.fields.pid.expect("pid"),
                start_ticks: r.fields.start_ticks.expect("start_ticks"),
            };
            (id, (r.tx, r.rx))
        })
        .collect();
    let want: BTreeMap<ProcessId, (Counters, Counters)> =
        truth.into_iter().map(|(id, t)| (id, counters(t))).collect();
    assert_eq!(got.len(), 4, "curl, sshd, resolved, [unattributed]");
    assert_eq!(got, want);
}

#[test]
fn per_port_rows_equal_the_script() {
    let script = script();
    let mut want: BTreeMap<(u16, String), Traffic> = BTreeMap::new();
    for ((_, _, port, dir, _), t) in script.truth(FIRST + 1..=LAST).per_service {
        let dir = match dir {
            ConnDir::In => "in",
            ConnDir::Out => "out",
            ConnDir::Unknown => "unknown",
        };
        let e = want.entry((port, dir.to_owned())).or_default();
        *e = e.add(t);
    }
    let got: BTreeMap<(u16, String), (Counters, Counters)> = rows(&script, Dimension::Port)
        .into_iter()
        .map(|r| {
            let port = r.fields.service_port.expect("service port");
            let dir = r.fields.direction.clone().expect("direction");
            ((port, dir), (r.tx, r.rx))
        })
        .collect();
    let want: BTreeMap<_, _> = want.into_iter().map(|(k, t)| (k, counters(t))).collect();
    assert!(
        want.contains_key(&(22, "in".to_owned())),
        "the script has an inbound service"
    );
    assert_eq!(got, want);
}

#[test]
fn per_class_rows_equal_the_script() {
    let script = script();
    let truth = script.truth(FIRST + 1..=LAST).per_class;
    let got: BTreeMap<String, (Counters, Counters)> = rows(&script, Dimension::Class)
        .into_iter()
        .map(|r| (r.fields.class.clone().expect("class"), (r.tx, r.rx)))
        .collect();
    let want: BTreeMap<String, (Counters, Counters)> = truth
        .into_iter()
        .map(|(c, t)| (c.name().to_owned(), counters(t)))
        .collect();
    for c in [DestClass::Internet, DestClass::Lan, DestClass::Loopback] {
        assert!(want.contains_key(c.name()), "the script reaches {c:?}");
    }
    assert_eq!(got, want);
}
