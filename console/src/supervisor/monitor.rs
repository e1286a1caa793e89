//! A supervisor on a live call: `POST /api/calls/{id}/monitor` (`{"mode", "sdp"}`: the page's
//! WebRTC offer; the answer comes back) joins the supervisor's own browser leg to the call in
//! `listen`, `whisper` or `barge` mode; `PUT` (`{"mode"}`) switches mode; `DELETE` hangs the
//! supervisor's leg up. Supervisors and admins only. The caller is never told who listens, so
//! every start and switch (and the end) is written to the audit log before the media changes,
//! and the call's timeline shows it.
//!
//! The call's media must be on this node (its SIP side and its operator's browser leg) or, with
//! PostgreSQL, on the node the call's row names: the phone relay (`media::relay`) carries the
//! supervisor's offer there and the answer back, and the switches and the end after it; a call
//! no node carries answers 409.

use super::audit::{self, AuditAction};
use super::http::actor;
use super::SupervisorState;
use crate::auth::AsSupervisor;
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::media::{MonitorMode, PhoneError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The largest SDP offer taken (a browser's audio-only offer is a few kilobytes).
pub const MAX_SDP: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMonitor {
    pub mode: MonitorMode,
    pub sdp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchMonitor {
    pub mode: MonitorMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorAnswer {
    pub sdp: String,
}

fn action(mode: MonitorMode) -> AuditAction {
    match mode {
        MonitorMode::Listen => AuditAction::Listen,
        MonitorMode::Whisper => AuditAction::Whisper,
        MonitorMode::Barge => AuditAction::Barge,
    }
}

fn phone_error(e: PhoneError) -> AppError {
    match e {
        PhoneError::NoSuchCall => AppError::NotFound(e.to_string()),
        PhoneError::WebRtc(_) => AppError::BadRequest(e.to_string()),
        PhoneError::NotRunning | PhoneError::Relay(_) => AppError::Unavailable(e.to_string()),
        PhoneError::NoOperatorLeg | PhoneError::NotMonitoring | PhoneError::NoMediator => {
            AppError::Conflict(e.to_string())
        }
    }
}

/// The call must be live (not ended) and known; its media must be on this node, or (PostgreSQL,
/// through the phone relay) on the node its row names.
async fn live(state: &SupervisorState, id: &str) -> Result<(), AppError> {
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT ended_at, node_id FROM calls WHERE call_id = $1")
            .bind(id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(crate::db::DbError::from)?;
    match row {
        None => Err(AppError::NotFound(format!("no call {id:?}"))),
        Some((Some(_), _)) => Err(AppError::Conflict(format!("call {id:?} has ended"))),
        Some((None, node)) if !(state.phone.carries(id) || state.phone.relays() && node.is_some()) => {
            Err(AppError::Conflict(format!("call {id:?} is not talking to a browser phone on this server")))
        }
        Some((None, _)) => Ok(()),
    }
}

/// `POST /api/calls/{id}/monitor`
pub async fn start(
    AsSupervisor(auth): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<StartMonitor>,
) -> Result<Json<MonitorAnswer>, AppError> {
    if body.sdp.len() > MAX_SDP {
        return Err(AppError::PayloadTooLarge(format!("an SDP offer of at most {MAX_SDP} bytes")));
    }
    live(&state, &id).await?;
    let now = state.clock.now().timestamp_millis();
    audit::record(state.db.pool(), now, &actor(&auth), action(body.mode), Some(&id), "").await?;
    tracing::info!(call_id = %id, supervisor = %auth.user.name, mode = body.mode.as_str(), "a supervisor joins the call");
    let sdp = state.phone.monitor(&id, auth.user.id, body.sdp, body.mode).await.map_err(phone_error)?;
    Ok(Json(MonitorAnswer { sdp }))
}

/// `PUT /api/calls/{id}/monitor`
pub async fn switch(
    AsSupervisor(auth): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SwitchMonitor>,
) -> Result<StatusCode, AppError> {
    live(&state, &id).await?;
    let now = state.clock.now().timestamp_millis();
    audit::record(state.db.pool(), now, &actor(&auth), action(body.mode), Some(&id), "").await?;
    tracing::info!(call_id = %id, supervisor = %auth.user.name, mode = body.mode.as_str(), "a supervisor switches mode");
    state.phone.set_monitor(&id, auth.user.id, body.mode).await.map_err(phone_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/calls/{id}/monitor`
pub async fn end(
    AsSupervisor(auth): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    // Through the relay only to the node the call's row names (none: nobody monitors it).
    if !state.phone.carries(&id) {
        let node: Option<(Option<String>,)> = sqlx::query_as("SELECT node_id FROM calls WHERE call_id = $1")
            .bind(&id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(crate::db::DbError::from)?;
        if !(state.phone.relays() && node.is_some_and(|(n,)| n.is_some())) {
            return Err(phone_error(PhoneError::NoSuchCall));
        }
    }
    state.phone.end_monitor(&id, auth.user.id).await.map_err(phone_error)?;
    let now = state.clock.now().timestamp_millis();
    audit::record(state.db.pool(), now, &actor(&auth), AuditAction::MonitorEnd, Some(&id), "").await?;
    Ok(StatusCode::NO_CONTENT)
}
