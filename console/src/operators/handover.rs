//! The blind hand-over to a queue ("Passa alla coda" / "Hand over to queue"), warm transfer's
//! sibling: `POST /api/calls/{id}/handover` (`{"language": "fr", "area": "lavoro"}`, `area`
//! optional) — the call's own operator sends the caller to the queue of another language or
//! area and leaves (wrap-up). The caller hears the hold audio again and waits in that queue in
//! the place they first took: the engine's `HandedOver` keeps the stay's entry time and
//! priority, and the queue's row (`queue_entries`, re-enqueued by the call runtime's upsert) keeps
//! its `entered_at`, which orders the queue and measures the wait.
//!
//! How each channel is put back: a SIP call's control task (on the node that carries its media:
//! this one, or another reached through the phone's relay on PostgreSQL) records the step, then
//! unbridges the caller from the operator's browser leg back to the hold audio
//! (`media::Phone::requeue`). A JSON-webhook or TwiML call has the step recorded here as the
//! server's (`Origin::Server`; its actions wait for the carrier's next request, as an operator
//! assignment's do); the operator's browser leg, if this node carries it, hangs up, and the
//! carrier's report of the ended transfer (`transfer.ended`; TwiML's `<Dial>` action) gets the
//! queue's actions. The step is in the call's timeline (the engine's `handed_over` step and the
//! audit log's `hand_over`, whose detail is the queue).

use super::hub;
use super::presence::{self, Change, PresenceState};
use super::protocol::{CallState, CallUpdate, ServerMessage};
use super::{mediation, queue_service, ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::calls::{CallRequest, Origin};
use crate::db::audit::{self, AuditAction};
use crate::db::users::User;
use crate::db::DbError;
use crate::error::AppError;
use crate::extract::JsonBody;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use ivr::domain::{CallId, Language, ServiceArea};
use ivr::engine::{Event, Wait};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new().route("/api/calls/{id}/handover", post(hand_over))
}

/// `POST /api/calls/{id}/handover`: the queue the caller goes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandOver {
    pub language: Language,
    #[serde(default)]
    pub area: Option<ServiceArea>,
}

impl HandOver {
    /// The queue as the audit log and the engine's log name it: `fr` or `fr/lavoro`.
    pub fn queue(&self) -> String {
        match self.area {
            Some(a) => format!("{}/{}", self.language.as_str(), a.as_str()),
            None => self.language.as_str().to_owned(),
        }
    }
}

/// `POST /api/calls/{id}/handover` (the call's own operator).
async fn hand_over(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<HandOver>,
) -> Result<StatusCode, AppError> {
    let call_id = CallId::parse(&id).map_err(|_| AppError::NotFound(format!("no call {id:?}")))?;
    let row: Option<(Option<i64>, String, Option<String>)> =
        sqlx::query_as("SELECT ended_at, channel, node_id FROM calls WHERE call_id = $1")
            .bind(&id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
    let (channel, node) = match row {
        None => return Err(AppError::NotFound(format!("no call {id:?}"))),
        Some((Some(_), ..)) => return Err(AppError::Conflict(format!("call {id:?} has ended"))),
        Some((None, channel, node)) => (channel, node),
    };
    if !mediation::holds_call(&state, &id, auth.user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let open: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM mediations WHERE call_id = $1 AND joined_at IS NOT NULL AND left_at IS NULL",
    )
    .bind(&id)
    .fetch_one(state.db.pool())
    .await
    .map_err(DbError::from)?;
    if open.0 > 0 {
        return Err(AppError::Conflict("a mediator or a colleague is on the call: let them leave first".into()));
    }
    let engine = state.calls.state(&call_id).await.map_err(|e| AppError::Internal(e.into()))?;
    if !engine.is_some_and(|s| s.wait == Wait::Transfer) {
        return Err(AppError::Conflict(format!("call {id:?} is not with an operator")));
    }
    let sip = channel == "sip";
    if sip && !(state.phone.carries(&id) || state.phone.relays() && node.is_some()) {
        return Err(AppError::Conflict(format!("call {id:?} is not talking to a browser phone on this server")));
    }

    // The operator leaves first (wrap-up), so the queue service never takes the caller waiting
    // again for a transfer that failed while they are still on the call.
    queue_service::wrap_up(&state, &auth.user, &id).await?;
    let event = Event::HandedOver { language: body.language, area: body.area };
    let recorded = if sip {
        match state.phone.requeue(&id, auth.user.id, event).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(call_id = %id, error = %e, "the call's node did not hand the caller over");
                false
            }
        }
    } else {
        let req = CallRequest {
            call_id: call_id.clone(),
            event: event.clone(),
            now: state.clock.now(),
            key: None,
            carrier_seq: None,
            origin: Origin::Server,
            sealed_number: None,
            reason: None,
        };
        match state.calls.handle(req).await {
            Ok(_) => {
                // The browser leg the carrier transferred to, if it is here: our BYE ends the
                // carrier's `<Dial>` (or its transfer), which asks for what comes next.
                if state.phone.carries(&id) {
                    let _ = state.phone.requeue(&id, auth.user.id, event).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!(call_id = %id, error = %e, "the call runtime refused the hand-over");
                false
            }
        }
    };
    if !recorded {
        back_on_call(&state, &auth.user, &id).await?;
        return Err(AppError::Unavailable("the hand-over could not be recorded; the call is still yours".into()));
    }

    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    // Waiting again, as after a failed transfer: whoever accepts it next answers it.
    sqlx::query("UPDATE calls SET operator_id = NULL, answered_at = NULL WHERE call_id = $1 AND operator_id = $2")
        .bind(&id)
        .bind(auth.user.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    audit::record_by_id(&mut *tx, now_ms, auth.user.id, AuditAction::HandOver, Some(&id), &body.queue()).await?;
    hub::commit(hub, tx, true).await?;
    state.console.kick();
    tracing::info!(call_id = %id, operator = %auth.user.name, queue = %body.queue(), "handed over to another queue");
    Ok(StatusCode::NO_CONTENT)
}

/// The hand-over did not happen: the operator is on the call again.
async fn back_on_call(state: &OperatorsState, user: &User, id: &str) -> Result<(), AppError> {
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let change = Change { call_id: Some(id.to_owned()), ..Change::to(PresenceState::OnCall) };
    presence::set(&mut tx, user.id, &change, Some(&[PresenceState::WrapUp]), now_ms).await?;
    let call = ServerMessage::Call(CallUpdate {
        call_id: id.to_owned(),
        state: CallState::Connected,
        offer_id: None,
        device: None,
        pop: None,
    });
    hub::write(&mut tx, &hub::user(user.id), &call, now_ms).await?;
    hub::commit(hub, tx, true).await?;
    Ok(())
}
