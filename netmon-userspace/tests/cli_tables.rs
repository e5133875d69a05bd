//! Table output (`--format table`), checked with insta snapshots at
//! terminal widths 80 and 160 (`COLUMNS`): every table fits its width.
//! Times are replaced by `<TIME>` (they depend on when the test runs);
//! every number comes from the simulated scenario and is exact. Tables of
//! documents whose shape depends on the clock (history, export, top) or on
//! the kernel (snapshot) are rendered from fixed documents written here.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use cli_support::{Daemon, Scenario};
use netmon::wire::{
    Counters, Export, ExportRow, History, HistoryPoint, Overflow, ProcessCounters, Snapshot,
    SocketCounters, Top, TopRow, Totals,
};

const WIDTHS: [usize; 2] = [80, 160];

fn untimed(text: &str) -> String {
    let re = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").unwrap();
    re.replace_all(text, "<TIME>").into_owned()
}

fn table(d: &Daemon, args: &[&str], width: usize) -> String {
    let mut a = args.to_vec();
    a.extend(["--format", "table"]);
    let out = d.run_width(&a, width);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    fits(&text, width);
    untimed(&text)
}

/// Every line fits the width.
fn fits(text: &str, width: usize) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= width,
            "{} columns > {width}: {line:?}",
            line.chars().count()
        );
    }
}

#[test]
fn tables() {
    let s = Scenario::standard();
    let d = Daemon::start(
        &s,
        "[[apps.rule]]\nname = \"web\"\nunit = \"web.service\"\n",
    );
    d.settle(&s);
    for w in WIDTHS {
        for (name, args) in [
            ("usage_by_process", vec!["usage", "--since", "1h"]),
            (
                "usage_by_app",
                vec!["usage", "--since", "1h", "--by", "app"],
            ),
            (
                "usage_by_port_raw",
                vec!["usage", "--since", "1h", "--by", "port", "--bytes"],
            ),
            (
                "usage_by_remote",
                vec!["usage", "--since", "1h", "--by", "remote"],
            ),
            (
                "usage_by_cgroup",
                vec!["usage", "--since", "1h", "--by", "cgroup"],
            ),
            (
                "usage_by_user",
                vec!["usage", "--since", "1h", "--by", "user"],
            ),
            (
                "usage_by_protocol",
                vec!["usage", "--since", "1h", "--by", "protocol"],
            ),
            (
                "usage_by_class",
                vec!["usage", "--since", "1h", "--by", "class"],
            ),
            // (--by interface names interfaces as this host has them:
            // not a stable snapshot; cli_queries checks its numbers.)
            (
                "usage_by_process_top2",
                vec!["usage", "--since", "1h", "-n", "2"],
            ),
            ("procs", vec!["procs", "--since", "1h"]),
        ] {
            insta::assert_snapshot!(format!("{name}_{w}"), table(&d, &args, w));
        }
    }
}

fn c(packets: u64, payload: u64) -> Counters {
    Counters {
        packets,
        ip_bytes: payload + 52 * packets,
        payload_bytes: payload,
        app_bytes: payload,
        retrans_bytes: 0,
    }
}

/// 2026-11-23T08:00:00Z.
const T0: u64 = 1_795_420_800_000;

fn history_doc() -> History {
    let step = 60_000;
    let points = (0..12u64)
        .map(|k| {
            let t = T0 + k * step;
            // Two gaps, a partial last step, traffic growing then falling.
            let data = !(k == 3 || k == 4);
            let v = if k < 6 { k + 1 } else { 12 - k } * 40_000;
            HistoryPoint {
                time: netmon::clock::rfc3339_from_unix_ms(t),
                time_unix_ms: t,
                span_ms: if k == 11 { 30_000 } else { step },
                tx: data.then(|| c(k + 2, v)),
                rx: data.then(|| c(2 * k + 3, 3 * v)),
            }
        })
        .collect::<Vec<_>>();
    let sum = |f: fn(&HistoryPoint) -> Option<Counters>| {
        points
            .iter()
            .filter_map(f)
            .fold(Counters::default(), Counters::plus)
    };
    History {
        schema_version: 1,
        from: netmon::clock::rfc3339_from_unix_ms(T0),
        from_unix_ms: T0,
        until: netmon::clock::rfc3339_from_unix_ms(T0 + 12 * step),
        until_unix_ms: T0 + 12 * step,
        step_ms: step,
        tier: "minute".to_owned(),
        filters: vec!["app=curl".to_owned()],
        class: Some("internet".to_owned()),
        total: Totals {
            tx: sum(|p| p.tx),
            rx: sum(|p| p.rx),
        },
        points,
        covered_from_unix_ms: Some(T0),
        covered_until_unix_ms: Some(T0 + 11 * step + 30_000),
        exact: true,
        note: None,
    }
}

