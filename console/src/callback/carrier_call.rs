//! A callback placed through a Twilio-compatible carrier's REST API (`route.rs` says when).
//!
//! The operator's browser leg is built when they click "Call back" (the page plays ringback
//! meanwhile). The node then asks the carrier to call the person (`Calls.json`: `To` the number
//! opened from its seal, `From` `HELPLINE_TRUNK_CALLER_ID`, `Url` and `StatusCallback` on this
//! server). When the callee answers, the carrier requests `Url` (any node answers it, from the
//! database) and gets `<Dial><Sip>` to the operator's own address on the node holding the browser
//! leg, `sip:op-<user>@<node>;token=<token>`, the token unguessable and good for this attempt
//! only. That INVITE claims the leg (`Phone::take_callback`): it is answered in the leg's law and
//! bridged at once (`sip::operator_leg`).
//!
//! The carrier's status callback (signed as every TwiML request, `X-Twilio-Signature`) ends the
//! attempt, on whichever node it reaches, from the database: `completed` reached, `busy`,
//! `no-answer` and `failed` not reached (counted towards `callback_max_attempts`), `canceled` not
//! placed; `ringing` and `in-progress` are the call's state for the page. The operator hanging up
//! while it rings ends the carrier's call (`Calls/{Sid}.json`, `Status=completed`); once
//! answered, the SIP leg's `BYE` does.
//!
//! A JSON-API caller's callback with no trunk goes the same way through the carrier's own calls
//! interface (`HELPLINE_CARRIER_CALLS_URL`, `carrier::SignedCalls`): a signed
//! [`CallsUrlRequest::Place`] names the carrier's call id (the helpline keeps no number of such
//! callers) and the SIP address to dial once the person answers; the carrier reports back with
//! signed [`CallsUrlStatus`] requests to `POST /voice/callbacks/{attempt}/status`, and a
//! [`CallsUrlRequest::End`] ends a call the operator left while it rang.

use super::attempt::{self, Outcome, Started};
use super::{CallbackState, Signal, CALLBACK_CODEC};
use crate::carrier::{Carrier, CarrierError, OutboundCall, SignedCalls};
use crate::config::Settings;
use crate::media::{browser_target, LegEvent, LegHandle, MediaState, PhoneMsg};
use crate::webhook::json::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::webhook::signature::{verify_json, verify_twilio};
use crate::webhook::twiml::xml_escape;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ivr::domain::PhoneNumber;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The TwiML the carrier requests when the callee answers (`Url`).
pub(super) const ANSWER_PATH: &str = "/twiml/callbacks/{attempt}";
/// The carrier's status callback of the call (`StatusCallback`).
pub(super) const STATUS_PATH: &str = "/twiml/callbacks/{attempt}/status";
/// The `<Dial>` action: how the carrier's leg to the operator ended.
pub(super) const DIALED_PATH: &str = "/twiml/callbacks/{attempt}/dialed";
/// The carrier's signed status of a callback asked of `HELPLINE_CARRIER_CALLS_URL`.
pub(super) const SIGNED_STATUS_PATH: &str = "/voice/callbacks/{attempt}/status";
/// How long past the ring timeout the placing node waits for the carrier to say how the call
/// ended (its status callback may reach another node) before writing `no_answer` itself.
const STATUS_GRACE: Duration = Duration::from_secs(20);

/// What `HELPLINE_CARRIER_CALLS_URL` is sent (JSON, signed as the JSON API's requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallsUrlRequest {
    /// Call back the caller of `call_id` (the carrier's own call id, as its `call.started` gave
    /// it); once they answer, dial `dial` as a `transfer` action's `to`; report to `status_url`.
    #[serde(rename = "callback.place")]
    Place {
        attempt: i64,
        call_id: String,
        /// `HELPLINE_TRUNK_CALLER_ID`, when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        dial: String,
        ring_secs: u64,
        status_url: String,
    },
    /// The operator hung up before the person answered: end that call.
    #[serde(rename = "callback.end")]
    End { attempt: i64, call_id: String },
}

/// The carrier's report on a callback it places (`POST /voice/callbacks/{attempt}/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsUrlStatus {
    pub status: CallsUrlCallStatus,
}

