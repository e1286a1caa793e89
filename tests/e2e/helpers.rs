//! Test helpers: fresh databases, the in-process app, and the real binary.

use chrono::{DateTime, TimeZone, Utc};
use console::clock::{Clock, ManualClock};
use console::config::{LogFormat, SecretString, Settings};
use console::startup::Application;
use sqlx::Connection;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tempfile::TempDir;

/// A database of its own for one test, and the temp folder it (or the app) lives in.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// A fresh, empty database on the backend under test.
pub async fn fresh_database() -> TestDb {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match std::env::var("HELPLINE_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!(
                "helpline_test_{}_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                rand::random::<u32>()
            );
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("HELPLINE_TEST_DATABASE_URL must point at a running PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
            let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}/helpline.db", dir.path().display()),
    };
    TestDb { url, dir }
}

/// Settings for a test server: port 0, the given database, files in the test's temp dir.
pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        sip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        webrtc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        rtp_port_min: 0,
        rtp_port_max: 0,
        database_url: db.url.clone(),
        data_dir: db.dir.path().join("data"),
        // PostgreSQL needs a server key from outside the database; SQLite generates and stores one.
        secret: if db.is_postgres() { SecretString::new(TEST_SERVER_SECRET) } else { SecretString::default() },
        log_format: LogFormat::Pretty,
        flow_file: repo_path("config/ivr.toml"),
        prompts_dir: repo_path("prompts"),
        public_url: String::new(),
        twilio_auth_token: SecretString::new(TEST_TWILIO_TOKEN),
        webhook_secret: SecretString::new(TEST_WEBHOOK_SECRET),
        retention_days: 365,
        audit_retention_days: 730,
        console_file: repo_path("config/console.toml"),
        // A test that stops with SIP calls up does not wait five minutes for them.
        drain_secs: 2,
        ..Settings::default()
    }
}

/// Tests that flood the SIP port take this for writing; a test that checks the exact timing of
/// the audio it receives takes it for reading, so that the floods' load (thousands of packets a
/// second through this process) does not run beside it.
pub static SIP_FLOODS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The server key of test servers on PostgreSQL (`HELPLINE_SECRET`), the same for every node.
pub const TEST_SERVER_SECRET: &str = "test-server-secret-0123456789abcdef0123456789";
/// The auth token test servers verify TwiML signatures with.
pub const TEST_TWILIO_TOKEN: &str = "test-twilio-auth-token-0123456789";
/// The key test servers verify JSON webhook signatures with.
pub const TEST_WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";

/// A path in the repository (tests run from the crate folder).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Posts a body to a `/voice/events` URL, signed with the test key as of `at`.
pub async fn post_signed_event(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    at: DateTime<Utc>,
) -> reqwest::Response {
    let ts = at.timestamp();
    client
        .post(url)
        .header("content-type", content_type)
        .header("x-helpline-timestamp", ts.to_string())
        .header("x-helpline-signature", console::webhook::json::sign(TEST_WEBHOOK_SECRET, ts, &body))
        .body(body)
        .send()
        .await
        .expect("request")
}

/// The real app, running in this process on a random port.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The SIP user agent's UDP address.
    pub sip_addr: SocketAddr,
    pub db: TestDb,
    pub first_admin: Option<(String, String)>,
    pub client: reqwest::Client,
    /// The server's shared state (its pool, metrics, settings).
    pub state: console::startup::AppState,
    /// The server's clock: stands still at [`OPEN_HOURS`] until a test moves it.
    pub clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a JSON call event signed with the test key at the server's clock time.
    pub async fn voice_event(&self, event: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.post_signed("application/json", serde_json::to_vec(event).expect("json")).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Posts any body to `/voice/events`, correctly signed at the server's clock time.
    pub async fn post_signed(&self, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        post_signed_event(&self.client, &self.url("/voice/events"), content_type, body, self.clock.now()).await
    }

    /// Posts a TwiML request (form parameters) to `path_and_query`, signed as Twilio signs.
    pub async fn twiml(&self, path_and_query: &str, params: &[(&str, &str)]) -> (u16, String) {
        let url = if path_and_query.starts_with("http") { path_and_query.to_owned() } else { self.url(path_and_query) };
        let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sig = console::webhook::signature::twilio_signature(TEST_TWILIO_TOKEN, &url, &owned);
        let r = self.client.post(&url).header("x-twilio-signature", sig).form(&owned).send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Tells the server to stop (as SIGTERM does) without waiting: SIP calls drain first.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server gracefully, waits for it, and hands back its database (which outlives it).
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
        self.db
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database().await).await
}

/// A Tuesday at 10:00 in Rome (09:00 UTC), when the helpline is open.
pub fn open_hours() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single().expect("valid instant")
}

