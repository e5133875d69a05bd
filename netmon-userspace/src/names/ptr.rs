//! The opt-in reverse lookup (`[names] reverse_lookup = true`): PTR names
//! for remote addresses that have no name of their own (no SNI, `Host`,
//! QUIC or DNS answer) and for LAN devices without a configured or leased
//! name. Off by default: with it off nothing is looked up and nothing
//! leaves the machine.
//!
//! A PTR name is a **label of an address at query time**, never a flow's
//! name: flows keep the name fixed at their first payload
//! ([`crate::drain`]'s names phase), the history is unchanged, and a PTR
//! name shows only where the stored rows have no name (with `name_source:
//! "ptr"`). A PTR record often names the hosting or CDN machine rather
//! than the site the program asked for.
//!
//! Bounded and never in anyone's way:
//! - [`label`] only reads a cache; an address it does not know is queued
//!   for the lookup thread and the name shows from a later query on;
//! - the queue holds [`QUEUE`] addresses (more are dropped and asked again
//!   by a later query), the cache [`CACHE`] addresses (least recently used
//!   dropped first);
//! - one thread asks one question at a time, at most [`RATE_PER_SEC`] a
//!   second, each answer waited for at most [`TIMEOUT`];
//! - an answer is kept for its TTL clamped to [`MIN_TTL`]..[`MAX_TTL`], a
//!   negative answer (`NXDOMAIN`, no PTR) for [`NEGATIVE_TTL`], a timeout
//!   or error for [`ERROR_TTL`].
//!
//! Questions go over UDP to `[names] resolver` (`IP` or `IP:PORT`), else to
//! the first `nameserver` of `/etc/resolv.conf`; they are built and read
//! with `hickory-proto`, the DNS crate the capture parser already uses.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, OnceLock,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use lru::LruCache;

/// Addresses waiting for the lookup thread.
pub const QUEUE: usize = 256;
/// Addresses whose answer (or pending question) is remembered.
pub const CACHE: usize = 8_192;
/// Questions per second, at most.
pub const RATE_PER_SEC: u32 = 20;
/// How long an answer is waited for.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest time a PTR name is kept.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a PTR name is kept.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long "no PTR name" is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(600);
/// How long a failed question (timeout, error) is kept before it is asked
/// again.
pub const ERROR_TTL: Duration = Duration::from_secs(60);

/// Errors of [`install`].
#[derive(Debug, thiserror::Error)]
pub enum PtrError {
    /// `[names] resolver` is not `IP` or `IP:PORT`.
    #[error("[names] resolver {0:?} is not an address (IP or IP:PORT)")]
    BadResolver(String),
    /// No resolver configured and none in `/etc/resolv.conf`.
    #[error(
        "[names] reverse_lookup is on but no resolver is known: set [names] resolver or a nameserver in /etc/resolv.conf"
    )]
    NoResolver,
    /// The lookup thread could not start.
    #[error("starting the reverse lookup thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the cache knows of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// Queued or being asked.
    Pending,
    /// Its PTR name (or none) until the instant.
    Known(Option<String>, Instant),
}

/// The lookup: a cache and the queue of its thread.
#[derive(Debug)]
pub struct Ptr {
    cache: Mutex<LruCache<IpAddr, Entry>>,
    queue: SyncSender<IpAddr>,
}

impl Ptr {
    /// The PTR name of `addr` if known now; queues a lookup when it is not
    /// (never blocks on the network).
    pub fn label(&self, addr: IpAddr) -> Option<String> {
        if !worth_asking(addr) {
            return None;
        }
        let now = Instant::now();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(&addr) {
            Some(Entry::Pending) => return None,
            Some(Entry::Known(name, until)) if *until > now => return name.clone(),
            _ => {}
        }
        match self.queue.try_send(addr) {
            Ok(()) => {
                cache.put(addr, Entry::Pending);
            }
            // Full: asked again by a later query. Gone: the thread ended.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
        None
    }

    fn learn(&self, addr: IpAddr, name: Option<String>, ttl: Duration) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.put(addr, Entry::Known(name, Instant::now() + ttl));
    }
}

/// Addresses with no PTR worth asking: loopback, unspecified, multicast.
fn worth_asking(addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    };
    !(addr.is_loopback() || addr.is_unspecified() || addr.is_multicast())
}

static PTR: OnceLock<Arc<Ptr>> = OnceLock::new();

/// The first `nameserver` of a `resolv.conf` text.
#[must_use]
pub fn nameserver(resolv_conf: &str) -> Option<IpAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        (f.next()? == "nameserver")
            .then(|| f.next())
            .flatten()
            .and_then(|a| a.split('%').next())
            .and_then(|a| a.parse().ok())
    })
}

/// `IP` (port 53) or `IP:PORT` (`[::1]:53` for IPv6 with a port).
///
/// # Errors
/// [`PtrError::BadResolver`].
pub fn parse_resolver(s: &str) -> Result<SocketAddr, PtrError> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| PtrError::BadResolver(s.to_owned()))
}

/// Where the questions go: `configured`, else `/etc/resolv.conf`'s first
/// nameserver.
///
/// # Errors
/// [`PtrError::BadResolver`], [`PtrError::NoResolver`].
pub fn resolver(configured: Option<&str>) -> Result<SocketAddr, PtrError> {
    match configured {
        Some(s) => parse_resolver(s),
        None => std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .as_deref()
            .and_then(nameserver)
            .map(|ip| SocketAddr::new(ip, 53))
            .ok_or(PtrError::NoResolver),
    }
}

