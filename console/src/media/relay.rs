//! The browser phone across nodes (PostgreSQL): an operator's page is on one node, the call's
//! media on another (a SIP caller's RTP ends on the node that took the INVITE). The WebRTC leg
//! ends where the media is — each node announces its own media address in its answers — and
//! the signalling between the page's node and the call's node goes through the database:
//!
//! - the page's node writes the page's **offer**, **hold** or **failure** into `phone_relay`;
//!   the node that carries the call (and only it: [`Phone::carries`]) acts on it as if its own
//!   page had sent it, and writes the offer's **answer** back;
//! - a supervisor's page's node writes the supervisor's **monitor** offer, switches and end, and
//!   an operator's node the **start** and **stop** of a recording of the call (the call's node
//!   records it and stores the audio through the keeper the operators' feature gives it,
//!   [`Phone::keep_recordings_with`]);
//! - the call's node writes the call's media **states** (connected, reconnecting, failed, hung
//!   up…) for calls whose page is elsewhere; every other node hands them to its sockets, which
//!   forward them to the operator's page if it is theirs.
//!
//! Each write is followed by `NOTIFY helpline_phone`; every node LISTENs and also looks once a
//! second (a missed notification costs at most that). Rows live two minutes: the relay carries
//! signalling, never state (the call's state is in the call log, its media on its node). A node
//! that does not answer an offer in [`ANSWER_WITHIN`] (it died, or the call ended) is a
//! [`PhoneError::NoSuchCall`]: the page fails and the caller goes back to the queue.
//!
//! Rows are found by time, not by id: identities are handed out before commit, so a row with a
//! smaller id may become visible after a larger one; each node keeps the ids it has seen.

use super::phone::{CallControl, MonitorMode, PageRequest, Phone, PhoneError, PhoneEvent, PhoneStatus};
use crate::clock::Clock;
use crate::db::listen::Heard;
use crate::db::{Backend, Db, DbError};
use crate::tasks::Tasks;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// The PostgreSQL channel relay rows are announced on (an empty payload).
pub const CHANNEL: &str = "helpline_phone";

/// How long the page's node waits for the call's node to answer an offer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// How far back each look reads (rows older than this were seen, or are stale).
const WINDOW_MS: i64 = 30_000;

/// Rows older than this are deleted.
const KEEP_MS: i64 = 120_000;

/// One relayed message (the `body` column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Relayed {
    /// The page's SDP offer (`restart`: an ICE restart of the leg it has).
    Offer {
        sdp: String,
        restart: bool,
    },
    /// The call's node's answer to an offer (`reply_to` names it): the SDP, or why not.
    Answer {
        result: Result<String, String>,
    },
    Hold {
        on: bool,
    },
    /// The operator ended the call.
    Hangup,
    /// The page cannot be a phone: why.
    PageFailed {
        reason: String,
    },
    /// The call's media state, for the operator's page.
    State {
        status: PhoneStatus,
        reason: Option<String>,
    },
    /// A supervisor (the row's `operator_id`) monitors the call: `sdp`, their page's offer, to
    /// start (answered as an offer is), or none to switch mode.
    Monitor {
        mode: MonitorMode,
        sdp: Option<String>,
    },
    /// The supervisor stops monitoring the call.
    MonitorEnd,
    /// The call's operator records the call (answered as an offer is, with an empty SDP): the
    /// call's node records it and stores the audio in the row `recording` (open) when it stops,
    /// at the latest after `max_secs`.
    RecordStart {
        recording: String,
        max_secs: u32,
    },
    /// The call's operator stops recording the call.
    RecordStop,
    /// A step of a three-way call, a hand-over or an outside interpreter (the row's
    /// `operator_id` asks it), answered as an offer is with its result.
    Control {
        control: CallControl,
    },
}

/// A row to write.
struct Outgoing {
    call_id: String,
    operator: i64,
    reply_to: Option<i64>,
    body: Relayed,
}

