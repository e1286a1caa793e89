//! The call runtime every telephony adapter (JSON webhook, TwiML, SIP) goes through: load the
//! call's state, run the engine, resolve the engine's lookups (nearest services, queue position)
//! and feed the answers back, then write the new state, the call log and the answer in one
//! transaction — and only then hand the actions back to the adapter. The transactions are run by
//! writers that commit the requests arriving together as one group (`writer.rs`): tasks with
//! connections of their own for PostgreSQL (`pg.rs`), one thread with its own connection for a
//! SQLite file (`sqlite.rs`), and tasks on the sqlx pool otherwise (`store.rs`).
//!
//! Architecture invariant: nothing an adapter sends out has not been durably recorded first. A
//! node that dies after the commit loses nothing; one that dies before it never answered, so the
//! carrier's retry is processed afresh (on any node: the state lives in the database).

mod lookups;
pub mod nodes;
mod pg;
mod queue;
pub mod quiet;
pub mod sealed;
mod sqlite;
mod store;
pub mod texts;
pub mod voicemail;
mod writer;

pub use lookups::{NearbyServices, NoDirectory};
pub use pg::APPLICATION_NAME as POSTGRES_WRITER_NAME;
pub use texts::{CarryOut, NoTexts, TextFuture, TextOrder, TextSender};

use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use ivr::domain::CallId;
use ivr::engine::{Action, CallState, Channel, Event};
use ivr::flow::Flow;
use serde::{Deserialize, Serialize};
use sqlx::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// At most this many engine steps per carrier request (the event plus the lookups it triggers),
/// a guard against a flow that would loop on lookups.
const MAX_STEPS_PER_REQUEST: usize = 16;

/// Why an event was not applied. Each maps to a clear 4xx at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unknown call {0}: a call begins with a call.started event")]
    UnknownCall(String),
    #[error("call {0} has already started")]
    AlreadyStarted(String),
    #[error("event out of sequence for call {call}: expected seq {expected}, got {got}")]
    OutOfSequence { call: String, expected: i64, got: i64 },
    #[error("request {key} of call {call} was already answered, and this retry differs from it")]
    KeyReused { call: String, key: String },
    /// The call's writer has [`WriterLimits::queue`] requests waiting already: the request was not
    /// taken (nothing written); the carrier should retry it later.
    #[error("the server is busy: {0} requests are waiting to be written; retry later")]
    QueueFull(usize),
    /// The request was not answered within [`WriterLimits::deadline`]. It is either not written
    /// (its writer skips it) or written with its answer kept for the carrier's retry.
    #[error("the request was not written within {0:?}; retry it")]
    Deadline(std::time::Duration),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl CallError {
    /// The database did not take the request, and nothing of it was written (an error, which
    /// rolled its transaction back, or a full queue): the same request may succeed when tried
    /// again. Not [`CallError::Deadline`]: a request past its deadline may still be committed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Db(_) | CallError::QueueFull(_))
    }
}

impl From<sqlx::Error> for CallError {
    fn from(e: sqlx::Error) -> Self {
        CallError::Db(DbError::Query(e))
    }
}

/// What migration 0011 left in place of the fingerprints written before they were keyed.
pub const ERASED_FINGERPRINT: &str = "erased";

/// An idempotency key: a retried request carries the same key and fingerprint and gets the
/// stored answer; the same key with another fingerprint is a conflict.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub key: String,
    pub fingerprint: String,
}

/// One event for one call, as an adapter hands it in.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub call_id: CallId,
    pub event: Event,
    pub now: DateTime<Utc>,
    /// For retries: the same key returns the same answer.
    pub key: Option<RequestKey>,
    /// The carrier's per-call sequence number, when it has one: it must be the last one + 1.
    pub carrier_seq: Option<i64>,
    /// Who raised the event: the carrier (its answer carries the actions) or the server itself
    /// (the ACD assigning an operator): then the actions wait for the carrier's next request,
    /// unless the adapter delivers them itself (SIP, which holds the call).
    pub origin: Origin,
    /// The caller's number sealed for this call ([`sealed`]), from an adapter that has it: kept
    /// with the callback request if this step records one, and nowhere otherwise.
    pub sealed_number: Option<sealed::SealedNumber>,
    /// Why the call ended, when the server (or its SIP adapter) ended it: written with the
    /// `hung_up` step in the call log (`reason`). `None` for every other event, and for a hang-up
    /// the caller or carrier sent (the event says it).
    pub reason: Option<EndReason>,
}

/// Why a call ended, as the call log records it on the `hung_up` step the server raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No RTP from the SIP caller for `rtp_timeout_secs`.
    RtpTimeout,
    /// The node drained (SIGTERM) and its drain time ran out: goodbye, then BYE.
    Drain,
    /// The node stopped while the call was up.
    ServerStopped,
    /// The node holding the call stopped beating (`calls::nodes`).
    NodeDied,
    /// No event from the carrier for too long (`calls::quiet`).
    Quiet,
    /// The operator ended a call bridged to their browser.
    OperatorHungUp,
    /// Transferred to an operator's phone: the helpline's part is over.
    Transferred,
}

