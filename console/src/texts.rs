//! Text messages to callers: the services a caller heard read back (the readback's key, `Action::
//! SendText`) or an operator referred, sent to the caller's number (`HELPLINE_SMS_VIA`,
//! `HELPLINE_SMS_SENDER`; `docs/engine.md`, "By text message").
//!
//! The text is each service as the readback's item prompt formats it in the caller's language —
//! name, street address when the directory has one, town, phone as written, today's hours — then
//! the portal prompt with the Portale's address; its alphabet and segments are counted by
//! `ivr::sms::plan`. It goes through the SIP trunk as a `MESSAGE` (`sip::trunk::send_message`)
//! or through the carrier's messages API. Which one: **the call's own carrier first** — a SIP
//! call through the trunk when `HELPLINE_TRUNK_URI` is set, a TwiML call through the carrier's
//! API when it is configured — else the one `HELPLINE_SMS_VIA` names; an operator's send goes the
//! same way for the call it belongs to.
//!
//! Architecture invariant: the number is opened from its seal only to be written into the
//! request, and never stored or logged; `text_messages` keeps that a text was sent, how, its
//! segments and alphabet and its delivery result, never the text.

use crate::calls::sealed::{NumberSeal, SealedNumber};
use crate::calls::{TextFuture, TextOrder, TextSender};
use crate::carrier::{Carrier, CarrierError, OutboundMessage};
use crate::clock::Clock;
use crate::config::{SmsSettings, SmsVia};
use crate::db::{Db, DbError};
use crate::directory::Directory;
use crate::sip::trunk::{self, Trunk};
use ivr::domain::{CallId, Language, PhoneNumber, PromptId};
use ivr::engine::{Channel, Event};
use ivr::prompts::{Catalog, PromptArg};
use ivr::sms::Plan;
use std::sync::Arc;

/// The Portale Integrazione Migranti, as written in a text (`$portal`).
pub const PORTAL: &str = "www.integrazionemigranti.gov.it";

/// A text ready to go: its body and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub body: String,
    pub plan: Plan,
}

/// Sends the texts; cheap to clone.
#[derive(Clone)]
pub struct Texts {
    inner: Arc<Inner>,
}

