//! The browser phone's service: the one place where a call's two sides meet on this node.
//!
//! The SIP adapter **registers** each of its calls ([`Phone::register`]: the call's G.711 law,
//! and a channel to its control task). The console socket hands over what the operator's page
//! sends: its SDP **offer** ([`Phone::offer`]: a new leg is built on a blocking thread, started
//! on the media driver and given to the call, and the answer goes back to the page; or, for the
//! same page's ICE restart, the call's leg answers the re-offer), **hold**, **hang-up** and a
//! page's own **failure** (no microphone). The call reports its leg's media state back
//! ([`Phone::report`]), which every console socket of this node hears ([`Phone::subscribe`]) and
//! forwards to the operator's page.
//!
//! A page on this node whose call's media is on another node (PostgreSQL) is served through
//! [`super::relay`], the only part of the phone that touches the database.
//! A supervisor **monitors** a call ([`Phone::monitor`]) with a leg of their own, which joins the
//! operator's leg's call on the media thread: listening (nobody hears them), whispering (only
//! the operator does) or barging in (everyone does); [`Phone::set_monitor`] switches between
//! them, [`Phone::end_monitor`] hangs the supervisor's leg up. The call's own task knows nothing
//! of it: the supervisors' legs live here, with the call's slot, and end with it.
//!
//! Each media state reported, and each ICE restart answered, is also handed to the call's
//! timeline ([`super::journal`]).
//!
//! Architecture invariant: nothing here touches the database or the engine; the call's control
//! task decides (bridge, fail back to the queue, hang up) and the media thread forwards.

use super::driver::{LegHandle, RecordedAudio, SipSide, WebRtcMedia};
use super::journal::{Journal, MediaStep};
use super::mixer::Audience;
use super::relay::{Relay, Relayed};
use super::webrtc::{LegConfig, LegEvent, MediaState, WebRtcError, WebRtcLeg};
use crate::metrics::{Metrics, ReasonLabels};
use crate::tasks::Tasks;
use ivr::sdp::Codec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The user part of a browser operator's SIP address: `op-<user>`.
const OPERATOR_PREFIX: &str = "op-";

/// What the page shows of its phone (`phone_state.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneStatus {
    /// From the answer until ICE and DTLS are done.
    Connecting,
    /// Audio flows.
    Connected,
    /// The browser stopped answering; waiting for it (an ICE restart) to come back.
    Reconnecting,
    /// The phone did not connect, or was lost: the caller is back in the queue.
    Failed,
    /// The caller hung up.
    HungUp,
    /// The call's media ended (the operator hung up).
    Ended,
}

impl PhoneStatus {
    /// The step of the call's timeline.
    fn step(self) -> MediaStep {
        match self {
            PhoneStatus::Connecting => MediaStep::Connecting,
            PhoneStatus::Connected => MediaStep::Connected,
            PhoneStatus::Reconnecting => MediaStep::Reconnecting,
            PhoneStatus::Failed => MediaStep::Failed,
            PhoneStatus::HungUp => MediaStep::HungUp,
            PhoneStatus::Ended => MediaStep::Ended,
        }
    }
}

/// A call's phone news, for the operator's sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneEvent {
    pub call_id: String,
    pub operator: i64,
    pub status: PhoneStatus,
    /// Why, for `failed`.
    pub reason: Option<String>,
}

/// What the console asks of a call's control task.
#[derive(Debug)]
pub enum PhoneMsg {
    /// The operator's page's new leg (already answered and running on the media thread).
    Leg(LegHandle),
    /// The same page's re-offer (ICE restart), to be answered by the call's leg.
    Reoffer {
        offer: String,
        reply: oneshot::Sender<Result<String, WebRtcError>>,
    },
    Hold(bool),
    /// The operator ended the call: goodbye to the caller.
    Hangup,
    /// The page cannot be a phone (microphone refused or missing): why.
    PageFailed(String),
    /// The operator left a three-way call: the mediator's leg (already carrying the call on the
    /// media thread) is the call's leg from now on; the operator's, dropped, hangs up.
    HandOver(LegHandle),
    /// The operator handed the caller over to another queue (`event`, the engine's
    /// `HandedOver`) and leaves: a SIP call records the step, then unbridges the caller back to
    /// the hold audio (`reply`: whether the step was recorded; if not, nothing changed); a
    /// carrier's operator leg just hangs up (the server recorded the step itself).
    Requeue {
        event: ivr::engine::Event,
        reply: oneshot::Sender<bool>,
    },
}

/// How a supervisor takes part in a call (`listen`, `whisper`, `barge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// The supervisor hears the caller and the operator; nobody hears the supervisor.
    Listen,
    /// Only the operator hears the supervisor.
    Whisper,
    /// Everyone hears everyone (a three-way call).
    Barge,
}

impl MonitorMode {
    /// The name in the audit log and the call's timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorMode::Listen => "listen",
            MonitorMode::Whisper => "whisper",
            MonitorMode::Barge => "barge",
        }
    }

    fn audience(self, operator_leg: u64) -> Audience {
        match self {
            MonitorMode::Listen => Audience::Nobody,
            MonitorMode::Whisper => Audience::Only(operator_leg),
            MonitorMode::Barge => Audience::Everyone,
        }
    }
}

