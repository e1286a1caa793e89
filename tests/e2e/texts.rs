//! The services read back, sent by text message (`HELPLINE_SMS_VIA=trunk`): the test is the SIP
//! trunk (a UDP peer that challenges the `MESSAGE` with 401 and checks the digest, then answers
//! 202 or refuses with 403) and the caller (a SIP phone sending its keys by INFO, whose audio is
//! heard; or the TwiML carrier). What the trunk receives is checked exactly: the request URI, the
//! sender, the content type, and a body with the three services' names and phones in the caller's
//! language; the call log has the segments, and never the number or the text.

use crate::callback_calls::{md5_hex, Req, Trunk};
use crate::helpers::{fresh_database, repo_path, spawn_app_with, TestApp};
use crate::privacy::database_contents;
use crate::sip::{RtpSink, SipPhone};
use crate::webhook_twiml::{attr_of, check, plays};
use console::clock::Clock;
use ivr::rtp::{linear_to_ulaw, RtpPacket};
use std::time::{Duration, Instant};

const USER: &str = "803001";
const PASSWORD: &str = "trunk-password-7";
const SENDER: &str = "+39803001";

/// A server texting through the trunk at `trunk`, with the flow's text countries `countries`.
async fn app_texting(trunk: std::net::SocketAddr, countries: &str) -> (TestApp, tempfile::TempDir) {
    app_texting_with(countries, move |s| {
        s.trunk_uri = format!("sip:{trunk}");
        s.trunk_user = USER.into();
        s.trunk_password = console::config::SecretString::new(PASSWORD);
        s.trunk_caller_id = USER.into();
        s.sms_via = "trunk".into();
    })
    .await
}

/// A server texting as `edit` says, with the flow's text countries `countries` and three housing
/// services in Como.
async fn app_texting_with(
    countries: &str,
    edit: impl FnOnce(&mut console::config::Settings) + Send + 'static,
) -> (TestApp, tempfile::TempDir) {
    app_texting_on(fresh_database().await, countries, edit).await
}

/// [`app_texting_with`] on the database `db` (another node on it: the same services).
async fn app_texting_on(
    db: crate::helpers::TestDb,
    countries: &str,
    edit: impl FnOnce(&mut console::config::Settings) + Send + 'static,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let flow = std::fs::read_to_string(repo_path("config/ivr.toml")).unwrap();
    assert!(flow.contains("countries = [\"39\"]"), "the default flow texts Italian mobiles");
    let flow_file = dir.path().join("ivr.toml");
    std::fs::write(&flow_file, flow.replace("countries = [\"39\"]", &format!("countries = {countries}"))).unwrap();
    let app = spawn_app_with(db, move |s| {
        edit(s);
        s.sms_sender = SENDER.into();
        s.flow_file = flow_file;
        // The phone sends no audio.
        s.rtp_timeout_secs = 0;
    })
    .await;
    // Three housing services in Como.
    let csv = dir.path().join("services.csv");
    std::fs::write(
        &csv,
        "nome,ente,descrizione,aree,indirizzo,comune,cap,telefono,email,sito,lingue,orari\n\
         Sportello Casa Como,Comune di Como,Affitti e case popolari,casa,Via Vittorio Emanuele II 97,Como,22100,+39 031 252111,,,\"it,fr\",lun-ven 09:00-13:00\n\
         Agenzia Abitare Insieme,Coop Abitare,Case in affitto,casa,Via Milano 12,Como,22100,031 2287654,,,it,lun-ven 14:00-18:00\n\
         Caritas Accoglienza Casa,Caritas Como,Accoglienza,casa,Via Tatti 5,Como,22100,+39 031 304330,,,\"it,en\",lun-ven 08:30-12:30\n",
    )
    .unwrap();
    let (_, data) = console::directory::import::read_path(&csv).expect("the services import");
    app.state.directory.replace(&data).await.unwrap();
    (app, dir)
}

/// The trunk's side of one text: a 401 challenge, the digest checked, then `status` (202 or a
/// refusal). Returns the authenticated `MESSAGE`.
async fn trunk_takes_a_text(trunk: &Trunk, status: (u16, &str)) -> Req {
    let first = trunk.expect("MESSAGE").await;
    assert!(first.header("Authorization").is_none(), "no credentials before the challenge");
    let www = "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"sms-nonce-1\", qop=\"auth\"";
    trunk.send(first.from, &first.response(401, "Unauthorized", &[www.into()], "")).await;
    let msg = loop {
        let r = trunk.expect("MESSAGE").await;
        if r.header("Authorization").is_some() {
            break r;
        }
    };
    let auth = msg.header("Authorization").unwrap();
    let cnonce = auth.split("cnonce=\"").nth(1).and_then(|r| r.split('"').next()).expect("cnonce").to_owned();
    let ha1 = md5_hex(&format!("{USER}:trunk:{PASSWORD}"));
    let ha2 = md5_hex(&format!("MESSAGE:{}", msg.uri));
    let response = md5_hex(&format!("{ha1}:sms-nonce-1:00000001:{cnonce}:auth:{ha2}"));
    assert!(auth.contains(&format!("response=\"{response}\"")), "a digest for MESSAGE on {}: {auth}", msg.uri);
    assert!(auth.contains(&format!("uri=\"{}\"", msg.uri)), "{auth}");
    assert_eq!(msg.header("Call-ID"), first.header("Call-ID"), "the same request, answered");
    assert_ne!(msg.header("CSeq"), first.header("CSeq"), "a new CSeq after the challenge");
    trunk.send(msg.from, &msg.response(status.0, status.1, &[], "")).await;
    msg
}