struct Inner {
    sms: SmsSettings,
    trunk: Option<Trunk>,
    carrier: Option<Carrier>,
    /// `public_url`: where the carrier's status callbacks reach this server.
    public_url: String,
    directory: Directory,
    catalog: Arc<Catalog>,
    seal: NumberSeal,
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Texts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sms: SmsSettings,
        trunk: Option<Trunk>,
        carrier: Option<Carrier>,
        public_url: String,
        directory: Directory,
        catalog: Arc<Catalog>,
        seal: NumberSeal,
        db: Db,
        clock: Arc<dyn Clock>,
    ) -> Texts {
        Texts { inner: Arc::new(Inner { sms, trunk, carrier, public_url, directory, catalog, seal, db, clock }) }
    }

    /// The text of `services` (directory ids; one no longer in the directory is left out) in
    /// `language`: each as `item_prompt`, then `portal_prompt`, one per line.
    pub fn render(
        &self,
        services: &[String],
        language: Language,
        item_prompt: &PromptId,
        portal_prompt: &PromptId,
    ) -> Result<Rendered, String> {
        let now = self.inner.clock.now();
        let mut lines = Vec::new();
        for (i, id) in services.iter().enumerate() {
            let Some(s) = self.inner.directory.service_summary(id, now) else { continue };
            let or_none = |v: &str| if v.trim().is_empty() { "none".to_owned() } else { v.to_owned() };
            let args = [
                ("index", PromptArg::Number((i + 1) as f64)),
                ("name", PromptArg::Text(s.name)),
                ("address", PromptArg::Text(or_none(&s.address))),
                ("town", PromptArg::Text(s.town)),
                ("phone", PromptArg::Text(s.phone)),
                ("hours", PromptArg::Text(or_none(&s.hours_today))),
                ("distance", PromptArg::Number(0.0)),
            ];
            let line = self.inner.catalog.format(language, item_prompt, &args).map_err(|e| e.to_string())?;
            lines.push(tidy(&line));
        }
        if lines.is_empty() {
            return Err("none of the services is in the directory any more".into());
        }
        let portal = self
            .inner
            .catalog
            .format(language, portal_prompt, &[("portal", PromptArg::Text(PORTAL.into()))])
            .map_err(|e| e.to_string())?;
        lines.push(tidy(&portal));
        let body = lines.join("\n");
        let plan = ivr::sms::plan(&body);
        Ok(Rendered { body, plan })
    }

    /// The sender of a call from `channel` (`None`: no call, the configured one).
    pub fn route(&self, channel: Option<Channel>) -> SmsVia {
        match channel {
            Some(Channel::Sip) if self.inner.trunk.is_some() => SmsVia::Trunk,
            Some(Channel::Twiml) if self.inner.carrier.is_some() => SmsVia::Twilio,
            _ => self.inner.sms.via,
        }
    }

    /// Sends `text` to `number` for `call_id` and records it (`sent_by`: the operator who sent
    /// it). `Err` is the plain reason it did not go.
    pub async fn send(
        &self,
        call_id: &CallId,
        channel: Option<Channel>,
        number: &PhoneNumber,
        text: &Rendered,
        sent_by: Option<i64>,
        base_url: Option<&str>,
    ) -> Result<(), String> {
        let via = self.route(channel);
        let outcome = match via {
            SmsVia::Trunk => match &self.inner.trunk {
                Some(t) => trunk::send_message(t, number, &self.inner.sms.sender, &text.body)
                    .await
                    .map(|status| (format!("trunk answered {status}"), None::<String>))
                    .map_err(|e| e.to_string()),
                None => Err("no SIP trunk is configured".to_owned()),
            },
            SmsVia::Twilio => match &self.inner.carrier {
                Some(c) => {
                    let base = base_url.unwrap_or(&self.inner.public_url).trim_end_matches('/');
                    let callback = (!base.is_empty()).then(|| format!("{base}{STATUS_CALLBACK_PATH}"));
                    let message = OutboundMessage {
                        to: number.e164(),
                        from: &self.inner.sms.sender,
                        body: &text.body,
                        status_callback: callback.as_deref(),
                    };
                    c.send_message(&message)
                        .await
                        .map(|sent| (format!("carrier answered {}", sent.status), Some(sent.sid)))
                        .map_err(|e| carrier_reason(&e))
                }
                None => Err("the carrier's messages API is not configured".to_owned()),
            },
        };
        let (status, detail, sid) = match &outcome {
            Ok((detail, sid)) => ("sent", detail.clone(), sid.clone()),
            Err(reason) => ("failed", reason.clone(), None),
        };
        if let Err(e) = self.record(call_id, via, text.plan, status, &detail, sid.as_deref(), sent_by).await {
            tracing::error!(error = %e, "cannot record a text message's delivery");
        }
        match outcome {
            Ok(_) => {
                tracing::info!(via = via.as_str(), segments = text.plan.segments, "text message sent");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(via = via.as_str(), %reason, "text message not sent");
                Err(reason)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        call_id: &CallId,
        via: SmsVia,
        plan: Plan,
        status: &str,
        detail: &str,
        sid: Option<&str>,
        sent_by: Option<i64>,
    ) -> Result<(), DbError> {
        let now = self.inner.clock.now().timestamp_millis();
        sqlx::query(
            "INSERT INTO text_messages (call_id, via, segments, encoding, status, detail, carrier_sid, sent_by, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(call_id.as_str())
        .bind(via.as_str())
        .bind(i64::from(plan.segments))
        .bind(plan.encoding.as_str())
        .bind(status)
        .bind(detail)
        .bind(sid)
        .bind(sent_by)
        .bind(now)
        .execute(self.inner.db.pool())
        .await?;
        Ok(())
    }

    /// Opens a call's sealed number (for this call only).
    pub fn open(&self, call_id: &CallId, sealed: &SealedNumber) -> Option<PhoneNumber> {
        self.inner.seal.open(call_id, sealed).ok()
    }
}

/// Where the carrier posts a message's delivery status (`StatusCallback`).
pub const STATUS_CALLBACK_PATH: &str = "/twilio/sms-status";

/// Why the carrier did not take a text, said plainly and without its message (Twilio's name the
/// number: "The 'To' number +39… is not valid").
fn carrier_reason(e: &CarrierError) -> String {
    match e {
        CarrierError::Refused { status, code: Some(code), .. } => {
            format!("the carrier refused it: HTTP {status}, error {code}")
        }
        CarrierError::Refused { status, code: None, .. } => format!("the carrier refused it: HTTP {status}"),
        CarrierError::Unreachable(_) => "the carrier could not be reached".to_owned(),
        other => other.to_string(),
    }
}

/// A delivery status the carrier may report (Twilio's message statuses).
const STATUSES: [&str; 10] =
    ["accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"];

/// Records a message's delivery status from the carrier's status callback (`MessageSid`,
/// `MessageStatus`, `ErrorCode`). `Ok(false)`: no message of ours has that sid. An unknown status
/// or a malformed sid is refused.
pub async fn record_status(
    db: &Db,
    sid: &str,
    status: &str,
    error_code: Option<&str>,
    now_ms: i64,
) -> Result<bool, StatusError> {
    if sid.is_empty() || sid.len() > 64 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StatusError::Invalid("MessageSid"));
    }
    if !STATUSES.contains(&status) {
        return Err(StatusError::Invalid("MessageStatus"));
    }
    let detail = match error_code.filter(|c| !c.is_empty()) {
        Some(c) if c.len() <= 10 && c.bytes().all(|b| b.is_ascii_digit()) => Some(format!("carrier error {c}")),
        Some(_) => return Err(StatusError::Invalid("ErrorCode")),
        None => None,
    };
    let done = sqlx::query(
        "UPDATE text_messages SET status = $1, detail = COALESCE($2, detail), updated_at = $3 WHERE carrier_sid = $4",
    )
    .bind(status)
    .bind(detail)
    .bind(now_ms)
    .bind(sid)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Why a status callback was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0} is missing or invalid")]
    Invalid(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for StatusError {
    fn from(e: sqlx::Error) -> Self {
        StatusError::Db(DbError::Query(e))
    }
}

/// A formatted prompt as one line of a text: spoken layout (line breaks, runs of spaces) folded.
fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl TextSender for Texts {
    fn send(&self, order: TextOrder) -> TextFuture {
        let texts = self.clone();
        Box::pin(async move {
            let failed = |reason: &str| Event::TextFailed { reason: reason.to_owned() };
            let Some(number) = order.number.as_ref().and_then(|n| texts.open(&order.call_id, n)) else {
                return failed("the caller's number is not known");
            };
            let text = match texts.render(&order.services, order.language, &order.item_prompt, &order.portal_prompt) {
                Ok(t) => t,
                Err(reason) => {
                    tracing::warn!(%reason, "the text message cannot be written");
                    return failed(&reason);
                }
            };
            let base = order.base_url.as_deref();
            match Texts::send(&texts, &order.call_id, Some(order.channel), &number, &text, None, base).await {
                Ok(()) => Event::TextSent { segments: text.plan.segments, encoding: text.plan.encoding },
                Err(reason) => failed(&reason),
            }
        })
    }
}
