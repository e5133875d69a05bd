//! What is known about each stored process, with the derived names queries
//! group and filter by (app, user, container), computed once per query.
use std::collections::HashMap;

use crate::model::ProcessId;
use crate::query::QueryError;
use crate::query::apps::AppRules;
use crate::query::terms::{Dimension, FilterKey, FilterTerm, GroupKey, parse_pid};
use crate::store::types::pseudo_process;
use crate::store::{
    OVERFLOW, OVERFLOW_COMM, ProcessRecord, Store, UNATTRIBUTED, UNATTRIBUTED_COMM,
};

/// What pseudo-processes (pid 0: `[unattributed]`, `[overflow]`) show as
/// their user: they are no user's traffic.
pub const NO_USER: &str = "-";

/// The user name queries group and filter by: the name, else the uid as
/// text, and [`NO_USER`] for the pseudo-processes (pid 0).
#[must_use]
pub fn user_of(info: &crate::model::ProcessInfo) -> String {
    if info.id.pid == 0 {
        return NO_USER.to_owned();
    }
    info.user.clone().unwrap_or_else(|| info.uid.to_string())
}

/// One process and its derived names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcFacts {
    /// The stored record.
    pub record: ProcessRecord,
    /// App name (config rules, else executable name).
    pub app: String,
    /// User name, else the uid as text.
    pub user: String,
}

/// Every stored process, by identity.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    procs: HashMap<ProcessId, ProcFacts>,
}

impl Facts {
    /// Reads every process record of the store.
    ///
    /// # Errors
    /// On storage errors.
    pub fn load(store: &mut Store, apps: &AppRules) -> Result<Self, QueryError> {
        let records = store.processes(&(0..u64::MAX))?;
        Ok(Self::from_records(records, apps))
    }

    /// Builds from records.
    #[must_use]
    pub fn from_records(records: Vec<ProcessRecord>, apps: &AppRules) -> Self {
        let procs = records
            .into_iter()
            .map(|record| {
                let app = apps.app_of(&record.info, record.unit.as_deref());
                let user = user_of(&record.info);
                (record.info.id, ProcFacts { record, app, user })
            })
            .collect();
        Self { procs }
    }

    /// Facts of `id`; a placeholder for processes with no record (pseudo
    /// processes, or rows whose record was never written).
    #[must_use]
    pub fn get(&self, id: ProcessId) -> ProcFacts {
        if let Some(f) = self.procs.get(&id) {
            return f.clone();
        }
        let comm = if id == UNATTRIBUTED {
            UNATTRIBUTED_COMM.to_owned()
        } else if id == OVERFLOW {
            OVERFLOW_COMM.to_owned()
        } else {
            format!("pid {}", id.pid)
        };
        let info = pseudo_process(id, &comm);
        ProcFacts {
            app: comm.clone(),
            // No record, no user known.
            user: NO_USER.to_owned(),
            record: ProcessRecord {
                info,
                unit: None,
                first_seen_ms: 0,
                last_seen_ms: 0,
            },
        }
    }

    /// Borrowed facts of `id`, if it has a record.
    #[must_use]
    pub fn lookup(&self, id: &ProcessId) -> Option<&ProcFacts> {
        self.procs.get(id)
    }

    /// Every process with a record.
    pub fn iter(&self) -> impl Iterator<Item = &ProcFacts> {
        self.procs.values()
    }
}

impl ProcFacts {
    /// True if this process passes every process-level term of `filters`.
    #[must_use]
    pub fn passes(&self, filters: &[FilterTerm]) -> bool {
        let info = &self.record.info;
        filters
            .iter()
            .filter(|t| t.key.is_process())
            .all(|t| match t.key {
                FilterKey::Pid => match parse_pid(&t.value) {
                    Ok((pid, ticks)) => {
                        pid == info.id.pid && ticks.is_none_or(|s| s == info.id.start_ticks)
                    }
                    Err(_) => false,
                },
                FilterKey::App => self.app == t.value,
                FilterKey::Comm => info.comm == t.value,
                FilterKey::User => {
                    self.user == t.value || (info.id.pid != 0 && info.uid.to_string() == t.value)
                }
                FilterKey::Cgroup => info.cgroup.as_deref().is_some_and(|cg| {
                    let want = t.value.trim_end_matches('/');
                    cg == want
                        || (cg.starts_with(want) && cg.as_bytes().get(want.len()) == Some(&b'/'))
                }),
                FilterKey::Container => self.record.unit.as_deref() == Some(t.value.as_str()),
                _ => true,
            })
    }

    /// The group this process belongs to under a process-level dimension
    /// (`None` for the other dimensions).
    #[must_use]
    pub fn group(&self, by: Dimension) -> Option<GroupKey> {
        let info = &self.record.info;
        Some(match by {
            Dimension::Process => GroupKey::Process(info.id),
            Dimension::App => GroupKey::App(self.app.clone()),
            Dimension::User => GroupKey::User(self.user.clone()),
            Dimension::Cgroup => GroupKey::Cgroup(info.cgroup.clone()),
            Dimension::Container => GroupKey::Container(self.record.unit.clone()),
            _ => return None,
        })
    }
}
