//! Calls whose carrier went quiet: the server ends them, so that they do not wait in the queue
//! (offered to operator after operator) or stay on the wallboard forever.
//!
//! A live call that no operator has taken raises an event at least every minute whatever the
//! caller does: every menu and the queue gather digits with a timeout (60 s at most), Twilio polls
//! the queue's `waitUrl`, and our SIP user agent raises the timeouts itself. So a call without any
//! event for [`QUIET_FOR`] has been lost: its carrier never sent the end (a crash, a lost status
//! callback), or the node whose SIP user agent held it died. A call an operator took is silent
//! while they talk: it is ended only after [`QUIET_WITH_OPERATOR_FOR`].
//!
//! The server ends such a call as its carrier would have: a `hung_up` event through the call
//! runtime ([`Origin::Server`]), so the engine records the outcome, the queue entry is left and the
//! KPIs count it as the caller's hang-up; a warning names the call. A carrier that speaks up after
//! all is answered as for any ended call. `serve` looks every [`EVERY`]; on several nodes a call is
//! ended once (a second `hung_up` for it changes nothing).

use super::{CallError, CallRequest, CallRuntime, Origin};
use crate::clock::Clock;
use crate::db::{Db, DbError};
use chrono::{DateTime, Utc};
use ivr::domain::CallId;
use ivr::engine::Event;
use std::sync::Arc;
use std::time::Duration;

/// A call no operator has taken, without any event for this long, is ended (ms).
pub const QUIET_FOR: i64 = 10 * 60_000;
/// Any call without any event for this long is ended (ms).
pub const QUIET_WITH_OPERATOR_FOR: i64 = 12 * 3_600_000;
/// How often `serve` looks for quiet calls.
pub const EVERY: Duration = Duration::from_secs(60);

/// Ends the calls that went quiet by `now`; returns their ids.
pub async fn end_quiet_calls(db: &Db, calls: &CallRuntime, now: DateTime<Utc>) -> Result<Vec<String>, DbError> {
    let now_ms = now.timestamp_millis();
    let quiet: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.call_id, c.updated_at FROM calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id \
         WHERE c.ended_at IS NULL AND (c.updated_at < $2 OR (c.updated_at < $1 AND c.answered_at IS NULL \
         AND (q.status IS NULL OR q.status NOT IN ('assigned', 'answered')))) ORDER BY c.updated_at",
    )
    .bind(now_ms - QUIET_FOR)
    .bind(now_ms - QUIET_WITH_OPERATOR_FOR)
    .fetch_all(db.pool())
    .await?;
    let mut ended = Vec::with_capacity(quiet.len());
    for (call_id, updated_at) in quiet {
        let Ok(id) = CallId::parse(&call_id) else {
            tracing::warn!(call_id, "a quiet call has an id the runtime cannot take: left open");
            continue;
        };
        let req = CallRequest {
            call_id: id,
            event: Event::HungUp,
            now,
            key: None,
            carrier_seq: None,
            origin: Origin::Server,
            sealed_number: None,
            reason: Some(super::EndReason::Quiet),
        };
        let quiet_mins = (now_ms - updated_at) / 60_000;
        match calls.handle(req).await {
            Ok(_) => {
                tracing::warn!(call_id, quiet_mins, "call ended by the server: its carrier sent nothing for too long");
                ended.push(call_id);
            }
            Err(CallError::Db(e)) => return Err(e),
            Err(e) => tracing::warn!(call_id, error = %e, "the call runtime refused to end a quiet call"),
        }
    }
    Ok(ended)
}

/// Ends quiet calls at once, then every [`EVERY`], until shutdown.
pub fn start(db: Db, calls: CallRuntime, clock: Arc<dyn Clock>, tasks: &crate::tasks::Tasks) {
    tasks.spawn_every("quiet calls", EVERY, move || {
        let (db, calls, clock) = (db.clone(), calls.clone(), clock.clone());
        async move {
            if let Err(e) = end_quiet_calls(&db, &calls, clock.now()).await {
                tracing::error!(error = %e, "ending quiet calls failed");
            }
        }
    });
}
