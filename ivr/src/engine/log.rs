//! Call-log lines: every step emits at least one, so the path of a call is in its log and not in
//! its state.

use super::action::Outcome;
use super::event::Channel;
use crate::domain::{Language, PhoneHash, PromptId, ServiceArea};
use serde::{Deserialize, Serialize};

/// One call-log line, serialized with a `kind` tag (`{"kind":"node_entered","node":"area-menu"}`).
/// Never contains a phone number: callers appear by hash and country code only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEntry {
    CallStarted {
        channel: Channel,
        caller_hash: Option<PhoneHash>,
        country_code: Option<String>,
        guessed_language: Option<Language>,
    },
    NodeLeft {
        node: String,
    },
    NodeEntered {
        node: String,
    },
    Digits {
        node: String,
        digits: String,
    },
    /// A prompt played or a message said, so the log shows what the caller heard.
    Prompt {
        node: String,
        prompt: PromptId,
        language: Language,
    },
    NoInput {
        node: String,
        tries: u8,
    },
    Invalid {
        node: String,
        digits: String,
        tries: u8,
    },
    /// A choice the engine made (`language`, `area`, `place`, `skip`, `too_many_tries`…).
    Decision {
        node: String,
        decision: String,
        value: String,
    },
    LanguageChosen {
        language: Language,
    },
    AreaChosen {
        area: ServiceArea,
    },
    ServicesRead {
        node: String,
        offset: u32,
        count: u32,
        has_more: bool,
    },
    QueueUpdate {
        position: u32,
        estimated_wait_secs: u32,
        announced: bool,
    },
    TransferFailed {
        reason: String,
    },
    PromptFinished {
        node: String,
    },
    /// The services read went by text message: how many segments, in which alphabet (never the
    /// text, never the number).
    TextSent {
        segments: u32,
        encoding: crate::sms::Encoding,
    },
    TextFailed {
        reason: String,
    },
    /// The caller pressed the refusal key during the recording notice: the call is not to be
    /// recorded.
    RecordingRefused {
        node: String,
        key: String,
    },
    /// An event that makes no sense in the current state (late, duplicated, out of order).
    Ignored {
        node: String,
        event: String,
    },
    CallEnded {
        outcome: Outcome,
    },
}
