//! The audit log as admins read it: who opened which call record, who exported the log, what each
//! retention purge removed, sign-ins, screen-pops, note edits, user changes, callback claims.
//! The writing side, which every feature uses, is `db::audit`; this is the reading side.

pub use crate::db::audit::{record, Actor, AuditAction};
use crate::db::{Db, DbError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub user_id: Option<i64>,
    pub user: String,
    pub action: String,
    pub call_id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for older entries.
    pub next: Option<i64>,
}

/// An `audit_log` row: id, at, user_id, user_name, action, call_id, detail.
type AuditRow = (i64, i64, Option<i64>, String, String, Option<String>, String);

/// Newest first, `limit` entries older than `before` (an entry id).
pub async fn list(db: &Db, before: Option<i64>, limit: usize, call_id: Option<&str>) -> Result<AuditPage, DbError> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT id, at, user_id, user_name, action, call_id, detail FROM audit_log \
         WHERE id < $1 AND ($2 = '' OR call_id = $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(call_id.unwrap_or(""))
    .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    let mut entries: Vec<AuditEntry> = rows
        .into_iter()
        .map(|(id, at, user_id, user, action, call_id, detail)| AuditEntry {
            id,
            at: crate::clock::rfc3339(at),
            user_id,
            user,
            action,
            call_id,
            detail,
        })
        .collect();
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(AuditPage { entries, next })
}
