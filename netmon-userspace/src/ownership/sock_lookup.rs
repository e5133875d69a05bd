//! Finds a flow's socket with sock_diag, in whichever network namespace it
//! lives: the socket's inode (for the `/proc/*/fd` scan) and uid.
//!
//! Order, cheapest first, per socket:
//! 1. exact lookups in netmon's own namespace (the flow's 4-tuple; IPv4 flows
//!    also as IPv4-mapped IPv6, for dual-stack sockets; then with the flow's
//!    interface, for device-bound sockets);
//! 2. a dump of that family and protocol, filtered by cookie — done at most
//!    once per pass per namespace, family and protocol, and shared by every
//!    socket of the pass;
//! 3. the same in the owner's namespace (`/proc/OWNER/ns/net`), then in every
//!    other namespace found in `/proc/*/ns/net` (enumerated once per pass).
//!
//! [`SockLookup::find_exact`] stops after the exact lookups of steps 1 and 3
//! (owner's namespace only): it serves checks that have a good answer
//! without the socket (a created socket's kernel owner), so their cost never
//! includes a dump.
//!
//! Sockets opened in other namespaces are dropped at the end of each pass
//! ([`SockLookup::end_pass`]): a netlink socket keeps its namespace alive,
//! and netmon must not keep a container's namespace from going away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netmon_common::FlowKey;

use super::procfs::ProcFs;
use super::sock_diag::{
    AF_INET, AF_INET6, DiagSocket, IPPROTO_TCP, IPPROTO_UDP, SockDiag, SockDiagError, SockQuery,
    to_v6_mapped,
};
use crate::model::raw_to_ip;
use crate::source::FlowReading;

/// Key of the namespace netmon itself runs in, in the dump cache.
const HOST: u64 = 0;

/// sock_diag lookups with per-pass caches.
pub struct SockLookup {
    proc: ProcFs,
    /// netmon's own namespace; reopened on the next pass after an I/O error.
    host: Option<SockDiag>,
    /// Inode of netmon's own network namespace.
    host_netns: Option<u64>,
    /// Per pass: (namespace, family, protocol) → sockets by cookie.
    dumps: HashMap<(u64, u8, u8), HashMap<u64, DiagSocket>>,
    /// Per pass: other namespaces by inode (`None`: could not be entered).
    others: HashMap<u64, Option<SockDiag>>,
    /// Per pass: every other namespace, with a path to enter it by.
    netns_list: Option<Vec<(u64, PathBuf)>>,
}

impl SockLookup {
    /// A lookup over `proc` (used to find namespaces). The netlink socket is
    /// opened on first use.
    #[must_use]
    pub fn new(proc: ProcFs) -> Self {
        let host_netns = ProcFs::new().netns_inode(std::process::id());
        Self {
            proc,
            host: None,
            host_netns,
            dumps: HashMap::new(),
            others: HashMap::new(),
            netns_list: None,
        }
    }

    /// Ends a resolve pass: forgets dumps and closes sockets held in other
    /// namespaces.
    pub fn end_pass(&mut self) {
        self.dumps.clear();
        self.others.clear();
        self.netns_list = None;
    }

