//! Callbacks the helpline places itself: the console's "Richiama" / "Call back" button.
//!
//! `POST /api/callbacks/{id}/call` (operators) carries the page's WebRTC offer. One conditional
//! `UPDATE` claims the request and marks it being called (`callbacks.calling_at`): of two
//! operators clicking on the same request, one changes the row and the other gets `409` with a
//! clear message, so a person is called once. The caller's sealed number is opened here, inside
//! the server, and goes nowhere but into the INVITE (`sip::trunk`); the page gets the SDP answer
//! of its leg. The attempt then runs on this node (`attempt.rs`): the call rings (the page plays
//! ringback, and a trunk's early media crosses the bridge), and once answered the operator's
//! browser leg is bridged to the callee's RTP by the media thread's bridge, G.711 both legs.
//!
//! Every attempt is a row of `callback_attempts` (a step of the call's timeline) with how it
//! ended; a callee that was not reached puts the request back in the list (unclaimed), and after
//! `callback_max_attempts` such attempts it is closed as unreachable (`status = 'failed'`) and its
//! sealed number wiped; a reached callee closes it as done, wiping the number too.
//!
//! Which interface places the call follows from the caller's channel (`route.rs`); with none, the
//! button answers 503 saying what is missing, and the request is left untouched.
//!
//! `GET /api/callbacks/{id}/call` is the attempt's state for the page (from the database: any
//! node answers it); `POST /api/callbacks/{id}/hangup` ends this node's attempt (the page closing
//! its phone ends it too, wherever the attempt runs: its leg closes).

mod attempt;
mod carrier_call;
mod route;

use crate::auth::AsOperator;
use crate::calls::nodes::NodeId;
use crate::calls::sealed::{NumberSeal, SealedNumber};
use crate::carrier::{Carrier, SignedCalls};
use crate::clock::{rfc3339, Clock};
use crate::config::Settings;
use crate::db::audit::{self, Actor, AuditAction};
use crate::db::Db;
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::media::Phone;
use crate::sip::trunk::Trunk;
use axum::extract::{FromRef, Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use ivr::domain::CallId;
use ivr::sdp::Codec;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The law both legs of a callback speak (offered alone to the trunk, so the bridge never
/// transcodes): A-law, what European trunks carry.
pub const CALLBACK_CODEC: Codec = Codec::Pcma;

/// What the callback handlers need.
pub struct CallbackState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub phone: Phone,
    pub seal: NumberSeal,
    /// `None`: no trunk configured.
    pub trunk: Option<Trunk>,
    /// `None`: no Twilio-compatible account configured (`route.rs` says what each allows).
    pub carrier: Option<Carrier>,
    /// `None`: no `HELPLINE_CARRIER_CALLS_URL`.
    pub calls_url: Option<SignedCalls>,
    /// This node: written on the attempts it runs, so that a node that dies mid-attempt does
    /// not hold the request.
    pub node: NodeId,
    /// The attempts running on this node, by callback id: how to hang each up.
    running: Mutex<HashMap<i64, mpsc::UnboundedSender<Signal>>>,
}

/// What an attempt running on this node is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// The operator hangs up.
    Hangup,
    /// The carrier reported the call's end (its status callback reached this node).
    Over,
}

impl CallbackState {
    pub fn new(
        db: Db,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        phone: Phone,
        seal: NumberSeal,
        trunk: Option<Trunk>,
        node: NodeId,
    ) -> CallbackState {
        let running = Mutex::new(HashMap::new());
        CallbackState { db, settings, clock, phone, seal, trunk, carrier: None, calls_url: None, node, running }
    }

    /// Callbacks may go through `carrier`'s REST API (`route.rs` says when).
    pub fn with_carrier(self, carrier: Option<Carrier>) -> CallbackState {
        CallbackState { carrier, ..self }
    }

