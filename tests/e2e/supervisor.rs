//! The supervisors' views against the real server: a day of calls (some driven through the JSON
//! webhook and TwiML for real, the bulk inserted by a fixture builder) → the log's filters and
//! pages, timelines, KPIs against hand-computed figures, CSV parsed back, who sees what, the audit
//! log, retention, the wallboard.

use crate::helpers::{spawn_app, TestApp};
use chrono::{Duration, TimeZone, Utc};
use chrono_tz::Europe::Rome;
use console::clock::Clock;
use console::db::users::{add_user, NewUser, Password, Role, UserName};
use console::supervisor::retention::Policy;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashSet;

const PASSWORD: &str = "correct horse battery staple";

/// A user of the given role, and a client signed in as them.
pub async fn signed_in(app: &TestApp, name: &str, role: Role) -> (i64, reqwest::Client) {
    let user = add_user(
        &app.state.db,
        &NewUser {
            name: UserName::parse(name).unwrap(),
            role,
            languages: vec![ivr::domain::Language::It],
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
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r =
        client.post(app.url("/api/session")).json(&json!({"name": name, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    (user.id, client)
}

/// Rome local time on a day of November 2026, in epoch ms.
fn rome(day: u32, h: u32, m: u32, s: u32) -> i64 {
    Rome.with_ymd_and_hms(2026, 11, day, h, m, s).unwrap().timestamp_millis()
}

/// One call as the fixture builder writes it.
#[derive(Debug, Clone, Default)]
pub struct Fx {
    pub id: String,
    pub channel: &'static str,
    pub started: i64,
    pub ended: Option<i64>,
    pub language: Option<&'static str>,
    pub area: Option<&'static str>,
    pub town: Option<&'static str>,
    pub outcome: Option<&'static str>,
    pub queued: Option<i64>,
    pub answered: Option<i64>,
    pub abandoned: Option<i64>,
    pub operator: Option<i64>,
    pub disposition: Option<&'static str>,
}

impl Fx {
    fn new(
        id: &str,
        started: i64,
        ended: i64,
        outcome: &'static str,
        language: &'static str,
        area: Option<&'static str>,
    ) -> Fx {
        Fx {
            id: id.into(),
            channel: "sip",
            started,
            ended: Some(ended),
            language: Some(language),
            area,
            outcome: Some(outcome),
            ..Fx::default()
        }
    }
}

/// Writes calls straight into the tables the call runtime and the console write, a call and its
/// rows in one transaction as the call runtime writes them (the server settles ended calls' KPIs
/// in the background: it must not see a call without its queue entry).
pub async fn insert(app: &TestApp, calls: &[Fx]) {
    for c in calls {
        let mut tx = app.state.db.pool().begin().await.unwrap();
        sqlx::query(
            "INSERT INTO calls (call_id, channel, started_at, ended_at, caller_hash, caller_masked, language, language_guessed, \
             area, cap, town, outcome, state, updated_at, operator_id, answered_at, disposition) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, NULL, $9, $10, '{}', $3, $11, $12, $13)",
        )
        .bind(&c.id)
        .bind(c.channel)
        .bind(c.started)
        .bind(c.ended)
        .bind(format!("{:064}", c.started))
        .bind("+39 3** *** **12")
        .bind(c.language)
        .bind(c.area)
        .bind(c.town)
        .bind(c.outcome)
        .bind(c.operator)
        .bind(c.answered)
        .bind(c.disposition)
        .execute(&mut *tx)
        .await
        .unwrap();
        if let Some(q) = c.queued {
            let (status, upd) = match (c.answered, c.abandoned) {
                (Some(a), _) => ("answered", a),
                (None, Some(a)) => ("abandoned", a),
                _ => ("waiting", q),
            };
            sqlx::query(
                "INSERT INTO queue_entries (call_id, language, area, priority, entered_at, status, operator, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, NULL, $6)",
            )
            .bind(&c.id)
            .bind(c.language.unwrap_or("it"))
            .bind(c.area)
            .bind(q)
            .bind(status)
            .bind(upd)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ($1, 1, $2, 'call_started', $3)")
            .bind(&c.id)
            .bind(c.started)
            .bind(r#"{"event":"call_started","log":[],"actions":[{"play":{"prompt":"welcome","language":"it","pace":"normal"}}]}"#)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// The small day whose KPIs were computed by hand (the same calls as `kpi.rs`'s unit test), on
/// 2026-11-23.
pub fn hand_fixture() -> Vec<Fx> {
    let d = 23;
    let q = |mut f: Fx, queued: i64, answered: Option<i64>, abandoned: Option<i64>| {
        f.queued = Some(queued);
        f.answered = answered;
        f.abandoned = abandoned;
        f
    };
    vec![
        q(
            Fx::new("h1", rome(d, 10, 0, 0), rome(d, 10, 2, 40), "answered", "it", Some("casa")),
            rome(d, 10, 0, 30),
            Some(rome(d, 10, 0, 40)),
            None,
        ),
        q(
            Fx::new("h2", rome(d, 10, 5, 0), rome(d, 10, 7, 0), "answered", "it", Some("casa")),
            rome(d, 10, 5, 20),
            Some(rome(d, 10, 6, 0)),
            None,
        ),
        q(
            Fx::new("h3", rome(d, 10, 30, 0), rome(d, 10, 30, 13), "hung_up_in_queue", "fr", Some("lavoro")),
            rome(d, 10, 30, 10),
            None,
            Some(rome(d, 10, 30, 13)),
        ),
        q(
            Fx::new("h4", rome(d, 11, 10, 0), rome(d, 11, 11, 15), "hung_up_in_queue", "fr", Some("lavoro")),
            rome(d, 11, 10, 15),
            None,
            Some(rome(d, 11, 11, 15)),
        ),
        Fx::new("h5", rome(d, 11, 20, 0), rome(d, 11, 21, 30), "self_service", "en", Some("salute")),
        Fx::new("h6", rome(d, 11, 40, 0), rome(d, 11, 40, 8), "hung_up_in_menu", "it", None),
        Fx::new("h7", rome(d, 11, 50, 0), rome(d, 11, 50, 45), "callback", "es", Some("casa")),
        q(
            Fx::new("h8", rome(d, 11, 55, 0), rome(d, 11, 57, 5), "answered", "it", Some("casa")),
            rome(d, 11, 55, 5),
            Some(rome(d, 11, 55, 25)),
            None,
        ),
    ]
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap_or(f64::NAN) - b).abs() < 1e-9
}

#[tokio::test]
async fn kpis_match_the_hand_computed_figures() {
    let app = spawn_app().await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    insert(&app, &hand_fixture()).await;

    let k = get_json(&sup, &app.url("/api/kpis?from=2026-11-23&to=2026-11-23&group=hour")).await;
    let hours: Vec<(&str, i64)> = k["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), r["calls"].as_i64().unwrap()))
        .collect();
    assert_eq!(hours, [("10", 3), ("11", 5)], "{k}");
    let t = &k["total"];
    assert_eq!((t["calls"].as_i64(), t["queued"].as_i64(), t["answered"].as_i64()), (Some(8), Some(5), Some(3)));
    assert_eq!(
        (t["answered_in_sl"].as_i64(), t["abandoned"].as_i64(), t["abandoned_short"].as_i64()),
        (Some(2), Some(2), Some(1))
    );
    // SL = 2 within 20 s ÷ (3 answered + 1 abandoned after 5 s); ASA = (10 + 40 + 20) / 3 s.
    assert!(close(&t["service_level"], 0.5), "{t}");
    assert!(close(&t["asa_secs"], 70.0 / 3.0), "{t}");
    assert!(close(&t["abandonment_rate"], 0.4), "{t}");
    assert!(close(&t["self_service_rate"], 0.125), "{t}");
    assert!(close(&t["max_wait_secs"], 60.0), "{t}");
    assert!(k["definitions"]["service_level"].as_str().unwrap().contains("20 s"));

    let k = get_json(&sup, &app.url("/api/kpis?from=2026-11-23&to=2026-11-23&group=language")).await;
    let fr = k["rows"].as_array().unwrap().iter().find(|r| r["key"] == "fr").unwrap();
    assert!(
        close(&fr["service_level"], 0.0) && fr["asa_secs"].is_null() && close(&fr["abandonment_rate"], 1.0),
        "{fr}"
    );
    let k = get_json(&sup, &app.url("/api/kpis?from=2026-11-23&to=2026-11-23&group=area")).await;
    let areas: Vec<(&str, i64)> = k["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), r["calls"].as_i64().unwrap()))
        .collect();
    assert_eq!(areas, [("casa", 4), ("lavoro", 2), ("none", 1), ("salute", 1)]);

    // The KPI CSV parses back to the same figures.
    let csv_text = sup
        .get(app.url("/api/kpis.csv?from=2026-11-23&to=2026-11-23&group=day"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "one day and the total: {csv_text}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("group")], "2026-11-23");
    assert_eq!(&rows[1][col("group")], "total");
    assert_eq!(&rows[1][col("calls")], "8");
    assert_eq!(&rows[1][col("service_level")], "0.5000");
    assert_eq!(&rows[1][col("asa_secs")], "23.3");

    let r = sup.get(app.url("/api/kpis?group=week")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("group"));
    app.stop().await;
}

/// A day of generated calls: every outcome, channel, language; spread over 2026-11-23.
fn generated_day(operators: &[i64]) -> Vec<Fx> {
    let outcomes =
        ["self_service", "answered", "hung_up_in_queue", "hung_up_in_menu", "callback", "out_of_hours", "answered"];
    let languages = ["it", "en", "fr", "es", "it"];
    let areas = [Some("casa"), Some("lavoro"), Some("salute"), None, Some("lingua"), Some("minori")];
    let towns = [Some("Como"), Some("Roma"), None, Some("Bari")];
    let channels = ["sip", "webhook", "twiml"];
    (0..140)
        .map(|i: usize| {
            let start = rome(23, 0, 0, 0) + i as i64 * 600_000 + 7_000;
            let outcome = outcomes[i % outcomes.len()];
            let mut f = Fx::new(
                &format!("g{i:03}"),
                start,
                start + 60_000,
                outcome,
                languages[i % languages.len()],
                areas[i % areas.len()],
            );
            f.channel = channels[i % channels.len()];
            f.town = towns[i % towns.len()];
            match outcome {
                "answered" => {
                    f.queued = Some(start + 20_000);
                    f.answered = Some(start + 20_000 + (i as i64 % 4) * 10_000);
                    f.ended = Some(start + 200_000);
                    f.operator = Some(operators[i % operators.len()]);
                    f.disposition = Some(["informato", "inviato_servizio"][i % 2]);
                }
                "hung_up_in_queue" => {
                    f.queued = Some(start + 20_000);
                    f.abandoned = Some(start + 50_000);
                }
                _ => {}
            }
            f
        })
        .collect()
}

/// Pages through `/api/calls?<query>` and returns every row.
async fn all_pages(client: &reqwest::Client, app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after = String::new();
    loop {
        let url = app.url(&format!("/api/calls?{query}&limit={limit}{after}"));
        let page = get_json(client, &url).await;
        let calls = page["calls"].as_array().unwrap();
        assert!(calls.len() <= limit);
        rows.extend(calls.iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
        assert_eq!(calls.len(), limit, "only the last page is short");
    }
    rows
}

/// A JSON-webhook call that reaches the queue and hangs up there.
async fn webhook_call(app: &TestApp, id: &str) {
    let mut seq = 0;
    for ev in [
        json!({"type": "call.started", "from": "+39 333 123 4512", "to": "803001"}),
        json!({"type": "digits", "digits": "1"}),
        json!({"type": "digits", "digits": "3"}),
        json!({"type": "digits", "digits": "22100"}),
        json!({"type": "digits", "digits": "2"}),
        json!({"type": "call.ended"}),
    ] {
        seq += 1;
        let mut ev = ev;
        ev["call_id"] = json!(id);
        ev["seq"] = json!(seq);
        app.clock.advance(Duration::seconds(4));
        let (status, body) = app.voice_event(&ev).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_day_of_calls_through_the_log_filters_pages_timelines_csv_and_audit() {
    let app = spawn_app().await;
    let (anna, _) = signed_in(&app, "anna", Role::Operator).await;
    let (bruno, _) = signed_in(&app, "bruno", Role::Operator).await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let (_, admin) = signed_in(&app, "amministra", Role::Admin).await;
    let day = generated_day(&[anna, bruno]);
    insert(&app, &day).await;
    // Two calls for real, on 2026-11-24: the JSON webhook (queue, hang-up) and TwiML (menu hang-up).
    webhook_call(&app, "json-real-1").await;
    let sid = "CAsupervisorsTwiml";
    let (s, body) = app
        .twiml(
            "/twiml/voice",
            &[
                ("CallSid", sid),
                ("AccountSid", "AC0"),
                ("From", "+393331234512"),
                ("To", "+39803001"),
                ("CallStatus", "in-progress"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    app.clock.advance(Duration::seconds(3));
    let (s, body) = app.twiml("/twiml/status", &[("CallSid", sid), ("CallStatus", "completed")]).await;
    assert_eq!(s, 200, "{body}");

    // The whole log, paged by keyset: every call once, newest first.
    let all = all_pages(&sup, &app, "from=2026-11-23&to=2026-11-24", 25).await;
    assert_eq!(all.len(), day.len() + 2);
    let ids: HashSet<&str> = all.iter().map(|c| c["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "no call twice across pages");
    let starts: Vec<&str> = all.iter().map(|c| c["started_at"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Filters, each checked against the generator's own list.
    for (query, keep) in [
        ("language=fr", Box::new(|f: &Fx| f.language == Some("fr")) as Box<dyn Fn(&Fx) -> bool>),
        ("area=casa", Box::new(|f: &Fx| f.area == Some("casa"))),
        ("outcome=hung_up_in_queue", Box::new(|f: &Fx| f.outcome == Some("hung_up_in_queue"))),
        ("town=Como&channel=webhook", Box::new(|f: &Fx| f.town == Some("Como") && f.channel == "webhook")),
        ("operator=bruno", Box::new(move |f: &Fx| f.operator == Some(bruno))),
        (
            "disposition=informato&language=it",
            Box::new(|f: &Fx| f.disposition == Some("informato") && f.language == Some("it")),
        ),
    ] {
        let got = all_pages(&sup, &app, &format!("from=2026-11-23&to=2026-11-23&{query}"), 7).await;
        let mut got_ids: Vec<String> = got.iter().map(|c| c["call_id"].as_str().unwrap().to_owned()).collect();
        let mut want: Vec<String> = day.iter().filter(|f| keep(f)).map(|f| f.id.clone()).collect();
        got_ids.sort();
        want.sort();
        assert!(!want.is_empty(), "{query} selects something");
        assert_eq!(got_ids, want, "{query}");
    }
    // The real calls carry what the runtime recorded.
    let real = all_pages(&sup, &app, "from=2026-11-24&channel=webhook", 10).await;
    assert_eq!(real.len(), 1);
    let r = &real[0];
    assert_eq!(
        (r["language"].as_str(), r["area"].as_str(), r["town"].as_str()),
        (Some("it"), Some("casa"), Some("Como")),
        "{r}"
    );
    assert_eq!(r["cap"], "22100", "the CAP the caller keyed in: {r}");
    assert_eq!(r["outcome"], "hung_up_in_queue");
    assert_eq!(r["masked_number"], "+39 3** *** **12");
    assert_eq!((r["menu_secs"].as_i64(), r["queue_secs"].as_i64()), (Some(16), Some(4)), "{r}");
    assert!(!r.to_string().contains("3331234512"));
    let twiml = all_pages(&sup, &app, "from=2026-11-24&channel=twiml", 10).await;
    assert_eq!(twiml.len(), 1);
    assert_eq!(twiml[0]["outcome"], "hung_up_in_menu");

    // Bad filters are 400s naming the parameter.
    for (q, word) in
        [("language=xx", "language"), ("limit=0", "limit"), ("after=%21%21", "after"), ("from=ieri", "from")]
    {
        let r = sup.get(app.url(&format!("/api/calls?{q}"))).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert!(r.text().await.unwrap().contains(word), "{q}");
    }

    // The timeline of the real webhook call: its digits and prompts, in order.
    let t = get_json(&sup, &app.url("/api/calls/json-real-1")).await;
    let steps: Vec<&Value> = t["timeline"].as_array().unwrap().iter().filter(|e| e["type"] == "step").collect();
    let digits: Vec<&str> = steps.iter().filter_map(|s| s["digits"].as_str()).collect();
    assert_eq!(digits, ["1", "3", "22100", "2"], "{t}");
    let prompts: Vec<&str> =
        steps.iter().flat_map(|s| s["prompts"].as_array().unwrap()).filter_map(|p| p.as_str()).collect();
    for p in ["welcome", "area-menu", "cap-ask", "service-choice"] {
        assert!(prompts.contains(&p), "{p} in {prompts:?}");
    }
    let offsets: Vec<i64> =
        t["timeline"].as_array().unwrap().iter().map(|e| e["offset_ms"].as_i64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]) && offsets[0] == 0, "{offsets:?}");
    assert_eq!(steps.last().unwrap()["event_kind"], "hung_up");

    // A generated answered call with offers (one missed), a note and a referral.
    let answered = day.iter().find(|f| f.outcome == Some("answered") && f.operator == Some(anna)).unwrap();
    let pool = app.state.db.pool();
    for (op, at, status) in
        [(bruno, answered.queued.unwrap() + 1000, "expired"), (anna, answered.queued.unwrap() + 2000, "accepted")]
    {
        sqlx::query("INSERT INTO offers (call_id, operator_id, offered_at, expires_at, status, match_kind, resolved_at) VALUES ($1, $2, $3, $4, $5, 'full', $4)")
            .bind(&answered.id).bind(op).bind(at).bind(at + 500).bind(status).execute(pool).await.unwrap();
    }
    let note = "Ha bisogno di un avvocato, \"urgente\"\nseconda riga, con virgola";
    sqlx::query("INSERT INTO call_notes (call_id, operator_id, text, updated_at) VALUES ($1, $2, $3, $4)")
        .bind(&answered.id)
        .bind(anna)
        .bind(note)
        .bind(answered.ended.unwrap() - 1000)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO referrals (call_id, service_id, service_name, operator_id, at) VALUES ($1, 's-1', 'Sportello casa, Como', $2, $3)")
        .bind(&answered.id).bind(anna).bind(answered.ended.unwrap() - 2000).execute(pool).await.unwrap();
    let t = get_json(&sup, &app.url(&format!("/api/calls/{}", answered.id))).await;
    let kinds: Vec<&str> = t["timeline"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["step", "offer", "offer", "referral", "note"], "{t}");
    let offers: Vec<(&str, bool)> = t["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "offer")
        .map(|e| (e["operator"].as_str().unwrap(), e["missed"].as_bool().unwrap()))
        .collect();
    assert_eq!(offers, [("bruno", true), ("anna", false)], "who missed it");
    assert_eq!(t["call"]["operator"], "anna");
    assert_eq!(t["call"]["talk_secs"].as_i64(), Some((answered.ended.unwrap() - answered.answered.unwrap()) / 1000));

    // The CSV of a filter parses back to the JSON rows, quoting and all.
    let csv_text = sup
        .get(app.url("/api/calls.csv?from=2026-11-23&to=2026-11-23&operator=anna"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap_or_else(|| panic!("{n}"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let json_rows = all_pages(&sup, &app, "from=2026-11-23&to=2026-11-23&operator=anna", 50).await;
    assert_eq!(records.len(), json_rows.len());
    for (rec, row) in records.iter().zip(&json_rows) {
        assert_eq!(&rec[col("call_id")], row["call_id"].as_str().unwrap());
        assert_eq!(&rec[col("outcome")], row["outcome"].as_str().unwrap());
        assert_eq!(&rec[col("queue_secs")], row["queue_secs"].to_string());
    }
    let rec = records.iter().find(|r| &r[col("call_id")] == answered.id.as_str()).unwrap();
    assert_eq!(&rec[col("notes")], note);
    assert_eq!(&rec[col("referrals")], "Sportello casa, Como");

    // The audit log: who opened which call, who exported — admins only.
    let audit = get_json(&admin, &app.url("/api/audit")).await;
    let entries: Vec<(&str, &str, Option<&str>)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["user"].as_str().unwrap(), e["action"].as_str().unwrap(), e["call_id"].as_str()))
        .collect();
    assert_eq!(entries[0], ("sara", "export_calls", None));
    assert_eq!(entries[1], ("sara", "open_call", Some(answered.id.as_str())));
    assert_eq!(entries[2], ("sara", "open_call", Some("json-real-1")));
    assert_eq!(sup.get(app.url("/api/audit")).send().await.unwrap().status(), 403);
    let r = sqlx::query("UPDATE audit_log SET user_name = 'nobody'").execute(pool).await;
    assert!(r.is_err(), "the audit log is append-only");
    app.stop().await;
}

#[tokio::test]
async fn operators_see_their_own_calls_and_supervisors_all() {
    let app = spawn_app().await;
    let (anna, anna_c) = signed_in(&app, "anna", Role::Operator).await;
    let (bruno, _) = signed_in(&app, "bruno", Role::Operator).await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let day = generated_day(&[anna, bruno]);
    insert(&app, &day).await;
    let mine: HashSet<String> = day.iter().filter(|f| f.operator == Some(anna)).map(|f| f.id.clone()).collect();
    assert!(!mine.is_empty());

    let seen = all_pages(&anna_c, &app, "from=2026-11-23", 10).await;
    let seen_ids: HashSet<String> = seen.iter().map(|c| c["call_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen_ids, mine, "an operator sees exactly their own calls");
    // Even when asking for someone else's.
    assert!(all_pages(&anna_c, &app, "operator=bruno", 10).await.is_empty());
    let brunos = day.iter().find(|f| f.operator == Some(bruno)).unwrap();
    assert_eq!(anna_c.get(app.url(&format!("/api/calls/{}", brunos.id))).send().await.unwrap().status(), 404);
    let own = mine.iter().next().unwrap();
    assert_eq!(anna_c.get(app.url(&format!("/api/calls/{own}"))).send().await.unwrap().status(), 200);
    let csv_text = anna_c.get(app.url("/api/calls.csv")).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv_text.lines().count(), mine.len() + 1, "the export is scoped too");
    assert_eq!(anna_c.get(app.url("/api/kpis")).send().await.unwrap().status(), 403);

    let everything = all_pages(&sup, &app, "from=2026-11-23", 50).await;
    assert_eq!(everything.len(), day.len(), "a supervisor sees every call");
    app.stop().await;
}

#[tokio::test]
async fn retention_purges_old_calls_keeps_their_kpis_and_audits_each_purge() {
    let app = spawn_app().await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let (_, admin) = signed_in(&app, "amministra", Role::Admin).await;
    // The server purges at start, beside serving: its audit row comes without any request.
    server_purge_audited(&app, &admin).await;
    // The hand fixture moved 400 days back (before the 365-day retention), and a recent day.
    let shift = 400 * 86_400_000i64;
    let old: Vec<Fx> = hand_fixture()
        .into_iter()
        .map(|mut f| {
            f.id = format!("old-{}", f.id);
            f.started -= shift;
            f.ended = f.ended.map(|t| t - shift);
            f.queued = f.queued.map(|t| t - shift);
            f.answered = f.answered.map(|t| t - shift);
            f.abandoned = f.abandoned.map(|t| t - shift);
            f
        })
        .collect();
    insert(&app, &old).await;
    insert(&app, &hand_fixture()).await;
    let pool = app.state.db.pool();
    sqlx::query("INSERT INTO call_notes (call_id, operator_id, text, updated_at) VALUES ('old-h1', 1, 'nota', $1)")
        .bind(old[0].ended.unwrap())
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO referrals (call_id, service_id, service_name, operator_id, at) VALUES ('old-h1', 's', 'S', 1, $1)",
    )
    .bind(old[0].ended.unwrap())
    .execute(pool)
    .await
    .unwrap();
    let old_day =
        chrono::DateTime::<Utc>::from_timestamp_millis(old[0].started).unwrap().with_timezone(&Rome).date_naive();
    let range = format!("from={old_day}&to={old_day}");
    let before_hour = get_json(&sup, &app.url(&format!("/api/kpis?{range}&group=hour"))).await;
    let before_lang = get_json(&sup, &app.url(&format!("/api/kpis?{range}&group=language"))).await;
    assert_eq!(before_hour["total"]["calls"], 8);

    let now = app.clock.now().timestamp_millis();
    let actor = console::supervisor::audit::Actor::system("test");
    // Three calls per transaction: three chunks, each rolling up what it deletes.
    let report = console::supervisor::retention::purge_in_chunks(&app.state.db, now, &Policy::calls(365), &actor, 3)
        .await
        .unwrap();
    assert_eq!((report.calls, report.notes, report.referrals), (8, 1, 1), "{report:?}");
    assert_eq!(report.call_events, 8);
    assert_eq!(report.queue_entries, 5);

    // Per-call detail is gone; the recent day is untouched; the old KPIs are unchanged.
    let count = |sql: &'static str| async move { sqlx::query_as::<_, (i64,)>(sql).fetch_one(pool).await.unwrap().0 };
    assert_eq!(count("SELECT COUNT(*) FROM calls WHERE call_id LIKE 'old-%'").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM call_events WHERE call_id LIKE 'old-%'").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM call_notes").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM calls").await, 8);
    assert!(all_pages(&sup, &app, &range, 10).await.is_empty());
    let after_hour = get_json(&sup, &app.url(&format!("/api/kpis?{range}&group=hour"))).await;
    let after_lang = get_json(&sup, &app.url(&format!("/api/kpis?{range}&group=language"))).await;
    assert_eq!(after_hour["rows"], before_hour["rows"]);
    assert_eq!(after_hour["total"], before_hour["total"]);
    assert_eq!(after_lang["rows"], before_lang["rows"]);
    let recent = get_json(&sup, &app.url("/api/kpis?from=2026-11-23&to=2026-11-23")).await;
    assert_eq!(recent["total"], before_hour["total"], "the same calls, still live, give the same KPIs");

    // A second run purges nothing and is audited too.
    let again = console::supervisor::retention::purge(&app.state.db, now, &Policy::calls(365), &actor).await.unwrap();
    assert_eq!(again.calls, 0);
    let audit = get_json(&admin, &app.url("/api/audit")).await;
    let purges: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "retention_purge").collect();
    let users: Vec<&str> = purges.iter().map(|e| e["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["test", "test", "retention"], "ours, newest first, and the server's own at start");
    let detail: Value = serde_json::from_str(purges[1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["calls"], 8);
    let detail: Value = serde_json::from_str(purges[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["calls"], 0);
    app.stop().await;
}

/// Retention with `retention_days = 0` just after midnight: yesterday's ended call goes, a call
/// still live stays (its log and queue entry too) and is still counted, live; the same run deletes
/// the expired sessions (a live one stays), the audit rows past `audit_retention_days`, and the
/// speech synthesised before the calls' cutoff.
#[tokio::test]
async fn retention_never_purges_a_live_call_and_purges_sessions_old_audit_rows_and_old_speech() {
    use console::db::audit::{self, Actor, AuditAction};
    let app = spawn_app().await;
    let now = rome(24, 0, 3, 0);
    app.clock.set(Utc.timestamp_millis_opt(now).unwrap());
    let live = Fx {
        id: "live".into(),
        channel: "webhook",
        started: rome(23, 23, 55, 0),
        language: Some("it"),
        queued: Some(rome(23, 23, 56, 0)),
        ..Fx::default()
    };
    let ended = Fx::new("ended", rome(23, 23, 50, 0), rome(23, 23, 52, 0), "hung_up_in_menu", "it", None);
    insert(&app, &[live, ended]).await;
    let (sara, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let kpis = "/api/kpis?from=2026-11-23&to=2026-11-24&group=day";
    let before = get_json(&sup, &app.url(kpis)).await;
    assert_eq!(before["total"]["calls"], 2, "{before}");

    let db = &app.state.db;
    let pool = db.pool();
    // A session that expired an hour ago, beside sara's live one.
    console::db::sessions::create_session(db, sara, now - 13 * 3_600_000).await.unwrap();
    // Audit rows of 800 and of 100 days ago.
    for days in [800i64, 100] {
        let at = now - days * 86_400_000;
        audit::record(pool, at, &Actor::system("old"), AuditAction::OpenCall, Some(&format!("d{days}")), "")
            .await
            .unwrap();
    }
    // Speech of yesterday evening and of today.
    let speech = app.state.settings.speech_cache_dir();
    for (name, at) in [("yesterday.wav", rome(23, 22, 0, 0)), ("today.wav", rome(24, 0, 1, 0))] {
        let path = speech.join(name);
        std::fs::write(&path, b"RIFF").unwrap();
        let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at as u64);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    }

    // A mediator was on each call: the ended call's mediation is its detail, purged with it.
    for call in ["live", "ended"] {
        sqlx::query(
            "INSERT INTO mediations (call_id, mediator_id, invited_by, invited_at, joined_at) VALUES ($1, $2, $2, $3, $3)",
        )
        .bind(call)
        .bind(sara)
        .bind(rome(23, 23, 51, 0))
        .execute(pool)
        .await
        .unwrap();
        // A recording and a refusal (after it) on each call: the call's detail too.
        sqlx::query(
            "INSERT INTO recordings (id, call_id, started_at, started_by, ended_at, duration_ms, audio) \
             VALUES ($1, $1, $2, $3, $2, 0, $4)",
        )
        .bind(call)
        .bind(rome(23, 23, 51, 0))
        .bind(sara)
        .bind(console::calls::voicemail::wav(&[0i16; 8]))
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO recording_refusals (call_id, refused_at, operator_id) VALUES ($1, $2, $3)")
            .bind(call)
            .bind(rome(23, 23, 51, 30))
            .bind(sara)
            .execute(pool)
            .await
            .unwrap();
    }

    let policy = Policy { call_days: 0, audit_days: 730, speech_cache: Some(speech.clone()) };
    let report = console::supervisor::retention::purge(db, now, &policy, &Actor::system("test")).await.unwrap();
    assert_eq!((report.calls, report.call_events, report.live_calls_kept), (1, 1, 1), "{report:?}");
    let mediations = |call: &'static str| async move {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM mediations WHERE call_id = $1")
            .bind(call)
            .fetch_one(pool)
            .await
            .unwrap()
            .0
    };
    assert_eq!((mediations("ended").await, mediations("live").await), (0, 1), "a mediation goes with its call");
    for table in ["recordings", "recording_refusals"] {
        let left: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT call_id FROM {table} ORDER BY call_id")).fetch_all(pool).await.unwrap();
        assert_eq!(left, [("live".to_owned(),)], "{table}: the ended call's goes with it, the live call's stays");
    }
    assert_eq!(report.recordings, 1, "{report:?}");
    assert_eq!((report.sessions, report.audit_rows, report.speech_files), (1, 1, 1), "{report:?}");

    let count = |sql: &'static str| async move { sqlx::query_as::<_, (i64,)>(sql).fetch_one(pool).await.unwrap().0 };
    assert_eq!(count("SELECT COUNT(*) FROM calls WHERE call_id = 'live' AND ended_at IS NULL").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM call_events WHERE call_id = 'live'").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM queue_entries WHERE call_id = 'live'").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM calls WHERE call_id = 'ended'").await, 0);
    let after = get_json(&sup, &app.url(kpis)).await;
    assert_eq!(
        (&after["rows"], &after["total"]),
        (&before["rows"], &before["total"]),
        "the live call is still counted"
    );
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 1, "sara's live session stays");
    assert_eq!(count("SELECT COUNT(*) FROM audit_log WHERE call_id = 'd800'").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM audit_log WHERE call_id = 'd100'").await, 1);
    assert!(!speech.join("yesterday.wav").exists() && speech.join("today.wav").exists());
    let (detail,): (String,) =
        sqlx::query_as("SELECT detail FROM audit_log WHERE action = 'retention_purge' AND user_name = 'test'")
            .fetch_one(pool)
            .await
            .unwrap();
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!((detail["sessions"].clone(), detail["live_calls_kept"].clone()), (json!(1), json!(1)), "{detail}");

    // Once the call has ended (and the settle's margin passed), the next run purges it.
    sqlx::query("UPDATE calls SET ended_at = $1, outcome = 'hung_up_in_queue' WHERE call_id = 'live'")
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    let later = now + 10 * 60_000;
    let report = console::supervisor::retention::purge(db, later, &policy, &Actor::system("test")).await.unwrap();
    assert_eq!((report.calls, report.live_calls_kept), (1, 0), "{report:?}");
    app.stop().await;
}

/// Waits for the audit row of the purge `serve` runs at start.
async fn server_purge_audited(app: &TestApp, admin: &reqwest::Client) {
    for _ in 0..200 {
        let audit = get_json(admin, &app.url("/api/audit")).await;
        if audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "retention_purge" && e["user"] == "retention")
        {
            return;
        }
        // Polls for the audit row, up to 200 times (then fails below).
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the server's purge at start was not audited");
}

/// Calls that started in the same millisecond go in one chunk, however small the chunks: none is
/// left behind, and their KPIs stay the same.
#[tokio::test]
async fn a_purge_in_chunks_takes_calls_of_one_instant_together() {
    let app = spawn_app().await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let started = rome(23, 10, 0, 0) - 400 * 86_400_000;
    let calls: Vec<Fx> = (0..5)
        .map(|i| Fx::new(&format!("tie-{i}"), started, started + 60_000, "hung_up_in_menu", "it", Some("casa")))
        .chain([Fx::new("later", started + 1, started + 60_000, "self_service", "fr", None)])
        .collect();
    insert(&app, &calls).await;
    let day = chrono::DateTime::<Utc>::from_timestamp_millis(started).unwrap().with_timezone(&Rome).date_naive();
    let kpis = format!("/api/kpis?from={day}&to={day}&group=hour");
    let before = get_json(&sup, &app.url(&kpis)).await;
    assert_eq!(before["total"]["calls"], 6);
    let now = app.clock.now().timestamp_millis();
    let actor = console::supervisor::audit::Actor::system("test");
    let report = console::supervisor::retention::purge_in_chunks(&app.state.db, now, &Policy::calls(365), &actor, 2)
        .await
        .unwrap();
    assert_eq!((report.calls, report.call_events), (6, 6), "{report:?}");
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(left, 0);
    let after = get_json(&sup, &app.url(&kpis)).await;
    assert_eq!((&after["rows"], &after["total"]), (&before["rows"], &before["total"]));
    app.stop().await;
}

/// The KPIs of a day read the same before and after its calls are settled (their counts moved
/// into the roll-up), only ended calls are settled, each once, and a purge after the settle does
/// not count them again.
#[tokio::test]
async fn settling_moves_ended_calls_into_the_roll_up_without_changing_the_kpis() {
    use console::supervisor::{retention, settle};
    let app = spawn_app().await;
    let (_, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let now = app.clock.now().timestamp_millis();
    let mut calls = hand_fixture();
    // Still in the menu, and hung up a minute ago: neither is settled yet.
    calls.push(Fx {
        id: "open".into(),
        channel: "webhook",
        started: now - 120_000,
        language: Some("it"),
        ..Fx::default()
    });
    calls.push(Fx::new("just-ended", now - 120_000, now - 60_000, "hung_up_in_menu", "es", None));
    insert(&app, &calls).await;
    let day = chrono::DateTime::<Utc>::from_timestamp_millis(now).unwrap().with_timezone(&Rome).date_naive();
    let queries = [
        "/api/kpis?from=2026-11-23&to=2026-11-23&group=hour".to_owned(),
        "/api/kpis?from=2026-11-23&to=2026-11-23&group=language".to_owned(),
        format!("/api/kpis?from=2026-11-22&to={day}&group=area"),
        format!("/api/kpis?from=2026-11-22&to={day}&group=day"),
    ];
    let mut before = Vec::new();
    for q in &queries {
        before.push(get_json(&sup, &app.url(q)).await);
    }
    assert_eq!(before[2]["total"]["calls"], 10, "{}", before[2]);

    // Two settles at once (as two nodes would run them), in chunks of 3: the eight calls of the
    // hand fixture are settled, each by one of them (or by the server's own settle at start,
    // should it run this late).
    let db = &app.state.db;
    let (a, b) = tokio::join!(settle::settle_in_chunks(db, now, 3), settle::settle_in_chunks(db, now, 3));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.calls + b.calls <= 8, "{a:?} {b:?}");
    let pool = db.pool();
    let unsettled: Vec<(String,)> = sqlx::query_as("SELECT call_id FROM calls WHERE kpi_settled = 0 ORDER BY call_id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(unsettled, [("just-ended".to_owned(),), ("open".to_owned(),)]);
    let (rolled,): (i64,) =
        sqlx::query_as("SELECT CAST(SUM(calls) AS BIGINT) FROM kpi_hourly").fetch_one(pool).await.unwrap();
    assert_eq!(rolled, 8, "each settled call counted once in the roll-up");
    for (q, b) in queries.iter().zip(&before) {
        let after = get_json(&sup, &app.url(q)).await;
        assert_eq!((&after["rows"], &after["total"]), (&b["rows"], &b["total"]), "{q}");
    }

    // Settling again finds nothing; ten minutes on, the call that had just ended is settled too.
    assert_eq!(settle::settle(db, now).await.unwrap().calls, 0);
    assert_eq!(settle::settle(db, now + 600_000).await.unwrap().calls, 1);

    // A purge of the settled day keeps its KPIs and rolls up nothing more.
    let actor = console::supervisor::audit::Actor::system("test");
    // Any instant of the 24th cuts at its midnight: the server's own, at which sara's session is
    // still live (the purge deletes expired sessions).
    let report = retention::purge(db, now, &retention::Policy::calls(0), &actor).await.unwrap();
    assert_eq!((report.calls, report.kpi_rows), (8, 0), "{report:?}");
    let after = get_json(&sup, &app.url(&queries[0])).await;
    assert_eq!((&after["rows"], &after["total"]), (&before[0]["rows"], &before[0]["total"]));
    app.stop().await;
}

/// The roll-up's writers (settles and purge chunks, on any node) take turns: a second one waits
/// until the first commits, so no call is counted by two of them.
#[tokio::test]
async fn the_roll_up_writers_take_one_lock() {
    use console::db::DbError;
    use console::supervisor::store::begin_rollup;
    let app = spawn_app().await;
    let db = app.state.db.clone();
    let mut first = begin_rollup(&db).await.unwrap();
    let second = tokio::spawn({
        let db = db.clone();
        async move { begin_rollup(&db).await.map(|tx| tx.rollback()) }
    });
    if app.db.is_postgres() {
        // PostgreSQL lists a writer waiting for the first's lock, ungranted, in pg_locks (ours, or
        // the server's own settle or purge: any roll-up writer but the first must wait).
        let (first_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()").fetch_one(&mut *first).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(first_pid)
            .fetch_one(db.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline && !second.is_finished(),
                "no second writer of the roll-up waited for the first's lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    } else {
        // SQLite: the first holds the write lock from its BEGIN, so another writer's `BEGIN
        // IMMEDIATE` is refused ("database is locked") when it may not wait (busy timeout 0) and
        // waits when it may (the pool's connections, the second's among them).
        use sqlx::{sqlite::SqliteConnectOptions, Connection};
        let file = db.sqlite_file().expect("a SQLite file");
        let options = SqliteConnectOptions::new().filename(file).busy_timeout(std::time::Duration::ZERO);
        let mut probe = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let refused = sqlx::query("BEGIN IMMEDIATE").execute(&mut probe).await.map(drop).map_err(DbError::from);
        assert!(
            refused.as_ref().is_err_and(DbError::is_busy),
            "a second writer of the roll-up could begin while the first held the lock: {refused:?}"
        );
        probe.close().await.unwrap();
    }
    assert!(!second.is_finished(), "a second writer of the roll-up went ahead while the first held the lock");
    first.commit().await.unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), second).await.expect("it follows the first");
    second.unwrap().unwrap().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_wallboard_pushes_a_snapshot_and_then_each_change() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app().await;
    signed_in(&app, "sara", Role::Supervisor).await;
    let (_, op) = signed_in(&app, "anna", Role::Operator).await;
    // The session cookie, for the websocket client.
    let login = reqwest::Client::new()
        .post(app.url("/api/session"))
        .json(&json!({"name": "sara", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut ws = open_wallboard(&app, &cookie).await;
    let first = next_message(&mut ws).await;
    assert_eq!(first["type"], "wallboard");
    assert_eq!(first["in_queue"], json!([]));

    // A caller reaches the queue: the next message shows them waiting, in their language and area.
    webhook_call_until_queue(&app, "wb-1").await;
    // (It may pass through the menu on an earlier snapshot.)
    let mut second = next_message(&mut ws).await;
    while second["in_queue"].as_array().unwrap().is_empty() {
        second = next_message(&mut ws).await;
    }
    assert_eq!(second["in_queue"][0]["language"], "it", "{second}");
    assert_eq!(second["in_queue"][0]["area"], "casa");
    assert_eq!(second["in_queue"][0]["count"], 1);
    assert!(second["longest_wait_since"].is_string());
    assert_eq!(second["today"]["calls"], 1);

    // An operator may not open it; a page from another origin may not either.
    let r = op.get(app.url("/ws/wallboard")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let mut req = format!("ws://{}/ws/wallboard", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    // A wallboard has nothing to say: a frame over its small limit closes it.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let too_big = "x".repeat(console::supervisor::wallboard::MAX_FRAME + 1);
    ws.send(Message::Text(too_big.into())).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed.ok(), Some(true), "an oversized frame closes the wallboard");
    app.stop().await;
}

/// A wallboard left open after its session ended (signed out, expired, account disabled) is closed
/// at its next session check (`SOCKET_SESSION_CHECK`, 30 s) with code 4001, not left streaming.
#[tokio::test]
async fn a_wallboard_whose_session_ended_is_closed_at_its_next_check() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app().await;
    signed_in(&app, "sara", Role::Supervisor).await;
    let login = reqwest::Client::new()
        .post(app.url("/api/session"))
        .json(&json!({"name": "sara", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = login.json::<serde_json::Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    let mut ws = open_wallboard(&app, &cookie).await;
    assert_eq!(next_message(&mut ws).await["type"], "wallboard");

    let r = reqwest::Client::new()
        .delete(app.url("/api/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "signed out");
    let check = console::db::sessions::SOCKET_SESSION_CHECK;
    let code = tokio::time::timeout(check + std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(code.ok(), Some(Some(4001)), "the wallboard was closed as its session ended, within {check:?}");
    app.stop().await;
}

/// Many wallboards open (a supervisors' room and its screens) cost the database one snapshot a
/// second, not one per wallboard, and each of them still gets every change.
#[tokio::test]
async fn open_wallboards_share_one_snapshot_a_second() {
    let app = spawn_app().await;
    signed_in(&app, "sara", Role::Supervisor).await;
    let login = reqwest::Client::new()
        .post(app.url("/api/session"))
        .json(&json!({"name": "sara", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    const BOARDS: usize = 6;
    let mut boards = Vec::new();
    for _ in 0..BOARDS {
        let mut ws = open_wallboard(&app, &cookie).await;
        assert_eq!(next_message(&mut ws).await["in_queue"], json!([]));
        boards.push(ws);
    }
    // Counted over the node's feed ticks, each of which reads the snapshot once for every open
    // wallboard. Each count starts at the end of a tick, when the next read is a tick away.
    let reads = || app.state.metrics.wallboard_snapshots.get();
    let mut ticks = app.state.supervisor.wallboard.ticks();
    let tick = std::time::Duration::from_secs(10);
    tokio::time::timeout(tick, ticks.changed()).await.expect("the feed ticks").unwrap();
    let (reads_before, ticks_before) = (reads(), *ticks.borrow_and_update());

    // A caller reaches the queue: every wallboard shows them.
    webhook_call_until_queue(&app, "wb-shared").await;
    for ws in &mut boards {
        let mut m = next_message(ws).await;
        while m["in_queue"].as_array().unwrap().is_empty() {
            m = next_message(ws).await;
        }
        assert_eq!(m["in_queue"][0]["count"], 1, "{m}");
    }
    // And three ticks at least, however quickly that went.
    tokio::time::timeout(tick * 3, ticks.wait_for(|&n| n >= ticks_before + 3)).await.expect("the feed ticks").unwrap();
    let (reads_after, ticks_after) = (reads(), *ticks.borrow_and_update());
    // One read per tick for all six: a read per wallboard would be six times as many. (± 1: a
    // tick's read is counted when it begins, the tick when it ends.)
    let (shared, elapsed) = (reads_after - reads_before, ticks_after - ticks_before);
    assert!(shared.abs_diff(elapsed) <= 1, "{shared} snapshots read in {elapsed} feed ticks for {BOARDS} wallboards");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("helpline_wallboard_snapshots_total"), "{metrics}");
    app.stop().await;
}

async fn open_wallboard(app: &TestApp, cookie: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws/wallboard", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("supervisor connects").0
}

async fn webhook_call_until_queue(app: &TestApp, id: &str) {
    for (seq, ev) in [
        json!({"type": "call.started", "from": "+39 333 123 4512", "to": "803001"}),
        json!({"type": "digits", "digits": "1"}),
        json!({"type": "digits", "digits": "3"}),
        json!({"type": "digits", "digits": "22100"}),
        json!({"type": "digits", "digits": "2"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut ev = ev;
        ev["call_id"] = json!(id);
        ev["seq"] = json!(seq + 1);
        let (status, body) = app.voice_event(&ev).await;
        assert_eq!(status, 200, "{body}");
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next wallboard message (waits for it, up to 10 s).
async fn next_message(ws: &mut Socket) -> Value {
    let msg =
        tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.expect("a message").unwrap().unwrap();
    serde_json::from_str::<Value>(msg.to_text().unwrap()).unwrap()
}

/// The browser phone's media steps (from its journal, as the phone hands them over: connected,
/// lost, back by an ICE restart, the caller gone) are in the call's timeline, in order and named
/// by operator; they are written before the server's tasks end, and purged with the call.
#[tokio::test]
async fn the_phones_media_steps_are_in_the_timeline_and_go_with_the_call() {
    use console::media::{Journal, MediaStep};
    let app = spawn_app().await;
    let (sara_id, sup) = signed_in(&app, "sara", Role::Supervisor).await;
    let started = app.clock.now().timestamp_millis() - 400 * 86_400_000;
    insert(&app, &[Fx::new("old-phone", started, started + 60_000, "answered", "it", None)]).await;

    let tasks = console::tasks::Tasks::new();
    let journal = Journal::new(app.state.db.clone(), app.clock.clone(), app.state.metrics.clone());
    journal.start(&tasks);
    let steps = [
        (MediaStep::Connecting, None),
        (MediaStep::Connected, None),
        (MediaStep::Reconnecting, None),
        (MediaStep::IceRestart, None),
        (MediaStep::Connected, None),
        (MediaStep::HungUp, Some("caller hung up")),
    ];
    for (step, reason) in steps {
        app.clock.advance(Duration::milliseconds(700));
        journal.record("old-phone", Some(sara_id), step, reason);
    }
    // Shutdown writes what was handed over.
    tasks.shutdown().await;

    let t = get_json(&sup, &app.url("/api/calls/old-phone")).await;
    let media: Vec<&Value> = t["timeline"].as_array().unwrap().iter().filter(|e| e["type"] == "media").collect();
    let states: Vec<&str> = media.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["connecting", "connected", "reconnecting", "ice_restart", "connected", "hung_up"]);
    assert!(media.iter().all(|e| e["operator"] == "sara"), "{media:?}");
    assert_eq!(media[5]["reason"], "caller hung up");
    assert!(media[0].get("reason").is_none(), "no reason, no field: {:?}", media[0]);

    let now = app.clock.now().timestamp_millis();
    let actor = console::supervisor::audit::Actor::system("test");
    let report = console::supervisor::retention::purge(&app.state.db, now, &Policy::calls(365), &actor).await.unwrap();
    assert_eq!((report.calls, report.media_steps), (1, 6), "{report:?}");
    let (left,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM call_media").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(left, 0);
    app.stop().await;
}