pub async fn spawn_app_on(db: TestDb) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// [`spawn_app_on`] with the test settings changed by `edit` first.
pub async fn spawn_app_with(db: TestDb, edit: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        console::telemetry::init(LogFormat::Pretty);
    }
    let clock = Arc::new(ManualClock::new(open_hours()));
    let mut settings = test_settings(&db);
    edit(&mut settings);
    let app = Application::build_with_clock(settings, clock.clone()).await.expect("app builds");
    let addr = app.local_addr();
    let sip_addr = app.sip_addr();
    let first_admin = app.first_admin.clone();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        sip_addr,
        db,
        first_admin,
        client: reqwest::Client::new(),
        state,
        clock,
        stop: Some(tx),
        task: Some(task),
    }
}

/// The `helpline` binary with a clean environment (no inherited `HELPLINE_…` but the repository's
/// prompts and menus), run in `cwd`.
pub fn helpline(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_helpline"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HELPLINE_") {
            cmd.env_remove(k);
        }
    }
    // The repository's menus and prompts, wherever the test runs.
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("HELPLINE_PROMPTS_DIR", repo_path("prompts"))
        .env("HELPLINE_FLOW_FILE", repo_path("config/ivr.toml"));
    cmd
}

/// Runs the binary with `stdin` fed in, returning (exit code, stdout, stderr).
pub fn run_helpline(cmd: &mut Command, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn helpline");
    // The program may exit before reading its input (a usage error): a broken pipe is fine.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait helpline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `helpline serve` child process, killed on drop.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: String,
    /// Log lines not yet read (kept so the reader thread never blocks).
    _stderr_lines: mpsc::Receiver<String>,
    /// JSON log lines read while waiting for another, for [`ServeProcess::wait_for_log`].
    logged: Vec<serde_json::Value>,
}

impl ServeProcess {
    /// Starts `helpline serve` on port 0 with JSON logs and waits for its "listening" line.
    pub fn start(cwd: &Path, database_url: &str) -> ServeProcess {
        ServeProcess::start_command(helpline(cwd), database_url)
    }

    /// Like [`ServeProcess::start`], from a `helpline` command made by the caller (e.g. one
    /// without the repository's prompts and menus).
    pub fn start_command(mut cmd: Command, database_url: &str) -> ServeProcess {
        if database_url.starts_with("postgres") {
            cmd.env("HELPLINE_SECRET", TEST_SERVER_SECRET);
        }
        // Port 0 on loopback unless the caller chose the addresses.
        for var in ["HELPLINE_HTTP_ADDR", "HELPLINE_SIP_ADDR", "HELPLINE_WEBRTC_ADDR"] {
            if !cmd.get_envs().any(|(k, _)| k == var) {
                cmd.env(var, "127.0.0.1:0");
            }
        }
        let mut child = cmd
            .arg("serve")
            .env("HELPLINE_DATABASE_URL", database_url)
            .env("HELPLINE_LOG_FORMAT", "json")
            .env("HELPLINE_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helpline serve");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut logged = Vec::new();
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("server logs its address");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["fields"]["message"] == "HTTP server listening" {
                break v["fields"]["addr"].as_str().expect("addr").parse().expect("socket addr");
            }
            logged.push(v);
        };
        ServeProcess { child, addr, stdout: String::new(), _stderr_lines: rx, logged }
    }

    /// Waits (at most `timeout`) for the next JSON log line whose message is `message` and
    /// returns it; lines before it are skipped.
    pub fn wait_for_log(&mut self, message: &str, timeout: Duration) -> serde_json::Value {
        if let Some(i) = self.logged.iter().position(|v| v["fields"]["message"] == message) {
            let v = self.logged.remove(i);
            self.logged.drain(..i);
            return v;
        }
        self.logged.clear();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                ._stderr_lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no log line {message:?} within {timeout:?}: {e}"));
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["fields"]["message"] == message {
                return v;
            }
        }
    }

    /// The log lines written since the last read (for a failing test's message).
    pub fn read_logs(&mut self) -> Vec<String> {
        let mut lines: Vec<String> = self.logged.drain(..).map(|v| v.to_string()).collect();
        lines.extend(self._stderr_lines.try_iter());
        lines
    }

    /// Whether a JSON log line with this message was read while waiting for another (start-up
    /// lines before "HTTP server listening" are kept).
    pub fn has_logged(&self, message: &str) -> bool {
        self.logged.iter().any(|v| v["fields"]["message"] == message)
    }

    /// The UDP address the SIP user agent listens on (from its log line).
    pub fn sip_addr(&mut self) -> SocketAddr {
        let v = self.wait_for_log("SIP server listening (UDP)", Duration::from_secs(30));
        v["fields"]["addr"].as_str().expect("addr").parse().expect("socket addr")
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("kill").success();
        assert!(ok, "kill -{name} {pid}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and collects stdout.
    pub fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait serve");
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut out);
        }
        self.stdout = out.clone();
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a settings file into `dir` and returns its path.
pub fn write_config(dir: &Path, contents: &str) -> PathBuf {
    let path = dir.join("helpline.toml");
    std::fs::write(&path, contents).expect("write config");
    path
}
