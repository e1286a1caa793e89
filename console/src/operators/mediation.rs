//! Intercultural mediators on live calls ("Aggiungi mediatore" / "Add mediator").
//!
//! - `GET /api/calls/{id}/mediators`: the call's operator sees the mediators (users with
//!   `mediator`) who speak the caller's language and are available;
//! - `POST /api/calls/{id}/mediator` (`{"mediator": name}`): the operator invites one; the
//!   mediator's console gets a `mediation_offer` with the screen-pop ("join as mediator");
//! - `POST /api/calls/{id}/mediation`: the invited mediator accepts: they are on the call (their
//!   presence `on_call`), their page gets the call as `call` (`device: browser`), and its phone's
//!   offer joins the call as a third party heard by everyone (`media::Phone::mediate`: the
//!   caller, the operator and the mediator each hear the two others);
//! - `DELETE /api/calls/{id}/mediation`: leaving without ending the call for the others — an
//!   invited mediator declines, a mediator on the call leaves (as their `end_call` does), and the
//!   operator leaves the call to the mediator (`media::Phone::operator_leaves`: the mediator's
//!   leg carries the call on, and the mediator ends it).
//!
//! **The warm transfer** is the same machinery with a colleague instead of a mediator (`kind`
//! `consult`): `GET /api/calls/{id}/colleagues` lists the available operators (any language or
//! area), `POST /api/calls/{id}/consult` (`{"operator": name}`) asks one, whose page joins as a
//! mediator's does while the caller is on hold (the caller hears the hold audio; the operator and
//! the colleague hear each other); the operator then hands the call over (`DELETE …/mediation`:
//! the colleague's leg carries it on and the caller comes off hold) or goes back to the caller
//! (`DELETE /api/calls/{id}/consult`).
//!
//! Every step is in `mediations` (migration 0019), the audit log and the call's timeline, and
//! reaches the operator's and the mediator's consoles as `mediation` messages. The call's media
//! may be on another node (PostgreSQL): the operator's and the mediator's pages may each be on
//! any node; the steps on the media (a mediator admitted, leaving, taking the call over) are
//! done by the call's node, asked through the phone's relay (`media::Phone::control`).

use super::hub;
use super::pop;
use super::presence::{self, Change, PresenceState};
use super::protocol::{CallState, CallUpdate, Device, MediationKind, MediationOffer, MediationState, ServerMessage};
use super::queue_service;
use super::{ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::db::audit::{self, AuditAction};
use crate::db::users::{split_codes, User};
use crate::db::DbError;
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::media::PhoneError;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ivr::domain::{Language, ServiceArea};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new()
        .route("/api/calls/{id}/mediators", get(mediators))
        .route("/api/calls/{id}/mediator", post(invite))
        .route("/api/calls/{id}/mediation", post(join).delete(leave))
        .route("/api/calls/{id}/colleagues", get(colleagues))
        .route("/api/calls/{id}/consult", post(consult).delete(back_to_caller))
}

/// The audit actions of each kind: (invite, join, leave, the operator leaving it to them).
fn actions(kind: MediationKind) -> (AuditAction, AuditAction, AuditAction, AuditAction) {
    match kind {
        MediationKind::Mediator => (
            AuditAction::MediatorInvite,
            AuditAction::MediatorJoin,
            AuditAction::MediatorLeave,
            AuditAction::OperatorLeave,
        ),
        MediationKind::Consult => {
            (AuditAction::ConsultInvite, AuditAction::ConsultJoin, AuditAction::ConsultLeave, AuditAction::Transfer)
        }
    }
}

/// A mediator (or colleague) the operator may invite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mediator {
    pub name: String,
    pub languages: Vec<Language>,
    pub areas: Vec<ServiceArea>,
}

/// `GET /api/calls/{id}/mediators`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mediators {
    /// The caller's language (`null`: not known yet, every available mediator is listed).
    pub language: Option<Language>,
    pub mediators: Vec<Mediator>,
}

/// `POST /api/calls/{id}/mediator`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub mediator: String,
}

/// `POST /api/calls/{id}/consult`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consult {
    pub operator: String,
}