/// Starts the lookup thread asking `server` and makes [`label`] answer
/// (once per process; a second call keeps the first lookup).
///
/// # Errors
/// [`PtrError::Thread`].
pub fn install(server: SocketAddr) -> Result<(), PtrError> {
    if PTR.get().is_some() {
        return Ok(());
    }
    let ptr = start(server)?;
    let _ = PTR.set(ptr);
    tracing::info!(%server, "reverse lookup on: PTR names for remotes and devices without one");
    Ok(())
}

/// A lookup asking `server` on its own thread (the thread ends when the
/// returned value is dropped).
///
/// # Errors
/// [`PtrError::Thread`].
pub fn start(server: SocketAddr) -> Result<Arc<Ptr>, PtrError> {
    let (queue, rx) = sync_channel(QUEUE);
    let cap = NonZeroUsize::new(CACHE).unwrap_or(NonZeroUsize::MIN);
    let ptr = Arc::new(Ptr {
        cache: Mutex::new(LruCache::new(cap)),
        queue,
    });
    let weak = Arc::downgrade(&ptr);
    std::thread::Builder::new()
        .name("netmon-ptr".to_owned())
        .spawn(move || run(server, &rx, &weak))
        .map_err(PtrError::Thread)?;
    Ok(ptr)
}

/// The installed lookup's label for `addr` (see [`Ptr::label`]); `None`
/// when the reverse lookup is off.
#[must_use]
pub fn label(addr: IpAddr) -> Option<String> {
    PTR.get().and_then(|p| p.label(addr))
}

/// True when the reverse lookup is on.
#[must_use]
pub fn enabled() -> bool {
    PTR.get().is_some()
}

/// The lookup thread: one question at a time, rate limited.
fn run(server: SocketAddr, rx: &Receiver<IpAddr>, ptr: &std::sync::Weak<Ptr>) {
    let gap = Duration::from_secs(1) / RATE_PER_SEC;
    let mut last: Option<Instant> = None;
    while let Ok(addr) = rx.recv() {
        if let Some(wait) = last.and_then(|t| gap.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        last = Some(Instant::now());
        let (name, ttl) = match ask(server, addr) {
            Ok(Some((name, ttl))) => (Some(name), ttl.clamp(MIN_TTL, MAX_TTL)),
            Ok(None) => (None, NEGATIVE_TTL),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "reverse lookup");
                (None, ERROR_TTL)
            }
        };
        let Some(ptr) = ptr.upgrade() else { return };
        ptr.learn(addr, name, ttl);
    }
}

/// Asks `server` for `addr`'s PTR name: the name and its TTL, `None` for
/// no name.
fn ask(server: SocketAddr, addr: IpAddr) -> std::io::Result<Option<(String, Duration)>> {
    let mut idb = [0u8; 2];
    getrandom::fill(&mut idb).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id = u16::from_ne_bytes(idb);
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from(addr), RecordType::PTR));
    let bytes = msg.to_vec().map_err(std::io::Error::other)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.send(&bytes)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        let Ok(answer) = Message::from_vec(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        if answer.id() == id && answer.message_type() == MessageType::Response {
            return Ok(ptr_of(&answer));
        }
        if Instant::now() > deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
}

/// The first PTR name of an answer and its TTL.
fn ptr_of(answer: &Message) -> Option<(String, Duration)> {
    if answer.response_code() != ResponseCode::NoError {
        return None;
    }
    answer.answers().iter().find_map(|r| match r.data() {
        RData::PTR(name) => {
            let text = name.0.to_utf8();
            let text = text.trim_end_matches('.');
            (!text.is_empty()).then(|| (text.to_owned(), Duration::from_secs(u64::from(r.ttl()))))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Record, rdata::PTR as PtrData};

    #[test]
    fn resolver_addresses() {
        let conf = "# generated\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.1\n";
        assert_eq!(nameserver(conf), Some("fe80::1".parse().expect("ip")));
        assert_eq!(nameserver("options edns0\n"), None);
        assert_eq!(
            parse_resolver("10.0.0.1").expect("ip"),
            "10.0.0.1:53".parse().expect("sa")
        );
        assert_eq!(
            parse_resolver("[::1]:5353").expect("ip"),
            "[::1]:5353".parse().expect("sa")
        );
        assert!(parse_resolver("dns.example").is_err());
    }

    /// A fake resolver on loopback answers one PTR; the first label queues,
    /// a later one has the name; a second address with no PTR stays
    /// unnamed; loopback is never asked.
    #[test]
    fn labels_arrive_later_from_a_resolver() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let named: IpAddr = "192.0.2.7".parse().expect("ip");
        let asked = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).expect("recv");
                let q = Message::from_vec(&buf[..n]).expect("query");
                let qname = q.queries()[0].name().clone();
                seen.push(qname.to_utf8());
                let mut a = Message::new();
                a.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .add_query(q.queries()[0].clone());
                if qname == Name::from(named) {
                    a.add_answer(Record::from_rdata(
                        qname,
                        3600,
                        RData::PTR(PtrData(Name::from_ascii("host7.example.").expect("name"))),
                    ));
                } else {
                    a.set_response_code(ResponseCode::NXDomain);
                }
                server
                    .send_to(&a.to_vec().expect("encode"), from)
                    .expect("send");
            }
            seen
        });
        let ptr = start(addr).expect("start");
        let other: IpAddr = "198.51.100.9".parse().expect("ip");
        assert_eq!(ptr.label(named), None, "not known yet: queued");
        assert_eq!(ptr.label(other), None);
        assert_eq!(ptr.label("127.0.0.1".parse().expect("ip")), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ptr.label(named).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(ptr.label(named).as_deref(), Some("host7.example"));
        let seen = asked.join().expect("fake resolver");
        assert_eq!(
            seen,
            vec!["7.2.0.192.in-addr.arpa.", "9.100.51.198.in-addr.arpa."],
            "each address asked once, loopback never"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ptr.label(other), None, "NXDOMAIN: no name, kept");
    }
}