struct Inner {
    db: Db,
    clock: Arc<dyn Clock>,
    url: String,
    /// This node, in the `origin` column: its own rows are not acted on.
    origin: String,
    /// Offers sent, by row id, waiting for their answer.
    waiting: Mutex<HashMap<i64, oneshot::Sender<Result<String, String>>>>,
    /// Calls of this node and the users whose page is on another node (an operator's, a
    /// mediator's): their legs' states are relayed.
    remote_pages: Mutex<HashSet<(String, i64)>>,
    /// The states to write (from [`Phone::report`], which may not wait).
    states: mpsc::UnboundedSender<Outgoing>,
    states_rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    wake: Notify,
}

/// The relay (cheap to clone). Only on PostgreSQL: one SQLite node carries all its calls.
#[derive(Clone)]
pub struct Relay(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Relay {
    /// A relay for a node on `db`; `None` unless it is PostgreSQL.
    pub fn new(db: Db, clock: Arc<dyn Clock>, database_url: &str) -> Option<Relay> {
        if db.backend() != Backend::Postgres {
            return None;
        }
        let (states, states_rx) = mpsc::unbounded_channel();
        Some(Relay(Arc::new(Inner {
            db,
            clock,
            url: database_url.to_owned(),
            origin: hex::encode(rand::random::<[u8; 8]>()),
            waiting: Mutex::new(HashMap::new()),
            remote_pages: Mutex::new(HashSet::new()),
            states,
            states_rx: Mutex::new(Some(states_rx)),
            wake: Notify::new(),
        })))
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.now().timestamp_millis()
    }

    async fn write(&self, row: &Outgoing) -> Result<i64, DbError> {
        let body = serde_json::to_string(&row.body).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let mut tx = self.0.db.pool().begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO phone_relay (origin, call_id, operator_id, reply_to, body, at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&self.0.origin)
        .bind(&row.call_id)
        .bind(row.operator)
        .bind(row.reply_to)
        .bind(body)
        .bind(self.now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The page's offer for a call carried by another node: its answer.
    pub async fn offer(&self, call_id: &str, operator: i64, sdp: String, restart: bool) -> Result<String, PhoneError> {
        self.ask(call_id, operator, Relayed::Offer { sdp, restart }).await
    }

    /// A supervisor's page's offer to monitor a call carried by another node: its answer.
    pub async fn monitor(
        &self,
        call_id: &str,
        supervisor: i64,
        sdp: String,
        mode: MonitorMode,
    ) -> Result<String, PhoneError> {
        self.ask(call_id, supervisor, Relayed::Monitor { mode, sdp: Some(sdp) }).await
    }

    /// An offer (`body`) to the call's node, and its answer.
    pub(super) async fn ask(&self, call_id: &str, operator: i64, body: Relayed) -> Result<String, PhoneError> {
        let (reply, answer) = oneshot::channel();
        let row = Outgoing { call_id: call_id.to_owned(), operator, reply_to: None, body };
        // (An answer read before this waiter is in the map is read again at the next look.)
        let id = self.write(&row).await.map_err(|e| PhoneError::Relay(e.to_string()))?;
        lock(&self.0.waiting).insert(id, reply);
        self.0.wake.notify_one();
        let answered = tokio::time::timeout(ANSWER_WITHIN, answer).await;
        lock(&self.0.waiting).remove(&id);
        match answered {
            Ok(Ok(Ok(sdp))) => Ok(sdp),
            Ok(Ok(Err(why))) => Err(PhoneError::relayed(why)),
            Ok(Err(_)) | Err(_) => Err(PhoneError::NoSuchCall),
        }
    }

    /// The page's hold or failure for a call carried by another node.
    pub async fn tell(&self, call_id: &str, operator: i64, body: Relayed) -> Result<(), DbError> {
        self.write(&Outgoing { call_id: call_id.to_owned(), operator, reply_to: None, body }).await.map(drop)
    }

    /// A state of a call of this node: relayed when its page is elsewhere.
    pub fn report(&self, event: &PhoneEvent) {
        let mut remote = lock(&self.0.remote_pages);
        let page = (event.call_id.clone(), event.operator);
        if !remote.contains(&page) {
            return;
        }
        if matches!(event.status, PhoneStatus::HungUp | PhoneStatus::Ended | PhoneStatus::Failed) {
            remote.remove(&page);
        }
        let body = Relayed::State { status: event.status, reason: event.reason.clone() };
        let _ = self.0.states.send(Outgoing {
            call_id: event.call_id.clone(),
            operator: event.operator,
            reply_to: None,
            body,
        });
    }

    /// Starts the listener, the reader and the writer of states (from [`Phone::start`]).
    pub fn start(&self, phone: Phone, tasks: &Tasks) {
        let relay = self.clone();
        tasks.spawn_until_stopped(
            "phone relay listener",
            crate::db::listen::listen(self.0.url.clone(), CHANNEL, move |heard| match heard {
                Heard::Listening | Heard::Payload(_) => relay.0.wake.notify_one(),
            }),
        );
        tasks.spawn_until_stopped("phone relay reader", self.clone().read(phone));
        if let Some(mut states) = lock(&self.0.states_rx).take() {
            let relay = self.clone();
            tasks.spawn_until_stopped("phone relay states", async move {
                while let Some(row) = states.recv().await {
                    if let Err(e) = relay.write(&row).await {
                        tracing::warn!(error = %e, call_id = row.call_id, "a phone state was not relayed");
                    }
                }
            });
        }
    }

    async fn read(self, phone: Phone) {
        let mut seen: HashMap<i64, i64> = HashMap::new();
        let mut purged_at = 0;
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.0.wake.notified()).await;
            let now = self.now_ms();
            if let Err(e) = self.read_once(&phone, now, &mut seen).await {
                tracing::warn!(error = %e, "the phone relay could not be read");
            }
            seen.retain(|_, at| *at >= now - 2 * WINDOW_MS);
            // Calls that ended without a final state (the node stopping, say) leave this set.
            lock(&self.0.remote_pages).retain(|(call_id, _)| phone.carries(call_id));
            if now - purged_at > KEEP_MS / 2 {
                purged_at = now;
                if let Err(e) = sqlx::query("DELETE FROM phone_relay WHERE at < $1")
                    .bind(now - KEEP_MS)
                    .execute(self.0.db.pool())
                    .await
                {
                    tracing::warn!(error = %e, "old phone relay rows not deleted");
                }
            }
        }
    }

    async fn read_once(&self, phone: &Phone, now: i64, seen: &mut HashMap<i64, i64>) -> Result<(), DbError> {
        type Row = (i64, String, String, i64, Option<i64>, String, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, origin, call_id, operator_id, reply_to, body, at FROM phone_relay WHERE at >= $1 ORDER BY id",
        )
        .bind(now - WINDOW_MS)
        .fetch_all(self.0.db.pool())
        .await?;
        for (id, origin, call_id, operator, reply_to, body, at) in rows {
            if origin == self.0.origin || seen.insert(id, at).is_some() {
                continue;
            }
            let body: Relayed = match serde_json::from_str(&body) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, id, "an unreadable phone relay row");
                    continue;
                }
            };
            let fresh = at >= now - 2_000;
            if !self.act(phone, id, call_id, operator, reply_to, body, fresh) {
                seen.remove(&id);
            }
        }
        Ok(())
    }

    /// Another node's row: for a call this node carries, or for a page that may be here.
    /// `false`: to be read again (a `fresh` answer whose offer may not be waiting yet).
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        phone: &Phone,
        id: i64,
        call_id: String,
        operator: i64,
        reply_to: Option<i64>,
        body: Relayed,
        fresh: bool,
    ) -> bool {
        match body {
            Relayed::Answer { result } => match reply_to.and_then(|offer| lock(&self.0.waiting).remove(&offer)) {
                Some(reply) => {
                    let _ = reply.send(result);
                }
                // Another node's offer, or ours a moment before it was put in the map: a
                // fresh answer is read again at the next look.
                None => return !fresh,
            },
            Relayed::State { status, reason } => phone.publish(PhoneEvent { call_id, operator, status, reason }),
            _ if !phone.carries(&call_id) => {}
            Relayed::Offer { sdp, restart } => {
                lock(&self.0.remote_pages).insert((call_id.clone(), operator));
                let (relay, phone) = (self.clone(), phone.clone());
                tokio::spawn(async move {
                    let result = phone.offer(&call_id, operator, sdp, restart).await.map_err(|e| e.to_string());
                    let row = Outgoing { call_id, operator, reply_to: Some(id), body: Relayed::Answer { result } };
                    if let Err(e) = relay.write(&row).await {
                        tracing::warn!(error = %e, call_id = row.call_id, "a phone answer was not relayed");
                    }
                });
            }
            // As its own page's (a mediator's hang-up is their leaving).
            Relayed::Hold { on } => {
                phone.request_here(&call_id, operator, &PageRequest::Hold(on));
            }
            Relayed::PageFailed { reason } => {
                phone.request_here(&call_id, operator, &PageRequest::Failed(reason));
            }
            Relayed::Hangup => {
                phone.request_here(&call_id, operator, &PageRequest::Hangup);
            }
            Relayed::Control { control } => {
                let (relay, phone) = (self.clone(), phone.clone());
                tokio::spawn(async move {
                    let result = phone.control_here(&call_id, control).await.map_err(|e| e.to_string());
                    let row = Outgoing { call_id, operator, reply_to: Some(id), body: Relayed::Answer { result } };
                    if let Err(e) = relay.write(&row).await {
                        tracing::warn!(error = %e, call_id = row.call_id, "a call control's answer was not relayed");
                    }
                });
            }
            Relayed::Monitor { mode, sdp: Some(sdp) } => {
                let (relay, phone) = (self.clone(), phone.clone());
                tokio::spawn(async move {
                    let result = phone.monitor(&call_id, operator, sdp, mode).await.map_err(|e| e.to_string());
                    let row = Outgoing { call_id, operator, reply_to: Some(id), body: Relayed::Answer { result } };
                    if let Err(e) = relay.write(&row).await {
                        tracing::warn!(error = %e, call_id = row.call_id, "a monitor answer was not relayed");
                    }
                });
            }
            Relayed::Monitor { mode, sdp: None } => {
                if let Err(e) = phone.set_monitor_here(&call_id, operator, mode) {
                    tracing::info!(error = %e, call_id, "a relayed monitor switch was refused");
                }
            }
            Relayed::RecordStart { recording, max_secs } => {
                let result = phone.record_for_another(&call_id, recording, max_secs).map(|()| String::new());
                let row = Outgoing {
                    call_id,
                    operator,
                    reply_to: Some(id),
                    body: Relayed::Answer { result: result.map_err(|e| e.to_string()) },
                };
                let relay = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = relay.write(&row).await {
                        tracing::warn!(error = %e, call_id = row.call_id, "a recording's answer was not relayed");
                    }
                });
            }
            Relayed::RecordStop => {
                if let Err(e) = phone.stop_recording(&call_id) {
                    // The call's bridge is gone: its recording was stored when it ended.
                    tracing::info!(error = %e, call_id, "a relayed recording stop found no bridge");
                }
            }
            Relayed::MonitorEnd => {
                if let Err(e) = phone.end_monitor_here(&call_id, operator) {
                    tracing::info!(error = %e, call_id, "a relayed monitor end was refused");
                }
            }
        }
        true
    }
}
