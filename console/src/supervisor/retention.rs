//! Retention: calls older than `retention_days` (counted in whole Rome days) lose everything
//! personal — notes, referrals, offers, the call log (and the answers it keeps for retries), the
//! caller's hash and masked number, the queue and callback rows, the call itself — and only their
//! KPI counts remain, rolled up into `kpi_hourly` first, in the same transaction (unless the call
//! was settled, `settle.rs`: then its counts are there already), so the KPIs of old days are the
//! same after the purge as before. A call still live (not ended) is never purged, however old:
//! it goes at the first run after it ends (`calls::quiet` ends the calls whose carrier went
//! quiet). The same run deletes the expired sessions, the audit rows older than
//! `audit_retention_days`, and the speech synthesised on demand older than
//! [`SPEECH_CACHE_MAX_AGE`] (or than the calls kept, if that is sooner). Every run writes an audit
//! row. Run by `serve` in the background (at start, then hourly) and by `helpline retention run`.
//!
//! The calls go oldest first, [`CHUNK_CALLS`] per transaction: on SQLite a transaction holds the
//! one write lock, and one purge of 100,000 calls held it for 6 s (live calls' webhooks waited
//! that long; a carrier gives up after 15). A chunk is a few tens of milliseconds, and the calls'
//! writer gets the lock between two. Each chunk rolls up exactly the calls it deletes, so the KPIs
//! are the same at every moment of a purge.

use super::audit::{self, Actor, AuditAction};
use super::kpi::{rome_date, rome_midnight_ms};
use super::settle::SETTLE_AFTER;
use super::store;
use super::SupervisorState;
use crate::config::Settings;
use crate::db::{Db, DbError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often `serve` runs the purge.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// Calls purged (and rolled up) per transaction, at most (more only when that many started in
/// the same millisecond).
pub const CHUNK_CALLS: i64 = 500;
/// How long a file of the speech cache is kept after it was written: the texts spoken on demand
/// (a queue position, the offices near the caller's town) repeat within hours, so a week keeps
/// the cache useful, and the files do not become a lasting record of what callers were told.
pub const SPEECH_CACHE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The calls a chunk purges (a condition on `calls c`): started before `$1`, ended by `$2`. A call
/// that ends while the purge runs has an end after `$2` (the settle's margin covers the nodes'
/// clocks), so on PostgreSQL, where each statement reads the latest commits, it is neither counted
/// nor deleted by the chunk.
const PURGEABLE: &str = "c.started_at < $1 AND c.ended_at IS NOT NULL AND c.ended_at <= $2";

/// What the purge removes, and after how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whole Rome days a call's detail is kept (`retention_days`).
    pub call_days: u32,
    /// Whole Rome days an audit row is kept (`audit_retention_days`).
    pub audit_days: u32,
    /// The speech cache's folder (none: left alone).
    pub speech_cache: Option<PathBuf>,
}

impl Policy {
    /// The server's settings.
    pub fn of(settings: &Settings) -> Policy {
        Policy {
            call_days: settings.retention_days,
            audit_days: settings.audit_retention_days,
            speech_cache: Some(settings.speech_cache_dir()),
        }
    }

    /// Calls kept `days` days, the audit log its default time, no speech cache.
    pub fn calls(days: u32) -> Policy {
        Policy { call_days: days, audit_days: Settings::default().audit_retention_days, speech_cache: None }
    }
}

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
    /// Callers' voice messages (they go with their calls).
    pub voicemails: u64,
    /// Call recordings (they go with their calls, as their consent refusals do).
    pub recordings: u64,
    /// The browser phone's media steps of the calls (`call_media`).
    pub media_steps: u64,
    /// What was recorded of the texts sent to the calls' callers (`text_messages`).
    pub text_messages: u64,
    pub queue_entries: u64,
    pub console_messages: u64,
    /// Writes into `kpi_hourly` for calls not settled before (a row written or added to; an hour
    /// split between two chunks counts twice).
    pub kpi_rows: u64,
    /// Calls that started before the cutoff but are still live (or ended only just now): kept.
    pub live_calls_kept: u64,
    /// Sign-in sessions past their expiry.
    pub sessions: u64,
    /// Audit rows written before this instant (RFC 3339) were deleted.
    pub audit_cutoff: String,
    pub audit_rows: u64,
    /// Files of the speech cache written before this instant (RFC 3339) were deleted.
    pub speech_cutoff: Option<String>,
    pub speech_files: u64,
}

