//! The HTTP telephony adapters: our JSON call-event API (`POST /voice/events`) and the TwiML
//! dialect (`POST /twiml/voice`, `POST /twiml/status`). Both only translate: a signed request
//! becomes an engine [`ivr::engine::Event`] for the call runtime, the runtime's actions become the
//! answer. Nothing a request says reaches the engine before its signature is verified.

pub mod actions;
pub mod json;
pub mod signature;
pub mod speech;
pub mod twiml;

use crate::calls::CallRuntime;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Db;
use crate::voice::Voice;
use axum::extract::FromRef;
use axum::http::HeaderMap;
use axum::Router;
use ivr::domain::ServerSecret;
use ivr::prompts::Tts;
use std::sync::Arc;

/// What the carriers' webhooks (and the slow speech they link to) need.
pub struct WebhookState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub secret: Arc<ServerSecret>,
    pub clock: Arc<dyn Clock>,
    pub calls: CallRuntime,
    pub voice: Voice,
    /// Runtime texts spoken slowly for TwiML's `<Play>`.
    pub tts: Arc<Tts>,
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<WebhookState>: FromRef<S>,
{
    json::routes().merge(twiml::routes()).merge(speech::routes())
}

/// The public base URL of this server: the configured `public_url`, else `http://<Host>`.
pub fn base_url(state: &WebhookState, headers: &HeaderMap) -> String {
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
