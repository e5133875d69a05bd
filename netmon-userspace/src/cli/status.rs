//! `netmon status`: health of the kernel side.
use std::path::PathBuf;

use aya::programs::ProgramInfo;
use netmon_common::names::{MAP_CLOSED, MAP_FLOWS, PROGRAMS};

use crate::{
    cli::output::{Format, OutputArgs, Table, human_bytes, print_json},
    clock::rfc3339_from_unix_ms,
    kernel::{
        pins::{LoadState, PinPaths},
        reader::KernelSource,
        sysfs,
    },
    privilege,
    wire::{self, MapStatus, Overflow, ProgramStatus},
};

/// `netmon status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// bpffs directory the maps and links are pinned under.
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Measure the programs' runs and run time over this many seconds: turns
    /// the kernel's BPF run-time statistics on for the window only (while on,
    /// every BPF program on the machine pays two clock reads per run, so
    /// netmon never leaves them on).
    #[arg(long, value_name = "SECONDS", value_parser = parse_sample_seconds)]
    pub sample: Option<f64>,
    /// The daemon's query socket: its privilege report sits next to it
    /// (section "daemon").
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Longest `--sample` window.
const MAX_SAMPLE_SECONDS: f64 = 600.0;

fn parse_sample_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v > 0.0 && v <= MAX_SAMPLE_SECONDS {
        Ok(v)
    } else {
        Err(format!(
            "must be more than 0 and at most {MAX_SAMPLE_SECONDS} seconds"
        ))
    }
}

/// Runs `netmon status`.
///
/// # Errors
/// Not root, unreadable maps, output errors. "Not loaded" is a status, not an
/// error: the document says `loaded: false` (exit 0).
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let mut doc = status(&args.pin_dir)?;
    if let Some(seconds) = args.sample {
        if !doc.loaded {
            return Err(crate::kernel::KernelError::NotLoaded(args.pin_dir.clone()).into());
        }
        doc.sample = Some(sample(&PinPaths::new(&args.pin_dir), seconds)?);
    }
    let daemon = daemon_privileges(&args.socket);
    let store = daemon_store(&args.socket);
    match args.output.resolve() {
        // No row-oriented form: NDJSON and CSV print the JSON document.
        Format::Json | Format::Ndjson | Format::Csv => print_json(&StatusDoc {
            status: &doc,
            daemon: daemon.as_ref(),
            store: store.as_ref(),
        }),
        Format::Table => {
            print_table(&doc)?;
            print_privileges(daemon.as_ref());
            print_store(store.as_ref())
        }
    }
}

/// The history store of the daemon answering at `socket`: size and rows
/// per tier (`None` when no daemon answers, or an older one).
fn daemon_store(socket: &std::path::Path) -> Option<wire::StoreStatus> {
    let mut client = crate::api::client::Client::connect(socket).ok()?;
    client.call::<wire::Pong>(&wire::Request::Ping).ok()?.store
}

fn print_store(store: Option<&wire::StoreStatus>) -> anyhow::Result<()> {
    println!();
    let Some(s) = store else {
        println!("store:    no daemon answered on its socket");
        return Ok(());
    };
    let cap = s.max_size_bytes.map_or_else(
        || "no max_size".to_owned(),
        |m| format!("max_size {}", human_bytes(m, false)),
    );
    println!("store:    {} ({cap})", human_bytes(s.file_bytes, false));
    let mut t = Table::new(
        &["TIER", "ROWS", "OLDEST", "KEPT", "THINNED BEFORE"],
        &[false, true, false, false, false],
    );
    let time = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), rfc3339_from_unix_ms);
    for tier in &s.tiers {
        t.row(vec![
            tier.tier.clone(),
            tier.rows.to_string(),
            time(tier.oldest_unix_ms),
            tier.keep_secs.map_or_else(
                || "forever".to_owned(),
                |secs| humantime::format_duration(std::time::Duration::from_secs(secs)).to_string(),
            ),
            time(tier.size_purged_before_unix_ms),
        ]);
    }
    t.print()?;
    if s.tiers
        .iter()
        .any(|t| t.size_purged_before_unix_ms.is_some())
    {
        println!(
            "(THINNED BEFORE: rows deleted to keep the file under max_size, finest tier first)"
        );
    }
    Ok(())
}

/// The JSON document: the kernel side's status, plus what a running daemon
/// runs with (`daemon`, null when none answers at `--socket`).
#[derive(serde::Serialize)]
struct StatusDoc<'a> {
    #[serde(flatten)]
    status: &'a wire::Status,
    daemon: Option<&'a privilege::Privileges>,
    /// The daemon's history store (null when none answers).
    store: Option<&'a wire::StoreStatus>,
}

