//! Totals over a window, grouped by a [`Dimension`] and filtered.
//!
//! Which rows are read depends on what is asked:
//! - process-level dimensions and filters (process, app, user, cgroup,
//!   container, class) read the per process rows, exact to the interval;
//! - remote, port and protocol need the per remote endpoint rollups (rows
//!   plus the snapshot's pending pieces, see [`crate::store::query`]), which
//!   exist at hour and day resolution: edge hours are resolved to the
//!   window with the per process rows where that is exact, and the answer's
//!   [`Coverage`] says where it is not ([`crate::query::edges`]). Overflow
//!   traffic has no endpoint: it is its own group (`[overflow]`) unless a
//!   remote, port or protocol filter leaves it out;
//! - interface reads the per interface rows, plus the overflow as its own
//!   group (it has no interface), so every grouping has the same total;
//!   these rows carry no process: process filters cannot apply and are
//!   refused.
use std::collections::HashMap;
use std::net::IpAddr;

use crate::ownership::ProcessId;
use crate::query::QueryError;
use crate::query::edges;
use crate::query::facts::Facts;
use crate::query::scan::{self, Kind, Subject};
use crate::query::terms::{
    Dimension, FilterKey, FilterTerm, GroupKey, parse_class, parse_port, protocol_number,
};
use crate::query::window::Coverage;
use crate::store::{DestClass, OVERFLOW, RemoteKey, Store, TimeRange, Traffic};

/// A `usage` question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// The window.
    pub range: TimeRange,
    /// Grouping.
    pub by: Dimension,
    /// `KEY=VALUE` filters, all must hold.
    pub filters: Vec<FilterTerm>,
    /// Only this destination class.
    pub class: Option<DestClass>,
    /// At most this many groups (the largest).
    pub limit: Option<usize>,
}

/// One group's total.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageGroup {
    /// The group.
    pub key: GroupKey,
    /// Its traffic.
    pub traffic: Traffic,
    /// Its share of the total IP bytes (both directions) of all groups, 0..1.
    pub share: f64,
}

/// The answer to a [`UsageQuery`].
#[derive(Clone, Debug, PartialEq)]
pub struct UsageAnswer {
    /// Groups, most IP bytes (tx + rx) first, at most `limit`.
    pub groups: Vec<UsageGroup>,
    /// Number of groups before `limit`.
    pub groups_total: usize,
    /// Sum over all groups (before `limit`).
    pub total: Traffic,
    /// The time the rows read really cover, and why it is wider than the
    /// window when it is.
    pub coverage: Coverage,
}

/// Total IP bytes of both directions: what answers sort by and shares use.
#[must_use]
pub const fn ip_total(t: &Traffic) -> u64 {
    t.tx.ip_bytes.saturating_add(t.rx.ip_bytes)
}

/// Which rows a question reads.
///
/// # Errors
/// [`QueryError::Invalid`] for combinations the stored rows cannot answer.
pub fn kind_for(by: Dimension, filters: &[FilterTerm]) -> Result<Kind, QueryError> {
    let iface = by == Dimension::Interface || filters.iter().any(|t| t.key == FilterKey::Interface);
    let remote = by.needs_remote() || filters.iter().any(|t| t.key.needs_remote());
    if iface {
        if remote
            || filters.iter().any(|t| t.key.is_process())
            || !matches!(by, Dimension::Interface | Dimension::Class)
        {
            return Err(QueryError::Invalid(
                "interface totals are kept per interface only: --by interface (or an interface filter) \
                 combines with class only"
                    .to_owned(),
            ));
        }
        return Ok(Kind::Interface);
    }
    Ok(if remote { Kind::Remote } else { Kind::Process })
}

