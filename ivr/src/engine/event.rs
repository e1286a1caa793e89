//! What happens to a call, as the adapters report it to the engine.

use crate::domain::{Caller, DtmfDigits, Language, ServiceArea};
use serde::{Deserialize, Serialize};

/// How the call reached the helpline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sip,
    Webhook,
    Twiml,
}

impl Channel {
    /// Whether the adapter records a caller's voice message (`Action::Record`): the SIP adapter
    /// records the RTP, TwiML asks for `<Record>`, the JSON API for a `record` action. Without
    /// it a callback request is taken without a message.
    pub fn records(self) -> bool {
        matches!(self, Channel::Sip | Channel::Twiml | Channel::Webhook)
    }

    /// Whether the adapter can send the caller a text message (`Action::SendText`): it has the
    /// caller's number at hand when the caller asks (SIP holds the call; TwiML's every request
    /// carries `From`). The JSON webhook sends the number only when the call starts, and the
    /// server keeps it nowhere, so its callers are not offered texts.
    pub fn texts(self) -> bool {
        matches!(self, Channel::Sip | Channel::Twiml)
    }
}

/// One nearby service, as the directory returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub id: String,
    pub name: String,
    /// The street address (`Via Gramsci 17`), read before the phone; `None` when unknown (and
    /// in call logs written before the directory gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub town: String,
    pub phone: String,
    /// Today's opening hours in words or `09:00-13:00`; `None` when closed or unknown.
    pub hours_today: Option<String>,
    pub distance_km: f64,
}

/// An event of a call. Stored in the call log: replaying them through `step` rebuilds the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The call was answered. `caller` is absent for withheld numbers.
    CallStarted { channel: Channel, caller: Option<Caller>, called: Option<String> },
    /// Keys collected by the last `Collect` (a finish key, if pressed, is included).
    Digits(DtmfDigits),
    /// The last `Collect` timed out with no key (or a lookup did not answer in time).
    NoInput,
    /// The prompts played so far have finished (informational: the engine never waits for it).
    PromptFinished,
    /// Answer to `Lookup::NearestServices`.
    LookupResults { services: Vec<ServiceSummary>, has_more: bool },
    /// Answer to `Lookup::QueueState`.
    QueueUpdate { position: u32, estimated_wait_secs: u32 },
    /// An operator accepted the call.
    OperatorAssigned { operator: String, target: String },
    /// The transfer to the operator did not connect.
    TransferFailed { reason: String },
    /// The operator handed the caller over to another queue (a blind hand-over, "Passa alla
    /// coda"): back in the queue for `language` (and `area`), keeping the time they first
    /// entered the queue, so they are not sent to the back.
    HandedOver { language: Language, area: Option<ServiceArea> },
    /// The caller's voice message is stored (`duration_ms` of it after trimming silence; 0 when
    /// nothing was said). Answers `Action::Record`.
    Recorded { duration_ms: u32 },
    /// The services went to the caller by text message, in `segments` segments of `encoding`.
    /// Answers `Action::SendText`.
    TextSent { segments: u32, encoding: crate::sms::Encoding },
    /// The text could not be sent (a trunk's or carrier's refusal, no number, not configured).
    /// Answers `Action::SendText`.
    TextFailed { reason: String },
    /// The caller hung up.
    HungUp,
}
