//! Keeping the directory true, through the real server on both databases: an operator flags a
//! service from a call and every search shows it reported until an editor resolves it; an
//! organisation editor proposes a change to their own organisation's service (403 on another's),
//! an editor accepts it and the search shows it at once; the history shows the diff and a
//! restore brings the old value back; bad records get the import's messages, per field; the
//! "not confirmed for 12 months" filter; `helpline user add --role org_editor`; imports record
//! themselves in the history.

use crate::console_client::{add_org_editor, add_user, italian_housing_call, sign_in, Session};
use crate::helpers::{helpline, repo_path, run_helpline, spawn_app, TestApp};
use console::clock::Clock;
use console::db::users::Role;
use console::directory::dataset::check_cell;
use console::directory::import::read_path;
use console::directory::schema::Kind;
use ivr::domain::Language;
use serde_json::{json, Value};

const MILANO: &str = "9a1f6a52-0001-4c1e-9d6f-000000000001";
/// Comune di Milano's service (phone `+39 02 8846 1234`).
const SPORTELLO: &str = "9a1f6a52-0002-4c1e-9d6f-000000000001";
/// Associazione Città Aperta's service.
const CORSI: &str = "9a1f6a52-0002-4c1e-9d6f-000000000002";

async fn load_good(app: &TestApp) {
    let (_, data) = read_path(&repo_path("tests/fixtures/directory/good")).unwrap();
    app.state.directory.replace(&data).await.unwrap();
}

