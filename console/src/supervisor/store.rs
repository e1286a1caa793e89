//! KPI counts out of the database: aggregated per UTC hour × language × area in SQL (the same sums
//! as [`Counts::of_call`], so a year is a few thousand rows, not a million), plus the `kpi_hourly`
//! roll-up of purged periods.

use super::kpi::{rome_day, Bucket, Counts, SERVICE_LEVEL_MS, SHORT_ABANDON_MS};
use super::log::ANSWER_AT_SQL;
use crate::db::DbError;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

/// Counts per hour, language, area of the calls that started in `[from, to)` (epoch ms).
pub fn live_sql() -> String {
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
                       WHEN f.ended_at IS NOT NULL THEN f.ended_at - f.started_at ELSE 0 END) AS BIGINT) \
         FROM (SELECT c.started_at, c.ended_at, c.language, c.area, c.outcome, q.entered_at AS qa, \
                      {ANSWER_AT_SQL} AS aa, CASE WHEN q.status = 'abandoned' THEN q.updated_at END AS ab \
               FROM calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id \
               WHERE c.started_at >= $1 AND c.started_at < $2) f \
         GROUP BY f.started_at / 3600000, COALESCE(f.language, ''), COALESCE(f.area, '')"
    )
}

const COUNT_COLUMNS: &str = "calls, self_service, queued, answered, answered_in_sl, abandoned, abandoned_short, \
    wait_answered_ms, wait_abandoned_ms, max_wait_ms, talk_ms, callback, out_of_hours, hung_up_in_menu, menu_ms";

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
        },
    })
}

/// The live counts of calls that started in `[from, to)`.
pub async fn live_buckets<'e, E>(exec: E, from: i64, to: i64) -> Result<Vec<Bucket>, DbError>
where
    E: Executor<'e, Database = Any>,
{
    let sql = live_sql();
    let rows = sqlx::query(&sql).bind(from).bind(to).fetch_all(exec).await?;
    Ok(rows.iter().map(bucket).collect::<Result<_, _>>()?)
}

/// The rolled-up counts of the hours in `[from, to)` (hours that start in the range).
pub async fn rolled_up_buckets<'e, E>(exec: E, from: i64, to: i64) -> Result<Vec<Bucket>, DbError>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT hour_utc, language, area, {COUNT_COLUMNS} FROM kpi_hourly WHERE hour_utc >= $1 AND hour_utc < $2"
    );
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
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
        ] {
            q = q.bind(v);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Every bucket of `[from, to)`: the roll-up of purged hours and the live calls. A call is in one
/// or the other (the purge rolls up and deletes in one transaction), never both.
pub async fn buckets(db: &crate::db::Db, from: i64, to: i64) -> Result<Vec<Bucket>, DbError> {
    let mut all = rolled_up_buckets(db.pool(), from, to).await?;
    all.extend(live_buckets(db.pool(), from, to).await?);
    Ok(all)
}
