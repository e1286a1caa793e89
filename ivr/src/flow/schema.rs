//! The shape of `config/ivr.toml`: what an administrator may write. Targets are node names here
//! (`NodeKind<String>`) and node indexes once validated (`NodeKind<NodeIx>`).

use crate::domain::{LanguageSpec, PromptId};
use crate::hours::HoursConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowFile {
    /// The node calls begin with.
    pub start: String,
    /// The operator queue node, reached by 0 from any menu and after too many failed tries.
    pub operator: String,
    pub prompts: CommonPrompts,
    pub timeouts: Timeouts,
    /// The caller languages, in menu order.
    pub languages: Vec<LanguageSpec>,
    /// Country calling code prefix → languages offered first (`"33" = "fr"`, `"212" = ["ar", "fr"]`).
    #[serde(default)]
    pub language_guess: BTreeMap<String, GuessLanguages>,
    pub hours: HoursConfig,
    pub nodes: BTreeMap<String, NodeKind<String>>,
}

/// One language or a few, likeliest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum GuessLanguages {
    One(String),
    Many(Vec<String>),
}

impl GuessLanguages {
    pub fn tags(&self) -> Vec<&str> {
        match self {
            GuessLanguages::One(t) => vec![t.as_str()],
            GuessLanguages::Many(ts) => ts.iter().map(String::as_str).collect(),
        }
    }
}

/// Prompts every menu may need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonPrompts {
    /// Played before repeating a menu after a key it does not know.
    pub invalid: PromptId,
    /// Played before the helpline hangs up.
    pub goodbye: PromptId,
}

/// How long to wait for keys and how many failed tries a menu allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Wait for the first key of a menu choice, after the prompt.
    pub first_digit_ms: u32,
    /// Wait between keys of a multi-digit entry (the CAP).
    pub inter_digit_ms: u32,
    /// Invalid or empty tries in one node before the caller is put through to an operator.
    pub max_tries: u8,
}

/// A menu option: a key and the node it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuOption<T> {
    pub digit: String,
    pub goto: T,
}

/// "To receive these by text message, press 3": offered after a readback to callers whose
/// number a text reaches ([`crate::domain::Caller::textable`]), when the server can send texts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsOffer {
    /// The key (one of 3-8: 1, 2 and 9 are the readback's own).
    pub key: String,
    /// Said after the readback's options.
    pub offer_prompt: PromptId,
    /// The text is on its way.
    pub sent_prompt: PromptId,
    /// It could not be sent (the caller hears the options again).
    pub failed_prompt: PromptId,
    /// The text's last line, with `$portal` (the Portale's address); each service in the text
    /// is the readback's `item_prompt`, with the phone as written.
    pub portal_prompt: PromptId,
    /// Country codes (without `+`) whose numbers are offered texts; `39` means Italian mobiles.
    #[serde(default = "SmsOffer::italy")]
    pub countries: Vec<String>,
}

impl SmsOffer {
    fn italy() -> Vec<String> {
        vec!["39".to_owned()]
    }
}

