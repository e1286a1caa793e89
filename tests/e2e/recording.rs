//! Recording with consent (`operators::recording`) at its edges: a caller who refuses with the
//! key during the recording notice cannot be recorded (the server refuses, 409, and stores
//! nothing), nor can one whose spoken refusal the operator marked; only the call's operator may
//! ask; the timeline shows the refusal. The recording itself — the mixed audio of a real SIP
//! caller and a browser operator, played by a supervisor — is proven by tones in
//! `tests/browser/recording.test.mjs`, and its purge in `supervisor.rs`'s retention test.

use crate::console_client::{add_user, operator_online, sign_in, until, Call, Session};
use crate::helpers::{spawn_app, TestApp};
use console::db::users::Role;
use console::operators::presence::PresenceState;
use console::operators::protocol::{CallState, ClientMessage, ServerMessage};
use ivr::domain::{Language, ServiceArea};
use reqwest::Method;
use serde_json::Value;

async fn request(app: &TestApp, who: &Session, method: Method, path: &str) -> (u16, Value) {
    let r = app
        .client
        .request(method, app.url(path))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// An Italian caller for housing who presses the refusal key (9) during the recording notice,
/// answered by `operator`.
async fn answered_call<'a>(app: &'a TestApp, id: &str, digits: &[&str], operator: &str) -> Call<'a> {
    let mut ws = operator_online(app, operator, true).await;
    let call = Call::to_queue(app, id, "+39 333 123 4512", digits).await;
    let offer = until!(ws, ServerMessage::Offer(o) => o);
    ws.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(ws, ServerMessage::Presence { operator } if operator.state == PresenceState::OnCall => ());
    until!(ws, ServerMessage::Call(c) if c.state == CallState::Connected => ());
    call
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql).fetch_one(app.state.db.pool()).await.unwrap().0
}

#[tokio::test]
async fn a_caller_who_refused_at_the_notice_is_never_recorded() {
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[ServiceArea::Casa], false).await;
    add_user(&app, "bice", Role::Operator, &[Language::It], &[ServiceArea::Casa], false).await;
    // 1 Italian, 9 during the notice (the area menu is said again), 3 housing, the CAP, 2 operator.
    let call = answered_call(&app, "rec-refused", &["1", "9", "3", "22100", "2"], "anna").await;
    let anna = sign_in(&app, "anna").await;
    let bice = sign_in(&app, "bice").await;
    let path = format!("/api/calls/{}/recording", call.id);

    let (status, body) = request(&app, &anna, Method::GET, &path).await;
    assert_eq!((status, &body["refused"]), (200, &Value::from("caller")), "{body}");
    let (status, body) = request(&app, &anna, Method::POST, &path).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("refused"), "{body}");
    let (status, _) = request(&app, &anna, Method::DELETE, &path).await;
    assert_eq!(status, 409, "nothing to stop");
    // Not her call; not signed in; an unknown call.
    let (status, _) = request(&app, &bice, Method::POST, &path).await;
    assert_eq!(status, 409, "bice does not hold the call");
    let r = app.client.post(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, _) = request(&app, &anna, Method::POST, "/api/calls/nope/recording").await;
    assert_eq!(status, 404);

    assert_eq!(count(&app, "SELECT COUNT(*) FROM recordings").await, 0, "nothing stored");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_log WHERE action = 'recording_start'").await, 0);
    let state: (String,) = sqlx::query_as("SELECT state FROM calls WHERE call_id = 'rec-refused'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(state.0.contains("\"recording_refused\":true"), "{}", state.0);

    // The call's record shows the caller's refusal.
    let admin = crate::console_client::first_admin(&app).await;
    let (status, body) = request(&app, &admin, Method::GET, "/api/calls/rec-refused").await;
    assert_eq!(status, 200, "{body}");
    let refusals: Vec<&Value> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "recording" && e["action"] == "recording_refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{body}");
    assert_eq!(refusals[0]["user"], "caller");
    assert_eq!(body["recordings"], serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_spoken_refusal_the_operator_marks_stops_recording_for_good() {
    let app = spawn_app().await;
    add_user(&app, "carlo", Role::Operator, &[Language::It], &[ServiceArea::Casa], false).await;
    // No key during the notice: the caller may be recorded.
    let call = answered_call(&app, "rec-spoken", &["1", "3", "22100", "2"], "carlo").await;
    let carlo = sign_in(&app, "carlo").await;
    let path = format!("/api/calls/{}/recording", call.id);
    let (status, body) = request(&app, &carlo, Method::GET, &path).await;
    assert_eq!((status, &body["refused"], &body["recording"]), (200, &Value::Null, &Value::Null), "{body}");
    // A webhook call's media is the carrier's, not this server's: nothing to record here.
    let (status, body) = request(&app, &carlo, Method::POST, &path).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("browser phone"), "{body}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM recordings").await, 0);

    let (status, body) = request(&app, &carlo, Method::POST, &format!("{path}/refusal")).await;
    assert_eq!((status, &body["refused"]), (200, &Value::from("operator")), "{body}");
    let (status, body) = request(&app, &carlo, Method::POST, &path).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("refused"), "{body}");
    let (status, body) = request(&app, &carlo, Method::GET, &path).await;
    assert_eq!((status, &body["refused"]), (200, &Value::from("operator")), "{body}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM recordings").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_log WHERE action = 'recording_refused'").await, 1);
    app.stop().await;
}
