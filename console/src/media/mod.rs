//! The media of calls bridged to an operator's browser: the browser's WebRTC leg, on the server.
//!
//! - `webrtc.rs`: [`WebRtcLeg`], the server's end of one browser's connection (ICE-lite,
//!   DTLS-SRTP, RTCP, G.711 only) as a sans-IO state machine over str0m: offer in, answer out,
//!   datagrams and time in, datagrams, timeouts and events out;
//! - `driver.rs`: [`WebRtcMedia`], the one UDP socket every leg uses and the thread that runs
//!   the legs (off the request runtime, as the SIP media clock is), and bridges a leg to its
//!   call's SIP RTP there;
//! - `strict.rs`: strict RTP, whose packets are a SIP call's media (used by the SIP adapter's
//!   receive task, and by the bridge while the media thread reads the call's socket);
//! - `mixer.rs`: [`Mixer`], what each party of a call with more than two hears (the sum of the
//!   others, never its own voice), on the media clock's 20 ms grid;
//! - `phone.rs`: [`Phone`], where a call's SIP side (registered by the SIP adapter) meets its
//!   operator's page (offers, hold, hang-up, media state, through the console socket);
//! - `journal.rs`: [`Journal`], the media steps of each call (connecting, connected,
//!   reconnecting, ICE restart, failed, ended) written to its timeline (`call_media`);
//! - `relay.rs`: [`Relay`], the same between a page on one node and a call's media on another
//!   (PostgreSQL), through the database.
//!
//! The packet rewriting between a call's two legs is pure protocol code and lives in
//! `ivr::rtp::Bridge` (docs/media.md).

mod driver;
pub mod journal;
mod mixer;
mod phone;
mod relay;
pub mod strict;
mod webrtc;

pub use driver::{LegHandle, RecordedAudio, SipSide, WebRtcMedia};
pub use journal::{Journal, MediaStep};
pub use mixer::{Audience, Mixed, Mixer, MixerError, PartyConfig, PartyId};
pub use phone::{
    browser_target, is_browser_target, CallControl, CallbackClaim, InterpreterDesk, MonitorMode, PageRequest, Phone,
    PhoneError, PhoneEvent, PhoneMsg, PhoneStatus, RecordingKeeper,
};
pub use relay::Relay;
pub use webrtc::{
    Failure, LegConfig, LegEvent, LegOutput, LegQuality, MediaState, ReceivedRtp, WebRtcError, WebRtcLeg,
};

#[cfg(test)]
mod tests;
