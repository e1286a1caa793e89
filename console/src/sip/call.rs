//! One SIP call's control task: every event of the call goes through `CallRuntime::handle` here,
//! one at a time and in order, and the outward actions are carried out: audio to the media task,
//! digit collection (barge-in included), hold audio in the queue, hang-up and transfer (asked of
//! the signalling task, which owns the dialog).
//!
//! A call transferred to an operator who answers in the browser (a target made by
//! `media::browser_target`) is not REFERred: its RTP is bridged to the operator's WebRTC leg (the
//! page's offer reaches this task through [`crate::media::Phone`]) once that leg is connected.
//! A leg that does not connect in time, fails, or closes and is not replaced in time puts the
//! caller back in the queue (`TransferFailed`: the apology, and the call's old place). An
//! operator who hands the caller over to another queue (`PhoneMsg::Requeue`) has the step
//! recorded here, then the caller unbridged back to the hold audio, in their old place.

use super::audio::PromptAudio;
use super::collect::{Collected, Collector};
use super::media::{Media, MediaCmd, MediaEvent};
use crate::calls::nodes::NodeId;
use crate::calls::sealed::SealedNumber;
use crate::calls::{CallRequest, CallRuntime, EndReason, Origin, TextOrder, TextSender};
use crate::clock::Clock;
use crate::media::{is_browser_target, LegEvent, LegHandle, MediaState, Phone, PhoneMsg, PhoneStatus};
use ivr::domain::{CallId, Caller, DtmfDigit, DtmfDigits, Language, PromptId};
use ivr::engine::{Action, Channel, Event, Pace};
use ivr::sip::ReferProgress;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long a transfer may take before it counts as failed (no final NOTIFY).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(32);
/// How long the operator's browser has, from the transfer, to connect its phone (the page's
/// offer, then ICE and DTLS, which the leg itself bounds at 10 s from its answer).
pub const BROWSER_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a browser whose connection closed has to come back (a reloaded page's new offer).
pub const BROWSER_RETURN_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a step the database refused before the caller hears the technical-problem prompt
/// (each may wait out SQLite's 5 s busy time), and the wait before the first retry (then × 4).
const STEP_TRIES: u32 = 2;
const STEP_BACKOFF: Duration = Duration::from_millis(250);
/// How long the end of a call is tried again while the database is away, and each try at most.
const HANG_UP_PERSISTENCE: Duration = Duration::from_secs(60);
const HANG_UP_TRY: Duration = Duration::from_secs(10);

/// What the signalling task tells a call.
#[derive(Debug)]
pub enum CallMsg {
    /// The caller acknowledged our 200 OK: audio may flow.
    Ack,
    /// The caller hung up (BYE), cancelled before the answer, or never acknowledged the answer.
    Gone,
    /// A key from SIP INFO.
    Digit(DtmfDigit),
    /// The REFER got a final response: accepted (2xx) or refused.
    ReferAnswered { accepted: bool, reason: String },
    /// A NOTIFY about the transferred call.
    ReferProgress(ReferProgress),
    /// An event from outside the call (an operator was assigned).
    Event(Event),
    /// The node is stopping: goodbye, then hang up.
    Drain,
}

/// What a call asks of the signalling task (keyed by the SIP Call-ID).
#[derive(Debug)]
pub enum SigCmd {
    /// The call is recorded: send the 200 OK.
    Answer { sip_call_id: String },
    /// The call could not be recorded: refuse the INVITE.
    Reject { sip_call_id: String, status: u16 },
    /// Hang up: BYE (or nothing if the dialog is gone).
    Hangup { sip_call_id: String },
    /// Blind transfer: REFER with Refer-To `target`.
    Refer { sip_call_id: String, target: String },
    /// An event for the call with this engine id, if it is ours.
    Deliver { call_id: String, event: Event },
    /// The server ended this call in the call log (the quiet sweep, on any node): BYE, if ours.
    EndedByServer { call_id: String },
}

/// Everything a call's control task starts from.
pub struct CallSetup {
    pub sip_call_id: String,
    pub call_id: CallId,
    pub caller: Option<Caller>,
    /// The caller's number sealed for this call: stored only with a callback request.
    pub sealed_number: Option<SealedNumber>,
    pub called: Option<String>,
    pub runtime: CallRuntime,
    /// The server's clock: the instant of every event (tests run the call at a chosen time).
    pub clock: Arc<dyn Clock>,
    pub audio: Arc<PromptAudio>,
    pub media: Media,
    pub media_events: mpsc::UnboundedReceiver<MediaEvent>,
    pub signalling: mpsc::UnboundedSender<SigCmd>,
    /// Where the operator's browser phone reaches the call.
    pub phone: Phone,
    /// Where the call's row is marked as held by `node` once recorded.
    pub db: crate::db::Db,
    pub node: NodeId,
    /// The longest voice message (`voicemail_max_secs`).
    pub voicemail_max: Duration,
    /// Sends the services read back by text message.
    pub texts: Arc<dyn TextSender>,
}

/// A voice message on its way: the prompt and beep still playing, then recording until `#`, a
/// hang-up or the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Voicemail {
    Beep,
    Recording { until: Instant },
}