/// A node, by kind. Special kinds carry the behaviour the helpline needs (language choice,
/// postal code, directory readback, queue); `message` and `menu` are free for administrators.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeKind<T> {
    /// Plays a prompt and goes on at once.
    Message { prompt: PromptId, next: T },
    /// The recording notice: plays `prompt` ("this call may be recorded; to refuse, press 9")
    /// and goes on at once, without waiting. The caller refuses with `refuse_key` pressed during
    /// it — the first key the next menu collects (callers type over prompts): the refusal is
    /// kept with the call (`CallState::recording_refused`), `refused_prompt` confirms it, and the
    /// menu is said again. The key must mean nothing to the menus the notice leads to.
    RecordingNotice { prompt: PromptId, refused_prompt: PromptId, refuse_key: String, next: T },
    /// Plays a prompt and waits for one key among `options`.
    Menu {
        prompt: PromptId,
        options: Vec<MenuOption<T>>,
        #[serde(default)]
        back: Option<T>,
    },
    /// Offers the languages guessed from the caller's country code (the flow's first language
    /// when none is), each in itself: `prompt` is said with `$digit` 1, then 2. 1 or 2 → `next` in
    /// that language; any other key, or silence for `wait_ms` (default `first_digit_ms`) →
    /// `fallback`.
    LanguageGuess {
        prompt: PromptId,
        next: T,
        fallback: T,
        #[serde(default)]
        wait_ms: Option<u32>,
    },
    /// Says `prompt` (with `$digit`) once per language not already offered, each in itself, keys
    /// 1, 2, 3… in the configured order. Past nine, keys 1-8 and `more_prompt` with 9 for the next
    /// page.
    LanguageMenu {
        prompt: PromptId,
        next: T,
        #[serde(default)]
        more_prompt: Option<PromptId>,
        #[serde(default)]
        back: Option<T>,
    },
    /// Goes on to `open` or `closed` according to the opening hours.
    HoursCheck { open: T, closed: T },
    /// The six service areas on digits 1-6, plus extra `options` (7 = portal information).
    AreaMenu {
        prompt: PromptId,
        next: T,
        #[serde(default)]
        options: Vec<MenuOption<T>>,
        #[serde(default)]
        back: Option<T>,
    },
    /// Asks for the postal code (or offers the province of a landline); `#` alone skips.
    CapEntry {
        prompt: PromptId,
        landline_prompt: PromptId,
        invalid_prompt: PromptId,
        placed_prompt: PromptId,
        next: T,
        skip: T,
        #[serde(default)]
        back: Option<T>,
    },
    /// Reads back the nearest services of the chosen area, a page at a time.
    SelfService {
        page_size: u32,
        intro_prompt: PromptId,
        item_prompt: PromptId,
        options_prompt: PromptId,
        none_prompt: PromptId,
        no_more_prompt: PromptId,
        operator: T,
        #[serde(default)]
        back: Option<T>,
        /// The services just read, sent by text message to callers a text reaches.
        #[serde(default)]
        sms: Option<SmsOffer>,
    },
    /// Waits for an operator: announcements, callback offer, transfer.
    Queue {
        enter_prompt: PromptId,
        position_prompt: PromptId,
        callback_offer_prompt: PromptId,
        transfer_failed_prompt: PromptId,
        /// Seconds between position announcements (hold audio plays in between).
        announce_interval_secs: u32,
        /// Offer a callback once the caller has waited, or is told to wait, this long.
        callback_offer_after_secs: u32,
        priority: u8,
        /// Added to the priority when a transfer fails and the caller is queued again.
        retry_priority_step: u8,
        /// Where callers go when the queue is reached out of hours.
        closed: T,
        callback: T,
    },
    /// Out of hours: next opening time, the portal address, 1 callback, 2 self-service.
    OutOfHours {
        closed_prompt: PromptId,
        next_opening_prompt: PromptId,
        portal_prompt: PromptId,
        options_prompt: PromptId,
        callback: T,
        self_service: T,
    },
    /// Records a callback request, confirms it and hangs up. With `voicemail_prompt`, on a channel
    /// that records (all three: SIP, TwiML, the JSON API), the caller first hears it, then a beep, and may leave a message (`#`
    /// ends it; hanging up keeps it): the request is recorded when the message is.
    Callback {
        prompt: PromptId,
        #[serde(default)]
        voicemail_prompt: Option<PromptId>,
    },
}

/// Menu kinds wait for keys and accept 0 (operator), `*` (back) and `#` (repeat).
pub(crate) const RESERVED_DIGITS: [(&str, &str); 3] =
    [("0", "0 always means operator"), ("*", "* always means back"), ("#", "# always means repeat")];

