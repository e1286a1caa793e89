//! The call runtime's write path: **group commit**.
//!
//! Every [`CallRequest`] goes to a writer task (one for SQLite, a few for PostgreSQL, chosen by the
//! call id so one call's events stay in order). A writer takes all the requests that arrived while
//! its previous transaction ran — at most one per call, at most [`BATCH_MAX`] — and applies them in
//! **one** transaction: one statement locks and reads every call of the batch, the engine runs in
//! memory, then one multi-row statement each writes the calls, the call log and the stored
//! answers, and the transaction commits. Only after the commit does each request get its answer.
//!
//! A request the runtime refuses (unknown call, out of sequence…) writes nothing and does not
//! disturb the others. A database error rolls the whole batch back; its requests are then applied
//! one by one, each in its own transaction, so one failing call cannot fail the others.
//!
//! Why: the cost of a request was its round trips and lock waits (about 8 statements, each a
//! thread hand-off in sqlx's SQLite driver or a round trip to PostgreSQL, and on SQLite the pool's
//! connections racing for the one write lock with sleep-and-retry). One writer per SQLite database
//! never waits for the lock; batching makes the per-transaction statements (begin, lock, writes,
//! commit, PostgreSQL's WAL flush) shared by every request of the batch.

use super::{
    channel_name, enum_name, event_kind, queue, to_json, Answer, CallError, CallRequest, Handled, Origin, Runtime,
    MAX_STEPS_PER_REQUEST,
};
use crate::db::{Backend, DbError};
use crate::metrics::{ChannelLabels, OutcomeLabels};
use ivr::engine::{self, Action, CallState, Event, LogEntry, Lookup};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// At most this many requests in one transaction.
pub const BATCH_MAX: usize = 32;

/// One request waiting for its writer, and where its outcome goes.
pub struct Job {
    pub req: CallRequest,
    pub reply: oneshot::Sender<Result<Handled, CallError>>,
}

