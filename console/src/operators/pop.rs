//! The screen-pop: what an operator sees of a call before and while taking it — language, area,
//! town, the caller's path through the menus with timings, the masked number, and earlier calls
//! from the same number (by its keyed hash) with their notes.

use super::protocol::{PathStep, PreviousCalls, PreviousNote, ScreenPop};
use crate::db::audit::{self, AuditAction};
use crate::db::{Db, DbError};
use serde_json::Value;
use sqlx::{Any, Executor};

/// When a screen-pop reached an operator (the audit row's detail says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// With an offer of the call.
    Offer,
    /// When the operator took the call.
    Connected,
    /// The transfer to the operator failed.
    TransferFailed,
    /// Again, on the page's reconnection (its offer or the call it is on).
    Reconnected,
}

impl Shown {
    fn as_str(self) -> &'static str {
        match self {
            Shown::Offer => "offer",
            Shown::Connected => "connected",
            Shown::TransferFailed => "transfer_failed",
            Shown::Reconnected => "reconnected",
        }
    }
}

/// The audit row of a screen-pop sent to `operator` (`screen_pop`): the call, when it was shown,
/// and how many earlier calls and notes of the same caller it showed. Written in the transaction
/// that sends it, when there is one. Nothing for a call that has no pop.
pub async fn audit<'e, E>(exec: E, at: i64, operator: i64, pop: Option<&ScreenPop>, shown: Shown) -> Result<(), DbError>
where
    E: Executor<'e, Database = Any>,
{
    let Some(pop) = pop else { return Ok(()) };
    let detail = serde_json::json!({
        "shown": shown.as_str(),
        "earlier_calls": pop.previous.calls,
        "earlier_notes": pop.previous.notes.len(),
    });
    audit::record_by_id(exec, at, operator, AuditAction::ScreenPop, Some(&pop.call_id), &detail.to_string()).await
}

/// The pop of one call (`None` for an unknown call).
pub async fn screen_pop(db: &Db, call_id: &str, now_ms: i64) -> Result<Option<ScreenPop>, DbError> {
    type CallRow = (
        String,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Option<i64>,
    );
    let row: Option<CallRow> = sqlx::query_as(
        "SELECT c.channel, c.language, c.language_guessed, c.area, c.cap, c.town, c.caller_hash, c.caller_masked, \
         c.started_at, q.entered_at FROM calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id WHERE c.call_id = $1",
    )
    .bind(call_id)
    .fetch_optional(db.pool())
    .await?;
    let Some((channel, language, guessed, area, cap, town, hash, masked, started_at, entered_at)) = row else {
        return Ok(None);
    };
    let point =
        town.as_deref().and_then(|t| ivr::geo::Gazetteer::embedded().comune_by_name(t).first().map(|c| c.point));
    let events: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT at, kind, data FROM call_events WHERE call_id = $1 ORDER BY seq")
            .bind(call_id)
            .fetch_all(db.pool())
            .await?;
    let path = events
        .iter()
        .map(|(at, kind, data)| PathStep {
            at: crate::clock::rfc3339(*at),
            kind: kind.clone(),
            detail: detail(kind, data),
        })
        .collect();
    let mut previous = PreviousCalls::default();
    if let Some(hash) = &hash {
        let (n, last): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(started_at) FROM calls WHERE caller_hash = $1 AND call_id <> $2 AND started_at <= $3",
        )
        .bind(hash)
        .bind(call_id)
        .bind(started_at)
        .fetch_one(db.pool())
        .await?;
        let notes: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT n.updated_at, u.name, n.text FROM call_notes n JOIN calls c ON c.call_id = n.call_id \
             JOIN users u ON u.id = n.operator_id WHERE c.caller_hash = $1 AND c.call_id <> $2 \
             ORDER BY n.updated_at DESC LIMIT 10",
        )
        .bind(hash)
        .bind(call_id)
        .fetch_all(db.pool())
        .await?;
        previous = PreviousCalls {
            calls: n,
            last_at: last.map(crate::clock::rfc3339),
            notes: notes
                .into_iter()
                .map(|(at, operator, text)| PreviousNote { at: crate::clock::rfc3339(at), operator, text })
                .collect(),
        };
    }
    Ok(Some(ScreenPop {
        call_id: call_id.to_owned(),
        channel,
        language,
        language_guessed: guessed != 0,
        area,
        cap,
        town,
        lat: point.map(|p| p.lat),
        lon: point.map(|p| p.lng),
        masked_number: masked,
        waited_secs: entered_at.map(|e| ((now_ms - e) / 1000).max(0)),
        entered_queue_at: entered_at.map(crate::clock::rfc3339),
        path,
        previous,
    }))
}

/// A short, number-free description of a call-log event.
fn detail(kind: &str, data: &str) -> Option<String> {
    if kind == "call_started" {
        return None; // carries the caller: never shown raw
    }
    let v = serde_json::from_str::<Value>(data).ok()?;
    match v.get("event") {
        Some(Value::Object(m)) => m.values().next().map(|inner| {
            let s = match inner {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            s.chars().take(120).collect()
        }),
        _ => None,
    }
}
