//! `netmon-bench-kernel`: what netmon's kernel programs cost the traffic they
//! count. Run as root by `cargo xtask bench`.
//!
//! Two network namespaces joined by a veth pair, workloads in one cgroup.
//! Each round measures every workload in three modes, in an order that
//! rotates from round to round so that drift on the machine hits every mode
//! alike:
//! - **unattached**: no program on the cgroup;
//! - **empty hook**: a two-instruction `cgroup_skb` program (`return 1`) on
//!   ingress and egress: what the kernel's hook machinery costs by itself,
//!   the floor any cgroup_skb counter pays;
//! - **netmon**: netmon's programs (`netmon load`).
//!
//! Reported: per-mode medians and the ratios empty hook / unattached (what
//! the hook machinery costs on this VM) and netmon / empty hook (netmon's
//! own cost, against the targets TCP bulk >= 0.99, UDP 64 B >= 0.97), and
//! the kernel's own ns per run of the counting programs during each
//! workload (`netmon status --sample`). `--compare BIN` adds a second
//! netmon build as a fourth mode in the same rotation, so a change is
//! measured side by side. It measures and reports; it never asserts.
//!
//! Also measured: processes spawned per second (fork + exec of `true`),
//! which pay `netmon_fork` and `netmon_exec` (the exec recorders).
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
    /// A second `netmon` build, measured as a fourth mode in the same
    /// rotation ("compare"): a change's effect side by side, in one run.
    #[arg(long, value_name = "NETMON_BIN")]
    compare: Option<PathBuf>,
}

/// What is attached to the workloads' cgroup during a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Unattached,
    EmptyHook,
    Netmon,
    Compare,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Unattached,
        Mode::EmptyHook,
        Mode::Netmon,
        Mode::Compare,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Unattached => "unattached",
            Mode::EmptyHook => "empty hook",
            Mode::Netmon => "netmon",
            Mode::Compare => "compare",
        }
    }
}

/// One measured figure, one value per round for each mode.
#[derive(Default)]
struct Series {
    by_mode: [Vec<f64>; 4],
}

impl Series {
    fn push(&mut self, mode: Mode, v: f64) {
        self.by_mode[mode as usize].push(v);
    }

    fn median(&self, mode: Mode) -> f64 {
        median(&self.by_mode[mode as usize])
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

impl Bench<'_> {
    /// `true` spawned and waited for, one after the other, for `seconds`:
    /// thousands per second. Each spawn is a fork (vfork) and an exec, so it
    /// runs `netmon_fork` and `netmon_exec` once each (the fork finds no
    /// record of this benchmark, started before the load: the cheap path).
    fn spawn(&self) -> anyhow::Result<f64> {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < self.seconds {
            let status = std::process::Command::new("true")
                .status()
                .context("spawn `true`")?;
            if !status.success() {
                bail!("`true` failed: {status}");
            }
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64() / 1e3)
    }
}

/// Average ns per run of the counting programs over one workload.
struct PerRun {
    egress: Option<f64>,
    ingress: Option<f64>,
}

/// `netmon status --sample` running next to a workload: the kernel's own
/// run-time statistics of each program over (most of) the workload.
struct ProgramSampler(std::process::Child);

impl ProgramSampler {
    fn start(netmon: &Netmon, seconds: f64) -> anyhow::Result<Self> {
        let window = format!("{:.2}", (seconds * 0.8).max(0.1));
        let mut c = netmon.command(&["status", "--sample", &window, "--json"]);
        c.arg("--pin-dir")
            .arg(netmon.pin_dir())
            .stdout(std::process::Stdio::piped());
        Ok(Self(c.spawn().context("start `netmon status --sample`")?))
    }

