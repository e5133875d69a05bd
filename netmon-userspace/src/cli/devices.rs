//! `netmon devices` (and `netmon usage --by device`): the LAN device table
//! of a window, from the history (see [`crate::query::devices`]).
use crate::cli::conn::{Backend, ConnArgs, WindowArgs};
use crate::cli::output::{Format, OutputArgs, Table, human_bytes, print_json};
use crate::wire::{DeviceHistory, Devices, Request};

/// `netmon devices` arguments.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only this device: its name, MAC or address.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `netmon devices`.
///
/// # Errors
/// Connection, query and output errors.
pub fn run(args: &DevicesArgs) -> anyhow::Result<()> {
    let (from_ms, until_ms) = args.window.resolve()?;
    show(
        from_ms,
        until_ms,
        args.device.clone(),
        &args.conn,
        &args.output,
    )
}

/// Asks for the device table and prints it.
///
/// # Errors
/// Connection, query and output errors.
pub fn show(
    from_ms: u64,
    until_ms: u64,
    device: Option<String>,
    conn: &ConnArgs,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let req = Request::Devices {
        from_ms,
        until_ms,
        device,
    };
    let doc: Devices = Backend::connect(conn)?.call(&req)?;
    match output.resolve() {
        Format::Table => {
            print!("{}", table(&doc, output.bytes));
            Ok(())
        }
        _ => print_json(&doc),
    }
}

/// `netmon history --device`: asks for the device's series and prints it.
///
/// # Errors
/// Connection, query and output errors.
pub fn history(
    from_ms: u64,
    until_ms: u64,
    step_ms: u64,
    device: String,
    conn: &ConnArgs,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let req = Request::DeviceHistory {
        from_ms,
        until_ms,
        step_ms,
        device,
    };
    let doc: DeviceHistory = Backend::connect(conn)?.call(&req)?;
    match output.resolve() {
        Format::Table => {
            let mut t = Table::new(
                &["TIME", "TX", "RX", "INTERNET", "LOCAL", "HOST"],
                &[false, true, true, true, true, true],
            );
            for p in &doc.points {
                let both = |f: fn(&crate::wire::DeviceDirection) -> u64| {
                    human_bytes(f(&p.tx).saturating_add(f(&p.rx)), output.bytes)
                };
                t.row(vec![
                    crate::clock::rfc3339_from_unix_ms(p.start_unix_ms),
                    human_bytes(p.tx.total.frame_bytes, output.bytes),
                    human_bytes(p.rx.total.frame_bytes, output.bytes),
                    both(|x| x.forwarded_internet.frame_bytes),
                    both(|x| x.forwarded_local.frame_bytes),
                    both(|x| x.host.frame_bytes),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        _ => print_json(&doc),
    }
}

/// The device table as text.
#[must_use]
pub fn table(doc: &Devices, raw: bool) -> String {
    let mut t = Table::new(
        &[
            "DEVICE",
            "NAME",
            "ADDRESSES",
            "TX",
            "RX",
            "INTERNET",
            "LOCAL",
            "HOST",
        ],
        &[false, false, false, true, true, true, true, true],
    )
    .shrinkable(2);
    for d in &doc.devices {
        let both = |f: fn(&crate::wire::DeviceDirection) -> u64| {
            human_bytes(f(&d.tx).saturating_add(f(&d.rx)), raw)
        };
        let mut name = d.name.clone().unwrap_or_default();
        if d.randomised {
            name.push_str(" (random MAC)");
        }
        if d.group {
            name.push_str(" (group)");
        }
        t.row(vec![
            d.device.clone(),
            name,
            d.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            human_bytes(d.tx.total.frame_bytes, raw),
            human_bytes(d.rx.total.frame_bytes, raw),
            both(|x| x.forwarded_internet.frame_bytes),
            both(|x| x.forwarded_local.frame_bytes),
            both(|x| x.host.frame_bytes),
        ]);
    }
    let mut s = t.render();
    if !doc.exact {
        s.push_str("(the stored rows cover more than the asked window)\n");
    }
    s
}
