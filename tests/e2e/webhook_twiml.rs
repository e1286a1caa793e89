//! The TwiML dialect, driven as a Twilio-style carrier would: follow each document's `<Gather>`
//! action, `<Redirect>` and `<Enqueue waitUrl>`, sign every request as Twilio does, and check that
//! every document is well-formed XML using only verbs, nouns and attributes of Twilio's reference.

use crate::helpers::{spawn_app, TestApp};
use chrono::Duration;

/// Verbs and nouns with the attributes Twilio documents for them (the subset a voice IVR uses).
const ALLOWED: &[(&str, &[&str])] = &[
    ("Response", &[]),
    ("Say", &["voice", "loop", "language"]),
    ("Play", &["loop", "digits"]),
    ("Pause", &["length"]),
    (
        "Gather",
        &["action", "finishOnKey", "input", "method", "numDigits", "timeout", "actionOnEmptyResult", "language"],
    ),
    ("Redirect", &["method"]),
    ("Enqueue", &["action", "method", "waitUrl", "waitUrlMethod", "workflowSid"]),
    ("Leave", &[]),
    ("Dial", &["action", "method", "timeout", "callerId", "timeLimit"]),
    ("Number", &["sendDigits", "url", "method"]),
    ("Sip", &["username", "password", "url", "method"]),
    ("Hangup", &[]),
    (
        "Record",
        &[
            "action",
            "method",
            "timeout",
            "finishOnKey",
            "maxLength",
            "playBeep",
            "trim",
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent",
        ],
    ),
];

/// Parses a TwiML document and checks its vocabulary; returns it for queries.
pub(crate) fn check(doc: &str) -> roxmltree::Document<'_> {
    let parsed = roxmltree::Document::parse(doc).unwrap_or_else(|e| panic!("not well-formed XML ({e}): {doc}"));
    let root = parsed.root_element();
    assert_eq!(root.tag_name().name(), "Response", "{doc}");
    for node in parsed.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        let allowed =
            ALLOWED.iter().find(|(v, _)| *v == name).unwrap_or_else(|| panic!("<{name}> is not TwiML: {doc}")).1;
        for attr in node.attributes() {
            assert!(allowed.contains(&attr.name()), "<{name} {}> is not a documented attribute: {doc}", attr.name());
        }
        if name == "Gather" {
            assert_eq!(node.attribute("input"), Some("dtmf"));
            for child in node.children().filter(|c| c.is_element()) {
                assert!(
                    ["Say", "Play", "Pause"].contains(&child.tag_name().name()),
                    "<Gather> may only nest Say, Play, Pause: {doc}"
                );
            }
        }
    }
    parsed
}

/// A document's `<Record>`, checked for the attributes a voice message needs, and the redirect
/// after it.
pub(crate) struct RecordVerb {
    pub action: String,
    pub status_callback: String,
    pub redirect: String,
    /// `maxLength`, seconds.
    pub max_length: u32,
}

pub(crate) fn record_of(doc: &str) -> RecordVerb {
    let parsed = check(doc);
    let record =
        parsed.descendants().find(|n| n.has_tag_name("Record")).unwrap_or_else(|| panic!("no <Record>: {doc}"));
    let attr = |a: &str| record.attribute(a).unwrap_or_else(|| panic!("<Record> without {a}: {doc}")).to_owned();
    assert_eq!(
        (attr("finishOnKey"), attr("playBeep"), attr("trim"), attr("method")),
        ("#".into(), "true".into(), "trim-silence".into(), "POST".into()),
        "{doc}"
    );
    assert_eq!(attr("recordingStatusCallbackMethod"), "POST");
    let next = record.next_sibling_element().unwrap_or_else(|| panic!("nothing after <Record>: {doc}"));
    assert_eq!(next.tag_name().name(), "Redirect", "{doc}");
    RecordVerb {
        action: attr("action"),
        status_callback: attr("recordingStatusCallback"),
        redirect: next.text().unwrap().to_owned(),
        max_length: attr("maxLength").parse().unwrap(),
    }
}

pub(crate) fn attr_of(doc: &roxmltree::Document<'_>, tag: &str, attr: &str) -> Option<String> {
    doc.descendants().find(|n| n.has_tag_name(tag)).and_then(|n| n.attribute(attr)).map(str::to_owned)
}

