//! Table output (`--format table`), checked with insta snapshots. Times
//! are replaced by `<TIME>` (they depend on when the test runs); every
//! number comes from the simulated scenario and is exact.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod cli_support;

use cli_support::{Daemon, Scenario};

fn table(d: &Daemon, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend(["--format", "table"]);
    let out = d.run(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let re = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").unwrap();
    re.replace_all(&text, "<TIME>").into_owned()
}

#[test]
fn tables() {
    let s = Scenario::standard();
    let d = Daemon::start(
        &s,
        "[[apps.rule]]\nname = \"web\"\nunit = \"web.service\"\n",
    );
    d.settle(&s);
    insta::assert_snapshot!(
        "usage_by_app",
        table(&d, &["usage", "--since", "1h", "--by", "app"])
    );
    insta::assert_snapshot!(
        "usage_by_port_raw",
        table(&d, &["usage", "--since", "1h", "--by", "port", "--bytes"])
    );
    insta::assert_snapshot!(
        "usage_by_process_top2",
        table(&d, &["usage", "--since", "1h", "-n", "2"])
    );
    let procs = table(&d, &["procs", "--since", "1h"]);
    insta::assert_snapshot!("procs", procs);
    let h = table(
        &d,
        &[
            "history", "--since", "1h", "--step", "1h", "--class", "internet",
        ],
    );
    // One or two hour rows depending on the clock; the summary line is fixed.
    insta::assert_snapshot!("history_internet_summary", h.lines().last().unwrap());
}
