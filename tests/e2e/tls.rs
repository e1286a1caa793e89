//! The built-in HTTPS listener, through the real binary: a certificate the test makes, a client
//! that trusts only it, `/healthz` over TLS; the files replaced and SIGHUP sent, a new connection
//! gets the new certificate; a broken replacement keeps the old one; half the settings refuse to
//! start.

use crate::helpers::{fresh_database, helpline, run_helpline, ServeProcess};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for `localhost`: (certificate DER, certificate PEM, key PEM).
fn make_cert() -> (CertificateDer<'static>, String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    (made.cert.der().clone(), made.cert.pem(), made.signing_key.serialize_pem())
}

fn write_cert(dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join("cert.pem"), cert_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), key_pem).expect("write key");
}

/// `GET /healthz` over TLS to `addr` as `localhost`, trusting only `root`: the certificate the
/// server showed and the response, or why the connection failed.
async fn https_healthz(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Result<(CertificateDer<'static>, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let shown = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned().ok_or("no certificate")?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A server that closes without close_notify is fine here: what arrived is checked below.
    let _ = tls.read_to_end(&mut response).await;
    Ok((shown.into_owned(), String::from_utf8_lossy(&response).into_owned()))
}

#[tokio::test]
async fn https_serves_the_certificate_and_reloads_it_on_sighup() {
    let db = fresh_database().await;
    let dir = db.dir.path().to_owned();
    let (first, first_pem, first_key) = make_cert();
    write_cert(&dir, &first_pem, &first_key);
    let mut cmd = helpline(&dir);
    cmd.env("HELPLINE_TLS_CERT", dir.join("cert.pem")).env("HELPLINE_TLS_KEY", dir.join("key.pem"));
    let mut server = ServeProcess::start_command(cmd, &db.url);

    let (shown, response) = https_healthz(server.addr, &first).await.expect("HTTPS with the first certificate");
    assert_eq!(shown, first, "the server shows the configured certificate");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");
    // Cleartext HTTP on the same port gets no answer.
    let plain = reqwest::Client::new().get(server.url("/healthz")).timeout(Duration::from_secs(5)).send().await;
    assert!(plain.is_err(), "plain HTTP is not served on the HTTPS port: {plain:?}");

    // New files, SIGHUP: a new connection sees the new certificate; the old one is no longer shown.
    let (second, second_pem, second_key) = make_cert();
    write_cert(&dir, &second_pem, &second_key);
    server.signal("HUP");
    server.wait_for_log("TLS certificate reloaded", Duration::from_secs(10));
    let (shown, response) = https_healthz(server.addr, &second).await.expect("HTTPS with the second certificate");
    assert_eq!(shown, second);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let old = https_healthz(server.addr, &first).await;
    assert!(old.is_err(), "a client trusting only the old certificate is refused now: {old:?}");

    // A broken replacement (a key that is not the certificate's) is refused; the current
    // certificate stays in service.
    let (_, third_pem, _) = make_cert();
    write_cert(&dir, &third_pem, &second_key);
    server.signal("HUP");
    let refused =
        server.wait_for_log("TLS certificate not reloaded: still serving the previous one", Duration::from_secs(10));
    let why = refused["fields"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("do not go together"), "{why}");
    let (shown, _) = https_healthz(server.addr, &second).await.expect("still the second certificate");
    assert_eq!(shown, second);
    std::fs::write(dir.join("key.pem"), "not a key").expect("write key");
    server.signal("HUP");
    let refused =
        server.wait_for_log("TLS certificate not reloaded: still serving the previous one", Duration::from_secs(10));
    assert!(refused["fields"]["error"].as_str().unwrap_or_default().contains("key.pem"), "{refused}");
    let (shown, _) = https_healthz(server.addr, &second).await.expect("still the second certificate");
    assert_eq!(shown, second);
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn half_the_tls_settings_or_a_bad_file_refuse_to_start() {
    let db = fresh_database().await;
    let dir = db.dir.path();
    let (_, cert_pem, key_pem) = make_cert();
    write_cert(dir, &cert_pem, &key_pem);

    let mut cmd = helpline(dir);
    cmd.arg("serve")
        .env("HELPLINE_DATABASE_URL", &db.url)
        .env("HELPLINE_SECRET", crate::helpers::TEST_SERVER_SECRET)
        .env("HELPLINE_TLS_CERT", dir.join("cert.pem"));
    let (code, _, err) = run_helpline(&mut cmd, "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HELPLINE_TLS_KEY") && err.contains("HELPLINE_TLS_CERT"), "{err}");

    let mut cmd = helpline(dir);
    cmd.arg("serve")
        .env("HELPLINE_DATABASE_URL", &db.url)
        .env("HELPLINE_SECRET", crate::helpers::TEST_SERVER_SECRET)
        .env("HELPLINE_HTTP_ADDR", "127.0.0.1:0")
        .env("HELPLINE_SIP_ADDR", "127.0.0.1:0")
        .env("HELPLINE_TLS_CERT", dir.join("missing.pem"))
        .env("HELPLINE_TLS_KEY", dir.join("key.pem"));
    let (code, _, err) = run_helpline(&mut cmd, "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing.pem") && err.contains("cannot read"), "{err}");
}