/// Where an event comes from, which decides where its actions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A carrier's request: the actions are its answer.
    #[default]
    Carrier,
    /// The server (the ACD): the actions are kept for the carrier's next request.
    Server,
}

/// What the adapter must do, in order. Only actions for the outside: log entries went to the
/// call log and lookups were answered inside. For a server-raised event ([`Origin::Server`]) the
/// list is empty: its actions wait in the call's pending actions for the carrier's next request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The call-log sequence number after this request (adapters use it to tag callbacks).
    pub step: i64,
    pub actions: Vec<Action>,
    /// True when the call has ended.
    pub ended: bool,
}

/// The stored side of a processed request.
#[derive(Debug, Clone)]
pub struct Handled {
    pub answer: Answer,
    /// True when this was a retry answered from the store, without advancing the call.
    pub replayed: bool,
}

/// How long the writers' queues may grow and how long a request may wait in one
/// (`call_queue_limit`, `call_deadline_ms`): past either, the request is answered "busy" (the
/// JSON webhook's 503 with `Retry-After`) instead of piling up in memory or waiting for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterLimits {
    /// Requests taken and not yet answered, per writer.
    pub queue: usize,
    /// How long a request may wait for its answer.
    pub deadline: Duration,
}

impl Default for WriterLimits {
    fn default() -> Self {
        WriterLimits { queue: 1024, deadline: Duration::from_secs(5) }
    }
}

/// Runs calls: cheap to clone, shared by every adapter.
#[derive(Clone)]
pub struct CallRuntime {
    rt: Arc<Runtime>,
    /// The writer tasks' queues (see [`writer`]); a call always goes to the same one.
    writers: Arc<Vec<Writer>>,
    limits: WriterLimits,
}

/// One writer's queue and the permits that bound it: a request holds a permit from the moment
/// it is taken until its writer answers or skips it, wherever it waits meanwhile (the channel,
/// the writer's look-ahead, a batch).
struct Writer {
    tx: mpsc::UnboundedSender<writer::Job>,
    permits: Arc<Semaphore>,
}

/// What the writers need: the database, the menus, the lookups' sources, the metrics.
pub(crate) struct Runtime {
    db: Db,
    flow: Arc<Flow>,
    directory: Arc<dyn NearbyServices>,
    metrics: Arc<Metrics>,
    queue: queue::QueueSettings,
    /// Woken after a request changed the waiting queue (the console's ACD listens).
    queue_changed: Arc<tokio::sync::Notify>,
}