/// `GET /api/calls/{id}/colleagues`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Colleagues {
    pub colleagues: Vec<Mediator>,
}

pub(super) fn phone_error(e: PhoneError) -> AppError {
    match e {
        PhoneError::NoSuchCall | PhoneError::NoOperatorLeg | PhoneError::NoMediator => {
            AppError::Conflict(e.to_string())
        }
        PhoneError::WebRtc(_) => AppError::BadRequest(e.to_string()),
        PhoneError::NotRunning | PhoneError::Relay(_) => AppError::Unavailable(e.to_string()),
        PhoneError::NotMonitoring => AppError::Conflict(e.to_string()),
    }
}

/// The call, live, with its language; its media must be on this node, or (PostgreSQL, through
/// the phone's relay) on the node its row names.
pub(super) async fn live(state: &OperatorsState, id: &str) -> Result<Option<Language>, AppError> {
    let row: Option<(Option<i64>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT ended_at, language, node_id FROM calls WHERE call_id = $1")
            .bind(id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
    match row {
        None => Err(AppError::NotFound(format!("no call {id:?}"))),
        Some((Some(_), ..)) => Err(AppError::Conflict(format!("call {id:?} has ended"))),
        Some((None, _, node)) if !(state.phone.carries(id) || state.phone.relays() && node.is_some()) => {
            Err(AppError::Conflict(format!("call {id:?} is not talking to a browser phone on this server")))
        }
        Some((None, language, _)) => Ok(language.and_then(|l| Language::parse(&l).ok())),
    }
}

/// The user's open mediation on the call.
#[derive(Debug, Clone, Copy)]
struct Open {
    joined: bool,
    holds: bool,
    kind: MediationKind,
}

async fn mediation_of(state: &OperatorsState, id: &str, user: i64) -> Result<Option<Open>, DbError> {
    let row: Option<(Option<i64>, i64, String)> = sqlx::query_as(
        "SELECT joined_at, holds, kind FROM mediations WHERE call_id = $1 AND mediator_id = $2 AND left_at IS NULL",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(state.db.pool())
    .await?;
    row.map(|(joined, holds, kind)| {
        let kind = MediationKind::parse(&kind).ok_or_else(|| DbError::Corrupt(format!("mediation kind {kind:?}")))?;
        Ok(Open { joined: joined.is_some(), holds: holds != 0, kind })
    })
    .transpose()
}

/// The user holds the call: on it (presence) and not as a mediator who was only invited in.
pub(super) async fn holds_call(state: &OperatorsState, id: &str, user: i64) -> Result<bool, AppError> {
    let mut tx = state.db.pool().begin().await.map_err(DbError::from)?;
    let me = presence::get(&mut tx, user).await?;
    tx.rollback().await.map_err(DbError::from)?;
    let on_it = me.is_some_and(|p| p.state == PresenceState::OnCall && p.call_id.as_deref() == Some(id));
    let as_guest = matches!(mediation_of(state, id, user).await?, Some(Open { holds: false, .. }));
    Ok(on_it && !as_guest)
}

/// Who may be invited, but `not`: for a mediator, the available mediators who speak `language`
/// (all of them when it is not known); for a consultation, every available colleague (another
/// language or area is often the reason to consult).
async fn available(
    state: &OperatorsState,
    kind: MediationKind,
    language: Option<Language>,
    not: i64,
) -> Result<Vec<Mediator>, DbError> {
    let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT u.id, u.name, u.languages, u.areas, u.mediator FROM users u JOIN operator_state s ON s.user_id = u.id \
         WHERE u.disabled_at IS NULL AND s.presence = 'available' ORDER BY u.name",
    )
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(id, ..)| *id != not)
        .filter_map(|(_, name, languages, areas, mediator)| {
            let languages = split_codes(&languages, Language::parse).ok()?;
            let areas = split_codes(&areas, ServiceArea::parse).ok()?;
            let fits = match kind {
                MediationKind::Mediator => {
                    mediator != 0 && (language.is_none() || language.is_some_and(|l| languages.contains(&l)))
                }
                MediationKind::Consult => true,
            };
            fits.then_some(Mediator { name, languages, areas })
        })
        .collect())
}

