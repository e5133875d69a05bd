//! The traffic counters: epochs, membership and the fold (see the module
//! docs of [`crate::exporter`] for the rules), and their encoding.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::model::ProcessId;
use crate::query::QueryError;
use crate::query::apps::AppRules;
use crate::query::facts::{Facts, ProcFacts};
use crate::query::scan::{self, Kind, Subject};
use crate::query::terms::protocol_label;
use crate::store::query::{Segment, plan};
use crate::store::rollup::Tier;
use crate::store::{ConnDir, DestClass, OVERFLOW, Store, TimeMs, Traffic};

/// The label value of everything outside the top groups.
pub const OTHER: &str = "other";

/// A label the traffic series are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupLabel {
    /// App name (the `[apps]` rules, else the executable name).
    App,
    /// User name (else the uid).
    User,
    /// Container or systemd unit.
    Container,
    /// cgroup v2 path.
    Cgroup,
    /// Service port and who connected, from the per remote rows (see
    /// [`crate::model::service`]): three labels, `protocol` (`tcp`, `udp`,
    /// ... as `netmon usage --by port` names it), `service_port` (the
    /// local port of an inbound flow, the remote port of an outbound one)
    /// and `port_dir` (`in`: a peer connected to this host, `out`: this
    /// host connected; `unknown` for history written before directions
    /// were kept). Traffic with no remote endpoint (counted while the flow
    /// map was full) has all three `none`. Needs epochs of whole minutes.
    #[serde(rename = "service_port")]
    ServicePort,
}

/// The label values of traffic with no remote endpoint.
const NONE: &str = "none";

impl GroupLabel {
    /// Its name in `group_by`: the Prometheus label name, except for
    /// [`Self::ServicePort`], which adds three labels ([`Self::names`]).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::User => "user",
            Self::Container => "container",
            Self::Cgroup => "cgroup",
            Self::ServicePort => "service_port",
        }
    }

    /// The Prometheus label names it adds, in order.
    #[must_use]
    pub const fn names(self) -> &'static [&'static str] {
        match self {
            Self::App => &["app"],
            Self::User => &["user"],
            Self::Container => &["container"],
            Self::Cgroup => &["cgroup"],
            Self::ServicePort => &["protocol", "service_port", "port_dir"],
        }
    }

    /// The value of a process label (`None` for [`Self::ServicePort`],
    /// which is not a property of the process).
    fn value(self, f: &ProcFacts) -> Option<String> {
        match self {
            Self::App => Some(f.app.clone()),
            Self::User => Some(f.user.clone()),
            Self::Container => Some(f.record.unit.clone().unwrap_or_default()),
            Self::Cgroup => Some(f.record.info.cgroup.clone().unwrap_or_default()),
            Self::ServicePort => None,
        }
    }
}

/// A row's service: protocol, service port and direction (`None`: no
/// remote endpoint, or the exporter does not group by service).
type Service = Option<(u8, u16, ConnDir)>;

/// The label values of [`GroupLabel::ServicePort`] for `svc`.
fn service_values(svc: Service) -> [String; 3] {
    match svc {
        None => [NONE.to_owned(), NONE.to_owned(), NONE.to_owned()],
        Some((protocol, port, dir)) => [
            protocol_label(protocol),
            port.to_string(),
            dir.label().unwrap_or("unknown").to_owned(),
        ],
    }
}

/// `[http.metrics]` of the config file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// Groups with their own series (the rest is `other`).
    pub top: usize,
    /// Labels the series are grouped by.
    pub group_by: Vec<GroupLabel>,
    /// Epoch length in seconds (must divide a day).
    pub epoch_secs: u64,
    /// Epochs ranked at each epoch start.
    pub rank_epochs: u64,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            top: 200,
            group_by: vec![GroupLabel::App, GroupLabel::User],
            epoch_secs: 3_600,
            rank_epochs: 24,
        }
    }
}

