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
use crate::calls::{CarryOut, TextFuture, TextOrder, TextSender};
use crate::carrier::{Carrier, CarrierError, OutboundMessage};
use crate::clock::Clock;
use crate::config::{SmsSettings, SmsVia};
use crate::db::{Db, DbError};
use crate::directory::Directory;
use crate::sip::trunk::{self, Trunk};
use ivr::domain::{CallId, Language, PhoneNumber, PromptId};
use ivr::engine::{CallState, Channel, Event};
use ivr::flow::{Flow, NodeKind};
use ivr::prompts::{Catalog, PromptArg};
use ivr::sms::Plan;
use serde::{Deserialize, Serialize};
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
    /// How an operator's text is written, from the flow (`None`: the flow offers no texts).
    referral: Option<ReferralText>,
}

/// How an operator's referrals are written as a text, taken from the flow's first readback with
/// a text offer: the same item and portal prompts, the same countries, the flow's default
/// language for a caller who chose none.
#[derive(Debug, Clone)]
pub struct ReferralText {
    pub item_prompt: PromptId,
    pub portal_prompt: PromptId,
    pub countries: Vec<String>,
    pub default_language: Language,
}

impl ReferralText {
    pub fn from_flow(flow: &Flow) -> Option<ReferralText> {
        flow.nodes().iter().find_map(|n| match &n.kind {
            NodeKind::SelfService { item_prompt, sms: Some(sms), .. } => Some(ReferralText {
                item_prompt: item_prompt.clone(),
                portal_prompt: sms.portal_prompt.clone(),
                countries: sms.countries.clone(),
                default_language: flow.default_language(),
            }),
            _ => None,
        })
    }
}

/// What an operator's "Send by SMS" would send (`GET /api/calls/{id}/sms`): the text itself,
/// its alphabet and segments, and how it would go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsPreview {
    pub text: String,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    pub segments: u32,
    /// Characters as the alphabet counts them (an extension character of GSM-7 counts two).
    pub units: u32,
    /// `trunk` or `twilio`.
    pub via: String,
    pub language: String,
}

/// What came of an operator's text (`POST /api/calls/{id}/sms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsSent {
    pub segments: u32,
    pub encoding: String,
    pub via: String,
    /// The trunk's or the carrier's answer.
    pub detail: String,
}

/// Why an operator's text cannot be shown or did not go, said plainly for the page.
#[derive(Debug, thiserror::Error)]
pub enum OperatorTextError {
    #[error("no call {0:?}")]
    UnknownCall(String),
    #[error("the call has ended")]
    Ended,
    #[error("this server sends no text messages (HELPLINE_SMS_VIA is empty, or the menus offer no text)")]
    NoSender,
    #[error("no services have been referred on this call yet")]
    NoServices,
    #[error("the caller's number is withheld: there is nowhere to send a text")]
    Withheld,
    #[error("the caller's number is a landline (or a country texts do not reach): it cannot receive a text")]
    Landline,
    #[error("calls from this channel cannot be answered by text (the caller's number is not kept)")]
    Channel,
    #[error("the text has changed since you saw it (the referrals changed): look at it again")]
    Changed,
    #[error("the text was not sent: {0}")]
    NotSent(String),
    #[error("{0}")]
    Render(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for OperatorTextError {
    fn from(e: sqlx::Error) -> Self {
        OperatorTextError::Db(DbError::Query(e))
    }
}

/// How long an operator's request waits for the node holding a SIP call to claim it.
const CLAIM_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
/// How long it waits for the outcome once claimed (the trunk's `MESSAGE` transaction and more).
const OUTCOME_WITHIN: std::time::Duration = std::time::Duration::from_secs(40);
/// How often the operator's node looks at its request's row.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

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
        referral: Option<ReferralText>,
    ) -> Texts {
        Texts {
            inner: Arc::new(Inner { sms, trunk, carrier, public_url, directory, catalog, seal, db, clock, referral }),
        }
    }