#[test]
fn history_table() {
    let doc = history_doc();
    for w in WIDTHS {
        let text = netmon::cli::history::table(&doc, false, Some(w));
        fits(&text, w);
        insta::assert_snapshot!(format!("history_{w}"), text);
    }
    // Gaps are `-`, never zero; rates divide by the step's part in the
    // window (the last step is half a minute: 40 kB in 30 s).
    let text = netmon::cli::history::table(&doc, true, Some(160));
    let rows: Vec<&str> = text.lines().skip(1).take(12).collect();
    assert!(
        rows[3].contains(" -") && !rows[3].contains(" 0 "),
        "{}",
        rows[3]
    );
    assert!(rows[11].contains(" 1333 "), "{}", rows[11]);
}

#[test]
fn export_table() {
    let rows = (0..3u64)
        .map(|k| ExportRow {
            time: netmon::clock::rfc3339_from_unix_ms(T0 + k * 5_000),
            time_unix_ms: T0 + k * 5_000,
            tier: "interval".to_owned(),
            pid: 4242,
            start_ticks: 99,
            comm: "firefox-esr-with-a-long-name".to_owned(),
            app: "firefox".to_owned(),
            user: "alice".to_owned(),
            class: "internet".to_owned(),
            tx_packets: k + 1,
            tx_ip_bytes: 1000 * (k + 1),
            tx_payload_bytes: 900 * (k + 1),
            rx_packets: 2 * k + 1,
            rx_ip_bytes: 70_000 * (k + 1),
            rx_payload_bytes: 65_000 * (k + 1),
            tx_app_bytes: 900 * (k + 1),
            tx_retrans_bytes: 0,
            rx_app_bytes: 65_000 * (k + 1),
            rx_retrans_bytes: 0,
            remote: None,
        })
        .collect();
    let doc = Export {
        schema_version: 1,
        from: netmon::clock::rfc3339_from_unix_ms(T0),
        from_unix_ms: T0,
        until: netmon::clock::rfc3339_from_unix_ms(T0 + 15_000),
        until_unix_ms: T0 + 15_000,
        rows,
    };
    for w in WIDTHS {
        let mut out = Vec::new();
        netmon::cli::export::write_table(&mut out, &doc, false, Some(w)).unwrap();
        let text = String::from_utf8(out).unwrap();
        fits(&text, w);
        insta::assert_snapshot!(format!("export_{w}"), text);
    }
}

fn top_doc() -> Top {
    let row = |key: &str, pid: Option<u32>, comm: Option<&str>, bg: Option<bool>, k: u64| TopRow {
        key: key.to_owned(),
        fields: netmon::wire::GroupFields {
            pid,
            comm: comm.map(str::to_owned),
            ..Default::default()
        },
        no_tty: bg,
        tx_bytes_per_sec: 1500.0 * k as f64,
        rx_bytes_per_sec: 90_000.0 * k as f64,
        tx: c(10 * k, 15_000 * k),
        rx: c(30 * k, 900_000 * k),
    };
    Top {
        schema_version: 1,
        taken_at: netmon::clock::rfc3339_from_unix_ms(T0 + 61_000),
        taken_at_unix_ms: T0 + 61_000,
        since_unix_ms: T0,
        interval_ms: 1_000,
        by: "process".to_owned(),
        source: "daemon".to_owned(),
        rows: vec![
            row("4242:99", Some(4242), Some("firefox-esr"), Some(false), 3),
            row("812:7", Some(812), Some("systemd-resolved"), Some(true), 2),
            row("0:0", Some(0), Some("[unattributed]"), None, 1),
        ],
    }
}

