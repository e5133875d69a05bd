//! `netmon report` against a daemon on the simulated source: each format
//! is written and parses (JSON; SVG and HTML as XML; PNG decodes at the
//! stated size), and carries the window's numbers, checked against the
//! scenario's own ground truth (see `cli_support`).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use cli_support::{Daemon, Scenario};
use serde_json::Value;

const CONFIG: &str = "[[apps.rule]]\nname = \"web\"\nunit = \"web.service\"\n[http]\nlisten = []\n";

/// Binary units with one decimal, written here independently of netmon.
fn human(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < 4 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", ["B", "KiB", "MiB", "GiB", "TiB"][unit])
}

fn app_of(p: Option<&cli_support::Proc>) -> String {
    match p {
        None => "[unattributed]".to_owned(),
        Some(p) if p.cgroup.ends_with("web.service") => "web".to_owned(),
        Some(p) => p.exe.rsplit('/').next().unwrap().to_owned(),
    }
}

fn report(d: &Daemon, out: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["report", "--since", "1h", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = d.run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn texts(doc: &roxmltree::Document) -> String {
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_format_parses_and_carries_the_numbers() {
    let s = Scenario::standard();
    let d = Daemon::start(&s, CONFIG);
    d.settle(&s);
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = s.grand_total();
    let apps = s.truth(|_, p| Some(app_of(p)));
    let classes = s.truth(|f, _| Some(f.class().to_owned()));

    // JSON: the data.
    let json_path = dir.path().join("r.json");
    report(&d, &json_path, &["--by", "app", "--top", "2"]);
    let r: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["total"]["tx"]["payload_bytes"], tx.payload_bytes);
    assert_eq!(r["total"]["rx"]["ip_bytes"], rx.ip_bytes);
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "top 2 and other");
    assert_eq!(groups[2]["name"], "other");
    let mut sum_tx = 0;
    for g in groups {
        let b = |k: &str, f: &str| g[k][f].as_u64().unwrap();
        sum_tx += b("tx", "payload_bytes");
        let series: u64 = g["series_payload_bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            series,
            b("tx", "payload_bytes") + b("rx", "payload_bytes"),
            "{}",
            g["name"]
        );
        if g["other"] == false {
            let truth = apps[g["name"].as_str().unwrap()];
            assert_eq!(
                (b("tx", "payload_bytes"), b("rx", "ip_bytes")),
                (truth.0.payload_bytes, truth.1.ip_bytes)
            );
        }
    }
    assert_eq!(sum_tx, tx.payload_bytes, "top + other = total");
    for c in r["classes"].as_array().unwrap() {
        let truth = classes[c["name"].as_str().unwrap()];
        assert_eq!(c["tx"]["packets"], truth.0.packets);
        assert_eq!(c["rx"]["payload_bytes"], truth.1.payload_bytes);
    }
    assert_eq!(r["classes"].as_array().unwrap().len(), classes.len());

    // SVG: an XML document with the title, the names and the numbers.
    let svg_path = dir.path().join("r.svg");
    report(&d, &svg_path, &["--by", "app", "--top", "2"]);
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let words = texts(&doc);
    assert!(words.contains("Network use of"), "{words}");
    assert!(words.contains("UTC"), "the period");
    for g in groups {
        let name = g["name"].as_str().unwrap();
        assert!(words.contains(name), "{name} in {words}");
        let b =
            g["tx"]["payload_bytes"].as_u64().unwrap() + g["rx"]["payload_bytes"].as_u64().unwrap();
        assert!(words.contains(&human(b)), "{name}: {} in {words}", human(b));
    }
    for (class, (t, r)) in &classes {
        assert!(words.contains(class.as_str()), "{class}");
        assert!(
            words.contains(&human(t.payload_bytes + r.payload_bytes)),
            "{class}"
        );
    }

    // PNG: decodes at the stated size and is not blank.
    let png_path = dir.path().join("r.png");
    report(&d, &png_path, &["--by", "class"]);
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let pixels = &buf[..info.buffer_size()];
    assert!(pixels.iter().any(|b| *b < 128), "something is drawn");

    // HTML: well-formed, self-contained, the same numbers.
    let html_path = dir.path().join("r.html");
    report(&d, &html_path, &["--by", "app", "--top", "2"]);
    let text = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        !text.contains("src=\"http") && !text.contains("href=\"http"),
        "nothing from elsewhere"
    );
    let doc = roxmltree::Document::parse_with_options(
        &text,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let by_id = |id: &str| {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap()
    };
    assert_eq!(
        by_id("total-tx").attribute("data-bytes").unwrap(),
        tx.payload_bytes.to_string()
    );
    assert_eq!(
        by_id("total-rx").attribute("data-bytes").unwrap(),
        rx.payload_bytes.to_string()
    );
    assert!(
        doc.descendants().any(|n| n.tag_name().name() == "svg"),
        "the chart inline"
    );
    let data: Value = serde_json::from_str(by_id("report-data").text().unwrap()).unwrap();
    // The window slid between the two runs: compare the totals, not the
    // series' step positions.
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.as_object_mut().unwrap().remove("series_payload_bytes");
                g
            })
            .collect()
    };
    assert_eq!(strip(&data["groups"]), strip(&r["groups"]));
    assert_eq!(strip(&data["classes"]), strip(&r["classes"]));
    let cells: Vec<u64> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-bytes"))
        .map(|v| v.parse().unwrap())
        .collect();
    for g in groups {
        assert!(
            cells.contains(&g["tx"]["payload_bytes"].as_u64().unwrap()),
            "{}",
            g["name"]
        );
    }

    // Wrong extension or grouping: one line, non-zero.
    let o = d.run(&[
        "report",
        "--out",
        dir.path().join("r.pdf").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(".svg, .png, .html or .json"), "{err}");
    let o = d.run(&["report", "--by", "remote", "--out", "x.svg"]);
    assert!(!o.status.success());
}
