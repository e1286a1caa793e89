//! `POST /voice/events`: whole calls through the JSON call-event API against the real server,
//! signatures, retries, bad input, and one call alternating between two servers on one database.

use crate::helpers::{fresh_database, spawn_app, spawn_app_on, TestApp, TestDb, TEST_WEBHOOK_SECRET};
use serde_json::{json, Value};

/// A call driven through the JSON API, numbering its events.
struct Call<'a> {
    apps: Vec<&'a TestApp>,
    id: String,
    seq: i64,
}

impl<'a> Call<'a> {
    fn new(app: &'a TestApp, id: &str) -> Self {
        Call { apps: vec![app], id: id.into(), seq: 0 }
    }

    /// Sends the next event (alternating between the servers given) and expects a 200.
    async fn send(&mut self, mut event: Value) -> Value {
        self.seq += 1;
        event["call_id"] = json!(self.id);
        event["seq"] = json!(self.seq);
        let app = self.apps[(self.seq as usize - 1) % self.apps.len()];
        let (status, body) = app.voice_event(&event).await;
        assert_eq!(status, 200, "{event} → {body}");
        body
    }
}

/// The prompt ids played in an answer, in order.
fn played(answer: &Value) -> Vec<String> {
    answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "play")
        .map(|a| a["prompt"].as_str().unwrap().to_owned())
        .collect()
}

/// The texts said in an answer, with their language tags, in order.
fn said(answer: &Value) -> Vec<(String, String)> {
    answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "say")
        .map(|a| (a["text"].as_str().unwrap().to_owned(), a["language"].as_str().unwrap().to_owned()))
        .collect()
}

fn last_type(answer: &Value) -> String {
    answer["actions"].as_array().unwrap().last().map(|a| a["type"].as_str().unwrap().to_owned()).unwrap_or_default()
}

fn action<'v>(answer: &'v Value, kind: &str) -> &'v Value {
    answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {answer}"))
}

