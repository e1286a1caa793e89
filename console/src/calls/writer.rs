//! The call runtime's write path: **group commit**.
//!
//! Every [`CallRequest`] goes to a writer (chosen by the call id, so one call's events stay in
//! order): four tasks with connections of their own for PostgreSQL (`super::pg`), the one
//! `call-writer` thread of a SQLite file (`super::sqlite`), or tasks on the sqlx pool ([`run`]:
//! SQLite in memory, or a PostgreSQL URL only sqlx can read). A writer takes all the requests that arrived while its
//! previous transaction ran — at most one per call, at most [`BATCH_MAX`] ([`next_batch`]) — and
//! applies them in **one** transaction ([`batch`], over the [`Store`] of either writer): one
//! statement locks and reads every call of the batch, the engine runs in memory, then the calls
//! and the call log (whose last row of each request keeps its answer) are written together, and
//! the transaction commits. Only after the commit does each request get its answer ([`apply`]).
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

use super::store::{CallRow, EventRow, Loaded, NewCall, SqlxStore, Store, Writes};
use super::{
    channel_name, enum_name, event_kind, queue, to_json, Answer, CallError, CallRequest, Handled, Origin, Runtime,
    MAX_STEPS_PER_REQUEST,
};
use crate::db::{Backend, DbError};
use crate::metrics::{ChannelLabels, OutcomeLabels};
use ivr::engine::{self, Action, CallState, Channel, Event, LogEntry, Lookup};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

/// At most this many requests in one transaction.
pub const BATCH_MAX: usize = 32;

/// One request waiting for its writer, and where its outcome goes.
pub struct Job {
    pub req: CallRequest,
    pub reply: oneshot::Sender<Result<Handled, CallError>>,
    /// Its place in the writer's bounded queue, given back when the job is answered or skipped.
    pub _permit: OwnedSemaphorePermit,
}

/// How many writer tasks on the pool a backend gets. SQLite has one write lock: one writer, which
/// then never waits for it (a SQLite file gets the `call-writer` thread instead, `super::sqlite`).
/// PostgreSQL locks rows: a few writers overlap their round trips.
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

/// Moves what arrived meanwhile from the queue to `waiting` (a bounded look-ahead).
pub(crate) fn gather(waiting: &mut VecDeque<Job>, rx: &mut mpsc::UnboundedReceiver<Job>) {
    while waiting.len() < 4 * BATCH_MAX {
        match rx.try_recv() {
            Ok(job) => waiting.push_back(job),
            Err(_) => break,
        }
    }
}

/// The next batch: at most one request per call (a call's later requests wait for the next
/// batch, in order), at most [`BATCH_MAX`].
pub(crate) fn next_batch(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut take = vec![false; waiting.len()];
    let mut n = 0;
    for (i, job) in waiting.iter().enumerate() {
        if n == BATCH_MAX {
            break;
        }
        if seen.insert(job.req.call_id.as_str()) {
            take[i] = true;
            n += 1;
        }
    }
    let mut batch = Vec::with_capacity(n);
    let mut rest = VecDeque::with_capacity(waiting.len() - n);
    for (job, take) in waiting.drain(..).zip(take) {
        if take {
            batch.push(job);
        } else {
            rest.push_back(job);
        }
    }
    *waiting = rest;
    batch
}

/// Runs one batch's transaction: begin, [`batch`] on the transaction's store, commit.
pub(crate) trait Transactor {
    async fn transaction(&mut self, rt: &Runtime, reqs: &[&CallRequest]) -> Result<Vec<Planned>, CallError>;
}

/// Transactions on the sqlx pool (PostgreSQL; SQLite without a file).
struct SqlxTransactor;

impl Transactor for SqlxTransactor {
    async fn transaction(&mut self, rt: &Runtime, reqs: &[&CallRequest]) -> Result<Vec<Planned>, CallError> {
        let backend = rt.db.backend();
        let mut tx = match backend {
            // Take the write lock now, not at the first write: no upgrade that could meet SQLITE_BUSY.
            Backend::Sqlite => rt.db.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => rt.db.pool().begin().await?,
        };
        let planned = batch(rt, &mut SqlxStore { tx: &mut tx, backend }, reqs).await?;
        tx.commit().await?;
        Ok(planned)
    }
}

/// A writer task on the sqlx pool: runs until every sender is gone.
pub async fn run(rt: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        gather(&mut waiting, &mut rx);
        let batch = next_batch(&mut waiting);
        apply(&rt, &mut SqlxTransactor, batch).await;
    }
}