/// A callback call's state, as the carrier reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallsUrlCallStatus {
    Ringing,
    Answered,
    /// Answered, then ended: reached.
    Completed,
    Busy,
    NoAnswer,
    Failed,
    /// Ended before an answer at our request (`callback.end`).
    Canceled,
}

/// Who places the call.
pub(super) enum Placer {
    /// A Twilio-compatible REST API (`Calls.json`).
    Twilio(Carrier),
    /// `HELPLINE_CARRIER_CALLS_URL`.
    Signed(SignedCalls),
}

/// What the placing node needs besides the attempt.
pub(super) struct Placed {
    /// Where the carrier reaches this server (`public_url`, else the page's `Host`).
    pub base_url: String,
    /// The operator's user name (their SIP address's user part).
    pub operator: String,
}

/// `public_url`, else `http://<Host>` (as the TwiML adapter computes it, so signatures agree).
pub(super) fn base_url(settings: &Settings, headers: &HeaderMap) -> String {
    if !settings.public_url.is_empty() {
        return settings.public_url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// Runs the attempt on the node that placed it, to the hand-over of the browser leg and the
/// carrier's leg's end.
pub(super) async fn run(
    state: Arc<CallbackState>,
    carrier: Placer,
    placed: Placed,
    started: Started,
    number: Option<PhoneNumber>,
    leg: LegHandle,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let claimed = state.phone.expect_callback(&token, &started.call_id, CALLBACK_CODEC);
    let outcome = carry(&state, &carrier, &placed, &token, &started, number.as_ref(), leg, claimed, &mut signals).await;
    state.phone.forget_callback(&token);
    state.running().remove(&started.callback_id);
    tracing::info!(?outcome, "callback attempt through the carrier over on this node");
    if let Some(outcome) = outcome {
        let now = state.clock.now().timestamp_millis();
        if let Err(e) = attempt::finish(&state, &started, now, outcome).await {
            tracing::error!(error = %e, "a callback attempt's end not written");
        }
    }
}

/// The attempt's outcome when this node knows it; `None` when the carrier's status callback
/// writes it.
#[allow(clippy::too_many_arguments)]
async fn carry(
    state: &CallbackState,
    carrier: &Placer,
    placed: &Placed,
    token: &str,
    started: &Started,
    number: Option<&PhoneNumber>,
    leg: LegHandle,
    mut claimed: oneshot::Receiver<oneshot::Receiver<()>>,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
) -> Option<Outcome> {
    let target = browser_target(&placed.operator, state.phone.sip_addr(), token);
    let write = sqlx::query("UPDATE callback_attempts SET dial_target = $2 WHERE id = $1")
        .bind(started.attempt_id)
        .bind(&target)
        .execute(state.db.pool());
    if let Err(e) = state.db.with_lock_turn(write).await {
        tracing::error!(error = %e, "a callback's SIP address not written");
        return Some(Outcome::NotPlaced("no_database"));
    }
    let ring_secs = state.settings.callback_ring_secs.clamp(5, 600);
    let sid = match place(state, carrier, placed, started, number, &target, ring_secs).await {
        Ok(sid) => sid,
        Err(result) => return Some(Outcome::NotReachedBy(result)),
    };
    let mut leg = Some(leg);
    let mut connected = false;
    let mut claim_refused = false;
    let mut ended: Option<oneshot::Receiver<()>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ring_secs) + STATUS_GRACE;
    loop {
        tokio::select! {
            c = &mut claimed, if ended.is_none() && !claim_refused => match c {
                Ok(alive) => {
                    let l = leg.take()?;
                    let l = if connected { replaying_connected(l) } else { l };
                    if state.phone.tell(&started.call_id, PhoneMsg::Leg(l)) {
                        tracing::info!("the carrier's leg claimed the operator's browser leg");
                        ended = Some(alive);
                    } else {
                        tracing::warn!("the carrier's leg ended before the browser leg reached it");
                        return None;
                    }
                }
                // The carrier's INVITE was refused (no common law): its call goes on without us.
                Err(_) => claim_refused = true,
            },
            event = next_event(&mut leg) => match event {
                Some(LegEvent::State(MediaState::Connected)) => connected = true,
                Some(LegEvent::State(MediaState::Failed(_) | MediaState::Closed)) | None => {
                    tracing::info!("the operator's phone closed while it rang: the carrier's call is ended");
                    return end_ringing(carrier, started, sid.as_deref()).await;
                }
                Some(_) => {}
            },
            gone = async { ended.as_mut().expect("guarded").await }, if ended.is_some() => {
                let _ = gone;
                tracing::info!("the carrier's leg of the callback ended");
                return None;
            }
            signal = signals.recv() => match signal {
                Some(Signal::Hangup) if ended.is_some() => {
                    state.phone.tell(&started.call_id, PhoneMsg::Hangup);
                }
                Some(Signal::Hangup) | None => return end_ringing(carrier, started, sid.as_deref()).await,
                Some(Signal::Over) => return None,
            },
            _ = tokio::time::sleep_until(deadline), if ended.is_none() => {
                tracing::warn!("no word from the carrier past the ring timeout: given up as not answered");
                end_ringing(carrier, started, sid.as_deref()).await;
                return Some(Outcome::NotReachedBy("no_answer"));
            }
        }
    }
}

/// Asks the carrier to place the call: its call sid (Twilio), or the attempt's result when it
/// would not.
async fn place(
    state: &CallbackState,
    carrier: &Placer,
    placed: &Placed,
    started: &Started,
    number: Option<&PhoneNumber>,
    target: &str,
    ring_secs: u64,
) -> Result<Option<String>, &'static str> {
    let attempt = started.attempt_id.to_string();
    let from = state.settings.trunk_caller_id.trim();
    let sid = match carrier {
        Placer::Twilio(carrier) => {
            let url = format!("{}{}", placed.base_url, ANSWER_PATH.replace("{attempt}", &attempt));
            let status_callback = format!("{url}/status");
            let Some(number) = number else { return Err("no_number") };
            let call = OutboundCall {
                to: number.e164(),
                from,
                url: &url,
                status_callback: Some(&status_callback),
                ring_secs: ring_secs as u32,
            };
            match carrier.create_call(&call).await {
                Ok(created) => Some(created.sid),
                Err(e) => {
                    tracing::warn!(error = %e, "the carrier did not place the callback");
                    return Err(refusal_result(&e));
                }
            }
        }
        Placer::Signed(calls) => {
            let request = CallsUrlRequest::Place {
                attempt: started.attempt_id,
                call_id: started.call_id.clone(),
                from: (!from.is_empty()).then(|| from.to_owned()),
                dial: target.to_owned(),
                ring_secs,
                status_url: format!("{}{}", placed.base_url, SIGNED_STATUS_PATH.replace("{attempt}", &attempt)),
            };
            if let Err(e) = calls.post(&request, wall_secs()).await {
                tracing::warn!(error = %e, "HELPLINE_CARRIER_CALLS_URL did not take the callback");
                return Err(refusal_result(&e));
            }
            None
        }
    };
    tracing::info!(sid = ?sid, "the carrier is placing the callback");
    if let Some(sid) = &sid {
        let write = sqlx::query("UPDATE callback_attempts SET carrier_sid = $2 WHERE id = $1")
            .bind(started.attempt_id)
            .bind(sid)
            .execute(state.db.pool());
        if let Err(e) = state.db.with_lock_turn(write).await {
            tracing::warn!(error = %e, "a callback's carrier sid not written");
        }
    }
    Ok(sid)
}

