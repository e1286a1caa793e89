//! KPI counts out of the database: aggregated per UTC hour × language × area in SQL (the same sums
//! as [`Counts::of_call`], so a year is a few thousand rows, not a million), plus the `kpi_hourly`
//! roll-up of settled calls (`settle.rs`) and purged periods (`retention.rs`).
//!
//! Every call is counted exactly once: in `kpi_hourly` once it is settled or purged, live from
//! `calls` while it is not (`kpi_settled = 0`). The writers of the roll-up serialise on one lock
//! ([`begin_rollup`]) and the readers read both halves in one snapshot ([`buckets`]).

use super::kpi::{rome_day, Bucket, Counts, Grouping, SERVICE_LEVEL_MS, SHORT_ABANDON_MS};
use super::log::ANSWER_AT_SQL;
use crate::db::{Backend, Db, DbError};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

/// The calls not in the roll-up that started in `[$1, $2)` (epoch ms).
const LIVE: &str = "c.kpi_settled = 0 AND c.started_at >= $1 AND c.started_at < $2";

/// The live counts' statement: per hour, language, area of the calls not in the roll-up that
/// started in `[$1, $2)`.
pub fn live_sql(backend: Backend) -> String {
    counts_sql(backend, LIVE)
}

/// `calls c`, read through the index of the calls not settled. SQLite is told so: its planner,
/// with statistics from a day when every call was unsettled (`ANALYZE`), took the partial index
/// for as big as the table and scanned a million calls instead of the few hundred unsettled ones.
/// PostgreSQL's statistics follow the table (autovacuum).
pub fn unsettled_calls(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "calls AS c INDEXED BY calls_kpi_unsettled",
        Backend::Postgres => "calls AS c",
    }
}

/// Counts per hour, language, area of the calls `filter` (a condition on `calls c` that implies
/// `c.kpi_settled = 0`) selects.
pub fn counts_sql(backend: Backend, filter: &str) -> String {
    let calls = unsettled_calls(backend);
    format!(
        "SELECT f.started_at / 3600000, COALESCE(f.language, ''), COALESCE(f.area, ''), \
         COUNT(*), \
         CAST(SUM(CASE WHEN f.outcome = 'self_service' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NOT NULL AND f.aa - f.qa <= {SERVICE_LEVEL_MS} THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NULL AND f.ab IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NULL AND f.ab IS NOT NULL AND f.ab - f.qa < {SHORT_ABANDON_MS} THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NOT NULL THEN f.aa - f.qa ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NULL AND f.ab IS NOT NULL THEN f.ab - f.qa ELSE 0 END) AS BIGINT), \
         CAST(COALESCE(MAX(CASE WHEN f.qa IS NOT NULL AND f.aa IS NOT NULL THEN f.aa - f.qa \
                               WHEN f.qa IS NOT NULL AND f.ab IS NOT NULL THEN f.ab - f.qa ELSE 0 END), 0) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL AND f.aa IS NOT NULL AND f.ended_at IS NOT NULL THEN f.ended_at - f.aa ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.outcome = 'callback' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.outcome = 'out_of_hours' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.outcome = 'hung_up_in_menu' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN f.qa IS NOT NULL THEN f.qa - f.started_at \
                       WHEN f.ended_at IS NOT NULL THEN f.ended_at - f.started_at ELSE 0 END) AS BIGINT), \
         CAST(0 AS BIGINT), CAST(0 AS BIGINT) \
         FROM (SELECT c.started_at, c.ended_at, c.language, c.area, c.outcome, q.entered_at AS qa, \
                      {ANSWER_AT_SQL} AS aa, CASE WHEN q.status = 'abandoned' THEN q.updated_at END AS ab \
               FROM {calls} LEFT JOIN queue_entries q ON q.call_id = c.call_id \
               WHERE {filter}) f \
         GROUP BY f.started_at / 3600000, COALESCE(f.language, ''), COALESCE(f.area, '')"
    )
}

