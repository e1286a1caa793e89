//! The queue service (ACD), run on every node: on each queue or presence change (and every
//! second, for timeouts) it expires missed offers, withdraws offers for calls that stopped
//! waiting, notices failed transfers, ends wrap-ups, marks operators with no socket offline, asks
//! the pure rules ([`crate::acd::assign`]) for new offers and writes them — all in one
//! transaction that holds the console's write turn, so two nodes never offer a call twice (and
//! `offers_one_open`, a unique index, would refuse it anyway).

use super::hub::{self, Tx};
use super::presence::{self, Change, PresenceState};
use super::protocol::{
    CallState, CallUpdate, Device, Offer, OfferMatch, QueueStatus, QueuedCall, ServerMessage, WithdrawReason,
};
use super::OperatorsState;
use super::{pop, ConsoleError};
use crate::acd::{self, Match, Operator, Presence, WaitingCall};
use crate::calls::{CallRequest, Origin};
use crate::clock::rfc3339;
use crate::db::users::{split_codes, User};
use crate::db::DbError;
use crate::media::{browser_target, PageRequest};
use chrono::{DateTime, Utc};
use ivr::domain::{CallId, Language, ServiceArea};
use ivr::engine::Event;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// An operator with no open socket for this long goes offline.
pub const OFFLINE_AFTER_MS: i64 = 30_000;

/// Passes woken by queue changes are at least this far apart. Under load every call's enqueue and
/// hang-up wakes the ACD; one pass then covers all the changes since the last one, so operators'
/// pages still see the queue within this delay, and the pass's write transaction (which holds
/// SQLite's one write lock) does not run hundreds of times a second beside the calls' writer.
pub const MIN_PASS_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs until shutdown drops it: a pass on every wake-up (at most one per [`MIN_PASS_SPACING`])
/// and every second, each counted in `helpline_acd_passes_total`.
pub async fn run(state: Arc<OperatorsState>) {
    let wake = state.console.wake();
    let remote = state.console.hub().remote_change();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            _ = remote.notified() => {}
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "queue service pass failed");
        }
        // Counted once the pass is over (committed or rolled back): what it wrote is visible.
        state.metrics.acd_passes.inc();
        tokio::time::sleep_until(started + MIN_PASS_SPACING).await;
    }
}

/// One pass of the queue service. Each step says whether it wrote anything; a pass in which none
/// did ends its transaction without a commit.
pub async fn pass(state: &OperatorsState) -> Result<(), DbError> {
    let now = state.clock.now();
    let now_ms = now.timestamp_millis();
    // Open sockets keep their users from lapsing offline; refreshed every few seconds (clock
    // time), not on every pass (a pass runs on every queue change).
    if state.console.seen_due(now_ms) {
        let connected = state.console.connected_users();
        if !connected.is_empty() {
            presence::seen(&state.db, &connected, now_ms).await?;
        }
    }
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let mut wrote = false;
    wrote |= expire_offers(&mut tx, now_ms).await?;
    wrote |= withdraw_stale_offers(&mut tx, now_ms).await?;
    wrote |= transfers_failed(state, &mut tx, now_ms).await?;
    wrote |= end_wrap_ups(&mut tx, now_ms).await?;
    wrote |= lapse_to_offline(&mut tx, now_ms).await?;
    wrote |= make_offers(state, &mut tx, now).await?;
    wrote |= publish_queue(&mut tx, now_ms).await?;
    if !wrote {
        // Nothing changed (the usual pass of a quiet helpline, once a second on every node): no
        // commit, so no WAL write and, on PostgreSQL, no WAL flush for the `console_lock` bump.
        tx.rollback().await?;
        return Ok(());
    }
    hub::commit(hub, tx, wrote).await
}

