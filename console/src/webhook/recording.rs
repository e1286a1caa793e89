//! Voice messages handed over by a carrier: a TwiML `<Record>`'s file (fetched from the carrier
//! when its recording status callback says it is ready) and the JSON API's `recording` event (the
//! WAV in the signed body). Both become the same trimmed 8 kHz WAV in `voicemails` as a SIP
//! caller's message; a file that is empty, too long or unreadable is logged and not stored, and
//! the callback request stands without a message.

use super::WebhookState;
use crate::calls::voicemail::decode_recording;
use crate::db::DbError;
use ivr::domain::CallId;

/// Stores a carrier's recording for `call_id` when it holds speech within the limit. `Ok(None)`:
/// not stored (logged with the reason); `Err`: the database failed.
pub async fn keep(state: &WebhookState, call_id: &CallId, bytes: &[u8], via: &str) -> Result<Option<u32>, DbError> {
    let max = state.settings.voicemail_max_secs;
    match decode_recording(bytes, max) {
        Ok(samples) => {
            let now = state.clock.now().timestamp_millis();
            let stored = state.calls.store_voicemail(call_id, &samples, now).await?;
            tracing::info!(call_id = %call_id.as_str(), via, duration_ms = stored, "voice message stored");
            Ok(Some(stored))
        }
        Err(e) => {
            tracing::warn!(
                call_id = %call_id.as_str(),
                via,
                bytes = bytes.len(),
                reason = %e,
                "voice message not stored: the callback request is kept without it"
            );
            Ok(None)
        }
    }
}
