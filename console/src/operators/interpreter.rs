//! An outside interpreter dialled through the SIP trunk into a live call ("Aggiungi mediatore" /
//! "Add mediator", the "dial a number" field of the mediator picker).
//!
//! `POST /api/calls/{id}/interpreter` (`{"number": "+39…"}`, E.164): the call's own operator
//! has the node that carries the call's media place a call to the number through the trunk
//! (`sip::trunk`, digest and all, as callbacks do: A-law offered alone). That node is this one,
//! or (PostgreSQL) another one asked through the phone's relay (`media::Phone::control`), the
//! number sealed for the call on its way (`calls::sealed`: the relay's rows are in the
//! database). Once it is answered its RTP joins the call's mixer (`media::Phone::join_trunk`):
//! the interpreter hears the caller and the operator (and any mediator) and everyone hears the
//! interpreter. The trunk call is hung up when the call is over
//! on this node; the call goes on when the interpreter hangs up.
//!
//! `503` when no trunk is configured (`HELPLINE_TRUNK_URI`), `400` for a number that is not
//! E.164, `404`/`409` for a call that is unknown, over or not carried by a browser phone, and
//! the refusal of the mediation endpoints for anyone but the call's operator. The
//! number goes nowhere but into the INVITE: the audit log and the call's timeline hold it
//! masked (`interpreter_dial`, `interpreter_join`, `interpreter_leave` with why).
//!
//! `DELETE /api/calls/{id}/interpreter` ("Chiudi interprete" / "Hang up interpreter"): the
//! call's operator hangs the interpreter up (`CANCEL` while it rings, `BYE` once answered; on
//! the node that placed the call, asked through the relay when it is another; [`hang_up_here`]
//! acts on this node's trunk calls), `interpreter_leave` with why `hung_up`;
//! `403` for anyone else, `404` for an unknown call, `409` when no interpreter's call is up.
//! Each step reaches the operator's console as an `interpreter` message (`dialling`,
//! `joined`, `left` with why).

use super::hub;
use super::mediation::{holds_call, live};
use super::protocol::{InterpreterState, ServerMessage};
use super::{ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::calls::sealed::SealedNumber;
use crate::db::audit::{self, AuditAction};
use crate::db::DbError;
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::media::strict::RtpSource;
use crate::media::{CallControl, InterpreterDesk, SipSide};
use crate::sip::trunk::{self, Control, Dial, Progress, Trunk};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use ivr::domain::{CallId, PhoneNumber};
use ivr::rtp::LegPayloads;
use ivr::sdp::Codec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// The law offered to the trunk (alone, as for callbacks): A-law, what European trunks carry;
/// the mixer decodes each party in its own law.
const INTERPRETER_CODEC: Codec = Codec::Pcma;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new().route("/api/calls/{id}/interpreter", post(dial).delete(hang_up))
}

/// This node's interpreters' calls under way, by call: each one's hang-up.
#[derive(Clone, Default)]
pub struct Interpreters(Arc<Mutex<HashMap<String, Vec<Live>>>>);

/// One trunk call: how to hang it up, and whether the operator did.
struct Live {
    key: u64,
    control: mpsc::UnboundedSender<Control>,
    hung_up: Arc<AtomicBool>,
}

impl Interpreters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Live>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a trunk call on `id` until the guard is dropped.
    fn register(&self, id: &str, control: mpsc::UnboundedSender<Control>) -> Registered {
        static KEYS: AtomicU64 = AtomicU64::new(1);
        let key = KEYS.fetch_add(1, Ordering::Relaxed);
        let hung_up = Arc::new(AtomicBool::new(false));
        self.lock().entry(id.to_owned()).or_default().push(Live { key, control, hung_up: hung_up.clone() });
        Registered { interpreters: self.clone(), id: id.to_owned(), key, hung_up }
    }
}

/// A trunk call's place in [`Interpreters`], removed when dropped.
struct Registered {
    interpreters: Interpreters,
    id: String,
    key: u64,
    hung_up: Arc<AtomicBool>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut calls = self.interpreters.lock();
        if let Some(live) = calls.get_mut(&self.id) {
            live.retain(|l| l.key != self.key);
            if live.is_empty() {
                calls.remove(&self.id);
            }
        }
    }
}

/// Hangs up the interpreters' calls on call `call_id` that this node carries (`CANCEL` while
/// ringing, `BYE` once answered); whether there was one. Their end is audited by their own
/// task, as `interpreter_leave` with why `hung_up`.
pub fn hang_up_here(state: &OperatorsState, call_id: &str) -> bool {
    let calls = state.interpreters.lock();
    let Some(live) = calls.get(call_id) else { return false };
    let mut any = false;
    for l in live {
        if !l.hung_up.swap(true, Ordering::SeqCst) && l.control.send(Control::Hangup).is_ok() {
            any = true;
        }
    }
    any
}

