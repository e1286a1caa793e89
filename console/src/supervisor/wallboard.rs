//! The live wallboard (`GET /ws/wallboard`): calls in the menu and in the queue per language and
//! area, the longest wait, operators by presence, and today's service level, abandonment and ASA.
//!
//! One task per node ([`start_feed`], started by `serve`) reads the snapshot every second while any
//! wallboard is open and publishes it in a [`Feed`]; each socket sends it when it differs from what
//! that socket sent last (the snapshot holds instants, not ages, so a quiet helpline sends
//! nothing). So the database answers one snapshot a second however many wallboards are open (a
//! supervisors' room and its screens), plus one when a wallboard opens: its first message, at once.

use super::kpi::{self, rome_date, rome_midnight_ms, Grouping, Kpis};
use super::store;
use super::SupervisorState;
use crate::db::{Db, DbError};
use crate::error::AppError;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the open wallboards' snapshot is read.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    pub language: String,
    pub area: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Waiting {
    pub language: String,
    pub area: String,
    pub count: i64,
    /// When the longest-waiting call of this group entered the queue (RFC 3339).
    pub oldest_since: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OperatorState {
    pub name: String,
    pub presence: String,
    pub since: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Today {
    pub day: String,
    pub calls: i64,
    pub queued: i64,
    pub answered: i64,
    pub abandoned: i64,
    #[serde(flatten)]
    pub kpis: Kpis,
}

/// A call an operator is talking to now (what a supervisor may listen to, whisper into or
/// barge into).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveCall {
    pub call_id: String,
    pub language: String,
    pub area: String,
    /// The operator's user name.
    pub operator: Option<String>,
    /// When the operator answered.
    pub since: String,
}

/// The most live calls a wallboard lists (the count is `talking`).
pub const MAX_LIVE_CALLS: i64 = 200;

/// One wallboard message: `{"type": "wallboard", …}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub in_menu: Vec<Group>,
    pub in_queue: Vec<Waiting>,
    /// Calls talking to an operator now.
    pub talking: i64,
    /// The longest-running of them, oldest first (at most [`MAX_LIVE_CALLS`]).
    pub live_calls: Vec<LiveCall>,
    /// When the longest-waiting caller entered the queue, if anyone is waiting.
    pub longest_wait_since: Option<String>,
    /// Operators per presence state (`available`, `on_call`, `paused`, …).
    pub operators_by_state: std::collections::BTreeMap<String, i64>,
    pub operators: Vec<OperatorState>,
    pub today: Today,
}

pub async fn snapshot(db: &Db, now_ms: i64) -> Result<Snapshot, DbError> {
    use crate::clock::rfc3339;
    let in_menu: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT COALESCE(c.language, ''), COALESCE(c.area, ''), COUNT(*) FROM calls c \
         LEFT JOIN queue_entries q ON q.call_id = c.call_id \
         WHERE c.ended_at IS NULL AND (q.status IS NULL OR q.status NOT IN ('waiting', 'assigned', 'answered')) \
         GROUP BY COALESCE(c.language, ''), COALESCE(c.area, '') ORDER BY 1, 2",
    )
    .fetch_all(db.pool())
    .await?;
    let in_queue: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT language, COALESCE(area, ''), COUNT(*), MIN(entered_at) FROM queue_entries WHERE status = 'waiting' \
         GROUP BY language, COALESCE(area, '') ORDER BY 1, 2",
    )
    .fetch_all(db.pool())
    .await?;
    let (talking,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id \
         WHERE c.ended_at IS NULL AND (c.answered_at IS NOT NULL OR q.status IN ('assigned', 'answered'))",
    )
    .fetch_one(db.pool())
    .await?;
    let live_calls: Vec<(String, String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT c.call_id, q.language, COALESCE(q.area, ''), q.operator, q.updated_at FROM calls c \
         JOIN queue_entries q ON q.call_id = c.call_id WHERE c.ended_at IS NULL AND q.status = 'answered' \
         ORDER BY q.updated_at, c.call_id LIMIT $1",
    )
    .bind(MAX_LIVE_CALLS)
    .fetch_all(db.pool())
    .await?;
    let operators: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT u.name, s.presence, s.since FROM operator_state s JOIN users u ON u.id = s.user_id \
         WHERE s.presence <> 'offline' ORDER BY u.name",
    )
    .fetch_all(db.pool())
    .await?;
    let mut by_state = std::collections::BTreeMap::new();
    for (_, presence, _) in &operators {
        *by_state.entry(presence.clone()).or_insert(0) += 1;
    }
    let day = rome_date(now_ms);
    let start = rome_midnight_ms(day);
    let buckets = store::buckets(db, start, rome_midnight_ms(day.succ_opt().unwrap_or(day)), Grouping::Day).await?;
    let (_, total) = kpi::group(&buckets, Grouping::Day);
    let c = total.counts;
    Ok(Snapshot {
        kind: "wallboard",
        longest_wait_since: in_queue.iter().map(|w| w.3).min().map(rfc3339),
        in_menu: in_menu.into_iter().map(|(language, area, count)| Group { language, area, count }).collect(),
        in_queue: in_queue
            .into_iter()
            .map(|(language, area, count, oldest)| Waiting { language, area, count, oldest_since: rfc3339(oldest) })
            .collect(),
        talking,
        live_calls: live_calls
            .into_iter()
            .map(|(call_id, language, area, operator, since)| LiveCall {
                call_id,
                language,
                area,
                operator,
                since: rfc3339(since),
            })
            .collect(),
        operators_by_state: by_state,
        operators: operators
            .into_iter()
            .map(|(name, presence, since)| OperatorState { name, presence, since: rfc3339(since) })
            .collect(),
        today: Today {
            day: day.to_string(),
            calls: c.calls,
            queued: c.queued,
            answered: c.answered,
            abandoned: c.abandoned,
            kpis: total.kpis,
        },
    })
}

