//! The waiting queue and callback requests as the call runtime sees them: enqueue a call with its
//! skills, tell its position and estimated wait, record a callback, mark a hang-up as abandoned.
//! (Offering calls to operators is the console's ACD; it works on the same table.)
//!
//! The statements are written once, in the SQL both backends accept; each store of the write
//! path ([`super::store`]) binds them. Their `$N` placeholders first appear in increasing order,
//! so binding by position is binding by number on SQLite too (a test checks it).

/// How waits are estimated.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Average handling time of one call, seconds: wait ≈ position × this.
    pub avg_handle_secs: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { avg_handle_secs: 180 }
    }
}

/// Puts the call in the queue (or back in it, keeping its original entry time, after a failed
/// transfer: it does not lose its place). Binds: call id, language, area, priority, now.
pub const ENQUEUE: &str = "INSERT INTO queue_entries (call_id, language, area, priority, entered_at, status, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'waiting', $5) \
     ON CONFLICT (call_id) DO UPDATE SET language = excluded.language, area = excluded.area, \
     priority = excluded.priority, status = 'waiting', operator = NULL, target = NULL, updated_at = excluded.updated_at";

/// How many calls wait ahead of the call for the same language (higher priority first, then
/// first come); no row when the call itself is not waiting. Binds: call id.
pub const AHEAD: &str =
    "SELECT (SELECT COUNT(*) FROM queue_entries q WHERE q.status = 'waiting' AND q.language = m.language \
     AND (q.priority > m.priority OR (q.priority = m.priority AND (q.entered_at < m.entered_at \
     OR (q.entered_at = m.entered_at AND q.call_id < m.call_id)))) AND q.call_id <> m.call_id) \
     FROM queue_entries m WHERE m.call_id = $1 AND m.status = 'waiting'";

/// A callback request, with the caller's (hashed and masked) number and, when the adapter had it,
/// the number sealed for the callback. Binds: language, area, now, sealed number, call id.
pub const RECORD_CALLBACK: &str =
    "INSERT INTO callbacks (call_id, caller_hash, caller_masked, language, area, requested_at, number_sealed) \
     SELECT call_id, caller_hash, caller_masked, $1, $2, $3, $4 FROM calls WHERE call_id = $5";

/// The call ended: a caller still waiting abandoned (when they hung up) or left the queue.
/// Binds: status, now, call id.
pub const LEAVE: &str =
    "UPDATE queue_entries SET status = $1, updated_at = $2 WHERE call_id = $3 AND status = 'waiting'";

/// The status a waiting entry takes when its call ends.
pub fn leave_status(hung_up: bool) -> &'static str {
    if hung_up {
        "abandoned"
    } else {
        "left"
    }
}

/// The 1-based position and the estimated wait in seconds, from the number of calls ahead (none:
/// the call is not waiting, it is next).
pub fn estimate(ahead: Option<i64>, settings: &QueueSettings) -> (u32, u32) {
    match ahead {
        None => (1, 0),
        Some(ahead) => {
            let position = u32::try_from(ahead.max(0).saturating_add(1)).unwrap_or(u32::MAX);
            (position, position.saturating_mul(settings.avg_handle_secs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_from_one_and_waits_scale() {
        let s = QueueSettings { avg_handle_secs: 100 };
        assert_eq!(estimate(None, &s), (1, 0));
        assert_eq!(estimate(Some(0), &s), (1, 100));
        assert_eq!(estimate(Some(4), &s), (5, 500));
        assert_eq!(estimate(Some(i64::MAX), &s), (u32::MAX, u32::MAX));
    }
}
