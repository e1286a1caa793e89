//! "Invia per SMS" / "Send by SMS": the services an operator referred on a call, sent to the
//! caller by text message, written as the self-service readback writes them (`texts`), in the
//! caller's language. The operator sees the text first:
//!
//! - `GET /api/calls/{id}/sms`: the text, its alphabet (`gsm7` / `ucs2`) and segments, and how it
//!   would go (`trunk` / `twilio`); or, plainly, why none can go (no sender configured, no
//!   referrals yet, a withheld number, a landline);
//! - `POST /api/calls/{id}/sms` with `{"text": <the text seen>}`: sends it, once the text is
//!   still the one seen (409 otherwise); answers the trunk's or carrier's answer, or 502 with why
//!   it did not go.
//!
//! Only the call's operator, while the call lasts. The caller's number is never read here: a SIP
//! call's sealed number is opened by the node holding the call, a TwiML call's number is asked
//! of the carrier at once; neither reaches the page. Every attempt is a `text_messages` row and a
//! step of the call's timeline; a failure leaves the call as it was.

use super::mediation::holds_call;
use super::{ConsoleError, OperatorsState};
use crate::auth::AsOperator;
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::texts::{OperatorTextError, SmsPreview, SmsSent};
use axum::extract::{FromRef, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use ivr::domain::CallId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: FromRef<S>,
{
    Router::new().route("/api/calls/{id}/sms", get(preview).post(send))
}

/// `POST /api/calls/{id}/sms`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendSms {
    /// The text as the preview showed it.
    pub text: String,
}

impl From<OperatorTextError> for AppError {
    fn from(e: OperatorTextError) -> Self {
        match e {
            OperatorTextError::UnknownCall(_) => AppError::NotFound(e.to_string()),
            OperatorTextError::NoSender => AppError::Unavailable(e.to_string()),
            OperatorTextError::NotSent(_) => AppError::BadGateway(e.to_string()),
            OperatorTextError::Db(db) => AppError::from(db),
            _ => AppError::Conflict(e.to_string()),
        }
    }
}

/// The call, this operator's (while it lasts), with the texts sender.
async fn operators_call<'s>(
    state: &'s OperatorsState,
    id: &str,
    user: i64,
) -> Result<(&'s crate::texts::Texts, CallId), AppError> {
    let call_id = CallId::parse(id).map_err(|_| AppError::NotFound(format!("no call {id:?}")))?;
    let known: Option<(String,)> = sqlx::query_as("SELECT call_id FROM calls WHERE call_id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(crate::db::DbError::from)?;
    if known.is_none() {
        return Err(AppError::NotFound(format!("no call {id:?}")));
    }
    // Another's call is a matter of authorization here (403): the answer would hold the
    // caller's services, and sending one would text a stranger's caller.
    if !holds_call(state, id, user).await? {
        return Err(AppError::Forbidden(ConsoleError::NotYourCall.to_string()));
    }
    let texts = state.texts.as_ref().ok_or(OperatorTextError::NoSender)?;
    Ok((texts, call_id))
}

/// `GET /api/calls/{id}/sms` (the call's operator).
async fn preview(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
) -> Result<Json<SmsPreview>, AppError> {
    let (texts, call_id) = operators_call(&state, &id, auth.user.id).await?;
    let (_, _, preview) = texts.preview(&call_id).await?;
    Ok(Json(preview))
}

/// `POST /api/calls/{id}/sms` (the call's operator).
async fn send(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<OperatorsState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SendSms>,
) -> Result<Json<SmsSent>, AppError> {
    let (texts, call_id) = operators_call(&state, &id, auth.user.id).await?;
    tracing::info!(call_id = %id, operator = %auth.user.name, "an operator sends the referrals by text message");
    Ok(Json(texts.send_for_operator(&call_id, auth.user.id, &body.text).await?))
}
