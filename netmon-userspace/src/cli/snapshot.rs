//! `netmon snapshot`.
use std::path::PathBuf;

use crate::{
    cli::output::{Format, OutputArgs, Table, human_bytes, print_json},
    kernel::reader::KernelSource,
    live,
    source::CounterSource as _,
    wire,
};

/// `netmon snapshot` arguments.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// bpffs directory the maps are pinned under.
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Also list every flow (socket × remote endpoint).
    #[arg(long)]
    pub sockets: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon snapshot`.
///
/// # Errors
/// Not loaded, not root, map read failures, output errors.
pub fn run(args: &SnapshotArgs) -> anyhow::Result<()> {
    let mut source = KernelSource::open(&args.pin_dir)?;
    let reading = source.read()?;
    let mut resolver = crate::ownership::kernel::KernelResolver::new().with_exec_map(&args.pin_dir);
    let doc = live::snapshot_with(
        &reading,
        &mut resolver,
        args.sockets,
        crate::clock::now_rfc3339(),
    );
    match args.output.resolve() {
        // No row-oriented form: NDJSON and CSV print the JSON document.
        Format::Json | Format::Ndjson | Format::Csv => print_json(&doc),
        Format::Table => print_table(&doc, args.output.bytes),
    }
}

fn print_table(doc: &wire::Snapshot, raw: bool) -> anyhow::Result<()> {
    let mut t = Table::new(
        &[
            "PID", "COMM", "USER", "SOCKETS", "TX", "RX", "TX PKTS", "RX PKTS", "EXE",
        ],
        &[true, false, false, true, true, true, true, true, false],
    );
    for p in &doc.processes {
        t.row(vec![
            p.pid.to_string(),
            p.comm.clone(),
            p.user.clone().unwrap_or_else(|| p.uid.to_string()),
            p.sockets.to_string(),
            human_bytes(p.tx.payload_bytes, raw),
            human_bytes(p.rx.payload_bytes, raw),
            p.tx.packets.to_string(),
            p.rx.packets.to_string(),
            p.exe.clone().unwrap_or_default(),
        ]);
    }
    t.print()?;
    if let Some(sockets) = &doc.sockets {
        println!();
        let mut s = Table::new(
            &[
                "PID", "COMM", "PROTO", "LOCAL", "REMOTE", "STATE", "TX", "RX",
            ],
            &[true, false, false, false, false, false, true, true],
        );
        for f in sockets {
            s.row(vec![
                f.pid.to_string(),
                f.comm.clone(),
                f.protocol.clone(),
                endpoint(f.local_addr, f.local_port),
                endpoint(f.remote_addr, f.remote_port),
                if f.closed { "closed" } else { "open" }.to_owned(),
                human_bytes(f.tx.payload_bytes, raw),
                human_bytes(f.rx.payload_bytes, raw),
            ]);
        }
        s.print()?;
    }
    println!(
        "\ntotal: tx {} rx {} (payload); overflow: {} failed inserts",
        human_bytes(doc.totals.tx.payload_bytes, raw),
        human_bytes(doc.totals.rx.payload_bytes, raw),
        doc.overflow.failed_inserts
    );
    Ok(())
}

fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
