//! `voice-load`: an open-loop load generator for `POST /voice/events`.
//!
//! It starts the real server in this process (`Application::build_with_clock`, port 0, a fresh
//! SQLite file in a temp dir or a fresh database on the PostgreSQL named by `--pg-url`) and, as a
//! baseline measured in the same run, a trivial axum handler (`POST` → small JSON, no database,
//! no signature check) on another loopback port. Then, for each backend, it drives whole calls
//! (`call.started`, digits `1` language, `3` area, `22100` CAP, `2` service → queue,
//! `call.ended`), signed as a carrier signs them, at fixed offered rates (open loop: each event is
//! sent at its scheduled instant whatever the answers so far; a call's next event goes out in the
//! first free slot after its previous answer, new calls fill the other slots), and at saturation
//! (closed loop, `--conns` connections sending back to back).
//!
//! Latency is measured per request from the moment its first byte is written to the moment the
//! whole answer is read, over kept-alive connections (a tiny HTTP/1.1 client of its own, so the
//! generator takes as little CPU as possible from the server on a small machine). Any non-200,
//! any answer not carrying what the flow must answer (the `enqueue` after `2`, `"ended":true` after
//! `call.ended`), or any request left unanswered after 10 s is an error. In the open loop, an event
//! falling due while `--max-in-flight` requests are unanswered is not sent (counted apart: the
//! server is that far behind, and the generator would otherwise run out of sockets).
//!
//! ```text
//! cargo bench -p console --bench voice-load -- [--rates 500,1000,2000,4000] [--secs 10]
//!     [--backends trivial,sqlite,postgres] [--pg-url postgres://…] [--conns 32] [--sat-secs 10]
//!     [--max-in-flight 512]
//! ```
//! `scripts/bench-voice` starts a throwaway PostgreSQL and runs this with `--pg-url`.
//!
//! Threads: the servers run on a 2-worker tokio runtime, the generator on its own single thread.
//!
//! **On two machines** (so that the generator does not take the server's cores): on the server's,
//! `--serve ADDR --backends sqlite` (or `postgres` with `--pg-url`) runs that server on `ADDR` and
//! the trivial handler on the next port, until Ctrl-C; on the other, `--remote ADDR` drives both
//! (rows `trivial` and `remote`; the CPU columns are then the generator's alone). Both processes
//! run the same shifted clock (open hours, below), so the signatures' timestamps agree.