impl std::fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "purged calls started before {}: {} calls, {} call-log events, {} notes, {} referrals, {} offers, \
             {} callbacks, {} voice messages, {} recordings, {} media steps, {} text messages, {} queue entries, \
             {} console messages; {} KPI rows rolled up; {} live calls kept; \
             {} expired sessions; {} audit rows before {}",
            self.cutoff,
            self.calls,
            self.call_events,
            self.notes,
            self.referrals,
            self.offers,
            self.callbacks,
            self.voicemails,
            self.recordings,
            self.media_steps,
            self.text_messages,
            self.queue_entries,
            self.console_messages,
            self.kpi_rows,
            self.live_calls_kept,
            self.sessions,
            self.audit_rows,
            self.audit_cutoff,
        )?;
        if let Some(speech) = &self.speech_cutoff {
            write!(f, "; {} speech files before {speech}", self.speech_files)?;
        }
        Ok(())
    }
}

/// The first instant kept: midnight in Rome, `days` days before today.
pub fn cutoff(now_ms: i64, days: u32) -> i64 {
    rome_midnight_ms(rome_date(now_ms) - chrono::Days::new(u64::from(days)))
}

/// The first instant of the speech cache kept: [`SPEECH_CACHE_MAX_AGE`] ago, or the calls'
/// cutoff if that is later (no text a caller heard outlives the call's record).
pub fn speech_cutoff(now_ms: i64, call_days: u32) -> i64 {
    let max_age = i64::try_from(SPEECH_CACHE_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
    (now_ms - max_age).max(cutoff(now_ms, call_days))
}

/// Rolls up and purges every ended call that started before the cutoff, [`CHUNK_CALLS`] per
/// transaction, then the expired sessions, the old audit rows and the old speech; writes an
/// audit row.
pub async fn purge(db: &Db, now_ms: i64, policy: &Policy, actor: &Actor) -> Result<PurgeReport, DbError> {
    purge_in_chunks(db, now_ms, policy, actor, CHUNK_CALLS).await
}

/// [`purge`] with `chunk` calls per transaction.
pub async fn purge_in_chunks(
    db: &Db,
    now_ms: i64,
    policy: &Policy,
    actor: &Actor,
    chunk: i64,
) -> Result<PurgeReport, DbError> {
    let cutoff = cutoff(now_ms, policy.call_days);
    let ended_by = now_ms - SETTLE_AFTER;
    let audit_cutoff = self::cutoff(now_ms, policy.audit_days);
    let mut report = PurgeReport {
        cutoff: crate::clock::rfc3339(cutoff),
        audit_cutoff: crate::clock::rfc3339(audit_cutoff),
        ..PurgeReport::default()
    };
    while let Some(end) = next_chunk_end(db, cutoff, ended_by, chunk.max(1)).await? {
        purge_chunk(db, end, ended_by, &mut report).await?;
    }
    if let Some(dir) = &policy.speech_cache {
        let before = speech_cutoff(now_ms, policy.call_days);
        report.speech_cutoff = Some(crate::clock::rfc3339(before));
        let dir = dir.clone();
        report.speech_files = tokio::task::spawn_blocking(move || purge_files(&dir, before))
            .await
            .map_err(|e| DbError::Corrupt(format!("the speech cache purge stopped: {e}")))?;
    }
    let mut tx = store::begin_rollup(db).await?;
    report.live_calls_kept = sqlx::query_as::<_, (i64,)>(
        "SELECT COUNT(*) FROM calls WHERE started_at < $1 AND (ended_at IS NULL OR ended_at > $2)",
    )
    .bind(cutoff)
    .bind(ended_by)
    .fetch_one(&mut *tx)
    .await?
    .0 as u64;
    // Screen-pops and notes pushed to pages also carry personal data.
    report.console_messages =
        sqlx::query("DELETE FROM console_messages WHERE at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
    report.sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    report.audit_rows =
        sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(audit_cutoff).execute(&mut *tx).await?.rows_affected();
    let detail = serde_json::to_string(&report).unwrap_or_default();
    audit::record(&mut *tx, now_ms, actor, AuditAction::RetentionPurge, None, &detail).await?;
    tx.commit().await?;
    Ok(report)
}

/// The end of the next chunk: the purgeable calls that started before it are the oldest `chunk`
/// of those before the cutoff (or all of them, or more when the `chunk + 1`-th shares its
/// millisecond with the first). `None` when nothing is left to purge.
async fn next_chunk_end(db: &Db, cutoff: i64, ended_by: i64, chunk: i64) -> Result<Option<i64>, DbError> {
    let nth = |offset: i64| {
        sqlx::query_as::<_, (i64,)>(
            "SELECT c.started_at FROM calls c WHERE c.started_at < $1 AND c.ended_at IS NOT NULL AND c.ended_at <= $2 \
             ORDER BY c.started_at LIMIT 1 OFFSET $3",
        )
        .bind(cutoff)
        .bind(ended_by)
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

/// One transaction: rolls up and deletes the ended calls that started before `end`.
async fn purge_chunk(db: &Db, end: i64, ended_by: i64, report: &mut PurgeReport) -> Result<(), DbError> {
    let mut tx = store::begin_rollup(db).await?;
    // The counts first (of the calls not settled yet: the others are in the roll-up already): the
    // purge must not change the KPIs of any period.
    let unsettled = format!("c.kpi_settled = 0 AND {PURGEABLE}");
    let buckets = store::counts_where(&mut tx, db.backend(), &unsettled, &[end, ended_by]).await?;
    store::add_to_rollup(&mut tx, &buckets).await?;
    report.kpi_rows += buckets.len() as u64;
    let old = format!("SELECT c.call_id FROM calls c WHERE {PURGEABLE}");
    let mut mediations = 0u64;
    let mut refusals = 0u64;
    for (table, count) in [
        ("mediations", &mut mediations),
        ("call_notes", &mut report.notes),
        ("referrals", &mut report.referrals),
        ("offers", &mut report.offers),
        ("call_events", &mut report.call_events),
        ("callbacks", &mut report.callbacks),
        ("voicemails", &mut report.voicemails),
        ("recordings", &mut report.recordings),
        ("recording_refusals", &mut refusals),
        ("call_media", &mut report.media_steps),
        ("text_messages", &mut report.text_messages),
        ("queue_entries", &mut report.queue_entries),
    ] {
        *count += sqlx::query(&format!("DELETE FROM {table} WHERE call_id IN ({old})"))
            .bind(end)
            .bind(ended_by)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    report.calls += sqlx::query(&format!("DELETE FROM calls WHERE call_id IN ({old})"))
        .bind(end)
        .bind(ended_by)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(())
}

/// Deletes the files of `dir` last written before `before_ms` (epoch ms); returns how many. A
/// folder that does not exist has nothing to purge; a file that cannot be read or deleted is
/// logged and left.
fn purge_files(dir: &Path, before_ms: i64) -> u64 {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "retention: cannot read the speech cache");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let modified = entry.metadata().ok().filter(|m| m.is_file()).and_then(|m| m.modified().ok());
        let Some(modified) = modified else { continue };
        let modified_ms = match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        if modified_ms >= before_ms {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            // Another node or process sharing the folder took it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "retention: cannot delete a speech file"),
        }
    }
    removed
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
    match purge(&state.db, now, &Policy::of(&state.settings), &Actor::system("retention")).await {
        Ok(r) if r.calls + r.sessions + r.audit_rows + r.speech_files > 0 => {
            tracing::info!(calls = r.calls, cutoff = %r.cutoff, "retention: {r}")
        }
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

    #[test]
    fn speech_is_kept_a_week_and_never_longer_than_the_calls() {
        let now = chrono_tz::Europe::Rome.with_ymd_and_hms(2026, 11, 24, 15, 30, 0).unwrap().timestamp_millis();
        assert_eq!(speech_cutoff(now, 365), now - 7 * 86_400_000);
        assert_eq!(speech_cutoff(now, 0), cutoff(now, 0), "retention_days = 0 keeps only today's speech");
    }

    #[test]
    fn the_speech_cache_loses_its_old_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let write = |name: &str, age: Duration| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"RIFF").unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(now - age).unwrap();
        };
        write("old.wav", Duration::from_secs(8 * 86_400));
        write("new.wav", Duration::from_secs(86_400));
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        let now_ms = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        assert_eq!(purge_files(dir.path(), speech_cutoff(now_ms, 365)), 1);
        assert!(!dir.path().join("old.wav").exists());
        assert!(dir.path().join("new.wav").exists() && dir.path().join("folder").is_dir());
        assert_eq!(purge_files(&dir.path().join("absent"), now_ms), 0);
    }
}
