//! Turns a [`Request`] into its document: parses the request's words,
//! runs the [`crate::query`], and builds the [`crate::wire`] types. The one
//! place query results become JSON documents (the server and the CLI's
//! direct-file path both call [`answer`]).
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::clock::rfc3339_from_unix_ms;
use crate::model::ProcessId;
use crate::query::facts::Facts;
use crate::query::scan;
use crate::query::series::{SeriesQuery, series};
use crate::query::terms::{Dimension, FilterTerm, GroupKey, parse_class, protocol_label};
use crate::query::usage::{UsageQuery, ip_total, usage};
use crate::query::window::{Coverage, Widening};
use crate::query::{AppRules, QueryError};
use crate::store::{DestClass, Store, TimeMs, Traffic};
use crate::wire::{
    self, Counters, ErrorBody, Export, ExportRow, GroupFields, History, HistoryPoint, Pong,
    ProcSeen, Procs, Request, Totals, Usage, UsageRow,
};

/// Any document [`answer`] gives.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// To [`Request::Ping`].
    Pong(Pong),
    /// To [`Request::Usage`].
    Usage(Usage),
    /// To [`Request::History`].
    History(History),
    /// To [`Request::Procs`].
    Procs(Procs),
    /// To [`Request::Export`].
    Export(Export),
    /// To [`Request::Events`].
    Events(wire::Events),
    /// To [`Request::Alerts`].
    Alerts(wire::Alerts),
    /// To [`Request::Devices`].
    Devices(wire::Devices),
    /// To [`Request::DeviceHistory`].
    DeviceHistory(wire::DeviceHistory),
}

/// Why a request got no document.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The request's words are wrong (unknown grouping, bad filter).
    #[error("{0}")]
    BadRequest(String),
    /// The query refused or failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl HandlerError {
    /// The error reply body.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        let kind = match self {
            Self::BadRequest(_) => "bad_request",
            Self::Query(QueryError::Invalid(_)) => "invalid",
            Self::Query(QueryError::Store(_)) => "internal",
        };
        ErrorBody {
            kind: kind.to_owned(),
            message: chain_text(self),
        }
    }
}

/// An error and its causes on one line (causes the text already holds are
/// skipped).
#[must_use]
pub fn chain_text(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !line.contains(&t) {
            line.push_str(": ");
            line.push_str(&t);
        }
        src = s.source();
    }
    line.replace('\n', " ")
}

fn filters_of(words: &[String]) -> Result<Vec<FilterTerm>, HandlerError> {
    words
        .iter()
        .map(|w| {
            w.parse::<FilterTerm>()
                .map_err(|e| HandlerError::BadRequest(e.to_string()))
        })
        .collect()
}

fn class_of(word: Option<&String>) -> Result<Option<DestClass>, HandlerError> {
    word.map(|w| parse_class(w).map_err(HandlerError::BadRequest))
        .transpose()
}

fn dimension_of(word: &str) -> Result<Dimension, HandlerError> {
    <Dimension as clap::ValueEnum>::from_str(word, false)
        .map_err(|_| HandlerError::BadRequest(format!("unknown grouping {word:?}")))
}

fn counters(t: &Traffic) -> (Counters, Counters) {
    (t.tx.into(), t.rx.into())
}

fn totals(t: &Traffic) -> Totals {
    let (tx, rx) = counters(t);
    Totals { tx, rx }
}

/// The key of the group of traffic without a server name (or, by
/// service, without a catalogue entry).
pub const NO_NAME: &str = "[no name]";

