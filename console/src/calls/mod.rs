//! The call runtime every telephony adapter (JSON webhook, TwiML, SIP) goes through: load the
//! call's state, run the engine, resolve the engine's lookups (nearest services, queue position)
//! and feed the answers back, then write the new state, the call log and the answer in one
//! transaction — and only then hand the actions back to the adapter.
//!
//! Architecture invariant: nothing an adapter sends out has not been durably recorded first. A
//! node that dies after the commit loses nothing; one that dies before it never answered, so the
//! carrier's retry is processed afresh (on any node: the state lives in the database).

mod lookups;
mod queue;

pub use lookups::{NearbyServices, NoDirectory};

use crate::db::{Db, DbError};
use crate::metrics::{ChannelLabels, Metrics, OutcomeLabels};
use chrono::{DateTime, Utc};
use ivr::domain::CallId;
use ivr::engine::{self, Action, CallState, Channel, Event, Lookup};
use ivr::flow::Flow;
use serde::{Deserialize, Serialize};
use sqlx::Any;
use std::collections::VecDeque;
use std::sync::Arc;

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
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for CallError {
    fn from(e: sqlx::Error) -> Self {
        CallError::Db(DbError::Query(e))
    }
}

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

/// Runs calls: cheap to clone, shared by every adapter.
#[derive(Clone)]
pub struct CallRuntime {
    db: Db,
    flow: Arc<Flow>,
    directory: Arc<dyn NearbyServices>,
    metrics: Arc<Metrics>,
    queue: queue::QueueSettings,
    /// Woken after a request changed the waiting queue (the console's ACD listens).
    queue_changed: Arc<tokio::sync::Notify>,
}

