//! The HTTP telephony adapters: our JSON call-event API (`POST /voice/events`) and the TwiML
//! dialect (`POST /twiml/voice`, `POST /twiml/status`). Both only translate: a signed request
//! becomes an engine [`ivr::engine::Event`] for the call runtime, the runtime's actions become the
//! answer. Nothing a request says reaches the engine before its signature is verified.

pub mod actions;
pub mod json;
pub mod signature;
pub mod twiml;

use crate::state::AppState;
use axum::http::HeaderMap;
use axum::Router;

pub fn routes() -> Router<AppState> {
    json::routes().merge(twiml::routes())
}

/// The public base URL of this server: the configured `public_url`, else `http://<Host>`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if !state.settings.public_url.is_empty() {
        return state.settings.public_url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// A SHA-256 digest, hex, of what identifies a request (for idempotent retries).
pub fn digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}