impl ExporterConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// One line saying what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.epoch_secs == 0 || !86_400_u64.is_multiple_of(self.epoch_secs) {
            return Err(format!(
                "http.metrics: epoch_secs = {} must divide a day (3600, 60, 1, ...)",
                self.epoch_secs
            ));
        }
        if self.rank_epochs == 0 {
            return Err("http.metrics: rank_epochs must be at least 1".to_owned());
        }
        let set: HashSet<_> = self.group_by.iter().collect();
        if self.group_by.is_empty() || set.len() != self.group_by.len() {
            return Err(
                "http.metrics: group_by needs distinct labels (app, user, container, cgroup, service_port)"
                    .to_owned(),
            );
        }
        if self.by_service() && !self.epoch_secs.is_multiple_of(60) {
            return Err(format!(
                "http.metrics: group_by service_port needs epoch_secs in whole minutes (service ports are kept per minute), not {}",
                self.epoch_secs
            ));
        }
        Ok(())
    }

    /// Groups by service port: reads the per remote rows.
    fn by_service(&self) -> bool {
        self.group_by.contains(&GroupLabel::ServicePort)
    }

    /// The label names, in order.
    fn label_names(&self) -> Vec<&'static str> {
        self.group_by
            .iter()
            .flat_map(|g| g.names().iter().copied())
            .collect()
    }

    /// A row's group: the process labels (`proc`, in `group_by` order)
    /// with the service labels of `svc` in their place.
    fn group(&self, proc: &[String], svc: Service) -> Group {
        let mut it = proc.iter();
        let mut g = Vec::with_capacity(proc.len() + 3);
        for l in &self.group_by {
            if *l == GroupLabel::ServicePort {
                g.extend(service_values(svc));
            } else {
                g.push(it.next().cloned().unwrap_or_default());
            }
        }
        g
    }

    /// One epoch, ms.
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.epoch_secs.saturating_mul(1_000).max(1)
    }

    /// The coarsest tier whose buckets fit in one epoch.
    pub(crate) fn tier(&self) -> Tier {
        let ms = self.epoch_ms();
        if ms.is_multiple_of(3_600_000) {
            Tier::Hour
        } else if ms.is_multiple_of(60_000) {
            Tier::Minute
        } else {
            Tier::Interval
        }
    }
}

/// Label values of a group, in `group_by` order.
type Group = Vec<String>;

/// One scrape's traffic series and facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Label names of the grouping.
    pub labels: Vec<&'static str>,
    /// Per emitted group and class: its counter values.
    pub series: BTreeMap<(Group, DestClass), Traffic>,
    /// Time of the newest committed drain (unix ms).
    pub latest_ms: Option<TimeMs>,
    /// Groups that are members of the current epoch.
    pub members: usize,
    /// Per emitted group: when its series started counting (unix ms), the
    /// counters' `_created`: the start of the group's first member epoch
    /// (since it was last retired), and for `other` the start of the first
    /// epoch in history.
    pub created: BTreeMap<Group, TimeMs>,
    /// LAN device series ([`Exporter::device_series`]; the scrape fills
    /// them in, [`Exporter::snapshot`] leaves them empty).
    pub devices: Vec<crate::exporter::devices::DeviceSeries>,
}

impl Snapshot {
    /// Sum over every series.
    #[must_use]
    pub fn total(&self) -> Traffic {
        self.series
            .values()
            .fold(Traffic::default(), |a, t| a.add(*t))
    }
}

/// What earlier scrapes folded (a cache: recomputable from history).
#[derive(Debug, Default)]
struct State {
    /// Epochs below this are folded into `folded`.
    until: u64,
    /// Per series key (a member group or all-`other`) and class.
    folded: HashMap<(Group, DestClass), Traffic>,
    /// Per folded epoch, IP bytes per group (the last `rank_epochs`).
    window: VecDeque<(u64, HashMap<Group, u64>)>,
    /// Process label values (the `group_by` labels other than
    /// `service_port`, in order) of every process seen.
    groups: HashMap<ProcessId, Group>,
    /// Per group with a series in `folded`: the last epoch it was a member.
    last_member: HashMap<Group, u64>,
    /// Per member group (until retired): its first member epoch.
    first_member: HashMap<Group, u64>,
    /// The first epoch with traffic (where `other` starts).
    first_epoch: Option<u64>,
}