    /// JSON-API callers' callbacks may be asked of `HELPLINE_CARRIER_CALLS_URL` (`route.rs`).
    pub fn with_calls_url(self, calls_url: Option<SignedCalls>) -> CallbackState {
        CallbackState { calls_url, ..self }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, mpsc::UnboundedSender<Signal>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<CallbackState>: FromRef<S>,
{
    Router::new()
        .route("/api/callbacks/{id}/call", post(call).get(status))
        .route("/api/callbacks/{id}/hangup", post(hangup))
        .route(carrier_call::ANSWER_PATH, post(carrier_call::answer))
        .route(carrier_call::STATUS_PATH, post(carrier_call::status))
        .route(carrier_call::DIALED_PATH, post(carrier_call::dialed))
        .route(carrier_call::SIGNED_STATUS_PATH, post(carrier_call::signed_status))
}

pub use carrier_call::{CallsUrlCallStatus, CallsUrlRequest, CallsUrlStatus};

/// How a callback is placed.
enum Via {
    Trunk(Trunk),
    Carrier(carrier_call::Placer),
}

/// The page's phone: its SDP offer (as for `phone_offer`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    pub sdp: String,
}

/// The most an SDP offer may be.
const MAX_SDP: usize = 16 * 1024;

async fn call(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<CallbackState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CallRequest>,
) -> Result<Json<Value>, AppError> {
    let channel: Option<(String,)> =
        sqlx::query_as("SELECT c.channel FROM callbacks b JOIN calls c ON c.call_id = b.call_id WHERE b.id = $1")
            .bind(id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(db_error)?;
    let channel = channel.map(|(c,)| c).unwrap_or_default();
    let unconfigured =
        |what: &str| AppError::Internal(anyhow::anyhow!("a callback routed to a {what} that is not configured"));
    let via = match route::route(&channel, state.trunk.is_some(), state.carrier.is_some(), state.calls_url.is_some()) {
        route::Route::Trunk => Via::Trunk(state.trunk.clone().ok_or_else(|| unconfigured("trunk"))?),
        route::Route::Carrier => {
            if state.settings.trunk_caller_id.trim().is_empty() {
                return Err(AppError::Unavailable(
                    "callbacks through the carrier need the number they come from (HELPLINE_TRUNK_CALLER_ID): \
                     call back by phone"
                        .into(),
                ));
            }
            let carrier = state.carrier.clone().ok_or_else(|| unconfigured("carrier"))?;
            Via::Carrier(carrier_call::Placer::Twilio(carrier))
        }
        route::Route::CallsUrl => {
            let calls = state.calls_url.clone().ok_or_else(|| unconfigured("HELPLINE_CARRIER_CALLS_URL"))?;
            Via::Carrier(carrier_call::Placer::Signed(calls))
        }
        route::Route::Unavailable(why) => return Err(AppError::Unavailable(why)),
    };
    if body.sdp.trim().is_empty() || body.sdp.len() > MAX_SDP {
        return Err(AppError::BadRequest(format!("sdp must be 1 to {MAX_SDP} bytes")));
    }
    let now = state.clock.now().timestamp_millis();
    let started = attempt::start(&state, id, auth.user.id, &auth.user.name, now).await?;
    let call_id = CallId::parse(&started.call_id).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let number = match started.sealed.clone().map(SealedNumber::from_stored) {
        // The carrier's calls interface is never sent a number: it knows its caller's.
        _ if matches!(via, Via::Carrier(carrier_call::Placer::Signed(_))) => Ok(None),
        Some(sealed) => state.seal.open(&call_id, &sealed).map(Some).map_err(|e| ("undecryptable", e.to_string())),
        // A JSON-webhook call's number is known to its carrier only (docs/operators.md).
        None => Err(("no_number", "the helpline does not keep this caller's number: the carrier knows it".to_owned())),
    };
    let number = match number {
        Ok(n) => n,
        Err((result, why)) => {
            tracing::warn!(call_id = %call_id, callback = id, reason = %why, "a callback's number cannot be used");
            attempt::finish(&state, &started, now, attempt::Outcome::NotPlaced(result)).await?;
            return Err(AppError::Conflict(format!(
                "this caller's number cannot be used ({why}); the request stays in the list"
            )));
        }
    };
    let (leg, answer) = match state.phone.outgoing_leg(CALLBACK_CODEC, body.sdp).await {
        Ok(l) => l,
        Err(e) => {
            attempt::finish(&state, &started, now, attempt::Outcome::NotPlaced("page_failed")).await?;
            return Err(AppError::BadRequest(format!("the browser phone cannot be connected: {e}")));
        }
    };
    let (control, hangup) = mpsc::unbounded_channel();
    state.running().insert(id, control);
    let attempt_id = started.attempt_id;
    let task_state = state.clone();
    let span = tracing::info_span!("callback", call_id = %call_id, callback = id);
    match (via, number) {
        (Via::Trunk(trunk), Some(number)) => {
            tokio::spawn(tracing::Instrument::instrument(
                attempt::run(task_state, trunk, started, number, leg, hangup),
                span,
            ));
        }
        (Via::Trunk(_), None) => {
            return Err(AppError::Internal(anyhow::anyhow!("a trunk's callback without its number")));
        }
        (Via::Carrier(carrier), number) => {
            let placed = carrier_call::Placed {
                base_url: carrier_call::base_url(&state.settings, &headers),
                operator: auth.user.name.clone(),
            };
            tokio::spawn(tracing::Instrument::instrument(
                carrier_call::run(task_state, carrier, placed, started, number, leg, hangup),
                span,
            ));
        }
    }
    Ok(Json(json!({ "id": id, "attempt": attempt_id, "sdp": answer })))
}

/// The request's state for the page.
async fn status(
    _: AsOperator,
    State(state): State<Arc<CallbackState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    type Row = (String, Option<String>, i64, Option<String>, Option<i64>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT status, call_state, CAST(attempts AS BIGINT), last_result, last_attempt_at, calling_at \
         FROM callbacks WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await
    .map_err(db_error)?;
    let Some((status, call_state, attempts, last_result, last_at, calling_at)) = row else {
        return Err(AppError::NotFound("no such callback".into()));
    };
    Ok(Json(json!({
        "id": id,
        "status": status,
        "call_state": call_state,
        "calling_since": calling_at.map(rfc3339),
        "attempts": attempts,
        "max_attempts": state.settings.callback_max_attempts.max(1),
        "last_result": last_result,
        "last_attempt_at": last_at.map(rfc3339),
    })))
}

/// Ends the attempt running on this node for the request.
async fn hangup(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<CallbackState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    let mine: Option<(Option<i64>,)> = sqlx::query_as("SELECT calling_by FROM callbacks WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(db_error)?;
    if mine.and_then(|(by,)| by) != Some(auth.user.id) {
        return Err(AppError::Conflict("you are not calling this person back".into()));
    }
    let control = state.running().get(&id).cloned();
    match control {
        Some(c) if c.send(Signal::Hangup).is_ok() => Ok(Json(json!({ "id": id, "hangup": true }))),
        _ => Err(AppError::Conflict(
            "this callback's call is carried by another server: close the phone to hang up".into(),
        )),
    }
}

fn db_error(e: sqlx::Error) -> AppError {
    AppError::from(crate::db::DbError::Query(e))
}

/// The audit row of a callback placed (in the transaction that claims it).
async fn audit_placed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: i64,
    user: (i64, &str),
    call_id: &str,
    id: i64,
) -> Result<(), AppError> {
    let actor = Actor::user(user.0, user.1);
    let detail = json!({ "callback": id, "call": "placed" }).to_string();
    audit::record(&mut **tx, now, &actor, AuditAction::ClaimCallback, Some(call_id), &detail).await?;
    Ok(())
}
