//! The daemon's configuration file, `/etc/netmon/config.toml` by default.
//!
//! ```toml
//! interval = "1s"                        # drain interval
//! db = "/var/lib/netmon/netmon.redb"     # history store
//! pin_dir = "/sys/fs/bpf/netmon"         # bpffs pin directory
//! cgroup = "/sys/fs/cgroup"              # cgroup v2 directory to attach to
//! max_flows = 65536                      # flow map capacity
//! max_closed = 16384                     # closed-socket map capacity
//! db_cache_mib = 4                       # redb page cache limit, MiB (>= 1)
//!
//! [retention]                            # "forever" or a duration
//! interval = "2h"
//! minute = "2days"
//! hour = "90days"
//! day = "forever"
//! max_size = "500MB"                     # cap on the file (default none)
//!
//! [http]                                 # see crate::http
//! listen = ["127.0.0.1:9847"]            # [] turns the HTTP server off
//! [fleet]                                # see crate::http::fleet
//! prometheus = "http://127.0.0.1:9090"   # the dashboard's Hosts page
//! [interfaces]                           # tc interface counting
//! watch = ["eth*", "wg0"]                # globs; default: every up non-loopback
//! lan = ["lan*"]                         # LAN interfaces: devices counted
//! [names]                                # see crate::query::domains
//! enabled = true                         # false: no server names at all
//! reverse_lookup = false                 # PTR names for unnamed remotes/devices
//! resolver = "192.168.1.1"               # for it; default /etc/resolv.conf's
//! [devices]                              # see crate::devices
//! leases = ["/var/lib/misc/dnsmasq.leases", "/var/lib/systemd/network/dhcp-server-lease"]
//! names = { "aa:bb:cc:dd:ee:01" = "printer" }
//! merge = { "phone" = ["da:00:00:00:00:01", "da:00:00:00:00:02"] }
//! ```
//!
//! Every key is optional; unknown keys are errors (a typo must not be
//! silently ignored). Durations use humantime's syntax (`500ms`, `1s`,
//! `48h`, `30days`). Precedence: command-line flags, then the file, then the
//! defaults. A missing default file means defaults; a missing file named
//! with `--config` is an error. Errors name the file, and parse errors the
//! line and column.
//!
//! For the kernel flags (`--pin-dir`, `--cgroup`, `--max-flows`,
//! `--max-closed`, defined by [`KernelArgs`] with built-in defaults) a flag
//! counts as given when its value differs from the built-in default: giving
//! the default value explicitly does not override the file.
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernel::KernelArgs;
use crate::store::Retention;

/// The default config file.
pub const DEFAULT_CONFIG: &str = "/etc/netmon/config.toml";
/// The default history store.
pub const DEFAULT_DB: &str = "/var/lib/netmon/netmon.redb";
/// The smallest `[retention] max_size` (a store holds a few hundred KB of
/// tables and metadata before any row).
pub const MIN_MAX_SIZE: u64 = 1_000_000;
/// The default drain interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("reading config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid (toml's message has the line, column and a
    /// snippet).
    #[error("config file {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// How long a tier is kept: a duration or `"forever"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep(pub Option<Duration>);

impl<'de> serde::Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "forever" {
            return Ok(Self(None));
        }
        humantime::parse_duration(&s)
            .map(|d| Self(Some(d)))
            .map_err(serde::de::Error::custom)
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    humantime::parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `[retention]` of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Interval samples.
    pub interval: Option<Keep>,
    /// Minute rollups.
    pub minute: Option<Keep>,
    /// Hour rollups.
    pub hour: Option<Keep>,
    /// Day rollups.
    pub day: Option<Keep>,
    /// Size cap of the history file: bytes, or text with a unit
    /// (`"500MB"`, `"1GiB"`).
    pub max_size: Option<SizeText>,
}

/// A size as written: a number of bytes or text with a unit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum SizeText {
    /// Bytes.
    Bytes(u64),
    /// With a unit, parsed by [`crate::alerts::config::parse_size`].
    Text(String),
}

