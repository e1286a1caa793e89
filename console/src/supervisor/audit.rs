//! The audit log: who opened which call record, who exported the log, what each retention purge
//! removed. Append-only (a trigger refuses updates); admins read it.

use crate::db::{Db, DbError};
use serde::Serialize;
use sqlx::{Any, Executor};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Opened one call's record and timeline.
    OpenCall,
    /// Exported the call log as CSV (the filter is the detail).
    ExportCalls,
    /// The retention purge ran (the counts are the detail).
    RetentionPurge,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OpenCall => "open_call",
            AuditAction::ExportCalls => "export_calls",
            AuditAction::RetentionPurge => "retention_purge",
        }
    }
}

/// Who did it: a signed-in user, or the server itself (the scheduled purge, the CLI).
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub name: String,
}

impl Actor {
    pub fn system(name: &str) -> Actor {
        Actor { user_id: None, name: name.to_owned() }
    }
}

pub async fn record<'e, E>(
    exec: E,
    at: i64,
    actor: &Actor,
    action: AuditAction,
    call_id: Option<&str>,
    detail: &str,
) -> Result<(), DbError>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, user_id, user_name, action, call_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(action.as_str())
    .bind(call_id)
    .bind(detail)
    .execute(exec)
    .await?;
    Ok(())
}

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
