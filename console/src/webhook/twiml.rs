//! The TwiML dialect: a Twilio-compatible carrier points a number at `POST /twiml/voice` (and its
//! status callback at `POST /twiml/status`) and gets TwiML back, using only the verbs, nouns and
//! attributes of Twilio's TwiML reference: `<Gather input="dtmf">` around `<Play>`/`<Say>`,
//! `<Redirect>`, `<Enqueue waitUrl action>`, `<Leave>`, `<Dial><Sip>|<Number>`, `<Pause>`,
//! `<Hangup>`.
//!
//! How a call maps onto requests: the first request (no query) starts the call; each `<Gather>`
//! posts its `Digits` to `?step=N&ev=gather`, and its timeout falls through to a `<Redirect>` to
//! `?step=N&ev=timeout`. The queue is Twilio's `<Enqueue>`: its `waitUrl` (`?ev=wait`) is polled
//! while the caller waits and answers with the engine's announcements; when an operator takes the
//! call the wait document answers `<Leave/>` and the `<Enqueue>` action (`?ev=queue_left`) dials
//! the operator; the `<Dial>` action (`?ev=dial`) reports a failed transfer. The step number in
//! each URL makes every request of a call distinct, so Twilio's retries are recognised and get the
//! same answer.

use super::actions::{queue_name, to_carrier, CarrierAction};
use super::signature::verify_twilio;
use super::speech::speech_url;
use super::WebhookState;
use super::{base_url, caller_stand_in, fingerprint};
use crate::calls::sealed::NumberSeal;
use crate::calls::{Answer, CallRequest, Origin, RequestKey, TextOrder};
use crate::carrier::CarrierError;
use axum::body::Bytes;
use axum::extract::{FromRef, OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ivr::domain::{CallId, Caller, DtmfDigits, Language, PhoneNumber, ServerSecret};
use ivr::engine::{Action, Channel, Event, Pace, Wait};
use std::fmt::Write as _;
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<WebhookState>: FromRef<S>,
{
    Router::new()
        .route("/twiml/voice", post(voice))
        .route("/twiml/status", post(status))
        .route(RECORDING_PATH, post(recording))
        .route(crate::texts::STATUS_CALLBACK_PATH, post(sms_status))
}

/// The caller was handed over to another queue since their last transfer (back waiting).
fn handed_over(state: &ivr::engine::CallState) -> bool {
    matches!(state.wait, Wait::Hold | Wait::QueueState) && state.queue.is_some()
}

/// The carrier's status callback of a text message (`StatusCallback` of `Messages.json`), signed
/// as every TwiML request: the message's delivery result into `text_messages`. A sid of no
/// message of ours is acknowledged and changes nothing (the carrier would retry an error).
async fn sms_status(
    State(state): State<Arc<WebhookState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match inbound(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (sid, status) = (req.param("MessageSid").unwrap_or(""), req.param("MessageStatus").unwrap_or(""));
    let now = state.clock.now().timestamp_millis();
    match crate::texts::record_status(&state.db, sid, status, req.param("ErrorCode"), now).await {
        Ok(true) => {
            tracing::info!(status, "text message status recorded");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => {
            tracing::info!(status, "status callback of an unknown text message");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(crate::texts::StatusError::Invalid(what)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({ "error": "bad_request", "message": format!("{what} is missing or invalid") }),
            ),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "text message status not recorded");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

const RECORDING_PATH: &str = "/twiml/recording";

const VOICE_PATH: &str = "/twiml/voice";
const TWIML_TYPE: &str = "text/xml; charset=utf-8";

/// Where in the call a request comes from (the `ev` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Gather,
    Timeout,
    Wait,
    WaitGather,
    QueueLeft,
    Dial,
    Recorded,
}

impl Stage {
    fn parse(ev: Option<&str>) -> Option<Stage> {
        Some(match ev {
            None => Stage::Start,
            Some("gather") => Stage::Gather,
            Some("timeout") => Stage::Timeout,
            Some("wait") => Stage::Wait,
            Some("wait_gather") => Stage::WaitGather,
            Some("queue_left") => Stage::QueueLeft,
            Some("dial") => Stage::Dial,
            Some("recorded") => Stage::Recorded,
            Some(_) => return None,
        })
    }

    /// The wait document (`waitUrl`) runs in the queue: it may not use `<Enqueue>` or `<Dial>`,
    /// and leaves the queue with `<Leave/>`.
    fn in_queue(self) -> bool {
        matches!(self, Stage::Wait | Stage::WaitGather)
    }
}

/// A parsed, signature-checked TwiML request.
struct Inbound {
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    base: String,
}

impl Inbound {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Checks the signature over the URL the carrier requested and the form parameters. (The refusal
/// is a whole response; it is built once per refused request, so its size does not matter.)
#[allow(clippy::result_large_err)]
fn inbound(state: &WebhookState, uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) -> Result<Inbound, Response> {
    let token = state.settings.twilio_auth_token.expose();
    if token.is_empty() {
        tracing::warn!("TwiML request refused: HELPLINE_TWILIO_AUTH_TOKEN is not set");
        return Err(plain(
            StatusCode::FORBIDDEN,
            "the TwiML endpoints are disabled: HELPLINE_TWILIO_AUTH_TOKEN is not set",
        ));
    }
    let base = base_url(state, headers);
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let url = format!("{base}{path_and_query}");
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = verify_twilio(token, &url, &params, signature) {
        tracing::warn!(reason = %e, %url, "TwiML request refused");
        return Err(plain(StatusCode::FORBIDDEN, &format!("bad request signature: {e}")));
    }
    let query = uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    Ok(Inbound { params, query, base })
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": "forbidden", "message": msg }))).into_response()
}

fn twiml(doc: String) -> Response {
    ([(header::CONTENT_TYPE, TWIML_TYPE)], doc).into_response()
}

async fn voice(
    State(state): State<Arc<WebhookState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match inbound(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // From here on a caller is on the line: every failure answers with an apology and a queue.
    let Some(stage) = Stage::parse(req.query("ev")) else {
        return twiml(apology(&req.base, None, "unknown ev parameter"));
    };
    let Some(call_id) = req.param("CallSid").and_then(|s| CallId::parse(s).ok()) else {
        return twiml(apology(&req.base, None, "missing or invalid CallSid"));
    };
    let now = state.clock.now();
    let current = match stage {
        Stage::Start => None,
        _ => match state.calls.state(&call_id).await {
            Ok(Some(s)) => Some(s),
            Ok(None) => return twiml(apology(&req.base, None, "unknown call")),
            Err(e) => return twiml(apology(&req.base, None, &e.to_string())),
        },
    };
    let language = current.as_ref().and_then(|s| s.language);

    let event = match stage {
        Stage::Start => Event::CallStarted {
            channel: Channel::Twiml,
            caller: req
                .param("From")
                .and_then(|f| PhoneNumber::parse(f).ok())
                .map(|n| Caller::from_number(&n, &state.secret)),
            called: req.param("To").map(str::to_owned),
        },
        Stage::Gather | Stage::WaitGather => match req.param("Digits").filter(|d| !d.is_empty()) {
            Some(d) => match DtmfDigits::parse(d) {
                Ok(d) => Event::Digits(d),
                Err(_) => return twiml(apology(&req.base, language, "invalid Digits")),
            },
            None => Event::NoInput,
        },
        Stage::Timeout | Stage::Wait => Event::NoInput,
        Stage::QueueLeft => match req.param("QueueResult") {
            // The caller hung up while waiting.
            Some("hangup") => Event::HungUp,
            // We sent <Leave/>: an operator is waiting for this caller.
            Some("leave") => {
                let waiting = current.as_ref().is_some_and(|s| s.wait == Wait::Transfer);
                if let (true, Ok(Some((operator, target, step)))) = (waiting, state.calls.last_transfer(&call_id).await)
                {
                    return twiml(document(
                        &[CarrierAction::Transfer { to: target, operator }],
                        &req.base,
                        step,
                        stage,
                    ));
                }
                // We sent <Leave/> after the voicemail prompt (a wait document may not record):
                // the recording itself.
                if current.as_ref().is_some_and(|s| s.wait == Wait::Recording) {
                    let record = record_action(&state);
                    return twiml(document(&[record], &req.base, 0, stage));
                }
                Event::NoInput
            }
            // Redirected, errors: back into the menu's last state.
            _ => Event::NoInput,
        },
        Stage::Dial => match req.param("DialCallStatus") {
            // The operator handed the caller over to another queue and our BYE ended the
            // `<Dial>`: the queue's actions were left for this request, which adds nothing.
            Some("completed") | Some("answered") if current.as_ref().is_some_and(handed_over) => Event::PromptFinished,
            Some("completed") | Some("answered") => Event::HungUp,
            Some(other) => Event::TransferFailed { reason: other.to_owned() },
            None => Event::TransferFailed { reason: "unknown".into() },
        },
        // `<Record>`'s action (or the redirect after it when nothing was recorded). The audio
        // arrives separately, at the recording status callback.
        Stage::Recorded => {
            let secs: u32 = req.param("RecordingDuration").and_then(|d| d.trim().parse().ok()).unwrap_or(0);
            if req.param("RecordingUrl").is_none() {
                tracing::warn!(call_id = %call_id.as_str(), "nothing recorded: the callback request is kept without a message");
            }
            Event::Recorded { duration_ms: secs.saturating_mul(1000) }
        }
    };
    // A retried request is the same URL with the same parameters.
    let key = match stage {
        Stage::Start => "twiml:start".to_owned(),
        // The wait document is polled at the same URL; Twilio's QueueTime tells the polls apart.
        Stage::Wait => format!("twiml:wait:{}", req.param("QueueTime").unwrap_or("")),
        _ => format!("twiml:{}:{}", req.query("step").unwrap_or(""), req.query("ev").unwrap_or("")),
    };
    let fingerprint = request_fingerprint(&state.secret, &req.params);
    let sid = call_id.as_str().to_owned();
    // Twilio sends `From` with every request: sealed here, it is kept only if this step records a
    // callback request.
    let sealed_number = req
        .param("From")
        .and_then(|f| PhoneNumber::parse(f).ok())
        .map(|n| NumberSeal::new(&state.secret).seal(&call_id, &n));
    let text_key = format!("{key}:text");
    let handled = state
        .calls
        .handle(CallRequest {
            call_id: call_id.clone(),
            event,
            now,
            key: Some(RequestKey { key, fingerprint }),
            carrier_seq: None,
            origin: Origin::Carrier,
            sealed_number: sealed_number.clone(),
            reason: None,
        })
        .await;
    let mut answer = match handled {
        Ok(h) => h.answer,
        Err(e) => return twiml(apology(&req.base, language, &e.to_string())),
    };
    if let Some(at) = answer.actions.iter().position(|a| matches!(a, Action::SendText { .. })) {
        let base = Some(req.base.clone());
        match send_text(&state, call_id, answer.actions.remove(at), sealed_number, text_key, base).await {
            Ok(then) => {
                answer.actions.extend(then.actions);
                (answer.step, answer.ended) = (then.step, then.ended);
            }
            Err(e) => return twiml(apology(&req.base, language, &e.to_string())),
        }
    }
    match to_carrier(&answer.actions, &req.base, &state.voice.catalog, state.settings.voicemail_max_secs) {
        Ok(mut actions) => {
            slow_speech(&mut actions, &answer, &req.base, &state.secret, &sid);
            twiml(document(&actions, &req.base, answer.step, stage))
        }
        Err(e) => twiml(apology(&req.base, language, &e.to_string())),
    }
}

/// The caller asked for the services by text: sent now (the request waits, within the trunk's or
/// the carrier's bound), and the outcome is the call's next step, whose actions follow in the same
/// answer ("we sent you a text", the options again). A retried request, answered from its stored
/// answer, finds the call no longer waiting for a text: nothing is sent twice, and the outcome's
/// stored answer (`text_key`, one fingerprint whatever the outcome) comes back.
async fn send_text(
    state: &WebhookState,
    call_id: CallId,
    action: Action,
    number: Option<crate::calls::sealed::SealedNumber>,
    text_key: String,
    base_url: Option<String>,
) -> Result<Answer, crate::calls::CallError> {
    let Action::SendText { services, language, item_prompt, portal_prompt } = action else {
        unreachable!("the caller passes a SendText");
    };
    let waiting = matches!(state.calls.state(&call_id).await?, Some(s) if matches!(s.wait, Wait::Text { .. }));
    let event = if waiting {
        let order = TextOrder {
            call_id: call_id.clone(),
            channel: Channel::Twiml,
            number,
            services,
            language,
            item_prompt,
            portal_prompt,
            base_url,
        };
        state.texts.send(order).await
    } else {
        Event::TextFailed { reason: "already answered".into() }
    };
    let handled = state
        .calls
        .handle(CallRequest {
            call_id,
            event,
            now: state.clock.now(),
            key: Some(RequestKey { key: text_key, fingerprint: "the text's outcome".into() }),
            carrier_seq: None,
            origin: Origin::Carrier,
            sealed_number: None,
            reason: None,
        })
        .await?;
    Ok(handled.answer)
}

/// Twilio's parameters that carry the caller's number (`From`, `Caller`, and the number a call
/// was forwarded from).
const CALLER_PARAMS: [&str; 3] = ["From", "Caller", "ForwardedFrom"];

/// The retry fingerprint of a TwiML request: its form parameters, sorted, under the server key,
/// with the caller's number (and any other value that reads as a phone number) replaced by its
/// keyed hash.
fn request_fingerprint(secret: &ServerSecret, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, std::borrow::Cow<'_, str>)> = params
        .iter()
        .map(|(k, v)| {
            let number_like = CALLER_PARAMS.contains(&k.as_str()) || PhoneNumber::parse(v).is_ok();
            let v = if number_like && !v.is_empty() { caller_stand_in(secret, v).into() } else { v.as_str().into() };
            (k.as_str(), v)
        })
        .collect();
    sorted.sort();
    fingerprint(secret, &sorted.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]).collect::<Vec<_>>())
}

/// Status callbacks: a call that ended on the carrier's side ends here too.
async fn status(
    State(state): State<Arc<WebhookState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match inbound(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ended = matches!(req.param("CallStatus"), Some("completed" | "busy" | "failed" | "no-answer" | "canceled"));
    if let (true, Some(call_id)) = (ended, req.param("CallSid").and_then(|s| CallId::parse(s).ok())) {
        match state.calls.state(&call_id).await {
            Ok(Some(s)) if !s.ended() => {
                let request = CallRequest {
                    call_id,
                    event: Event::HungUp,
                    now: state.clock.now(),
                    key: Some(RequestKey { key: "twiml:status".into(), fingerprint: "ended".into() }),
                    carrier_seq: None,
                    origin: Origin::Carrier,
                    sealed_number: None,
                    reason: None,
                };
                if let Err(e) = state.calls.handle(request).await {
                    tracing::error!(error = %e, "status callback not recorded");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "status callback not recorded");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    }
    twiml("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned())
}

/// The `<Record>` of a voice message, as the engine's `Action::Record` becomes.
fn record_action(state: &WebhookState) -> CarrierAction {
    CarrierAction::Record { max_secs: state.settings.voicemail_max_secs, finish_on_key: "#".into(), beep: true }
}

/// The recording status callback (`<Record recordingStatusCallback>`): the recording is ready at
/// the carrier; the server fetches `<RecordingUrl>.wav` (basic auth with the account's SID and
/// token, `carrier::Carrier::fetch_recording`) and stores it as the call's voice message.
/// Answered only once it is stored (or found unusable, which is logged): the carrier does not have
/// to try again. The URL must lie under the account's `Recordings/` at `HELPLINE_TWILIO_API_URL`:
/// the credentials go nowhere else.
async fn recording(
    State(state): State<Arc<WebhookState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match inbound(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let empty = || twiml("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned());
    let Some(call_id) = req.param("CallSid").and_then(|s| CallId::parse(s).ok()) else {
        return plain(StatusCode::BAD_REQUEST, "missing or invalid CallSid");
    };
    let status = req.param("RecordingStatus").unwrap_or("completed");
    if status != "completed" {
        tracing::warn!(call_id = %call_id.as_str(), status, "recording not completed at the carrier: the callback request is kept without a message");
        return empty();
    }
    let Some(url) = req.param("RecordingUrl") else {
        tracing::warn!(call_id = %call_id.as_str(), "recording status without RecordingUrl");
        return empty();
    };
    match state.calls.state(&call_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return plain(StatusCode::NOT_FOUND, "unknown call"),
        Err(e) => {
            tracing::error!(error = %e, "recording status not handled");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let max = crate::calls::voicemail::max_recording_bytes(state.settings.voicemail_max_secs);
    let Some(carrier) = &state.carrier else {
        tracing::warn!(call_id = %call_id.as_str(), "a recording is ready but HELPLINE_TWILIO_ACCOUNT_SID is not set: the callback request is kept without a message");
        return empty();
    };
    let bytes = match carrier.fetch_recording(url, max).await {
        Ok(b) => b,
        Err(e @ (CarrierError::Unreachable(_) | CarrierError::Refused { .. } | CarrierError::BadAnswer(_))) => {
            tracing::warn!(call_id = %call_id.as_str(), error = %e, "recording not fetched from the carrier: the callback request is kept without a message");
            // Perhaps passing: a carrier that retries may try again.
            return StatusCode::BAD_GATEWAY.into_response();
        }
        Err(e) => {
            tracing::warn!(call_id = %call_id.as_str(), reason = %e, "voice message not stored: the callback request is kept without it");
            return empty();
        }
    };
    match super::recording::keep(&state, &call_id, &bytes, "twiml").await {
        Ok(_) => empty(),
        Err(e) => {
            tracing::error!(call_id = %call_id.as_str(), error = %e, "voice message not stored");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A slow `say` becomes `<Play>` of the server's own slow rendering of the text
/// (`webhook::speech`): Twilio's basic voices have one speed, and SSML `<prosody>` fails with them.
/// So does a `say` in a language the carrier's voices do not speak (configured without a `say`
/// tag, e.g. Albanian). The answer's says of these kinds and the carrier's, in order, are the
/// same texts.
fn slow_speech(actions: &mut [CarrierAction], answer: &Answer, base: &str, secret: &ServerSecret, call_id: &str) {
    let unspoken = |language: Language| language.twiml_say().is_none();
    let mut served = answer
        .actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Action::Say { pace, language, .. } if *pace == Pace::Slow || unspoken(*language)))
        .map(|(n, _)| n);
    for action in actions.iter_mut() {
        if let CarrierAction::Say { pace, language, .. } = action {
            let not_spoken = Language::parse(language).is_ok_and(unspoken);
            if *pace == Pace::Slow || not_spoken {
                if let Some(n) = served.next() {
                    let url = speech_url(base, secret, call_id, answer.step, n);
                    *action = CarrierAction::Play { url, prompt: "speech".into(), language: language.clone() };
                }
            }
        }
    }
}

/// Writes the actions as one TwiML document. Prompts before a gather go inside it (so keys
/// interrupt them); a gather's silence falls through to a redirect; a queue answers the first
/// position announcement before `<Enqueue>`.
fn document(actions: &[CarrierAction], base: &str, step: i64, stage: Stage) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>");
    let mut prompts = String::new();
    let mut ended = false;
    let url = |ev: &str| xml_escape(&format!("{base}{VOICE_PATH}?step={step}&ev={ev}"));
    for action in actions {
        match action {
            CarrierAction::Play { url, .. } => {
                let _ = write!(prompts, "<Play>{}</Play>", xml_escape(url));
            }
            CarrierAction::Say { text, language, .. } => {
                let _ = write!(prompts, "<Say language=\"{}\">{}</Say>", xml_escape(language), xml_escape(text));
            }
            CarrierAction::Gather { max_digits, timeout_ms, finish_on_key, .. } => {
                let ev = if stage.in_queue() { "wait_gather" } else { "gather" };
                let _ = write!(
                    out,
                    "<Gather input=\"dtmf\" numDigits=\"{}\" timeout=\"{}\" finishOnKey=\"{}\" action=\"{}\" method=\"POST\">{}</Gather>",
                    max_digits,
                    timeout_ms.div_ceil(1000).max(1),
                    xml_escape(finish_on_key.as_deref().unwrap_or("")),
                    url(ev),
                    std::mem::take(&mut prompts)
                );
                if !stage.in_queue() {
                    // No key: Twilio goes on to the next verb. (In the queue the wait document
                    // simply ends and Twilio polls the waitUrl again.)
                    let _ = write!(out, "<Redirect method=\"POST\">{}</Redirect>", url("timeout"));
                }
                ended = true;
                break;
            }
            CarrierAction::Enqueue { language, area, .. } => {
                if stage.in_queue() {
                    continue;
                }
                // The announcements after the enqueue (position, wait) are said first; the hold
                // loop then runs in the wait document.
                let rest = actions
                    .iter()
                    .skip_while(|a| !matches!(a, CarrierAction::Enqueue { .. }))
                    .skip(1)
                    .take_while(|a| matches!(a, CarrierAction::Say { .. } | CarrierAction::Play { .. }));
                out.push_str(&std::mem::take(&mut prompts));
                for a in rest {
                    match a {
                        CarrierAction::Say { text, language, .. } => {
                            let _ =
                                write!(out, "<Say language=\"{}\">{}</Say>", xml_escape(language), xml_escape(text));
                        }
                        CarrierAction::Play { url, .. } => {
                            let _ = write!(out, "<Play>{}</Play>", xml_escape(url));
                        }
                        _ => {}
                    }
                }
                let queue =
                    Language::parse(language).map(|l| queue_name(l, *area)).unwrap_or_else(|_| language.clone());
                let _ = write!(
                    out,
                    "<Enqueue waitUrl=\"{}\" waitUrlMethod=\"POST\" action=\"{}\" method=\"POST\">{}</Enqueue>",
                    xml_escape(&format!("{base}{VOICE_PATH}?ev=wait")),
                    url("queue_left"),
                    xml_escape(&queue)
                );
                ended = true;
                break;
            }
            CarrierAction::Transfer { to, .. } => {
                out.push_str(&std::mem::take(&mut prompts));
                if stage.in_queue() {
                    out.push_str("<Leave/>");
                } else {
                    let noun = if to.starts_with("sip:") || to.starts_with("sips:") { "Sip" } else { "Number" };
                    let _ = write!(
                        out,
                        "<Dial action=\"{}\" method=\"POST\"><{noun}>{}</{noun}></Dial>",
                        url("dial"),
                        xml_escape(to)
                    );
                }
                ended = true;
                break;
            }
            CarrierAction::Record { max_secs, finish_on_key, beep } => {
                out.push_str(&std::mem::take(&mut prompts));
                if stage.in_queue() {
                    // A wait document may not record: leave the queue; the `<Enqueue>` action
                    // then answers the `<Record>`.
                    out.push_str("<Leave/>");
                } else {
                    let recorded = xml_escape(&format!("{base}{VOICE_PATH}?ev=recorded"));
                    let _ = write!(
                        out,
                        "<Record action=\"{recorded}\" method=\"POST\" maxLength=\"{max_secs}\" finishOnKey=\"{}\" \
                         playBeep=\"{beep}\" trim=\"trim-silence\" recordingStatusCallback=\"{}\" \
                         recordingStatusCallbackMethod=\"POST\" recordingStatusCallbackEvent=\"completed\"/>",
                        xml_escape(finish_on_key),
                        xml_escape(&format!("{base}{RECORDING_PATH}")),
                    );
                    // Nothing recorded: Twilio skips the action and goes on to the next verb.
                    let _ = write!(out, "<Redirect method=\"POST\">{recorded}</Redirect>");
                }
                ended = true;
                break;
            }
            CarrierAction::Hangup { .. } => {
                out.push_str(&std::mem::take(&mut prompts));
                out.push_str("<Hangup/>");
                ended = true;
                break;
            }
        }
    }
    out.push_str(&prompts);
    if !ended && !stage.in_queue() {
        // Nothing to wait for: keep the line open and ask again shortly, never a dead line.
        let _ = write!(out, "<Pause length=\"1\"/><Redirect method=\"POST\">{}</Redirect>", url("timeout"));
    }
    out.push_str("</Response>");
    out
}

/// The answer when a request cannot be processed while a caller is on the line: an apology in
/// the caller's language (Italian and English when unknown) and the operator queue.
fn apology(base: &str, language: Option<Language>, why: &str) -> String {
    tracing::warn!(reason = why, "TwiML request answered with an apology");
    let langs: Vec<Language> = match language {
        Some(l) => vec![l],
        None => vec![Language::It, Language::En],
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>");
    for l in &langs {
        let _ =
            write!(out, "<Play>{}</Play>", xml_escape(&format!("{base}/prompts/{}/technical-problem.wav", l.as_str())));
    }
    let _ = write!(out, "<Enqueue>{}</Enqueue></Response>", langs[0].as_str());
    out
}

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}
