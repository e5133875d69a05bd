//! `netmon top`: live rates per group, refreshed every interval.
//!
//! Where the numbers come from (`--source`, default `auto`):
//! - `daemon`: when the daemon answers on the socket, `top` asks it for the
//!   totals since `top` started (a `usage` request from the start to now)
//!   and divides the growth between two refreshes by the time between them.
//!   Totals are exactly the committed deltas; a rate covers what the daemon
//!   committed during the refresh, so a refresh shorter than the daemon's
//!   interval (default 1 s both) makes rates jump. Groups that need
//!   remote endpoints (remote, port, protocol) are resolved to the same
//!   start from the per process rows ([`crate::query::edges`]).
//! - `kernel`: without a daemon, two consecutive readings of the pinned maps
//!   (needs root), owners from the ownership resolver. Totals are the growth
//!   of the per-flow counters since `top` started.
//!
//! On a terminal: a full-screen view (ratatui), sortable by tx (`t`), rx
//! (`r`) or both (`b`), `?` lists the keys and columns, quit with `q`;
//! processes with no controlling terminal (`/proc/PID/stat` tty_nr 0:
//! daemons, background jobs) are marked `bg` and shown in yellow. Totals
//! count from the moment `top` started, for every `--by` (the footer
//! says so). Piped: one compact JSON document per refresh (NDJSON).
//! `--once`: one document after one interval.
use std::collections::HashMap;
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::ApiError;
use crate::api::client::Client;
use crate::api::handler::group_fields;
use crate::cli::conn::{ConnArgs, denied_message};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes};
use crate::cli::render;
use crate::clock::now_rfc3339;
use crate::kernel::reader::KernelSource;
use crate::ownership::Resolver as _;
use crate::query::AppRules;
use crate::query::facts::Facts;
use crate::query::terms::{Dimension, GroupKey};
use crate::source::CounterSource as _;
use crate::store::class::{classify_raw, raw_to_ip};
use crate::store::{ProcessRecord, Traffic, unit_of_cgroup};
use crate::wire::{self, Counters, GroupFields, Request, Top, TopRow, Usage};

/// Where `top` reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopSource {
    /// The daemon if it answers, else the kernel maps.
    Auto,
    /// The daemon's store through the socket.
    Daemon,
    /// The pinned kernel maps (root).
    Kernel,
}

/// `netmon top` arguments.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Group by.
    #[arg(long, value_enum, default_value = "process")]
    pub by: Dimension,
    /// Refresh interval.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Print one document after one interval and exit.
    #[arg(long)]
    pub once: bool,
    /// Stop after this many documents (piped output).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Show the N busiest groups only.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// Where the numbers come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: TopSource,
    /// bpffs directory of the pinned maps (kernel source).
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One cumulative group total.
#[derive(Clone, Debug)]
pub(crate) struct Cumulative {
    pub(crate) fields: GroupFields,
    pub(crate) traffic: Traffic,
}

/// A reading: cumulative totals by group key, at a time (ms).
pub(crate) type Reading = (u64, HashMap<String, Cumulative>);

/// Something that gives cumulative totals.
enum Feed {
    Daemon {
        client: Client,
        since_ms: u64,
        by: Dimension,
    },
    Kernel {
        source: Box<KernelSource>,
        resolver: Box<crate::ownership::kernel::KernelResolver>,
        apps: AppRules,
        by: Dimension,
    },
}