/// A group's one-string key and identity fields.
#[must_use]
pub fn group_fields(
    key: &GroupKey,
    facts: &Facts,
    ifnames: &HashMap<u32, String>,
) -> (String, GroupFields) {
    match key {
        GroupKey::Process(id) => {
            let f = facts.get(*id);
            let info = &f.record.info;
            (
                format!("{}:{}", id.pid, id.start_ticks),
                GroupFields {
                    pid: Some(id.pid),
                    start_ticks: Some(id.start_ticks),
                    comm: Some(info.comm.clone()),
                    exe: info.exe.clone(),
                    app: Some(f.app.clone()),
                    user: Some(f.user.clone()),
                    uid: Some(info.uid),
                    cgroup: info.cgroup.clone(),
                    container: f.record.unit.clone(),
                    cmdline: info.cmdline.clone(),
                    ..GroupFields::default()
                },
            )
        }
        GroupKey::App(a) => (
            a.clone(),
            GroupFields {
                app: Some(a.clone()),
                ..GroupFields::default()
            },
        ),
        GroupKey::User(u) => (
            u.clone(),
            GroupFields {
                user: Some(u.clone()),
                ..GroupFields::default()
            },
        ),
        GroupKey::Cgroup(c) => (
            c.clone().unwrap_or_else(|| "-".to_owned()),
            GroupFields {
                cgroup: c.clone(),
                ..GroupFields::default()
            },
        ),
        GroupKey::Container(c) => (
            c.clone().unwrap_or_else(|| "-".to_owned()),
            GroupFields {
                container: c.clone(),
                ..GroupFields::default()
            },
        ),
        GroupKey::Remote(ip) => (
            ip.to_string(),
            GroupFields {
                remote_addr: Some(*ip),
                ..GroupFields::default()
            },
        ),
        GroupKey::Port {
            protocol,
            port,
            dir,
        } => {
            let p = protocol_label(*protocol);
            let name = match dir.label() {
                Some(d) => format!("{p}/{port} {d}"),
                None => format!("{p}/{port}"),
            };
            (
                name,
                GroupFields {
                    protocol: Some(p),
                    // The service port is the remote one only outbound
                    // (and, for history without directions, as stored).
                    remote_port: (*dir != crate::store::ConnDir::In).then_some(*port),
                    service_port: Some(*port),
                    direction: dir.label().map(str::to_owned),
                    ..GroupFields::default()
                },
            )
        }
        GroupKey::Protocol(n) => {
            let p = protocol_label(*n);
            (
                p.clone(),
                GroupFields {
                    protocol: Some(p),
                    ..GroupFields::default()
                },
            )
        }
        GroupKey::Interface(i) => {
            let name = ifnames.get(i).cloned();
            (
                name.clone().unwrap_or_else(|| format!("if{i}")),
                GroupFields {
                    ifindex: Some(*i),
                    interface: name,
                    ..GroupFields::default()
                },
            )
        }
        GroupKey::Class(c) => (
            c.name().to_owned(),
            GroupFields {
                class: Some(c.name().to_owned()),
                ..GroupFields::default()
            },
        ),
        GroupKey::NoEndpoint => (
            crate::store::OVERFLOW_COMM.to_owned(),
            GroupFields {
                comm: Some(crate::store::OVERFLOW_COMM.to_owned()),
                ..GroupFields::default()
            },
        ),
        GroupKey::ServerName(n) => (
            n.clone().unwrap_or_else(|| NO_NAME.to_owned()),
            GroupFields {
                server_name: n.clone(),
                ..GroupFields::default()
            },
        ),
        GroupKey::Domain(n) => (
            n.clone().unwrap_or_else(|| NO_NAME.to_owned()),
            GroupFields {
                domain: n.clone(),
                ..GroupFields::default()
            },
        ),
        GroupKey::Service(n) => (
            n.clone().unwrap_or_else(|| NO_NAME.to_owned()),
            GroupFields {
                service: n.clone(),
                ..GroupFields::default()
            },
        ),
    }
}

