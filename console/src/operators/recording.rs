//! Recording a call, with the caller's consent ("Registra" / "Record").
//!
//! Every call starts with the recording notice (the flow's `recording_notice` node, in the
//! caller's language); the caller refuses with its key (the engine keeps it in the call's state,
//! `recording_refused`), or tells the operator, who marks the spoken refusal. While the caller
//! has not refused, the call's operator may record the call and stop:
//!
//! - `GET /api/calls/{id}/recording`: whether the caller refused (and how) and whether the call
//!   is being recorded (the page enables its button from it);
//! - `POST /api/calls/{id}/recording/refusal`: the operator marks a spoken refusal (a recording
//!   under way stops, and what it held is discarded);
//! - `POST /api/calls/{id}/recording`: start; refused (409) once the caller refused;
//! - `DELETE /api/calls/{id}/recording`: stop; answered once the audio is stored.
//!
//! The recording is the call's mixed audio on this node's media path (the caller, the operator, a
//! mediator; never a supervisor who listens or whispers): the recorder is a party of the call's
//! mixer that nobody hears (`media::driver`). It is stored as an 8 kHz WAV in `recordings`
//! (migration 0020), in the database like voice messages, so every node plays it; supervisors
//! play it (`supervisor::http`, audited) and retention deletes it with the call's detail. Every
//! step is in the audit log and the call's timeline. The call's media may be on another node
//! (PostgreSQL: a SIP call carried by the node that took its INVITE, the operator's page here):
//! the start and the stop go through the phone relay (`media::relay`), that node records the
//! call and stores the audio ([`keeper`]), and a stop here waits (at most [`STORE_WAIT`]) until
//! the recording's row is closed. A call no node carries (a webhook call: its media is the
//! carrier's) answers 409.

use super::mediation::holds_call;
use super::{ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::calls::voicemail;
use crate::db::audit::{self, Actor, AuditAction};
use crate::db::{Db, DbError};
use crate::error::AppError;
use crate::media::{PhoneError, RecordedAudio};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ivr::engine::CallState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new()
        .route("/api/calls/{id}/recording", get(status).post(start).delete(stop))
        .route("/api/calls/{id}/recording/refusal", post(refuse))
}

/// How long a stop waits for the audio to be stored (here, or by the call's node).
pub const STORE_WAIT: Duration = Duration::from_secs(10);

/// `GET /api/calls/{id}/recording`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordingStatus {
    /// The caller refused to be recorded: `caller` (the key during the notice), `operator` (a
    /// spoken refusal the operator marked), or `null`.
    pub refused: Option<RefusedBy>,
    /// The id of the recording under way, if any.
    pub recording: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBy {
    Caller,
    Operator,
}

/// This node's recordings under way: each one's stored signal, by call.
#[derive(Clone, Default)]
pub struct Recordings(Arc<Mutex<HashMap<String, oneshot::Receiver<()>>>>);

impl Recordings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Receiver<()>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn phone_error(e: PhoneError) -> AppError {
    match e {
        PhoneError::NotRunning | PhoneError::Relay(_) => AppError::Unavailable(e.to_string()),
        _ => AppError::Conflict(e.to_string()),
    }
}

/// Whether (and how) the caller refused: the engine's state (the key) first, then a spoken
/// refusal marked. `None` when the call is unknown.
async fn refused(db: &Db, id: &str) -> Result<Option<(bool, Option<RefusedBy>)>, DbError> {
    let row: Option<(String, Option<i64>)> = sqlx::query_as("SELECT state, ended_at FROM calls WHERE call_id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some((state, ended)) = row else { return Ok(None) };
    let state: CallState = serde_json::from_str(&state).map_err(|e| DbError::Corrupt(format!("call state: {e}")))?;
    if state.recording_refused {
        return Ok(Some((ended.is_none(), Some(RefusedBy::Caller))));
    }
    let marked: Option<(i64,)> = sqlx::query_as("SELECT refused_at FROM recording_refusals WHERE call_id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(Some((ended.is_none(), marked.map(|_| RefusedBy::Operator))))
}

/// The recording under way on the call, if any.
async fn under_way(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM recordings WHERE call_id = $1 AND ended_at IS NULL ORDER BY started_at LIMIT 1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|(r,)| r))
}

