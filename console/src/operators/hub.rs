//! The hub: durable server→page messages and their fan-out.
//!
//! A message is written to `console_messages` inside the transaction that made the change (see
//! [`begin`], which serialises those transactions so seq order is commit order), and only after
//! the commit does the node's pump read it back by seq and hand it to a `broadcast` channel that
//! every socket of this node listens to. On PostgreSQL the writing transaction also runs
//! `NOTIFY helpline_console`, delivered at commit; every node LISTENs and pumps what other nodes
//! wrote. Architecture invariant: nothing reaches a socket that is not in the table first.

use super::protocol::{Frame, ServerMessage, STORED};
use crate::db::listen::Heard;
use crate::db::users::Role;
use crate::db::{Backend, Db, DbError};
use crate::tasks::Tasks;
use serde_json::{Map, Value};
use sqlx::Any;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};

/// The PostgreSQL channel nodes announce new messages on (an empty payload), and revoked
/// sessions ([`sessions::REVOKED_PREFIX`] and a user id, from a node or from the CLI).
pub use crate::db::sessions::NOTIFY_CHANNEL as CHANNEL;
use crate::db::sessions::{self, REVOKED_PREFIX as REVOKED};

/// A transaction that may write console messages.
pub type Tx = sqlx::Transaction<'static, Any>;

/// A stored message, ready to send.
#[derive(Debug)]
pub struct Message {
    pub seq: i64,
    pub audience: String,
    /// The JSON text frame (`type` and `seq` included); cloning shares the bytes.
    pub frame: axum::extract::ws::Utf8Bytes,
}

impl Message {
    /// Whether a user with this id and role receives it.
    pub fn for_user(&self, user_id: i64, role: Role) -> bool {
        audience_matches(&self.audience, user_id, role)
    }
}

/// `all`, `user:<id>` and `role:supervisor`, comma-separated.
pub fn audience_matches(audience: &str, user_id: i64, role: Role) -> bool {
    audience.split(',').any(|a| match a {
        "all" => true,
        "role:supervisor" => role.includes(Role::Supervisor),
        other => other.strip_prefix("user:").and_then(|id| id.parse::<i64>().ok()) == Some(user_id),
    })
}

/// To the operator and every supervisor.
pub fn user_and_supervisors(user_id: i64) -> String {
    format!("user:{user_id},role:supervisor")
}

