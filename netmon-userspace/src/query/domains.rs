//! What a server name means: its registered domain and its service.
//!
//! Both are derived from the stored server name ([`crate::store::names`])
//! when a query asks, never stored: a newer public suffix list or an edited
//! services catalogue applies to the whole history at once.
//! - **Registered domain** (eTLD+1): the public suffix plus one label,
//!   from the `psl` crate's compiled-in copy of the Public Suffix List
//!   (`www.bbc.co.uk` → `bbc.co.uk`). A name that is itself a public
//!   suffix, or has no known suffix, is its own domain.
//! - **Service**: the services catalogue ([`Catalogue`]): domain suffixes
//!   per service name, the longest match winning. The built-in catalogue
//!   (`services.toml` next to this file, compiled in) is extended or
//!   overridden by a file (`[names] services`, default
//!   `/etc/netmon/services.toml`); the daemon installs it at start
//!   ([`set_catalogue`]) and queries read it ([`catalogue`]).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};

use crate::query::terms::{Dimension, FilterKey, FilterTerm, GroupKey};
use crate::store::names::NameId;

/// Where the services catalogue is looked for when `[names] services` is
/// not set (a missing file there is not an error).
pub const DEFAULT_SERVICES: &str = "/etc/netmon/services.toml";

/// The built-in catalogue.
const BUILTIN: &str = include_str!("services.toml");

/// `[names]` of the config file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesConfig {
    /// Learn and store server names (default true). Off: no name is
    /// stored, and names already stored with live flows are deleted.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The services catalogue file (default [`DEFAULT_SERVICES`], which
    /// may be missing; a file named here must exist).
    #[serde(default)]
    pub services: Option<PathBuf>,
    /// Look up PTR names for remotes and LAN devices that have no better
    /// name (default false: nothing leaves the machine;
    /// [`crate::names::ptr`]). Needs `enabled`.
    #[serde(default)]
    pub reverse_lookup: bool,
    /// Where the reverse lookup asks (`IP` or `IP:PORT`; default the
    /// first `nameserver` of `/etc/resolv.conf`).
    #[serde(default)]
    pub resolver: Option<String>,
}

const fn yes() -> bool {
    true
}

impl Default for NamesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            services: None,
            reverse_lookup: false,
            resolver: None,
        }
    }
}

/// The registered domain (eTLD+1) of `name`, lower case; `name` itself
/// when it has none.
#[must_use]
pub fn registered_domain(name: &str) -> String {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain(lower.as_bytes()) {
        Some(d) => String::from_utf8_lossy(d.as_bytes()).into_owned(),
        None => lower,
    }
}

/// True when `name` is `suffix` or ends in `.suffix` (ASCII case ignored).
#[must_use]
pub fn matches_suffix(name: &str, suffix: &str) -> bool {
    let (n, s) = (name.as_bytes(), suffix.trim_start_matches('.').as_bytes());
    if s.is_empty() || n.len() < s.len() {
        return false;
    }
    let tail = &n[n.len() - s.len()..];
    tail.eq_ignore_ascii_case(s) && (n.len() == s.len() || n[n.len() - s.len() - 1] == b'.')
}

/// A services catalogue file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    /// Keep the built-in entries (default true).
    #[serde(default = "yes")]
    builtin: bool,
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

/// One service and its domains.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    domains: Vec<String>,
}

/// Errors reading a catalogue file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read.
    #[error("reading services catalogue {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid catalogue.
    #[error("services catalogue {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column).
        message: String,
    },
}

/// Domain suffixes → service names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// Lower-case suffix → service.
    by_suffix: HashMap<String, Arc<str>>,
}

impl Catalogue {
    /// The built-in catalogue.
    #[must_use]
    pub fn builtin() -> Self {
        // The built-in text is tested to parse (see the tests below).
        let file: CatalogueFile = toml::from_str(BUILTIN).unwrap_or_default();
        let mut c = Self::default();
        c.add(file.service);
        c
    }

