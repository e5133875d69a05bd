//! Totals over a window, grouped by a [`Dimension`] and filtered.
//!
//! Which rows are read depends on what is asked:
//! - process-level dimensions and filters (process, app, user, cgroup,
//!   container, class) read the per process rows, exact to the interval;
//! - remote, port and protocol need the per remote endpoint rollups (rows
//!   plus the snapshot's pending pieces, see [`crate::store::query`]),
//!   keyed by service port and direction, which exist at minute, hour and
//!   day resolution: edge minutes are resolved to the window with the per
//!   process rows where that is exact, and the answer's [`Coverage`] says
//!   where it is not ([`crate::query::edges`]). Overflow
//!   traffic has no endpoint: it is its own group (`[overflow]`) unless a
//!   remote, port or protocol filter leaves it out;
//! - interface reads the per interface rows, plus the overflow as its own
//!   group (it has no interface), so every grouping has the same total;
//!   these rows carry no process: process filters cannot apply and are
//!   refused.
//!
//! Connection quality (RTT percentiles, retransmissions) comes from the
//! quality rows ([`crate::store::quality`]: per remote key, in the same
//! tiers as the per process rows, so the window resolves the same way):
//! each TCP flow with packets in an interval gives one sample, aggregated
//! per remote key and grouped like its remote rows. The RTT percentiles
//! are over those samples (one per flow and interval, nearest rank, from
//! the merged histograms: within 1.6 %), the retransmission rate is
//! retransmitted over sent data segments in the window.
use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::ProcessId;
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
    /// Its TCP flows' quality in the window (`None`: no TCP sample).
    pub quality: Option<Quality>,
    /// `--by remote`: the server names its traffic was opened to, most IP
    /// bytes first (empty without any; other groupings: empty).
    pub names: Vec<String>,
}

/// TCP connection quality of a group over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quality {
    /// Median of the RTT samples, µs (`None`: no sample had an RTT).
    pub rtt_p50_us: Option<u32>,
    /// 95th percentile of the RTT samples, µs.
    pub rtt_p95_us: Option<u32>,
    /// RTT samples (flows × intervals).
    pub samples: u64,
    /// Segments retransmitted.
    pub retrans_segs: u64,
    /// Data segments sent, retransmissions included.
    pub data_segs: u64,
}

impl Quality {
    /// Retransmitted over sent data segments, 0..1 (`None` without sends).
    #[must_use]
    pub fn retrans_rate(&self) -> Option<f64> {
        (self.data_segs > 0).then(|| self.retrans_segs as f64 / self.data_segs as f64)
    }
}

/// The nearest-rank `p` percentile (0 < p <= 100) of sorted `v`.
pub(crate) fn percentile(sorted: &[u32], p: u64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    // ceil(p / 100 * n), at least 1.
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
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
    if by == Dimension::Device {
        return Err(QueryError::Invalid(
            "devices have their own table: the `devices` request (`netmon devices`, \
             `netmon usage --by device`, GET /api/v1/devices)"
                .to_owned(),
        ));
    }
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
    value
        .parse()
        .ok()
        .or_else(|| crate::kernel::sysfs::interface_index(value))
}

/// Row-level (non-process) filters, pre-parsed.
#[derive(Debug, Default)]
pub(crate) struct RowFilter {
    classes: Vec<DestClass>,
    remotes: Vec<IpAddr>,
    ports: Vec<(Option<u8>, u16)>,
    protocols: Vec<u8>,
    ifaces: Vec<Option<u32>>,
    names: crate::query::domains::NameTerms,
}

