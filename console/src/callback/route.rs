//! Which interface places a callback, from the channel the caller came in on (`calls.channel`)
//! and what is configured. The rule (docs/operators.md, "Which interface places a callback"):
//!
//! - a SIP trunk (`HELPLINE_TRUNK_URI`) places every callback it can: SIP, TwiML and JSON-API
//!   calls alike (the sealed number is the caller's E.164 number whichever way they came in);
//! - with no trunk, nothing places the call yet: the carrier's REST "create call" for TwiML
//!   calls (`HELPLINE_TWILIO_ACCOUNT_SID`) and the signed request to `HELPLINE_CARRIER_CALLS_URL`
//!   for JSON-API calls are not built, so the button answers 503 with a message saying what is
//!   missing for that call, and the request stays in the list untouched (no attempt logged).

/// What `route` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Through the SIP trunk (`sip::trunk`).
    Trunk,
    /// Not placed: why, for the operator's page (503).
    Unavailable(String),
}

/// The interface a callback for a call that came in on `channel` goes through.
pub(super) fn route(channel: &str, trunk: bool, carrier: bool) -> Route {
    if trunk {
        return Route::Trunk;
    }
    Route::Unavailable(match channel {
        "twiml" if carrier => "this caller came in through the carrier (TwiML): callbacks through its REST API \
             (HELPLINE_TWILIO_ACCOUNT_SID) are not built yet, and no SIP trunk is configured \
             (HELPLINE_TRUNK_URI): call back by phone"
            .to_owned(),
        "twiml" => "this caller came in through the carrier (TwiML) and no SIP trunk is configured \
             (HELPLINE_TRUNK_URI): call back by phone"
            .to_owned(),
        "webhook" => "this caller came in over the JSON API and no SIP trunk is configured (HELPLINE_TRUNK_URI); \
             callbacks through HELPLINE_CARRIER_CALLS_URL are not built yet: call back by phone"
            .to_owned(),
        _ => "no SIP trunk is configured (HELPLINE_TRUNK_URI): call back by phone".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trunk_places_every_channel() {
        for channel in ["sip", "twiml", "webhook"] {
            for carrier in [false, true] {
                assert_eq!(route(channel, true, carrier), Route::Trunk, "{channel} {carrier}");
            }
        }
    }

    #[test]
    fn without_a_trunk_the_message_names_what_is_missing_for_the_channel() {
        let Route::Unavailable(m) = route("twiml", false, true) else { panic!("placed") };
        assert!(m.contains("REST API") && m.contains("HELPLINE_TRUNK_URI"), "{m}");
        let Route::Unavailable(m) = route("twiml", false, false) else { panic!("placed") };
        assert!(!m.contains("REST API") && m.contains("HELPLINE_TRUNK_URI"), "{m}");
        let Route::Unavailable(m) = route("webhook", false, true) else { panic!("placed") };
        assert!(m.contains("HELPLINE_CARRIER_CALLS_URL"), "{m}");
        let Route::Unavailable(m) = route("sip", false, true) else { panic!("placed") };
        assert!(m.starts_with("no SIP trunk"), "{m}");
    }
}
