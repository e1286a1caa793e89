//! The HTTP edge against strangers: connections that send their headers or body too slowly are
//! closed, bodies over the limit get a JSON 413, and past the connection limit new connections
//! wait instead of taking file descriptors.

use crate::helpers::{fresh_database, spawn_app, spawn_app_with};
use serde_json::Value;
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
    let big = vec![b'x'; 3 * 1024 * 1024];
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