impl State {
    /// Moves into `other` the series of groups that have not been members
    /// for `rank` epochs before epoch `e` (their final values: `other`
    /// grows by them, the sum stays the same).
    fn retire(&mut self, e: u64, rank: u64, other: &Group) {
        let old: Vec<Group> = self
            .last_member
            .iter()
            .filter(|(_, last)| last.saturating_add(rank) < e)
            .map(|(g, _)| g.clone())
            .collect();
        for g in old {
            self.last_member.remove(&g);
            self.first_member.remove(&g);
            for class in DestClass::ALL {
                if let Some(t) = self.folded.remove(&(g.clone(), class)) {
                    let cell = self.folded.entry((other.clone(), class)).or_default();
                    *cell = cell.add(t);
                }
            }
        }
    }
}

/// The exporter's counters: a cache of folded epochs behind a lock.
#[derive(Debug)]
pub struct Exporter {
    cfg: ExporterConfig,
    state: std::sync::Mutex<State>,
    devices: std::sync::Mutex<crate::exporter::devices::DeviceState>,
}

impl Exporter {
    /// A fresh exporter (nothing folded yet).
    #[must_use]
    pub fn new(cfg: ExporterConfig) -> Self {
        Self {
            cfg,
            state: std::sync::Mutex::new(State::default()),
            devices: std::sync::Mutex::new(crate::exporter::devices::DeviceState::default()),
        }
    }

    /// The LAN device series as of the newest committed drain
    /// ([`crate::exporter::devices`]), named with `naming`.
    ///
    /// # Errors
    /// On storage errors.
    pub fn device_series(
        &self,
        store: &mut Store,
        naming: &crate::devices::Naming,
    ) -> Result<Vec<crate::exporter::devices::DeviceSeries>, QueryError> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .series(store, &self.cfg, naming)
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &ExporterConfig {
        &self.cfg
    }