/// Why an offer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("the call is not carried by this server's media (or has ended)")]
    NoSuchCall,
    #[error("the browser phone's media is not running")]
    NotRunning,
    #[error("the call is not talking to an operator's browser phone on this server")]
    NoOperatorLeg,
    #[error("this supervisor is not monitoring the call")]
    NotMonitoring,
    #[error("no mediator has joined the call")]
    NoMediator,
    #[error(transparent)]
    WebRtc(#[from] WebRtcError),
    /// Through another node ([`super::relay`]): its database write failed, or its answer says why.
    #[error("the call's node: {0}")]
    Relay(String),
}

impl PhoneError {
    /// Another node's refusal, as its answer gave it ([`super::relay`] carries the text): the
    /// same error when it names one the call's node gives, so that every node answers alike.
    pub(super) fn relayed(why: String) -> PhoneError {
        [
            PhoneError::NoSuchCall,
            PhoneError::NotRunning,
            PhoneError::NoOperatorLeg,
            PhoneError::NotMonitoring,
            PhoneError::NoMediator,
        ]
        .into_iter()
        .find(|e| e.to_string() == why)
        .unwrap_or(PhoneError::Relay(why))
    }
}

/// What an operator's page asks of its call's phone besides offers, wherever the call is.
#[derive(Debug, Clone, PartialEq)]
pub enum PageRequest {
    Hold(bool),
    /// The operator ended the call: goodbye to the caller.
    Hangup,
    /// The page cannot be a phone (microphone refused or missing): why.
    Failed(String),
}

/// What another node asks of a call this node carries besides its pages' offers and requests
/// ([`Phone::control`]): the steps of a three-way call, a hand-over, an outside interpreter.
/// Answered as an offer is (through [`super::relay`]): a short result, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CallControl {
    /// The mediator accepted to join: their page's offers join the call from now on.
    AdmitMediator { mediator: i64 },
    /// The mediator leaves (or never joined): their leg hangs up.
    EndMediation { mediator: i64 },
    /// The operator leaves the call to the mediator who joined first (answered with their id).
    OperatorLeaves,
    /// The caller is handed over to another queue (the engine's `HandedOver`; answered `true`
    /// when the step was recorded).
    Requeue { event: ivr::engine::Event },
    /// The call's operator (`operator`) dials an outside interpreter into the call through the
    /// trunk: the call's node places the call (its media is there). `number`: sealed for the
    /// call, opened only by the [`InterpreterDesk`].
    DialInterpreter { operator: i64, number: String },
    /// The call's operator hangs up the interpreters' calls into the call (answered `true` when
    /// there was one).
    HangUpInterpreters,
}

/// The outside interpreters' calls into the calls this node carries, placed and hung up where
/// the call's media is (the operators' feature provides it, [`Phone::interpreters_with`]).
pub trait InterpreterDesk: Send + Sync {
    /// Places a call to `number` (sealed, as [`CallControl::DialInterpreter`] has it) into
    /// `call_id` for `operator`, in the background. `Err`: why not (no trunk here, say).
    fn dial(&self, call_id: &str, operator: i64, number: &str) -> Result<(), String>;
    /// Hangs up the interpreters' calls into `call_id`; whether there was one.
    fn hang_up(&self, call_id: &str) -> bool;
}

struct Slot {
    codec: Codec,
    to_call: mpsc::UnboundedSender<PhoneMsg>,
    operator: Option<i64>,
    /// The driver's id of the operator's newest leg (what supervisors join).
    operator_leg: Option<u64>,
    /// The supervisors' legs, by user id (dropping one hangs it up).
    monitors: HashMap<i64, LegHandle>,
    /// The mediators' legs, by user id (heard by everyone, hearing everyone).
    mediators: HashMap<i64, LegHandle>,
    /// The mediators who accepted to join: their pages' offers join the call
    /// ([`Phone::mediate`]) instead of taking it over.
    admitted: std::collections::HashSet<i64>,
    /// The outside interpreters' trunk calls joined to the call, by party id: each one's owner
    /// hangs it up when its sender goes (the call over on this node, or the party left).
    trunk_parties: HashMap<u64, oneshot::Sender<()>>,
}

/// A carrier's call accepted in the browser: its transfer to `sip:op-…;token=…` is expected.
struct Expected {
    call_id: String,
    at: Instant,
}

/// A callback's browser leg waiting for the carrier's `<Dial><Sip>` to claim it
/// ([`Phone::expect_callback`]).
struct WaitingCallback {
    call_id: String,
    codec: Codec,
    claimed: oneshot::Sender<oneshot::Receiver<()>>,
}

/// What the SIP adapter gets when a carrier's INVITE claims a callback's browser leg: the call
/// it belongs to, the law that leg speaks (the INVITE must be answered in it: the bridge never
/// transcodes), and how to tell the callback it was claimed, once the call is registered
/// ([`CallbackClaim::claimed`]).
pub struct CallbackClaim {
    pub call_id: String,
    pub codec: Codec,
    claimed: oneshot::Sender<oneshot::Receiver<()>>,
}

impl CallbackClaim {
    /// The carrier's leg is registered ([`Phone::register`]): the callback may hand its browser
    /// leg over (`PhoneMsg::Leg`). The callback hears the carrier's leg end when the returned
    /// sender is dropped.
    pub fn claimed(self) -> oneshot::Sender<()> {
        let (alive, ended) = oneshot::channel();
        let _ = self.claimed.send(ended);
        alive
    }
}

/// How long a carrier has to dial the operator's address after the accept.
const EXPECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

