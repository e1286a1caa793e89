//! The services directory end to end: `helpline directory import/export/generate` as the real
//! binary (good and bad HSDS datapackages, good and bad flat CSVs, round trip), the search and
//! service APIs on the in-process app (including 400s), the index following an import made by
//! another process, and `serve` loading the demo on first start.

use crate::helpers::{fresh_database, helpline, run_helpline, spawn_app, ServeProcess, TestDb};
use console::directory::http::SearchPage;
use console::directory::import::read_path;
use console::directory::Dataset;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/directory").join(name)
}

fn directory_cmd(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    run_helpline(&mut directory_command(db, args), "")
}

fn directory_command(db: &TestDb, args: &[&str]) -> std::process::Command {
    let mut cmd = helpline(db.dir.path());
    cmd.env("HELPLINE_DATABASE_URL", &db.url).arg("directory").args(args);
    cmd
}

fn read(path: &Path) -> Dataset {
    read_path(path).map(|(_, d)| d).unwrap_or_else(|e| panic!("{} does not read: {:?}", path.display(), e)).canonical()
}

async fn service_count(db: &TestDb) -> i64 {
    let d = console::db::Db::connect(&db.url).await.unwrap();
    d.migrate().await.unwrap();
    let n = console::directory::store::service_count(&d).await.unwrap();
    d.close().await;
    n
}