impl Feed {
    fn name(&self) -> &'static str {
        match self {
            Self::Daemon { .. } => "daemon",
            Self::Kernel { .. } => "kernel",
        }
    }

    fn read(&mut self) -> anyhow::Result<Reading> {
        match self {
            Self::Daemon {
                client,
                since_ms,
                by,
            } => {
                let now = now_rfc3339().1.max(*since_ms);
                let doc: Usage = client.call(&Request::Usage {
                    from_ms: *since_ms,
                    until_ms: now,
                    by: by.name().to_owned(),
                    filters: Vec::new(),
                    class: None,
                    limit: None,
                })?;
                let map = doc
                    .rows
                    .into_iter()
                    .map(|r| {
                        let traffic = Traffic {
                            tx: counters_back(&r.tx),
                            rx: counters_back(&r.rx),
                        };
                        (
                            r.key,
                            Cumulative {
                                fields: r.fields,
                                traffic,
                            },
                        )
                    })
                    .collect();
                Ok((now, map))
            }
            Self::Kernel {
                source,
                resolver,
                apps,
                by,
            } => {
                let reading = source.read()?;
                let now = now_rfc3339().1;
                let owners = resolver.resolve(&reading);
                let records: Vec<ProcessRecord> = owners
                    .values()
                    .map(|info| ProcessRecord {
                        unit: info.cgroup.as_deref().and_then(unit_of_cgroup),
                        info: info.clone(),
                        first_seen_ms: 0,
                        last_seen_ms: 0,
                    })
                    .collect();
                let facts = Facts::from_records(records, apps);
                let ifnames = HashMap::new();
                let mut map: HashMap<String, Cumulative> = HashMap::new();
                for flow in &reading.flows {
                    let (k, v) = (&flow.key, &flow.value);
                    let owner = owners
                        .get(&k.cookie)
                        .map_or(crate::store::UNATTRIBUTED, |o| o.id);
                    let key = match by {
                        Dimension::Remote => {
                            GroupKey::Remote(raw_to_ip(&k.remote_addr, k.ip_version))
                        }
                        Dimension::Port => {
                            let (dir, port) = crate::store::service_of(k, v);
                            GroupKey::Port {
                                protocol: k.protocol,
                                port,
                                dir,
                            }
                        }
                        Dimension::Protocol => GroupKey::Protocol(k.protocol),
                        Dimension::Interface => GroupKey::Interface(v.ifindex),
                        Dimension::Class => {
                            GroupKey::Class(classify_raw(&k.remote_addr, k.ip_version, v.ifindex))
                        }
                        _ => facts
                            .get(owner)
                            .group(*by)
                            .unwrap_or(GroupKey::Process(owner)),
                    };
                    let (name, fields) = group_fields(&key, &facts, &ifnames);
                    let e = map.entry(name).or_insert_with(|| Cumulative {
                        fields,
                        traffic: Traffic::default(),
                    });
                    e.traffic = e.traffic.add(Traffic { tx: v.tx, rx: v.rx });
                }
                Ok((now, map))
            }
        }
    }
}

pub(crate) fn counters_back(c: &Counters) -> netmon_common::DirCounters {
    netmon_common::DirCounters {
        packets: c.packets,
        ip_bytes: c.ip_bytes,
        payload_bytes: c.payload_bytes,
        retrans_bytes: c.retrans_bytes,
    }
}

fn sub(a: Traffic, b: Traffic) -> Traffic {
    let d =
        |x: netmon_common::DirCounters, y: netmon_common::DirCounters| netmon_common::DirCounters {
            packets: x.packets.saturating_sub(y.packets),
            ip_bytes: x.ip_bytes.saturating_sub(y.ip_bytes),
            payload_bytes: x.payload_bytes.saturating_sub(y.payload_bytes),
            retrans_bytes: x.retrans_bytes.saturating_sub(y.retrans_bytes),
        };
    Traffic {
        tx: d(a.tx, b.tx),
        rx: d(a.rx, b.rx),
    }
}

/// Turns successive cumulative readings into rows: totals since the first
/// reading, rates since the previous one.
pub(crate) struct Rates {
    base: HashMap<String, Traffic>,
    prev: Reading,
}

impl Rates {
    pub(crate) fn new(first: Reading) -> Self {
        Self {
            base: first
                .1
                .iter()
                .map(|(k, c)| (k.clone(), c.traffic))
                .collect(),
            prev: first,
        }
    }

    pub(crate) fn step(&mut self, cur: Reading) -> (u64, Vec<TopRow>) {
        let dt_ms = cur.0.saturating_sub(self.prev.0);
        let secs = dt_ms as f64 / 1000.0;
        let mut rows: Vec<TopRow> = cur
            .1
            .iter()
            .map(|(key, c)| {
                let total = sub(c.traffic, self.base.get(key).copied().unwrap_or_default());
                let delta = sub(
                    c.traffic,
                    self.prev.1.get(key).map(|p| p.traffic).unwrap_or_default(),
                );
                let rate = |b: u64| if secs > 0.0 { b as f64 / secs } else { 0.0 };
                TopRow {
                    key: key.clone(),
                    no_tty: c
                        .fields
                        .pid
                        .zip(c.fields.start_ticks)
                        .and_then(|(p, s)| no_tty(p, s)),
                    fields: c.fields.clone(),
                    tx_bytes_per_sec: rate(delta.tx.payload_bytes),
                    rx_bytes_per_sec: rate(delta.rx.payload_bytes),
                    tx: total.tx.into(),
                    rx: total.rx.into(),
                }
            })
            .filter(|r| r.tx.packets + r.rx.packets > 0)
            .collect();
        sort(&mut rows, Sort::Total);
        self.prev = cur;
        (dt_ms, rows)
    }
}

/// Sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Sent rate.
    Tx,
    /// Received rate.
    Rx,
    /// Both.
    Total,
}

/// Sorts rows by `by`, busiest first.
pub fn sort(rows: &mut [TopRow], by: Sort) {
    let score = |r: &TopRow| match by {
        Sort::Tx => (r.tx_bytes_per_sec, r.tx.payload_bytes),
        Sort::Rx => (r.rx_bytes_per_sec, r.rx.payload_bytes),
        Sort::Total => (
            r.tx_bytes_per_sec + r.rx_bytes_per_sec,
            r.tx.payload_bytes + r.rx.payload_bytes,
        ),
    };
    rows.sort_by(|a, b| {
        let (sa, sb) = (score(a), score(b));
        sb.0.total_cmp(&sa.0)
            .then(sb.1.cmp(&sa.1))
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// True when the process `pid` started at `start_ticks` has no controlling
/// terminal; `None` when it is gone (or pid 0).
fn no_tty(pid: u32, start_ticks: u64) -> Option<bool> {
    if pid == 0 {
        return None;
    }
    let stat = procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()?;
    (stat.starttime == start_ticks).then_some(stat.tty_nr == 0)
}

fn open_feed(args: &TopArgs, since_ms: u64) -> anyhow::Result<Feed> {
    if args.source != TopSource::Kernel {
        match Client::connect(&args.conn.socket) {
            Ok(client) => {
                return Ok(Feed::Daemon {
                    client,
                    since_ms,
                    by: args.by,
                });
            }
            Err(ApiError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                anyhow::bail!(denied_message(&args.conn.socket))
            }
            Err(e) if args.source == TopSource::Daemon => return Err(e.into()),
            Err(_) => {}
        }
    }
    let source = KernelSource::open(&args.pin_dir).with_context(|| {
        format!(
            "no daemon answers on {} and the kernel counters at {} cannot be read",
            args.conn.socket.display(),
            args.pin_dir.display()
        )
    })?;
    let apps = crate::config::load(args.conn.config.as_deref())
        .map(|f| f.apps)
        .unwrap_or_default();
    Ok(Feed::Kernel {
        source: Box::new(source),
        resolver: Box::new(
            crate::ownership::kernel::KernelResolver::new().with_exec_map(&args.pin_dir),
        ),
        apps,
        by: args.by,
    })
}

/// Runs `netmon top`.
///
/// # Errors
/// No source, read errors, output errors.
pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    let since_ms = now_rfc3339().1;
    let mut feed = open_feed(args, since_ms)?;
    // Piped without --format: one compact document per refresh.
    let format =
        if args.output.format.is_none() && !args.output.json && !std::io::stdout().is_terminal() {
            Format::Ndjson
        } else {
            args.output.resolve()
        };
    let tui = !args.once && format == Format::Table && std::io::stdout().is_terminal();
    let mut rates = Rates::new(feed.read()?);
    let doc = |dt: u64, mut rows: Vec<TopRow>, feed: &Feed| {
        if let Some(n) = args.limit {
            rows.truncate(n);
        }
        let (taken_at, taken_at_unix_ms) = now_rfc3339();
        Top {
            schema_version: wire::SCHEMA_VERSION,
            taken_at,
            taken_at_unix_ms,
            since_unix_ms: since_ms,
            interval_ms: dt,
            by: args.by.name().to_owned(),
            source: feed.name().to_owned(),
            rows,
        }
    };
    if tui {
        return tui::run(&mut feed, &mut rates, args, &doc);
    }
    let mut printed = 0u64;
    loop {
        std::thread::sleep(args.interval);
        let (dt, rows) = rates.step(feed.read()?);
        let d = doc(dt, rows, &feed);
        let mut out = std::io::stdout().lock();
        write(&mut out, &d, format, args.output.bytes)?;
        out.flush()?;
        printed += 1;
        if args.once || args.count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
    }
}

/// Writes one document.
///
/// # Errors
/// I/O errors.
pub fn write(out: &mut dyn Write, doc: &Top, format: Format, raw: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => render::json(out, doc),
        Format::Ndjson => render::json_line(out, doc),
        Format::Csv => {
            let mut header = vec!["key"];
            header.extend(render::GROUP_COLUMNS);
            header.extend(["no_tty", "tx_bytes_per_sec", "rx_bytes_per_sec"]);
            header.extend(render::COUNTER_COLUMNS);
            let rows = doc.rows.iter().map(|r| {
                let mut cells = vec![r.key.clone()];
                cells.extend(render::group_cells(&r.fields));
                cells.push(r.no_tty.map(|b| b.to_string()).unwrap_or_default());
                cells.push(format!("{:.1}", r.tx_bytes_per_sec));
                cells.push(format!("{:.1}", r.rx_bytes_per_sec));
                cells.extend(render::counter_cells(&r.tx, &r.rx));
                cells
            });
            render::csv(out, &header, rows)
        }
        Format::Table => {
            out.write_all(table(doc, raw, crate::cli::output::terminal_width()).as_bytes())?;
            Ok(())
        }
    }
}

fn label(r: &TopRow) -> String {
    match (&r.fields.pid, &r.fields.comm) {
        (Some(pid), Some(comm)) => format!("{pid} {comm}"),
        _ => crate::cli::usage::remote_cell(&r.key, &r.fields),
    }
}

/// A plain table of one document (`--once` on a terminal), fitted to
/// `width`, and a line saying what the totals cover.
#[must_use]
pub fn table(doc: &Top, raw: bool, width: Option<usize>) -> String {
    let mut t = Table::new(
        &[
            doc.by.to_uppercase().as_str(),
            "TX/S",
            "RX/S",
            "TX TOTAL",
            "RX TOTAL",
            "BG",
        ],
        &[false, true, true, true, true, false],
    )
    .shrinkable(0)
    .fit(width);
    for r in &doc.rows {
        t.row(row_cells(r, raw));
    }
    let mut s = t.render();
    s.push('\n');
    s.push_str(&render::wrap(
        &format!(
            "rates over the last {} · totals since {} (start of top) · bg: no controlling terminal",
            crate::query::series::step_name(doc.interval_ms.max(1)),
            render::short_time(&crate::clock::rfc3339_from_unix_ms(doc.since_unix_ms)),
        ),
        width,
    ));
    s
}

/// The cells of one row (as the table and the full-screen view show it).
#[must_use]
pub fn row_cells(r: &TopRow, raw: bool) -> Vec<String> {
    vec![
        label(r),
        crate::cli::history::rate(r.tx_bytes_per_sec as u64, 1.0, raw),
        crate::cli::history::rate(r.rx_bytes_per_sec as u64, 1.0, raw),
        human_bytes(r.tx.payload_bytes, raw),
        human_bytes(r.rx.payload_bytes, raw),
        if r.no_tty == Some(true) {
            "bg".to_owned()
        } else {
            String::new()
        },
    ]
}

/// The full-screen view.
pub mod tui {
    use ratatui::Frame;
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
    use ratatui::layout::{Constraint, Layout, Rect};
    use ratatui::style::{Modifier, Style, Stylize as _};
    use ratatui::text::Line;
    use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};

    use super::{Feed, Rates, Sort, TopArgs, row_cells, sort};
    use crate::wire::{Top, TopRow};

    /// What `?` shows.
    pub const HELP: [&str; 9] = [
        "t      sort by sent rate (TX/S)",
        "r      sort by received rate (RX/S)",
        "b      sort by both (default)",
        "?      show or hide this help",
        "q Esc  quit",
        "",
        "TX/S, RX/S: payload bytes per second over the last refresh",
        "TX, RX TOTAL: payload bytes since top started",
        "bg (yellow): no controlling terminal (a daemon or background job)",
    ];

    /// The screen's state besides the data.
    #[derive(Clone, Copy, Debug)]
    pub struct View {
        /// Sort order.
        pub order: Sort,
        /// `?` pressed: the key help is shown.
        pub help: bool,
        /// Raw byte counts.
        pub raw: bool,
    }

    /// Draws one frame: the table (or "measuring"), a footer saying what the
    /// totals cover and the keys, and the help box when asked.
    pub fn draw(f: &mut Frame, doc: Option<&Top>, view: View) {
        let [main, foot] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
        match doc {
            None => f.render_widget(Block::bordered().title(" netmon top · measuring… "), main),
            Some(d) => {
                let mut rows = d.rows.clone();
                sort(&mut rows, view.order);
                let header = Row::new([
                    d.by.to_uppercase(),
                    "TX/S".into(),
                    "RX/S".into(),
                    "TX TOTAL".into(),
                    "RX TOTAL".into(),
                    "BG".into(),
                ])
                .style(Style::new().add_modifier(Modifier::BOLD));
                let body = rows.iter().map(|r: &TopRow| {
                    let row = Row::new(row_cells(r, view.raw));
                    if r.no_tty == Some(true) {
                        row.yellow()
                    } else {
                        row
                    }
                });
                let widths = [
                    Constraint::Min(16),
                    Constraint::Length(11),
                    Constraint::Length(11),
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Length(2),
                ];
                let title = format!(
                    " netmon top · by {} · sort {} · {} ",
                    d.by,
                    match view.order {
                        Sort::Tx => "tx",
                        Sort::Rx => "rx",
                        Sort::Total => "tx+rx",
                    },
                    d.source
                );
                f.render_widget(
                    Table::new(body, widths)
                        .header(header)
                        .block(Block::bordered().title(title)),
                    main,
                );
            }
        }
        let since = doc.map_or_else(String::new, |d| {
            let t = crate::clock::rfc3339_from_unix_ms(d.since_unix_ms);
            format!(
                "totals since {} UTC (start of top) · ",
                t.get(11..19).unwrap_or(&t)
            )
        });
        f.render_widget(
            Paragraph::new(format!("{since}bg: no terminal · ? keys · q quit")),
            foot,
        );
        if view.help {
            let w = u16::try_from(HELP.iter().map(|l| l.len()).max().unwrap_or(0) + 4)
                .unwrap_or(u16::MAX)
                .min(f.area().width);
            let h = u16::try_from(HELP.len() + 2)
                .unwrap_or(u16::MAX)
                .min(f.area().height);
            let area = Rect {
                x: f.area().width.saturating_sub(w) / 2,
                y: f.area().height.saturating_sub(h) / 2,
                width: w,
                height: h,
            };
            f.render_widget(Clear, area);
            f.render_widget(
                Paragraph::new(HELP.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
                    .block(Block::bordered().title(" keys (? closes) ")),
                area,
            );
        }
    }

    pub(super) fn run(
        feed: &mut Feed,
        rates: &mut Rates,
        args: &TopArgs,
        doc: &dyn Fn(u64, Vec<TopRow>, &Feed) -> Top,
    ) -> anyhow::Result<()> {
        let mut terminal = ratatui::try_init()?;
        let result = (|| -> anyhow::Result<()> {
            let mut view = View {
                order: Sort::Total,
                help: false,
                raw: args.output.bytes,
            };
            let mut current: Option<Top> = None;
            let mut next = std::time::Instant::now() + args.interval;
            loop {
                terminal.draw(|f| draw(f, current.as_ref(), view))?;
                let wait = next.saturating_duration_since(std::time::Instant::now());
                if event::poll(wait)? {
                    if let Event::Key(k) = event::read()?
                        && k.kind == KeyEventKind::Press
                    {
                        match k.code {
                            KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                            KeyCode::Char('t') => view.order = Sort::Tx,
                            KeyCode::Char('r') => view.order = Sort::Rx,
                            KeyCode::Char('b') => view.order = Sort::Total,
                            KeyCode::Char('?' | 'h') => view.help = !view.help,
                            _ => {}
                        }
                    }
                    continue;
                }
                next = std::time::Instant::now() + args.interval;
                let (dt, rows) = rates.step(feed.read()?);
                current = Some(doc(dt, rows, feed));
            }
        })();
        ratatui::restore();
        result
    }
}
