//! What the write path asks of the database inside one batch's transaction ([`Store`]), and its
//! implementation over sqlx ([`SqlxStore`]: PostgreSQL, and SQLite when it has no file). The
//! SQLite file's writer thread has its own, over rusqlite (`super::sqlite`). Both bind the same
//! statement texts, written here and in [`super::queue`].

use super::{queue, to_json, CallError, Tx};
use crate::db::Backend;
use ivr::domain::{Language, ServiceArea};
use serde::Serialize;
use std::collections::HashMap;

/// The database side of one batch, inside its transaction. The methods are `async` for sqlx; the
/// SQLite writer thread's store never waits (see `super::sqlite::ready`).
pub(crate) trait Store {
    /// Locks (PostgreSQL: in call-id order) and reads the calls of the batch.
    async fn load(&mut self, ids: &[&str]) -> Result<HashMap<String, Loaded>, CallError>;
    /// The stored answer to a request key: (fingerprint, answer JSON).
    async fn stored_response(&mut self, call_id: &str, key: &str) -> Result<Option<(String, String)>, CallError>;
    /// A new call's row, written at once (the queue and callback rows refer to it).
    async fn insert_call(&mut self, call: &NewCall<'_>) -> Result<(), CallError>;
    async fn enqueue(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        priority: u8,
        now_ms: i64,
    ) -> Result<(), CallError>;
    /// How many calls wait ahead of this one (none: it is not waiting).
    async fn calls_ahead(&mut self, call_id: &str) -> Result<Option<i64>, CallError>;
    async fn record_callback(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        now_ms: i64,
        sealed_number: Option<&str>,
    ) -> Result<(), CallError>;
    async fn leave(&mut self, call_id: &str, hung_up: bool, now_ms: i64) -> Result<(), CallError>;
    /// The batch's new call rows and call-log steps (with the answers kept for retries).
    async fn write(&mut self, writes: &Writes) -> Result<(), CallError>;
}

/// A call's row as the batch found (and locked) it.
pub(crate) struct Loaded {
    pub state: String,
    pub last_seq: i64,
    pub carrier_seq: i64,
    pub pending: Option<String>,
    pub channel: String,
    pub started_at: i64,
}

/// A call that starts with this request.
pub(crate) struct NewCall<'a> {
    pub call_id: &'a str,
    pub channel: &'a str,
    pub started_at: i64,
    pub caller_hash: Option<&'a str>,
    pub caller_masked: Option<&'a str>,
    pub state: &'a str,
}

/// A call's row as the batch leaves it.
#[derive(Serialize)]
pub(crate) struct CallRow {
    pub call_id: String,
    pub channel: String,
    pub started_at: i64,
    pub state: String,
    pub last_seq: i64,
    pub carrier_seq: i64,
    pub language: Option<String>,
    pub language_guessed: i64,
    pub area: Option<String>,
    pub cap: Option<String>,
    pub town: Option<String>,
    pub outcome: Option<String>,
    pub ended_at: Option<i64>,
    pub updated_at: i64,
    pub pending: Option<String>,
}

/// One step of the call log. The last step of a carrier request that carries a request key also
/// keeps the answer, for the carrier's retries (the key, the request's fingerprint, the answer).
#[derive(Serialize)]
pub(crate) struct EventRow {
    pub call_id: String,
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub data: String,
    pub request_key: Option<String>,
    pub fingerprint: Option<String>,
    pub answer: Option<String>,
}

/// What a batch writes at its end.
#[derive(Default)]
pub(crate) struct Writes {
    pub calls: Vec<CallRow>,
    pub events: Vec<EventRow>,
}

// --- The statements -------------------------------------------------------------------------------

/// The answer kept for a request key: on one of the call's steps, found through the call log's
/// (call_id, seq) key (a call has a few dozen steps at most).
pub(crate) const STORED_RESPONSE: &str =
    "SELECT fingerprint, answer FROM call_events WHERE call_id = $1 AND request_key = $2";