struct Inner {
    /// Where carriers reach this node's SIP adapter (the host of browser operators' addresses).
    sip_addr: SocketAddr,
    metrics: Arc<Metrics>,
    /// By token.
    expected: Mutex<HashMap<String, Expected>>,
    /// Callbacks' browser legs waiting for a carrier's INVITE, by token.
    callbacks: Mutex<HashMap<String, WaitingCallback>>,
    /// Woken whenever a call registers (an offer may wait for a carrier's transfer to arrive).
    registered: tokio::sync::Notify,
    /// Bound at build, taken at start.
    socket: Mutex<Option<std::net::UdpSocket>>,
    media: OnceLock<WebRtcMedia>,
    candidate: SocketAddr,
    calls: Mutex<HashMap<String, Slot>>,
    events: broadcast::Sender<PhoneEvent>,
    /// ICE and DTLS must be done within this long of the answer.
    connect_timeout: std::time::Duration,
    /// The signalling for calls carried by other nodes (PostgreSQL).
    relay: OnceLock<Relay>,
    /// Where the media steps of the calls this node carries go (the calls' timelines).
    journal: OnceLock<Journal>,
    /// Stores the recordings another node asked this one to make ([`Phone::keep_recordings_with`]).
    keeper: OnceLock<RecordingKeeper>,
    /// Places and hangs up the outside interpreters' calls ([`Phone::interpreters_with`]).
    interpreters: OnceLock<Arc<dyn InterpreterDesk>>,
}

/// Stores a recording of a call this node carries that another node asked for (through the
/// relay): called with the call's id, the recording's id (its row, open) and its audio to come.
/// The operators' feature provides it (`media` stores nothing itself).
pub type RecordingKeeper = Arc<dyn Fn(String, String, oneshot::Receiver<RecordedAudio>) + Send + Sync>;

/// The browser phone's service (cheap to clone).
#[derive(Clone)]
pub struct Phone(Arc<Inner>);

