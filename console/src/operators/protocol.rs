//! The operator console's websocket protocol (`GET /ws`), typed: what the page sends
//! ([`ClientMessage`]) and what the server sends ([`ServerMessage`]). Every frame is a JSON text
//! frame, an object whose `type` names the variant; unknown fields are ignored.
//!
//! This module is the source of truth; `docs/console-protocol.md` describes it, and a test
//! checks that the document's message tables list exactly the `type`s of these enums (the names
//! are asked of serde itself, [`type_names`]), the `seq?` column matches [`STORED`], and its
//! error codes are exactly [`ErrorCode`]'s.
//!
//! The messages the hub stores (`console_messages`, see [`STORED`]) are written as their JSON
//! without `type` (the table's `kind` column holds it) and sent as a [`Frame`] with their `seq`.

use crate::db::users::Role;
use crate::directory::http::{area_counts, ServiceHit};
use crate::directory::{SearchParams, SearchResponse};
pub use crate::media::PhoneStatus;
use crate::operators::config::Disposition;
use crate::operators::presence::PresenceState;
use ivr::domain::{Language, ServiceArea};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A request's tag, chosen by the page (the page sends strings; any JSON value is echoed back as
/// it came) and echoed in the answer: `saved`, `pong`, `error`.
pub type Ref = serde_json::Value;

/// A time on the wire: RFC 3339 in UTC with milliseconds, `2026-11-24T09:00:00.000Z`
/// ([`crate::clock::rfc3339`]).
pub type Time = String;

// ------------------------------------------------------------------------------------------------
// Page → server
// ------------------------------------------------------------------------------------------------

/// What the page sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message on every connection: the newest `seq` the page has seen (0 on its first
    /// connection).
    Hello {
        #[serde(default)]
        last_seq: i64,
    },
    /// Change my presence (`paused` needs a `reason`, 1 to 100 characters).
    Presence {
        state: PresenceChoice,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Take the offered call, answering it on `device` (default: the browser for an operator
    /// without a SIP target, their phone otherwise).
    Accept {
        offer_id: i64,
        #[serde(default)]
        device: Option<Device>,
    },
    /// Refuse it (counts as missed: the call goes to the next operator, I am paused).
    Decline { offer_id: i64 },
    /// Search the directory; a newer `qseq` cancels older ones.
    Search(Search),
    /// Save my note on a call (last write wins).
    Note { r#ref: Ref, call_id: String, text: String },
    /// A service given to the caller (`add: false` takes it back).
    Referral { r#ref: Ref, call_id: String, service_id: String, add: bool },
    /// How the call ended: a code from `config/console.toml`.
    Disposition { r#ref: Ref, call_id: String, code: String },
    /// The conversation is over: wrap-up.
    EndCall { call_id: String },
    /// End wrap-up early: available.
    Ready,
    /// Answered by `pong`.
    Ping {
        #[serde(default)]
        r#ref: Option<Ref>,
    },
    /// The browser phone's SDP offer for my call's audio, answered by `phone_answer`; `restart`
    /// when it comes from the same peer connection as before (an ICE restart after the page's
    /// connection came back), otherwise a new connection (a reloaded page).
    PhoneOffer {
        call_id: String,
        sdp: String,
        #[serde(default)]
        restart: bool,
    },
    /// The page cannot be the phone of my call (`reason`, 1 to 100 characters: the microphone was
    /// refused or is missing): the caller goes back to the queue at once.
    PhoneFailed { call_id: String, reason: String },
    /// Hold my browser call (the caller hears the hold audio) or take it back.
    Hold { call_id: String, on: bool },
}

/// Where an operator answers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The console page is the phone (WebRTC; the server carries the media).
    Browser,
    /// The operator's SIP target (a desk phone or softphone).
    Phone,
}

/// The presence states an operator may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChoice {
    Available,
    Paused,
    Offline,
}

/// `search`: the parameters of `GET /api/services/search` (but `per_page`) and the page's
/// sequence number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub qseq: u64,
    #[serde(default)]
    pub q: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// A CAP, a comune or `lat,lon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_km: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_now: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl Search {
    /// The directory search it asks for (validated by [`SearchParams::query`]).
    pub fn params(&self) -> SearchParams {
        SearchParams {
            q: self.q.clone(),
            area: self.area.clone(),
            lang: self.lang.clone(),
            near: self.near.clone(),
            radius_km: self.radius_km,
            open_now: self.open_now.unwrap_or(false),
            page: self.page.map(u64::from),
            per_page: None,
        }
    }
}

impl ClientMessage {
    /// Every `type` the page may send.
    pub fn types() -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(type_names::<ClientMessage>)
    }
}

