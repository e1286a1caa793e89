//! One call's timeline: every recorded engine step (the event, the prompts played, the digits
//! pressed, the log lines, the actions sent), the offers made to operators (and who missed them),
//! the operators' notes and referrals, the supervisors' monitoring and the browser phone's media
//! steps (connected, reconnecting, an ICE restart, failed), the text messages sent to the caller —
//! in time order, with the offset from the call's start.

use crate::clock::rfc3339;
use crate::db::{Db, DbError};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// One engine step (one `call_events` row).
    Step {
        seq: i64,
        /// The event's kind: `call_started`, `digits`, `no_input`, `hung_up`, …
        event_kind: String,
        event: Value,
        /// Prompts played and messages said in this step, in order.
        prompts: Vec<String>,
        /// Keys the caller pressed (the event's digits), if any.
        digits: Option<String>,
        /// The engine's log lines (`node_entered`, `decision`, …).
        log: Vec<Value>,
        /// The names of the actions sent to the carrier (`play`, `collect`, `enqueue`, …).
        actions: Vec<String>,
        /// `"server"` when the server raised the event itself (an operator assigned, a call whose
        /// carrier went quiet ended); absent for the carrier's events.
        #[serde(skip_serializing_if = "Option::is_none")]
        raised_by: Option<String>,
        /// Why the server ended the call (`rtp_timeout`, `drain`, `node_died`, `quiet`, …), on
        /// the `hung_up` step it raised.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The call was offered to an operator.
    Offer {
        offer_id: String,
        operator: Option<String>,
        status: String,
        match_kind: String,
        resolved_at: Option<String>,
        /// The operator let it expire or declined it.
        missed: bool,
    },
    Note {
        operator: Option<String>,
        text: String,
    },
    Referral {
        operator: Option<String>,
        service_id: String,
        service_name: String,
    },
    /// A supervisor listened, whispered, barged in or stopped (from the audit log: the caller
    /// is never told, so the call's record says it).
    Monitor {
        supervisor: String,
        /// `listen`, `whisper`, `barge` or `monitor_end`.
        action: String,
    },
    /// A media step of the operator's browser phone on the call: `connecting`, `connected`,
    /// `reconnecting`, `ice_restart`, `failed` (with why), `hung_up`, `ended`.
    Media {
        operator: Option<String>,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The helpline called the caller back (`callback_attempts`): who called and how it ended
    /// (`reached`, `busy`, `no_answer`, `refused`, `unavailable`, `auth_failed`, `unreachable`,
    /// `operator_left`, `undecryptable`, …; none while it runs), with the trunk's status code.
    CallbackAttempt {
        operator: Option<String>,
        result: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sip_status: Option<i64>,
        ended_at: Option<String>,
    },
    /// A mediator or consulted colleague invited, joining, declining or leaving, or the operator
    /// leaving the call to them (from the audit log).
    Mediation {
        /// Who did it.
        user: String,
        /// `mediator_invite`, `mediator_join`, `mediator_leave`, `operator_leave`, or for a
        /// consultation (the warm transfer) `consult_invite`, `consult_join`, `consult_leave`,
        /// `transfer`; `hand_over` for the blind hand-over to another queue; for an outside
        /// interpreter dialled through the trunk `interpreter_dial`, `interpreter_join`,
        /// `interpreter_leave`.
        action: String,
        /// The mediator's name, for an invitation and the operator leaving; the queue (`fr`,
        /// `fr/lavoro`) for a hand-over; an interpreter's masked number, or why their call
        /// ended.
        detail: String,
    },
    /// A text message to the caller (`text_messages`): the services read back (the caller asked;
    /// no operator) or referred (the operator who sent it), how (`trunk`, `twilio`), its
    /// segments and alphabet, and its outcome (`sent`, `failed` with why, the carrier's later
    /// status). Never the text or the number.
    Text {
        operator: Option<String>,
        via: String,
        segments: i64,
        encoding: String,
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Recording with consent: the caller refused (`recording_refused`: by `caller`, with the
    /// key during the notice, or by the operator who marked a spoken refusal), a recording
    /// started or stopped (`recording_start`, `recording_stop`), a supervisor played it
    /// (`play_recording`).
    Recording {
        /// Who did it (`caller` for the key).
        user: String,
        action: String,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timed {
    pub at: String,
    /// Milliseconds since the call started.
    pub offset_ms: i64,
    #[serde(flatten)]
    pub entry: Entry,
    #[serde(skip)]
    at_ms: i64,
    #[serde(skip)]
    order: i64,
}

/// The prompts and digits of one step's stored data (`{"event", "log", "actions"}`).
fn step_entry(seq: i64, kind: String, data: &str) -> Entry {
    let data: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let actions = data["actions"].as_array().cloned().unwrap_or_default();
    let log = data["log"].as_array().cloned().unwrap_or_default();
    let mut prompts = Vec::new();
    let mut names = Vec::new();
    for a in &actions {
        let (name, body) = match a {
            Value::Object(m) => match m.iter().next() {
                Some((k, v)) => (k.clone(), v.clone()),
                None => continue,
            },
            Value::String(s) => (s.clone(), Value::Null),
            _ => continue,
        };
        match name.as_str() {
            "play" => prompts.extend(body["prompt"].as_str().map(str::to_owned)),
            "say" => prompts.extend(body["message"].as_str().map(str::to_owned)),
            _ => {}
        }
        names.push(name);
    }
    let digits = log.iter().filter(|l| l["kind"] == "digits").filter_map(|l| l["digits"].as_str()).collect::<Vec<_>>();
    Entry::Step {
        seq,
        event_kind: kind,
        event: data["event"].clone(),
        prompts,
        digits: (!digits.is_empty()).then(|| digits.join(" ")),
        log,
        actions: names,
        raised_by: data["raised_by"].as_str().map(str::to_owned),
        reason: data["reason"].as_str().map(str::to_owned),
    }
}

/// An offer of the call: id, offered_at, status, match_kind, resolved_at, the operator's name.
type OfferRow = (String, i64, String, String, Option<i64>, Option<String>);

/// The whole timeline of a call that started at `started_ms`.
pub async fn timeline(db: &Db, call_id: &str, started_ms: i64) -> Result<Vec<Timed>, DbError> {
    let mut out = Vec::new();
    let mut push = |at_ms: i64, order: i64, entry: Entry| {
        out.push(Timed { at: rfc3339(at_ms), offset_ms: at_ms - started_ms, entry, at_ms, order })
    };
    let steps: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT seq, at, kind, data FROM call_events WHERE call_id = $1 ORDER BY seq")
            .bind(call_id)
            .fetch_all(db.pool())
            .await?;
    for (seq, at, kind, data) in steps {
        let entry = step_entry(seq, kind, &data);
        let refused = matches!(&entry, Entry::Step { log, .. } if log.iter().any(|l| l["kind"] == "recording_refused"));
        push(at, seq, entry);
        if refused {
            push(at, seq, Entry::Recording { user: "caller".into(), action: "recording_refused".into() });
        }
    }
    let offers: Vec<OfferRow> = sqlx::query_as(
        "SELECT CAST(o.id AS TEXT), o.offered_at, o.status, o.match_kind, o.resolved_at, u.name FROM offers o \
         LEFT JOIN users u ON u.id = o.operator_id WHERE o.call_id = $1 ORDER BY o.offered_at, o.id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (offer_id, at, status, match_kind, resolved, operator) in offers {
        let missed = matches!(status.as_str(), "expired" | "declined");
        push(
            at,
            i64::MAX - 3,
            Entry::Offer { offer_id, operator, status, match_kind, resolved_at: resolved.map(rfc3339), missed },
        );
    }
    let notes: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT n.text, n.updated_at, u.name FROM call_notes n LEFT JOIN users u ON u.id = n.operator_id \
         WHERE n.call_id = $1 ORDER BY n.updated_at",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (text, at, operator) in notes {
        push(at, i64::MAX - 2, Entry::Note { operator, text });
    }
    let referrals: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT r.service_id, r.service_name, r.at, u.name FROM referrals r LEFT JOIN users u ON u.id = r.operator_id \
         WHERE r.call_id = $1 ORDER BY r.at, r.service_id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (service_id, service_name, at, operator) in referrals {
        push(at, i64::MAX - 1, Entry::Referral { operator, service_id, service_name });
    }
    let monitors: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT at, user_name, action FROM audit_log WHERE call_id = $1 \
         AND action IN ('listen', 'whisper', 'barge', 'monitor_end') ORDER BY at, id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (at, supervisor, action) in monitors {
        push(at, i64::MAX, Entry::Monitor { supervisor, action });
    }
    for (at, operator, state, reason) in crate::media::journal::steps(db, call_id).await? {
        push(at, i64::MAX - 4, Entry::Media { operator, state, reason });
    }
    type TextRow = (i64, String, i64, String, String, Option<String>, Option<String>);
    let texts: Vec<TextRow> = sqlx::query_as(
        "SELECT t.created_at, t.via, CAST(t.segments AS BIGINT), t.encoding, t.status, t.detail, u.name \
         FROM text_messages t LEFT JOIN users u ON u.id = t.sent_by WHERE t.call_id = $1 ORDER BY t.created_at, t.id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (at, via, segments, encoding, status, detail, operator) in texts {
        push(at, i64::MAX - 4, Entry::Text { operator, via, segments, encoding, status, detail });
    }
    type AttemptRow = (i64, Option<i64>, Option<String>, Option<i64>, Option<String>);
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT a.started_at, a.ended_at, a.result, CAST(a.sip_status AS BIGINT), u.name FROM callback_attempts a \
         LEFT JOIN users u ON u.id = a.operator_id WHERE a.call_id = $1 ORDER BY a.started_at, a.id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (at, ended, result, sip_status, operator) in attempts {
        push(at, i64::MAX - 4, Entry::CallbackAttempt { operator, result, sip_status, ended_at: ended.map(rfc3339) });
    }
    let mediations: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT at, user_name, action, detail FROM audit_log WHERE call_id = $1 \
         AND action IN ('mediator_invite', 'mediator_join', 'mediator_leave', 'operator_leave', \
         'consult_invite', 'consult_join', 'consult_leave', 'transfer', 'hand_over', \
         'interpreter_dial', 'interpreter_join', 'interpreter_leave') ORDER BY at, id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (at, user, action, detail) in mediations {
        push(at, i64::MAX, Entry::Mediation { user, action, detail });
    }
    let recordings: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT at, user_name, action FROM audit_log WHERE call_id = $1 \
         AND action IN ('recording_refused', 'recording_start', 'recording_stop', 'play_recording') ORDER BY at, id",
    )
    .bind(call_id)
    .fetch_all(db.pool())
    .await?;
    for (at, user, action) in recordings {
        push(at, i64::MAX, Entry::Recording { user, action });
    }
    out.sort_by_key(|t| (t.at_ms, t.order));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_names_its_prompts_digits_and_actions() {
        let data = r#"{"event":{"digits":{"digits":"3"}},
            "log":[{"kind":"digits","node":"area-menu","digits":"3"},{"kind":"area_chosen","area":"casa"}],
            "actions":[{"play":{"prompt":"cap-ask","language":"it","pace":"normal"}},{"collect":{"max_digits":5}}]}"#;
        let Entry::Step { prompts, digits, actions, log, .. } = step_entry(4, "digits".into(), data) else {
            panic!("a step")
        };
        assert_eq!(prompts, ["cap-ask"]);
        assert_eq!(digits.as_deref(), Some("3"));
        assert_eq!(actions, ["play", "collect"]);
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn corrupt_step_data_gives_an_empty_step_not_a_panic() {
        let Entry::Step { prompts, digits, .. } = step_entry(1, "x".into(), "not json") else { panic!() };
        assert!(prompts.is_empty() && digits.is_none());
    }
}