/// Every step's log lines of the call, in order, with its kind: (step kind, log line).
async fn call_log(app: &TestApp) -> Vec<(String, serde_json::Value)> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT kind, data FROM call_events ORDER BY call_id, seq")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    rows.into_iter()
        .flat_map(|(kind, data)| {
            let step: serde_json::Value = serde_json::from_str(&data).unwrap();
            step["log"].as_array().cloned().unwrap_or_default().into_iter().map(move |l| (kind.clone(), l))
        })
        .collect()
}

/// The prompts said by the step of `kind`, in order.
fn said_in(log: &[(String, serde_json::Value)], kind: &str) -> Vec<String> {
    log.iter()
        .filter(|(k, l)| k == kind && l["kind"] == "prompt")
        .map(|(_, l)| {
            format!("{}@{}", l["prompt"].as_str().unwrap_or_default(), l["language"].as_str().unwrap_or_default())
        })
        .collect()
}

async fn steps(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_events").fetch_one(app.state.db.pool()).await.unwrap();
    n
}

/// Waits (up to 20 s) until the call log has a step of `kind`.
async fn until_kind(app: &TestApp, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_events WHERE kind = $1")
            .bind(kind)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no {kind} step in the call log");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Presses `keys` and waits (up to 20 s) for the step they make. The phone's keys reach the call
/// in order after the step before is carried out (its task takes them one at a time), so a key
/// pressed once the previous step is in the call log is heard by that step's menu.
async fn press_then_step(app: &TestApp, phone: &mut SipPhone, keys: &str) {
    let before = steps(app).await;
    phone.press(keys).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while steps(app).await <= before {
        assert!(Instant::now() < deadline, "keys {keys}: no step in the call log");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The services the caller heard: the directory ids of the readback, as the engine logged them.
async fn services_read(app: &TestApp) -> Vec<console::directory::ServiceSummary> {
    let (state,): (String,) = sqlx::query_as("SELECT state FROM calls").fetch_one(app.state.db.pool()).await.unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let ids: Vec<String> = serde_json::from_value(state["services_read"].clone()).expect("services_read");
    assert_eq!(ids.len(), 3, "three services read back");
    ids.iter().map(|id| app.state.directory.service_summary(id, app.clock.now()).expect("in the directory")).collect()
}

/// The μ-law of a rendered prompt, padded to whole 20 ms packets.
fn rendered_wav(lang: &str, id: &str) -> Vec<u8> {
    let samples = ivr::prompts::load_wav(&repo_path(&format!("prompts/{lang}/wav/{id}.wav"))).expect("rendered prompt");
    let mut ulaw: Vec<u8> = samples.iter().map(|s| linear_to_ulaw(*s)).collect();
    ulaw.resize(samples.len().div_ceil(160) * 160, linear_to_ulaw(0));
    ulaw
}

/// Waits (up to 30 s) for a talkspurt (a marker bit starts each prompt) exactly equal to `want`.
async fn hear_exactly(sink: &mut RtpSink, want: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut spurt: Vec<u8> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(bytes) = sink.next_within(left).await else { panic!("{what}: not heard in 30 s") };
        let p = RtpPacket::decode(&bytes).expect("RTP");
        if p.header.marker {
            spurt.clear();
        }
        spurt.extend_from_slice(p.payload);
        if spurt.len() == want.len() && spurt == want {
            return;
        }
    }
}

/// A French mobile (the flow's countries include 33, so the trunk reaches it) accepts French,
/// housing, CAP 22100, hears the three nearest services, presses 3: the trunk gets the MESSAGE
/// (challenged, then taken), the body has the three services' names and phones in French and the
/// Portale's address; the caller hears "we sent you a text"; the call log has the segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_french_caller_gets_the_services_by_text_through_the_trunk() {
    let trunk = Trunk::bind().await;
    let (app, _dir) = app_texting(trunk.addr(), "[\"39\", \"33\"]").await;
    let mut sink = RtpSink::bind().await;
    let mut phone = SipPhone::call(app.sip_addr, "+33612345678", sink.port).await;
    until_kind(&app, "call_started").await;
    // French (offered first to a French number), housing, the CAP, the nearest services.
    for keys in ["1", "3", "22100", "1"] {
        press_then_step(&app, &mut phone, keys).await;
    }
    let services = services_read(&app).await;
    let log = call_log(&app).await;
    let offered = log.iter().any(|(_, l)| l["kind"] == "prompt" && l["prompt"] == "services-sms-offer");
    assert!(offered, "the readback offers the text: {:?}", said_in(&log, "lookup_results"));

    sink.drain();
    let (msg, ()) = tokio::join!(trunk_takes_a_text(&trunk, (202, "Accepted")), press_then_step(&app, &mut phone, "3"));
    assert_eq!(msg.uri, format!("sip:+33612345678@{}", trunk.addr().ip()), "the caller's number at the trunk's host");
    let from = msg.header("From").unwrap();
    assert!(from.starts_with(&format!("<sip:{SENDER}@")), "HELPLINE_SMS_SENDER is the sender: {from}");
    assert_eq!(msg.header("Content-Type"), Some("text/plain;charset=UTF-8"));
    let body = msg.body();
    for s in &services {
        assert!(body.contains(&s.name), "{} in the text: {body}", s.name);
        assert!(body.contains(&s.phone), "{} (as written) in the text: {body}", s.phone);
    }
    assert!(body.contains("Téléphone"), "in French: {body}");
    assert!(body.contains("Plus d'informations : www.integrazionemigranti.gov.it"), "{body}");
    assert_eq!(body.lines().count(), 4, "one line per service, then the portal: {body}");

    // The caller hears it went: the French recording of "we sent you a text".
    hear_exactly(&mut sink, &rendered_wav("fr", "services-sms-sent"), "services-sms-sent").await;
    until_kind(&app, "text_sent").await;
    let log = call_log(&app).await;
    let plan = ivr::sms::plan(body);
    let sent: Vec<&serde_json::Value> = log.iter().filter(|(_, l)| l["kind"] == "text_sent").map(|(_, l)| l).collect();
    assert_eq!(sent.len(), 1, "{log:?}");
    assert_eq!(sent[0]["segments"], plan.segments, "{}", sent[0]);
    assert_eq!(sent[0]["encoding"], plan.encoding.as_str());
    assert!(plan.segments >= 2, "three services take more than one segment: {plan:?}");
    assert_eq!(said_in(&log, "text_sent").first().map(String::as_str), Some("services-sms-sent@fr"));
    let (via, segments, encoding, status): (String, i64, String, String) =
        sqlx::query_as("SELECT via, segments, encoding, status FROM text_messages")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(
        (via.as_str(), segments, encoding.as_str(), status.as_str()),
        ("trunk", i64::from(plan.segments), plan.encoding.as_str(), "sent")
    );

    phone.hang_up().await;
    // Neither the number nor the text is stored.
    let contents = database_contents(&app).await;
    assert!(!contents.contains("612345678"), "the number is stored somewhere");
    for line in body.lines() {
        assert!(!contents.contains(line), "the text is stored somewhere: {line}");
    }
    app.stop().await;
}

/// Keys through TwiML to the readback of `from`; returns the readback's document and its Gather
/// action.
async fn twiml_readback(app: &TestApp, sid: &str, from: &str) -> (String, String) {
    let post = |url: String, extra: Vec<(&'static str, String)>| async move {
        let mut params: Vec<(&str, &str)> = vec![
            ("CallSid", sid),
            ("AccountSid", "AC0000"),
            ("From", from),
            ("To", "+39803001"),
            ("CallStatus", "in-progress"),
        ];
        params.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, body) = app.twiml(&url, &params).await;
        assert_eq!(status, 200, "{url}: {body}");
        body
    };
    let doc = post("/twiml/voice".into(), vec![]).await;
    let mut action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let landline = from.starts_with("+390");
    let keys: &[&str] = if landline { &["1", "3", "1", "1"] } else { &["1", "3", "22100", "1"] };
    let mut doc = String::new();
    for key in keys {
        doc = post(action.clone(), vec![("Digits", key.to_string())]).await;
        action = attr_of(&check(&doc), "Gather", "action").unwrap_or_else(|| panic!("after {key}: {doc}"));
    }
    assert!(plays(&check(&doc)).contains(&"services-options".to_owned()), "the readback: {doc}");
    (doc, action)
}