// ------------------------------------------------------------------------------------------------
// Server → page
// ------------------------------------------------------------------------------------------------

/// What the server sends. The [`STORED`] ones go through the hub (`console_messages`) and are
/// sent as a [`Frame`] with their `seq`; the others answer the page's own requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`: a snapshot of everything the page shows (boxed: the largest by far).
    Welcome(Box<Welcome>),
    /// An operator's presence changed (to the operator and to supervisors).
    Presence { operator: OperatorStatus },
    /// The whole waiting list, when it changed.
    Queue { calls: Vec<QueuedCall> },
    /// A call offered to me.
    Offer(Offer),
    /// My offer is gone.
    OfferWithdrawn { offer_id: i64, call_id: String, reason: WithdrawReason },
    /// My call: connected, the transfer failed, or ended.
    Call(CallUpdate),
    /// Wrap-up until `until`.
    WrapUp { call_id: String, until: Time },
    /// The answer to `search`.
    SearchResults(SearchResults),
    /// A note, referral or disposition is stored.
    Saved { r#ref: Ref, what: SavedWhat, at: Time },
    /// The answer to `ping`.
    Pong { r#ref: Option<Ref> },
    /// A request refused; the socket stays open.
    Error(ErrorMessage),
    /// The server's SDP answer to `phone_offer` (ICE-lite: its one candidate is in it).
    PhoneAnswer { call_id: String, sdp: String },
    /// An operator asks me, a mediator, to join their call (with its screen-pop).
    MediationOffer(MediationOffer),
    /// A mediator or consulted colleague on my call (or my mediation): invited, joined,
    /// declined, left, or the operator left the call to them (`holds`).
    Mediation { call_id: String, kind: MediationKind, operator: String, mediator: String, state: MediationState },
    /// My browser call's media: `connecting`, `connected`, `reconnecting`, `failed` (the caller
    /// is back in the queue; `reason` says why), `hung_up` (the caller hung up), `ended`.
    PhoneState {
        call_id: String,
        state: PhoneStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An outside interpreter dialled into my call through the trunk: `dialling`, `joined`, or
    /// `left` with `why` (`ended`: they hung up, `hung_up`: I hung them up, `call_over`, or why
    /// the dial failed: `busy`, `no_answer`, `refused`, `unreachable`, …).
    Interpreter {
        call_id: String,
        state: InterpreterState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
}

/// The `type`s of the [`ServerMessage`]s the hub stores and sends with a `seq`.
pub const STORED: [&str; 9] =
    ["presence", "queue", "offer", "offer_withdrawn", "call", "wrap_up", "mediation_offer", "mediation", "interpreter"];

impl ServerMessage {
    /// Every `type` the server may send.
    pub fn types() -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(type_names::<ServerMessage>)
    }

    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl std::fmt::Display, r#ref: Option<Ref>) -> ServerMessage {
        ServerMessage::Error(ErrorMessage { code, message: message.to_string(), r#ref, qseq: None })
    }

    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        to_text(self)
    }
}

/// A server message as a frame: with its `seq` when the hub stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl Frame {
    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        to_text(self)
    }
}

/// Serializing these types cannot fail (no map has keys that are not strings); should it ever,
/// the page gets an `internal` error rather than nothing.
fn to_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a console message did not serialize");
        r#"{"type":"error","code":"internal","message":"the server could not write a message","ref":null}"#.to_owned()
    })
}

