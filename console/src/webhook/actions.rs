//! The engine's outward actions as a carrier sees them: prompts become URLs, sayings become text
//! in a language, collecting becomes a gather with its limits. Shared by the JSON and TwiML
//! adapters, which only differ in how they write these down.

use crate::error::AppError;
use ivr::domain::{Language, ServiceArea};
use ivr::engine::{Action, Outcome, Pace, SayArg};
use ivr::prompts::{Catalog, PromptArg};
use serde::Serialize;

/// One thing the carrier must do, in order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CarrierAction {
    /// Play a recorded prompt (8 kHz mono 16-bit WAV) from `url`.
    Play { url: String, prompt: String, language: String },
    /// Speak `text` in `language` (a BCP-47 tag such as `fr-FR`); `pace` is `normal` or `slow`.
    Say {
        text: String,
        language: String,
        #[schema(value_type = String, example = "normal")]
        pace: Pace,
    },
    /// Collect up to `max_digits` keys; `timeout_ms` for the first, `inter_digit_timeout_ms`
    /// between keys; `finish_on_key` ends early. Keys may be pressed during the preceding prompts.
    Gather { max_digits: u8, timeout_ms: u32, inter_digit_timeout_ms: u32, finish_on_key: Option<String> },
    /// Put the caller in the operator queue `queue` (skills: language, area) with hold audio.
    Enqueue {
        queue: String,
        language: String,
        #[schema(value_type = Option<String>, example = "casa")]
        area: Option<ServiceArea>,
        priority: u8,
    },
    /// Record the caller's voice message, after the prompts before it: a beep, then up to
    /// `max_secs` seconds; `finish_on_key` ends it, and so does hanging up. Silence at both ends
    /// may be trimmed (the server trims it again). Hand the audio over with the `recording` event
    /// (the next event of the call).
    Record { max_secs: u32, finish_on_key: String, beep: bool },
    /// Connect the caller to an operator at `to` (a SIP URI or a number).
    Transfer { to: String, operator: String },
    /// End the call.
    Hangup {
        #[schema(value_type = String, example = "self_service")]
        outcome: Outcome,
    },
}

/// The queue name for a language and area (`fr`, `fr.casa`).
pub fn queue_name(language: Language, area: Option<ServiceArea>) -> String {
    match area {
        Some(a) => format!("{}.{}", language.as_str(), a.as_str()),
        None => language.as_str().to_owned(),
    }
}

/// A `say`'s arguments as the prompt catalog formats them.
pub fn prompt_args(args: &std::collections::BTreeMap<String, SayArg>) -> Vec<(&str, PromptArg)> {
    args.iter()
        .map(|(k, v)| {
            let v = match v {
                SayArg::Text(t) => PromptArg::Text(t.clone()),
                SayArg::Number(n) => PromptArg::Number(*n),
            };
            (k.as_str(), v)
        })
        .collect()
}

/// Translates outward engine actions; internal ones (a callback request) are dropped.
/// `voicemail_max_secs` bounds a recording.
pub fn to_carrier(
    actions: &[Action],
    base_url: &str,
    catalog: &Catalog,
    voicemail_max_secs: u32,
) -> Result<Vec<CarrierAction>, AppError> {
    let mut out = Vec::with_capacity(actions.len());
    for action in actions {
        match action {
            Action::Play { prompt, language, pace } => {
                let slow = if *pace == Pace::Slow { "?pace=slow" } else { "" };
                out.push(CarrierAction::Play {
                    url: format!("{base_url}/prompts/{}/{}.wav{slow}", language.as_str(), prompt.as_str()),
                    prompt: prompt.as_str().to_owned(),
                    language: language.locale().to_owned(),
                });
            }
            Action::Say { message, language, args, pace } => {
                let text = catalog
                    .format(*language, message, &prompt_args(args))
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("prompt {message} in {language}: {e}")))?;
                out.push(CarrierAction::Say { text, language: language.locale().to_owned(), pace: *pace });
            }
            Action::Collect { max_digits, first_timeout_ms, inter_digit_timeout_ms, finish_key } => {
                out.push(CarrierAction::Gather {
                    max_digits: *max_digits,
                    timeout_ms: *first_timeout_ms,
                    inter_digit_timeout_ms: *inter_digit_timeout_ms,
                    finish_on_key: finish_key.map(|k| k.as_char().to_string()),
                })
            }
            Action::Enqueue { language, area, priority } => out.push(CarrierAction::Enqueue {
                queue: queue_name(*language, *area),
                language: language.as_str().to_owned(),
                area: *area,
                priority: *priority,
            }),
            Action::Transfer { operator, target } => {
                out.push(CarrierAction::Transfer { to: target.clone(), operator: operator.clone() })
            }
            Action::Hangup { outcome } => out.push(CarrierAction::Hangup { outcome: *outcome }),
            Action::Record => {
                out.push(CarrierAction::Record { max_secs: voicemail_max_secs, finish_on_key: "#".into(), beep: true })
            }
            Action::RecordCallback { .. } | Action::SendText { .. } | Action::Lookup(_) | Action::Log(_) => {}
        }
    }
    Ok(out)
}
