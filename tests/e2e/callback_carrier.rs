//! Callbacks placed through a Twilio-compatible carrier's REST API (no SIP trunk): the carrier is
//! the stand-in (`carrier_standin`, checking `Calls.json` as Twilio documents it, basic
//! authentication included), the test plays its other parts: the signed request for our `Url`
//! once the callee answers, the `<Dial><Sip>` INVITE from the carrier's SIP side to the
//! operator's browser leg (a Rust SIP peer playing 440 Hz), and the signed status callbacks. The
//! operator's browser is a str0m WebRTC peer playing 1 kHz; the tones prove the bridge both ways.

use crate::callback_calls::{
    assert_tone, attempt_over, browser, callee_plays_440, kpi_total, operator, post_json, run_browser, the_callback,
};
use crate::callbacks::{api, twiml_callback_request};
use crate::carrier_standin::CarrierStandIn;
use crate::helpers::{
    fresh_database, post_signed_event, spawn_app_with, TestApp, TEST_TWILIO_TOKEN, TEST_WEBHOOK_SECRET,
};
use crate::privacy::database_contents;
use crate::sip::SipPhone;
use console::callback::CallsUrlRequest;
use console::clock::Clock;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use tokio::net::UdpSocket;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// The caller's number (`webhook_twiml::post`'s `From`) and its digits.
const NUMBER: &str = "+393331234512";
const DIGITS: &str = "3331234512";
/// `HELPLINE_TRUNK_CALLER_ID`: the number callbacks come from.
const CALLER_ID: &str = "+39803001";

async fn app_with_carrier(carrier: &CarrierStandIn) -> TestApp {
    let api = carrier.url.clone();
    spawn_app_with(fresh_database().await, move |s| {
        s.twilio_account_sid = ACCOUNT.into();
        s.twilio_api_url = api;
        s.trunk_caller_id = CALLER_ID.into();
        s.callback_ring_secs = 30;
    })
    .await
}

/// The carrier's signed request to `url` about call `sid`; the status code and body.
async fn carrier_posts(app: &TestApp, url: &str, sid: &str, status: &str) -> (u16, String) {
    app.twiml(
        url,
        &[("CallSid", sid), ("AccountSid", ACCOUNT), ("From", CALLER_ID), ("To", NUMBER), ("CallStatus", status)],
    )
    .await
}

/// Clicks "Call back" with a browser's offer and returns the carrier's `Calls.json` request
/// (checked as documented), with the attempt's `Url`, `StatusCallback` and the call's sid.
struct Placed {
    url: String,
    status_url: String,
    sid: String,
    /// The helpline's SDP answer to the browser.
    answer: String,
    pending: str0m::change::SdpPendingOffer,
    rtc: str0m::Rtc,
    mid: str0m::media::Mid,
    socket: std::net::UdpSocket,
}