pub(crate) fn plays(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("Play"))
        .filter_map(|n| n.text())
        .map(|t| t.rsplit('/').next().unwrap_or("").trim_end_matches(".wav").to_owned())
        .collect()
}

pub(crate) async fn post(app: &TestApp, url: &str, sid: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("CallSid", sid),
        ("AccountSid", "AC0000"),
        ("From", "+393331234512"),
        ("To", "+39803001"),
        ("CallStatus", "in-progress"),
    ];
    params.extend_from_slice(extra);
    let (status, body) = app.twiml(url, &params).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

#[tokio::test]
async fn a_whole_call_through_twiml_reaches_the_queue_and_asks_for_a_callback() {
    let app = spawn_app().await;
    let sid = "CA0123456789abcdef0123456789abcdef";
    let doc = post(&app, "/twiml/voice", sid, &[]).await;
    let parsed = check(&doc);
    // Italian offered first (a text with its key), said by the carrier's Italian voice.
    assert!(plays(&parsed).is_empty(), "{doc}");
    assert!(doc.contains("<Say language=\"it-IT\">Italiano, premi 1.</Say>"), "{doc}");
    assert_eq!(attr_of(&parsed, "Gather", "numDigits").as_deref(), Some("1"));
    assert!(doc.contains("<Redirect method=\"POST\">"), "silence falls through to a redirect: {doc}");

    // A retry of the first request gets the same document.
    assert_eq!(post(&app, "/twiml/voice", sid, &[]).await, doc);

    let mut action = attr_of(&parsed, "Gather", "action").unwrap();
    for (digits, expect) in [("1", "welcome"), ("3", "cap-ask"), ("22100", "service-choice")] {
        let doc = post(&app, &action, sid, &[("Digits", digits)]).await;
        let parsed = check(&doc);
        assert!(plays(&parsed).contains(&expect.to_owned()), "after {digits}: {doc}");
        action = attr_of(&parsed, "Gather", "action").unwrap();
    }
    let doc = post(&app, &action, sid, &[("Digits", "2")]).await;
    let parsed = check(&doc);
    assert_eq!(
        parsed.descendants().find(|n| n.has_tag_name("Enqueue")).and_then(|n| n.text()),
        Some("it.casa"),
        "{doc}"
    );
    assert!(
        parsed.descendants().any(|n| n.has_tag_name("Say") && n.attribute("language") == Some("it-IT")),
        "position said: {doc}"
    );
    let wait_url = attr_of(&parsed, "Enqueue", "waitUrl").unwrap();
    let first_queue_doc = doc.clone();

    // Twilio polls the wait document while the caller waits.
    let doc = post(&app, &wait_url, sid, &[("QueuePosition", "1"), ("QueueTime", "5")]).await;
    let parsed = check(&doc);
    assert!(!doc.contains("<Enqueue") && !doc.contains("<Dial"), "no queueing verbs inside the queue: {doc}");
    assert!(attr_of(&parsed, "Gather", "action").unwrap().contains("ev=wait_gather"), "{doc}");

    // Past the callback threshold the caller is offered a callback, accepts, and is thanked.
    app.clock.advance(Duration::seconds(301));
    let doc = post(&app, &wait_url, sid, &[("QueuePosition", "1"), ("QueueTime", "306")]).await;
    let parsed = check(&doc);
    assert!(plays(&parsed).contains(&"queue-callback-offer".to_owned()), "{doc}");
    let action = attr_of(&parsed, "Gather", "action").unwrap();
    let doc = post(&app, &action, sid, &[("Digits", "1")]).await;
    let parsed = check(&doc);
    // The voicemail prompt, then out of the queue (a wait document may not record).
    assert!(plays(&parsed).contains(&"voicemail-prompt".to_owned()), "{doc}");
    assert!(doc.contains("<Leave/>") && !doc.contains("<Record"), "{doc}");
    let queue_action = attr_of(&check(&first_queue_doc), "Enqueue", "action").unwrap();
    let doc = post(&app, &queue_action, sid, &[("QueueResult", "leave")]).await;
    let record = record_of(&doc);
    assert_eq!(record.max_length, 60, "voicemail_max_secs");
    // Nothing recorded: Twilio skips the action and follows the redirect.
    let doc = post(&app, &record.redirect, sid, &[]).await;
    let parsed = check(&doc);
    assert!(plays(&parsed).contains(&"callback-confirmed".to_owned()), "{doc}");
    assert!(doc.contains("<Hangup/>"), "{doc}");

    let (outcome, channel): (Option<String>, String) =
        sqlx::query_as("SELECT outcome, channel FROM calls WHERE call_id = $1")
            .bind(sid)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!((outcome.as_deref(), channel.as_str()), (Some("callback"), "twiml"));
    app.stop().await;
}

