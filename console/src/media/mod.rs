//! The media of calls bridged to an operator's browser: the browser's WebRTC leg, on the server.
//!
//! - `webrtc.rs`: [`WebRtcLeg`], the server's end of one browser's connection (ICE-lite,
//!   DTLS-SRTP, RTCP, G.711 only) as a sans-IO state machine over str0m: offer in, answer out,
//!   datagrams and time in, datagrams, timeouts and events out;
//! - `driver.rs`: [`WebRtcMedia`], the one UDP socket every leg uses and the thread that runs
//!   the legs (off the request runtime, as the SIP media clock is).
//!
//! The packet rewriting between a call's two legs is pure protocol code and lives in
//! `ivr::rtp::Bridge` (docs/media.md).

mod driver;
mod webrtc;

pub use driver::{LegHandle, WebRtcMedia};
pub use webrtc::{Failure, LegConfig, LegEvent, LegOutput, MediaState, ReceivedRtp, WebRtcError, WebRtcLeg};

#[cfg(test)]
mod tests;
