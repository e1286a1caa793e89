//! Accounts an admin runs from the command line against a running server's database: disable,
//! enable, a new password, a role, languages, areas, a SIP target. Disabling or a new password ends
//! the user's sessions (on PostgreSQL every node closes their sockets at once).

use crate::console_client::{add_user, connect, first_admin, sign_in_with, Session};
use crate::helpers::{helpline, run_helpline, spawn_app, TestApp};
use console::db::users::Role;
use ivr::domain::{Language, ServiceArea};
use serde_json::{json, Value};

const PASSWORD: &str = crate::console_client::PASSWORD;

/// `helpline user …` on the app's database: (exit code, stdout, stderr).
fn user_cli(app: &TestApp, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut cmd = helpline(app.db.dir.path());
    cmd.arg("user").args(args).env("HELPLINE_DATABASE_URL", &app.db.url);
    run_helpline(&mut cmd, stdin)
}

async fn sign_in_status(app: &TestApp, name: &str, password: &str) -> u16 {
    let body = json!({"name": name, "password": password});
    app.client.post(app.url("/api/session")).json(&body).send().await.unwrap().status().as_u16()
}

async fn whoami(app: &TestApp, session: &Session) -> u16 {
    let r = app.client.get(app.url("/api/session")).header("cookie", &session.cookie).send().await.unwrap();
    r.status().as_u16()
}

fn listed(app: &TestApp, name: &str) -> Value {
    let (code, out, err) = user_cli(app, &["list", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let users: Vec<Value> = serde_json::from_str(&out).unwrap();
    users.into_iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("{name} listed: {out}"))
}

#[tokio::test]
async fn an_admin_disables_enables_and_resets_a_user_from_the_command_line() {
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[Language::It], &[ServiceArea::Casa], false).await;
    let session = sign_in_with(&app, "anna", PASSWORD).await;
    let mut socket = connect(app.addr, &session).await;
    socket.hello(0).await;

    // Disabled: the session ends, the socket closes (at once on PostgreSQL, where the CLI's
    // notification reaches the server), and the right password no longer signs in.
    let (code, out, err) = user_cli(&app, &["disable", "anna"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("anna: disabled; 1 session(s) ended"), "{out}");
    assert_eq!(whoami(&app, &session).await, 401);
    assert_eq!(sign_in_status(&app, "anna", PASSWORD).await, 401);
    assert_eq!(listed(&app, "anna")["disabled"], true);
    if app.db.is_postgres() {
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), socket.closed()).await;
        assert_eq!(closed.ok(), Some(true), "the socket is closed at once");
    }

    let (code, out, err) = user_cli(&app, &["enable", "anna"], "");
    assert_eq!((code, out.trim()), (0, "anna: enabled"), "{err}");
    assert_eq!(sign_in_status(&app, "anna", PASSWORD).await, 200);

    // A new password set by the admin: the old one stops working, sessions end, and the user is
    // asked to choose their own.
    let session = sign_in_with(&app, "anna", PASSWORD).await;
    let (code, out, err) = user_cli(&app, &["passwd", "anna", "--password-stdin"], "a brand new password\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password reset") && out.contains("session(s) ended"), "{out}");
    assert_eq!(whoami(&app, &session).await, 401);
    assert_eq!(sign_in_status(&app, "anna", PASSWORD).await, 401);
    assert_eq!(sign_in_status(&app, "anna", "a brand new password").await, 200);
    assert_eq!(listed(&app, "anna")["must_change_password"], true);

    // Role, skills and the transfer target.
    assert_eq!(user_cli(&app, &["role", "anna", "supervisor"], "").0, 0);
    assert_eq!(user_cli(&app, &["languages", "anna", "it,fr"], "").0, 0);
    assert_eq!(user_cli(&app, &["areas", "anna", "casa,lavoro"], "").0, 0);
    assert_eq!(user_cli(&app, &["sip-target", "anna", "sip:anna@pbx.example.org"], "").0, 0);
    let anna = listed(&app, "anna");
    assert_eq!(anna["role"], "supervisor");
    assert_eq!(anna["languages"], json!(["it", "fr"]));
    assert_eq!(anna["areas"], json!(["casa", "lavoro"]));
    assert_eq!(anna["sip_target"], "sip:anna@pbx.example.org");
    assert_eq!(user_cli(&app, &["sip-target", "anna", "--clear"], "").0, 0);
    assert_eq!(listed(&app, "anna")["sip_target"], Value::Null);

    // Mistakes get clear errors and change nothing.
    let (code, _, err) = user_cli(&app, &["disable", "nobody"], "");
    assert_eq!(code, 2);
    assert!(err.contains("no user named \"nobody\""), "{err}");
    let (code, _, err) = user_cli(&app, &["passwd", "anna", "--password-stdin"], "short\n");
    assert_eq!(code, 2);
    assert!(err.contains("at least 12 characters"), "{err}");
    let (code, _, err) = user_cli(&app, &["role", "anna", "king"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = user_cli(&app, &["languages", "anna", "xx"], "");
    assert_eq!(code, 2, "{err}");
    assert_eq!(sign_in_status(&app, "anna", "a brand new password").await, 200, "still the last good state");

    // Every change is in the audit log, by the command, never with the password.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, user_name, detail FROM audit_log WHERE action IN \
         ('disable_user', 'enable_user', 'set_password', 'change_role', 'change_user') ORDER BY id",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let actions: Vec<&str> = rows.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "disable_user",
            "enable_user",
            "set_password",
            "change_role",
            "change_user",
            "change_user",
            "change_user",
            "change_user"
        ]
    );
    assert!(rows.iter().all(|(_, by, detail)| by.starts_with("helpline user") && detail.contains("anna")), "{rows:?}");
    assert!(!rows.iter().any(|(_, _, d)| d.contains("brand new")), "no password in the log");
    app.stop().await;
}