pub(crate) const INSERT_CALL: &str =
    "INSERT INTO calls (call_id, channel, started_at, caller_hash, caller_masked, state, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $3)";

/// Columns of one [`CallRow`] in [`upsert_calls`].
pub(crate) const CALL_COLUMNS: usize = 15;
/// Columns of one [`EventRow`].
pub(crate) const EVENT_COLUMNS: usize = 8;
/// Rows per multi-row statement, at most.
pub(crate) const CALLS_PER_STATEMENT: usize = 32;
pub(crate) const EVENTS_PER_STATEMENT: usize = 64;

/// PostgreSQL: the whole batch's writes in one statement (one round trip instead of two), its
/// rows passed as two JSON arrays (one statement text whatever the batch's size).
pub(crate) const PG_WRITE_BATCH: &str = "WITH c AS (\
     INSERT INTO calls (call_id, channel, started_at, state, last_seq, carrier_seq, language, language_guessed, area, \
     cap, town, outcome, ended_at, updated_at, pending_actions) \
     SELECT call_id, channel, started_at, state, last_seq, carrier_seq, language, language_guessed, area, cap, town, outcome, \
     ended_at, updated_at, pending FROM json_to_recordset($1::text::json) AS r(call_id text, channel text, started_at bigint, \
     state text, last_seq bigint, carrier_seq bigint, language text, language_guessed integer, area text, cap text, \
     town text, outcome text, ended_at bigint, updated_at bigint, pending text) \
     ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, last_seq = excluded.last_seq, \
     carrier_seq = excluded.carrier_seq, language = excluded.language, language_guessed = excluded.language_guessed, \
     area = excluded.area, cap = excluded.cap, town = excluded.town, outcome = excluded.outcome, ended_at = excluded.ended_at, \
     updated_at = excluded.updated_at, pending_actions = excluded.pending_actions) \
     INSERT INTO call_events (call_id, seq, at, kind, data, request_key, fingerprint, answer) \
     SELECT call_id, seq, at, kind, data, request_key, fingerprint, answer FROM json_to_recordset($2::text::json) \
     AS r(call_id text, seq bigint, at bigint, kind text, data text, request_key text, fingerprint text, answer text)";

/// PostgreSQL's writers (`super::pg`): the calls of a batch (`$1`, an array of ids), locked in
/// call-id order so that two nodes' batches cannot deadlock each other, and read.
pub(crate) const PG_LOAD_CALLS: &str =
    "SELECT call_id, state, last_seq, carrier_seq, pending_actions, channel, started_at \
     FROM calls WHERE call_id = ANY($1) ORDER BY call_id FOR UPDATE";

/// Reads `n` calls (`$1`…`$n`); PostgreSQL locks them in call-id order, so two nodes' batches
/// cannot deadlock each other (SQLite's writer already holds the database's write lock).
pub(crate) fn load_calls(backend: Backend, n: usize) -> String {
    let mut sql = String::from(
        "SELECT call_id, state, last_seq, carrier_seq, pending_actions, channel, started_at FROM calls WHERE call_id IN (",
    );
    push_params(&mut sql, 1, n);
    sql.push(')');
    if backend == Backend::Postgres {
        sql.push_str(" ORDER BY call_id FOR UPDATE");
    }
    sql
}

/// The calls' new state for `rows` rows: an upsert on rows that all exist (locked, or inserted by
/// this transaction), so it is a multi-row update in one statement on both backends.
pub(crate) fn upsert_calls(rows: usize) -> String {
    format!(
        "INSERT INTO calls (call_id, channel, started_at, state, last_seq, carrier_seq, language, \
         language_guessed, area, cap, town, outcome, ended_at, updated_at, pending_actions) VALUES {} \
         ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, last_seq = excluded.last_seq, \
         carrier_seq = excluded.carrier_seq, language = excluded.language, \
         language_guessed = excluded.language_guessed, area = excluded.area, cap = excluded.cap, town = excluded.town, \
         outcome = excluded.outcome, ended_at = excluded.ended_at, updated_at = excluded.updated_at, \
         pending_actions = excluded.pending_actions",
        values_list(rows, CALL_COLUMNS)
    )
}

