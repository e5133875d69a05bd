//! Listening: checks the `[http]` rules, binds the sockets at daemon start
//! (so a bad address or a refused configuration stops the daemon with one
//! line), and serves connections with hyper's HTTP/1 server, optionally
//! behind rustls, with the connection, header-time and handshake bounds of
//! [`crate::http`].
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::http::{
    AppState, HEADER_TIMEOUT, HttpConfig, HttpError, MAX_CONNECTIONS, TLS_TIMEOUT, is_loopback,
    router,
};

/// Sockets bound and TLS loaded, ready to serve.
pub struct Bound {
    listeners: Vec<(std::net::TcpListener, SocketAddr)>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Every address is loopback.
    pub loopback_only: bool,
    /// The configuration.
    pub config: HttpConfig,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("addrs", &self.addrs())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// The bound addresses.
    #[must_use]
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, a)| *a).collect()
    }

    /// Serves on the runtime until it stops.
    ///
    /// # Errors
    /// When a listener cannot be registered with the runtime.
    pub fn spawn(self, state: &AppState) -> Result<(), HttpError> {
        let app = router(state.clone());
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let acceptor = self.tls.map(tokio_rustls::TlsAcceptor::from);
        for (std_listener, addr) in self.listeners {
            let listener = tokio::net::TcpListener::from_std(std_listener)
                .map_err(|source| HttpError::Bind { addr, source })?;
            tracing::info!(%addr, tls = acceptor.is_some(), "http server ready");
            let app = app.clone();
            let slots = Arc::clone(&slots);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                        return;
                    };
                    let (tcp, _peer) = match listener.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, %addr, "http accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let app = app.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let service = TowerToHyperService::new(app);
                        let result = match acceptor {
                            Some(acc) => {
                                match tokio::time::timeout(TLS_TIMEOUT, acc.accept(tcp)).await {
                                    Ok(Ok(tls)) => {
                                        serve_connection(TokioIo::new(tls), service).await
                                    }
                                    Ok(Err(e)) => Err(e.to_string()),
                                    Err(_) => Err("TLS handshake timed out".to_owned()),
                                }
                            }
                            None => serve_connection(TokioIo::new(tcp), service).await,
                        };
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "http connection ended");
                        }
                        drop(permit);
                    });
                }
            });
        }
        Ok(())
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    service: TowerToHyperService<axum::Router>,
) -> Result<(), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service)
        .await
        .map_err(|e| e.to_string())
}

fn load_tls(cfg: &HttpConfig) -> Result<Option<Arc<rustls::ServerConfig>>, HttpError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&cfg.cert, &cfg.key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(HttpError::HalfTls),
    };
    let bad = |what, path: &std::path::Path| {
        let path = path.to_owned();
        move |e: &dyn std::fmt::Display| HttpError::Tls {
            what,
            path,
            message: e.to_string(),
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert)(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert)(&e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert)(&"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key)(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("certificate", cert)(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| bad("key", key)(&e))?;
    Ok(Some(Arc::new(config)))
}

/// Checks `cfg` and binds its addresses. `Ok(None)`: HTTP is off.
///
/// When `listen` is not in the file, the default address is tried and a
/// failure to bind it is a warning (another daemon or program has the port;
/// the daemon still runs); a configured address that cannot be bound is an
/// error.
///
/// # Errors
/// [`HttpError`]: non-loopback without auth, bad TLS files, bind failures.
pub fn bind(cfg: &HttpConfig) -> Result<Option<Bound>, HttpError> {
    cfg.metrics.check().map_err(HttpError::Metrics)?;
    crate::http::fleet::Prometheus::new(&cfg.fleet).map_err(HttpError::Metrics)?;
    let explicit = cfg.listen.is_some();
    let addrs = cfg.listen.clone().unwrap_or_else(|| {
        vec![
            crate::http::DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9847))),
        ]
    });
    if addrs.is_empty() {
        return Ok(None);
    }
    let loopback_only = addrs.iter().all(|a| is_loopback(a.ip()));
    if let Some(open) = addrs.iter().find(|a| !is_loopback(a.ip()))
        && cfg.auth != crate::http::AuthMode::Token
    {
        return Err(HttpError::NoAuth(*open));
    }
    let tls = load_tls(cfg)?;
    if !loopback_only && tls.is_none() {
        tracing::warn!(
            "http: serving PLAIN HTTP on a non-loopback address: tokens and session cookies cross the network unencrypted; set cert and key under [http]"
        );
    }
    let mut listeners = Vec::new();
    for addr in addrs {
        match std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            let a = l.local_addr()?;
            Ok((l, a))
        }) {
            Ok(pair) => listeners.push(pair),
            Err(source) if !explicit => {
                tracing::warn!(%addr, error = %source, "http: the default address cannot be bound; the dashboard is off (set listen under [http])");
                return Ok(None);
            }
            Err(source) => return Err(HttpError::Bind { addr, source }),
        }
    }
    Ok(Some(Bound {
        listeners,
        tls,
        loopback_only,
        config: cfg.clone(),
    }))
}
