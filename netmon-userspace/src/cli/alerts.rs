//! `netmon alerts` (rule states and events), `netmon alerts check FILE`,
//! `netmon cost` and `netmon quota`.
//!
//! Cost and quota are computed here from `usage` answers (the daemon's or
//! the file's, [`Backend`]) and the config file's `[tariff]`: the same
//! totals `netmon usage --class internet` shows, priced.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::alerts::config::{Compiled, Cycle, Period, Tariff, compile};
use crate::alerts::{cost, cycle};
use crate::cli::conn::{Backend, ConnArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes};
use crate::cli::render;
use crate::query::window::{TimeArg, now_ms};
use crate::store::TimeMs;
use crate::wire::{Alerts, Cost, CostRow, Quota, Request, SCHEMA_VERSION, Usage};

/// `netmon alerts` arguments.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// What to do (default: list rules and recent events).
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
    /// Events since (a duration before now or an RFC 3339 time).
    #[arg(long, value_name = "WHEN", default_value = "7d")]
    pub since: TimeArg,
    /// At most this many events (the newest).
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `netmon alerts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Check a config file's `[alerts]` and `[tariff]` without starting
    /// anything; errors name the line.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// `netmon cost` arguments.
#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// Which period.
    #[arg(long, value_enum, default_value = "cycle")]
    pub period: CostPeriod,
    /// Per app.
    #[arg(long, value_enum)]
    pub by: Option<CostBy>,
    /// Under the tariff of this interface (`[tariff.interface.NAME]`).
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `netmon cost --period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CostPeriod {
    /// The current billing cycle.
    Cycle,
    /// This calendar month.
    Month,
    /// Today.
    Day,
}

/// `netmon cost --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CostBy {
    /// Application.
    App,
}