#[test]
fn top_table_and_screen() {
    use netmon::cli::top::{Sort, tui};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let doc = top_doc();
    for w in WIDTHS {
        let text = netmon::cli::top::table(&doc, false, Some(w));
        fits(&text, w);
        insta::assert_snapshot!(format!("top_table_{w}"), untimed(&text));
        for help in [false, true] {
            let mut term = Terminal::new(TestBackend::new(u16::try_from(w).unwrap(), 12)).unwrap();
            term.draw(|f| {
                tui::draw(
                    f,
                    Some(&doc),
                    tui::View {
                        order: Sort::Total,
                        help,
                        raw: false,
                    },
                );
            })
            .unwrap();
            let screen: String = term
                .backend()
                .buffer()
                .content()
                .chunks(w)
                .map(|line| {
                    let s: String = line.iter().map(ratatui::buffer::Cell::symbol).collect();
                    s.trim_end().to_owned() + "\n"
                })
                .collect();
            // The title is whole (not cut), the keys are reachable.
            assert!(screen.contains("? keys"), "{screen}");
            if help {
                assert!(screen.contains("sort by sent rate"), "{screen}");
            } else {
                assert!(
                    screen.contains("netmon top · by process · sort tx+rx · daemon"),
                    "{screen}"
                );
            }
            let name = if help { "top_help" } else { "top_screen" };
            insta::assert_snapshot!(format!("{name}_{w}"), screen);
        }
    }
}

fn snapshot_doc() -> Snapshot {
    let p = |pid, comm: &str, user: Option<&str>, exe: Option<&str>, k| ProcessCounters {
        pid,
        start_ticks: 77,
        comm: comm.to_owned(),
        exe: exe.map(str::to_owned),
        cmdline: None,
        uid: if user.is_some() { 1000 } else { 0 },
        user: user.map(str::to_owned),
        cgroup: Some("/user.slice/user-1000.slice/session-2.scope".to_owned()),
        sockets: k,
        tx: c(5 * k, 7_000 * k),
        rx: c(9 * k, 800_000 * k),
    };
    let sock = SocketCounters {
        cookie: 41,
        pid: 4242,
        start_ticks: 77,
        comm: "firefox-esr".to_owned(),
        protocol: "tcp".to_owned(),
        protocol_number: 6,
        ip_version: 6,
        local_addr: "2001:db8:aaaa:bbbb::17".parse().unwrap(),
        local_port: 51_234,
        remote_addr: "2606:4700:4700::1111".parse().unwrap(),
        remote_port: 443,
        ifindex: 2,
        netns_cookie: 1,
        closed: false,
        tx: c(5, 7_000),
        rx: c(9, 800_000),
        tcp: None,
        server_name: None,
    };
    Snapshot {
        schema_version: 1,
        taken_at: netmon::clock::rfc3339_from_unix_ms(T0),
        taken_at_unix_ms: T0,
        processes: vec![
            p(
                4242,
                "firefox-esr",
                Some("alice"),
                Some("/usr/lib/firefox-esr/firefox-esr"),
                3,
            ),
            p(0, "[unattributed]", None, None, 1),
        ],
        sockets: Some(vec![sock]),
        overflow: Overflow::default(),
        totals: Totals {
            tx: c(20, 28_000),
            rx: c(36, 3_200_000),
        },
    }
}

#[test]
fn snapshot_table_and_rows() {
    let doc = snapshot_doc();
    for w in WIDTHS {
        let text = netmon::cli::snapshot::table(&doc, false, Some(w));
        fits(&text, w);
        insta::assert_snapshot!(format!("snapshot_{w}"), text);
    }
    // `--format csv` is CSV (one row per socket with --sockets, else per
    // process), not JSON.
    let mut out = Vec::new();
    netmon::cli::snapshot::write(&mut out, &doc, netmon::cli::output::Format::Csv, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().clone();
    assert_eq!(&header[0], "cookie");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("remote_addr")], "2606:4700:4700::1111");
    assert_eq!(&rows[0][col("rx_payload_bytes")], "800000");
    let mut procs_only = doc.clone();
    procs_only.sockets = None;
    let mut out = Vec::new();
    netmon::cli::snapshot::write(
        &mut out,
        &procs_only,
        netmon::cli::output::Format::Csv,
        false,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(&r.headers().unwrap()[0], "pid");
    assert_eq!(r.records().count(), 2);
    // NDJSON: one process per line.
    let mut out = Vec::new();
    netmon::cli::snapshot::write(
        &mut out,
        &procs_only,
        netmon::cli::output::Format::Ndjson,
        false,
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["pid"], 4242);
}
