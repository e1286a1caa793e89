//! The blind hand-over to a queue (`operators::handover`) with a JSON-webhook caller: the caller
//! lands in the other language's queue ahead of a caller who entered it later (their original
//! entry time kept), is offered first to an operator of that queue, and the carrier's report of
//! the ended transfer gets the queue's actions. Who may hand over, and the refusals, at the edge.
//! The SIP caller's way back to the hold audio and on to the next operator's browser is proven by
//! tones in `tests/browser/handover.test.mjs`.

use crate::console_client::{add_user, italian_housing_call, operator_online, sign_in, until, Call, Session};
use crate::helpers::{spawn_app, TestApp};
use chrono::Duration;
use console::db::users::Role;
use console::operators::presence::PresenceState;
use console::operators::protocol::{CallState, ClientMessage, ServerMessage};
use ivr::domain::{Language, ServiceArea};
use serde_json::{json, Value};

async fn hand_over(app: &TestApp, who: &Session, call: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/api/calls/{call}/handover")))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

async fn entry(app: &TestApp, call: &str) -> (String, Option<String>, String, i64) {
    sqlx::query_as("SELECT language, area, status, entered_at FROM queue_entries WHERE call_id = $1")
        .bind(call)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_caller_handed_over_keeps_their_place_in_the_other_queue_and_is_offered_first() {
    let (fr, it) = (Language::Fr, Language::It);
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[it], &[ServiceArea::Casa], false).await;
    add_user(&app, "bruno", Role::Operator, &[fr], &[ServiceArea::Lavoro], false).await;
    add_user(&app, "carla", Role::Operator, &[it], &[ServiceArea::Casa], false).await;
    add_user(&app, "sara", Role::Supervisor, &[it], &[], false).await;

    // An Italian caller for housing; anna takes it on her desk phone.
    let mut first = italian_housing_call(&app, "HO-1").await;
    let (_, _, _, entered) = entry(&app, "HO-1").await;
    let mut anna = operator_online(&app, "anna", true).await;
    let offer = until!(anna, ServerMessage::Offer(o) => o);
    anna.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(anna, ServerMessage::Call(c) if c.state == CallState::Connected => ());
    let r = first.send(json!({"type": "no_input"})).await;
    assert!(r["actions"].as_array().unwrap().iter().any(|a| a["type"] == "transfer"), "{r}");

    // A French caller for work enters the French queue a minute later.
    app.clock.advance(Duration::seconds(60));
    let _second = Call::to_queue(&app, "HO-2", "+33 6 12 34 56 78", &["1", "2", "#"]).await;
    let (language, area, _, second_entered) = entry(&app, "HO-2").await;
    assert_eq!((language.as_str(), area.as_deref()), ("fr", Some("lavoro")));
    assert!(second_entered > entered);
    app.clock.advance(Duration::seconds(30));

    // Only the call's own operator hands it over, to a real queue, with a well-formed body.
    let anna_s = sign_in(&app, "anna").await;
    let carla = sign_in(&app, "carla").await;
    let sara = sign_in(&app, "sara").await;
    let to_fr = json!({"language": "fr", "area": "lavoro"});
    assert_eq!(hand_over(&app, &carla, "HO-1", to_fr.clone()).await.0, 409, "not carla's call");
    assert_eq!(hand_over(&app, &sara, "HO-1", to_fr.clone()).await.0, 409, "nor a supervisor's");
    assert_eq!(hand_over(&app, &anna_s, "HO-2", to_fr.clone()).await.0, 409, "a caller anna does not hold");
    assert_eq!(hand_over(&app, &anna_s, "nope", to_fr.clone()).await.0, 404);
    for bad in [
        json!({"language": "xx"}),
        json!({"language": "fr", "area": "giardino"}),
        json!({"language": "fr", "queue": "x"}),
        json!({}),
    ] {
        assert_eq!(hand_over(&app, &anna_s, "HO-1", bad.clone()).await.0, 400, "{bad}");
    }
    let r = app
        .client
        .post(app.url("/api/calls/HO-1/handover"))
        .header("cookie", &anna_s.cookie)
        .json(&to_fr)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    let (_, _, status, _) = entry(&app, "HO-1").await;
    assert_eq!(status, "answered", "nothing changed so far");

    let (status, body) = hand_over(&app, &anna_s, "HO-1", to_fr.clone()).await;
    assert_eq!(status, 204, "{body}");
    until!(anna, ServerMessage::Presence { operator } if operator.state == PresenceState::WrapUp => ());
    let (language, area, status, kept) = entry(&app, "HO-1").await;
    assert_eq!((language.as_str(), area.as_deref(), status.as_str()), ("fr", Some("lavoro"), "waiting"));
    assert_eq!(kept, entered, "the original entry time is kept");
    let (again, _) = hand_over(&app, &anna_s, "HO-1", to_fr.clone()).await;
    assert_eq!(again, 409, "anna left the call");

    // The carrier reports the transfer over: the queue's actions, in French, first in line.
    let r = first.send(json!({"type": "transfer.ended"})).await;
    assert_eq!(r["ended"], false, "{r}");
    let actions = r["actions"].as_array().unwrap();
    let enqueue = actions.iter().find(|a| a["type"] == "enqueue").unwrap_or_else(|| panic!("{r}"));
    assert_eq!((enqueue["language"].as_str(), enqueue["area"].as_str()), (Some("fr"), Some("lavoro")), "{r}");
    assert!(
        actions.iter().any(|a| a["type"] == "play" && a["prompt"] == "queue-enter" && a["language"] == "fr-FR"),
        "{r}"
    );
    assert_eq!(actions.iter().filter(|a| a["type"] == "gather").count(), 1, "the hold's one gather: {r}");
    // The queue's order (the ACD's and the announced position's): priority, then entry time.
    let order: Vec<(String,)> = sqlx::query_as(
        "SELECT call_id FROM queue_entries WHERE status = 'waiting' AND language = 'fr' ORDER BY priority DESC, entered_at, call_id",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(order, vec![("HO-1".to_owned(),), ("HO-2".to_owned(),)], "the caller handed over is ahead");

    // bruno, of the French queue, is offered the caller handed over before the later one.
    let mut bruno = operator_online(&app, "bruno", true).await;
    let offer = until!(bruno, ServerMessage::Offer(o) => o);
    assert_eq!(offer.call_id, "HO-1");
    bruno.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(bruno, ServerMessage::Call(c) if c.state == CallState::Connected => ());
    let r = first.send(json!({"type": "no_input"})).await;
    assert!(
        r["actions"].as_array().unwrap().iter().any(|a| a["type"] == "transfer" && a["operator"] == "bruno"),
        "{r}"
    );

    // The step is in the call log, the audit log and the call's timeline.
    let (detail,): (String,) = sqlx::query_as(
        "SELECT detail FROM audit_log WHERE call_id = 'HO-1' AND action = 'hand_over' AND user_name = 'anna'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(detail, "fr/lavoro");
    let r = app.client.get(app.url("/api/calls/HO-1")).header("cookie", &sara.cookie).send().await.unwrap();
    let record: Value = r.json().await.unwrap();
    let steps = record["timeline"].as_array().unwrap_or_else(|| panic!("{record}"));
    assert!(steps.iter().any(|e| e["type"] == "step" && e["event_kind"] == "handed_over"), "{record}");
    assert!(
        steps.iter().any(|e| e["type"] == "mediation" && e["action"] == "hand_over" && e["detail"] == "fr/lavoro"),
        "{record}"
    );
    app.stop().await;
}

/// A TwiML caller handed over: the `<Dial>` to the operator ends, and its action gets the other
/// queue's `<Enqueue>` and welcome instead of the hang-up that ends a finished conversation.
#[tokio::test]
async fn a_twiml_caller_handed_over_is_enqueued_again_when_the_dial_ends() {
    use crate::webhook_twiml::{attr_of, check, plays, post};
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[], false).await;
    let sid = "CAhandover";
    let doc = post(&app, "/twiml/voice", sid, &[]).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(&app, &action, sid, &[("Digits", "0")]).await;
    let parsed = check(&doc);
    let wait_url = attr_of(&parsed, "Enqueue", "waitUrl").unwrap();
    let queue_left = attr_of(&parsed, "Enqueue", "action").unwrap();
    let (_, _, _, entered) = entry(&app, sid).await;

    let mut anna = operator_online(&app, "anna", true).await;
    let offer = until!(anna, ServerMessage::Offer(o) => o);
    anna.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(anna, ServerMessage::Call(c) if c.state == CallState::Connected => ());
    let doc = post(&app, &wait_url, sid, &[("QueueTime", "12")]).await;
    assert!(doc.contains("<Leave/>"), "{doc}");
    let doc = post(&app, &queue_left, sid, &[("QueueResult", "leave")]).await;
    let dial_action = attr_of(&check(&doc), "Dial", "action").unwrap();

    app.clock.advance(Duration::seconds(45));
    let anna_s = sign_in(&app, "anna").await;
    let (status, body) = hand_over(&app, &anna_s, sid, json!({"language": "en", "area": null})).await;
    assert_eq!(status, 204, "{body}");
    let doc = post(&app, &dial_action, sid, &[("DialCallStatus", "completed")]).await;
    let parsed = check(&doc);
    assert!(!doc.contains("<Hangup"), "{doc}");
    assert!(plays(&parsed).iter().any(|p| p == "queue-enter"), "{doc}");
    assert!(doc.contains("<Enqueue") && doc.contains(">en</Enqueue>"), "the English queue: {doc}");
    let (language, area, status, kept) = entry(&app, sid).await;
    assert_eq!((language.as_str(), area, status.as_str()), ("en", None, "waiting"));
    assert_eq!(kept, entered, "the original entry time is kept");
    app.stop().await;
}