async fn expire_offers(tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let gone: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT id, call_id, operator_id FROM offers WHERE status = 'open' AND expires_at <= $1")
            .bind(now_ms)
            .fetch_all(&mut **tx)
            .await?;
    for (id, call_id, operator) in &gone {
        sqlx::query("UPDATE offers SET status = 'expired', resolved_at = $2 WHERE id = $1 AND status = 'open'")
            .bind(id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        tracing::info!(call_id, operator, offer = id, "offer expired: operator paused");
        let withdrawn =
            ServerMessage::OfferWithdrawn { offer_id: *id, call_id: call_id.clone(), reason: WithdrawReason::Expired };
        hub::write(tx, &hub::user(*operator), &withdrawn, now_ms).await?;
        let change = Change { reason: Some("missed offer".into()), ..Change::to(PresenceState::Paused) };
        presence::set(tx, *operator, &change, Some(&[PresenceState::Offered]), now_ms).await?;
    }
    Ok(!gone.is_empty())
}

/// Offers for calls no longer waiting (the caller hung up, or another operator took it).
async fn withdraw_stale_offers(tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let stale: Vec<(i64, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT o.id, o.call_id, o.operator_id, q.status FROM offers o LEFT JOIN queue_entries q ON q.call_id = o.call_id \
         WHERE o.status = 'open' AND (q.status IS NULL OR q.status <> 'waiting')",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (id, call_id, operator, status) in &stale {
        sqlx::query("UPDATE offers SET status = 'withdrawn', resolved_at = $2 WHERE id = $1 AND status = 'open'")
            .bind(id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        let reason = if matches!(status.as_deref(), Some("abandoned") | Some("left")) {
            WithdrawReason::Abandoned
        } else {
            WithdrawReason::Taken
        };
        let withdrawn = ServerMessage::OfferWithdrawn { offer_id: *id, call_id: call_id.clone(), reason };
        hub::write(tx, &hub::user(*operator), &withdrawn, now_ms).await?;
        presence::set(tx, *operator, &Change::to(PresenceState::Available), Some(&[PresenceState::Offered]), now_ms)
            .await?;
    }
    Ok(!stale.is_empty())
}

/// An operator on a call whose queue entry is waiting again: the transfer failed (the engine put
/// the call back in the queue with a higher priority). The operator is free again.
async fn transfers_failed(state: &OperatorsState, tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let failed: Vec<(i64, String)> = sqlx::query_as(
        "SELECT s.user_id, s.call_id FROM operator_state s JOIN queue_entries q ON q.call_id = s.call_id \
         WHERE s.presence = 'on_call' AND q.status = 'waiting'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (operator, call_id) in &failed {
        tracing::info!(call_id, operator, "transfer to the operator failed: the call is back in the queue");
        sqlx::query("UPDATE calls SET operator_id = NULL, answered_at = NULL WHERE call_id = $1 AND operator_id = $2")
            .bind(call_id)
            .bind(operator)
            .execute(&mut **tx)
            .await?;
        let pop = pop::screen_pop(&state.db, call_id, now_ms).await?;
        pop::audit(&mut **tx, now_ms, *operator, pop.as_ref(), pop::Shown::TransferFailed).await?;
        let failed = ServerMessage::Call(CallUpdate {
            call_id: call_id.clone(),
            state: CallState::TransferFailed,
            offer_id: None,
            device: None,
            pop,
        });
        hub::write(tx, &hub::user(*operator), &failed, now_ms).await?;
        // A browser phone that failed (no microphone, ICE or DTLS blocked, the tab closed) would
        // fail again on the next call: the operator is paused, with the reason, until they act.
        let change = match browser_failure(tx, call_id).await? {
            Some(reason) => Change { reason: Some(reason), ..Change::to(PresenceState::Paused) },
            None => Change::to(PresenceState::Available),
        };
        presence::set(tx, *operator, &change, Some(&[PresenceState::OnCall]), now_ms).await?;
    }
    Ok(!failed.is_empty())
}

/// The reason of the call's last failed transfer when it was the browser phone's (the SIP
/// adapter records `TransferFailed` with a reason starting `browser phone: `), at most 100
/// characters as presence reasons are.
async fn browser_failure(tx: &mut Tx, call_id: &str) -> Result<Option<String>, DbError> {
    let last: Option<(String,)> = sqlx::query_as(
        "SELECT data FROM call_events WHERE call_id = $1 AND kind = 'transfer_failed' ORDER BY seq DESC LIMIT 1",
    )
    .bind(call_id)
    .fetch_optional(&mut **tx)
    .await?;
    let reason = last
        .and_then(|(data,)| serde_json::from_str::<Value>(&data).ok())
        .and_then(|v| serde_json::from_value::<Event>(v.get("event")?.clone()).ok())
        .and_then(|e| match e {
            Event::TransferFailed { reason } => Some(reason),
            _ => None,
        })
        .filter(|r| r.starts_with(BROWSER_FAILURE));
    Ok(reason.map(|r| r.chars().take(100).collect()))
}

/// How the SIP adapter's reasons for a failed browser transfer start.
pub const BROWSER_FAILURE: &str = "browser phone: ";

async fn end_wrap_ups(tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let done: Vec<(i64,)> = sqlx::query_as(
        "SELECT user_id FROM operator_state WHERE presence = 'wrap_up' AND wrap_up_until IS NOT NULL AND wrap_up_until <= $1",
    )
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    for (operator,) in &done {
        let change = Change { reset_idle: true, ..Change::to(PresenceState::Available) };
        presence::set(tx, *operator, &change, Some(&[PresenceState::WrapUp]), now_ms).await?;
    }
    Ok(!done.is_empty())
}

async fn lapse_to_offline(tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let gone: Vec<(i64,)> = sqlx::query_as(
        "SELECT user_id FROM operator_state WHERE presence IN ('available', 'paused', 'wrap_up') AND seen_at < $1",
    )
    .bind(now_ms - OFFLINE_AFTER_MS)
    .fetch_all(&mut **tx)
    .await?;
    for (operator,) in &gone {
        let change = Change { reason: Some("disconnected".into()), ..Change::to(PresenceState::Offline) };
        presence::set(
            tx,
            *operator,
            &change,
            Some(&[PresenceState::Available, PresenceState::Paused, PresenceState::WrapUp]),
            now_ms,
        )
        .await?;
    }
    Ok(!gone.is_empty())
}

async fn make_offers(state: &OperatorsState, tx: &mut Tx, now: DateTime<Utc>) -> Result<bool, DbError> {
    let now_ms = now.timestamp_millis();
    // Not the callers of a node whose heartbeat is stale: it may have died with them (its
    // calls are ended once it is found dead; `calls::nodes`).
    let rows: Vec<(String, String, Option<String>, i64, i64, String)> = sqlx::query_as(&format!(
        "SELECT q.call_id, q.language, q.area, q.priority, q.entered_at, c.channel FROM queue_entries q \
         JOIN calls c ON c.call_id = q.call_id WHERE q.status = 'waiting' AND {} \
         AND NOT EXISTS (SELECT 1 FROM offers o WHERE o.call_id = q.call_id AND o.status = 'open')",
        crate::calls::nodes::live_node_condition(1)
    ))
    .bind(crate::calls::nodes::wall_ms() - crate::calls::nodes::STALE)
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let missed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT o.call_id, o.operator_id FROM offers o JOIN queue_entries q ON q.call_id = o.call_id \
         WHERE q.status = 'waiting' AND o.status IN ('expired', 'declined')",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut missed_by: HashMap<String, Vec<i64>> = HashMap::new();
    for (call, op) in missed {
        missed_by.entry(call).or_default().push(op);
    }
    let mut browser_ok: std::collections::HashSet<String> = std::collections::HashSet::new();
    let calls: Vec<WaitingCall> = rows
        .into_iter()
        .filter_map(|(call_id, language, area, priority, entered_at, channel)| {
            let language = Language::parse(&language).ok()?;
            // The SIP adapter bridges its own calls to a browser when their media is on this
            // node; a carrier's call reaches one through its transfer to the operator's address.
            if channel != "sip" || state.phone.carries(&call_id) {
                browser_ok.insert(call_id.clone());
            }
            Some(WaitingCall {
                missed_by: missed_by.remove(&call_id).unwrap_or_default(),
                call_id,
                language,
                area: area.as_deref().and_then(|a| ServiceArea::parse(a).ok()),
                priority: u8::try_from(priority).unwrap_or(u8::MAX),
                entered_at: DateTime::from_timestamp_millis(entered_at).unwrap_or(now),
            })
        })
        .collect();
    // An operator without a phone target answers in the browser: offered only the calls this
    // node can bridge to one (the carriers' calls, and its own SIP calls); offering them a SIP
    // call whose media is on another node would only keep the caller waiting for the offer to
    // expire.
    let ops: Vec<(i64, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.languages, u.areas, u.mediator, s.idle_since, \
         CAST(CASE WHEN u.sip_target IS NOT NULL AND u.sip_target <> '' THEN 1 ELSE 0 END AS BIGINT) \
         FROM operator_state s JOIN users u ON u.id = s.user_id WHERE s.presence = 'available'",
    )
    .fetch_all(&mut **tx)
    .await?;
    let (operators, browser_only): (Vec<Operator>, Vec<Operator>) = {
        let (with_phone, without): (Vec<_>, Vec<_>) = ops.into_iter().partition(|o| o.5 != 0);
        let op = |(id, languages, areas, mediator, idle_since, _): (i64, String, String, i64, i64, i64)| Operator {
            id,
            languages: split_codes(&languages, Language::parse).unwrap_or_default(),
            areas: split_codes(&areas, ServiceArea::parse).unwrap_or_default(),
            mediator: mediator != 0,
            presence: Presence::Available,
            idle_since: DateTime::from_timestamp_millis(idle_since).unwrap_or(now),
        };
        (with_phone.into_iter().map(op).collect(), without.into_iter().map(op).collect())
    };
    let rules = state.console.config().acd();
    let mut offers = acd::assign(&calls, &operators, now, &rules);
    if !browser_only.is_empty() {
        // The browser-only operators take what is left of the calls they can reach.
        let left: Vec<WaitingCall> = calls
            .into_iter()
            .filter(|c| browser_ok.contains(&c.call_id) && !offers.iter().any(|o| o.call_id == c.call_id))
            .collect();
        offers.extend(acd::assign(&left, &browser_only, now, &rules));
    }
    let mut wrote = false;
    for offer in offers {
        let matched = match offer.matched {
            Match::Full => OfferMatch::Full,
            Match::Language => OfferMatch::Language,
            Match::Mediation => OfferMatch::Fallback,
        };
        let kind = matched.as_str();
        let id: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO offers (call_id, operator_id, offered_at, expires_at, status, match_kind) \
             SELECT $1, $2, $3, $4, 'open', $5 WHERE EXISTS (SELECT 1 FROM queue_entries WHERE call_id = $1 AND status = 'waiting') \
             ON CONFLICT (call_id) WHERE status = 'open' DO NOTHING RETURNING id",
        )
        .bind(&offer.call_id)
        .bind(offer.operator)
        .bind(now_ms)
        .bind(offer.expires_at.timestamp_millis())
        .bind(kind)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((id,)) = id else { continue };
        let change = Change { call_id: Some(offer.call_id.clone()), ..Change::to(PresenceState::Offered) };
        if !presence::set(tx, offer.operator, &change, Some(&[PresenceState::Available]), now_ms).await? {
            sqlx::query("DELETE FROM offers WHERE id = $1").bind(id).execute(&mut **tx).await?;
            continue;
        }
        tracing::info!(call_id = %offer.call_id, operator = offer.operator, offer = id, kind, "call offered");
        let pop = pop::screen_pop(&state.db, &offer.call_id, now_ms).await?;
        pop::audit(&mut **tx, now_ms, offer.operator, pop.as_ref(), pop::Shown::Offer).await?;
        let message = ServerMessage::Offer(Offer {
            offer_id: id,
            call_id: offer.call_id.clone(),
            matched,
            expires_at: rfc3339(offer.expires_at.timestamp_millis()),
            pop,
        });
        hub::write(tx, &hub::user(offer.operator), &message, now_ms).await?;
        wrote = true;
    }
    Ok(wrote)
}

/// A waiting call as the page lists it: call_id, language, area, town, priority, entered_at, open offers.
type WaitingRow = (String, String, Option<String>, Option<String>, i64, i64, i64);

/// The waiting list as the page shows it.
pub async fn queue_snapshot(tx: &mut Tx) -> Result<Vec<QueuedCall>, DbError> {
    let rows: Vec<WaitingRow> = sqlx::query_as(
        "SELECT q.call_id, q.language, q.area, c.town, q.priority, q.entered_at, \
         (SELECT COUNT(*) FROM offers o WHERE o.call_id = q.call_id AND o.status = 'open') \
         FROM queue_entries q JOIN calls c ON c.call_id = q.call_id WHERE q.status = 'waiting' \
         ORDER BY q.priority DESC, q.entered_at, q.call_id",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(call_id, language, area, town, priority, entered_at, offered)| QueuedCall {
            call_id,
            language,
            area,
            town,
            priority,
            entered_at: rfc3339(entered_at),
            status: if offered > 0 { QueueStatus::Offered } else { QueueStatus::Waiting },
        })
        .collect())
}

