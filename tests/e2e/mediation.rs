//! The mediators' and consultations' API (`operators::mediation`) at its edges: what it refuses
//! and why. The three-way call itself — who hears whom, the operator leaving the call to the
//! mediator — and the warm transfer are proven by tones with a real SIP caller and two browsers
//! in `tests/browser/mediator.test.mjs` and `transfer.test.mjs`, and on the media thread with
//! str0m peers in `media::tests`.

use crate::console_client::{add_user, italian_housing_call, sign_in, Session};
use crate::helpers::{fresh_database, spawn_app, spawn_app_with, TestApp};
use console::db::users::Role;
use ivr::domain::Language;
use serde_json::{json, Value};

async fn request(
    app: &TestApp,
    who: &Session,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r =
        app.client.request(method, app.url(path)).header("cookie", &who.cookie).header("x-csrf-token", &who.csrf);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// A call whose media this node does not carry in a browser (a JSON-webhook call) cannot have a
/// mediator; an unknown call is a 404; nobody joins a call they were not invited into; bad
/// bodies are 400s; nothing is written for any of them.
#[tokio::test]
async fn mediation_is_refused_where_it_cannot_happen_and_leaves_no_trace() {
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "marco", Role::Operator, &[Language::It, Language::En], &[], true).await;
    let anna = sign_in(&app, "anna").await;
    let marco = sign_in(&app, "marco").await;
    let call = italian_housing_call(&app, "CA-med-1").await;
    let id = &call.id;
    use reqwest::Method;

    let (status, body) = request(&app, &anna, Method::GET, "/api/calls/nope/mediators", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = request(&app, &anna, Method::GET, &format!("/api/calls/{id}/mediators"), None).await;
    assert_eq!(status, 409, "a webhook call has no browser phone here: {body}");
    assert!(body["message"].as_str().unwrap().contains("browser phone"), "{body}");
    let invite = format!("/api/calls/{id}/mediator");
    let (status, body) = request(&app, &anna, Method::POST, &invite, Some(json!({"mediator": "marco"}))).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = request(&app, &anna, Method::POST, &invite, Some(json!({"who": "marco"}))).await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, _) = request(&app, &anna, Method::POST, &invite, Some(json!({"mediator": 7}))).await;
    assert_eq!(status, 400);
    let (status, _) = request(&app, &anna, Method::GET, &format!("/api/calls/{id}/colleagues"), None).await;
    assert_eq!(status, 409);
    let consult = format!("/api/calls/{id}/consult");
    let (status, _) = request(&app, &anna, Method::POST, &consult, Some(json!({"operator": "marco"}))).await;
    assert_eq!(status, 409);
    let (status, _) = request(&app, &anna, Method::POST, &consult, Some(json!({"mediator": "marco"}))).await;
    assert_eq!(status, 400, "a consultation names an operator");
    let (status, _) = request(&app, &anna, Method::DELETE, &consult, None).await;
    assert_eq!(status, 409);
    let join = format!("/api/calls/{id}/mediation");
    let (status, body) = request(&app, &marco, Method::POST, &join, None).await;
    assert_eq!(status, 409, "not carried here, whoever asks: {body}");
    let (status, body) = request(&app, &marco, Method::DELETE, &join, None).await;
    assert_eq!(status, 409, "marco holds no call and has no mediation: {body}");

    let pool = app.state.db.pool();
    let count = |sql: &'static str| async move { sqlx::query_as::<_, (i64,)>(sql).fetch_one(pool).await.unwrap().0 };
    assert_eq!(count("SELECT COUNT(*) FROM mediations").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'mediator%' OR action = 'operator_leave'").await,
        0
    );
    app.stop().await;
}

/// "Add mediator" by dialling an outside interpreter through the trunk, at its edges: without
/// `HELPLINE_TRUNK_URI` it is a 503 naming what is missing; with a trunk, a number that is not
/// E.164 is a 400, an unknown call a 404, a call not carried by a browser phone here a 409
/// (whoever asks: the mediation endpoints' refusal), and nobody signed in gets 401; nothing is
/// dialled, written or audited for any of them.
#[tokio::test]
async fn dialling_an_interpreter_is_refused_where_it_cannot_happen_and_dials_nothing() {
    use reqwest::Method;
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[], false).await;
    let anna = sign_in(&app, "anna").await;
    let call = italian_housing_call(&app, "CA-int-1").await;
    let path = format!("/api/calls/{}/interpreter", call.id);
    let (status, body) = request(&app, &anna, Method::POST, &path, Some(json!({"number": "+390212345678"}))).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("HELPLINE_TRUNK_URI"), "{body}");
    app.stop().await;

    // A trunk that must never be dialled: it counts what it receives.
    let trunk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_addr = trunk.local_addr().unwrap();
    let app = spawn_app_with(fresh_database().await, move |s| {
        s.trunk_uri = format!("sip:{trunk_addr}");
        s.trunk_user = "helpline".into();
        s.trunk_password = console::config::SecretString::new("secret".to_owned());
        s.trunk_caller_id = "390200000000".into();
    })
    .await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "bruno", Role::Operator, &[Language::It], &[], false).await;
    let anna = sign_in(&app, "anna").await;
    let bruno = sign_in(&app, "bruno").await;
    let call = italian_housing_call(&app, "CA-int-2").await;
    let path = format!("/api/calls/{}/interpreter", call.id);

    let r = app.client.post(app.url(&path)).json(&json!({"number": "+390212345678"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "not signed in");
    for bad in [
        json!({"number": "02 1234 5678"}),
        json!({"number": "+39abc"}),
        json!({"number": 390212345678u64}),
        json!({"numero": "+390212345678"}),
        json!({"number": format!("+{}", "1".repeat(5000))}),
    ] {
        let (status, body) = request(&app, &anna, Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) =
        request(&app, &anna, Method::POST, "/api/calls/nope/interpreter", Some(json!({"number": "+390212345678"})))
            .await;
    assert_eq!(status, 404, "{body}");
    for who in [&anna, &bruno] {
        let (status, body) = request(&app, who, Method::POST, &path, Some(json!({"number": "+390212345678"}))).await;
        assert_eq!(status, 409, "a webhook call has no browser phone here: {body}");
    }

    let mut buf = [0u8; 2048];
    let dialled = tokio::time::timeout(std::time::Duration::from_millis(300), trunk.recv_from(&mut buf)).await;
    assert!(dialled.is_err(), "the trunk was never dialled");
    let pool = app.state.db.pool();
    let (audited,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'interpreter%'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(audited, 0);
    app.stop().await;
}
