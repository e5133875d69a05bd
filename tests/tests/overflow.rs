//! Test 9: a flow map far too small (`--max-flows 4`) for the traffic (one
//! sender talking to 12 receiving sockets: 24 flows). Flows that do not fit
//! are counted in the overflow entry and as failed insertions, both
//! reported, and nothing is lost: attributed flows plus overflow equal the
//! ground truth exactly, per direction.

use std::net::IpAddr;

use netmon_tests::{
    cgroup::CgroupGuard,
    check::{self, UDP4_OVERHEAD},
    mib,
    netmon::Netmon,
    netns::NetnsPair,
    require_root, scenario,
    snapshot::Counters,
    workload_exe,
};

const MAX_FLOWS: u64 = 4;
const SOCKETS: usize = 12;
const ROUNDS: u64 = 200;

#[test]
fn tiny_flow_map_overflows_without_loss() {
    if !require_root("tiny_flow_map_overflows_without_loss") {
        return;
    }
    let cg = CgroupGuard::new("overflow");
    let pair = NetnsPair::new("overflow");
    let netmon = Netmon::load_with(&cg, &["--max-flows", &MAX_FLOWS.to_string()]);
    let rx_ip: IpAddr = pair.b.v4().into();
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);

    let run = scenario::udp_burst(
        workload_exe!(),
        &cg,
        &pair.b,
        rx_ip,
        &pair.a,
        SOCKETS,
        ROUNDS,
        "100,1000",
    );

    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    let snap = netmon.snapshot();
    let status = netmon.status();

    assert!(
        snap.sockets.len() as u64 <= MAX_FLOWS,
        "{} flows in a map of {MAX_FLOWS}",
        snap.sockets.len()
    );
    let o = snap.overflow;
    assert!(
        o.failed_inserts > 0 && o.tx.packets > 0 && o.rx.packets > 0,
        "overflow must be reported: {o:?}"
    );
    check::assert_consistent(&snap);
    let expected = Counters {
        packets: run.sender.datagrams_sent,
        payload_bytes: run.sender.written,
        ip_bytes: run.sender.written + UDP4_OVERHEAD * run.sender.datagrams_sent,
        app_bytes: run.sender.written,
        retrans_bytes: 0,
    };
    assert_eq!(
        snap.totals.tx, expected,
        "totals.tx (flows + overflow; left: netmon) vs what was sent"
    );
    assert_eq!(
        snap.totals.rx, expected,
        "totals.rx (flows + overflow; left: netmon) vs what was received"
    );
    assert_eq!(
        snap.totals.tx.ip_bytes,
        after[0].delta(&before[0], mib::IP4_OUT_OCTETS),
        "vs sender MIB"
    );
    assert_eq!(
        snap.totals.rx.ip_bytes,
        after[1].delta(&before[1], mib::IP4_IN_OCTETS),
        "vs receiver MIB"
    );
    eprintln!(
        "  ok {} flows + overflow {:?} = {expected:?} per direction; {} failed inserts",
        snap.sockets.len(),
        (o.tx.packets, o.rx.packets),
        o.failed_inserts
    );

    // `netmon status` reports the same overflow and a full map.
    let status_failed = status
        .pointer("/overflow/failed_inserts")
        .and_then(serde_json::Value::as_u64);
    assert_eq!(
        status_failed,
        Some(o.failed_inserts),
        "status overflow.failed_inserts:\n{status:#}"
    );
    let flows_map = status
        .get("maps")
        .and_then(serde_json::Value::as_array)
        .and_then(|maps| {
            maps.iter()
                .find(|m| m.get("name").and_then(serde_json::Value::as_str) == Some("NETMON_FLOWS"))
        });
    let fill = flows_map.map(|m| {
        (
            m.get("entries").and_then(serde_json::Value::as_u64),
            m.get("max_entries").and_then(serde_json::Value::as_u64),
        )
    });
    assert_eq!(
        fill,
        Some((Some(MAX_FLOWS), Some(MAX_FLOWS))),
        "status flow map (entries, max_entries):\n{status:#}"
    );
}
