//! Retention: calls older than `retention_days` (counted in whole Rome days) lose everything
//! personal — notes, referrals, offers, the call log (and the answers it keeps for retries), the
//! caller's hash and masked number, the queue and callback rows, the call itself — and only their
//! KPI counts remain, rolled up into `kpi_hourly` first, in the same transaction (unless the call
//! was settled, `settle.rs`: then its counts are there already), so the KPIs of old days are the
//! same after the purge as before. Every run writes an audit row. Run by `serve`
//! in the background (at start, then hourly) and by `helpline retention run`.
//!
//! The calls go oldest first, [`CHUNK_CALLS`] per transaction: on SQLite a transaction holds the
//! one write lock, and one purge of 100,000 calls held it for 6 s (live calls' webhooks waited
//! that long; a carrier gives up after 15). A chunk is a few tens of milliseconds, and the calls'
//! writer gets the lock between two. Each chunk rolls up exactly the calls it deletes, so the KPIs
//! are the same at every moment of a purge.

use super::audit::{self, Actor, AuditAction};
use super::kpi::{rome_date, rome_midnight_ms};
use super::store;
use super::SupervisorState;
use crate::db::{Db, DbError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How often `serve` runs the purge.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// Calls purged (and rolled up) per transaction, at most (more only when that many started in
/// the same millisecond).
pub const CHUNK_CALLS: i64 = 500;

/// What one purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Calls that started before this instant (RFC 3339) were purged.
    pub cutoff: String,
    pub calls: u64,
    pub call_events: u64,
    pub notes: u64,
    pub referrals: u64,
    pub offers: u64,
    pub callbacks: u64,
    pub queue_entries: u64,
    pub console_messages: u64,
    /// Writes into `kpi_hourly` for calls not settled before (a row written or added to; an hour
    /// split between two chunks counts twice).
    pub kpi_rows: u64,
}

impl std::fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "purged calls started before {}: {} calls, {} call-log events, {} notes, {} referrals, {} offers, \
             {} callbacks, {} queue entries, {} console messages; {} KPI rows rolled up",
            self.cutoff,
            self.calls,
            self.call_events,
            self.notes,
            self.referrals,
            self.offers,
            self.callbacks,
            self.queue_entries,
            self.console_messages,
            self.kpi_rows
        )
    }
}

/// The first instant kept: midnight in Rome, `days` days before today.
pub fn cutoff(now_ms: i64, days: u32) -> i64 {
    rome_midnight_ms(rome_date(now_ms) - chrono::Days::new(u64::from(days)))
}

/// Rolls up and purges every call that started before the cutoff, [`CHUNK_CALLS`] per
/// transaction; writes an audit row.
pub async fn purge(db: &Db, now_ms: i64, days: u32, actor: &Actor) -> Result<PurgeReport, DbError> {
    purge_in_chunks(db, now_ms, days, actor, CHUNK_CALLS).await
}

/// [`purge`] with `chunk` calls per transaction.
pub async fn purge_in_chunks(
    db: &Db,
    now_ms: i64,
    days: u32,
    actor: &Actor,
    chunk: i64,
) -> Result<PurgeReport, DbError> {
    let cutoff = cutoff(now_ms, days);
    let mut report = PurgeReport { cutoff: crate::clock::rfc3339(cutoff), ..PurgeReport::default() };
    while let Some(end) = next_chunk_end(db, cutoff, chunk.max(1)).await? {
        purge_chunk(db, end, &mut report).await?;
    }
    let mut tx = store::begin_rollup(db).await?;
    // Screen-pops and notes pushed to pages also carry personal data.
    report.console_messages =
        sqlx::query("DELETE FROM console_messages WHERE at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
    let detail = serde_json::to_string(&report).unwrap_or_default();
    audit::record(&mut *tx, now_ms, actor, AuditAction::RetentionPurge, None, &detail).await?;
    tx.commit().await?;
    Ok(report)
}

/// The end of the next chunk: the calls that started before it are the oldest `chunk` of those
/// before the cutoff (or all of them, or more when the `chunk + 1`-th shares its millisecond with
/// the first). `None` when nothing is left to purge.
async fn next_chunk_end(db: &Db, cutoff: i64, chunk: i64) -> Result<Option<i64>, DbError> {
    let nth = |offset: i64| {
        sqlx::query_as::<_, (i64,)>(
            "SELECT started_at FROM calls WHERE started_at < $1 ORDER BY started_at LIMIT 1 OFFSET $2",
        )
        .bind(cutoff)
        .bind(offset)
        .fetch_optional(db.pool())
    };
    let Some((first,)) = nth(0).await? else { return Ok(None) };
    Ok(Some(match nth(chunk).await? {
        Some((t,)) if t > first => t,
        // The first `chunk + 1` calls started in one millisecond: take them all.
        Some((t,)) => t + 1,
        None => cutoff,
    }))
}

/// One transaction: rolls up and deletes the calls that started before `end`.
async fn purge_chunk(db: &Db, end: i64, report: &mut PurgeReport) -> Result<(), DbError> {
    let mut tx = store::begin_rollup(db).await?;
    // The counts first (of the calls not settled yet: the others are in the roll-up already): the
    // purge must not change the KPIs of any period.
    let buckets = store::live_buckets(&mut *tx, db.backend(), i64::MIN / 2, end).await?;
    store::add_to_rollup(&mut tx, &buckets).await?;
    report.kpi_rows += buckets.len() as u64;
    let old = "SELECT call_id FROM calls WHERE started_at < $1";
    for (table, count) in [
        ("call_notes", &mut report.notes),
        ("referrals", &mut report.referrals),
        ("offers", &mut report.offers),
        ("call_events", &mut report.call_events),
        ("callbacks", &mut report.callbacks),
        ("queue_entries", &mut report.queue_entries),
    ] {
        *count += sqlx::query(&format!("DELETE FROM {table} WHERE call_id IN ({old})"))
            .bind(end)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    report.calls +=
        sqlx::query("DELETE FROM calls WHERE started_at < $1").bind(end).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(())
}

/// Runs the purge at once, then every [`INTERVAL`], until shutdown. It runs beside serving: a
/// long first purge (retention shortened, say) does not keep the helpline from answering. A stop
/// during a purge rolls back the chunk in progress; the chunks before it stay purged.
pub fn start(state: Arc<SupervisorState>, tasks: &crate::tasks::Tasks) {
    tasks.spawn_every("retention", INTERVAL, move || {
        let state = state.clone();
        async move { run_once(&state).await }
    });
}

/// One purge with the server's settings and clock, logged.
pub async fn run_once(state: &SupervisorState) {
    let now = state.clock.now().timestamp_millis();
    match purge(&state.db, now, state.settings.retention_days, &Actor::system("retention")).await {
        Ok(r) if r.calls > 0 => tracing::info!(calls = r.calls, cutoff = %r.cutoff, "retention: {r}"),
        Ok(r) => tracing::debug!(cutoff = %r.cutoff, "retention: nothing to purge"),
        Err(e) => tracing::error!(error = %e, "retention purge failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_cutoff_is_a_rome_midnight_whole_days_back() {
        let now = chrono_tz::Europe::Rome.with_ymd_and_hms(2026, 11, 24, 15, 30, 0).unwrap().timestamp_millis();
        let c = cutoff(now, 365);
        let expect = chrono_tz::Europe::Rome.with_ymd_and_hms(2025, 11, 24, 0, 0, 0).unwrap().timestamp_millis();
        assert_eq!(c, expect);
        assert_eq!(
            cutoff(now, 0),
            chrono_tz::Europe::Rome.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap().timestamp_millis()
        );
    }
}
