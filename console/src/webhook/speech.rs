//! `GET /speech/{call_id}/{step}/{n}.wav?sig=…`: a runtime text of a call's answer (a queue
//! position, the services read back) rendered by the server, for TwiML's `<Play>`: **slowly**, or
//! at its pace in a language the carrier's voices do not speak (no `say` tag in `[[languages]]`).
//!
//! A caller who stayed silent twice gets the rest of the call at a slow pace. Recorded prompts have
//! slow renderings (`/prompts/{lang}/{id}.wav?pace=slow`), but a runtime text reaches a TwiML
//! carrier as `<Say>`, whose speed Twilio's basic voices cannot change (SSML `<prosody>` works
//! only with some providers' voices, and fails the verb with the others). So the TwiML dialect
//! turns a slow `say` into `<Play>` of this URL, and the server renders the text with its own
//! text-to-speech, as it renders the prompts.
//!
//! The URL names the text by where it is stored — the `n`-th action of the answer kept on the
//! call's step `step` (`call_events.answer`) — so it stays short whatever the text, and carries an
//! HMAC of those three under the server secret, so nobody can make the server render texts it
//! did not answer.

use super::actions::prompt_args;
use super::WebhookState;
use crate::calls::Answer;
use crate::error::AppError;
use crate::voice::wav_response;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hmac::{Hmac, Mac};
use ivr::domain::ServerSecret;
use ivr::engine::Action;
use ivr::prompts::{wav_bytes, Pace};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<WebhookState>: FromRef<S>,
{
    Router::new().route("/speech/{call_id}/{step}/{file}", get(speech))
}

/// Bytes of the HMAC kept in the URL (128 bits).
const SIG_BYTES: usize = 16;

fn mac(secret: &ServerSecret, call_id: &str, step: i64, n: usize) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).expect("any key length");
    mac.update(format!("speech\n{call_id}\n{step}\n{n}").as_bytes());
    mac
}

/// The URL of the `n`-th action (a `say`) of the answer kept on `call_id`'s step `step`.
pub fn speech_url(base: &str, secret: &ServerSecret, call_id: &str, step: i64, n: usize) -> String {
    let sig = hex::encode(&mac(secret, call_id, step, n).finalize().into_bytes()[..SIG_BYTES]);
    // A call id is letters, digits and `._:@-` (`CallId`): nothing to escape in a path.
    format!("{base}/speech/{call_id}/{step}/{n}.wav?sig={sig}")
}

#[derive(Debug, Deserialize)]
struct SpeechQuery {
    sig: Option<String>,
}

async fn speech(
    State(state): State<Arc<WebhookState>>,
    Path((call_id, step, file)): Path<(String, i64, String)>,
    Query(q): Query<SpeechQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let n: usize = file
        .strip_suffix(".wav")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| AppError::NotFound(format!("{file}: expected <n>.wav")))?;
    let sig = q.sig.as_deref().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
    if sig.len() != SIG_BYTES || mac(&state.secret, &call_id, step, n).verify_truncated_left(&sig).is_err() {
        tracing::warn!(call_id, step, n, "speech URL with a missing or bad signature");
        return Err(AppError::Forbidden("speech: missing or bad sig".into()));
    }
    let stored: Option<(Option<String>,)> =
        sqlx::query_as("SELECT answer FROM call_events WHERE call_id = $1 AND seq = $2")
            .bind(&call_id)
            .bind(step)
            .fetch_optional(state.db.pool())
            .await
            .map_err(crate::db::DbError::from)?;
    let answer: Answer = stored
        .and_then(|(a,)| a)
        .and_then(|a| serde_json::from_str(&a).ok())
        .ok_or_else(|| AppError::NotFound(format!("no answer kept for call {call_id} at step {step}")))?;
    let Some(Action::Say { message, language, args, pace }) = answer.actions.get(n) else {
        return Err(AppError::NotFound(format!("action {n} of call {call_id} at step {step} is not a text")));
    };
    let text = state
        .voice
        .catalog
        .format(*language, message, &prompt_args(args))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("text {message} in {language}: {e}")))?;
    let (tts, language) = (state.tts.clone(), *language);
    let pace = match pace {
        ivr::engine::Pace::Slow => Pace::Slow,
        ivr::engine::Pace::Normal => Pace::Normal,
    };
    let samples = tokio::task::spawn_blocking(move || tts.render(language, &text, pace))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(|e| AppError::Internal(e.into()))?;
    let bytes = wav_bytes(&samples).map_err(|e| AppError::Internal(e.into()))?;
    Ok(wav_response(bytes, &headers))
}
