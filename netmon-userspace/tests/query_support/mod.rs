//! Shared by the history, crash and store-file tests: the product's query
//! code (the functions `netmon usage`, the socket API and the dashboard
//! call: [`netmon::query::usage::usage`], [`netmon::query::edges`],
//! [`netmon::query::scan`]) with its answers keyed the way the simulated
//! ground truth ([`netmon::source::sim::Truth`]) is, so these tests check the
//! read path users run, not a second one.
#![allow(dead_code, reason = "each test file uses a part")]

use std::collections::BTreeMap;
use std::net::IpAddr;

use netmon::model::{DestClass, ProcessId, TimeRange, Traffic, raw_to_ip};
use netmon::query::scan::Subject;
use netmon::query::usage::{UsageAnswer, UsageQuery, usage};
use netmon::query::{AppRules, Dimension, Facts, GroupKey};
use netmon::store::{ConnDir, RemoteKey, Store};

/// `netmon usage --by BY [--class CLASS]` over `range`, no other filter, no
/// limit, default app rules.
pub fn usage_by(
    store: &mut Store,
    range: &TimeRange,
    by: Dimension,
    class: Option<DestClass>,
) -> UsageAnswer {
    let facts = Facts::load(store, &AppRules::default()).expect("process records load");
    usage(
        store,
        &facts,
        &UsageQuery {
            range: range.clone(),
            by,
            filters: Vec::new(),
            class,
            limit: None,
        },
    )
    .expect("usage answers")
}

/// Totals per process (`--by process`), as `Truth::per_process`.
pub fn by_process(store: &mut Store, range: &TimeRange) -> BTreeMap<ProcessId, Traffic> {
    usage_by(store, range, Dimension::Process, None)
        .groups
        .into_iter()
        .map(|g| match g.key {
            GroupKey::Process(id) => (id, g.traffic),
            k => panic!("unexpected group {k:?}"),
        })
        .collect()
}

/// Totals per destination class (`--by class`), as `Truth::per_class`.
pub fn by_class(store: &mut Store, range: &TimeRange) -> BTreeMap<DestClass, Traffic> {
    usage_by(store, range, Dimension::Class, None)
        .groups
        .into_iter()
        .map(|g| match g.key {
            GroupKey::Class(c) => (c, g.traffic),
            k => panic!("unexpected group {k:?}"),
        })
        .collect()
}

/// Totals per interface (`--by interface`), as `Truth::per_iface`, and the
/// traffic without an interface (overflow, its own group in the answer).
pub fn by_interface(
    store: &mut Store,
    range: &TimeRange,
) -> (BTreeMap<u32, Traffic>, Option<Traffic>) {
    let mut no_iface = None;
    let per = usage_by(store, range, Dimension::Interface, None)
        .groups
        .into_iter()
        .filter_map(|g| match g.key {
            GroupKey::Interface(i) => Some((i, g.traffic)),
            GroupKey::NoEndpoint => {
                no_iface = Some(g.traffic);
                None
            }
            k => panic!("unexpected group {k:?}"),
        })
        .collect();
    (per, no_iface)
}

/// Every remote row of `range` as the remote answers read it
/// ([`netmon::query::edges::remote_rows`]: rollups plus the snapshot's
/// pending pieces, edges resolved to the window), per key.
pub fn remote_rows(store: &mut Store, range: &TimeRange) -> BTreeMap<RemoteKey, Traffic> {
    let mut out: BTreeMap<RemoteKey, Traffic> = BTreeMap::new();
    netmon::query::edges::remote_rows(
        store,
        range,
        false,
        |_| true,
        |row| {
            if let Subject::Remote(k) = row.subject {
                let e = out.entry(k).or_default();
                *e = e.add(row.traffic);
            }
        },
    )
    .expect("remote rows read");
    out
}

/// Remote totals keyed as `Truth::per_service`.
pub fn by_service(
    store: &mut Store,
    range: &TimeRange,
) -> BTreeMap<(ProcessId, IpAddr, u16, ConnDir, u8), Traffic> {
    let mut out: BTreeMap<_, Traffic> = BTreeMap::new();
    for (k, t) in remote_rows(store, range) {
        let e = out
            .entry((
                k.process,
                raw_to_ip(&k.addr, k.ip_version),
                k.port,
                k.dir,
                k.protocol,
            ))
            .or_default();
        *e = e.add(t);
    }
    out
}

/// Remote totals keyed as `Truth::per_remote` (directions summed).
pub fn by_remote(
    store: &mut Store,
    range: &TimeRange,
) -> BTreeMap<(ProcessId, IpAddr, u16, u8), Traffic> {
    let mut out: BTreeMap<_, Traffic> = BTreeMap::new();
    for (k, t) in remote_rows(store, range) {
        let e = out
            .entry((
                k.process,
                raw_to_ip(&k.addr, k.ip_version),
                k.port,
                k.protocol,
            ))
            .or_default();
        *e = e.add(t);
    }
    out
}