impl CallRuntime {
    /// Starts the writers: call within a tokio runtime. They stop when the last clone of the
    /// runtime is dropped.
    pub fn new(
        db: Db,
        flow: Arc<Flow>,
        directory: Arc<dyn NearbyServices>,
        metrics: Arc<Metrics>,
        limits: WriterLimits,
    ) -> Self {
        let rt = Arc::new(Runtime {
            db,
            flow,
            directory,
            metrics,
            queue: queue::QueueSettings::default(),
            queue_changed: Arc::new(tokio::sync::Notify::new()),
        });
        // A SQLite file gets its writer thread, PostgreSQL writer tasks with connections of their
        // own; otherwise (SQLite in memory, or they could not start) writer tasks on the pool.
        if let Some(file) = rt.db.sqlite_file() {
            match sqlite::spawn(rt.clone(), file) {
                Ok(tx) => return CallRuntime::with_writers(rt, vec![tx], limits),
                Err(e) => tracing::warn!(error = %e, "no SQLite writer thread: the calls are written through the pool"),
            }
        }
        if let Some(url) = rt.db.postgres_url() {
            match pg::spawn(rt.clone(), url, writer::writers_for(rt.db.backend())) {
                Ok(writers) => return CallRuntime::with_writers(rt, writers, limits),
                Err(e) => {
                    tracing::warn!(error = %e, "no PostgreSQL writers of their own: the calls are written through the pool")
                }
            }
        }
        let writers = (0..writer::writers_for(rt.db.backend()))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(writer::run(rt.clone(), rx));
                tx
            })
            .collect();
        CallRuntime::with_writers(rt, writers, limits)
    }

    fn with_writers(rt: Arc<Runtime>, txs: Vec<mpsc::UnboundedSender<writer::Job>>, limits: WriterLimits) -> Self {
        let queue = limits.queue.clamp(1, Semaphore::MAX_PERMITS);
        let writers = txs.into_iter().map(|tx| Writer { tx, permits: Arc::new(Semaphore::new(queue)) }).collect();
        CallRuntime { rt, writers: Arc::new(writers), limits }
    }

    /// Notified after a request changed the waiting queue or callbacks (the console's ACD waits
    /// on it).
    pub fn queue_changed(&self) -> Arc<tokio::sync::Notify> {
        self.rt.queue_changed.clone()
    }

    pub fn flow(&self) -> &Flow {
        &self.rt.flow
    }

    fn db(&self) -> &Db {
        &self.rt.db
    }

    /// Applies one event durably and returns what to do: the answer comes back only once the
    /// transaction that recorded the event (with others, see [`writer`]) has committed.
    ///
    /// Bounded ([`WriterLimits`]): with the call's writer's queue full the request is refused at
    /// once ([`CallError::QueueFull`], nothing written); past the deadline the caller gets
    /// [`CallError::Deadline`] and stops waiting — the writer then skips the request if it has
    /// not started it, or commits it with its answer kept for the carrier's retry.
    pub async fn handle(&self, req: CallRequest) -> Result<Handled, CallError> {
        self.handle_within(req, Some(self.limits.deadline)).await
    }

    /// [`Self::handle`] without the deadline, for a caller that must know whether its request was
    /// written (the SIP adapter: a step past the deadline might still be committed later, so a
    /// retry or a re-armed menu could apply a key twice). The queue's bound still holds; a
    /// database error still ends the wait (nothing written: the transaction rolled back).
    pub async fn handle_unbounded(&self, req: CallRequest) -> Result<Handled, CallError> {
        self.handle_within(req, None).await
    }

    async fn handle_within(&self, req: CallRequest, deadline: Option<Duration>) -> Result<Handled, CallError> {
        let (reply, answer) = oneshot::channel();
        let writer = &self.writers[writer::shard(req.call_id.as_str(), self.writers.len())];
        let permit = writer.permits.clone().try_acquire_owned().map_err(|_| CallError::QueueFull(self.limits.queue))?;
        let unavailable = || CallError::Db(DbError::Query(sqlx::Error::WorkerCrashed));
        writer.tx.send(writer::Job { req, reply, _permit: permit }).map_err(|_| unavailable())?;
        let Some(deadline) = deadline else { return answer.await.map_err(|_| unavailable())? };
        match tokio::time::timeout(deadline, answer).await {
            Ok(answer) => answer.map_err(|_| unavailable())?,
            Err(_) => Err(CallError::Deadline(deadline)),
        }
    }

    /// The recorded events of a call, in order, with their instants: what replays it.
    pub async fn recorded_events(&self, call_id: &CallId) -> Result<Vec<(Event, DateTime<Utc>)>, CallError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT at, data FROM call_events WHERE call_id = $1 ORDER BY seq")
                .bind(call_id.as_str())
                .fetch_all(self.db().pool())
                .await?;
        rows.into_iter()
            .map(|(at, data)| {
                #[derive(Deserialize)]
                struct Row {
                    event: Event,
                }
                let row: Row = serde_json::from_str(&data).map_err(|e| DbError::Corrupt(format!("call log: {e}")))?;
                let at =
                    DateTime::from_timestamp_millis(at).ok_or_else(|| DbError::Corrupt("call log instant".into()))?;
                Ok((row.event, at))
            })
            .collect()
    }

    /// The operator and target of the call's latest transfer, with its step.
    pub async fn last_transfer(&self, call_id: &CallId) -> Result<Option<(String, String, i64)>, CallError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, data FROM call_events WHERE call_id = $1 AND kind = 'operator_assigned' ORDER BY seq DESC LIMIT 1",
        )
        .bind(call_id.as_str())
        .fetch_all(self.db().pool())
        .await?;
        for (seq, data) in rows {
            #[derive(Deserialize)]
            struct Row {
                actions: Vec<Action>,
            }
            let row: Row = serde_json::from_str(&data).map_err(|e| DbError::Corrupt(format!("call log: {e}")))?;
            for action in row.actions {
                if let Action::Transfer { operator, target } = action {
                    return Ok(Some((operator, target, seq)));
                }
            }
        }
        Ok(None)
    }

    /// The stored state of a call.
    pub async fn state(&self, call_id: &CallId) -> Result<Option<CallState>, CallError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT state FROM calls WHERE call_id = $1")
            .bind(call_id.as_str())
            .fetch_optional(self.db().pool())
            .await?;
        row.map(|(s,)| serde_json::from_str(&s).map_err(|e| CallError::Db(DbError::Corrupt(format!("state: {e}")))))
            .transpose()
    }
}

/// The channel's stable name in storage and metrics.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sip => "sip",
        Channel::Webhook => "webhook",
        Channel::Twiml => "twiml",
    }
}

/// The serde name of a unit-like enum value (`Outcome::SelfService` → `self_service`).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The call log's `kind` of an event (`digits`, `no_input`, …).
fn event_kind(event: &Event) -> String {
    match serde_json::to_value(event) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => "unknown".into(),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Corrupt(format!("cannot serialize: {e}")))
}

/// A transaction on the pool, whichever the backend.
pub(crate) type Tx<'c> = sqlx::Transaction<'c, Any>;