/// The file as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Drain interval.
    #[serde(default, deserialize_with = "de_duration")]
    pub interval: Option<Duration>,
    /// History store path.
    pub db: Option<PathBuf>,
    /// bpffs pin directory.
    pub pin_dir: Option<PathBuf>,
    /// cgroup v2 directory.
    pub cgroup: Option<PathBuf>,
    /// Flow map capacity.
    pub max_flows: Option<u32>,
    /// Closed-socket map capacity.
    pub max_closed: Option<u32>,
    /// redb's page cache limit in MiB (default
    /// [`crate::store::DEFAULT_CACHE_BYTES`]).
    pub db_cache_mib: Option<u64>,
    /// Retention per tier.
    #[serde(default)]
    pub retention: RetentionFile,
    /// App names for queries (`[[apps.rule]]`, see [`crate::query::apps`]).
    #[serde(default)]
    pub apps: crate::query::AppRules,
    /// Alert rules and actions (`[alerts]`, see [`crate::alerts::config`]).
    #[serde(default)]
    pub alerts: crate::alerts::config::AlertsFile,
    /// Tariff and billing cycle (`[tariff]`, see [`crate::alerts::config`]).
    #[serde(default)]
    pub tariff: Option<toml::Spanned<crate::alerts::config::TariffFile>>,
    /// The HTTP API and dashboard (`[http]`, see [`crate::http`]).
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// Interfaces counted by the tc programs.
    #[serde(default)]
    pub interfaces: InterfacesFile,
    /// The dashboard's fleet view (`[fleet]`, see [`crate::http::fleet`]).
    #[serde(default)]
    pub fleet: crate::http::fleet::FleetConfig,
    /// Server names and the services catalogue (`[names]`, see
    /// [`crate::query::domains`]).
    #[serde(default)]
    pub names: crate::query::domains::NamesConfig,
    /// Device names (`[devices]`, see [`crate::devices`]).
    #[serde(default)]
    pub devices: crate::devices::DevicesConfig,
}

/// `[interfaces]` of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfacesFile {
    /// Interface name globs; absent: every up interface except loopback;
    /// `[]`: none.
    pub watch: Option<Vec<String>>,
    /// LAN interface globs (`crate::kernel::devices`).
    pub lan: Option<Vec<String>>,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Drain interval.
    pub interval: Duration,
    /// History store path.
    pub db: PathBuf,
    /// Retention.
    pub retention: Retention,
    /// Kernel side.
    pub kernel: KernelArgs,
    /// redb's page cache limit in bytes.
    pub db_cache_bytes: usize,
}

/// Reads the config file: `explicit` (must exist) or [`DEFAULT_CONFIG`]
/// (may be missing).
///
/// # Errors
/// [`ConfigError`] naming the file.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let path = explicit.unwrap_or_else(|| Path::new(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if explicit.is_some() {
                Err(ConfigError::Missing {
                    path: path.to_owned(),
                })
            } else {
                Ok(FileConfig::default())
            };
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(&text, path)
}

/// Parses config text; `path` is for messages.
///
/// # Errors
/// [`ConfigError::Parse`] with the line and column.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    // `[alerts]` and `[tariff]` are checked here, with the text for line
    // numbers, so every reader of the file refuses the same mistakes.
    crate::alerts::config::compile(&file.alerts, file.tariff.as_ref(), text)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(file)
}