/// The report of the daemon at `socket`, with its effective capabilities
/// read live from `/proc/PID/status`; `None` when it wrote none or is gone.
fn daemon_privileges(socket: &std::path::Path) -> Option<privilege::Privileges> {
    let mut report = privilege::read_report(socket)?;
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", report.pid)).ok()?;
    if comm.trim() != "netmon" {
        return None;
    }
    report.effective = privilege::live_effective(report.pid)?;
    Some(report)
}

fn print_privileges(daemon: Option<&privilege::Privileges>) {
    println!();
    let Some(p) = daemon else {
        println!("daemon:   not running (no privilege report next to its socket)");
        return;
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(" ")
        }
    };
    println!("daemon:   pid {}, uid {}, gid {}", p.pid, p.uid, p.gid);
    println!("  capabilities: {}", list(&p.effective));
    println!("  dropped after load: {}", list(&p.dropped));
    println!("  bounding set: {}", list(&p.bounding));
    println!(
        "  no_new_privs: {}",
        if p.no_new_privs { "yes" } else { "no" }
    );
    println!("  landlock: {} on {}", p.landlock.status, p.landlock.scope);
    println!("    read-write: {}", list(&p.landlock.read_write));
    println!("    read-only:  {}", list(&p.landlock.read_only));
}

/// Builds the status document.
///
/// # Errors
/// Not root, unreadable maps.
pub fn status(pin_dir: &std::path::Path) -> anyhow::Result<wire::Status> {
    if !sysfs::is_root() {
        return Err(crate::kernel::KernelError::NotRoot(
            "netmon status (it reads the pinned programs and maps)",
        )
        .into());
    }
    let paths = PinPaths::new(pin_dir);
    let state = LoadState::read(&paths);
    let programs = PROGRAMS
        .iter()
        .map(|name| {
            let info = ProgramInfo::from_pin(paths.prog(name)).ok();
            ProgramStatus {
                name: (*name).to_owned(),
                id: info.as_ref().map(ProgramInfo::id),
                attached: paths.link(name).exists(),
                run_count: info.as_ref().map_or(0, ProgramInfo::run_count),
                run_time_ns: info.as_ref().map_or(0, run_time_ns),
                instructions: info
                    .as_ref()
                    .and_then(ProgramInfo::verified_instruction_count),
            }
        })
        .collect();
    let (maps, overflow) = if paths.map(MAP_FLOWS).exists() {
        let source = KernelSource::open(pin_dir)?;
        let all_flows = source.flows()?;
        let closed_marks = source.closed()?;
        let flows = all_flows.len() as u64;
        let closed = closed_marks.len() as u64;
        let with_flows: std::collections::HashSet<u64> =
            all_flows.iter().map(|(k, _)| k.cookie).collect();
        let gone_flows = all_flows
            .iter()
            .filter(|(k, v)| {
                v.flags & netmon_common::FLOW_F_CLOSED != 0 || closed_marks.contains_key(&k.cookie)
            })
            .count() as u64;
        let gone_marks = closed_marks
            .keys()
            .filter(|c| !with_flows.contains(c))
            .count() as u64;
        let o = source.overflow()?;
        let fill = |entries: u64, max: u32| {
            if max == 0 {
                0.0
            } else {
                entries as f64 / f64::from(max)
            }
        };
        let max_closed = source.max_closed()?;
        let mut maps = vec![
            MapStatus {
                name: MAP_FLOWS.to_owned(),
                entries: flows,
                max_entries: source.max_flows(),
                fill: fill(flows, source.max_flows()),
                gone: gone_flows,
            },
            MapStatus {
                name: MAP_CLOSED.to_owned(),
                entries: closed,
                max_entries: max_closed,
                fill: fill(closed, max_closed),
                gone: gone_marks,
            },
        ];
        // The device map (LAN interfaces): when full, new devices go to
        // their interface's overflow row.
        if let Ok(Some(devices)) = crate::kernel::devices::DeviceMap::open(&paths) {
            let max = netmon_common::names::DEFAULT_MAX_DEVICE_KEYS;
            let entries = devices.key_count() as u64;
            maps.push(MapStatus {
                name: netmon_common::names::MAP_DEVICES.to_owned(),
                entries,
                max_entries: max,
                fill: fill(entries, max),
                gone: 0,
            });
        }
        (
            maps,
            Overflow {
                tx: o.tx.into(),
                rx: o.rx.into(),
                failed_inserts: o.failed_inserts,
            },
        )
    } else {
        (Vec::new(), Overflow::default())
    };
    Ok(wire::Status {
        schema_version: wire::SCHEMA_VERSION,
        loaded: paths.is_loaded(),
        pin_dir: pin_dir.display().to_string(),
        cgroup: state.as_ref().map(|s| s.cgroup.display().to_string()),
        kernel: sysfs::kernel_release(),
        programs,
        maps,
        overflow,
        loaded_at_unix_ms: state.map(|s| s.loaded_at_unix_ms),
        sample: None,
        name_capture: crate::kernel::capture::stats(&paths)?.map(|s| wire::NameCaptureStatus {
            records: s.records,
            lost: s.lost,
        }),
    })
}

