//! The operator console against the real server: real websocket clients (tokio-tungstenite),
//! calls placed through the JSON webhook, the ACD moved by the server's ManualClock.

use crate::console_client::*;
use crate::helpers::{fresh_database, spawn_app, spawn_app_on};
use chrono::Duration;
use console::db::users::Role;
use ivr::domain::Language::*;
use ivr::domain::ServiceArea::*;
use serde_json::json;

#[tokio::test]
async fn hello_gets_a_welcome_and_a_reconnect_replays_what_was_missed() {
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[It], &[Casa], false).await;
    let s = sign_in(&app, "anna").await;
    let mut ws = connect(app.addr, &s).await;
    let w = ws.hello(0).await;
    assert_eq!(w["user"]["name"], "anna");
    assert_eq!(w["presence"]["state"], "offline", "{w}");
    assert!(w["config"]["dispositions"].as_array().unwrap().len() >= 3, "{w}");
    assert_eq!(w["operators"], serde_json::Value::Null, "operators see no one else's presence");
    let p = ws.presence("available").await;
    let seen = p["seq"].as_i64().unwrap();
    drop(ws);

    // While the page is away: a pause (from a second tab) and a call reaching the queue.
    let mut other = connect(app.addr, &s).await;
    other.hello(seen).await;
    other.send(json!({"type": "presence", "state": "paused", "reason": "coffee"})).await;
    other.until("presence", |v| v["operator"]["state"] == "paused").await;
    let _call = italian_housing_call(&app, "replay-1").await;
    other.until("queue", |v| v["calls"][0]["call_id"] == "replay-1").await;

    let mut back = connect(app.addr, &s).await;
    back.last_seq = seen;
    let w = back.hello(seen).await;
    assert_eq!(w["presence"]["state"], "paused");
    let newest = w["last_seq"].as_i64().unwrap();
    // Replayed in order, the pause first, up to the newest seq at welcome.
    let first = back.next().await.unwrap();
    assert_eq!(first["type"], "presence", "{first}");
    assert_eq!(first["operator"]["reason"], "coffee");
    let mut last = first["seq"].as_i64().unwrap();
    let mut kinds = vec!["presence".to_owned()];
    while last < newest {
        let m = back.next().await.unwrap();
        last = m["seq"].as_i64().unwrap();
        kinds.push(m["type"].as_str().unwrap().to_owned());
    }
    assert!(kinds.contains(&"queue".to_owned()), "{kinds:?}");

    // A fresh page (last_seq 0) gets the state in its welcome and no replay of the history: the
    // reply to a ping sent after hello is the very next frame.
    let mut fresh = connect(app.addr, &s).await;
    let w = fresh.hello(0).await;
    assert_eq!(w["queue"][0]["call_id"], "replay-1", "{w}");
    fresh.send(json!({"type": "ping", "ref": 7})).await;
    let next = fresh.next().await.unwrap();
    assert_eq!(next["type"], "pong", "no replayed message before the pong: {next}");
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_call_is_offered_by_skills_accepted_and_transferred() {
    let app = spawn_app().await;
    add_user(&app, "bruno", Role::Operator, &[It], &[Lavoro], false).await;
    add_user(&app, "carla", Role::Operator, &[It, Fr], &[Casa], false).await;
    let mut bruno = operator_online(&app, "bruno", true).await;
    let mut carla = operator_online(&app, "carla", true).await;
    // Bruno waited longer, but does not know housing.
    app.clock.advance(Duration::seconds(1));

    let mut call = italian_housing_call(&app, "skills-1").await;
    let offer = carla.until("offer", |_| true).await;
    assert_eq!(offer["call_id"], "skills-1");
    assert_eq!(offer["match"], "full");
    let pop = &offer["pop"];
    assert_eq!(pop["language"], "it");
    assert_eq!(pop["area"], "casa");
    assert_eq!(pop["town"], "Como");
    assert_eq!(pop["cap"], "22100", "the CAP the caller keyed in");
    assert!(
        pop["masked_number"].as_str().unwrap().contains('•') || pop["masked_number"].as_str().unwrap().contains('*'),
        "{pop}"
    );
    assert!(!pop.to_string().contains("3331234512"), "no raw number in the pop");
    assert!(pop["path"].as_array().unwrap().len() >= 4, "{pop}");
    assert_eq!(pop["previous"]["calls"], 0);

    carla.send(json!({"type": "accept", "offer_id": offer["offer_id"]})).await;
    // Presence first (the assignment's transaction), then `connected` once the transfer is stored.
    carla.until("presence", |v| v["operator"]["state"] == "on_call").await;
    let connected = carla.until("call", |v| v["state"] == "connected").await;
    assert_eq!(connected["call_id"], "skills-1");
    let (op, answered): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT operator_id, answered_at FROM calls WHERE call_id = 'skills-1'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(op.is_some() && answered.is_some());

    // The carrier's next request carries the transfer to Carla.
    let a = call.send(json!({"type": "no_input"})).await;
    let transfer =
        a["actions"].as_array().unwrap().iter().find(|x| x["type"] == "transfer").unwrap_or_else(|| panic!("{a}"));
    assert_eq!(transfer["to"], "sip:carla@pbx.example.org");
    assert_eq!(transfer["operator"], "carla");

    // Bruno never got an offer: the queue is all he saw.
    bruno.send(json!({"type": "ping", "ref": 1})).await;
    let mut kinds = Vec::new();
    loop {
        let m = bruno.next().await.unwrap();
        if m["type"] == "pong" {
            break;
        }
        kinds.push(m["type"].as_str().unwrap().to_owned());
    }
    assert!(!kinds.contains(&"offer".to_owned()), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_missed_offer_goes_to_the_next_operator_and_pauses_the_first() {
    let app = spawn_app().await;
    add_user(&app, "dora", Role::Operator, &[It], &[], false).await;
    add_user(&app, "enzo", Role::Operator, &[It], &[], false).await;
    let mut dora = operator_online(&app, "dora", true).await;
    app.clock.advance(Duration::seconds(5));
    let mut enzo = operator_online(&app, "enzo", true).await;
    let _call = Call::to_queue(&app, "missed-1", "+39 333 000 1111", &["0"]).await;
    let first = dora.until("offer", |_| true).await;
    app.clock.advance(Duration::seconds(21));
    let gone = dora.until("offer_withdrawn", |_| true).await;
    assert_eq!(gone["reason"], "expired");
    assert_eq!(gone["offer_id"], first["offer_id"]);
    let p = dora.until("presence", |v| v["operator"]["state"] == "paused").await;
    assert_eq!(p["operator"]["reason"], "missed offer");
    let second = enzo.until("offer", |_| true).await;
    assert_eq!(second["call_id"], "missed-1");

    // Declining counts as missed too: with nobody left, the call waits.
    enzo.send(json!({"type": "decline", "offer_id": second["offer_id"]})).await;
    let w = enzo.until("offer_withdrawn", |_| true).await;
    assert_eq!(w["reason"], "declined");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM queue_entries WHERE call_id = 'missed-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "waiting");
    app.stop().await;
}

#[tokio::test]
async fn the_area_is_dropped_then_a_mediator_takes_the_call() {
    let app = spawn_app().await;
    add_user(&app, "fabio", Role::Operator, &[It], &[Lavoro], false).await;
    let mut fabio = operator_online(&app, "fabio", true).await;
    let _call = italian_housing_call(&app, "drop-1").await;
    fabio.until("queue", |v| v["calls"][0]["call_id"] == "drop-1").await;
    app.clock.advance(Duration::seconds(61));
    let offer = fabio.until("offer", |_| true).await;
    assert_eq!(offer["match"], "language");
    fabio.send(json!({"type": "accept", "offer_id": offer["offer_id"]})).await;
    fabio.until("call", |v| v["state"] == "connected").await;

    add_user(&app, "gina", Role::Operator, &[En], &[Mediazione], true).await;
    let mut gina = operator_online(&app, "gina", true).await;
    let _fr = french_housing_call(&app, "fallback-1").await;
    gina.until("queue", |v| v["calls"].as_array().unwrap().iter().any(|c| c["call_id"] == "fallback-1")).await;
    app.clock.advance(Duration::seconds(179));
    // Nobody speaks French: not even the area-free match helps; a mediator only after 180 s.
    gina.send(json!({"type": "ping", "ref": "before"})).await;
    gina.until("pong", |_| true).await;
    let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM offers WHERE call_id = 'fallback-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(open, 0, "no offer before fallback_after");
    app.clock.advance(Duration::seconds(1));
    let offer = gina.until("offer", |v| v["call_id"] == "fallback-1").await;
    assert_eq!(offer["match"], "fallback", "a mediator after fallback_after");
    app.stop().await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_offered_withdraws_the_offer() {
    let app = spawn_app().await;
    add_user(&app, "ivo", Role::Operator, &[It], &[], false).await;
    let mut ivo = operator_online(&app, "ivo", true).await;
    let mut call = Call::to_queue(&app, "gone-1", "+39 333 000 2222", &["0"]).await;
    ivo.until("offer", |_| true).await;
    app.clock.advance(Duration::seconds(7));
    call.send(json!({"type": "call.ended"})).await;
    let w = ivo.until("offer_withdrawn", |_| true).await;
    assert_eq!(w["reason"], "abandoned");
    ivo.until("presence", |v| v["operator"]["state"] == "available").await;
    let (status, entered, updated): (String, i64, i64) =
        sqlx::query_as("SELECT status, entered_at, updated_at FROM queue_entries WHERE call_id = 'gone-1'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(status, "abandoned");
    assert_eq!(updated - entered, 7000, "the time waited is recorded");
    app.stop().await;
}

#[tokio::test]
async fn calls_waiting_survive_a_restart_and_are_offered_after_it() {
    let app = spawn_app().await;
    add_user(&app, "luca", Role::Operator, &[It], &[], false).await;
    let _call = Call::to_queue(&app, "restart-1", "+39 333 000 3333", &["0"]).await;
    let db = app.stop().await;
    let app = spawn_app_on(db).await;
    let mut luca = operator_online(&app, "luca", true).await;
    let offer = luca.until("offer", |_| true).await;
    assert_eq!(offer["call_id"], "restart-1");
    app.stop().await;
}

#[tokio::test]
async fn a_call_waiting_on_one_node_is_taken_by_an_operator_on_another() {
    let db = fresh_database().await;
    if !db.is_postgres() {
        eprintln!("HELPLINE_TEST_DATABASE_URL is unset: one node on SQLite (the two-node case needs PostgreSQL)");
    }
    let url = db.url.clone();
    let a = spawn_app_on(db).await;
    let b = if a.db.is_postgres() {
        Some(spawn_app_on(crate::helpers::TestDb { url: url.clone(), dir: tempfile::tempdir().unwrap() }).await)
    } else {
        None
    };
    let op_node = b.as_ref().unwrap_or(&a);
    add_user(&a, "marta", Role::Operator, &[It], &[], false).await;
    let mut marta = operator_online(op_node, "marta", true).await;
    let mut call = Call::to_queue(&a, "nodes-1", "+39 333 000 4444", &["0"]).await;
    let offer = marta.until("offer", |_| true).await;
    marta.send(json!({"type": "accept", "offer_id": offer["offer_id"]})).await;
    marta.until("call", |v| v["state"] == "connected").await;
    let r = call.send(json!({"type": "no_input"})).await;
    assert!(
        r["actions"].as_array().unwrap().iter().any(|x| x["type"] == "transfer" && x["operator"] == "marta"),
        "{r}"
    );
    if let Some(b) = b {
        b.stop().await;
    }
    a.stop().await;
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_socket_stays_open() {
    let app = spawn_app().await;
    add_user(&app, "nora", Role::Operator, &[It], &[], false).await;
    let s = sign_in(&app, "nora").await;
    let mut ws = connect(app.addr, &s).await;
    ws.send(json!({"type": "presence", "state": "available"})).await;
    assert_eq!(ws.next().await.unwrap()["code"], "hello_first");
    ws.hello(0).await;
    for (text, code) in [
        ("not json", "bad_message"),
        ("[1,2]", "bad_message"),
        ("{\"no\": \"type\"}", "bad_message"),
        ("{\"type\": \"dance\", \"ref\": 5}", "unknown_type"),
        ("{\"type\": \"presence\", \"state\": \"paused\"}", "bad_message"),
        ("{\"type\": \"presence\", \"state\": \"asleep\"}", "bad_message"),
        ("{\"type\": \"accept\", \"offer_id\": \"x\"}", "bad_message"),
        ("{\"type\": \"accept\", \"offer_id\": 999}", "not_your_offer"),
        ("{\"type\": \"note\", \"ref\": 1, \"call_id\": \"nope\", \"text\": \"hi\"}", "not_your_call"),
        ("{\"type\": \"end_call\", \"call_id\": \"nope\"}", "not_your_call"),
    ] {
        ws.send_raw(text).await;
        let e = ws.until("error", |_| true).await;
        assert_eq!(e["code"], code, "{text} → {e}");
    }
    ws.send(json!({"type": "ping", "ref": "still-here"})).await;
    assert_eq!(ws.until("pong", |_| true).await["ref"], "still-here");
    app.stop().await;
}

#[tokio::test]
async fn notes_referrals_and_the_disposition_are_saved_then_wrap_up_ends() {
    let app = spawn_app().await;
    app.state.directory.seed_demo_if_empty().await.unwrap();
    add_user(&app, "olga", Role::Operator, &[It], &[], false).await;
    let mut olga = operator_online(&app, "olga", true).await;
    let _call = Call::to_queue(&app, "work-1", "+39 333 000 5555", &["0"]).await;
    let offer = olga.until("offer", |_| true).await;
    olga.send(json!({"type": "accept", "offer_id": offer["offer_id"]})).await;
    olga.until("call", |v| v["state"] == "connected").await;

    olga.send(json!({"type": "search", "qseq": 1, "q": "casa"})).await;
    let results = olga.until("search_results", |_| true).await;
    assert_eq!(results["qseq"], 1);
    let service = results["results"][0].clone();
    assert!(service["id"].is_string(), "{results}");

    olga.send(json!({"type": "note", "ref": "n1", "call_id": "work-1", "text": "first"})).await;
    assert_eq!(olga.until("saved", |_| true).await["what"], "note");
    olga.send(json!({"type": "note", "ref": "n2", "call_id": "work-1", "text": "cerca casa a Como"})).await;
    assert_eq!(olga.until("saved", |_| true).await["ref"], "n2");
    olga.send(json!({"type": "referral", "ref": "r1", "call_id": "work-1", "service_id": service["id"], "add": true}))
        .await;
    assert_eq!(olga.until("saved", |_| true).await["what"], "referral");
    olga.send(
        json!({"type": "referral", "ref": "r2", "call_id": "work-1", "service_id": "no-such-service", "add": true}),
    )
    .await;
    assert_eq!(olga.until("error", |_| true).await["code"], "unknown_service");
    olga.send(json!({"type": "disposition", "ref": "d0", "call_id": "work-1", "code": "nonsense"})).await;
    assert_eq!(olga.until("error", |_| true).await["code"], "unknown_disposition");
    olga.send(json!({"type": "disposition", "ref": "d1", "call_id": "work-1", "code": "referral"})).await;
    assert_eq!(olga.until("saved", |_| true).await["what"], "disposition");

    let (text,): (String,) = sqlx::query_as("SELECT text FROM call_notes WHERE call_id = 'work-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(text, "cerca casa a Como", "last write wins");
    let (n, name): (i64, String) =
        sqlx::query_as("SELECT COUNT(*), MAX(service_name) FROM referrals WHERE call_id = 'work-1'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(n, 1);
    assert_eq!(Some(name.as_str()), service["name"].as_str());
    let (disp,): (Option<String>,) = sqlx::query_as("SELECT disposition FROM calls WHERE call_id = 'work-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(disp.as_deref(), Some("referral"));

    olga.send(json!({"type": "end_call", "call_id": "work-1"})).await;
    let wrap = olga.until("wrap_up", |_| true).await;
    assert_eq!(wrap["call_id"], "work-1");
    olga.until("presence", |v| v["operator"]["state"] == "wrap_up").await;
    app.clock.advance(Duration::seconds(61));
    olga.until("presence", |v| v["operator"]["state"] == "available").await;

    // The same number calls again: the pop shows the earlier call and its note.
    let _again = Call::to_queue(&app, "work-2", "+39 333 000 5555", &["0"]).await;
    let offer = olga.until("offer", |_| true).await;
    assert_eq!(offer["pop"]["previous"]["calls"], 1, "{offer}");
    assert_eq!(offer["pop"]["previous"]["notes"][0]["text"], "cerca casa a Como");
    app.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_ends_both_sessions_and_closes_the_socket() {
    let app = spawn_app().await;
    add_user(&app, "pia", Role::Operator, &[It], &[], false).await;
    let s1 = sign_in(&app, "pia").await;
    let s2 = sign_in(&app, "pia").await;
    let mut ws = connect(app.addr, &s1).await;
    ws.hello(0).await;
    let r = app
        .client
        .post(app.url("/api/session/everywhere"))
        .header("cookie", &s2.cookie)
        .header("x-csrf-token", &s2.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(ws.closed().await, "the socket of the other session is closed");
    for s in [&s1, &s2] {
        let r = app.client.get(app.url("/api/session")).header("cookie", &s.cookie).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    app.stop().await;
}

/// Two nodes on one PostgreSQL: signing out everywhere through one closes the socket open on the
/// other at once, not at that node's periodic session check (`SESSION_CHECK`, 30 s).
#[tokio::test]
async fn signing_out_everywhere_closes_the_socket_on_another_node() {
    let db = fresh_database().await;
    if !db.is_postgres() {
        eprintln!("HELPLINE_TEST_DATABASE_URL is unset: the two-node case needs PostgreSQL");
        return;
    }
    let url = db.url.clone();
    let a = spawn_app_on(db).await;
    let b = spawn_app_on(crate::helpers::TestDb { url, dir: tempfile::tempdir().unwrap() }).await;
    add_user(&a, "pia", Role::Operator, &[It], &[], false).await;
    let on_b = sign_in(&b, "pia").await;
    let on_a = sign_in(&a, "pia").await;
    let mut ws = connect(b.addr, &on_b).await;
    ws.hello(0).await;
    let r = a
        .client
        .post(a.url("/api/session/everywhere"))
        .header("cookie", &on_a.cookie)
        .header("x-csrf-token", &on_a.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let check = console::operators::socket::SESSION_CHECK;
    let closed = tokio::time::timeout(check / 3, ws.closed()).await;
    assert_eq!(closed.ok(), Some(true), "node B closed the socket well before its {check:?} session check");
    b.stop().await;
    a.stop().await;
}

/// An available operator with no phone target is passed over: the call goes to one who can take
/// it, even one who became available later.
#[tokio::test]
async fn an_operator_without_a_phone_target_is_not_offered_calls() {
    use console::db::users::{self, NewUser, Password, UserName};
    let app = spawn_app().await;
    users::add_user(
        &app.state.db,
        &NewUser {
            name: UserName::parse("nina").unwrap(),
            role: Role::Operator,
            languages: vec![It],
            areas: vec![],
            password: Password::parse(PASSWORD).unwrap(),
            sip_target: None,
        },
        app.state.clock.now().timestamp_millis(),
    )
    .await
    .unwrap();
    let _nina = operator_online(&app, "nina", true).await;
    app.clock.advance(Duration::seconds(5));
    let _call = Call::to_queue(&app, "no-target-1", "+39 333 000 5555", &["0"]).await;
    console::operators::queue_service::pass(&app.state.operators).await.unwrap();
    let (offers,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM offers").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(offers, 0, "nobody to put the call through to");
    add_user(&app, "olga", Role::Operator, &[It], &[], false).await;
    let mut olga = operator_online(&app, "olga", true).await;
    let offer = olga.until("offer", |_| true).await;
    assert_eq!(offer["call_id"], "no-target-1");
    app.stop().await;
}

/// The queue service's pass runs every second on every node: with nothing to do it commits
/// nothing (the `console_lock` row it bumps first is left as it was), and with something to do
/// it commits as before.
#[tokio::test]
async fn a_pass_with_nothing_to_do_commits_nothing() {
    let app = spawn_app().await;
    let bumps = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT n FROM console_lock WHERE id = 1").fetch_one(app.state.db.pool()).await.unwrap();
        n
    };
    let before = bumps().await;
    for _ in 0..3 {
        console::operators::queue_service::pass(&app.state.operators).await.unwrap();
    }
    assert_eq!(bumps().await, before, "an idle pass committed");
    // The server's own passes too (one a second), counted in `helpline_acd_passes_total` once
    // each has committed or rolled back: three more, so at least two began after this point.
    let passes = || app.state.metrics.acd_passes.get();
    let (start, deadline) = (passes(), std::time::Instant::now() + std::time::Duration::from_secs(20));
    while passes() < start + 3 {
        assert!(std::time::Instant::now() < deadline, "the server ran {} passes in 20 s", passes() - start);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(bumps().await, before, "the server's idle passes committed");
    assert!(app.state.metrics.encode().contains("helpline_acd_passes_total"));
    let _call = Call::to_queue(&app, "idle-pass-1", "+39 333 000 5556", &["0"]).await;
    console::operators::queue_service::pass(&app.state.operators).await.unwrap();
    assert!(bumps().await > before, "the queue changed: a pass writes its message");
    let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM console_messages WHERE kind = 'queue'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(queued >= 1);
    app.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_with_retry_after() {
    let app = spawn_app().await;
    add_user(&app, "rita", Role::Operator, &[It], &[], false).await;
    for _ in 0..5 {
        let r = app
            .client
            .post(app.url("/api/session"))
            .json(&json!({"name": "rita", "password": "wrong wrong wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .client
        .post(app.url("/api/session"))
        .json(&json!({"name": "rita", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "even the right password waits");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "rate_limited");
    app.stop().await;
}

#[tokio::test]
async fn a_foreign_origin_cannot_open_the_socket() {
    let app = spawn_app().await;
    add_user(&app, "sara", Role::Operator, &[It], &[], false).await;
    let s = sign_in(&app, "sara").await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.expect_err("refused");
    assert!(err.to_string().contains("403"), "{err}");
    app.stop().await;
}