async fn call(app: &TestApp, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = app.client.request(m, app.url(path)).header("cookie", &s.cookie).header("x-csrf-token", &s.csrf);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The first result of a search for `q`, as the operator sees it.
async fn first_hit(app: &TestApp, s: &Session, q: &str) -> Value {
    let (status, page) = call(app, s, "GET", &format!("/api/services/search?q={q}"), None).await;
    assert_eq!(status, 200, "{page}");
    page["contents"][0].clone()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_flags_a_result_from_a_call_and_it_shows_reported_until_an_editor_resolves_it() {
    let app = spawn_app().await;
    load_good(&app).await;
    add_user(&app, "op", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "op2", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "ed", Role::Editor, &[], &[], false).await;
    let (op, op2, ed) = (sign_in(&app, "op").await, sign_in(&app, "op2").await, sign_in(&app, "ed").await);
    let c = italian_housing_call(&app, "CA-flag-1").await;

    assert_eq!(first_hit(&app, &op2, "sportello").await["reported"], json!(false));
    let flag = json!({"reason": "phone_wrong", "note": "il numero non risponde", "call_id": c.id});
    let (status, body) = call(&app, &op, "POST", &format!("/api/services/{SPORTELLO}/flags"), Some(flag)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reason"], "phone_wrong");
    assert_eq!(body["call_id"], "CA-flag-1");
    // Another operator's next search shows it reported.
    assert_eq!(first_hit(&app, &op2, "sportello").await["reported"], json!(true));

    // Bad input: an unknown reason, a call that does not exist, a service that does not exist,
    // a note too long.
    for (path, body, want) in [
        (SPORTELLO, json!({"reason": "ugly"}), 422),
        (SPORTELLO, json!({"reason": "closed", "call_id": "CA-none"}), 400),
        ("nope", json!({"reason": "closed"}), 404),
        (SPORTELLO, json!({"reason": "other", "note": "x".repeat(3000)}), 400),
    ] {
        let (status, answer) = call(&app, &op, "POST", &format!("/api/services/{path}/flags"), Some(body)).await;
        assert!(status == want || (want == 422 && status == 400), "{path}: {status} {answer}");
    }
    // An editor cannot flag (no calls), an operator cannot read or resolve the flags.
    let (status, _) =
        call(&app, &ed, "POST", &format!("/api/services/{SPORTELLO}/flags"), Some(json!({"reason": "closed"}))).await;
    assert_eq!(status, 403);
    let (status, _) = call(&app, &op, "GET", "/api/directory/flags", None).await;
    assert_eq!(status, 403);

    let (status, flags) = call(&app, &ed, "GET", "/api/directory/flags", None).await;
    assert_eq!(status, 200, "{flags}");
    assert_eq!(flags.as_array().unwrap().len(), 1, "{flags}");
    assert_eq!(flags[0]["service_name"], "Sportello mediazione interculturale");
    assert_eq!(flags[0]["note"], "il numero non risponde");
    let id = flags[0]["id"].as_i64().unwrap();
    let (status, body) = call(&app, &ed, "POST", &format!("/api/directory/flags/{id}/resolve"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["resolved_at"].is_string());
    assert_eq!(first_hit(&app, &op2, "sportello").await["reported"], json!(false));
    let (status, _) = call(&app, &ed, "POST", &format!("/api/directory/flags/{id}/resolve"), None).await;
    assert_eq!(status, 409, "a flag is resolved once");

    let actions = audit_actions(&app).await;
    assert!(actions.contains(&"flag_service".to_owned()), "{actions:?}");
    assert!(actions.contains(&"resolve_flag".to_owned()), "{actions:?}");
    let call_of_flag: Option<String> =
        sqlx::query_scalar("SELECT call_id FROM audit_log WHERE action = 'flag_service'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(call_of_flag.as_deref(), Some("CA-flag-1"));
    app.stop().await;
}

#[tokio::test]
async fn an_org_editor_proposes_an_editor_accepts_the_search_follows_and_a_restore_brings_the_old_phone_back() {
    let app = spawn_app().await;
    load_good(&app).await;
    add_user(&app, "op", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "ed", Role::Editor, &[], &[], false).await;
    add_org_editor(&app, "milano", MILANO).await;
    let (op, ed, org) = (sign_in(&app, "op").await, sign_in(&app, "ed").await, sign_in(&app, "milano").await);

    // Their own service is editable, another organisation's is not (and a change to it is a 403).
    let (status, view) = call(&app, &org, "GET", &format!("/api/directory/services/{SPORTELLO}"), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["editable"], json!(true));
    assert_eq!(view["reviewer"], json!(false));
    let (_, other) = call(&app, &org, "GET", &format!("/api/directory/services/{CORSI}"), None).await;
    assert_eq!(other["editable"], json!(false));
    let (status, body) = call(
        &app,
        &org,
        "PUT",
        &format!("/api/directory/services/{CORSI}"),
        Some(json!({"record": other["record"], "reason": "not mine"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Nor may they move their service to another organisation.
    let mut moved = view["record"].clone();
    moved["service"]["organization_id"] = json!("9a1f6a52-0001-4c1e-9d6f-000000000002");
    let (status, _) =
        call(&app, &org, "PUT", &format!("/api/directory/services/{SPORTELLO}"), Some(json!({"record": moved}))).await;
    assert_eq!(status, 403);
    // The list shows them which services they may change; `mine` their organisation's only.
    let (_, list) = call(&app, &org, "GET", "/api/directory/services", None).await;
    let editable: Vec<(&str, bool)> =
        list.as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap(), s["editable"] == json!(true))).collect();
    assert_eq!(editable.len(), 3, "{list}");
    assert!(editable.contains(&(SPORTELLO, true)) && editable.contains(&(CORSI, false)), "{list}");
    let (_, list) = call(&app, &org, "GET", "/api/directory/services?mine=true", None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(names, vec![SPORTELLO], "{list}");

    // The proposal: a new phone number.
    let mut record = view["record"].clone();
    record["phones"][0]["number"] = json!("+39 02 0000 1111");
    let (status, change) = call(
        &app,
        &org,
        "PUT",
        &format!("/api/directory/services/{SPORTELLO}"),
        Some(json!({"record": record, "reason": "new switchboard"})),
    )
    .await;
    assert_eq!(status, 202, "{change}");
    assert_eq!(change["status"], "proposed");
    assert_eq!(
        change["diff"],
        json!([{"field": "phone 9a1f6a52-0006-4c1e-9d6f-000000000001.number", "before": "+39 02 8846 1234", "after": "+39 02 0000 1111"}])
    );
    // Not applied yet: the operator's search still shows the old number; an org editor cannot
    // accept their own proposal.
    assert_eq!(first_hit(&app, &op, "sportello").await["phones"][0]["number"], "+39 02 8846 1234");
    let change_id = change["id"].as_i64().unwrap();
    let (status, _) = call(&app, &org, "POST", &format!("/api/directory/changes/{change_id}/accept"), None).await;
    assert_eq!(status, 403);

    let (status, waiting) = call(&app, &ed, "GET", "/api/directory/changes?status=proposed", None).await;
    assert_eq!(status, 200);
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{waiting}");
    assert_eq!(waiting[0]["proposed_by"], "milano");
    let (status, accepted) = call(&app, &ed, "POST", &format!("/api/directory/changes/{change_id}/accept"), None).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "applied");
    assert_eq!(accepted["reviewed_by"], "ed");
    // Applied at once on this node: the operator's next search shows the new phone.
    assert_eq!(first_hit(&app, &op, "sportello").await["phones"][0]["number"], "+39 02 0000 1111");
    let (status, _) = call(&app, &ed, "POST", &format!("/api/directory/changes/{change_id}/accept"), None).await;
    assert_eq!(status, 409, "a change is reviewed once");

    // HSDS's dates are kept.
    let (_, view) = call(&app, &ed, "GET", &format!("/api/directory/services/{SPORTELLO}"), None).await;
    assert!(view["meta"]["last_modified"].as_str().unwrap().starts_with("20"), "{view}");
    assert_eq!(view["meta"]["assured_date"], json!(console::directory::editing::rome_date(app.clock.now())));

    // The history: the accepted change with its diff; restoring brings the old number back.
    let (status, history) = call(&app, &ed, "GET", &format!("/api/directory/services/{SPORTELLO}/history"), None).await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["id"].as_i64(), Some(change_id), "{history}");
    assert_eq!(history[0]["diff"][0]["after"], "+39 02 0000 1111");
    let (status, _) = call(
        &app,
        &org,
        "POST",
        &format!("/api/directory/services/{SPORTELLO}/restore"),
        Some(json!({"change_id": change_id})),
    )
    .await;
    assert_eq!(status, 403, "only editors restore");
    let (status, restored) = call(
        &app,
        &ed,
        "POST",
        &format!("/api/directory/services/{SPORTELLO}/restore"),
        Some(json!({"change_id": change_id, "reason": "the old number works again"})),
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["kind"], "restore");
    assert_eq!(restored["diff"][0]["after"], "+39 02 8846 1234");
    assert_eq!(first_hit(&app, &op, "sportello").await["phones"][0]["number"], "+39 02 8846 1234");

    // A rejected proposal changes nothing.
    let (_, view) = call(&app, &org, "GET", &format!("/api/directory/services/{SPORTELLO}"), None).await;
    let mut record = view["record"].clone();
    record["service"]["name"] = json!("Sportello chiuso");
    let (_, change) =
        call(&app, &org, "PUT", &format!("/api/directory/services/{SPORTELLO}"), Some(json!({"record": record}))).await;
    let id = change["id"].as_i64().unwrap();
    let (status, rejected) =
        call(&app, &ed, "POST", &format!("/api/directory/changes/{id}/reject"), Some(json!({"reason": "not true"})))
            .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(first_hit(&app, &op, "sportello").await["name"], "Sportello mediazione interculturale");

    let actions = audit_actions(&app).await;
    for a in
        ["propose_directory_change", "accept_directory_change", "restore_directory_version", "reject_directory_change"]
    {
        assert!(actions.contains(&a.to_owned()), "{a}: {actions:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_bad_record_gets_the_imports_messages_field_by_field() {
    let app = spawn_app().await;
    load_good(&app).await;
    add_user(&app, "ed", Role::Editor, &[], &[], false).await;
    let ed = sign_in(&app, "ed").await;
    let (_, view) = call(&app, &ed, "GET", &format!("/api/directory/services/{SPORTELLO}"), None).await;
    let mut record = view["record"].clone();
    record["locations"][0]["latitude"] = json!(100);
    record["schedules"][0]["timezone"] = json!("Mars/Olympus");
    record["phones"][0]["location_id"] = json!("nowhere");
    record["schedules"][0]["opens_at"] = json!("9h");
    record["service"]["name"] = json!("");
    record["service"]["colour"] = json!("red");
    let (status, body) =
        call(&app, &ed, "PUT", &format!("/api/directory/services/{SPORTELLO}"), Some(json!({"record": record}))).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid");
    let fields: Vec<(String, String)> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap().to_owned(), f["reason"].as_str().unwrap().to_owned()))
        .collect();
    // The import's own words: the same checks produce them.
    let import = |kind, v| check_cell(kind, false, Some(v)).unwrap();
    let lat = Kind::Float { min: -90.0, max: 90.0 };
    for want in [
        ("locations[0].latitude".to_owned(), import(lat, "100")),
        ("schedules[0].timezone".to_owned(), import(Kind::TimeZone, "Mars/Olympus")),
        ("schedules[0].opens_at".to_owned(), import(Kind::Time, "9h")),
        ("phones[0].location_id".to_owned(), "no location has id \"nowhere\"".to_owned()),
        ("service.name".to_owned(), "required value is missing".to_owned()),
        ("service.colour".to_owned(), "\"colour\" is not a column of service".to_owned()),
    ] {
        assert!(fields.contains(&want), "{want:?} not in {fields:?}");
    }
    assert_eq!(fields.len(), 6, "{fields:?}");
    assert_eq!(import(lat, "100"), "\"100\" is out of range -90..90");
    // The import says the same of the same values (a package with a latitude of 100).
    let dir = tempfile::tempdir().unwrap();
    let good = repo_path("tests/fixtures/directory/good");
    for e in std::fs::read_dir(&good).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let loc = dir.path().join("location.csv");
    std::fs::write(&loc, std::fs::read_to_string(&loc).unwrap().replace("45.4637", "100")).unwrap();
    let errors = read_path(dir.path()).unwrap_err();
    assert!(errors.iter().any(|e| e.reason == import(lat, "100")), "{errors:?}");

    // Nothing was written.
    let (_, after) = call(&app, &ed, "GET", &format!("/api/directory/services/{SPORTELLO}"), None).await;
    assert_eq!(after["record"], view["record"]);
    // Malformed bodies are 4xx too.
    for body in [json!({"record": 3}), json!({"record": {"service": {}}, "extra": 1}), json!("x")] {
        let (status, answer) =
            call(&app, &ed, "PUT", &format!("/api/directory/services/{SPORTELLO}"), Some(body)).await;
        assert!((400..500).contains(&status) && status != 403, "{status} {answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn editors_work_from_the_services_not_confirmed_for_twelve_months() {
    let app = spawn_app().await;
    load_good(&app).await;
    add_user(&app, "ed", Role::Editor, &[], &[], false).await;
    let ed = sign_in(&app, "ed").await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    let (status, all) = call(&app, &ed, "GET", "/api/directory/services?unconfirmed_months=12", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all).len(), 3, "never confirmed: all three");
    let (status, c) = call(&app, &ed, "POST", &format!("/api/directory/services/{CORSI}/confirm"), None).await;
    assert_eq!(status, 200, "{c}");
    let (_, left) = call(&app, &ed, "GET", "/api/directory/services?unconfirmed_months=12", None).await;
    assert!(!ids(&left).contains(&CORSI.to_owned()), "{left}");
    assert_eq!(ids(&left).len(), 2);
    // Thirteen months later it is due again.
    app.clock.advance(chrono::Duration::days(400));
    let ed = sign_in(&app, "ed").await; // the session ended long ago
    let (_, later) = call(&app, &ed, "GET", "/api/directory/services?unconfirmed_months=12", None).await;
    assert_eq!(ids(&later).len(), 3, "{later}");
    let (status, _) = call(&app, &ed, "GET", "/api/directory/services?unconfirmed_months=twelve", None).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn org_editors_are_added_with_their_organization_and_imports_record_themselves() {
    let app = spawn_app().await;
    let db = &app.db;
    let import = run_helpline(
        helpline(db.dir.path()).env("HELPLINE_DATABASE_URL", &db.url).args([
            "directory",
            "import",
            repo_path("tests/fixtures/directory/good").to_str().unwrap(),
        ]),
        "",
    );
    assert_eq!(import.0, 0, "{import:?}");
    let add = |args: &[&str]| {
        let mut cmd = helpline(db.dir.path());
        cmd.env("HELPLINE_DATABASE_URL", &db.url).args(["user", "add", "--password-stdin"]).args(args);
        run_helpline(&mut cmd, "correct horse battery\n")
    };
    let (code, out, err) = add(&["--name", "milano", "--role", "org_editor", "--organization", MILANO]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created org_editor milano"), "{out}");
    let (code, _, err) = add(&["--name", "nobody", "--role", "org_editor"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--organization"), "{err}");
    let (code, _, err) = add(&["--name", "ghost", "--role", "org_editor", "--organization", "no-such-org"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no organization has id \"no-such-org\""), "{err}");
    let (code, _, err) = add(&["--name", "op9", "--role", "operator", "--organization", MILANO]);
    assert_eq!(code, 2, "{err}");
    // An account without an organization cannot become an org_editor.
    let (code, _, err) = add(&["--name", "op8", "--role", "operator"]);
    assert_eq!(code, 0, "{err}");
    let mut role = helpline(db.dir.path());
    role.env("HELPLINE_DATABASE_URL", &db.url).args(["user", "role", "op8", "org_editor"]);
    let (code, _, err) = run_helpline(&mut role, "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no organization"), "{err}");

    let out = db.dir.path().join("exported");
    let export = run_helpline(
        helpline(db.dir.path()).env("HELPLINE_DATABASE_URL", &db.url).args([
            "directory",
            "export",
            out.to_str().unwrap(),
        ]),
        "",
    );
    assert_eq!(export.0, 0, "{export:?}");

    add_user(&app, "ed", Role::Editor, &[], &[], false).await;
    let ed = sign_in(&app, "ed").await;
    let (status, applied) = call(&app, &ed, "GET", "/api/directory/changes?status=applied", None).await;
    assert_eq!(status, 200);
    let of_kind =
        |k: &str| -> Vec<Value> { applied.as_array().unwrap().iter().filter(|c| c["kind"] == k).cloned().collect() };
    let imports = of_kind("import");
    assert_eq!(imports.len(), 1, "{applied}");
    assert_eq!(imports[0]["record"]["services"], 3);
    assert_eq!(imports[0]["proposed_by"], "helpline directory import");
    let exports = of_kind("export");
    assert_eq!(exports.len(), 1, "{applied}");
    assert_eq!(exports[0]["record"]["services"], 3);
    let actions = audit_actions(&app).await;
    assert!(actions.contains(&"import_directory".to_owned()) && actions.contains(&"export_directory".to_owned()));
    // The org editor signs in and sees their organisation's service as editable.
    let org = sign_in(&app, "milano").await;
    let (_, list) = call(&app, &org, "GET", "/api/directory/services?mine=true", None).await;
    assert_eq!(list[0]["id"], SPORTELLO);
    assert_eq!(list[0]["editable"], json!(true));
    app.stop().await;
}