/// `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub user: WelcomeUser,
    /// My presence (as in `presence.operator`).
    pub presence: Option<OperatorStatus>,
    /// The newest `seq` now: live messages follow it.
    pub last_seq: i64,
    /// As `queue.calls`.
    pub queue: Vec<QueuedCall>,
    /// Everyone's presence, for supervisors (null for operators).
    pub operators: Option<Vec<OperatorStatus>>,
    /// My open offer.
    pub offer: Option<Offer>,
    /// My current call (`connected`, or `ended` in wrap-up).
    pub call: Option<CallUpdate>,
    /// As `GET /api/console/config`.
    pub config: PageConfig,
}

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WelcomeUser {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub languages: Vec<Language>,
    pub areas: Vec<ServiceArea>,
    /// Whether I have a SIP target (then I may answer on that phone instead of the browser).
    #[serde(default)]
    pub sip_phone: bool,
}

/// What the page needs to draw itself: `welcome.config` and `GET /api/console/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageConfig {
    pub dispositions: Vec<Disposition>,
    pub wrap_up_secs: u32,
    pub offer_timeout_secs: u32,
    pub areas: Vec<ServiceArea>,
    pub languages: Vec<Language>,
    /// The browser phone's ICE servers (`HELPLINE_TURN_URLS` and its credentials), as
    /// `RTCPeerConnection` takes them; empty without TURN.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl PageConfig {
    pub fn new(c: &super::config::ConsoleConfig, settings: &crate::config::Settings) -> PageConfig {
        let urls = settings.turn_url_list();
        let ice_servers = if urls.is_empty() {
            Vec::new()
        } else {
            let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            vec![IceServer {
                urls,
                username: some(&settings.turn_username),
                credential: some(settings.turn_password.expose()),
            }]
        };
        PageConfig {
            dispositions: c.dispositions.clone(),
            wrap_up_secs: c.wrap_up_secs,
            offer_timeout_secs: c.acd.offer_timeout_secs,
            areas: ServiceArea::ALL.to_vec(),
            languages: Language::all(),
            ice_servers,
        }
    }
}

/// One operator's presence (`presence.operator`, `welcome.presence`, `GET /api/operators`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorStatus {
    pub id: i64,
    pub name: String,
    pub state: PresenceState,
    pub reason: Option<String>,
    pub since: Time,
    pub call_id: Option<String>,
    pub wrap_up_until: Option<Time>,
}

/// A waiting call in `queue.calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedCall {
    pub call_id: String,
    pub language: String,
    pub area: Option<String>,
    pub town: Option<String>,
    pub priority: i64,
    pub entered_at: Time,
    pub status: QueueStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    Waiting,
    /// An operator has an open offer for it.
    Offered,
}

/// `offer` (and `welcome.offer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub offer_id: i64,
    pub call_id: String,
    #[serde(rename = "match")]
    pub matched: OfferMatch,
    pub expires_at: Time,
    pub pop: Option<ScreenPop>,
}

/// `mediation_offer`: join this call as its mediator ("join as mediator"), or to be consulted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediationOffer {
    pub call_id: String,
    pub kind: MediationKind,
    /// The operator who asks.
    pub operator: String,
    /// The caller's language, when known.
    pub language: Option<String>,
    pub pop: Option<ScreenPop>,
}

/// Who the third person on a call is (`mediations.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediationKind {
    /// An intercultural mediator: a three-way call.
    Mediator,
    /// A colleague the operator consults, the caller on hold: the warm transfer.
    Consult,
}

impl MediationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediationKind::Mediator => "mediator",
            MediationKind::Consult => "consult",
        }
    }

    pub fn parse(s: &str) -> Option<MediationKind> {
        [MediationKind::Mediator, MediationKind::Consult].into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a mediation stands (`mediation.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediationState {
    Invited,
    Joined,
    Declined,
    Left,
    /// The operator left: the mediator holds the call (and ends it).
    Holds,
}

/// An outside interpreter's call (`interpreter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpreterState {
    /// Dialled through the trunk, not answered yet.
    Dialling,
    /// Answered: on the call, heard by everyone.
    Joined,
    /// Over (`why`).
    Left,
}

/// How the call matched the operator (stored as `offers.match_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferMatch {
    /// Language and area.
    Full,
    /// Language only (the area was dropped after waiting).
    Language,
    /// A mediator, after the fallback wait.
    Fallback,
}

impl OfferMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferMatch::Full => "full",
            OfferMatch::Language => "language",
            OfferMatch::Fallback => "fallback",
        }
    }

    pub fn parse(s: &str) -> Option<OfferMatch> {
        [OfferMatch::Full, OfferMatch::Language, OfferMatch::Fallback].into_iter().find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    Expired,
    Declined,
    /// Another operator took the call.
    Taken,
    /// The caller hung up.
    Abandoned,
}