    fn finish(self) -> anyhow::Result<PerRun> {
        let out = self
            .0
            .wait_with_output()
            .context("wait for `netmon status --sample`")?;
        if !out.status.success() {
            bail!("`netmon status --sample` failed: {}", out.status);
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("`netmon status --sample` JSON")?;
        let avg = |name: &str| {
            doc["sample"]["programs"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name)?["avg_ns"]
                .as_f64()
        };
        Ok(PerRun {
            egress: avg("netmon_egress"),
            ingress: avg("netmon_ingress"),
        })
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
    let mut spawn = Series::default();
    // ns per run of netmon's programs: [netmon, compare].
    let (mut tcp_ns, mut udp_ns) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..args.rounds {
        // Rotate the order of the modes from round to round.
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|m| *m != Mode::Compare || args.compare.is_some())
            .collect();
        for k in 0..modes.len() {
            let mode = modes[(round + k) % modes.len()];
            let netmon_guard = match (mode, &args.compare) {
                (Mode::Netmon, _) => Some(Netmon::load(&cg)),
                (Mode::Compare, Some(bin)) => Some(Netmon::load_bin(bin.clone(), &cg, &[])),
                _ => None,
            };
            let empty_guard = match mode {
                Mode::EmptyHook => Some(empty_hook::EmptyHook::attach(cg.path())?),
                _ => None,
            };
            let sampler = netmon_guard
                .as_ref()
                .map(|n| ProgramSampler::start(n, args.seconds))
                .transpose()?;
            let gbps = bench.tcp()?;
            if let Some(s) = sampler {
                tcp_ns[usize::from(mode == Mode::Compare)].push(s.finish()?);
            }
            let sampler = netmon_guard
                .as_ref()
                .map(|n| ProgramSampler::start(n, args.seconds))
                .transpose()?;
            let (sent, delivered) = bench.udp()?;
            if let Some(s) = sampler {
                udp_ns[usize::from(mode == Mode::Compare)].push(s.finish()?);
            }
            let kspawn = bench.spawn()?;
            drop(netmon_guard);
            drop(empty_guard);
            tcp.push(mode, gbps);
            udp_sent.push(mode, sent);
            udp_delivered.push(mode, delivered);
            spawn.push(mode, kspawn);
            eprintln!(
                "round {}/{} {:<10}  TCP {gbps:7.2} Gbit/s   UDP sent {sent:8.1} kpps  delivered {delivered:8.1} kpps   spawns {kspawn:6.2} k/s",
                round + 1,
                args.rounds,
                mode.name(),
            );
        }
    }

    println!();
    println!(
        "netmon kernel overhead: veth between two namespaces, {} rounds x {} s per mode, order rotating",
        args.rounds, args.seconds
    );
    println!(
        "netmon: {}   workload: {}",
        netmon.display(),
        bench.exe.display()
    );
    println!();
    // Targets are against the floor measured in the same run (the empty
    // hook): what netmon's own programs cost, whatever the hook machinery
    // costs on this VM.
    let compare = args.compare.is_some();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} | {:>8} {:>8} {:>7} {:>9}",
        "median",
        "unattached",
        "empty hook",
        "netmon",
        if compare { "compare" } else { "" },
        "empty/u",
        "netmon/e",
        "target",
        if compare { "compare/e" } else { "" }
    );
    let row = |name: &str, s: &Series, target: f64| {
        let (u, e, n, c) = (
            s.median(Mode::Unattached),
            s.median(Mode::EmptyHook),
            s.median(Mode::Netmon),
            s.median(Mode::Compare),
        );
        let ratio = n / e;
        let verdict = if ratio >= target { "ok" } else { "BELOW" };
        let (c, ce) = if compare {
            (format!("{c:.2}"), format!("{:.3}", c / e))
        } else {
            (String::new(), String::new())
        };
        println!(
            "{name:<26} {u:>10.2} {e:>10.2} {n:>10.2} {c:>10} | {:>8.3} {ratio:>8.3} {:>7} {ce:>9}  {verdict}",
            e / u,
            format!(">={target}"),
        );
    };
    row("TCP bulk, Gbit/s", &tcp, 0.99);
    row(
        &format!("UDP {} B sent, kpps", args.udp_size),
        &udp_sent,
        0.97,
    );
    row(
        &format!("UDP {} B delivered, kpps", args.udp_size),
        &udp_delivered,
        0.97,
    );
    row("fork+exec of true, k/s", &spawn, 0.98);
    println!();
    print_rounds("TCP Gbit/s", &tcp);
    print_rounds("UDP sent kpps", &udp_sent);
    print_rounds("UDP delivered kpps", &udp_delivered);
    print_rounds("spawns k/s", &spawn);
    println!();
    println!(
        "netmon's own programs, ns per run (median over rounds; `netmon status --sample` during each workload):"
    );
    for (name, by_build) in [("TCP bulk", &tcp_ns), ("UDP sent", &udp_ns)] {
        for (build, samples) in ["netmon", "compare"].iter().zip(by_build.iter()) {
            if samples.is_empty() {
                continue;
            }
            let egress: Vec<f64> = samples.iter().filter_map(|s: &PerRun| s.egress).collect();
            let ingress: Vec<f64> = samples.iter().filter_map(|s: &PerRun| s.ingress).collect();
            println!(
                "{name:<12} {build:<13} egress {:>6.1} ns   ingress {:>6.1} ns",
                median(&egress),
                median(&ingress)
            );
        }
    }
    Ok(())
}

