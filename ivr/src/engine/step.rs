//! The transition function and its helpers.

use super::action::{Action, Lookup, Outcome, Pace, SayArg};
use super::event::{Channel, Event, ServiceSummary};
use super::log::LogEntry;
use super::state::{CallState, Place, QueueStatus, Wait};
use crate::domain::{CallId, Cap, DtmfDigit, DtmfDigits, Language, PromptId, ServiceArea};
use crate::flow::{Flow, NodeIx, NodeKind, SmsOffer};
use crate::geo::{CapLocation, Gazetteer};
use chrono::{DateTime, Datelike, Days, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome of one event: the new state and what to do, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub state: CallState,
    pub actions: Vec<Action>,
}

/// Decides what a call does next. Pure and total: any event in any state gives a state and at
/// least one action (a log line).
/// Failed transfers to an operator after which a queued caller is not queued again but goes to
/// the queue's callback node (a callback request is recorded).
pub const MAX_FAILED_TRANSFERS: u8 = 3;

pub fn step(flow: &Flow, state: &CallState, event: &Event, now: DateTime<Utc>) -> Step {
    let mut cx = Cx { flow, st: state.clone(), out: Vec::with_capacity(8), now };
    cx.handle(event);
    if cx.out.is_empty() {
        cx.ignored(event);
    }
    Step { state: cx.st, actions: cx.out }
}

/// Folds a recorded call through [`step`]: the state the call ended in.
pub fn replay<'a>(
    flow: &Flow,
    call_id: CallId,
    events: impl IntoIterator<Item = &'a (Event, DateTime<Utc>)>,
) -> CallState {
    events.into_iter().fold(CallState::initial(call_id), |st, (ev, now)| step(flow, &st, ev, *now).state)
}

struct Cx<'f> {
    flow: &'f Flow,
    st: CallState,
    out: Vec<Action>,
    now: DateTime<Utc>,
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::CallStarted { .. } => "call_started",
        Event::Digits(_) => "digits",
        Event::NoInput => "no_input",
        Event::PromptFinished => "prompt_finished",
        Event::LookupResults { .. } => "lookup_results",
        Event::QueueUpdate { .. } => "queue_update",
        Event::OperatorAssigned { .. } => "operator_assigned",
        Event::TransferFailed { .. } => "transfer_failed",
        Event::HandedOver { .. } => "handed_over",
        Event::Recorded { .. } => "recorded",
        Event::TextSent { .. } => "text_sent",
        Event::TextFailed { .. } => "text_failed",
        Event::HungUp => "hung_up",
    }
}

/// The `$digit` of a language offer.
fn digit_arg(digit: usize) -> BTreeMap<String, SayArg> {
    BTreeMap::from([("digit".to_owned(), SayArg::Number(digit as f64))])
}