    /// The built-in catalogue extended (and, per service name, overridden)
    /// by the catalogue text `text`.
    ///
    /// # Errors
    /// When `text` is not a catalogue.
    pub fn with_overrides(text: &str, path: &Path) -> Result<Self, CatalogueError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| CatalogueError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        if let Some(bad) = file.service.iter().find(|s| s.name.trim().is_empty()) {
            return Err(CatalogueError::Parse {
                path: path.to_owned(),
                message: format!("a service with domains {:?} has no name", bad.domains),
            });
        }
        let mut c = if file.builtin {
            Self::builtin()
        } else {
            Self::default()
        };
        // Same name as a built-in service: the file's entry replaces it.
        let names: Vec<&str> = file.service.iter().map(|s| s.name.as_str()).collect();
        c.by_suffix.retain(|_, v| !names.contains(&&**v));
        c.add(file.service);
        Ok(c)
    }

    /// Loads `path` over the built-in catalogue; with `explicit` false a
    /// missing file means the built-in catalogue alone.
    ///
    /// # Errors
    /// When the file cannot be read (or is missing and `explicit`) or does
    /// not parse.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, CatalogueError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::with_overrides(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::builtin()),
            Err(source) => Err(CatalogueError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The catalogue `[names]` names (`services`, or [`DEFAULT_SERVICES`]).
    ///
    /// # Errors
    /// See [`Self::load`].
    pub fn from_config(cfg: &NamesConfig) -> Result<Self, CatalogueError> {
        match &cfg.services {
            Some(p) => Self::load(p, true),
            None => Self::load(Path::new(DEFAULT_SERVICES), false),
        }
    }

    fn add(&mut self, entries: Vec<ServiceEntry>) {
        for s in entries {
            let name: Arc<str> = Arc::from(s.name.trim());
            for d in s.domains {
                let d = d.trim().trim_matches('.').to_ascii_lowercase();
                if !d.is_empty() {
                    self.by_suffix.insert(d, Arc::clone(&name));
                }
            }
        }
    }

    /// The service of `server_name`: the entry of its longest matching
    /// suffix.
    #[must_use]
    pub fn service_of(&self, server_name: &str) -> Option<Arc<str>> {
        let lower = server_name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = lower.as_str();
        // Longest first: the whole name, then without its first label...
        loop {
            if let Some(s) = self.by_suffix.get(rest) {
                return Some(Arc::clone(s));
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Number of domain suffixes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_suffix.len()
    }

    /// True when it has no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_suffix.is_empty()
    }
}

static CATALOGUE: LazyLock<RwLock<Arc<Catalogue>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Catalogue::builtin())));

/// The catalogue queries use (the built-in one until [`set_catalogue`]).
#[must_use]
pub fn catalogue() -> Arc<Catalogue> {
    let c = CATALOGUE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(&c)
}

/// Installs the catalogue queries use (the daemon, at start).
pub fn set_catalogue(c: Catalogue) {
    let mut g = CATALOGUE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *g = Arc::new(c);
}

/// What a query shows of one stored name: the name, its registered
/// domain and its service (each `None` for traffic without a name; the
/// service also for names no catalogue entry matches).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameFacts {
    /// The server name.
    pub server_name: Option<String>,
    /// Its registered domain.
    pub domain: Option<String>,
    /// Its service.
    pub service: Option<String>,
}

/// [`NameFacts`] per stored name, worked out once per query (rows repeat
/// names).
#[derive(Debug)]
pub struct NameCache {
    catalogue: Arc<Catalogue>,
    seen: std::cell::RefCell<HashMap<NameId, Arc<NameFacts>>>,
}

impl Default for NameCache {
    fn default() -> Self {
        Self::new(catalogue())
    }
}

impl NameCache {
    /// With `catalogue` for services.
    #[must_use]
    pub fn new(catalogue: Arc<Catalogue>) -> Self {
        Self {
            catalogue,
            seen: std::cell::RefCell::new(HashMap::new()),
        }
    }

    /// The facts of `id`.
    #[must_use]
    pub fn facts(&self, id: NameId) -> Arc<NameFacts> {
        if let Some(f) = self.seen.borrow().get(&id) {
            return Arc::clone(f);
        }
        let f = Arc::new(id.get().map_or_else(NameFacts::default, |n| {
            NameFacts {
                domain: Some(registered_domain(&n.server_name)),
                service: self
                    .catalogue
                    .service_of(&n.server_name)
                    .map(|s| s.to_string()),
                server_name: Some(n.server_name.clone()),
            }
        }));
        self.seen.borrow_mut().insert(id, Arc::clone(&f));
        f
    }

    /// The group of `id` for a name dimension (`None` for other
    /// dimensions).
    #[must_use]
    pub fn group(&self, by: Dimension, id: NameId) -> Option<GroupKey> {
        let f = self.facts(id);
        Some(match by {
            Dimension::ServerName => GroupKey::ServerName(f.server_name.clone()),
            Dimension::Domain => GroupKey::Domain(f.domain.clone()),
            Dimension::Service => GroupKey::Service(f.service.clone()),
            _ => return None,
        })
    }
}

