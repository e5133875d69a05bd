//! App names, defined once: the config's `[apps]` rules, first matching rule
//! wins, else the executable's file name ([`ProcessInfo::default_app`];
//! `comm` only when the executable is unknown). Every reader groups and
//! filters by app through [`AppRules::app_of`] (via `query::facts`), so
//! `--by app`, `--filter app=`, `procs`, `top` and the API agree. Short-lived
//! processes have their executable too (recorded at exec), so one program
//! is one app however long its processes live. Rules:
//!
//! ```toml
//! [[apps.rule]]
//! name = "web"
//! unit = "nginx.service"          # container or systemd unit (see store::unit)
//! [[apps.rule]]
//! name = "backup"
//! cmdline = "^restic .*backup"    # regular expression on the command line
//! [[apps.rule]]
//! name = "browser"
//! exe = "/usr/lib/firefox/"       # exact path, or a directory prefix ending in '/'
//! [[apps.rule]]
//! name = "batch"
//! cgroup = "/system.slice/batch"  # cgroup path or any parent of it
//! ```
//! A rule with several conditions needs all of them.
use regex::Regex;

use crate::model::ProcessInfo;

/// One mapping rule (all present conditions must match).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    /// The app name processes matching this rule get.
    pub name: String,
    /// Executable path, exact; a value ending in `/` matches everything below.
    #[serde(default)]
    pub exe: Option<String>,
    /// Regular expression searched in the command line.
    #[serde(default, with = "opt_regex")]
    pub cmdline: Option<Regex>,
    /// cgroup path; matches it and every cgroup below it.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Container or unit name as `store::unit_of_cgroup` derives it
    /// (`nginx.service`, `docker:0123456789ab`).
    #[serde(default)]
    pub unit: Option<String>,
}

/// The `[apps]` section.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRules {
    /// Rules, first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<AppRule>,
}

impl PartialEq for AppRule {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.exe == o.exe
            && self.cmdline.as_ref().map(Regex::as_str) == o.cmdline.as_ref().map(Regex::as_str)
            && self.cgroup == o.cgroup
            && self.unit == o.unit
    }
}

impl Eq for AppRule {}

impl PartialEq for AppRules {
    fn eq(&self, o: &Self) -> bool {
        self.rules == o.rules
    }
}

impl Eq for AppRules {}

mod opt_regex {
    use regex::Regex;
    use serde::Deserialize as _;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| Regex::new(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl AppRule {
    fn matches(&self, info: &ProcessInfo, unit: Option<&str>) -> bool {
        let exe_ok = self.exe.as_deref().is_none_or(|want| {
            info.exe.as_deref().is_some_and(|exe| {
                if want.ends_with('/') {
                    exe.starts_with(want)
                } else {
                    exe == want
                }
            })
        });
        let cmd_ok = self
            .cmdline
            .as_ref()
            .is_none_or(|re| info.cmdline.as_deref().is_some_and(|c| re.is_match(c)));
        let cg_ok = self.cgroup.as_deref().is_none_or(|want| {
            let want = want.trim_end_matches('/');
            info.cgroup.as_deref().is_some_and(|cg| {
                cg == want || (cg.starts_with(want) && cg.as_bytes().get(want.len()) == Some(&b'/'))
            })
        });
        let unit_ok = self.unit.as_deref().is_none_or(|want| unit == Some(want));
        exe_ok && cmd_ok && cg_ok && unit_ok
    }
}

impl AppRules {
    /// The app name of a process whose container/unit is `unit`.
    #[must_use]
    pub fn app_of(&self, info: &ProcessInfo, unit: Option<&str>) -> String {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(info, unit)) {
            return rule.name.clone();
        }
        default_app(info)
    }
}

/// The app of a process no rule matches: [`ProcessInfo::default_app`] (the
/// executable's file name, else `comm`).
#[must_use]
pub fn default_app(info: &ProcessInfo) -> String {
    info.default_app()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProcessId;

    fn info(exe: &str, cmdline: &str, cgroup: &str) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid: 1,
                start_ticks: 1,
            },
            comm: "comm".into(),
            exe: Some(exe.into()),
            cmdline: Some(cmdline.into()),
            uid: 0,
            user: None,
            ppid: None,
            cgroup: Some(cgroup.into()),
        }
    }

    #[test]
    fn rules_in_order_then_exe_name() {
        let rules: AppRules = toml::from_str(
            r#"
            [[rule]]
            name = "web"
            unit = "nginx.service"
            [[rule]]
            name = "backup"
            cmdline = "^restic .*backup"
            [[rule]]
            name = "browser"
            exe = "/usr/lib/firefox/"
            [[rule]]
            name = "batch"
            cgroup = "/system.slice/batch"
            "#,
        )
        .unwrap();
        let p = info("/usr/sbin/nginx", "nginx -g", "/system.slice/nginx.service");
        assert_eq!(rules.app_of(&p, Some("nginx.service")), "web");
        let p = info("/usr/bin/restic", "restic -r x backup /", "/user.slice");
        assert_eq!(rules.app_of(&p, None), "backup");
        let p = info("/usr/lib/firefox/firefox-bin", "", "/");
        assert_eq!(rules.app_of(&p, None), "browser");
        let p = info("/bin/sh", "", "/system.slice/batch/job1");
        assert_eq!(rules.app_of(&p, None), "batch");
        // A sibling whose name only starts with the rule's path is not below it.
        let p = info("/bin/sh", "", "/system.slice/batchy");
        assert_eq!(rules.app_of(&p, None), "sh");
        let mut p = info("/bin/sh", "", "/");
        p.exe = None;
        assert_eq!(rules.app_of(&p, None), "comm");
    }

    /// The default app is the executable's file name, never the name the
    /// program was started by or a thread's name; `comm` only without exe.
    #[test]
    fn default_app_is_the_executables_name() {
        let rules = AppRules::default();
        let mut p = info("/usr/bin/python3.11", "python3 x.py", "/");
        p.comm = "python3".into();
        assert_eq!(rules.app_of(&p, None), "python3.11");
        p.comm = "Socket Thread".into();
        assert_eq!(rules.app_of(&p, None), "python3.11");
        p.exe = Some("/usr/bin/python3.11 (deleted)".into());
        assert_eq!(rules.app_of(&p, None), "python3.11");
        p.exe = Some("/".into());
        assert_eq!(rules.app_of(&p, None), "Socket Thread");
        p.exe = None;
        assert_eq!(rules.app_of(&p, None), "Socket Thread");
        assert_eq!(default_app(&p), p.default_app());
    }

    #[test]
    fn bad_regex_is_a_config_error() {
        let r: Result<AppRules, _> = toml::from_str("[[rule]]\nname = \"x\"\ncmdline = \"(\"\n");
        assert!(r.is_err());
    }
}