    /// The socket of `flows` (all of one cookie), or `None` if sock_diag
    /// cannot see it (protocols without diag, kernel sockets, sockets gone).
    /// `owner` is a pid whose namespace is searched early.
    pub fn find(&mut self, flows: &[FlowReading], owner: Option<u32>) -> Option<DiagSocket> {
        let queries = queries_for(flows);
        if queries.is_empty() {
            return None;
        }
        if self.host.is_none() {
            match SockDiag::new() {
                Ok(d) => self.host = Some(d),
                Err(e) => tracing::warn!("sock_diag unavailable: {e}"),
            }
        }
        if let Some(host) = &mut self.host {
            match search(host, &mut self.dumps, HOST, &queries) {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("sock_diag: {e}; reopening next pass");
                    self.host = None;
                }
            }
        }
        let owner_netns = owner.and_then(|pid| Some((pid, self.proc.netns_inode(pid)?)));
        if let Some((pid, ino)) = owner_netns
            && Some(ino) != self.host_netns
        {
            let path = self.proc.pid_dir(pid).join("ns/net");
            if let Some(found) = self.search_other(ino, &path, &queries) {
                return Some(found);
            }
        }
        let list = self
            .netns_list
            .get_or_insert_with(|| list_netns(&self.proc, self.host_netns))
            .clone();
        list.into_iter()
            .filter(|(ino, _)| owner_netns.map(|(_, o)| o) != Some(*ino))
            .find_map(|(ino, path)| self.search_other(ino, &path, &queries))
    }

    /// The socket of `flows` from exact lookups only, in netmon's own
    /// namespace and then in `owner`'s: no dump, no sweep of other
    /// namespaces, so the cost is a few netlink round trips per socket
    /// whatever the number of sockets on the machine. `None` when those
    /// lookups miss (socket gone, protocol without diag, a socket only a
    /// dump finds).
    pub fn find_exact(&mut self, flows: &[FlowReading], owner: u32) -> Option<DiagSocket> {
        let queries = queries_for(flows);
        if queries.is_empty() {
            return None;
        }
        if self.host.is_none() {
            match SockDiag::new() {
                Ok(d) => self.host = Some(d),
                Err(e) => tracing::warn!("sock_diag unavailable: {e}"),
            }
        }
        if let Some(host) = &mut self.host {
            match exact(host, &queries) {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("sock_diag: {e}; reopening next pass");
                    self.host = None;
                }
            }
        }
        let ino = self.proc.netns_inode(owner)?;
        if Some(ino) == self.host_netns {
            return None;
        }
        let path = self.proc.pid_dir(owner).join("ns/net");
        let diag = other(&mut self.others, ino, &path)?;
        match exact(diag, &queries) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("sock_diag in {}: {e}", path.display());
                self.others.insert(ino, None);
                None
            }
        }
    }

    fn search_other(&mut self, ino: u64, path: &Path, queries: &[SockQuery]) -> Option<DiagSocket> {
        let diag = other(&mut self.others, ino, path)?;
        match search(diag, &mut self.dumps, ino, queries) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("sock_diag in {}: {e}", path.display());
                self.others.insert(ino, None);
                None
            }
        }
    }
}

/// Exact lookups, then the (cached) dumps, in one namespace.
fn search(
    diag: &mut SockDiag,
    dumps: &mut HashMap<(u64, u8, u8), HashMap<u64, DiagSocket>>,
    netns: u64,
    queries: &[SockQuery],
) -> Result<Option<DiagSocket>, SockDiagError> {
    if let Some(found) = exact(diag, queries)? {
        return Ok(Some(found));
    }
    for q in queries {
        let key = (netns, q.family, q.protocol);
        if let std::collections::hash_map::Entry::Vacant(slot) = dumps.entry(key) {
            let mut all = HashMap::new();
            diag.dump(q.family, q.protocol, |s| {
                all.insert(s.cookie, s);
            })?;
            slot.insert(all);
        }
        if let Some(found) = dumps.get(&key).and_then(|all| all.get(&q.cookie)) {
            return Ok(Some(*found));
        }
    }
    Ok(None)
}

/// The sock_diag socket of namespace `ino` (entered through `path`), opened
/// once per pass; `None` if it cannot be entered.
fn other<'a>(
    others: &'a mut HashMap<u64, Option<SockDiag>>,
    ino: u64,
    path: &Path,
) -> Option<&'a mut SockDiag> {
    others
        .entry(ino)
        .or_insert_with(|| {
            SockDiag::in_netns(path)
                .map_err(|e| tracing::debug!("sock_diag in {}: {e}", path.display()))
                .ok()
        })
        .as_mut()
}

