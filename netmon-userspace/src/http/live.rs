//! `GET /api/v1/live?by=GROUPING&limit=N`: Server-Sent Events, one
//! [`crate::wire::Top`] document per event (the rows `netmon top --format
//! ndjson` prints: rates over the last interval, totals since the stream's
//! producer started), one event per `max(drain interval, 1 s)`.
//!
//! One producer per grouping serves every stream of that grouping: each
//! interval it asks the store (through [`crate::api::handler::answer`], the
//! socket's `usage`) for exactly the samples committed since its previous
//! question, the window ending just after the newest committed sample so
//! no drain can land behind it, adds them to its running totals and turns
//! them into rows with `netmon top`'s own rate code. Documents go out on a
//! bounded broadcast channel: a stream that does not keep up skips
//! documents (it never holds the producer, the store or the drain), and
//! the producer stops when its last stream closes. Live rates need
//! per-interval rows, so the groupings are those interval samples carry
//! (process, app, user, cgroup, container, class); the others are
//! rolled up per hour and get 400.
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse as _, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use crate::api::Handle;
use crate::api::handler::{self, Answer};
use crate::cli::top::{Cumulative, Rates, counters_back};
use crate::clock::now_rfc3339;
use crate::http::api::{ApiFailure, Params};
use crate::http::{AppState, MAX_STREAMS};
use crate::query::scan;
use crate::query::terms::Dimension;
use crate::store::Traffic;
use crate::wire::{self, Request, Top};

/// Groupings a live stream can have.
pub const LIVE_GROUPINGS: [Dimension; 6] = [
    Dimension::Process,
    Dimension::App,
    Dimension::User,
    Dimension::Cgroup,
    Dimension::Container,
    Dimension::Class,
];

/// Documents a slow stream may fall behind before it skips.
const BACKLOG: usize = 4;

type Feeds = Arc<Mutex<HashMap<&'static str, broadcast::Sender<Arc<Top>>>>>;

/// The live producers and the stream slots.
pub struct Live {
    handle: Handle,
    every: Duration,
    feeds: Feeds,
    streams: Arc<Semaphore>,
}

impl Live {
    /// Producers reading `handle`, one document per `max(interval, 1 s)`.
    #[must_use]
    pub fn new(handle: Handle, interval: Duration) -> Self {
        Self {
            handle,
            every: interval.max(Duration::from_secs(1)),
            feeds: Arc::new(Mutex::new(HashMap::new())),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Joins (or starts) the producer of `by`.
    fn subscribe(&self, by: Dimension) -> broadcast::Receiver<Arc<Top>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = feeds.get(by.name()) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        feeds.insert(by.name(), tx.clone());
        tokio::spawn(produce(
            tx,
            by,
            self.handle.clone(),
            self.every,
            Arc::clone(&self.feeds),
        ));
        rx
    }
}

/// Newest committed sample + 1 (the end of a window holding every commit so
/// far), and the usage rows of `[from, that end)` when `from` is given.
fn read(
    handle: &Handle,
    by: Dimension,
    from: Option<u64>,
) -> Result<(u64, Vec<wire::UsageRow>), String> {
    let mut store = handle.store.lock().unwrap_or_else(PoisonError::into_inner);
    let until = scan::latest_sample(&mut store)
        .map_err(|e| e.to_string())?
        .map_or_else(|| now_rfc3339().1, |t| t + 1);
    let Some(from) = from.filter(|f| *f < until) else {
        return Ok((from.unwrap_or(until).max(until), Vec::new()));
    };
    let req = Request::Usage {
        from_ms: from,
        until_ms: until,
        by: by.name().to_owned(),
        filters: Vec::new(),
        class: None,
        limit: None,
    };
    match handler::answer(&mut store, &handle.apps, &req) {
        Ok(Answer::Usage(u)) => Ok((until, u.rows)),
        Ok(_) => Err("unexpected answer".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn produce(
    tx: broadcast::Sender<Arc<Top>>,
    by: Dimension,
    handle: Handle,
    every: Duration,
    feeds: Feeds,
) {
    let h = handle.clone();
    let Ok(Ok((since, _))) = tokio::task::spawn_blocking(move || read(&h, by, None)).await else {
        tracing::warn!("live stream: the store cannot be read");
        feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(by.name());
        return;
    };
    let mut totals: HashMap<String, Cumulative> = HashMap::new();
    let mut rates = Rates::new((since, HashMap::new()));
    let mut until = since;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        {
            let mut f = feeds.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                f.remove(by.name());
                return;
            }
        }
        let h = handle.clone();
        let from = until;
        let rows = match tokio::task::spawn_blocking(move || read(&h, by, Some(from))).await {
            Ok(Ok((end, rows))) => {
                until = end;
                rows
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "live stream: reading the store");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "live stream: query task failed");
                continue;
            }
        };
        for r in rows {
            let delta = Traffic {
                tx: counters_back(&r.tx),
                rx: counters_back(&r.rx),
            };
            let e = totals.entry(r.key).or_insert_with(|| Cumulative {
                fields: r.fields.clone(),
                traffic: Traffic::default(),
            });
            e.fields = r.fields;
            e.traffic = e.traffic.add(delta);
        }
        let (dt, rows) = rates.step((until, totals.clone()));
        let (taken_at, taken_at_unix_ms) = now_rfc3339();
        let doc = Top {
            schema_version: wire::SCHEMA_VERSION,
            taken_at,
            taken_at_unix_ms,
            since_unix_ms: since,
            interval_ms: dt,
            by: by.name().to_owned(),
            source: "daemon".to_owned(),
            rows,
        };
        // No receiver left is seen at the next tick.
        let _ = tx.send(Arc::new(doc));
    }
}

/// `GET /api/v1/live`.
pub async fn stream(State(state): State<AppState>, uri: Uri) -> Response {
    let parsed = (|| {
        let p = Params::parse(&uri, &["by", "limit"])?;
        let word = p.get("by").unwrap_or("process");
        let by = LIVE_GROUPINGS
            .into_iter()
            .find(|d| d.name() == word)
            .ok_or_else(|| {
                ApiFailure::bad(format!(
                    "by: live rates are per process, app, user, cgroup, container or class, not {word:?}"
                ))
            })?;
        let limit = p
            .number("limit")?
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok::<_, ApiFailure>((by, limit))
    })();
    let (by, limit) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Ok(permit) = Arc::clone(&state.0.live.streams).try_acquire_owned() else {
        return ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_STREAMS} live streams are open; close one"),
        )
        .into_response();
    };
    let rx = state.0.live.subscribe(by);
    let events = futures_util::stream::unfold(
        (rx, permit, limit),
        |(mut rx, permit, limit): (broadcast::Receiver<Arc<Top>>, OwnedSemaphorePermit, usize)| async move {
            loop {
                match rx.recv().await {
                    Ok(doc) => {
                        let mut d = (*doc).clone();
                        d.rows.truncate(limit);
                        let event = Event::default().json_data(&d).unwrap_or_else(|e| {
                            Event::default().event("error").data(e.to_string())
                        });
                        return Some((Ok::<_, Infallible>(event), (rx, permit, limit)));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
