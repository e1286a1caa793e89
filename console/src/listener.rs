//! The HTTP listener: the accept loop in front of the router, with the limits a port on the
//! internet needs (`axum::serve` has none of them). A connection may take at most
//! `http_header_timeout_secs` to send a request's headers — also the longest a kept-alive
//! connection may sit idle — and a request at most `http_body_timeout_secs` to send its body
//! (`tower_http`'s body timeout, in the router); at most `http_max_connections` connections are
//! served at once (past them the loop stops accepting, so the kernel's backlog holds the rest
//! and no file descriptor is spent: RTP sockets and the database need them). On shutdown it stops
//! accepting, lets requests in flight finish, and closes what is left after [`DRAIN`].
//!
//! With [`Tls`] the same loop serves HTTPS (rustls): the handshake must finish within the header
//! timeout, and the connection counts against the same limit from `accept`. The certificate is
//! read from PEM files at start and again on SIGHUP ([`Tls::reload_on_sighup`]); a reload that
//! fails keeps the certificate in use and logs why. New connections get the new certificate;
//! open ones keep theirs.

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long shutdown waits for requests in flight (websockets included) before closing them.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The listener's limits (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (at most [`DRAIN`]).
/// With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // HTTP/1.1 only: what carriers, browsers and reverse proxies speak to a server like this one
    // (cleartext HTTP/2 is for proxies' backends, and TLS is in front). Unlike the
    // protocol-sniffing builder, it times out a connection that never sends a byte.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let max = limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let (builder, stopping) = (builder.clone(), stopping.clone());
        match tls.as_ref().map(|t| t.acceptor.clone()) {
            None => {
                tokio::spawn(async move {
                    serve_connection(&builder, TokioIo::new(stream), service, peer, stopping).await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let handshake_timeout = limits.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, TokioIo::new(stream), service, peer, stopping).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    stopping.cancel();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("HTTP connections still open after the drain time: left to close with the process");
    }
    Ok(())
}

/// Serves one connection (plain or TLS) until it ends, or until shutdown has let its request in
/// flight finish.
async fn serve_connection<I, S>(
    builder: &http1::Builder,
    io: TokioIo<I>,
    service: S,
    peer: std::net::SocketAddr,
    stopping: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = stopping.cancelled() => {
            // Finish the request in flight, then close (a kept-alive connection at once).
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Where the built-in HTTPS listener's certificate chain and private key are (PEM files,
/// `HELPLINE_TLS_CERT` and `HELPLINE_TLS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate could not be (re)loaded. The message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and private key {key} do not go together: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("TLS settings: {0}")]
    Config(String),
}

/// The built-in HTTPS listener's TLS: a rustls acceptor whose certificate can be replaced while
/// it runs.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// The certificate every new handshake gets.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Reads the certificate chain and key; fails naming the file and the reason.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = load_certified_key(&files, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // HTTP/1.1 only, as in cleartext (websockets upgrade over it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(Arc::new(Tls { files, provider, current, acceptor }))
    }

    /// Reads the files again and, when they are good, serves the new certificate to new
    /// connections; otherwise keeps the old one and says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.files, &self.provider)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// Reloads the certificate on every SIGHUP until `stop` is cancelled.
    pub async fn reload_on_sighup(self: Arc<Self>, stop: CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGHUP: the TLS certificate will not be reloaded");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    got = hup.recv() => if got.is_none() { return },
                }
                match self.reload() {
                    Ok(()) => tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate not reloaded: still serving the previous one")
                    }
                }
            }
        }
        #[cfg(not(unix))]
        stop.cancelled().await
    }
}

fn load_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: files.cert.clone(), reason };
    let certs = read_pem(&files.cert).map_err(cert_err)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&certs)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let key_err = |reason: String| TlsError::Key { path: files.key.clone(), reason };
    let key = read_pem(&files.key).map_err(key_err)?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| key_err(format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file: {e}")))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}