pub(crate) fn insert_events(rows: usize) -> String {
    format!(
        "INSERT INTO call_events (call_id, seq, at, kind, data, request_key, fingerprint, answer) VALUES {}",
        values_list(rows, EVENT_COLUMNS)
    )
}

/// `$from, $from+1, …` (`count` of them).
fn push_params(sql: &mut String, from: usize, count: usize) {
    use std::fmt::Write as _;
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}", from + i);
    }
}

/// `($1, …, $k), ($k+1, …)` for `rows` rows of `k` columns.
fn values_list(rows: usize, k: usize) -> String {
    let mut sql = String::new();
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_params(&mut sql, 1 + r * k, k);
        sql.push(')');
    }
    sql
}

/// Sizes that cover `len` rows in power-of-two statements of at most `max` rows (few distinct
/// statement texts, each in the connection's prepared-statement cache).
pub(crate) fn chunk_sizes(mut len: usize, max: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while len > 0 {
        let mut s = max;
        while s > len {
            s /= 2;
        }
        sizes.push(s);
        len -= s;
    }
    sizes
}

// --- Over sqlx ----------------------------------------------------------------------------------

/// The store over a sqlx transaction.
pub(crate) struct SqlxStore<'t, 'c> {
    pub tx: &'t mut Tx<'c>,
    pub backend: Backend,
}

impl Store for SqlxStore<'_, '_> {
    async fn load(&mut self, ids: &[&str]) -> Result<HashMap<String, Loaded>, CallError> {
        // The list is padded to a power of two (repeating the last id) so that few distinct
        // statement texts exist and each stays in the connection's prepared-statement cache.
        let n = ids.len().next_power_of_two();
        let sql = load_calls(self.backend, n);
        let mut q = sqlx::query_as::<_, (String, String, i64, i64, Option<String>, String, i64)>(&sql);
        for i in 0..n {
            q = q.bind(ids[i.min(ids.len() - 1)]);
        }
        let rows = q.fetch_all(&mut **self.tx).await?;
        Ok(rows
            .into_iter()
            .map(|(id, state, last_seq, carrier_seq, pending, channel, started_at)| {
                (id, Loaded { state, last_seq, carrier_seq, pending, channel, started_at })
            })
            .collect())
    }

    async fn stored_response(&mut self, call_id: &str, key: &str) -> Result<Option<(String, String)>, CallError> {
        Ok(sqlx::query_as(STORED_RESPONSE).bind(call_id).bind(key).fetch_optional(&mut **self.tx).await?)
    }