impl Phone {
    /// Binds the media socket (`addr`, port 0 allowed); the candidate announced is `public_ip`
    /// with the bound port. Starts nothing.
    pub fn bind(
        addr: SocketAddr,
        public_ip: std::net::IpAddr,
        sip_addr: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Phone> {
        let socket = std::net::UdpSocket::bind(addr)?;
        let port = socket.local_addr()?.port();
        let (events, _) = broadcast::channel(1024);
        // A SIP socket on every address is announced at the media's public address.
        let sip_addr =
            if sip_addr.ip().is_unspecified() { SocketAddr::new(public_ip, sip_addr.port()) } else { sip_addr };
        Ok(Phone(Arc::new(Inner {
            sip_addr,
            metrics,
            expected: Mutex::new(HashMap::new()),
            callbacks: Mutex::new(HashMap::new()),
            registered: tokio::sync::Notify::new(),
            socket: Mutex::new(Some(socket)),
            media: OnceLock::new(),
            candidate: SocketAddr::new(public_ip, port),
            calls: Mutex::new(HashMap::new()),
            events,
            connect_timeout: std::time::Duration::from_secs(10),
            relay: OnceLock::new(),
            journal: OnceLock::new(),
            keeper: OnceLock::new(),
            interpreters: OnceLock::new(),
        })))
    }

    /// Pages on this node may take calls whose media another node carries, and the other way
    /// round, through `relay` (set before [`Phone::start`]).
    pub fn with_relay(self, relay: Option<Relay>) -> Phone {
        if let Some(relay) = relay {
            let _ = self.0.relay.set(relay);
        }
        self
    }

    /// The media steps of the calls this node carries go to `journal` (their timelines).
    pub fn with_journal(self, journal: Journal) -> Phone {
        let _ = self.0.journal.set(journal);
        self
    }

    fn journal(&self, call_id: &str, operator: Option<i64>, step: MediaStep, reason: Option<&str>) {
        if let Some(journal) = self.0.journal.get() {
            journal.record(call_id, operator, step, reason);
        }
    }

    /// Whether calls carried by other nodes can be answered here.
    pub fn relays(&self) -> bool {
        self.0.relay.get().is_some()
    }

    /// Where carriers reach this node's SIP adapter.
    pub fn sip_addr(&self) -> SocketAddr {
        self.0.sip_addr
    }

    /// A carrier's call was accepted in the browser: its transfer to the operator's address
    /// with `token` will come (once) as an INVITE ([`Phone::take_transfer`]).
    pub fn expect_transfer(&self, token: &str, call_id: &str) {
        let mut expected = self.0.expected.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        expected.retain(|_, e| now.duration_since(e.at) < EXPECT_FOR);
        expected.insert(token.to_owned(), Expected { call_id: call_id.to_owned(), at: now });
    }

    /// The call an INVITE to a browser operator's address with `token` belongs to (once).
    pub fn take_transfer(&self, token: &str) -> Option<String> {
        let mut expected = self.0.expected.lock().unwrap_or_else(|p| p.into_inner());
        let e = expected.remove(token)?;
        (e.at.elapsed() < EXPECT_FOR).then_some(e.call_id)
    }

    /// A callback placed through a carrier's REST API: the carrier's `<Dial><Sip>` to the
    /// operator's address with `token` will claim its browser leg (speaking `codec`) as the
    /// operator leg of `call_id` ([`Phone::take_callback`]). The receiver resolves once it has.
    pub fn expect_callback(
        &self,
        token: &str,
        call_id: &str,
        codec: Codec,
    ) -> oneshot::Receiver<oneshot::Receiver<()>> {
        let (claimed, rx) = oneshot::channel();
        let waiting = WaitingCallback { call_id: call_id.to_owned(), codec, claimed };
        self.0.callbacks.lock().unwrap_or_else(|p| p.into_inner()).insert(token.to_owned(), waiting);
        rx
    }

    /// The callback waiting for an INVITE with `token` (once).
    pub fn take_callback(&self, token: &str) -> Option<CallbackClaim> {
        let w = self.0.callbacks.lock().unwrap_or_else(|p| p.into_inner()).remove(token)?;
        Some(CallbackClaim { call_id: w.call_id, codec: w.codec, claimed: w.claimed })
    }

    /// The callback is over: an INVITE with `token` no longer reaches anyone.
    pub fn forget_callback(&self, token: &str) {
        self.0.callbacks.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }

    fn expects(&self, call_id: &str) -> bool {
        let expected = self.0.expected.lock().unwrap_or_else(|p| p.into_inner());
        expected.values().any(|e| e.call_id == call_id && e.at.elapsed() < EXPECT_FOR)
    }

    /// The address browsers send media to (the ICE candidate).
    pub fn candidate(&self) -> SocketAddr {
        self.0.candidate
    }

    /// Starts the media thread; at shutdown, closes every leg and joins the thread.
    pub fn start(&self, tasks: &Tasks) -> std::io::Result<()> {
        let Some(socket) = self.0.socket.lock().ok().and_then(|mut s| s.take()) else { return Ok(()) };
        let media = WebRtcMedia::start(socket, self.0.metrics.clone())?;
        let _ = self.0.media.set(media.clone());
        if let Some(relay) = self.0.relay.get() {
            relay.start(self.clone(), tasks);
        }
        if let Some(journal) = self.0.journal.get() {
            journal.start(tasks);
        }
        let stopping = tasks.token();
        tasks.spawn("webrtc media", async move {
            stopping.cancelled().await;
            if let Some(thread) = media.stop() {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        });
        Ok(())
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call whose media this node carries (the SIP adapter's): what the console sends it
    /// comes out of the returned receiver.
    pub fn register(&self, call_id: &str, codec: Codec) -> mpsc::UnboundedReceiver<PhoneMsg> {
        let (to_call, rx) = mpsc::unbounded_channel();
        let operator = self.calls().get(call_id).and_then(|s| s.operator);
        self.calls().insert(
            call_id.to_owned(),
            Slot {
                codec,
                to_call,
                operator,
                operator_leg: None,
                monitors: HashMap::new(),
                mediators: HashMap::new(),
                admitted: Default::default(),
                trunk_parties: HashMap::new(),
            },
        );
        self.0.registered.notify_waiters();
        rx
    }

    /// The call is over.
    pub fn unregister(&self, call_id: &str) {
        self.calls().remove(call_id);
    }

    /// Whether this node carries the call's media.
    pub fn carries(&self, call_id: &str) -> bool {
        self.calls().contains_key(call_id)
    }

    /// The operator's page's offer for the call's media: `restart` when the page's connection
    /// is the one it had (an ICE restart: the call's leg answers), otherwise a new leg (a new
    /// page, or its first offer). The SDP answer.
    pub async fn offer(&self, call_id: &str, operator: i64, sdp: String, restart: bool) -> Result<String, PhoneError> {
        // A carrier's call: its transfer to the operator may still be on its way.
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while !self.carries(call_id) && self.expects(call_id) {
            let registered = self.0.registered.notified();
            if self.carries(call_id) {
                break;
            }
            if tokio::time::timeout_at(until, registered).await.is_err() {
                break;
            }
        }
        if !self.carries(call_id) {
            if let Some(relay) = self.0.relay.get() {
                return relay.offer(call_id, operator, sdp, restart).await;
            }
        }
        if self.calls().get(call_id).is_some_and(|s| s.admitted.contains(&operator)) {
            // A mediator's page (a first offer, a reload or an ICE restart): a leg of its own
            // joins the call, never the call's own leg.
            return self.mediate(call_id, operator, sdp).await;
        }
        let (codec, to_call) = {
            let mut calls = self.calls();
            let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
            slot.operator = Some(operator);
            (slot.codec, slot.to_call.clone())
        };
        if restart {
            let (reply, answer) = oneshot::channel();
            to_call.send(PhoneMsg::Reoffer { offer: sdp, reply }).map_err(|_| PhoneError::NoSuchCall)?;
            let answer = answer.await.unwrap_or(Err(WebRtcError::Ended))?;
            self.journal(call_id, Some(operator), MediaStep::IceRestart, None);
            return Ok(answer);
        }
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?.clone();
        let config = LegConfig { connect_timeout: self.0.connect_timeout, ..LegConfig::new(codec, self.0.candidate) };
        // Certificate generation and SDP work: off the async threads and off the media thread.
        let built = tokio::task::spawn_blocking(move || WebRtcLeg::accept_offer(&sdp, config, Instant::now()))
            .await
            .map_err(|_| PhoneError::NotRunning)?;
        let (leg, answer) = built?;
        let handle = media.add(leg);
        if let Some(slot) = self.calls().get_mut(call_id) {
            slot.operator_leg = Some(handle.id());
        }
        to_call.send(PhoneMsg::Leg(handle)).map_err(|_| PhoneError::NoSuchCall)?;
        Ok(answer)
    }

    /// A leg for a call this node places itself (a callback): built from the page's `offer`,
    /// running on the media thread, not registered with any call (its owner bridges it). The
    /// leg and the SDP answer.
    pub async fn outgoing_leg(&self, codec: Codec, sdp: String) -> Result<(LegHandle, String), PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?.clone();
        let config = LegConfig { connect_timeout: self.0.connect_timeout, ..LegConfig::new(codec, self.0.candidate) };
        let built = tokio::task::spawn_blocking(move || WebRtcLeg::accept_offer(&sdp, config, Instant::now()))
            .await
            .map_err(|_| PhoneError::NotRunning)?;
        let (leg, answer) = built?;
        Ok((media.add(leg), answer))
    }

    /// A supervisor's page's offer to monitor the call (a new leg joining the operator's, in
    /// `mode`; the supervisor's earlier leg on the call, if any, hangs up). The SDP answer.
    pub async fn monitor(
        &self,
        call_id: &str,
        supervisor: i64,
        sdp: String,
        mode: MonitorMode,
    ) -> Result<String, PhoneError> {
        if !self.carries(call_id) {
            if let Some(relay) = self.0.relay.get() {
                // The call's media is on another node (PostgreSQL): its node answers.
                return relay.monitor(call_id, supervisor, sdp, mode).await;
            }
        }
        let codec = {
            let calls = self.calls();
            let slot = calls.get(call_id).ok_or(PhoneError::NoSuchCall)?;
            slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
            slot.codec
        };
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?.clone();
        let config = LegConfig { connect_timeout: self.0.connect_timeout, ..LegConfig::new(codec, self.0.candidate) };
        let built = tokio::task::spawn_blocking(move || WebRtcLeg::accept_offer(&sdp, config, Instant::now()))
            .await
            .map_err(|_| PhoneError::NotRunning)?;
        let (leg, answer) = built?;
        let handle = media.add(leg);
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        if let Some(old) = slot.monitors.remove(&supervisor) {
            media.leave(host, &old);
        }
        media.join(host, &handle, mode.audience(host));
        slot.monitors.insert(supervisor, handle);
        Ok(answer)
    }

    /// The supervisor monitoring the call listens, whispers or barges in from now on (on the
    /// call's node, through the relay when it is another).
    pub async fn set_monitor(&self, call_id: &str, supervisor: i64, mode: MonitorMode) -> Result<(), PhoneError> {
        match self.0.relay.get() {
            Some(relay) if !self.carries(call_id) => relay
                .tell(call_id, supervisor, Relayed::Monitor { mode, sdp: None })
                .await
                .map_err(|e| PhoneError::Relay(e.to_string())),
            _ => self.set_monitor_here(call_id, supervisor, mode),
        }
    }

    /// The same, for a call this node carries.
    pub(super) fn set_monitor_here(&self, call_id: &str, supervisor: i64, mode: MonitorMode) -> Result<(), PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?;
        let calls = self.calls();
        let slot = calls.get(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        let leg = slot.monitors.get(&supervisor).ok_or(PhoneError::NotMonitoring)?;
        media.set_audience(host, leg, mode.audience(host));
        Ok(())
    }

    /// The supervisor stops monitoring the call (their leg hangs up; on the call's node, through
    /// the relay when it is another).
    pub async fn end_monitor(&self, call_id: &str, supervisor: i64) -> Result<(), PhoneError> {
        match self.0.relay.get() {
            Some(relay) if !self.carries(call_id) => {
                relay.tell(call_id, supervisor, Relayed::MonitorEnd).await.map_err(|e| PhoneError::Relay(e.to_string()))
            }
            _ => self.end_monitor_here(call_id, supervisor),
        }
    }

    /// The same, for a call this node carries.
    pub(super) fn end_monitor_here(&self, call_id: &str, supervisor: i64) -> Result<(), PhoneError> {
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        let leg = slot.monitors.remove(&supervisor).ok_or(PhoneError::NotMonitoring)?;
        if let (Some(media), Some(host)) = (self.0.media.get(), slot.operator_leg) {
            media.leave(host, &leg);
        }
        Ok(())
    }

    /// Records the call this node carries (its mixed audio: the caller, the operator, a
    /// mediator): the audio arrives on the receiver when [`Phone::stop_recording`] is called or
    /// the call's bridge ends (the receiver errs when there was nothing to record).
    pub fn record(&self, call_id: &str, max_secs: u32) -> Result<oneshot::Receiver<RecordedAudio>, PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?;
        let calls = self.calls();
        let slot = calls.get(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        Ok(media.record(host, max_secs))
    }

    /// Recordings of calls this node carries, asked for by another node, are stored by `keeper`
    /// (set once, at assembly).
    pub fn keep_recordings_with(&self, keeper: RecordingKeeper) {
        let _ = self.0.keeper.set(keeper);
    }

    /// Records a call another node carries (through the relay): that node records it and stores
    /// the audio in the recording's row (`recording`, open) when it stops.
    pub async fn record_elsewhere(
        &self,
        call_id: &str,
        operator: i64,
        recording: &str,
        max_secs: u32,
    ) -> Result<(), PhoneError> {
        let relay = self.0.relay.get().ok_or(PhoneError::NoSuchCall)?;
        let body = Relayed::RecordStart { recording: recording.to_owned(), max_secs };
        relay.ask(call_id, operator, body).await.map(drop)
    }

    /// Stops the recording of a call another node carries (through the relay); that node stores
    /// the audio and closes the recording's row.
    pub async fn stop_recording_elsewhere(&self, call_id: &str, operator: i64) -> Result<(), PhoneError> {
        let relay = self.0.relay.get().ok_or(PhoneError::NoSuchCall)?;
        relay.tell(call_id, operator, Relayed::RecordStop).await.map_err(|e| PhoneError::Relay(e.to_string()))
    }

    /// Another node's request to record a call this node carries: recorded here, stored by the
    /// keeper.
    pub(super) fn record_for_another(&self, call_id: &str, recording: String, max_secs: u32) -> Result<(), PhoneError> {
        let keeper = self.0.keeper.get().ok_or(PhoneError::Relay("this node stores no recordings".into()))?.clone();
        let audio = self.record(call_id, max_secs)?;
        keeper(call_id.to_owned(), recording, audio);
        Ok(())
    }

    /// Stops recording the call this node carries.
    pub fn stop_recording(&self, call_id: &str) -> Result<(), PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?;
        let calls = self.calls();
        let slot = calls.get(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        media.stop_recording(host);
        Ok(())
    }

    /// What the call's node does for `control` (asked by the user `from`): here when this node
    /// carries the call, through the relay when another one does. The result's text (empty, a
    /// mediator's id, `true`/`false`: the typed wrappers below read it).
    pub async fn control(&self, call_id: &str, from: i64, control: CallControl) -> Result<String, PhoneError> {
        if !self.carries(call_id) {
            if let Some(relay) = self.0.relay.get() {
                return relay.ask(call_id, from, Relayed::Control { control }).await;
            }
        }
        self.control_here(call_id, control).await
    }

    /// The same, for a call this node carries.
    pub(super) async fn control_here(&self, call_id: &str, control: CallControl) -> Result<String, PhoneError> {
        match control {
            CallControl::AdmitMediator { mediator } => {
                self.admit_mediator_here(call_id, mediator).map(|()| String::new())
            }
            CallControl::EndMediation { mediator } => {
                self.end_mediation_here(call_id, mediator).map(|()| String::new())
            }
            CallControl::OperatorLeaves => self.operator_leaves_here(call_id).map(|m| m.to_string()),
            CallControl::Requeue { event } => self.requeue_here(call_id, event).await.map(|r| r.to_string()),
            CallControl::DialInterpreter { operator, number } => {
                if !self.carries(call_id) {
                    return Err(PhoneError::NoSuchCall);
                }
                let desk = self.0.interpreters.get().ok_or(PhoneError::NotRunning)?;
                desk.dial(call_id, operator, &number).map_err(PhoneError::Relay)?;
                Ok(String::new())
            }
            CallControl::HangUpInterpreters => {
                let desk = self.0.interpreters.get().ok_or(PhoneError::NotRunning)?;
                Ok(desk.hang_up(call_id).to_string())
            }
        }
    }

    /// The outside interpreters' calls into the calls this node carries, asked for here or by
    /// another node, are placed and hung up by `desk` (set once, at assembly).
    pub fn interpreters_with(&self, desk: Arc<dyn InterpreterDesk>) {
        let _ = self.0.interpreters.set(desk);
    }

    /// The mediator accepted to join the call (on the call's node, wherever it is): their page's
    /// phone offers join it from now on.
    pub async fn admit_mediator(&self, call_id: &str, mediator: i64) -> Result<(), PhoneError> {
        self.control(call_id, mediator, CallControl::AdmitMediator { mediator }).await.map(drop)
    }

    /// The mediator leaves the call, or never joined (on the call's node, wherever it is).
    pub async fn end_mediation(&self, call_id: &str, mediator: i64) -> Result<(), PhoneError> {
        self.control(call_id, mediator, CallControl::EndMediation { mediator }).await.map(drop)
    }

    /// The call's operator (`operator`) leaves it to its mediator (on the call's node, wherever
    /// it is): the mediator who now holds the call ([`Phone::operator_leaves_here`]).
    pub async fn operator_leaves(&self, call_id: &str, operator: i64) -> Result<i64, PhoneError> {
        let mediator = self.control(call_id, operator, CallControl::OperatorLeaves).await?;
        mediator.parse().map_err(|_| PhoneError::Relay(format!("not a mediator's id: {mediator:?}")))
    }

    /// The call's operator (`operator`) hands the caller over to another queue (on the call's
    /// node, wherever it is; [`Phone::requeue_here`]).
    pub async fn requeue(&self, call_id: &str, operator: i64, event: ivr::engine::Event) -> Result<bool, PhoneError> {
        Ok(self.control(call_id, operator, CallControl::Requeue { event }).await? == "true")
    }

    /// The mediator accepted to join the call: their page's phone offers join it from now on.
    fn admit_mediator_here(&self, call_id: &str, mediator: i64) -> Result<(), PhoneError> {
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        slot.admitted.insert(mediator);
        Ok(())
    }

    /// A mediator's page's offer to join the call: a new leg joins the operator's, heard by
    /// everyone and hearing everyone (a three-way call); the mediator's earlier leg on the call,
    /// if any, hangs up. The SDP answer.
    pub async fn mediate(&self, call_id: &str, mediator: i64, sdp: String) -> Result<String, PhoneError> {
        let (codec, host) = {
            let calls = self.calls();
            let slot = calls.get(call_id).ok_or(PhoneError::NoSuchCall)?;
            (slot.codec, slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?)
        };
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?.clone();
        let config = LegConfig { connect_timeout: self.0.connect_timeout, ..LegConfig::new(codec, self.0.candidate) };
        let built = tokio::task::spawn_blocking(move || WebRtcLeg::accept_offer(&sdp, config, Instant::now()))
            .await
            .map_err(|_| PhoneError::NotRunning)?;
        let (leg, answer) = built?;
        let mut handle = media.add(leg);
        self.watch_mediator(call_id, mediator, &mut handle);
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        // The call's leg may have changed meanwhile (a reloaded page): join the current one.
        let host = slot.operator_leg.unwrap_or(host);
        if let Some(old) = slot.mediators.remove(&mediator) {
            media.leave(host, &old);
        }
        media.join(host, &handle, Audience::Everyone);
        slot.mediators.insert(mediator, handle);
        Ok(answer)
    }

    /// The mediator's page hears of its leg's media states (`phone_state`), as an operator's
    /// does of the call's leg: a task reads the leg's events, tells the page, and passes them on
    /// through the handle (whoever holds it later, the call's task after a hand-over, reads them).
    fn watch_mediator(&self, call_id: &str, mediator: i64, handle: &mut LegHandle) {
        let (forward, events) = mpsc::unbounded_channel();
        let mut from_leg = std::mem::replace(&mut handle.events, events);
        let (phone, call_id) = (self.clone(), call_id.to_owned());
        tokio::spawn(async move {
            while let Some(event) = from_leg.recv().await {
                let news = match &event {
                    LegEvent::State(MediaState::Connected) => Some((PhoneStatus::Connected, None)),
                    LegEvent::State(MediaState::Reconnecting) => Some((PhoneStatus::Reconnecting, None)),
                    LegEvent::State(MediaState::Failed(f)) => Some((PhoneStatus::Failed, Some(format!("{f:?}")))),
                    _ => None,
                };
                if let Some((status, reason)) = news {
                    let event = PhoneEvent { call_id: call_id.clone(), operator: mediator, status, reason };
                    if let Some(relay) = phone.0.relay.get() {
                        relay.report(&event);
                    }
                    phone.publish(event);
                }
                if forward.send(event).is_err() {
                    return;
                }
            }
        });
    }

    /// The mediator leaves the call (their leg hangs up; the caller and the operator go on).
    fn end_mediation_here(&self, call_id: &str, mediator: i64) -> Result<(), PhoneError> {
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        let admitted = slot.admitted.remove(&mediator);
        let Some(leg) = slot.mediators.remove(&mediator) else {
            return if admitted { Ok(()) } else { Err(PhoneError::NoMediator) };
        };
        if let (Some(media), Some(host)) = (self.0.media.get(), slot.operator_leg) {
            media.leave(host, &leg);
        }
        Ok(())
    }

    /// An answered call this node placed through the SIP trunk (an outside interpreter) joins
    /// the call: a party everyone hears and who hears everyone else (on the media thread, with
    /// the call's operator leg, or whichever leg carries it after a hand-over). The party's id,
    /// and a receiver that errs once the call is over on this node (its owner then hangs the
    /// trunk call up).
    pub fn join_trunk(&self, call_id: &str, sip: SipSide) -> Result<(u64, oneshot::Receiver<()>), PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?;
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        let party = media.join_trunk(host, sip);
        let (alive, over) = oneshot::channel();
        slot.trunk_parties.insert(party, alive);
        Ok((party, over))
    }

    /// The trunk call `party` leaves the call (the caller and the others go on).
    pub fn leave_trunk(&self, call_id: &str, party: u64) {
        let mut calls = self.calls();
        let Some(slot) = calls.get_mut(call_id) else { return };
        slot.trunk_parties.remove(&party);
        if let (Some(media), Some(host)) = (self.0.media.get(), slot.operator_leg) {
            media.leave_party(host, party);
        }
    }

    /// Whether `user` is a mediator on the call (on this node).
    pub fn mediating(&self, call_id: &str, user: i64) -> bool {
        self.calls().get(call_id).is_some_and(|s| s.mediators.contains_key(&user))
    }

    /// The operator leaves a call a mediator has joined, without ending it: a mediator's leg
    /// takes the call over on the media thread (the caller and the mediator go on hearing each
    /// other, and anyone else who joined), and becomes the call's leg for its control task. The
    /// mediator who now holds the call.
    fn operator_leaves_here(&self, call_id: &str) -> Result<i64, PhoneError> {
        let media = self.0.media.get().ok_or(PhoneError::NotRunning)?;
        let mut calls = self.calls();
        let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
        let host = slot.operator_leg.ok_or(PhoneError::NoOperatorLeg)?;
        let mediator = *slot.mediators.keys().min().ok_or(PhoneError::NoMediator)?;
        let Some(leg) = slot.mediators.remove(&mediator) else { return Err(PhoneError::NoMediator) };
        slot.admitted.remove(&mediator);
        // The media thread moves the call before the operator's leg, dropped by the call's
        // task when it takes the new one, hangs up (the commands keep their order).
        media.hand_over(host, &leg);
        slot.operator_leg = Some(leg.id());
        slot.operator = Some(mediator);
        slot.to_call.send(PhoneMsg::HandOver(leg)).map_err(|_| PhoneError::NoSuchCall)?;
        // A caller held during a consultation is back, with the colleague now.
        let _ = slot.to_call.send(PhoneMsg::Hold(false));
        Ok(mediator)
    }

    /// The caller is handed over to another queue: the call's control task on this node records
    /// the step (`HandedOver`) and puts the caller back on the hold audio; the operator's leg
    /// hangs up. `Ok(false)`: the step could not be recorded (nothing changed).
    async fn requeue_here(&self, call_id: &str, event: ivr::engine::Event) -> Result<bool, PhoneError> {
        let (reply, done) = oneshot::channel();
        {
            let mut calls = self.calls();
            let slot = calls.get_mut(call_id).ok_or(PhoneError::NoSuchCall)?;
            slot.to_call.send(PhoneMsg::Requeue { event, reply }).map_err(|_| PhoneError::NoSuchCall)?;
        }
        let recorded = done.await.unwrap_or(false);
        if recorded {
            // The next operator's page offers a leg of its own.
            if let Some(slot) = self.calls().get_mut(call_id) {
                slot.operator = None;
                slot.operator_leg = None;
            }
        }
        Ok(recorded)
    }

    /// Sends the call's control task a message; `false` when this node does not carry the call.
    pub fn tell(&self, call_id: &str, msg: PhoneMsg) -> bool {
        self.calls().get(call_id).is_some_and(|slot| slot.to_call.send(msg).is_ok())
    }

    /// The operator's page's request for its call, here or through the relay; `false` when no
    /// node can be asked (one node that does not carry the call, or the relay's write failed).
    pub async fn request(&self, call_id: &str, operator: i64, request: PageRequest) -> bool {
        if self.request_here(call_id, operator, &request) {
            return true;
        }
        let Some(relay) = self.0.relay.get() else { return false };
        let body = match request {
            PageRequest::Hold(on) => Relayed::Hold { on },
            PageRequest::Hangup => Relayed::Hangup,
            PageRequest::Failed(reason) => Relayed::PageFailed { reason },
        };
        match relay.tell(call_id, operator, body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, call_id, "a page's request was not relayed");
                false
            }
        }
    }

