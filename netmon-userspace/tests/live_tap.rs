//! The drain hands its committed readings to the live tap (the HTTP API's
//! "sockets now") only while someone asked within `TAP_KEEP_MS`: an idle
//! daemon keeps no second reading. A tapped reading holds every flow of
//! the step with the owner the drain attributed it to, and its sockets are
//! the script's, counted to the byte.
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::live::{TAP_KEEP_MS, Tap};
use netmon::model::ProcessId;
use netmon::query::sockets::process_sockets;
use netmon::source::sim::{ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{Retention, Store, TimeMs};

const BASE: TimeMs = 1_710_026_000_000;

#[test]
fn readings_are_tapped_only_while_wanted() {
    let mut b = ScriptBuilder::new(1000);
    let curl = b.process(10, 100, "curl", 0..=u64::MAX);
    b.socket(1, Some(curl), None).flow(
        1,
        "93.184.216.34:443",
        0..=4,
        per_tick(2, 1000),
        per_tick(1, 500),
    );
    b.socket(2, None, None)
        .flow(2, "10.0.0.9:53", 0..=4, per_tick(1, 60), per_tick(1, 90));
    let script = b.build().expect("valid script");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        Store::open(&dir.path().join("t.redb"), Retention::default()).expect("store opens");
    let mut drain = Drain::new(&mut store).expect("drain starts");
    let tap = Tap::default();
    drain.set_tap(tap.clone());
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    let mut step = |tick: u64| {
        source.set_tick(tick);
        drain
            .step(
                &mut source,
                &mut resolver,
                &mut store,
                BASE + tick * 1000,
                Vec::new(),
            )
            .expect("step commits");
    };

    step(0);
    assert!(tap.latest().is_none(), "nobody asked: nothing tapped");
    tap.want(BASE + 1000);
    step(1);
    step(4);
    let t = tap.latest().expect("tapped while wanted");
    assert_eq!(t.ts_ms, BASE + 4000);
    assert_eq!(t.reading.flows.len(), 2);
    let id = ProcessId {
        pid: 10,
        start_ticks: 100,
    };
    assert_eq!(t.owners.get(&1), Some(&id));
    assert_eq!(t.owners.get(&2), None, "the unowned socket has no owner");
    let doc = process_sockets(&t, id, 10);
    assert_eq!((doc.comm.as_str(), doc.sockets_total), ("curl", 1));
    let s = &doc.rows[0];
    assert_eq!(
        (
            s.remote_addr.to_string(),
            s.remote_port,
            s.protocol.as_str()
        ),
        ("93.184.216.34".to_owned(), 443, "tcp")
    );
    // Five ticks (0..=4) of the script's per tick counts.
    assert_eq!(
        (s.tx.payload_bytes, s.rx.payload_bytes),
        (5 * 1000, 5 * 500)
    );
    assert_eq!((s.tx.packets, s.rx.packets), (5 * 2, 5));

    // A minute after the last ask the drain stops tapping and drops it.
    source.set_tick(5);
    drain
        .step(
            &mut source,
            &mut resolver,
            &mut store,
            BASE + 1000 + TAP_KEEP_MS + 1,
            Vec::new(),
        )
        .expect("step commits");
    assert!(tap.latest().is_none(), "no longer wanted: dropped");
}
