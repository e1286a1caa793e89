//! Node death: the nodes sharing one database keep a heartbeat, and the calls of a node that
//! stopped beating are ended, so that no operator is offered a caller nobody can speak to and no
//! accepted call of a dead node waits for the 12-hour quiet sweep.
//!
//! A SIP call lives in the memory of the node that answered it (its dialog, its RTP); its row
//! names that node (`calls.node_id`, written on PostgreSQL right after the call is answered). Every node writes
//! its `nodes.seen_at` every [`BEAT`] and, on the same tick, marks dead (`dead_at`) any other node
//! silent for longer than `node_timeout_secs`: one `UPDATE … RETURNING`, so exactly one node wins
//! each death. Then it ends the live calls of every dead node as its carrier would have: a
//! `hung_up` event through the call runtime ([`Origin::Server`]), so the outcome is recorded, the
//! queue entry is left and any open offer withdrawn. A second `hung_up` for a call changes nothing,
//! so two nodes ending the same calls is harmless. Between the death and its detection the ACD
//! offers none of the silent node's callers once its heartbeat is [`STALE`] (its filter is
//! [`live_node_condition`]).
//!
//! A database outage (PostgreSQL restarting) silences every node at once: it is not a death. A
//! node judges the others only once it has itself been beating without a gap for
//! `node_timeout_secs` ([`Continuity`]), so each of them had that long to beat again too.
//!
//! Liveness is a fact between processes, not a call's time: heartbeats and their ages are read
//! from the wall clock ([`wall_ms`]), never from the injected clock the engine and the ACD use
//! (a test's hand-moved clock would otherwise make a node declare itself dead). The nodes' clocks
//! must agree within a second (NTP), as PostgreSQL replication already asks.

use super::{CallError, CallRequest, CallRuntime, Origin};
use crate::clock::Clock;
use crate::db::{Db, DbError};
use ivr::domain::CallId;
use ivr::engine::Event;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a node writes its heartbeat and looks for dead nodes.
pub const BEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is no longer offered calls of (ms): three beats.
pub const STALE: i64 = 3_000;
/// The smallest `node_timeout_secs` taken (a shorter one would call a busy node dead).
pub const MIN_TIMEOUT_SECS: u64 = 3;
/// Dead nodes' rows are deleted this long after their death, once none of their calls is live.
const FORGET_AFTER: i64 = 7 * 24 * 3_600_000;

/// SQL for the ACD: true when call `c`'s node (if any) has beaten within [`STALE`] of `$n`, the
/// wall clock's ms less [`STALE`] bound to its `$n` (`c` is the `calls` row).
pub fn live_node_condition(param: usize) -> String {
    format!(
        "(c.node_id IS NULL OR EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = c.node_id \
         AND n.dead_at IS NULL AND n.seen_at >= ${param}))"
    )
}

/// The wall clock in Unix ms: the only clock liveness is measured with.
pub fn wall_ms() -> i64 {
    crate::clock::SystemClock.now().timestamp_millis()
}