/// (runs, run time in ns) of each of [`PROGRAMS`], zeros where unreadable.
fn run_counters(paths: &PinPaths) -> Vec<(u64, u64)> {
    PROGRAMS
        .iter()
        .map(|name| {
            ProgramInfo::from_pin(paths.prog(name))
                .ok()
                .map_or((0, 0), |i| (i.run_count(), run_time_ns(&i)))
        })
        .collect()
}

fn run_time_ns(info: &ProgramInfo) -> u64 {
    u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX)
}

/// Turns the kernel's BPF run-time statistics on (they stay on while the
/// returned fd is open, and go back off when it closes, unless the sysctl
/// holds them on), waits `seconds`, and reports each program's runs in the
/// window.
fn sample(paths: &PinPaths, seconds: f64) -> anyhow::Result<wire::StatsSample> {
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow::anyhow!("turning on BPF run-time statistics: {e}"))?;
    let before = run_counters(paths);
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
    let after = run_counters(paths);
    let elapsed = start.elapsed().as_secs_f64();
    drop(stats);
    let programs = PROGRAMS
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(name, (&(runs0, time0), &(runs1, time1)))| {
            let runs = runs1.saturating_sub(runs0);
            let run_time_ns = time1.saturating_sub(time0);
            wire::ProgramSample {
                name: (*name).to_owned(),
                runs,
                run_time_ns,
                avg_ns: run_time_ns.checked_div(runs),
            }
        })
        .collect();
    Ok(wire::StatsSample {
        seconds: elapsed,
        programs,
    })
}

fn print_table(doc: &wire::Status) -> anyhow::Result<()> {
    println!("loaded:   {}", if doc.loaded { "yes" } else { "no" });
    println!("pin dir:  {}", doc.pin_dir);
    println!("cgroup:   {}", doc.cgroup.as_deref().unwrap_or("-"));
    println!("kernel:   {}", doc.kernel);
    println!();
    let mut t = Table::new(
        &["PROGRAM", "ID", "ATTACHED", "RUNS", "AVG NS", "INSNS"],
        &[false, true, false, true, true, true],
    );
    for (k, p) in doc.programs.iter().enumerate() {
        // A sample, when taken, is the better figure: the cumulative counts
        // only grow while statistics are on.
        let sampled = doc.sample.as_ref().and_then(|s| s.programs.get(k));
        let (runs, avg) = match sampled {
            Some(s) => (s.runs, s.avg_ns),
            None => (p.run_count, p.run_time_ns.checked_div(p.run_count)),
        };
        t.row(vec![
            p.name.clone(),
            p.id.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            if p.attached { "yes" } else { "no" }.to_owned(),
            runs.to_string(),
            avg.map_or_else(|| "-".to_owned(), |avg| avg.to_string()),
            p.instructions
                .map_or_else(|| "-".to_owned(), |i| i.to_string()),
        ]);
    }
    t.print()?;
    match &doc.sample {
        Some(s) => println!("(runs and average time over a {:.1} s sample)", s.seconds),
        None if doc.loaded && doc.programs.iter().all(|p| p.run_count == 0) => println!(
            "(run statistics are off; `netmon status --sample 5` measures 5 seconds of them)"
        ),
        None => println!("(runs and average time since load, while statistics were on)"),
    }
    println!();
    let mut m = Table::new(
        &["MAP", "ENTRIES", "MAX", "FILL", "SOCKET GONE"],
        &[false, true, true, true, true],
    );
    for map in &doc.maps {
        m.row(vec![
            map.name.clone(),
            map.entries.to_string(),
            map.max_entries.to_string(),
            format!("{:.1}%", map.fill * 100.0),
            map.gone.to_string(),
        ]);
    }
    m.print()?;
    println!(
        "\noverflow: {} failed inserts, tx {} B, rx {} B",
        doc.overflow.failed_inserts, doc.overflow.tx.ip_bytes, doc.overflow.rx.ip_bytes
    );
    if let Some(c) = doc.name_capture {
        println!(
            "name capture: {} records, {} lost (ring full)",
            c.records, c.lost
        );
    }
    Ok(())
}