/// What to do once the queued audio has played.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Terminal {
    Hangup,
    Transfer(String),
    /// The operator ended a browser call: hang up (after the goodbye) and record the end.
    OperatorHangup,
}

/// A transfer to an operator's browser in progress (or done: bridged).
#[derive(Debug, Default)]
struct Browser {
    /// The caller's RTP is bridged to the leg.
    bridged: bool,
    /// Audio has flowed at least once.
    connected_once: bool,
    /// The caller hears the hold audio.
    held: bool,
    /// Back to the queue unless the leg is connected by then.
    deadline: Option<Instant>,
    /// Why, when the page already said it cannot be the phone.
    failure: Option<String>,
    /// When the transfer began (for the time to audio).
    started: Option<Instant>,
}

struct Call {
    sip_call_id: String,
    call_id: CallId,
    runtime: CallRuntime,
    clock: Arc<dyn Clock>,
    audio: Arc<PromptAudio>,
    media: Media,
    signalling: mpsc::UnboundedSender<SigCmd>,
    collector: Option<Collector>,
    queued: u64,
    played: u64,
    terminal: Option<Terminal>,
    transfer_deadline: Option<Instant>,
    finished: bool,
    phone: Phone,
    /// The operator's page's leg (it may come before the transfer does).
    leg: Option<LegHandle>,
    leg_connected: bool,
    browser: Option<Browser>,
    /// The page said it cannot be a phone before the transfer came.
    page_failure: Option<String>,
    /// The language of the last prompt (the goodbye is said in it).
    language: Option<Language>,
    /// The server ends the call (drain): the hang-up is recorded when the BYE goes.
    server_ends: bool,
    /// The caller acknowledged our answer (audio flows).
    acked: bool,
    /// The last digit collection asked for, re-armed after a technical problem.
    last_collect: Option<(u8, u32, u32, Option<DtmfDigit>)>,
    /// Steps sent to the runtime, for their idempotency keys.
    steps: u64,
    sealed_number: Option<SealedNumber>,
    voicemail: Option<Voicemail>,
    voicemail_max: Duration,
    /// Why the server ends the call, for the call log (`None`: the caller hung up).
    end_reason: Option<EndReason>,
    texts: Arc<dyn TextSender>,
    /// The outcome of the text being sent (`TextSent`/`TextFailed`), fed back into the call.
    text_done: mpsc::UnboundedSender<Event>,
}

/// Starts the control task; the returned sender feeds it.
pub fn spawn(setup: CallSetup) -> mpsc::UnboundedSender<CallMsg> {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("sip_call", call_id = %setup.call_id.as_str());
    tokio::spawn(run(setup, rx).instrument(span));
    tx
}

