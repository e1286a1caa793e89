//! `helpline supervisors bench`: fills the configured database with generated calls (a year of
//! them, multi-row inserts in large transactions) and times the call log's queries (p50/p99 of
//! each filtered page), the streamed CSV export and a year of KPIs. BENCHMARKS.md, "Supervisors".
//!
//! Generated values are the generator's own (digits and fixed words), so they are written as SQL
//! literals: binding a million rows' parameters one by one would measure sqlx, not the database.

use super::filter::{LogFilter, OperatorRef};
use super::kpi::{self, Grouping};
use super::log::{self, Scope};
use super::{export, settle, store};
use crate::db::Db;
use futures_util::StreamExt;
use ivr::domain::{Language, ServiceArea};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How many calls to generate (spread over the year before now).
    #[arg(long, default_value_t = 1_000_000)]
    pub calls: u64,
    /// Use the calls already in the database (from an earlier run) instead of generating.
    #[arg(long)]
    pub reuse: bool,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const OPERATORS: i64 = 20;
const TOWNS: [&str; 8] = ["Roma", "Milano", "Napoli", "Torino", "Como", "Bari", "Palermo", "Aosta"];

/// Generates `n` calls over the year ending at `now_ms`, with queue entries for queued ones.
pub async fn generate(db: &Db, n: u64, seed: u64, now_ms: i64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Operators to own answered calls.
    for i in 1..=OPERATORS {
        sqlx::query(
            "INSERT INTO users (name, role, languages, areas, password_hash, created_at) VALUES ($1, 'operator', 'it', '', '!', $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(format!("bench-op-{i:02}"))
        .bind(now_ms)
        .execute(db.pool())
        .await?;
    }
    let ids: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM users WHERE name LIKE 'bench-op-%' ORDER BY id").fetch_all(db.pool()).await?;
    let year_ms = 365 * 86_400_000i64;
    let span = year_ms / i64::try_from(n.max(1))?;
    let started = Instant::now();
    let mut done = 0u64;
    const ROWS: u64 = 500;
    const PER_TX: u64 = 100_000;
    while done < n {
        let mut tx = db.pool().begin().await?;
        let tx_end = (done + PER_TX).min(n);
        while done < tx_end {
            let end = (done + ROWS).min(tx_end);
            let mut calls = Vec::with_capacity(ROWS as usize);
            let mut queue = Vec::new();
            for i in done..end {
                let start = now_ms - year_ms + i64::try_from(i)? * span + rng.gen_range(0..span.max(1));
                let lang = ["it", "it", "it", "en", "en", "fr", "fr", "es"][rng.gen_range(0..8)];
                let area = ServiceArea::ALL[rng.gen_range(0..ServiceArea::ALL.len())].as_str();
                let town = TOWNS[rng.gen_range(0..TOWNS.len())];
                let channel = ["sip", "webhook", "twiml"][rng.gen_range(0..3)];
                let menu = rng.gen_range(10_000..120_000i64);
                let roll = rng.gen_range(0..100);
                let (outcome, queued, answered, abandoned) = match roll {
                    0..=29 => ("self_service", false, false, false),
                    30..=69 => ("answered", true, true, false),
                    70..=79 => ("hung_up_in_queue", true, false, true),
                    80..=87 => ("hung_up_in_menu", false, false, false),
                    88..=94 => ("callback", false, false, false),
                    _ => ("out_of_hours", false, false, false),
                };
                let wait = rng.gen_range(0..180_000i64);
                let talk = rng.gen_range(30_000..900_000i64);
                let q_at = start + menu;
                let (ended, answered_at, op, disp) = if answered {
                    let op = ids[rng.gen_range(0..ids.len())].0;
                    let disp = ["informato", "inviato_servizio", "richiamare", "fuori_ambito"][rng.gen_range(0..4)];
                    (q_at + wait + talk, format!("{}", q_at + wait), op.to_string(), format!("'{disp}'"))
                } else if abandoned {
                    (q_at + wait, "NULL".into(), "NULL".into(), "NULL".into())
                } else {
                    (start + menu, "NULL".into(), "NULL".into(), "NULL".into())
                };
                calls.push(format!(
                    "('b{i:09}', '{channel}', {start}, {ended}, '{hash:064x}', '+39 3** *** **{tail:02}', '{lang}', {guessed}, \
                     '{area}', '{cap:05}', '{town}', '{outcome}', '{{}}', {ended}, {op}, {answered_at}, {disp})",
                    hash = rng.gen::<u128>(),
                    tail = rng.gen_range(0..100),
                    guessed = rng.gen_range(0..2),
                    cap = rng.gen_range(10_000..99_999),
                ));
                if queued {
                    let (status, upd) = if answered { ("answered", q_at + wait) } else { ("abandoned", q_at + wait) };
                    queue.push(format!("('b{i:09}', '{lang}', '{area}', 1, {q_at}, '{status}', {upd})"));
                }
            }
            sqlx::query(&format!(
                "INSERT INTO calls (call_id, channel, started_at, ended_at, caller_hash, caller_masked, language, language_guessed, \
                 area, cap, town, outcome, state, updated_at, operator_id, answered_at, disposition) VALUES {}",
                calls.join(", ")
            ))
            .execute(&mut *tx)
            .await?;
            if !queue.is_empty() {
                sqlx::query(&format!(
                    "INSERT INTO queue_entries (call_id, language, area, priority, entered_at, status, updated_at) VALUES {}",
                    queue.join(", ")
                ))
                .execute(&mut *tx)
                .await?;
            }
            done = end;
        }
        tx.commit().await?;
        eprintln!("  {done} calls ({:.0} calls/s)", done as f64 / started.elapsed().as_secs_f64());
    }
    // Fresh planner statistics, as a database that has grown over a year would have.
    sqlx::query("ANALYZE").execute(db.pool()).await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: BenchArgs, db: Db, now_ms: i64) -> anyhow::Result<ExitCode> {
    let (have,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(db.pool()).await?;
    if !args.reuse || have == 0 {
        eprintln!("generating {} calls into {} ({} already there)…", args.calls, db.backend().name(), have);
        let t = Instant::now();
        generate(&db, args.calls, args.seed, now_ms).await?;
        let secs = t.elapsed().as_secs_f64();
        println!("generated {} calls in {secs:.1} s ({:.0} calls/s)", args.calls, args.calls as f64 / secs);
    }
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(db.pool()).await?;
    println!("backend {}: {total} calls", db.backend().name());
    let month_ago = now_ms - 30 * 86_400_000;
    let (op,): (i64,) =
        sqlx::query_as("SELECT MIN(id) FROM users WHERE name LIKE 'bench-op-%'").fetch_one(db.pool()).await?;
    let base = LogFilter { limit: 50, ..LogFilter::default() };
    let cases: Vec<(&str, LogFilter, Scope, usize)> = vec![
        ("newest page, no filter", base.clone(), Scope::All, 1),
        ("language=fr", LogFilter { language: Some(Language::Fr), ..base.clone() }, Scope::All, 1),
        (
            "last 30 days, language=es, area=casa",
            LogFilter {
                from: Some(month_ago),
                language: Some(Language::Es),
                area: Some(ServiceArea::Casa),
                ..base.clone()
            },
            Scope::All,
            1,
        ),
        (
            "outcome=hung_up_in_queue, page 20",
            LogFilter { outcome: Some("hung_up_in_queue"), ..base.clone() },
            Scope::All,
            20,
        ),
        (
            "town=Aosta, channel=twiml",
            LogFilter { town: Some("Aosta".into()), channel: Some("twiml"), ..base.clone() },
            Scope::All,
            1,
        ),
        ("an operator's own calls", base.clone(), Scope::Operator(op), 1),
        (
            "operator filter + disposition",
            LogFilter { operator: Some(OperatorRef::Id(op)), disposition: Some("richiamare".into()), ..base.clone() },
            Scope::All,
            1,
        ),
    ];
    println!("{:<45} {:>10} {:>10} {:>10}", "log page (50 rows)", "p50", "p99", "max");
    for (name, filter, scope, pages) in cases {
        let mut times = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let mut f = filter.clone();
            let mut last = Duration::ZERO;
            for _ in 0..pages {
                let t = Instant::now();
                let page = log::page(&db, &f, scope, now_ms).await?;
                last = t.elapsed();
                match page.next.as_deref().map(super::filter::Cursor::decode) {
                    Some(Ok(c)) => f.after = Some(c),
                    _ => break,
                }
            }
            times.push(last);
        }
        times.sort();
        println!(
            "{name:<45} {:>10} {:>10} {:>10}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0))
        );
    }
    // The export: a month of calls, every column, streamed.
    let t = Instant::now();
    let mut body =
        export::calls_csv(db.clone(), LogFilter { from: Some(month_ago), ..base.clone() }, Scope::All, now_ms)
            .into_data_stream();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "CSV export, last 30 days: {} rows, {:.1} MB in {secs:.2} s ({:.0} rows/s)",
        lines.saturating_sub(1),
        bytes as f64 / 1e6,
        lines as f64 / secs
    );
    // The year's KPIs with the calls live (as generated), then settled into the roll-up (what
    // `serve` does in the background), then read again.
    year_kpis(&db, now_ms).await?;
    let t = Instant::now();
    let settled = settle::settle(&db, now_ms).await?;
    println!("settled {} calls ({} roll-up rows) in {}", settled.calls, settled.kpi_rows, ms(t.elapsed()));
    year_kpis(&db, now_ms).await?;
    Ok(ExitCode::SUCCESS)
}

/// Times the KPIs of the year before `now_ms`, grouped by day.
async fn year_kpis(db: &Db, now_ms: i64) -> anyhow::Result<()> {
    let (live,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM calls WHERE kpi_settled = 0").fetch_one(db.pool()).await?;
    let t = Instant::now();
    let buckets = store::buckets(db, now_ms - 365 * 86_400_000, now_ms + 1, Grouping::Day).await?;
    let (rows, total) = kpi::group(&buckets, Grouping::Day);
    println!(
        "KPIs of the year by day ({live} calls not settled): {} days, {} calls, in {} ({} hourly buckets)",
        rows.len(),
        total.counts.calls,
        ms(t.elapsed()),
        buckets.len()
    );
    Ok(())
}
