//! PostgreSQL over TLS on both drivers (sqlx: the pool, the CLI; tokio-postgres: the calls'
//! writers), against a throwaway cluster of its own with `ssl = on`, a certificate made by the
//! test (openssl), and a `pg_hba.conf` that only accepts TLS connections — so a connection that
//! works is encrypted, and one without TLS is refused.
//!
//! Needs PostgreSQL's server binaries (`/usr/lib/postgresql/*/bin`) and `openssl`; without them it
//! prints `SKIPPED (…)` and passes, except with `CI=true`, where it fails.

use crate::helpers::{helpline, run_helpline, ServeProcess};
use console::db::pg_tls;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PostgreSQL's server binaries, newest version first.
pub(crate) fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn available() -> Option<PathBuf> {
    let bin = pg_bin();
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if bin.is_none() || !openssl {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL's server binaries and openssl are required when CI=true"
        );
        eprintln!("SKIPPED (no PostgreSQL server binaries or no openssl)");
        return None;
    }
    bin
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL tool, as `postgres` when we are root (the server refuses to run as root).
pub(crate) fn pg(tool: &Path, args: &[&str]) {
    let out = if is_root() {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(tool).args(args).output()
    } else {
        Command::new(tool).args(args).output()
    }
    .expect("run a PostgreSQL tool");
    assert!(out.status.success(), "{tool:?} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A cluster that listens on 127.0.0.1 with TLS only; stopped when dropped.
struct TlsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsCluster {
    fn start(bin: PathBuf) -> TlsCluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The authorities and the server's certificate (for localhost, not for 127.0.0.1).
        for ca in ["ca", "other-ca"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=helpline test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
        let data = d.join("data");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:", d.to_str().unwrap()]).status().unwrap();
            assert!(status.success());
        }
        let chmod = Command::new("chmod").args(["0600", d.join("server.key").to_str().unwrap()]).status().unwrap();
        assert!(chmod.success());
        pg(
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        );
        // Only TLS connections, from anywhere on this host; nothing else.
        std::fs::write(data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n")
            .unwrap();
        if is_root() {
            let status =
                Command::new("chown").args(["postgres:", data.join("pg_hba.conf").to_str().unwrap()]).status().unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            d.display(),
            d.join("server.pem").display(),
            d.join("server.key").display()
        );
        pg(
            &bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-l", d.join("log").to_str().unwrap(), "-w", "-o", &options, "start"],
        );
        TlsCluster { bin, dir, port }
    }

    /// A URL of this cluster's `postgres` database at `host`, with `params`.
    fn url(&self, host: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "?" };
        format!("postgres://postgres@{host}:{}/postgres{sep}{params}", self.port)
    }

    fn ca(&self, name: &str) -> String {
        self.dir.path().join(format!("{name}.pem")).display().to_string()
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        pg(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
    }
}

/// Whether each driver connects to `url`: (sqlx, tokio-postgres).
async fn connects(url: &str) -> (Result<(), String>, Result<(), String>) {
    let sqlx = match console::db::Db::connect(url).await {
        Ok(db) => {
            db.close().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    };
    let tokio = async {
        let (config, tls) = pg_tls::tokio_config(url).map_err(|e| e.to_string())?;
        let (client, connection) = config.connect(tls).await.map_err(|e| e.to_string())?;
        let task = tokio::spawn(connection);
        client.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
        drop(client);
        let _ = task.await;
        Ok(())
    }
    .await;
    (sqlx, tokio)
}

#[tokio::test]
async fn postgresql_over_tls_as_libpq_defines_sslmode_on_both_drivers() {
    let Some(bin) = available() else { return };
    let cluster = tokio::task::spawn_blocking(move || TlsCluster::start(bin)).await.unwrap();
    let ca = cluster.ca("ca");
    let other = cluster.ca("other-ca");
    let full = cluster.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let at_ip = |params: &str| cluster.url("127.0.0.1", params);

    // (what, URL, whether sqlx connects, whether tokio-postgres connects)
    let cases = [
        ("verify-full, the right name and authority", full.clone(), true, true),
        (
            "verify-full, a name the certificate does not have",
            at_ip(&format!("sslmode=verify-full&sslrootcert={ca}")),
            false,
            false,
        ),
        (
            "verify-full, another authority",
            cluster.url("localhost", &format!("sslmode=verify-full&sslrootcert={other}")),
            false,
            false,
        ),
        (
            "verify-ca, the right authority",
            cluster.url("localhost", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            true,
            true,
        ),
        // The chain, not the name. sqlx 0.8.6 checks the name anyway (its verify-ca verifier
        // misses the error rustls 0.23.48 gives for a wrong name): stricter, never weaker.
        (
            "verify-ca, a name the certificate does not have",
            at_ip(&format!("sslmode=verify-ca&sslrootcert={ca}")),
            false,
            true,
        ),
        ("verify-ca, another authority", at_ip(&format!("sslmode=verify-ca&sslrootcert={other}")), false, false),
        ("require: encrypted, no check", at_ip("sslmode=require"), true, true),
        (
            "require with a root certificate checks the chain (libpq)",
            cluster.url("localhost", &format!("sslmode=require&sslrootcert={other}")),
            false,
            false,
        ),
        ("prefer: TLS when offered", at_ip(""), true, true),
        ("disable: refused by a TLS-only server", at_ip("sslmode=disable"), false, false),
    ];
    for (what, url, sqlx_works, tokio_works) in cases {
        let (sqlx, tokio) = connects(&url).await;
        assert_eq!(sqlx.is_ok(), sqlx_works, "sqlx, {what}: {sqlx:?}");
        assert_eq!(tokio.is_ok(), tokio_works, "tokio-postgres, {what}: {tokio:?}");
    }

    // The real binary with verify-full: the CLI (sqlx), then `serve`, whose calls' writers
    // (tokio-postgres) answer a carrier's event, on connections PostgreSQL reports as TLS.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_helpline(helpline(dir.path()).arg("migrate").env("HELPLINE_DATABASE_URL", &full), "");
    assert_eq!(code, 0, "{out}{err}");
    let server = ServeProcess::start(dir.path(), &full);
    let body = serde_json::to_vec(
        &serde_json::json!({"type": "call.started", "call_id": "tls-1", "seq": 1, "from": "+39 333 123 4512"}),
    )
    .unwrap();
    let r = crate::helpers::post_signed_event(
        &reqwest::Client::new(),
        &server.url("/voice/events"),
        "application/json",
        body,
        chrono::Utc::now(),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let db = console::db::Db::connect(&full).await.unwrap();
    let (n, all_tls): (i64, bool) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(bool_and(s.ssl), false) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = $1",
    )
    .bind(console::calls::POSTGRES_WRITER_NAME)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(n >= 1 && all_tls, "the calls' writers' connections: {n}, all TLS: {all_tls}");
    let (calls,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM calls WHERE call_id = 'tls-1'").fetch_one(db.pool()).await.unwrap();
    assert_eq!(calls, 1);
    let (ssl_here,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(db.pool()).await.unwrap();
    assert!(ssl_here, "the pool's own connection is TLS");
    db.close().await;
    server.terminate();
}