#[tokio::test]
async fn datapackage_imports_and_round_trips() {
    let db = fresh_database().await;
    let (code, out, err) = directory_cmd(&db, &["import", fixture("good").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 3 services"), "{out}");
    let exported = db.dir.path().join("export1");
    let (code, out, err) = directory_cmd(&db, &["export", exported.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&exported), read(&fixture("good")), "the export holds what was imported");

    // Into another database and out again: the same directory.
    let other = fresh_database().await;
    let (code, _, err) = directory_cmd(&other, &["import", exported.join("datapackage.json").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let again = db.dir.path().join("export2");
    let (code, _, err) = directory_cmd(&other, &["export", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read(&again), read(&exported));
    for file in ["service.csv", "schedule.csv", "attribute.csv"] {
        assert_eq!(
            std::fs::read_to_string(again.join(file)).unwrap(),
            std::fs::read_to_string(exported.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[tokio::test]
async fn a_bad_datapackage_is_rejected_whole_with_every_problem() {
    let db = fresh_database().await;
    let (code, _, err) = directory_cmd(&db, &["import", fixture("good").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = directory_cmd(&db, &["import", fixture("bad").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "service.csv: row 3: column status: \"open\" is not one of",
        "service.csv: row 3: column organization_id: no organization has id \"9a1f6a52-0001-4c1e-9d6f-00000000dead\"",
        "service.csv: row 4: column name: required value is missing",
        "location.csv: row 2: column latitude: \"145.4637\" is out of range",
        "schedule.csv: row 2: column byday: \"XX\" is not a day",
        "schedule.csv: row 3: column timezone: \"Europe/Roma\" is not a time zone name",
        "schedule.csv: row 3: column closes_at: \"25:30\" is not a time",
        "phone.csv: row 3: column id: duplicate id",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("import rejected: 8 problem(s)"), "{err}");
    // The good directory is still there, untouched.
    assert_eq!(service_count(&db).await, 3);
}

#[tokio::test]
async fn a_flat_csv_imports_and_a_bad_one_is_rejected_whole() {
    let db = fresh_database().await;
    let (code, out, err) = directory_cmd(&db, &["import", fixture("flat_bad.csv").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "flat_bad.csv: row 3: column town: \"Atlantide\" is not an Italian comune",
        "flat_bad.csv: row 4: column areas: \"trasporti\" is not an area",
        "flat_bad.csv: row 4: column cap: \"1012\" is not a CAP",
        "flat_bad.csv: row 4: column email: \"not-an-email\" is not an e-mail address",
        "flat_bad.csv: row 5: column organization: required value is missing",
        "flat_bad.csv: row 5: column languages: \"français\" is not a language code",
        "flat_bad.csv: row 5: column hours:",
        "flat_bad.csv: row 6: column address: required value is missing",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("import rejected: 8 problem(s)"), "{err}");
    assert_eq!(service_count(&db).await, 0, "nothing imported, not even the good row");

    let (code, out, err) = directory_cmd(&db, &["import", fixture("flat_good.csv").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 3 services"), "{out}");
    let data = read_path(&fixture("flat_good.csv")).unwrap().1;
    let docs = console::directory::documents::service_docs(&data, ivr::geo::Gazetteer::embedded());
    let castello = docs.iter().find(|d| d.name == "Centro interculturale").unwrap();
    assert_eq!(&*castello.town, "Città di Castello");
    assert_eq!(castello.hours.ranges.len(), 2);
    assert!(castello.point.is_some());
    // The same file again: the same ids.
    assert_eq!(read(&fixture("flat_good.csv")), data.canonical());
}

#[test]
fn generate_writes_a_deterministic_datapackage() {
    let dir = tempfile::tempdir().unwrap();
    for out in ["a", "b"] {
        let (code, stdout, err) = run_helpline(
            helpline(dir.path()).args(["directory", "generate", "--count", "120", "--seed", "5", out]),
            "",
        );
        assert_eq!(code, 0, "{stdout}{err}");
    }
    let a = read(&dir.path().join("a"));
    assert_eq!(a.rows("service").len(), 120);
    assert_eq!(a, read(&dir.path().join("b")));
}

async fn load_good(app: &crate::helpers::TestApp) {
    let (_, data) = read_path(&fixture("good")).unwrap();
    app.state.directory.replace(&data).await.unwrap();
}

/// The first admin's session cookie of each app (one sign-in per app).
static COOKIES: std::sync::Mutex<Vec<(std::net::SocketAddr, String)>> = std::sync::Mutex::new(Vec::new());

/// Forgets the app's session: the next [`get`] signs in again (at the app's clock now; a session
/// lives 12 hours of that clock).
fn sign_in_again(app: &crate::helpers::TestApp) {
    COOKIES.lock().unwrap().retain(|(a, _)| *a != app.addr);
}

/// A GET as the first admin (the directory's API needs a signed-in user; one sign-in per app).
async fn get(app: &crate::helpers::TestApp, path: &str) -> (u16, Value) {
    let known = COOKIES.lock().unwrap().iter().find(|(a, _)| *a == app.addr).map(|(_, c)| c.clone());
    let cookie = match known {
        Some(c) => c,
        None => {
            let s = crate::console_client::first_admin(app).await;
            COOKIES.lock().unwrap().push((app.addr, s.cookie.clone()));
            s.cookie
        }
    };
    let r = app.client.get(app.url(path)).header("cookie", cookie).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn search_api_answers_in_hsds_pages() {
    let app = spawn_app().await;
    load_good(&app).await;
    let (status, body) = get(&app, "/api/services/search?q=medi").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_items"], 2);
    assert_eq!(body["total_pages"], 1);
    assert_eq!(body["page_number"], 1);
    assert_eq!(body["first_page"], true);
    assert_eq!(body["last_page"], true);
    assert_eq!(body["empty"], false);
    assert_eq!(body["area_counts"]["mediazione"], 2);
    assert_eq!(body["area_counts"]["lingua"], 1);

    // Accents, area, language, position by comune name, CAP and lat,lng.
    let (_, body) = get(&app, "/api/services/search?q=citta&area=mediazione").await;
    assert_eq!(body["total_items"], 1, "{body}");
    assert_eq!(body["contents"][0]["name"], "Mediatore culturale di strada");
    assert_eq!(body["area_counts"]["lingua"], 2, "{body}");
    let (_, body) = get(&app, "/api/services/search?lang=ar").await;
    assert_eq!(body["contents"][0]["name"], "Sportello mediazione interculturale");
    let (_, body) = get(&app, "/api/services/search?near=Milano&radius_km=5").await;
    assert_eq!(body["total_items"], 1, "{body}");
    assert!(body["contents"][0]["distance_km"].as_f64().unwrap() < 5.0);
    let (_, body) = get(&app, "/api/services/search?near=24129&radius_km=3").await;
    assert_eq!(body["total_items"], 2, "{body}");
    let (_, body) = get(&app, "/api/services/search?near=45.6983,9.6773&radius_km=1&per_page=1&page=2").await;
    assert_eq!(body["total_items"], 2, "{body}");
    assert_eq!(body["total_pages"], 2);
    assert_eq!(body["last_page"], true);
    assert_eq!(body["contents"].as_array().unwrap().len(), 1);
    let (_, body) = get(&app, "/api/services/search?q=nulla%20di%20simile").await;
    assert_eq!(body["empty"], true);
    assert_eq!(body["total_items"], 0);
    let (status, _) = get(&app, "/api/services/search?open_now=true").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn bad_search_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, param) in [
        ("area=trasporti", "area"),
        ("lang=arabic", "lang"),
        ("near=Atlantide", "near"),
        ("near=99999", "near"),
        ("near=95.0,9.0", "near"),
        ("near=Milano&radius_km=abc", "radius_km"),
        ("near=Milano&radius_km=-3", "radius_km"),
        ("radius_km=5", "radius_km"),
        ("open_now=maybe", "open_now"),
        ("page=0", "page"),
        ("per_page=1000", "per_page"),
    ] {
        let (status, body) = get(&app, &format!("/api/services/search?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].as_str().unwrap().contains(&format!("parameter {param}")), "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_service_is_served_whole_in_hsds_shape() {
    let app = spawn_app().await;
    load_good(&app).await;
    let (status, s) = get(&app, "/api/services/9a1f6a52-0002-4c1e-9d6f-000000000001").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["name"], "Sportello mediazione interculturale");
    assert_eq!(s["organization"]["name"], "Comune di Milano");
    assert_eq!(s["phones"][0]["number"], "+39 02 8846 1234");
    assert_eq!(s["schedules"][0]["byday"], "MO,TU,WE,TH,FR");
    assert_eq!(s["schedules"][0]["opens_at"], "09:00");
    assert_eq!(s["languages"].as_array().unwrap().len(), 2);
    assert_eq!(s["languages"][0]["note"], "mediatrice il martedì");
    assert_eq!(s["attributes"][0]["taxonomy_term"]["code"], "mediazione");
    let location = &s["service_at_locations"][0]["location"];
    assert_eq!(location["latitude"], 45.4637);
    assert_eq!(location["addresses"][0]["postal_code"], "20123");
    let (status, body) = get(&app, "/api/services/no-such-service").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn the_index_follows_an_import_made_by_another_process() {
    let app = spawn_app().await;
    let (_, body) = get(&app, "/api/services/search").await;
    assert_eq!(body["total_items"], 0);
    // The CLI runs beside the server, which is in this test's process: on a blocking thread, so
    // the runtime keeps serving meanwhile. Waiting for the CLI on the runtime's only thread froze
    // the server mid-transaction whenever the CLI came during its start-up writes (the retention
    // purge, the KPI settle): the CLI then waited its whole patience for a lock that could not be
    // released.
    let mut cmd = directory_command(&app.db, &["import", fixture("flat_good.csv").to_str().unwrap()]);
    let (code, _, err) = tokio::task::spawn_blocking(move || run_helpline(&mut cmd, "")).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(&app, "/api/services/search?q=sportello%20casa").await;
        if body["total_items"] == 1 {
            assert_eq!(body["contents"][0]["town"], "Torino");
            break;
        }
        assert!(Instant::now() < deadline, "the index did not follow the import: {body}");
        // Polls until the deadline: the server notices the other process's import on its watcher's tick.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn serve_loads_the_demo_directory_on_first_start() {
    let db = fresh_database().await;
    let (code, _, err) = crate::helpers::run_helpline(
        crate::helpers::helpline(db.dir.path()).env("HELPLINE_DATABASE_URL", &db.url).args([
            "user",
            "add",
            "--name",
            "dirtest",
            "--role",
            "operator",
            "--password-stdin",
        ]),
        "directory test password\n",
    );
    assert_eq!(code, 0, "{err}");
    let server = ServeProcess::start(db.dir.path(), &db.url);
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r = client
        .post(server.url("/api/session"))
        .json(&serde_json::json!({"name": "dirtest", "password": "directory test password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value =
        client.get(server.url("/api/services/search?area=salute")).send().await.unwrap().json().await.unwrap();
    let total: u64 = body["area_counts"].as_object().unwrap().values().filter_map(Value::as_u64).sum();
    assert!(total >= 8000, "{body}");
    assert!(body["total_items"].as_u64().unwrap() >= 8000 / 6, "{body}");
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
}

/// The HTTP search judges "open now" (the filter and each service's `open_now`) at the server's
/// injected clock — here the test's `ManualClock` — not at the machine's time.
#[tokio::test]
async fn the_http_search_judges_open_now_by_the_injected_clock() {
    use chrono::TimeZone;
    let app = spawn_app().await;
    load_good(&app).await;
    // November: Rome is UTC+1.
    let utc = |day, hour| chrono::Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single().unwrap();
    for (at, open) in [
        // Tuesday 10:00 in Rome: the weekday mornings.
        (utc(24, 9), vec!["Sportello mediazione interculturale"]),
        // Tuesday 19:00: the Tuesday and Thursday evenings.
        (utc(24, 18), vec!["Corsi di italiano per adulti"]),
        // Wednesday 03:00: nothing.
        (utc(25, 2), vec![]),
        // Saturday 23:00: the Friday and Saturday nights.
        (utc(28, 22), vec!["Mediatore culturale di strada"]),
    ] {
        app.clock.set(at);
        sign_in_again(&app);
        let names = |page: &SearchPage| {
            let mut n: Vec<String> = page.contents.iter().map(|s| s.name.clone()).collect();
            n.sort();
            n
        };
        // Sessions age by the same clock: sign in again at each instant (days apart).
        let cookie = crate::console_client::first_admin(&app).await.cookie;
        let get = |path: &'static str| {
            let request = app.client.get(app.url(path)).header("cookie", cookie.clone());
            async move {
                let r = request.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, body) = get("/api/services/search?open_now=true").await;
        assert_eq!(status, 200, "{body}");
        let filtered: SearchPage = serde_json::from_value(body).unwrap();
        assert_eq!(names(&filtered), open, "open now at {at}");
        let (_, body) = get("/api/services/search").await;
        let all: SearchPage = serde_json::from_value(body).unwrap();
        assert_eq!(all.total_items, 3);
        let flagged: Vec<&str> = all.contents.iter().filter(|s| s.open_now).map(|s| s.name.as_str()).collect();
        assert_eq!(flagged, open, "each service's open_now at {at}");
    }
    app.stop().await;
}

/// The console socket's `search` and `GET /api/services/search` are one search: the same
/// query at the same (injected) time gives the same services, counts and pages.
#[tokio::test]
async fn the_socket_search_answers_as_the_http_search() {
    use crate::console_client::{connect, until, ClientMessage, Search, ServerMessage};
    use chrono::TimeZone;
    let app = spawn_app().await;
    load_good(&app).await;
    // Tuesday 19:00 in Rome: only the evening course is open.
    app.clock.set(chrono::Utc.with_ymd_and_hms(2026, 11, 24, 18, 0, 0).single().unwrap());
    let (status, body) = get(&app, "/api/services/search?q=medi&near=Milano&open_now=false").await;
    assert_eq!(status, 200, "{body}");
    let http: SearchPage = serde_json::from_value(body).unwrap();
    let (_, body) = get(&app, "/api/services/search?open_now=true").await;
    let http_open: SearchPage = serde_json::from_value(body).unwrap();

    let mut ws = connect(app.addr, &crate::console_client::first_admin(&app).await).await;
    ws.hello(0).await;
    let search = Search { qseq: 1, q: "medi".into(), near: Some("Milano".into()), ..Search::default() };
    ws.send(ClientMessage::Search(search)).await;
    let socket = until!(ws, ServerMessage::SearchResults(r) => r);
    assert_eq!(socket.qseq, 1);
    assert_eq!(socket.total, http.total_items);
    assert_eq!((socket.page, socket.total_pages), (http.page_number, http.total_pages));
    assert_eq!(socket.counts, http.area_counts);
    assert_eq!(socket.results, http.contents, "the same services, in the same HSDS shape");
    assert!(socket.results.iter().all(|s| s.distance_km.is_some()), "{socket:?}");

    ws.send(ClientMessage::Search(Search { qseq: 2, open_now: Some(true), ..Search::default() })).await;
    let socket = until!(ws, ServerMessage::SearchResults(r) => r);
    assert_eq!(socket.results, http_open.contents);
    assert_eq!(socket.results.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["Corsi di italiano per adulti"]);
    app.stop().await;
}

/// The file each line of a report names (`organizations.csv` in
/// `organizations.csv (resource organization): row 2: …`, or after `skipped: `/`cleared: `).
fn files_named(report: &str) -> Vec<String> {
    report
        .lines()
        .map(|l| l.trim_start_matches("skipped: ").trim_start_matches("cleared: "))
        .filter_map(|l| l.split([':', ' ']).next())
        .filter(|f| f.ends_with(".csv") || f.ends_with(".json"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_official_hsds_example_is_refused_naming_its_files_and_imported_with_partial() {
    let example = fixture("hsds3-example");
    let db = fresh_database().await;
    let (code, out, err) = directory_cmd(&db, &["import", example.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("import rejected: 7 problem(s)"), "{err}");
    for expected in [
        "organizations.csv (resource organization): row 2: column parent_organization_id: no organization has id",
        "locations.csv (resource location): row 2: column latitude: \"100\" is out of range",
        "schedules.csv (resource schedule): row 2: column timezone: \"3\" is not a time zone name",
        "taxonomy_terms.csv (resource taxonomy_term): row 2: column taxonomy_id: no taxonomy has id",
        "attributes.csv (resource attribute): row 2: column link_entity:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let named = files_named(&err);
    assert_eq!(named.len(), 7, "{err}");
    for file in &named {
        assert!(example.join(file).is_file(), "the report names {file}, which is not in the package:\n{err}");
    }
    assert_eq!(service_count(&db).await, 0, "all or nothing: nothing imported");

    // --partial: the same report, what was skipped and cleared, and the rest imported.
    let (code, out, err) = directory_cmd(&db, &["import", "--partial", example.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 1 services") && out.contains("1 row(s) skipped"), "{out}");
    assert!(
        err.contains(
            "skipped: attributes.csv (resource attribute): row 2 (id \"ae58cc39-8b70-4ab1-8aea-786882e5ac8e\")"
        ),
        "{err}"
    );
    assert!(err.contains("cleared: locations.csv (resource location): row 2: column latitude"), "{err}");
    for file in files_named(&err) {
        assert!(example.join(&file).is_file(), "the report names {file}:\n{err}");
    }
    assert_eq!(service_count(&db).await, 1);

    // Its valid rows are searchable: the service, by its words and by its organization's.
    let app = crate::helpers::spawn_app_on(db).await;
    for q in ["counselling", "example%20organization"] {
        let (status, body) = get(&app, &format!("/api/services/search?q={q}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["contents"][0]["name"], "Community Counselling", "{q}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_partial_import_skips_the_rows_that_depend_on_skipped_ones() {
    let db = fresh_database().await;
    let (code, out, err) = directory_cmd(&db, &["import", "--partial", fixture("bad").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // The same complete report as without --partial ...
    assert!(err.contains("service.csv: row 3: column status: \"open\" is not one of"), "{err}");
    assert!(err.contains("phone.csv: row 3: column id: duplicate id"), "{err}");
    // ... then the rows left out: the bad ones, and what hangs on them, down the references.
    for expected in [
        "skipped: service.csv: row 3 (id \"9a1f6a52-0002-4c1e-9d6f-000000000002\"): column status",
        "skipped: service.csv: row 4 (id \"9a1f6a52-0002-4c1e-9d6f-000000000003\"): column name: required value is missing",
        "skipped: service_at_location.csv: row 3 (id \"9a1f6a52-0004-4c1e-9d6f-000000000002\"): depends on service \"9a1f6a52-0002-4c1e-9d6f-000000000002\"",
        "skipped: schedule.csv: row 3 (id \"9a1f6a52-0007-4c1e-9d6f-000000000002\"): depends on service",
        "skipped: attribute.csv: row 3 (id \"9a1f6a52-0009-4c1e-9d6f-000000000002\"): depends on service",
        "skipped: phone.csv: row 3 (id \"9a1f6a52-0006-4c1e-9d6f-000000000001\"): column id: duplicate id",
        "cleared: location.csv: row 2: column latitude",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(out.contains("imported 1 services") && out.contains("11 row(s) skipped"), "{out}");
    assert_eq!(service_count(&db).await, 1);

    // Without --partial the same package is still refused whole, and what is there stays.
    let (code, _, err) = directory_cmd(&db, &["import", fixture("bad").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(service_count(&db).await, 1);
}
