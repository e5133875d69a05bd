//! The read API: totals, time series, processes, events. Returns plain data;
//! formatting belongs to the CLI.
//!
//! Totals over a range are answered from the coarsest tiers that fit
//! ([`plan`]): whole days from the day tier, whole hours from the hour tier,
//! and so on down to interval samples for the edges, so `--since 30d` reads
//! about 30 day rows per process plus the edges. Where a finer tier has been
//! purged (see [`Store::purged_before`]) the edge is rounded outward to the
//! enclosing bucket of the finest tier still kept. Remote endpoints are kept
//! at minute, hour and day resolution, so their ranges round outward to
//! minutes (`crate::query::edges` resolves edge minutes further).
//!
//! Remote answers are the `REMOTE_*` rows **plus** the pending pieces of the
//! committed snapshot ([`pending_remote_rows`], read in the same read
//! transaction), each counted as if it were a row keyed at its minute
//! (minute tier), that minute's hour (hour tier) or day (day tier): the
//! drain flushes a piece into the rows in the same commit that clears it
//! from the snapshot, so every byte is in exactly one of the two, and the
//! current minute is included.
use std::collections::{BTreeMap, HashMap};

use redb::ReadableTable as _;

use crate::ownership::ProcessId;
use crate::store::class::DestClass;
use crate::store::layout::{self, IntervalRecord};
use crate::store::rollup::{self, Tier};
use crate::store::types::{DaemonEvent, ProcessRecord, RemoteKey, TimeMs, TimeRange, Traffic};
use crate::store::{Store, StoreError};

/// How totals are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// Per process identity.
    Process,
    /// Per application: the executable's file name, or `comm` when unknown.
    App,
    /// Per destination class.
    Class,
    /// Per (process, remote endpoint).
    Remote,
    /// Per interface index.
    Interface,
    /// One row for everything.
    Total,
}

/// Which rows count. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this process.
    pub process: Option<ProcessId>,
    /// Only processes whose app name (see [`GroupBy::App`]) is this.
    pub app: Option<String>,
    /// Only this destination class.
    pub class: Option<DestClass>,
}

/// A group's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// [`GroupBy::Process`].
    Process(ProcessId),
    /// [`GroupBy::App`].
    App(String),
    /// [`GroupBy::Class`].
    Class(DestClass),
    /// [`GroupBy::Remote`].
    Remote(RemoteKey),
    /// [`GroupBy::Interface`].
    Interface(u32),
    /// [`GroupBy::Total`].
    Total,
}

/// One row of [`Store::totals`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalRow {
    /// The group.
    pub group: Group,
    /// Its traffic.
    pub traffic: Traffic,
}

/// One point of [`Store::series`]: traffic in `[start_ms, start_ms + step)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Start of the step.
    pub start_ms: TimeMs,
    /// Traffic.
    pub traffic: Traffic,
}

/// A piece of a query: rows of `tier` whose time key is in `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Tier read.
    pub tier: Tier,
    /// First key time.
    pub from: TimeMs,
    /// Key times below this.
    pub to: TimeMs,
}

/// Splits `range` into segments read from the coarsest tiers that fit whole
/// buckets, `finest` being the finest tier available for the data kind and
/// `purged(t)` the time before which tier `t` may have lost rows.
#[must_use]
pub fn plan(range: &TimeRange, finest: Tier, purged: &dyn Fn(Tier) -> TimeMs) -> Vec<Segment> {
    let tiers: Vec<Tier> = Tier::ALL
        .iter()
        .rev()
        .copied()
        .filter(|t| *t >= finest)
        .collect();
    let mut out = Vec::new();
    if range.start >= range.end {
        return out;
    }
    if !plan_into(range.start, range.end, &tiers, purged, &mut out) {
        // Not even the coarsest tier covers the start: read what is there.
        if let Some(&coarsest) = tiers.first() {
            out.push(Segment {
                tier: coarsest,
                from: coarsest.bucket(range.start),
                to: range.end,
            });
        }
    }
    out
}

