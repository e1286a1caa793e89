//! Callbacks the helpline places itself: the caller's number sealed for them (and only for them),
//! voice messages, the console's callback list.

use crate::console_client::{add_user, sign_in, Session};
use crate::helpers::TestApp;
use crate::privacy::database_contents;
use crate::webhook_twiml::{attr_of, check, plays, post};
use chrono::Duration;
use console::calls::sealed::{NumberSeal, SealedNumber};
use console::db::users::Role;
use ivr::domain::{CallId, Language};

/// The number `webhook_twiml::post` sends as `From`, and its digits.
const NUMBER: &str = "+393331234512";
const DIGITS: &str = "3331234512";

/// A TwiML call that queues, is offered a callback after five minutes, and takes it.
pub(crate) async fn twiml_callback_request(app: &TestApp, sid: &str) {
    let doc = post(app, "/twiml/voice", sid, &[]).await;
    let mut action = attr_of(&check(&doc), "Gather", "action").unwrap();
    for digits in ["1", "3", "22100"] {
        let doc = post(app, &action, sid, &[("Digits", digits)]).await;
        action = attr_of(&check(&doc), "Gather", "action").unwrap();
    }
    let doc = post(app, &action, sid, &[("Digits", "2")]).await;
    let wait_url = attr_of(&check(&doc), "Enqueue", "waitUrl").unwrap();
    let queue_action = attr_of(&check(&doc), "Enqueue", "action").unwrap();
    app.clock.advance(Duration::seconds(301));
    let doc = post(app, &wait_url, sid, &[("QueuePosition", "1"), ("QueueTime", "306")]).await;
    let action = attr_of(&check(&doc), "Gather", "action").unwrap();
    let doc = post(app, &action, sid, &[("Digits", "1")]).await;
    assert!(doc.contains("<Leave/>"), "{doc}");
    let doc = post(app, &queue_action, sid, &[("QueueResult", "leave")]).await;
    // The caller leaves no message (Twilio follows the redirect after `<Record>`).
    let record = crate::webhook_twiml::record_of(&doc);
    let doc = post(app, &record.redirect, sid, &[]).await;
    assert!(plays(&check(&doc)).contains(&"callback-confirmed".to_owned()), "{doc}");
}

pub(crate) async fn api(
    app: &TestApp,
    session: &Session,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    let r = app
        .client
        .request(method.clone(), app.url(path))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .header("content-type", "application/json")
        .body(if method == reqwest::Method::GET { "" } else { "{}" })
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The number is kept, sealed, with the callback request only: its digits are nowhere in the
/// database (the SQLite file and WAL as bytes, every PostgreSQL table as text), the sealed value
/// opens to the number only for its call under the server key, a call without a callback request
/// keeps nothing, and once the callback is done the sealed number is gone.
#[tokio::test]
async fn the_callers_number_is_sealed_for_the_callback_and_wiped_when_it_is_done() {
    let app = crate::helpers::spawn_app().await;
    let sid = "CAseal000000000000000000000000001";
    twiml_callback_request(&app, sid).await;
    // Another call from the same number that asks for nothing.
    let other = "CAseal000000000000000000000000002";
    let doc = post(&app, "/twiml/voice", other, &[]).await;
    check(&doc);

    let pool = app.state.db.pool();
    let rows: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, call_id, number_sealed FROM callbacks ORDER BY id").fetch_all(pool).await.unwrap();
    assert_eq!(rows.len(), 1, "one callback request: {rows:?}");
    let (id, call_id, sealed) = rows.into_iter().next().unwrap();
    assert_eq!(call_id, sid);
    let sealed = SealedNumber::from_stored(sealed.expect("the number is sealed with the request"));
    let seal = NumberSeal::new(&app.state.secret);
    assert_eq!(seal.open(&CallId::parse(sid).unwrap(), &sealed).unwrap().e164(), NUMBER);
    assert!(seal.open(&CallId::parse(other).unwrap(), &sealed).is_err(), "the call id is its associated data");

    let contents = database_contents(&app).await;
    assert!(contents.contains(sid) && contents.contains(sealed.as_str()), "the dump holds the call and the seal");
    assert!(!contents.contains(DIGITS), "the caller's digits are in the database");

    // The page's list never carries it.
    add_user(&app, "cora", Role::Operator, &[Language::parse("it").unwrap()], &[], false).await;
    let s = sign_in(&app, "cora").await;
    let (status, list) = api(&app, &s, reqwest::Method::GET, "/api/callbacks").await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(text.contains(sid) && !text.contains(sealed.as_str()) && !text.contains(DIGITS), "{text}");

    // Done: the sealed number is wiped.
    assert_eq!(api(&app, &s, reqwest::Method::POST, &format!("/api/callbacks/{id}/claim")).await.0, 200);
    assert_eq!(api(&app, &s, reqwest::Method::POST, &format!("/api/callbacks/{id}/done")).await.0, 200);
    let (left,): (Option<String>,) =
        sqlx::query_as("SELECT number_sealed FROM callbacks WHERE id = $1").bind(id).fetch_one(pool).await.unwrap();
    assert_eq!(left, None);
    let contents = database_contents(&app).await;
    assert!(!contents.contains(sealed.as_str()) && !contents.contains(DIGITS), "nothing of the number is left");
    app.stop().await;
}