async fn twiml_press(app: &TestApp, sid: &str, from: &str, action: &str, key: &str) -> String {
    let params = [
        ("CallSid", sid),
        ("AccountSid", "AC0000"),
        ("From", from),
        ("To", "+39803001"),
        ("CallStatus", "in-progress"),
        ("Digits", key),
    ];
    let (status, body) = app.twiml(action, &params).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A TwiML caller from an Italian mobile presses 3 after the readback: the text goes through the
/// trunk (no carrier configured), the same TwiML answer says it went; a retry of that request
/// sends nothing twice. The trunk refusing (403) is told ("we could not send it") and the menu
/// goes on with the offer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twiml_caller_is_told_whether_the_text_went_and_a_retry_sends_it_once() {
    let trunk = Trunk::bind().await;
    let (app, _dir) = app_texting(trunk.addr(), "[\"39\"]").await;
    let (sid, from) = ("CA00000000000000000000000000000a01", "+393471234567");
    let (doc, action) = twiml_readback(&app, sid, from).await;
    assert!(doc.contains("premi 3"), "the offer, in Italian: {doc}");

    // The trunk refuses: told plainly, the options and the offer again.
    let (_, doc) =
        tokio::join!(trunk_takes_a_text(&trunk, (403, "Forbidden")), twiml_press(&app, sid, from, &action, "3"));
    let parsed = check(&doc);
    let heard = plays(&parsed);
    assert!(heard.contains(&"services-sms-failed".to_owned()), "{doc}");
    assert!(heard.contains(&"services-options".to_owned()) && doc.contains("premi 3"), "the menu goes on: {doc}");
    let log = call_log(&app).await;
    let failed: Vec<&serde_json::Value> =
        log.iter().filter(|(_, l)| l["kind"] == "text_failed").map(|(_, l)| l).collect();
    assert_eq!(failed.len(), 1, "{log:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("403 Forbidden"), "{}", failed[0]);

    // Asked again: the trunk takes it.
    let action = attr_of(&parsed, "Gather", "action").unwrap();
    let (msg, doc) =
        tokio::join!(trunk_takes_a_text(&trunk, (202, "Accepted")), twiml_press(&app, sid, from, &action, "3"));
    assert_eq!(msg.uri, format!("sip:{from}@{}", trunk.addr().ip()));
    assert!(msg.body().contains("Telefono") || msg.body().contains("telefono"), "in Italian: {}", msg.body());
    let parsed = check(&doc);
    assert!(plays(&parsed).contains(&"services-sms-sent".to_owned()), "{doc}");
    assert!(!doc.contains("premi 3"), "no second offer once sent: {doc}");
    // Twilio retries the same request: the same answer, and no second MESSAGE.
    assert_eq!(twiml_press(&app, sid, from, &action, "3").await, doc);
    assert!(trunk.next(Duration::from_millis(500)).await.is_none(), "a retry sends the text again");
    let statuses: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, detail FROM text_messages ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].0, "failed");
    assert!(statuses[0].1.as_deref().is_some_and(|d| d.contains("403")), "{statuses:?}");
    assert_eq!((statuses[1].0.as_str(), statuses[1].1.as_deref()), ("sent", Some("trunk answered 202")));
    app.stop().await;
}

