//! Callbacks placed through a Twilio-compatible carrier's REST API (no SIP trunk): the carrier is
//! the stand-in (`carrier_standin`, checking `Calls.json` as Twilio documents it, basic
//! authentication included), the test plays its other parts: the signed request for our `Url`
//! once the callee answers, the `<Dial><Sip>` INVITE from the carrier's SIP side to the
//! operator's browser leg (a Rust SIP peer playing 440 Hz), and the signed status callbacks. The
//! operator's browser is a str0m WebRTC peer playing 1 kHz; the tones prove the bridge both ways.

use crate::callback_calls::{
    assert_tone, attempt_over, browser, kpi_total, operator, post_json, run_browser, the_callback, tone,
};
use crate::callbacks::{api, twiml_callback_request};
use crate::carrier_standin::CarrierStandIn;
use crate::helpers::{fresh_database, spawn_app_with, TestApp, TEST_TWILIO_TOKEN};
use crate::privacy::database_contents;
use crate::sip::SipPhone;
use ivr::rtp::{decode, encode, RtpHeader, RtpPacket};
use ivr::sdp::Codec;
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
    assert!(doc.contains("<Response><Dial><Sip>") && target.starts_with(&prefix), "{doc}");
    assert_eq!(target.len(), prefix.len() + 32, "a 128-bit token: {target}");
    let (status, _) = carrier_posts(&app, &status_url, &sid, "in-progress").await;
    assert_eq!(status, 204);

    // A guessed token rings nobody.
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = callee.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    );
    // The carrier's SIP side: µ-law offered first, the operator's leg speaks A-law.
    let mut sip = SipPhone::dial(app.state.phone.sip_addr(), &target, "carrier", &offer).await;
    assert!(
        sip.answer_sdp().contains("m=audio ") && sip.answer_sdp().contains("RTP/AVP 8\r\n"),
        "{}",
        sip.answer_sdp()
    );
    let helpline_rtp = sdp_addr(sip.answer_sdp());

    let mut heard: Vec<i16> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    while sent < 200 {
        tokio::select! {
            _ = ticks.tick() => {
                let header = RtpHeader { marker: sent == 0, payload_type: 8, sequence: sent as u16, timestamp: 160 * sent, ssrc: 0x4405, csrcs: Vec::new() };
                let payload = encode(Codec::Pcma, &tone(440.0, sent as usize * 160, 160));
                callee.send_to(&header.encode(&payload), helpline_rtp).await.unwrap();
                sent += 1;
            }
            r = callee.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 8, "A-law towards the carrier");
                heard.extend(decode(Codec::Pcma, packet.payload));
            }
        }
    }
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

    // 3: no answer; 4: failed → closed as unreachable, its number wiped.
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "no-answer").await.0, 204);
    attempt_over(&app, &s, id, 2).await;
    let Placed { status_url, sid, .. } = place(&app, &mut carrier, &s, id).await;
    assert_eq!(carrier_posts(&app, &status_url, &sid, "failed").await.0, 204);
    let st = attempt_over(&app, &s, id, 3).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("failed"), Some("unreachable")), "{st}");
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
            ("no_answer".to_owned(), None),
            ("unreachable".to_owned(), None)
        ]
    );
    assert!(!database_contents(&app).await.contains(DIGITS), "the number is wiped");
    let (status, body) =
        post_json(&app, &s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": "v=0"})).await;
    assert_eq!(status, 409, "closed: {body}");
    assert!(carrier.try_next_request().is_none(), "no call placed for a closed request");
    app.stop().await;
}