/// Plans `[a, b)` with `tiers` (coarse → fine); false when no tier keeps `a`.
fn plan_into(
    a: TimeMs,
    b: TimeMs,
    tiers: &[Tier],
    purged: &dyn Fn(Tier) -> TimeMs,
    out: &mut Vec<Segment>,
) -> bool {
    let Some((&tier, finer)) = tiers.split_first() else {
        return false;
    };
    let Some(w) = tier.width_ms() else {
        // Interval tier: exact, if kept.
        if a >= purged(tier) {
            out.push(Segment {
                tier,
                from: a,
                to: b,
            });
            return true;
        }
        return false;
    };
    let lo = a.div_ceil(w).saturating_mul(w);
    let hi = b - b % w;
    let outward = |out: &mut Vec<Segment>, x: TimeMs, y: TimeMs| {
        let from = tier.bucket(x);
        if from >= purged(tier) {
            out.push(Segment { tier, from, to: y });
            true
        } else {
            false
        }
    };
    let edge = |out: &mut Vec<Segment>, x: TimeMs, y: TimeMs| -> bool {
        if x >= y {
            return true;
        }
        if !finer.is_empty() && plan_into(x, y, finer, purged, out) {
            return true;
        }
        outward(out, x, y)
    };
    if lo < hi && lo >= purged(tier) {
        out.push(Segment {
            tier,
            from: lo,
            to: hi,
        });
        let left = edge(out, a, lo);
        let right = edge(out, hi, b);
        left && right
    } else {
        edge(out, a, b)
    }
}

impl Store {
    fn purge_map(&mut self) -> Result<HashMap<Tier, TimeMs>, StoreError> {
        let mut m = HashMap::new();
        for t in Tier::ALL {
            m.insert(t, self.purged_before(t)?);
        }
        Ok(m)
    }