    /// The text an operator's "Send by SMS" sends for a live call: its referrals in the
    /// caller's language, as the readback writes them; or why there is none.
    pub async fn preview(&self, call_id: &CallId) -> Result<(Rendered, Channel, SmsPreview), OperatorTextError> {
        let Some(referral) = &self.inner.referral else { return Err(OperatorTextError::NoSender) };
        let row: Option<(String, Option<i64>)> = sqlx::query_as("SELECT state, ended_at FROM calls WHERE call_id = $1")
            .bind(call_id.as_str())
            .fetch_optional(self.inner.db.pool())
            .await?;
        let Some((state, ended)) = row else { return Err(OperatorTextError::UnknownCall(call_id.as_str().into())) };
        if ended.is_some() {
            return Err(OperatorTextError::Ended);
        }
        let state: CallState = serde_json::from_str(&state)
            .map_err(|e| OperatorTextError::Db(DbError::Corrupt(format!("call state: {e}"))))?;
        let channel = match state.channel {
            Some(c) if c.texts() => c,
            _ => return Err(OperatorTextError::Channel),
        };
        match &state.text_reach {
            None => return Err(OperatorTextError::Withheld),
            Some(reach) if !reach.reaches(&referral.countries) => return Err(OperatorTextError::Landline),
            Some(_) => {}
        }
        let services: Vec<(String,)> =
            sqlx::query_as("SELECT service_id FROM referrals WHERE call_id = $1 ORDER BY at, service_id")
                .bind(call_id.as_str())
                .fetch_all(self.inner.db.pool())
                .await?;
        if services.is_empty() {
            return Err(OperatorTextError::NoServices);
        }
        let services: Vec<String> = services.into_iter().map(|(s,)| s).collect();
        let language = state.language.unwrap_or(referral.default_language);
        let text = self
            .render(&services, language, &referral.item_prompt, &referral.portal_prompt)
            .map_err(OperatorTextError::Render)?;
        let preview = SmsPreview {
            text: text.body.clone(),
            encoding: text.plan.encoding.as_str().to_owned(),
            segments: text.plan.segments,
            units: text.plan.units,
            via: self.route(Some(channel)).as_str().to_owned(),
            language: language.as_str().to_owned(),
        };
        Ok((text, channel, preview))
    }

    /// Sends an operator's text for a live call, once they saw it (`seen`: the preview's text;
    /// another one means the referrals changed meanwhile). A TwiML call's number is asked of the
    /// carrier and sent to at once; a SIP call's sealed number is only in the memory of the node
    /// holding the call, so the request is left in `text_messages` for that node to carry out
    /// (`sip::signalling`), and its outcome waited for here.
    pub async fn send_for_operator(
        &self,
        call_id: &CallId,
        operator: i64,
        seen: &str,
    ) -> Result<SmsSent, OperatorTextError> {
        let (text, channel, preview) = self.preview(call_id).await?;
        if text.body != seen {
            return Err(OperatorTextError::Changed);
        }
        match channel {
            Channel::Twiml => {
                let Some(carrier) = &self.inner.carrier else {
                    return Err(OperatorTextError::NotSent(
                        "the caller's number is only known to the carrier, whose API is not configured".into(),
                    ));
                };
                let number = match carrier.call_from(call_id.as_str()).await {
                    Ok(from) => PhoneNumber::parse(&from).map_err(|_| OperatorTextError::Withheld)?,
                    Err(e) => return Err(OperatorTextError::NotSent(carrier_reason(&e))),
                };
                match self.send(call_id, Some(channel), &number, &text, Some(operator), None).await {
                    Ok(detail) => Ok(SmsSent {
                        segments: text.plan.segments,
                        encoding: preview.encoding,
                        via: preview.via,
                        detail,
                    }),
                    Err(reason) => Err(OperatorTextError::NotSent(reason)),
                }
            }
            _ => self.request_of_holder(call_id, operator, &text, &preview).await,
        }
    }