async fn run(setup: CallSetup, mut rx: mpsc::UnboundedReceiver<CallMsg>) {
    let CallSetup {
        sip_call_id,
        call_id,
        caller,
        sealed_number,
        called,
        runtime,
        clock,
        audio,
        media,
        mut media_events,
        signalling,
        phone,
        voicemail_max,
        db,
        node,
        texts,
    } = setup;
    let (text_done, mut text_results) = mpsc::unbounded_channel();
    let mut phone_rx = phone.register(call_id.as_str(), media.codec());
    let mut call = Call {
        sip_call_id,
        call_id,
        runtime,
        clock,
        audio,
        media,
        signalling,
        collector: None,
        queued: 0,
        played: 0,
        terminal: None,
        transfer_deadline: None,
        finished: false,
        phone,
        leg: None,
        leg_connected: false,
        browser: None,
        page_failure: None,
        language: None,
        server_ends: false,
        acked: false,
        last_collect: None,
        steps: 0,
        sealed_number,
        voicemail: None,
        voicemail_max,
        end_reason: None,
        texts,
        text_done,
    };
    let started = Event::CallStarted { channel: Channel::Sip, caller, called };
    match call.runtime.handle(call.request(started)).await {
        Ok(handled) => {
            let _ = call.signalling.send(SigCmd::Answer { sip_call_id: call.sip_call_id.clone() });
            tracing::info!("call answered");
            call.apply(handled.answer.actions).await;
            // Held by this node: marked once its answer and first audio are on their way (a
            // death in between is a matter of milliseconds), so that if the node dies the others
            // end the call instead of offering it. Without the mark (the database failed just
            // now) the call still goes on; only the quiet sweep would end it after a death. Only
            // where nodes share the database (PostgreSQL): a SQLite file has one node.
            if db.backend() == crate::db::Backend::Postgres {
                if let Err(e) = crate::calls::nodes::hold(&db, call.call_id.as_str(), &node).await {
                    tracing::warn!(error = %e, "cannot record which node holds the call");
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the call: refusing it");
            let _ = call.signalling.send(SigCmd::Reject { sip_call_id: call.sip_call_id.clone(), status: 503 });
            call.phone.unregister(call.call_id.as_str());
            return;
        }
    }
    while !call.finished {
        let collect_deadline = call.collector.as_ref().and_then(Collector::deadline);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => call.on_msg(msg).await,
                // The server is stopping.
                None => {
                    call.end_reason = Some(EndReason::ServerStopped);
                    call.line_closed().await
                }
            },
            Some(ev) = media_events.recv() => match ev {
                MediaEvent::Digit(d) => call.on_digit(d).await,
                MediaEvent::Idle { played } => {
                    call.played = call.played.max(played);
                    call.on_audio_progress().await;
                }
                MediaEvent::NoRtp => call.caller_silent().await,
            },
            _ = sleep_until_opt(collect_deadline) => {
                let done = call.collector.as_mut().and_then(|c| c.on_timeout(Instant::now()));
                if let Some(done) = done {
                    call.collector = None;
                    call.collected(done).await;
                }
            }
            _ = sleep_until_opt(call.voicemail_deadline()) => call.finish_voicemail().await,
            _ = sleep_until_opt(call.transfer_deadline) => {
                call.transfer_deadline = None;
                call.transfer_failed("no answer from the transfer".into()).await;
            }
            Some(msg) = phone_rx.recv() => call.on_phone(msg).await,
            Some(event) = text_results.recv() => call.handle(event).await,
            event = next_leg_event(&mut call.leg) => call.on_leg_event(event).await,
            _ = sleep_until_opt(call.browser.as_ref().and_then(|b| b.deadline)) => {
                let why = match call.browser.as_mut().and_then(|b| b.failure.take()) {
                    Some(reason) => reason,
                    None if call.leg.is_none() => "the page sent no offer in time".into(),
                    None => "not connected in time".into(),
                };
                call.browser_failed(why).await;
            }
        }
    }
    call.phone.unregister(call.call_id.as_str());
    tracing::debug!("call task done");
}

/// The metric's reason for a browser phone's failure.
pub fn failure_code(reason: &str) -> &'static str {
    if reason.starts_with("microphone") {
        "microphone"
    } else if reason.contains("ICE or DTLS") || reason.contains("ConnectTimeout") {
        "ice_dtls"
    } else if reason.contains("lost") || reason.contains("ConnectionLost") {
        "connection_lost"
    } else if reason.contains("no offer") {
        "no_offer"
    } else if reason.contains("refused") || reason.contains("Protocol") {
        "protocol"
    } else {
        "not_connected"
    }
}