/// `PATCH /api/users/{name}` as an admin: the same changes over HTTP; a disabled user's open page
/// is closed at once, on this node and (PostgreSQL) every other.
#[tokio::test]
async fn an_admin_changes_accounts_over_http() {
    let app = spawn_app().await;
    add_user(&app, "bruna", Role::Operator, &[Language::It], &[], false).await;
    let bruna = sign_in_with(&app, "bruna", PASSWORD).await;
    let mut socket = connect(app.addr, &bruna).await;
    socket.hello(0).await;
    let admin = first_admin(&app).await;
    let patch = |name: &str, body: Value| {
        let request = app
            .client
            .patch(app.url(&format!("/api/users/{name}")))
            .header("cookie", &admin.cookie)
            .header("x-csrf-token", &admin.csrf)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // Bad input changes nothing, and says which field is wrong.
    let (status, body) = patch("bruna", json!({"disabled": true, "languages": ["xx"]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("languages:"), "{body}");
    assert_eq!(whoami(&app, &bruna).await, 200, "nothing was applied");
    assert_eq!(patch("bruna", json!({})).await.0, 400);
    assert_eq!(patch("bruna", json!({"colour": "red"})).await.0, 400);
    assert_eq!(patch("nobody", json!({"disabled": true})).await.0, 404);
    let (status, body) = patch("admin", json!({"role": "operator"})).await;
    assert_eq!(status, 409, "an admin cannot demote themselves: {body}");

    let (status, body) = patch("bruna", json!({"disabled": true, "languages": ["it", "de"]})).await;
    assert_eq!(status, 400, "de is not a configured caller language: {body}");
    // Any configured language is a skill: the communities' languages too.
    let (status, body) = patch("bruna", json!({"languages": ["it", "ar", "zh-CN", "uk"]})).await;
    assert_eq!(status, 200, "{body}");
    let mut langs: Vec<String> =
        body["languages"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    langs.sort();
    assert_eq!(langs, ["ar", "it", "uk", "zh"], "{body}");
    let (status, body) = patch("bruna", json!({"disabled": true, "languages": ["it", "en"], "sip_target": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["disabled"].clone(), body["languages"].clone()), (json!(true), json!(["it", "en"])));
    assert!(socket.closed().await, "her page is closed at once");
    assert_eq!(whoami(&app, &bruna).await, 401);
    assert_eq!(sign_in_status(&app, "bruna", PASSWORD).await, 401);

    let (status, body) = patch("bruna", json!({"disabled": false, "password": "chosen by the admin"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["must_change_password"], true);
    assert_eq!(sign_in_status(&app, "bruna", "chosen by the admin").await, 200);
    let list: Vec<Value> = app
        .client
        .get(app.url("/api/users"))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.iter().any(|u| u["name"] == "bruna" && u["disabled"] == false), "{list:?}");
    assert!(!serde_json::to_string(&list).unwrap().contains("argon2"), "no hashes");
    let (by,): (String,) =
        sqlx::query_as("SELECT user_name FROM audit_log WHERE action = 'disable_user' ORDER BY id DESC LIMIT 1")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(by, "admin", "the admin is named in the audit log");
    app.stop().await;
}

/// `PATCH /api/users/{name}` with `mediator`: the flag `helpline user add --mediator` sets, shown
/// in `GET /api/users`, audited.
#[tokio::test]
async fn an_admin_makes_an_operator_a_mediator_over_http() {
    let app = spawn_app().await;
    add_user(&app, "carla", Role::Operator, &[Language::It], &[], false).await;
    let admin = first_admin(&app).await;
    let patch = |body: Value| {
        let request = app
            .client
            .patch(app.url("/api/users/carla"))
            .header("cookie", &admin.cookie)
            .header("x-csrf-token", &admin.csrf)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(listed(&app, "carla")["mediator"], false);
    assert_eq!(patch(json!({"mediator": "yes"})).await.0, 400);
    let (status, body) = patch(json!({"mediator": true})).await;
    assert_eq!((status, body["mediator"].clone()), (200, json!(true)), "{body}");
    assert_eq!(listed(&app, "carla")["mediator"], true);
    let (detail,): (String,) =
        sqlx::query_as("SELECT detail FROM audit_log WHERE action = 'change_user' ORDER BY id DESC LIMIT 1")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(detail.contains("mediator true"), "{detail}");
    let (status, body) = patch(json!({"mediator": false})).await;
    assert_eq!((status, body["mediator"].clone()), (200, json!(false)), "{body}");
    app.stop().await;
}
