//! The drain on the real kernel source (root): the part of a daemon step the
//! simulated `drain` bench does not see, reading the pinned flow map with
//! `BPF_MAP_LOOKUP_BATCH`.
//!
//! netmon is loaded into a pin directory of its own and attached to an empty
//! cgroup of its own (no process, so no traffic), and its flow map is filled
//! from userspace with N synthetic flows, each with a distinct remote.
//!
//! - `kernel_read/N`: one `CounterSource::read` of N flows (closed map,
//!   flow map in batches, overflow).
//! - `kernel_drain/all_active/100000`: one whole drain step (read, deltas,
//!   attribution, commit to a redb file) with every one of 100k flows
//!   changed since the last step. The change (one packet added to each
//!   flow from userspace) is made outside the timed part. Owners come from
//!   a resolver that knows one process (resolving is measured by the
//!   ownership benches).
//!
//! Without root it prints a SKIPPED line and measures nothing.
//!
//! Run: `cargo bench -p netmon-userspace --bench kernel_drain`
#![expect(clippy::unwrap_used, reason = "a benchmark panics at the failing call")]

use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use criterion::{BatchSize, BenchmarkId, Criterion};
use netmon::drain::Drain;
use netmon::kernel::reader::KernelSource;
use netmon::kernel::{KernelArgs, loader, sysfs};
use netmon::ownership::{Owners, ProcessId, ProcessInfo, Resolver};
use netmon::source::{CounterSource, Reading};
use netmon::store::{Retention, Store};
use netmon_common::names::MAP_FLOWS;
use netmon_common::{DirCounters, FlowKey, FlowValue};

const BASE_MS: u64 = 1_700_000_000_000;

/// netmon loaded into its own pin directory and empty cgroup; both removed
/// on drop.
struct Loaded {
    pin_dir: PathBuf,
    cgroup: PathBuf,
}

impl Loaded {
    fn new(max_flows: u32) -> Self {
        let me = std::process::id();
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/netmon-bench-{me}"));
        let cgroup = sysfs::cgroup2_root()
            .unwrap()
            .join(format!("netmon-bench-{me}"));
        std::fs::create_dir(&cgroup).unwrap();
        let loaded = Self { pin_dir, cgroup };
        loader::attach(&KernelArgs {
            pin_dir: loaded.pin_dir.clone(),
            cgroup: Some(loaded.cgroup.clone()),
            max_flows,
            ..KernelArgs::default()
        })
        .unwrap();
        loaded
    }

    fn flows_map(&self) -> BpfHashMap<MapData, FlowKey, FlowValue> {
        let path = Path::new(&self.pin_dir).join("maps").join(MAP_FLOWS);
        BpfHashMap::try_from(Map::HashMap(MapData::from_pin(path).unwrap())).unwrap()
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Err(e) = loader::detach(&self.pin_dir, false) {
            eprintln!("kernel_drain: unload {}: {e}", self.pin_dir.display());
        }
        if let Err(e) = std::fs::remove_dir(&self.cgroup) {
            eprintln!("kernel_drain: rmdir {}: {e}", self.cgroup.display());
        }
    }
}

/// Flow `i`: its own cookie and remote (a public IPv4 address and port).
fn key(i: u32) -> FlowKey {
    let mut remote_addr = [0u8; 16];
    remote_addr[..4].copy_from_slice(&[11 + (i % 200) as u8, (i >> 8) as u8, i as u8, 7]);
    FlowKey {
        cookie: 1_000_000 + u64::from(i),
        remote_addr,
        remote_port: 1 + (i % 60_000) as u16,
        ip_version: 4,
        protocol: 6,
        _pad: 0,
    }
}

fn value(packets: u64) -> FlowValue {
    FlowValue {
        tx: DirCounters {
            packets,
            ip_bytes: packets * 1500,
            payload_bytes: packets * 1448,
            retrans_bytes: 0,
        },
        rx: DirCounters {
            packets,
            ip_bytes: packets * 52,
            payload_bytes: 0,
            retrans_bytes: 0,
        },
        local_port: 443,
        ifindex: 2,
        first_boottime_ns: 1,
        ..FlowValue::default()
    }
}

/// Sets every one of the `n` flows to `packets`.
fn fill(map: &mut BpfHashMap<MapData, FlowKey, FlowValue>, n: u32, packets: u64) {
    let v = value(packets);
    for i in 0..n {
        map.insert(&key(i), &v, 0).unwrap();
    }
}

/// Every socket belongs to one process.
struct OneOwner(ProcessInfo);

impl Resolver for OneOwner {
    fn resolve(&mut self, reading: &Reading) -> Owners {
        let mut owners = Owners::default();
        for f in &reading.flows {
            owners.insert_ref(f.key.cookie, &self.0);
        }
        owners
    }

    fn forget(&mut self, _cookies: &[u64]) {}
}

fn owner() -> OneOwner {
    OneOwner(ProcessInfo {
        id: ProcessId {
            pid: 4242,
            start_ticks: 1,
        },
        comm: "bench".to_owned(),
        exe: None,
        cmdline: None,
        uid: 0,
        user: None,
        ppid: None,
        cgroup: None,
    })
}

fn kernel_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel_read");
    g.sample_size(10);
    for n in [1_000u32, 10_000, 100_000] {
        let loaded = Loaded::new(n);
        fill(&mut loaded.flows_map(), n, 1);
        let mut source = KernelSource::open(&loaded.pin_dir).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                let reading = source.read().unwrap();
                assert_eq!(reading.flows.len(), n as usize);
            });
        });
    }
    g.finish();
}

fn kernel_drain(c: &mut Criterion) {
    const N: u32 = 100_000;
    let loaded = Loaded::new(N);
    let mut map = loaded.flows_map();
    fill(&mut map, N, 1);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (mut store, _) = Store::open(&dir.path().join("bench.redb"), Retention::default()).unwrap();
    let mut drain = Drain::new(&mut store).unwrap();
    let mut source = KernelSource::open(&loaded.pin_dir).unwrap();
    let mut resolver = owner();
    let mut tick = 0u64;
    let mut step = |source: &mut KernelSource, resolver: &mut OneOwner, store: &mut Store| {
        tick += 1;
        let report = drain
            .step(source, resolver, store, BASE_MS + tick * 1000, Vec::new())
            .unwrap();
        assert_eq!(report.changed, N as usize);
    };
    step(&mut source, &mut resolver, &mut store);

    let mut g = c.benchmark_group("kernel_drain");
    g.sample_size(10);
    let mut packets = 1;
    g.bench_function(BenchmarkId::new("all_active", N), |b| {
        b.iter_batched(
            || {
                packets += 1;
                fill(&mut map, N, packets);
            },
            |()| step(&mut source, &mut resolver, &mut store),
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn main() {
    if !sysfs::is_root() {
        eprintln!(
            "kernel_drain: SKIPPED: needs root (loads netmon's programs and fills its flow map)"
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    kernel_read(&mut c);
    kernel_drain(&mut c);
    c.final_summary();
}
