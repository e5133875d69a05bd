//! The vocabulary of queries: what to group by ([`Dimension`]), what a
//! group is ([`GroupKey`]), and `KEY=VALUE` filters ([`FilterTerm`]).
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::ownership::ProcessId;
use crate::store::{ConnDir, DestClass};

/// What `usage` (and `top`) group by.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// One row per process identity (pid + start time).
    Process,
    /// Application name (executable name, or the config's `[apps]` rules).
    App,
    /// User name (uid when it has none).
    User,
    /// cgroup v2 path.
    Cgroup,
    /// Container or systemd unit derived from the cgroup path.
    Container,
    /// Remote address.
    Remote,
    /// Service port, protocol and direction (`tcp/443 in`, `tcp/443
    /// out`): the local port of inbound flows, the remote port of outbound
    /// ones.
    Port,
    /// Network interface.
    Interface,
    /// IP protocol.
    Protocol,
    /// Destination class (loopback, lan, internet).
    Class,
    /// Server name the flows were opened to (TLS SNI, HTTP Host, QUIC,
    /// DNS).
    #[serde(rename = "server_name")]
    #[value(name = "server_name", alias = "server-name")]
    ServerName,
    /// Registered domain (eTLD+1) of the server name.
    Domain,
    /// Service of the server name (the services catalogue).
    Service,
}

impl Dimension {
    /// Lower-case name, as on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::App => "app",
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::Container => "container",
            Self::Remote => "remote",
            Self::Port => "port",
            Self::Interface => "interface",
            Self::Protocol => "protocol",
            Self::Class => "class",
            Self::ServerName => "server_name",
            Self::Domain => "domain",
            Self::Service => "service",
        }
    }

    /// Needs the per remote endpoint rollups.
    #[must_use]
    pub const fn needs_remote(self) -> bool {
        matches!(
            self,
            Self::Remote
                | Self::Port
                | Self::Protocol
                | Self::ServerName
                | Self::Domain
                | Self::Service
        )
    }

    /// Groups by something derived from the server name.
    #[must_use]
    pub const fn is_name(self) -> bool {
        matches!(self, Self::ServerName | Self::Domain | Self::Service)
    }
}

/// One group of a grouped answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// A process.
    Process(ProcessId),
    /// An app name.
    App(String),
    /// A user name (or uid as text).
    User(String),
    /// A cgroup path (`None`: unknown).
    Cgroup(Option<String>),
    /// A container or unit (`None`: the process is in neither).
    Container(Option<String>),
    /// A remote address.
    Remote(IpAddr),
    /// A service port of a protocol, in one direction.
    Port {
        /// IP protocol number.
        protocol: u8,
        /// Service port.
        port: u16,
        /// Who connected ([`ConnDir::Unknown`] for history written before
        /// directions were recorded).
        dir: ConnDir,
    },
    /// An interface index.
    Interface(u32),
    /// An IP protocol number.
    Protocol(u8),
    /// A destination class.
    Class(DestClass),
    /// Traffic with no remote endpoint (counted while the flow map was
    /// full), in remote, port and protocol answers.
    NoEndpoint,
    /// A server name (`None`: traffic of flows without one).
    ServerName(Option<String>),
    /// A registered domain (`None`: no server name).
    Domain(Option<String>),
    /// A service of the catalogue (`None`: no server name, or a name no
    /// catalogue entry matches).
    Service(Option<String>),
}

/// Keys a `--filter KEY=VALUE` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    /// `pid=P` or `pid=P:START_TICKS`.
    Pid,
    /// `app=NAME`.
    App,
    /// `comm=NAME`.
    Comm,
    /// `user=NAME` or `user=UID`.
    User,
    /// `cgroup=PATH` (the path or any parent of it).
    Cgroup,
    /// `container=NAME` (unit or container name).
    Container,
    /// `remote=ADDR`.
    Remote,
    /// `port=N` or `port=tcp/N`.
    Port,
    /// `protocol=tcp`.
    Protocol,
    /// `interface=NAME|INDEX`.
    Interface,
    /// `class=internet|lan|loopback`.
    Class,
    /// `server_name=NAME` (exact, case ignored).
    ServerName,
    /// `domain=NAME`: server names equal to NAME or ending in `.NAME`.
    Domain,
    /// `service=NAME` (a catalogue service, case ignored).
    Service,
}

impl FilterKey {
    /// Needs the per remote endpoint rollups.
    #[must_use]
    pub const fn needs_remote(self) -> bool {
        matches!(
            self,
            Self::Remote
                | Self::Port
                | Self::Protocol
                | Self::ServerName
                | Self::Domain
                | Self::Service
        )
    }

    /// Matches on the server name.
    #[must_use]
    pub const fn is_name(self) -> bool {
        matches!(self, Self::ServerName | Self::Domain | Self::Service)
    }

    /// Is a property of a process (and so cannot filter interface rows).
    #[must_use]
    pub const fn is_process(self) -> bool {
        matches!(
            self,
            Self::Pid | Self::App | Self::Comm | Self::User | Self::Cgroup | Self::Container
        )
    }
}

/// One parsed `KEY=VALUE` filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterTerm {
    /// The key.
    pub key: FilterKey,
    /// The value as given.
    pub value: String,
}

/// Why a filter did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad filter {input:?}: {reason}")]
pub struct FilterParseError {
    input: String,
    reason: String,
}

