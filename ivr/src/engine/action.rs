//! What the engine asks the adapters to do, in order.

use super::log::LogEntry;
use crate::domain::{DtmfDigit, Language, PromptId, ServiceArea};
use crate::geo::GeoPoint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Speech rate: callers who do not answer twice hear menus again, slower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    Normal,
    Slow,
}

/// A runtime value for a fluent message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SayArg {
    Text(String),
    Number(f64),
}

/// A question for the server's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lookup {
    /// The nearest services of an area; answered by `Event::LookupResults`.
    NearestServices { area: ServiceArea, near: GeoPoint, place_label: String, offset: u32, limit: u32 },
    /// The caller's place in the queue; answered by `Event::QueueUpdate`.
    QueueState,
}

/// How a call ended, or where it stands once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The caller heard nearby services read back.
    SelfService,
    /// Waiting for an operator.
    Queued,
    /// Put through to an operator.
    Answered,
    /// Left a callback request.
    Callback,
    /// Reached the helpline out of hours and left without a callback request.
    OutOfHours,
    /// Hung up before any of the above.
    HungUpInMenu,
    /// Hung up while waiting for an operator.
    HungUpInQueue,
}

/// One instruction for the adapter. Actions of one step are carried out in order; a `Collect`
/// starts listening once the prompts before it are queued (callers may type over them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Play a pre-rendered prompt.
    Play {
        prompt: PromptId,
        language: Language,
        pace: Pace,
    },
    /// Speak a fluent message with runtime data (rendered on demand).
    Say {
        message: PromptId,
        language: Language,
        args: BTreeMap<String, SayArg>,
        pace: Pace,
    },
    /// Listen for keys; answered by `Event::Digits` or `Event::NoInput`.
    Collect {
        max_digits: u8,
        first_timeout_ms: u32,
        inter_digit_timeout_ms: u32,
        #[serde(with = "finish_key")]
        finish_key: Option<DtmfDigit>,
    },
    Lookup(Lookup),
    /// Put the caller in the operator queue with these skills.
    Enqueue {
        language: Language,
        area: Option<ServiceArea>,
        priority: u8,
    },
    /// Bridge the call to the assigned operator.
    Transfer {
        operator: String,
        target: String,
    },
    /// Store a callback request for the caller's number (the server knows it from the call).
    RecordCallback {
        language: Language,
        area: Option<ServiceArea>,
    },
    /// After the prompts queued before it: a beep, then record the caller (until `#`, a hang-up
    /// or the adapter's `voicemail_max_secs`), store the message with the call, and answer
    /// `Event::Recorded`.
    Record,
    /// Send these services (directory ids, as just read) by text message to the caller's number
    /// (the server knows it from the call and never stores it), in `language`: each service as
    /// `item_prompt` (the readback's), then `portal_prompt`; answered by `Event::TextSent` or
    /// `Event::TextFailed`.
    SendText {
        services: Vec<String>,
        language: Language,
        item_prompt: PromptId,
        portal_prompt: PromptId,
    },
    Hangup {
        outcome: Outcome,
    },
    /// A line for the call log.
    Log(LogEntry),
}

/// Serde for an optional DTMF key as a one-character string (`"#"`).
mod finish_key {
    use crate::domain::DtmfDigit;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &Option<DtmfDigit>, s: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(k) => s.serialize_some(&k.as_char()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DtmfDigit>, D::Error> {
        Option::<char>::deserialize(d)?.map(|c| DtmfDigit::new(c).map_err(serde::de::Error::custom)).transpose()
    }
}
