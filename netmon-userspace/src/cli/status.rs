//! `netmon status`: health of the kernel side.
use std::path::PathBuf;

use aya::programs::ProgramInfo;
use netmon_common::names::{MAP_CLOSED, MAP_FLOWS, PROGRAMS};

use crate::{
    cli::output::{Format, OutputArgs, Table, print_json},
    kernel::{
        pins::{LoadState, PinPaths},
        reader::KernelSource,
        sysfs,
    },
    wire::{self, MapStatus, Overflow, ProgramStatus},
};

/// `netmon status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// bpffs directory the maps and links are pinned under.
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon status`.
///
/// # Errors
/// Not root, unreadable maps, output errors. "Not loaded" is a status, not an
/// error: the document says `loaded: false` (exit 0).
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let doc = status(&args.pin_dir)?;
    match args.output.resolve() {
        // No row-oriented form: NDJSON and CSV print the JSON document.
        Format::Json | Format::Ndjson | Format::Csv => print_json(&doc),
        Format::Table => print_table(&doc),
    }
}

/// Builds the status document.
///
/// # Errors
/// Not root, unreadable maps.
pub fn status(pin_dir: &std::path::Path) -> anyhow::Result<wire::Status> {
    if !sysfs::is_root() {
        return Err(crate::kernel::KernelError::NotRoot.into());
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
                run_time_ns: info.as_ref().map_or(0, |i| {
                    u64::try_from(i.run_time().as_nanos()).unwrap_or(u64::MAX)
                }),
                instructions: info
                    .as_ref()
                    .and_then(ProgramInfo::verified_instruction_count),
            }
        })
        .collect();
    let (maps, overflow) = if paths.map(MAP_FLOWS).exists() {
        let source = KernelSource::open(pin_dir)?;
        let flows = source.flows()?.len() as u64;
        let closed = source.closed()?.len() as u64;
        let o = source.overflow()?;
        let fill = |entries: u64, max: u32| {
            if max == 0 {
                0.0
            } else {
                entries as f64 / f64::from(max)
            }
        };
        let max_closed = source.max_closed()?;
        (
            vec![
                MapStatus {
                    name: MAP_FLOWS.to_owned(),
                    entries: flows,
                    max_entries: source.max_flows(),
                    fill: fill(flows, source.max_flows()),
                },
                MapStatus {
                    name: MAP_CLOSED.to_owned(),
                    entries: closed,
                    max_entries: max_closed,
                    fill: fill(closed, max_closed),
                },
            ],
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
    for p in &doc.programs {
        let avg = p
            .run_time_ns
            .checked_div(p.run_count)
            .map_or_else(|| "-".to_owned(), |avg| avg.to_string());
        t.row(vec![
            p.name.clone(),
            p.id.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            if p.attached { "yes" } else { "no" }.to_owned(),
            p.run_count.to_string(),
            avg,
            p.instructions
                .map_or_else(|| "-".to_owned(), |i| i.to_string()),
        ]);
    }
    t.print()?;
    println!();
    let mut m = Table::new(
        &["MAP", "ENTRIES", "MAX", "FILL"],
        &[false, true, true, true],
    );
    for map in &doc.maps {
        m.row(vec![
            map.name.clone(),
            map.entries.to_string(),
            map.max_entries.to_string(),
            format!("{:.1}%", map.fill * 100.0),
        ]);
    }
    m.print()?;
    println!(
        "\noverflow: {} failed inserts, tx {} B, rx {} B",
        doc.overflow.failed_inserts, doc.overflow.tx.ip_bytes, doc.overflow.rx.ip_bytes
    );
    Ok(())
}