/// The next event of the leg, if there is one (never, otherwise).
async fn next_leg_event(leg: &mut Option<LegHandle>) -> Option<LegEvent> {
    match leg {
        Some(leg) => leg.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Call {
    fn request(&self, event: Event) -> CallRequest {
        let event_is_hang_up = matches!(event, Event::HungUp);
        CallRequest {
            call_id: self.call_id.clone(),
            event,
            now: self.clock.now(),
            key: None,
            carrier_seq: None,
            // The SIP adapter holds the call: it carries out every action itself.
            origin: Origin::Carrier,
            sealed_number: self.sealed_number.clone(),
            reason: if event_is_hang_up { self.end_reason } else { None },
        }
    }

    fn audio_idle(&self) -> bool {
        self.played >= self.queued
    }

    /// One event through the runtime; its actions carried out. A database failure is retried
    /// (with the same idempotency key, so a step that did commit is not applied twice); when it
    /// still fails the caller hears the technical-problem prompt and the last menu is re-armed:
    /// never silence.
    async fn handle(&mut self, event: Event) {
        match self.step(event).await {
            Ok(actions) => self.apply(actions).await,
            Err(true) => self.technical_problem().await,
            Err(false) => {}
        }
    }

    /// One event through the runtime, retried as [`Self::handle`] says: its outward actions, or
    /// `Err(transient)` when it was not recorded.
    async fn step(&mut self, event: Event) -> Result<Vec<Action>, bool> {
        self.steps += 1;
        let mut request = self.request(event);
        let key = format!("sip-step-{}", self.steps);
        request.key = Some(crate::calls::RequestKey { key: key.clone(), fingerprint: key });
        let mut wait = STEP_BACKOFF;
        for attempt in 1..=STEP_TRIES {
            match self.runtime.handle_unbounded(request.clone()).await {
                Ok(handled) => return Ok(handled.answer.actions),
                Err(e) if e.is_transient() && attempt < STEP_TRIES => {
                    tracing::warn!(error = %e, attempt, "a call step failed: retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                Err(e) if e.is_transient() => {
                    tracing::error!(error = %e, "a call step failed: the caller hears the technical-problem prompt");
                    return Err(true);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the call runtime refused an event");
                    return Err(false);
                }
            }
        }
        Err(true)
    }

    /// The operator handed the caller over to another queue: the step recorded first (nothing
    /// changes if it is not), then the caller unbridged from the operator's leg, which hangs up,
    /// and the engine's actions (the queue's welcome in its language, the hold audio) carried
    /// out, as after a failed transfer.
    async fn requeue(&mut self, event: Event) -> bool {
        if self.browser.is_none() {
            tracing::warn!("a hand-over for a call not talking to an operator's browser: refused");
            return false;
        }
        let actions = match self.step(event).await {
            Ok(actions) => actions,
            Err(_) => return false,
        };
        tracing::info!("handed over to another queue: back on hold");
        self.phone.report(self.call_id.as_str(), PhoneStatus::Ended, None);
        self.browser = None;
        self.leg = None;
        self.leg_connected = false;
        self.page_failure = None;
        self.media.bridged(false);
        let _ = self.media.send(MediaCmd::Hold(false));
        let _ = self.media.send(MediaCmd::StopAudio);
        self.played = self.queued;
        self.apply(actions).await;
        true
    }

    /// The step could not be recorded: say so, and listen again where the caller was.
    async fn technical_problem(&mut self) {
        let language = self.language.unwrap_or(ivr::domain::Language::It);
        if let Ok(id) = ivr::domain::PromptId::parse("technical-problem") {
            match self.audio.play(language, &id, ivr::engine::Pace::Normal).await {
                Ok(clip) => self.queue(clip),
                Err(e) => tracing::warn!(error = %e, "technical-problem prompt not playable"),
            }
        }
        if let Some((max, first, inter, finish)) = self.last_collect {
            self.collector = Some(Collector::new(max, first, inter, finish));
        }
        self.on_audio_progress().await;
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Play { prompt, language, pace } => {
                    self.language = Some(language);
                    match self.audio.play(language, &prompt, pace).await {
                        Ok(clip) => self.queue(clip),
                        Err(e) => tracing::warn!(error = %e, prompt = prompt.as_str(), "prompt not playable"),
                    }
                }
                Action::Say { message, language, args, pace } => {
                    self.language = Some(language);
                    match self.audio.say(language, &message, &args, pace).await {
                        Ok(clip) => self.queue(clip),
                        Err(e) => tracing::warn!(error = %e, message = message.as_str(), "message not speakable"),
                    }
                }
                Action::Collect { max_digits, first_timeout_ms, inter_digit_timeout_ms, finish_key } => {
                    self.last_collect = Some((max_digits, first_timeout_ms, inter_digit_timeout_ms, finish_key));
                    self.collector =
                        Some(Collector::new(max_digits, first_timeout_ms, inter_digit_timeout_ms, finish_key));
                }
                Action::Enqueue { .. } => {
                    let _ = self.media.send(MediaCmd::Hold(true));
                }
                Action::Transfer { target, .. } => {
                    if is_browser_target(&target) {
                        // The operator is waiting on the line: the queue's announcements stop now.
                        let _ = self.media.send(MediaCmd::StopAudio);
                        self.played = self.queued;
                    }
                    self.terminal = Some(Terminal::Transfer(target));
                }
                // Sent off the call's task (the engine waits for the outcome, keys aside), the
                // number opened from its seal only by the sender.
                Action::SendText { services, language, item_prompt, portal_prompt } => {
                    let order = TextOrder {
                        call_id: self.call_id.clone(),
                        channel: Channel::Sip,
                        number: self.sealed_number.clone(),
                        services,
                        language,
                        item_prompt,
                        portal_prompt,
                        base_url: None,
                    };
                    let (sending, done) = (self.texts.send(order), self.text_done.clone());
                    tokio::spawn(
                        async move {
                            let _ = done.send(sending.await);
                        }
                        .in_current_span(),
                    );
                }
                Action::Record => {
                    // After the prompts queued before it: the beep, then the caller.
                    self.queue(super::audio::beep());
                    self.voicemail = Some(Voicemail::Beep);
                }
                Action::Hangup { .. } => self.terminal = Some(Terminal::Hangup),
                Action::RecordCallback { .. } | Action::Lookup(_) | Action::Log(_) => {}
            }
        }
        self.on_audio_progress().await;
    }

    fn queue(&mut self, clip: super::audio::Clip) {
        if self.media.send(MediaCmd::Play(clip)) {
            self.queued += 1;
        }
    }

    /// Audio may have finished: start the collector's timer, or do what waited for the audio.
    async fn on_audio_progress(&mut self) {
        if !self.audio_idle() {
            return;
        }
        let now = Instant::now();
        if let Some(c) = self.collector.as_mut() {
            c.audio_idle(now);
        }
        if self.voicemail == Some(Voicemail::Beep) {
            self.media.start_recording(self.voicemail_max);
            self.voicemail = Some(Voicemail::Recording { until: now + self.voicemail_max });
            tracing::debug!("recording a voice message");
        }
        match self.terminal.take() {
            Some(Terminal::Hangup) => {
                if self.server_ends {
                    // Drained: the end is in the call log before the BYE goes out.
                    if let Err(e) = self.runtime.handle(self.request(Event::HungUp)).await {
                        tracing::error!(error = %e, "cannot record the end of the call");
                    }
                }
                let _ = self.signalling.send(SigCmd::Hangup { sip_call_id: self.sip_call_id.clone() });
                tracing::info!("helpline hung up");
                self.finished = true;
            }
            Some(Terminal::Transfer(target)) if is_browser_target(&target) => self.start_browser(now),
            Some(Terminal::OperatorHangup) => {
                let _ = self.signalling.send(SigCmd::Hangup { sip_call_id: self.sip_call_id.clone() });
                tracing::info!("operator ended the call: helpline hung up");
                self.end_reason = Some(EndReason::OperatorHungUp);
                // Recorded as the call's end (the engine has nothing more to say).
                if let Err(e) = self.runtime.handle(self.request(Event::HungUp)).await {
                    tracing::error!(error = %e, "cannot record the end of the call");
                }
                self.finished = true;
            }
            Some(Terminal::Transfer(target)) => {
                tracing::info!(%target, "transferring (REFER)");
                let _ = self.signalling.send(SigCmd::Refer { sip_call_id: self.sip_call_id.clone(), target });
                self.transfer_deadline = Some(now + TRANSFER_TIMEOUT);
            }
            None => {}
        }
    }

    async fn on_digit(&mut self, digit: DtmfDigit) {
        if matches!(self.voicemail, Some(Voicemail::Recording { .. })) {
            if digit.as_char() == '#' {
                self.finish_voicemail().await;
            }
            return;
        }
        if self.collector.is_none() {
            tracing::debug!(key = %digit.as_char(), "key while not collecting: ignored");
            return;
        }
        if !self.audio_idle() {
            // Barge-in: the key interrupts the prompt.
            let _ = self.media.send(MediaCmd::StopAudio);
            self.played = self.queued;
        }
        let done = self.collector.as_mut().and_then(|c| c.on_digit(digit, Instant::now()));
        if let Some(done) = done {
            self.collector = None;
            self.collected(done).await;
        }
    }

    async fn collected(&mut self, done: Collected) {
        let event = match done {
            Collected::NoInput => Event::NoInput,
            Collected::Digits(keys) => match DtmfDigits::parse(&keys) {
                Ok(d) => Event::Digits(d),
                Err(e) => {
                    tracing::warn!(error = %e, "keys not accepted");
                    return;
                }
            },
        };
        self.handle(event).await;
    }

    async fn on_msg(&mut self, msg: CallMsg) {
        match msg {
            CallMsg::Ack => {
                self.acked = true;
                let _ = self.media.send(MediaCmd::Start);
            }
            CallMsg::Gone => self.line_closed().await,
            CallMsg::Digit(d) => self.on_digit(d).await,
            CallMsg::ReferAnswered { accepted: true, .. } => {}
            CallMsg::ReferAnswered { accepted: false, reason } => {
                self.transfer_deadline = None;
                self.transfer_failed(reason).await;
            }
            CallMsg::ReferProgress(p) if p.status < 200 => {}
            CallMsg::ReferProgress(p) if p.status < 300 => {
                // The caller is talking to the operator: our part of the call is over.
                self.transfer_deadline = None;
                tracing::info!("transfer succeeded");
                self.end_reason = Some(EndReason::Transferred);
                let _ = self.signalling.send(SigCmd::Hangup { sip_call_id: self.sip_call_id.clone() });
                self.handle(Event::HungUp).await;
                self.finished = true;
            }
            CallMsg::ReferProgress(p) => {
                self.transfer_deadline = None;
                self.transfer_failed(format!("SIP {}", p.status)).await;
            }
            CallMsg::Event(e) => self.handle(e).await,
            CallMsg::Drain => self.drain().await,
        }
    }

    async fn transfer_failed(&mut self, reason: String) {
        tracing::warn!(%reason, "transfer failed: back to the queue");
        self.handle(Event::TransferFailed { reason }).await;
    }

    /// The transfer reached a browser operator: bridge as soon as their leg is connected.
    fn start_browser(&mut self, now: Instant) {
        tracing::info!("transferring to the operator's browser");
        let failure = self.page_failure.take();
        // A page that already failed: back to the queue at once (from the call's loop).
        let deadline = if failure.is_some() { now } else { now + BROWSER_CONNECT_TIMEOUT };
        self.browser = Some(Browser { deadline: Some(deadline), failure, started: Some(now), ..Browser::default() });
        self.maybe_bridge();
    }

    /// Bridges the caller to the leg once both are there and the leg is connected.
    fn maybe_bridge(&mut self) {
        let (Some(leg), Some(b), true) = (&self.leg, &mut self.browser, self.leg_connected) else { return };
        b.deadline = None;
        if b.bridged {
            return;
        }
        match self.media.sip_side() {
            Ok(side) => {
                // The media thread reads the caller from now on; the clock's hold audio stops.
                self.media.bridged(true);
                let _ = self.media.send(MediaCmd::Hold(b.held));
                if !b.held {
                    let _ = self.media.send(MediaCmd::StopAudio);
                    self.played = self.queued;
                }
                leg.bridge(side);
                leg.hold(b.held);
                b.bridged = true;
                // Audio flows both ways from now on: what the page calls connected.
                self.phone.report(self.call_id.as_str(), PhoneStatus::Connected, None);
                if !b.connected_once {
                    b.connected_once = true;
                    if let Some(since) = b.started {
                        self.phone.connected_after(since);
                    }
                    tracing::info!("caller bridged to the operator's browser");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot bridge the call's RTP"),
        }
    }

    async fn on_phone(&mut self, msg: PhoneMsg) {
        match msg {
            PhoneMsg::Leg(leg) => {
                // A new page (or its first offer): the old leg, if any, closes as it is dropped.
                self.leg = Some(leg);
                self.leg_connected = false;
                if let Some(b) = self.browser.as_mut() {
                    b.bridged = false;
                    b.deadline = Some(Instant::now() + BROWSER_CONNECT_TIMEOUT);
                }
                self.phone.report(self.call_id.as_str(), PhoneStatus::Connecting, None);
            }
            PhoneMsg::Reoffer { offer, reply } => {
                let answer = match &self.leg {
                    Some(leg) => leg.reoffer(offer).await,
                    None => Err(crate::media::WebRtcError::Ended),
                };
                let _ = reply.send(answer);
            }
            PhoneMsg::Hold(on) => {
                let Some(b) = self.browser.as_mut() else { return };
                b.held = on;
                if let Some(leg) = &self.leg {
                    leg.hold(on);
                }
                if b.bridged {
                    let _ = self.media.send(MediaCmd::Hold(on));
                    if !on {
                        // Cut the hold tone at once.
                        let _ = self.media.send(MediaCmd::StopAudio);
                        self.played = self.queued;
                    }
                }
                tracing::info!(on, "hold");
            }
            PhoneMsg::Hangup => {
                if self.browser.take().is_none() {
                    return;
                }
                self.leg = None;
                self.media.bridged(false);
                let _ = self.media.send(MediaCmd::Hold(false));
                let _ = self.media.send(MediaCmd::StopAudio);
                self.played = self.queued;
                self.phone.report(self.call_id.as_str(), PhoneStatus::Ended, None);
                let language = self.language.unwrap_or(Language::It);
                match PromptId::parse("goodbye") {
                    Ok(goodbye) => match self.audio.play(language, &goodbye, Pace::Normal).await {
                        Ok(clip) => self.queue(clip),
                        Err(e) => tracing::warn!(error = %e, "goodbye not playable"),
                    },
                    Err(e) => tracing::warn!(error = %e, "no goodbye prompt"),
                }
                self.terminal = Some(Terminal::OperatorHangup);
                self.on_audio_progress().await;
            }
            PhoneMsg::HandOver(leg) => {
                // Already carrying the call on the media thread, and connected.
                tracing::info!("the operator left: the mediator's leg carries the call");
                self.leg = Some(leg);
                self.leg_connected = true;
            }
            PhoneMsg::Requeue { event, reply } => {
                let recorded = self.requeue(event).await;
                let _ = reply.send(recorded);
            }
            PhoneMsg::PageFailed(reason) => {
                if self.browser.is_some() {
                    self.browser_failed(reason).await;
                } else {
                    self.page_failure = Some(reason);
                }
            }
        }
    }

    async fn on_leg_event(&mut self, event: Option<LegEvent>) {
        let state = match event {
            Some(LegEvent::State(state)) => state,
            Some(LegEvent::Rtp(_)) => return,     // not bridged yet
            Some(LegEvent::Quality(_)) => return, // (the media thread keeps these)
            None => {
                self.leg = None;
                return;
            }
        };
        let call_id = self.call_id.as_str().to_owned();
        match state {
            MediaState::Connecting => {}
            MediaState::Connected => {
                // Reported to the page once bridged (`maybe_bridge`): until the transfer comes,
                // the page is still connecting.
                self.leg_connected = true;
                if self.browser.as_ref().is_some_and(|b| b.bridged) {
                    self.phone.report(&call_id, PhoneStatus::Connected, None); // back after a loss
                } else {
                    self.maybe_bridge();
                }
            }
            MediaState::Reconnecting => {
                tracing::info!("the operator's browser stopped answering: waiting for it");
                self.phone.report(&call_id, PhoneStatus::Reconnecting, None);
            }
            MediaState::Failed(failure) => {
                self.leg = None;
                self.leg_connected = false;
                let reason = match failure {
                    crate::media::Failure::ConnectTimeout => "ICE or DTLS did not complete",
                    crate::media::Failure::ConnectionLost => "the browser's connection was lost",
                    crate::media::Failure::Protocol => "the browser's media was refused",
                };
                if self.browser.is_some() {
                    self.browser_failed(reason.into()).await;
                } else {
                    self.phone.report(&call_id, PhoneStatus::Failed, Some(reason.into()));
                }
            }
            MediaState::Closed => {
                self.leg = None;
                self.leg_connected = false;
                if let Some(b) = self.browser.as_mut() {
                    // A reloaded page offers again; otherwise the caller goes back to the queue.
                    tracing::info!("the operator's browser closed its connection: waiting for it");
                    b.bridged = false;
                    b.deadline = Some(Instant::now() + BROWSER_RETURN_TIMEOUT);
                    self.phone.report(&call_id, PhoneStatus::Reconnecting, None);
                }
            }
        }
    }

    /// The browser could not carry the call: the caller goes back to the queue (the engine plays
    /// the apology and re-queues it in its old place) and hears the hold audio again.
    async fn browser_failed(&mut self, reason: String) {
        if self.browser.take().is_none() {
            return;
        }
        self.phone.failed(failure_code(&reason));
        self.leg = None;
        self.leg_connected = false;
        self.media.bridged(false);
        let _ = self.media.send(MediaCmd::Hold(false));
        self.phone.report(self.call_id.as_str(), PhoneStatus::Failed, Some(reason.clone()));
        self.transfer_failed(format!("browser phone: {reason}")).await;
    }

    /// The node is stopping: whatever plays stops, the goodbye plays, then BYE.
    async fn drain(&mut self) {
        if self.finished {
            return;
        }
        tracing::info!("node draining: goodbye");
        self.collector = None;
        self.transfer_deadline = None;
        let _ = self.media.send(MediaCmd::Hold(false));
        if !self.audio_idle() {
            let _ = self.media.send(MediaCmd::StopAudio);
            self.played = self.queued;
        }
        let language = self.language.unwrap_or(ivr::domain::Language::It);
        // A call not yet acknowledged has no audio to hear a goodbye on.
        if let (true, Ok(goodbye)) = (self.acked, ivr::domain::PromptId::parse("goodbye")) {
            match self.audio.play(language, &goodbye, ivr::engine::Pace::Normal).await {
                Ok(clip) => self.queue(clip),
                Err(e) => tracing::warn!(error = %e, "goodbye not playable"),
            }
        }
        self.server_ends = true;
        self.end_reason = Some(EndReason::Drain);
        self.terminal = Some(Terminal::Hangup);
        self.on_audio_progress().await;
    }

    /// No RTP from the caller for the timeout: the line is dead (a vanished caller, or a blind
    /// ACK and an INFO with no phone behind them). BYE, and the hang-up recorded.
    async fn caller_silent(&mut self) {
        tracing::warn!(reason = "no RTP from the caller", "hanging up a silent call");
        self.end_reason = Some(EndReason::RtpTimeout);
        // The end is in the call log before the BYE goes out.
        self.line_closed().await;
        let _ = self.signalling.send(SigCmd::Hangup { sip_call_id: self.sip_call_id.clone() });
    }

    /// The caller is gone: record it and stop.
    fn voicemail_deadline(&self) -> Option<Instant> {
        match self.voicemail {
            Some(Voicemail::Recording { until }) => Some(until),
            _ => None,
        }
    }

    /// The message is over (`#`, the deadline, or a hang-up): stored, trimmed, then told to the
    /// engine (which records the callback request and says goodbye). A message that could not be
    /// stored still leaves the request.
    async fn finish_voicemail(&mut self) {
        let Some(Voicemail::Recording { .. }) = self.voicemail.take() else { return };
        let samples = ivr::rtp::decode(self.media.codec(), &self.media.take_recording());
        let speech = crate::calls::voicemail::trim_silence(&samples);
        let mut duration_ms = 0;
        if !speech.is_empty() {
            let now = self.clock.now().timestamp_millis();
            match self.runtime.store_voicemail(&self.call_id, speech, now).await {
                Ok(d) => duration_ms = d,
                Err(e) => tracing::error!(error = %e, "cannot store the voice message: the callback request stands"),
            }
        }
        tracing::info!(duration_ms, "voice message recorded");
        if !self.finished {
            self.handle(Event::Recorded { duration_ms }).await;
        }
    }

    async fn line_closed(&mut self) {
        if matches!(self.voicemail, Some(Voicemail::Recording { .. })) {
            // A caller who hangs up after speaking has left the message; the engine records the
            // request on the hang-up.
            self.finished = true;
            self.finish_voicemail().await;
        }
        if self.browser.take().is_some() {
            self.phone.report(self.call_id.as_str(), PhoneStatus::HungUp, None);
        }
        self.leg = None;
        self.media.bridged(false);
        self.collector = None;
        self.terminal = None;
        self.finished = true;
        tracing::info!("caller hung up");
        self.record_hang_up().await;
    }

    /// Records the end of the call, trying again while the database is away (PostgreSQL
    /// restarting) for up to [`HANG_UP_PERSISTENCE`], with one idempotency key (a try that did
    /// commit is answered from the log, not applied twice): a call ended during an outage is not
    /// left open in the log until the quiet sweep.
    async fn record_hang_up(&mut self) {
        self.steps += 1;
        let mut request = self.request(Event::HungUp);
        let key = format!("sip-step-{}", self.steps);
        request.key = Some(crate::calls::RequestKey { key: key.clone(), fingerprint: key });
        let give_up = Instant::now() + HANG_UP_PERSISTENCE;
        let mut wait = STEP_BACKOFF;
        loop {
            let failure = match tokio::time::timeout(HANG_UP_TRY, self.runtime.handle_unbounded(request.clone())).await
            {
                Ok(Ok(_)) => return,
                Ok(Err(e)) if e.is_transient() => e.to_string(),
                Ok(Err(e)) => return tracing::error!(error = %e, "cannot record the hang-up"),
                Err(_) => "no answer from the database in time".to_owned(),
            };
            if Instant::now() + wait > give_up {
                return tracing::error!(error = failure, "cannot record the hang-up: given up");
            }
            tracing::warn!(error = failure, "cannot record the hang-up yet: trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(4));
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