async fn place(app: &TestApp, carrier: &mut CarrierStandIn, s: &crate::console_client::Session, id: i64) -> Placed {
    let (rtc, mid, offer, pending, socket) = browser();
    let (status, placed) =
        post_json(app, s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": offer})).await;
    assert_eq!(status, 200, "{placed}");
    assert!(!placed.to_string().contains(DIGITS), "the page never gets the number: {placed}");
    let request = carrier.next_request(Duration::from_secs(10)).await;
    assert_eq!(request.resource, "Calls.json");
    let attempt = placed["attempt"].as_i64().unwrap();
    let url = app.url(&format!("/twiml/callbacks/{attempt}"));
    assert_eq!(request.field("To"), Some(NUMBER), "the unsealed number, E.164");
    assert_eq!(request.field("From"), Some(CALLER_ID));
    assert_eq!(request.field("Url"), Some(url.as_str()));
    assert_eq!(request.field("Method"), Some("POST"));
    assert_eq!(request.field("Timeout"), Some("30"));
    assert_eq!(request.field("StatusCallback"), Some(format!("{url}/status").as_str()));
    assert_eq!(request.field("StatusCallbackMethod"), Some("POST"));
    assert_eq!(request.fields("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
    let (sid,): (Option<String>,) = wait_for_sid(app, attempt).await;
    let answer = placed["sdp"].as_str().unwrap().to_owned();
    Placed { status_url: format!("{url}/status"), url, sid: sid.unwrap(), answer, pending, rtc, mid, socket }
}

async fn wait_for_sid(app: &TestApp, attempt: i64) -> (Option<String>,) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let row: (Option<String>,) = sqlx::query_as("SELECT carrier_sid FROM callback_attempts WHERE id = $1")
            .bind(attempt)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        if row.0.is_some() {
            return row;
        }
        assert!(Instant::now() < until, "the carrier's sid was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An offer from a carrier's SIP side receiving at `port`: µ-law first, A-law too.
fn carrier_offer(port: u16) -> String {
    format!(
        "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

fn sdp_addr(sdp: &str) -> SocketAddr {
    let ip = sdp.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).unwrap().trim();
    let port = sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap().split(' ').next().unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

#[tokio::test]
async fn a_callback_through_the_carriers_rest_api_dials_the_operators_browser_leg_and_the_tones_cross() {
    let mut carrier = CarrierStandIn::start(ACCOUNT, TEST_TWILIO_TOKEN).await;
    let app = app_with_carrier(&carrier).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000001").await;
    let id = the_callback(&app).await;
    let s = operator(&app, "cora").await;
    let Placed { url, status_url, sid, answer, pending, mut rtc, mid, socket } =
        place(&app, &mut carrier, &s, id).await;
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let browser = std::thread::spawn(move || run_browser(rtc, mid, socket, Duration::from_secs(8)));

    // A forged status callback changes nothing.
    let forged = app
        .client
        .post(&status_url)
        .header("x-twilio-signature", "AAAA")
        .form(&[("CallSid", sid.as_str()), ("CallStatus", "busy")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (status, body) = carrier_posts(&app, &status_url, &sid, "ringing").await;
    assert_eq!(status, 204, "{body}");
    let (_, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
    assert_eq!(st["call_state"], "ringing", "{st}");

    // The callee answers: the carrier asks for our TwiML, and is told to ring the operator.
    let (status, doc) = carrier_posts(&app, &url, &sid, "in-progress").await;
    assert_eq!(status, 200, "{doc}");
    let target = doc.split("<Sip>").nth(1).and_then(|r| r.split("</Sip>").next()).unwrap_or_default().to_owned();
    let prefix = format!("sip:op-cora@{};token=", app.state.phone.sip_addr());
    let dial = format!("<Response><Dial action=\"{url}/dialed\" method=\"POST\"><Sip>");
    assert!(doc.contains(&dial) && target.starts_with(&prefix), "{doc}");
    assert_eq!(target.len(), prefix.len() + 32, "a 128-bit token: {target}");
    let (status, _) = carrier_posts(&app, &status_url, &sid, "in-progress").await;
    assert_eq!(status, 204);

    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = carrier_offer(callee.local_addr().unwrap().port());
    // The carrier's SIP side: µ-law offered first, the operator's leg speaks A-law.
    let mut sip = SipPhone::dial(app.state.phone.sip_addr(), &target, "carrier", &offer).await;
    assert!(
        sip.answer_sdp().contains("m=audio ") && sip.answer_sdp().contains("RTP/AVP 8\r\n"),
        "{}",
        sip.answer_sdp()
    );
    let helpline_rtp = sdp_addr(sip.answer_sdp());

    let heard = callee_plays_440(&callee, helpline_rtp).await;
    let browser_heard = tokio::task::spawn_blocking(move || browser.join().unwrap()).await.unwrap();
    assert_tone(&heard, 1000.0, 440.0, "the callee, from the operator");
    assert_tone(&browser_heard, 440.0, 1000.0, "the operator, from the callee");

    // The operator hangs up: the carrier's SIP leg gets BYE, then the carrier reports the end.
    let (status, body) = post_json(&app, &s, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    sip.expect_bye(Duration::from_secs(10)).await;
    let (status, _) = carrier_posts(&app, &status_url, &sid, "completed").await;
    assert_eq!(status, 204);
    let st = attempt_over(&app, &s, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("done"), Some("reached")), "{st}");
    assert!(!database_contents(&app).await.contains(DIGITS), "the number is nowhere in the database");
    let k = kpi_total(&app).await;
    assert_eq!((k["callbacks_reached"].as_i64(), k["callbacks_unreachable"].as_i64()), (Some(1), Some(0)), "{k}");
    // The attempt is over: a late request for the TwiML rings nobody.
    let (_, doc) = carrier_posts(&app, &url, &sid, "in-progress").await;
    assert!(doc.contains("<Hangup/>") && !doc.contains("<Sip>"), "{doc}");
    assert!(carrier.try_next_request().is_none(), "nothing else asked of the carrier");
    app.stop().await;
}

#[tokio::test]
async fn busy_no_answer_and_failed_calls_close_it_as_unreachable_and_hanging_up_while_it_rings_ends_the_carriers_call()
{
    let mut carrier = CarrierStandIn::start(ACCOUNT, TEST_TWILIO_TOKEN).await;
    let app = app_with_carrier(&carrier).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000002").await;
    let id = the_callback(&app).await;
    let s = operator(&app, "cora").await;

    // 1: busy.
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "busy").await.0, 204);
    let st = attempt_over(&app, &s, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("busy")), "{st}");

    // 2: the operator hangs up while it rings: the carrier is told to end the call.
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "ringing").await.0, 204);
    let (status, body) = post_json(&app, &s, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let end = carrier.next_request(Duration::from_secs(10)).await;
    assert_eq!(end.resource, format!("Calls/{sid}.json"));
    assert_eq!(end.form, [("Status".to_owned(), "completed".to_owned())]);
    let until = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let (_, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
        if st["call_state"].is_null() && st["last_result"] == "operator_left" {
            break st;
        }
        assert!(Instant::now() < until, "{st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((st["status"].as_str(), st["attempts"].as_i64()), (Some("open"), Some(1)), "not counted: {st}");
    // The carrier's late report of the call it ended changes nothing.
    assert_eq!(carrier_posts(&app, &status_url, &sid, "canceled").await.0, 204);

    // The callee answers but the carrier cannot reach the operator's leg (the INVITE refused):
    // the callee was not spoken to; logged, not counted.
    let Placed { url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    let (status, doc) = carrier_posts(&app, &url, &sid, "in-progress").await;
    assert_eq!(status, 200, "{doc}");
    let (status, doc) = app
        .twiml(
            &format!("{url}/dialed"),
            &[("CallSid", sid.as_str()), ("AccountSid", ACCOUNT), ("DialCallStatus", "failed")],
        )
        .await;
    assert!(status == 200 && doc.contains("<Hangup/>"), "{doc}");
    let until = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let (_, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
        if st["call_state"].is_null() && st["last_result"] == "page_failed" {
            break st;
        }
        assert!(Instant::now() < until, "{st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((st["status"].as_str(), st["attempts"].as_i64()), (Some("open"), Some(1)), "not counted: {st}");
    assert_eq!(carrier_posts(&app, &format!("{url}/status"), &sid, "completed").await.0, 204);

    // 3: no answer; 4: failed → closed as unreachable, its number wiped.
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "no-answer").await.0, 204);
    attempt_over(&app, &s, id, 2).await;
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "failed").await.0, 204);
    let st = attempt_over(&app, &s, id, 3).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("failed"), Some("failed")), "{st}");
    let results: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT result, dial_target FROM callback_attempts ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(
        results,
        [
            ("busy".to_owned(), None),
            ("operator_left".to_owned(), None),
            ("page_failed".to_owned(), None),
            ("no_answer".to_owned(), None),
            ("failed".to_owned(), None)
        ]
    );
    assert!(!database_contents(&app).await.contains(DIGITS), "the number is wiped");
    let (status, body) =
        post_json(&app, &s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": "v=0"})).await;
    assert_eq!(status, 409, "closed: {body}");
    assert!(carrier.try_next_request().is_none(), "no call placed for a closed request");
    app.stop().await;
}

/// `HELPLINE_CARRIER_CALLS_URL` as a carrier would serve it: each request's signature is checked
/// as the JSON API's requests are checked (`X-Helpline-Timestamp`, `X-Helpline-Signature` under
/// the webhook secret, within the replay window) and its body read as the documented wire type;
/// a request that fails either is answered 403 or 400 and never reaches the test.
struct CallsUrlStandIn {
    url: String,
    accepted: tokio::sync::mpsc::UnboundedReceiver<CallsUrlRequest>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CallsUrlStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CallsUrlStandIn {
    async fn start() -> CallsUrlStandIn {
        use axum::http::{HeaderMap, StatusCode};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let now = chrono::Utc::now().timestamp();
                let signed = console::webhook::signature::verify_json(
                    TEST_WEBHOOK_SECRET.as_bytes(),
                    header("x-helpline-timestamp"),
                    header("x-helpline-signature"),
                    &body,
                    now,
                );
                if signed.is_err() || header("content-type") != Some("application/json") {
                    return StatusCode::FORBIDDEN;
                }
                match serde_json::from_slice::<CallsUrlRequest>(&body) {
                    Ok(request) => {
                        let _ = tx.send(request);
                        StatusCode::ACCEPTED
                    }
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }
        };
        let app = axum::Router::new().route("/callbacks", axum::routing::post(handle));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CallsUrlStandIn { url: format!("http://{addr}/callbacks"), accepted: rx, server }
    }

    async fn next(&mut self) -> CallsUrlRequest {
        tokio::time::timeout(Duration::from_secs(10), self.accepted.recv())
            .await
            .expect("HELPLINE_CARRIER_CALLS_URL received no request in time")
            .unwrap()
    }
}

/// A JSON-API call out of hours that asks for a callback (`call_id` is the carrier's).
async fn json_callback_request(app: &TestApp, call_id: &str) {
    for (seq, event) in [
        serde_json::json!({"type": "call.started", "from": "+39 333 123 4567"}),
        serde_json::json!({"type": "digits", "digits": "1"}),
        serde_json::json!({"type": "digits", "digits": "1"}),
        serde_json::json!({"type": "recording"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = event;
        event["call_id"] = serde_json::json!(call_id);
        event["seq"] = serde_json::json!(seq + 1);
        let (status, answer) = app.voice_event(&event).await;
        assert_eq!(status, 200, "{answer}");
    }
}

async fn post_status(app: &TestApp, url: &str, status: &str) -> u16 {
    let body = serde_json::to_vec(&serde_json::json!({ "status": status })).unwrap();
    post_signed_event(&app.client, url, "application/json", body, app.clock.now()).await.status().as_u16()
}

#[tokio::test]
async fn a_json_api_caller_is_called_back_through_the_signed_carrier_calls_url_and_its_sip_address() {
    let mut calls = CallsUrlStandIn::start().await;
    let calls_url = calls.url.clone();
    let app = spawn_app_with(fresh_database().await, move |s| {
        s.carrier_calls_url = calls_url;
        s.trunk_caller_id = CALLER_ID.into();
    })
    .await;
    app.clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 24, 20, 0, 0).single().unwrap());
    json_callback_request(&app, "json-cb-1").await;
    let id = the_callback(&app).await;
    let s = operator(&app, "cora").await;

    let (mut rtc, mid, offer, pending, socket) = browser();
    let (status, placed) =
        post_json(&app, &s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": offer})).await;
    assert_eq!(status, 200, "{placed}");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(placed["sdp"].as_str().unwrap()).unwrap()).unwrap();
    let phone = std::thread::spawn(move || run_browser(rtc, mid, socket, Duration::from_secs(8)));
    let attempt = placed["attempt"].as_i64().unwrap();
    let CallsUrlRequest::Place { attempt: a, call_id, from, dial, ring_secs, status_url } = calls.next().await else {
        panic!("not a callback.place")
    };
    assert_eq!((a, call_id.as_str(), from.as_deref(), ring_secs), (attempt, "json-cb-1", Some(CALLER_ID), 30));
    assert_eq!(status_url, app.url(&format!("/voice/callbacks/{attempt}/status")));
    let prefix = format!("sip:op-cora@{};token=", app.state.phone.sip_addr());
    assert!(dial.starts_with(&prefix) && dial.len() == prefix.len() + 32, "{dial}");

    // A status signed with another key changes nothing.
    let body = serde_json::to_vec(&serde_json::json!({"status": "busy"})).unwrap();
    let ts = app.clock.now().timestamp();
    let forged = app
        .client
        .post(&status_url)
        .header("content-type", "application/json")
        .header("x-helpline-timestamp", ts.to_string())
        .header("x-helpline-signature", console::webhook::json::sign("another key", ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(post_status(&app, &status_url, "ringing").await, 204);
    let (_, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
    assert_eq!(st["call_state"], "ringing", "{st}");

    // The person answers: the carrier dials the address it was given; the tones cross.
    assert_eq!(post_status(&app, &status_url, "answered").await, 204);
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = carrier_offer(callee.local_addr().unwrap().port());
    let mut sip = SipPhone::dial(app.state.phone.sip_addr(), &dial, "carrier", &offer).await;
    let heard = callee_plays_440(&callee, sdp_addr(sip.answer_sdp())).await;
    let browser_heard = tokio::task::spawn_blocking(move || phone.join().unwrap()).await.unwrap();
    assert_tone(&heard, 1000.0, 440.0, "the callee, from the operator");
    assert_tone(&browser_heard, 440.0, 1000.0, "the operator, from the callee");
    let (status, body) = post_json(&app, &s, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    sip.expect_bye(Duration::from_secs(10)).await;
    assert_eq!(post_status(&app, &status_url, "completed").await, 204);
    let st = attempt_over(&app, &s, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("done"), Some("reached")), "{st}");
    assert_eq!(post_status(&app, &status_url, "no_such_status").await, 400);

    // Another caller: the operator hangs up while it rings, and the carrier is asked to end it.
    json_callback_request(&app, "json-cb-2").await;
    let (second,): (i64,) =
        sqlx::query_as("SELECT id FROM callbacks WHERE status = 'open'").fetch_one(app.state.db.pool()).await.unwrap();
    let (_rtc, _mid, offer, _pending, _socket) = browser();
    let (status, placed) =
        post_json(&app, &s, &format!("/api/callbacks/{second}/call"), serde_json::json!({"sdp": offer})).await;
    assert_eq!(status, 200, "{placed}");
    assert!(matches!(calls.next().await, CallsUrlRequest::Place { .. }));
    let (status, body) = post_json(&app, &s, &format!("/api/callbacks/{second}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        calls.next().await,
        CallsUrlRequest::End { attempt: placed["attempt"].as_i64().unwrap(), call_id: "json-cb-2".into() }
    );
    app.stop().await;
}