/// `GET /api/calls/{id}/mediators` (the call's operator).
async fn mediators(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<Mediators>, AppError> {
    let language = live(&state, &id).await?;
    if !holds_call(&state, &id, auth.user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let mediators = available(&state, MediationKind::Mediator, language, auth.user.id).await?;
    Ok(Json(Mediators { language, mediators }))
}

/// `GET /api/calls/{id}/colleagues` (the call's operator): whom they may consult.
async fn colleagues(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<Colleagues>, AppError> {
    let language = live(&state, &id).await?;
    if !holds_call(&state, &id, auth.user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let colleagues = available(&state, MediationKind::Consult, language, auth.user.id).await?;
    Ok(Json(Colleagues { colleagues }))
}

/// `POST /api/calls/{id}/consult` (the call's operator): a colleague is asked to a consultation.
async fn consult(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Consult>,
) -> Result<StatusCode, AppError> {
    ask(&state, &auth.user, &id, &body.operator, MediationKind::Consult).await
}

/// `POST /api/calls/{id}/mediator` (the call's operator): the mediator is asked to join.
async fn invite(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Invite>,
) -> Result<StatusCode, AppError> {
    ask(&state, &auth.user, &id, &body.mediator, MediationKind::Mediator).await
}

/// The call's operator asks `name` to join the call as `kind`.
async fn ask(
    state: &OperatorsState,
    user: &User,
    id: &str,
    name: &str,
    kind: MediationKind,
) -> Result<StatusCode, AppError> {
    let language = live(state, id).await?;
    if !holds_call(state, id, user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    if !available(state, kind, language, user.id).await?.iter().any(|m| m.name == name) {
        return Err(AppError::Conflict(match kind {
            MediationKind::Mediator => {
                format!("{name:?} is not an available mediator who speaks the caller's language")
            }
            MediationKind::Consult => format!("{name:?} is not an available colleague"),
        }));
    }
    let invited = crate::db::users::find_user(&state.db, name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user named {name:?}")))?;
    let now_ms = state.clock.now().timestamp_millis();
    let pop = pop::screen_pop(&state.db, id, now_ms).await?;
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    sqlx::query("DELETE FROM mediations WHERE call_id = $1 AND mediator_id = $2")
        .bind(id)
        .bind(invited.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    sqlx::query(
        "INSERT INTO mediations (call_id, mediator_id, invited_by, invited_at, kind) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(invited.id)
    .bind(user.id)
    .bind(now_ms)
    .bind(kind.as_str())
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    audit::record_by_id(&mut *tx, now_ms, user.id, actions(kind).0, Some(id), &invited.name).await?;
    pop::audit(&mut *tx, now_ms, invited.id, pop.as_ref(), pop::Shown::Offer).await?;
    let offer = ServerMessage::MediationOffer(MediationOffer {
        call_id: id.to_owned(),
        kind,
        operator: user.name.clone(),
        language: language.map(|l| l.as_str().to_owned()),
        pop,
    });
    hub::write(&mut tx, &hub::user(invited.id), &offer, now_ms).await?;
    news(&mut tx, id, kind, user, &invited, MediationState::Invited, now_ms).await?;
    hub::commit(hub, tx, true).await?;
    tracing::info!(call_id = %id, operator = %user.name, invited = %invited.name, kind = kind.as_str(), "asked to join the call");
    Ok(StatusCode::NO_CONTENT)
}

/// A `mediation` message to the call's operator and to the mediator.
async fn news(
    tx: &mut hub::Tx,
    call_id: &str,
    kind: MediationKind,
    operator: &User,
    mediator: &User,
    state: MediationState,
    now_ms: i64,
) -> Result<(), DbError> {
    let message = ServerMessage::Mediation {
        call_id: call_id.to_owned(),
        kind,
        operator: operator.name.clone(),
        mediator: mediator.name.clone(),
        state,
    };
    hub::write(tx, &hub::user(operator.id), &message, now_ms).await?;
    if operator.id != mediator.id {
        hub::write(tx, &hub::user(mediator.id), &message, now_ms).await?;
    }
    Ok(())
}

/// Who invited the user into the call (the call's operator).
async fn inviter(state: &OperatorsState, id: &str, mediator: i64) -> Result<User, AppError> {
    let (by,): (i64,) = sqlx::query_as("SELECT invited_by FROM mediations WHERE call_id = $1 AND mediator_id = $2")
        .bind(id)
        .bind(mediator)
        .fetch_one(state.db.pool())
        .await
        .map_err(DbError::from)?;
    crate::db::users::find_user_by_id(&state.db, by)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the inviting operator {by} vanished")))
}

/// `POST /api/calls/{id}/mediation` (the invited mediator): on the call, their page's phone joins it.
async fn join(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    live(&state, &id).await?;
    let kind = match mediation_of(&state, &id, auth.user.id).await? {
        None => return Err(AppError::Forbidden("you were not invited into this call".into())),
        Some(Open { joined: true, .. }) => return Err(AppError::Conflict("you are already on this call".into())),
        Some(open) => open.kind,
    };
    let operator = inviter(&state, &id, auth.user.id).await?;
    let now_ms = state.clock.now().timestamp_millis();
    let pop = pop::screen_pop(&state.db, &id, now_ms).await?;
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let change = Change { call_id: Some(id.clone()), ..Change::to(PresenceState::OnCall) };
    if !presence::set(&mut tx, auth.user.id, &change, Some(&[PresenceState::Available]), now_ms).await? {
        tx.rollback().await.map_err(DbError::from)?;
        return Err(ConsoleError::Busy.into());
    }
    sqlx::query("UPDATE mediations SET joined_at = $3 WHERE call_id = $1 AND mediator_id = $2")
        .bind(&id)
        .bind(auth.user.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    audit::record_by_id(&mut *tx, now_ms, auth.user.id, actions(kind).1, Some(&id), "").await?;
    // The page takes the call as its own: its phone offers at once (and joins, below).
    let call = ServerMessage::Call(CallUpdate {
        call_id: id.clone(),
        state: CallState::Connected,
        offer_id: None,
        device: Some(Device::Browser),
        pop,
    });
    hub::write(&mut tx, &hub::user(auth.user.id), &call, now_ms).await?;
    news(&mut tx, &id, kind, &operator, &auth.user, MediationState::Joined, now_ms).await?;
    // Admitted before the commit sends the page the call, so its first offer joins.
    state.phone.admit_mediator(&id, auth.user.id).await.map_err(phone_error)?;
    if let Err(e) = hub::commit(hub, tx, true).await {
        let _ = state.phone.end_mediation(&id, auth.user.id).await;
        return Err(e.into());
    }
    tracing::info!(call_id = %id, mediator = %auth.user.name, "a mediator joins the call");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/calls/{id}/mediation`: a mediator declines or leaves; the call's operator
/// leaves the call to its mediator.
async fn leave(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    match mediation_of(&state, &id, auth.user.id).await? {
        Some(Open { joined: false, .. }) => {
            ended(&state, &auth.user, &id).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Some(Open { joined: true, holds: false, .. }) => {
            // As their end of the call: wrap-up, and their leg leaves.
            queue_service::end_call(&state, &auth.user, &id).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Some(Open { holds: true, .. }) | None => operator_leaves(&state, &auth.user, &id).await,
    }
}

/// The call's operator leaves it to the mediator who joined first.
async fn operator_leaves(state: &OperatorsState, user: &User, id: &str) -> Result<StatusCode, AppError> {
    live(state, id).await?;
    if !holds_call(state, id, user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let mediator_id = state.phone.operator_leaves(id, user.id).await.map_err(phone_error)?;
    let mediator = crate::db::users::find_user_by_id(&state.db, mediator_id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the mediator {mediator_id} vanished")))?;
    let kind = mediation_of(state, id, mediator.id).await?.map_or(MediationKind::Mediator, |o| o.kind);
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    sqlx::query("UPDATE mediations SET holds = 1 WHERE call_id = $1 AND mediator_id = $2")
        .bind(id)
        .bind(mediator.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    // The operator's own mediation, if they were one who came to hold the call, is over.
    sqlx::query("UPDATE mediations SET left_at = $3 WHERE call_id = $1 AND mediator_id = $2 AND left_at IS NULL")
        .bind(id)
        .bind(user.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    audit::record_by_id(&mut *tx, now_ms, user.id, actions(kind).3, Some(id), &mediator.name).await?;
    news(&mut tx, id, kind, user, &mediator, MediationState::Holds, now_ms).await?;
    hub::commit(hub, tx, true).await?;
    queue_service::wrap_up(state, user, id).await?;
    tracing::info!(call_id = %id, operator = %user.name, mediator = %mediator.name, "the operator leaves the call to the mediator");
    Ok(StatusCode::NO_CONTENT)
}

/// The user's mediation on the call, if any, is over (declined, left, or the call they held
/// ended): recorded, audited and told to the operator. Nothing for anyone else.
pub async fn ended(state: &OperatorsState, user: &User, id: &str) -> Result<(), ConsoleError> {
    let Some(Open { joined, holds, kind }) = mediation_of(state, id, user.id).await? else { return Ok(()) };
    let operator: Option<(i64,)> =
        sqlx::query_as("SELECT invited_by FROM mediations WHERE call_id = $1 AND mediator_id = $2")
            .bind(id)
            .bind(user.id)
            .fetch_optional(state.db.pool())
            .await?;
    let operator = match operator {
        Some((by,)) => crate::db::users::find_user_by_id(&state.db, by).await?,
        None => None,
    };
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    sqlx::query("UPDATE mediations SET left_at = $3 WHERE call_id = $1 AND mediator_id = $2 AND left_at IS NULL")
        .bind(id)
        .bind(user.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    audit::record_by_id(&mut *tx, now_ms, user.id, actions(kind).2, Some(id), "").await?;
    let state_now = if joined { MediationState::Left } else { MediationState::Declined };
    match operator {
        // Whoever held the call is told, unless the mediator held it themself.
        Some(op) if !holds => news(&mut tx, id, kind, &op, user, state_now, now_ms).await?,
        _ => {}
    }
    hub::commit(hub, tx, true).await?;
    if !joined {
        let _ = state.phone.end_mediation(id, user.id).await;
    }
    Ok(())
}

/// `DELETE /api/calls/{id}/consult` (the call's operator): back to the caller — every colleague
/// asked to a consultation on the call leaves it (to wrap-up, if they had joined). The page
/// takes the caller off hold.
async fn back_to_caller(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    live(&state, &id).await?;
    if !holds_call(&state, &id, auth.user.id).await? {
        return Err(ConsoleError::NotYourCall.into());
    }
    let open: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT mediator_id, joined_at FROM mediations WHERE call_id = $1 AND kind = 'consult' AND left_at IS NULL",
    )
    .bind(&id)
    .fetch_all(state.db.pool())
    .await
    .map_err(DbError::from)?;
    for (colleague, joined) in open {
        let Some(colleague) = crate::db::users::find_user_by_id(&state.db, colleague).await? else { continue };
        let _ = state.phone.end_mediation(&id, colleague.id).await;
        let now_ms = state.clock.now().timestamp_millis();
        let hub = state.console.hub();
        let mut tx = hub::begin(&state.db).await?;
        sqlx::query("UPDATE mediations SET left_at = $3 WHERE call_id = $1 AND mediator_id = $2 AND left_at IS NULL")
            .bind(&id)
            .bind(colleague.id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
        let (_, _, leave, _) = actions(MediationKind::Consult);
        audit::record_by_id(&mut *tx, now_ms, auth.user.id, leave, Some(&id), &colleague.name).await?;
        let state_now = if joined.is_some() { MediationState::Left } else { MediationState::Declined };
        news(&mut tx, &id, MediationKind::Consult, &auth.user, &colleague, state_now, now_ms).await?;
        hub::commit(hub, tx, true).await?;
        if joined.is_some() {
            // Their part is over: wrap-up, as after a call (no-op if they left meanwhile).
            if let Err(e) = queue_service::wrap_up(&state, &colleague, &id).await {
                tracing::debug!(error = %e, "the consulted colleague was no longer on the call");
            }
        }
    }
    tracing::info!(call_id = %id, operator = %auth.user.name, "back to the caller");
    Ok(StatusCode::NO_CONTENT)
}
