//! The carrier client (`console::carrier`) against the stand-in that checks Twilio's documented
//! requests: what goes out is exactly what the interface asks for, and every refusal comes back
//! as a typed error the features can tell a person about.

use crate::carrier_standin::CarrierStandIn;
use console::carrier::{Carrier, CarrierError, OutboundCall, OutboundMessage};
use console::config::SecretString;
use std::time::Duration;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "the-auth-token";
const WAIT: Duration = Duration::from_secs(10);

fn client(standin: &CarrierStandIn, token: &str) -> Carrier {
    Carrier::new(&standin.url, SID, &SecretString::new(token)).unwrap()
}

#[tokio::test]
async fn a_call_is_created_with_twilios_fields() {
    let mut standin = CarrierStandIn::start(SID, TOKEN).await;
    let carrier = client(&standin, &standin.auth_token);
    let created = carrier
        .create_call(&OutboundCall {
            to: "+393331234567",
            from: "+39803001",
            url: "https://helpline.example.org/twiml/callback/7",
            status_callback: Some("https://helpline.example.org/twiml/callback/7/status"),
            ring_secs: 30,
        })
        .await
        .unwrap();
    assert!(created.sid.starts_with("CA"), "{created:?}");
    assert_eq!(created.status, "queued");

    let request = standin.next_request(WAIT).await;
    assert_eq!(request.resource, "Calls.json");
    assert_eq!(request.field("To"), Some("+393331234567"));
    assert_eq!(request.field("From"), Some("+39803001"));
    assert_eq!(request.field("Url"), Some("https://helpline.example.org/twiml/callback/7"));
    assert_eq!(request.field("Method"), Some("POST"));
    assert_eq!(request.field("Timeout"), Some("30"));
    assert_eq!(request.field("StatusCallback"), Some("https://helpline.example.org/twiml/callback/7/status"));
    assert_eq!(request.fields("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
}

#[tokio::test]
async fn a_message_is_sent_and_its_segments_read_back() {
    let mut standin = CarrierStandIn::start(SID, TOKEN).await;
    let carrier = client(&standin, TOKEN);
    let body = "Sportello Unico, via Roma 1, 0612345678. ".repeat(5);
    let sent = carrier
        .send_message(&OutboundMessage { to: "+393331234567", from: "803001", body: &body, status_callback: None })
        .await
        .unwrap();
    assert!(sent.sid.starts_with("SM"));
    assert_eq!(sent.segments, Some(2), "{} GSM-7 characters are two segments", body.len());
    let request = standin.next_request(WAIT).await;
    assert_eq!(request.resource, "Messages.json");
    assert_eq!(request.field("Body"), Some(body.as_str()));
    assert_eq!(request.field("StatusCallback"), None);
}

#[tokio::test]
async fn refusals_come_back_typed_and_nothing_is_accepted() {
    let mut standin = CarrierStandIn::start(SID, TOKEN).await;
    let wrong = client(&standin, "not-the-token");
    let call =
        OutboundCall { to: "+393331234567", from: "803001", url: "http://x/y", status_callback: None, ring_secs: 20 };
    match wrong.create_call(&call).await {
        Err(CarrierError::Refused { status: 401, code: Some(20003), .. }) => {}
        other => panic!("wrong credentials: {other:?}"),
    }
    let carrier = client(&standin, TOKEN);
    let bad_number = OutboundCall { to: "0612345678", ..call.clone() };
    match carrier.create_call(&bad_number).await {
        Err(CarrierError::Refused { status: 400, code: Some(21211), message }) => {
            assert!(message.contains("0612345678"))
        }
        other => panic!("a number not in E.164: {other:?}"),
    }
    standin.fail_next(503, 20503, "Service unavailable");
    match carrier.create_call(&call).await {
        Err(CarrierError::Refused { status: 503, .. }) => {}
        other => panic!("a carrier outage: {other:?}"),
    }
    assert!(standin.try_next_request().is_none(), "no refused request counts as accepted");
}

#[tokio::test]
async fn a_carrier_that_is_down_is_unreachable_not_a_hang() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let carrier = Carrier::new(&format!("http://127.0.0.1:{port}"), SID, &SecretString::new(TOKEN)).unwrap();
    let message = OutboundMessage { to: "+393331234567", from: "803001", body: "x", status_callback: None };
    assert!(matches!(carrier.send_message(&message).await, Err(CarrierError::Unreachable(_))));
}

#[tokio::test]
async fn a_recording_is_fetched_as_wav_within_its_bound() {
    let mut standin = CarrierStandIn::start(SID, TOKEN).await;
    let carrier = client(&standin, TOKEN);
    let wav: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let url = standin.put_recording("RE42", wav.clone());
    assert_eq!(carrier.fetch_recording(&url, 8000).await.unwrap(), wav);
    assert_eq!(standin.next_request(WAIT).await.resource, "Recordings/RE42.wav", "fetched as WAV");
    assert!(matches!(carrier.fetch_recording(&url, 1000).await, Err(CarrierError::TooLarge(1000))));
    let missing = url.replace("RE42", "RE43");
    assert!(matches!(carrier.fetch_recording(&missing, 8000).await, Err(CarrierError::Refused { status: 404, .. })));
}
