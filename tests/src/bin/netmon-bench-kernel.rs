//! `netmon-bench-kernel`: what netmon's kernel programs cost the traffic they
//! count. Run as root by `cargo xtask bench`.
//!
//! Two network namespaces joined by a veth pair, workloads in one cgroup.
//! Each round measures every workload twice, with netmon's programs attached
//! to that cgroup (`netmon load`) and without (`netmon unload`), in
//! alternating order (ABBA) so that drift on the machine hits both sides
//! alike. Reported: per-mode medians and their ratio, against the targets
//! (TCP >= 0.99, UDP >= 0.95). It measures and reports; it never asserts.
//!
//! On veth the receive path runs in the sender's context (the packet is
//! handed to the peer's backlog and processed when the sender's softirqs
//! run), so the sender's rate includes both hooks: egress and ingress.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context as _, bail};
use clap::Parser;
use netmon_tests::{
    cgroup::CgroupGuard,
    netmon::{Netmon, netmon_bin},
    netns::NetnsPair,
    report::{READY, Report},
    scenario::first_port,
    workload::Workload,
};

#[derive(Parser)]
#[command(about = "netmon kernel overhead: veth throughput with programs attached vs not")]
struct Args {
    /// Rounds (each measures both modes once per workload).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// UDP payload size in bytes.
    #[arg(long, default_value_t = 64)]
    udp_size: usize,
}

/// One measured figure per mode, one value per round.
#[derive(Default)]
struct Series {
    unattached: Vec<f64>,
    attached: Vec<f64>,
}

impl Series {
    fn push(&mut self, attached: bool, v: f64) {
        if attached {
            self.attached.push(v)
        } else {
            self.unattached.push(v)
        }
    }
}

struct Bench<'a> {
    exe: PathBuf,
    cg: &'a CgroupGuard,
    pair: &'a NetnsPair,
    seconds: f64,
    udp_size: usize,
}

impl Bench<'_> {
    /// Bulk TCP A -> B for `seconds`: Gbit/s of payload.
    fn tcp(&self) -> anyhow::Result<f64> {
        let b = self.pair.b.v4();
        let listen = SocketAddr::new(b.into(), 0).to_string();
        let mut server = Workload::spawn(
            &self.exe,
            ["tcp-server", "--listen", &listen],
            self.cg,
            Some(&self.pair.b),
        );
        let connect = SocketAddr::new(b.into(), first_port(&server.wait_event(READY))).to_string();
        let mut client = Workload::spawn(
            &self.exe,
            [
                "tcp-client",
                "--connect",
                &connect,
                "--send",
                &u64::MAX.to_string(),
                "--seconds",
                &self.seconds.to_string(),
            ],
            self.cg,
            Some(&self.pair.a),
        );
        let c = client.wait_done();
        let s = server.wait_done();
        if s.read != c.written {
            bail!("TCP: server read {} of {} bytes", s.read, c.written);
        }
        Ok(c.written as f64 * 8.0 / secs(&c) / 1e9)
    }

    /// `udp_size`-byte datagrams A -> B for `seconds`: (sent, delivered)
    /// thousands of packets per second.
    fn udp(&self) -> anyhow::Result<(f64, f64)> {
        let b = self.pair.b.v4();
        let mut rx = Workload::spawn(
            &self.exe,
            ["udp-recv", "--bind", &b.to_string(), "--idle-ms", "500"],
            self.cg,
            Some(&self.pair.b),
        );
        let to = SocketAddr::new(b.into(), first_port(&rx.wait_event(READY))).to_string();
        let mut tx = Workload::spawn(
            &self.exe,
            [
                "udp-send",
                "--connect",
                "--to",
                &to,
                "--count",
                &u64::MAX.to_string(),
                "--sizes",
                &self.udp_size.to_string(),
                "--seconds",
                &self.seconds.to_string(),
            ],
            self.cg,
            Some(&self.pair.a),
        );
        let sent = tx.wait_done();
        let got = rx.wait_done();
        let t = secs(&sent);
        Ok((
            sent.datagrams_sent as f64 / t / 1e3,
            got.datagrams_received as f64 / t / 1e3,
        ))
    }
}

fn secs(r: &Report) -> f64 {
    (r.elapsed_ms.max(1) as f64) / 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("netmon-bench-kernel needs root (it loads eBPF programs and creates namespaces)");
    }
    let exe = std::env::current_exe()
        .context("own path")?
        .parent()
        .map(|d| d.join("netmon-workload"))
        .filter(|p| p.is_file())
        .context(
            "netmon-workload not found next to netmon-bench-kernel (build the netmon-tests bins)",
        )?;
    let netmon = netmon_bin();
    let cg = CgroupGuard::new("bench");
    let pair = NetnsPair::new("bench");
    let bench = Bench {
        exe,
        cg: &cg,
        pair: &pair,
        seconds: args.seconds,
        udp_size: args.udp_size,
    };

    let (mut tcp, mut udp_sent, mut udp_delivered) =
        (Series::default(), Series::default(), Series::default());
    for round in 0..args.rounds {
        // ABBA: even rounds start unattached, odd rounds attached.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for attached in order {
            let guard = attached.then(|| Netmon::load(&cg));
            let gbps = bench.tcp()?;
            let (sent, delivered) = bench.udp()?;
            drop(guard);
            tcp.push(attached, gbps);
            udp_sent.push(attached, sent);
            udp_delivered.push(attached, delivered);
            eprintln!(
                "round {}/{} {:<10}  TCP {gbps:7.2} Gbit/s   UDP sent {sent:8.1} kpps  delivered {delivered:8.1} kpps",
                round + 1,
                args.rounds,
                if attached { "attached" } else { "unattached" },
            );
        }
    }

    println!();
    println!(
        "netmon kernel overhead: veth between two namespaces, {} rounds x {} s per mode, alternating (ABBA)",
        args.rounds, args.seconds
    );
    println!(
        "netmon: {}   workload: {}",
        netmon.display(),
        bench.exe.display()
    );
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>8}",
        "median", "unattached", "attached", "ratio", "target"
    );
    let row = |name: &str, s: &Series, target: f64| {
        let (u, a) = (median(&s.unattached), median(&s.attached));
        let ratio = a / u;
        let verdict = if ratio >= target { "ok" } else { "BELOW" };
        println!(
            "{name:<28} {u:>12.2} {a:>12.2} {ratio:>8.3} {:>5} {verdict}",
            format!(">={target}")
        );
    };
    row("TCP bulk, Gbit/s", &tcp, 0.99);
    row(
        &format!("UDP {} B sent, kpps", args.udp_size),
        &udp_sent,
        0.95,
    );
    row(
        &format!("UDP {} B delivered, kpps", args.udp_size),
        &udp_delivered,
        0.95,
    );
    println!();
    print_rounds("TCP Gbit/s", &tcp);
    print_rounds("UDP sent kpps", &udp_sent);
    print_rounds("UDP delivered kpps", &udp_delivered);
    Ok(())
}

fn print_rounds(name: &str, s: &Series) {
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{name:<20} unattached: {}", fmt(&s.unattached));
    println!("{:<20}   attached: {}", "", fmt(&s.attached));
}
