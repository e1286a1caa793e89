//! Which interface places a callback, from the channel the caller came in on (`calls.channel`)
//! and what is configured. The rule (docs/operators.md, "Which interface places a callback"):
//!
//! - a SIP trunk (`HELPLINE_TRUNK_URI`) places every callback it can: SIP, TwiML and JSON-API
//!   calls alike (the sealed number is the caller's E.164 number whichever way they came in);
//! - with no trunk, a Twilio-compatible carrier's REST "create call"
//!   (`HELPLINE_TWILIO_ACCOUNT_SID`) places the callbacks of TwiML callers, and of SIP callers
//!   too (their number is as real; a deployment whose SIP calls come from a PBX with no trunk
//!   still reaches them through its carrier account);
//! - JSON-API callers with no trunk: a signed request to `HELPLINE_CARRIER_CALLS_URL` (the
//!   helpline keeps no number of theirs: the carrier calls back the caller of its own call id);
//! - otherwise the button answers 503 with a message saying what is missing for that call, and
//!   the request stays in the list untouched (no attempt logged).

/// What `route` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Through the SIP trunk (`sip::trunk`).
    Trunk,
    /// Through the carrier's REST API (`crate::carrier`, then `<Dial><Sip>` to the browser leg).
    Carrier,
    /// Through the signed request to `HELPLINE_CARRIER_CALLS_URL`.
    CallsUrl,
    /// Not placed: why, for the operator's page (503).
    Unavailable(String),
}

/// The interface a callback for a call that came in on `channel` goes through.
pub(super) fn route(channel: &str, trunk: bool, carrier: bool, calls_url: bool) -> Route {
    if trunk {
        return Route::Trunk;
    }
    if carrier && matches!(channel, "twiml" | "sip") {
        return Route::Carrier;
    }
    if calls_url && channel == "webhook" {
        return Route::CallsUrl;
    }
    Route::Unavailable(match channel {
        "twiml" => "this caller came in through the carrier (TwiML) and neither a SIP trunk (HELPLINE_TRUNK_URI) \
             nor the carrier's REST API (HELPLINE_TWILIO_ACCOUNT_SID) is configured: call back by phone"
            .to_owned(),
        "webhook" => "this caller came in over the JSON API and neither a SIP trunk (HELPLINE_TRUNK_URI) nor \
             HELPLINE_CARRIER_CALLS_URL is configured: call back by phone"
            .to_owned(),
        _ => "neither a SIP trunk (HELPLINE_TRUNK_URI) nor a carrier account (HELPLINE_TWILIO_ACCOUNT_SID) is \
             configured: call back by phone"
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trunk_places_every_channel() {
        for channel in ["sip", "twiml", "webhook"] {
            for carrier in [false, true] {
                assert_eq!(route(channel, true, carrier, carrier), Route::Trunk, "{channel} {carrier}");
            }
        }
    }

    #[test]
    fn without_a_trunk_the_carrier_places_twiml_and_sip_callers() {
        assert_eq!(route("twiml", false, true, true), Route::Carrier);
        assert_eq!(route("sip", false, true, true), Route::Carrier);
        assert!(matches!(route("webhook", false, true, false), Route::Unavailable(_)));
        assert_eq!(route("webhook", false, false, true), Route::CallsUrl);
        assert!(matches!(route("twiml", false, false, true), Route::Unavailable(_)));
    }

    #[test]
    fn with_neither_the_message_names_what_is_missing_for_the_channel() {
        let Route::Unavailable(m) = route("twiml", false, false, false) else { panic!("placed") };
        assert!(m.contains("REST API") && m.contains("HELPLINE_TRUNK_URI"), "{m}");
        let Route::Unavailable(m) = route("webhook", false, true, false) else { panic!("placed") };
        assert!(m.contains("HELPLINE_CARRIER_CALLS_URL"), "{m}");
        let Route::Unavailable(m) = route("sip", false, false, false) else { panic!("placed") };
        assert!(m.contains("HELPLINE_TRUNK_URI") && m.contains("HELPLINE_TWILIO_ACCOUNT_SID"), "{m}");
    }
}