pub async fn handler(
    crate::auth::AsSupervisor(auth): crate::auth::AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if !crate::auth::same_origin(&headers, &state.settings.public_url) {
        return Err(AppError::Forbidden("websocket from another origin".into()));
    }
    tracing::debug!(user = %auth.user.name, "wallboard opened");
    Ok(ws.max_message_size(MAX_FRAME).on_upgrade(move |socket| run(socket, state, auth.token_hash)))
}

/// The largest frame accepted from a wallboard, which has nothing to say (a larger one closes it).
pub const MAX_FRAME: usize = 4 * 1024;

async fn run(mut socket: WebSocket, state: Arc<SupervisorState>, token_hash: String) {
    let mut feed = state.wallboard.subscribe();
    let mut check = tokio::time::interval(crate::db::sessions::SOCKET_SESSION_CHECK);
    check.tick().await;
    // The first message at once, read for this socket (the feed's may be a second old, or absent
    // while no wallboard was open).
    let mut last: Option<Arc<str>> = match read(&state).await {
        Ok(text) => {
            if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                return;
            }
            Some(text)
        }
        Err(e) => {
            tracing::warn!(error = %e, "wallboard snapshot failed");
            None
        }
    };
    loop {
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(text) = feed.borrow_and_update().clone() else { continue };
                if last.as_deref() != Some(&*text) {
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        return;
                    }
                    last = Some(text);
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            _ = check.tick() => {
                let now = state.clock.now().timestamp_millis();
                match crate::db::sessions::session_live(&state.db, &token_hash, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!("wallboard closed: its session ended");
                        let frame = axum::extract::ws::CloseFrame { code: 4001, reason: "session ended".into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "wallboard session check failed"),
                }
            }
        }
    }
}

/// The latest snapshot for the open wallboards, as the JSON text they are sent (serialised once).
/// `None` while no wallboard is open.
pub struct Feed {
    latest: watch::Sender<Option<Arc<str>>>,
    /// How many of the node task's ticks have read the snapshot (ticks with a wallboard open).
    ticks: watch::Sender<u64>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed { latest: watch::Sender::new(None), ticks: watch::Sender::new(0) }
    }
}

impl Feed {
    fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.latest.subscribe()
    }

    /// The count of the node task's ticks that read the snapshot, updated once each such tick
    /// has published what it read (tests measure the reads per tick with it).
    pub fn ticks(&self) -> watch::Receiver<u64> {
        self.ticks.subscribe()
    }

    /// Publishes `text` if it differs from the latest (no socket is woken for an unchanged one).
    fn publish(&self, text: Arc<str>) {
        self.latest.send_if_modified(|latest| {
            if latest.as_deref() == Some(&*text) {
                return false;
            }
            *latest = Some(text);
            true
        });
    }
}

/// Reads the snapshot as JSON text, counted in `helpline_wallboard_snapshots_total`.
async fn read(state: &SupervisorState) -> Result<Arc<str>, DbError> {
    state.metrics.wallboard_snapshots.inc();
    let s = snapshot(&state.db, state.clock.now().timestamp_millis()).await?;
    serde_json::to_string(&s).map(Arc::from).map_err(|e| DbError::Corrupt(format!("wallboard snapshot: {e}")))
}

/// The node's wallboard task: every second, while any wallboard is open, reads the snapshot and
/// publishes it. With none open it reads nothing, and forgets the last one (a wallboard opening
/// later reads its own first message).
pub fn start_feed(state: Arc<SupervisorState>, tasks: &crate::tasks::Tasks) {
    tasks.spawn_every("wallboard feed", EVERY, move || {
        let state = state.clone();
        async move {
            let feed = &state.wallboard;
            if feed.latest.receiver_count() == 0 {
                feed.latest.send_if_modified(|latest| latest.take().is_some());
                return;
            }
            match read(&state).await {
                Ok(text) => feed.publish(text),
                Err(e) => tracing::warn!(error = %e, "wallboard snapshot failed"),
            }
            feed.ticks.send_modify(|n| *n += 1);
        }
    });
}