impl<T> NodeKind<T> {
    /// The kind's name as written in TOML.
    pub fn kind_name(&self) -> &'static str {
        match self {
            NodeKind::Message { .. } => "message",
            NodeKind::RecordingNotice { .. } => "recording_notice",
            NodeKind::Menu { .. } => "menu",
            NodeKind::LanguageGuess { .. } => "language_guess",
            NodeKind::LanguageMenu { .. } => "language_menu",
            NodeKind::HoursCheck { .. } => "hours_check",
            NodeKind::AreaMenu { .. } => "area_menu",
            NodeKind::CapEntry { .. } => "cap_entry",
            NodeKind::SelfService { .. } => "self_service",
            NodeKind::Queue { .. } => "queue",
            NodeKind::OutOfHours { .. } => "out_of_hours",
            NodeKind::Callback { .. } => "callback",
        }
    }

    /// Every edge to another node, with the field it comes from (`options 7` for menu options).
    pub fn edges(&self) -> Vec<(String, &T)> {
        let f = |s: &str| s.to_owned();
        let mut out: Vec<(String, &T)> = Vec::new();
        fn back<T>(b: &Option<T>) -> Option<(String, &T)> {
            b.as_ref().map(|b| ("back".to_owned(), b))
        }
        match self {
            NodeKind::Message { next, .. } | NodeKind::RecordingNotice { next, .. } => out.push((f("next"), next)),
            NodeKind::Menu { options, back: b, .. } => {
                out.extend(options.iter().map(|o| (format!("options {}", o.digit), &o.goto)));
                out.extend(back(b));
            }
            NodeKind::LanguageGuess { next, fallback, .. } => {
                out.push((f("next"), next));
                out.push((f("fallback"), fallback));
            }
            NodeKind::LanguageMenu { next, back: b, .. } => {
                out.push((f("next"), next));
                out.extend(back(b));
            }
            NodeKind::HoursCheck { open, closed } => {
                out.push((f("open"), open));
                out.push((f("closed"), closed));
            }
            NodeKind::AreaMenu { next, options, back: b, .. } => {
                out.push((f("next"), next));
                out.extend(options.iter().map(|o| (format!("options {}", o.digit), &o.goto)));
                out.extend(back(b));
            }
            NodeKind::CapEntry { next, skip, back: b, .. } => {
                out.push((f("next"), next));
                out.push((f("skip"), skip));
                out.extend(back(b));
            }
            NodeKind::SelfService { operator, back: b, .. } => {
                out.push((f("operator"), operator));
                out.extend(back(b));
            }
            NodeKind::Queue { closed, callback, .. } => {
                out.push((f("closed"), closed));
                out.push((f("callback"), callback));
            }
            NodeKind::OutOfHours { callback, self_service, .. } => {
                out.push((f("callback"), callback));
                out.push((f("self_service"), self_service));
            }
            NodeKind::Callback { .. } => {}
        }
        out
    }

    /// Edges followed without waiting for the caller: a cycle of these would never end.
    pub fn pass_through_edges(&self) -> Vec<&T> {
        match self {
            NodeKind::Message { next, .. } | NodeKind::RecordingNotice { next, .. } => vec![next],
            NodeKind::LanguageGuess { fallback, .. } => vec![fallback],
            NodeKind::HoursCheck { open, closed } => vec![open, closed],
            NodeKind::Queue { closed, .. } => vec![closed],
            _ => vec![],
        }
    }

    /// Every prompt id with its field name.
    pub fn prompts(&self) -> Vec<(&'static str, &PromptId)> {
        match self {
            NodeKind::LanguageMenu { prompt, more_prompt: Some(more), .. } => {
                vec![("prompt", prompt), ("more_prompt", more)]
            }
            NodeKind::Message { prompt, .. }
            | NodeKind::Menu { prompt, .. }
            | NodeKind::LanguageGuess { prompt, .. }
            | NodeKind::LanguageMenu { prompt, .. }
            | NodeKind::AreaMenu { prompt, .. }
            | NodeKind::Callback { prompt, voicemail_prompt: None } => vec![("prompt", prompt)],
            NodeKind::Callback { prompt, voicemail_prompt: Some(v) } => {
                vec![("prompt", prompt), ("voicemail_prompt", v)]
            }
            NodeKind::RecordingNotice { prompt, refused_prompt, .. } => {
                vec![("prompt", prompt), ("refused_prompt", refused_prompt)]
            }
            NodeKind::HoursCheck { .. } => vec![],
            NodeKind::CapEntry { prompt, landline_prompt, invalid_prompt, placed_prompt, .. } => vec![
                ("prompt", prompt),
                ("landline_prompt", landline_prompt),
                ("invalid_prompt", invalid_prompt),
                ("placed_prompt", placed_prompt),
            ],
            NodeKind::SelfService {
                intro_prompt,
                item_prompt,
                options_prompt,
                none_prompt,
                no_more_prompt,
                sms,
                ..
            } => {
                let mut prompts = vec![
                    ("intro_prompt", intro_prompt),
                    ("item_prompt", item_prompt),
                    ("options_prompt", options_prompt),
                    ("none_prompt", none_prompt),
                    ("no_more_prompt", no_more_prompt),
                ];
                if let Some(sms) = sms {
                    prompts.extend([
                        ("sms.offer_prompt", &sms.offer_prompt),
                        ("sms.sent_prompt", &sms.sent_prompt),
                        ("sms.failed_prompt", &sms.failed_prompt),
                        ("sms.portal_prompt", &sms.portal_prompt),
                    ]);
                }
                prompts
            }
            NodeKind::Queue {
                enter_prompt, position_prompt, callback_offer_prompt, transfer_failed_prompt, ..
            } => vec![
                ("enter_prompt", enter_prompt),
                ("position_prompt", position_prompt),
                ("callback_offer_prompt", callback_offer_prompt),
                ("transfer_failed_prompt", transfer_failed_prompt),
            ],
            NodeKind::OutOfHours { closed_prompt, next_opening_prompt, portal_prompt, options_prompt, .. } => vec![
                ("closed_prompt", closed_prompt),
                ("next_opening_prompt", next_opening_prompt),
                ("portal_prompt", portal_prompt),
                ("options_prompt", options_prompt),
            ],
        }
    }

    /// The same node with every target converted by `f` (name → index at load).
    pub fn try_map<U, E>(self, mut f: impl FnMut(&'static str, T) -> Result<U, E>) -> Result<NodeKind<U>, E> {
        let opts = |options: Vec<MenuOption<T>>, f: &mut dyn FnMut(&'static str, T) -> Result<U, E>| {
            options
                .into_iter()
                .map(|o| Ok(MenuOption { goto: f("options", o.goto)?, digit: o.digit }))
                .collect::<Result<Vec<_>, E>>()
        };
        Ok(match self {
            NodeKind::Message { prompt, next } => NodeKind::Message { prompt, next: f("next", next)? },
            NodeKind::RecordingNotice { prompt, refused_prompt, refuse_key, next } => {
                NodeKind::RecordingNotice { prompt, refused_prompt, refuse_key, next: f("next", next)? }
            }
            NodeKind::Menu { prompt, options, back } => NodeKind::Menu {
                prompt,
                options: opts(options, &mut f)?,
                back: back.map(|b| f("back", b)).transpose()?,
            },
            NodeKind::LanguageGuess { prompt, next, fallback, wait_ms } => {
                NodeKind::LanguageGuess { prompt, next: f("next", next)?, fallback: f("fallback", fallback)?, wait_ms }
            }
            NodeKind::LanguageMenu { prompt, next, more_prompt, back } => NodeKind::LanguageMenu {
                prompt,
                next: f("next", next)?,
                more_prompt,
                back: back.map(|b| f("back", b)).transpose()?,
            },
            NodeKind::HoursCheck { open, closed } => {
                NodeKind::HoursCheck { open: f("open", open)?, closed: f("closed", closed)? }
            }
            NodeKind::AreaMenu { prompt, next, options, back } => NodeKind::AreaMenu {
                prompt,
                next: f("next", next)?,
                options: opts(options, &mut f)?,
                back: back.map(|b| f("back", b)).transpose()?,
            },
            NodeKind::CapEntry { prompt, landline_prompt, invalid_prompt, placed_prompt, next, skip, back } => {
                NodeKind::CapEntry {
                    prompt,
                    landline_prompt,
                    invalid_prompt,
                    placed_prompt,
                    next: f("next", next)?,
                    skip: f("skip", skip)?,
                    back: back.map(|b| f("back", b)).transpose()?,
                }
            }
            NodeKind::SelfService {
                page_size,
                intro_prompt,
                item_prompt,
                options_prompt,
                none_prompt,
                no_more_prompt,
                operator,
                back,
                sms,
            } => NodeKind::SelfService {
                page_size,
                intro_prompt,
                item_prompt,
                options_prompt,
                none_prompt,
                no_more_prompt,
                operator: f("operator", operator)?,
                back: back.map(|b| f("back", b)).transpose()?,
                sms,
            },
            NodeKind::Queue {
                enter_prompt,
                position_prompt,
                callback_offer_prompt,
                transfer_failed_prompt,
                announce_interval_secs,
                callback_offer_after_secs,
                priority,
                retry_priority_step,
                closed,
                callback,
            } => NodeKind::Queue {
                enter_prompt,
                position_prompt,
                callback_offer_prompt,
                transfer_failed_prompt,
                announce_interval_secs,
                callback_offer_after_secs,
                priority,
                retry_priority_step,
                closed: f("closed", closed)?,
                callback: f("callback", callback)?,
            },
            NodeKind::OutOfHours {
                closed_prompt,
                next_opening_prompt,
                portal_prompt,
                options_prompt,
                callback,
                self_service,
            } => NodeKind::OutOfHours {
                closed_prompt,
                next_opening_prompt,
                portal_prompt,
                options_prompt,
                callback: f("callback", callback)?,
                self_service: f("self_service", self_service)?,
            },
            NodeKind::Callback { prompt, voicemail_prompt } => NodeKind::Callback { prompt, voicemail_prompt },
        })
    }
}