/// One line saying why `coverage` is wider than the asked window (`None`
/// when it is exact); the covered time itself is in the document's
/// `covered_*` fields.
#[must_use]
pub fn coverage_note(coverage: &Coverage) -> Option<String> {
    let reasons: Vec<String> = coverage
        .widened
        .iter()
        .map(|w| match w {
            Widening::Purged(tier) => format!(
                "finer samples are purged at an edge, {} rows were read whole",
                tier.name()
            ),
            Widening::RemoteBuckets { tier, processes } => format!(
                "remote endpoints are kept per {}: {processes} process/class pair(s) had traffic on both \
                 sides of an edge to several endpoints and were counted for the whole {}",
                tier.name(),
                tier.name()
            ),
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Answers `req` from `store`.
///
/// # Errors
/// [`HandlerError`]: bad words, unanswerable questions, storage failures.
pub fn answer(store: &mut Store, apps: &AppRules, req: &Request) -> Result<Answer, HandlerError> {
    if let Request::Usage {
        from_ms, until_ms, ..
    }
    | Request::History {
        from_ms, until_ms, ..
    }
    | Request::Procs { from_ms, until_ms }
    | Request::Export {
        from_ms, until_ms, ..
    }
    | Request::Devices {
        from_ms, until_ms, ..
    }
    | Request::DeviceHistory {
        from_ms, until_ms, ..
    } = req
        && until_ms < from_ms
    {
        return Err(HandlerError::BadRequest(format!(
            "the window ends ({}) before it starts ({})",
            rfc3339_from_unix_ms(*until_ms),
            rfc3339_from_unix_ms(*from_ms)
        )));
    }
    match req {
        Request::Ping => Ok(Answer::Pong(Pong {
            schema_version: wire::SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            db: store.path().display().to_string(),
            latest_sample_unix_ms: scan::latest_sample(store)?,
            store: Some(store_status(store).map_err(QueryError::Store)?),
        })),
        Request::Usage {
            from_ms,
            until_ms,
            by,
            filters,
            class,
            limit,
        } => {
            let q = UsageQuery {
                range: *from_ms..*until_ms,
                by: dimension_of(by)?,
                filters: filters_of(filters)?,
                class: class_of(class.as_ref())?,
                limit: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            };
            let facts = Facts::load(store, apps)?;
            let mut a = usage(store, &facts, &q)?;
            let mut ifcounts = BTreeMap::new();
            let ifnames = if q.by == Dimension::Interface {
                ifcounts = crate::query::ifaces::add_to_usage(store, &q, &mut a)?;
                let mut names = crate::kernel::sysfs::interface_names();
                names.extend(
                    ifcounts
                        .iter()
                        .filter_map(|(i, w)| Some((*i, w.name.clone()?))),
                );
                names
            } else {
                HashMap::new()
            };
            let rows = a
                .groups
                .iter()
                .map(|g| {
                    let (key, mut fields) = group_fields(&g.key, &facts, &ifnames);
                    if let Some(first) = g.names.first() {
                        fields.server_name = Some(first.clone());
                        fields.server_names.clone_from(&g.names);
                    } else if let Some(name) = fields.remote_addr.and_then(crate::names::ptr::label)
                    {
                        // A remote without a stored name: its PTR name, a
                        // query-time label (`[names] reverse_lookup`).
                        fields.server_name = Some(name);
                        fields.name_source = Some("ptr".to_owned());
                    }
                    let (tx, rx) = counters(&g.traffic);
                    let q = g.quality.as_ref();
                    let ms = |us: Option<u32>| us.map(|us| f64::from(us) / 1000.0);
                    UsageRow {
                        key,
                        fields,
                        tx,
                        rx,
                        share: g.share,
                        rtt_p50_ms: ms(q.and_then(|q| q.rtt_p50_us)),
                        rtt_p95_ms: ms(q.and_then(|q| q.rtt_p95_us)),
                        retrans_segs: q.map(|q| q.retrans_segs),
                        data_segs_out: q.map(|q| q.data_segs),
                        retrans_rate: q.and_then(crate::query::usage::Quality::retrans_rate),
                        interface_counters: match &g.key {
                            GroupKey::Interface(i) => ifcounts.get(i).map(interface_traffic),
                            _ => None,
                        },
                    }
                })
                .collect();
            Ok(Answer::Usage(Usage {
                schema_version: wire::SCHEMA_VERSION,
                from: rfc3339_from_unix_ms(*from_ms),
                from_unix_ms: *from_ms,
                until: rfc3339_from_unix_ms(*until_ms),
                until_unix_ms: *until_ms,
                covered_from_unix_ms: a.coverage.covered.as_ref().map(|r| r.start),
                covered_until_unix_ms: a.coverage.covered.as_ref().map(|r| r.end),
                covered_from: a
                    .coverage
                    .covered
                    .as_ref()
                    .map(|r| rfc3339_from_unix_ms(r.start)),
                covered_until: a
                    .coverage
                    .covered
                    .as_ref()
                    .map(|r| rfc3339_from_unix_ms(r.end)),
                exact: a.coverage.exact(),
                note: coverage_note(&a.coverage),
                by: q.by.name().to_owned(),
                filters: q.filters.iter().map(ToString::to_string).collect(),
                class: q.class.map(|c| c.name().to_owned()),
                groups_total: a.groups_total as u64,
                rows,
                total: totals(&a.total),
            }))
        }
        Request::History {
            from_ms,
            until_ms,
            step_ms,
            filters,
            class,
        } => {
            let q = SeriesQuery {
                range: *from_ms..*until_ms,
                step_ms: *step_ms,
                filters: filters_of(filters)?,
                class: class_of(class.as_ref())?,
                now_ms: crate::query::window::now_ms(),
            };
            let facts = Facts::load(store, apps)?;
            let s = series(store, &facts, &q)?;
            Ok(Answer::History(History {
                schema_version: wire::SCHEMA_VERSION,
                from: rfc3339_from_unix_ms(s.range.start),
                from_unix_ms: s.range.start,
                until: rfc3339_from_unix_ms(s.range.end),
                until_unix_ms: s.range.end,
                step_ms: s.step_ms,
                tier: s.tier.name().to_owned(),
                filters: q.filters.iter().map(ToString::to_string).collect(),
                class: q.class.map(|c| c.name().to_owned()),
                points: s
                    .points
                    .iter()
                    .map(|p| {
                        let (tx, rx) = p.traffic.as_ref().map(counters).unzip();
                        HistoryPoint {
                            time: rfc3339_from_unix_ms(p.start),
                            time_unix_ms: p.start,
                            span_ms: p.span_ms,
                            tx,
                            rx,
                        }
                    })
                    .collect(),
                total: totals(&s.total),
                covered_from_unix_ms: s.coverage.covered.as_ref().map(|r| r.start),
                covered_until_unix_ms: s.coverage.covered.as_ref().map(|r| r.end),
                exact: s.coverage.exact(),
                note: coverage_note(&s.coverage),
            }))
        }
        Request::Procs { from_ms, until_ms } => {
            procs(store, apps, *from_ms, *until_ms).map(Answer::Procs)
        }
        Request::Export {
            from_ms,
            until_ms,
            filters,
            class,
            remote,
        } => export(
            store,
            apps,
            *from_ms..*until_ms,
            &filters_of(filters)?,
            class_of(class.as_ref())?,
            *remote,
        )
        .map(Answer::Export),
        Request::Events { from_ms, until_ms } => {
            events(store, *from_ms, *until_ms).map(Answer::Events)
        }
        Request::Alerts { since_ms, limit } => {
            crate::alerts::state::listing(store, *since_ms, *limit)
                .map(Answer::Alerts)
                .map_err(|e| match e {
                    crate::alerts::AlertError::Store(s) => {
                        HandlerError::Query(QueryError::Store(s))
                    }
                    e => HandlerError::BadRequest(e.to_string()),
                })
        }
        Request::Devices {
            from_ms,
            until_ms,
            device,
        } => {
            let naming = crate::devices::Naming::now();
            crate::query::devices::devices(
                store,
                &(*from_ms..*until_ms),
                &naming,
                device.as_deref(),
            )
            .map(|mut d| {
                ptr_device_names(&mut d);
                Answer::Devices(d)
            })
            .map_err(HandlerError::Query)
        }
        Request::DeviceHistory {
            from_ms,
            until_ms,
            step_ms,
            device,
        } => {
            let naming = crate::devices::Naming::now();
            crate::query::devices::series(store, &(*from_ms..*until_ms), *step_ms, &naming, device)
                .map(Answer::DeviceHistory)
                .map_err(HandlerError::Query)
        }
    }
}

/// Devices without a configured or leased name: the PTR name of one of
/// their addresses, a query-time label (`[names] reverse_lookup`,
/// [`crate::names::ptr`]); nothing when the lookup is off.
fn ptr_device_names(d: &mut wire::Devices) {
    for row in d.devices.iter_mut().filter(|r| r.name.is_none()) {
        if let Some(name) = row
            .addresses
            .iter()
            .find_map(|a| crate::names::ptr::label(*a))
        {
            row.name = Some(name);
            row.name_source = Some(crate::devices::NameSource::Ptr);
        }
    }
}

fn events(store: &mut Store, from: TimeMs, until: TimeMs) -> Result<wire::Events, HandlerError> {
    let rows = store
        .events(&(from..until))
        .map_err(QueryError::from)?
        .into_iter()
        .map(|(t, event)| {
            let mut details = match serde_json::to_value(&event) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            let kind = match details.remove("kind") {
                Some(serde_json::Value::String(k)) => k,
                _ => "unknown".to_owned(),
            };
            wire::EventRow {
                time: rfc3339_from_unix_ms(t),
                time_unix_ms: t,
                kind,
                details,
            }
        })
        .collect();
    Ok(wire::Events {
        schema_version: wire::SCHEMA_VERSION,
        from: rfc3339_from_unix_ms(from),
        from_unix_ms: from,
        until: rfc3339_from_unix_ms(until),
        until_unix_ms: until,
        events: rows,
    })
}

fn procs(
    store: &mut Store,
    apps: &AppRules,
    from: TimeMs,
    until: TimeMs,
) -> Result<Procs, HandlerError> {
    let facts = Facts::load(store, apps)?;
    let q = UsageQuery {
        range: from..until,
        by: Dimension::Process,
        filters: Vec::new(),
        class: None,
        limit: None,
    };
    let traffic: HashMap<ProcessId, Traffic> = usage(store, &facts, &q)?
        .groups
        .into_iter()
        .filter_map(|g| match g.key {
            GroupKey::Process(id) => Some((id, g.traffic)),
            _ => None,
        })
        .collect();
    let mut rows: Vec<(u64, ProcSeen)> = store
        .processes(&(from..until))
        .map_err(QueryError::from)?
        .into_iter()
        .map(|r| {
            let id = r.info.id;
            let t = traffic.get(&id).copied().unwrap_or_default();
            let (tx, rx) = counters(&t);
            let f = facts.get(id);
            let seen = ProcSeen {
                pid: id.pid,
                start_ticks: id.start_ticks,
                comm: r.info.comm,
                exe: r.info.exe,
                cmdline: r.info.cmdline,
                app: f.app,
                uid: r.info.uid,
                user: r.info.user,
                ppid: r.info.ppid,
                cgroup: r.info.cgroup,
                container: r.unit,
                first_seen: rfc3339_from_unix_ms(r.first_seen_ms),
                first_seen_unix_ms: r.first_seen_ms,
                last_seen: rfc3339_from_unix_ms(r.last_seen_ms),
                last_seen_unix_ms: r.last_seen_ms,
                tx,
                rx,
            };
            (ip_total(&t), seen)
        })
        .collect();
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| (a.1.pid, a.1.start_ticks).cmp(&(b.1.pid, b.1.start_ticks)))
    });
    Ok(Procs {
        schema_version: wire::SCHEMA_VERSION,
        from: rfc3339_from_unix_ms(from),
        from_unix_ms: from,
        until: rfc3339_from_unix_ms(until),
        until_unix_ms: until,
        processes: rows.into_iter().map(|(_, p)| p).collect(),
    })
}