use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use console::clock::Clock;
use console::config::{LogFormat, SecretString, Settings};
use console::startup::Application;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The allocator `helpline` runs with (`src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "voice-load-webhook-secret-0123456789abcdef";
/// The server key (`HELPLINE_SECRET`) of the PostgreSQL server, which must have one from outside
/// the database.
const SERVER_SECRET: &str = "voice-load-server-secret-0123456789abcdef";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's clock: real time, shifted into a Tuesday between 10:00 and 14:00 in Rome (open
/// hours, so `2` reaches the operator queue whatever the day the benchmark runs): Tuesday 10:00
/// plus the real time modulo 4 hours. It depends on nothing but the real time, so a generator and a
/// server in two processes (`--serve`, `--remote`) read the same instant. (It steps back 4 hours
/// once every 4 hours; a run across that instant sees its calls' clock jump.)
struct OpenHoursClock;

impl Clock for OpenHoursClock {
    fn now(&self) -> DateTime<Utc> {
        const WINDOW_MS: i64 = 4 * 3600 * 1000;
        let base = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single().expect("valid instant");
        base + chrono::Duration::milliseconds(Utc::now().timestamp_millis().rem_euclid(WINDOW_MS))
    }
}

#[derive(Debug, Clone)]
struct Options {
    rates: Vec<u64>,
    secs: u64,
    sat_secs: u64,
    conns: usize,
    backends: Vec<String>,
    pg_url: Option<String>,
    max_in_flight: u64,
    /// Serve a backend on this address (and the trivial handler on the next port) until Ctrl-C.
    serve: Option<SocketAddr>,
    /// Drive a `--serve` process at this address instead of servers of this process.
    remote: Option<SocketAddr>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        rates: vec![500, 1000, 2000, 4000],
        secs: 10,
        sat_secs: 10,
        conns: 32,
        backends: vec!["trivial".into(), "sqlite".into(), "postgres".into()],
        pg_url: std::env::var("VOICE_LOAD_PG_URL").ok().filter(|s| !s.is_empty()),
        max_in_flight: 512,
        serve: None,
        remote: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "--rates" => o.rates = value()?.split(',').map(|r| r.trim().parse()).collect::<Result<_, _>>()?,
            "--secs" => o.secs = value()?.parse()?,
            "--sat-secs" => o.sat_secs = value()?.parse()?,
            "--conns" => o.conns = value()?.parse()?,
            "--backends" => o.backends = value()?.split(',').map(|s| s.trim().to_owned()).collect(),
            "--pg-url" => o.pg_url = Some(value()?),
            "--max-in-flight" => o.max_in_flight = value()?.parse()?,
            "--serve" => o.serve = Some(value()?.parse()?),
            "--remote" => o.remote = Some(value()?.parse()?),
            other => anyhow::bail!("unknown argument {other:?} (see the comment at the top of voice_load.rs)"),
        }
    }
    if o.remote.is_none() && o.backends.iter().any(|b| b == "postgres") && o.pg_url.is_none() {
        eprintln!("voice-load: no --pg-url (or VOICE_LOAD_PG_URL): skipping PostgreSQL");
        o.backends.retain(|b| b != "postgres");
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let opts = parse_args()?;
    // Logs as `helpline serve` has them (default filter `info`): the happy path logs nothing.
    console::telemetry::init(LogFormat::Json);
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let gen_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let clock = Arc::new(OpenHoursClock);
    let tmp = tempfile::tempdir()?;
    let servers =
        Servers { rt: &server_rt, clock: clock.clone(), tmp: tmp.path().to_owned(), pg_url: opts.pg_url.clone() };
    if let Some(addr) = opts.serve {
        return serve(&servers, &opts, addr);
    }

    println!(
        "voice-load: {} CPUs, rates {:?} events/s × {} s, saturation {} connections × {} s{}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        opts.rates,
        opts.secs,
        opts.conns,
        opts.sat_secs,
        match opts.remote {
            Some(addr) => format!(", against {addr} (CPU columns: this generator only)"),
            None => String::new(),
        }
    );
    println!();
    println!(
        "| backend | offered ev/s | achieved ev/s | p50 ms | p99 ms | max ms | errors | not sent | late sends | CPU µs/event | CPU cores |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");

    let backends = match opts.remote {
        Some(_) => vec!["trivial".to_owned(), "remote".to_owned()],
        None => opts.backends.clone(),
    };
    let mut console_waits: Vec<(String, ConsoleWaits)> = Vec::new();
    for backend in &backends {
        let (addr, stop) = match opts.remote {
            Some(addr) if backend == "remote" => (addr, None),
            Some(addr) => (next_port(addr)?, None),
            None => {
                let (addr, stop) = servers.start(backend, SocketAddr::from(([127, 0, 0, 1], 0)))?;
                (addr, Some(stop))
            }
        };
        let target =
            Target { addr, clock: clock.clone(), check: backend != "trivial", max_in_flight: opts.max_in_flight };
        let run_id = AtomicU64::new(0);
        // Call ids unique to this process too (several generators may drive one `--serve`).
        let pid = std::process::id();
        let next_prefix = || format!("{}{}p{pid}", &backend[..1], run_id.fetch_add(1, Ordering::Relaxed));
        // Warm-up (not reported): connections, the pool, the database's first pages.
        gen_rt.block_on(open_loop(&target, 500, 2, &next_prefix()));
        for &rate in &opts.rates {
            let r = gen_rt.block_on(open_loop(&target, rate, opts.secs, &next_prefix()));
            println!("{}", r.row(backend, &rate.to_string()));
        }
        let db = stop.as_ref().and_then(|s| s.db.clone());
        let probe = db.map(|db| server_rt.spawn(probe_console_writes(db, Duration::from_secs(opts.sat_secs))));
        let r = gen_rt.block_on(closed_loop(&target, opts.conns, opts.sat_secs, &next_prefix()));
        println!("{}", r.row(backend, &format!("saturation ({} conns)", opts.conns)));
        if let Some(probe) = probe {
            console_waits.push((backend.clone(), server_rt.block_on(probe)??));
        }
        if let Some(stop) = stop {
            server_rt.block_on(stop.stop())?;
        }
    }
    drop(server_rt);
    if !console_waits.is_empty() {
        println!();
        println!("Console writes during saturation (ms to hold the write lock; one every {PROBE_EVERY:?}):");
        println!();
        println!("| backend | with a lock turn: p50 | p99 | max | without: p50 | p99 | max | probes |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for (backend, w) in &console_waits {
            println!("{}", w.row(backend));
        }
    }
    Ok(())
}

/// What starting a server of this process needs.
struct Servers<'r> {
    rt: &'r tokio::runtime::Runtime,
    clock: Arc<OpenHoursClock>,
    tmp: PathBuf,
    pg_url: Option<String>,
}

impl Servers<'_> {
    /// Starts `backend` (`trivial`, `sqlite` or `postgres`, on a fresh database) on `addr`.
    fn start(&self, backend: &str, addr: SocketAddr) -> anyhow::Result<(SocketAddr, Stop)> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let url = match backend {
            "trivial" => return self.rt.block_on(start_trivial(addr)),
            "sqlite" => format!("sqlite://{}/helpline.db", self.tmp.display()),
            "postgres" => self.rt.block_on(fresh_pg_database(self.pg_url.as_deref().unwrap_or_default()))?,
            other => anyhow::bail!("unknown backend {other:?}: trivial, sqlite or postgres"),
        };
        let settings = Settings {
            http_addr: addr,
            sip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: url,
            data_dir: self.tmp.join(format!("data-{backend}")),
            // PostgreSQL needs a server key from outside the database; SQLite stores its own.
            secret: if backend == "postgres" { SecretString::new(SERVER_SECRET) } else { SecretString::default() },
            log_format: LogFormat::Json,
            flow_file: repo.join("config/ivr.toml"),
            prompts_dir: repo.join("prompts"),
            public_url: String::new(),
            twilio_auth_token: SecretString::default(),
            webhook_secret: SecretString::new(SECRET),
            ..Settings::default()
        };
        let clock = self.clock.clone();
        self.rt.block_on(async move {
            let app = Application::build_with_clock(settings, clock).await?;
            let addr = app.local_addr();
            let db = app.state().db.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            anyhow::Ok((addr, Stop { tx, task, db: Some(db) }))
        })
    }
}

/// `--serve`: the first database backend on `addr` and the trivial handler on the next port, until
/// Ctrl-C.
fn serve(servers: &Servers<'_>, opts: &Options, addr: SocketAddr) -> anyhow::Result<()> {
    let backend = opts
        .backends
        .iter()
        .find(|b| *b != "trivial")
        .ok_or_else(|| anyhow::anyhow!("--serve needs a database backend: --backends sqlite or postgres"))?;
    let (addr, server) = servers.start(backend, addr)?;
    let (trivial_addr, trivial) = servers.start("trivial", next_port(addr)?)?;
    println!("voice-load: {backend} on {addr}, the trivial handler on {trivial_addr}; Ctrl-C stops them");
    println!("voice-load: on the generator's machine: --remote {addr}");
    servers.rt.block_on(tokio::signal::ctrl_c())?;
    servers.rt.block_on(trivial.stop())?;
    servers.rt.block_on(server.stop())
}

/// The port after `addr`'s: where `--serve` puts the trivial handler.
fn next_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let port = addr.port().checked_add(1).filter(|p| addr.port() != 0 && *p != 0);
    let port =
        port.ok_or_else(|| anyhow::anyhow!("{addr}: give a port below 65535 (the trivial handler takes the next)"))?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// How often the console-write probe runs during saturation.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// What a console write waits for the write lock while the calls saturate the server: the
/// console's own begin (`hub::begin`, with a lock turn) alternated with the same transaction
/// begun without one (the baseline, as every pool writer was before the turns).
struct ConsoleWaits {
    with_turn: Vec<f64>,
    without: Vec<f64>,
}

impl ConsoleWaits {
    fn row(&self, backend: &str) -> String {
        let q = |v: &[f64], p: f64| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
        };
        format!(
            "| {backend} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            q(&self.with_turn, 0.5),
            q(&self.with_turn, 0.99),
            q(&self.with_turn, 1.0),
            q(&self.without, 0.5),
            q(&self.without, 0.99),
            q(&self.without, 1.0),
            self.with_turn.len() + self.without.len()
        )
    }
}

async fn probe_console_writes(db: console::db::Db, secs: Duration) -> anyhow::Result<ConsoleWaits> {
    let mut waits = ConsoleWaits { with_turn: Vec::new(), without: Vec::new() };
    let end = Instant::now() + secs;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut turn = true;
    while Instant::now() < end {
        tick.tick().await;
        let t0 = Instant::now();
        let tx = if turn {
            console::operators::hub::begin(&db).await?
        } else {
            let mut tx = db.pool().begin().await?;
            sqlx::query("UPDATE console_lock SET n = n + 1 WHERE id = 1").execute(&mut *tx).await?;
            tx
        };
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        tx.rollback().await?;
        if turn { &mut waits.with_turn } else { &mut waits.without }.push(ms);
        turn = !turn;
    }
    Ok(waits)
}

/// A server to stop after its runs.
struct Stop {
    tx: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The server's database (none for the trivial handler), for the console-write probe.
    db: Option<console::db::Db>,
}

impl Stop {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.tx.send(());
        self.task.await?
    }
}

/// The machine's limit: axum answering a small JSON, nothing else.
async fn start_trivial(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Stop)> {
    async fn answer() -> Json<serde_json::Value> {
        Json(serde_json::json!({ "call_id": "x", "seq": 1, "actions": [], "ended": false }))
    }
    let router = Router::new().route("/voice/events", post(answer));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await?;
        anyhow::Ok(())
    });
    Ok((addr, Stop { tx, task, db: None }))
}

/// A new, empty database on the PostgreSQL server of `admin_url`.
async fn fresh_pg_database(admin_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = format!("voice_load_{}_{}", std::process::id(), Utc::now().timestamp_millis());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    conn.close().await?;
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

// --- The calls ------------------------------------------------------------------------------------

/// The events of one call, in order: Italian caller, accepts Italian (1), area 3, CAP 22100 (Como),
/// service 2 → operator queue, hangs up.
const EVENTS: usize = 6;

fn event_body(call_id: &str, index: usize) -> String {
    let seq = index + 1;
    match index {
        0 => format!(
            r#"{{"type":"call.started","call_id":"{call_id}","seq":{seq},"from":"+39 333 123 4512","to":"803001"}}"#
        ),
        1..=4 => {
            let digits = ["1", "3", "22100", "2"][index - 1];
            format!(r#"{{"type":"digits","call_id":"{call_id}","seq":{seq},"digits":"{digits}"}}"#)
        }
        _ => format!(r#"{{"type":"call.ended","call_id":"{call_id}","seq":{seq}}}"#),
    }
}

/// What an answer must contain for the call to be on the expected path.
fn expected_in_answer(index: usize) -> Option<&'static str> {
    match index {
        4 => Some(r#""type":"enqueue""#),
        5 => Some(r#""ended":true"#),
        _ => None,
    }
}

/// A call in progress: its id and the index of its next event.
struct Cursor {
    id: String,
    next: usize,
}

struct Target {
    addr: SocketAddr,
    clock: Arc<OpenHoursClock>,
    /// Check the answers' content (not for the trivial handler).
    check: bool,
    /// Open loop: an event due while this many requests are unanswered is not sent (an error).
    max_in_flight: u64,
}

// --- A minimal HTTP/1.1 client over kept-alive connections ------------------------------------------

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends one request and reads the whole answer: (status, body).
    async fn post(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head);
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        self.buf.clear();
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let (header_end, status, content_length) = loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..pos]).map_err(|_| bad("non-UTF-8 head"))?;
                let status: u16 =
                    head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| bad("no content-length"))?;
                break (pos + 4, status, length);
            }
        };
        while self.buf.len() < header_end + content_length {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, self.buf[header_end..header_end + content_length].to_vec()))
    }
}

/// Sends event `index` of `call_id` on `conn`: the request's latency, or what went wrong.
async fn send_event(target: &Target, conn: &mut Conn, call_id: &str, index: usize) -> Result<Duration, String> {
    let body = event_body(call_id, index);
    let ts = target.clock.now().timestamp();
    let sig = console::webhook::json::sign(SECRET, ts, body.as_bytes());
    let head = format!(
        "POST /voice/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         X-Helpline-Timestamp: {ts}\r\nX-Helpline-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        target.addr,
        body.len()
    );
    let started = Instant::now();
    let (status, answer) = tokio::time::timeout(REQUEST_TIMEOUT, conn.post(head.as_bytes(), body.as_bytes()))
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("I/O: {e}"))?;
    let latency = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    if status != 200 {
        return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    if target.check {
        if let Some(needle) = expected_in_answer(index) {
            if !text.contains(needle) {
                return Err(format!(
                    "event {} answered without {needle}: {}",
                    index + 1,
                    text.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    Ok(latency)
}

// --- Results ----------------------------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    latencies: Vec<Duration>,
    errors: u64,
    /// Open loop: events not sent because `max_in_flight` requests were unanswered.
    not_sent: u64,
    error_samples: Vec<String>,
    last_done: Option<Instant>,
}

impl Shared {
    fn record(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.latencies.push(d),
            Err(e) => {
                self.errors += 1;
                if self.error_samples.len() < 3 {
                    self.error_samples.push(e);
                }
            }
        }
        self.last_done = Some(Instant::now());
    }
}

/// CPU time used so far by this whole process (server and generator), from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // The kernel reports in USER_HZ, 100 on Linux.
    Duration::from_millis(ticks * 10)
}

struct RunResult {
    shared: Shared,
    started: Instant,
    /// Process CPU time (all threads) used during the run.
    cpu: Duration,
    /// Sends that left more than 5 ms after their scheduled instant (the generator falling behind;
    /// tokio's timer ticks by the millisecond, so 1–2 ms of lateness is normal).
    late_sends: u64,
}

impl RunResult {
    fn row(mut self, backend: &str, offered: &str) -> String {
        let lat = &mut self.shared.latencies;
        lat.sort_unstable();
        let pct = |p: f64| -> String {
            if lat.is_empty() {
                return "–".into();
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            format!("{:.2}", lat[i].as_secs_f64() * 1e3)
        };
        let elapsed = self.shared.last_done.map(|t| t - self.started).unwrap_or_default().as_secs_f64();
        let achieved = if elapsed > 0.0 { lat.len() as f64 / elapsed } else { 0.0 };
        for e in &self.shared.error_samples {
            eprintln!("voice-load: {backend} at {offered}: error: {e}");
        }
        let answered = lat.len() as u64;
        let cpu_per_event =
            if answered > 0 { format!("{:.0}", self.cpu.as_secs_f64() * 1e6 / answered as f64) } else { "–".into() };
        let cpu_cores = if elapsed > 0.0 { self.cpu.as_secs_f64() / elapsed } else { 0.0 };
        format!(
            "| {backend} | {offered} | {achieved:.0} | {} | {} | {} | {} | {} | {} | {cpu_per_event} | {cpu_cores:.2} |",
            pct(0.50),
            pct(0.99),
            pct(1.0),
            self.shared.errors,
            self.shared.not_sent,
            self.late_sends
        )
    }
}

/// Connections kept alive between requests, and calls waiting for their next slot.
struct Pools {
    conns: Mutex<Vec<Conn>>,
    ready: Mutex<Vec<Cursor>>,
    in_flight: AtomicU64,
    shared: Mutex<Shared>,
}

/// Open loop: `rate` events per second for `secs` seconds, each sent at its scheduled instant.
async fn open_loop(target: &Target, rate: u64, secs: u64, prefix: &str) -> RunResult {
    let target = Arc::new(Target {
        addr: target.addr,
        clock: target.clock.clone(),
        check: target.check,
        max_in_flight: target.max_in_flight,
    });
    let pools = Arc::new(Pools {
        conns: Mutex::new(Vec::new()),
        ready: Mutex::new(Vec::new()),
        in_flight: AtomicU64::new(0),
        shared: Mutex::new(Shared::default()),
    });
    // Open enough connections up front that none is opened during the measurement, normally.
    for _ in 0..64 {
        if let Ok(c) = Conn::open(target.addr).await {
            pools.conns.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        }
    }
    let cpu_before = process_cpu();
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut issued = 0u64;
    let mut calls = 0u64;
    let mut late_sends = 0u64;
    while issued < total {
        let now = Instant::now();
        while issued < total && started + interval.mul_f64(issued as f64) <= now {
            let scheduled = started + interval.mul_f64(issued as f64);
            if now.duration_since(scheduled) > Duration::from_millis(5) {
                late_sends += 1;
            }
            let cursor = pools.ready.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| {
                calls += 1;
                Cursor { id: format!("vl-{prefix}-{calls}"), next: 0 }
            });
            issued += 1;
            if pools.in_flight.load(Ordering::Relaxed) >= target.max_in_flight {
                // The server is that far behind: a carrier would be timing out by now.
                pools.shared.lock().unwrap_or_else(|e| e.into_inner()).not_sent += 1;
                pools.ready.lock().unwrap_or_else(|e| e.into_inner()).push(cursor);
                continue;
            }
            pools.in_flight.fetch_add(1, Ordering::Relaxed);
            let (target, pools) = (target.clone(), pools.clone());
            tokio::spawn(async move {
                let conn = pools.conns.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match conn {
                    Some(c) => Ok(c),
                    None => Conn::open(target.addr).await.map_err(|e| format!("connect: {e}")),
                };
                let result = match conn {
                    Ok(mut conn) => {
                        let r = send_event(&target, &mut conn, &cursor.id, cursor.next).await;
                        if r.is_ok() {
                            pools.conns.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                        }
                        r
                    }
                    Err(e) => Err(e),
                };
                let ok = result.is_ok();
                pools.shared.lock().unwrap_or_else(|e| e.into_inner()).record(result);
                // The call goes on with its next event (a failed call is dropped).
                if ok && cursor.next + 1 < EVENTS {
                    let next = Cursor { id: cursor.id, next: cursor.next + 1 };
                    pools.ready.lock().unwrap_or_else(|e| e.into_inner()).push(next);
                }
                pools.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if issued < total {
            tokio::time::sleep_until((started + interval.mul_f64(issued as f64)).into()).await;
        }
    }
    // Let the requests in flight finish (each has its own timeout).
    while pools.in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Calls left half-way stay in the database as abandoned mid-menu: harmless for later runs.
    let shared = std::mem::take(&mut *pools.shared.lock().unwrap_or_else(|e| e.into_inner()));
    RunResult { shared, started, cpu: process_cpu() - cpu_before, late_sends }
}

/// Closed loop: `conns` connections each sending whole calls back to back for `secs` seconds.
async fn closed_loop(target: &Target, conns: usize, secs: u64, prefix: &str) -> RunResult {
    let target = Arc::new(Target {
        addr: target.addr,
        clock: target.clock.clone(),
        check: target.check,
        max_in_flight: target.max_in_flight,
    });
    let shared = Arc::new(Mutex::new(Shared::default()));
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..conns {
        let (target, shared, prefix) = (target.clone(), shared.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = match Conn::open(target.addr).await {
                Ok(c) => c,
                Err(e) => {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).record(Err(format!("connect: {e}")));
                    return;
                }
            };
            let mut n = 0u64;
            'calls: while Instant::now() < deadline {
                n += 1;
                let id = format!("vl-{prefix}-{worker}-{n}");
                for index in 0..EVENTS {
                    let r = send_event(&target, &mut conn, &id, index).await;
                    let failed = r.is_err();
                    shared.lock().unwrap_or_else(|e| e.into_inner()).record(r);
                    if failed {
                        match Conn::open(target.addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break 'calls,
                        }
                        continue 'calls;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let shared = std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()));
    RunResult { shared, started, cpu: process_cpu() - cpu_before, late_sends: 0 }
}
