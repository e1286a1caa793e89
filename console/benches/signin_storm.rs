//! `signin-storm`: the webhook's latency while someone guesses a password — 100 concurrent wrong
//! sign-ins for one name, again and again — against its latency idle, in the same run.
//!
//! It starts the real server in this process (`Application::build`, port 0, a fresh SQLite file in
//! a temp dir; the server on a 2-worker tokio runtime of its own, as in production on a small
//! machine), then drives `POST /voice/events` (a signed `call.started` per request, `--conns`
//! connections back to back) for `--secs` seconds idle, then for `--secs` seconds while an attacker
//! on a thread of its own sends rounds of `--storm` concurrent wrong sign-ins for `admin`, back to
//! back (a flood: the worst case). Latency is measured per request by the client (reqwest,
//! kept-alive connections).
//!
//! ```text
//! cargo bench -p console --bench signin-storm -- [--secs 10] [--conns 4] [--storm 100]
//! ```

use console::config::{LogFormat, SecretString, Settings};
use console::startup::Application;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECRET: &str = "signin-storm-webhook-secret-0123456789abcdef";

struct Options {
    secs: u64,
    conns: usize,
    storm: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options { secs: 10, conns: 4, storm: 100 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = value()?.parse()?,
            "--conns" => o.conns = value()?.parse()?,
            "--storm" => o.storm = value()?.parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// `--conns` connections posting signed `call.started` events back to back until `until`: each
/// request's latency in ms.
async fn webhook_load(addr: SocketAddr, conns: usize, until: Instant, tag: &'static str) -> anyhow::Result<Vec<f64>> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let body = serde_json::to_vec(&serde_json::json!({
                    "type": "call.started", "call_id": format!("{tag}-{c}-{n}"), "seq": 1, "from": "+39 333 123 4512"
                }))?;
                let ts = chrono::Utc::now().timestamp();
                let started = Instant::now();
                let r = client
                    .post(format!("http://{addr}/voice/events"))
                    .header("content-type", "application/json")
                    .header("x-helpline-timestamp", ts.to_string())
                    .header("x-helpline-signature", console::webhook::json::sign(SECRET, ts, &body))
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                r.bytes().await?;
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
                anyhow::ensure!(status == 200, "webhook answered {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// Rounds of `storm` concurrent wrong sign-ins for `admin` until `until`: (answered 401, 429).
async fn storm(addr: SocketAddr, storm: usize, until: Instant) -> anyhow::Result<(usize, usize)> {
    let client = reqwest::Client::new();
    let (mut verified, mut refused) = (0, 0);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let guesses = (0..storm).map(|i| {
            let body = serde_json::json!({"name": "admin", "password": format!("wrong guess {round}-{i}")});
            client.post(format!("http://{addr}/api/session")).json(&body).send()
        });
        for r in futures_util::future::join_all(guesses).await {
            match r?.status().as_u16() {
                401 => verified += 1,
                429 => refused += 1,
                other => anyhow::bail!("sign-in answered {other}"),
            }
        }
    }
    Ok((verified, refused))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let tmp = tempfile::tempdir()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let settings = Settings {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        sip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        rtp_port_min: 0,
        rtp_port_max: 0,
        database_url: format!("sqlite://{}/helpline.db", tmp.path().display()),
        data_dir: tmp.path().join("data"),
        secret: SecretString::default(),
        log_format: LogFormat::Json,
        flow_file: repo.join("config/ivr.toml"),
        prompts_dir: repo.join("prompts"),
        webhook_secret: SecretString::new(SECRET),
        ..Settings::default()
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (addr, stop, task) = server_rt.block_on(async {
        let app = Application::build(settings).await?;
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        anyhow::Ok((addr, tx, task))
    })?;
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let secs = Duration::from_secs(o.secs);
    let storm_size = o.storm;
    let (idle, during, (verified, refused)) = client_rt.block_on(async {
        // Warm-up: a second of load, not counted.
        webhook_load(addr, o.conns, Instant::now() + Duration::from_secs(1), "warm").await?;
        let idle = webhook_load(addr, o.conns, Instant::now() + secs, "idle").await?;
        let until = Instant::now() + secs;
        // The attacker on a thread of its own, so that its requests do not delay the carrier's
        // in the client.
        let attacker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(storm(addr, storm_size, until))
        });
        let during = webhook_load(addr, o.conns, until, "storm").await?;
        let storm = attacker.join().map_err(|_| anyhow::anyhow!("the storm thread panicked"))??;
        anyhow::Ok((idle, during, storm))
    })?;
    let _ = stop.send(());
    server_rt.block_on(task)??;
    println!("| phase | requests | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, v) in [("idle", &idle), ("during the storm", &during)] {
        println!("| {name} | {} | {:.2} | {:.2} |", v.len(), quantile(v, 0.5), quantile(v, 0.99));
    }
    println!(
        "p99 ratio (storm / idle): {:.2}; wrong sign-ins sent: {} (verified, 401: {verified}; refused, 429: {refused})",
        quantile(&during, 0.99) / quantile(&idle, 0.99),
        verified + refused
    );
    Ok(())
}
