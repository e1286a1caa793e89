//! Privacy that survives a copy of the database: a caller's number reaches no table in any form
//! that can be turned back into it (the SQLite file and its WAL read as bytes; every PostgreSQL
//! table dumped as text), PostgreSQL deployments must bring a server key from outside the
//! database, and what people do with personal data and accounts is audited.

use crate::console_client::{self as cc, until, ClientMessage, ServerMessage};
use crate::helpers::{helpline, run_helpline, spawn_app, TestApp, TEST_SERVER_SECRET};
use console::db::users::Role;
use ivr::domain::{Language, PhoneNumber};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A caller's number, and what must never be stored of it: its digits.
const NUMBER: &str = "+393331234567";
const DIGITS: &str = "3331234567";

/// The fingerprint the server stored before it was keyed: an unkeyed SHA-256 over length-prefixed
/// parts, hex.
fn unkeyed_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Posts a TwiML request as `app.twiml` does, and returns the exact body it sent too.
async fn twiml_post(app: &TestApp, url: &str, params: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish().into_bytes();
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = console::webhook::signature::twilio_signature(crate::helpers::TEST_TWILIO_TOKEN, url, &owned);
    let r = app
        .client
        .post(url)
        .header("x-twilio-signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap(), body)
}

/// Everything the database holds, as text: for SQLite the bytes of the file and of its WAL after
/// a checkpoint (so free space and old page versions are searched too); for PostgreSQL every
/// table's rows cast to text.
pub(crate) async fn database_contents(app: &TestApp) -> String {
    let pool = app.state.db.pool();
    if app.db.is_postgres() {
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(tables.iter().any(|(t,)| t == "call_events"), "{tables:?}");
        let mut out = String::new();
        for (table,) in tables {
            let rows: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT t::text FROM \"{table}\" t")).fetch_all(pool).await.unwrap();
            for (row,) in rows {
                out.push_str(&table);
                out.push_str(&row);
                out.push('\n');
            }
        }
        out
    } else {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.unwrap();
        let file = app.state.db.sqlite_file().expect("a SQLite file").to_owned();
        let mut bytes = std::fs::read(&file).unwrap();
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        bytes.extend(std::fs::read(&wal).unwrap_or_default());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A call from a known number through the JSON webhook and through TwiML, with retries: the
/// retries get the same answers (the keyed fingerprints still tell a retry from a different
/// request), and afterwards neither the number's digits nor an unkeyed hash of any request body
/// is anywhere in the database.
#[tokio::test]
async fn a_callers_number_is_nowhere_in_the_database_in_any_readable_form() {
    let app = spawn_app().await;
    let mut unkeyed: Vec<String> = Vec::new();

    // The JSON webhook: the call starts, a key, and a retry of each.
    let started = json!({"type": "call.started", "call_id": "priv-json", "seq": 1, "from": NUMBER, "to": "803001"});
    let digits = json!({"type": "digits", "call_id": "priv-json", "seq": 2, "digits": "1"});
    let mut answers = Vec::new();
    for event in [&started, &digits, &started, &digits] {
        let body = serde_json::to_vec(event).unwrap();
        unkeyed.push(sha256_hex(&body));
        let request: console::webhook::json::EventRequest = serde_json::from_value(event.clone()).unwrap();
        unkeyed.push(unkeyed_digest(&[&serde_json::to_vec(&request).unwrap()]));
        let (status, answer) = app.voice_event(event).await;
        assert_eq!(status, 200, "{event} → {answer}");
        answers.push(answer);
    }
    assert_eq!((&answers[2], &answers[3]), (&answers[0], &answers[1]), "a retry gets the same answer");
    // The same sequence number from another caller is another request, not a retry.
    let other = json!({"type": "call.started", "call_id": "priv-json", "seq": 1, "from": "+393339999999"});
    assert_eq!(app.voice_event(&other).await.0, 409);

    // TwiML: the call starts (Twilio sends the number as From and Caller), a retry, a key.
    let url = app.url("/twiml/voice");
    let start: Vec<(&str, &str)> = vec![
        ("AccountSid", "AC0000"),
        ("CallSid", "CApriv0001"),
        ("CallStatus", "ringing"),
        ("Called", "+39803001"),
        ("Caller", NUMBER),
        ("From", NUMBER),
        ("To", "+39803001"),
    ];
    let (status, first, body) = twiml_post(&app, &url, &start).await;
    assert_eq!(status, 200, "{first}");
    let sorted: Vec<&[u8]> = start.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]).collect();
    unkeyed.extend([sha256_hex(&body), unkeyed_digest(&sorted)]);
    let (_, again, _) = twiml_post(&app, &url, &start).await;
    assert_eq!(again, first, "a TwiML retry gets the same document");
    let action = roxmltree::Document::parse(&first)
        .unwrap()
        .descendants()
        .find(|n| n.has_tag_name("Gather"))
        .and_then(|n| n.attribute("action"))
        .expect("the first document gathers a key")
        .to_owned();
    let gather: Vec<(&str, &str)> = start
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CallStatus")
        .chain([("CallStatus", "in-progress"), ("Digits", "1")])
        .collect();
    let (status, doc, body) = twiml_post(&app, &action, &gather).await;
    assert_eq!(status, 200, "{doc}");
    unkeyed.push(sha256_hex(&body));

    let contents = database_contents(&app).await;
    // The search finds what is there: the calls, their keyed hash and their masked number.
    let hash = PhoneNumber::parse(NUMBER).unwrap().hash(&app.state.secret);
    assert!(contents.contains("priv-json") && contents.contains("CApriv0001"), "the dump holds the calls");
    assert!(contents.contains(hash.as_str()), "the dump holds the keyed hash of the number");
    assert!(contents.contains("+39 3** *** **67"), "the dump holds the masked number");
    assert!(!contents.contains(DIGITS), "the caller's digits are in the database");
    for h in &unkeyed {
        assert!(!contents.contains(h.as_str()), "an unkeyed hash of a request ({h}) is in the database");
    }
    app.stop().await;
}