    async fn insert_call(&mut self, c: &NewCall<'_>) -> Result<(), CallError> {
        sqlx::query(INSERT_CALL)
            .bind(c.call_id)
            .bind(c.channel)
            .bind(c.started_at)
            .bind(c.caller_hash)
            .bind(c.caller_masked)
            .bind(c.state)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn enqueue(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        priority: u8,
        now_ms: i64,
    ) -> Result<(), CallError> {
        sqlx::query(queue::ENQUEUE)
            .bind(call_id)
            .bind(language.as_str())
            .bind(area.map(|a| a.as_str()))
            .bind(i64::from(priority))
            .bind(now_ms)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn calls_ahead(&mut self, call_id: &str) -> Result<Option<i64>, CallError> {
        let ahead: Option<(i64,)> = sqlx::query_as(queue::AHEAD).bind(call_id).fetch_optional(&mut **self.tx).await?;
        Ok(ahead.map(|(n,)| n))
    }

    async fn record_callback(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        now_ms: i64,
        sealed_number: Option<&str>,
    ) -> Result<(), CallError> {
        sqlx::query(queue::RECORD_CALLBACK)
            .bind(language.as_str())
            .bind(area.map(|a| a.as_str()))
            .bind(now_ms)
            .bind(sealed_number)
            .bind(call_id)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn leave(&mut self, call_id: &str, hung_up: bool, now_ms: i64) -> Result<(), CallError> {
        sqlx::query(queue::LEAVE)
            .bind(queue::leave_status(hung_up))
            .bind(now_ms)
            .bind(call_id)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn write(&mut self, w: &Writes) -> Result<(), CallError> {
        if self.backend == Backend::Postgres {
            sqlx::query(PG_WRITE_BATCH)
                .bind(to_json(&w.calls)?)
                .bind(to_json(&w.events)?)
                .execute(&mut **self.tx)
                .await?;
            return Ok(());
        }
        let mut rows = &w.calls[..];
        for size in chunk_sizes(rows.len(), CALLS_PER_STATEMENT) {
            let (chunk, rest) = rows.split_at(size);
            rows = rest;
            let sql = upsert_calls(size);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.call_id)
                    .bind(&r.channel)
                    .bind(r.started_at)
                    .bind(&r.state)
                    .bind(r.last_seq)
                    .bind(r.carrier_seq)
                    .bind(&r.language)
                    .bind(r.language_guessed)
                    .bind(&r.area)
                    .bind(&r.cap)
                    .bind(&r.town)
                    .bind(&r.outcome)
                    .bind(r.ended_at)
                    .bind(r.updated_at)
                    .bind(&r.pending);
            }
            q.execute(&mut **self.tx).await?;
        }
        let mut rows = &w.events[..];
        for size in chunk_sizes(rows.len(), EVENTS_PER_STATEMENT) {
            let (chunk, rest) = rows.split_at(size);
            rows = rest;
            let sql = insert_events(size);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.call_id)
                    .bind(r.seq)
                    .bind(r.at)
                    .bind(&r.kind)
                    .bind(&r.data)
                    .bind(&r.request_key)
                    .bind(&r.fingerprint)
                    .bind(&r.answer);
            }
            q.execute(&mut **self.tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers of a statement's `$N` placeholders in order of first appearance.
    fn first_appearances(sql: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        let b = sql.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' {
                let digits: String = sql[i + 1..].chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(n) = digits.parse::<usize>() {
                    if !seen.contains(&n) {
                        seen.push(n);
                    }
                }
                i += 1 + digits.len();
            } else {
                i += 1;
            }
        }
        seen
    }

    /// SQLite numbers named parameters by first appearance; binding by position is binding by
    /// `$N` only when they first appear as 1, 2, 3, …
    #[test]
    fn placeholders_first_appear_in_order() {
        let statements = [
            STORED_RESPONSE.to_owned(),
            INSERT_CALL.to_owned(),
            queue::ENQUEUE.to_owned(),
            queue::AHEAD.to_owned(),
            queue::RECORD_CALLBACK.to_owned(),
            queue::LEAVE.to_owned(),
            load_calls(Backend::Sqlite, 8),
            PG_WRITE_BATCH.to_owned(),
            upsert_calls(3),
            insert_events(4),
        ];
        for sql in &statements {
            let order = first_appearances(sql);
            let expected: Vec<usize> = (1..=order.len()).collect();
            assert_eq!(order, expected, "{sql}");
        }
        assert_eq!(first_appearances(&upsert_calls(3)).len(), 3 * CALL_COLUMNS);
        assert_eq!(first_appearances(&insert_events(4)).len(), 4 * EVENT_COLUMNS);
    }

    #[test]
    fn chunks_are_powers_of_two_covering_the_rows() {
        assert_eq!(chunk_sizes(0, 32), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1, 32), vec![1]);
        assert_eq!(chunk_sizes(13, 32), vec![8, 4, 1]);
        assert_eq!(chunk_sizes(70, 32), vec![32, 32, 4, 2]);
        for n in 0..200 {
            let sizes = chunk_sizes(n, 64);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= 64));
        }
    }

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        let mut s = String::new();
        push_params(&mut s, 1, 4);
        assert_eq!(s, "$1, $2, $3, $4");
    }
}
