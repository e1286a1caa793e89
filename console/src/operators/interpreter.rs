//! An outside interpreter dialled through the SIP trunk into a live call ("Aggiungi mediatore" /
//! "Add mediator", the "dial a number" field of the mediator picker).
//!
//! `POST /api/calls/{id}/interpreter` (`{"number": "+39…"}`, E.164): the call's own operator
//! has the node that carries the call's media place a call to the number through the trunk
//! (`sip::trunk`, digest and all, as callbacks do: A-law offered alone). That node is this one,
//! or (PostgreSQL) another one asked through the phone's relay (`media::Phone::control`), the
//! number sealed for the call on its way (`calls::sealed`: the relay's rows are in the database). Once it is answered its RTP joins the call's mixer
//! (`media::Phone::join_trunk`): the interpreter hears the caller and the operator (and any
//! mediator) and everyone hears the interpreter. The trunk call is hung up when the call is over
//! on this node; the call goes on when the interpreter hangs up.
//!
//! `503` when no trunk is configured (`HELPLINE_TRUNK_URI`), `400` for a number that is not
//! E.164, `404`/`409` for a call that is unknown, over or not carried by a browser phone, and
//! the refusal of the mediation endpoints for anyone but the call's operator. The
//! number goes nowhere but into the INVITE: the audit log and the call's timeline hold it
//! masked (`interpreter_dial`, `interpreter_join`, `interpreter_leave` with why).

use super::mediation::{holds_call, live};
use super::{ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::calls::sealed::SealedNumber;
use crate::db::audit::{self, AuditAction};
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::media::strict::RtpSource;
use crate::media::{CallControl, InterpreterDialler, SipSide};
use crate::sip::trunk::{self, Control, Dial, Progress, Trunk};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use ivr::domain::{CallId, PhoneNumber};
use ivr::rtp::LegPayloads;
use ivr::sdp::Codec;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;
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
    Router::new().route("/api/calls/{id}/interpreter", post(dial))
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

/// What places the interpreters' calls asked for by this node's operators or by another node's
/// (`media::Phone::dial_interpreters_with`, at assembly): the number opened, the call placed
/// from this node (the call's media is here), in the background.
pub fn dialler(state: Weak<OperatorsState>) -> InterpreterDialler {
    Arc::new(move |id, user, sealed| {
        let state = state.upgrade().ok_or_else(|| "this node is stopping".to_owned())?;
        let trunk = (state.trunk.clone())
            .ok_or_else(|| "no SIP trunk is configured on the call's node (HELPLINE_TRUNK_URI)".to_owned())?;
        let call_id = CallId::parse(&id).map_err(|_| format!("no call {id:?}"))?;
        let number = state
            .seal
            .open(&call_id, &SealedNumber::from_stored(sealed))
            .map_err(|e| format!("the interpreter's number: {e}"))?;
        let masked = number.masked();
        tokio::spawn(tracing::Instrument::instrument(
            carry(state, trunk, id, user, number, masked),
            tracing::Span::current(),
        ));
        Ok(())
    })
}

/// Places the interpreter's call and joins it to the call once answered, to its end.
async fn carry(state: Arc<OperatorsState>, trunk: Trunk, id: String, user: i64, number: PhoneNumber, masked: String) {
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
    let Ok(rtp_port) = rtp.local_addr().map(|a| a.port()) else { return "no_media" };
    let trunk_ip = trunk.resolve().await.map(|a| a.ip()).ok();
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
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
    why
}