/// `call` (and `welcome.call`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallUpdate {
    pub call_id: String,
    pub state: CallState,
    /// With `connected` from an accepted offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<i64>,
    /// With `connected`: where I answer it (`browser`: the page connects its phone at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Null for `ended`.
    pub pop: Option<ScreenPop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Connected,
    TransferFailed,
    Ended,
}

/// The screen-pop: what an operator sees of a call (`super::pop`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenPop {
    pub call_id: String,
    pub channel: String,
    pub language: Option<String>,
    pub language_guessed: bool,
    pub area: Option<String>,
    pub cap: Option<String>,
    pub town: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub masked_number: Option<String>,
    pub waited_secs: Option<i64>,
    pub entered_queue_at: Option<Time>,
    /// The call's path through the menus.
    pub path: Vec<PathStep>,
    /// Earlier calls from the same number (by its keyed hash).
    pub previous: PreviousCalls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStep {
    pub at: Time,
    pub kind: String,
    /// Short and number-free.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviousCalls {
    pub calls: i64,
    pub last_at: Option<Time>,
    pub notes: Vec<PreviousNote>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousNote {
    pub at: Time,
    pub operator: String,
    pub text: String,
}

/// `search_results`: built from the same [`SearchResponse`] as `GET /api/services/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub qseq: u64,
    pub total: usize,
    /// Per area, the services matching every other filter.
    pub counts: BTreeMap<ServiceArea, usize>,
    /// As the HTTP search's `contents`.
    pub results: Vec<ServiceHit>,
    pub page: usize,
    pub total_pages: usize,
}

impl SearchResults {
    pub fn new(qseq: u64, r: &SearchResponse) -> SearchResults {
        SearchResults {
            qseq,
            total: r.total,
            counts: area_counts(r),
            results: r.hits.iter().map(ServiceHit::new).collect(),
            page: r.page,
            total_pages: r.total_pages,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedWhat {
    Note,
    Referral,
    Disposition,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: ErrorCode,
    pub message: String,
    /// The refused request's `ref` (null when it had none).
    #[serde(default)]
    pub r#ref: Option<Ref>,
    /// A search that could not run (`bad_search`, `internal`): its `qseq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qseq: Option<u64>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, no `type`, wrong or missing fields.
    BadMessage,
    UnknownType,
    /// Anything but `hello` or `ping` before `hello`.
    HelloFirst,
    /// Expired, withdrawn or taken.
    OfferGone,
    NotYourOffer,
    /// The operator has no `sip_target`.
    NoTarget,
    /// A presence change while offered or on a call.
    Busy,
    NotYourCall,
    UnknownDisposition,
    UnknownService,
    /// Carries `qseq`.
    BadSearch,
    /// More frames than the socket's rate: this one was not processed (a search's carries `qseq`).
    RateLimited,
    /// A phone message for a call this server does not carry in a browser (or no longer).
    PhoneUnavailable,
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub fn names() -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(type_names::<ErrorCode>)
    }
}

// ------------------------------------------------------------------------------------------------
// Names, from the types
// ------------------------------------------------------------------------------------------------

/// The names serde knows for `T`'s variants: the `type`s of a `#[serde(tag = "type")]` enum, or
/// the variants of a plain enum — renames applied, in declaration order. Asked for a name that no
/// variant has, serde's derived code answers `unknown_variant(name, expected)` with the list; an
/// error type of our own keeps it. So a variant added is a name listed, without a list to keep.
pub fn type_names<T: DeserializeOwned>() -> Vec<&'static str> {
    use serde::de::value::{MapDeserializer, StrDeserializer};

    #[derive(Debug)]
    struct Expected(Vec<&'static str>);

    impl std::fmt::Display for Expected {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "expected one of {:?}", self.0)
        }
    }