async fn call_row(app: &TestApp, id: &str) -> (Option<String>, Option<String>, Option<String>, Option<String>, i64) {
    sqlx::query_as("SELECT language, area, town, outcome, language_guessed FROM calls WHERE call_id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn event_count(app: &TestApp, id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_events WHERE call_id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn an_italian_caller_chooses_housing_in_como_and_reaches_the_queue() {
    let app = spawn_app().await;
    let mut call = Call::new(&app, "json-it-1");
    let a = call.send(json!({"type": "call.started", "from": "+39 333 123 4512", "to": "803001"})).await;
    // Italian offered first, with its key.
    assert_eq!(said(&a), [("Italiano, premi 1.".to_owned(), "it-IT".to_owned())], "{a}");
    assert_eq!(last_type(&a), "gather");
    assert!(!a.to_string().contains("3331234512"), "the number never comes back: {a}");

    let a = call.send(json!({"type": "digits", "digits": "1"})).await;
    assert_eq!(played(&a), ["welcome", "recording-notice", "area-menu"], "{a}");
    let welcome = &a["actions"][0];
    assert_eq!(welcome["language"], "it-IT");
    assert!(welcome["url"].as_str().unwrap().ends_with("/prompts/it/welcome.wav"), "{welcome}");
    let a = call.send(json!({"type": "digits", "digits": "3"})).await;
    assert_eq!(played(&a), ["cap-ask"], "{a}");
    let gather = action(&a, "gather");
    assert_eq!(gather["max_digits"], 5);
    assert_eq!(gather["finish_on_key"], "#");
    let a = call.send(json!({"type": "digits", "digits": "22100"})).await;
    let said: Vec<&str> = a["actions"].as_array().unwrap().iter().filter_map(|x| x["text"].as_str()).collect();
    assert!(said.iter().any(|t| t.contains("Como")), "the place is read back: {a}");
    assert!(played(&a).contains(&"service-choice".to_owned()), "{a}");
    let a = call.send(json!({"type": "digits", "digits": "2"})).await;
    let enqueue = action(&a, "enqueue");
    assert_eq!(enqueue["queue"], "it.casa");
    assert_eq!(enqueue["language"], "it");
    let position = a["actions"].as_array().unwrap().iter().find(|x| x["type"] == "say").expect("position said");
    assert!(position["text"].as_str().unwrap().contains("prossimo"), "first in the queue: {position}");

    let (language, area, town, outcome, guessed) = call_row(&app, "json-it-1").await;
    assert_eq!(language.as_deref(), Some("it"));
    assert_eq!(area.as_deref(), Some("casa"));
    assert_eq!(town.as_deref(), Some("Como"));
    let (cap,): (Option<String>,) = sqlx::query_as("SELECT cap FROM calls WHERE call_id = 'json-it-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(cap.as_deref(), Some("22100"), "the CAP the caller keyed in");
    assert_eq!(outcome.as_deref(), Some("queued"));
    assert_eq!(guessed, 1, "the guessed language was accepted");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM queue_entries WHERE call_id = 'json-it-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "waiting");

    // The caller hangs up while waiting: abandoned, and the call log replays to the stored state.
    let a = call.send(json!({"type": "call.ended"})).await;
    assert_eq!(a["ended"], true);
    let (status,): (String,) = sqlx::query_as("SELECT status FROM queue_entries WHERE call_id = 'json-it-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "abandoned");
    let id = ivr::domain::CallId::parse("json-it-1").unwrap();
    let events = app.state.calls.recorded_events(&id).await.unwrap();
    let replayed = ivr::engine::replay(app.state.calls.flow(), id.clone(), &events);
    assert_eq!(Some(replayed), app.state.calls.state(&id).await.unwrap());
    let caller_hash: (Option<String>,) = sqlx::query_as("SELECT caller_hash FROM calls WHERE call_id = 'json-it-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(caller_hash.0.unwrap().len(), 64, "the number is stored only as its hash");
    app.stop().await;
}

#[tokio::test]
async fn a_french_caller_gets_french_offered_first_and_can_refuse_it() {
    let app = spawn_app().await;
    let mut call = Call::new(&app, "json-fr-1");
    let a = call.send(json!({"type": "call.started", "from": "+33 6 12 34 56 78"})).await;
    assert_eq!(said(&a), [("Français, tapez 1.".to_owned(), "fr-FR".to_owned())], "{a}");

    // Refused (9): the menu of the other languages, each option in its own language and key.
    let a = call.send(json!({"type": "digits", "digits": "9"})).await;
    let langs: Vec<String> = said(&a).into_iter().map(|(_, l)| l).collect();
    assert_eq!(langs, ["it-IT", "en-GB", "es-ES", "ru-RU", "zh-CN", "ar-XA", "ro-RO", "sq", "uk-UA"], "{a}");
    assert_eq!(said(&a)[2].0, "Español, pulse 3.");
    assert_eq!(said(&a)[7].0, "Shqip, shtypni 8.");
    // Spanish, work, then # to skip the CAP: straight to a Spanish-speaking operator.
    let a = call.send(json!({"type": "digits", "digits": "3"})).await;
    assert_eq!(a["actions"][0]["language"], "es-ES");
    call.send(json!({"type": "digits", "digits": "2"})).await;
    let a = call.send(json!({"type": "digits", "digits": "#"})).await;
    assert_eq!(action(&a, "enqueue")["queue"], "es.lavoro");
    let (language, area, _, _, guessed) = call_row(&app, "json-fr-1").await;
    assert_eq!((language.as_deref(), area.as_deref(), guessed), (Some("es"), Some("lavoro"), 0));
    app.stop().await;
}

#[tokio::test]
async fn zero_reaches_an_operator_and_out_of_hours_offers_a_callback() {
    let app = spawn_app().await;
    let mut call = Call::new(&app, "json-zero");
    call.send(json!({"type": "call.started", "from": "+44 7700 900123"})).await;
    let a = call.send(json!({"type": "digits", "digits": "0"})).await;
    assert_eq!(action(&a, "enqueue")["language"], "en", "{a}");

    // Sunday: closed.
    app.clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 29, 10, 0, 0).unwrap());
    let mut call = Call::new(&app, "json-closed");
    call.send(json!({"type": "call.started", "from": "+39 02 1234 5678"})).await;
    let a = call.send(json!({"type": "digits", "digits": "1"})).await;
    assert!(played(&a).contains(&"hours-closed".to_owned()), "{a}");
    let a = call.send(json!({"type": "digits", "digits": "1"})).await;
    assert!(played(&a).contains(&"voicemail-prompt".to_owned()), "{a}");
    assert_eq!(action(&a, "record"), &json!({"type": "record", "max_secs": 60, "finish_on_key": "#", "beep": true}));
    // The caller said nothing: the request is taken without a message.
    let a = call.send(json!({"type": "recording"})).await;
    assert!(played(&a).contains(&"callback-confirmed".to_owned()), "{a}");
    assert_eq!(action(&a, "hangup")["outcome"], "callback");
    assert_eq!(a["ended"], true);
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM callbacks WHERE call_id = 'json-closed' AND language = 'it'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(n, 1, "the callback request is recorded");
    app.stop().await;
}

#[tokio::test]
async fn signatures_are_required_and_replays_refused() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({"type": "call.started", "call_id": "sig-1", "seq": 1})).unwrap();
    let ts = console::clock::Clock::now(&*app.clock).timestamp();
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut r = app.client.post(app.url("/voice/events")).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // Unsigned.
    let r = post(vec![], body.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("missing X-Helpline-Timestamp"));
    // Signed with another key.
    let bad = console::webhook::json::sign("another-key-another-key-another-key", ts, &body);
    let r = post(vec![("x-helpline-timestamp", ts.to_string()), ("x-helpline-signature", bad)], body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A correctly signed request replayed ten minutes later.
    let old = ts - 600;
    let sig = console::webhook::json::sign(TEST_WEBHOOK_SECRET, old, &body);
    let r = post(vec![("x-helpline-timestamp", old.to_string()), ("x-helpline-signature", sig)], body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("away from the server clock"));
    // A body changed after signing.
    let sig = console::webhook::json::sign(TEST_WEBHOOK_SECRET, ts, &body);
    let forged = serde_json::to_vec(&json!({"type": "call.started", "call_id": "sig-2", "seq": 1})).unwrap();
    let r = post(vec![("x-helpline-timestamp", ts.to_string()), ("x-helpline-signature", sig)], forged).await.unwrap();
    assert_eq!(r.status(), 403);

    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0, "nothing a refused request said reached the engine");

    // And the properly signed one is accepted.
    let (status, _) = app.voice_event(&json!({"type": "call.started", "call_id": "sig-1", "seq": 1})).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn retries_get_the_same_answer_and_the_call_advances_once() {
    let app = spawn_app().await;
    let start = json!({"type": "call.started", "call_id": "dup-1", "seq": 1, "from": "+39 333 000 0001"});
    let (_, first) = app.voice_event(&start).await;
    let (status, again) = app.voice_event(&start).await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
    let digits = json!({"type": "digits", "call_id": "dup-1", "seq": 2, "digits": "1"});
    let (_, first) = app.voice_event(&digits).await;
    let before = event_count(&app, "dup-1").await;
    let (status, again) = app.voice_event(&digits).await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
    assert_eq!(event_count(&app, "dup-1").await, before, "a retry does not advance the call");

    // The same sequence number with another event is a conflict.
    let (status, body) = app.voice_event(&json!({"type": "digits", "call_id": "dup-1", "seq": 2, "digits": "2"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("already answered"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let app = spawn_app().await;
    let (status, body) =
        app.voice_event(&json!({"type": "digits", "call_id": "nobody", "seq": 1, "digits": "1"})).await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("unknown call nobody"), "{body}");

    app.voice_event(&json!({"type": "call.started", "call_id": "bad-1", "seq": 1})).await;
    let (status, body) = app.voice_event(&json!({"type": "no_input", "call_id": "bad-1", "seq": 5})).await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains("expected seq 2, got 5"), "{body}");
    let (status, body) = app.voice_event(&json!({"type": "call.started", "call_id": "bad-1", "seq": 2})).await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains("already started"), "{body}");

    let (status, body) = app.voice_event(&json!({"type": "digits", "call_id": "bad-1", "seq": 2})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("missing field `digits`"), "{body}");
    let (status, body) =
        app.voice_event(&json!({"type": "digits", "call_id": "bad-1", "seq": 2, "digits": "12x"})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().starts_with("digits:"), "{body}");
    let (status, body) = app.voice_event(&json!({"type": "dance", "call_id": "bad-1", "seq": 2})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("unknown variant `dance`"), "{body}");
    let (status, body) = app.voice_event(&json!({"type": "no_input", "call_id": "has space", "seq": 2})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().starts_with("call_id:"), "{body}");

    // Wrong content type (signed, so it is the type that is refused).
    let r = app.post_signed("application/x-www-form-urlencoded", b"type=no_input".to_vec()).await;
    assert_eq!(r.status(), 415);
    // Malformed JSON.
    let r = app.post_signed("application/json", b"{\"type\": ".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().starts_with("invalid call event"));
    app.stop().await;
}

#[tokio::test]
async fn one_call_alternates_between_two_servers_on_one_database() {
    let db = fresh_database().await;
    let url = db.url.clone();
    let a = spawn_app_on(db).await;
    let b = spawn_app_on(TestDb { url, dir: tempfile::tempdir().unwrap() }).await;
    let mut call = Call { apps: vec![&a, &b], id: "two-nodes".into(), seq: 0 };
    call.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await; // a
    call.send(json!({"type": "digits", "digits": "1"})).await; // b
    call.send(json!({"type": "digits", "digits": "5"})).await; // a: minors
    call.send(json!({"type": "digits", "digits": "22100"})).await; // b
    let last = call.send(json!({"type": "digits", "digits": "2"})).await; // a
    assert_eq!(action(&last, "enqueue")["queue"], "it.minori");
    let (language, area, town, outcome, _) = call_row(&b, "two-nodes").await;
    assert_eq!(
        (language.as_deref(), area.as_deref(), town.as_deref(), outcome.as_deref()),
        (Some("it"), Some("minori"), Some("Como"), Some("queued"))
    );
    // Both nodes agree on the caller's hash: they share the server key (through the database on
    // SQLite, as HELPLINE_SECRET on PostgreSQL).
    assert_eq!(a.state.secret, b.state.secret);
    a.stop().await;
    b.stop().await;
}

/// On PostgreSQL the calls are written by writers with connections of their own
/// (`calls::pg`); a URL their driver cannot read (an option only sqlx knows) leaves the calls to
/// the pool's writers, and a whole call still goes through either way.
#[tokio::test]
async fn postgres_calls_use_the_writers_own_connections_or_fall_back_to_the_pool() {
    let probe = fresh_database().await;
    if !probe.is_postgres() {
        return; // SQLite has its own writer thread (calls::sqlite), covered by every other test.
    }
    for (suffix, own_writers) in [("", true), ("?statement-cache-capacity=64", false)] {
        let db = fresh_database().await;
        let url = format!("{}{suffix}", db.url);
        let app = spawn_app_on(TestDb { url, dir: db.dir }).await;
        let id = format!("writer-{own_writers}");
        let mut call = Call { apps: vec![&app], id: id.clone(), seq: 0 };
        call.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
        call.send(json!({"type": "digits", "digits": "1"})).await;
        call.send(json!({"type": "digits", "digits": "5"})).await;
        call.send(json!({"type": "digits", "digits": "22100"})).await;
        let last = call.send(json!({"type": "digits", "digits": "2"})).await;
        assert_eq!(action(&last, "enqueue")["queue"], "it.minori");
        let (language, area, town, outcome, _) = call_row(&app, &id).await;
        assert_eq!(
            (language.as_deref(), area.as_deref(), town.as_deref(), outcome.as_deref()),
            (Some("it"), Some("minori"), Some("Como"), Some("queued"))
        );
        let (writers,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        )
        .bind(console::calls::POSTGRES_WRITER_NAME)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        assert_eq!(writers > 0, own_writers, "{suffix:?}: {writers} writer connections");
        if own_writers {
            // A writer whose connection is cut (PostgreSQL restarted, a proxy dropped it) fails at
            // most the batch it was running and connects again: the carrier's retry goes through.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1",
            )
            .bind(console::calls::POSTGRES_WRITER_NAME)
            .execute(app.state.db.pool())
            .await
            .unwrap();
            let ended = json!({"type": "call.ended", "call_id": id, "seq": call.seq + 1});
            let (mut status, mut body) = app.voice_event(&ended).await;
            for _ in 0..3 {
                if status == 200 {
                    break;
                }
                (status, body) = app.voice_event(&ended).await;
            }
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["ended"], true, "{body}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_event_api() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let post = &doc["paths"]["/voice/events"]["post"];
    for status in ["200", "400", "403", "404", "409", "415"] {
        assert!(post["responses"][status].is_object(), "response {status} documented: {post}");
    }
    let params: Vec<&str> =
        post["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(params.contains(&"X-Helpline-Signature") && params.contains(&"X-Helpline-Timestamp"), "{params:?}");
    let request = doc["components"]["schemas"]["EventRequest"].to_string();
    for event in ["call.started", "digits", "no_input", "prompt.finished", "transfer.failed", "call.ended"] {
        assert!(request.contains(event), "{event} documented: {request}");
    }
    let actions = doc["components"]["schemas"]["CarrierAction"].to_string();
    for action in ["play", "say", "gather", "enqueue", "transfer", "hangup"] {
        assert!(actions.contains(&format!("\"{action}\"")), "{action} documented: {actions}");
    }
    assert!(doc["components"]["schemas"]["EventResponse"]["example"].is_object(), "examples are included");
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_server_continues_a_call_where_it_was() {
    let app = spawn_app().await;
    let mut call = Call::new(&app, "restart-1");
    call.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    call.send(json!({"type": "digits", "digits": "1"})).await;
    let seq = call.seq;
    let db = app.stop().await;

    let app = spawn_app_on(db).await;
    let mut call = Call { apps: vec![&app], id: "restart-1".into(), seq };
    let a = call.send(json!({"type": "digits", "digits": "6"})).await;
    assert_eq!(played(&a), ["cap-ask"], "the new process picked up the call in the area menu: {a}");
    let (_, area, _, _, _) = call_row(&app, "restart-1").await;
    assert_eq!(area.as_deref(), Some("mediazione"));
    app.stop().await;
}

/// What the ACD does when an operator accepts: an event raised by the server, not the carrier.
pub async fn assign_operator(app: &TestApp, call_id: &str, operator: &str, target: &str) {
    let handled = app
        .state
        .calls
        .handle(console::calls::CallRequest {
            call_id: ivr::domain::CallId::parse(call_id).unwrap(),
            event: ivr::engine::Event::OperatorAssigned { operator: operator.into(), target: target.into() },
            now: console::clock::Clock::now(&*app.clock),
            key: None,
            carrier_seq: None,
            origin: console::calls::Origin::Server,
            sealed_number: None,
            reason: None,
        })
        .await
        .unwrap();
    assert!(handled.answer.actions.is_empty(), "server-raised actions wait for the carrier");
}

#[tokio::test]
async fn an_assigned_operator_is_dialled_and_a_failed_transfer_goes_back_to_the_queue() {
    let app = spawn_app().await;
    let mut call = Call::new(&app, "transfer-1");
    call.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    let a = call.send(json!({"type": "digits", "digits": "0"})).await;
    let first_priority = action(&a, "enqueue")["priority"].as_i64().unwrap();

    assign_operator(&app, "transfer-1", "giulia", "sip:giulia@pbx.example.org").await;
    // The carrier learns it with the answer to its next request (the hold interval's no_input).
    let a = call.send(json!({"type": "no_input"})).await;
    let transfer = action(&a, "transfer");
    assert_eq!(transfer["to"], "sip:giulia@pbx.example.org");
    assert_eq!(transfer["operator"], "giulia");

    // Busy: back in the queue, ahead of where it was, never a dropped call.
    let a = call.send(json!({"type": "transfer.failed", "reason": "busy"})).await;
    let again = action(&a, "enqueue");
    assert!(again["priority"].as_i64().unwrap() > first_priority, "{a}");
    assert_eq!(a["ended"], false);
    let (status,): (String,) = sqlx::query_as("SELECT status FROM queue_entries WHERE call_id = 'transfer-1'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "waiting");
    app.stop().await;
}

#[tokio::test]
async fn self_service_reads_back_the_nearest_services_of_the_directory() {
    let app = spawn_app().await;
    let (_, data) =
        console::directory::import::read_path(&crate::helpers::repo_path("tests/fixtures/directory/flat_good.csv"))
            .expect("the fixture imports");
    app.state.directory.replace(&data).await.unwrap();

    let mut call = Call::new(&app, "self-1");
    call.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    call.send(json!({"type": "digits", "digits": "1"})).await; // Italian
    call.send(json!({"type": "digits", "digits": "3"})).await; // housing
    call.send(json!({"type": "digits", "digits": "10121"})).await; // Torino
    let a = call.send(json!({"type": "digits", "digits": "1"})).await; // nearby services
    let said: Vec<String> =
        a["actions"].as_array().unwrap().iter().filter_map(|x| x["text"].as_str().map(str::to_owned)).collect();
    let item = said.iter().find(|t| t.contains("Sportello Casa Torino")).unwrap_or_else(|| panic!("read back: {a}"));
    assert!(item.contains("Torino"), "{item}");
    assert!(item.contains("0 1 1 4 4 2 1 1 1 1"), "the phone is read digit by digit: {item}");
    // The street address of the directory, in the caller's language, before the phone number.
    let (street, phone) = (item.find("in Via Roma 1, a Torino"), item.find("Telefono"));
    assert!(street.is_some_and(|s| phone.is_some_and(|p| s < p)), "the address before the phone: {item}");
    // Only the housing service of the directory is read (the others are health, mediation).
    assert!(!said.iter().any(|t| t.contains("Consultorio")), "{said:?}");
    assert!(played(&a).contains(&"services-options".to_owned()), "{a}");

    // 9: no more services; 1: hear them again; 2: an operator.
    let a = call.send(json!({"type": "digits", "digits": "9"})).await;
    assert!(played(&a).contains(&"services-no-more".to_owned()), "{a}");
    let a = call.send(json!({"type": "digits", "digits": "1"})).await;
    assert!(a.to_string().contains("Sportello Casa Torino"), "{a}");
    let a = call.send(json!({"type": "call.ended"})).await;
    assert_eq!(a["ended"], true);
    let (_, area, town, outcome, _) = call_row(&app, "self-1").await;
    assert_eq!(
        (area.as_deref(), town.as_deref(), outcome.as_deref()),
        (Some("casa"), Some("Torino"), Some("self_service"))
    );
    app.stop().await;
}

/// While a write through the pool holds a lock turn (the console's ACD, an operator's note), the
/// SQLite calls' writer starts no batch (for at most `GIVE_WAY_FOR`); then the call goes on.
#[tokio::test]
async fn the_calls_writer_gives_way_to_a_lock_turn() {
    use console::db::{turns::GIVE_WAY_FOR, Backend};
    let app = spawn_app().await;
    let db = app.state.db.clone();
    let turn = db.lock_turn().await;
    let started = std::time::Instant::now();
    let (status, answer) = app
        .voice_event(
            &json!({"type": "call.started", "call_id": "turn-1", "seq": 1, "from": "+39 333 123 4512", "to": "803001"}),
        )
        .await;
    let waited = started.elapsed();
    drop(turn);
    assert_eq!(status, 200, "answered while the turn is still held: {answer}");
    if db.backend() == Backend::Sqlite {
        assert!(waited >= GIVE_WAY_FOR, "the batch waited for the turn: answered after {waited:?}");
    }
    // With the turn gone, the next event is not held back.
    let mut call = Call { apps: vec![&app], id: "turn-1".into(), seq: 1 };
    let a = call.send(json!({"type": "digits", "digits": "1"})).await;
    assert_eq!(played(&a), ["welcome", "recording-notice", "area-menu"], "{a}");
    app.stop().await;
}

/// A carrier that goes quiet (it never sends the end) does not leave the call in the menu or the
/// queue for ever: after ten minutes without an event the server ends it as a hang-up; a call an
/// operator took is left alone until twelve hours have passed.
#[tokio::test]
async fn calls_whose_carrier_went_quiet_are_ended_by_the_server() {
    use console::calls::quiet::end_quiet_calls;
    let app = spawn_app().await;
    let mut menu = Call::new(&app, "quiet-menu");
    menu.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    let mut queued = Call::new(&app, "quiet-queue");
    queued.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    queued.send(json!({"type": "digits", "digits": "0"})).await;
    let mut talking = Call::new(&app, "quiet-operator");
    talking.send(json!({"type": "call.started", "from": "+39 333 123 4512"})).await;
    talking.send(json!({"type": "digits", "digits": "0"})).await;
    assign_operator(&app, "quiet-operator", "giulia", "sip:giulia@pbx.example.org").await;
    talking.send(json!({"type": "no_input"})).await;
    // What the console's accept leaves for a webhook call the operator took.
    let pool = app.state.db.pool();
    let now_ms = console::clock::Clock::now(&*app.clock).timestamp_millis();
    sqlx::query("UPDATE queue_entries SET status = 'answered', updated_at = $1 WHERE call_id = 'quiet-operator'")
        .bind(now_ms)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE calls SET answered_at = $1 WHERE call_id = 'quiet-operator'")
        .bind(now_ms)
        .execute(pool)
        .await
        .unwrap();

    let at = |minutes: i64| console::clock::Clock::now(&*app.clock) + chrono::Duration::minutes(minutes);
    let db = &app.state.db;
    assert!(end_quiet_calls(db, &app.state.calls, at(9)).await.unwrap().is_empty(), "nine minutes is not quiet yet");
    let mut ended = end_quiet_calls(db, &app.state.calls, at(11)).await.unwrap();
    ended.sort();
    assert_eq!(ended, ["quiet-menu", "quiet-queue"]);
    assert_eq!(call_row(&app, "quiet-menu").await.3.as_deref(), Some("hung_up_in_menu"));
    assert_eq!(call_row(&app, "quiet-queue").await.3.as_deref(), Some("hung_up_in_queue"));
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM queue_entries WHERE call_id = 'quiet-queue'").fetch_one(pool).await.unwrap();
    assert_eq!(status, "abandoned", "it no longer waits for an operator");
    let open: Vec<(String,)> =
        sqlx::query_as("SELECT call_id FROM calls WHERE ended_at IS NULL").fetch_all(pool).await.unwrap();
    assert_eq!(open, [("quiet-operator".to_owned(),)]);
    assert!(end_quiet_calls(db, &app.state.calls, at(11)).await.unwrap().is_empty(), "an ended call is ended once");

    // The supervisors' timeline tells the server's hang-up from the carrier's events.
    let (_, sup) = crate::supervisor::signed_in(&app, "sara", console::db::users::Role::Supervisor).await;
    let call: Value = sup.get(app.url("/api/calls/quiet-menu")).send().await.unwrap().json().await.unwrap();
    let steps: Vec<(&str, Option<&str>)> = call["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "step")
        .map(|e| (e["event_kind"].as_str().unwrap(), e["raised_by"].as_str()))
        .collect();
    assert_eq!(steps, [("call_started", None), ("hung_up", Some("server"))], "{call}");

    // The carrier of the menu call speaks up after all: the call is over.
    let a = menu.send(json!({"type": "no_input"})).await;
    assert_eq!(a["ended"], true, "{a}");
    assert_eq!(end_quiet_calls(db, &app.state.calls, at(12 * 60 + 1)).await.unwrap(), ["quiet-operator"]);
    app.stop().await;
}