impl FromStr for FilterTerm {
    type Err = FilterParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| FilterParseError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (k, v) = s.split_once('=').ok_or_else(|| err("expected KEY=VALUE"))?;
        let key = match k.trim() {
            "pid" => FilterKey::Pid,
            "app" => FilterKey::App,
            "comm" => FilterKey::Comm,
            "user" => FilterKey::User,
            "cgroup" => FilterKey::Cgroup,
            "container" | "unit" => FilterKey::Container,
            "remote" => FilterKey::Remote,
            "port" => FilterKey::Port,
            "protocol" | "proto" => FilterKey::Protocol,
            "interface" | "iface" => FilterKey::Interface,
            "class" => FilterKey::Class,
            "server_name" | "server-name" | "sni" => FilterKey::ServerName,
            "domain" => FilterKey::Domain,
            "service" => FilterKey::Service,
            _ => {
                return Err(err(
                    "unknown key (pid, app, comm, user, cgroup, container, remote, port, protocol, interface, class, server_name, domain, service)",
                ));
            }
        };
        let value = v.trim().to_owned();
        let term = Self { key, value };
        term.check().map_err(|r| err(&r))?;
        Ok(term)
    }
}

impl fmt::Display for FilterTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.key {
            FilterKey::Pid => "pid",
            FilterKey::App => "app",
            FilterKey::Comm => "comm",
            FilterKey::User => "user",
            FilterKey::Cgroup => "cgroup",
            FilterKey::Container => "container",
            FilterKey::Remote => "remote",
            FilterKey::Port => "port",
            FilterKey::Protocol => "protocol",
            FilterKey::Interface => "interface",
            FilterKey::Class => "class",
            FilterKey::ServerName => "server_name",
            FilterKey::Domain => "domain",
            FilterKey::Service => "service",
        };
        write!(f, "{k}={}", self.value)
    }
}

impl FilterTerm {
    /// Checks the value's syntax for keys that have one.
    fn check(&self) -> Result<(), String> {
        match self.key {
            FilterKey::Pid => parse_pid(&self.value).map(|_| ()),
            FilterKey::Remote => self
                .value
                .parse::<IpAddr>()
                .map(|_| ())
                .map_err(|_| "not an IP address".to_owned()),
            FilterKey::Port => parse_port(&self.value).map(|_| ()),
            FilterKey::Protocol => protocol_number(&self.value)
                .map(|_| ())
                .ok_or_else(|| "unknown protocol".to_owned()),
            FilterKey::Class => parse_class(&self.value).map(|_| ()),
            _ if self.value.is_empty() => Err("empty value".to_owned()),
            _ => Ok(()),
        }
    }
}

/// `P` or `P:START_TICKS`.
///
/// # Errors
/// When not numbers.
pub fn parse_pid(s: &str) -> Result<(u32, Option<u64>), String> {
    let bad = |_| format!("{s:?} is not PID or PID:START_TICKS");
    match s.split_once(':') {
        Some((p, t)) => Ok((p.parse().map_err(bad)?, Some(t.parse().map_err(bad)?))),
        None => Ok((s.parse().map_err(bad)?, None)),
    }
}

/// `N` (any protocol) or `PROTO/N`.
///
/// # Errors
/// When malformed.
pub fn parse_port(s: &str) -> Result<(Option<u8>, u16), String> {
    let bad = || format!("{s:?} is not PORT or PROTOCOL/PORT");
    match s.split_once('/') {
        Some((p, n)) => Ok((
            Some(protocol_number(p).ok_or_else(bad)?),
            n.parse().map_err(|_| bad())?,
        )),
        None => Ok((None, s.parse().map_err(|_| bad())?)),
    }
}

/// `internet`, `lan`, `loopback` (or `unknown`).
///
/// # Errors
/// For other words.
pub fn parse_class(s: &str) -> Result<DestClass, String> {
    DestClass::ALL
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| format!("{s:?} is not a class (internet, lan, loopback, unknown)"))
}

/// A protocol's number from its name or number.
#[must_use]
pub fn protocol_number(s: &str) -> Option<u8> {
    match s {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmpv6" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        _ => s.parse().ok(),
    }
}

/// The name groups show for an IP protocol number: `tcp`, `udp`, ... or,
/// for a protocol without one, its number (`47`), so two unnamed protocols
/// are never one `other` row twice. [`protocol_number`] reads both back.
#[must_use]
pub fn protocol_label(n: u8) -> String {
    match crate::live::protocol_name(n) {
        "other" => n.to_string(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_labels_are_distinct_and_read_back() {
        let labels: std::collections::BTreeSet<String> = (0..=255u8).map(protocol_label).collect();
        assert_eq!(labels.len(), 256, "one label per protocol number");
        for n in 0..=255u8 {
            assert_eq!(protocol_number(&protocol_label(n)), Some(n));
        }
        assert_eq!(protocol_label(6), "tcp");
        assert_eq!(protocol_label(47), "47");
    }

    #[test]
    fn filters_parse_and_print() {
        let t: FilterTerm = "app=curl".parse().unwrap();
        assert_eq!(t.key, FilterKey::App);
        assert_eq!(t.to_string(), "app=curl");
        assert_eq!(parse_pid("12:345"), Ok((12, Some(345))));
        assert_eq!(parse_port("tcp/443"), Ok((Some(6), 443)));
        assert_eq!(parse_port("53"), Ok((None, 53)));
        assert!("nope=1".parse::<FilterTerm>().is_err());
        assert!("remote=not-an-ip".parse::<FilterTerm>().is_err());
        assert!("class=moon".parse::<FilterTerm>().is_err());
        assert!("pid".parse::<FilterTerm>().is_err());
    }
}
