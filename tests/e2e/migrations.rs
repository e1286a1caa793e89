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
    let (code, out, err) = run_helpline(
        helpline(db.dir.path()).arg("migrate").env("HELPLINE_DATABASE_URL", &db.url),
        "",
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let backend = if db.is_postgres() { "postgres" } else { "sqlite" };
    assert!(out.contains(&format!("migrations applied ({backend})")), "{out}");
    let conn = Db::connect(&db.url).await.unwrap();
    let users: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(conn.pool()).await.unwrap();
    assert_eq!(users.0, 0, "migrate creates no users");
}