/// The interpreters' calls of the calls this node carries, for the phone (`media::Phone::control`,
/// asked here or by another node; set at assembly).
pub fn desk(state: Weak<OperatorsState>) -> Arc<dyn InterpreterDesk> {
    Arc::new(Desk(state))
}

struct Desk(Weak<OperatorsState>);

impl InterpreterDesk for Desk {
    /// Opens the number and places the call from this node (the call's media is here), in the
    /// background.
    fn dial(&self, id: &str, user: i64, sealed: &str) -> Result<(), String> {
        let state = self.0.upgrade().ok_or_else(|| "this node is stopping".to_owned())?;
        let trunk = (state.trunk.clone())
            .ok_or_else(|| "no SIP trunk is configured on the call's node (HELPLINE_TRUNK_URI)".to_owned())?;
        let call_id = CallId::parse(id).map_err(|_| format!("no call {id:?}"))?;
        let number = (state.seal.open(&call_id, &SealedNumber::from_stored(sealed.to_owned())))
            .map_err(|e| format!("the interpreter's number: {e}"))?;
        let masked = number.masked();
        tokio::spawn(tracing::Instrument::instrument(
            carry(state, trunk, id.to_owned(), user, number, masked),
            tracing::Span::current(),
        ));
        Ok(())
    }

    fn hang_up(&self, call_id: &str) -> bool {
        self.0.upgrade().is_some_and(|state| hang_up_here(&state, call_id))
    }
}

/// `DELETE /api/calls/{id}/interpreter` (the call's operator): the interpreter is hung up.
async fn hang_up(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT ended_at, node_id FROM calls WHERE call_id = $1")
            .bind(&id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
    let node = match row {
        None => return Err(AppError::NotFound(format!("no call {id:?}"))),
        Some((Some(_), _)) => return Err(AppError::Conflict(format!("call {id:?} has ended"))),
        Some((None, node)) => node,
    };
    if !holds_call(&state, &id, auth.user.id).await? {
        return Err(AppError::Forbidden(ConsoleError::NotYourCall.to_string()));
    }
    let none = || AppError::Conflict(format!("call {id:?} has no interpreter's call up"));
    // The node that carries the call placed its interpreters' calls: this one, or (through the
    // relay) the one the call's row names.
    if !(state.phone.carries(&id) || state.phone.relays() && node.is_some()) {
        return Err(none());
    }
    let hung_up = state.phone.control(&id, auth.user.id, CallControl::HangUpInterpreters).await;
    if hung_up.map_err(super::mediation::phone_error)? != "true" {
        return Err(none());
    }
    tracing::info!(call_id = %id, operator = %auth.user.name, "the operator hangs up the interpreter");
    Ok(StatusCode::ACCEPTED)
}

/// An `interpreter` message to the call's operator.
async fn news(state: &OperatorsState, user: i64, id: &str, step: InterpreterState, why: Option<&str>) {
    let message = ServerMessage::Interpreter { call_id: id.to_owned(), state: step, why: why.map(str::to_owned) };
    let now_ms = state.clock.now().timestamp_millis();
    let sent = async {
        let hub = state.console.hub();
        let mut tx = hub::begin(&state.db).await?;
        hub::write(&mut tx, &hub::user(user), &message, now_ms).await?;
        hub::commit(hub, tx, true).await
    };
    if let Err(e) = sent.await {
        tracing::warn!(call_id = %id, error = %e, "the interpreter's news not sent to the operator");
    }
}

/// `POST /api/calls/{id}/interpreter`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialInterpreter {
    /// E.164 (`+` and up to 15 digits).
    pub number: String,
}

