//! `POST /voice/events`: our JSON call-event API. A carrier or PBX posts each call event with the
//! call id and a per-call sequence number (1, 2, 3…), signed with `HELPLINE_WEBHOOK_SECRET`; the
//! answer lists what to do next. A retried event (same call and sequence) gets the same answer and
//! the call advances once. See `docs/webhooks.md` and `/openapi.json`.

use super::actions::{to_carrier, CarrierAction};
use super::signature::{self, verify_json};
use super::WebhookState;
use super::{base_url, caller_stand_in, fingerprint};
use crate::calls::{CallError, CallRequest, Origin, RequestKey};
use crate::error::AppError;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use ivr::domain::{CallId, Caller, DtmfDigits, PhoneNumber};
use ivr::engine::{Channel, Event};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const TIMESTAMP_HEADER: &str = "x-helpline-timestamp";
pub const SIGNATURE_HEADER: &str = "x-helpline-signature";
/// The largest event body: a `recording` of a minute at 8 kHz 16-bit, in base64, fits with room.
pub const MAX_EVENT_BYTES: usize = 3 * 1024 * 1024;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<WebhookState>: FromRef<S>,
{
    Router::new()
        .route("/voice/events", post(voice_event).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)))
        .route("/openapi.json", axum::routing::get(openapi))
}

/// The OpenAPI document of the JSON call-event API, generated from these types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "helpline call-event API",
        description = "A carrier or PBX posts each call event and gets back the actions to carry out. See docs/webhooks.md.",
    ),
    paths(voice_event),
    components(schemas(EventRequest, EventResponse, CarrierAction, ErrorBody))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// One call event, as the carrier posts it. `type` selects the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[schema(example = json!({"type": "digits", "call_id": "c-20261124-0001", "seq": 2, "digits": "3"}))]
pub enum EventRequest {
    /// A call reached the helpline. `from`: the caller's number (E.164; absent or unparseable
    /// means withheld). `to`: the number called.
    #[serde(rename = "call.started")]
    CallStarted { call_id: String, seq: i64, from: Option<String>, to: Option<String> },
    /// Keys gathered (with the finish key, if pressed).
    #[serde(rename = "digits")]
    Digits { call_id: String, seq: i64, digits: String },
    /// A gather timed out with no key.
    #[serde(rename = "no_input")]
    NoInput { call_id: String, seq: i64 },
    /// The prompts sent last have finished playing.
    #[serde(rename = "prompt.finished")]
    PromptFinished { call_id: String, seq: i64 },
    /// A transfer to an operator failed (busy, no answer…): the caller goes back to the queue.
    #[serde(rename = "transfer.failed")]
    TransferFailed { call_id: String, seq: i64, reason: Option<String> },
    /// The caller's voice message, after a `record` action: `audio` is the recording as a WAV
    /// file (16-bit PCM, or G.711 µ-law or A-law; 8 kHz, other rates are resampled) in standard
    /// base64; absent or empty when the caller left nothing. At most `voicemail_max_secs` (+1 s)
    /// long and 3 MiB of body. An empty, silent, unreadable or too long recording is not stored
    /// (the callback request still is). A caller who hung up while recording: send this event
    /// (with what was recorded), not `call.ended`.
    #[serde(rename = "recording")]
    Recording {
        call_id: String,
        seq: i64,
        #[serde(default)]
        audio: Option<String>,
    },
    /// The caller hung up (or the call ended otherwise).
    #[serde(rename = "call.ended")]
    CallEnded { call_id: String, seq: i64 },
    /// A transfer's leg ended with the caller still on the line: the operator hung up, or the
    /// helpline ended the operator's leg because the operator handed the caller over to another
    /// queue ("Passa alla coda"). A caller handed over is back in the queue: the answer carries
    /// the queue's actions (its welcome, `enqueue`, the hold); otherwise the call is over, as
    /// after `call.ended`.
    #[serde(rename = "transfer.ended")]
    TransferEnded { call_id: String, seq: i64 },
}