fn export(
    store: &mut Store,
    apps: &AppRules,
    range: std::ops::Range<TimeMs>,
    filters: &[FilterTerm],
    class: Option<DestClass>,
    remote: bool,
) -> Result<Export, HandlerError> {
    let (from, until) = (range.start, range.end);
    let facts = Facts::load(store, apps)?;
    let rows = if remote {
        crate::query::export::export_remote(store, &facts, &range, filters, class)?
    } else {
        crate::query::export::export(store, &facts, &range, filters, class)?
    };
    let rows = rows
        .into_iter()
        .map(|e| {
            let remote = match (e.row.subject, &e.names) {
                (crate::query::scan::Subject::Remote(k), Some(n)) => Some(wire::ExportRemote {
                    remote_addr: crate::query::usage::remote_ip(&k),
                    service_port: k.port,
                    direction: k.dir.label().map(str::to_owned),
                    protocol: crate::query::terms::protocol_label(k.protocol),
                    server_name: n.server_name.clone(),
                    domain: n.domain.clone(),
                    service: n.service.clone(),
                }),
                _ => None,
            };
            let (r, id) = (e.row, e.id);
            ExportRow {
                time: rfc3339_from_unix_ms(r.ts),
                time_unix_ms: r.ts,
                tier: r.tier.name().to_owned(),
                pid: id.pid,
                start_ticks: id.start_ticks,
                comm: e.comm,
                app: e.app,
                user: e.user,
                class: r.class.name().to_owned(),
                tx_packets: r.traffic.tx.packets,
                tx_ip_bytes: r.traffic.tx.ip_bytes,
                tx_payload_bytes: r.traffic.tx.payload_bytes,
                tx_app_bytes: r.traffic.tx.app_bytes(),
                tx_retrans_bytes: r.traffic.tx.retrans_bytes,
                rx_packets: r.traffic.rx.packets,
                rx_ip_bytes: r.traffic.rx.ip_bytes,
                rx_payload_bytes: r.traffic.rx.payload_bytes,
                rx_app_bytes: r.traffic.rx.app_bytes(),
                rx_retrans_bytes: r.traffic.rx.retrans_bytes,
                remote,
            }
        })
        .collect();
    Ok(Export {
        schema_version: wire::SCHEMA_VERSION,
        from: rfc3339_from_unix_ms(from),
        from_unix_ms: from,
        until: rfc3339_from_unix_ms(until),
        until_unix_ms: until,
        rows,
    })
}

