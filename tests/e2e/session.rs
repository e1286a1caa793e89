//! Signing in and out against the in-process app.

use crate::helpers::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn the_first_admin_signs_in_and_out() {
    let app = spawn_app().await;
    let (name, password) = app.first_admin.clone().expect("a fresh database gets a first admin");
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();

    assert_eq!(client.get(app.url("/api/session")).send().await.unwrap().status(), 401);

    let r =
        client.post(app.url("/api/session")).json(&json!({"name": name, "password": password})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("helpline_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["csrf_token"].as_str().unwrap().len(), 64);

    let me: Value = client.get(app.url("/api/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["name"], "admin");

    assert!(cookie.contains("Max-Age=43200") && !cookie.contains("Secure"), "plain http: no Secure flag; {cookie}");

    // Signing out changes state: without the CSRF token it is refused, and the session lives on.
    let r = client.delete(app.url("/api/session")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "csrf");
    let r = client.delete(app.url("/api/session")).header("x-csrf-token", "0".repeat(64)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(client.get(app.url("/api/session")).send().await.unwrap().status(), 200);

    let csrf = body["csrf_token"].as_str().unwrap();
    assert_eq!(client.delete(app.url("/api/session")).header("x-csrf-token", csrf).send().await.unwrap().status(), 204);
    assert_eq!(client.get(app.url("/api/session")).send().await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn bad_sign_in_requests_get_clear_errors() {
    let app = spawn_app().await;
    let c = &app.client;
    let r = c
        .post(app.url("/api/session"))
        .json(&json!({"name": "admin", "password": "nope nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_credentials");

    let r = c
        .post(app.url("/api/session"))
        .json(&json!({"name": "ghost", "password": "nope nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an unknown user gets the same answer as a wrong password");

    let r = c.post(app.url("/api/session")).body("name=admin").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("application/json"), "{body}");

    let r = c
        .post(app.url("/api/session"))
        .header("content-type", "application/json")
        .body("{\"name\": \"admin\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().starts_with("malformed JSON"));

    let r = c.post(app.url("/api/session")).json(&json!({"name": "admin"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("missing field `password`"), "{msg}");
    app.stop().await;
}

/// A hundred wrong passwords for one name sent at once: attempts count from when they begin, so
/// at most the name's limit (5) are verified and the rest are refused with 429 — answered only
/// after being held back, so a guesser waiting for its answers is paced, not served.
#[tokio::test]
async fn concurrent_guesses_are_limited_while_in_flight() {
    let app = spawn_app().await;
    let sent = std::time::Instant::now();
    let guesses = (0..100).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/api/session"));
        async move {
            let body = json!({"name": "admin", "password": format!("wrong password {i}")});
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let answered = sent.elapsed();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(verified + refused, 100, "{statuses:?}");
    assert_eq!(verified, 5, "exactly the name's limit were verified: {statuses:?}");
    assert!(answered >= console::auth::REFUSAL_HOLD, "the refusals were held back: all answered in {answered:?}");
    // Nobody is locked out: once the guessing stops, the owner's right password works after the
    // longest delay.
    let (name, password) = app.first_admin.clone().expect("a first admin");
    let sign_in = || {
        let body = json!({"name": name, "password": password});
        let request = app.client.post(app.url("/api/session")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(sign_in().await, 429, "still within the delay");
    app.clock.advance(chrono::Duration::milliseconds(console::auth::MAX_DELAY_MS));
    assert_eq!(sign_in().await, 200);
    app.stop().await;
}

/// The first admin's password was chosen by the server: until they choose their own, they can
/// only read and end their session, and change the password.
#[tokio::test]
async fn the_first_admin_must_choose_a_password_before_anything_else() {
    let app = spawn_app().await;
    let (name, password) = app.first_admin.clone().expect("a first admin");
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r =
        client.post(app.url("/api/session")).json(&json!({"name": name, "password": password})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["must_change_password"], true);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let r = client.get(app.url("/api/calls")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "password_change_required");
    assert_eq!(client.get(app.url("/api/session")).send().await.unwrap().status(), 200);

    let change = |current: &str, new: &str| {
        let request = client
            .post(app.url("/api/session/password"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"current_password": current, "new_password": new}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(change("not the password", "my own long password").await, 401);
    assert_eq!(change(&password, "short").await, 400);
    assert_eq!(change(&password, &password).await, 400, "the same password again");
    assert_eq!(change(&password, "my own long password").await, 204);

    assert_eq!(client.get(app.url("/api/calls")).send().await.unwrap().status(), 200, "this session lives on");
    let sign_in = |password: &str| {
        let request = app.client.post(app.url("/api/session")).json(&json!({"name": "admin", "password": password}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(sign_in(&password).await, 401);
    assert_eq!(sign_in("my own long password").await, 200);
    app.stop().await;
}
