//! Migrations on the backend under test: applied at start, idempotent, and the call log is
//! append-only.

use crate::helpers::{fresh_database, helpline, run_helpline, spawn_app};
use console::db::Db;

#[tokio::test]
async fn migrations_create_the_foundation_tables_and_are_idempotent() {
    let app = spawn_app().await;
    let db = &app.state.db;
    for table in ["server_settings", "users", "sessions", "calls", "call_events"] {
        let n: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await
            .unwrap_or_else(|e| panic!("table {table}: {e}"));
        assert!(n.0 >= 0);
    }
    // Running them again changes nothing and does not fail.
    db.migrate().await.expect("second migration run");
    let applied: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(db.pool()).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite")).unwrap().count();
    assert_eq!(applied.0 as usize, files);
    app.stop().await;
}

#[tokio::test]
async fn call_events_are_append_only() {
    let app = spawn_app().await;
    let pool = app.state.db.pool();
    sqlx::query(
        "INSERT INTO calls (call_id, channel, started_at, state, updated_at) VALUES ('c1', 'webhook', 1, '{}', 1)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ('c1', 1, 1, 'started', '{}')")
        .execute(pool)
        .await
        .unwrap();
    let err = sqlx::query("UPDATE call_events SET kind = 'forged' WHERE call_id = 'c1'")
        .execute(pool)
        .await
        .expect_err("an UPDATE of the call log must fail");
    assert!(err.to_string().contains("append-only"), "{err}");
    let dup = sqlx::query("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ('c1', 1, 2, 'again', '{}')")
        .execute(pool)
        .await;
    assert!(dup.is_err(), "a second event with the same sequence number must be refused");
    app.stop().await;
}

#[tokio::test]
async fn helpline_migrate_applies_migrations_from_the_cli() {
    let db = fresh_database().await;
    let (code, out, err) =
        run_helpline(helpline(db.dir.path()).arg("migrate").env("HELPLINE_DATABASE_URL", &db.url), "");
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let backend = if db.is_postgres() { "postgres" } else { "sqlite" };
    assert!(out.contains(&format!("migrations applied ({backend})")), "{out}");
    let conn = Db::connect(&db.url).await.unwrap();
    let users: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(conn.pool()).await.unwrap();
    assert_eq!(users.0, 0, "migrate creates no users");
}

/// Migration 0008 moves the answers kept for retries into the call log: a database written before
/// it keeps every stored answer, on the last step of the request it answered.
#[tokio::test]
async fn stored_answers_move_into_the_call_log() {
    let db = fresh_database().await;
    let conn = Db::connect(&db.url).await.unwrap();
    let folder = if db.is_postgres() { "postgres" } else { "sqlite" };
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).join(folder);
    let mut before = sqlx::migrate::Migrator::new(dir).await.unwrap();
    before.migrations = before.migrations.iter().filter(|m| m.version <= 7).cloned().collect::<Vec<_>>().into();
    before.run(conn.pool()).await.unwrap();

    let pool = conn.pool();
    sqlx::query(
        "INSERT INTO calls (call_id, channel, started_at, state, updated_at) VALUES ('c1', 'webhook', 1, '{}', 1)",
    )
    .execute(pool)
    .await
    .unwrap();
    for seq in 1..=4i64 {
        sqlx::query("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ('c1', $1, $1, 'digits', '{}')")
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
    }
    // The first request made steps 1 and 2 (a lookup), the second step 3; step 4 was the server's.
    for (key, fingerprint, step) in [("json:1", "f1", 2i64), ("json:2", "f2", 3)] {
        sqlx::query(
            "INSERT INTO call_responses (call_id, key, fingerprint, response, created_at) VALUES ('c1', $1, $2, $3, 1)",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(format!(r#"{{"step":{step},"actions":[],"ended":false}}"#))
        .execute(pool)
        .await
        .unwrap();
    }

    conn.migrate().await.unwrap();
    type KeyedEvent = (i64, Option<String>, Option<String>, Option<String>);
    let rows: Vec<KeyedEvent> = sqlx::query_as(
        "SELECT seq, request_key, fingerprint, answer FROM call_events WHERE call_id = 'c1' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let answer = |step: i64| Some(format!(r#"{{"step":{step},"actions":[],"ended":false}}"#));
    // (Migration 0011 then erases the fingerprints, unkeyed until it.)
    assert_eq!(
        rows,
        vec![
            (1, None, None, None),
            (2, Some("json:1".into()), Some("erased".into()), answer(2)),
            (3, Some("json:2".into()), Some("erased".into()), answer(3)),
            (4, None, None, None),
        ]
    );
    assert!(sqlx::query("SELECT 1 FROM call_responses").fetch_all(pool).await.is_err(), "the old table is gone");
    let err = sqlx::query("UPDATE call_events SET answer = 'forged' WHERE call_id = 'c1'")
        .execute(pool)
        .await
        .expect_err("the call log is still append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// The call log's filter indexes hold only calls that have the value (0009); each filter of the
/// log (`column = value`, newest first) must still be served by its own index on both backends.
/// And the live KPI counts read only the calls not yet settled, through their partial index (0010).
#[tokio::test]
async fn the_call_log_filters_and_the_live_kpis_use_their_partial_indexes() {
    let app = spawn_app().await;
    let db = &app.state.db;
    let postgres = db.backend() == console::db::Backend::Postgres;
    let mut conn = db.pool().acquire().await.unwrap();
    if postgres {
        // An empty table would be scanned whatever the indexes: ask for the plan with an index.
        sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    }
    let mut cases: Vec<(String, String)> = [
        ("language", "calls_log_language"),
        ("area", "calls_log_area"),
        ("outcome", "calls_log_outcome"),
        ("town", "calls_log_town"),
        ("disposition", "calls_log_disposition"),
        ("operator_id", "calls_log_operator"),
    ]
    .into_iter()
    .map(|(column, index)| {
        let value = if column == "operator_id" { "7" } else { "'x'" };
        let query = format!(
            "SELECT c.call_id FROM calls c WHERE c.{column} = {value} AND c.started_at < 9 \
             ORDER BY c.started_at DESC, c.call_id DESC LIMIT 50"
        );
        (query, index.to_owned())
    })
    .collect();
    let live = console::supervisor::store::live_sql(db.backend()).replace("$1", "0").replace("$2", "9");
    cases.push((live, "calls_kpi_unsettled".into()));
    for (query, index) in cases {
        let plan: Vec<String> = if postgres {
            sqlx::query_as::<_, (String,)>(&format!("EXPLAIN {query}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .into_iter()
                .map(|(line,)| line)
                .collect()
        } else {
            sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {query}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect()
        };
        assert!(plan.iter().any(|line| line.contains(&index)), "{index}: {query}: {plan:?}");
    }
    drop(conn);
    app.stop().await;
}
