//! The console's HTTP endpoints: `GET /api/console/config`, `GET /api/operators` (supervisors),
//! and the callback list (`GET /api/callbacks`, `POST /api/callbacks/{id}/claim`, `…/done`,
//! `GET /api/callbacks/{id}/voicemail`).
//!
//! Callbacks: the list shows the caller's masked number, never the number itself (which is kept
//! only sealed, `calls::sealed`, and opened only inside the server to place the call). An operator
//! works a callback by claiming it (so two do not call the same person), listens to the voice
//! message if there is one (audited), calls back, and marks it done, which wipes the sealed number.

use super::presence;
use super::ConsoleError;
use super::OperatorsState;
use crate::auth::{AsOperator, AsSupervisor, Authenticated};
use crate::clock::rfc3339;
use crate::db::audit::{self, Actor, AuditAction};
use crate::error::AppError;
use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new()
        .route("/api/console/config", get(config))
        .route("/api/operators", get(operators))
        .route("/api/callbacks", get(callbacks))
        .route("/api/callbacks/{id}/claim", post(claim))
        .route("/api/callbacks/{id}/done", post(done))
        .route("/api/callbacks/{id}/voicemail", get(voicemail))
}

/// What the page needs to draw itself (also in `welcome.config`): [`super::protocol::PageConfig`].
pub fn config_json(state: &OperatorsState) -> Value {
    serde_json::to_value(super::protocol::PageConfig::new(state.console.config(), &state.settings)).unwrap_or_default()
}

async fn config(_: AsOperator, State(state): State<Arc<OperatorsState>>) -> Json<Value> {
    Json(config_json(&state))
}

async fn operators(_: AsSupervisor, State(state): State<Arc<OperatorsState>>) -> Result<Json<Value>, AppError> {
    let all = presence::all(&state.db).await?;
    Ok(Json(json!({ "operators": all.iter().map(|o| o.json()).collect::<Vec<_>>() })))
}

async fn callbacks(_: AsOperator, State(state): State<Arc<OperatorsState>>) -> Result<Json<Value>, AppError> {
    type Row = (
        i64,
        String,
        Option<String>,
        String,
        Option<String>,
        i64,
        String,
        Option<String>,
        Option<i64>,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT b.id, b.call_id, b.caller_masked, b.language, b.area, b.requested_at, b.status, u.name, b.claimed_at, \
         CAST(b.attempts AS BIGINT), b.last_result, v.duration_ms, b.calling_at \
         FROM callbacks b LEFT JOIN users u ON u.id = b.claimed_by LEFT JOIN voicemails v ON v.call_id = b.call_id \
         WHERE b.status = 'open' ORDER BY b.requested_at, b.id",
    )
    .fetch_all(state.db.pool())
    .await
    .map_err(db_error)?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(
            |(
                id,
                call_id,
                masked,
                language,
                area,
                requested_at,
                status,
                claimed_by,
                claimed_at,
                attempts,
                last,
                vm,
                calling,
            )| {
                json!({"id": id, "call_id": call_id, "masked_number": masked, "language": language, "area": area,
                   "requested_at": rfc3339(requested_at), "status": status, "claimed_by": claimed_by,
                   "claimed_at": claimed_at.map(rfc3339), "attempts": attempts, "last_result": last,
                   "voicemail_ms": vm, "calling_since": calling.map(rfc3339)})
            },
        )
        .collect();
    Ok(Json(json!({ "callbacks": list })))
}

/// Takes an open callback that nobody (or I) claimed.
async fn claim(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    let now = state.clock.now().timestamp_millis();
    let claim = "UPDATE callbacks SET claimed_by = $2, claimed_at = $3 WHERE id = $1 AND status = 'open' \
                 AND (claimed_by IS NULL OR claimed_by = $2)";
    if !audited_update(&state, &auth, claim, id, now, AuditAction::ClaimCallback).await? {
        return Err(claim_refusal(&state, id).await);
    }
    Ok(Json(json!({"id": id, "claimed_by": auth.user.name, "claimed_at": rfc3339(now)})))
}

/// Marks my claimed callback done.
async fn done(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    let now = state.clock.now().timestamp_millis();
    let done = "UPDATE callbacks SET status = 'done', done_at = $3, number_sealed = NULL \
         WHERE id = $1 AND status = 'open' AND claimed_by = $2";
    if !audited_update(&state, &auth, done, id, now, AuditAction::CallbackDone).await? {
        return Err(claim_refusal(&state, id).await);
    }
    Ok(Json(json!({"id": id, "status": "done", "done_at": rfc3339(now)})))
}

/// A callback's voice message, as `audio/wav`. Every opening is written to the audit log first
/// (in the same transaction that reads it): no one listens unrecorded.
async fn voicemail(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<i64>,
) -> Result<axum::response::Response, AppError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let now = state.clock.now().timestamp_millis();
    let _turn = state.db.lock_turn().await;
    let mut tx = state.db.pool().begin().await.map_err(db_error)?;
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT b.call_id, v.audio FROM callbacks b JOIN voicemails v ON v.call_id = b.call_id WHERE b.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some((call_id, audio)) = row else {
        tx.rollback().await.map_err(db_error)?;
        return Err(AppError::NotFound("no such callback, or it has no voice message".into()));
    };
    let actor = Actor::user(auth.user.id, &auth.user.name);
    let detail = json!({ "callback": id }).to_string();
    audit::record(&mut *tx, now, &actor, AuditAction::PlayVoicemail, Some(&call_id), &detail).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(([(header::CONTENT_TYPE, "audio/wav"), (header::CACHE_CONTROL, "no-store")], audio).into_response())
}

/// Runs `update` (`$1` the callback, `$2` the user, `$3` now) and, when it changed the callback,
/// writes its audit row (the call and the callback's id) in the same transaction. Whether it did.
async fn audited_update(
    state: &OperatorsState,
    auth: &Authenticated,
    update: &str,
    id: i64,
    now: i64,
    action: AuditAction,
) -> Result<bool, AppError> {
    let mut tx = {
        let _turn = state.db.lock_turn().await;
        let mut tx = state.db.pool().begin().await.map_err(db_error)?;
        let n = sqlx::query(update)
            .bind(id)
            .bind(auth.user.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        if n == 0 {
            // Ended here, not by a drop, which only queues the rollback (and SQLite's write lock
            // would wait for it).
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        tx
    };
    let (call_id,): (String,) = sqlx::query_as("SELECT call_id FROM callbacks WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let actor = Actor::user(auth.user.id, &auth.user.name);
    let detail = json!({ "callback": id }).to_string();
    audit::record(&mut *tx, now, &actor, action, Some(&call_id), &detail).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(true)
}

fn db_error(e: sqlx::Error) -> AppError {
    AppError::from(crate::db::DbError::Query(e))
}

async fn claim_refusal(state: &OperatorsState, id: i64) -> AppError {
    match sqlx::query_as::<_, (String,)>("SELECT status FROM callbacks WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await
    {
        Ok(None) => ConsoleError::NoSuchCallback.into(),
        Ok(Some(_)) => AppError::Conflict("this callback is done or claimed by someone else".into()),
        Err(e) => AppError::from(crate::db::DbError::Query(e)),
    }
}
