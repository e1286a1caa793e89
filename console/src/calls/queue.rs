//! The waiting queue and callback requests as the call runtime sees them: enqueue a call with its
//! skills, tell its position and estimated wait, record a callback, mark a hang-up as abandoned.
//! (Offering calls to operators is the console's ACD; it works on the same table.)

use super::Tx;
use crate::db::DbError;
use ivr::domain::{Language, ServiceArea};

/// How waits are estimated.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Average handling time of one call, seconds: wait ≈ position × this.
    pub avg_handle_secs: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { avg_handle_secs: 180 }
    }
}

/// Puts the call in the queue (or back in it, keeping its original entry time, after a failed
/// transfer: it does not lose its place).
pub async fn enqueue(
    tx: &mut Tx<'_>,
    call_id: &str,
    language: Language,
    area: Option<ServiceArea>,
    priority: u8,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO queue_entries (call_id, language, area, priority, entered_at, status, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'waiting', $5) \
         ON CONFLICT (call_id) DO UPDATE SET language = excluded.language, area = excluded.area, \
         priority = excluded.priority, status = 'waiting', operator = NULL, target = NULL, updated_at = excluded.updated_at",
    )
    .bind(call_id)
    .bind(language.as_str())
    .bind(area.map(|a| a.as_str()))
    .bind(i64::from(priority))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// 1-based position among calls waiting for the same language (higher priority first, then
/// first come), and the estimated wait in seconds.
pub async fn position(tx: &mut Tx<'_>, call_id: &str, settings: &QueueSettings) -> Result<(u32, u32), DbError> {
    let mine: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT language, priority, entered_at FROM queue_entries WHERE call_id = $1 AND status = 'waiting'",
    )
    .bind(call_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((language, priority, entered_at)) = mine else { return Ok((1, 0)) };
    let (ahead,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM queue_entries WHERE status = 'waiting' AND language = $1 AND call_id <> $4 \
         AND (priority > $2 OR (priority = $2 AND (entered_at < $3 OR (entered_at = $3 AND call_id < $4))))",
    )
    .bind(&language)
    .bind(priority)
    .bind(entered_at)
    .bind(call_id)
    .fetch_one(&mut **tx)
    .await?;
    let position = u32::try_from(ahead + 1).unwrap_or(u32::MAX);
    Ok((position, position.saturating_mul(settings.avg_handle_secs)))
}

pub async fn record_callback(
    tx: &mut Tx<'_>,
    call_id: &str,
    language: Language,
    area: Option<ServiceArea>,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO callbacks (call_id, caller_hash, caller_masked, language, area, requested_at) \
         SELECT call_id, caller_hash, caller_masked, $2, $3, $4 FROM calls WHERE call_id = $1",
    )
    .bind(call_id)
    .bind(language.as_str())
    .bind(area.map(|a| a.as_str()))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The call ended: a caller still waiting abandoned (when they hung up) or left the queue.
pub async fn leave(tx: &mut Tx<'_>, call_id: &str, hung_up: bool, now_ms: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE queue_entries SET status = $2, updated_at = $3 WHERE call_id = $1 AND status = 'waiting'")
        .bind(call_id)
        .bind(if hung_up { "abandoned" } else { "left" })
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