/// This process's name among the nodes: random at each start (a restarted node is a new node; the
/// calls its previous life held died with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    pub fn generate() -> NodeId {
        NodeId(format!("node-{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node's part in the heartbeat: its own row, and the sweep of the others.
#[derive(Clone)]
pub struct Heartbeat {
    pub db: Db,
    pub calls: CallRuntime,
    /// The call log's clock (the `hung_up` events' time).
    pub clock: Arc<dyn Clock>,
    pub node: NodeId,
    /// Silence after which another node is dead (ms).
    pub timeout_ms: i64,
}

impl Heartbeat {
    /// Records this node as alive (at start, before it takes a call).
    pub async fn register(&self, sip_addr: SocketAddr, http_addr: SocketAddr) -> Result<(), DbError> {
        let now = wall_ms();
        self.db
            .with_lock_turn(
                sqlx::query(
                    "INSERT INTO nodes (node_id, sip_addr, http_addr, started_at, seen_at) VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(self.node.as_str())
                .bind(sip_addr.to_string())
                .bind(http_addr.to_string())
                .bind(now)
                .execute(self.db.pool()),
            )
            .await?;
        tracing::info!(node = %self.node, %sip_addr, %http_addr, "node registered");
        Ok(())
    }

    /// One beat: our `seen_at`, then the others' deaths (once this node has beaten without a gap
    /// for the timeout: see [`Continuity`]) and their calls' ends.
    pub async fn beat(&self, continuity: &Continuity) -> Result<Vec<String>, DbError> {
        let now = wall_ms();
        let beat = self
            .db
            .with_lock_turn(
                sqlx::query("UPDATE nodes SET seen_at = $2 WHERE node_id = $1 AND dead_at IS NULL")
                    .bind(self.node.as_str())
                    .bind(now)
                    .execute(self.db.pool()),
            )
            .await?;
        if beat.rows_affected() == 0 {
            // Declared dead while alive (stalled, or cut off from the database, for longer than
            // the timeout): the calls it held were ended in the log, and get their BYE from here
            // (the SIP adapter looks for its calls ended by the server). It beats again.
            self.db
                .with_lock_turn(
                    sqlx::query("UPDATE nodes SET seen_at = $2, dead_at = NULL WHERE node_id = $1")
                        .bind(self.node.as_str())
                        .bind(now)
                        .execute(self.db.pool()),
                )
                .await?;
            tracing::error!(node = %self.node, "this node had been declared dead (no heartbeat in time); its calls were ended");
        }
        // When the beat got through (it may have waited for the database longer than a beat).
        let through = wall_ms();
        let previous = continuity.last_beat.swap(through, Ordering::Relaxed);
        if previous == 0 || through - previous > STALE {
            continuity.since.store(through, Ordering::Relaxed);
            if previous != 0 {
                tracing::warn!(
                    node = %self.node,
                    silent_ms = through - previous,
                    "heartbeat back after a gap (the database was away?): other nodes are judged again after the timeout"
                );
            }
        }
        if through - continuity.since.load(Ordering::Relaxed) < self.timeout_ms {
            return self.end_calls_of_dead_nodes().await;
        }
        let died: Vec<(String, i64)> = self
            .db
            .with_lock_turn(
                sqlx::query_as(
                    "UPDATE nodes SET dead_at = $2 WHERE dead_at IS NULL AND seen_at < $3 AND node_id <> $1 \
                     RETURNING node_id, seen_at",
                )
                .bind(self.node.as_str())
                .bind(now)
                .bind(now - self.timeout_ms)
                .fetch_all(self.db.pool()),
            )
            .await?;
        for (node, seen_at) in &died {
            tracing::warn!(node, silent_ms = now - seen_at, "node dead: no heartbeat; ending its calls");
        }
        self.end_calls_of_dead_nodes().await
    }

    /// Ends the live calls of every dead node; returns their ids.
    pub async fn end_calls_of_dead_nodes(&self) -> Result<Vec<String>, DbError> {
        let orphans: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.call_id, c.node_id FROM nodes n JOIN calls c ON c.node_id = n.node_id \
             WHERE n.dead_at IS NOT NULL AND c.ended_at IS NULL",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut ended = Vec::with_capacity(orphans.len());
        for (call_id, node) in orphans {
            let Ok(id) = CallId::parse(&call_id) else {
                tracing::warn!(call_id, "a dead node's call has an id the runtime cannot take: left open");
                continue;
            };
            let req = CallRequest {
                call_id: id,
                event: Event::HungUp,
                now: self.clock.now(),
                key: None,
                carrier_seq: None,
                origin: Origin::Server,
                sealed_number: None,
                reason: Some(super::EndReason::NodeDied),
            };
            match self.calls.handle(req).await {
                Ok(_) => {
                    tracing::warn!(call_id, node, "call ended by the server: the node holding it died");
                    // A recording under way there went with it (the node keeps the audio until
                    // it stops): its row, open and empty, would otherwise wait for it forever.
                    let lost = self
                        .db
                        .with_lock_turn(
                            sqlx::query("DELETE FROM recordings WHERE call_id = $1 AND ended_at IS NULL")
                                .bind(&call_id)
                                .execute(self.db.pool()),
                        )
                        .await?
                        .rows_affected();
                    if lost > 0 {
                        tracing::warn!(call_id, node, "a recording under way on the dead node is lost");
                    }
                    ended.push(call_id);
                }
                Err(CallError::Db(e)) => return Err(e),
                Err(e) => tracing::warn!(call_id, error = %e, "the call runtime refused to end a dead node's call"),
            }
        }
        Ok(ended)
    }

    /// Marks this node as gone (a clean stop, once its calls are over): the others then end at
    /// once whatever it left, and forget nodes long dead.
    pub async fn leave(&self) {
        let now = wall_ms();
        let left = self
            .db
            .with_lock_turn(
                sqlx::query("UPDATE nodes SET dead_at = $2 WHERE node_id = $1 AND dead_at IS NULL")
                    .bind(self.node.as_str())
                    .bind(now)
                    .execute(self.db.pool()),
            )
            .await;
        let forgotten = self
            .db
            .with_lock_turn(
                sqlx::query(
                    "DELETE FROM nodes WHERE dead_at < $1 AND NOT EXISTS \
                     (SELECT 1 FROM calls c WHERE c.node_id = nodes.node_id AND c.ended_at IS NULL)",
                )
                .bind(now - FORGET_AFTER)
                .execute(self.db.pool()),
            )
            .await;
        match (left, forgotten) {
            (Ok(_), Ok(_)) => tracing::info!(node = %self.node, "node left"),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(node = %self.node, error = %e, "node could not record its leaving")
            }
        }
    }

    /// Beats every [`BEAT`] until shutdown.
    pub fn start(self, tasks: &crate::tasks::Tasks) {
        let continuity = Arc::new(Continuity::default());
        tasks.spawn_every("node heartbeat", BEAT, move || {
            let beat = self.clone();
            let continuity = continuity.clone();
            async move {
                if let Err(e) = beat.beat(&continuity).await {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        });
    }
}

/// Since when this node's heartbeats have gone through without a gap longer than [`STALE`]
/// (wall ms): a node cut off from the database (it restarted, the network broke) cannot tell a
/// dead node from one cut off like itself, so it judges the others only once it has been back
/// for the timeout.
#[derive(Debug, Default)]
pub struct Continuity {
    last_beat: AtomicI64,
    since: AtomicI64,
}

/// Records which node holds a SIP call (on PostgreSQL, right after its answer went out).
pub async fn hold(db: &Db, call_id: &str, node: &NodeId) -> Result<(), DbError> {
    db.with_lock_turn(
        sqlx::query("UPDATE calls SET node_id = $2 WHERE call_id = $1")
            .bind(call_id)
            .bind(node.as_str())
            .execute(db.pool()),
    )
    .await?;
    Ok(())
}