/// `POST /api/calls/{id}/interpreter` (the call's operator): the interpreter's number is dialled.
async fn dial(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DialInterpreter>,
) -> Result<StatusCode, AppError> {
    if state.trunk.is_none() {
        return Err(AppError::Unavailable(
            "no SIP trunk is configured (HELPLINE_TRUNK_URI): outside interpreters cannot be dialled".into(),
        ));
    }
    let number = PhoneNumber::parse(body.number.trim())
        .map_err(|e| AppError::BadRequest(format!("the interpreter's number: {e}")))?;
    live(&state, &id).await?;
    if !holds_call(&state, &id, auth.user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let masked = number.masked();
    let now_ms = state.clock.now().timestamp_millis();
    let write =
        audit::record_by_id(state.db.pool(), now_ms, auth.user.id, AuditAction::InterpreterDial, Some(&id), &masked);
    state.db.with_lock_turn(write).await?;
    tracing::info!(call_id = %id, operator = %auth.user.name, number = %masked, "dialling an outside interpreter");
    let call_id = CallId::parse(&id).map_err(|_| AppError::NotFound(format!("no call {id:?}")))?;
    let sealed = state.seal.seal(&call_id, &number).as_str().to_owned();
    let control = CallControl::DialInterpreter { operator: auth.user.id, number: sealed };
    state.phone.control(&id, auth.user.id, control).await.map_err(super::mediation::phone_error)?;
    Ok(StatusCode::ACCEPTED)
}

/// Places the interpreter's call and joins it to the call once answered, to its end.
async fn carry(state: Arc<OperatorsState>, trunk: Trunk, id: String, user: i64, number: PhoneNumber, masked: String) {
    // Told here, on the node placing the call, so the operator's console hears the steps in order.
    news(&state, user, &id, InterpreterState::Dialling, None).await;
    let why = match std::net::UdpSocket::bind(("0.0.0.0", 0)) {
        Ok(rtp) => run(&state, trunk, &id, number, &masked, user, rtp).await,
        Err(e) => {
            tracing::error!(error = %e, "no RTP socket for the interpreter's call");
            "no_media"
        }
    };
    tracing::info!(call_id = %id, why, "the interpreter's call is over");
    let now_ms = state.clock.now().timestamp_millis();
    let write = audit::record_by_id(state.db.pool(), now_ms, user, AuditAction::InterpreterLeave, Some(&id), why);
    if let Err(e) = state.db.with_lock_turn(write).await {
        tracing::warn!(error = %e, "the interpreter's leaving not audited");
    }
    news(&state, user, &id, InterpreterState::Left, Some(why)).await;
}

/// The trunk call's life: `why` it ended (`ended`, or the dial failure's result).
async fn run(
    state: &OperatorsState,
    trunk: Trunk,
    id: &str,
    number: PhoneNumber,
    masked: &str,
    user: i64,
    rtp: std::net::UdpSocket,
) -> &'static str {
    // Registered first: the operator may hang up as soon as the dial is accepted.
    let (control, control_rx) = mpsc::unbounded_channel();
    let registered = state.interpreters.register(id, control.clone());
    let Ok(rtp_port) = rtp.local_addr().map(|a| a.port()) else { return "no_media" };
    let trunk_ip = trunk.resolve().await.map(|a| a.ip()).ok();
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let dial = Dial {
        number,
        rtp_port,
        codec: INTERPRETER_CODEC,
        ring_timeout: Duration::from_secs(state.settings.callback_ring_secs.max(1)),
    };
    tokio::spawn(tracing::Instrument::instrument(
        trunk::run(trunk, dial, progress_tx, control_rx),
        tracing::Span::current(),
    ));
    // Set once joined: the party, and the receiver that errs when the call is over here.
    let mut joined: Option<(u64, tokio::sync::oneshot::Receiver<()>)> = None;
    let mut hung_up = false;
    let why = loop {
        let over = async {
            match joined.as_mut() {
                Some((_, over)) => {
                    let _ = over.await;
                }
                None if hung_up => std::future::pending().await,
                // Not joined yet: the call may end while the interpreter's phone rings.
                None => loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if !state.phone.carries(id) {
                        break;
                    }
                },
            }
        };
        tokio::select! {
            p = progress.recv() => match p {
                Some(Progress::Ringing { .. }) => {}
                Some(Progress::Answered { remote }) => {
                    let source = Arc::new(Mutex::new(match remote {
                        Some(addr) => RtpSource::new([addr.ip()]),
                        None => RtpSource::new(trunk_ip),
                    }));
                    let socket = match rtp.try_clone() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot join the interpreter's RTP");
                            let _ = control.send(Control::Hangup);
                            hung_up = true;
                            continue;
                        }
                    };
                    let sip = SipSide {
                        socket,
                        remote,
                        payloads: LegPayloads::new(INTERPRETER_CODEC),
                        source,
                        heard: Arc::new(AtomicU64::new(0)),
                    };
                    match state.phone.join_trunk(id, sip) {
                        Ok(party) => {
                            joined = Some(party);
                            let now_ms = state.clock.now().timestamp_millis();
                            let write = audit::record_by_id(state.db.pool(), now_ms, user, AuditAction::InterpreterJoin, Some(id), masked);
                            if let Err(e) = state.db.with_lock_turn(write).await {
                                tracing::warn!(error = %e, "the interpreter's joining not audited");
                            }
                            tracing::info!(call_id = %id, "the interpreter answered and joins the call");
                            news(state, user, id, InterpreterState::Joined, None).await;
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "the call is gone: the interpreter is hung up");
                            let _ = control.send(Control::Hangup);
                            hung_up = true;
                        }
                    }
                }
                Some(Progress::Failed(f)) => break if hung_up { "call_over" } else { f.result() },
                Some(Progress::Ended { .. }) | None => break if joined.is_some() { "ended" } else { "unreachable" },
            },
            () = over, if !hung_up => {
                let _ = control.send(Control::Hangup);
                hung_up = true;
            }
        }
    };
    if let Some((party, _)) = joined {
        state.phone.leave_trunk(id, party);
    }
    if registered.hung_up.load(Ordering::SeqCst) {
        "hung_up"
    } else {
        why
    }
}