    /// The counters as of the newest committed drain.
    ///
    /// # Errors
    /// On storage errors.
    pub fn snapshot(&self, store: &mut Store, apps: &AppRules) -> Result<Snapshot, QueryError> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let labels = self.cfg.label_names();
        let other: Group = vec![OTHER.to_owned(); labels.len()];
        let Some(latest) = scan::latest_sample(store)? else {
            return Ok(Snapshot {
                labels,
                ..Snapshot::default()
            });
        };
        let ems = self.cfg.epoch_ms();
        let cur = latest / ems;
        let from = st.until.saturating_mul(ems);
        let range = from..latest.saturating_add(1);
        let segs = segments(store, &range, self.cfg.tier(), Kind::Process)?;
        let mut raw: HashMap<(u64, ProcessId, Service, DestClass), Traffic> = HashMap::new();
        let by_service = self.cfg.by_service();
        scan::rows(store, &segs, Kind::Process, |row| {
            if let Subject::Process(id) = row.subject {
                // Grouped by service, only the traffic without an endpoint
                // comes from the process rows (the rest is in the remote
                // rows, which add up to the process rows exactly).
                if by_service && id != OVERFLOW {
                    return;
                }
                let e = raw.entry((row.ts / ems, id, None, row.class)).or_default();
                *e = e.add(row.traffic);
            }
        })?;
        if by_service {
            let rsegs = segments(store, &range, self.cfg.tier(), Kind::Remote)?;
            scan::rows(store, &rsegs, Kind::Remote, |row| {
                if let Subject::Remote(rk) = row.subject {
                    let svc = Some((rk.protocol, rk.port, rk.dir));
                    let e = raw
                        .entry((row.ts / ems, rk.process, svc, row.class))
                        .or_default();
                    *e = e.add(row.traffic);
                }
            })?;
        }
        if raw.keys().any(|(_, id, _, _)| !st.groups.contains_key(id)) {
            let facts = Facts::load(store, apps)?;
            for (_, id, _, _) in raw.keys() {
                if !st.groups.contains_key(id) {
                    let f = facts.get(*id);
                    let g = self
                        .cfg
                        .group_by
                        .iter()
                        .filter_map(|l| l.value(&f))
                        .collect();
                    st.groups.insert(*id, g);
                }
            }
        }
        let mut per_epoch: BTreeMap<u64, HashMap<(Group, DestClass), Traffic>> = BTreeMap::new();
        for ((e, id, svc, class), t) in raw {
            let g = st
                .groups
                .get(&id)
                .map_or_else(|| other.clone(), |p| self.cfg.group(p, svc));
            let cell = per_epoch
                .entry(e)
                .or_default()
                .entry((g, class))
                .or_default();
            *cell = cell.add(t);
        }
        if let Some(e) = per_epoch.keys().next() {
            st.first_epoch.get_or_insert(*e);
        }
        let current = per_epoch.split_off(&cur);
        for (e, cells) in per_epoch {
            st.retire(e, self.cfg.rank_epochs, &other);
            let members = self.members(&st.window, e);
            for g in &members {
                st.last_member.insert(g.clone(), e);
                st.first_member.entry(g.clone()).or_insert(e);
            }
            let mut volume: HashMap<Group, u64> = HashMap::new();
            for ((g, class), t) in cells {
                *volume.entry(g.clone()).or_default() += crate::query::usage::ip_total(&t);
                let key = if members.contains(&g) {
                    g
                } else {
                    other.clone()
                };
                let cell = st.folded.entry((key, class)).or_default();
                *cell = cell.add(t);
            }
            st.window.push_back((e, volume));
            let keep_from = (e + 1).saturating_sub(self.cfg.rank_epochs);
            while st.window.front().is_some_and(|(x, _)| *x < keep_from) {
                st.window.pop_front();
            }
        }
        st.until = cur;
        // The current epoch as it stands (folded for good once it is over).
        st.retire(cur, self.cfg.rank_epochs, &other);
        let members = self.members(&st.window, cur);
        let mut series: BTreeMap<(Group, DestClass), Traffic> =
            st.folded.iter().map(|(k, t)| (k.clone(), *t)).collect();
        for ((g, class), t) in current.into_values().flatten() {
            let key = if members.contains(&g) {
                g
            } else {
                other.clone()
            };
            let cell = series.entry((key, class)).or_default();
            *cell = cell.add(t);
        }
        let created = series
            .keys()
            .map(|(g, _)| {
                let e = if *g == other {
                    st.first_epoch.unwrap_or(cur)
                } else {
                    st.first_member.get(g).copied().unwrap_or(cur)
                };
                (g.clone(), e.saturating_mul(ems))
            })
            .collect();
        Ok(Snapshot {
            labels,
            series,
            latest_ms: Some(latest),
            members: members.len(),
            created,
            devices: Vec::new(),
        })
    }

    /// The top groups over the `rank_epochs` epochs before epoch `e`.
    fn members(&self, window: &VecDeque<(u64, HashMap<Group, u64>)>, e: u64) -> HashSet<Group> {
        let lo = e.saturating_sub(self.cfg.rank_epochs);
        let mut sum: HashMap<&Group, u64> = HashMap::new();
        for (x, vol) in window {
            if *x >= lo && *x < e {
                for (g, v) in vol {
                    *sum.entry(g).or_default() += v;
                }
            }
        }
        let mut ranked: Vec<(&Group, u64)> = sum.into_iter().filter(|(_, v)| *v > 0).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked
            .into_iter()
            .take(self.cfg.top)
            .map(|(g, _)| g.clone())
            .collect()
    }
}

