//! `netmon snapshot`: the kernel's current counters, as a table, one JSON
//! document, or rows (NDJSON, CSV) per process — per socket with
//! `--sockets`.
use std::io::Write;
use std::path::PathBuf;

use crate::{
    cli::output::{Format, OutputArgs, Table, human_bytes, terminal_width},
    cli::render::{self, COUNTER_COLUMNS},
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
    let mut out = std::io::stdout().lock();
    write(&mut out, &doc, args.output.resolve(), args.output.bytes)?;
    out.flush()?;
    Ok(())
}

/// CSV columns of a process row.
pub const PROCESS_COLUMNS: [&str; 9] = [
    "pid",
    "start_ticks",
    "comm",
    "exe",
    "cmdline",
    "uid",
    "user",
    "cgroup",
    "sockets",
];

/// CSV columns of a socket row (before the counters).
pub const SOCKET_COLUMNS: [&str; 14] = [
    "cookie",
    "pid",
    "start_ticks",
    "comm",
    "protocol",
    "protocol_number",
    "ip_version",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "ifindex",
    "netns_cookie",
    "closed",
];

/// Writes the snapshot in `format`: JSON one document; NDJSON and CSV one
/// row per process, or per socket with `--sockets`.
///
/// # Errors
/// I/O errors.
pub fn write(
    out: &mut dyn Write,
    doc: &wire::Snapshot,
    format: Format,
    raw: bool,
) -> anyhow::Result<()> {
    match (format, &doc.sockets) {
        (Format::Json, _) => render::json(out, doc),
        (Format::Ndjson, Some(sockets)) => render::ndjson_rows(out, sockets),
        (Format::Ndjson, None) => render::ndjson_rows(out, &doc.processes),
        (Format::Csv, Some(sockets)) => {
            let mut header = SOCKET_COLUMNS.to_vec();
            header.extend(COUNTER_COLUMNS);
            header.push("server_name");
            let rows = sockets.iter().map(|f| {
                let mut cells = vec![
                    f.cookie.to_string(),
                    f.pid.to_string(),
                    f.start_ticks.to_string(),
                    f.comm.clone(),
                    f.protocol.clone(),
                    f.protocol_number.to_string(),
                    f.ip_version.to_string(),
                    f.local_addr.to_string(),
                    f.local_port.to_string(),
                    f.remote_addr.to_string(),
                    f.remote_port.to_string(),
                    f.ifindex.to_string(),
                    f.netns_cookie.to_string(),
                    f.closed.to_string(),
                ];
                cells.extend(render::counter_cells(&f.tx, &f.rx));
                cells.push(f.server_name.clone().unwrap_or_default());
                cells
            });
            render::csv(out, &header, rows)
        }
        (Format::Csv, None) => {
            let mut header = PROCESS_COLUMNS.to_vec();
            header.extend(COUNTER_COLUMNS);
            let rows = doc.processes.iter().map(|p| {
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let mut cells = vec![
                    p.pid.to_string(),
                    p.start_ticks.to_string(),
                    p.comm.clone(),
                    o(&p.exe),
                    o(&p.cmdline),
                    p.uid.to_string(),
                    o(&p.user),
                    o(&p.cgroup),
                    p.sockets.to_string(),
                ];
                cells.extend(render::counter_cells(&p.tx, &p.rx));
                cells
            });
            render::csv(out, &header, rows)
        }
        (Format::Table, _) => {
            out.write_all(table(doc, raw, terminal_width()).as_bytes())?;
            Ok(())
        }
    }
}

/// The tables (processes, then sockets with `--sockets`) and a total line,
/// fitted to `width`.
#[must_use]
pub fn table(doc: &wire::Snapshot, raw: bool, width: Option<usize>) -> String {
    let mut t = Table::new(
        &[
            "PID", "COMM", "USER", "SOCKETS", "TX", "RX", "TX PKTS", "RX PKTS", "EXE",
        ],
        &[true, false, false, true, true, true, true, true, false],
    )
    .optional(6, 2)
    .optional(7, 2)
    .optional(3, 1)
    .shrinkable(8)
    .shrinkable(1)
    .fit(width);
    for p in &doc.processes {
        t.row(vec![
            p.pid.to_string(),
            p.comm.clone(),
            render::user_cell(p.pid, p.user.as_deref(), p.uid),
            p.sockets.to_string(),
            human_bytes(p.tx.payload_bytes, raw),
            human_bytes(p.rx.payload_bytes, raw),
            p.tx.packets.to_string(),
            p.rx.packets.to_string(),
            p.exe.clone().unwrap_or_default(),
        ]);
    }
    let mut out = t.render();
    if let Some(sockets) = &doc.sockets {
        out.push('\n');
        let mut s = Table::new(
            &[
                "PID", "COMM", "PROTO", "LOCAL", "REMOTE", "STATE", "TX", "RX",
            ],
            &[true, false, false, false, false, false, true, true],
        )
        .optional(5, 1)
        .shrinkable(3)
        .shrinkable(4)
        .shrinkable(1)
        .fit(width);
        for f in sockets {
            s.row(vec![
                f.pid.to_string(),
                f.comm.clone(),
                f.protocol.clone(),
                endpoint(f.local_addr, f.local_port),
                match &f.server_name {
                    Some(n) => format!("{} ({n})", endpoint(f.remote_addr, f.remote_port)),
                    None => endpoint(f.remote_addr, f.remote_port),
                },
                if f.closed { "closed" } else { "open" }.to_owned(),
                human_bytes(f.tx.payload_bytes, raw),
                human_bytes(f.rx.payload_bytes, raw),
            ]);
        }
        out.push_str(&s.render());
    }
    out.push('\n');
    out.push_str(&render::wrap(
        &format!(
            "total: tx {} rx {} (payload) · overflow: {} failed inserts",
            human_bytes(doc.totals.tx.payload_bytes, raw),
            human_bytes(doc.totals.rx.payload_bytes, raw),
            doc.overflow.failed_inserts
        ),
        width,
    ));
    out
}

fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