    /// Leaves a SIP call's text request for the node holding the call and waits for its outcome.
    async fn request_of_holder(
        &self,
        call_id: &CallId,
        operator: i64,
        text: &Rendered,
        preview: &SmsPreview,
    ) -> Result<SmsSent, OperatorTextError> {
        let db = &self.inner.db;
        let now = self.inner.clock.now().timestamp_millis();
        let (request,): (i64,) = {
            let _turn = db.lock_turn().await;
            sqlx::query_as(
                "INSERT INTO text_messages (call_id, via, segments, encoding, status, sent_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
            )
            .bind(call_id.as_str())
            .bind(&preview.via)
            .bind(i64::from(text.plan.segments))
            .bind(text.plan.encoding.as_str())
            .bind(crate::calls::texts::PENDING)
            .bind(operator)
            .bind(now)
            .fetch_one(db.pool())
            .await?
        };
        let started = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let (status, detail, segments, encoding, via): (String, Option<String>, i64, String, String) =
                sqlx::query_as("SELECT status, detail, segments, encoding, via FROM text_messages WHERE id = $1")
                    .bind(request)
                    .fetch_one(db.pool())
                    .await?;
            let detail = detail.unwrap_or_default();
            match status.as_str() {
                crate::calls::texts::PENDING if started.elapsed() >= CLAIM_WITHIN => {
                    let reason =
                        "the server holding the call did not take the request (does it send texts? HELPLINE_SMS_VIA)";
                    let _turn = db.lock_turn().await;
                    let gave_up = sqlx::query(
                        "UPDATE text_messages SET status = 'failed', detail = $1, updated_at = $2 WHERE id = $3 AND status = $4",
                    )
                    .bind(reason)
                    .bind(self.inner.clock.now().timestamp_millis())
                    .bind(request)
                    .bind(crate::calls::texts::PENDING)
                    .execute(db.pool())
                    .await?;
                    if gave_up.rows_affected() == 1 {
                        return Err(OperatorTextError::NotSent(reason.into()));
                    }
                }
                crate::calls::texts::PENDING | crate::calls::texts::SENDING => {
                    if started.elapsed() >= OUTCOME_WITHIN {
                        return Err(OperatorTextError::NotSent(
                            "no answer yet from the trunk; the call's timeline will show the outcome".into(),
                        ));
                    }
                }
                "failed" => return Err(OperatorTextError::NotSent(detail)),
                _ => return Ok(SmsSent { segments: u32::try_from(segments).unwrap_or(0), encoding, via, detail }),
            }
        }
    }

    /// Carries out an operator's request `request` for a call of this node (see
    /// [`Texts::send_for_operator`]): writes the text afresh and sends it, the outcome into the
    /// request's row.
    async fn carry_out_request(&self, request: i64, call_id: CallId, number: Option<SealedNumber>) {
        let outcome = async {
            let (text, channel, _) = self.preview(&call_id).await.map_err(|e| e.to_string())?;
            let number =
                number.and_then(|n| self.open(&call_id, &n)).ok_or_else(|| OperatorTextError::Withheld.to_string())?;
            let via = self.route(Some(channel));
            let delivered = self.deliver(via, &number, &text, None).await;
            Ok::<_, String>((via, text.plan, delivered))
        }
        .await;
        let now = self.inner.clock.now().timestamp_millis();
        let update = match outcome {
            Ok((via, plan, delivered)) => {
                let (status, detail, sid) = match delivered {
                    Ok((detail, sid)) => ("sent", detail, sid),
                    Err(reason) => ("failed", reason, None),
                };
                tracing::info!(via = via.as_str(), segments = plan.segments, status, "an operator's text message");
                sqlx::query(
                    "UPDATE text_messages SET via = $1, segments = $2, encoding = $3, status = $4, detail = $5, \
                     carrier_sid = $6, updated_at = $7 WHERE id = $8",
                )
                .bind(via.as_str())
                .bind(i64::from(plan.segments))
                .bind(plan.encoding.as_str())
                .bind(status)
                .bind(detail)
                .bind(sid)
                .bind(now)
                .bind(request)
            }
            Err(reason) => {
                tracing::warn!(%reason, "an operator's text message was not sent");
                sqlx::query("UPDATE text_messages SET status = 'failed', detail = $1, updated_at = $2 WHERE id = $3")
                    .bind(reason)
                    .bind(now)
                    .bind(request)
            }
        };
        let _turn = self.inner.db.lock_turn().await;
        if let Err(e) = update.execute(self.inner.db.pool()).await {
            tracing::error!(error = %e, "cannot record an operator's text message's outcome");
        }
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
    /// it). `Ok` is the trunk's or carrier's answer; `Err` the plain reason it did not go.
    pub async fn send(
        &self,
        call_id: &CallId,
        channel: Option<Channel>,
        number: &PhoneNumber,
        text: &Rendered,
        sent_by: Option<i64>,
        base_url: Option<&str>,
    ) -> Result<String, String> {
        let via = self.route(channel);
        let outcome = self.deliver(via, number, text, base_url).await;
        let (status, detail, sid) = match &outcome {
            Ok((detail, sid)) => ("sent", detail.clone(), sid.clone()),
            Err(reason) => ("failed", reason.clone(), None),
        };
        if let Err(e) = self.record(call_id, via, text.plan, status, &detail, sid.as_deref(), sent_by).await {
            tracing::error!(error = %e, "cannot record a text message's delivery");
        }
        match outcome {
            Ok((detail, _)) => {
                tracing::info!(via = via.as_str(), segments = text.plan.segments, "text message sent");
                Ok(detail)
            }
            Err(reason) => {
                tracing::warn!(via = via.as_str(), %reason, "text message not sent");
                Err(reason)
            }
        }
    }

    /// Sends `text` to `number` by `via`: the answer (and the carrier's message sid), or why not.
    async fn deliver(
        &self,
        via: SmsVia,
        number: &PhoneNumber,
        text: &Rendered,
        base_url: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        match via {
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
                Ok(_) => Event::TextSent { segments: text.plan.segments, encoding: text.plan.encoding },
                Err(reason) => failed(&reason),
            }
        })
    }

    fn carry_out(&self, request: i64, call_id: CallId, number: Option<SealedNumber>) -> CarryOut {
        let texts = self.clone();
        Box::pin(async move { texts.carry_out_request(request, call_id, number).await })
    }
}