/// Segments of `range` read for rows of `kind` so that no row covers more
/// than one epoch: tiers coarser than `tier` are used only where `tier`
/// was purged (for remote rows: or not yet kept, see
/// [`Store::remote_minute_from`]).
pub(crate) fn segments(
    store: &mut Store,
    range: &Range<TimeMs>,
    tier: Tier,
    kind: Kind,
) -> Result<Vec<Segment>, QueryError> {
    let mut purged: HashMap<Tier, TimeMs> = HashMap::new();
    for t in Tier::ALL {
        purged.insert(t, store.purged_before(t)?);
    }
    if kind == Kind::Remote {
        let from = store.remote_minute_from()?;
        let m = purged.entry(Tier::Minute).or_default();
        *m = (*m).max(from);
    }
    let real = |t: Tier| purged.get(&t).copied().unwrap_or(0);
    let tier = tier.max(kind.finest());
    let p = real(tier);
    let mut out = Vec::new();
    if range.start < p {
        out.extend(plan(&(range.start..p.min(range.end)), kind.finest(), &real));
    }
    let s = range.start.max(p);
    if s < range.end {
        let fine = |t: Tier| if t > tier { TimeMs::MAX } else { real(t) };
        out.extend(plan(&(s..range.end), kind.finest(), &fine));
    }
    Ok(out)
}

/// Writes one counter family: `name` (without unit and `_total`), per
/// series of `snap`, the value `pick` takes from each direction.
fn encode_traffic(
    enc: &mut DescriptorEncoder,
    snap: &Snapshot,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    pick: fn(&netmon_common::DirCounters) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for ((g, class), t) in &snap.series {
        for (dir, c) in [("tx", &t.tx), ("rx", &t.rx)] {
            let mut labels: Vec<(&str, &str)> = vec![("direction", dir), ("class", class.name())];
            labels.extend(
                snap.labels
                    .iter()
                    .copied()
                    .zip(g.iter().map(String::as_str)),
            );
            let v = pick(c);
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
    }
    Ok(())
}

/// The traffic counter families (as written, with `_total`).
const TRAFFIC: [&str; 5] = [
    "netmon_ip_bytes_total{",
    "netmon_payload_bytes_total{",
    "netmon_app_bytes_total{",
    "netmon_retrans_bytes_total{",
    "netmon_packets_total{",
];

/// Adds OpenMetrics `_created` samples after each traffic counter sample
/// of `text` (`prometheus-client` 0.26 cannot write them for a collector).
/// Each family's samples are written in `snap.series` order, tx then rx
/// ([`encode_traffic`]), which pairs every line with its group.
#[must_use]
pub fn add_created(text: &str, snap: &Snapshot) -> String {
    let order: Vec<f64> = snap
        .series
        .keys()
        .flat_map(|(g, _)| {
            let ms = snap.created.get(g).copied().unwrap_or(0);
            [ms as f64 / 1000.0; 2]
        })
        .collect();
    let mut seen = [0_usize; TRAFFIC.len()];
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let Some(f) = TRAFFIC.iter().position(|p| line.starts_with(p)) else {
            continue;
        };
        let (Some(at), Some(end)) = (line.find('{'), line.rfind("} ")) else {
            continue;
        };
        let Some(secs) = order.get(seen[f]) else {
            continue;
        };
        seen[f] += 1;
        let name = &line[..at].trim_end_matches("_total");
        out.push_str(&format!("{name}_created{} {secs:.3}\n", &line[at..=end]));
    }
    out
}

