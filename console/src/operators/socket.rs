//! `GET /ws`: the operator console's socket. The first message is `hello{last_seq}`; the answer
//! is `welcome` (a snapshot), then every stored message after `last_seq` for this user (replay;
//! none for a fresh page, `last_seq` 0, whose state is the welcome),
//! then live messages as the hub pumps them. Each socket is a send task (the only writer) and a
//! receive task; a bad message gets an `error` frame and the socket stays open. A socket's frames
//! are rate-limited (a token bucket, [`FRAME_RATE`]), and at most one of its searches runs at a
//! time: the newest that arrives meanwhile waits for it and supersedes any older one waiting
//! ([`SearchSlot`]). The session is
//! re-checked every 30 s and at once when the user signs out everywhere on this node. The
//! messages are the types of [`super::protocol`]: a frame from the page reads as a
//! `ClientMessage` (dispatched by a match on it), and every frame sent is a `ServerMessage`.

use super::hub::{self, Control, Message};
use super::presence::PresenceState;
use super::protocol::{
    CallState, CallUpdate, ClientMessage, Device, ErrorCode, ErrorMessage, Offer, OfferMatch, PageConfig,
    PresenceChoice, Ref, SavedWhat, Search, SearchResults, ServerMessage, Welcome, WelcomeUser,
};
use super::OperatorsState;
use super::{pop, presence, queue_service, work, ConsoleError};
use crate::auth::{AsOperator, Authenticated};
use crate::db::sessions;
use crate::db::users::Role;
use crate::error::AppError;
use crate::media::{is_browser_target, PageRequest};
use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// How often a socket checks that its session still exists.
pub const SESSION_CHECK: Duration = sessions::SOCKET_SESSION_CHECK;
/// Messages replayed on reconnect, at most (older state is in `welcome`).
const REPLAY_LIMIT: i64 = 5000;
/// The largest frame accepted from a page.
const MAX_FRAME: usize = 64 * 1024;
/// The socket's read buffer, grown only for a frame that needs more: a page's frames are a few
/// hundred bytes, and tungstenite's default (128 KiB, filled on allocation) was most of what a
/// socket cost (BENCHMARKS.md, "Memory").
const READ_BUFFER: usize = 4 * 1024;
/// Frames a page may send per second, on average ...
pub const FRAME_RATE: f64 = 20.0;
/// ... and at once (a page's first burst: hello, presence, a search per debounced keystroke).
pub const FRAME_BURST: f64 = 40.0;

/// A token bucket: [`FRAME_BURST`] tokens, refilled at [`FRAME_RATE`] per second; a frame takes
/// one or is refused.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket { tokens: FRAME_BURST, at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * FRAME_RATE).min(FRAME_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A socket's searches: at most one runs; one more may wait, the newest (an older one waiting is
/// superseded and gets no answer — the page ignores answers to older `qseq`s anyway). A search is
/// a blocking task, not cancellable once started: without this, a page (or a script) typing fast
/// could keep any number of them running at once.
#[derive(Debug, Default)]
pub struct SearchSlot {
    running: bool,
    waiting: Option<Search>,
}

impl SearchSlot {
    /// A search arrived: `Some` to run it now, `None` when it waits for the running one.
    pub fn offer(&mut self, search: Search) -> Option<Search> {
        if self.running {
            self.waiting = Some(search);
            None
        } else {
            self.running = true;
            Some(search)
        }
    }

    /// The running search ended: the one to run next, if one waited.
    pub fn finished(&mut self) -> Option<Search> {
        let next = self.waiting.take();
        self.running = next.is_some();
        next
    }
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    check_origin(&state, &headers)?;
    // Written at once (the send task flushes every frame anyway), not gathered to 128 KiB.
    let ws = ws.max_message_size(MAX_FRAME).read_buffer_size(READ_BUFFER).write_buffer_size(0);
    Ok(ws.on_upgrade(move |socket| run(state, auth, socket)))
}

/// Browsers send `Origin` on every websocket upgrade: it must be this server (cross-site
/// websocket hijacking). Clients that are not browsers send none and are let through (the
/// session cookie still decides).
fn check_origin(state: &OperatorsState, headers: &HeaderMap) -> Result<(), AppError> {
    if crate::auth::same_origin(headers, &state.settings.public_url) {
        return Ok(());
    }
    let origin = headers.get("origin").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::warn!(origin, "websocket from a foreign origin refused");
    Err(AppError::Forbidden(format!("websocket origin {origin} is not this server")))
}

