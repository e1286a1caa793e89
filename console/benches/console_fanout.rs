//! `console-fanout`: the console's fan-out benchmark. The time from a call event to its arrival on 1,000
//! connected operator sockets, and the server's memory with those sockets open.
//!
//! The server runs in this process (`Application::build_with_clock`, port 0, a fresh SQLite file,
//! a 2-worker tokio runtime); 1,000 operators with a session each are written to its database.
//! The clients run in a child process (this same binary re-run with `--client`), so this
//! process's RSS (`/proc/self/status` VmRSS) is the server's alone: read before the sockets open
//! and again once all 1,000 said hello and got their welcome.
//!
//! The client opens the 1,000 sockets (tokio-tungstenite, real HTTP upgrade with the session
//! cookie), then for each event places a call through the JSON webhook (`call.started`, then `0`
//! → the operator queue) and times, from just before the request that enqueues the call, the
//! arrival of the `queue` message listing that call on every socket; then it ends the call (the
//! queue empties; also waited for on every socket, not timed) and goes on with the next.
//! Operators stay offline, so no offers: every socket gets exactly the same messages.
//!
//! ```text
//! cargo bench -p console --bench console-fanout -- [--sockets 1000] [--events 50]
//! ```

use chrono::{DateTime, TimeZone, Utc};
use console::clock::Clock;
use console::config::{LogFormat, SecretString, Settings};
use console::db::users::{self, NewUser, Password, Role, UserName};
use console::startup::Application;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "console-fanout-webhook-secret-0123456789";

/// Real time shifted to a Tuesday at 10:00 in Rome, so `0` reaches the queue whenever this runs.
struct OpenHoursClock {
    base: DateTime<Utc>,
    started: Instant,
}

