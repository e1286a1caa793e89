//! The state of one call between two events: small, cheap to clone, stored as JSON.

use super::action::Outcome;
use super::event::Channel;
use crate::domain::{CallId, Cap, Language, ServiceArea, TextReach};
use crate::geo::GeoPoint;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the engine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// `CallStarted`.
    CallStart,
    /// Keys for the current node's `Collect`.
    Digits,
    /// `LookupResults` for the page at `offset`.
    Services { offset: u32 },
    /// Keys after a readback (1 again, 2 operator, 9 next page).
    ServicesMenu { offset: u32, has_more: bool },
    /// `QueueUpdate`.
    QueueState,
    /// Hold audio with a timed `Collect`; `NoInput` means "ask the queue again".
    Hold,
    /// The outcome of a `Transfer`.
    Transfer,
    /// The caller's voice message (`Recorded`), after the voicemail prompt and beep.
    Recording,
    /// The outcome of a `SendText` from the readback at `offset` (whose menu follows).
    Text { offset: u32, has_more: bool },
    /// Nothing: the call is over.
    Ended,
}

/// Where the caller is, for the directory lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub label: String,
    pub point: GeoPoint,
    /// The postal code the caller keyed in (none when the place is a landline's province). States
    /// stored before it was kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
}

/// The caller's stay in the operator queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub entered_at: DateTime<Utc>,
    pub last_announced_at: Option<DateTime<Utc>>,
    pub priority: u8,
    pub callback_offered: bool,
    /// Transfers to an operator that failed in this stay (states stored before it have none).
    #[serde(default)]
    pub failed_transfers: u8,
}

/// One call's state. The path taken is not kept here (it goes out through log actions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    pub call_id: CallId,
    /// Current node name (empty before the call starts).
    pub node: String,
    pub wait: Wait,
    pub channel: Option<Channel>,
    pub started_at: Option<DateTime<Utc>>,
    pub language: Option<Language>,
    pub guessed_language: Option<Language>,
    /// The second language guessed from the country code (Arabic, then French), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guessed_second: Option<Language>,
    /// Whether the guessed languages were offered (the language menu then leaves them out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guess_offered: bool,
    /// The page of the language menu (past nine languages), from 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub language_page: u8,
    pub area: Option<ServiceArea>,
    /// Leading digits of an Italian landline (`0312`), to offer its province instead of a CAP.
    pub landline_area: Option<String>,
    /// The caller said the landline province is not where they need help.
    pub landline_declined: bool,
    pub place: Option<Place>,
    /// Invalid or empty tries in the current node.
    pub tries: u8,
    /// Consecutive no-inputs in the current node.
    pub no_inputs: u8,
    /// Menus are spoken slowly from the second silence on, for the rest of the call.
    pub slow: bool,
    pub queue: Option<QueueStatus>,
    pub outcome: Option<Outcome>,
    /// Whether a text message reaches the caller (none for a withheld number, and in states
    /// stored before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_reach: Option<TextReach>,
    /// The directory ids of the services of the last readback page (what a text would carry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services_read: Vec<String>,
    /// The recording notice node just played: the next key is the caller's refusal when it is
    /// the notice's `refuse_key` (cleared by the next key or silence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The caller refused to be recorded (a key during the notice). The server refuses to
    /// record the call then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recording_refused: bool,
    /// The caller heard the recording notice (a caller who goes to the queue before it, with 0,
    /// hears it there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notice_played: bool,
}

impl CallState {
    /// The state before `CallStarted`.
    pub fn initial(call_id: CallId) -> CallState {
        CallState {
            call_id,
            node: String::new(),
            wait: Wait::CallStart,
            channel: None,
            started_at: None,
            language: None,
            guessed_language: None,
            guessed_second: None,
            guess_offered: false,
            language_page: 0,
            area: None,
            landline_area: None,
            landline_declined: false,
            place: None,
            tries: 0,
            no_inputs: 0,
            slow: false,
            queue: None,
            outcome: None,
            text_reach: None,
            services_read: Vec::new(),
            notice: None,
            recording_refused: false,
            notice_played: false,
        }
    }

    /// Whether the call is over (the caller or the helpline hung up).
    pub fn ended(&self) -> bool {
        self.wait == Wait::Ended
    }
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}