const COUNT_COLUMNS: &str = "calls, self_service, queued, answered, answered_in_sl, abandoned, abandoned_short, \
    wait_answered_ms, wait_abandoned_ms, max_wait_ms, talk_ms, callback, out_of_hours, hung_up_in_menu, menu_ms, \
    callbacks_reached, callbacks_unreachable";

fn bucket(row: &AnyRow) -> Result<Bucket, sqlx::Error> {
    let n = |i: usize| row.try_get::<i64, _>(i);
    Ok(Bucket {
        hour_utc: n(0)?,
        language: row.try_get(1)?,
        area: row.try_get(2)?,
        counts: Counts {
            calls: n(3)?,
            self_service: n(4)?,
            queued: n(5)?,
            answered: n(6)?,
            answered_in_sl: n(7)?,
            abandoned: n(8)?,
            abandoned_short: n(9)?,
            wait_answered_ms: n(10)?,
            wait_abandoned_ms: n(11)?,
            max_wait_ms: n(12)?,
            talk_ms: n(13)?,
            callback: n(14)?,
            out_of_hours: n(15)?,
            hung_up_in_menu: n(16)?,
            menu_ms: n(17)?,
            callbacks_reached: n(18)?,
            callbacks_unreachable: n(19)?,
        },
    })
}

/// The live counts of the calls not yet in the roll-up that started in `[from, to)`.
pub async fn live_buckets<'e, E>(exec: E, backend: Backend, from: i64, to: i64) -> Result<Vec<Bucket>, DbError>
where
    E: Executor<'e, Database = Any>,
{
    let sql = live_sql(backend);
    let rows = sqlx::query(&sql).bind(from).bind(to).fetch_all(exec).await?;
    Ok(rows.iter().map(bucket).collect::<Result<_, _>>()?)
}

/// The counts of the calls `filter` selects, its parameters bound in order.
pub async fn counts_where(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    filter: &str,
    params: &[i64],
) -> Result<Vec<Bucket>, DbError> {
    let sql = counts_sql(backend, filter);
    let mut q = sqlx::query(&sql);
    for p in params {
        q = q.bind(*p);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(bucket).collect::<Result<_, _>>()?)
}

/// The rolled-up counts of the hours in `[from, to)` (hours that start in the range), summed in
/// SQL down to what `by` tells apart: a year by day is a row per day, not one per hour, language
/// and area (≈200,000 for a busy year). A summed row keeps an hour of its group (the first), which
/// is all [`super::kpi::group`] reads of it.
pub async fn rolled_up_buckets<'e, E>(exec: E, from: i64, to: i64, by: Grouping) -> Result<Vec<Bucket>, DbError>
where
    E: Executor<'e, Database = Any>,
{
    let (keys, group_by) = match by {
        Grouping::Day => ("MIN(hour_utc), '', ''", "day"),
        Grouping::Hour => ("hour_utc, '', ''", "hour_utc"),
        Grouping::Language => ("MIN(hour_utc), language, ''", "language"),
        Grouping::Area => ("MIN(hour_utc), '', area", "area"),
    };
    let sums = COUNT_COLUMNS
        .split(", ")
        .map(|c| if c == "max_wait_ms" { format!("MAX({c})") } else { format!("CAST(SUM({c}) AS BIGINT)") })
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT {keys}, {sums} FROM kpi_hourly WHERE hour_utc >= $1 AND hour_utc < $2 GROUP BY {group_by}");
    let rows = sqlx::query(&sql)
        .bind(from.div_euclid(3_600_000))
        .bind(to.div_euclid(3_600_000) + i64::from(to.rem_euclid(3_600_000) != 0))
        .fetch_all(exec)
        .await?;
    Ok(rows.iter().map(bucket).collect::<Result<_, _>>()?)
}

