//! The authorisation table: every route of the app with the least role it needs and whether a
//! state-changing request needs the CSRF token, walked with no session, as an operator, a
//! supervisor and an admin, and without the token. A second test reads the routes registered in
//! the source (`.route("…", method(…))`) and fails when one is missing from the table: a new
//! route cannot ship without its row.

use crate::console_client::{add_org_editor, add_user, sign_in, Session};
use crate::helpers::{spawn_app, TestApp};
use console::db::users::Role;
use ivr::domain::Language;
use std::collections::BTreeSet;
use std::path::Path;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Anyone (health, sign-in, public files).
    Public,
    /// A carrier's signed request (HMAC or Twilio signature), never a session.
    Signed,
    /// Any signed-in user, whatever the role.
    SignedIn,
    Role(Role),
}

use Need::*;

/// (method, route as registered, a concrete path, who, CSRF needed with a session cookie)
const TABLE: &[(&str, &str, &str, Need, bool)] = &[
    ("GET", "/healthz", "/healthz", Public, false),
    ("GET", "/readyz", "/readyz", Public, false),
    ("GET", "/metrics", "/metrics", Public, false),
    ("GET", "/openapi.json", "/openapi.json", Public, false),
    ("GET", "/prompts/{lang}/{file}", "/prompts/it/welcome.wav", Public, false),
    // A URL the server signed into a TwiML answer (`webhook::speech`).
    ("GET", "/speech/{call_id}/{step}/{file}", "/speech/CA0/1/0.wav?sig=00", Signed, false),
    ("GET", "/", "/", Public, false),
    ("GET", "/console", "/console", Public, false),
    ("GET", "/supervisor", "/supervisor", Public, false),
    ("GET", "/assets/{*path}", "/assets/console.js", Public, false),
    ("POST", "/api/session", "/api/session", Public, false),
    ("GET", "/api/session", "/api/session", SignedIn, false),
    // Signing out without a session is a harmless no-op (204); with one, it needs the token.
    ("DELETE", "/api/session", "/api/session", Public, true),
    ("POST", "/api/session/everywhere", "/api/session/everywhere", SignedIn, true),
    ("POST", "/api/session/password", "/api/session/password", SignedIn, true),
    ("GET", "/api/users", "/api/users", Role(Role::Admin), false),
    ("GET", "/api/users/{name}", "/api/users/nobody", Role(Role::Admin), false),
    ("PATCH", "/api/users/{name}", "/api/users/nobody", Role(Role::Admin), true),
    ("POST", "/voice/events", "/voice/events", Signed, false),
    ("POST", "/twiml/voice", "/twiml/voice", Signed, false),
    ("POST", "/twiml/status", "/twiml/status", Signed, false),
    ("GET", "/api/services/search", "/api/services/search?q=casa", Role(Role::Operator), false),
    ("GET", "/api/services/{id}", "/api/services/none", Role(Role::Operator), false),
    ("GET", "/ws", "/ws", Role(Role::Operator), false),
    ("GET", "/api/console/config", "/api/console/config", Role(Role::Operator), false),
    ("GET", "/api/callbacks", "/api/callbacks", Role(Role::Operator), false),
    ("POST", "/api/callbacks/{id}/claim", "/api/callbacks/1/claim", Role(Role::Operator), true),
    ("POST", "/api/callbacks/{id}/done", "/api/callbacks/1/done", Role(Role::Operator), true),
    ("GET", "/api/callbacks/{id}/voicemail", "/api/callbacks/1/voicemail", Role(Role::Operator), false),
    ("POST", "/api/callbacks/{id}/call", "/api/callbacks/1/call", Role(Role::Operator), true),
    ("GET", "/api/callbacks/{id}/call", "/api/callbacks/1/call", Role(Role::Operator), false),
    ("POST", "/api/callbacks/{id}/hangup", "/api/callbacks/1/hangup", Role(Role::Operator), true),
    ("GET", "/api/operators", "/api/operators", Role(Role::Supervisor), false),
    // The pages (console-page): public; the data behind them asks for a session.
    ("GET", "/", "/", Public, false),
    ("GET", "/console", "/console", Public, false),
    ("GET", "/supervisor", "/supervisor", Public, false),
    ("GET", "/assets/{*path}", "/assets/supervisor.js", Public, false),
    // The supervisors' views: operators see only their own calls.
    ("GET", "/api/calls", "/api/calls", Role(Role::Operator), false),
    ("GET", "/api/calls.csv", "/api/calls.csv", Role(Role::Operator), false),
    ("GET", "/api/calls/{id}", "/api/calls/none", Role(Role::Operator), false),
    ("GET", "/api/kpis", "/api/kpis", Role(Role::Supervisor), false),
    ("GET", "/api/kpis.csv", "/api/kpis.csv", Role(Role::Supervisor), false),
    ("GET", "/api/audit", "/api/audit", Role(Role::Admin), false),
    ("GET", "/ws/wallboard", "/ws/wallboard", Role(Role::Supervisor), false),
    // Keeping the directory true (`directory::review`): operators flag, organisation editors and
    // editors change, editors review.
    ("GET", "/directory", "/directory", Public, false),
    ("POST", "/api/services/{id}/flags", "/api/services/none/flags", Role(Role::Operator), true),
    ("GET", "/api/directory/flags", "/api/directory/flags", Role(Role::OrgEditor), false),
    ("POST", "/api/directory/flags/{id}/resolve", "/api/directory/flags/1/resolve", Role(Role::Editor), true),
    ("GET", "/api/directory/services", "/api/directory/services", Role(Role::OrgEditor), false),
    ("GET", "/api/directory/services/{id}", "/api/directory/services/none", Role(Role::OrgEditor), false),
    ("PUT", "/api/directory/services/{id}", "/api/directory/services/none", Role(Role::OrgEditor), true),
    (
        "GET",
        "/api/directory/services/{id}/history",
        "/api/directory/services/none/history",
        Role(Role::OrgEditor),
        false,
    ),
    ("POST", "/api/directory/services/{id}/restore", "/api/directory/services/none/restore", Role(Role::Editor), true),
    ("POST", "/api/directory/services/{id}/confirm", "/api/directory/services/none/confirm", Role(Role::Editor), true),
    ("GET", "/api/directory/changes", "/api/directory/changes", Role(Role::OrgEditor), false),
    ("POST", "/api/directory/changes/{id}/accept", "/api/directory/changes/1/accept", Role(Role::Editor), true),
    ("POST", "/api/directory/changes/{id}/reject", "/api/directory/changes/1/reject", Role(Role::Editor), true),
    ("POST", "/api/calls/{id}/monitor", "/api/calls/none/monitor", Role(Role::Supervisor), true),
    ("PUT", "/api/calls/{id}/monitor", "/api/calls/none/monitor", Role(Role::Supervisor), true),
    ("DELETE", "/api/calls/{id}/monitor", "/api/calls/none/monitor", Role(Role::Supervisor), true),
    ("GET", "/api/calls/{id}/mediators", "/api/calls/none/mediators", Role(Role::Operator), false),
    ("POST", "/api/calls/{id}/mediator", "/api/calls/none/mediator", Role(Role::Operator), true),
    ("POST", "/api/calls/{id}/interpreter", "/api/calls/none/interpreter", Role(Role::Operator), true),
    ("DELETE", "/api/calls/{id}/interpreter", "/api/calls/none/interpreter", Role(Role::Operator), true),
    ("POST", "/api/calls/{id}/mediation", "/api/calls/none/mediation", Role(Role::Operator), true),
    ("DELETE", "/api/calls/{id}/mediation", "/api/calls/none/mediation", Role(Role::Operator), true),
    ("GET", "/api/calls/{id}/colleagues", "/api/calls/none/colleagues", Role(Role::Operator), false),
    ("POST", "/api/calls/{id}/consult", "/api/calls/none/consult", Role(Role::Operator), true),
    ("DELETE", "/api/calls/{id}/consult", "/api/calls/none/consult", Role(Role::Operator), true),
    ("POST", "/api/calls/{id}/handover", "/api/calls/none/handover", Role(Role::Operator), true),
    ("GET", "/api/calls/{id}/recording", "/api/calls/none/recording", Role(Role::Operator), false),
    ("POST", "/api/calls/{id}/recording", "/api/calls/none/recording", Role(Role::Operator), true),
    ("DELETE", "/api/calls/{id}/recording", "/api/calls/none/recording", Role(Role::Operator), true),
    ("POST", "/api/calls/{id}/recording/refusal", "/api/calls/none/recording/refusal", Role(Role::Operator), true),
    ("GET", "/api/calls/{id}/sms", "/api/calls/none/sms", Role(Role::Operator), false),
    ("POST", "/api/calls/{id}/sms", "/api/calls/none/sms", Role(Role::Operator), true),
    ("GET", "/api/recordings/{id}", "/api/recordings/none", Role(Role::Supervisor), false),
];