impl RowFilter {
    pub(crate) fn new(filters: &[FilterTerm], class: Option<DestClass>) -> Self {
        let mut f = Self {
            classes: class.into_iter().collect(),
            names: crate::query::domains::NameTerms::new(filters),
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
            && self.names.ok(k.name)
    }

    /// True when a remote, port, protocol or interface term is set (rows
    /// without an endpoint cannot match it).
    pub(crate) fn has_endpoint_terms(&self) -> bool {
        !(self.remotes.is_empty()
            && self.ports.is_empty()
            && self.protocols.is_empty()
            && self.ifaces.is_empty()
            && self.names.is_empty())
    }

    pub(crate) fn iface_ok(&self, ifindex: u32) -> bool {
        self.ifaces.iter().all(|i| *i == Some(ifindex))
    }
}

/// A remote key's address.
#[must_use]
pub fn remote_ip(k: &RemoteKey) -> IpAddr {
    crate::model::raw_to_ip(&k.addr, k.ip_version)
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

/// The group of a remote row (or quality sample) of `rk`; `None` when the
/// filters leave it out.
fn remote_group(
    by: Dimension,
    rf: &RowFilter,
    procs: &mut ProcCache<'_>,
    rk: &RemoteKey,
) -> Option<GroupKey> {
    if !rf.class_ok(rk.class) || !rf.remote_ok(rk) {
        return None;
    }
    let pg = procs.get(rk.process)?;
    Some(endpoint_group(by, pg, rk))
}

/// The group of traffic to the endpoint `rk` when grouping by `by`, given
/// its process's group `pg` (`None` when `by` is not a process dimension):
/// the one flow → group rule of remote answers, quality samples and
/// `top`'s live flows ([`crate::query::top`]).
#[must_use]
pub fn endpoint_group(by: Dimension, pg: Option<GroupKey>, rk: &RemoteKey) -> GroupKey {
    match by {
        Dimension::Remote => GroupKey::Remote(remote_ip(rk)),
        Dimension::Port => GroupKey::Port {
            protocol: rk.protocol,
            port: rk.port,
            dir: rk.dir,
        },
        Dimension::Protocol => GroupKey::Protocol(rk.protocol),
        _ => pg.unwrap_or(GroupKey::Class(rk.class)),
    }
}

/// Quality per group from the quality rows of the window, read from the
/// same tiers as the per process rows ([`scan::plan_for`]): per key
/// stats merged per group, the percentiles from the merged RTT histogram.
fn quality_by_group(
    store: &mut Store,
    q: &UsageQuery,
    rf: &RowFilter,
    procs: &mut ProcCache<'_>,
) -> Result<HashMap<GroupKey, Quality>, QueryError> {
    use crate::store::quality::QualityStats;
    let (segments, _) = scan::plan_for(store, &q.range, Kind::Process)?;
    let mut acc: HashMap<GroupKey, QualityStats> = HashMap::new();
    store.quality_rows(&segments, |_, rk, s| {
        if let Some(key) = remote_group(q.by, rf, procs, rk) {
            acc.entry(key).or_default().merge(s);
        }
    })?;
    Ok(acc
        .into_iter()
        .map(|(k, s)| {
            let qual = Quality {
                rtt_p50_us: s.rtt.percentile(50),
                rtt_p95_us: s.rtt.percentile(95),
                samples: s.samples,
                retrans_segs: s.retrans_segs,
                data_segs: s.data_segs,
            };
            (k, qual)
        })
        .collect())
}

/// Server names by IP bytes, most first (ties by name).
fn names_by_bytes(m: Option<HashMap<crate::store::names::NameId, u64>>) -> Vec<String> {
    let mut v: Vec<(u64, String)> = m
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, b)| Some((b, id.get()?.server_name.clone())))
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    v.into_iter().map(|(_, n)| n).collect()
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
    let names = crate::query::domains::NameCache::default();
    let mut acc: HashMap<GroupKey, Traffic> = HashMap::new();
    // `--by remote`: IP bytes per server name of each remote.
    let mut remote_names: HashMap<IpAddr, HashMap<crate::store::names::NameId, u64>> =
        HashMap::new();
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
                if q.by == Dimension::Remote && !rk.name.is_none() {
                    *remote_names
                        .entry(remote_ip(&rk))
                        .or_default()
                        .entry(rk.name)
                        .or_default() += ip_total(&row.traffic);
                }
                if q.by.is_name() {
                    names
                        .group(q.by, rk.name)
                        .unwrap_or(GroupKey::Class(row.class))
                } else {
                    // A remote row's class is its key's.
                    endpoint_group(q.by, pg, &rk)
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
        if kind == Kind::Process {
            // Closed segments summed once and kept (`crate::store::sums`).
            scan::process_rows_summed(store, &segments, &mut add)?;
        } else {
            scan::rows(store, &segments, kind, &mut add)?;
        }
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
    // Quality samples carry no server name: no quality by or for names.
    let mut quality = if kind == Kind::Interface || q.by.is_name() || !rf.names.is_empty() {
        HashMap::new()
    } else {
        quality_by_group(store, q, &rf, &mut procs)?
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
            quality: quality.remove(&key),
            names: match &key {
                GroupKey::Remote(ip) => names_by_bytes(remote_names.remove(ip)),
                _ => Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 95), Some(7));
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 95), Some(4));
    }

    #[test]
    fn retransmission_rate() {
        let q = Quality {
            retrans_segs: 3,
            data_segs: 300,
            ..Quality::default()
        };
        assert_eq!(q.retrans_rate(), Some(0.01));
        assert_eq!(Quality::default().retrans_rate(), None);
    }
}
