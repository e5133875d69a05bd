//! `netmon interfaces`: the tc programs' live counters per watched interface
//! and direction, split into local-socket, forwarded, other-socket and
//! no-socket bytes (see `netmon_common::iface` for what the bytes include:
//! `skb->len` at tc, link-layer header included, a GSO packet once).
//!
//! Reconciliation: `interface` is the interface's own counters
//! (`/proc/net/dev`) since the load, `unexplained` = `interface - total`
//! (bytes moved while attaching; on a physical NIC that segments GSO
//! packets, the extra headers). Between two readings the changes add up:
//! Δinterface = Δlocal_socket + Δforwarded + Δother_socket + Δno_socket on
//! veth and other devices that count `skb->len`.
//!
//! Like `snapshot`, it reads the pinned map directly (with or without a
//! daemon): counters since the load, not a window of history. The history
//! of the same counters is `netmon usage --by interface`, whose table
//! [`usage_table`] renders here.
use std::path::PathBuf;

use crate::{
    cli::output::{Format, OutputArgs, Table, human_bytes, print_json},
    kernel::tc::{self, DirectionCounts, InterfaceCounts},
};

/// `netmon interfaces` arguments.
#[derive(Debug, clap::Args)]
pub struct InterfacesArgs {
    /// bpffs directory the maps are pinned under.
    #[arg(long, value_name = "DIR", default_value = netmon_common::names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The JSON document: `{"interfaces": [...]}`, one entry per interface seen.
#[derive(Debug, serde::Serialize)]
struct Doc {
    interfaces: Vec<InterfaceCounts>,
}

/// Runs `netmon interfaces`.
///
/// # Errors
/// Not loaded, not root, map read failures, output errors.
pub fn run(args: &InterfacesArgs) -> anyhow::Result<()> {
    let interfaces = tc::read(&args.pin_dir)?;
    match args.output.resolve() {
        Format::Json | Format::Ndjson | Format::Csv => print_json(&Doc { interfaces }),
        Format::Table => print_table(&interfaces, args.output.bytes),
    }
}

fn print_table(rows: &[InterfaceCounts], raw: bool) -> anyhow::Result<()> {
    let mut t = Table::new(
        &[
            "INTERFACE",
            "DIR",
            "BYTES",
            "PKTS",
            "LOCAL SOCKET",
            "FORWARDED",
            "OTHER SOCKET",
            "NO SOCKET",
            "INTERFACE",
            "UNEXPLAINED",
        ],
        &[false, false, true, true, true, true, true, true, true, true],
    );
    for i in rows {
        let name = i.name.clone().unwrap_or_else(|| format!("#{}", i.ifindex));
        for (dir, d) in [("rx", &i.rx), ("tx", &i.tx)] {
            t.row(row(&name, dir, d, raw));
        }
    }
    t.print()
}

fn row(name: &str, dir: &str, d: &DirectionCounts, raw: bool) -> Vec<String> {
    vec![
        name.to_owned(),
        dir.to_owned(),
        human_bytes(d.total.bytes, raw),
        d.total.packets.to_string(),
        human_bytes(d.local_socket.bytes, raw),
        human_bytes(d.forwarded.bytes, raw),
        human_bytes(d.other_socket.bytes, raw),
        human_bytes(d.no_socket.bytes, raw),
        d.interface
            .map_or_else(|| "-".to_owned(), |c| human_bytes(c.bytes, raw)),
        d.unexplained
            .map_or_else(|| "-".to_owned(), |u| u.bytes.to_string()),
    ]
}

/// For `netmon usage --by interface`: the interfaces' own traffic over the
/// window (rows with `interface_counters`), one line per interface and
/// direction, frame bytes by class; `None` when no row has any.
#[must_use]
pub fn usage_table(doc: &crate::wire::Usage, raw: bool, width: Option<usize>) -> Option<String> {
    let rows: Vec<_> = doc
        .rows
        .iter()
        .filter_map(|r| Some((r.key.as_str(), r.interface_counters?)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut t = Table::new(
        &[
            "INTERFACE",
            "DIR",
            "FRAMES",
            "PKTS",
            "PROCESSES",
            "FORWARDED",
            "OTHER SOCKET",
            "NO SOCKET",
        ],
        &[false, false, true, true, true, true, true, true],
    )
    .shrinkable(0)
    .fit(width);
    for (name, c) in rows {
        for (dir, d) in [("rx", c.rx), ("tx", c.tx)] {
            t.row(vec![
                name.to_owned(),
                dir.to_owned(),
                human_bytes(d.total.frame_bytes, raw),
                d.total.packets.to_string(),
                human_bytes(d.local_socket.frame_bytes, raw),
                human_bytes(d.forwarded.frame_bytes, raw),
                human_bytes(d.other_socket.frame_bytes, raw),
                human_bytes(d.no_socket.frame_bytes, raw),
            ]);
        }
    }
    Some(format!(
        "interface counters (whole frames, all traffic; PROCESSES = local sockets):\n{}",
        t.render()
    ))
}
