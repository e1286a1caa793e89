//! What the operator records about a call: notes (autosaved, last write wins), referrals (the
//! services given to the caller) and the disposition. An operator may write on the calls they
//! took; supervisors on any call.

use super::ConsoleError;
use super::OperatorsState;
use crate::db::audit::{self, Actor, AuditAction};
use crate::db::users::{Role, User};
use crate::directory::{schema, store};

/// Notes are kept short enough to read on a screen-pop.
pub const MAX_NOTE_CHARS: usize = 10_000;

async fn check_call(state: &OperatorsState, user: &User, call_id: &str) -> Result<(), ConsoleError> {
    let row: Option<(Option<i64>,)> = sqlx::query_as("SELECT operator_id FROM calls WHERE call_id = $1")
        .bind(call_id)
        .fetch_optional(state.db.pool())
        .await?;
    match row {
        Some((Some(op),)) if op == user.id => Ok(()),
        Some(_) if user.role.includes(Role::Supervisor) => Ok(()),
        _ => Err(ConsoleError::NotYourCall),
    }
}

pub async fn save_note(state: &OperatorsState, user: &User, call_id: &str, text: &str) -> Result<i64, ConsoleError> {
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(ConsoleError::BadRequest(format!("a note has at most {MAX_NOTE_CHARS} characters")));
    }
    check_call(state, user, call_id).await?;
    let now_ms = state.clock.now().timestamp_millis();
    let mut tx = {
        let _turn = state.db.lock_turn().await;
        let mut tx = state.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO call_notes (call_id, operator_id, text, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id, operator_id) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
        )
        .bind(call_id)
        .bind(user.id)
        .bind(text)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx
    };
    // Who wrote on which call, and how much: never the text, which retention purges with the call.
    let detail = serde_json::json!({ "chars": text.chars().count() }).to_string();
    let actor = Actor::user(user.id, &user.name);
    audit::record(&mut *tx, now_ms, &actor, AuditAction::EditNote, Some(call_id), &detail).await?;
    tx.commit().await?;
    Ok(now_ms)
}

pub async fn referral(
    state: &OperatorsState,
    user: &User,
    call_id: &str,
    service_id: &str,
    add: bool,
) -> Result<i64, ConsoleError> {
    check_call(state, user, call_id).await?;
    let now_ms = state.clock.now().timestamp_millis();
    if add {
        let rows = store::rows_where(state.directory.db(), &schema::SERVICE, "id", service_id)
            .await
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
        let name_ix = schema::SERVICE.column_index("name").unwrap_or(0);
        let Some(name) = rows.first().map(|r| r.get(name_ix).unwrap_or_default().to_owned()) else {
            return Err(ConsoleError::UnknownService(service_id.to_owned()));
        };
        state.db.with_lock_turn(sqlx::query(
            "INSERT INTO referrals (call_id, service_id, service_name, operator_id, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (call_id, service_id) DO NOTHING",
        )
        .bind(call_id)
        .bind(service_id)
        .bind(name)
        .bind(user.id)
        .bind(now_ms)
        .execute(state.db.pool()))
        .await?;
    } else {
        state
            .db
            .with_lock_turn(
                sqlx::query("DELETE FROM referrals WHERE call_id = $1 AND service_id = $2")
                    .bind(call_id)
                    .bind(service_id)
                    .execute(state.db.pool()),
            )
            .await?;
    }
    Ok(now_ms)
}

pub async fn disposition(state: &OperatorsState, user: &User, call_id: &str, code: &str) -> Result<i64, ConsoleError> {
    if !state.console.config().has_disposition(code) {
        return Err(ConsoleError::UnknownDisposition(code.to_owned()));
    }
    check_call(state, user, call_id).await?;
    let now_ms = state.clock.now().timestamp_millis();
    state
        .db
        .with_lock_turn(
            sqlx::query("UPDATE calls SET disposition = $2 WHERE call_id = $1")
                .bind(call_id)
                .bind(code)
                .execute(state.db.pool()),
        )
        .await?;
    Ok(now_ms)
}