impl Clock for OpenHoursClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client(&args[1..]);
    }
    let mut sockets = 1000usize;
    let mut events = 50usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sockets" => sockets = it.next().ok_or_else(|| anyhow::anyhow!("--sockets N"))?.parse()?,
            "--events" => events = it.next().ok_or_else(|| anyhow::anyhow!("--events N"))?.parse()?,
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tmp = tempfile::tempdir()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let clock = Arc::new(OpenHoursClock {
        base: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single().expect("instant"),
        started: Instant::now(),
    });
    let settings = Settings {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        sip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: format!("sqlite://{}/helpline.db", tmp.path().display()),
        data_dir: tmp.path().join("data"),
        log_format: LogFormat::Json,
        flow_file: repo.join("config/ivr.toml"),
        prompts_dir: repo.join("prompts"),
        console_file: repo.join("config/console.toml"),
        webhook_secret: SecretString::new(SECRET),
        ..Settings::default()
    };
    let (addr, stop, task, tokens) = rt.block_on(async {
        let app = Application::build_with_clock(settings, clock.clone()).await?;
        let db = app.state().db.clone();
        let first = users::add_user(
            &db,
            &NewUser {
                name: UserName::parse("op0").map_err(anyhow::Error::msg)?,
                role: Role::Operator,
                languages: vec![ivr::domain::Language::It],
                areas: vec![],
                password: Password::parse("fan-out benchmark password").map_err(anyhow::Error::msg)?,
                sip_target: Some("sip:op@pbx.example.org".into()),
                organization_id: None,
            },
        chrono::Utc::now().timestamp_millis(),
        &console::db::audit::Actor::system("bench"),
        )
        .await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut tokens = vec![console::db::sessions::create_session(&db, first.id, now).await?.token];
        for i in 1..sockets {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO users (name, role, languages, areas, password_hash, sip_target, created_at) \
                 SELECT $1, role, languages, areas, password_hash, sip_target, created_at FROM users WHERE id = $2 RETURNING id",
            )
            .bind(format!("op{i}"))
            .bind(first.id)
            .fetch_one(db.pool())
            .await?;
            tokens.push(console::db::sessions::create_session(&db, id, now).await?.token);
        }
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        anyhow::Ok((addr, tx, task, tokens))
    })?;
    let tokens_file = tmp.path().join("tokens");
    std::fs::write(&tokens_file, tokens.join("\n"))?;
    let rss_before = rss_kib();

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--client",
            &addr.to_string(),
            &tokens_file.display().to_string(),
            &events.to_string(),
            // The server's clock runs ahead or behind: the client signs with the server's time.
            &(clock.now().timestamp() - Utc::now().timestamp()).to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for line in stdout.lines() {
        let line = line?;
        if line == "READY" {
            let rss_open = rss_kib();
            println!(
                "server RSS: {:.1} MiB before, {:.1} MiB with {sockets} sockets open ({:.1} KiB per socket)",
                rss_before as f64 / 1024.0,
                rss_open as f64 / 1024.0,
                (rss_open.saturating_sub(rss_before)) as f64 / sockets as f64
            );
            writeln!(stdin, "GO")?;
            stdin.flush()?;
        } else {
            println!("{line}");
        }
    }
    child.wait()?;
    let _ = stop.send(());
    rt.block_on(async {
        let _ = task.await;
    });
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The client side, in its own process.
fn client(args: &[String]) -> anyhow::Result<()> {
    let addr: SocketAddr = args.first().ok_or_else(|| anyhow::anyhow!("addr"))?.parse()?;
    let tokens: Vec<String> = std::fs::read_to_string(args.get(1).ok_or_else(|| anyhow::anyhow!("tokens"))?)?
        .lines()
        .map(str::to_owned)
        .collect();
    let events: usize = args.get(2).map(|e| e.parse()).transpose()?.unwrap_or(50);
    let clock_offset: i64 = args.get(3).map(|e| e.parse()).transpose()?.unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let n = tokens.len();
        // What every socket waits for now, and when the event was sent.
        let target: Arc<Mutex<(String, Instant)>> = Arc::new(Mutex::new((String::new(), Instant::now())));
        let arrived = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(AtomicUsize::new(0));
        let all_ready = Arc::new(tokio::sync::Notify::new());
        for token in tokens {
            let mut req = format!("ws://{addr}/ws").into_client_request()?;
            req.headers_mut().insert("cookie", format!("helpline_session={token}").parse()?);
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
            ws.send(Message::Text("{\"type\":\"hello\",\"last_seq\":0}".into())).await?;
            let (target, arrived, done, latencies, ready, all_ready) =
                (target.clone(), arrived.clone(), done.clone(), latencies.clone(), ready.clone(), all_ready.clone());
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    let now = Instant::now();
                    if t.starts_with("{\"type\":\"welcome\"") || t.contains("\"type\":\"welcome\"") {
                        if ready.fetch_add(1, Ordering::SeqCst) + 1 == n {
                            all_ready.notify_one();
                        }
                        continue;
                    }
                    if !t.contains("\"type\":\"queue\"") {
                        continue;
                    }
                    let (want, sent) = target.lock().map(|g| g.clone()).unwrap_or_else(|_| (String::new(), now));
                    let hit = if want.is_empty() { t.contains("\"calls\":[]") } else { t.contains(&want) };
                    if hit {
                        if !want.is_empty() {
                            latencies.lock().map(|mut l| l.push(now - sent)).ok();
                        }
                        if arrived.fetch_add(1, Ordering::SeqCst) + 1 == n {
                            done.notify_one();
                        }
                    }
                }
            });
        }
        if ready.load(Ordering::SeqCst) < n {
            all_ready.notified().await;
        }
        println!("READY");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let http = reqwest::Client::new();
        let post = |body: serde_json::Value| {
            let http = http.clone();
            async move {
                let bytes = serde_json::to_vec(&body).expect("json");
                let ts = chrono::Utc::now().timestamp() + clock_offset;
                let r = http
                    .post(format!("http://{addr}/voice/events"))
                    .header("content-type", "application/json")
                    .header("x-helpline-timestamp", ts.to_string())
                    .header("x-helpline-signature", console::webhook::json::sign(SECRET, ts, &bytes))
                    .body(bytes)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "webhook answered {}", r.status());
                anyhow::Ok(())
            }
        };
        let mut slowest = Vec::new();
        for e in 0..events {
            let id = format!("fanout-{e}");
            post(serde_json::json!({"type": "call.started", "call_id": id, "seq": 1, "from": "+39 333 000 0000"}))
                .await?;
            arrived.store(0, Ordering::SeqCst);
            let sent = Instant::now();
            *target.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (format!("\"{id}\""), sent);
            let wait = done.notified();
            post(serde_json::json!({"type": "digits", "call_id": id, "seq": 2, "digits": "0"})).await?;
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .map_err(|_| anyhow::anyhow!("event {e}: not every socket got the queue"))?;
            slowest.push(sent.elapsed());
            // End the call; wait for the empty queue everywhere before the next event.
            arrived.store(0, Ordering::SeqCst);
            *target.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (String::new(), Instant::now());
            let wait = done.notified();
            post(serde_json::json!({"type": "call.ended", "call_id": id, "seq": 3})).await?;
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .map_err(|_| anyhow::anyhow!("event {e}: the empty queue did not reach every socket"))?;
        }
        let mut all = latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        all.sort();
        slowest.sort();
        println!("{n} sockets, {events} events, {} deliveries", all.len());
        println!(
            "per delivery (event → one socket): p50 {}, p99 {}, max {}",
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99)),
            ms(percentile(&all, 1.0))
        );
        println!(
            "per event (event → the last of {n} sockets): p50 {}, p99 {}",
            ms(percentile(&slowest, 0.5)),
            ms(percentile(&slowest, 0.99))
        );
        anyhow::Ok(())
    })
}
