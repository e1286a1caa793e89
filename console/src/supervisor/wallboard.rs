//! The live wallboard (`GET /ws/wallboard`): calls in the menu and in the queue per language and
//! area, the longest wait, operators by presence, and today's service level, abandonment and ASA.
//!
//! Each socket recomputes the snapshot every second and sends it only when it changed (the
//! snapshot holds instants, not ages, so a quiet helpline sends nothing). When the console's hub
//! lands, a change notification can replace the tick without changing the messages.

use super::kpi::{self, rome_date, rome_midnight_ms, Grouping, Kpis};
use super::store;
use crate::db::{Db, DbError};
use crate::error::AppError;
use crate::state::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use std::time::Duration;

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

/// One wallboard message: `{"type": "wallboard", …}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub in_menu: Vec<Group>,
    pub in_queue: Vec<Waiting>,
    /// Calls talking to an operator now.
    pub talking: i64,
    /// When the longest-waiting caller entered the queue, if anyone is waiting.
    pub longest_wait_since: Option<String>,
    /// Operators per presence state (`available`, `on_call`, `paused`, …).
    pub operators_by_state: std::collections::BTreeMap<String, i64>,
    pub operators: Vec<OperatorState>,
    pub today: Today,
}

pub async fn snapshot(db: &Db, now_ms: i64) -> Result<Snapshot, DbError> {
    use super::log::rfc3339;
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
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if !crate::auth::same_origin(&headers, &state.settings.public_url) {
        return Err(AppError::Forbidden("websocket from another origin".into()));
    }
    tracing::debug!(user = %auth.user.name, "wallboard opened");
    Ok(ws.on_upgrade(move |socket| run(socket, state)))
}

async fn run(mut socket: WebSocket, state: AppState) {
    let mut last: Option<Snapshot> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = state.clock.now().timestamp_millis();
                match snapshot(&state.db, now).await {
                    Ok(s) if last.as_ref() != Some(&s) => {
                        let text = match serde_json::to_string(&s) {
                            Ok(t) => t,
                            Err(_) => continue,
                        };
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                        last = Some(s);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "wallboard snapshot failed"),
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