    impl std::error::Error for Expected {}

    impl serde::de::Error for Expected {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Expected(Vec::new())
        }

        fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
            Expected(expected.to_vec())
        }
    }

    const NO_SUCH: &str = "\u{0}no such variant";
    // An internally tagged enum reads a map and its `type`.
    if let Err(Expected(names)) =
        T::deserialize(MapDeserializer::<_, Expected>::new(std::iter::once(("type", NO_SUCH))))
    {
        if !names.is_empty() {
            return names;
        }
    }
    // A plain enum reads a string.
    match T::deserialize(StrDeserializer::<Expected>::new(NO_SUCH)) {
        Err(Expected(names)) => names,
        Ok(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    /// [`type_names`] gives what serde writes: a sample's `type` is among the names, which come
    /// in declaration order, none twice.
    #[test]
    fn the_names_are_the_types_serde_writes() {
        fn check<T: Serialize + DeserializeOwned>(names: &[&str], samples: &[T], first: &str) {
            assert_eq!(names.first(), Some(&first), "{names:?}");
            assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "{names:?}");
            for sample in samples {
                let v = serde_json::to_value(sample).unwrap();
                let name = v.get("type").unwrap_or(&v).as_str().unwrap().to_owned();
                assert!(names.contains(&name.as_str()), "{name} not in {names:?}");
            }
        }
        let end_call = ClientMessage::EndCall { call_id: "c".into() };
        check(ClientMessage::types(), &[end_call, ClientMessage::Ready], "hello");
        let withdrawn =
            ServerMessage::OfferWithdrawn { offer_id: 1, call_id: "c".into(), reason: WithdrawReason::Taken };
        check(ServerMessage::types(), &[withdrawn, ServerMessage::Pong { r#ref: None }], "welcome");
        check(ErrorCode::names(), &[ErrorCode::BadSearch, ErrorCode::NotYourCall], "bad_message");
        for stored in STORED {
            assert!(ServerMessage::types().contains(&stored), "{stored}");
        }
    }

    #[test]
    fn page_frames_read_as_the_page_writes_them() {
        let read = |v: Value| serde_json::from_value::<ClientMessage>(v).unwrap();
        assert_eq!(read(json!({"type": "hello"})), ClientMessage::Hello { last_seq: 0 });
        assert_eq!(read(json!({"type": "ready", "ref": "r1"})), ClientMessage::Ready, "unknown fields are ignored");
        assert_eq!(read(json!({"type": "ping", "ref": 7})), ClientMessage::Ping { r#ref: Some(json!(7)) });
        assert_eq!(
            read(json!({"type": "presence", "state": "paused", "reason": "coffee"})),
            ClientMessage::Presence { state: PresenceChoice::Paused, reason: Some("coffee".into()) }
        );
        assert_eq!(
            read(json!({"type": "search", "qseq": 3, "q": "casa", "near": "22100", "radius_km": 5, "open_now": true})),
            ClientMessage::Search(Search {
                qseq: 3,
                q: "casa".into(),
                near: Some("22100".into()),
                radius_km: Some(5.0),
                open_now: Some(true),
                ..Search::default()
            })
        );
        let note = ClientMessage::Note { r#ref: json!("n1"), call_id: "c".into(), text: "t".into() };
        assert_eq!(
            serde_json::to_value(&note).unwrap(),
            json!({"type": "note", "ref": "n1", "call_id": "c", "text": "t"})
        );
        assert!(serde_json::from_value::<ClientMessage>(json!({"type": "note", "call_id": "c", "text": "t"})).is_err());
    }

    #[test]
    fn server_frames_keep_their_shapes() {
        let error = ServerMessage::error(ErrorCode::HelloFirst, "send hello first", None);
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"type": "error", "code": "hello_first", "message": "send hello first", "ref": null})
        );
        let withdrawn = Frame {
            seq: Some(9),
            message: ServerMessage::OfferWithdrawn { offer_id: 1, call_id: "c".into(), reason: WithdrawReason::Taken },
        };
        let text = withdrawn.to_text();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"type": "offer_withdrawn", "seq": 9, "offer_id": 1, "call_id": "c", "reason": "taken"})
        );
        assert_eq!(serde_json::from_str::<Frame>(&text).unwrap(), withdrawn);
        let ended = ServerMessage::Call(CallUpdate {
            call_id: "c".into(),
            state: CallState::Ended,
            offer_id: None,
            device: None,
            pop: None,
        });
        assert_eq!(
            serde_json::to_value(&ended).unwrap(),
            json!({"type": "call", "call_id": "c", "state": "ended", "pop": null}),
            "offer_id only with connected"
        );
        let reply: Frame = serde_json::from_str(r#"{"type":"pong","ref":"p"}"#).unwrap();
        assert_eq!(reply, Frame { seq: None, message: ServerMessage::Pong { r#ref: Some(json!("p")) } });
    }

    /// The page's ICE servers are the TURN settings (none without `turn_urls`), and the browser
    /// phone's messages keep their shapes.
    #[test]
    fn the_phone_config_and_messages() {
        let console = crate::operators::config::ConsoleConfig::default();
        let mut settings = crate::config::Settings::default();
        assert!(PageConfig::new(&console, &settings).ice_servers.is_empty());
        settings.turn_urls = "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349".into();
        settings.turn_username = "helpline".into();
        settings.turn_password = crate::config::SecretString::new("s3cret");
        let config = serde_json::to_value(PageConfig::new(&console, &settings)).unwrap();
        assert_eq!(
            config["ice_servers"],
            json!([{
                "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                "username": "helpline",
                "credential": "s3cret"
            }])
        );
        let read = |v: Value| serde_json::from_value::<ClientMessage>(v).unwrap();
        assert_eq!(
            read(json!({"type": "phone_offer", "call_id": "c", "sdp": "v=0"})),
            ClientMessage::PhoneOffer { call_id: "c".into(), sdp: "v=0".into(), restart: false }
        );
        assert_eq!(
            read(json!({"type": "accept", "offer_id": 3, "device": "browser"})),
            ClientMessage::Accept { offer_id: 3, device: Some(Device::Browser) }
        );
        assert_eq!(read(json!({"type": "accept", "offer_id": 3})), ClientMessage::Accept { offer_id: 3, device: None });
        let state = ServerMessage::PhoneState { call_id: "c".into(), state: PhoneStatus::HungUp, reason: None };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"type": "phone_state", "call_id": "c", "state": "hung_up"})
        );
    }

    /// The rows of the markdown table under `heading`: its cells, trimmed.
    fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
        let section = doc.split_once(heading).unwrap_or_else(|| panic!("no {heading:?} in the document")).1;
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // header and separator
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
            .collect()
    }

    fn code(cell: &str) -> String {
        cell.trim_matches('`').to_owned()
    }

    fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        names.into_iter().map(str::to_owned).collect()
    }

    /// `docs/console-protocol.md` lists exactly the messages of the types (both ways), says
    /// which carry a `seq` as [`STORED`] does, and lists exactly the error codes.
    #[test]
    fn the_protocol_document_lists_every_message_and_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console-protocol.md");
        let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));

        let page: BTreeSet<String> = table(&doc, "### Page → server").iter().map(|r| code(&r[0])).collect();
        assert_eq!(page, set(ClientMessage::types().iter().copied()), "Page → server in {path} vs ClientMessage");

        let rows = table(&doc, "### Server → page");
        let server: BTreeSet<String> = rows.iter().map(|r| code(&r[0])).collect();
        assert_eq!(server, set(ServerMessage::types().iter().copied()), "Server → page in {path} vs ServerMessage");
        for row in &rows {
            let name = code(&row[0]);
            assert_eq!(row[1] == "yes", STORED.contains(&name.as_str()), "the seq? of {name} in {path} vs STORED");
        }

        // "Codes: `bad_message` (…), `unknown_type`, …" — the names outside parentheses.
        let paragraph = doc.split_once("Codes: ").expect("the error codes").1.split("\n\n").next().unwrap_or("");
        let mut outside = String::new();
        let mut depth = 0;
        for c in paragraph.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                c if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        let codes: BTreeSet<String> = outside.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        assert_eq!(codes, set(ErrorCode::names().iter().copied()), "the error codes in {path} vs ErrorCode");
    }
}