    /// A page's request (`operator`'s, on this node or relayed from another) for a call this
    /// node carries; `false` when it does not carry it.
    pub(super) fn request_here(&self, call_id: &str, operator: i64, request: &PageRequest) -> bool {
        if self.calls().get(call_id).is_some_and(|s| s.admitted.contains(&operator)) {
            // A mediator's page: ending is leaving (the others go on); hold and failures are
            // their own leg's business.
            if *request == PageRequest::Hangup {
                let _ = self.end_mediation_here(call_id, operator);
            }
            return true;
        }
        if self.calls().get(call_id).is_some_and(|s| s.operator.is_some_and(|o| o != operator)) {
            // The call has another operator now (handed over, or transferred): the page of the
            // one who left no longer speaks for it.
            return true;
        }
        let local = match request {
            PageRequest::Hold(on) => PhoneMsg::Hold(*on),
            PageRequest::Hangup => PhoneMsg::Hangup,
            PageRequest::Failed(reason) => PhoneMsg::PageFailed(reason.clone()),
        };
        self.tell(call_id, local)
    }

    /// A browser phone did not carry its call (`reason`: a short code for the metric).
    pub fn failed(&self, reason: &str) {
        self.0.metrics.browser_phone_failures.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Audio flows both ways, `since` the transfer began.
    pub fn connected_after(&self, since: Instant) {
        self.0.metrics.browser_connect.observe(since.elapsed().as_secs_f64());
    }

    /// The call's phone news, for the operator's pages (on this node, and through the relay on
    /// the others when the page is elsewhere).
    pub fn report(&self, call_id: &str, status: PhoneStatus, reason: Option<String>) {
        let (operator, mediators) = match self.calls().get(call_id) {
            Some(s) => (s.operator, s.admitted.iter().copied().collect::<Vec<_>>()),
            None => (None, Vec::new()),
        };
        if matches!(status, PhoneStatus::HungUp | PhoneStatus::Ended) {
            // The call is over for its mediators too (their pages are on this node's sockets
            // or, through the relay, elsewhere).
            for mediator in mediators {
                let event =
                    PhoneEvent { call_id: call_id.to_owned(), operator: mediator, status, reason: reason.clone() };
                if let Some(relay) = self.0.relay.get() {
                    relay.report(&event);
                }
                self.publish(event);
            }
        }
        self.journal(call_id, operator, status.step(), reason.as_deref());
        if let Some(operator) = operator {
            let event = PhoneEvent { call_id: call_id.to_owned(), operator, status, reason };
            if let Some(relay) = self.0.relay.get() {
                relay.report(&event);
            }
            self.publish(event);
        }
    }

    /// Hands a call's phone news to this node's sockets.
    pub(super) fn publish(&self, event: PhoneEvent) {
        let _ = self.0.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PhoneEvent> {
        self.0.events.subscribe()
    }
}

/// The SIP address a call is transferred to when its operator answers in the browser:
/// `sip:op-<user>@<host>;token=<token>` (the user name percent-encoded where it is not a plain
/// URI character).
pub fn browser_target(user: &str, host: SocketAddr, token: &str) -> String {
    let mut encoded = String::new();
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("sip:{OPERATOR_PREFIX}{encoded}@{host};token={token}")
}

/// Whether a transfer target is a browser operator's address ([`browser_target`]).
pub fn is_browser_target(target: &str) -> bool {
    target.strip_prefix("sip:").is_some_and(|rest| rest.starts_with(OPERATOR_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_targets_name_the_operator_and_are_recognised() {
        let host = SocketAddr::from(([192, 0, 2, 1], 5080));
        let t = browser_target("anna.rossi", host, "t0k");
        assert_eq!(t, "sip:op-anna.rossi@192.0.2.1:5080;token=t0k");
        assert!(is_browser_target(&t));
        assert_eq!(browser_target("zoë", host, "x"), "sip:op-zo%C3%AB@192.0.2.1:5080;token=x");
        assert!(!is_browser_target("sip:101@pbx.example.org"));
        assert!(!is_browser_target("tel:+390612345678"));
    }
}