/// A landline (+39 0…) hears the readback without the offer; 3 is no option, nothing is sent.
#[tokio::test]
async fn a_landline_caller_is_not_offered_the_text() {
    let trunk = Trunk::bind().await;
    let (app, _dir) = app_texting(trunk.addr(), "[\"39\"]").await;
    let (sid, from) = ("CA00000000000000000000000000000b01", "+390315551234");
    let (doc, action) = twiml_readback(&app, sid, from).await;
    assert!(!doc.contains("premi 3"), "no offer to a landline: {doc}");
    let doc = twiml_press(&app, sid, from, &action, "3").await;
    assert!(plays(&check(&doc)).contains(&"invalid-choice".to_owned()), "{doc}");
    assert!(trunk.next(Duration::from_millis(300)).await.is_none(), "nothing sent");
    let log = call_log(&app).await;
    assert!(!log.iter().any(|(_, l)| l["kind"] == "prompt" && l["prompt"] == "services-sms-offer"), "{log:?}");
    app.stop().await;
}

/// A TwiML caller with a carrier configured (`HELPLINE_SMS_VIA=twilio`): the stand-in receives
/// `Messages.json` with basic auth (it checks it) and the form fields `To`, `From`, `Body` and the
/// `StatusCallback` of this server; the caller hears it went; the carrier's signed status callback
/// records the delivery; an unsigned or malformed one changes nothing.
#[tokio::test]
async fn a_twiml_caller_gets_the_text_through_the_carriers_messages_api() {
    let mut standin =
        crate::carrier_standin::CarrierStandIn::start("AC0123456789", crate::helpers::TEST_TWILIO_TOKEN).await;
    let (url, sid) = (standin.url.clone(), standin.account_sid.clone());
    let (app, _dir) = app_texting_with("[\"39\"]", move |s| {
        s.twilio_api_url = url;
        s.twilio_account_sid = sid;
        s.sms_via = "twilio".into();
    })
    .await;
    let (call, from) = ("CA00000000000000000000000000000c01", "+393471234567");
    let (_, action) = twiml_readback(&app, call, from).await;
    let services = services_read(&app).await;
    let doc = twiml_press(&app, call, from, &action, "3").await;
    assert!(plays(&check(&doc)).contains(&"services-sms-sent".to_owned()), "{doc}");
    let request = standin.next_request(Duration::from_secs(5)).await;
    assert_eq!(request.resource, "Messages.json");
    assert_eq!((request.field("To"), request.field("From")), (Some(from), Some(SENDER)));
    let body = request.field("Body").expect("Body");
    for s in services {
        assert!(body.contains(&s.name) && body.contains(&s.phone), "{} in the text: {body}", s.name);
    }
    assert!(body.contains("Altre informazioni: www.integrazionemigranti.gov.it"), "in Italian: {body}");
    assert_eq!(request.field("StatusCallback"), Some(app.url("/twilio/sms-status").as_str()));
    let (via, status, message_sid): (String, String, Option<String>) =
        sqlx::query_as("SELECT via, status, carrier_sid FROM text_messages")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!((via.as_str(), status.as_str()), ("twilio", "sent"));
    let message_sid = message_sid.expect("the carrier's sid kept, to match its status callback");

    // The carrier reports the delivery: signed, it is recorded.
    let status_url = app.url("/twilio/sms-status");
    let params = [("MessageSid", message_sid.as_str()), ("MessageStatus", "delivered"), ("AccountSid", "AC0123456789")];
    let (code, _) = app.twiml(&status_url, &params).await;
    assert_eq!(code, 204);
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM text_messages").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(status, "delivered");
    // Unsigned: refused; an unknown status: 400; neither changes it.
    let unsigned = app
        .client
        .post(&status_url)
        .form(&[("MessageSid", message_sid.as_str()), ("MessageStatus", "failed")])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let (code, _) =
        app.twiml(&status_url, &[("MessageSid", message_sid.as_str()), ("MessageStatus", "exploded")]).await;
    assert_eq!(code, 400);
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM text_messages").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(status, "delivered");
    app.stop().await;
}