/// The `server_name=`, `domain=` and `service=` terms of a query.
#[derive(Debug, Default)]
pub struct NameTerms {
    server_names: Vec<String>,
    domains: Vec<String>,
    services: Vec<String>,
    cache: NameCache,
    verdicts: std::cell::RefCell<HashMap<NameId, bool>>,
}

impl NameTerms {
    /// The name terms of `filters`.
    #[must_use]
    pub fn new(filters: &[FilterTerm]) -> Self {
        let mut t = Self::default();
        for f in filters {
            let v = f.value.trim().trim_end_matches('.').to_ascii_lowercase();
            match f.key {
                FilterKey::ServerName => t.server_names.push(v),
                FilterKey::Domain => t.domains.push(v),
                FilterKey::Service => t.services.push(v),
                _ => {}
            }
        }
        t
    }

    /// True when there is no name term.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.server_names.is_empty() && self.domains.is_empty() && self.services.is_empty()
    }

    /// True when a row named `id` passes every term.
    #[must_use]
    pub fn ok(&self, id: NameId) -> bool {
        if self.is_empty() {
            return true;
        }
        if let Some(v) = self.verdicts.borrow().get(&id) {
            return *v;
        }
        let f = self.cache.facts(id);
        let name = f.server_name.as_deref().unwrap_or("");
        let service = f.service.as_deref().unwrap_or("");
        let ok = f.server_name.is_some()
            && self
                .server_names
                .iter()
                .all(|n| name.eq_ignore_ascii_case(n))
            && self.domains.iter().all(|d| matches_suffix(name, d))
            && self
                .services
                .iter()
                .all(|s| service.eq_ignore_ascii_case(s));
        self.verdicts.borrow_mut().insert(id, ok);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_parses_and_has_the_usual_services() {
        let file: CatalogueFile = toml::from_str(BUILTIN).expect("built-in catalogue parses");
        assert!(file.service.len() >= 30, "{}", file.service.len());
        let c = Catalogue::builtin();
        for (name, service) in [
            ("www.netflix.com", "Netflix"),
            ("rr3---sn-4g5e6nzz.googlevideo.com", "YouTube"),
            ("us04web.zoom.us", "Zoom"),
            ("meet.google.com", "Google Meet"),
            ("www.google.com", "Google"),
            ("deb.debian.org", "Debian mirrors"),
            ("GITHUB.com.", "GitHub"),
        ] {
            assert_eq!(c.service_of(name).as_deref(), Some(service), "{name}");
        }
        assert_eq!(
            c.service_of("notgithub.com"),
            None,
            "suffixes match whole labels"
        );
        assert_eq!(c.service_of("example.org"), None);
    }

    #[test]
    fn a_file_extends_and_overrides_the_builtin_entries() {
        let text = r#"
            [[service]]
            name = "Intranet"
            domains = ["corp.example", ".wiki.corp.example"]

            [[service]]
            name = "Netflix"
            domains = ["netflix.example"]
        "#;
        let c = Catalogue::with_overrides(text, Path::new("s.toml")).expect("parses");
        assert_eq!(
            c.service_of("git.corp.example").as_deref(),
            Some("Intranet")
        );
        assert_eq!(
            c.service_of("www.netflix.example").as_deref(),
            Some("Netflix")
        );
        assert_eq!(
            c.service_of("www.netflix.com"),
            None,
            "the built-in Netflix was replaced"
        );
        assert_eq!(c.service_of("github.com").as_deref(), Some("GitHub"));
        let only = Catalogue::with_overrides(&format!("builtin = false\n{text}"), Path::new("s"))
            .expect("parses");
        assert_eq!(only.service_of("github.com"), None);
        let err = Catalogue::with_overrides("[[service]]\nname = 3\n", Path::new("/x/s.toml"))
            .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("services catalogue /x/s.toml: "),
            "{err}"
        );
        assert!(Catalogue::load(Path::new("/nonexistent/s.toml"), false).is_ok());
        assert!(Catalogue::load(Path::new("/nonexistent/s.toml"), true).is_err());
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(registered_domain("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered_domain("a.b.example.com."), "example.com");
        assert_eq!(registered_domain("Foo.GitHub.io"), "foo.github.io");
        assert_eq!(registered_domain("localhost"), "localhost");
        assert!(matches_suffix("a.example.com", "example.com"));
        assert!(matches_suffix("example.com", ".example.com"));
        assert!(!matches_suffix("badexample.com", "example.com"));
    }
}
