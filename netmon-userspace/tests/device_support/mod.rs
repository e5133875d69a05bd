//! Simulated LAN device history for the dashboard and exporter tests
//! (`http_browser`, `metrics_prometheus`): device counter rows written
//! into a daemon's store before it starts, the `[interfaces]` and
//! `[devices]` config naming them (a static name, a dnsmasq lease, two
//! randomised MACs merged by name), and the truth per device, direction
//! and class summed from the rows the test wrote (never from netmon's
//! answers).
#![allow(dead_code, reason = "each test file uses a part")]

use std::collections::BTreeMap;
use std::path::Path;

use netmon::store::devcount::{DevBatch, DevRow};
use netmon::store::ifcount::IfBatch;
use netmon::store::{Batch, Retention, Store};

/// The overflow MAC (the kernel's per-interface overflow keys).
pub const OVERFLOW_MAC: [u8; 6] = [0; 6];
/// Named in the config: `nas`.
pub const NAS: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x01];
/// Named by the lease: `phone` (randomised).
pub const PHONE: [u8; 6] = [0xda, 0x11, 0x22, 0x33, 0x44, 0x02];
/// No name, on the second LAN interface.
pub const PRINTER: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x03];
/// Broadcast.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// Two randomised MACs merged as `tablet`.
pub const TABLET: [[u8; 6]; 2] = [
    [0xde, 0xad, 0x00, 0x00, 0x00, 0x05],
    [0xde, 0xad, 0x00, 0x00, 0x00, 0x06],
];

const DIR_INGRESS: u8 = 0;
const DIR_EGRESS: u8 = 1;

/// `aa:bb:...`.
pub fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The device id netmon's answers use for `m`: `tablet` for the merged
/// MACs, `overflow` for the overflow MAC, else the MAC.
pub fn device_id(m: &[u8; 6]) -> String {
    if TABLET.contains(m) {
        "tablet".to_owned()
    } else if *m == OVERFLOW_MAC {
        "overflow".to_owned()
    } else {
        mac(m)
    }
}

/// The `device` label of the exporter: the merged or given name, else the
/// MAC.
pub fn label(m: &[u8; 6]) -> String {
    match *m {
        NAS => "nas".to_owned(),
        PHONE => "phone".to_owned(),
        _ => device_id(m),
    }
}

/// The class names, by `DEV_CLASS_*` value.
pub const CLASSES: [&str; 4] = ["host", "forwarded_local", "forwarded_internet", "not_ip"];

/// Prepares a daemon's directory `dir` before it starts: the lease file
/// (in the daemon's own directory, which its sandboxed query threads may
/// read), the config tables appended to its `config.toml` (LAN
/// interfaces, the static name, the lease file, the merge) and the device
/// history in its `db.redb` ([`fill`]). Returns the rows written.
pub fn prepare(dir: &Path) -> Rows {
    let leases = dir.join("dnsmasq.leases");
    std::fs::write(
        &leases,
        format!(
            "1999999999 {} 192.168.1.23 phone 01:da:11:22:33:44:02\n1999999999 {} 192.168.1.10 * *\n",
            mac(&PHONE),
            mac(&NAS)
        ),
    )
    .expect("leases");
    let config = dir.join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text += &format!(
        "\n[interfaces]\nlan = [\"lan*\"]\n[devices]\nleases = [\"{}\"]\nnames = {{ \"{}\" = \"nas\" }}\nmerge = {{ \"tablet\" = [\"{}\", \"{}\"] }}\n",
        leases.display(),
        mac(&NAS),
        mac(&TABLET[0]),
        mac(&TABLET[1])
    );
    std::fs::write(&config, text).expect("config");
    fill(&dir.join("db.redb"), now_ms())
}

/// The rows written: `(time, row)`.
pub type Rows = Vec<(u64, DevRow)>;

/// Writes device history into `db` (a store netmon opens next): five
/// drains a minute apart ending two minutes before `now_ms`, on `lan0`
/// (index 4) and `lan1` (index 5). Returns the rows.
pub fn fill(db: &Path, now_ms: u64) -> Rows {
    let (mut store, _) = Store::open(db, Retention::default()).expect("open the store");
    let mut out = Vec::new();
    let macs: [([u8; 6], u32); 7] = [
        (NAS, 4),
        (PHONE, 4),
        (PRINTER, 5),
        (TABLET[0], 4),
        (TABLET[1], 4),
        (BROADCAST, 4),
        (OVERFLOW_MAC, 4),
    ];
    for step in 0..5_u64 {
        let ts = now_ms - 6 * 60_000 + step * 60_000;
        let mut rows = Vec::new();
        for (i, (m, ifindex)) in macs.iter().enumerate() {
            let i = i as u64;
            for direction in [DIR_INGRESS, DIR_EGRESS] {
                for class in 0..4_u8 {
                    // Broadcast frames are only received; a device skips
                    // some classes in some drains.
                    if *m == BROADCAST && direction == DIR_INGRESS {
                        continue;
                    }
                    if (i + u64::from(class) + step).is_multiple_of(3) {
                        continue;
                    }
                    let packets = 1 + (i * 7 + u64::from(class) * 3 + step) % 11;
                    rows.push(DevRow {
                        ifindex: *ifindex,
                        mac: *m,
                        direction,
                        class,
                        packets,
                        bytes: packets * (60 + 97 * i + 13 * u64::from(class))
                            + u64::from(direction) * 1_000 * (step + 1),
                    });
                }
            }
        }
        for r in &rows {
            out.push((ts, *r));
        }
        store
            .commit(&Batch {
                ts_ms: ts,
                ifcount: IfBatch {
                    names: if step == 0 {
                        vec![(4, "lan0".to_owned()), (5, "lan1".to_owned())]
                    } else {
                        Vec::new()
                    },
                    devices: DevBatch {
                        rows,
                        snapshot: Vec::new(),
                    },
                    ..IfBatch::default()
                },
                ..Batch::default()
            })
            .expect("commit device rows");
    }
    out
}

/// Per `(key(mac), direction, class)`: `(packets, bytes)`, direction as
/// the device sees it (`tx`: it sent, ingress on the LAN interface).
pub fn truth(
    rows: &Rows,
    key: fn(&[u8; 6]) -> String,
) -> BTreeMap<(String, String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for (_, r) in rows {
        let dir = if r.direction == DIR_EGRESS {
            "rx"
        } else {
            "tx"
        };
        let e = out
            .entry((
                key(&r.mac),
                dir.to_owned(),
                CLASSES[usize::from(r.class)].to_owned(),
            ))
            .or_default();
        e.0 += r.packets;
        e.1 += r.bytes;
    }
    out
}

/// Now, unix ms.
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}