/// Applies a batch and answers each request; on a database error, each request alone. A request
/// whose caller stopped waiting (its deadline passed, `super::WriterLimits`) is skipped: nobody
/// would receive its answer, and the carrier's retry is processed afresh.
pub(crate) async fn apply<T: Transactor>(rt: &Runtime, t: &mut T, mut batch: Vec<Job>) {
    batch.retain(|job| !job.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let reqs: Vec<&CallRequest> = batch.iter().map(|j| &j.req).collect();
    let outcome = t.transaction(rt, &reqs).await;
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
                let result = match t.transaction(rt, &[&job.req]).await {
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
pub(crate) struct Planned {
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

/// The call log's `data` of one step.
#[derive(Serialize)]
struct StepRecord<'a> {
    actions: &'a [Action],
    event: &'a Event,
    log: &'a [LogEntry],
    /// `"server"` on the step of an event the server raised itself (an operator assigned, a
    /// quiet call ended): the supervisors' timeline tells it from the carrier's.
    #[serde(skip_serializing_if = "Option::is_none")]
    raised_by: Option<&'static str>,
    /// Why the server ended the call (its `hung_up` step only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<super::EndReason>,
}

/// The body of one transaction for the requests (one per call): `Ok` holds each request's
/// outcome (refusals included, which wrote nothing); `Err` is a database error, and the caller
/// rolls everything back.
pub(crate) async fn batch<S: Store>(
    rt: &Runtime,
    store: &mut S,
    reqs: &[&CallRequest],
) -> Result<Vec<Planned>, CallError> {
    let ids: Vec<&str> = reqs.iter().map(|r| r.call_id.as_str()).collect();
    let mut loaded = store.load(&ids).await?;
    let mut writes = Writes::default();
    let mut planned = Vec::with_capacity(reqs.len());
    for req in reqs {
        let row = loaded.remove(req.call_id.as_str());
        planned.push(plan(rt, store, req, row, &mut writes).await?);
    }
    store.write(&writes).await?;
    Ok(planned)
}

/// Runs the engine for one request on its loaded row. Refusals are returned in the plan (nothing
/// written for them); database errors abort the batch.
async fn plan<S: Store>(
    rt: &Runtime,
    store: &mut S,
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
            if let Some((fingerprint, response)) = store.stored_response(&id, &key.key).await? {
                // A fingerprint erased by migration 0011 (it was an unkeyed hash of a body with the
                // caller's number) can no longer be compared: its retry gets the stored answer.
                if fingerprint != key.fingerprint && fingerprint != super::ERASED_FINGERPRINT {
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
    let mut touched_queue =
        matches!(req.event, Event::OperatorAssigned { .. } | Event::TransferFailed { .. } | Event::HandedOver { .. });
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
        let state_json = to_json(&state)?;
        store
            .insert_call(&NewCall {
                call_id: &id,
                channel: &channel,
                started_at: now_ms,
                caller_hash: caller.as_ref().map(|c| c.hash().as_str()),
                caller_masked: caller.as_ref().map(|c| c.masked()),
                state: &state_json,
            })
            .await?;
    }

    let was_ended = state.ended();
    let mut outward = Vec::new();
    if req.origin == Origin::Carrier {
        outward.append(&mut pending_before);
    }
    let sealed_number = req.sealed_number.as_ref().map(|s| s.as_str());
    let mut pending = VecDeque::from([req.event.clone()]);
    let mut steps = 0u64;
    let first_row = writes.events.len();
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
            data: to_json(&StepRecord {
                actions: &actions,
                event: &event,
                log: &log,
                raised_by: (req.origin == Origin::Server && steps == 1).then_some("server"),
                reason: req.reason.filter(|_| steps == 1),
            })?,
            request_key: None,
            fingerprint: None,
            answer: None,
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
                    let ahead = store.calls_ahead(&id).await?;
                    let (position, estimated_wait_secs) = queue::estimate(ahead, &rt.queue);
                    pending.push_back(Event::QueueUpdate { position, estimated_wait_secs });
                }
                Action::Enqueue { language, area, priority } => {
                    store.enqueue(&id, language, area, priority, now_ms).await?;
                    touched_queue = true;
                    outward.push(action);
                }
                Action::RecordCallback { language, area } => {
                    store.record_callback(&id, language, area, now_ms, sealed_number).await?;
                    touched_queue = true;
                    outward.push(action);
                }
                // Texts are sent by the adapters that hold the caller's number (`Channel::texts`),
                // after the commit; the engine offers them no other, so this comes only from a
                // state stored by another build: answered at once, the caller hears the menu again.
                Action::SendText { .. } if !state.channel.is_some_and(Channel::texts) => {
                    pending.push_back(Event::TextFailed { reason: "this channel sends no text messages".into() });
                }
                other => outward.push(other),
            }
        }
    }
    let ended = state.ended();
    if ended {
        store.leave(&id, matches!(req.event, Event::HungUp), now_ms).await?;
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
        cap: state.place.as_ref().and_then(|p| p.cap).map(|c| c.as_str().to_owned()),
        town: state.place.as_ref().map(|p| p.label.clone()),
        outcome: state.outcome.map(|o| enum_name(&o)),
        ended_at: ended.then_some(now_ms),
        updated_at: now_ms,
        pending: pending_after,
    });

    let answer = Answer { step: seq, actions: outward, ended };
    if let Some(key) = &req.key {
        // Kept on the request's last step (the answer's `step`), for the carrier's retries. An
        // accepted request always has a step: the loop above ran at least once.
        let last = writes.events[first_row..]
            .last_mut()
            .ok_or_else(|| DbError::Corrupt(format!("request of call {id} answered without a step")))?;
        last.request_key = Some(key.key.clone());
        last.fingerprint = Some(key.fingerprint.clone());
        last.answer = Some(to_json(&answer)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use ivr::domain::CallId;

    /// A request of `call`, tagged with `n` (its carrier sequence number) to follow it through.
    fn job(call: &str, n: i64) -> Job {
        let req = CallRequest {
            call_id: CallId::parse(call).unwrap(),
            event: Event::NoInput,
            now: chrono::DateTime::UNIX_EPOCH,
            key: None,
            carrier_seq: Some(n),
            origin: Origin::Carrier,
            sealed_number: None,
            reason: None,
        };
        // The receiving half is dropped: these jobs are only sorted, never answered.
        let permit = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().unwrap();
        Job { req, reply: oneshot::channel().0, _permit: permit }
    }

    fn queue(jobs: &[(&str, i64)]) -> VecDeque<Job> {
        jobs.iter().map(|&(call, n)| job(call, n)).collect()
    }

    /// The (call, tag) of each job, in order.
    fn tags<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<(String, i64)> {
        jobs.into_iter().map(|j| (j.req.call_id.as_str().to_owned(), j.req.carrier_seq.unwrap())).collect()
    }

    fn owned(jobs: &[(&str, i64)]) -> Vec<(String, i64)> {
        jobs.iter().map(|&(call, n)| (call.to_owned(), n)).collect()
    }

    #[test]
    fn a_calls_later_requests_wait_for_the_next_batches_in_order() {
        let mut waiting = queue(&[("a", 1), ("a", 2), ("a", 3)]);
        for n in 1..=3 {
            let batch = next_batch(&mut waiting);
            assert_eq!(tags(&batch), owned(&[("a", n)]));
        }
        assert!(waiting.is_empty());
        assert!(next_batch(&mut waiting).is_empty());
    }

    #[test]
    fn different_calls_go_in_one_batch_in_arrival_order() {
        let mut waiting = queue(&[("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("a", 3)]);
        let batch = next_batch(&mut waiting);
        assert_eq!(tags(&batch), owned(&[("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(tags(&waiting), owned(&[("a", 2), ("b", 2), ("a", 3)]), "the rest keeps its order");
        let batch = next_batch(&mut waiting);
        assert_eq!(tags(&batch), owned(&[("a", 2), ("b", 2)]));
        assert_eq!(tags(&next_batch(&mut waiting)), owned(&[("a", 3)]));
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_batch_max_requests_and_the_rest_keeps_its_order() {
        // BATCH_MAX + 8 calls, one request each, with a second request of call 0 among them.
        let ids: Vec<String> = (0..BATCH_MAX + 8).map(|i| format!("call-{i}")).collect();
        let mut jobs: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        jobs.insert(3, (ids[0].as_str(), 2));
        let mut waiting = queue(&jobs);

        let batch = next_batch(&mut waiting);
        assert_eq!(batch.len(), BATCH_MAX);
        let first: Vec<(&str, i64)> = ids[..BATCH_MAX].iter().map(|id| (id.as_str(), 1)).collect();
        assert_eq!(tags(&batch), owned(&first), "the first BATCH_MAX calls, in order");
        // Left: call 0's second request (skipped, not dropped), then the calls past the cap.
        let rest: Vec<(&str, i64)> =
            std::iter::once((ids[0].as_str(), 2)).chain(ids[BATCH_MAX..].iter().map(|id| (id.as_str(), 1))).collect();
        assert_eq!(tags(&waiting), owned(&rest));

        let batch = next_batch(&mut waiting);
        assert_eq!(tags(&batch), owned(&rest), "the rest fits in the next batch, in its order");
        assert!(waiting.is_empty());
    }

    #[test]
    fn the_writer_of_a_call_depends_on_its_id_alone_and_ids_spread_over_the_writers() {
        const WRITERS: usize = 4;
        let ids: Vec<String> = (0..1000).map(|i| format!("CA{i:032x}")).collect();
        let mut per_writer = [0usize; WRITERS];
        for id in &ids {
            // The same id in another allocation (as each request of a call brings its own).
            let again: String = id.chars().collect();
            assert_ne!(id.as_ptr(), again.as_ptr());
            let w = shard(id, WRITERS);
            assert_eq!(shard(&again, WRITERS), w, "{id}");
            assert!(w < WRITERS);
            assert_eq!(shard(id, 1), 0);
            per_writer[w] += 1;
        }
        for (w, n) in per_writer.iter().enumerate() {
            assert!((1..=400).contains(n), "writer {w} got {n} of 1000 calls: {per_writer:?}");
        }
    }
}
