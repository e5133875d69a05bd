//! Row scanners: every stored row of a kind whose time key lies in a set of
//! [`Segment`]s, handed to a closure. One read transaction per scan, so a
//! scan sees one committed state even while the daemon keeps committing.
//!
//! [`plan_for`] splits a time range into segments read from the coarsest
//! tier that holds whole buckets ([`crate::store::query::plan`]); a range
//! edge a kept tier cannot resolve is rounded outward (reported back as a
//! [`Coverage`], so answers say which time they really cover).
use std::sync::Arc;

use redb::ReadableTable as _;
use rustc_hash::FxHashMap;

use crate::model::ProcessId;
use crate::query::QueryError;
use crate::query::window::{Coverage, coverage_of};
use crate::store::layout::{self, IntervalRecord};
use crate::store::query::{Segment, pending_remote_rows, plan};
use crate::store::rollup::{self, Tier};
use crate::store::sums::{SumKey, SumRow};
use crate::store::{DestClass, RemoteKey, Store, TimeMs, TimeRange, Traffic};

/// What kind of rows a scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Per process and class (interval samples and process rollups).
    Process,
    /// Per process, remote address and service (minute, hour and day
    /// rollups).
    Remote,
    /// Per interface and class.
    Interface,
}

impl Kind {
    /// The finest tier holding this kind.
    #[must_use]
    pub const fn finest(self) -> Tier {
        match self {
            Self::Remote => Tier::Minute,
            Self::Process | Self::Interface => Tier::Interval,
        }
    }
}

/// One stored row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Key time: drain time for interval rows, bucket start for rollups.
    pub ts: TimeMs,
    /// Tier it was read from.
    pub tier: Tier,
    /// What the row is about.
    pub subject: Subject,
    /// Destination class.
    pub class: DestClass,
    /// Its traffic.
    pub traffic: Traffic,
}

/// Who a row counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A process.
    Process(ProcessId),
    /// A process and remote endpoint.
    Remote(RemoteKey),
    /// An interface.
    Interface(u32),
}

/// The segments a range is read from, and what they really cover (see
/// [`crate::query::window::coverage_of`]).
///
/// # Errors
/// On storage errors.
pub fn plan_for(
    store: &mut Store,
    range: &TimeRange,
    kind: Kind,
) -> Result<(Vec<Segment>, Coverage), QueryError> {
    let mut purged = [0; 4];
    for (slot, tier) in purged.iter_mut().zip(Tier::ALL) {
        *slot = store.purged_before(tier)?;
    }
    if kind == Kind::Remote {
        // The remote minute tier starts where the migration that created
        // it left off: earlier minutes read as purged (whole hours).
        purged[1] = purged[1].max(store.remote_minute_from()?);
    }
    let purged_fn = |t: Tier| {
        Tier::ALL
            .iter()
            .position(|x| *x == t)
            .and_then(|i| purged.get(i).copied())
            .unwrap_or(0)
    };
    let segs = plan(range, kind.finest(), &purged_fn);
    let coverage = coverage_of(range, &segs);
    Ok((segs, coverage))
}

