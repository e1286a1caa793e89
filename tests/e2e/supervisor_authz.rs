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