/// Writes the traffic counters and the exporter's own gauges.
///
/// # Errors
/// Only from the writer.
pub fn encode(
    enc: &mut DescriptorEncoder,
    snap: &Snapshot,
    cfg: &ExporterConfig,
) -> Result<(), std::fmt::Error> {
    encode_traffic(
        enc,
        snap,
        "netmon_ip",
        "IP bytes (headers included) per direction, destination class and group; the top groups by volume have their own series, the rest is 'other'.",
        Some(&Unit::Bytes),
        |c| c.ip_bytes,
    )?;
    encode_traffic(
        enc,
        snap,
        "netmon_payload",
        "Transport payload bytes (IP bytes less IP and transport headers), labelled as netmon_ip_bytes_total.",
        Some(&Unit::Bytes),
        |c| c.payload_bytes,
    )?;
    encode_traffic(
        enc,
        snap,
        "netmon_app",
        "Application bytes: payload less TCP retransmissions (what the processes moved), labelled as netmon_ip_bytes_total.",
        Some(&Unit::Bytes),
        netmon_common::DirCounters::app_bytes,
    )?;
    encode_traffic(
        enc,
        snap,
        "netmon_retrans",
        "TCP payload bytes sent or received again (retransmissions and duplicates), labelled as netmon_ip_bytes_total.",
        Some(&Unit::Bytes),
        |c| c.retrans_bytes,
    )?;
    encode_traffic(
        enc,
        snap,
        "netmon_packets",
        "Packets seen at the hook, labelled as netmon_ip_bytes_total.",
        None,
        |c| c.packets,
    )?;
    let gauge =
        |enc: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: f64| {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
        };
    if let Some(ms) = snap.latest_ms {
        gauge(
            enc,
            "netmon_last_drain_timestamp",
            "Time of the newest drain committed to history (the counters are as of then).",
            Some(&Unit::Seconds),
            ms as f64 / 1000.0,
        )?;
    }
    gauge(
        enc,
        "netmon_exporter_groups",
        "Groups with their own series in the current epoch (at most netmon_exporter_groups_limit).",
        None,
        snap.members as f64,
    )?;
    gauge(
        enc,
        "netmon_exporter_groups_limit",
        "The configured top N: groups with their own series; the rest is 'other'.",
        None,
        cfg.top as f64,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::pseudo_process;
    use crate::store::{Batch, Retention};
    use netmon_common::DirCounters;

    const BASE: u64 = 1_700_000_000_000;

    fn pid(n: u32) -> ProcessId {
        ProcessId {
            pid: 1000 + n,
            start_ticks: 7,
        }
    }

    fn traffic(n: u64) -> Traffic {
        let d = DirCounters {
            packets: n / 100 + 1,
            ip_bytes: n,
            payload_bytes: n / 2,
            retrans_bytes: 0,
        };
        Traffic { tx: d, rx: d }
    }

    /// Commits one drain: `(process number, ip bytes)` each, loopback.
    fn commit(store: &mut Store, ts: u64, rows: &[(u32, u64)]) {
        let batch = Batch {
            ts_ms: ts,
            processes: rows
                .iter()
                .map(|(n, _)| pseudo_process(pid(*n), &format!("app{n}")))
                .collect(),
            proc_rows: rows
                .iter()
                .map(|(n, b)| (pid(*n), DestClass::Loopback, traffic(*b)))
                .collect(),
            ..Batch::default()
        };
        store.commit(&batch).expect("commit");
    }

    fn series_of(snap: &Snapshot, app: &str) -> Option<u64> {
        snap.series
            .get(&(vec![app.to_owned()], DestClass::Loopback))
            .map(|t| t.tx.ip_bytes)
    }

    /// Six apps with shifting volumes over 30 one-second epochs, top 2, and
    /// a late big app: the incremental exporter equals a fresh one after
    /// every drain (a restart continues exactly), the sum equals the bytes
    /// the test committed, no series ever goes down, at most top
    /// members, and the late app's series starts at its first member epoch.
    #[test]
    fn never_resets_and_sums_exactly() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut store, _) =
            Store::open(&dir.path().join("h.redb"), Retention::default()).expect("open");
        let apps = AppRules::default();
        let live = Exporter::new(cfg(2));
        let mut committed = 0_u64;
        let mut late_member_bytes = 0_u64;
        let mut prev: BTreeMap<(Group, DestClass), Traffic> = BTreeMap::new();
        for e in 0..30_u64 {
            for k in 0..4_u64 {
                let ts = BASE + e * 1000 + k * 250;
                let mut rows: Vec<(u32, u64)> = (0..6_u32)
                    .map(|n| (n, 100 + (u64::from(n) * 37 + e * 11) % 500))
                    .collect();
                if e >= 20 {
                    rows.push((9, 5_000));
                    if e >= 21 {
                        late_member_bytes += 5_000;
                    }
                }
                committed += rows.iter().map(|(_, b)| b).sum::<u64>();
                commit(&mut store, ts, &rows);
                let snap = live.snapshot(&mut store, &apps).expect("snapshot");
                let fresh = Exporter::new(cfg(2))
                    .snapshot(&mut store, &apps)
                    .expect("fresh");
                assert_eq!(
                    snap, fresh,
                    "epoch {e} drain {k}: a restart must see the same values"
                );
                assert_eq!(snap.total().tx.ip_bytes, committed, "sum = host total");
                assert!(snap.members <= 2, "{:?}", snap.series.keys());
                for (key, t) in &snap.series {
                    if let Some(p) = prev.get(key) {
                        assert!(t.tx.ip_bytes >= p.tx.ip_bytes, "{key:?} went down");
                        assert!(t.rx.packets >= p.rx.packets, "{key:?} went down");
                    }
                }
                prev.extend(snap.series.clone());
                if e == 20 {
                    assert_eq!(series_of(&snap, "app9"), None, "not ranked yet");
                }
                if e >= 21 {
                    assert_eq!(
                        series_of(&snap, "app9"),
                        Some(late_member_bytes),
                        "epoch {e}"
                    );
                    assert_eq!(
                        snap.created.get(&vec!["app9".to_owned()]),
                        Some(&(BASE + 21_000)),
                        "created at its first member epoch"
                    );
                }
                assert_eq!(
                    snap.created.get(&vec![OTHER.to_owned()]),
                    Some(&BASE),
                    "other counts from the first epoch"
                );
            }
        }
    }

    fn cfg(top: usize) -> ExporterConfig {
        ExporterConfig {
            top,
            group_by: vec![GroupLabel::App],
            epoch_secs: 1,
            rank_epochs: 10,
        }
    }

    #[test]
    fn config_checks() {
        assert!(ExporterConfig::default().check().is_ok());
        let mut c = cfg(2);
        c.epoch_secs = 7;
        assert!(c.check().is_err());
        c.epoch_secs = 60;
        c.group_by = vec![GroupLabel::App, GroupLabel::App];
        assert!(c.check().is_err());
        let t: ExporterConfig = toml::from_str("top = 2\ngroup_by = [\"app\"]").expect("parse");
        assert_eq!(t.top, 2);
        let t: ExporterConfig =
            toml::from_str("group_by = [\"app\", \"service_port\"]").expect("parse");
        assert_eq!(t.group_by, [GroupLabel::App, GroupLabel::ServicePort]);
        assert_eq!(
            t.group_by.iter().map(|g| g.name()).collect::<Vec<_>>(),
            ["app", "service_port"],
            "names read back"
        );
        assert!(t.check().is_ok(), "hourly epochs");
        assert_eq!(
            t.label_names(),
            ["app", "protocol", "service_port", "port_dir"]
        );
        let mut c = t.clone();
        c.epoch_secs = 1;
        assert!(
            c.check().is_err(),
            "service ports are kept per minute: no 1 s epochs"
        );
        assert_eq!(
            t.group(&["curl".to_owned()], Some((17, 53, ConnDir::Out))),
            ["curl", "udp", "53", "out"]
        );
        assert_eq!(
            t.group(&["nginx".to_owned()], Some((6, 443, ConnDir::Unknown))),
            ["nginx", "tcp", "443", "unknown"]
        );
        assert_eq!(
            t.group(&["overflow".to_owned()], None),
            ["overflow", "none", "none", "none"]
        );
        assert!(toml::from_str::<ExporterConfig>("tpo = 2").is_err());
    }

    #[test]
    fn members_rank_by_volume_then_name() {
        let e = Exporter::new(cfg(2));
        let mut w = VecDeque::new();
        w.push_back((
            0,
            HashMap::from([
                (vec!["a".to_owned()], 5),
                (vec!["b".to_owned()], 9),
                (vec!["c".to_owned()], 5),
            ]),
        ));
        let m = e.members(&w, 1);
        assert!(
            m.contains(&vec!["b".to_owned()]) && m.contains(&vec!["a".to_owned()]),
            "{m:?}"
        );
        assert!(
            e.members(&w, 0).is_empty(),
            "epoch 0 ranks nothing before it"
        );
        assert!(e.members(&w, 11).is_empty(), "out of the window");
    }
}
