//! Live group totals for `netmon top` without a daemon: one reading of the
//! kernel counters (any [`crate::source::CounterSource`]) with its owners
//! (any [`crate::ownership::Resolver`]), grouped by the rules the history
//! answers use ([`crate::query::facts`] for process dimensions,
//! [`endpoint_group`] for remote, port and protocol), so a live row and a
//! stored one of the same traffic fall in the same group.
use std::collections::HashMap;

use netmon_common::{FlowKey, FlowValue};

use crate::model::{ProcessId, Traffic, UNATTRIBUTED, classify_raw, service_of};
use crate::ownership::Owners;
use crate::query::AppRules;
use crate::query::facts::Facts;
use crate::query::terms::{Dimension, GroupKey};
use crate::query::usage::endpoint_group;
use crate::source::Reading;
use crate::store::{ProcessRecord, RemoteKey, unit_of_cgroup};

/// The remote key the drain would store a flow's traffic under: service
/// port and direction ([`service_of`]), destination class ([`classify_raw`]).
#[must_use]
pub fn flow_remote_key(owner: ProcessId, key: &FlowKey, value: &FlowValue) -> RemoteKey {
    let (dir, port) = service_of(key, value);
    RemoteKey {
        process: owner,
        addr: key.remote_addr,
        port,
        dir,
        ip_version: key.ip_version,
        protocol: key.protocol,
        class: classify_raw(&key.remote_addr, key.ip_version, value.ifindex),
        // top groups by process, app, remote, port, protocol or class.
        name: crate::store::names::NameId::NONE,
    }
}

/// Facts of a reading's owners (never stored, so no first or last seen).
#[must_use]
pub fn facts_of_owners(owners: &Owners, apps: &AppRules) -> Facts {
    let records = owners
        .values()
        .map(|info| ProcessRecord {
            unit: info.cgroup.as_deref().and_then(unit_of_cgroup),
            info: info.clone(),
            first_seen_ms: 0,
            last_seen_ms: 0,
        })
        .collect();
    Facts::from_records(records, apps)
}

/// The counters of every flow of `reading` (since each flow was created),
/// summed per group of `by`. A flow with no owner is [`UNATTRIBUTED`]'s.
#[must_use]
pub fn flow_groups(
    reading: &Reading,
    owners: &Owners,
    facts: &Facts,
    by: Dimension,
) -> HashMap<GroupKey, Traffic> {
    let mut out: HashMap<GroupKey, Traffic> = HashMap::new();
    let mut proc_group: HashMap<ProcessId, Option<GroupKey>> = HashMap::new();
    for flow in &reading.flows {
        let (k, v) = (&flow.key, &flow.value);
        let owner = owners.get(&k.cookie).map_or(UNATTRIBUTED, |o| o.id);
        let key = if by == Dimension::Interface {
            GroupKey::Interface(v.ifindex)
        } else {
            let pg = proc_group
                .entry(owner)
                .or_insert_with(|| facts.get(owner).group(by))
                .clone();
            endpoint_group(by, pg, &flow_remote_key(owner, k, v))
        };
        let e = out.entry(key).or_default();
        *e = e.add(Traffic::of(v));
    }
    out
}
