//! Settling: the KPI counts of calls that ended are added to `kpi_hourly` once, and the calls
//! marked (`calls.kpi_settled`), so the KPIs of a long period read the roll-up, summed per day
//! (or hour, language, area), instead of aggregating every call again on each request (a year of
//! a million calls: 3.8–6.3 s before, 0.11–0.25 s settled; BENCHMARKS.md, "Settled KPIs").
//!
//! A call is settled once it ended at least [`SETTLE_AFTER`] ago: its KPI facts (outcome, queue
//! entry and exit, answer, end) are final when it ends, and the margin covers the clocks of
//! several nodes. A call that never ended (a carrier that never sent its end) stays live, counted
//! from `calls` like today's calls; it holds nothing else back. A call is settled in the same
//! transaction that adds its counts, oldest first, [`CHUNK_CALLS`] per transaction (on SQLite a
//! transaction holds the one write lock: the calls' writer gets it between two chunks). The
//! purge (`retention.rs`) rolls up only the calls not settled; both write the roll-up under one
//! lock ([`store::begin_rollup`]), so no call is counted twice, and the readers read the roll-up
//! and the live calls in one snapshot ([`store::buckets`]).
//!
//! `serve` settles at start, in the background (a first run after an upgrade settles every call
//! ever kept), then every [`INTERVAL`].

use super::store;
use super::SupervisorState;
use crate::db::{Backend, Db, DbError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How often `serve` settles.
pub const INTERVAL: Duration = Duration::from_secs(300);
/// A call is settled once it ended this long ago (ms).
pub const SETTLE_AFTER: i64 = 5 * 60_000;
/// Calls settled per transaction, at least (more when the last of them shares its millisecond of
/// start with others, which go in the same chunk).
pub const CHUNK_CALLS: i64 = 500;

/// After settling this many calls in one run, PostgreSQL's statistics of `calls` are refreshed.
const ANALYZE_AFTER: u64 = 10_000;

/// Chunks counted again because calls arrived between the count and the mark, before giving up.
const MAX_RECOUNTS: u32 = 5;

/// The calls a chunk settles (a condition on `calls c`): not settled, started in `[$1, $2)`, ended
/// by `$3`.
const SETTLEABLE: &str =
    "c.kpi_settled = 0 AND c.started_at >= $1 AND c.started_at < $2 AND c.ended_at IS NOT NULL AND c.ended_at <= $3";

/// What one settle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SettleReport {
    /// Calls whose counts went into the roll-up.
    pub calls: u64,
    /// Writes into `kpi_hourly` (a row written or added to).
    pub kpi_rows: u64,
}

/// Settles every call that ended [`SETTLE_AFTER`] before `now_ms`, [`CHUNK_CALLS`] per
/// transaction.
pub async fn settle(db: &Db, now_ms: i64) -> Result<SettleReport, DbError> {
    settle_in_chunks(db, now_ms, CHUNK_CALLS).await
}

/// [`settle`] with `chunk` calls per transaction.
pub async fn settle_in_chunks(db: &Db, now_ms: i64, chunk: i64) -> Result<SettleReport, DbError> {
    let report = settle_chunks(db, now_ms, chunk).await?;
    if db.backend() == Backend::Postgres && report.calls >= ANALYZE_AFTER {
        // The planner's statistics still count these calls as unsettled until autovacuum
        // samples the table again; meanwhile it would scan every call for the live KPIs
        // (measured: 0.3 s instead of 0.2 ms for a year after the first settle of a million).
        sqlx::query("ANALYZE calls").execute(db.pool()).await?;
    }
    Ok(report)
}

async fn settle_chunks(db: &Db, now_ms: i64, chunk: i64) -> Result<SettleReport, DbError> {
    let ended_by = now_ms - SETTLE_AFTER;
    let mut report = SettleReport::default();
    let mut recounts = 0;
    loop {
        let mut tx = store::begin_rollup(db).await?;
        // The chunk: the oldest `chunk` settleable calls by start, and the calls that started in
        // the last one's millisecond. Both bounds are given, so that even a plan made without the
        // values (a prepared statement's generic plan) reads the index of the calls not settled.
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT MIN(s.started_at), MAX(s.started_at) FROM (SELECT c.started_at FROM {} WHERE c.kpi_settled = 0 \
             AND c.ended_at IS NOT NULL AND c.ended_at <= $1 ORDER BY c.started_at LIMIT $2) s",
            store::unsettled_calls(db.backend())
        ))
        .bind(ended_by)
        .bind(chunk.max(1))
        .fetch_one(&mut *tx)
        .await?;
        let (Some(first), Some(last)) = (first, last) else {
            // Ended here, not by a drop: a dropped sqlx transaction's rollback is only queued on
            // its connection, and the roll-up's lock is not to outlive the settle.
            tx.rollback().await?;
            return Ok(report);
        };
        let range = [first, last.saturating_add(1), ended_by];
        let buckets = store::counts_where(&mut tx, db.backend(), SETTLEABLE, &range).await?;
        if buckets.is_empty() {
            tx.rollback().await?;
            return Ok(report);
        }
        store::add_to_rollup(&mut tx, &buckets).await?;
        let settled = sqlx::query(&format!(
            "UPDATE {} SET kpi_settled = 1 WHERE {SETTLEABLE}",
            store::unsettled_calls(db.backend())
        ))
        .bind(range[0])
        .bind(range[1])
        .bind(range[2])
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let counted: i64 = buckets.iter().map(|b| b.counts.calls).sum();
        if i64::try_from(settled).ok() != Some(counted) {
            // On PostgreSQL each statement reads the latest commits: a call written meanwhile
            // with an end already long past (an import, say) was marked but not counted. Count
            // this chunk again.
            tx.rollback().await?;
            recounts += 1;
            if recounts > MAX_RECOUNTS {
                return Err(DbError::Corrupt(format!("settling the KPIs: {settled} calls marked, {counted} counted")));
            }
            continue;
        }
        tx.commit().await?;
        report.calls += settled;
        report.kpi_rows += buckets.len() as u64;
    }
}

/// Settles at once, then every [`INTERVAL`], until shutdown (a stop during a settle rolls back the
/// chunk in progress; the chunks before it stay settled).
pub fn start(state: Arc<SupervisorState>, tasks: &crate::tasks::Tasks) {
    tasks.spawn_every("settle KPIs", INTERVAL, move || {
        let state = state.clone();
        async move { run_once(&state).await }
    });
}

/// One settle with the server's clock, logged.
pub async fn run_once(state: &SupervisorState) {
    let now = state.clock.now().timestamp_millis();
    match settle(&state.db, now).await {
        Ok(r) if r.calls > 0 => tracing::info!(calls = r.calls, kpi_rows = r.kpi_rows, "KPIs of ended calls settled"),
        Ok(_) => tracing::debug!("KPIs: nothing to settle"),
        Err(e) => tracing::error!(error = %e, "settling the KPIs failed"),
    }
}