impl EventRequest {
    fn ids(&self) -> (&str, i64) {
        match self {
            EventRequest::CallStarted { call_id, seq, .. }
            | EventRequest::Digits { call_id, seq, .. }
            | EventRequest::NoInput { call_id, seq }
            | EventRequest::PromptFinished { call_id, seq }
            | EventRequest::TransferFailed { call_id, seq, .. }
            | EventRequest::Recording { call_id, seq, .. }
            | EventRequest::CallEnded { call_id, seq }
            | EventRequest::TransferEnded { call_id, seq } => (call_id, *seq),
        }
    }
}

/// What the carrier must do next.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "call_id": "c-20261124-0001", "seq": 2, "ended": false,
    "actions": [
        {"type": "play", "url": "https://helpline.example.org/prompts/fr/cap-ask.wav", "prompt": "cap-ask", "language": "fr-FR"},
        {"type": "gather", "max_digits": 5, "timeout_ms": 6000, "inter_digit_timeout_ms": 3000, "finish_on_key": "#"}
    ]
}))]
pub struct EventResponse {
    pub call_id: String,
    pub seq: i64,
    pub actions: Vec<CarrierAction>,
    /// The call is over: no further events are expected.
    pub ended: bool,
}

/// Posts one call event and returns what to do next.
#[utoipa::path(
    post,
    path = "/voice/events",
    tag = "calls",
    request_body(content = EventRequest, content_type = "application/json", description = "One call event; sign it"),
    params(
        ("X-Helpline-Timestamp" = i64, Header, description = "Unix seconds when the request was signed (accepted within ±300 s)"),
        ("X-Helpline-Signature" = String, Header, description = "`v1=` + hex HMAC-SHA256 under the webhook secret of `<timestamp>.<body>`"),
    ),
    responses(
        (status = 200, description = "The actions, in order", body = EventResponse),
        (status = 413, description = "The body is larger than 3 MiB", body = ErrorBody),
        (status = 400, description = "Malformed body or invalid field (the message names it)", body = ErrorBody),
        (status = 403, description = "Missing, stale or wrong signature; the event is not processed", body = ErrorBody),
        (status = 404, description = "Unknown call (a call begins with call.started)", body = ErrorBody),
        (status = 409, description = "Event out of sequence, a call started twice, or a reused sequence number with another event", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 503, description = "Busy: the calls' writers are behind (their queue is full, or the request was not written within `call_deadline_ms`); retry after `Retry-After` seconds with the same body", body = ErrorBody),
    )
)]
pub async fn voice_event(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventResponse>, AppError> {
    let now = state.clock.now();
    // 1. Who is asking: nothing unsigned goes further.
    let key = state.settings.webhook_secret.expose();
    if key.is_empty() {
        tracing::warn!("JSON webhook request refused: HELPLINE_WEBHOOK_SECRET is not set");
        return Err(AppError::Forbidden("the JSON webhook is disabled: HELPLINE_WEBHOOK_SECRET is not set".into()));
    }
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) =
        verify_json(key.as_bytes(), header_str(TIMESTAMP_HEADER), header_str(SIGNATURE_HEADER), &body, now.timestamp())
    {
        tracing::warn!(reason = %e, "JSON webhook request refused");
        return Err(AppError::Forbidden(format!("bad request signature: {e}")));
    }

    // 2. What it says.
    let content_type = header_str(header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !content_type.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(AppError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got {:?}",
            content_type
        )));
    }
    let request: EventRequest =
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("invalid call event: {e}")))?;
    let (raw_call_id, seq) = request.ids();
    let call_id = CallId::parse(raw_call_id).map_err(|e| AppError::BadRequest(format!("call_id: {e}")))?;
    if seq < 1 {
        return Err(AppError::BadRequest(format!("seq: must be 1 or more, got {seq}")));
    }
    let event = match &request {
        EventRequest::CallStarted { from, to, .. } => Event::CallStarted {
            channel: Channel::Webhook,
            caller: from
                .as_deref()
                .and_then(|f| PhoneNumber::parse(f).ok())
                .map(|n| Caller::from_number(&n, &state.secret)),
            called: to.clone(),
        },
        EventRequest::Digits { digits, .. } => {
            Event::Digits(DtmfDigits::parse(digits).map_err(|e| AppError::BadRequest(format!("digits: {e}")))?)
        }
        EventRequest::NoInput { .. } => Event::NoInput,
        EventRequest::PromptFinished { .. } => Event::PromptFinished,
        EventRequest::TransferFailed { reason, .. } => {
            Event::TransferFailed { reason: reason.clone().unwrap_or_else(|| "unspecified".into()) }
        }
        EventRequest::Recording { audio, .. } => {
            let bytes = match audio.as_deref().filter(|a| !a.is_empty()) {
                Some(a) => base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|e| AppError::BadRequest(format!("audio: not base64: {e}")))?,
                None => Vec::new(),
            };
            // Stored before the engine hears of it (as the SIP adapter does), and only while the
            // call waits for it: a retry after the answer finds the call moved on and stores
            // nothing twice.
            let waiting = matches!(
                state.calls.state(&call_id).await.map_err(call_error)?,
                Some(s) if s.wait == ivr::engine::Wait::Recording
            );
            let duration_ms = if waiting && !bytes.is_empty() {
                super::recording::keep(&state, &call_id, &bytes, "json").await?.unwrap_or(0)
            } else {
                if waiting {
                    tracing::warn!(call_id = %call_id.as_str(), "recording event without audio: the callback request is kept without a message");
                }
                0
            };
            Event::Recorded { duration_ms }
        }
        EventRequest::CallEnded { .. } => Event::HungUp,
        EventRequest::TransferEnded { .. } => {
            // Still with the operator: the conversation is over. Handed over to another queue:
            // the server recorded it and left the queue's actions for this request, which adds
            // nothing to them (the engine only notes it).
            match state.calls.state(&call_id).await.map_err(call_error)? {
                Some(s) if s.wait == ivr::engine::Wait::Transfer => Event::HungUp,
                Some(s) if s.ended() => Event::HungUp,
                _ => Event::PromptFinished,
            }
        }
    };

    // 3. Run it (durably), then answer.
    // The fingerprint covers the request with the caller's number replaced by its keyed hash.
    let mut keyed = request.clone();
    if let EventRequest::CallStarted { from: Some(from), .. } = &mut keyed {
        *from = caller_stand_in(&state.secret, from);
    }
    let canonical = serde_json::to_vec(&keyed).map_err(|e| AppError::Internal(e.into()))?;
    let handled = state
        .calls
        .handle(CallRequest {
            call_id: call_id.clone(),
            event,
            now,
            key: Some(RequestKey {
                key: format!("json:{seq}"),
                fingerprint: fingerprint(&state.secret, &[&canonical]),
            }),
            carrier_seq: Some(seq),
            origin: Origin::Carrier,
            sealed_number: None,
            reason: None,
        })
        .await
        .map_err(call_error)?;
    let actions = to_carrier(
        &handled.answer.actions,
        &base_url(&state, &headers),
        &state.voice.catalog,
        state.settings.voicemail_max_secs,
    )?;
    Ok(Json(EventResponse { call_id: call_id.as_str().to_owned(), seq, actions, ended: handled.answer.ended }))
}

/// Every error answer: a code and a message saying what is wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "conflict", "message": "event out of sequence for call c1: expected seq 3, got 5"}))]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// The runtime's refusals as HTTP errors.
pub fn call_error(e: CallError) -> AppError {
    match e {
        CallError::UnknownCall(_) => AppError::NotFound(e.to_string()),
        CallError::AlreadyStarted(_) | CallError::OutOfSequence { .. } | CallError::KeyReused { .. } => {
            AppError::Conflict(e.to_string())
        }
        CallError::QueueFull(_) | CallError::Deadline(_) => {
            AppError::Busy { message: e.to_string(), retry_after_secs: BUSY_RETRY_AFTER_SECS }
        }
        CallError::Db(db) => db.into(),
    }
}

/// The `Retry-After` of a request refused because the calls' writers are behind: long enough for
/// a queue of a thousand requests to drain at the writers' pace, short for a caller on the line.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Signs a body the way carriers must (used by tests and the load generator).
pub fn sign(key: &str, timestamp: i64, body: &[u8]) -> String {
    signature::json_signature(key.as_bytes(), timestamp, body)
}