    /// All process records, by identity.
    fn process_map(&mut self) -> Result<BTreeMap<ProcessId, ProcessRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(layout::PROCESSES)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let rec: ProcessRecord =
                serde_json::from_slice(v.value()).map_err(layout::LayoutError::from)?;
            out.insert(layout::decode_process(k.value())?, rec);
        }
        Ok(out)
    }

    /// Processes seen with traffic in `range` (by first/last seen; last seen
    /// has minute resolution).
    ///
    /// # Errors
    /// On storage errors.
    pub fn processes(&mut self, range: &TimeRange) -> Result<Vec<ProcessRecord>, StoreError> {
        let start_minute = Tier::Minute.bucket(range.start);
        Ok(self
            .process_map()?
            .into_values()
            .filter(|r| r.first_seen_ms < range.end && r.last_seen_ms >= start_minute)
            .collect())
    }

    /// Daemon events in `range`, oldest first.
    ///
    /// # Errors
    /// On storage errors.
    pub fn events(&mut self, range: &TimeRange) -> Result<Vec<(TimeMs, DaemonEvent)>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(layout::EVENTS)?;
        let (from, to) = (layout::time_key(range.start), layout::time_key(range.end));
        let mut out = Vec::new();
        for row in table.range(from.as_slice()..to.as_slice())? {
            let (k, v) = row?;
            let ev = serde_json::from_slice(v.value()).map_err(layout::LayoutError::from)?;
            out.push((layout::key_time(k.value())?, ev));
        }
        Ok(out)
    }

    /// Total traffic in `range`, grouped, filtered; largest total first.
    ///
    /// # Errors
    /// On storage errors.
    pub fn totals(
        &mut self,
        range: &TimeRange,
        group_by: GroupBy,
        filter: &Filter,
    ) -> Result<Vec<TotalRow>, StoreError> {
        let purged = self.purge_map()?;
        let purged_fn = |t: Tier| purged.get(&t).copied().unwrap_or(0);
        let procs = self.process_map()?;
        let app_of = |id: &ProcessId| app_name(procs.get(id), id);
        let keep = |id: &ProcessId, class: DestClass| {
            filter.process.is_none_or(|p| p == *id)
                && filter.class.is_none_or(|c| c == class)
                && filter.app.as_ref().is_none_or(|a| *a == app_of(id))
        };
        let mut acc: HashMap<Group, Traffic> = HashMap::new();
        let mut add = |g: Group, t: Traffic| {
            let e = acc.entry(g).or_default();
            *e = e.add(t);
        };
        let finest = if group_by == GroupBy::Remote {
            Tier::Minute
        } else {
            Tier::Interval
        };
        let segments = plan(range, finest, &purged_fn);
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let mut pending: Option<Vec<(TimeMs, RemoteKey, Traffic)>> = None;
        for seg in segments {
            let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
            match (group_by, seg.tier) {
                (GroupBy::Remote, tier) => {
                    let Some(def) = tier.remote_table() else {
                        continue;
                    };
                    if pending.is_none() {
                        pending = Some(pending_remote_rows(&txn)?);
                    }
                    for (minute, rk, t) in pending.iter().flatten() {
                        let ts = tier.bucket(*minute);
                        if (seg.from..seg.to).contains(&ts) && keep(&rk.process, rk.class) {
                            add(Group::Remote(*rk), *t);
                        }
                    }
                    let table = txn.open_table(def)?;
                    for row in table.range(from.as_slice()..to.as_slice())? {
                        let (k, v) = row?;
                        let (_, rk) = layout::decode_remote_key(k.value())?;
                        if keep(&rk.process, rk.class) {
                            add(Group::Remote(rk), layout::decode_traffic(v.value())?);
                        }
                    }
                }
                (GroupBy::Interface, Tier::Interval) => {
                    for_interval(&txn, &seg, |rec| {
                        for i in &rec.ifaces {
                            let class = DestClass::from_byte(i.class).unwrap_or(DestClass::Unknown);
                            if filter.process.is_none()
                                && filter.app.is_none()
                                && filter.class.is_none_or(|c| c == class)
                            {
                                add(Group::Interface(i.ifindex), i.traffic);
                            }
                        }
                    })?;
                }
                (GroupBy::Interface, tier) => {
                    let Some(def) = tier.iface_table() else {
                        continue;
                    };
                    let table = txn.open_table(def)?;
                    for row in table.range(from.as_slice()..to.as_slice())? {
                        let (k, v) = row?;
                        let (_, ifindex, class) = layout::decode_iface_key(k.value())?;
                        if filter.process.is_none()
                            && filter.app.is_none()
                            && filter.class.is_none_or(|c| c == class)
                        {
                            add(
                                Group::Interface(ifindex),
                                layout::decode_traffic(v.value())?,
                            );
                        }
                    }
                }
                (_, Tier::Interval) => {
                    for_interval(&txn, &seg, |rec| {
                        for p in &rec.procs {
                            let id = rollup::interval_process(p);
                            let class = DestClass::from_byte(p.class).unwrap_or(DestClass::Unknown);
                            if keep(&id, class) {
                                add(group_of(group_by, id, class, &app_of), p.traffic);
                            }
                        }
                    })?;
                }
                (_, tier) => {
                    let Some(def) = tier.proc_table() else {
                        continue;
                    };
                    let table = txn.open_table(def)?;
                    for row in table.range(from.as_slice()..to.as_slice())? {
                        let (k, v) = row?;
                        let (_, id, class) = layout::decode_proc_key(k.value())?;
                        if keep(&id, class) {
                            add(
                                group_of(group_by, id, class, &app_of),
                                layout::decode_traffic(v.value())?,
                            );
                        }
                    }
                }
            }
        }
        let mut rows: Vec<TotalRow> = acc
            .into_iter()
            .map(|(group, traffic)| TotalRow { group, traffic })
            .collect();
        rows.sort_by(|a, b| {
            let total = |r: &TotalRow| r.traffic.tx.ip_bytes.saturating_add(r.traffic.rx.ip_bytes);
            total(b).cmp(&total(a)).then_with(|| a.group.cmp(&b.group))
        });
        Ok(rows)
    }

    /// Traffic per `step_ms` in `range`, read from the coarsest tier whose
    /// buckets divide the step (and that is still kept at `range.start`).
    /// Point `k` covers `[range.start + k*step, ...)`; a row counts in the
    /// point its key time falls in. Steps with no traffic are present (zero).
    ///
    /// # Errors
    /// On storage errors.
    pub fn series(
        &mut self,
        range: &TimeRange,
        step_ms: u64,
        filter: &Filter,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let step = step_ms.max(1);
        let purged = self.purge_map()?;
        let tier = Tier::ALL
            .iter()
            .rev()
            .copied()
            .find(|t| {
                let fits = t
                    .width_ms()
                    .is_none_or(|w| step.is_multiple_of(w) && range.start.is_multiple_of(w));
                fits && purged.get(t).copied().unwrap_or(0) <= range.start
            })
            .unwrap_or(Tier::Day);
        let procs = self.process_map()?;
        let app_of = |id: &ProcessId| app_name(procs.get(id), id);
        let keep = |id: &ProcessId, class: DestClass| {
            filter.process.is_none_or(|p| p == *id)
                && filter.class.is_none_or(|c| c == class)
                && filter.app.as_ref().is_none_or(|a| *a == app_of(id))
        };
        let n = usize::try_from(range.end.saturating_sub(range.start).div_ceil(step)).unwrap_or(0);
        let mut points: Vec<SeriesPoint> = (0..n)
            .map(|k| SeriesPoint {
                start_ms: range.start + k as u64 * step,
                traffic: Traffic::default(),
            })
            .collect();
        let mut add = |ts: TimeMs, t: Traffic| {
            if ts >= range.start
                && let Ok(k) = usize::try_from((ts - range.start) / step)
                && let Some(p) = points.get_mut(k)
            {
                p.traffic = p.traffic.add(t);
            }
        };
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let seg = Segment {
            tier,
            from: range.start,
            to: range.end,
        };
        if let Some(def) = tier.proc_table() {
            let table = txn.open_table(def)?;
            let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
            for row in table.range(from.as_slice()..to.as_slice())? {
                let (k, v) = row?;
                let (ts, id, class) = layout::decode_proc_key(k.value())?;
                if keep(&id, class) {
                    add(ts, layout::decode_traffic(v.value())?);
                }
            }
        } else {
            let mut rows = Vec::new();
            for_interval_keyed(&txn, &seg, |ts, rec| {
                for p in &rec.procs {
                    let class = DestClass::from_byte(p.class).unwrap_or(DestClass::Unknown);
                    if keep(&rollup::interval_process(p), class) {
                        rows.push((ts, p.traffic));
                    }
                }
            })?;
            for (ts, t) in rows {
                add(ts, t);
            }
        }
        Ok(points)
    }
}

