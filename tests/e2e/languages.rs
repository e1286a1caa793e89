//! Callers in the communities' languages, end to end: a call from Romania, Albania, Morocco,
//! Ukraine or China is offered its language first; once accepted, every prompt and runtime text
//! of the whole call (area, CAP, place read back, queue) is in it, on the JSON and TwiML channels.
//! (SIP: `sip::sip_a_romanian_caller_hears_romanian_first` for the offer, and
//! `sip::sip_a_romanian_caller_goes_through_the_whole_call_in_romanian` for the whole call.)

use crate::helpers::{spawn_app, TestApp};
use ivr::domain::Language;
use serde_json::{json, Value};

/// (caller, language offered first, its TwiML `<Say>` tag or none)
const CALLERS: [(&str, &str, Option<&str>); 5] = [
    ("+40 712 345 678", "ro", Some("ro-RO")),
    ("+355 67 234 5678", "sq", None),
    ("+212 612 345678", "ar", Some("ar-XA")),
    ("+380 50 123 4567", "uk", Some("uk-UA")),
    ("+86 139 1234 5678", "zh", Some("zh-CN")),
];

async fn send(app: &TestApp, id: &str, seq: &mut i64, mut event: Value) -> Value {
    *seq += 1;
    event["call_id"] = json!(id);
    event["seq"] = json!(*seq);
    let (status, body) = app.voice_event(&event).await;
    assert_eq!(status, 200, "{event} → {body}");
    body
}

/// Every play and say of an answer is in `lang` (prompts from its folder, texts tagged with it).
fn all_in(answer: &Value, lang: Language, step: &str) -> usize {
    let mut n = 0;
    for a in answer["actions"].as_array().unwrap() {
        match a["type"].as_str().unwrap() {
            "play" => {
                let url = a["url"].as_str().unwrap();
                assert!(url.contains(&format!("/prompts/{lang}/")), "{step}: {a}");
                assert_eq!(a["language"], lang.locale(), "{step}: {a}");
                n += 1;
            }
            "say" => {
                assert_eq!(a["language"], lang.locale(), "{step}: {a}");
                assert!(!a["text"].as_str().unwrap().trim().is_empty(), "{step}: {a}");
                n += 1;
            }
            _ => {}
        }
    }
    n
}

#[tokio::test]
async fn callers_from_five_communities_get_their_language_first_and_the_whole_call_in_it_by_json() {
    let app = spawn_app().await;
    let catalog = ivr::prompts::Catalog::load(&crate::helpers::repo_path("prompts")).unwrap();
    for (number, tag, _) in CALLERS {
        let lang = Language::parse(tag).unwrap();
        let id = format!("lang-json-{tag}");
        let mut seq = 0;
        let a = send(&app, &id, &mut seq, json!({"type": "call.started", "from": number, "to": "803001"})).await;
        let first = a["actions"].as_array().unwrap().iter().find(|x| x["type"] == "say").unwrap().clone();
        assert_eq!(first["language"], lang.locale(), "{number}: {a}");
        let offer = catalog.format(lang, &"language-option".parse().unwrap(), &[("digit", 1.into())]);
        assert_eq!(first["text"].as_str(), offer.ok().as_deref(), "{number}");
        let mut heard = 0;
        for (step, digits) in [("accept", "1"), ("area", "3"), ("cap", "22100"), ("services", "1"), ("queue", "2")] {
            let a = send(&app, &id, &mut seq, json!({"type": "digits", "digits": digits})).await;
            heard += all_in(&a, lang, &format!("{number} {step}"));
            if step == "services" && a["actions"].as_array().unwrap().iter().any(|x| x["type"] == "enqueue") {
                break; // no service nearby: already put through to the queue
            }
        }
        assert!(heard >= 6, "{number}: {heard} prompts and texts");
        let (language, area, queue): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT c.language, c.area, q.language FROM calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id \
             WHERE c.call_id = $1",
        )
        .bind(&id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        assert_eq!((language.as_deref(), area.as_deref()), (Some(tag), Some("casa")), "{number}");
        assert_eq!(queue.as_deref(), Some(tag), "{number}: an operator who speaks it");
    }
    app.stop().await;
}