/// `+39 031 123` → `+ 3 9 0 3 1 1 2 3`: phone numbers are read digit by digit.
fn spaced_digits(phone: &str) -> String {
    let mut out = String::with_capacity(phone.len() * 2);
    for c in phone.chars().filter(|c| c.is_ascii_digit() || *c == '+') {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

impl<'f> Cx<'f> {
    // ---- small emitters ----------------------------------------------------------------------

    fn log(&mut self, entry: LogEntry) {
        self.out.push(Action::Log(entry));
    }

    fn decision(&mut self, decision: &str, value: impl Into<String>) {
        let node = self.st.node.clone();
        self.log(LogEntry::Decision { node, decision: decision.to_owned(), value: value.into() });
    }

    fn ignored(&mut self, event: &Event) {
        let node = self.st.node.clone();
        self.log(LogEntry::Ignored { node, event: event_name(event).to_owned() });
    }

    fn lang(&self) -> Language {
        self.st.language.unwrap_or(self.flow.default_language())
    }

    fn pace(&self) -> Pace {
        if self.st.slow {
            Pace::Slow
        } else {
            Pace::Normal
        }
    }

    fn play_in(&mut self, prompt: &PromptId, language: Language) {
        let pace = self.pace();
        self.out.push(Action::Play { prompt: prompt.clone(), language, pace });
        self.log_prompt(prompt, language);
    }

    fn log_prompt(&mut self, prompt: &PromptId, language: Language) {
        let node = self.st.node.clone();
        self.log(LogEntry::Prompt { node, prompt: prompt.clone(), language });
    }

    fn play(&mut self, prompt: &PromptId) {
        self.play_in(prompt, self.lang());
    }

    fn say(&mut self, message: &PromptId, args: BTreeMap<String, SayArg>) {
        self.say_in(message, args, self.lang());
    }

    fn say_in(&mut self, message: &PromptId, args: BTreeMap<String, SayArg>, language: Language) {
        let pace = self.pace();
        self.out.push(Action::Say { message: message.clone(), language, args, pace });
        self.log_prompt(message, language);
    }

    fn collect(&mut self, max_digits: u8, first_timeout_ms: u32, finish_key: Option<DtmfDigit>) {
        let inter_digit_timeout_ms = self.flow.timeouts().inter_digit_ms;
        self.out.push(Action::Collect { max_digits, first_timeout_ms, inter_digit_timeout_ms, finish_key });
    }

    fn collect_key(&mut self) {
        self.collect(1, self.flow.timeouts().first_digit_ms, None);
        self.st.wait = Wait::Digits;
    }

    fn hang_up(&mut self, outcome: Outcome) {
        self.st.outcome = Some(outcome);
        self.out.push(Action::Hangup { outcome });
        self.log(LogEntry::CallEnded { outcome });
        self.st.wait = Wait::Ended;
    }

    fn goodbye(&mut self, outcome: Outcome) {
        let goodbye = self.flow.common_prompts().goodbye.clone();
        self.play(&goodbye);
        self.hang_up(outcome);
    }

    fn current(&self) -> Option<NodeIx> {
        self.flow.find(&self.st.node)
    }

    // ---- event dispatch ----------------------------------------------------------------------

    fn handle(&mut self, event: &Event) {
        if self.st.wait == Wait::Ended {
            return self.ignored(event);
        }
        match event {
            Event::HungUp => self.caller_hung_up(),
            Event::CallStarted { channel, caller, .. } if self.st.wait == Wait::CallStart => {
                self.st.channel = Some(*channel);
                self.st.started_at = Some(self.now);
                // The likeliest languages from the country code; the helpline's own when unknown.
                let guesses = caller.as_ref().map_or(&[][..], |c| self.flow.guess_languages(c.country_code()));
                self.st.guessed_language = Some(guesses.first().copied().unwrap_or(self.flow.default_language()));
                self.st.guessed_second = guesses.get(1).copied();
                if let Some(c) = caller {
                    self.st.landline_area = c.landline_area().map(str::to_owned);
                    self.st.text_reach = Some(c.text_reach());
                }
                self.log(LogEntry::CallStarted {
                    channel: *channel,
                    caller_hash: caller.as_ref().map(|c| c.hash().clone()),
                    country_code: caller.as_ref().map(|c| c.country_code().to_owned()),
                    guessed_language: self.st.guessed_language,
                });
                self.goto(self.flow.start());
            }
            _ if self.st.wait == Wait::CallStart => self.ignored(event),
            Event::CallStarted { .. } => self.ignored(event),
            Event::PromptFinished => {
                let node = self.st.node.clone();
                self.log(LogEntry::PromptFinished { node });
            }
            // While the caller leaves a message, keys are the adapter's (`#` ends it).
            // While the caller leaves a message, keys are the adapter's (`#` ends it); while a
            // text is sent, the adapter answers before anything else.
            Event::Digits(_) | Event::NoInput if matches!(self.st.wait, Wait::Recording | Wait::Text { .. }) => {
                self.ignored(event)
            }
            Event::Digits(d) => self.on_digits(d, event),
            Event::NoInput => self.on_no_input(event),
            Event::LookupResults { services, has_more } => match self.st.wait {
                Wait::Services { offset } => self.on_services(offset, services, *has_more),
                _ => self.ignored(event),
            },
            Event::QueueUpdate { position, estimated_wait_secs } => match self.st.wait {
                Wait::QueueState | Wait::Hold => self.on_queue_update(*position, *estimated_wait_secs),
                _ => self.ignored(event),
            },
            Event::OperatorAssigned { operator, target } => match self.st.wait {
                Wait::QueueState | Wait::Hold => {
                    self.decision("transfer", operator.clone());
                    self.out.push(Action::Transfer { operator: operator.clone(), target: target.clone() });
                    self.st.outcome = Some(Outcome::Answered);
                    self.st.wait = Wait::Transfer;
                }
                _ => self.ignored(event),
            },
            Event::TransferFailed { reason } => match self.st.wait {
                Wait::Transfer => self.transfer_failed(reason),
                _ => self.ignored(event),
            },
            // Only from a call an operator took: a caller still waiting is in a queue already.
            Event::HandedOver { language, area } => match self.st.wait {
                Wait::Transfer => self.handed_over(*language, *area),
                _ => self.ignored(event),
            },
            Event::Recorded { duration_ms } => match self.st.wait {
                Wait::Recording => {
                    self.decision("voicemail", duration_ms.to_string());
                    self.record_callback();
                    if let Some(NodeKind::Callback { prompt, .. }) =
                        self.current().and_then(|ix| self.flow.node(ix)).map(|n| &n.kind)
                    {
                        let prompt = prompt.clone();
                        self.play(&prompt);
                    }
                    self.goodbye(Outcome::Callback);
                }
                _ => self.ignored(event),
            },
            Event::TextSent { segments, encoding } => match self.st.wait {
                Wait::Text { offset, has_more } => {
                    self.log(LogEntry::TextSent { segments: *segments, encoding: *encoding });
                    self.text_answered(offset, has_more, true);
                }
                _ => self.ignored(event),
            },
            Event::TextFailed { reason } => match self.st.wait {
                Wait::Text { offset, has_more } => {
                    self.log(LogEntry::TextFailed { reason: reason.clone() });
                    self.text_answered(offset, has_more, false);
                }
                _ => self.ignored(event),
            },
        }
    }

    /// After a text was sent (or not): says so, then the readback's options again (without the
    /// offer once sent).
    fn text_answered(&mut self, offset: u32, has_more: bool, sent: bool) {
        let flow = self.flow;
        let Some(NodeKind::SelfService { options_prompt, sms: Some(sms), .. }) =
            self.current().and_then(|ix| flow.node(ix)).map(|n| &n.kind)
        else {
            return self.route_to_operator("unexpected_text");
        };
        self.st.wait = Wait::ServicesMenu { offset, has_more };
        if sent {
            self.play(&sms.sent_prompt);
            self.st.services_read.clear();
        } else {
            self.play(&sms.failed_prompt);
        }
        self.play(options_prompt);
        self.offer_text();
        self.collect(1, flow.timeouts().first_digit_ms, None);
    }

    /// The current readback's text-message offer, when it applies to this caller and there is
    /// something to send.
    fn text_offer(&self) -> Option<&'f SmsOffer> {
        let flow = self.flow;
        let Some(NodeKind::SelfService { sms: Some(sms), .. }) =
            self.current().and_then(|ix| flow.node(ix)).map(|n| &n.kind)
        else {
            return None;
        };
        let reached = self.st.channel.is_some_and(Channel::texts)
            && self.st.text_reach.as_ref().is_some_and(|r| r.reaches(&sms.countries));
        (reached && !self.st.services_read.is_empty()).then_some(sms)
    }

    /// The caller asked for the services just read by text message: the adapter sends them.
    fn send_text(&mut self, offset: u32, has_more: bool, item_prompt: &PromptId) {
        let Some(sms) = self.text_offer() else { return };
        self.decision("send_text", self.st.services_read.len().to_string());
        self.out.push(Action::SendText {
            services: self.st.services_read.clone(),
            language: self.lang(),
            item_prompt: item_prompt.clone(),
            portal_prompt: sms.portal_prompt.clone(),
        });
        self.st.wait = Wait::Text { offset, has_more };
    }

    /// "To receive these by text message, press 3", after the readback's options, when it applies.
    fn offer_text(&mut self) {
        if let Some(sms) = self.text_offer() {
            let digit = sms.key.parse().unwrap_or(3);
            self.say(&sms.offer_prompt, digit_arg(digit));
        }
    }

    fn record_callback(&mut self) {
        let language = self.lang();
        self.out.push(Action::RecordCallback { language, area: self.st.area });
    }

    fn caller_hung_up(&mut self) {
        // A caller who hangs up while leaving a message has left it: the request stands.
        if self.st.wait == Wait::Recording {
            self.decision("voicemail", "hung_up");
            self.record_callback();
            self.st.outcome = Some(Outcome::Callback);
        }
        let outcome = match self.st.outcome {
            None => Outcome::HungUpInMenu,
            Some(Outcome::Queued) => Outcome::HungUpInQueue,
            Some(o) => o,
        };
        self.st.outcome = Some(outcome);
        self.st.wait = Wait::Ended;
        self.log(LogEntry::CallEnded { outcome });
    }

    // ---- moving between nodes ----------------------------------------------------------------

    /// Enters `ix`, following nodes that do not wait for the caller. Validation forbids loops of
    /// such nodes; the hop limit is a second guard, never reached with a valid flow.
    fn goto(&mut self, mut ix: NodeIx) {
        let flow = self.flow;
        for _ in 0..=flow.nodes().len() {
            let Some(node) = flow.node(ix) else {
                self.decision("missing_node", ix.to_string());
                return self.goodbye(Outcome::HungUpInMenu);
            };
            if !self.st.node.is_empty() {
                let left = std::mem::take(&mut self.st.node);
                self.log(LogEntry::NodeLeft { node: left });
            }
            self.st.node = node.name.clone();
            self.st.tries = 0;
            self.st.no_inputs = 0;
            self.st.language_page = 0;
            self.log(LogEntry::NodeEntered { node: node.name.clone() });
            match self.enter(ix) {
                Some(next) => ix = next,
                None => return,
            }
        }
        self.decision("hop_limit", ix.to_string());
        self.goodbye(Outcome::HungUpInMenu);
    }

    /// To the operator queue (in Italian if no language was chosen yet).
    fn route_to_operator(&mut self, why: &str) {
        if self.st.language.is_none() {
            // A caller who presses 0 while the guessed language is being offered heard that
            // language: an operator who speaks it serves them best. Otherwise, Italian.
            let at_guess = self
                .current()
                .and_then(|ix| self.flow.node(ix))
                .is_some_and(|n| matches!(n.kind, NodeKind::LanguageGuess { .. }));
            let language = self.st.guessed_language.filter(|_| at_guess).unwrap_or(self.flow.default_language());
            self.st.language = Some(language);
            self.log(LogEntry::LanguageChosen { language });
        }
        self.decision("operator", why);
        self.goto(self.flow.operator());
    }

    /// Plays the node's prompts and starts waiting; `Some(next)` when the node goes on at once.
    fn enter(&mut self, ix: NodeIx) -> Option<NodeIx> {
        let flow = self.flow;
        let node = flow.node(ix)?;
        match &node.kind {
            NodeKind::Message { prompt, next } => {
                self.play(prompt);
                Some(*next)
            }
            NodeKind::RecordingNotice { prompt, next, .. } => {
                self.play(prompt);
                // `goto` names the next node at once: remember the notice, whose key the next
                // menu's first collect may carry.
                self.st.notice = Some(node.name.clone());
                self.st.notice_played = true;
                Some(*next)
            }
            NodeKind::HoursCheck { open, closed } => {
                let is_open = flow.schedule().is_open(self.now);
                self.decision("hours", if is_open { "open" } else { "closed" });
                Some(if is_open { *open } else { *closed })
            }
            // Offered again when the caller comes back to choose another language.
            NodeKind::LanguageGuess { prompt, fallback, wait_ms, .. } => match self.st.guessed_language {
                Some(first) => {
                    self.st.guess_offered = true;
                    for (digit, lang) in [(1, Some(first)), (2, self.st.guessed_second)] {
                        if let Some(lang) = lang {
                            self.say_in(prompt, digit_arg(digit), lang);
                        }
                    }
                    self.collect(1, wait_ms.unwrap_or(self.flow.timeouts().first_digit_ms), None);
                    self.st.wait = Wait::Digits;
                    None
                }
                None => Some(*fallback),
            },
            NodeKind::LanguageMenu { prompt, more_prompt, .. } => {
                let (page, next_page) = self.language_menu_page();
                for (i, lang) in page.iter().enumerate() {
                    self.say_in(prompt, digit_arg(i + 1), *lang);
                }
                if let Some(more) = more_prompt {
                    for lang in &next_page {
                        self.say_in(more, digit_arg(9), *lang);
                    }
                }
                self.collect_key();
                None
            }
            NodeKind::Menu { prompt, .. } | NodeKind::AreaMenu { prompt, .. } => {
                self.play(prompt);
                self.collect_key();
                None
            }
            NodeKind::CapEntry { prompt, landline_prompt, .. } => {
                match self.landline_offer() {
                    Some(province) => {
                        let args = BTreeMap::from([("province".to_owned(), SayArg::Text(province))]);
                        self.say(landline_prompt, args);
                    }
                    None => self.play(prompt),
                }
                let finish = DtmfDigit::new('#').ok();
                self.collect(5, self.flow.timeouts().first_digit_ms, finish);
                self.st.wait = Wait::Digits;
                None
            }
            NodeKind::SelfService { page_size, operator, .. } => {
                if self.lookup_services(0, *page_size) {
                    None
                } else {
                    self.decision("no_place_or_area", "operator");
                    Some(*operator)
                }
            }
            NodeKind::Queue { enter_prompt, priority, closed, .. } => {
                if !flow.schedule().is_open(self.now) {
                    self.decision("hours", "closed");
                    return Some(*closed);
                }
                let language = self.lang();
                self.st.language = Some(language);
                self.st.queue = Some(QueueStatus {
                    entered_at: self.now,
                    last_announced_at: None,
                    priority: *priority,
                    callback_offered: false,
                    failed_transfers: 0,
                });
                self.st.outcome = Some(Outcome::Queued);
                self.notice_before_queue();
                self.play(enter_prompt);
                self.out.push(Action::Enqueue { language, area: self.st.area, priority: *priority });
                self.out.push(Action::Lookup(Lookup::QueueState));
                self.st.wait = Wait::QueueState;
                None
            }
            NodeKind::OutOfHours { closed_prompt, next_opening_prompt, portal_prompt, options_prompt, .. } => {
                if self.st.outcome.is_none() {
                    self.st.outcome = Some(Outcome::OutOfHours);
                }
                self.play(closed_prompt);
                if let Some(args) = self.next_opening_args() {
                    self.say(next_opening_prompt, args);
                }
                self.play(portal_prompt);
                self.play(options_prompt);
                self.collect_key();
                None
            }
            NodeKind::Callback { prompt: _, voicemail_prompt: Some(voicemail) }
                if self.st.channel.is_some_and(|c| c.records()) =>
            {
                self.play(voicemail);
                self.out.push(Action::Record);
                self.st.wait = Wait::Recording;
                None
            }
            NodeKind::Callback { prompt, .. } => {
                self.record_callback();
                self.play(prompt);
                self.goodbye(Outcome::Callback);
                None
            }
        }
    }

    /// Plays the node's prompts again without resetting its tries (after `#`, silence or a bad key).
    fn reprompt(&mut self, ix: NodeIx) {
        self.decision("repeat", self.pace_name());
        let flow = self.flow;
        if let (Wait::ServicesMenu { .. }, Some(NodeKind::SelfService { options_prompt, .. })) =
            (self.st.wait, flow.node(ix).map(|n| &n.kind))
        {
            self.play(options_prompt);
            self.offer_text();
            self.collect(1, flow.timeouts().first_digit_ms, None);
            return;
        }
        if let Some(next) = self.enter(ix) {
            self.goto(next);
        }
    }

    fn pace_name(&self) -> &'static str {
        match self.pace() {
            Pace::Normal => "normal",
            Pace::Slow => "slow",
        }
    }

    fn back(&mut self, ix: NodeIx) {
        let target = self.flow.node(ix).and_then(|n| match &n.kind {
            NodeKind::Menu { back, .. }
            | NodeKind::LanguageMenu { back, .. }
            | NodeKind::AreaMenu { back, .. }
            | NodeKind::CapEntry { back, .. }
            | NodeKind::SelfService { back, .. } => *back,
            NodeKind::LanguageGuess { fallback, .. } => Some(*fallback),
            _ => None,
        });
        match target {
            Some(t) => {
                self.decision("back", self.flow.node(t).map(|n| n.name.clone()).unwrap_or_default());
                self.goto(t);
            }
            None => self.reprompt(ix),
        }
    }

    fn failed_try(&mut self, ix: NodeIx, invalid_prompt: Option<PromptId>) {
        let flow = self.flow;
        if self.st.tries >= flow.timeouts().max_tries {
            self.decision("too_many_tries", self.st.tries.to_string());
            if let Some(NodeKind::OutOfHours { .. }) = flow.node(ix).map(|n| &n.kind) {
                return self.goodbye(Outcome::OutOfHours);
            }
            return self.route_to_operator("too_many_tries");
        }
        if let Some(p) = invalid_prompt {
            self.play(&p);
        }
        self.reprompt(ix);
    }

    fn invalid(&mut self, ix: NodeIx, digits: &DtmfDigits, prompt: Option<PromptId>) {
        self.st.tries = self.st.tries.saturating_add(1);
        self.st.no_inputs = 0;
        let node = self.st.node.clone();
        self.log(LogEntry::Invalid { node, digits: digits.as_str().to_owned(), tries: self.st.tries });
        let prompt = prompt.unwrap_or_else(|| self.flow.common_prompts().invalid.clone());
        self.failed_try(ix, Some(prompt));
    }

    // ---- keys --------------------------------------------------------------------------------

    fn on_digits(&mut self, digits: &DtmfDigits, event: &Event) {
        let node = self.st.node.clone();
        self.log(LogEntry::Digits { node, digits: digits.as_str().to_owned() });
        let Some(ix) = self.current() else {
            return self.route_to_operator("unknown_node");
        };
        if self.refused_during_notice(ix, digits) {
            return;
        }
        match self.st.wait {
            Wait::Digits | Wait::ServicesMenu { .. } => {}
            Wait::Hold => return self.hold_digits(ix, digits),
            _ => return self.ignored(event),
        }
        let flow = self.flow;
        let Some(node) = flow.node(ix) else {
            return self.route_to_operator("unknown_node");
        };
        if let NodeKind::CapEntry { .. } = node.kind {
            return self.cap_digits(ix, digits);
        }
        let key = digits.first().as_char();
        // The guessed-language offer: 1 (or 2) accepts, 0 is the operator, anything else shows
        // the menu.
        if let NodeKind::LanguageGuess { next, fallback, .. } = node.kind {
            let guess = match key {
                '1' => self.st.guessed_language,
                '2' => self.st.guessed_second,
                _ => None,
            };
            return match (key, guess) {
                (_, Some(lang)) => {
                    self.st.language = Some(lang);
                    self.log(LogEntry::LanguageChosen { language: lang });
                    self.goto(next);
                }
                ('0', _) => self.route_to_operator("0"),
                _ => {
                    self.decision("guess_refused", key.to_string());
                    self.goto(fallback);
                }
            };
        }
        let out_of_hours = matches!(node.kind, NodeKind::OutOfHours { .. });
        match key {
            '0' if !out_of_hours => return self.route_to_operator("0"),
            '0' => return self.reprompt(ix),
            '*' => return self.back(ix),
            '#' => {
                if let Wait::ServicesMenu { offset, .. } = self.st.wait {
                    if let NodeKind::SelfService { page_size, .. } = node.kind {
                        self.lookup_services(offset, page_size);
                        return;
                    }
                }
                return self.reprompt(ix);
            }
            _ => {}
        }
        match &node.kind {
            NodeKind::LanguageMenu { next, .. } => {
                let (page, next_page) = self.language_menu_page();
                let chosen = key.to_digit(10).and_then(|d| (d as usize).checked_sub(1)).and_then(|i| page.get(i));
                match chosen {
                    Some(&lang) => {
                        self.st.language = Some(lang);
                        self.st.language_page = 0;
                        self.log(LogEntry::LanguageChosen { language: lang });
                        self.goto(*next);
                    }
                    None if key == '9' && !next_page.is_empty() => {
                        self.st.language_page = self.st.language_page.saturating_add(1);
                        self.decision("language_page", self.st.language_page.to_string());
                        self.reprompt(ix);
                    }
                    None => self.invalid(ix, digits, None),
                }
            }
            NodeKind::AreaMenu { next, options, .. } => {
                if let Some(area) = ServiceArea::from_menu_digit(key) {
                    self.st.area = Some(area);
                    self.log(LogEntry::AreaChosen { area });
                    self.goto(*next);
                } else if let Some(o) = options.iter().find(|o| o.digit.starts_with(key)) {
                    self.goto(o.goto);
                } else {
                    self.invalid(ix, digits, None);
                }
            }
            NodeKind::Menu { options, .. } => match options.iter().find(|o| o.digit.starts_with(key)) {
                Some(o) => self.goto(o.goto),
                None => self.invalid(ix, digits, None),
            },
            NodeKind::OutOfHours { callback, self_service, .. } => match key {
                '1' => self.goto(*callback),
                '2' => {
                    self.decision("self_service", "out_of_hours");
                    self.goto(*self_service);
                }
                _ => self.invalid(ix, digits, None),
            },
            NodeKind::SelfService { page_size, no_more_prompt, options_prompt, operator, item_prompt, .. } => {
                let Wait::ServicesMenu { offset, has_more } = self.st.wait else {
                    return self.ignored(event);
                };
                match key {
                    '1' => {
                        self.lookup_services(offset, *page_size);
                    }
                    '2' => {
                        self.decision("operator", "self_service");
                        self.goto(*operator);
                    }
                    '9' if has_more => {
                        self.lookup_services(offset.saturating_add(*page_size), *page_size);
                    }
                    '9' => {
                        self.decision("no_more_services", offset.to_string());
                        self.play(no_more_prompt);
                        self.play(options_prompt);
                        self.offer_text();
                        self.collect(1, flow.timeouts().first_digit_ms, None);
                    }
                    k if self.text_offer().is_some_and(|sms| sms.key.starts_with(k)) => {
                        self.send_text(offset, has_more, item_prompt);
                    }
                    _ => self.invalid(ix, digits, None),
                }
            }
            _ => self.ignored(event),
        }
    }

    /// The first key after the recording notice: its refusal key refuses the recording (the
    /// refusal confirmed, the menu said again). True when it was that.
    fn refused_during_notice(&mut self, ix: NodeIx, digits: &DtmfDigits) -> bool {
        let Some(notice) = self.st.notice.take() else { return false };
        let flow = self.flow;
        let Some(NodeKind::RecordingNotice { refuse_key, refused_prompt, .. }) =
            flow.find(&notice).and_then(|n| flow.node(n)).map(|n| &n.kind)
        else {
            return false;
        };
        if !matches!(self.st.wait, Wait::Digits | Wait::Hold) || !digits.as_str().starts_with(refuse_key.as_str()) {
            return false;
        }
        self.st.recording_refused = true;
        self.log(LogEntry::RecordingRefused { node: notice, key: refuse_key.clone() });
        self.play(refused_prompt);
        match (self.st.wait, flow.node(ix).map(|n| &n.kind)) {
            (Wait::Hold, Some(NodeKind::Queue { announce_interval_secs, .. })) => self.hold(*announce_interval_secs),
            _ => self.reprompt(ix),
        }
        true
    }

    /// A caller who reaches the queue without having heard the recording notice (0 before it)
    /// hears it first; its key works during the hold.
    fn notice_before_queue(&mut self) {
        if self.st.notice_played {
            return;
        }
        let flow = self.flow;
        let notice = flow.nodes().iter().find_map(|n| match &n.kind {
            NodeKind::RecordingNotice { prompt, .. } => Some((n.name.clone(), prompt)),
            _ => None,
        });
        if let Some((name, prompt)) = notice {
            self.play(prompt);
            self.st.notice = Some(name);
            self.st.notice_played = true;
        }
    }

    /// The languages of the language menu's current page (keys 1, 2, 3…) and of the next one
    /// (reached with 9). The menu lists the configured languages but those already offered from
    /// the country code, nine to a page, or eight and 9 for more.
    fn language_menu_page(&self) -> (Vec<Language>, Vec<Language>) {
        let offered = [self.st.guessed_language, self.st.guessed_second];
        let rest: Vec<Language> = self
            .flow
            .languages()
            .iter()
            .copied()
            .filter(|l| !(self.st.guess_offered && offered.contains(&Some(*l))))
            .collect();
        let has_more_prompt = self
            .current()
            .and_then(|ix| self.flow.node(ix))
            .is_some_and(|n| matches!(n.kind, NodeKind::LanguageMenu { more_prompt: Some(_), .. }));
        let mut start = 0;
        for _ in 0..self.st.language_page {
            if rest.len() - start <= 9 || !has_more_prompt {
                break;
            }
            start += 8;
        }
        let remaining = &rest[start..];
        if remaining.len() <= 9 || !has_more_prompt {
            (remaining.iter().take(9).copied().collect(), Vec::new())
        } else {
            let next = &remaining[8..];
            (remaining[..8].to_vec(), next[..next.len().min(if next.len() <= 9 { 9 } else { 8 })].to_vec())
        }
    }

    /// The province of the caller's landline, when it may be offered instead of asking a CAP.
    fn landline_offer(&self) -> Option<String> {
        if self.st.landline_declined {
            return None;
        }
        let area = self.st.landline_area.as_deref()?;
        Gazetteer::embedded().landline_province(area).map(|g| g.province.nome.clone())
    }

    fn cap_digits(&mut self, ix: NodeIx, digits: &DtmfDigits) {
        let flow = self.flow;
        let Some(NodeKind::CapEntry { invalid_prompt, placed_prompt, next, skip, .. }) = flow.node(ix).map(|n| &n.kind)
        else {
            return;
        };
        let raw = digits.as_str();
        let entry = if raw.len() > 1 { raw.strip_suffix('#').unwrap_or(raw) } else { raw };
        match entry {
            "#" => {
                self.decision("cap_skipped", "#");
                return self.goto(*skip);
            }
            "*" => return self.back(ix),
            "0" => return self.route_to_operator("0"),
            _ => {}
        }
        let landline = self.landline_offer();
        let place = match (entry, landline) {
            ("1", Some(_)) => {
                let guess = self.st.landline_area.as_deref().and_then(|a| Gazetteer::embedded().landline_province(a));
                guess.map(|g| Place { label: g.province.nome.clone(), point: g.centroid, cap: None })
            }
            ("2", Some(_)) => {
                self.st.landline_declined = true;
                self.decision("landline_declined", "2");
                return self.reprompt(ix);
            }
            _ => match Cap::parse(entry) {
                Ok(cap) => match Gazetteer::embedded().locate_cap(&cap) {
                    CapLocation::Exact { comuni } => {
                        comuni.first().map(|c| Place { label: c.name.clone(), point: c.point, cap: Some(cap) })
                    }
                    CapLocation::PrefixArea { label, centroid, .. } => {
                        Some(Place { label: label.to_owned(), point: centroid, cap: Some(cap) })
                    }
                    CapLocation::Unknown => None,
                },
                Err(_) => None,
            },
        };
        match place {
            Some(place) => {
                self.decision("place", place.label.clone());
                let args = BTreeMap::from([("place".to_owned(), SayArg::Text(place.label.clone()))]);
                self.st.place = Some(place);
                self.say(placed_prompt, args);
                self.goto(*next);
            }
            None => self.invalid(ix, digits, Some(invalid_prompt.clone())),
        }
    }

    // ---- silence -----------------------------------------------------------------------------

    fn on_no_input(&mut self, event: &Event) {
        self.st.notice = None;
        match self.st.wait {
            Wait::Hold | Wait::QueueState => {
                self.decision("queue_poll", if self.st.wait == Wait::Hold { "hold_timeout" } else { "no_answer" });
                self.out.push(Action::Lookup(Lookup::QueueState));
                self.st.wait = Wait::QueueState;
                return;
            }
            Wait::Services { .. } => {
                self.decision("lookup_timeout", "operator");
                let op = self.current().and_then(|ix| match self.flow.node(ix).map(|n| &n.kind) {
                    Some(NodeKind::SelfService { operator, .. }) => Some(*operator),
                    _ => None,
                });
                return match op {
                    Some(op) => self.goto(op),
                    None => self.route_to_operator("lookup_timeout"),
                };
            }
            Wait::Digits | Wait::ServicesMenu { .. } => {}
            _ => return self.ignored(event),
        }
        let Some(ix) = self.current() else {
            return self.route_to_operator("unknown_node");
        };
        if let Some(NodeKind::LanguageGuess { fallback, .. }) = self.flow.node(ix).map(|n| &n.kind) {
            self.decision("guess_unanswered", "menu");
            return self.goto(*fallback);
        }
        self.st.tries = self.st.tries.saturating_add(1);
        self.st.no_inputs = self.st.no_inputs.saturating_add(1);
        if self.st.no_inputs >= 2 {
            self.st.slow = true;
        }
        let node = self.st.node.clone();
        self.log(LogEntry::NoInput { node, tries: self.st.tries });
        self.failed_try(ix, None);
    }

    // ---- self-service ------------------------------------------------------------------------

    fn lookup_services(&mut self, offset: u32, limit: u32) -> bool {
        match (self.st.area, &self.st.place) {
            (Some(area), Some(place)) => {
                self.out.push(Action::Lookup(Lookup::NearestServices {
                    area,
                    near: place.point,
                    place_label: place.label.clone(),
                    offset,
                    limit,
                }));
                self.st.wait = Wait::Services { offset };
                true
            }
            _ => false,
        }
    }

    fn on_services(&mut self, offset: u32, services: &[ServiceSummary], has_more: bool) {
        let flow = self.flow;
        let Some(ix) = self.current() else {
            return self.route_to_operator("unknown_node");
        };
        let Some(NodeKind::SelfService {
            page_size,
            intro_prompt,
            item_prompt,
            options_prompt,
            none_prompt,
            no_more_prompt,
            operator,
            ..
        }) = flow.node(ix).map(|n| &n.kind)
        else {
            return self.route_to_operator("unexpected_services");
        };
        let node = self.st.node.clone();
        let shown = services.len().min(*page_size as usize);
        self.log(LogEntry::ServicesRead { node, offset, count: shown as u32, has_more });
        if services.is_empty() {
            if offset == 0 {
                self.play(none_prompt);
                self.decision("no_services", "operator");
                return self.goto(*operator);
            }
            self.play(no_more_prompt);
            self.st.wait = Wait::ServicesMenu { offset: offset.saturating_sub(*page_size), has_more: false };
        } else {
            self.play(intro_prompt);
            for (i, s) in services.iter().take(shown).enumerate() {
                let args = BTreeMap::from([
                    ("index".to_owned(), SayArg::Number((i + 1) as f64)),
                    ("name".to_owned(), SayArg::Text(s.name.clone())),
                    (
                        "address".to_owned(),
                        SayArg::Text(
                            s.address.clone().filter(|a| !a.trim().is_empty()).unwrap_or_else(|| "none".to_owned()),
                        ),
                    ),
                    ("town".to_owned(), SayArg::Text(s.town.clone())),
                    ("phone".to_owned(), SayArg::Text(spaced_digits(&s.phone))),
                    ("hours".to_owned(), SayArg::Text(s.hours_today.clone().unwrap_or_else(|| "none".to_owned()))),
                    ("distance".to_owned(), SayArg::Number((s.distance_km * 10.0).round() / 10.0)),
                ]);
                self.say(item_prompt, args);
            }
            self.st.outcome = Some(Outcome::SelfService);
            self.st.wait = Wait::ServicesMenu { offset, has_more };
            self.st.services_read = services.iter().take(shown).map(|s| s.id.clone()).collect();
        }
        self.play(options_prompt);
        self.offer_text();
        self.collect(1, flow.timeouts().first_digit_ms, None);
    }

    // ---- queue -------------------------------------------------------------------------------

    fn queue_status(&self) -> QueueStatus {
        self.st.queue.unwrap_or(QueueStatus {
            entered_at: self.now,
            last_announced_at: None,
            priority: 0,
            callback_offered: false,
            failed_transfers: 0,
        })
    }

    fn on_queue_update(&mut self, position: u32, estimated_wait_secs: u32) {
        let flow = self.flow;
        let Some(ix) = self.current() else {
            return self.route_to_operator("unknown_node");
        };
        let Some(NodeKind::Queue {
            position_prompt,
            callback_offer_prompt,
            announce_interval_secs,
            callback_offer_after_secs,
            ..
        }) = flow.node(ix).map(|n| &n.kind)
        else {
            return self.route_to_operator("unexpected_queue_update");
        };
        let mut q = self.queue_status();
        let interval = i64::from(*announce_interval_secs);
        let due = q.last_announced_at.is_none_or(|t| (self.now - t).num_seconds() >= interval);
        self.log(LogEntry::QueueUpdate { position, estimated_wait_secs, announced: due });
        if due {
            let minutes = estimated_wait_secs.div_ceil(60);
            let args = BTreeMap::from([
                ("position".to_owned(), SayArg::Number(f64::from(position))),
                ("minutes".to_owned(), SayArg::Number(f64::from(minutes))),
            ]);
            self.say(position_prompt, args);
            q.last_announced_at = Some(self.now);
        }
        let waited = (self.now - q.entered_at).num_seconds().max(0);
        let threshold = i64::from(*callback_offer_after_secs);
        if waited >= threshold || i64::from(estimated_wait_secs) >= threshold {
            if due || !q.callback_offered {
                self.play(callback_offer_prompt);
            }
            q.callback_offered = true;
        }
        self.st.queue = Some(q);
        self.hold(*announce_interval_secs);
    }

    /// Hold audio plays while a timed collect runs; its `NoInput` asks the queue again.
    fn hold(&mut self, interval_secs: u32) {
        self.collect(1, interval_secs.saturating_mul(1000), None);
        self.st.wait = Wait::Hold;
    }

    fn hold_digits(&mut self, ix: NodeIx, digits: &DtmfDigits) {
        let flow = self.flow;
        let Some(NodeKind::Queue { callback, announce_interval_secs, .. }) = flow.node(ix).map(|n| &n.kind) else {
            return self.route_to_operator("unknown_node");
        };
        let q = self.queue_status();
        match digits.first().as_char() {
            '1' if q.callback_offered => {
                self.decision("callback", "accepted");
                self.st.queue = None;
                self.goto(*callback);
            }
            '#' => {
                self.decision("repeat", "queue_position");
                self.st.queue = Some(QueueStatus { last_announced_at: None, ..q });
                self.out.push(Action::Lookup(Lookup::QueueState));
                self.st.wait = Wait::QueueState;
            }
            _ => {
                // 0 (already waiting for an operator), * (leaving the queue is hanging up) and other
                // keys keep the caller in the queue.
                self.decision("stay_in_queue", digits.as_str());
                self.hold(*announce_interval_secs);
            }
        }
    }

    fn transfer_failed(&mut self, reason: &str) {
        let flow = self.flow;
        self.log(LogEntry::TransferFailed { reason: reason.to_owned() });
        let Some(ix) = self.current() else {
            return self.route_to_operator("unknown_node");
        };
        let Some(NodeKind::Queue { transfer_failed_prompt, retry_priority_step, callback, .. }) =
            flow.node(ix).map(|n| &n.kind)
        else {
            return self.route_to_operator("transfer_failed");
        };
        let q = self.queue_status();
        let failed_transfers = q.failed_transfers.saturating_add(1);
        if failed_transfers >= MAX_FAILED_TRANSFERS {
            // No endless round of offers: after the last try the caller gets a callback instead.
            self.play(transfer_failed_prompt);
            self.decision("callback", "transfers_failed");
            self.st.queue = None;
            return self.goto(*callback);
        }
        let priority = q.priority.saturating_add(*retry_priority_step);
        self.st.queue = Some(QueueStatus { priority, last_announced_at: None, failed_transfers, ..q });
        self.st.outcome = Some(Outcome::Queued);
        self.play(transfer_failed_prompt);
        let language = self.lang();
        self.out.push(Action::Enqueue { language, area: self.st.area, priority });
        self.out.push(Action::Lookup(Lookup::QueueState));
        self.st.wait = Wait::QueueState;
    }

    /// The operator handed the caller over to the queue of `language`/`area`: the queue's entry
    /// prompt in the new language, then the hold audio, in the place the caller first took
    /// (`entered_at` and priority kept; the queue's row keeps its entry time too).
    fn handed_over(&mut self, language: Language, area: Option<ServiceArea>) {
        let flow = self.flow;
        let kept = self.queue_status();
        let target = match area {
            Some(a) => format!("{}/{}", language.as_str(), a.as_str()),
            None => language.as_str().to_owned(),
        };
        self.decision("hand_over", target);
        if self.st.language != Some(language) {
            self.log(LogEntry::LanguageChosen { language });
        }
        self.st.language = Some(language);
        if let Some(area) = area.filter(|a| self.st.area != Some(*a)) {
            self.log(LogEntry::AreaChosen { area });
        }
        self.st.area = area;
        let in_queue =
            self.current().filter(|ix| matches!(flow.node(*ix).map(|n| &n.kind), Some(NodeKind::Queue { .. })));
        let Some(NodeKind::Queue { enter_prompt, .. }) = in_queue.and_then(|ix| flow.node(ix)).map(|n| &n.kind) else {
            // Not in a queue node (a state stored by another flow): the operator queue's node,
            // then the caller's old place back.
            self.goto(flow.operator());
            if let Some(q) = self.st.queue.as_mut() {
                q.entered_at = kept.entered_at;
            }
            return;
        };
        self.st.queue = Some(QueueStatus { last_announced_at: None, failed_transfers: 0, ..kept });
        self.st.outcome = Some(Outcome::Queued);
        self.play(enter_prompt);
        self.out.push(Action::Enqueue { language, area, priority: kept.priority });
        self.out.push(Action::Lookup(Lookup::QueueState));
        self.st.wait = Wait::QueueState;
    }

    // ---- hours -------------------------------------------------------------------------------

    /// `weekday` (1 = Monday … 7 = Sunday), `time` (`09:00`) and `day` (`today`, `tomorrow` or
    /// `later`) of the next opening, in the helpline's time zone.
    fn next_opening_args(&self) -> Option<BTreeMap<String, SayArg>> {
        let schedule = self.flow.schedule();
        let at = schedule.next_opening(self.now)?;
        let today = self.now.with_timezone(&schedule.timezone()).date_naive();
        let day = if at.date_naive() == today {
            "today"
        } else if today.checked_add_days(Days::new(1)) == Some(at.date_naive()) {
            "tomorrow"
        } else {
            "later"
        };
        // The time as numbers, so each language says it its own way (`alle 9 e 30`, `9点半`,
        // `at 2 30 p.m.`); `time` (`09:30`) stays for texts written before.
        let (hour, minute) = (at.hour(), at.minute());
        let hour12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        Some(BTreeMap::from([
            ("weekday".to_owned(), SayArg::Number(f64::from(at.weekday().number_from_monday()))),
            ("time".to_owned(), SayArg::Text(at.format("%H:%M").to_string())),
            ("hour".to_owned(), SayArg::Number(f64::from(hour))),
            ("minute".to_owned(), SayArg::Number(f64::from(minute))),
            ("hour12".to_owned(), SayArg::Number(f64::from(hour12))),
            ("half_day".to_owned(), SayArg::Text(if hour < 12 { "am" } else { "pm" }.to_owned())),
            ("day".to_owned(), SayArg::Text(day.to_owned())),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_spaced_digit_by_digit() {
        assert_eq!(spaced_digits("+39 031 123"), "+ 3 9 0 3 1 1 2 3");
        assert_eq!(spaced_digits("02/4567"), "0 2 4 5 6 7");
        assert_eq!(spaced_digits(""), "");
    }
}