fn print_rounds(name: &str, s: &Series) {
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (k, mode) in Mode::ALL.into_iter().enumerate() {
        if s.by_mode[mode as usize].is_empty() {
            continue;
        }
        let label = if k == 0 { name } else { "" };
        println!(
            "{label:<20} {:>10}: {}",
            mode.name(),
            fmt(&s.by_mode[mode as usize])
        );
    }
}

/// The floor: an empty `cgroup_skb` program on both hooks, loaded and
/// attached through the raw `bpf(2)` interface (two instructions need no
/// object file).
mod empty_hook {
    use std::{
        ffi::CString,
        fs::File,
        os::fd::{AsRawFd as _, OwnedFd},
        path::Path,
    };

    use anyhow::Context as _;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
    const BPF_CGROUP_INET_INGRESS: u32 = 0;
    const BPF_CGROUP_INET_EGRESS: u32 = 1;

    /// `r0 = 1; exit`: let every packet through, touch nothing.
    const RETURN_1: [u64; 2] = [
        // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1.
        0xb7 | (1 << 32),
        // BPF_JMP | BPF_EXIT.
        0x95,
    ];

    /// The program and its two links; dropping it closes the links, which
    /// detaches the program.
    pub struct EmptyHook {
        _prog: OwnedFd,
        _links: [OwnedFd; 2],
    }

    impl EmptyHook {
        pub fn attach(cgroup: &Path) -> anyhow::Result<Self> {
            let license = CString::new("GPL").expect("no NUL");
            // `union bpf_attr` for BPF_PROG_LOAD: prog_type, insn_cnt, insns,
            // license (the first fields; the rest zero).
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_SKB.to_ne_bytes());
            attr[4..8].copy_from_slice(&(RETURN_1.len() as u32).to_ne_bytes());
            attr[8..16].copy_from_slice(&(RETURN_1.as_ptr() as u64).to_ne_bytes());
            attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
            let prog =
                bpf(BPF_PROG_LOAD, &mut attr).context("load the empty cgroup_skb program")?;
            let dir = File::open(cgroup).with_context(|| format!("open {}", cgroup.display()))?;
            let link = |attach_type: u32| {
                // BPF_LINK_CREATE: prog_fd, target_fd, attach_type, flags.
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
                attr[4..8].copy_from_slice(&dir.as_raw_fd().to_ne_bytes());
                attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
                bpf(BPF_LINK_CREATE, &mut attr).context("attach the empty cgroup_skb program")
            };
            let links = [
                link(BPF_CGROUP_INET_INGRESS)?,
                link(BPF_CGROUP_INET_EGRESS)?,
            ];
            Ok(Self {
                _prog: prog,
                _links: links,
            })
        }
    }

    use netmon_tests::bpf_sys::bpf;
}
