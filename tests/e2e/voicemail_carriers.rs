//! Voice messages through the carriers' interfaces: TwiML's `<Record>` (the server fetches the
//! recording from the carrier stand-in, `tests/e2e/carrier_standin.rs`, serving it at
//! `RecordingUrl.wav` behind basic auth, as Twilio does) and the
//! JSON API's `record` action and `recording` event. Each ends in the operator's callback list,
//! whose player serves a WAV holding the caller's 440 Hz.

use crate::carrier_standin::CarrierStandIn;
use crate::console_client::{add_user, sign_in};
use crate::helpers::{fresh_database, spawn_app_with, TestApp};
use crate::sip::goertzel;
use crate::webhook_twiml::{attr_of, check, plays, post, record_of};
use base64::Engine as _;
use console::db::users::Role;
use serde_json::json;
use std::time::Duration;

const ACCOUNT: &str = "ACvoicemail0000000000000000000000";

/// A Tuesday at 21:00 in Rome: closed.
fn closed_hours() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).single().unwrap()
}

/// `ms` of 440 Hz (or of silence) at 8 kHz.
fn tone(ms: usize, silent: bool) -> Vec<i16> {
    (0..ms * 8)
        .map(
            |n| {
                if silent {
                    0
                } else {
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0).sin()) as i16
                }
            },
        )
        .collect()
}

/// One second of silence, two of 440 Hz, one of silence: a message as a carrier records it.
fn message_wav(silent: bool) -> Vec<u8> {
    let mut s = tone(1000, true);
    s.extend(tone(2000, silent));
    s.extend(tone(1000, true));
    console::calls::voicemail::wav(&s)
}

/// The operator's callback list (the one entry) and what its player plays.
async fn listen(app: &TestApp) -> (serde_json::Value, Option<Vec<i16>>) {
    add_user(app, "viola", Role::Operator, &[ivr::domain::Language::parse("it").unwrap()], &[], false).await;
    let s = sign_in(app, "viola").await;
    let list: serde_json::Value = app
        .client
        .get(app.url("/api/callbacks"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = list["callbacks"][0].clone();
    let id = entry["id"].as_i64().unwrap_or_else(|| panic!("a callback request: {list}"));
    let r = app
        .client
        .get(app.url(&format!("/api/callbacks/{id}/voicemail")))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return (entry, None);
    }
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let wav = r.bytes().await.unwrap();
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).expect("a WAV file");
    assert_eq!((reader.spec().sample_rate, reader.spec().channels), (8000, 1));
    (entry, Some(reader.samples::<i16>().map(Result::unwrap).collect()))
}

fn assert_440(samples: &[i16]) {
    let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let (at_440, at_1k) = (goertzel(middle, 440.0), goertzel(middle, 1000.0));
    assert!(at_440 > 0.4 && at_1k < 0.01, "the message holds 440 Hz: {at_440:.3}, 1 kHz {at_1k:.3}");
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.state.db.pool()).await.unwrap();
    n
}

/// A TwiML caller out of hours up to the `<Record>`: its document.
async fn twiml_to_record(app: &TestApp, sid: &str) -> String {
    let doc = post(app, "/twiml/voice", sid, &[]).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(app, &action, sid, &[("Digits", "1")]).await;
    assert!(plays(&check(&doc)).contains(&"hours-closed".to_owned()), "{doc}");
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(app, &action, sid, &[("Digits", "1")]).await;
    assert!(plays(&check(&doc)).contains(&"voicemail-prompt".to_owned()), "{doc}");
    doc
}

async fn standin() -> CarrierStandIn {
    CarrierStandIn::start(ACCOUNT, crate::helpers::TEST_TWILIO_TOKEN).await
}

async fn twiml_app(carrier: &CarrierStandIn, max_secs: u32) -> TestApp {
    let app = spawn_app_with(fresh_database().await, |s| {
        s.twilio_account_sid = ACCOUNT.into();
        s.twilio_api_url = carrier.url.clone();
        s.voicemail_max_secs = max_secs;
    })
    .await;
    app.clock.set(closed_hours());
    app
}

