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

/// The groups of `netmon usage --by BY` over `range`, keyed by `key`
/// (which panics on a group it does not expect).
fn groups_by<K: Ord>(
    store: &mut Store,
    range: &TimeRange,
    by: Dimension,
    key: impl Fn(GroupKey) -> K,
) -> BTreeMap<K, Traffic> {
    usage_by(store, range, by, None)
        .groups
        .into_iter()
        .map(|g| (key(g.key), g.traffic))
        .collect()
}

/// Totals per process (`--by process`), as `Truth::per_process`.
pub fn by_process(store: &mut Store, range: &TimeRange) -> BTreeMap<ProcessId, Traffic> {
    groups_by(store, range, Dimension::Process, |k| match k {
        GroupKey::Process(id) => id,
        k => panic!("unexpected group {k:?}"),
    })
}

/// Totals per destination class (`--by class`), as `Truth::per_class`.
pub fn by_class(store: &mut Store, range: &TimeRange) -> BTreeMap<DestClass, Traffic> {
    groups_by(store, range, Dimension::Class, |k| match k {
        GroupKey::Class(c) => c,
        k => panic!("unexpected group {k:?}"),
    })
}

/// Totals per interface (`--by interface`), as `Truth::per_iface`, and the
/// traffic without an interface (overflow, its own group in the answer).
pub fn by_interface(
    store: &mut Store,
    range: &TimeRange,
) -> (BTreeMap<u32, Traffic>, Option<Traffic>) {
    let mut per = groups_by(store, range, Dimension::Interface, |k| match k {
        GroupKey::Interface(i) => Some(i),
        GroupKey::NoEndpoint => None,
        k => panic!("unexpected group {k:?}"),
    });
    let no_iface = per.remove(&None);
    let per = per.into_iter().filter_map(|(i, t)| Some((i?, t))).collect();
    (per, no_iface)
}

/// Every remote row of `range` as the remote answers read them
/// ([`netmon::query::edges::remote_totals`]), per key.
pub fn remote_rows(store: &mut Store, range: &TimeRange) -> BTreeMap<RemoteKey, Traffic> {
    netmon::query::edges::remote_totals(store, range)
        .expect("remote rows read")
        .0
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
