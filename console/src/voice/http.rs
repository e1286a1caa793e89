//! `GET /prompts/{lang}/{id}.wav`: the recorded prompts for carriers' `<Play>` (8 kHz mono 16-bit
//! PCM WAV), with a strong ETag and cache headers. `?pace=slow` renders the same text slower on
//! demand (for callers who did not answer twice), cached.

use super::Voice;
use crate::error::AppError;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ivr::domain::{Language, PromptId};
use ivr::prompts::{wav_bytes, Pace, Tts};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<PromptsState>: FromRef<S>,
{
    Router::new().route("/prompts/{lang}/{file}", get(prompt))
}

/// What serving the prompts needs.
pub struct PromptsState {
    pub voice: Voice,
    /// Slow renderings on demand.
    pub tts: Arc<Tts>,
}

#[derive(Debug, Deserialize)]
struct PromptQuery {
    pace: Option<String>,
}

async fn prompt(
    State(state): State<Arc<PromptsState>>,
    Path((lang, file)): Path<(String, String)>,
    Query(q): Query<PromptQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let language = Language::parse(&lang).map_err(|e| AppError::NotFound(e.to_string()))?;
    let id = file
        .strip_suffix(".wav")
        .ok_or_else(|| AppError::NotFound(format!("{file}: prompts are served as <id>.wav")))?;
    let id = PromptId::parse(id).map_err(|e| AppError::NotFound(e.to_string()))?;
    let slow = match q.pace.as_deref() {
        None | Some("normal") => false,
        Some("slow") => true,
        Some(other) => return Err(AppError::BadRequest(format!("pace: expected normal or slow, got {other:?}"))),
    };
    let bytes = if slow {
        let text = state
            .voice
            .catalog
            .format(language, &id, &[])
            .map_err(|e| AppError::NotFound(format!("prompt {id} in {language}: {e}")))?;
        let tts = state.tts.clone();
        let samples = tokio::task::spawn_blocking(move || tts.render(language, &text, Pace::Slow))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(e.into()))?;
        wav_bytes(&samples).map_err(|e| AppError::Internal(e.into()))?
    } else {
        // The `prompts_dir` folder, or the copy built into the binary (`crate::voice::PromptFiles`).
        state
            .voice
            .prompts
            .wav_bytes(language, &id)
            .await
            .ok_or_else(|| AppError::NotFound(format!("no prompt {id} in {language}")))?
    };
    Ok(wav_response(bytes, &headers))
}

/// A WAV file's answer: a strong ETag (its content's hash), `304` when the client has it, and
/// an hour of caching.
pub fn wav_response(bytes: Vec<u8>, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { bytes.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}
