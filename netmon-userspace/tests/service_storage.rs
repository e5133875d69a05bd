//! Storage grows with services and peers, not with connections: per-remote
//! rollups used to be keyed by the remote port, so a server's inbound
//! connections (each from a new ephemeral port) were one row each, per
//! hour and per day. Keyed by (remote address, service port, direction),
//! six hours of a server accepting 2,000 connections an hour from four
//! clients are at most one row per client per minute, hour and day, and
//! the answers stay exact.
//!
//! Prints the database size and row counts (the figure the README's
//! retention section is about); asserts the row bounds and exactness.
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::query::AppRules;
use netmon::query::facts::Facts;
use netmon::query::terms::{Dimension, GroupKey};
use netmon::query::usage::{UsageQuery, usage};
use netmon::source::sim::{ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{ConnDir, Retention, Store, TimeMs, layout};
use redb::{ReadableDatabase as _, ReadableTableMetadata as _};

/// A UTC midnight.
const BASE: TimeMs = 1_710_028_800_000;
const MINUTE: TimeMs = 60_000;
const HOURS: u64 = 6;
const PER_HOUR: u64 = 2_000;
const CLIENTS: u64 = 4;

#[test]
fn a_busy_server_is_a_row_per_client_not_per_connection() {
    let ticks = HOURS * 60;
    let mut b = ScriptBuilder::new(MINUTE);
    let server = b.process(80, 8, "nginx", 0..=u64::MAX);
    let conns = HOURS * PER_HOUR;
    for c in 0..conns {
        // Spread over the minutes; each connection lives one tick.
        let t = c * ticks / conns;
        let cookie = c + 1;
        b.accepted(cookie, Some(server), Some(t + 1), 1_000_000, 443)
            .flow(
                cookie,
                &format!("192.0.2.{}:{}", 10 + c % CLIENTS, 32_768 + c % 28_000),
                t..=t,
                per_tick(12, 15_000),
                per_tick(8, 700),
            );
    }
    let script = b.build().expect("valid script");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.redb");
    let (mut store, _) = Store::open(&path, Retention::default()).expect("store opens");
    let mut drain = Drain::new(&mut store).expect("drain");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    for k in 0..=ticks + 2 {
        source.set_tick(k);
        drain
            .step(
                &mut source,
                &mut resolver,
                &mut store,
                BASE + k * MINUTE,
                Vec::new(),
            )
            .expect("step");
    }
    let facts = Facts::load(&mut store, &AppRules::default()).expect("facts");
    let truth = script.truth(0..=ticks + 2);
    let answer = usage(
        &mut store,
        &facts,
        &UsageQuery {
            range: BASE..BASE + (ticks + 3) * MINUTE,
            by: Dimension::Port,
            filters: Vec::new(),
            class: None,
            limit: None,
        },
    )
    .expect("usage");
    let keys: Vec<&GroupKey> = answer.groups.iter().map(|g| &g.key).collect();
    assert_eq!(
        keys,
        vec![&GroupKey::Port {
            protocol: 6,
            port: 443,
            dir: ConnDir::In
        }]
    );
    assert_eq!(answer.total, truth.total());
    drop(store);

    let size = std::fs::metadata(&path).expect("stat").len();
    let db = redb::Database::open(&path).expect("reopen");
    let txn = db.begin_read().expect("read");
    let rows = |def| txn.open_table(def).expect("table").len().expect("len");
    let (minute, hour, day) = (
        rows(layout::REMOTE_MINUTE),
        rows(layout::REMOTE_HOUR),
        rows(layout::REMOTE_DAY),
    );
    eprintln!(
        "{conns} connections from {CLIENTS} clients over {HOURS} h: remote rows minute {minute}, \
         hour {hour}, day {day}; database {size} bytes"
    );
    assert!(minute <= CLIENTS * (ticks + 1), "{minute} minute rows");
    assert!(hour <= CLIENTS * (HOURS + 1), "{hour} hour rows");
    assert!(day <= CLIENTS, "{day} day rows");
}