/// The call, live, and this operator's: its refusal, if any.
async fn operators_call(state: &OperatorsState, id: &str, user: i64) -> Result<Option<RefusedBy>, AppError> {
    let Some((live, refusal)) = refused(&state.db, id).await? else {
        return Err(AppError::NotFound(format!("no call {id:?}")));
    };
    if !live {
        return Err(AppError::Conflict(format!("call {id:?} has ended")));
    }
    if !holds_call(state, id, user).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    Ok(refusal)
}

/// `GET /api/calls/{id}/recording` (the call's operator).
async fn status(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<RecordingStatus>, AppError> {
    let refused = operators_call(&state, &id, auth.user.id).await?;
    let recording = under_way(&state.db, &id).await?;
    Ok(Json(RecordingStatus { refused, recording }))
}

/// `POST /api/calls/{id}/recording` (the call's operator, the caller not having refused).
async fn start(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<RecordingStatus>, AppError> {
    if operators_call(&state, &id, auth.user.id).await?.is_some() {
        return Err(AppError::Conflict("the caller refused to be recorded".into()));
    }
    if under_way(&state.db, &id).await?.is_some() {
        return Err(AppError::Conflict("the call is being recorded already".into()));
    }
    let here = state.phone.carries(&id);
    if !here && !carried_elsewhere(state.as_ref(), &id).await? {
        return Err(AppError::Conflict(format!("call {id:?} is not talking to a browser phone on this server")));
    }
    let rid = format!("{:032x}", rand::random::<u128>());
    let now = state.clock.now().timestamp_millis();
    {
        let _turn = state.db.lock_turn().await;
        let mut tx = state.db.pool().begin().await.map_err(DbError::from)?;
        sqlx::query("INSERT INTO recordings (id, call_id, started_at, started_by) VALUES ($1, $2, $3, $4)")
            .bind(&rid)
            .bind(&id)
            .bind(now)
            .bind(auth.user.id)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
        let actor = Actor::user(auth.user.id, &auth.user.name);
        audit::record(&mut *tx, now, &actor, AuditAction::RecordingStart, Some(&id), &rid).await?;
        tx.commit().await.map_err(DbError::from)?;
    }
    let max_secs = state.settings.recording_max_secs;
    let started = if here {
        state.phone.record(&id, max_secs).map(|audio| keep(state.clone(), id.clone(), rid.clone(), audio))
    } else {
        // The call's node records it and stores the audio ([`keeper`]).
        state.phone.record_elsewhere(&id, auth.user.id, &rid, max_secs).await
    };
    if let Err(e) = started {
        finish(&state, &rid, &id, None).await?;
        return Err(phone_error(e));
    }
    tracing::info!(call_id = %id, operator = %auth.user.name, here, "recording the call");
    Ok(Json(RecordingStatus { refused: None, recording: Some(rid) }))
}

/// Whether another node carries the call, reached through the phone relay (PostgreSQL: the
/// call's row names the node holding its SIP side).
async fn carried_elsewhere(state: &OperatorsState, id: &str) -> Result<bool, DbError> {
    if !state.phone.relays() {
        return Ok(false);
    }
    let node: Option<(Option<String>,)> =
        sqlx::query_as("SELECT node_id FROM calls WHERE call_id = $1").bind(id).fetch_optional(state.db.pool()).await?;
    Ok(node.is_some_and(|(n,)| n.is_some()))
}

/// Stores the recording `rid` of the call `id` when its audio arrives: when the operator stops,
/// or when the call's bridge ends (the caller or the operator hung up), whoever waits.
fn keep(state: Arc<OperatorsState>, id: String, rid: String, audio: oneshot::Receiver<RecordedAudio>) {
    let (stored, signal) = oneshot::channel();
    state.recordings.lock().insert(id.clone(), signal);
    tokio::spawn(async move {
        let audio = audio.await.ok();
        if let Err(e) = finish(&state, &rid, &id, audio).await {
            tracing::error!(call_id = %id, error = %e, "a recording could not be stored");
        }
        state.recordings.lock().remove(&id);
        let _ = stored.send(());
    });
}

/// What stores the recordings another node asks this one to make of the calls it carries
/// (`media::Phone::keep_recordings_with`, at assembly): as this node's own.
pub fn keeper(state: Weak<OperatorsState>) -> crate::media::RecordingKeeper {
    Arc::new(move |id, rid, audio| match state.upgrade() {
        Some(state) => keep(state, id, rid, audio),
        None => tracing::warn!(call_id = %id, "a recording asked for while this node stops is not stored"),
    })
}

/// Stores a recording's audio (none: nothing was recorded) and ends it; a call whose caller
/// refused meanwhile keeps nothing of it.
async fn finish(state: &OperatorsState, rid: &str, id: &str, audio: Option<RecordedAudio>) -> Result<(), DbError> {
    let now = state.clock.now().timestamp_millis();
    let refused = refused(&state.db, id).await?.is_some_and(|(_, r)| r.is_some());
    let _turn = state.db.lock_turn().await;
    if refused {
        sqlx::query("DELETE FROM recordings WHERE id = $1").bind(rid).execute(state.db.pool()).await?;
        return Ok(());
    }
    let samples = audio.map(|a| a.samples()).unwrap_or_default();
    sqlx::query("UPDATE recordings SET ended_at = $2, duration_ms = $3, audio = $4 WHERE id = $1")
        .bind(rid)
        .bind(now)
        .bind(i64::from(voicemail::duration_ms(&samples)))
        .bind(voicemail::wav(&samples))
        .execute(state.db.pool())
        .await?;
    Ok(())
}

/// Stops the call's recording and waits until its audio is stored. Whether one was under way.
async fn stop_and_store(state: &OperatorsState, id: &str, operator: i64) -> Result<bool, AppError> {
    let signal = state.recordings.lock().remove(id);
    let Some(signal) = signal else { return stop_elsewhere(state, id, operator).await };
    if let Err(e) = state.phone.stop_recording(id) {
        // The call's bridge is gone: its recording was delivered when it ended.
        tracing::debug!(call_id = %id, error = %e, "stopping a recording of a call no longer bridged");
    }
    if tokio::time::timeout(STORE_WAIT, signal).await.is_err() {
        return Err(AppError::Unavailable("the recording is still being stored".into()));
    }
    Ok(true)
}

/// Stops the recording of a call another node carries (through the relay) and waits until that
/// node has stored it (the row closed, or deleted after a refusal). Whether one was under way.
async fn stop_elsewhere(state: &OperatorsState, id: &str, operator: i64) -> Result<bool, AppError> {
    if state.phone.carries(id) || !carried_elsewhere(state, id).await? {
        return Ok(false);
    }
    let Some(rid) = under_way(&state.db, id).await? else { return Ok(false) };
    state.phone.stop_recording_elsewhere(id, operator).await.map_err(phone_error)?;
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    loop {
        let open: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM recordings WHERE id = $1 AND ended_at IS NULL")
            .bind(&rid)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
        if open.is_none() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AppError::Unavailable("the call's node has not stored the recording yet".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `DELETE /api/calls/{id}/recording` (the call's operator).
async fn stop(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    operators_call(&state, &id, auth.user.id).await?;
    let Some(rid) = under_way(&state.db, &id).await? else {
        return Err(AppError::Conflict("the call is not being recorded".into()));
    };
    if !stop_and_store(&state, &id, auth.user.id).await? {
        return Err(AppError::Conflict("the call is not being recorded on this server".into()));
    }
    let now = state.clock.now().timestamp_millis();
    let actor = Actor::user(auth.user.id, &auth.user.name);
    audit::record(state.db.pool(), now, &actor, AuditAction::RecordingStop, Some(&id), &rid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/calls/{id}/recording/refusal` (the call's operator): the caller said no.
async fn refuse(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<RecordingStatus>, AppError> {
    if let Some(by) = operators_call(&state, &id, auth.user.id).await? {
        return Ok(Json(RecordingStatus { refused: Some(by), recording: None }));
    }
    let now = state.clock.now().timestamp_millis();
    {
        let _turn = state.db.lock_turn().await;
        let mut tx = state.db.pool().begin().await.map_err(DbError::from)?;
        sqlx::query(
            "INSERT INTO recording_refusals (call_id, refused_at, operator_id) VALUES ($1, $2, $3) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(&id)
        .bind(now)
        .bind(auth.user.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
        let actor = Actor::user(auth.user.id, &auth.user.name);
        audit::record(&mut *tx, now, &actor, AuditAction::RecordingRefused, Some(&id), "").await?;
        tx.commit().await.map_err(DbError::from)?;
    }
    // A recording under way stops; what it held is discarded (`finish` sees the refusal).
    stop_and_store(&state, &id, auth.user.id).await?;
    Ok(Json(RecordingStatus { refused: Some(RefusedBy::Operator), recording: None }))
}