/// Adds buckets into `kpi_hourly` (rows for the same hour, language and area are summed).
pub async fn add_to_rollup(tx: &mut sqlx::Transaction<'_, Any>, buckets: &[Bucket]) -> Result<(), DbError> {
    let sum = COUNT_COLUMNS
        .split(", ")
        .map(|c| {
            if c == "max_wait_ms" {
                "max_wait_ms = CASE WHEN excluded.max_wait_ms > kpi_hourly.max_wait_ms \
                 THEN excluded.max_wait_ms ELSE kpi_hourly.max_wait_ms END"
                    .to_owned()
            } else {
                format!("{c} = kpi_hourly.{c} + excluded.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO kpi_hourly (hour_utc, day, language, area, {COUNT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT (hour_utc, language, area) DO UPDATE SET {sum}"
    );
    for b in buckets {
        let c = &b.counts;
        let mut q = sqlx::query(&sql).bind(b.hour_utc).bind(rome_day(b.hour_utc)).bind(&b.language).bind(&b.area);
        for v in [
            c.calls,
            c.self_service,
            c.queued,
            c.answered,
            c.answered_in_sl,
            c.abandoned,
            c.abandoned_short,
            c.wait_answered_ms,
            c.wait_abandoned_ms,
            c.max_wait_ms,
            c.talk_ms,
            c.callback,
            c.out_of_hours,
            c.hung_up_in_menu,
            c.menu_ms,
            c.callbacks_reached,
            c.callbacks_unreachable,
        ] {
            q = q.bind(v);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds one callback's outcome (reached, or closed as unreachable) to `kpi_hourly`, in the hour
/// `at` (epoch ms) it happened, for its language and area, in the caller's transaction (the one
/// that closes the callback, so it is counted once). Outcomes are never live counts: they go
/// straight into the roll-up, which settling and retention only ever add to.
pub async fn add_callback_outcome(
    tx: &mut sqlx::Transaction<'_, Any>,
    at: i64,
    language: &str,
    area: &str,
    reached: bool,
) -> Result<(), DbError> {
    let counts = Counts {
        callbacks_reached: i64::from(reached),
        callbacks_unreachable: i64::from(!reached),
        ..Counts::default()
    };
    let bucket =
        Bucket { hour_utc: at.div_euclid(3_600_000), language: language.to_owned(), area: area.to_owned(), counts };
    add_to_rollup(tx, &[bucket]).await
}

/// Every bucket of `[from, to)`: the roll-up of settled calls and purged hours, and the live
/// calls. A call is in one or the other (a settle or a purge rolls up and marks or deletes in one
/// transaction), never both; both are read in one snapshot, so a settle committing between the
/// two reads cannot count a call twice or not at all.
pub async fn buckets(db: &Db, from: i64, to: i64, by: Grouping) -> Result<Vec<Bucket>, DbError> {
    let mut tx = match db.backend() {
        // A deferred transaction reads one WAL snapshot from its first read on.
        Backend::Sqlite => db.pool().begin().await?,
        Backend::Postgres => db.pool().begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
    };
    let mut all = rolled_up_buckets(&mut *tx, from, to, by).await?;
    all.extend(live_buckets(&mut *tx, db.backend(), from, to).await?);
    tx.commit().await?;
    Ok(all)
}

/// A transaction that writes the roll-up (a settle or a purge chunk). They serialise: on SQLite
/// by taking the write lock at `BEGIN` (a transaction that reads first and writes later would fail
/// with `SQLITE_BUSY` if another writer committed in between), on PostgreSQL by a transaction-level
/// advisory lock, so two nodes never roll up the same calls. It takes no lock turn
/// (`crate::db::turns`): the roll-up may wait, the calls should not.
pub async fn begin_rollup(db: &Db) -> Result<sqlx::Transaction<'static, Any>, DbError> {
    Ok(match db.backend() {
        Backend::Sqlite => db.pool().begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => {
            let mut tx = db.pool().begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ROLLUP_LOCK).execute(&mut *tx).await?;
            tx
        }
    })
}

/// The advisory lock key of the roll-up's writers ("kpi" in ASCII, in the low bytes).
const ROLLUP_LOCK: i64 = 0x006b_7069;