/// The store's size and rows per tier (in [`Pong`], shown by `netmon status`).
fn store_status(
    store: &mut crate::store::Store,
) -> Result<wire::StoreStatus, crate::store::StoreError> {
    let retention = *store.retention();
    let mut tiers = Vec::new();
    for t in store.tier_rows()? {
        tiers.push(wire::TierStatus {
            tier: t.tier.name().to_owned(),
            rows: t.rows,
            oldest_unix_ms: t.oldest_ms,
            keep_secs: retention.of(t.tier).map(|d| d.as_secs()),
            size_purged_before_unix_ms: store.size_purged_before(t.tier)?,
        });
    }
    Ok(wire::StoreStatus {
        file_bytes: store.file_size()?,
        max_size_bytes: retention.max_size,
        tiers,
    })
}

/// The wire form of an interface's counters over a window.
fn interface_traffic(w: &crate::query::ifaces::IfaceWindow) -> wire::InterfaceTraffic {
    use crate::query::ifaces::{Count, DirCounts};
    let c = |c: Count| wire::FrameCount {
        packets: c.packets,
        frame_bytes: c.bytes,
    };
    let d = |d: DirCounts| wire::InterfaceDirection {
        total: c(d.total),
        local_socket: c(d.local_socket),
        forwarded: c(d.forwarded),
        other_socket: c(d.other_socket),
        no_socket: c(d.no_socket),
    };
    wire::InterfaceTraffic {
        rx: d(w.rx),
        tx: d(w.tx),
    }
}
