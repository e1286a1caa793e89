//! PostgreSQL over TLS, as libpq defines the URL's `sslmode` and `sslrootcert`, for both drivers:
//! sqlx (the pool, `LISTEN`) and tokio-postgres (the calls' writers, `crate::calls`).
//!
//! | `sslmode` | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | — | — |
//! | `prefer` (the default) | if the server offers it | no | no |
//! | `require` | yes | only when `sslrootcert` is given (as libpq does) | no |
//! | `verify-ca` | yes | yes, against `sslrootcert` | no |
//! | `verify-full` | yes | yes, against `sslrootcert` | yes |
//!
//! `sslrootcert` is a PEM file of the trusted certificate authorities; for `verify-ca` and
//! `verify-full` without it, libpq's default `~/.postgresql/root.crt` is used.
//!
//! sqlx reads both parameters itself; this module only turns `require` with `sslrootcert` into
//! `verify-ca` for it ([`sqlx_url`]), as libpq does. tokio-postgres knows neither `verify-ca` nor
//! `verify-full` nor `sslrootcert`: [`tokio_config`] takes them out of the URL and builds the rustls
//! configuration that does what they say ([`MakeRustls`]).

use super::DbError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!("sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full"))
            }
        })
    }
}

/// The TLS part of a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Splits the URL's `sslmode` and `sslrootcert` from the rest of it.
fn split(url: &str) -> Result<(String, PgTls), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut tls = PgTls { mode: SslMode::Prefer, root_cert: None };
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut kept = 0;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "sslmode" | "ssl-mode" => tls.mode = SslMode::parse(&v)?,
            "sslrootcert" | "ssl-root-cert" => tls.root_cert = Some(PathBuf::from(&*v)),
            _ => {
                rest.append_pair(&k, &v);
                kept += 1;
            }
        }
    }
    let rest = rest.finish();
    Ok((if kept == 0 { base.to_owned() } else { format!("{base}?{rest}") }, tls))
}

/// The URL as sqlx should read it: `require` with `sslrootcert` checks the chain (libpq's rule;
/// sqlx's `require` never checks it).
pub fn sqlx_url(url: &str) -> Result<String, String> {
    let (base, tls) = split(url)?;
    let mode = match (tls.mode, &tls.root_cert) {
        (SslMode::Require, Some(_)) => "verify-ca",
        (SslMode::Disable, _) => "disable",
        (SslMode::Prefer, _) => "prefer",
        (SslMode::Require, None) => "require",
        (SslMode::VerifyCa, _) => "verify-ca",
        (SslMode::VerifyFull, _) => "verify-full",
    };
    let root = match (&tls.root_cert, tls.mode) {
        (Some(p), _) => Some(p.clone()),
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => Some(default_root_cert()?),
        (None, _) => None,
    };
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("sslmode", mode);
    if let Some(p) = root {
        q.append_pair("sslrootcert", &p.to_string_lossy());
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}{}", q.finish()))
}

/// libpq's default root certificates: `~/.postgresql/root.crt`.
fn default_root_cert() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("sslrootcert is not given and HOME is not set")?;
    Ok(Path::new(&home).join(".postgresql/root.crt"))
}

/// The tokio-postgres configuration of the URL, and the TLS connector for its `sslmode`.
pub fn tokio_config(url: &str) -> Result<(tokio_postgres::Config, MakeRustls), DbError> {
    let bad = |reason: String| DbError::Connect { backend: "postgres", url: super::redact(url), reason };
    let (base, tls) = split(url).map_err(bad)?;
    let mut config: tokio_postgres::Config = base.parse()?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let connector = MakeRustls::new(&tls).map_err(bad)?;
    Ok((config, connector))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The trusted authorities in a PEM file.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {}: no certificate in it", path.display()));
    }
    Ok(store)
}

/// tokio-postgres's TLS over rustls, checking what the `sslmode` says.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    pub fn new(tls: &PgTls) -> Result<MakeRustls, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let root = match (&tls.root_cert, tls.mode) {
            (Some(p), _) => Some(p.clone()),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => Some(default_root_cert()?),
            (None, _) => None,
        };
        let check_chain = match tls.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            // libpq: with a root certificate, require checks the chain as verify-ca does.
            SslMode::Require => root.is_some(),
            SslMode::Disable | SslMode::Prefer => false,
        };
        let verifier: Arc<dyn ServerCertVerifier> = if check_chain {
            let store = roots(root.as_deref().ok_or("no sslrootcert")?)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
            if tls.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        } else {
            Arc::new(AnyCertificate(provider))
        };
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        Ok(MakeRustls { config: Arc::new(config) })
    }
}

/// `verify-ca`: the chain must lead to a trusted authority; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, any certificate (libpq's
/// meaning; the handshake's signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("host {domain:?}: {e}")))?;
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssl_parameters_are_taken_out_for_tokio_postgres_and_kept_for_sqlx() {
        let (base, tls) =
            split("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=5").unwrap();
        assert_eq!(base, "postgres://u@h/db?connect_timeout=5");
        assert_eq!(tls, PgTls { mode: SslMode::VerifyFull, root_cert: Some("/tmp/ca.pem".into()) });
        let (base, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!((base.as_str(), tls.mode), ("postgres://u@h/db", SslMode::Prefer));
        assert!(split("postgres://u@h/db?sslmode=sometimes").is_err());

        // libpq: require with a root certificate checks the chain.
        let url = sqlx_url("postgres://u@h/db?sslmode=require&sslrootcert=/tmp/ca.pem").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem");
        let url = sqlx_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        assert!(tokio_config("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent").is_err());
    }
}
