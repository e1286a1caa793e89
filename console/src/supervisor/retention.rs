//! Retention: calls older than `retention_days` (counted in whole Rome days) lose everything
//! personal — notes, referrals, offers, the call log (and the answers it keeps for retries), the
//! caller's hash and masked number, the queue and callback rows, the call itself — and only their
//! KPI counts remain, rolled up into `kpi_hourly` first, in the same transaction, so the KPIs of
//! old days are the same after the purge as before. Every run writes an audit row. Run hourly
//! inside `serve` and by `helpline retention run`.

use super::audit::{self, Actor, AuditAction};
use super::kpi::{rome_date, rome_midnight_ms};
use super::store;
use crate::db::{Db, DbError};
use serde::Serialize;
use std::time::Duration;

/// How often `serve` runs the purge.
pub const INTERVAL: Duration = Duration::from_secs(3600);

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
    /// `kpi_hourly` rows written or added to.
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

/// Rolls up and purges every call that started before the cutoff; writes an audit row.
pub async fn purge(db: &Db, now_ms: i64, days: u32, actor: &Actor) -> Result<PurgeReport, DbError> {
    let cutoff = cutoff(now_ms, days);
    let mut report = PurgeReport { cutoff: super::log::rfc3339(cutoff), ..PurgeReport::default() };
    let mut tx = db.pool().begin().await?;
    // A write first: on SQLite it takes the write lock now (a read-then-write transaction would
    // fail at once with SQLITE_BUSY if another writer committed in between). Screen-pops and
    // notes pushed to pages also carry personal data.
    report.console_messages =
        sqlx::query("DELETE FROM console_messages WHERE at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
    // The counts first: the purge must not change the KPIs of any period.
    let buckets = store::live_buckets(&mut *tx, i64::MIN / 2, cutoff).await?;
    store::add_to_rollup(&mut tx, &buckets).await?;
    report.kpi_rows = buckets.len() as u64;
    let old = "SELECT call_id FROM calls WHERE started_at < $1";
    for (table, count) in [
        ("call_notes", &mut report.notes),
        ("referrals", &mut report.referrals),
        ("offers", &mut report.offers),
        ("call_events", &mut report.call_events),
        ("callbacks", &mut report.callbacks),
        ("queue_entries", &mut report.queue_entries),
    ] {
        *count = sqlx::query(&format!("DELETE FROM {table} WHERE call_id IN ({old})"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    report.calls = sqlx::query("DELETE FROM calls WHERE started_at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
    let detail = serde_json::to_string(&report).unwrap_or_default();
    audit::record(&mut *tx, now_ms, actor, AuditAction::RetentionPurge, None, &detail).await?;
    tx.commit().await?;
    Ok(report)
}

/// Runs the purge every [`INTERVAL`] until `stop` fires (the first run one interval after start:
/// `serve` purges once at start itself).
pub async fn run_scheduled(state: crate::state::AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => run_once(&state).await,
            _ = stop.changed() => return,
        }
    }
}

/// One purge with the server's settings and clock, logged.
pub async fn run_once(state: &crate::state::AppState) {
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
        assert_eq!(cutoff(now, 0), chrono_tz::Europe::Rome.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap().timestamp_millis());
    }
}