async fn post(app: &TestApp, url: &str, sid: &str, from: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("CallSid", sid),
        ("AccountSid", "AC0000"),
        ("From", from),
        ("To", "+39803001"),
        ("CallStatus", "in-progress"),
    ];
    params.extend_from_slice(extra);
    let (status, body) = app.twiml(url, &params).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

fn gather_action(doc: &str) -> String {
    let parsed = roxmltree::Document::parse(doc).unwrap();
    parsed.descendants().find(|n| n.has_tag_name("Gather")).and_then(|n| n.attribute("action")).unwrap().to_owned()
}

/// Every `<Play>` is a prompt of `tag` or the server's rendering; every `<Say>` is in `say`; a
/// language without a `<Say>` tag has none.
fn twiml_all_in(doc: &str, tag: &str, say: Option<&str>) -> Vec<String> {
    let parsed = roxmltree::Document::parse(doc).unwrap();
    let mut speech = Vec::new();
    for n in parsed.descendants() {
        if n.has_tag_name("Play") {
            let url = n.text().unwrap();
            assert!(url.contains(&format!("/prompts/{tag}/")) || url.contains("/speech/"), "{url} in {doc}");
            if url.contains("/speech/") {
                speech.push(url.to_owned());
            }
        }
        if n.has_tag_name("Say") {
            assert_eq!(n.attribute("language"), say, "{doc}");
            assert!(say.is_some(), "{tag} has no carrier voice: {doc}");
        }
    }
    speech
}

#[tokio::test]
async fn callers_from_five_communities_get_their_language_first_and_the_whole_call_in_it_by_twiml() {
    let app = spawn_app().await;
    let italian = ivr::prompts::load_wav(&crate::helpers::repo_path("prompts/it/wav/cap-ask.wav")).unwrap();
    for (number, tag, say) in CALLERS {
        let sid = format!("CAlang{tag}0123456789abcdef0123456789");
        let from = number.replace(' ', "");
        let doc = post(&app, "/twiml/voice", &sid, &from, &[]).await;
        // The offer: the language first (Morocco's second, French, follows on key 2).
        let first = doc.split("</Say>").next().unwrap_or(&doc).split("</Play>").next().unwrap_or(&doc);
        let mut speech = twiml_all_in(
            &format!(
                "{first}{}",
                if first.contains("<Say") { "</Say></Gather></Response>" } else { "</Play></Gather></Response>" }
            ),
            tag,
            say,
        );
        if say.is_none() {
            assert_eq!(speech.len(), 1, "the offer is the server's rendering: {doc}");
        }
        let mut action = gather_action(&doc);
        for digits in ["1", "3", "22100"] {
            let doc = post(&app, &action, &sid, &from, &[("Digits", digits)]).await;
            speech.extend(twiml_all_in(&doc, tag, say));
            action = gather_action(&doc);
        }
        let doc = post(&app, &action, &sid, &from, &[("Digits", "2")]).await;
        speech.extend(twiml_all_in(&doc, tag, say));
        assert!(doc.contains(&format!(">{tag}.casa</Enqueue>")), "{doc}");
        // A language the carrier cannot speak is heard as the server's rendering: real speech,
        // not the Italian prompt.
        for url in speech {
            let path = &url[url.find("/speech/").unwrap()..];
            let r = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let bytes = r.bytes().await.unwrap();
            let samples = ivr::prompts::decode_wav(&bytes, std::path::Path::new(path)).unwrap();
            assert!(ivr::prompts::rms_dbfs(&samples) > -40.0, "{tag} {path}: silent");
            assert_ne!(samples, italian);
        }
    }
    app.stop().await;
}