/// Out of hours through TwiML: `<Record>` with its limits and callbacks; the caller presses `#`
/// and hears the confirmation; the recording status callback makes the server fetch
/// `RecordingUrl.wav` with the account's basic auth; the message is stored trimmed, with the
/// request's language, and the operator's player plays 440 Hz.
#[tokio::test]
async fn twiml_out_of_hours_records_and_the_server_fetches_the_message() {
    let mut carrier = standin().await;
    let app = twiml_app(&carrier, 60).await;
    let sid = "CAvoicemail000000000000000000001";
    let record = record_of(&twiml_to_record(&app, sid).await);
    assert!(record.status_callback.ends_with("/twiml/recording"), "{}", record.status_callback);
    assert_eq!(record.max_length, 60, "voicemail_max_secs");

    let recording_url = carrier.put_recording("RE0001", message_wav(false));
    let doc = post(
        &app,
        &record.action,
        sid,
        &[("RecordingUrl", &recording_url), ("RecordingDuration", "4"), ("Digits", "#"), ("RecordingSid", "RE0001")],
    )
    .await;
    let parsed = check(&doc);
    assert!(plays(&parsed).contains(&"callback-confirmed".to_owned()), "{doc}");
    assert!(doc.contains("<Hangup/>"), "{doc}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM callbacks WHERE language = 'it'").await, 1, "the request stands");

    let (status, body) = app
        .twiml(
            &record.status_callback,
            &[
                ("AccountSid", ACCOUNT),
                ("CallSid", sid),
                ("RecordingSid", "RE0001"),
                ("RecordingUrl", &recording_url),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", "4"),
                ("RecordingChannels", "1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The stand-in checked the path and the basic auth before serving it.
    let fetched = carrier.next_request(Duration::from_secs(5)).await;
    assert_eq!(fetched.resource, "Recordings/RE0001.wav");
    assert!(carrier.try_next_request().is_none(), "fetched once");

    let (entry, audio) = listen(&app).await;
    let duration = entry["voicemail_ms"].as_i64().unwrap();
    assert!((1900..=2500).contains(&duration), "two seconds of tone, the silence trimmed: {duration} ms");
    assert_eq!(entry["language"], "it");
    assert_440(&audio.expect("a voice message"));
    app.stop().await;
}

/// The faults: nothing recorded (Twilio skips the action: the redirect), a recording of silence,
/// one longer than the limit, one at another host (never fetched: the credentials stay with the
/// carrier) — each keeps the request, without a message.
#[tokio::test]
async fn twiml_empty_too_long_or_foreign_recordings_keep_the_request_without_a_message() {
    let mut carrier = standin().await;
    let app = twiml_app(&carrier, 2).await;

    // Nothing recorded.
    let sid = "CAvoicemail000000000000000000002";
    let record = record_of(&twiml_to_record(&app, sid).await);
    assert_eq!(record.max_length, 2, "voicemail_max_secs");
    let doc = post(&app, &record.redirect, sid, &[]).await;
    assert!(plays(&check(&doc)).contains(&"callback-confirmed".to_owned()), "{doc}");

    // Silence, then too long (four seconds against a limit of two), then another host.
    let silence = carrier.put_recording("RE3", message_wav(true));
    let four_seconds = carrier.put_recording("RE4", message_wav(false));
    let foreign = format!("http://127.0.0.1:9/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE9");
    let cases = [
        ("CAvoicemail000000000000000000003", silence),
        ("CAvoicemail000000000000000000004", four_seconds),
        ("CAvoicemail000000000000000000005", foreign),
    ];
    for (sid, url) in cases.iter() {
        let record = record_of(&twiml_to_record(&app, sid).await);
        let doc = post(&app, &record.action, sid, &[("RecordingUrl", url), ("RecordingDuration", "4")]).await;
        assert!(plays(&check(&doc)).contains(&"callback-confirmed".to_owned()), "{doc}");
        let (status, body) = app
            .twiml(
                &record.status_callback,
                &[("CallSid", sid), ("RecordingUrl", url), ("RecordingStatus", "completed"), ("AccountSid", ACCOUNT)],
            )
            .await;
        assert_eq!(status, 200, "{sid}: {body}");
    }
    // The two at the carrier were fetched. The foreign URL was not even tried: its host has
    // nobody listening, so a fetch would have answered 502, and every answer above was 200.
    for want in ["Recordings/RE3.wav", "Recordings/RE4.wav"] {
        assert_eq!(carrier.next_request(Duration::from_secs(5)).await.resource, want);
    }
    assert!(carrier.try_next_request().is_none());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM callbacks").await, 4, "every request stands");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM voicemails").await, 0, "and none has a message");
    // An unsigned recording callback is refused.
    let r = app
        .client
        .post(app.url("/twiml/recording"))
        .form(&[("CallSid", "CAvoicemail000000000000000000003"), ("RecordingUrl", "http://x/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

/// Out of hours through the JSON API: a `record` action with its limits; the `recording` event
/// hands over the WAV in base64; the operator's player plays 440 Hz. A second request of the
/// same event (a retry) gets the same answer; garbage audio and an oversized body are refused
/// or logged without losing the request.
#[tokio::test]
async fn json_api_records_with_a_record_action_and_a_recording_event() {
    let app = spawn_app_with(fresh_database().await, |_| {}).await;
    app.clock.set(closed_hours());
    let send = |id: &'static str, seq: i64, mut event: serde_json::Value| {
        event["call_id"] = json!(id);
        event["seq"] = json!(seq);
        let app = &app;
        async move { app.voice_event(&event).await }
    };
    let (_, a) = send("json-vm-1", 1, json!({"type": "call.started", "from": "+39 333 123 4567"})).await;
    assert!(a["actions"].to_string().contains("gather"), "{a}");
    send("json-vm-1", 2, json!({"type": "digits", "digits": "1"})).await;
    let (_, a) = send("json-vm-1", 3, json!({"type": "digits", "digits": "1"})).await;
    let actions = a["actions"].as_array().unwrap();
    assert_eq!(actions.last().unwrap(), &json!({"type": "record", "max_secs": 60, "finish_on_key": "#", "beep": true}));
    assert!(actions.iter().any(|x| x["prompt"] == "voicemail-prompt"), "{a}");

    let audio = base64::engine::general_purpose::STANDARD.encode(message_wav(false));
    let event = json!({"type": "recording", "audio": audio});
    let (status, a) = send("json-vm-1", 4, event.clone()).await;
    assert_eq!(status, 200, "{a}");
    assert!(a["actions"].to_string().contains("callback-confirmed"), "{a}");
    assert_eq!(a["ended"], true);
    let (status, again) = send("json-vm-1", 4, event).await;
    assert_eq!((status, &again), (200, &a), "a retry gets the same answer");
    let (entry, audio) = listen(&app).await;
    assert_eq!(entry["language"], "it");
    assert_440(&audio.expect("a voice message"));

    // Not base64: 400, and the call still waits for its recording.
    send("json-vm-2", 1, json!({"type": "call.started", "from": "+39 333 765 4321"})).await;
    send("json-vm-2", 2, json!({"type": "digits", "digits": "1"})).await;
    send("json-vm-2", 3, json!({"type": "digits", "digits": "1"})).await;
    let (status, _) = send("json-vm-2", 4, json!({"type": "recording", "audio": "***"})).await;
    assert_eq!(status, 400);
    // Over 3 MiB: 413.
    let big = "A".repeat(3 * 1024 * 1024 + 16);
    let (status, _) = send("json-vm-2", 4, json!({"type": "recording", "audio": big})).await;
    assert_eq!(status, 413);
    // Base64 of something that is no WAV: the request is kept, without a message.
    let junk = base64::engine::general_purpose::STANDARD.encode(b"not a wav file at all");
    let (status, a) = send("json-vm-2", 4, json!({"type": "recording", "audio": junk})).await;
    assert_eq!(status, 200, "{a}");
    assert!(a["actions"].to_string().contains("callback-confirmed"), "{a}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM callbacks").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM voicemails").await, 1);
    app.stop().await;
}
