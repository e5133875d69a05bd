//! `netmon export`: the raw per process rows of a window (interval samples
//! and rollups, as the plan reads them), filtered by process-level terms and
//! class, in time order, with each row's process named. Plain data: the
//! socket API turns it into [`crate::wire::Export`].
//!
//! With `remote` ([`export_remote`]) the rows are the per process and
//! remote endpoint rollups instead (minute, hour and day: remote rows have
//! no interval tier), each with its remote address, service port,
//! direction, protocol and the server name its flows were opened to, with
//! that name's registered domain and service
//! ([`crate::query::domains::NameCache`], worked out as `usage --by
//! domain|service` does). Remote, port, protocol and name filters apply
//! there.
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{DestClass, ProcessId, TimeRange};
use crate::query::QueryError;
use crate::query::domains::{NameCache, NameFacts};
use crate::query::facts::Facts;
use crate::query::scan::{self, Kind, Row, Subject};
use crate::query::terms::{FilterKey, FilterTerm, parse_class};
use crate::query::usage::RowFilter;
use crate::store::Store;

/// One exported row: a stored per process row and its process's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRow {
    /// The stored row (its subject is always a process).
    pub row: Row,
    /// The row's process.
    pub id: ProcessId,
    /// Its `comm`.
    pub comm: String,
    /// Its app name (config rules applied).
    pub app: String,
    /// Its user name (or uid as text).
    pub user: String,
    /// Remote rows: the row's server name, domain and service.
    pub names: Option<Arc<NameFacts>>,
}

/// The rows of `range` that pass `filters` and `class`, oldest first (ties:
/// tier, process, class).
///
/// # Errors
/// [`QueryError::Invalid`] for a remote, port, protocol or interface filter
/// (export rows are per process and class); storage errors.
pub fn export(
    store: &mut Store,
    facts: &Facts,
    range: &TimeRange,
    filters: &[FilterTerm],
    class: Option<DestClass>,
) -> Result<Vec<ExportRow>, QueryError> {
    if filters
        .iter()
        .any(|t| t.key.needs_remote() || t.key == FilterKey::Interface)
    {
        return Err(QueryError::Invalid(
            "export rows are per process and class: filter by pid, app, comm, user, cgroup, container or class".to_owned(),
        ));
    }
    let (segments, _) = scan::plan_for(store, range, Kind::Process)?;
    let mut keep: HashMap<ProcessId, bool> = HashMap::new();
    let classes: Vec<DestClass> = class
        .into_iter()
        .chain(
            filters
                .iter()
                .filter(|t| t.key == FilterKey::Class)
                .filter_map(|t| parse_class(&t.value).ok()),
        )
        .collect();
    let mut raw: Vec<(Row, ProcessId)> = Vec::new();
    scan::rows(store, &segments, Kind::Process, |row| {
        let Subject::Process(id) = row.subject else {
            return;
        };
        let ok = *keep
            .entry(id)
            .or_insert_with(|| facts.get(id).passes(filters));
        if ok && classes.iter().all(|c| *c == row.class) {
            raw.push((row, id));
        }
    })?;
    raw.sort_by_key(|(r, id)| (r.ts, r.tier, *id, r.class));
    let mut names: HashMap<ProcessId, (String, String, String)> = HashMap::new();
    Ok(raw
        .into_iter()
        .map(|(row, id)| {
            let (comm, app, user) = names
                .entry(id)
                .or_insert_with(|| {
                    let f = facts.get(id);
                    (f.record.info.comm, f.app, f.user)
                })
                .clone();
            ExportRow {
                row,
                id,
                comm,
                app,
                user,
                names: None,
            }
        })
        .collect())
}

/// The remote rows of `range` that pass `filters` and `class`, oldest
/// first (ties: tier, process, remote key), each with its names.
///
/// # Errors
/// [`QueryError::Invalid`] for an interface filter; storage errors.
pub fn export_remote(
    store: &mut Store,
    facts: &Facts,
    range: &TimeRange,
    filters: &[FilterTerm],
    class: Option<DestClass>,
) -> Result<Vec<ExportRow>, QueryError> {
    if filters.iter().any(|t| t.key == FilterKey::Interface) {
        return Err(QueryError::Invalid(
            "remote rows are per process and remote endpoint: no interface filter".to_owned(),
        ));
    }
    let (segments, _) = scan::plan_for(store, range, Kind::Remote)?;
    let rows_filter = RowFilter::new(filters, class);
    let mut keep: HashMap<ProcessId, bool> = HashMap::new();
    let mut raw: Vec<Row> = Vec::new();
    scan::rows(store, &segments, Kind::Remote, |row| {
        let Subject::Remote(k) = row.subject else {
            return;
        };
        let ok = *keep
            .entry(k.process)
            .or_insert_with(|| facts.get(k.process).passes(filters));
        if ok && rows_filter.class_ok(row.class) && rows_filter.remote_ok(&k) {
            raw.push(row);
        }
    })?;
    let key = |r: &Row| match r.subject {
        Subject::Remote(k) => Some((
            k.process,
            k.addr,
            k.port,
            k.protocol,
            k.dir.to_byte(),
            k.name,
        )),
        _ => None,
    };
    raw.sort_by(|a, b| {
        (a.ts, a.tier)
            .cmp(&(b.ts, b.tier))
            .then_with(|| key(a).cmp(&key(b)))
    });
    let cache = NameCache::default();
    let mut procs: HashMap<ProcessId, (String, String, String)> = HashMap::new();
    Ok(raw
        .into_iter()
        .filter_map(|row| {
            let Subject::Remote(k) = row.subject else {
                return None;
            };
            let (comm, app, user) = procs
                .entry(k.process)
                .or_insert_with(|| {
                    let f = facts.get(k.process);
                    (f.record.info.comm, f.app, f.user)
                })
                .clone();
            Some(ExportRow {
                row,
                id: k.process,
                comm,
                app,
                user,
                names: Some(cache.facts(k.name)),
            })
        })
        .collect())
}
