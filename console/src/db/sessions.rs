//! Sign-in sessions. The browser holds a random token; the database holds only its SHA-256, so a
//! leaked table cannot be replayed as cookies.

use super::users::{find_user_by_id, User};
use super::{Db, DbError};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The PostgreSQL channel the nodes listen on (the console hub's).
pub const NOTIFY_CHANNEL: &str = "helpline_console";
/// A notification on [`NOTIFY_CHANNEL`] with this payload prefix and a user id: every session of
/// that user was deleted, so every node closes that user's sockets at once.
pub const REVOKED_PREFIX: &str = "sessions_revoked:";

/// How often a long-lived socket (the console's, the wallboard's) checks that its session still
/// exists, besides being told at once when the user signs out everywhere.
pub const SOCKET_SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a session lasts without signing in again: one long shift.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// A new session: the token for the cookie and the CSRF token for the page.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub async fn create_session(db: &Db, user_id: i64, now_ms: i64) -> Result<NewSession, DbError> {
    let session = NewSession { token: random_token(), csrf_token: random_token(), expires_at: now_ms + SESSION_TTL_MS };
    db.with_lock_turn(sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&session.token))
    .bind(user_id)
    .bind(&session.csrf_token)
    .bind(now_ms)
    .bind(session.expires_at)
    .execute(db.pool()))
    .await?;
    Ok(session)
}

/// The user and CSRF token of a live session (none for a disabled user).
pub async fn session_user(db: &Db, token: &str, now_ms: i64) -> Result<Option<(User, String)>, DbError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT user_id, csrf_token FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash(token))
            .bind(now_ms)
            .fetch_optional(db.pool())
            .await?;
    let Some((user_id, csrf)) = row else { return Ok(None) };
    Ok(find_user_by_id(db, user_id).await?.filter(|u| !u.disabled).map(|u| (u, csrf)))
}

pub async fn delete_session(db: &Db, token: &str) -> Result<(), DbError> {
    db.with_lock_turn(
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(token)).execute(db.pool()),
    )
    .await?;
    Ok(())
}

/// Signs a user out everywhere: every session of theirs ends. Returns how many there were.
pub async fn delete_user_sessions(db: &Db, user_id: i64) -> Result<u64, DbError> {
    let done = db
        .with_lock_turn(sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(db.pool()))
        .await?;
    Ok(done.rows_affected())
}

/// Ends every session of a user but the one with `keep_hash` (a password changed by its user).
pub async fn delete_other_sessions(db: &Db, user_id: i64, keep_hash: &str) -> Result<u64, DbError> {
    let done = db
        .with_lock_turn(
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                .bind(user_id)
                .bind(keep_hash)
                .execute(db.pool()),
        )
        .await?;
    Ok(done.rows_affected())
}

/// Tells every node that `user_id`'s sessions are gone (PostgreSQL `NOTIFY`; a single SQLite node
/// has no one else to tell, and its open sockets find out at their next session check).
pub async fn announce_revoked(db: &Db, user_id: i64) -> Result<(), DbError> {
    if db.backend() == super::Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(format!("{REVOKED_PREFIX}{user_id}"))
            .execute(db.pool())
            .await?;
    }
    Ok(())
}

/// Whether the session with this token hash is still live (a socket re-checks it).
pub async fn session_live(db: &Db, token_hash: &str, now_ms: i64) -> Result<bool, DbError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > $2")
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}