/// Ends the carrier's call before the browser leg was claimed: the operator left.
async fn end_ringing(carrier: &Placer, started: &Started, sid: Option<&str>) -> Option<Outcome> {
    let ended = match (carrier, sid) {
        (Placer::Twilio(carrier), Some(sid)) => carrier.end_call(sid).await,
        (Placer::Signed(calls), _) => {
            let request = CallsUrlRequest::End { attempt: started.attempt_id, call_id: started.call_id.clone() };
            calls.post(&request, wall_secs()).await
        }
        (Placer::Twilio(_), None) => Ok(()),
    };
    if let Err(e) = ended {
        tracing::warn!(error = %e, "the carrier's call could not be ended");
    }
    Some(Outcome::NotPlaced("operator_left"))
}

/// The carrier checks a signature's timestamp against its own clock: the wall clock's.
fn wall_secs() -> i64 {
    crate::calls::nodes::wall_ms() / 1000
}

async fn next_event(leg: &mut Option<LegHandle>) -> Option<LegEvent> {
    match leg {
        Some(l) => l.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The leg with its `Connected` (already read here) replayed first to its next reader, so the
/// carrier's operator leg bridges and answers at once.
fn replaying_connected(mut leg: LegHandle) -> LegHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(LegEvent::State(MediaState::Connected));
    let mut from = std::mem::replace(&mut leg.events, rx);
    tokio::spawn(async move {
        while let Some(event) = from.recv().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    leg
}

/// The attempt's result when the carrier refused to place the call (counted: as a trunk's
/// refusal is).
fn refusal_result(e: &CarrierError) -> &'static str {
    match e {
        CarrierError::Refused { status: 401 | 403, .. } => "carrier_auth_failed",
        CarrierError::Refused { status: 500.., .. } => "unavailable",
        CarrierError::Refused { .. } => "refused",
        _ => "carrier_unreachable",
    }
}

/// A signed request of the carrier's: its parameters, or the 403 answering it.
#[allow(clippy::result_large_err)]
fn signed(
    state: &CallbackState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Response> {
    let token = state.settings.twilio_auth_token.expose();
    let forbidden = |message: String| {
        (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({ "error": "forbidden", "message": message })))
            .into_response()
    };
    if token.is_empty() {
        return Err(forbidden("the TwiML endpoints are disabled: HELPLINE_TWILIO_AUTH_TOKEN is not set".into()));
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let url = format!("{}{path_and_query}", base_url(&state.settings, headers));
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = verify_twilio(token, &url, &params, signature) {
        tracing::warn!(reason = %e, %url, "a callback's carrier request refused");
        return Err(forbidden(format!("bad request signature: {e}")));
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// The attempt a carrier's request names, if it is still running and the call is the one placed.
async fn running_attempt(
    state: &CallbackState,
    attempt: i64,
    call_sid: Option<&str>,
) -> Result<Option<(Started, Option<String>)>, Response> {
    type Row = (i64, String, Option<String>, Option<String>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT callback_id, call_id, carrier_sid, dial_target, ended_at FROM callback_attempts WHERE id = $1",
    )
    .bind(attempt)
    .fetch_optional(state.db.pool())
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a callback attempt not read");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })?;
    let Some((callback_id, call_id, sid, target, ended_at)) = row else { return Ok(None) };
    // The sid is written once the carrier answered `Calls.json`; a request naming another call
    // changes nothing.
    if ended_at.is_some() || sid.is_some_and(|s| Some(s.as_str()) != call_sid) {
        return Ok(None);
    }
    Ok(Some((Started { callback_id, attempt_id: attempt, call_id, sealed: None }, target)))
}

/// `Url`: the callee answered; the carrier is told to ring the operator's browser leg.
pub(super) async fn answer(
    State(state): State<Arc<CallbackState>>,
    Path(attempt): Path<i64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let doc = match running_attempt(&state, attempt, Some(param(&params, "CallSid"))).await {
        Err(r) => return r,
        Ok(Some((_, Some(target)))) => {
            let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
            let action = format!("{}{path_and_query}/dialed", base_url(&state.settings, &headers));
            format!(
                "<Response><Dial action=\"{}\" method=\"POST\"><Sip>{}</Sip></Dial></Response>",
                xml_escape(&action),
                xml_escape(&target)
            )
        }
        // Over (the operator left, or another request already ended it): nobody to bridge.
        Ok(_) => "<Response><Hangup/></Response>".to_owned(),
    };
    let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{doc}");
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], doc).into_response()
}

/// The `<Dial>` action (`DialCallStatus`): when the operator's leg was never connected (the
/// page's phone failed, the INVITE was refused), the callee was reached but nobody spoke to them:
/// the attempt ends as `page_failed` (not counted; the request stays in the list), before the
/// carrier's `completed` would log it as reached. The call is hung up either way.
pub(super) async fn dialed(
    State(state): State<Arc<CallbackState>>,
    Path(attempt): Path<i64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let dial_status = param(&params, "DialCallStatus");
    if !matches!(dial_status, "completed" | "answered") {
        match running_attempt(&state, attempt, Some(param(&params, "CallSid"))).await {
            Err(r) => return r,
            Ok(Some((started, _))) => {
                tracing::warn!(
                    callback = started.callback_id,
                    dial_status,
                    "the carrier could not reach the operator's leg"
                );
                let now = state.clock.now().timestamp_millis();
                if let Err(e) = attempt::finish(&state, &started, now, Outcome::NotPlaced("page_failed")).await {
                    tracing::error!(error = %e, "a callback attempt's end not written");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                let running = state.running().get(&started.callback_id).cloned();
                if let Some(running) = running {
                    let _ = running.send(Signal::Over);
                }
            }
            Ok(None) => {}
        }
    }
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], doc).into_response()
}

/// `StatusCallback`: the call's progress, and its end written from the database.
pub(super) async fn status(
    State(state): State<Arc<CallbackState>>,
    Path(attempt): Path<i64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed(&state, &uri, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    progress(&state, attempt, Some(param(&params, "CallSid")), param(&params, "CallStatus")).await
}

/// A call's progress in Twilio's terms (`CallStatus`), for the attempt; `call_sid` when the
/// carrier names its call.
async fn progress(state: &Arc<CallbackState>, attempt: i64, call_sid: Option<&str>, call_status: &str) -> Response {
    let outcome = match call_status {
        "queued" | "initiated" | "ringing" | "in-progress" | "answered" => None,
        "completed" => Some(Outcome::Reached),
        "busy" => Some(Outcome::NotReachedBy("busy")),
        "no-answer" => Some(Outcome::NotReachedBy("no_answer")),
        "failed" => Some(Outcome::NotReachedBy("failed")),
        "canceled" => Some(Outcome::NotPlaced("operator_left")),
        other => {
            let message = format!("CallStatus {other:?} is not one of Twilio's call statuses");
            let body = serde_json::json!({ "error": "bad_request", "message": message });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let started = match running_attempt(state, attempt, call_sid).await {
        Err(r) => return r,
        Ok(Some((started, _))) => started,
        // Already over, or not ours: acknowledged (the carrier would retry an error).
        Ok(None) => return StatusCode::NO_CONTENT.into_response(),
    };
    tracing::info!(callback = started.callback_id, call_status, "the carrier's status of a callback");
    let Some(outcome) = outcome else {
        let call_state = match call_status {
            "ringing" => "ringing",
            "in-progress" | "answered" => "talking",
            _ => "dialing",
        };
        attempt::set_call_state(state, started.callback_id, call_state).await;
        return StatusCode::NO_CONTENT.into_response();
    };
    let now = state.clock.now().timestamp_millis();
    if let Err(e) = attempt::finish(state, &started, now, outcome).await {
        tracing::error!(error = %e, "a callback attempt's end not written");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let running = state.running().get(&started.callback_id).cloned();
    if let Some(running) = running {
        let _ = running.send(Signal::Over);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /voice/callbacks/{attempt}/status`: `HELPLINE_CARRIER_CALLS_URL`'s report on a callback
/// it places, signed as the JSON API's requests.
pub(super) async fn signed_status(
    State(state): State<Arc<CallbackState>>,
    Path(attempt): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = state.settings.webhook_secret.expose();
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = state.clock.now().timestamp();
    let checked = if key.is_empty() {
        Err("HELPLINE_WEBHOOK_SECRET is not set".to_owned())
    } else {
        verify_json(key.as_bytes(), header_str(TIMESTAMP_HEADER), header_str(SIGNATURE_HEADER), &body, now)
            .map_err(|e| e.to_string())
    };
    if let Err(why) = checked {
        tracing::warn!(reason = %why, "a callback status refused");
        let body = serde_json::json!({ "error": "forbidden", "message": format!("bad request signature: {why}") });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let report: CallsUrlStatus = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::json!({ "error": "bad_request", "message": format!("malformed status: {e}") });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let twilio = match report.status {
        CallsUrlCallStatus::Ringing => "ringing",
        CallsUrlCallStatus::Answered => "in-progress",
        CallsUrlCallStatus::Completed => "completed",
        CallsUrlCallStatus::Busy => "busy",
        CallsUrlCallStatus::NoAnswer => "no-answer",
        CallsUrlCallStatus::Failed => "failed",
        CallsUrlCallStatus::Canceled => "canceled",
    };
    progress(&state, attempt, None, twilio).await
}