/// Exact lookups only, in one namespace, first hit wins.
fn exact(diag: &mut SockDiag, queries: &[SockQuery]) -> Result<Option<DiagSocket>, SockDiagError> {
    for q in queries {
        if let Some(found) = diag.lookup(q)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The exact lookups worth trying for a socket's flows, most likely first.
/// Empty for protocols sock_diag has no lookup for here (ICMP, raw, ...).
#[must_use]
pub fn queries_for(flows: &[FlowReading]) -> Vec<SockQuery> {
    let mut out: Vec<SockQuery> = Vec::new();
    let mut scoped = Vec::new();
    for f in flows {
        let FlowKey {
            cookie,
            remote_addr,
            remote_port,
            ip_version,
            protocol,
            ..
        } = f.key;
        if !matches!(protocol, IPPROTO_TCP | IPPROTO_UDP) || !matches!(ip_version, 4 | 6) {
            continue;
        }
        let local = raw_to_ip(&f.value.local_addr, ip_version);
        let remote = raw_to_ip(&remote_addr, ip_version);
        let (lport, rport) = (f.value.local_port, remote_port);
        let family = if ip_version == 4 { AF_INET } else { AF_INET6 };
        let base = SockQuery {
            family,
            protocol,
            local: (local, lport),
            remote: (remote, rport),
            ifindex: 0,
            cookie,
        };
        let mut variants = vec![base];
        if ip_version == 4 {
            variants.push(SockQuery {
                family: AF_INET6,
                local: (to_v6_mapped(local), lport),
                remote: (to_v6_mapped(remote), rport),
                ..base
            });
        }
        for q in variants {
            if !out.contains(&q) {
                out.push(q);
            }
            // Device-bound sockets only match a lookup naming their device,
            // and link-local IPv6 addresses need their scope.
            let with_if = SockQuery {
                ifindex: f.value.ifindex,
                ..q
            };
            if f.value.ifindex != 0 && !scoped.contains(&with_if) {
                scoped.push(with_if);
            }
        }
    }
    // Link-local IPv6 lookups need the interface: try those first.
    let (link_local, rest): (Vec<_>, Vec<_>) =
        scoped.into_iter().partition(|q| is_link_local(q.local.0));
    let mut all = link_local;
    all.extend(out);
    all.extend(rest);
    all
}

fn is_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Every network namespace other than `host`, each with the `ns/net` path of
/// one process in it.
fn list_netns(proc: &ProcFs, host: Option<u64>) -> Vec<(u64, PathBuf)> {
    let mut seen = HashMap::new();
    for pid in proc.pids() {
        if let Some(ino) = proc.netns_inode(pid)
            && Some(ino) != host
        {
            seen.entry(ino)
                .or_insert_with(|| proc.pid_dir(pid).join("ns/net"));
        }
    }
    seen.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use netmon_common::FlowValue;

    use super::*;

    fn flow(protocol: u8, ip_version: u8, ifindex: u32) -> FlowReading {
        let mut key = FlowKey {
            cookie: 7,
            remote_port: 80,
            ip_version,
            protocol,
            ..FlowKey::default()
        };
        let mut value = FlowValue {
            local_port: 5555,
            ifindex,
            ..FlowValue::default()
        };
        if ip_version == 4 {
            key.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
            value.local_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        } else {
            key.remote_addr = "fe80::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
            value.local_addr = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        }
        FlowReading {
            key,
            value,
            closed: false,
        }
    }

    #[test]
    fn queries_cover_mapped_and_scoped_variants() {
        let q = queries_for(&[flow(IPPROTO_TCP, 4, 3)]);
        let got: Vec<(u8, String, u32)> = q
            .iter()
            .map(|q| (q.family, q.local.0.to_string(), q.ifindex))
            .collect();
        assert_eq!(
            got,
            vec![
                (AF_INET, "10.0.0.1".into(), 0),
                (AF_INET6, "::ffff:10.0.0.1".into(), 0),
                (AF_INET, "10.0.0.1".into(), 3),
                (AF_INET6, "::ffff:10.0.0.1".into(), 3),
            ]
        );
        assert!(
            q.iter()
                .all(|q| q.cookie == 7 && q.local.1 == 5555 && q.remote.1 == 80)
        );
        assert_eq!(q[0].remote.0.to_string(), "10.0.0.2");
    }

    #[test]
    fn link_local_is_scoped_first() {
        let q = queries_for(&[flow(IPPROTO_UDP, 6, 4)]);
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].ifindex, q[1].ifindex), (4, 0));
    }

    #[test]
    fn no_queries_without_diag() {
        assert!(queries_for(&[flow(1, 4, 1)]).is_empty()); // ICMP
        assert!(queries_for(&[flow(255, 4, 1)]).is_empty()); // raw
    }
}