/// Calls `f` with every row of `kind` in `segments`.
///
/// # Errors
/// On storage errors.
pub fn rows(
    store: &mut Store,
    segments: &[Segment],
    kind: Kind,
    mut f: impl FnMut(Row),
) -> Result<(), QueryError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    // Remote rows are completed by the snapshot's pending pieces (see
    // `crate::store::query`'s module docs), read once, in this transaction.
    let pending = if kind == Kind::Remote {
        pending_remote_rows(&txn)?
    } else {
        Vec::new()
    };
    for seg in segments {
        let (from, to) = (layout::time_key(seg.from), layout::time_key(seg.to));
        let range = from.as_slice()..to.as_slice();
        match (kind, seg.tier) {
            (Kind::Process | Kind::Interface, Tier::Interval) => {
                let table = txn.open_table(layout::INTERVAL)?;
                for row in table.range(range)? {
                    let (k, v) = row?;
                    let ts = layout::key_time(k.value())?;
                    let rec: IntervalRecord = layout::decode(v.value())?;
                    if kind == Kind::Process {
                        for p in &rec.procs {
                            f(Row {
                                ts,
                                tier: Tier::Interval,
                                subject: Subject::Process(rollup::interval_process(p)),
                                class: DestClass::from_byte(p.class).unwrap_or(DestClass::Unknown),
                                traffic: p.traffic,
                            });
                        }
                    } else {
                        for i in &rec.ifaces {
                            f(Row {
                                ts,
                                tier: Tier::Interval,
                                subject: Subject::Interface(i.ifindex),
                                class: DestClass::from_byte(i.class).unwrap_or(DestClass::Unknown),
                                traffic: i.traffic,
                            });
                        }
                    }
                }
            }
            (Kind::Process, tier) => {
                let Some(def) = tier.proc_table() else {
                    continue;
                };
                let table = txn.open_table(def)?;
                for row in table.range(range)? {
                    let (k, v) = row?;
                    let (ts, id, class) = layout::decode_proc_key(k.value())?;
                    let traffic = layout::decode_traffic(v.value())?;
                    f(Row {
                        ts,
                        tier,
                        subject: Subject::Process(id),
                        class,
                        traffic,
                    });
                }
            }
            (Kind::Remote, tier) => {
                let Some(def) = tier.remote_table() else {
                    continue;
                };
                for (minute, rk, traffic) in &pending {
                    let ts = tier.bucket(*minute);
                    if (seg.from..seg.to).contains(&ts) {
                        f(Row {
                            ts,
                            tier,
                            subject: Subject::Remote(*rk),
                            class: rk.class,
                            traffic: *traffic,
                        });
                    }
                }
                let table = txn.open_table(def)?;
                for row in table.range(range)? {
                    let (k, v) = row?;
                    let (ts, rk) = layout::decode_remote_key(k.value())?;
                    let traffic = layout::decode_traffic(v.value())?;
                    f(Row {
                        ts,
                        tier,
                        subject: Subject::Remote(rk),
                        class: rk.class,
                        traffic,
                    });
                }
            }
            (Kind::Interface, tier) => {
                let Some(def) = tier.iface_table() else {
                    continue;
                };
                let table = txn.open_table(def)?;
                for row in table.range(range)? {
                    let (k, v) = row?;
                    let (ts, ifindex, class) = layout::decode_iface_key(k.value())?;
                    let traffic = layout::decode_traffic(v.value())?;
                    f(Row {
                        ts,
                        tier,
                        subject: Subject::Interface(ifindex),
                        class,
                        traffic,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The time of the newest interval sample (`None` for an empty store).
///
/// # Errors
/// On storage errors.
pub fn latest_sample(store: &mut Store) -> Result<Option<TimeMs>, QueryError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(layout::INTERVAL)?;
    match table.last()? {
        Some((k, _)) => Ok(Some(layout::key_time(k.value())?)),
        None => Ok(None),
    }
}

/// Like [`rows`] for [`Kind::Process`], for readers that only add rows up
/// (no times): each segment's rows come summed per process and class
/// (`ts` = the segment's start), so a reader sees a few hundred rows per
/// segment instead of one per process and bucket. The sums of a closed
/// segment are kept by the store and reused ([`crate::store::sums`]);
/// every segment without kept sums is read in one transaction, as
/// [`rows`] reads; kept sums are of closed segments, which no commit
/// changes.
///
/// # Errors
/// On storage errors.
pub fn process_rows_summed(
    store: &mut Store,
    segments: &[Segment],
    mut f: impl FnMut(Row),
) -> Result<(), QueryError> {
    if !store.sums_mut().knows_newest() {
        let newest = latest_sample(store)?;
        store.sums_mut().found_newest(newest);
    }
    let emit = |f: &mut dyn FnMut(Row), seg: &Segment, rows: &[SumRow]| {
        for (id, class, traffic) in rows {
            f(Row {
                ts: seg.from,
                tier: seg.tier,
                subject: Subject::Process(*id),
                class: *class,
                traffic: *traffic,
            });
        }
    };
    // Per segment: kept sums, or read (with a key when closed, to keep the
    // sums).
    let mut to_read: Vec<(Segment, Option<SumKey>)> = Vec::new();
    for seg in segments {
        if !store.sums_mut().closed(seg.tier, seg.to) {
            to_read.push((*seg, None));
            continue;
        }
        let key = SumKey {
            tier: seg.tier,
            from: seg.from,
            to: seg.to,
            purged: store.purged_before(seg.tier)?,
        };
        match store.sums_mut().get(&key) {
            Some(kept) => emit(&mut f, seg, &kept),
            None => to_read.push((*seg, Some(key))),
        }
    }
    if to_read.is_empty() {
        return Ok(());
    }
    let segs: Vec<Segment> = to_read.iter().map(|(s, _)| *s).collect();
    let mut summed: Vec<FxHashMap<(ProcessId, DestClass), Traffic>> =
        vec![FxHashMap::default(); segs.len()];
    // Rows come segment by segment: `at` follows them. Segments of one
    // tier never overlap, so a row's tier and time name its segment.
    let mut at = 0;
    rows(store, &segs, Kind::Process, |row| {
        let here = |s: &Segment| s.tier == row.tier && (s.from..s.to).contains(&row.ts);
        if !segs.get(at).is_some_and(here) {
            match segs.iter().position(here) {
                Some(i) => at = i,
                // Not expected (rows come from the segments): handed on
                // as read rather than lost.
                None => return f(row),
            }
        }
        if let Subject::Process(id) = row.subject {
            let t = summed[at].entry((id, row.class)).or_default();
            *t = t.add(row.traffic);
        }
    })?;
    for ((seg, key), sums) in to_read.iter().zip(summed) {
        let rows: Arc<[SumRow]> = sums.into_iter().map(|((id, c), t)| (id, c, t)).collect();
        emit(&mut f, seg, &rows);
        if let Some(key) = key {
            store.sums_mut().insert(*key, rows);
        }
    }
    Ok(())
}

/// Sums of one tier's per process rows over all time, by process and class,
/// read with [`rows`] (the scan every answer uses). For consistency checks
/// and tests: "every tier holds the same bytes".
///
/// # Errors
/// On storage errors.
pub fn tier_sums(
    store: &mut Store,
    tier: Tier,
) -> Result<std::collections::BTreeMap<(ProcessId, DestClass), Traffic>, QueryError> {
    let mut out = std::collections::BTreeMap::<(ProcessId, DestClass), Traffic>::new();
    let all = Segment {
        tier,
        from: 0,
        to: u64::MAX,
    };
    rows(store, &[all], Kind::Process, |row| {
        if let Subject::Process(id) = row.subject {
            let e = out.entry((id, row.class)).or_default();
            *e = e.add(row.traffic);
        }
    })?;
    Ok(out)
}
