//! Rule state and event history in the store (redb), beside the drain's
//! tables. No byte counts are stored here: accumulators are rebuilt from
//! the history at start ([`super::engine`]); only what fired, in which
//! cycle, since when.
//!
//! # Layout
//! - `alert_state_v1`: key = rule name (UTF-8), value = JSON of
//!   [`RuleState`]. One row per rule; a rule removed from the config keeps
//!   its row until a rule of that name comes back with another definition
//!   (its fingerprint differs, so its state starts fresh).
//! - `alert_events_v1`: key = `(time_unix_ms, seq)` (redb's tuple
//!   encoding; `seq` orders events of one interval), value = JSON of
//!   [`AlertEvent`]. The oldest rows beyond [`MAX_EVENTS`] are dropped.
//!
//! Every write is one durable transaction ([`commit`]): a state change and
//! its events are on disk together before any action runs.
use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable as _, ReadableTableMetadata as _, TableDefinition};

use crate::alerts::AlertError;
use crate::store::{Store, TimeMs};
use crate::wire::{AlertEvent, Alerts, RuleStatus, SCHEMA_VERSION};

/// Rule state by name.
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_state_v1");
/// Events by `(time_unix_ms, seq)`.
pub const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("alert_events_v1");
/// Events kept.
pub const MAX_EVENTS: u64 = 10_000;

/// What is remembered of a rule across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleState {
    /// Kind, for listings.
    pub kind: String,
    /// Of the definition this state belongs to.
    pub fingerprint: u64,
    /// Fired and not cleared (period and quota rules: fired this cycle).
    pub active: bool,
    /// Since when in the current state.
    pub since_ms: Option<TimeMs>,
    /// Last event.
    pub last_fired_ms: Option<TimeMs>,
    /// Events so far.
    pub fired_total: u64,
    /// Period or cycle the flags below belong to.
    pub cycle_start_ms: Option<TimeMs>,
    /// Quota levels fired in this cycle.
    pub levels_fired: Vec<u32>,
    /// Projection fired in this cycle.
    pub projected_fired: bool,
    /// new_app: apps already announced (or present when the rule began).
    pub known_apps: BTreeSet<String>,
}

impl RuleState {
    /// As `netmon alerts` lists it.
    #[must_use]
    pub fn status(&self, name: &str) -> RuleStatus {
        RuleStatus {
            name: name.to_owned(),
            kind: self.kind.clone(),
            active: self.active,
            since_unix_ms: self.since_ms,
            last_fired_unix_ms: self.last_fired_ms,
            fired_total: self.fired_total,
            cycle_start_unix_ms: self.cycle_start_ms,
            levels_fired_percent: self.levels_fired.clone(),
        }
    }
}

/// Every stored rule state (records that do not decode are left out).
///
/// # Errors
/// Storage errors.
pub fn load(store: &mut Store) -> Result<BTreeMap<String, RuleState>, AlertError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = match txn.open_table(STATE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = BTreeMap::new();
    for row in table.iter()? {
        let (k, v) = row?;
        // A record this build cannot read (written by another version)
        // starts that rule afresh rather than stopping the daemon.
        match serde_json::from_slice(v.value()) {
            Ok(s) => {
                out.insert(k.value().to_owned(), s);
            }
            Err(e) => {
                tracing::warn!(rule = k.value(), error = %e, "stored alert state unreadable; the rule starts afresh");
            }
        }
    }
    Ok(out)
}

/// Events at or after `since`, oldest first, at most `limit` (the newest).
///
/// # Errors
/// Storage errors; a record that does not decode.
pub fn events(
    store: &mut Store,
    since: TimeMs,
    limit: usize,
) -> Result<Vec<AlertEvent>, AlertError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.range((since, 0)..)?.rev().take(limit) {
        let (_, v) = row?;
        out.push(serde_json::from_slice(v.value())?);
    }
    out.reverse();
    Ok(out)
}

/// Writes `states` and appends `events` in one durable transaction.
/// `seq` numbers the events (the caller keeps it increasing).
///
/// # Errors
/// Storage errors: nothing is written.
pub fn commit(
    store: &mut Store,
    states: &[(&str, &RuleState)],
    events: &[AlertEvent],
    seq: &mut u64,
) -> Result<(), AlertError> {
    let db = store.db()?;
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(STATE)?;
        for (name, s) in states {
            let v = serde_json::to_vec(s)?;
            table.insert(*name, v.as_slice())?;
        }
        let mut ev = txn.open_table(EVENTS)?;
        for e in events {
            let v = serde_json::to_vec(e)?;
            *seq += 1;
            ev.insert((e.time_unix_ms, *seq), v.as_slice())?;
        }
        let excess = ev.len()?.saturating_sub(MAX_EVENTS);
        for _ in 0..excess {
            ev.pop_first()?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// The greatest stored event `seq` (0: none).
///
/// # Errors
/// Storage errors.
pub fn last_seq(store: &mut Store) -> Result<u64, AlertError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut max = 0;
    for row in table.iter()? {
        max = max.max(row?.0.value().1);
    }
    Ok(max)
}

/// Events listed when no limit is asked.
pub const DEFAULT_LIST: u64 = 1000;

/// `netmon alerts`: every stored rule state and the events since `since`.
///
/// # Errors
/// Storage errors; a record that does not decode.
pub fn listing(store: &mut Store, since: TimeMs, limit: Option<u64>) -> Result<Alerts, AlertError> {
    let rules = load(store)?
        .iter()
        .map(|(name, s)| s.status(name))
        .collect();
    let limit = usize::try_from(limit.unwrap_or(DEFAULT_LIST)).unwrap_or(usize::MAX);
    Ok(Alerts {
        schema_version: SCHEMA_VERSION,
        since_unix_ms: since,
        rules,
        events: events(store, since, limit)?,
    })
}
