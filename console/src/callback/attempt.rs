//! One callback attempt: claimed and logged in one transaction, run (the trunk's call and the
//! operator's browser leg), and finished in one transaction (the attempt's result, the request
//! back in the list, done, or closed as unreachable with its number wiped).

use super::{audit_placed, db_error, CallbackState, Signal, CALLBACK_CODEC};
use crate::error::AppError;
use crate::media::strict::RtpSource;
use crate::media::{LegEvent, LegHandle, MediaState, SipSide};
use crate::sip::trunk::{self, Control, Dial, DialFailure, Progress, Trunk};
use crate::supervisor::store;
use ivr::domain::PhoneNumber;
use ivr::rtp::LegPayloads;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// An attempt claimed in the database.
pub(super) struct Started {
    pub callback_id: i64,
    pub attempt_id: i64,
    pub call_id: String,
    pub sealed: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The callee answered: the callback is done.
    Reached,
    /// The callee was not reached: counts towards `callback_max_attempts`.
    NotReached(DialFailure),
    /// The same, as a carrier's REST API reported it (`busy`, `no_answer`, `refused`, …): no SIP
    /// status to log.
    NotReachedBy(&'static str),
    /// The call was not placed, or the operator left before the callee answered: logged, not
    /// counted (the person was not tried).
    NotPlaced(&'static str),
}

/// Claims the request for `user` and marks it being called, in one conditional `UPDATE`; logs
/// the attempt and the audit row in the same transaction.
pub(super) async fn start(
    state: &CallbackState,
    id: i64,
    user: i64,
    name: &str,
    now: i64,
) -> Result<Started, AppError> {
    let _turn = state.db.lock_turn().await;
    let mut tx = state.db.pool().begin().await.map_err(db_error)?;
    // A node silent past node_timeout_secs (wall clock, as the nodes' heartbeats) runs nothing.
    let alive_since = crate::calls::nodes::wall_ms() - 1000 * state.settings.node_timeout_secs.max(3) as i64;
    let changed = sqlx::query(
        "UPDATE callbacks SET claimed_by = $2, claimed_at = COALESCE(claimed_at, $3), calling_at = $3, \
         calling_by = $2, calling_node = $4, call_state = 'dialing' \
         WHERE id = $1 AND status = 'open' AND (claimed_by IS NULL OR claimed_by = $2 OR calling_at IS NOT NULL) \
         AND (calling_at IS NULL OR calling_node IS NULL OR calling_node NOT IN \
              (SELECT node_id FROM nodes WHERE dead_at IS NULL AND seen_at >= $5))",
    )
    .bind(id)
    .bind(user)
    .bind(now)
    .bind(state.node.as_str())
    .bind(alive_since)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if changed == 0 {
        tx.rollback().await.map_err(db_error)?;
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT status, calling_at FROM callbacks WHERE id = $1")
                .bind(id)
                .fetch_optional(state.db.pool())
                .await
                .map_err(db_error)?;
        return Err(match row {
            None => AppError::NotFound("no such callback".into()),
            Some((status, _)) if status != "open" => AppError::Conflict("this callback is already closed".into()),
            Some((_, Some(_))) => {
                AppError::Conflict("someone is already calling this person back: only one call is placed".into())
            }
            Some(_) => AppError::Conflict("another operator has claimed this callback".into()),
        });
    }
    let (call_id, sealed): (String, Option<String>) =
        sqlx::query_as("SELECT call_id, number_sealed FROM callbacks WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    let (attempt_id,): (i64,) = sqlx::query_as(
        "INSERT INTO callback_attempts (callback_id, call_id, operator_id, started_at) VALUES ($1, $2, $3, $4) \
         RETURNING id",
    )
    .bind(id)
    .bind(&call_id)
    .bind(user)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    audit_placed(&mut tx, now, (user, name), &call_id, id).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(Started { callback_id: id, attempt_id, call_id, sealed })
}

/// Writes how the attempt ended, in one transaction.
pub(super) async fn finish(state: &CallbackState, s: &Started, now: i64, outcome: Outcome) -> Result<(), AppError> {
    let (result, sip_status): (&str, Option<i64>) = match &outcome {
        Outcome::Reached => ("reached", None),
        Outcome::NotReached(f) => (f.result(), f.status().map(i64::from)),
        Outcome::NotReachedBy(result) => (result, None),
        Outcome::NotPlaced(why) => (why, None),
    };
    let max = i64::from(state.settings.callback_max_attempts.max(1));
    let _turn = state.db.lock_turn().await;
    let mut tx = state.db.pool().begin().await.map_err(db_error)?;
    // Once: a carrier's status callback and the node placing the call may both report the end.
    let ended = sqlx::query(
        "UPDATE callback_attempts SET ended_at = $2, result = $3, sip_status = $4, dial_target = NULL \
         WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(s.attempt_id)
    .bind(now)
    .bind(result)
    .bind(sip_status)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if ended == 0 {
        tx.rollback().await.map_err(db_error)?;
        return Ok(());
    }
    let update = match outcome {
        Outcome::Reached => {
            "UPDATE callbacks SET status = 'done', done_at = $2, number_sealed = NULL, calling_at = NULL, \
             calling_by = NULL, calling_node = NULL, call_state = NULL, attempts = attempts + 1, last_attempt_at = $2, last_result = $3 \
             WHERE id = $1"
        }
        // Back in the list for anyone; closed as unreachable at the last attempt.
        Outcome::NotReached(_) | Outcome::NotReachedBy(_) => {
            "UPDATE callbacks SET calling_at = NULL, calling_by = NULL, calling_node = NULL, call_state = NULL, claimed_by = NULL, \
             claimed_at = NULL, attempts = attempts + 1, last_attempt_at = $2, last_result = $3 WHERE id = $1"
        }
        Outcome::NotPlaced(_) => {
            "UPDATE callbacks SET calling_at = NULL, calling_by = NULL, calling_node = NULL, call_state = NULL, last_attempt_at = $2, \
             last_result = $3 WHERE id = $1"
        }
    };
    let reached = outcome == Outcome::Reached;
    sqlx::query(update).bind(s.callback_id).bind(now).bind(result).execute(&mut *tx).await.map_err(db_error)?;
    let unreachable = sqlx::query(
        "UPDATE callbacks SET status = 'failed', done_at = $2, number_sealed = NULL \
         WHERE id = $1 AND status = 'open' AND attempts >= $3",
    )
    .bind(s.callback_id)
    .bind(now)
    .bind(max)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected()
        > 0;
    if reached || unreachable {
        let (language, area): (String, Option<String>) =
            sqlx::query_as("SELECT language, area FROM callbacks WHERE id = $1")
                .bind(s.callback_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        store::add_callback_outcome(&mut tx, now, &language, area.as_deref().unwrap_or(""), reached).await?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(())
}

pub(super) async fn set_call_state(state: &CallbackState, id: i64, call_state: &str) {
    let write = sqlx::query("UPDATE callbacks SET call_state = $2 WHERE id = $1 AND calling_at IS NOT NULL")
        .bind(id)
        .bind(call_state)
        .execute(state.db.pool());
    if let Err(e) = state.db.with_lock_turn(write).await {
        tracing::warn!(error = %e, "a callback's state not written");
    }
}

/// Runs the attempt to its end: the trunk's call, the browser leg, the bridge between them.
pub(super) async fn run(
    state: Arc<CallbackState>,
    trunk: Trunk,
    started: Started,
    number: PhoneNumber,
    mut leg: LegHandle,
    mut hangup: mpsc::UnboundedReceiver<Signal>,
) {
    let outcome = match std::net::UdpSocket::bind(("0.0.0.0", 0)) {
        Ok(rtp) => carry(&state, trunk, &started, number, &mut leg, rtp, &mut hangup).await,
        Err(e) => {
            tracing::error!(error = %e, "no RTP socket for the callback");
            Outcome::NotPlaced("no_media")
        }
    };
    leg.close();
    drop(leg);
    state.running().remove(&started.callback_id);
    let now = state.clock.now().timestamp_millis();
    tracing::info!(?outcome, "callback attempt over");
    if let Err(e) = finish(&state, &started, now, outcome).await {
        tracing::error!(error = %e, "a callback attempt's end not written");
    }
}

async fn carry(
    state: &CallbackState,
    trunk: Trunk,
    started: &Started,
    number: PhoneNumber,
    leg: &mut LegHandle,
    rtp: std::net::UdpSocket,
    hangup: &mut mpsc::UnboundedReceiver<Signal>,
) -> Outcome {
    let Ok(rtp_port) = rtp.local_addr().map(|a| a.port()) else { return Outcome::NotPlaced("no_media") };
    let trunk_ip = trunk.resolve().await.map(|a| a.ip()).ok();
    let source = Arc::new(Mutex::new(RtpSource::new(trunk_ip)));
    let heard = Arc::new(AtomicU64::new(0));
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
    let dial = Dial {
        number,
        rtp_port,
        codec: CALLBACK_CODEC,
        ring_timeout: Duration::from_secs(state.settings.callback_ring_secs.max(1)),
    };
    tokio::spawn(tracing::Instrument::instrument(
        trunk::run(trunk, dial, progress_tx, control_rx),
        tracing::Span::current(),
    ));
    let mut bridged = false;
    let mut answered = false;
    let mut operator_left = false;
    loop {
        tokio::select! {
            p = progress.recv() => match p {
                Some(Progress::Ringing { early_media }) => {
                    if let Some(addr) = early_media {
                        source.lock().unwrap_or_else(|p| p.into_inner()).renegotiated(addr);
                    }
                    set_call_state(state, started.callback_id, "ringing").await;
                }
                Some(Progress::Answered { remote }) => {
                    answered = true;
                    if let Some(addr) = remote {
                        // Only the callee's media from now on.
                        *source.lock().unwrap_or_else(|p| p.into_inner()) = RtpSource::new([addr.ip()]);
                    }
                    set_call_state(state, started.callback_id, "talking").await;
                    tracing::info!("the callee answered");
                }
                Some(Progress::Failed(f)) => {
                    return if operator_left && !answered { Outcome::NotPlaced("operator_left") } else { Outcome::NotReached(f) };
                }
                Some(Progress::Ended { .. }) => return Outcome::Reached,
                None => return if answered { Outcome::Reached } else { Outcome::NotReached(DialFailure::Unreachable) },
            },
            event = leg.events.recv(), if !operator_left => match event {
                Some(LegEvent::State(MediaState::Connected)) => {
                    if !bridged {
                        match rtp.try_clone() {
                            Ok(socket) => {
                                leg.bridge(SipSide {
                                    socket,
                                    remote: None,
                                    payloads: LegPayloads::new(CALLBACK_CODEC),
                                    source: source.clone(),
                                    heard: heard.clone(),
                                });
                                bridged = true;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot bridge the callback's RTP"),
                        }
                    }
                }
                Some(LegEvent::State(MediaState::Failed(_) | MediaState::Closed)) | None => {
                    tracing::info!("the operator's phone closed: the callback is hung up");
                    operator_left = true;
                    let _ = control.send(Control::Hangup);
                }
                Some(_) => {}
            },
            Some(Signal::Hangup) = hangup.recv() => {
                operator_left = true;
                let _ = control.send(Control::Hangup);
            }
        }
    }
}