/// Writes a `queue` message when the waiting list differs from the last one sent (by any node).
pub async fn publish_queue(tx: &mut Tx, now_ms: i64) -> Result<bool, DbError> {
    let calls = queue_snapshot(tx).await?;
    let empty = calls.is_empty();
    let message = ServerMessage::Queue { calls };
    let (_, body) = hub::split(&message)?;
    let last: Option<(String,)> =
        sqlx::query_as("SELECT body FROM console_messages WHERE kind = 'queue' ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let unchanged = last.and_then(|(b,)| serde_json::from_str::<Value>(&b).ok()).is_some_and(|b| b == body)
        || (empty && !has_queue_message(tx).await?);
    if unchanged {
        return Ok(false);
    }
    hub::write(tx, "all", &message, now_ms).await?;
    Ok(true)
}

async fn has_queue_message(tx: &mut Tx) -> Result<bool, DbError> {
    let n: Option<(i64,)> = sqlx::query_as("SELECT seq FROM console_messages WHERE kind = 'queue' LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(n.is_some())
}

/// The operator takes the offered call.
pub async fn accept(
    state: &OperatorsState,
    user: &User,
    offer_id: i64,
    device: Option<Device>,
) -> Result<(), ConsoleError> {
    let now = state.clock.now();
    let now_ms = now.timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT call_id, status, expires_at FROM offers WHERE id = $1 AND operator_id = $2")
            .bind(offer_id)
            .bind(user.id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((call_id, status, expires_at)) = row else { return Err(ConsoleError::NotYourOffer) };
    if status != "open" || expires_at <= now_ms {
        return Err(ConsoleError::OfferGone);
    }
    let sip_target = user.sip_target.clone().filter(|t| !t.is_empty());
    let device = match (device, &sip_target) {
        (Some(Device::Phone), None) => return Err(ConsoleError::NoTarget),
        (Some(d), _) => d,
        (None, Some(_)) => Device::Phone,
        (None, None) => Device::Browser,
    };
    let target = match (device, sip_target) {
        (Device::Phone, Some(t)) => t,
        _ => {
            // The browser: a SIP call (its media on this node, or on another one reached through
            // the phone's relay on PostgreSQL), or a carrier's call, which the carrier transfers
            // to the operator's address on this node.
            let (channel,): (String,) = sqlx::query_as("SELECT channel FROM calls WHERE call_id = $1")
                .bind(&call_id)
                .fetch_one(&mut *tx)
                .await?;
            if channel == "sip" && !state.phone.carries(&call_id) && !state.phone.relays() {
                return Err(ConsoleError::PhoneUnavailable);
            }
            let token = hex::encode(rand::random::<[u8; 16]>());
            if channel != "sip" {
                state.phone.expect_transfer(&token, &call_id);
            }
            browser_target(&user.name, state.phone.sip_addr(), &token)
        }
    };
    let taken = sqlx::query(
        "UPDATE queue_entries SET status = 'assigned', operator = $2, target = $3, updated_at = $4 WHERE call_id = $1 AND status = 'waiting'",
    )
    .bind(&call_id)
    .bind(&user.name)
    .bind(&target)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 0 {
        return Err(ConsoleError::OfferGone);
    }
    sqlx::query("UPDATE offers SET status = 'accepted', resolved_at = $2 WHERE id = $1")
        .bind(offer_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    let (channel,): (String,) =
        sqlx::query_as("UPDATE calls SET operator_id = $2, answered_at = $3 WHERE call_id = $1 RETURNING channel")
            .bind(&call_id)
            .bind(user.id)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
    let change = Change { call_id: Some(call_id.clone()), ..Change::to(PresenceState::OnCall) };
    if !presence::set(&mut tx, user.id, &change, Some(&[PresenceState::Offered]), now_ms).await? {
        return Err(ConsoleError::OfferGone);
    }
    publish_queue(&mut tx, now_ms).await?;
    hub::commit(hub, tx, true).await?;
    tracing::info!(call_id, operator = %user.name, "offer accepted");

    // The SIP adapter transfers its own calls (it polls for 'assigned'); webhook calls get the
    // transfer with the carrier's next request. The page hears `connected` only once that is
    // stored, so whatever it does next finds the transfer decided.
    if channel != "sip" {
        let id = CallId::parse(&call_id).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let req = CallRequest {
            call_id: id,
            event: Event::OperatorAssigned { operator: user.name.clone(), target },
            now,
            key: None,
            carrier_seq: None,
            origin: Origin::Server,
            sealed_number: None,
            reason: None,
        };
        if let Err(e) = state.calls.handle(req).await {
            tracing::warn!(call_id, error = %e, "the call runtime refused the operator assignment");
        }
    }
    let mut tx = hub::begin(&state.db).await?;
    if channel != "sip" {
        sqlx::query(
            "UPDATE queue_entries SET status = 'answered', updated_at = $2 WHERE call_id = $1 AND status = 'assigned'",
        )
        .bind(&call_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }
    let pop = pop::screen_pop(&state.db, &call_id, now_ms).await?;
    pop::audit(&mut *tx, now_ms, user.id, pop.as_ref(), pop::Shown::Connected).await?;
    let connected = ServerMessage::Call(CallUpdate {
        call_id,
        state: CallState::Connected,
        offer_id: Some(offer_id),
        device: Some(device),
        pop,
    });
    hub::write(&mut tx, &hub::user(user.id), &connected, now_ms).await?;
    hub::commit(hub, tx, true).await?;
    state.console.kick();
    Ok(())
}

/// The operator refuses the offer: it counts as missed (next operator; they are paused).
pub async fn decline(state: &OperatorsState, user: &User, offer_id: i64) -> Result<(), ConsoleError> {
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT call_id, status FROM offers WHERE id = $1 AND operator_id = $2")
            .bind(offer_id)
            .bind(user.id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((call_id, status)) = row else { return Err(ConsoleError::NotYourOffer) };
    if status != "open" {
        return Err(ConsoleError::OfferGone);
    }
    sqlx::query("UPDATE offers SET status = 'declined', resolved_at = $2 WHERE id = $1")
        .bind(offer_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    let withdrawn = ServerMessage::OfferWithdrawn { offer_id, call_id, reason: WithdrawReason::Declined };
    hub::write(&mut tx, &hub::user(user.id), &withdrawn, now_ms).await?;
    let change = Change { reason: Some("declined offer".into()), ..Change::to(PresenceState::Paused) };
    presence::set(&mut tx, user.id, &change, Some(&[PresenceState::Offered]), now_ms).await?;
    hub::commit(hub, tx, true).await?;
    state.console.kick();
    Ok(())
}

/// The conversation is over: wrap-up for `wrap_up_secs`, then available. A mediator's end is
/// leaving: the others go on.
pub async fn end_call(state: &OperatorsState, user: &User, call_id: &str) -> Result<(), ConsoleError> {
    wrap_up(state, user, call_id).await?;
    super::mediation::ended(state, user, call_id).await?;
    // A browser call: the caller hears the goodbye and is hung up (nothing for other calls).
    state.phone.request(call_id, user.id, PageRequest::Hangup).await;
    Ok(())
}

/// The user's part in the call is over (the call may go on): wrap-up for `wrap_up_secs`.
pub async fn wrap_up(state: &OperatorsState, user: &User, call_id: &str) -> Result<(), ConsoleError> {
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let current = presence::get(&mut tx, user.id).await?.ok_or(ConsoleError::NotYourCall)?;
    if current.state != PresenceState::OnCall || current.call_id.as_deref() != Some(call_id) {
        return Err(ConsoleError::NotYourCall);
    }
    let until = now_ms + i64::from(state.console.config().wrap_up_secs) * 1000;
    sqlx::query("UPDATE calls SET wrap_up_at = $2 WHERE call_id = $1")
        .bind(call_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    let ended = ServerMessage::Call(CallUpdate {
        call_id: call_id.to_owned(),
        state: CallState::Ended,
        offer_id: None,
        device: None,
        pop: None,
    });
    hub::write(&mut tx, &hub::user(user.id), &ended, now_ms).await?;
    let wrap_up = ServerMessage::WrapUp { call_id: call_id.to_owned(), until: rfc3339(until) };
    hub::write(&mut tx, &hub::user(user.id), &wrap_up, now_ms).await?;
    let change =
        Change { call_id: Some(call_id.to_owned()), wrap_up_until: Some(until), ..Change::to(PresenceState::WrapUp) };
    presence::set(&mut tx, user.id, &change, Some(&[PresenceState::OnCall]), now_ms).await?;
    hub::commit(hub, tx, true).await?;
    Ok(())
}

/// A presence change asked for by the operator (`available`, `paused` with a reason, `offline`;
/// `ready` ends a wrap-up early).
pub async fn set_presence(
    state: &OperatorsState,
    user: &User,
    to: PresenceState,
    reason: Option<String>,
) -> Result<(), ConsoleError> {
    use PresenceState::*;
    let now_ms = state.clock.now().timestamp_millis();
    let hub = state.console.hub();
    let mut tx = hub::begin(&state.db).await?;
    let change = Change { reason, reset_idle: to == Available, ..Change::to(to) };
    let from: &[PresenceState] = &[Available, Paused, Offline, WrapUp];
    if !presence::set(&mut tx, user.id, &change, Some(from), now_ms).await? {
        return Err(ConsoleError::Busy);
    }
    hub::commit(hub, tx, true).await?;
    state.console.kick();
    Ok(())
}