impl CallRuntime {
    pub fn new(db: Db, flow: Arc<Flow>, directory: Arc<dyn NearbyServices>, metrics: Arc<Metrics>) -> Self {
        CallRuntime {
            db,
            flow,
            directory,
            metrics,
            queue: queue::QueueSettings::default(),
            queue_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified after a request changed the waiting queue or callbacks (the console's ACD waits
    /// on it).
    pub fn queue_changed(&self) -> Arc<tokio::sync::Notify> {
        self.queue_changed.clone()
    }

    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Applies one event durably and returns what to do.
    pub async fn handle(&self, req: CallRequest) -> Result<Handled, CallError> {
        let id = req.call_id.as_str().to_owned();
        let now_ms = req.now.timestamp_millis();
        let mut tx = self.db.pool().begin().await?;

        // Take the call's row lock first (a write): concurrent requests for one call queue here,
        // on PostgreSQL (row lock) and on SQLite (the database write lock) alike.
        let locked = sqlx::query("UPDATE calls SET updated_at = updated_at WHERE call_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();

        if locked > 0 {
            if let Some(key) = &req.key {
                let stored: Option<(String, String)> =
                    sqlx::query_as("SELECT fingerprint, response FROM call_responses WHERE call_id = $1 AND key = $2")
                        .bind(&id)
                        .bind(&key.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((fingerprint, response)) = stored {
                    tx.rollback().await?;
                    if fingerprint != key.fingerprint {
                        return Err(CallError::KeyReused { call: id, key: key.key.clone() });
                    }
                    let answer: Answer = serde_json::from_str(&response)
                        .map_err(|e| DbError::Corrupt(format!("stored answer of call {id}: {e}")))?;
                    return Ok(Handled { answer, replayed: true });
                }
            }
        }

        // Actions the server decided since the carrier's last request.
        let mut pending_before: Vec<Action> = Vec::new();
        let (mut state, mut seq, carrier_seq) = match (&req.event, locked) {
            (Event::CallStarted { channel, caller, .. }, 0) => {
                let state = CallState::initial(req.call_id.clone());
                sqlx::query(
                    "INSERT INTO calls (call_id, channel, started_at, caller_hash, caller_masked, state, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&id)
                .bind(channel_name(*channel))
                .bind(now_ms)
                .bind(caller.as_ref().map(|c| c.hash().as_str().to_owned()))
                .bind(caller.as_ref().map(|c| c.masked().to_owned()))
                .bind(to_json(&state)?)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                self.metrics.calls_started.get_or_create(&ChannelLabels { channel: channel_name(*channel).into() }).inc();
                self.metrics.calls_active.get_or_create(&ChannelLabels { channel: channel_name(*channel).into() }).inc();
                (state, 0i64, 0i64)
            }
            (_, 0) => return Err(CallError::UnknownCall(id)),
            (Event::CallStarted { .. }, _) => return Err(CallError::AlreadyStarted(id)),
            (_, _) => {
                let (state, last_seq, carrier_seq, pending): (String, i64, i64, Option<String>) = sqlx::query_as(
                    "SELECT state, last_seq, carrier_seq, pending_actions FROM calls WHERE call_id = $1",
                )
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
                let state: CallState = serde_json::from_str(&state)
                    .map_err(|e| DbError::Corrupt(format!("stored state of call {id}: {e}")))?;
                if let Some(p) = pending {
                    pending_before = serde_json::from_str(&p)
                        .map_err(|e| DbError::Corrupt(format!("pending actions of call {id}: {e}")))?;
                }
                (state, last_seq, carrier_seq)
            }
        };
        let new_carrier_seq = match req.carrier_seq {
            Some(got) if got != carrier_seq + 1 => {
                return Err(CallError::OutOfSequence { call: id, expected: carrier_seq + 1, got });
            }
            Some(got) => got,
            None => carrier_seq,
        };

        let was_ended = state.ended();
        let mut touched_queue = matches!(req.event, Event::OperatorAssigned { .. } | Event::TransferFailed { .. });
        let mut outward = Vec::new();
        if req.origin == Origin::Carrier {
            outward.append(&mut pending_before);
        }
        let mut pending = VecDeque::from([req.event.clone()]);
        let mut steps = 0;
        while let Some(event) = pending.pop_front() {
            steps += 1;
            if steps > MAX_STEPS_PER_REQUEST {
                tracing::error!(call_id = %id, "more than {MAX_STEPS_PER_REQUEST} engine steps for one request");
                break;
            }
            let step = engine::step(&self.flow, &state, &event, req.now);
            self.metrics.engine_decisions.inc();
            seq += 1;
            let (log, actions): (Vec<Action>, Vec<Action>) =
                step.actions.into_iter().partition(|a| matches!(a, Action::Log(_)));
            let log: Vec<_> = log.into_iter().filter_map(|a| if let Action::Log(l) = a { Some(l) } else { None }).collect();
            sqlx::query("INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ($1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(seq)
                .bind(now_ms)
                .bind(event_kind(&event))
                .bind(to_json(&serde_json::json!({ "event": event, "log": log, "actions": actions }))?)
                .execute(&mut *tx)
                .await?;
            state = step.state;
            for action in actions {
                match action {
                    Action::Lookup(Lookup::NearestServices { area, near, offset, limit, .. }) => {
                        let (services, has_more) = self.directory.nearest(area, near, offset, limit, req.now);
                        pending.push_back(Event::LookupResults { services, has_more });
                    }
                    Action::Lookup(Lookup::QueueState) => {
                        let (position, estimated_wait_secs) = queue::position(&mut tx, &id, &self.queue).await?;
                        pending.push_back(Event::QueueUpdate { position, estimated_wait_secs });
                    }
                    Action::Enqueue { language, area, priority } => {
                        queue::enqueue(&mut tx, &id, language, area, priority, now_ms).await?;
                        touched_queue = true;
                        outward.push(action);
                    }
                    Action::RecordCallback { language, area } => {
                        queue::record_callback(&mut tx, &id, language, area, now_ms).await?;
                        touched_queue = true;
                        outward.push(action);
                    }
                    other => outward.push(other),
                }
            }
        }
        if state.ended() {
            queue::leave(&mut tx, &id, matches!(req.event, Event::HungUp), now_ms).await?;
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
        sqlx::query(
            "UPDATE calls SET state = $2, last_seq = $3, carrier_seq = $4, language = $5, language_guessed = $6, \
             area = $7, town = $8, outcome = $9, ended_at = $10, updated_at = $11, pending_actions = $12 \
             WHERE call_id = $1",
        )
        .bind(&id)
        .bind(to_json(&state)?)
        .bind(seq)
        .bind(new_carrier_seq)
        .bind(state.language.map(|l| l.as_str().to_owned()))
        .bind(i64::from(state.language.is_some() && state.language == state.guessed_language))
        .bind(state.area.map(|a| a.as_str().to_owned()))
        .bind(state.place.as_ref().map(|p| p.label.clone()))
        .bind(state.outcome.map(|o| enum_name(&o)))
        .bind(state.ended().then_some(now_ms))
        .bind(now_ms)
        .bind(pending_after)
        .execute(&mut *tx)
        .await?;

        let answer = Answer { step: seq, actions: outward, ended: state.ended() };
        if let Some(key) = &req.key {
            sqlx::query(
                "INSERT INTO call_responses (call_id, key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(to_json(&answer)?)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if touched_queue {
            self.queue_changed.notify_one();
        }

        if state.ended() && !was_ended {
            let channel = state.channel.map(channel_name).unwrap_or("unknown").to_owned();
            let outcome = state.outcome.map(|o| enum_name(&o)).unwrap_or_else(|| "unknown".into());
            self.metrics.calls_active.get_or_create(&ChannelLabels { channel: channel.clone() }).dec();
            self.metrics.calls_ended.get_or_create(&OutcomeLabels { channel, outcome }).inc();
        }
        Ok(Handled { answer, replayed: false })
    }

    /// The recorded events of a call, in order, with their instants: what replays it.
    pub async fn recorded_events(&self, call_id: &CallId) -> Result<Vec<(Event, DateTime<Utc>)>, CallError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT at, data FROM call_events WHERE call_id = $1 ORDER BY seq")
                .bind(call_id.as_str())
                .fetch_all(self.db.pool())
                .await?;
        rows.into_iter()
            .map(|(at, data)| {
                #[derive(Deserialize)]
                struct Row {
                    event: Event,
                }
                let row: Row = serde_json::from_str(&data).map_err(|e| DbError::Corrupt(format!("call log: {e}")))?;
                let at = DateTime::from_timestamp_millis(at).ok_or_else(|| DbError::Corrupt("call log instant".into()))?;
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
        .fetch_all(self.db.pool())
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
            .fetch_optional(self.db.pool())
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