/// The app name of a process without the config's rules (which only
/// `crate::query` applies): [`crate::ownership::ProcessInfo::default_app`].
fn app_name(rec: Option<&ProcessRecord>, id: &ProcessId) -> String {
    match rec {
        Some(r) => r.info.default_app(),
        None => format!("pid {}", id.pid),
    }
}

fn group_of(
    by: GroupBy,
    id: ProcessId,
    class: DestClass,
    app_of: &dyn Fn(&ProcessId) -> String,
) -> Group {
    match by {
        GroupBy::Process | GroupBy::Remote | GroupBy::Interface => Group::Process(id),
        GroupBy::App => Group::App(app_of(&id)),
        GroupBy::Class => Group::Class(class),
        GroupBy::Total => Group::Total,
    }
}

fn for_interval(
    txn: &redb::ReadTransaction,
    seg: &Segment,
    mut f: impl FnMut(&IntervalRecord),
) -> Result<(), StoreError> {
    for_interval_keyed(txn, seg, |_, rec| f(rec))
}

fn for_interval_keyed(
    txn: &redb::ReadTransaction,
    seg: &Segment,
    mut f: impl FnMut(TimeMs, &IntervalRecord),
) -> Result<(), StoreError> {
    let table = txn.open_table(layout::INTERVAL)?;
    let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
    for row in table.range(from.as_slice()..to.as_slice())? {
        let (k, v) = row?;
        let rec: IntervalRecord = layout::decode(v.value())?;
        f(layout::key_time(k.value())?, &rec);
    }
    Ok(())
}

/// Calls `f` with every TCP quality sample ([`layout::QUALITY`]) whose
/// drain time lies in `range`, in one read transaction.
///
/// # Errors
/// On storage errors.
pub fn quality_samples(
    store: &mut Store,
    range: &TimeRange,
    mut f: impl FnMut(&crate::store::QualitySample),
) -> Result<(), StoreError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(layout::QUALITY)?;
    let (from, to) = (layout::time_key(range.start), layout::time_key(range.end));
    for row in table.range(from.as_slice()..to.as_slice())? {
        let (_, v) = row?;
        let samples: Vec<crate::store::QualitySample> = layout::decode(v.value())?;
        samples.iter().for_each(&mut f);
    }
    Ok(())
}