#[tokio::test]
async fn signatures_unknown_calls_and_status_callbacks() {
    let app = spawn_app().await;
    // A forged signature: 403 and nothing recorded.
    let r = app
        .client
        .post(app.url("/twiml/voice"))
        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&[("CallSid", "CAforged"), ("From", "+393330000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0);

    // A gather for a call this server never saw: an apology and the operator queue, not silence.
    let doc = post(&app, "/twiml/voice?step=4&ev=gather", "CAunknown", &[("Digits", "1")]).await;
    let parsed = check(&doc);
    assert_eq!(plays(&parsed), ["technical-problem", "technical-problem"]);
    assert!(doc.contains("<Enqueue>it</Enqueue>"), "{doc}");

    // The caller hangs up in the menu: the status callback ends the call.
    let sid = "CAstatus";
    post(&app, "/twiml/voice", sid, &[]).await;
    let (status, body) = app.twiml("/twiml/status", &[("CallSid", sid), ("CallStatus", "completed")]).await;
    assert_eq!(status, 200, "{body}");
    check(&body);
    let (outcome, ended): (Option<String>, Option<i64>) =
        sqlx::query_as("SELECT outcome, ended_at FROM calls WHERE call_id = $1")
            .bind(sid)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(outcome.as_deref(), Some("hung_up_in_menu"));
    assert!(ended.is_some());
    app.stop().await;
}

#[tokio::test]
async fn prompts_are_served_with_etags() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/prompts/fr/welcome.wav")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let r = app.client.get(app.url("/prompts/fr/welcome.wav")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    for missing in
        ["/prompts/de/welcome.wav", "/prompts/fr/nothing.wav", "/prompts/fr/welcome.mp3", "/prompts/fr/..%2Fsecret.wav"]
    {
        let r = app.client.get(app.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    let r = app.client.get(app.url("/prompts/fr/welcome.wav?pace=fast")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_taking_the_call_leaves_the_queue_and_is_dialled() {
    let app = spawn_app().await;
    let sid = "CAtransfer";
    let doc = post(&app, "/twiml/voice", sid, &[]).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(&app, &action, sid, &[("Digits", "0")]).await;
    let parsed = check(&doc);
    let wait_url = attr_of(&parsed, "Enqueue", "waitUrl").unwrap();
    let queue_left = attr_of(&parsed, "Enqueue", "action").unwrap();

    crate::webhook_json::assign_operator(&app, sid, "giulia", "sip:giulia@pbx.example.org").await;
    // The next wait poll takes the caller out of the queue…
    let doc = post(&app, &wait_url, sid, &[("QueueTime", "12")]).await;
    check(&doc);
    assert!(doc.contains("<Leave/>"), "{doc}");
    // …and the <Enqueue> action dials the operator.
    let doc = post(&app, &queue_left, sid, &[("QueueResult", "leave")]).await;
    let parsed = check(&doc);
    assert_eq!(
        parsed.descendants().find(|n| n.has_tag_name("Sip")).and_then(|n| n.text()),
        Some("sip:giulia@pbx.example.org")
    );
    let dial_action = attr_of(&parsed, "Dial", "action").unwrap();
    // No answer: back into the queue.
    let doc = post(&app, &dial_action, sid, &[("DialCallStatus", "no-answer")]).await;
    check(&doc);
    assert!(doc.contains("<Enqueue"), "{doc}");
    app.stop().await;
}

/// A caller silent twice hears the rest slowly: recorded prompts as their slow renderings, and a
/// runtime text (the place read back) as `<Play>` of the server's own slow rendering of it, at a
/// signed URL (Twilio's basic voices have one speed).
#[tokio::test]
async fn a_slow_caller_hears_runtime_texts_played_slowly() {
    let app = spawn_app().await;
    let sid = "CAslow0123456789abcdef0123456789ab";
    // Silent at the guessed language (→ the full language menu), then twice there.
    let mut doc = post(&app, "/twiml/voice", sid, &[]).await;
    for _ in 0..3 {
        let parsed = check(&doc);
        let redirect =
            parsed.descendants().find(|n| n.has_tag_name("Redirect")).and_then(|n| n.text()).unwrap().to_owned();
        doc = post(&app, &redirect, sid, &[]).await;
    }
    // The options are texts with their keys: at a slow pace, the server's own slow renderings.
    assert!(!doc.contains("<Say"), "slow from the second silence in a menu: {doc}");
    assert_eq!(plays(&check(&doc)).len(), 9, "nine languages but Italian, each played: {doc}");
    let mut action = attr_of(&check(&doc), "Gather", "action").unwrap();
    for digits in ["1", "3"] {
        doc = post(&app, &action, sid, &[("Digits", digits)]).await;
        action = attr_of(&check(&doc), "Gather", "action").unwrap();
    }
    let doc = post(&app, &action, sid, &[("Digits", "22100")]).await;
    let parsed = check(&doc);
    assert!(!doc.contains("<Say"), "no <Say> at a slow pace: {doc}");
    let speech = parsed
        .descendants()
        .filter(|n| n.has_tag_name("Play"))
        .filter_map(|n| n.text())
        .find(|u| u.contains("/speech/"))
        .unwrap_or_else(|| panic!("the place read back is played: {doc}"))
        .to_owned();
    let path = &speech[speech.find("/speech/").unwrap()..];
    let r = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let wav = r.bytes().await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 8000, 16));
    assert!(reader.duration() > 8000, "a second of speech or more: {} samples", reader.duration());
    let r = app.client.get(app.url(path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);

    // Another text of the same answer, a changed signature, none: refused, and said why.
    let (base, sig) = path.split_once("?sig=").unwrap();
    let n = base.rsplit('/').next().unwrap();
    let other = format!("{}/{}", &base[..base.len() - n.len() - 1], if n == "0.wav" { "1.wav" } else { "0.wav" });
    let mut forged = sig.to_owned();
    forged.replace_range(..1, if sig.starts_with('0') { "1" } else { "0" });
    for bad in [format!("{other}?sig={sig}"), format!("{base}?sig={forged}"), base.to_owned()] {
        let r = app.client.get(app.url(&bad)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "forbidden", "{body}");
    }
    app.stop().await;
}

/// An operator who answers in the browser (one with a SIP target too, choosing the browser) is
/// dialled at their own address on the helpline's SIP endpoint, `<Dial><Sip>sip:op-…;token=…`,
/// which the SIP adapter takes as the operator leg of the call (docs/media.md; the tones through
/// it are proven in tests/browser/phone.test.mjs).
#[tokio::test]
async fn an_operator_answering_in_the_browser_is_dialled_at_the_helplines_own_sip_address() {
    use crate::console_client::{add_user, operator_online, until, CallState, ClientMessage, Device, ServerMessage};
    use ivr::domain::Language;
    let app = spawn_app().await;
    let languages = [Language::It, Language::En, Language::Fr, Language::Es];
    add_user(&app, "paola", console::db::users::Role::Operator, &languages, &[], false).await;
    let mut paola = operator_online(&app, "paola", true).await;
    let sid = "CAbrowser";
    let doc = post(&app, "/twiml/voice", sid, &[]).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(&app, &action, sid, &[("Digits", "0")]).await;
    let parsed = check(&doc);
    let wait_url = attr_of(&parsed, "Enqueue", "waitUrl").unwrap();
    let queue_left = attr_of(&parsed, "Enqueue", "action").unwrap();

    let offer = until!(paola, ServerMessage::Offer(o) => o);
    paola.send(ClientMessage::Accept { offer_id: offer.offer_id, device: Some(Device::Browser) }).await;
    let connected = until!(paola, ServerMessage::Call(c) if c.state == CallState::Connected => c);
    assert_eq!(connected.device, Some(Device::Browser));
    let doc = post(&app, &wait_url, sid, &[("QueueTime", "12")]).await;
    assert!(doc.contains("<Leave/>"), "{doc}");
    let doc = post(&app, &queue_left, sid, &[("QueueResult", "leave")]).await;
    let parsed = check(&doc);
    let target = parsed.descendants().find(|n| n.has_tag_name("Sip")).and_then(|n| n.text()).unwrap_or_default();
    let prefix = format!("sip:op-paola@{};token=", app.state.phone.sip_addr());
    assert!(target.starts_with(&prefix), "{target} should start with {prefix}");
    assert_eq!(target.len(), prefix.len() + 32, "a 128-bit token: {target}");
    app.stop().await;
}
