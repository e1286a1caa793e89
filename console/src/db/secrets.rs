//! The server key (`HELPLINE_SECRET`): taken from the settings when given, otherwise generated once
//! and kept in the database, so every node sharing the database hashes phone numbers alike. The
//! settings must give it with PostgreSQL (`Settings::check_for_serve`): a key kept in the database
//! travels with every dump of it, and with the masked numbers beside the hashes a dump and its key
//! give the callers' numbers back. When a key is given, a key stored earlier is deleted, for the
//! same reason: nothing uses it any more, and it would still unlock the hashes made with it.

use super::{Db, DbError};
use crate::config::SecretString;
use ivr::domain::ServerSecret;
use rand::RngCore;

const KEY: &str = "server_secret";

/// Where the key in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Settings,
    Stored,
    Generated,
}

/// The configured key, or the stored one, or a new one stored now (the first node to store wins).
pub async fn server_secret(
    db: &Db,
    configured: &SecretString,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(ServerSecret, SecretSource), DbError> {
    if !configured.is_empty() {
        let secret = ServerSecret::new(configured.expose().as_bytes().to_vec())
            .map_err(|e| DbError::Conflict(format!("HELPLINE_SECRET: {e}")))?;
        let deleted = db
            .with_lock_turn(sqlx::query("DELETE FROM server_settings WHERE key = $1").bind(KEY).execute(db.pool()))
            .await?
            .rows_affected();
        if deleted > 0 {
            tracing::warn!(
                "the server key stored in the database was deleted: HELPLINE_SECRET is in use. Calls hashed \
                 with the old key are no longer linked to new calls from the same number"
            );
        }
        return Ok((secret, SecretSource::Settings));
    }
    if let Some(stored) = stored(db).await? {
        return Ok((stored, SecretSource::Stored));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let inserted = sqlx::query(
        "INSERT INTO server_settings (key, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(KEY)
    .bind(hex::encode(bytes))
    .bind(now.timestamp_millis())
    .execute(db.pool())
    .await?
    .rows_affected();
    let secret = stored(db).await?.ok_or_else(|| DbError::Corrupt("server secret vanished".into()))?;
    Ok((secret, if inserted == 1 { SecretSource::Generated } else { SecretSource::Stored }))
}

async fn stored(db: &Db) -> Result<Option<ServerSecret>, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT value FROM server_settings WHERE key = $1").bind(KEY).fetch_optional(db.pool()).await?;
    row.map(|(hex_value,)| {
        hex::decode(&hex_value)
            .ok()
            .and_then(|b| ServerSecret::new(b).ok())
            .ok_or_else(|| DbError::Corrupt("the stored server secret is not 32+ hex bytes".into()))
    })
    .transpose()
}
