//! The supervisors' routes × roles: who gets in (to be folded into console-core's table test in
//! `authz.rs` when it is merged).

use crate::helpers::spawn_app;
use crate::supervisor::{hand_fixture, insert, signed_in};
use console::db::users::Role;

#[tokio::test]
async fn supervisor_routes_by_role() {
    let app = spawn_app().await;
    insert(&app, &hand_fixture()).await;
    let anonymous = reqwest::Client::new();
    let (_, operator) = signed_in(&app, "otto", Role::Operator).await;
    let (_, supervisor) = signed_in(&app, "sara", Role::Supervisor).await;
    let (_, admin) = signed_in(&app, "amministra", Role::Admin).await;
    // route, then the status for: anonymous, operator, supervisor, admin.
    let table: &[(&str, [u16; 4])] = &[
        ("/api/calls", [401, 200, 200, 200]),
        ("/api/calls.csv", [401, 200, 200, 200]),
        // An operator sees only their own calls: someone else's is "not found".
        ("/api/calls/h1", [401, 404, 200, 200]),
        ("/api/calls/nonexistent", [401, 404, 404, 404]),
        ("/api/kpis", [401, 403, 200, 200]),
        ("/api/kpis.csv", [401, 403, 200, 200]),
        ("/api/audit", [401, 403, 403, 200]),
        // A plain GET is no websocket upgrade: past the role check it is refused as such.
        ("/ws/wallboard", [401, 403, 400, 400]),
    ];
    for (route, expected) in table {
        for (who, (client, want)) in ["anonymous", "operator", "supervisor", "admin"]
            .iter()
            .zip([&anonymous, &operator, &supervisor, &admin].into_iter().zip(expected))
        {
            let got = client.get(app.url(route)).send().await.unwrap().status().as_u16();
            assert_eq!(got, *want, "{who} GET {route}");
        }
    }
    app.stop().await;
}

/// The session's CSRF token (state-changing requests carry it).
async fn csrf(app: &crate::helpers::TestApp, client: &reqwest::Client) -> String {
    let me: serde_json::Value = client.get(app.url("/api/session")).send().await.unwrap().json().await.unwrap();
    me["csrf_token"].as_str().unwrap_or_default().to_owned()
}

/// Listen, whisper and barge: supervisors and admins only; a call that ended, one unknown, one
/// whose media is not on this node, a malformed or oversized body are refused before any media
/// or audit row.
#[tokio::test]
async fn monitoring_a_call_by_role_and_by_input() {
    let app = spawn_app().await;
    insert(&app, &hand_fixture()).await;
    let anonymous = reqwest::Client::new();
    let (_, operator) = signed_in(&app, "otto", Role::Operator).await;
    let (_, supervisor) = signed_in(&app, "sara", Role::Supervisor).await;
    let (_, admin) = signed_in(&app, "amministra", Role::Admin).await;
    // A live call whose media is not carried here.
    let now = app.state.clock.now().timestamp_millis();
    sqlx::query(
        "INSERT INTO calls (call_id, channel, started_at, state, updated_at) VALUES ('live-elsewhere', 'json', $1, '{}', $2)",
    )
    .bind(now)
    .bind(now)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let offer = serde_json::json!({"mode": "listen", "sdp": "v=0"});
    let switch = serde_json::json!({"mode": "barge"});
    // (method, route, body, expected for anonymous, operator, supervisor, admin)
    let table: &[(&str, &str, Option<&serde_json::Value>, [u16; 4])] = &[
        ("POST", "/api/calls/h1/monitor", Some(&offer), [401, 403, 409, 409]),
        ("POST", "/api/calls/nonexistent/monitor", Some(&offer), [401, 403, 404, 404]),
        ("POST", "/api/calls/live-elsewhere/monitor", Some(&offer), [401, 403, 409, 409]),
        ("PUT", "/api/calls/live-elsewhere/monitor", Some(&switch), [401, 403, 409, 409]),
        ("DELETE", "/api/calls/live-elsewhere/monitor", None, [401, 403, 404, 404]),
    ];
    let mut tokens = Vec::new();
    for client in [&anonymous, &operator, &supervisor, &admin] {
        tokens.push(csrf(&app, client).await);
    }
    for (method, route, body, expected) in table {
        for (i, who) in ["anonymous", "operator", "supervisor", "admin"].iter().enumerate() {
            let client = [&anonymous, &operator, &supervisor, &admin][i];
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = client.request(method.clone(), app.url(route)).header("x-csrf-token", &tokens[i]);
            if let Some(body) = body {
                request = request.json(body);
            }
            let got = request.send().await.unwrap().status().as_u16();
            assert_eq!(got, expected[i], "{who} {method} {route}");
        }
    }
    // Hostile input: an unknown mode, a missing offer, an offer past 16 KiB.
    let token = &tokens[2];
    for (body, want) in [
        (serde_json::json!({"mode": "spy", "sdp": "v=0"}), 400),
        (serde_json::json!({"mode": "listen"}), 400),
        (serde_json::json!({"mode": "listen", "sdp": "x".repeat(17 * 1024)}), 413),
    ] {
        let r = supervisor
            .post(app.url("/api/calls/live-elsewhere/monitor"))
            .header("x-csrf-token", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{body:.60}");
    }
    // Nothing was refused after being audited.
    let (audited,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action IN ('listen', 'whisper', 'barge', 'monitor_end')")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(audited, 0);
    app.stop().await;
}
