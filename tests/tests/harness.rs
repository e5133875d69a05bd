//! The harness itself, without netmon: namespaces that stay quiet, workloads
//! whose own counts agree with the kernel's MIB, guards that clean up. If
//! these fail, the netmon tests' ground truth cannot be trusted.

use std::{net::SocketAddr, path::Path};

use netmon_tests::{
    cgroup::CgroupGuard, check, mib, netns::NetnsPair, report::READY, require_root,
    workload::Workload, workload_exe,
};

#[test]
fn udp_burst_matches_mib_without_netmon() {
    if !require_root("udp_burst_matches_mib_without_netmon") {
        return;
    }
    let cg = CgroupGuard::new("harness");
    let pair = NetnsPair::new("harness");
    let before = mib::wait_quiet(&[&pair.a, &pair.b]);
    let mut rx = Workload::spawn(
        workload_exe!(),
        [
            "udp-recv",
            "--bind",
            &pair.b.v4().to_string(),
            "--expect",
            "500",
            "--rcvbuf",
            "16777216",
        ],
        &cg,
        Some(&pair.b),
    );
    let port = rx.wait_event(READY).ports[0];
    let to = SocketAddr::new(pair.b.v4().into(), port).to_string();
    let mut tx = Workload::spawn(
        workload_exe!(),
        [
            "udp-send",
            "--to",
            &to,
            "--count",
            "500",
            "--sizes",
            "10,700,1400",
        ],
        &cg,
        Some(&pair.a),
    );
    let sent = tx.wait_done();
    let got = rx.wait_done();
    let after = mib::wait_quiet(&[&pair.a, &pair.b]);
    assert_eq!(sent.datagrams_sent, 500);
    assert_eq!(got.datagrams_received, 500);
    assert_eq!(got.read, sent.written);
    assert_eq!(
        after[0].delta(&before[0], mib::IP4_OUT_OCTETS),
        sent.written + 500 * check::UDP4_OVERHEAD
    );
    assert_eq!(
        after[1].delta(&before[1], mib::IP4_IN_OCTETS),
        sent.written + 500 * check::UDP4_OVERHEAD
    );
    assert_eq!(after[1].delta(&before[1], mib::UDP_IN_DATAGRAMS), 500);
    // Nothing else moved: no ARP, no IPv6 chatter.
    assert_eq!(after[0].delta(&before[0], mib::IP6_OUT_OCTETS), 0);
    assert_eq!(after[0].delta(&before[0], mib::IP4_IN_OCTETS), 0);
}

#[test]
fn guards_remove_what_they_created() {
    if !require_root("guards_remove_what_they_created") {
        return;
    }
    let mut stray = std::process::Command::new("/bin/sleep");
    let mut stray = stray.arg("60").spawn().expect("spawn sleep");
    let (cg_path, ns_names) = {
        let cg = CgroupGuard::new("guards");
        let pair = NetnsPair::new("guards");
        // A workload that would run for a minute: the guards must end it.
        let _w = Workload::spawn(Path::new("/bin/sleep"), ["60"], &cg, Some(&pair.a));
        // `stray` was started outside any Workload guard and is moved into
        // the cgroup by hand: only the cgroup guard can end it.
        std::fs::write(cg.procs_file(), stray.id().to_string()).expect("move into cgroup");
        assert_eq!(cg.pids().len(), 2);
        (
            cg.path().to_path_buf(),
            [pair.a.name().to_owned(), pair.b.name().to_owned()],
        )
    };
    assert!(!cg_path.exists(), "{} still exists", cg_path.display());
    for name in ns_names {
        assert!(
            !Path::new("/run/netns").join(&name).exists(),
            "namespace {name} still exists"
        );
    }
    let status = stray.wait().expect("reap sleep");
    assert!(
        !status.success(),
        "the cgroup guard should have killed it: {status}"
    );
}
