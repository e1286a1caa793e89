//! The HTTP telephony adapters: our JSON call-event API (`POST /voice/events`) and the TwiML
//! dialect (`POST /twiml/voice`, `POST /twiml/status`). Both only translate: a signed request
//! becomes an engine [`ivr::engine::Event`] for the call runtime, the runtime's actions become the
//! answer. Nothing a request says reaches the engine before its signature is verified.

pub mod actions;
pub mod json;
pub mod recording;
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
use ivr::domain::{PhoneNumber, ServerSecret};
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
    /// The carrier's REST API (`HELPLINE_TWILIO_ACCOUNT_SID`): `<Record>`ed messages are fetched
    /// through it; `None`, they are not fetched (logged).
    pub carrier: Option<crate::carrier::Carrier>,
    /// Sends the services read back by text message (TwiML's `Action::SendText`).
    pub texts: Arc<dyn crate::calls::TextSender>,
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

/// The retry fingerprint of a request: HMAC-SHA256 under the server key over its parts (each
/// length-prefixed), hex. Keyed, so the stored fingerprint cannot be recomputed from a guessed
/// request; and the adapters pass the caller's number only as its [`caller_stand_in`], so even
/// the key does not make it cover the raw number.
pub fn fingerprint(secret: &ServerSecret, parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(b"helpline retry fingerprint v2");
    for p in parts {
        mac.update(&(p.len() as u64).to_le_bytes());
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// What stands for a caller's number (as the carrier sent it) in a request's fingerprint: its
/// keyed [`ivr::domain::PhoneHash`] when it parses as a number, else a keyed hash of the text
/// itself (a number in a form we do not read is still a number).
pub fn caller_stand_in(secret: &ServerSecret, raw: &str) -> String {
    match PhoneNumber::parse(raw) {
        Ok(number) => number.hash(secret).as_str().to_owned(),
        Err(_) => fingerprint(secret, &[b"unparsed caller", raw.as_bytes()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_keyed_and_hold_no_number() {
        let a = ServerSecret::new(vec![1u8; 32]).unwrap();
        let b = ServerSecret::new(vec![2u8; 32]).unwrap();
        assert_ne!(fingerprint(&a, &[b"x"]), fingerprint(&b, &[b"x"]), "another key, another fingerprint");
        assert_ne!(fingerprint(&a, &[b"ab", b"c"]), fingerprint(&a, &[b"a", b"bc"]), "parts are delimited");
        let number = PhoneNumber::parse("+393331234567").unwrap();
        assert_eq!(caller_stand_in(&a, "+39 333 123 4567"), number.hash(&a).as_str());
        let odd = caller_stand_in(&a, "3331234567");
        assert!(!odd.contains("3331234567") && odd.len() == 64, "{odd}");
        assert_ne!(odd, caller_stand_in(&b, "3331234567"));
    }
}