/// GSM 03.38's default alphabet (basic table) and the extension table, whose characters take
/// two septets: written out here from the standard, apart from `ivr::sms`, for an independent count.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// The segments a text takes, counted as the standards say: GSM-7 when every character is in
/// the default alphabet (160 septets in one message, 153 per part of a longer one), else UCS-2
/// (70 UTF-16 units, 67 per part).
fn independent_count(body: &str) -> (&'static str, u32) {
    let gsm = body.chars().all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c));
    let (units, single, part) = if gsm {
        let septets = body.chars().map(|c| if GSM7_EXTENSION.contains(c) { 2 } else { 1 }).sum::<usize>();
        (septets, 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    let segments = if units <= single { 1 } else { units.div_ceil(part) };
    (if gsm { "gsm7" } else { "ucs2" }, u32::try_from(segments).unwrap())
}

/// A TwiML caller from `from` (whose first language is offered first) takes the readback and
/// presses 3: the text the trunk receives, and what the call log and `text_messages` say of it.
async fn readback_text(from: &str, countries: &str) -> (String, (String, i64), serde_json::Value) {
    let trunk = Trunk::bind().await;
    let (app, _dir) = app_texting(trunk.addr(), countries).await;
    let sid = "CA00000000000000000000000000000d01";
    let (_, action) = twiml_readback(&app, sid, from).await;
    let (msg, doc) =
        tokio::join!(trunk_takes_a_text(&trunk, (202, "Accepted")), twiml_press(&app, sid, from, &action, "3"));
    assert!(plays(&check(&doc)).contains(&"services-sms-sent".to_owned()), "{doc}");
    let row: (String, i64) = sqlx::query_as("SELECT encoding, segments FROM text_messages WHERE status = 'sent'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let log = call_log(&app).await;
    let sent = log.iter().find(|(_, l)| l["kind"] == "text_sent").map(|(_, l)| l.clone()).expect("a text_sent line");
    app.stop().await;
    (msg.body().to_owned(), row, sent)
}

/// An Arabic caller (a Moroccan mobile, Arabic offered first) gets the services in Arabic, sent
/// as UCS-2 in as many segments as the standard count says, which the call log and
/// `text_messages` record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arabic_text_goes_as_ucs2_in_the_segments_the_standard_counts() {
    let (body, (encoding, segments), logged) = readback_text("+212612345678", "[\"39\", \"212\"]").await;
    assert!(body.contains("لمزيد من المعلومات: www.integrazionemigranti.gov.it"), "in Arabic: {body}");
    let (alphabet, count) = independent_count(&body);
    assert_eq!(alphabet, "ucs2", "{body}");
    assert!(count >= 3, "three services in Arabic take several 67-unit parts: {count}");
    assert_eq!((encoding.as_str(), segments), ("ucs2", i64::from(count)), "text_messages");
    assert_eq!((logged["encoding"].as_str(), logged["segments"].as_u64()), (Some("ucs2"), Some(u64::from(count))));
}

/// The same for a Chinese caller (a Chinese mobile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chinese_text_goes_as_ucs2_in_the_segments_the_standard_counts() {
    let (body, (encoding, segments), logged) = readback_text("+8613812345678", "[\"39\", \"86\"]").await;
    assert!(body.contains("更多信息：www.integrazionemigranti.gov.it"), "in Chinese: {body}");
    let (alphabet, count) = independent_count(&body);
    assert_eq!(alphabet, "ucs2", "{body}");
    assert_eq!((encoding.as_str(), segments), ("ucs2", i64::from(count)), "text_messages");
    assert_eq!((logged["encoding"].as_str(), logged["segments"].as_u64()), (Some("ucs2"), Some(u64::from(count))));
}

/// An Italian text whose every character is in GSM-7's alphabet goes as GSM-7, in the segments
/// the standard counts (153 septets per part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_italian_text_of_gsm7_characters_goes_as_gsm7() {
    let (body, (encoding, segments), logged) = readback_text("+393471234567", "[\"39\"]").await;
    assert!(body.contains("Altre informazioni: www.integrazionemigranti.gov.it"), "in Italian: {body}");
    let (alphabet, count) = independent_count(&body);
    assert_eq!(alphabet, "gsm7", "only GSM-7 characters: {body:?}");
    assert!(body.chars().count() > 160 && count >= 2, "a long text, in parts: {count}");
    assert_eq!((encoding.as_str(), segments), ("gsm7", i64::from(count)), "text_messages");
    assert_eq!((logged["encoding"].as_str(), logged["segments"].as_u64()), (Some("gsm7"), Some(u64::from(count))));
}

