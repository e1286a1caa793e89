//! The HTTP edge against strangers: connections that send their headers or body too slowly are
//! closed, bodies over the limit get a JSON 413, past the connection limit new connections wait
//! instead of taking file descriptors, and when the calls' writers are stuck the webhook answers
//! 503 with `Retry-After` instead of queueing without end or waiting for ever.

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes): what it sent, and whether it
/// closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let app = spawn_app_with(fresh_database().await, |s| {
        s.http_header_timeout_secs = 1;
        s.http_body_timeout_secs = 1;
    })
    .await;

    // Half a request line, then nothing: closed after the header timeout, well before our limit.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a connection stuck in its headers is closed");

    // A connection that says nothing at all is closed too (the idle timeout).
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(closed, "an idle connection is closed");

    // Headers promising a body that never comes: answered with an error and not held open.
    let mut body = TcpStream::connect(app.addr).await.unwrap();
    let head =
        "POST /voice/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    body.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut body, Duration::from_secs(10)).await;
    assert!(closed || answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    // The server still answers everyone else.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_json_413() {
    let app = spawn_app().await;
    let big = vec![b'x'; console::webhook::json::MAX_EVENT_BYTES + 1];
    let r = app.post_signed("application/json", big).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large", "{body}");
    assert!(body["message"].as_str().unwrap().contains("larger than"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_wait_their_turn() {
    let app = spawn_app_with(fresh_database().await, |s| s.http_max_connections = 2).await;
    // Two connections that hold their slots (an unfinished request each).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(app.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(c);
    }
    let client = reqwest::Client::new();
    let third = tokio::spawn({
        let url = app.url("/healthz");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // While both slots are held, the third is not served ...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "the third connection waits while the limit is reached");
    // ... and it is, as soon as one slot frees.
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), third).await.expect("served after a slot freed");
    assert_eq!(status.unwrap().unwrap(), 200);
    app.stop().await;
}

/// Holds the lock the calls' writers need, from a connection of its own: SQLite's write lock, or
/// on PostgreSQL an exclusive lock on `calls`. Released by [`CallsLock::release`].
enum CallsLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl CallsLock {
    async fn take(app: &TestApp) -> CallsLock {
        if app.db.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE").execute(&mut c).await.unwrap();
            CallsLock::Postgres(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
            CallsLock::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            CallsLock::Sqlite(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop).unwrap(),
            CallsLock::Postgres(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop).unwrap(),
        }
    }
}

/// One event of call `id` with sequence number `seq`: `call.started` for 1, `no_input` after.
fn event_of(id: &str, seq: i64) -> Value {
    if seq == 1 {
        json!({"type": "call.started", "call_id": id, "seq": seq, "from": "+39 333 123 4512"})
    } else {
        json!({"type": "no_input", "call_id": id, "seq": seq})
    }
}

/// Sends an event as a carrier does: on a 503, again after its `Retry-After` (a few times).
async fn as_a_carrier(app: &TestApp, event: &Value) -> (u16, Value) {
    for _ in 0..5 {
        let r = app.post_signed("application/json", serde_json::to_vec(event).unwrap()).await;
        if r.status() != 503 {
            let status = r.status().as_u16();
            return (status, r.json().await.unwrap_or(Value::Null));
        }
        let (retry_after, _) = busy(r).await;
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
    }
    panic!("{event} still refused after five tries")
}

/// A 503 "busy" answer: its `Retry-After` and message.
async fn busy(r: reqwest::Response) -> (u64, String) {
    assert_eq!(r.status(), 503);
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("a 503 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    let body: Value = r.json().await.expect("a JSON error body");
    assert_eq!(body["error"], "busy", "{body}");
    (retry_after, body["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn with_the_writers_stuck_the_webhook_answers_503_with_retry_after_and_recovers() {
    const LIMIT: usize = 2;
    const DEADLINE: Duration = Duration::from_millis(1500);
    let app = spawn_app_with(fresh_database().await, |s| {
        s.call_queue_limit = LIMIT;
        s.call_deadline_ms = DEADLINE.as_millis() as u64;
    })
    .await;
    // One call, so that every request goes to the same writer on either backend.
    let id = "stuck-1";
    let lock = CallsLock::take(&app).await;

    // Six requests at once: two are taken (and wait for the lock until their deadline), the
    // other four find the queue full and are refused at once.
    let sent = std::time::Instant::now();
    let app_ref = &app;
    let answers = futures_util::future::join_all((1..=6).map(|seq| {
        let body = serde_json::to_vec(&event_of(id, seq)).unwrap();
        let app = app_ref;
        async move {
            let r = app.post_signed("application/json", body).await;
            (busy(r).await, sent.elapsed())
        }
    }))
    .await;
    let full: Vec<_> = answers.iter().filter(|((_, m), _)| m.contains("requests are waiting")).collect();
    let late: Vec<_> = answers.iter().filter(|((_, m), _)| m.contains("not written within")).collect();
    assert_eq!((full.len(), late.len()), (6 - LIMIT, LIMIT), "{answers:?}");
    for ((retry_after, _), elapsed) in &late {
        assert!(*elapsed >= DEADLINE, "answered at the deadline, not before: {elapsed:?}");
        assert!(*retry_after >= 1);
    }
    // The two that gave up still hold their places until their writer is past them: memory
    // stays bounded however many requests time out.
    let (_, message) =
        busy(app.post_signed("application/json", serde_json::to_vec(&event_of(id, 1)).unwrap()).await).await;
    assert!(message.contains("requests are waiting"), "{message}");

    // Once the lock is gone the server recovers: the carrier's retries, in order, are answered
    // (from the stored answer if the writer had committed it, afresh otherwise), and a new call
    // goes through.
    lock.release().await;
    for seq in 1..=3 {
        let (status, body) = as_a_carrier(&app, &event_of(id, seq)).await;
        assert_eq!(status, 200, "retry of seq {seq}: {body}");
    }
    let (status, body) = as_a_carrier(&app, &event_of("after-1", 1)).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
