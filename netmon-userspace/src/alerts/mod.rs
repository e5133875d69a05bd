//! Alerts, data caps, billing cycles and cost.
//!
//! Rules and the tariff come from `config.toml` ([`config`]); the daemon
//! evaluates the rules after each committed drain step ([`Alerts::after_drain`],
//! [`engine`]) from that step's per process deltas (and, for rules scoped by
//! endpoint or watching RTT and retransmissions, the step's per endpoint rows
//! and TCP samples read back through the query layer), keeps what fired in the
//! store ([`state`]) and runs the actions on their own threads ([`actions`]).
//! `netmon alerts`, `netmon cost` and `netmon quota` read the same history
//! through the query layer ([`crate::cli::alerts`], [`cost`]).
//!
//! Where this departs from "state commits with the drain's transaction":
//! the state is committed in its own durable transaction right after the
//! drain's, and the engine's sums are rebuilt from the history at start.
//! [`engine`]'s module docs prove that this fires each notice once across
//! crashes; it keeps the drain (shared by several features) free of alert
//! code.
pub mod actions;
pub mod config;
pub mod cost;
pub mod cycle;
pub mod engine;
pub mod state;

use crate::drain::StepReport;
use crate::query::{AppRules, QueryError};
use crate::store::{Store, StoreError, TimeMs};

/// Errors of the alert engine.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored alert record does not decode.
    #[error("alert record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    /// Seeding from the history failed.
    #[error("reading the history for alerts: {0}")]
    Query(#[from] QueryError),
    /// An action worker could not start.
    #[error("starting the alert actions: {0}")]
    Thread(#[from] std::io::Error),
}

macro_rules! redb_into_alert {
    ($($t:ty),*) => {$(
        impl From<$t> for AlertError {
            fn from(e: $t) -> Self {
                Self::Store(e.into())
            }
        }
    )*};
}
redb_into_alert!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The engine and its action workers, as the daemon runs them.
#[derive(Debug)]
pub struct Alerts {
    engine: engine::Engine,
    dispatcher: actions::Dispatcher,
    /// Rule name → action indices.
    routes: std::collections::HashMap<String, Vec<usize>>,
}

impl Alerts {
    /// Starts the engine (seeded from `store` up to `now`) and the action
    /// workers; `None` when no rule is configured.
    ///
    /// # Errors
    /// Storage errors while seeding, a worker thread that cannot start.
    pub fn start(
        compiled: &config::Compiled,
        apps: AppRules,
        store: &mut Store,
        now: TimeMs,
    ) -> Result<Option<Self>, AlertError> {
        if compiled.rules.is_empty() {
            return Ok(None);
        }
        let engine = engine::Engine::start(compiled, apps, store, now)?;
        let dispatcher = actions::Dispatcher::start(&compiled.actions)?;
        let routes = compiled
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.actions.clone()))
            .collect();
        tracing::info!(rules = engine.rules(), "alert rules loaded");
        Ok(Some(Self {
            engine,
            dispatcher,
            routes,
        }))
    }

    /// Evaluates a committed step, stores what fired, queues the actions.
    pub fn after_drain(&mut self, store: &mut Store, report: &StepReport) {
        for ev in self.engine.step(store, report.ts_ms, &report.per_process) {
            tracing::info!(rule = %ev.rule, transition = %ev.transition, "{}", ev.message);
            if let Some(idx) = self.routes.get(&ev.rule) {
                self.dispatcher.send(&ev, idx);
            }
        }
    }
}