/// What the send task writes, in order.
enum Out {
    Frame(Utf8Bytes),
    /// Start forwarding live messages newer than this seq.
    Live(broadcast::Receiver<Arc<Message>>, i64),
    Close(u16, &'static str),
}

async fn run(state: Arc<OperatorsState>, auth: Authenticated, socket: WebSocket) {
    let user_id = auth.user.id;
    state.console.socket_opened(user_id);
    let _ = presence::ensure(&state.db, user_id, state.clock.now().timestamp_millis()).await;
    let (sink, stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Out>(256);
    let mut send_task = tokio::spawn(send_loop(state.clone(), auth.clone(), sink, out_rx));
    let mut recv_task = tokio::spawn(recv_loop(state.clone(), auth.clone(), stream, out_tx));
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => {
            // Let the send task flush (it ends when the receive side dropped its sender).
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut send_task).await;
            send_task.abort();
        }
    }
    state.console.socket_closed(user_id);
    tracing::debug!(user = %auth.user.name, "console socket closed");
}

async fn send_loop(
    state: Arc<OperatorsState>,
    auth: Authenticated,
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut out: mpsc::Receiver<Out>,
) {
    // Before hello: only replies.
    let (mut live, mut last_sent) = loop {
        match out.recv().await {
            Some(Out::Frame(text)) => {
                if sink.send(WsMessage::Text(text)).await.is_err() {
                    return;
                }
            }
            Some(Out::Live(rx, after)) => break (rx, after),
            Some(Out::Close(code, reason)) => return close(&mut sink, code, reason).await,
            None => return,
        }
    };
    let (uid, role) = (auth.user.id, auth.user.role);
    loop {
        tokio::select! {
            biased;
            cmd = out.recv() => match cmd {
                Some(Out::Frame(text)) => {
                    if sink.send(WsMessage::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Out::Live(..)) => {}
                Some(Out::Close(code, reason)) => return close(&mut sink, code, reason).await,
                None => return,
            },
            msg = live.recv() => match msg {
                Ok(m) => {
                    if m.seq <= last_sent || !m.for_user(uid, role) {
                        continue;
                    }
                    last_sent = m.seq;
                    if sink.send(WsMessage::Text(m.frame.clone())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Too slow for the broadcast: catch up from the table.
                    tracing::debug!(user = %auth.user.name, skipped = n, "console socket lagged; replaying from the store");
                    match replay(&state, uid, role, last_sent).await {
                        Ok(msgs) => {
                            for m in msgs {
                                last_sent = m.seq;
                                if sink.send(WsMessage::Text(m.frame.clone())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "console replay failed");
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn close(sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>, code: u16, reason: &'static str) {
    let _ = sink.send(WsMessage::Close(Some(axum::extract::ws::CloseFrame { code, reason: reason.into() }))).await;
}

async fn replay(
    state: &OperatorsState,
    uid: i64,
    role: Role,
    after: i64,
) -> Result<Vec<Arc<Message>>, crate::db::DbError> {
    let msgs = hub::read_after(&state.db, after, REPLAY_LIMIT).await?;
    Ok(msgs.into_iter().filter(|m| m.for_user(uid, role)).map(Arc::new).collect())
}

fn frame(message: &ServerMessage) -> Out {
    Out::Frame(Utf8Bytes::from(message.to_text()))
}

fn error_frame(code: ErrorCode, message: impl std::fmt::Display, r#ref: Option<&Ref>) -> Out {
    frame(&ServerMessage::error(code, message, r#ref.cloned()))
}

async fn recv_loop(
    state: Arc<OperatorsState>,
    auth: Authenticated,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    out: mpsc::Sender<Out>,
) {
    let mut control = state.console.hub().control();
    let mut phone_events = state.phone.subscribe();
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.tick().await;
    let mut greeted = false;
    let searches = Searches::new();
    loop {
        tokio::select! {
            frame_in = stream.next() => {
                let text = match frame_in {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Binary(_))) => {
                        let _ = out.send(error_frame(ErrorCode::BadMessage, "send JSON text frames", None)).await;
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                if let Err(e) = handle(&state, &auth, &out, &mut greeted, &searches, text.as_str()).await {
                    tracing::debug!(error = %e, "console socket send failed");
                    return;
                }
            }
            ev = phone_events.recv() => match ev {
                Ok(ev) if ev.operator == auth.user.id && greeted => {
                    let news = ServerMessage::PhoneState { call_id: ev.call_id, state: ev.status, reason: ev.reason };
                    if out.send(frame(&news)).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            c = control.recv() => match c {
                Ok(Control::SessionsRevoked { user_id }) if user_id == auth.user.id => {
                    if !session_alive(&state, &auth).await {
                        let _ = out.send(Out::Close(4001, "signed out")).await;
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = check.tick() => {
                if !session_alive(&state, &auth).await {
                    let _ = out.send(Out::Close(4001, "session expired")).await;
                    return;
                }
            }
        }
    }
}

async fn session_alive(state: &OperatorsState, auth: &Authenticated) -> bool {
    match sessions::session_live(&state.db, &auth.token_hash, state.clock.now().timestamp_millis()).await {
        Ok(live) => live,
        Err(e) => {
            tracing::debug!(error = %e, "session check failed; keeping the socket");
            true // a database hiccup is no sign-out
        }
    }
}

type SendResult = Result<(), mpsc::error::SendError<Out>>;

/// Why a frame that did not read as a [`ClientMessage`] is refused, as today's page expects:
/// `hello_first` for anything but `hello`/`ping` before `hello`, `unknown_type`, else
/// `bad_message` naming the type and what is wrong.
fn refusal(kind: &str, greeted: bool, error: &serde_json::Error) -> (ErrorCode, String) {
    let before_hello = ["hello", "ping"];
    if !greeted && !before_hello.contains(&kind) {
        (ErrorCode::HelloFirst, "send hello first".into())
    } else if !ClientMessage::types().contains(&kind) {
        (ErrorCode::UnknownType, format!("unknown message type {kind:?}"))
    } else {
        (ErrorCode::BadMessage, format!("{kind}: {error}"))
    }
}

/// One frame from the page. Only a failure to queue the answer ends the socket.
async fn handle(
    state: &Arc<OperatorsState>,
    auth: &Authenticated,
    out: &mpsc::Sender<Out>,
    greeted: &mut bool,
    searches: &Searches,
    text: &str,
) -> SendResult {
    let value: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return out.send(error_frame(ErrorCode::BadMessage, "a message is a JSON object with a type", None)).await
        }
        Err(e) => return out.send(error_frame(ErrorCode::BadMessage, format!("malformed JSON: {e}"), None)).await,
    };
    // Errors answer with the request's `ref`, whatever the request.
    let r#ref = value.get("ref").cloned();
    let Some(kind) = value.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return out.send(error_frame(ErrorCode::BadMessage, "missing type", r#ref.as_ref())).await;
    };
    if !searches.bucket.lock().is_ok_and(|mut b| b.take(Instant::now())) {
        let qseq = value.get("qseq").and_then(Value::as_u64);
        return out
            .send(frame(&ServerMessage::Error(ErrorMessage {
                code: ErrorCode::RateLimited,
                message: format!("{kind}: more than {FRAME_RATE} messages a second; this one was not processed"),
                r#ref,
                qseq: (kind == "search").then_some(qseq).flatten(),
            })))
            .await;
    }
    let message = match serde_json::from_value::<ClientMessage>(value) {
        Ok(m) => m,
        Err(e) => {
            let (code, why) = refusal(&kind, *greeted, &e);
            return out.send(error_frame(code, why, r#ref.as_ref())).await;
        }
    };
    if !*greeted && !matches!(message, ClientMessage::Hello { .. } | ClientMessage::Ping { .. }) {
        return out.send(error_frame(ErrorCode::HelloFirst, "send hello first", r#ref.as_ref())).await;
    }
    let bad = |why: &str| ServerMessage::error(ErrorCode::BadMessage, format!("{kind}: {why}"), r#ref.clone());
    let user = &auth.user;
    let outcome: Result<Option<ServerMessage>, ConsoleError> = match message {
        ClientMessage::Hello { last_seq } if !*greeted => {
            *greeted = true;
            return greet(state, auth, out, last_seq).await;
        }
        ClientMessage::Hello { .. } => {
            Ok(Some(ServerMessage::error(ErrorCode::BadMessage, "hello was already sent", None)))
        }
        ClientMessage::Ping { r#ref } => Ok(Some(ServerMessage::Pong { r#ref })),
        ClientMessage::Presence { state: choice, reason } => match (choice, reason) {
            (PresenceChoice::Available, _) => {
                queue_service::set_presence(state, user, PresenceState::Available, None).await.map(|_| None)
            }
            (PresenceChoice::Offline, _) => {
                queue_service::set_presence(state, user, PresenceState::Offline, None).await.map(|_| None)
            }
            (PresenceChoice::Paused, Some(r)) if !r.trim().is_empty() && r.chars().count() <= 100 => {
                queue_service::set_presence(state, user, PresenceState::Paused, Some(r.trim().to_owned()))
                    .await
                    .map(|_| None)
            }
            (PresenceChoice::Paused, _) => Ok(Some(bad("paused needs a reason (1 to 100 characters)"))),
        },
        ClientMessage::Ready => {
            queue_service::set_presence(state, user, PresenceState::Available, None).await.map(|_| None)
        }
        ClientMessage::Accept { offer_id, device } => {
            queue_service::accept(state, user, offer_id, device).await.map(|_| None)
        }
        ClientMessage::PhoneOffer { call_id, sdp, restart } => match on_my_call(state, user.id, &call_id).await {
            Ok(()) => {
                // Answered from a task: a carrier's transfer may still be on its way.
                let (phone, out, r#ref) = (state.phone.clone(), out.clone(), r#ref.clone());
                let user_id = user.id;
                tokio::spawn(async move {
                    let reply = match phone.offer(&call_id, user_id, sdp, restart).await {
                        Ok(sdp) => ServerMessage::PhoneAnswer { call_id, sdp },
                        Err(e) => {
                            tracing::info!(call_id, error = %e, "browser phone offer refused");
                            ServerMessage::error(ErrorCode::PhoneUnavailable, e, r#ref)
                        }
                    };
                    let _ = out.send(frame(&reply)).await;
                });
                Ok(None)
            }
            Err(e) => Err(e),
        },
        ClientMessage::PhoneFailed { call_id, reason } => {
            let reason = reason.trim().to_owned();
            if reason.is_empty() || reason.chars().count() > 100 {
                Ok(Some(bad("reason must be 1 to 100 characters")))
            } else {
                match on_my_call(state, user.id, &call_id).await {
                    Ok(()) if state.phone.request(&call_id, user.id, PageRequest::Failed(reason)).await => Ok(None),
                    Ok(()) => Ok(Some(phone_unavailable(&call_id, r#ref.clone()))),
                    Err(e) => Err(e),
                }
            }
        }
        ClientMessage::Hold { call_id, on } => match on_my_call(state, user.id, &call_id).await {
            Ok(()) if state.phone.request(&call_id, user.id, PageRequest::Hold(on)).await => Ok(None),
            Ok(()) => Ok(Some(phone_unavailable(&call_id, r#ref.clone()))),
            Err(e) => Err(e),
        },
        ClientMessage::Decline { offer_id } => queue_service::decline(state, user, offer_id).await.map(|_| None),
        ClientMessage::EndCall { call_id } => queue_service::end_call(state, user, &call_id).await.map(|_| None),
        ClientMessage::Note { r#ref, call_id, text } => {
            work::save_note(state, user, &call_id, &text).await.map(|at| Some(saved(r#ref, SavedWhat::Note, at)))
        }
        ClientMessage::Referral { r#ref, call_id, service_id, add } => {
            work::referral(state, user, &call_id, &service_id, add)
                .await
                .map(|at| Some(saved(r#ref, SavedWhat::Referral, at)))
        }
        ClientMessage::Disposition { r#ref, call_id, code } => work::disposition(state, user, &call_id, &code)
            .await
            .map(|at| Some(saved(r#ref, SavedWhat::Disposition, at))),
        ClientMessage::Search(search) => {
            searches.latest.fetch_max(search.qseq, Ordering::SeqCst);
            let run = searches.slot.lock().map(|mut slot| slot.offer(search)).ok().flatten();
            if let Some(search) = run {
                spawn_searches(state.clone(), search, searches.clone(), out.clone());
            }
            Ok(None)
        }
    };
    match outcome {
        Ok(Some(reply)) => out.send(frame(&reply)).await,
        Ok(None) => Ok(()),
        Err(e) => {
            if let ConsoleError::Db(db) = &e {
                tracing::warn!(error = %db, kind, "console request failed");
            }
            out.send(error_frame(e.code(), &e, r#ref.as_ref())).await
        }
    }
}

/// The operator is on this call (the phone's messages are for one's own call only).
async fn on_my_call(state: &OperatorsState, user_id: i64, call_id: &str) -> Result<(), ConsoleError> {
    let mut tx = state.db.pool().begin().await?;
    let me = presence::get(&mut tx, user_id).await?;
    tx.rollback().await?;
    match me {
        Some(p) if p.state == PresenceState::OnCall && p.call_id.as_deref() == Some(call_id) => Ok(()),
        _ => Err(ConsoleError::NotYourCall),
    }
}

fn phone_unavailable(call_id: &str, r#ref: Option<Ref>) -> ServerMessage {
    ServerMessage::error(ErrorCode::PhoneUnavailable, format!("call {call_id} has no browser phone here"), r#ref)
}

fn saved(r#ref: Ref, what: SavedWhat, at: i64) -> ServerMessage {
    ServerMessage::Saved { r#ref, what, at: crate::clock::rfc3339(at) }
}

/// A socket's rate and searches, shared by its receive task and its search task.
#[derive(Clone)]
struct Searches {
    /// The newest `qseq` received.
    latest: Arc<AtomicU64>,
    slot: Arc<std::sync::Mutex<SearchSlot>>,
    bucket: Arc<std::sync::Mutex<Bucket>>,
}

impl Searches {
    fn new() -> Searches {
        Searches {
            latest: Arc::new(AtomicU64::new(0)),
            slot: Arc::default(),
            bucket: Arc::new(std::sync::Mutex::new(Bucket::new(Instant::now()))),
        }
    }
}

/// Runs `first`, then whichever search waited meanwhile, until none waits (one at a time, see
/// [`SearchSlot`]).
fn spawn_searches(state: Arc<OperatorsState>, first: Search, searches: Searches, out: mpsc::Sender<Out>) {
    tokio::spawn(async move {
        let mut next = Some(first);
        while let Some(search) = next {
            run_search(&state, search, &searches.latest, &out).await;
            next = searches.slot.lock().map(|mut slot| slot.finished()).ok().flatten();
        }
    });
}

/// Runs a search off the async threads — the same search as `GET /api/services/search`, at the
/// injected clock's time; results older than the newest `qseq` are dropped.
async fn run_search(state: &Arc<OperatorsState>, search: Search, latest: &AtomicU64, out: &mpsc::Sender<Out>) {
    let qseq = search.qseq;
    if latest.load(Ordering::SeqCst) > qseq {
        return; // a newer search arrived while this one waited
    }
    let now = state.clock.now();
    let st = state.clone();
    let result =
        tokio::task::spawn_blocking(move || search.params().query().map(|q| st.directory.search(&q, now))).await;
    if latest.load(Ordering::SeqCst) != qseq {
        return; // a newer search superseded this one
    }
    let search_error =
        |code, message: String| ServerMessage::Error(ErrorMessage { code, message, r#ref: None, qseq: Some(qseq) });
    let reply = match result {
        Ok(Ok(response)) => ServerMessage::SearchResults(SearchResults::new(qseq, &response)),
        Ok(Err(e)) => search_error(ErrorCode::BadSearch, e.to_string()),
        Err(_) => search_error(ErrorCode::Internal, "search failed".into()),
    };
    let _ = out.send(frame(&reply)).await;
}

/// `welcome` (a snapshot), the replay after `last_seq`, then live messages.
async fn greet(state: &OperatorsState, auth: &Authenticated, out: &mpsc::Sender<Out>, last_seq: i64) -> SendResult {
    let (uid, role) = (auth.user.id, auth.user.role);
    // Subscribe first, so nothing committed from now on is missed; the send task skips what the
    // replay already sent.
    let live = state.console.hub().subscribe();
    let snapshot = async {
        let newest = hub::newest(&state.db).await?;
        let mut tx = state.db.pool().begin().await?;
        let queue = queue_service::queue_snapshot(&mut tx).await?;
        let me = presence::get(&mut tx, uid).await?;
        tx.rollback().await?;
        let now_ms = state.clock.now().timestamp_millis();
        let offer: Option<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT id, call_id, expires_at, match_kind FROM offers WHERE operator_id = $1 AND status = 'open' ORDER BY id DESC LIMIT 1",
        )
        .bind(uid)
        .fetch_optional(state.db.pool())
        .await?;
        let offer = match offer {
            Some((id, call_id, expires_at, kind)) => {
                let matched = OfferMatch::parse(&kind)
                    .ok_or_else(|| crate::db::DbError::Corrupt(format!("offer {id}: match_kind {kind:?}")))?;
                let pop = pop::screen_pop(&state.db, &call_id, now_ms).await?;
                let shown = pop::audit(state.db.pool(), now_ms, uid, pop.as_ref(), pop::Shown::Reconnected);
                state.db.with_lock_turn(shown).await?;
                Some(Offer { offer_id: id, call_id, matched, expires_at: crate::clock::rfc3339(expires_at), pop })
            }
            None => None,
        };
        let call = match me
            .as_ref()
            .filter(|p| matches!(p.state, PresenceState::OnCall | PresenceState::WrapUp))
            .and_then(|p| p.call_id.clone())
        {
            Some(call_id) => {
                let pop = pop::screen_pop(&state.db, &call_id, now_ms).await?;
                let shown = pop::audit(state.db.pool(), now_ms, uid, pop.as_ref(), pop::Shown::Reconnected);
                state.db.with_lock_turn(shown).await?;
                let on_call = me.as_ref().is_some_and(|p| p.state == PresenceState::OnCall);
                let st = if on_call { CallState::Connected } else { CallState::Ended };
                // A page reloaded during a browser call offers its phone again.
                let target: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT target FROM queue_entries WHERE call_id = $1")
                        .bind(&call_id)
                        .fetch_optional(state.db.pool())
                        .await?;
                let browser = target.and_then(|(t,)| t).is_some_and(|t| is_browser_target(&t));
                let device = (on_call && browser).then_some(Device::Browser);
                Some(CallUpdate { call_id, state: st, offer_id: None, device, pop })
            }
            None => None,
        };
        let operators = if role.includes(Role::Supervisor) {
            Some(presence::all(&state.db).await?.iter().map(|o| o.status()).collect())
        } else {
            None
        };
        // A fresh page (`last_seq` 0) has nothing to catch up on: the welcome is its state.
        let replay = if last_seq > 0 { replay(state, uid, role, last_seq).await? } else { Vec::new() };
        Ok::<_, crate::db::DbError>((newest, queue, me, offer, call, operators, replay))
    }
    .await;
    let (newest, queue, me, offer, call, operators, replayed) = match snapshot {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "console welcome failed");
            return out.send(error_frame(ErrorCode::Internal, "cannot load the console state; reconnect", None)).await;
        }
    };
    let welcome = ServerMessage::Welcome(Box::new(Welcome {
        user: WelcomeUser {
            id: uid,
            name: auth.user.name.clone(),
            role,
            languages: auth.user.languages.clone(),
            areas: auth.user.areas.clone(),
            sip_phone: auth.user.sip_target.as_deref().is_some_and(|t| !t.is_empty()),
        },
        presence: me.map(|p| p.status()),
        last_seq: newest,
        queue,
        operators,
        offer,
        call,
        config: PageConfig::new(state.console.config(), &state.settings),
    }));
    out.send(frame(&welcome)).await?;
    // Live messages resume after what the page has (a fresh page: everything up to `newest`).
    let mut last = if last_seq > 0 { last_seq } else { newest };
    for m in replayed {
        last = m.seq;
        out.send(Out::Frame(m.frame.clone())).await?;
    }
    out.send(Out::Live(live, last)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(qseq: u64) -> Search {
        Search { qseq, ..Search::default() }
    }

    #[test]
    fn one_search_runs_at_a_time_and_only_the_newest_waits() {
        let mut slot = SearchSlot::default();
        assert_eq!(slot.offer(search(1)).map(|s| s.qseq), Some(1), "the first runs at once");
        for q in 2..=10 {
            assert!(slot.offer(search(q)).is_none(), "search {q} waits while one runs");
        }
        assert_eq!(slot.finished().map(|s| s.qseq), Some(10), "the newest runs next; 2 to 9 are superseded");
        assert!(slot.offer(search(11)).is_none(), "10 is running");
        assert_eq!(slot.finished().map(|s| s.qseq), Some(11));
        assert!(slot.finished().is_none(), "nothing waits: the slot is free");
        assert_eq!(slot.offer(search(12)).map(|s| s.qseq), Some(12), "a free slot runs at once");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        let burst = (0..100).take_while(|_| bucket.take(t0)).count();
        assert_eq!(burst, FRAME_BURST as usize);
        assert!(!bucket.take(t0), "empty");
        let t1 = t0 + Duration::from_secs(1);
        let refilled = (0..100).take_while(|_| bucket.take(t1)).count();
        assert_eq!(refilled, FRAME_RATE as usize, "a second later, a second's worth");
    }
}