/// `netmon quota` arguments.
#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    /// Under the tariff of this interface (`[tariff.interface.NAME]`).
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon alerts`.
///
/// # Errors
/// A bad file (check), connection and output errors.
pub fn run_alerts(args: &AlertsArgs) -> anyhow::Result<()> {
    if let Some(AlertsCommand::Check { file }) = &args.command {
        let c = check(file)?;
        println!(
            "{}: ok ({} rules, {} actions{})",
            file.display(),
            c.rules.len(),
            c.actions.len(),
            match (c.tariff.is_some(), c.iface_tariffs.len()) {
                (false, 0) => String::new(),
                (true, 0) => ", a tariff".to_owned(),
                (t, n) => format!(
                    ", {}{n} interface tariff{}",
                    if t { "a tariff and " } else { "" },
                    if n == 1 { "" } else { "s" }
                ),
            }
        );
        return Ok(());
    }
    let req = Request::Alerts {
        since_ms: args.since.resolve(now_ms()),
        limit: args.limit,
    };
    let doc: Alerts = Backend::connect(&args.conn)?.call(&req)?;
    let mut out = std::io::stdout().lock();
    match args.output.resolve() {
        Format::Json => render::json(&mut out, &doc)?,
        Format::Ndjson => render::ndjson_rows(&mut out, &doc.events)?,
        Format::Csv => {
            let rows = doc.events.iter().map(|e| {
                vec![
                    e.time.clone(),
                    e.rule.clone(),
                    e.kind.clone(),
                    e.transition.clone(),
                    e.message.clone(),
                ]
            });
            render::csv(
                &mut out,
                &["time", "rule", "kind", "transition", "message"],
                rows,
            )?;
        }
        Format::Table => {
            let mut t = Table::new(
                &["RULE", "KIND", "STATE", "SINCE", "FIRED"],
                &[false, false, false, false, true],
            );
            for r in &doc.rules {
                t.row(vec![
                    r.name.clone(),
                    r.kind.clone(),
                    if r.active { "active" } else { "quiet" }.to_owned(),
                    r.since_unix_ms
                        .map(|s| render::short_time(&crate::clock::rfc3339_from_unix_ms(s)))
                        .unwrap_or_default(),
                    r.fired_total.to_string(),
                ]);
            }
            out.write_all(t.render().as_bytes())?;
            writeln!(
                out,
                "\n{} events since {}",
                doc.events.len(),
                render::short_time(&crate::clock::rfc3339_from_unix_ms(doc.since_unix_ms))
            )?;
            for e in &doc.events {
                writeln!(out, "{}  {}", render::short_time(&e.time), e.message)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Reads and checks a config file.
///
/// # Errors
/// One line naming the file and the line.
pub fn check(file: &std::path::Path) -> anyhow::Result<Compiled> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = crate::config::parse(&text, file)?;
    compile(&parsed.alerts, parsed.tariff.as_ref(), &text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn tariff_of(conn: &ConnArgs, interface: Option<&str>) -> anyhow::Result<Tariff> {
    let path = conn
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    let file = crate::config::load(conn.config.as_deref())?;
    let c = compile(&file.alerts, file.tariff.as_ref(), "")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(t) = c.tariff_for(interface) {
        return Ok(t.clone());
    }
    let names: Vec<&str> = c
        .iface_tariffs
        .iter()
        .filter_map(|t| t.interface.as_deref())
        .collect();
    Err(match interface {
        Some(i) => anyhow::anyhow!(
            "no [tariff.interface.{i}] in {} (interface tariffs: {})",
            path.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ),
        None if !names.is_empty() => anyhow::anyhow!(
            "{} has tariffs for single interfaces only: add --interface {}",
            path.display(),
            names.join("|")
        ),
        None => anyhow::anyhow!(
            "no [tariff] in {}: add one (price_per_gib, included, cap, reset_day; see `netmon alerts check`)",
            path.display()
        ),
    })
}

/// Bytes (IP, both directions) of the tariff's classes in `[from, until)`,
/// per app when `by_app`.
fn used(
    backend: &mut Backend,
    t: &Tariff,
    from: TimeMs,
    until: TimeMs,
    by_app: bool,
) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
    let mut total = 0u64;
    let mut per = BTreeMap::new();
    if until <= from {
        return Ok((0, per));
    }
    if by_app && let Some(i) = &t.interface {
        anyhow::bail!(
            "interface {i}'s traffic is kept per interface, not per app: no --by app with --interface"
        );
    }
    for c in &t.classes {
        let doc: Usage = backend.call(&Request::Usage {
            from_ms: from,
            until_ms: until,
            by: if by_app { "app" } else { "class" }.to_owned(),
            filters: t
                .interface
                .iter()
                .map(|i| format!("interface={i}"))
                .collect(),
            class: Some(c.name().to_owned()),
            limit: None,
        })?;
        total = total
            .saturating_add(doc.total.tx.ip_bytes)
            .saturating_add(doc.total.rx.ip_bytes);
        if by_app {
            for r in doc.rows {
                let e = per.entry(r.key).or_insert(0u64);
                *e = e
                    .saturating_add(r.tx.ip_bytes)
                    .saturating_add(r.rx.ip_bytes);
            }
        }
    }
    Ok((total, per))
}

/// The cost document at `now`.
///
/// # Errors
/// Connection and query errors.
pub fn cost_doc(
    backend: &mut Backend,
    t: &Tariff,
    period: CostPeriod,
    by_app: bool,
    now: TimeMs,
) -> anyhow::Result<Cost> {
    let range = match period {
        CostPeriod::Cycle => cycle::bounds(&t.cycle, &t.tz, now),
        CostPeriod::Month => cycle::bounds(&Cycle::Calendar(Period::Month), &t.tz, now),
        CostPeriod::Day => cycle::bounds(&Cycle::Calendar(Period::Day), &t.tz, now),
    };
    let until = now.saturating_add(1).min(range.end);
    // Split at cycle boundaries; price each piece as what it added to its
    // cycle's bill.
    let mut price = 0.0;
    let mut at = range.start;
    while at < until {
        let cyc = cycle::bounds(&t.cycle, &t.tz, at);
        let end = cyc.end.min(until);
        let (before, _) = used(backend, t, cyc.start, at, false)?;
        let (piece, _) = used(backend, t, at, end, false)?;
        price += cost::added(t, before, before.saturating_add(piece));
        at = end.max(at.saturating_add(1));
    }
    let (total, per) = used(backend, t, range.start, until, by_app)?;
    let projected = cost::project(
        total,
        until.saturating_sub(range.start),
        range.end - range.start,
    );
    let projected_cost = match period {
        CostPeriod::Cycle => cost::bill(t, projected),
        // Outside a cycle's own span: priced at this period's average.
        _ if total > 0 => {
            #[expect(clippy::cast_precision_loss, reason = "money")]
            let p = price * projected as f64 / total as f64;
            p
        }
        _ => 0.0,
    };
    let mut rows: Vec<CostRow> = per
        .into_iter()
        .map(|(key, b)| CostRow {
            key,
            used_bytes: b,
            #[expect(clippy::cast_precision_loss, reason = "money")]
            cost: if total > 0 {
                price * b as f64 / total as f64
            } else {
                0.0
            },
        })
        .collect();
    rows.sort_by(|a, b| b.used_bytes.cmp(&a.used_bytes).then(a.key.cmp(&b.key)));
    Ok(Cost {
        schema_version: SCHEMA_VERSION,
        period: match period {
            CostPeriod::Cycle => "cycle",
            CostPeriod::Month => "month",
            CostPeriod::Day => "day",
        }
        .to_owned(),
        from: cycle::local_time(range.start, &t.tz),
        from_unix_ms: range.start,
        until: cycle::local_time(range.end, &t.tz),
        until_unix_ms: range.end,
        currency: t.currency.clone(),
        interface: t.interface.clone(),
        classes: t.classes.iter().map(|c| c.name().to_owned()).collect(),
        used_bytes: total,
        cost: price,
        projected_bytes: projected,
        projected_cost,
        rows,
    })
}

/// The quota document at `now`.
///
/// # Errors
/// No cap; connection and query errors.
pub fn quota_doc(backend: &mut Backend, t: &Tariff, now: TimeMs) -> anyhow::Result<Quota> {
    let cap = t.cap.ok_or_else(|| match &t.interface {
        Some(i) => anyhow::anyhow!("[tariff.interface.{i}] has no cap = \"SIZE\""),
        None => anyhow::anyhow!("the [tariff] has no cap = \"SIZE\""),
    })?;
    let range = cycle::bounds(&t.cycle, &t.tz, now);
    let until = now.saturating_add(1).min(range.end);
    let (used_bytes, _) = used(backend, t, range.start, until, false)?;
    let remaining = cap.saturating_sub(used_bytes);
    let left_ms = range.end.saturating_sub(now);
    let whole_days = left_ms.div_ceil(86_400_000).max(1);
    #[expect(clippy::cast_precision_loss, reason = "display figures")]
    let (percent, days_left) = (
        used_bytes as f64 * 100.0 / cap as f64,
        left_ms as f64 / 86_400_000.0,
    );
    Ok(Quota {
        schema_version: SCHEMA_VERSION,
        cycle_start: cycle::local_time(range.start, &t.tz),
        cycle_start_unix_ms: range.start,
        cycle_end: cycle::local_time(range.end, &t.tz),
        cycle_end_unix_ms: range.end,
        interface: t.interface.clone(),
        classes: t.classes.iter().map(|c| c.name().to_owned()).collect(),
        cap_bytes: cap,
        used_bytes,
        remaining_bytes: remaining,
        used_percent: percent,
        days_left,
        daily_budget_bytes: remaining / whole_days,
        projected_bytes: cost::project(
            used_bytes,
            until.saturating_sub(range.start),
            range.end - range.start,
        ),
    })
}

/// Runs `netmon cost`.
///
/// # Errors
/// No tariff; connection, query and output errors.
pub fn run_cost(args: &CostArgs) -> anyhow::Result<()> {
    let t = tariff_of(&args.conn, args.interface.as_deref())?;
    let mut backend = Backend::connect(&args.conn)?;
    let doc = cost_doc(&mut backend, &t, args.period, args.by.is_some(), now_ms())?;
    let raw = args.output.bytes;
    let mut out = std::io::stdout().lock();
    match args.output.resolve() {
        Format::Json => render::json(&mut out, &doc)?,
        Format::Ndjson => render::json_line(&mut out, &doc)?,
        Format::Csv => {
            let mut rows = vec![vec![
                "total".to_owned(),
                doc.used_bytes.to_string(),
                format!("{:.4}", doc.cost),
            ]];
            rows.extend(doc.rows.iter().map(|r| {
                vec![
                    r.key.clone(),
                    r.used_bytes.to_string(),
                    format!("{:.4}", r.cost),
                ]
            }));
            render::csv(&mut out, &["key", "used_bytes", "cost"], rows)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{} {} → {}: {} used, {:.2} {cur}; projected {} , {:.2} {cur}",
                doc.period,
                render::short_time(&doc.from),
                render::short_time(&doc.until),
                human_bytes(doc.used_bytes, raw),
                doc.cost,
                human_bytes(doc.projected_bytes, raw),
                doc.projected_cost,
                cur = doc.currency
            )?;
            if !doc.rows.is_empty() {
                let mut t = Table::new(&["APP", "USED", "COST"], &[false, true, true]);
                for r in &doc.rows {
                    t.row(vec![
                        r.key.clone(),
                        human_bytes(r.used_bytes, raw),
                        format!("{:.2}", r.cost),
                    ]);
                }
                out.write_all(t.render().as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `netmon quota`.
///
/// # Errors
/// No tariff or cap; connection, query and output errors.
pub fn run_quota(args: &QuotaArgs) -> anyhow::Result<()> {
    let t = tariff_of(&args.conn, args.interface.as_deref())?;
    let mut backend = Backend::connect(&args.conn)?;
    let doc = quota_doc(&mut backend, &t, now_ms())?;
    let raw = args.output.bytes;
    let mut out = std::io::stdout().lock();
    match args.output.resolve() {
        Format::Json => render::json(&mut out, &doc)?,
        Format::Ndjson => render::json_line(&mut out, &doc)?,
        Format::Csv => render::csv(
            &mut out,
            &[
                "used_bytes",
                "cap_bytes",
                "remaining_bytes",
                "used_percent",
                "days_left",
                "daily_budget_bytes",
            ],
            std::iter::once(vec![
                doc.used_bytes.to_string(),
                doc.cap_bytes.to_string(),
                doc.remaining_bytes.to_string(),
                format!("{:.3}", doc.used_percent),
                format!("{:.3}", doc.days_left),
                doc.daily_budget_bytes.to_string(),
            ]),
        )?,
        Format::Table => writeln!(
            out,
            "{} of {} used ({:.1}%), {} left for {:.1} days: {} a day; projected {} (cycle {} → {})",
            human_bytes(doc.used_bytes, raw),
            human_bytes(doc.cap_bytes, raw),
            doc.used_percent,
            human_bytes(doc.remaining_bytes, raw),
            doc.days_left,
            human_bytes(doc.daily_budget_bytes, raw),
            human_bytes(doc.projected_bytes, raw),
            render::short_time(&doc.cycle_start),
            render::short_time(&doc.cycle_end),
        )?,
    }
    out.flush()?;
    Ok(())
}
