//! The operator console against the real server: real websocket clients (tokio-tungstenite),
//! calls placed through the JSON webhook, the ACD moved by the server's ManualClock.

use crate::console_client::*;
use crate::helpers::{fresh_database, spawn_app, spawn_app_on};
use chrono::Duration;
use console::db::users::Role;
use console::operators::presence::PresenceState;
use ivr::domain::Language;
#[allow(non_upper_case_globals)]
const It: Language = Language::It;
#[allow(non_upper_case_globals)]
const En: Language = Language::En;
#[allow(non_upper_case_globals)]
const Fr: Language = Language::Fr;
#[allow(non_upper_case_globals, dead_code)]
const Es: Language = Language::Es;
use ivr::domain::ServiceArea::*;
use serde_json::json;

/// A request tag.
fn tag(t: &str) -> Ref {
    json!(t)
}

#[tokio::test]
async fn hello_gets_a_welcome_and_a_reconnect_replays_what_was_missed() {
    let app = spawn_app().await;
    add_user(&app, "anna", Role::Operator, &[It], &[Casa], false).await;
    let s = sign_in(&app, "anna").await;
    let mut ws = connect(app.addr, &s).await;
    let w = ws.hello(0).await;
    assert_eq!(w.user.name, "anna");
    assert_eq!(w.presence.as_ref().map(|p| p.state), Some(PresenceState::Offline), "{w:?}");
    assert!(w.config.dispositions.len() >= 3, "{w:?}");
    assert_eq!(w.operators, None, "operators see no one else's presence");
    ws.presence(PresenceChoice::Available, None).await;
    let seen = ws.last_seq;
    assert!(seen > 0, "a presence message carries its seq");
    drop(ws);

    // While the page is away: a pause (from a second tab) and a call reaching the queue.
    let mut other = connect(app.addr, &s).await;
    other.hello(seen).await;
    other.presence(PresenceChoice::Paused, Some("coffee")).await;
    let _call = italian_housing_call(&app, "replay-1").await;
    until!(other, ServerMessage::Queue { calls } if calls.first().is_some_and(|c| c.call_id == "replay-1") => ());

    let mut back = connect(app.addr, &s).await;
    back.last_seq = seen;
    let w = back.hello(seen).await;
    assert_eq!(w.presence.as_ref().map(|p| p.state), Some(PresenceState::Paused));
    let newest = w.last_seq;
    // Replayed in order, the pause first, up to the newest seq at welcome.
    let first = back.next().await.unwrap();
    let ServerMessage::Presence { operator } = &first.message else { panic!("presence first: {first:?}") };
    assert_eq!(operator.reason.as_deref(), Some("coffee"));
    let mut last = first.seq.unwrap();
    let mut kinds = vec!["presence".to_owned()];
    while last < newest {
        let m = back.next().await.unwrap();
        last = m.seq.expect("a replayed message has its seq");
        kinds.push(type_of(&m.message));
    }
    assert!(kinds.contains(&"queue".to_owned()), "{kinds:?}");

    // A fresh page (last_seq 0) gets the state in its welcome and no replay of the history: the
    // reply to a ping sent after hello is the very next frame.
    let mut fresh = connect(app.addr, &s).await;
    let w = fresh.hello(0).await;
    assert_eq!(w.queue[0].call_id, "replay-1", "{w:?}");
    fresh.send(ClientMessage::Ping { r#ref: Some(json!(7)) }).await;
    let next = fresh.next().await.unwrap();
    assert_eq!(next.message, ServerMessage::Pong { r#ref: Some(json!(7)) }, "no replayed message before the pong");
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
    let offer = until!(carla, ServerMessage::Offer(o) => o);
    assert_eq!(offer.call_id, "skills-1");
    assert_eq!(offer.matched, OfferMatch::Full);
    let pop = offer.pop.as_ref().expect("a screen-pop");
    assert_eq!(pop.language.as_deref(), Some("it"));
    assert_eq!(pop.area.as_deref(), Some("casa"));
    assert_eq!(pop.town.as_deref(), Some("Como"));
    assert_eq!(pop.cap.as_deref(), Some("22100"), "the CAP the caller keyed in");
    let masked = pop.masked_number.as_deref().unwrap();
    assert!(masked.contains('•') || masked.contains('*'), "{pop:?}");
    assert!(!serde_json::to_string(pop).unwrap().contains("3331234512"), "no raw number in the pop");
    assert!(pop.path.len() >= 4, "{pop:?}");
    assert_eq!(pop.previous.calls, 0);

    carla.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    // Presence first (the assignment's transaction), then `connected` once the transfer is stored.
    until!(carla, ServerMessage::Presence { operator } if operator.state == PresenceState::OnCall => ());
    let connected = until!(carla, ServerMessage::Call(c) if c.state == CallState::Connected => c);
    assert_eq!(connected.call_id, "skills-1");
    assert_eq!(connected.offer_id, Some(offer.offer_id));
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
    let seen = bruno.ping("after").await;
    assert!(!seen.iter().any(|m| matches!(m, ServerMessage::Offer(_))), "{seen:?}");
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
    let first = until!(dora, ServerMessage::Offer(o) => o);
    app.clock.advance(Duration::seconds(21));
    let (gone, reason) = until!(dora, ServerMessage::OfferWithdrawn { offer_id, reason, .. } => (offer_id, reason));
    assert_eq!(reason, WithdrawReason::Expired);
    assert_eq!(gone, first.offer_id);
    let p = until!(dora, ServerMessage::Presence { operator } if operator.state == PresenceState::Paused => operator);
    assert_eq!(p.reason.as_deref(), Some("missed offer"));
    let second = until!(enzo, ServerMessage::Offer(o) => o);
    assert_eq!(second.call_id, "missed-1");

    // Declining counts as missed too: with nobody left, the call waits.
    enzo.send(ClientMessage::Decline { offer_id: second.offer_id }).await;
    let reason = until!(enzo, ServerMessage::OfferWithdrawn { reason, .. } => reason);
    assert_eq!(reason, WithdrawReason::Declined);
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
    until!(fabio, ServerMessage::Queue { calls } if calls.first().is_some_and(|c| c.call_id == "drop-1") => ());
    app.clock.advance(Duration::seconds(61));
    let offer = until!(fabio, ServerMessage::Offer(o) => o);
    assert_eq!(offer.matched, OfferMatch::Language);
    fabio.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(fabio, ServerMessage::Call(c) if c.state == CallState::Connected => ());

    add_user(&app, "gina", Role::Operator, &[En], &[Mediazione], true).await;
    let mut gina = operator_online(&app, "gina", true).await;
    let _fr = french_housing_call(&app, "fallback-1").await;
    until!(gina, ServerMessage::Queue { calls } if calls.iter().any(|c| c.call_id == "fallback-1") => ());
    app.clock.advance(Duration::seconds(179));
    // Nobody speaks French: not even the area-free match helps; a mediator only after 180 s.
    gina.ping("before").await;
    let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM offers WHERE call_id = 'fallback-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(open, 0, "no offer before fallback_after");
    app.clock.advance(Duration::seconds(1));
    let offer = until!(gina, ServerMessage::Offer(o) if o.call_id == "fallback-1" => o);
    assert_eq!(offer.matched, OfferMatch::Fallback, "a mediator after fallback_after");
    app.stop().await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_offered_withdraws_the_offer() {
    let app = spawn_app().await;
    add_user(&app, "ivo", Role::Operator, &[It], &[], false).await;
    let mut ivo = operator_online(&app, "ivo", true).await;
    let mut call = Call::to_queue(&app, "gone-1", "+39 333 000 2222", &["0"]).await;
    until!(ivo, ServerMessage::Offer(_) => ());
    app.clock.advance(Duration::seconds(7));
    call.send(json!({"type": "call.ended"})).await;
    let reason = until!(ivo, ServerMessage::OfferWithdrawn { reason, .. } => reason);
    assert_eq!(reason, WithdrawReason::Abandoned);
    until!(ivo, ServerMessage::Presence { operator } if operator.state == PresenceState::Available => ());
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
    let offer = until!(luca, ServerMessage::Offer(o) => o);
    assert_eq!(offer.call_id, "restart-1");
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
    let offer = until!(marta, ServerMessage::Offer(o) => o);
    marta.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(marta, ServerMessage::Call(c) if c.state == CallState::Connected => ());
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
    ws.send(ClientMessage::Presence { state: PresenceChoice::Available, reason: None }).await;
    let first = ws.next().await.unwrap().message;
    let ServerMessage::Error(e) = first else { panic!("an error before hello: {first:?}") };
    assert_eq!(e.code, ErrorCode::HelloFirst);
    ws.send_raw(r#"{"type": "dance", "ref": "d0"}"#).await;
    let e = until!(ws, ServerMessage::Error(e) => e);
    assert_eq!((e.code, e.r#ref), (ErrorCode::HelloFirst, Some(tag("d0"))), "hello first, whatever the type");
    ws.hello(0).await;
    // Frames the page would never send are written by hand; valid messages are the protocol's own.
    for (text, code) in [
        ("not json", ErrorCode::BadMessage),
        ("[1,2]", ErrorCode::BadMessage),
        (r#"{"no": "type"}"#, ErrorCode::BadMessage),
        (r#"{"type": "dance", "ref": 5}"#, ErrorCode::UnknownType),
        (r#"{"type": "presence", "state": "paused"}"#, ErrorCode::BadMessage),
        (r#"{"type": "presence", "state": "asleep"}"#, ErrorCode::BadMessage),
        (r#"{"type": "accept", "offer_id": "x"}"#, ErrorCode::BadMessage),
        (r#"{"type": "note", "call_id": "c", "text": "no ref"}"#, ErrorCode::BadMessage),
        (r#"{"type": "hello", "last_seq": 0}"#, ErrorCode::BadMessage),
    ] {
        ws.send_raw(text).await;
        let e = until!(ws, ServerMessage::Error(e) => e);
        assert_eq!(e.code, code, "{text} → {e:?}");
        assert!(!e.message.is_empty(), "{text} → {e:?}");
    }
    ws.send_raw(r#"{"type": "dance", "ref": 5}"#).await;
    let e = until!(ws, ServerMessage::Error(e) => e);
    assert_eq!(e.r#ref, Some(json!(5)), "the ref comes back as it was sent");
    assert!(e.message.contains("dance"), "{e:?}");
    for (message, code) in [
        (ClientMessage::Accept { offer_id: 999, device: None }, ErrorCode::NotYourOffer),
        (ClientMessage::Note { r#ref: json!(1), call_id: "nope".into(), text: "hi".into() }, ErrorCode::NotYourCall),
        (ClientMessage::EndCall { call_id: "nope".into() }, ErrorCode::NotYourCall),
    ] {
        ws.send(message.clone()).await;
        let e = until!(ws, ServerMessage::Error(e) => e);
        assert_eq!(e.code, code, "{message:?} → {e:?}");
    }
    ws.send(ClientMessage::Ping { r#ref: Some(tag("still-here")) }).await;
    let pong = until!(ws, ServerMessage::Pong { r#ref } => r#ref);
    assert_eq!(pong, Some(tag("still-here")));
    app.stop().await;
}

#[tokio::test]
async fn notes_referrals_and_the_disposition_are_saved_then_wrap_up_ends() {
    let app = spawn_app().await;
    app.state.directory.seed_demo_if_empty().await.unwrap();
    add_user(&app, "olga", Role::Operator, &[It], &[], false).await;
    let mut olga = operator_online(&app, "olga", true).await;
    let _call = Call::to_queue(&app, "work-1", "+39 333 000 5555", &["0"]).await;
    let offer = until!(olga, ServerMessage::Offer(o) => o);
    olga.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(olga, ServerMessage::Call(c) if c.state == CallState::Connected => ());

    olga.send(ClientMessage::Search(Search { qseq: 1, q: "casa".into(), ..Search::default() })).await;
    let results = until!(olga, ServerMessage::SearchResults(r) => r);
    assert_eq!(results.qseq, 1);
    assert!(results.total >= results.results.len() && !results.results.is_empty(), "{results:?}");
    let service = results.results[0].clone();
    assert!(!service.id.is_empty(), "{results:?}");
    // A place the directory does not know: `bad_search` with the search's qseq.
    olga.send(ClientMessage::Search(Search { qseq: 2, near: Some("Atlantide".into()), ..Search::default() })).await;
    let e = until!(olga, ServerMessage::Error(e) => e);
    assert_eq!((e.code, e.qseq), (ErrorCode::BadSearch, Some(2)), "{e:?}");
    assert!(e.message.contains("parameter near"), "{e:?}");

    let note = |r: &str, text: &str| ClientMessage::Note { r#ref: tag(r), call_id: "work-1".into(), text: text.into() };
    olga.send(note("n1", "first")).await;
    assert_eq!(until!(olga, ServerMessage::Saved { what, .. } => what), SavedWhat::Note);
    olga.send(note("n2", "cerca casa a Como")).await;
    assert_eq!(until!(olga, ServerMessage::Saved { r#ref, .. } => r#ref), tag("n2"));
    let referral = |r: &str, service_id: &str| ClientMessage::Referral {
        r#ref: tag(r),
        call_id: "work-1".into(),
        service_id: service_id.into(),
        add: true,
    };
    olga.send(referral("r1", &service.id)).await;
    assert_eq!(until!(olga, ServerMessage::Saved { what, .. } => what), SavedWhat::Referral);
    olga.send(referral("r2", "no-such-service")).await;
    let e = until!(olga, ServerMessage::Error(e) => e);
    assert_eq!((e.code, e.r#ref), (ErrorCode::UnknownService, Some(tag("r2"))));
    let disposition =
        |r: &str, code: &str| ClientMessage::Disposition { r#ref: tag(r), call_id: "work-1".into(), code: code.into() };
    olga.send(disposition("d0", "nonsense")).await;
    assert_eq!(until!(olga, ServerMessage::Error(e) => e.code), ErrorCode::UnknownDisposition);
    olga.send(disposition("d1", "referral")).await;
    assert_eq!(until!(olga, ServerMessage::Saved { what, .. } => what), SavedWhat::Disposition);

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
    assert_eq!(name, service.name);
    let (disp,): (Option<String>,) = sqlx::query_as("SELECT disposition FROM calls WHERE call_id = 'work-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(disp.as_deref(), Some("referral"));

    olga.send(ClientMessage::EndCall { call_id: "work-1".into() }).await;
    let ended = until!(olga, ServerMessage::Call(c) => c);
    assert_eq!((ended.call_id.as_str(), ended.state, ended.pop), ("work-1", CallState::Ended, None));
    let wrapped = until!(olga, ServerMessage::WrapUp { call_id, .. } => call_id);
    assert_eq!(wrapped, "work-1");
    until!(olga, ServerMessage::Presence { operator } if operator.state == PresenceState::WrapUp => ());
    app.clock.advance(Duration::seconds(61));
    until!(olga, ServerMessage::Presence { operator } if operator.state == PresenceState::Available => ());

    // The same number calls again: the pop shows the earlier call and its note.
    let _again = Call::to_queue(&app, "work-2", "+39 333 000 5555", &["0"]).await;
    let offer = until!(olga, ServerMessage::Offer(o) => o);
    let previous = offer.pop.expect("a screen-pop").previous;
    assert_eq!(previous.calls, 1, "{previous:?}");
    assert_eq!(previous.notes[0].text, "cerca casa a Como");
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

/// An available operator with no phone target answers in the browser: offered a carrier's call,
/// accepting it connects it to the browser (`device: browser`), and the transfer the carrier gets
/// is the operator's own SIP address with a per-offer token (docs/media.md). One with a target
/// who asks for the phone by default keeps the SIP target.
#[tokio::test]
async fn an_operator_without_a_phone_target_answers_in_the_browser() {
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
            organization_id: None,
        },
        app.state.clock.now().timestamp_millis(),
        &console::db::audit::Actor::system("test"),
    )
    .await
    .unwrap();
    let mut nina = operator_online(&app, "nina", true).await;
    let _call = Call::to_queue(&app, "no-target-1", "+39 333 000 5555", &["0"]).await;
    let offer = until!(nina, ServerMessage::Offer(o) => o);
    assert_eq!(offer.call_id, "no-target-1");
    nina.send(ClientMessage::Accept { offer_id: offer.offer_id, device: Some(Device::Phone) }).await;
    let refused = until!(nina, ServerMessage::Error(e) => e);
    assert_eq!(refused.code, ErrorCode::NoTarget, "no phone to answer on");
    nina.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    let connected = until!(nina, ServerMessage::Call(c) if c.state == CallState::Connected => c);
    assert_eq!(connected.device, Some(Device::Browser));
    let (target,): (String,) = sqlx::query_as("SELECT target FROM queue_entries WHERE call_id = 'no-target-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let sip = app.state.phone.sip_addr();
    assert!(target.starts_with(&format!("sip:op-nina@{sip};token=")), "{target}");
    assert_eq!(target.rsplit('=').next().map(str::len), Some(32), "a 128-bit token: {target}");
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

#[tokio::test]
async fn a_socket_sending_too_fast_is_refused_past_its_rate_and_the_newest_search_is_answered() {
    use console::operators::socket::{FRAME_BURST, FRAME_RATE};
    let app = spawn_app().await;
    app.state.directory.seed_demo_if_empty().await.unwrap();
    add_user(&app, "rita", Role::Operator, &[It], &[], false).await;
    let s = sign_in(&app, "rita").await;
    let mut ws = connect(app.addr, &s).await;
    ws.hello(0).await;

    // Twice the burst, back to back, as a script would send them.
    const SENT: u64 = 2 * FRAME_BURST as u64;
    for qseq in 1..=SENT {
        ws.send(ClientMessage::Search(Search { qseq, q: "casa".into(), ..Search::default() })).await;
    }
    // A ping, again while refused: its pong comes after every answer the searches got from the
    // receiving side (refusals are sent in order, before the next frame is read).
    let mut refused = std::collections::BTreeSet::new();
    let mut answered = std::collections::BTreeSet::new();
    for attempt in 0.. {
        let r#ref = tag(&format!("ping-{attempt}"));
        ws.send(ClientMessage::Ping { r#ref: Some(r#ref.clone()) }).await;
        let ponged = loop {
            match ws.next().await.expect("socket open").message {
                ServerMessage::Pong { r#ref: Some(r) } if r == r#ref => break true,
                ServerMessage::Error(e) if e.code == ErrorCode::RateLimited && e.r#ref.as_ref() == Some(&r#ref) => {
                    break false
                }
                ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => {
                    assert!(refused.insert(e.qseq.expect("a refused search carries its qseq")), "{e:?}");
                }
                ServerMessage::SearchResults(r) => {
                    answered.insert(r.qseq);
                }
                _ => {}
            }
        };
        if ponged {
            break;
        }
        // Refused: the bucket refills at FRAME_RATE a second.
        tokio::time::sleep(std::time::Duration::from_secs_f64(1.0 / FRAME_RATE)).await;
    }
    // The hello took one token; the refill while sending is small.
    assert!(refused.len() as u64 >= SENT - FRAME_BURST as u64 - 5, "{} of {SENT} refused", refused.len());
    let accepted: Vec<u64> = (1..=SENT).filter(|q| !refused.contains(q)).collect();
    assert!(accepted.len() >= FRAME_BURST as usize - 5, "{accepted:?}");
    // The newest accepted search is answered (superseded ones may not be).
    let newest = *accepted.last().unwrap();
    if !answered.contains(&newest) {
        let got = until!(ws, ServerMessage::SearchResults(r) if r.qseq == newest => r.qseq);
        assert_eq!(got, newest);
    }
    assert!(answered.iter().all(|q| accepted.contains(q)), "no refused search is answered");

    // The socket is still open and, once the bucket has refilled a little, a later search goes
    // through (the slot was freed).
    for qseq in SENT + 1.. {
        ws.send(ClientMessage::Search(Search { qseq, q: "lavoro".into(), ..Search::default() })).await;
        let answer = ws
            .until("its answer", |m| match m {
                ServerMessage::SearchResults(r) if r.qseq == qseq => Some(Ok(())),
                ServerMessage::Error(e) if e.qseq == Some(qseq) => Some(Err(e)),
                _ => None,
            })
            .await;
        match answer {
            Ok(()) => break,
            Err(e) if e.code == ErrorCode::RateLimited => {
                tokio::time::sleep(std::time::Duration::from_secs_f64(1.0 / FRAME_RATE)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    app.stop().await;
}
