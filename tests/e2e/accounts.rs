//! Accounts an admin runs from the command line against a running server's database: disable,
//! enable, a new password, a role, languages, areas, a SIP target. Disabling or a new password ends
//! the user's sessions (on PostgreSQL every node closes their sockets at once).

use crate::console_client::{add_user, connect, sign_in_with, Session};
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
    app.stop().await;
}