struct Caller {
    role: Role,
    name: &'static str,
    session: Option<Session>,
}

async fn request(app: &TestApp, method: &str, path: &str, session: Option<&Session>, csrf: bool) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = app.client.request(m, app.url(path));
    if let Some(s) = session {
        r = r.header("cookie", &s.cookie);
        if csrf {
            r = r.header("x-csrf-token", &s.csrf);
        }
    }
    if method != "GET" {
        r = r.header("content-type", "application/json").body("{}");
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_route_refuses_whoever_it_should_and_only_them() {
    let app = spawn_app().await;
    let mut callers = vec![
        Caller { role: Role::Operator, name: "op", session: None },
        Caller { role: Role::Supervisor, name: "sup", session: None },
        Caller { role: Role::Admin, name: "adm", session: None },
        Caller { role: Role::Editor, name: "ed", session: None },
        Caller { role: Role::OrgEditor, name: "orged", session: None },
    ];
    for c in &callers {
        if c.role == Role::OrgEditor {
            add_org_editor(&app, c.name, "org-1").await;
        } else {
            add_user(&app, c.name, c.role, &[Language::It], &[], false).await;
        }
    }
    for &(method, _, path, need, needs_csrf) in TABLE {
        // No session.
        let (status, body) = request(&app, method, path, None, false).await;
        match need {
            Public => assert!(status != 401 && status != 403, "{method} {path} without a session: {status} {body}"),
            Signed => assert!(status == 401 || status == 403, "{method} {path} unsigned: {status} {body}"),
            Role(_) | SignedIn => assert_eq!(status, 401, "{method} {path} without a session: {body}"),
        }
        for c in callers.iter_mut() {
            if c.session.is_none() {
                c.session = Some(sign_in(&app, c.name).await);
            }
            let session = c.session.as_ref().unwrap();
            if needs_csrf {
                let (status, body) = request(&app, method, path, Some(session), false).await;
                assert_eq!(status, 403, "{method} {path} as {} without the CSRF token: {body}", c.name);
                assert!(body.contains("\"csrf\""), "{body}");
            }
            let (status, body) = request(&app, method, path, Some(session), true).await;
            match need {
                Public => assert!(status != 401 && status != 403, "{method} {path} as {}: {status} {body}", c.name),
                Signed => {
                    assert!(status == 401 || status == 403, "{method} {path} as {} unsigned: {status} {body}", c.name)
                }
                SignedIn => {
                    assert!(status != 401 && status != 403, "{method} {path} as {}: {status} {body}", c.name)
                }
                Role(min) if c.role.includes(min) => {
                    assert!(status != 401 && status != 403, "{method} {path} as {}: {status} {body}", c.name)
                }
                Role(_) => assert_eq!(status, 403, "{method} {path} as {}: {body}", c.name),
            }
            if status < 300 && (path == "/api/session/everywhere" || (method == "DELETE" && path == "/api/session")) {
                c.session = None; // signed out: sign in again for the next row
            }
        }
    }
    app.stop().await;
}

/// `(METHOD, path)` of every `.route("path", method(…).method(…))` in the server's source.
fn registered_routes() -> BTreeSet<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut sources = Vec::new();
    walk(&crate::helpers::repo_path("console/src"), &mut sources);
    let mut routes = BTreeSet::new();
    for src in sources {
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(\"") {
            rest = &rest[i + 8..];
            let Some(end) = rest.find('"') else { break };
            let path = rest[..end].to_owned();
            // The method router: up to the parenthesis closing `.route(`.
            let mut depth = 1;
            let mut j = end;
            for (k, ch) in rest[end..].char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            j = end + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[end..j];
            for m in ["get", "post", "put", "patch", "delete"] {
                let calls = methods.match_indices(&format!("{m}(")).any(|(ix, _)| {
                    ix == 0 || !methods.as_bytes()[ix - 1].is_ascii_alphanumeric() && methods.as_bytes()[ix - 1] != b'_'
                });
                if calls {
                    routes.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

#[test]
fn every_registered_route_is_in_the_table() {
    let table: BTreeSet<(String, String)> = TABLE.iter().map(|(m, r, ..)| (m.to_string(), r.to_string())).collect();
    let registered = registered_routes();
    assert!(registered.len() >= 15, "the source scan found the routes: {registered:?}");
    let missing: Vec<_> = registered.difference(&table).collect();
    assert!(missing.is_empty(), "routes without a row in tests/e2e/authz.rs TABLE: {missing:?}");
    let stale: Vec<_> = table.difference(&registered).collect();
    assert!(stale.is_empty(), "rows for routes that no longer exist: {stale:?}");
}