pub fn user(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// Something for the sockets that is not a page message.
#[derive(Debug, Clone)]
pub enum Control {
    /// Every session of this user was deleted: close their sockets.
    SessionsRevoked { user_id: i64 },
}

struct Inner {
    db: Db,
    messages: broadcast::Sender<Arc<Message>>,
    control: broadcast::Sender<Control>,
    /// Wakes the pump (a local commit wrote messages).
    wake: Notify,
    /// The newest seq handed to the broadcast.
    pumped: AtomicI64,
    /// Woken when another node announced messages (PostgreSQL), so the ACD looks again too.
    remote_change: Arc<Notify>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

impl Hub {
    pub fn new(db: Db) -> Hub {
        let (messages, _) = broadcast::channel(4096);
        let (control, _) = broadcast::channel(256);
        Hub(Arc::new(Inner {
            db,
            messages,
            control,
            wake: Notify::new(),
            pumped: AtomicI64::new(0),
            remote_change: Arc::new(Notify::new()),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.0.messages.subscribe()
    }

    pub fn control(&self) -> broadcast::Receiver<Control> {
        self.0.control.subscribe()
    }

    pub fn send_control(&self, c: Control) {
        let _ = self.0.control.send(c);
    }

    /// Every session of this user was deleted: their sockets close on this node at once, and on
    /// PostgreSQL on the other nodes too (a notification they listen for), not at their next
    /// periodic session check.
    pub async fn revoke_sessions(&self, user_id: i64) -> Result<(), DbError> {
        self.send_control(Control::SessionsRevoked { user_id });
        sessions::announce_revoked(&self.0.db, user_id).await
    }

    /// Notified when another node wrote messages.
    pub fn remote_change(&self) -> Arc<Notify> {
        self.0.remote_change.clone()
    }

    /// Call after committing a transaction that wrote messages.
    pub fn committed(&self) {
        self.0.wake.notify_one();
    }

    /// Makes the pump start after the newest message already stored (older ones reach pages only
    /// by replay). Called while the server is built, before anything can write messages.
    pub async fn skip_stored(&self) -> Result<(), DbError> {
        let (newest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM console_messages").fetch_one(self.0.db.pool()).await?;
        self.0.pumped.store(newest.unwrap_or(0), Ordering::SeqCst);
        Ok(())
    }

    /// Starts the pump (and on PostgreSQL the listener).
    pub fn start(&self, database_url: &str, tasks: &Tasks) {
        let hub = self.clone();
        tasks.spawn_until_stopped("console hub pump", hub.pump());
        if self.0.db.backend() == Backend::Postgres {
            tasks.spawn_until_stopped("console hub listener", self.clone().listen(database_url.to_owned()));
        }
    }

    async fn pump(self) {
        loop {
            // A missed wake-up costs at most this long.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.0.wake.notified()).await;
            if let Err(e) = self.pump_once().await {
                tracing::warn!(error = %e, "console message pump failed");
            }
        }
    }

    async fn pump_once(&self) -> Result<(), DbError> {
        loop {
            let after = self.0.pumped.load(Ordering::SeqCst);
            let batch = read_after(&self.0.db, after, 1000).await?;
            let Some(last) = batch.last().map(|m| m.seq) else { return Ok(()) };
            let full = batch.len() == 1000;
            for m in batch {
                let _ = self.0.messages.send(Arc::new(m));
            }
            self.0.pumped.store(last, Ordering::SeqCst);
            if !full {
                return Ok(());
            }
        }
    }

    /// PostgreSQL: LISTEN (`db::listen`); a notification wakes the pump and the ACD, or tells
    /// the sockets that a user's sessions were revoked.
    async fn listen(self, url: String) {
        crate::db::listen::listen(url, CHANNEL, |heard| match heard {
            // Anything written while we were not listening.
            Heard::Listening => self.0.wake.notify_one(),
            Heard::Payload(payload) => match payload.strip_prefix(REVOKED).map(str::parse::<i64>) {
                // (This node's own arrives too: its sockets check again.)
                Some(Ok(user_id)) => self.send_control(Control::SessionsRevoked { user_id }),
                Some(Err(_)) => tracing::warn!(payload, "unreadable console notification"),
                None => {
                    self.0.wake.notify_one();
                    self.0.remote_change.notify_one();
                }
            },
        })
        .await
    }
}

/// Begins a transaction that may write messages: it updates the `console_lock` row first (one
/// console writer at a time, across nodes).
pub async fn begin(db: &Db) -> Result<Tx, DbError> {
    // A turn at SQLite's write lock: under call load the console does not sleep behind the
    // calls' writer (`crate::db::turns`).
    let turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE console_lock SET n = n + 1 WHERE id = 1").execute(&mut *tx).await?;
    drop(turn);
    Ok(tx)
}

/// A message as stored: its `type` (the `kind` column) and the rest of it (the `body`, an
/// object). Only the [`STORED`] types are stored.
pub fn split(message: &ServerMessage) -> Result<(String, Value), DbError> {
    let unstorable = |why: String| DbError::Corrupt(format!("console message: {why}"));
    let Value::Object(mut body) = serde_json::to_value(message).map_err(|e| unstorable(e.to_string()))? else {
        return Err(unstorable("not an object".into()));
    };
    let kind = match body.remove("type") {
        Some(Value::String(kind)) if STORED.contains(&kind.as_str()) => kind,
        other => return Err(unstorable(format!("type {other:?} is not one the hub stores"))),
    };
    Ok((kind, Value::Object(body)))
}

/// Stores a message in the transaction; returns its seq.
pub async fn write(tx: &mut Tx, audience: &str, message: &ServerMessage, now_ms: i64) -> Result<i64, DbError> {
    let (kind, body) = split(message)?;
    let text = body.to_string();
    let (seq,): (i64,) =
        sqlx::query_as("INSERT INTO console_messages (audience, kind, body, at) VALUES ($1, $2, $3, $4) RETURNING seq")
            .bind(audience)
            .bind(kind)
            .bind(text)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?;
    Ok(seq)
}

/// Commits a transaction that wrote messages and wakes the pumps (this node's directly, the
/// others' by NOTIFY, delivered at commit).
pub async fn commit(hub: &Hub, mut tx: Tx, wrote: bool) -> Result<(), DbError> {
    if wrote && hub.db().backend() == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    if wrote {
        hub.committed();
    }
    Ok(())
}

/// Builds the frame: the stored message, read back as the protocol's type, with its `seq`.
fn frame(seq: i64, kind: &str, body: &str) -> Result<axum::extract::ws::Utf8Bytes, DbError> {
    let corrupt = |e: serde_json::Error| DbError::Corrupt(format!("console message {seq}: {e}"));
    let mut obj: Map<String, Value> = serde_json::from_str(body).map_err(corrupt)?;
    obj.insert("type".into(), Value::String(kind.to_owned()));
    let message: ServerMessage = serde_json::from_value(Value::Object(obj)).map_err(corrupt)?;
    Ok(Frame { seq: Some(seq), message }.to_text().into())
}

/// Messages after `after`, in order (at most `limit`).
pub async fn read_after(db: &Db, after: i64, limit: i64) -> Result<Vec<Message>, DbError> {
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT seq, audience, kind, body FROM console_messages WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(db.pool())
            .await?;
    rows.into_iter()
        .map(|(seq, audience, kind, body)| Ok(Message { seq, frame: frame(seq, &kind, &body)?, audience }))
        .collect()
}

/// The newest seq stored.
pub async fn newest(db: &Db) -> Result<i64, DbError> {
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM console_messages").fetch_one(db.pool()).await?;
    Ok(n.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_is_sent_as_it_was_written_with_its_seq() {
        use crate::operators::protocol::WithdrawReason;
        let m = ServerMessage::OfferWithdrawn { offer_id: 3, call_id: "c1".into(), reason: WithdrawReason::Expired };
        let (kind, body) = split(&m).unwrap();
        assert_eq!(kind, "offer_withdrawn");
        assert_eq!(body, serde_json::json!({"offer_id": 3, "call_id": "c1", "reason": "expired"}), "no type stored");
        let text = frame(12, &kind, &body.to_string()).unwrap();
        assert_eq!(serde_json::from_str::<Frame>(text.as_str()).unwrap(), Frame { seq: Some(12), message: m });
        assert!(split(&ServerMessage::Pong { r#ref: None }).is_err(), "replies are not stored");
    }

    #[test]
    fn audiences() {
        assert!(audience_matches("all", 1, Role::Operator));
        assert!(audience_matches("user:7", 7, Role::Operator));
        assert!(!audience_matches("user:7", 17, Role::Operator));
        assert!(!audience_matches("user:7,role:supervisor", 8, Role::Operator));
        assert!(audience_matches("user:7,role:supervisor", 8, Role::Supervisor));
        assert!(audience_matches("role:supervisor", 8, Role::Admin));
    }
}