/// The interface index a filter value names (index, or name looked up in
/// this network namespace now).
#[must_use]
pub fn interface_index(value: &str) -> Option<u32> {
    value.parse().ok().or_else(|| {
        std::fs::read_to_string(format!("/sys/class/net/{value}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// Row-level (non-process) filters, pre-parsed.
#[derive(Debug, Default)]
pub(crate) struct RowFilter {
    classes: Vec<DestClass>,
    remotes: Vec<IpAddr>,
    ports: Vec<(Option<u8>, u16)>,
    protocols: Vec<u8>,
    ifaces: Vec<Option<u32>>,
}

impl RowFilter {
    pub(crate) fn new(filters: &[FilterTerm], class: Option<DestClass>) -> Self {
        let mut f = Self {
            classes: class.into_iter().collect(),
            ..Self::default()
        };
        for t in filters {
            match t.key {
                FilterKey::Class => f.classes.extend(parse_class(&t.value).ok()),
                FilterKey::Remote => f.remotes.extend(t.value.parse::<IpAddr>().ok()),
                FilterKey::Port => f.ports.extend(parse_port(&t.value).ok()),
                FilterKey::Protocol => f.protocols.extend(protocol_number(&t.value)),
                FilterKey::Interface => f.ifaces.push(interface_index(&t.value)),
                _ => {}
            }
        }
        f
    }

    pub(crate) fn class_ok(&self, c: DestClass) -> bool {
        self.classes.iter().all(|w| *w == c)
    }

    pub(crate) fn remote_ok(&self, k: &RemoteKey) -> bool {
        let addr = remote_ip(k);
        self.remotes.iter().all(|r| *r == addr)
            && self
                .ports
                .iter()
                .all(|(p, n)| *n == k.port && p.is_none_or(|p| p == k.protocol))
            && self.protocols.iter().all(|p| *p == k.protocol)
    }

    /// True when a remote, port, protocol or interface term is set (rows
    /// without an endpoint cannot match it).
    pub(crate) fn has_endpoint_terms(&self) -> bool {
        !(self.remotes.is_empty()
            && self.ports.is_empty()
            && self.protocols.is_empty()
            && self.ifaces.is_empty())
    }

    pub(crate) fn iface_ok(&self, ifindex: u32) -> bool {
        self.ifaces.iter().all(|i| *i == Some(ifindex))
    }
}

/// A remote key's address.
#[must_use]
pub fn remote_ip(k: &RemoteKey) -> IpAddr {
    crate::store::class::raw_to_ip(&k.addr, k.ip_version)
}

/// Per process: passes the process filters, and its group.
pub(crate) struct ProcCache<'a> {
    facts: &'a Facts,
    filters: &'a [FilterTerm],
    by: Dimension,
    seen: HashMap<ProcessId, Option<Option<GroupKey>>>,
}

impl<'a> ProcCache<'a> {
    pub(crate) fn new(facts: &'a Facts, filters: &'a [FilterTerm], by: Dimension) -> Self {
        Self {
            facts,
            filters,
            by,
            seen: HashMap::new(),
        }
    }

    /// `None` if filtered out, else the process-level group (if `by` is one).
    pub(crate) fn get(&mut self, id: ProcessId) -> Option<Option<GroupKey>> {
        self.seen
            .entry(id)
            .or_insert_with(|| {
                let f = self.facts.get(id);
                f.passes(self.filters).then(|| f.group(self.by))
            })
            .clone()
    }
}

/// Answers a usage question.
///
/// # Errors
/// [`QueryError::Invalid`] for combinations the rows cannot answer; storage
/// errors.
pub fn usage(store: &mut Store, facts: &Facts, q: &UsageQuery) -> Result<UsageAnswer, QueryError> {
    let kind = kind_for(q.by, &q.filters)?;
    let rf = RowFilter::new(&q.filters, q.class);
    let mut procs = ProcCache::new(facts, &q.filters, q.by);
    let mut acc: HashMap<GroupKey, Traffic> = HashMap::new();
    let mut add = |row: scan::Row| {
        if !rf.class_ok(row.class) {
            return;
        }
        let key = match row.subject {
            Subject::Process(id) => {
                // In a remote or interface answer these are the rows without
                // an endpoint or interface ([`OVERFLOW`]): no remote, port,
                // protocol or interface term matches them.
                if kind != Kind::Process && rf.has_endpoint_terms() {
                    return;
                }
                match procs.get(id) {
                    None => return,
                    Some(Some(g)) => g,
                    Some(None) if q.by == Dimension::Class => GroupKey::Class(row.class),
                    Some(None) => GroupKey::NoEndpoint,
                }
            }
            Subject::Remote(rk) => {
                if !rf.remote_ok(&rk) {
                    return;
                }
                let Some(pg) = procs.get(rk.process) else {
                    return;
                };
                match q.by {
                    Dimension::Remote => GroupKey::Remote(remote_ip(&rk)),
                    Dimension::Port => GroupKey::Port {
                        protocol: rk.protocol,
                        port: rk.port,
                    },
                    Dimension::Protocol => GroupKey::Protocol(rk.protocol),
                    _ => pg.unwrap_or(GroupKey::Class(row.class)),
                }
            }
            Subject::Interface(ifindex) => {
                if !rf.iface_ok(ifindex) {
                    return;
                }
                if q.by == Dimension::Interface {
                    GroupKey::Interface(ifindex)
                } else {
                    GroupKey::Class(row.class)
                }
            }
        };
        let e = acc.entry(key).or_default();
        *e = e.add(row.traffic);
    };
    let overflow = facts.lookup(&OVERFLOW).is_some();
    let coverage = if kind == Kind::Remote {
        let mut passing = ProcCache::new(facts, &q.filters, q.by);
        let wanted = |rk: &RemoteKey| {
            rf.class_ok(rk.class) && rf.remote_ok(rk) && passing.get(rk.process).is_some()
        };
        edges::remote_rows(store, &q.range, overflow, wanted, &mut add)?
    } else {
        let (segments, coverage) = scan::plan_for(store, &q.range, kind)?;
        scan::rows(store, &segments, kind, &mut add)?;
        if kind == Kind::Interface && overflow {
            // Interface rows carry no overflow: add it, so every grouping
            // has the same total (the segments are the process ones too:
            // both kinds are kept down to each interval).
            scan::rows(store, &segments, Kind::Process, |row| {
                if row.subject == Subject::Process(OVERFLOW) {
                    add(row);
                }
            })?;
        }
        coverage
    };
    let total = acc.values().fold(Traffic::default(), |a, t| a.add(*t));
    let grand = ip_total(&total);
    let mut groups: Vec<UsageGroup> = acc
        .into_iter()
        .map(|(key, traffic)| UsageGroup {
            share: if grand == 0 {
                0.0
            } else {
                ip_total(&traffic) as f64 / grand as f64
            },
            key,
            traffic,
        })
        .collect();
    groups.sort_by(|a, b| {
        ip_total(&b.traffic)
            .cmp(&ip_total(&a.traffic))
            .then_with(|| a.key.cmp(&b.key))
    });
    let groups_total = groups.len();
    if let Some(n) = q.limit {
        groups.truncate(n);
    }
    Ok(UsageAnswer {
        groups,
        groups_total,
        total,
        coverage,
    })
}
