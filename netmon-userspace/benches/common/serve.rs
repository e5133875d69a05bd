//! The daemon's HTTP server in-process for the HTTP benchmarks: a store of
//! 30 days × 500 processes ([`super::fill`]) behind the real router, on a
//! current-thread tokio runtime driven by its own thread (as the daemon's
//! runtime is driven by its main loop), loopback only, no auth.
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netmon::api::Handle;
use netmon::http::{AppState, DaemonInfo, HttpConfig};
use netmon::query::AppRules;
use netmon::store::{Retention, Store};

/// A filled store served on a loopback port; the temporary directory lives
/// as long as this.
pub struct Served {
    /// The port.
    pub port: u16,
    /// The store the server answers from.
    pub handle: Handle,
    /// Durations of [`Served::drain_every_second`]'s commits.
    drain_took: Arc<Mutex<Vec<Duration>>>,
    /// The store file's directory.
    _dir: tempfile::TempDir,
}

/// Fills a store (printing its size and fill time) and serves it.
pub fn serve_filled() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = netmon::query::window::now_ms();
    let (mut store, _) =
        Store::open(&dir.path().join("bench.redb"), Retention::default()).expect("open store");
    let filled = Instant::now();
    super::fill::fill(&mut store, now);
    println!(
        "store: 30 days x {} processes, {} bytes, filled in {:?}",
        super::fill::PROCS,
        store.file_size().expect("size"),
        filled.elapsed()
    );
    let handle = Handle::new(Arc::new(Mutex::new(store)), AppRules::default());
    let served = handle.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cfg: HttpConfig =
        toml::from_str(&format!("listen = \"127.0.0.1:{port}\"")).expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bound = netmon::http::bind(&cfg).expect("bind").expect("listening");
    let info = DaemonInfo {
        source: "simulated".into(),
        interval: Duration::from_secs(1),
        started_unix_ms: now,
        pin_dir: "/nonexistent".into(),
        lan: Vec::new(),
    };
    let state = AppState::new(&cfg, bound.loopback_only, handle, info);
    {
        let _guard = rt.enter();
        bound.spawn(&state).expect("serve");
    }
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    Served {
        port,
        handle: served,
        drain_took: Arc::default(),
        _dir: dir,
    }
}

impl Served {
    /// Commits one batch of every process each second at the current
    /// time, holding the store's lock as the daemon's drain does, for as
    /// long as the benchmark runs: answers are measured under a running
    /// drain, and closed segments close as they do in the daemon.
    pub fn drain_every_second(&self) {
        let store = Arc::clone(&self.handle.store);
        let took = Arc::clone(&self.drain_took);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let batch = super::fill::drain_batch(netmon::query::window::now_ms());
                let mut s = store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let start = Instant::now();
                s.commit(&batch).expect("commit");
                took.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(start.elapsed());
            }
        });
    }

    /// How long the drain's commits held the store so far (p50, max): a
    /// question arriving meanwhile waits for it.
    pub fn drain_commits(&self) -> (usize, Duration, Duration) {
        let mut t = self
            .drain_took
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        t.sort();
        let n = t.len();
        (
            n,
            t.get(n / 2).copied().unwrap_or_default(),
            t.last().copied().unwrap_or_default(),
        )
    }

    /// Turns the store's kept sums of closed segments on or off
    /// (`netmon::store::sums`), for before/after figures in one run.
    pub fn keep_sums(&self, on: bool) {
        self.handle
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sums_mut()
            .set_enabled(on);
    }
}

/// `GET path` over a fresh connection: the status and the response size.
pub fn get(port: u16, path: &str) -> (u16, usize) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("receive");
    let status = String::from_utf8_lossy(&raw[9..12])
        .parse()
        .expect("status");
    (status, raw.len())
}