/// The pending remote bytes of the committed snapshot: `(UTC minute start,
/// key, bytes)` per piece (see [`crate::store::RemotePending`]). Read them in
/// the same transaction as the `REMOTE_*` rows they complete.
///
/// # Errors
/// On storage errors.
pub fn pending_remote_rows(
    txn: &redb::ReadTransaction,
) -> Result<Vec<(TimeMs, RemoteKey, Traffic)>, StoreError> {
    let mut out = Vec::new();
    let names = crate::store::names::read_flow_names_in(txn)?;
    crate::store::read_snapshot(txn, |_, key, e| {
        let mut rk = e.pending.remote_key(&key);
        rk.name = names.get(&key).copied().unwrap_or_default();
        out.extend(e.pending.pieces().map(|(h, t)| (h, rk, t)));
    })?;
    Ok(out)
}

/// Sums of one tier's per process rows over all time, by process and class.
/// For tests and consistency checks ("every tier holds the same bytes").
///
/// # Errors
/// On storage errors.
pub fn tier_sums(
    store: &mut Store,
    tier: Tier,
) -> Result<BTreeMap<(ProcessId, DestClass), Traffic>, StoreError> {
    let mut out: BTreeMap<(ProcessId, DestClass), Traffic> = BTreeMap::new();
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let mut add = |id, class, t: Traffic| {
        let e = out.entry((id, class)).or_default();
        *e = e.add(t);
    };
    if let Some(def) = tier.proc_table() {
        let table = txn.open_table(def)?;
        for row in table.iter()? {
            let (k, v) = row?;
            let (_, id, class) = layout::decode_proc_key(k.value())?;
            add(id, class, layout::decode_traffic(v.value())?);
        }
    } else {
        for_interval(
            &txn,
            &Segment {
                tier,
                from: 0,
                to: u64::MAX,
            },
            |rec| {
                for p in &rec.procs {
                    add(
                        rollup::interval_process(p),
                        DestClass::from_byte(p.class).unwrap_or(DestClass::Unknown),
                        p.traffic,
                    );
                }
            },
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 60_000;
    const H: u64 = 3_600_000;
    const D: u64 = 86_400_000;

    fn covered(segs: &[Segment]) -> u64 {
        segs.iter().map(|s| s.to - s.from).sum()
    }

    #[test]
    fn plan_uses_coarse_tiers_for_whole_buckets() {
        let range = (D - 30 * M + 5)..(3 * D + 2 * H + 90_000);
        let segs = plan(&range, Tier::Interval, &|_| 0);
        assert_eq!(covered(&segs), range.end - range.start, "{segs:?}");
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Day && s.from == D && s.to == 3 * D)
        );
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Hour && s.from == 3 * D && s.to == 3 * D + 2 * H)
        );
        assert!(
            segs.iter()
                .any(|s| s.tier == Tier::Interval && s.from == range.start)
        );
        // Segments never overlap.
        let mut sorted = segs.clone();
        sorted.sort_by_key(|s| s.from);
        for w in sorted.windows(2) {
            assert!(w[0].to <= w[1].from, "{sorted:?}");
        }
    }

    #[test]
    fn plan_rounds_out_where_fine_tiers_are_purged() {
        let range = (10 * D + 5 * H + 7)..(12 * D);
        // Interval and minute tiers purged before day 11.
        let purged = |t: Tier| if t <= Tier::Minute { 11 * D } else { 0 };
        let segs = plan(&range, Tier::Interval, &purged);
        assert!(segs.iter().all(|s| s.tier >= Tier::Hour), "{segs:?}");
        assert_eq!(segs.iter().map(|s| s.from).min(), Some(10 * D + 5 * H));
    }

    #[test]
    fn plan_for_hour_only_data_rounds_to_hours() {
        let range = (H + 5)..(2 * H + 7);
        let segs = plan(&range, Tier::Hour, &|_| 0);
        assert_eq!(
            segs,
            vec![Segment {
                tier: Tier::Hour,
                from: H,
                to: 2 * H + 7
            }]
        );
    }
}
