//! The browser phone's part of a call's timeline: each media state of the operator's leg
//! (`connecting`, `connected`, `reconnecting`, an `ice_restart`, `failed` with its reason, the
//! hang-ups) as a `call_media` row, so a supervisor reading a call sees when the operator's
//! connection wavered and whether it came back.
//!
//! [`super::Phone`] never touches the database: it hands each step to a [`Journal`], whose task
//! writes them. The node that carries the call's media writes them (a page on another node only
//! hears them through the relay). The queue is bounded: past [`CAPACITY`] waiting steps (the
//! database stalled) further ones are dropped and counted (`helpline_media_journal_dropped_total`)
//! rather than held in memory. At shutdown, the steps of the legs ending then are written before
//! the task ends (those reported later are dropped and counted).

use crate::clock::Clock;
use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use crate::tasks::Tasks;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Steps waiting to be written, at most.
pub const CAPACITY: usize = 4096;

/// One media step of a call's operator leg (`call_media.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaStep {
    Connecting,
    Connected,
    Reconnecting,
    /// The page re-offered on the same connection and the call's leg answered it.
    IceRestart,
    Failed,
    HungUp,
    Ended,
}

impl MediaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStep::Connecting => "connecting",
            MediaStep::Connected => "connected",
            MediaStep::Reconnecting => "reconnecting",
            MediaStep::IceRestart => "ice_restart",
            MediaStep::Failed => "failed",
            MediaStep::HungUp => "hung_up",
            MediaStep::Ended => "ended",
        }
    }
}

#[derive(Debug)]
struct Row {
    call_id: String,
    at_ms: i64,
    operator: Option<i64>,
    step: MediaStep,
    reason: Option<String>,
}

/// The writer's database and queue, until it starts.
type Writer = (Db, mpsc::Receiver<Row>);

/// Where the phone hands its steps (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    to_writer: mpsc::Sender<Row>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The writer's end until [`Journal::start`].
    pending: Arc<Mutex<Option<Writer>>>,
}

impl Journal {
    /// A journal writing to `db` once started (steps recorded before wait in the queue).
    pub fn new(db: Db, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Journal {
        let (to_writer, rows) = mpsc::channel(CAPACITY);
        Journal { to_writer, clock, metrics, pending: Arc::new(Mutex::new(Some((db, rows)))) }
    }

    /// Spawns the writer on `tasks` (once).
    pub fn start(&self, tasks: &Tasks) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((db, rows)) = pending {
            tasks.spawn("media journal", write_rows(db, rows, tasks.token()));
        }
    }

    /// Records a step of `call_id`'s operator leg, now (never waits).
    pub fn record(&self, call_id: &str, operator: Option<i64>, step: MediaStep, reason: Option<&str>) {
        let row = Row {
            call_id: call_id.to_owned(),
            at_ms: self.clock.now().timestamp_millis(),
            operator,
            step,
            reason: reason.map(|r| r.chars().take(200).collect()),
        };
        if self.to_writer.try_send(row).is_err() {
            self.metrics.media_journal_dropped.inc();
        }
    }
}

async fn write_rows(db: Db, mut rows: mpsc::Receiver<Row>, stopping: tokio_util::sync::CancellationToken) {
    loop {
        let first = tokio::select! {
            row = rows.recv() => row,
            _ = stopping.cancelled() => break,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rows.try_recv() {
                Ok(row) => batch.push(row),
                Err(_) => break,
            }
        }
        if let Err(e) = insert(&db, &batch).await {
            tracing::warn!(error = %e, steps = batch.len(), "cannot write the browser phone's media steps");
        }
    }
    // Shutdown: the legs end as the media thread stops; their last steps are written while they
    // keep coming (until a quiet LINGER, at most LINGER_MAX), then the queue closes.
    let until = tokio::time::Instant::now() + LINGER_MAX;
    let mut batch = Vec::new();
    while let Ok(Some(row)) =
        tokio::time::timeout_at(until.min(tokio::time::Instant::now() + LINGER), rows.recv()).await
    {
        batch.push(row);
    }
    rows.close();
    while let Ok(row) = rows.try_recv() {
        batch.push(row);
    }
    if !batch.is_empty() {
        if let Err(e) = insert(&db, &batch).await {
            tracing::warn!(error = %e, steps = batch.len(), "cannot write the browser phone's media steps");
        }
    }
}

/// At shutdown, the writer waits this long for one more step…
const LINGER: Duration = Duration::from_millis(500);
/// …and no longer than this in all.
const LINGER_MAX: Duration = Duration::from_secs(5);

async fn insert(db: &Db, batch: &[Row]) -> Result<(), DbError> {
    let mut tx = db.pool().begin().await?;
    for row in batch {
        sqlx::query("INSERT INTO call_media (call_id, at, operator_id, state, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.call_id)
            .bind(row.at_ms)
            .bind(row.operator)
            .bind(row.step.as_str())
            .bind(&row.reason)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A call's media steps, oldest first: (at, operator's name, state, reason).
pub async fn steps(db: &Db, call_id: &str) -> Result<Vec<(i64, Option<String>, String, Option<String>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT m.at, u.name, m.state, m.reason FROM call_media m LEFT JOIN users u ON u.id = m.operator_id \
         WHERE m.call_id = $1 ORDER BY m.at, m.id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?)
}