/// A fingerprint erased by migration 0011 (an unkeyed hash written before the upgrade) cannot be
/// compared: the carrier's retry of that request still gets its stored answer.
#[tokio::test]
async fn migration_0011_erases_the_unkeyed_fingerprints_and_their_retries_still_replay() {
    use console::db::Db;
    let db = crate::helpers::fresh_database().await;
    let conn = Db::connect(&db.url).await.unwrap();
    let folder = if db.is_postgres() { "postgres" } else { "sqlite" };
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).join(folder);
    let mut before = sqlx::migrate::Migrator::new(dir).await.unwrap();
    before.migrations = before.migrations.iter().filter(|m| m.version <= 10).cloned().collect::<Vec<_>>().into();
    before.run(conn.pool()).await.unwrap();
    let pool = conn.pool();
    let legacy = unkeyed_digest(&[br#"{"type":"call.started","call_id":"old-1","seq":1,"from":"+393331234567"}"#]);
    // A call still live at the server's clock (so no background job touches it).
    sqlx::query(
        "INSERT INTO calls (call_id, channel, started_at, state, updated_at, carrier_seq, last_seq) \
         VALUES ('old-1', 'webhook', $1, '{}', $1, 1, 2)",
    )
    .bind(crate::helpers::open_hours().timestamp_millis())
    .execute(pool)
    .await
    .unwrap();
    for (seq, key, fingerprint, answer) in [
        (1i64, Some("json:1"), Some(legacy.as_str()), Some(r#"{"step":1,"actions":[],"ended":false}"#)),
        (2, Some("twiml:status"), Some("ended"), Some(r#"{"step":2,"actions":[],"ended":true}"#)),
    ] {
        sqlx::query(
            "INSERT INTO call_events (call_id, seq, at, kind, data, request_key, fingerprint, answer) \
             VALUES ('old-1', $1, $1, 'digits', '{}', $2, $3, $4)",
        )
        .bind(seq)
        .bind(key)
        .bind(fingerprint)
        .bind(answer)
        .execute(pool)
        .await
        .unwrap();
    }
    conn.migrate().await.unwrap();
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT seq, fingerprint FROM call_events ORDER BY seq").fetch_all(pool).await.unwrap();
    assert_eq!(rows, vec![(1, Some("erased".into())), (2, Some("ended".into()))]);
    let err = sqlx::query("UPDATE call_events SET fingerprint = 'x'").execute(pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    conn.close().await;

    let app = crate::helpers::spawn_app_on(db).await;
    let retry = json!({"type": "call.started", "call_id": "old-1", "seq": 1, "from": NUMBER});
    let (status, answer) = app.voice_event(&retry).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["seq"].clone(), answer["ended"].clone()), (json!(1), json!(false)), "{answer}");
    app.stop().await;
}

/// `serve` (and `check-config`) on PostgreSQL without a server key stop at once, exit code 2,
/// naming the variable; before connecting, so no database is needed to see it.
#[tokio::test]
async fn postgres_without_a_server_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://helpline@127.0.0.1:1/helpline";
    for command in ["serve", "check-config"] {
        let (code, _, err) = run_helpline(helpline(dir.path()).arg(command).env("HELPLINE_DATABASE_URL", url), "");
        assert_eq!(code, 2, "{command}: {err}");
        assert!(err.contains("HELPLINE_SECRET") && err.contains("PostgreSQL"), "{command}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = run_helpline(
        helpline(dir.path()).arg("serve").env("HELPLINE_DATABASE_URL", url).env("HELPLINE_SECRET", "short"),
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HELPLINE_SECRET") && err.contains("at least 32"), "{err}");
    // With a key it goes on (and fails to connect, which is another error).
    let (code, _, err) = run_helpline(
        helpline(dir.path()).arg("serve").env("HELPLINE_DATABASE_URL", url).env("HELPLINE_SECRET", TEST_SERVER_SECRET),
        "",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

/// An audit row as stored: user id, user name, action, call id, detail.
type Row = (Option<i64>, String, String, Option<String>, String);

async fn audit_rows(app: &TestApp, action: &str) -> Vec<Row> {
    sqlx::query_as("SELECT user_id, user_name, action, call_id, detail FROM audit_log WHERE action = $1 ORDER BY id")
        .bind(action)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

fn detail(row: &Row) -> Value {
    serde_json::from_str(&row.4).unwrap_or_else(|e| panic!("{row:?}: {e}"))
}

/// Each act on personal data or on the accounts writes its audit row, with the right action and
/// actor: user creation, sign-ins (failed ones with the name given, never the password),
/// screen-pops (with how many earlier calls and notes they showed), note edits, callback claims.
#[tokio::test]
async fn sign_ins_screen_pops_notes_users_and_callbacks_are_audited() {
    let app = spawn_app().await;
    // Users: the first admin (at start) and two operators (by this test).
    let created = audit_rows(&app, "create_user").await;
    assert_eq!((created[0].0, created[0].1.as_str()), (None, "first start"), "{created:?}");
    assert_eq!(detail(&created[0])["name"], "admin");
    let olga = cc::add_user(&app, "olga", Role::Operator, &[Language::It], &[], false).await;
    let piero = cc::add_user(&app, "piero", Role::Operator, &[Language::It], &[], false).await;
    let created = audit_rows(&app, "create_user").await;
    assert_eq!(created.len(), 3);
    assert_eq!((created[1].1.as_str(), detail(&created[1])["name"].as_str()), ("test", Some("olga")));
    assert_eq!(detail(&created[1])["role"], "operator");

    // Sign-ins: a wrong password, a password typed into the name field, then the right one.
    let wrong = "not olga's password at all";
    let sign_in = |name: &str, password: &str| {
        app.client.post(app.url("/api/session")).json(&json!({"name": name, "password": password})).send()
    };
    assert_eq!(sign_in("olga", wrong).await.unwrap().status(), 401);
    assert_eq!(sign_in(cc::PASSWORD, "").await.unwrap().status(), 401);
    let failed = audit_rows(&app, "sign_in_failed").await;
    assert_eq!(failed.len(), 2);
    assert_eq!((failed[0].0, failed[0].1.as_str()), (None, "olga"), "a failed sign-in proves no user: {failed:?}");
    assert_eq!(detail(&failed[0])["addr"], "127.0.0.1");
    assert_eq!(failed[1].1, console::db::audit::UNKNOWN_NAME, "a name nobody has is not kept: {failed:?}");
    let mut ws = cc::operator_online(&app, "olga", true).await;
    let signed = audit_rows(&app, "sign_in").await;
    assert_eq!((signed[0].0, signed[0].1.as_str()), (Some(olga), "olga"));
    assert_eq!(detail(&signed[0])["addr"], "127.0.0.1");

    // A call offered to olga and taken: two screen-pops; she writes a note.
    let _first = cc::Call::to_queue(&app, "pop-1", NUMBER, &["0"]).await;
    let offer = until!(ws, ServerMessage::Offer(o) => o);
    ws.send(ClientMessage::Accept { offer_id: offer.offer_id, device: None }).await;
    until!(ws, ServerMessage::Call(c) if c.state == cc::CallState::Connected => ());
    let note = "chiede di una casa a Como";
    ws.send(ClientMessage::Note { r#ref: json!("n1"), call_id: "pop-1".into(), text: note.into() }).await;
    until!(ws, ServerMessage::Saved { .. } => ());
    let notes = audit_rows(&app, "edit_note").await;
    assert_eq!(notes.len(), 1);
    assert_eq!((notes[0].0, notes[0].1.as_str(), notes[0].3.as_deref()), (Some(olga), "olga", Some("pop-1")));
    assert_eq!(detail(&notes[0])["chars"], note.chars().count());
    // Her page reconnects while she is on the call: the pop is shown again.
    let session = cc::sign_in(&app, "olga").await;
    let mut again = cc::connect(app.addr, &session).await;
    again.hello(0).await;

    // The same caller again, offered to piero while olga is busy: the pop shows olga's note.
    let mut piero_ws = cc::operator_online(&app, "piero", true).await;
    let _second = cc::Call::to_queue(&app, "pop-2", NUMBER, &["0"]).await;
    let offer = until!(piero_ws, ServerMessage::Offer(o) => o);
    assert_eq!(offer.pop.as_ref().map(|p| p.previous.notes.len()), Some(1), "{offer:?}");
    let pops = audit_rows(&app, "screen_pop").await;
    let shown: Vec<(Option<i64>, &str, Option<&str>, String)> = pops
        .iter()
        .map(|r| (r.0, r.1.as_str(), r.3.as_deref(), detail(r)["shown"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (Some(olga), "olga", Some("pop-1"), "offer".to_owned()),
            (Some(olga), "olga", Some("pop-1"), "connected".to_owned()),
            (Some(olga), "olga", Some("pop-1"), "reconnected".to_owned()),
            (Some(piero), "piero", Some("pop-2"), "offer".to_owned()),
        ]
    );
    assert_eq!(
        (detail(&pops[3])["earlier_calls"].clone(), detail(&pops[3])["earlier_notes"].clone()),
        (json!(1), json!(1))
    );

    // A callback asked for out of hours (on Sunday: a new session), claimed by olga, then done.
    app.clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 29, 10, 0, 0).unwrap());
    let session = cc::sign_in(&app, "olga").await;
    let mut closed = cc::Call::new(&app, "cb-1");
    closed.send(json!({"type": "call.started", "from": "+39 02 1234 5678"})).await;
    closed.send(json!({"type": "digits", "digits": "1"})).await;
    closed.send(json!({"type": "digits", "digits": "1"})).await;
    closed.send(json!({"type": "recording"})).await;
    let (id,): (i64,) =
        sqlx::query_as("SELECT id FROM callbacks WHERE call_id = 'cb-1'").fetch_one(app.state.db.pool()).await.unwrap();
    for step in ["claim", "done"] {
        let r = app
            .client
            .post(app.url(&format!("/api/callbacks/{id}/{step}")))
            .header("cookie", &session.cookie)
            .header("x-csrf-token", &session.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{step}");
    }
    // piero cannot mark olga's callback done: refused, and nothing audited.
    let piero_session = cc::sign_in(&app, "piero").await;
    let r = app
        .client
        .post(app.url(&format!("/api/callbacks/{id}/claim")))
        .header("cookie", &piero_session.cookie)
        .header("x-csrf-token", &piero_session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    for (action, actor) in [("claim_callback", olga), ("callback_done", olga)] {
        let rows = audit_rows(&app, action).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!((rows[0].0, rows[0].3.as_deref()), (Some(actor), Some("cb-1")), "{action}");
        assert_eq!(detail(&rows[0])["callback"], id);
    }

    // No password, no note text, no number in the audit log.
    let all: Vec<(String, String)> =
        sqlx::query_as("SELECT user_name, detail FROM audit_log").fetch_all(app.state.db.pool()).await.unwrap();
    for (name, d) in &all {
        for secret in [wrong, cc::PASSWORD, note, DIGITS] {
            assert!(!name.contains(secret) && !d.contains(secret), "{secret:?} in the audit log: {name} {d}");
        }
    }
    // Admins read them through the API too.
    let admin_session = cc::first_admin(&app).await;
    let page: Value = app
        .client
        .get(app.url("/api/audit?limit=500"))
        .header("cookie", &admin_session.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: std::collections::BTreeSet<&str> =
        page["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["create_user", "sign_in", "sign_in_failed", "screen_pop", "edit_note", "claim_callback", "callback_done"]
    {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
    drop((ws, again, piero_ws));
    app.stop().await;
}

/// `helpline user add` audits the creation, by the command.
#[tokio::test]
async fn a_user_added_on_the_command_line_is_audited() {
    let db = crate::helpers::fresh_database().await;
    let mut cmd = helpline(db.dir.path());
    cmd.args(["user", "add", "--name", "amina", "--role", "supervisor", "--languages", "fr", "--password-stdin"])
        .env("HELPLINE_DATABASE_URL", &db.url);
    let (code, _, err) = run_helpline(&mut cmd, "a long enough password\n");
    assert_eq!(code, 0, "{err}");
    let conn = console::db::Db::connect(&db.url).await.unwrap();
    let rows: Vec<(Option<i64>, String, String)> =
        sqlx::query_as("SELECT user_id, user_name, detail FROM audit_log WHERE action = 'create_user'")
            .fetch_all(conn.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].1.as_str()), (None, "helpline user add"));
    let d: Value = serde_json::from_str(&rows[0].2).unwrap();
    assert_eq!(
        (d["name"].as_str(), d["role"].as_str(), d["languages"].as_str()),
        (Some("amina"), Some("supervisor"), Some("fr"))
    );
    assert!(!rows[0].2.contains("password"), "{}", rows[0].2);
}

/// A key given in the settings replaces one generated and stored earlier, which is deleted: a
/// dump must not carry a key that still unlocks the hashes made with it.
#[tokio::test]
async fn a_configured_server_key_deletes_the_one_stored_in_the_database() {
    use console::config::SecretString;
    use console::db::secrets::{server_secret, SecretSource};
    let db = crate::helpers::fresh_database().await;
    let conn = console::db::Db::connect(&db.url).await.unwrap();
    conn.migrate().await.unwrap();
    let now = crate::helpers::open_hours();
    let stored = || async {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM server_settings WHERE key = 'server_secret'")
            .fetch_one(conn.pool())
            .await
            .unwrap()
            .0
    };
    let (generated, source) = server_secret(&conn, &SecretString::default(), now).await.unwrap();
    assert_eq!((source, stored().await), (SecretSource::Generated, 1));
    let (configured, source) = server_secret(&conn, &SecretString::new(TEST_SERVER_SECRET), now).await.unwrap();
    assert_eq!((source, stored().await), (SecretSource::Settings, 0));
    assert_eq!(configured.expose(), TEST_SERVER_SECRET.as_bytes());
    assert_ne!(generated.expose(), configured.expose());
}