/// "Send by SMS" from the console for a TwiML call (`GET`/`POST /api/calls/{id}/sms`): only the
/// call's operator may (unauthenticated 401; another operator, a supervisor 403); the preview is
/// the referred services in the caller's language with the segments `ivr::sms::plan` counts; a
/// stale text is refused (409); the number is asked of the carrier (`Calls/{sid}.json`) and the
/// carrier's stand-in receives `Messages.json` with exactly the previewed text to that number;
/// the carrier's error is told plainly (502) and the call goes on; both are in `text_messages`
/// (by the operator) and the call's timeline, and no answer to the page holds the number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sends_the_referrals_by_sms_and_sees_the_text_first() {
    use crate::console_client::{
        add_user, operator_online, sign_in, until, CallState, ClientMessage, Device, SavedWhat, ServerMessage,
    };
    use console::db::users::Role;
    use ivr::domain::Language;
    let mut standin =
        crate::carrier_standin::CarrierStandIn::start("AC0123456789", crate::helpers::TEST_TWILIO_TOKEN).await;
    let (url, account) = (standin.url.clone(), standin.account_sid.clone());
    let (app, _dir) = app_texting_with("[\"39\"]", move |s| {
        s.twilio_api_url = url;
        s.twilio_account_sid = account;
        s.sms_via = "twilio".into();
    })
    .await;
    let paola_id = add_user(&app, "paola", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "marco", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "sara", Role::Supervisor, &[Language::It], &[], false).await;
    let mut paola = operator_online(&app, "paola", true).await;
    let (sid, from) = ("CA00000000000000000000000000000e01", "+393471234567");
    standin.put_call(sid, from);
    let params = |digits: Option<&'static str>| {
        let mut p = vec![("CallSid", sid), ("AccountSid", "AC0123456789"), ("From", from), ("To", "+39803001")];
        p.push(("CallStatus", "in-progress"));
        if let Some(d) = digits {
            p.push(("Digits", d));
        }
        p
    };
    let (_, doc) = app.twiml("/twiml/voice", &params(None)).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let (_, doc) = app.twiml(&action, &params(Some("0"))).await;
    assert!(doc.contains("<Enqueue"), "{doc}");
    let offer = until!(paola, ServerMessage::Offer(o) => o);
    paola.send(ClientMessage::Accept { offer_id: offer.offer_id, device: Some(Device::Browser) }).await;
    until!(paola, ServerMessage::Call(c) if c.state == CallState::Connected => ());

    let mut query = console::directory::SearchQuery::new();
    query.text = "casa".into();
    let hits = app.state.directory.search(&query, app.clock.now()).hits;
    assert!(hits.len() >= 2, "{hits:?}");
    let path = format!("/api/calls/{sid}/sms");
    let paola_session = sign_in(&app, "paola").await;
    let call =
        |who: Option<&crate::console_client::Session>, method: reqwest::Method, body: Option<serde_json::Value>| {
            let mut r = app.client.request(method, app.url(&path));
            if let Some(s) = who {
                r = r.header("cookie", &s.cookie).header("x-csrf-token", &s.csrf);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            async move {
                let r = r.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                assert!(!text.contains("3471234567"), "the number reaches the page: {text}");
                (status, serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
            }
        };
    // No referral yet: nothing to send, said plainly.
    let (status, body) = call(Some(&paola_session), reqwest::Method::GET, None).await;
    assert_eq!((status, body["message"].as_str()), (409, Some("no services have been referred on this call yet")));
    for (i, hit) in hits.iter().take(2).enumerate() {
        paola
            .send(ClientMessage::Referral {
                r#ref: serde_json::json!(format!("r{i}")),
                call_id: sid.into(),
                service_id: hit.id.clone(),
                add: true,
            })
            .await;
        assert_eq!(until!(paola, ServerMessage::Saved { what, .. } => what), SavedWhat::Referral);
    }

    // Roles: signed out, another operator, a supervisor.
    assert_eq!(call(None, reqwest::Method::GET, None).await.0, 401);
    let marco = sign_in(&app, "marco").await;
    let sara = sign_in(&app, "sara").await;
    for who in [&marco, &sara] {
        assert_eq!(call(Some(who), reqwest::Method::GET, None).await.0, 403);
        let send = call(Some(who), reqwest::Method::POST, Some(serde_json::json!({"text": "x"}))).await;
        assert_eq!(send.0, 403);
    }
    assert!(standin.try_next_request().is_none(), "nothing asked of the carrier");

    // The preview: the services' names and phones in Italian, its alphabet and segments.
    let (status, preview) = call(Some(&paola_session), reqwest::Method::GET, None).await;
    assert_eq!(status, 200, "{preview}");
    let text = preview["text"].as_str().unwrap().to_owned();
    for hit in hits.iter().take(2) {
        let s = app.state.directory.service_summary(&hit.id, app.clock.now()).unwrap();
        assert!(text.contains(&s.name) && text.contains(&s.phone), "{} in {text}", s.name);
    }
    assert!(text.ends_with("Altre informazioni: www.integrazionemigranti.gov.it"), "{text}");
    let plan = ivr::sms::plan(&text);
    assert_eq!(preview["segments"].as_u64(), Some(u64::from(plan.segments)));
    assert_eq!(preview["encoding"].as_str(), Some(plan.encoding.as_str()));
    assert_eq!(preview["via"].as_str(), Some("twilio"));

    // A text other than the one seen is not sent.
    let (status, _) =
        call(Some(&paola_session), reqwest::Method::POST, Some(serde_json::json!({"text": "something else"}))).await;
    assert_eq!(status, 409);
    assert!(standin.try_next_request().is_none(), "nothing asked of the carrier");

    // Confirmed: the number asked of the carrier, then exactly the text sent to it.
    let (status, sent) =
        call(Some(&paola_session), reqwest::Method::POST, Some(serde_json::json!({"text": text}))).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["segments"].as_u64(), Some(u64::from(plan.segments)));
    let asked = standin.next_request(Duration::from_secs(5)).await;
    assert_eq!(asked.resource, format!("Calls/{sid}.json"));
    let message = standin.next_request(Duration::from_secs(5)).await;
    assert_eq!(message.resource, "Messages.json");
    assert_eq!((message.field("To"), message.field("Body")), (Some(from), Some(text.as_str())));

    // The carrier's error: told plainly, the call goes on.
    standin.fail_next(400, 21610, "Attempt to send to unsubscribed recipient");
    let (status, failed) =
        call(Some(&paola_session), reqwest::Method::POST, Some(serde_json::json!({"text": text}))).await;
    assert_eq!(status, 502, "{failed}");
    assert_eq!(
        failed["message"].as_str(),
        Some("the text was not sent: the carrier refused it: HTTP 400, error 21610")
    );
    let (ended,): (Option<i64>,) = sqlx::query_as("SELECT ended_at FROM calls WHERE call_id = $1")
        .bind(sid)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(ended.is_none(), "the call goes on");

    let rows: Vec<(String, String, Option<i64>, i64)> =
        sqlx::query_as("SELECT via, status, sent_by, segments FROM text_messages ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    let want = |status: &str| ("twilio".to_owned(), status.to_owned(), Some(paola_id), i64::from(plan.segments));
    assert_eq!(rows, vec![want("sent"), want("failed")]);
    // The call's timeline has both, by the operator.
    let r = app.client.get(app.url(&format!("/api/calls/{sid}"))).header("cookie", &sara.cookie).send().await.unwrap();
    let record: serde_json::Value = r.json().await.unwrap();
    let texts: Vec<(String, String)> = record["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "text")
        .map(|e| (e["operator"].as_str().unwrap_or("").to_owned(), e["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(texts, vec![("paola".into(), "sent".into()), ("paola".into(), "failed".into())], "{record}");
    let contents = database_contents(&app).await;
    assert!(!contents.contains("3471234567"), "the number is stored somewhere");
    app.stop().await;
}

/// The trunk settings of [`app_texting`].
fn through_trunk(trunk: std::net::SocketAddr) -> impl FnOnce(&mut console::config::Settings) + Send + 'static {
    move |s| {
        s.trunk_uri = format!("sip:{trunk}");
        s.trunk_user = USER.into();
        s.trunk_password = console::config::SecretString::new(PASSWORD);
        s.trunk_caller_id = USER.into();
        s.sms_via = "trunk".into();
    }
}

/// Two nodes on one database (on SQLite one node is both), each set up by its `edit`; a SIP caller
/// from an Italian mobile on node A, with two housing services referred by the operator `olga`;
/// the texts feature of node B (where the operator's page is).
struct TextAcrossNodes {
    a: TestApp,
    b: Option<(TestApp, tempfile::TempDir)>,
    _dir_a: tempfile::TempDir,
    phone: Option<SipPhone>,
    _sink: RtpSink,
    call_id: String,
    operator: i64,
    /// `None` when node B sends no texts.
    texts: Option<console::texts::Texts>,
}

impl TextAcrossNodes {
    async fn start(
        edit_a: impl FnOnce(&mut console::config::Settings) + Send + 'static,
        edit_b: impl FnOnce(&mut console::config::Settings) + Send + 'static,
    ) -> TextAcrossNodes {
        use console::db::users::Role;
        let db = fresh_database().await;
        let url = db.url.clone();
        let (a, dir_a) = app_texting_on(db, "[\"39\"]", edit_a).await;
        let b = if a.db.is_postgres() {
            let db = crate::helpers::TestDb { url, dir: tempfile::tempdir().unwrap() };
            Some(app_texting_on(db, "[\"39\"]", edit_b).await)
        } else {
            None
        };
        let asking = b.as_ref().map_or(&a, |(b, _)| b);
        let operator =
            crate::console_client::add_user(&a, "olga", Role::Operator, &[ivr::domain::Language::It], &[], false).await;
        let sink = RtpSink::bind().await;
        let phone = SipPhone::call(a.sip_addr, "+393331234567", sink.port).await;
        until_kind(&a, "call_started").await;
        let (call_id,): (String,) =
            sqlx::query_as("SELECT call_id FROM calls").fetch_one(a.state.db.pool()).await.unwrap();
        let mut query = console::directory::SearchQuery::new();
        query.text = "casa".into();
        let hits = asking.state.directory.search(&query, asking.clock.now()).hits;
        assert!(hits.len() >= 2, "{hits:?}");
        for (i, hit) in hits.iter().take(2).enumerate() {
            sqlx::query(
                "INSERT INTO referrals (call_id, service_id, service_name, operator_id, at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&call_id)
            .bind(&hit.id)
            .bind(&hit.name)
            .bind(operator)
            .bind(i64::try_from(i).unwrap())
            .execute(a.state.db.pool())
            .await
            .unwrap();
        }
        let texts = asking.state.operators.texts.clone();
        TextAcrossNodes { a, b, _dir_a: dir_a, phone: Some(phone), _sink: sink, call_id, operator, texts }
    }

    /// The caller hangs up.
    async fn hang_up(&mut self) {
        if let Some(phone) = self.phone.take() {
            phone.hang_up().await;
        }
    }

    async fn stop(self) {
        if let Some((b, _)) = self.b {
            b.stop().await;
        }
        self.a.stop().await;
    }
}

/// An operator's text for a SIP call whose sealed number is in the memory of the node that took
/// the INVITE (node A), asked on another node (B, on the same PostgreSQL database; on SQLite the
/// one node is both): B leaves the request `pending`, A claims and sends it, and the trunk gets
/// exactly the previewed text to the caller's number; B's answer is A's outcome. Once the call
/// has ended nothing can be sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_text_for_a_sip_call_is_sent_by_the_node_holding_the_call() {
    let trunk = Trunk::bind().await;
    let mut nodes = TextAcrossNodes::start(through_trunk(trunk.addr()), through_trunk(trunk.addr())).await;
    if nodes.b.is_none() {
        eprintln!("HELPLINE_TEST_DATABASE_URL is unset: one node on SQLite (the two-node case needs PostgreSQL)");
    }
    let (operator, texts) = (nodes.operator, nodes.texts.clone().expect("texts are configured"));
    let id = ivr::domain::CallId::parse(&nodes.call_id).unwrap();
    let (_, _, preview) = texts.preview(&id).await.expect("a preview");
    assert_eq!(preview.via, "trunk");
    let (msg, sent) = tokio::join!(
        trunk_takes_a_text(&trunk, (202, "Accepted")),
        texts.send_for_operator(&id, operator, &preview.text)
    );
    let sent = sent.expect("sent");
    assert_eq!(msg.uri, format!("sip:+393331234567@{}", trunk.addr().ip()));
    assert_eq!(msg.body(), preview.text);
    assert_eq!((sent.detail.as_str(), sent.segments), ("trunk answered 202", preview.segments));
    let rows: Vec<(String, Option<i64>, String)> = sqlx::query_as("SELECT status, sent_by, detail FROM text_messages")
        .fetch_all(nodes.a.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, vec![("sent".to_owned(), Some(operator), "trunk answered 202".to_owned())]);

    nodes.hang_up().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match texts.preview(&id).await {
            Err(console::texts::OperatorTextError::Ended) => break,
            other => assert!(Instant::now() < deadline, "still previewed after the hang-up: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let contents = database_contents(&nodes.a).await;
    assert!(!contents.contains("3331234567"), "the number is stored somewhere");
    nodes.stop().await;
}

/// The node holding the call sends no texts (`HELPLINE_SMS_VIA` empty there) while the
/// operator's node does: the request is never claimed, so the operator is told plainly once the
/// claim's wait is over, the request's row says it failed and why, and nothing reaches the trunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_text_is_refused_plainly_when_the_node_holding_the_call_sends_none() {
    let trunk = Trunk::bind().await;
    let nodes = TextAcrossNodes::start(|_| {}, through_trunk(trunk.addr())).await;
    if nodes.b.is_none() {
        return nodes.stop().await; // two nodes share a PostgreSQL database
    }
    let id = ivr::domain::CallId::parse(&nodes.call_id).unwrap();
    let texts = nodes.texts.clone().expect("the operator's node sends texts");
    let (_, _, preview) = texts.preview(&id).await.expect("a preview on the operator's node");
    let asked = Instant::now();
    let refused = texts.send_for_operator(&id, nodes.operator, &preview.text).await;
    match refused {
        Err(console::texts::OperatorTextError::NotSent(why)) => {
            assert!(why.contains("did not take the request"), "{why}")
        }
        other => panic!("the request should fail plainly: {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(15), "told within the claim's wait: {:?}", asked.elapsed());
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, detail FROM text_messages").fetch_all(nodes.a.state.db.pool()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "failed", "never left `sending`: {rows:?}");
    assert!(trunk.next(Duration::from_millis(300)).await.is_none(), "nothing reached the trunk");
    nodes.stop().await;
}