/// How many writer tasks a backend gets. SQLite has one write lock: one writer, which then never
/// waits for it. PostgreSQL locks rows: a few writers overlap their round trips.
pub fn writers_for(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

/// The writer for a call: the same call always goes to the same writer (its events stay in order).
pub fn shard(call_id: &str, writers: usize) -> usize {
    // FNV-1a: stable and cheap; only the spread matters.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % writers.max(1) as u64) as usize
}

/// Runs until every sender is gone: takes batches off the queue and applies them.
pub async fn run(rt: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        while waiting.len() < 4 * BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        // At most one request per call (a call's later requests wait for the next batch, in order).
        let mut seen: HashSet<String> = HashSet::new();
        let mut batch: Vec<Job> = Vec::new();
        let mut rest: VecDeque<Job> = VecDeque::new();
        for job in waiting.drain(..) {
            let fresh = seen.insert(job.req.call_id.as_str().to_owned());
            if fresh && batch.len() < BATCH_MAX {
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        waiting = rest;
        apply(&rt, batch).await;
    }
}

/// Applies a batch and answers each request; on a database error, each request alone.
async fn apply(rt: &Runtime, batch: Vec<Job>) {
    let reqs: Vec<&CallRequest> = batch.iter().map(|j| &j.req).collect();
    let outcome = transaction(rt, &reqs).await;
    drop(reqs);
    match outcome {
        Ok(planned) => {
            for (job, p) in batch.into_iter().zip(planned) {
                let _ = job.reply.send(p.committed(rt));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, requests = batch.len(), "batch rolled back; applying its requests one by one");
            for job in batch {
                let result = match transaction(rt, &[&job.req]).await {
                    Ok(planned) => match planned.into_iter().next() {
                        Some(p) => p.committed(rt),
                        None => Err(CallError::Db(DbError::Query(sqlx::Error::WorkerCrashed))),
                    },
                    Err(e) => Err(e),
                };
                let _ = job.reply.send(result);
            }
        }
    }
}

/// What one request did inside a transaction, to be reported once it commits.
struct Planned {
    result: Result<Handled, CallError>,
    /// The call started here (its channel), for the metrics.
    started: Option<&'static str>,
    /// The call ended here (channel, outcome), for the metrics.
    ended: Option<(String, String)>,
    decisions: u64,
    /// It changed the waiting queue or the callbacks (the console's ACD is woken after commit).
    touched_queue: bool,
}

impl Planned {
    fn refused(e: CallError) -> Planned {
        Planned { result: Err(e), started: None, ended: None, decisions: 0, touched_queue: false }
    }

    /// After the commit: count it and hand the outcome over.
    fn committed(self, rt: &Runtime) -> Result<Handled, CallError> {
        if self.touched_queue {
            rt.queue_changed.notify_one();
        }
        let m = &rt.metrics;
        for _ in 0..self.decisions {
            m.engine_decisions.inc();
        }
        if let Some(channel) = self.started {
            m.calls_started.get_or_create(&ChannelLabels { channel: channel.into() }).inc();
            m.calls_active.get_or_create(&ChannelLabels { channel: channel.into() }).inc();
        }
        if let Some((channel, outcome)) = self.ended {
            m.calls_active.get_or_create(&ChannelLabels { channel: channel.clone() }).dec();
            m.calls_ended.get_or_create(&OutcomeLabels { channel, outcome }).inc();
        }
        self.result
    }
}

/// A call's row as the batch found (and locked) it.
struct Loaded {
    state: String,
    last_seq: i64,
    carrier_seq: i64,
    pending: Option<String>,
    channel: String,
    started_at: i64,
}

/// A call's row as the batch leaves it.
struct CallRow {
    call_id: String,
    channel: String,
    started_at: i64,
    state: String,
    last_seq: i64,
    carrier_seq: i64,
    language: Option<String>,
    language_guessed: i64,
    area: Option<String>,
    town: Option<String>,
    outcome: Option<String>,
    ended_at: Option<i64>,
    updated_at: i64,
    pending: Option<String>,
}

struct EventRow {
    call_id: String,
    seq: i64,
    at: i64,
    kind: String,
    data: String,
}

struct ResponseRow {
    call_id: String,
    key: String,
    fingerprint: String,
    response: String,
    created_at: i64,
}

/// The call log's `data` of one step.
#[derive(Serialize)]
struct StepRecord<'a> {
    actions: &'a [Action],
    event: &'a Event,
    log: &'a [LogEntry],
}

#[derive(Default)]
struct Writes {
    calls: Vec<CallRow>,
    events: Vec<EventRow>,
    responses: Vec<ResponseRow>,
}

/// One transaction for the requests (one per call): `Ok` holds each request's outcome (refusals
/// included, which wrote nothing); `Err` is a database error that rolled everything back.
async fn transaction(rt: &Runtime, reqs: &[&CallRequest]) -> Result<Vec<Planned>, CallError> {
    let backend = rt.db.backend();
    let mut tx = match backend {
        // Take the write lock now, not at the first write: no upgrade that could meet SQLITE_BUSY.
        Backend::Sqlite => rt.db.pool().begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => rt.db.pool().begin().await?,
    };
    let ids: Vec<&str> = reqs.iter().map(|r| r.call_id.as_str()).collect();
    let mut loaded = load(&mut tx, backend, &ids).await?;
    let mut writes = Writes::default();
    let mut planned = Vec::with_capacity(reqs.len());
    for req in reqs {
        let row = loaded.remove(req.call_id.as_str());
        planned.push(plan(rt, &mut tx, req, row, &mut writes).await?);
    }
    write_calls(&mut tx, &writes.calls).await?;
    write_events(&mut tx, &writes.events).await?;
    write_responses(&mut tx, &writes.responses).await?;
    tx.commit().await?;
    Ok(planned)
}

/// Locks and reads the calls of the batch in one statement (PostgreSQL: row locks taken in
/// call-id order, so two nodes' batches cannot deadlock each other; SQLite: the writer already
/// holds the database's write lock).
async fn load(tx: &mut super::Tx<'_>, backend: Backend, ids: &[&str]) -> Result<HashMap<String, Loaded>, CallError> {
    // The list is padded to a power of two (repeating the last id) so that few distinct
    // statement texts exist and each stays in the connection's prepared-statement cache.
    let n = ids.len().next_power_of_two();
    let mut sql = String::from(
        "SELECT call_id, state, last_seq, carrier_seq, pending_actions, channel, started_at FROM calls WHERE call_id IN (",
    );
    push_params(&mut sql, 1, n);
    sql.push(')');
    if backend == Backend::Postgres {
        sql.push_str(" ORDER BY call_id FOR UPDATE");
    }
    let mut q = sqlx::query_as::<_, (String, String, i64, i64, Option<String>, String, i64)>(&sql);
    for i in 0..n {
        q = q.bind(ids[i.min(ids.len() - 1)]);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    Ok(rows
        .into_iter()
        .map(|(id, state, last_seq, carrier_seq, pending, channel, started_at)| {
            (id, Loaded { state, last_seq, carrier_seq, pending, channel, started_at })
        })
        .collect())
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
/// statement texts, each cached).
fn chunk_sizes(mut len: usize, max: usize) -> Vec<usize> {
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

/// Runs the engine for one request on its loaded row. Refusals are returned in the plan (nothing
/// written for them); database errors abort the batch.
async fn plan(
    rt: &Runtime,
    tx: &mut super::Tx<'_>,
    req: &CallRequest,
    row: Option<Loaded>,
    writes: &mut Writes,
) -> Result<Planned, CallError> {
    let id = req.call_id.as_str().to_owned();
    let now_ms = req.now.timestamp_millis();

    // A retry gets the stored answer. A request carrying the carrier's sequence number can only be
    // a retry if that number was already accepted, so the lookup is skipped for the others.
    if let (Some(row), Some(key)) = (&row, &req.key) {
        let may_be_retry = req.carrier_seq.is_none_or(|got| got <= row.carrier_seq);
        if may_be_retry {
            let stored: Option<(String, String)> =
                sqlx::query_as("SELECT fingerprint, response FROM call_responses WHERE call_id = $1 AND key = $2")
                    .bind(&id)
                    .bind(&key.key)
                    .fetch_optional(&mut **tx)
                    .await?;
            if let Some((fingerprint, response)) = stored {
                if fingerprint != key.fingerprint {
                    return Ok(Planned::refused(CallError::KeyReused { call: id, key: key.key.clone() }));
                }
                let answer: Answer = serde_json::from_str(&response)
                    .map_err(|e| DbError::Corrupt(format!("stored answer of call {id}: {e}")))?;
                return Ok(Planned {
                    result: Ok(Handled { answer, replayed: true }),
                    started: None,
                    ended: None,
                    decisions: 0,
                    touched_queue: false,
                });
            }
        }
    }

    // Actions the server decided since the carrier's last request.
    let mut pending_before: Vec<Action> = Vec::new();
    let mut touched_queue = matches!(req.event, Event::OperatorAssigned { .. } | Event::TransferFailed { .. });
    // `new_call`: the caller of a call that starts with this request.
    let (mut state, mut seq, carrier_seq, channel, started_at, new_call) = match (&req.event, row) {
        (Event::CallStarted { channel, caller, .. }, None) => (
            CallState::initial(req.call_id.clone()),
            0i64,
            0i64,
            channel_name(*channel).to_owned(),
            now_ms,
            Some(caller.as_ref()),
        ),
        (_, None) => return Ok(Planned::refused(CallError::UnknownCall(id))),
        (Event::CallStarted { .. }, Some(_)) => return Ok(Planned::refused(CallError::AlreadyStarted(id))),
        (_, Some(row)) => {
            let state: CallState = serde_json::from_str(&row.state)
                .map_err(|e| DbError::Corrupt(format!("stored state of call {id}: {e}")))?;
            if let Some(p) = &row.pending {
                pending_before = serde_json::from_str(p)
                    .map_err(|e| DbError::Corrupt(format!("pending actions of call {id}: {e}")))?;
            }
            (state, row.last_seq, row.carrier_seq, row.channel, row.started_at, None)
        }
    };
    let new_carrier_seq = match req.carrier_seq {
        Some(got) if got != carrier_seq + 1 => {
            return Ok(Planned::refused(CallError::OutOfSequence { call: id, expected: carrier_seq + 1, got }));
        }
        Some(got) => got,
        None => carrier_seq,
    };

    // Past this point the request is accepted: everything below is written or nothing is.
    if let Some(caller) = new_call {
        // Inserted now (not with the batch's calls) because the queue and callback rows the
        // engine's steps may write refer to it.
        sqlx::query(
            "INSERT INTO calls (call_id, channel, started_at, caller_hash, caller_masked, state, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&channel)
        .bind(now_ms)
        .bind(caller.as_ref().map(|c| c.hash().as_str().to_owned()))
        .bind(caller.as_ref().map(|c| c.masked().to_owned()))
        .bind(to_json(&state)?)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }

    let was_ended = state.ended();
    let mut outward = Vec::new();
    if req.origin == Origin::Carrier {
        outward.append(&mut pending_before);
    }
    let mut pending = VecDeque::from([req.event.clone()]);
    let mut steps = 0u64;
    while let Some(event) = pending.pop_front() {
        if steps as usize >= MAX_STEPS_PER_REQUEST {
            tracing::error!(call_id = %id, "more than {MAX_STEPS_PER_REQUEST} engine steps for one request");
            break;
        }
        steps += 1;
        let step = engine::step(&rt.flow, &state, &event, req.now);
        seq += 1;
        let mut log: Vec<LogEntry> = Vec::new();
        let mut actions: Vec<Action> = Vec::with_capacity(step.actions.len());
        for a in step.actions {
            match a {
                Action::Log(l) => log.push(l),
                other => actions.push(other),
            }
        }
        writes.events.push(EventRow {
            call_id: id.clone(),
            seq,
            at: now_ms,
            kind: event_kind(&event),
            data: to_json(&StepRecord { actions: &actions, event: &event, log: &log })?,
        });
        state = step.state;
        for action in actions {
            match action {
                Action::Lookup(Lookup::NearestServices { area, near, offset, limit, .. }) => {
                    let (services, has_more) = rt.directory.nearest(area, near, offset, limit, req.now);
                    pending.push_back(Event::LookupResults { services, has_more });
                }
                Action::Lookup(Lookup::QueueState) => {
                    // The call's own queue row was written above in this transaction.
                    let (position, estimated_wait_secs) = queue::position(tx, &id, &rt.queue).await?;
                    pending.push_back(Event::QueueUpdate { position, estimated_wait_secs });
                }
                Action::Enqueue { language, area, priority } => {
                    queue::enqueue(tx, &id, language, area, priority, now_ms).await?;
                    touched_queue = true;
                    outward.push(action);
                }
                Action::RecordCallback { language, area } => {
                    queue::record_callback(tx, &id, language, area, now_ms).await?;
                    touched_queue = true;
                    outward.push(action);
                }
                other => outward.push(other),
            }
        }
    }
    let ended = state.ended();
    if ended {
        queue::leave(tx, &id, matches!(req.event, Event::HungUp), now_ms).await?;
        touched_queue = true;
    }

    // Server-raised actions wait (after any still undelivered) for the carrier's next request.
    let pending_after = match req.origin {
        Origin::Carrier => None,
        Origin::Server => {
            pending_before.append(&mut outward);
            (!pending_before.is_empty()).then(|| to_json(&pending_before)).transpose()?
        }
    };
    writes.calls.push(CallRow {
        call_id: id.clone(),
        channel,
        started_at,
        state: to_json(&state)?,
        last_seq: seq,
        carrier_seq: new_carrier_seq,
        language: state.language.map(|l| l.as_str().to_owned()),
        language_guessed: i64::from(state.language.is_some() && state.language == state.guessed_language),
        area: state.area.map(|a| a.as_str().to_owned()),
        town: state.place.as_ref().map(|p| p.label.clone()),
        outcome: state.outcome.map(|o| enum_name(&o)),
        ended_at: ended.then_some(now_ms),
        updated_at: now_ms,
        pending: pending_after,
    });

    let answer = Answer { step: seq, actions: outward, ended };
    if let Some(key) = &req.key {
        writes.responses.push(ResponseRow {
            call_id: id.clone(),
            key: key.key.clone(),
            fingerprint: key.fingerprint.clone(),
            response: to_json(&answer)?,
            created_at: now_ms,
        });
    }
    let ended_now = (ended && !was_ended).then(|| {
        let channel = state.channel.map(channel_name).unwrap_or("unknown").to_owned();
        let outcome = state.outcome.map(|o| enum_name(&o)).unwrap_or_else(|| "unknown".into());
        (channel, outcome)
    });
    let started = match (&req.event, new_call) {
        (Event::CallStarted { channel, .. }, Some(_)) => Some(channel_name(*channel)),
        _ => None,
    };
    Ok(Planned {
        result: Ok(Handled { answer, replayed: false }),
        started,
        ended: ended_now,
        decisions: steps,
        touched_queue,
    })
}

/// The calls' new state: an upsert on rows that all exist (locked, or inserted by this
/// transaction), so it is a multi-row update in one statement on both backends.
async fn write_calls(tx: &mut super::Tx<'_>, rows: &[CallRow]) -> Result<(), CallError> {
    const K: usize = 14;
    let mut rows = rows;
    for size in chunk_sizes(rows.len(), 32) {
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        let sql = format!(
            "INSERT INTO calls (call_id, channel, started_at, state, last_seq, carrier_seq, language, \
             language_guessed, area, town, outcome, ended_at, updated_at, pending_actions) VALUES {} \
             ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, last_seq = excluded.last_seq, \
             carrier_seq = excluded.carrier_seq, language = excluded.language, \
             language_guessed = excluded.language_guessed, area = excluded.area, town = excluded.town, \
             outcome = excluded.outcome, ended_at = excluded.ended_at, updated_at = excluded.updated_at, \
             pending_actions = excluded.pending_actions",
            values_list(size, K)
        );
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
                .bind(&r.town)
                .bind(&r.outcome)
                .bind(r.ended_at)
                .bind(r.updated_at)
                .bind(&r.pending);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn write_events(tx: &mut super::Tx<'_>, rows: &[EventRow]) -> Result<(), CallError> {
    let mut rows = rows;
    for size in chunk_sizes(rows.len(), 64) {
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        let sql = format!("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES {}", values_list(size, 5));
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(&r.call_id).bind(r.seq).bind(r.at).bind(&r.kind).bind(&r.data);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn write_responses(tx: &mut super::Tx<'_>, rows: &[ResponseRow]) -> Result<(), CallError> {
    let mut rows = rows;
    for size in chunk_sizes(rows.len(), 32) {
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        let sql = format!(
            "INSERT INTO call_responses (call_id, key, fingerprint, response, created_at) VALUES {}",
            values_list(size, 5)
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(&r.call_id).bind(&r.key).bind(&r.fingerprint).bind(&r.response).bind(r.created_at);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_call_always_goes_to_the_same_writer() {
        for id in ["a", "call-1", "CA0123456789abcdef"] {
            assert_eq!(shard(id, 4), shard(id, 4));
            assert!(shard(id, 4) < 4);
            assert_eq!(shard(id, 1), 0);
        }
    }
}