impl FileConfig {
    /// Applies flags over the file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a zero interval or zero map size.
    pub fn resolve(
        self,
        interval: Option<Duration>,
        db: Option<PathBuf>,
        kernel: &KernelArgs,
    ) -> Result<Config, ConfigError> {
        let interval = interval.or(self.interval).unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() {
            return Err(ConfigError::Invalid("interval must be > 0".into()));
        }
        let defaults = Retention::default();
        let keep = |k: Option<Keep>, d: Option<Duration>| k.map_or(d, |k| k.0);
        let retention = Retention {
            interval: keep(self.retention.interval, defaults.interval),
            minute: keep(self.retention.minute, defaults.minute),
            hour: keep(self.retention.hour, defaults.hour),
            day: keep(self.retention.day, defaults.day),
            max_size: match self.retention.max_size {
                None => None,
                Some(size) => {
                    let bytes = match &size {
                        SizeText::Bytes(b) => Ok(*b),
                        SizeText::Text(t) => crate::alerts::config::parse_size(t),
                    }
                    .map_err(|e| ConfigError::Invalid(format!("[retention] max_size: {e}")))?;
                    if bytes < MIN_MAX_SIZE {
                        return Err(ConfigError::Invalid(format!(
                            "[retention] max_size = {bytes} bytes: must be at least {MIN_MAX_SIZE} (1 MB)"
                        )));
                    }
                    Some(bytes)
                }
            },
        };
        let base = KernelArgs::default();
        let pick = |flag: &PathBuf, default: &PathBuf, file: Option<PathBuf>| {
            if flag == default {
                file.unwrap_or_else(|| flag.clone())
            } else {
                flag.clone()
            }
        };
        let kernel = KernelArgs {
            pin_dir: pick(&kernel.pin_dir, &base.pin_dir, self.pin_dir),
            cgroup: kernel.cgroup.clone().or(self.cgroup),
            max_flows: if kernel.max_flows == base.max_flows {
                self.max_flows.unwrap_or(base.max_flows)
            } else {
                kernel.max_flows
            },
            max_closed: if kernel.max_closed == base.max_closed {
                self.max_closed.unwrap_or(base.max_closed)
            } else {
                kernel.max_closed
            },
            watch: kernel.watch.clone().or(self.interfaces.watch),
            lan: kernel.lan.clone().or(self.interfaces.lan),
            // `[names] enabled = false` also turns the kernel copy off.
            names: kernel.names && self.names.enabled,
        };
        if kernel.max_flows == 0 || kernel.max_closed == 0 {
            return Err(ConfigError::Invalid(
                "max_flows and max_closed must be > 0".into(),
            ));
        }
        let db_cache_bytes = match self.db_cache_mib {
            None => crate::store::DEFAULT_CACHE_BYTES,
            Some(mib) => usize::try_from(mib)
                .ok()
                .filter(|m| (1..=1 << 20).contains(m))
                .and_then(|m| m.checked_mul(1 << 20))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "db_cache_mib = {mib}: must be between 1 and 1048576 (MiB)"
                    ))
                })?,
        };
        Ok(Config {
            interval,
            db: db.or(self.db).unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            retention,
            kernel,
            db_cache_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses_and_flags_override() {
        let text = r#"
interval = "5s"
db = "/tmp/x.redb"
max_flows = 1000
pin_dir = "/sys/fs/bpf/other"
[retention]
interval = "12h"
day = "forever"
hour = "10days"
"#;
        let file = parse(text, Path::new("c.toml")).expect("parses");
        let cfg = file
            .clone()
            .resolve(None, None, &KernelArgs::default())
            .expect("resolves");
        assert_eq!(cfg.interval, Duration::from_secs(5));
        assert_eq!(cfg.db, PathBuf::from("/tmp/x.redb"));
        assert_eq!(cfg.kernel.max_flows, 1000);
        assert_eq!(cfg.kernel.pin_dir, PathBuf::from("/sys/fs/bpf/other"));
        assert_eq!(cfg.retention.interval, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(
            cfg.retention.minute,
            Retention::default().minute,
            "unset keeps the default"
        );
        assert_eq!(cfg.retention.day, None);
        let flags = KernelArgs {
            max_flows: 7,
            ..KernelArgs::default()
        };
        let cfg = file
            .resolve(
                Some(Duration::from_millis(50)),
                Some(PathBuf::from("/f.redb")),
                &flags,
            )
            .expect("resolves");
        assert_eq!(
            (cfg.interval, cfg.db, cfg.kernel.max_flows),
            (Duration::from_millis(50), PathBuf::from("/f.redb"), 7)
        );
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let err = parse(
            "interval = \"1s\"\nintervall = \"2s\"\n",
            Path::new("/etc/netmon/config.toml"),
        )
        .expect_err("unknown key")
        .to_string();
        assert!(err.contains("/etc/netmon/config.toml"), "{err}");
        assert!(err.contains("intervall"), "{err}");
        assert!(err.contains("line 2") || err.contains("2:"), "{err}");
        let err = parse("interval = \"soon\"\n", Path::new("c.toml"))
            .expect_err("bad duration")
            .to_string();
        assert!(err.contains("c.toml") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            load(Some(&missing)),
            Err(ConfigError::Missing { .. })
        ));
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "").expect("writes");
        assert_eq!(
            load(Some(&ok)).expect("empty file is fine"),
            FileConfig::default()
        );
    }

    #[test]
    fn db_cache_is_small_by_default_and_configurable() {
        let k = KernelArgs::default();
        let cfg = FileConfig::default().resolve(None, None, &k).unwrap();
        assert_eq!(cfg.db_cache_bytes, crate::store::DEFAULT_CACHE_BYTES);
        assert!(cfg.db_cache_bytes <= 16 << 20, "a few MiB by default");
        let file = parse("db_cache_mib = 32", Path::new("c.toml")).unwrap();
        assert_eq!(
            file.resolve(None, None, &k).unwrap().db_cache_bytes,
            32 << 20
        );
        let zero = parse("db_cache_mib = 0", Path::new("c.toml")).unwrap();
        let err = zero.resolve(None, None, &k).unwrap_err().to_string();
        assert!(err.contains("db_cache_mib"), "{err}");
    }

    #[test]
    fn max_size_takes_bytes_or_units_and_refuses_nonsense() {
        let k = KernelArgs::default();
        let size = |text: &str| {
            parse(text, Path::new("c.toml"))
                .map_err(|e| e.to_string())
                .and_then(|f| f.resolve(None, None, &k).map_err(|e| e.to_string()))
                .map(|c| c.retention.max_size)
        };
        assert_eq!(size(""), Ok(None));
        assert_eq!(
            size("[retention]\nmax_size = \"500MB\""),
            Ok(Some(500_000_000))
        );
        assert_eq!(size("[retention]\nmax_size = \"1GiB\""), Ok(Some(1 << 30)));
        assert_eq!(size("[retention]\nmax_size = 2000000"), Ok(Some(2_000_000)));
        let err = size("[retention]\nmax_size = \"5 parsecs\"").unwrap_err();
        assert!(err.contains("max_size") && err.contains("unit"), "{err}");
        let err = size("[retention]\nmax_size = \"10KB\"").unwrap_err();
        assert!(err.contains("at least"), "{err}");
    }

    #[test]
    fn zero_interval_is_refused() {
        let file = parse("interval = \"0s\"", Path::new("c.toml")).expect("parses");
        assert!(file.resolve(None, None, &KernelArgs::default()).is_err());
    }
}
