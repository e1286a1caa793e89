//! Operators' presence (`operator_state`): available, offered, on_call, wrap_up (timed), paused
//! with a reason, offline. Every change is written with a `presence` message to the operator and
//! the supervisors in the same transaction.

use super::hub::{self, Tx};
use super::protocol::{OperatorStatus, ServerMessage};
use crate::db::DbError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Presence as stored and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    Available,
    Offered,
    OnCall,
    WrapUp,
    Paused,
    Offline,
}

impl PresenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::Available => "available",
            PresenceState::Offered => "offered",
            PresenceState::OnCall => "on_call",
            PresenceState::WrapUp => "wrap_up",
            PresenceState::Paused => "paused",
            PresenceState::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<PresenceState> {
        Some(match s {
            "available" => PresenceState::Available,
            "offered" => PresenceState::Offered,
            "on_call" => PresenceState::OnCall,
            "wrap_up" => PresenceState::WrapUp,
            "paused" => PresenceState::Paused,
            "offline" => PresenceState::Offline,
            _ => return None,
        })
    }
}

/// One operator's presence row (with their name).
#[derive(Debug, Clone)]
pub struct OperatorPresence {
    pub id: i64,
    pub name: String,
    pub state: PresenceState,
    pub reason: Option<String>,
    pub since: i64,
    pub call_id: Option<String>,
    pub wrap_up_until: Option<i64>,
}

impl OperatorPresence {
    /// As the page gets it (`presence.operator`).
    pub fn status(&self) -> OperatorStatus {
        OperatorStatus {
            id: self.id,
            name: self.name.clone(),
            state: self.state,
            reason: self.reason.clone(),
            since: crate::clock::rfc3339(self.since),
            call_id: self.call_id.clone(),
            wrap_up_until: self.wrap_up_until.map(crate::clock::rfc3339),
        }
    }

    /// [`Self::status`] as JSON (`GET /api/operators`).
    pub fn json(&self) -> Value {
        serde_json::to_value(self.status()).unwrap_or_default()
    }
}

type Row = (i64, String, Option<String>, Option<String>, Option<i64>, Option<String>, Option<i64>);

fn from_row(row: Row) -> OperatorPresence {
    let (id, name, state, reason, since, call_id, wrap_up_until) = row;
    OperatorPresence {
        id,
        name,
        state: state.as_deref().and_then(PresenceState::parse).unwrap_or(PresenceState::Offline),
        reason,
        since: since.unwrap_or(0),
        call_id,
        wrap_up_until,
    }
}

const SELECT: &str = "SELECT u.id, u.name, s.presence, s.reason, s.since, s.call_id, s.wrap_up_until \
     FROM users u LEFT JOIN operator_state s ON s.user_id = u.id";

/// One user's presence (offline when they never connected).
pub async fn get(tx: &mut Tx, user_id: i64) -> Result<Option<OperatorPresence>, DbError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("{SELECT} WHERE u.id = $1")).bind(user_id).fetch_optional(&mut **tx).await?;
    Ok(row.map(from_row))
}

/// Everyone's presence, by name.
pub async fn all(db: &crate::db::Db) -> Result<Vec<OperatorPresence>, DbError> {
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} ORDER BY u.name")).fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A change to apply.
#[derive(Debug, Clone)]
pub struct Change {
    pub state: PresenceState,
    pub reason: Option<String>,
    pub call_id: Option<String>,
    pub wrap_up_until: Option<i64>,
    /// Restart the idle clock (they just finished something).
    pub reset_idle: bool,
}

impl Change {
    pub fn to(state: PresenceState) -> Change {
        Change { state, reason: None, call_id: None, wrap_up_until: None, reset_idle: false }
    }
}

/// Writes a presence change and its message. `only_from`: apply only when the current state is
/// one of these (a conditional update: another node may have changed it); returns whether it
/// applied.
pub async fn set(
    tx: &mut Tx,
    user_id: i64,
    change: &Change,
    only_from: Option<&[PresenceState]>,
    now_ms: i64,
) -> Result<bool, DbError> {
    let current = get(tx, user_id).await?;
    let Some(current) = current else { return Ok(false) };
    if let Some(allowed) = only_from {
        if !allowed.contains(&current.state) {
            return Ok(false);
        }
    }
    // A row exists for everyone who ever connected; create it on first use.
    sqlx::query(
        "INSERT INTO operator_state (user_id, presence, since, idle_since, updated_at) VALUES ($1, 'offline', $2, $2, $2) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let going_idle = change.state == PresenceState::Available && current.state != PresenceState::Available;
    let n = sqlx::query(
        "UPDATE operator_state SET presence = $2, reason = $3, since = CASE WHEN presence = $2 THEN since ELSE $4 END, \
         idle_since = CASE WHEN $5 = 1 THEN $4 ELSE idle_since END, call_id = $6, wrap_up_until = $7, updated_at = $4 \
         WHERE user_id = $1 AND presence = $8",
    )
    .bind(user_id)
    .bind(change.state.as_str())
    .bind(change.reason.clone())
    .bind(now_ms)
    .bind(i64::from(change.reset_idle || (going_idle && current.state != PresenceState::Offered)))
    .bind(change.call_id.clone())
    .bind(change.wrap_up_until)
    .bind(current.state.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let changed = current.state != change.state || current.reason != change.reason;
    if changed || current.call_id != change.call_id {
        let mut after = current.clone();
        if current.state != change.state {
            after.since = now_ms;
        }
        after.state = change.state;
        after.reason = change.reason.clone();
        after.call_id = change.call_id.clone();
        after.wrap_up_until = change.wrap_up_until;
        let message = ServerMessage::Presence { operator: after.status() };
        hub::write(tx, &hub::user_and_supervisors(user_id), &message, now_ms).await?;
    }
    Ok(true)
}

/// Records that a socket of these users is open now (their presence does not lapse to offline).
pub async fn seen(db: &crate::db::Db, users: &[i64], now_ms: i64) -> Result<(), DbError> {
    for chunk in users.chunks(500) {
        let list = chunk.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        // The ids are integers from our own table: safe to inline.
        db.with_lock_turn(
            sqlx::query(&format!("UPDATE operator_state SET seen_at = $1 WHERE user_id IN ({list})"))
                .bind(now_ms)
                .execute(db.pool()),
        )
        .await?;
    }
    Ok(())
}

/// Makes sure the user has a presence row (offline at first) and marks them seen now.
pub async fn ensure(db: &crate::db::Db, user_id: i64, now_ms: i64) -> Result<(), DbError> {
    db.with_lock_turn(sqlx::query(
        "INSERT INTO operator_state (user_id, presence, since, idle_since, seen_at, updated_at) VALUES ($1, 'offline', $2, $2, $2, $2) \
         ON CONFLICT (user_id) DO UPDATE SET seen_at = excluded.seen_at",
    )
    .bind(user_id)
    .bind(now_ms)
    .execute(db.pool()))
    .await?;
    Ok(())
}

/// Flags a user as trained for intercultural mediation (the ACD's fallback).
pub async fn set_mediator(db: &crate::db::Db, user_id: i64, mediator: bool) -> Result<(), DbError> {
    db.with_lock_turn(
        sqlx::query("UPDATE users SET mediator = $2 WHERE id = $1")
            .bind(user_id)
            .bind(i64::from(mediator))
            .execute(db.pool()),
    )
    .await?;
    Ok(())
}
