//! The operator's browser leg of a call, as a sans-IO state machine over str0m: an SDP offer in,
//! an answer out; then received UDP datagrams and the time in, datagrams to send, the next
//! timeout and media events out. No socket, no thread, no clock read: the driver
//! (`driver.rs`) or a test supplies them, so every rule here is tested with datagrams in memory
//! and a clock moved by hand.
//!
//! The leg is what a media server's end of a WebRTC call should be: **ICE-lite** (the server has
//! one public address and never checks connectivity itself; the browser does, and nominates),
//! **DTLS-SRTP** with a certificate per leg, RTCP sender and receiver reports (str0m's), and
//! **G.711 only** — exactly the law of the call's other leg, so the bridge (`ivr::rtp::Bridge`)
//! forwards packets without transcoding — with RFC 4733 telephone-events at 8 kHz. str0m runs in
//! RTP mode: packets go in and out with their own sequence numbers and timestamps, which the
//! bridge owns.
//!
//! A leg that is not connected (ICE and DTLS) within `connect_timeout` of the answer, or that
//! loses the browser (no ICE binding request for 15 s, str0m's ICE-lite rule: a closed tab, a
//! dead network) and does not get it back within `reconnect_timeout`, **fails**: it reports `MediaState::Failed` once and goes
//! quiet. The call's owner must then put the caller back in the queue.

use ivr::rtp::{Forward, LegPayloads, RtpHeader};
use ivr::sdp::Codec;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::format::{Codec as RtcCodec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// The telephone-event payload type we offer to map; the answer uses the browser's own.
const TELEPHONE_EVENT_PT: u8 = 101;

/// How a leg is set up.
#[derive(Debug, Clone, Copy)]
pub struct LegConfig {
    /// The G.711 law of the call's other leg: the only audio codec this leg accepts.
    pub codec: Codec,
    /// The address announced as the leg's one ICE candidate: the media socket's address, or the
    /// public address in front of it (NAT). Datagrams are fed to the leg as sent to it.
    pub candidate: SocketAddr,
    /// ICE and DTLS must be done within this long of the answer.
    pub connect_timeout: Duration,
    /// A connected leg that lost the browser must have it back within this long.
    pub reconnect_timeout: Duration,
    /// How often the leg reports its quality ([`LegEvent::Quality`]).
    pub stats_interval: Duration,
}

impl LegConfig {
    pub fn new(codec: Codec, candidate: SocketAddr) -> LegConfig {
        LegConfig {
            codec,
            candidate,
            connect_timeout: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(5),
        }
    }
}

/// Why an offer gets no answer.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("the offer is not valid SDP: {0}")]
    BadOffer(String),
    #[error("the offer cannot be accepted: {0}")]
    Rejected(#[from] str0m::RtcError),
    #[error("the offer has no audio")]
    NoAudio,
    #[error("the offer has no {0:?} audio (the call's other leg uses it, and the bridge does not transcode)")]
    NoCommonCodec(Codec),
    #[error("the media address {0} cannot be an ICE candidate")]
    Candidate(SocketAddr),
    #[error("the leg has ended")]
    Ended,
}

/// Why a leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// ICE or DTLS did not complete in time (no browser, blocked UDP, bad fingerprint…).
    ConnectTimeout,
    /// The browser went away (ICE consent lost) and did not come back in time.
    ConnectionLost,
    /// The peer sent something the WebRTC stack could not accept.
    Protocol,
}

/// Where the leg's media stands: what the operator's page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaState {
    Connecting,
    Connected,
    Reconnecting,
    Failed(Failure),
    /// Closed by us or by the browser (DTLS close).
    Closed,
}

impl MediaState {
    fn is_over(self) -> bool {
        matches!(self, MediaState::Failed(_) | MediaState::Closed)
    }
}

/// A packet from the browser, ready for the bridge.
#[derive(Debug, Clone)]
pub struct ReceivedRtp {
    pub header: RtpHeader,
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
}

/// What the leg tells its owner.
#[derive(Debug, Clone)]
pub enum LegEvent {
    State(MediaState),
    Rtp(ReceivedRtp),
    /// The leg's RTCP-derived quality, every [`LegConfig::stats_interval`].
    Quality(LegQuality),
}

/// One direction of a leg's quality, from RTCP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegQuality {
    /// `true`: what the leg sends, as the browser's receiver reports tell; `false`: what it
    /// receives, as measured here.
    pub to_browser: bool,
    /// Fraction lost since the previous report, if a report came.
    pub loss: Option<f32>,
    /// Interarrival jitter (RFC 3550 §6.4.1).
    pub jitter: Duration,
}

/// What to do next, from [`WebRtcLeg::poll_output`].
#[derive(Debug)]
pub enum LegOutput {
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    Event(LegEvent),
    /// Nothing more until this instant, a datagram or a send: call `handle_timeout` then.
    Timeout(Instant),
}

/// One crypto provider for every leg (RustCrypto's, through str0m's feature flag).
pub(super) fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags())).clone()
}

/// The server's end of one browser's WebRTC connection.
pub struct WebRtcLeg {
    rtc: Rtc,
    mid: Mid,
    candidate: SocketAddr,
    payloads: LegPayloads,
    tx_ssrc: u32,
    config: LegConfig,
    state: MediaState,
    /// When the leg fails unless it (re)connects first.
    deadline: Option<Instant>,
    rtc_timeout: Instant,
    pending: VecDeque<LegOutput>,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("mid", &self.mid)
            .field("payloads", &self.payloads)
            .field("state", &self.state)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl WebRtcLeg {
    /// Answers a browser's offer: the leg, and the SDP answer to send back.
    pub fn accept_offer(offer: &str, config: LegConfig, now: Instant) -> Result<(WebRtcLeg, String), WebRtcError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let mut builder =
            Rtc::builder().set_crypto_provider(crypto()).set_ice_lite(true).set_rtp_mode(true).clear_codecs();
        builder = builder.set_stats_interval(Some(config.stats_interval));
        let codecs = builder.codec_config();
        match config.codec {
            Codec::Pcmu => codecs.enable_pcmu(true, false),
            Codec::Pcma => codecs.enable_pcma(true, false),
        }
        codecs.add_config(
            TELEPHONE_EVENT_PT.into(),
            None,
            RtcCodec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::parse_line("0-15"),
        );
        let mut rtc = builder.build(now);
        let candidate =
            Candidate::host(config.candidate, "udp").map_err(|_| WebRtcError::Candidate(config.candidate))?;
        rtc.add_local_candidate(candidate).ok_or(WebRtcError::Candidate(config.candidate))?;
        let offered: Vec<Mid> = offer.media_lines.iter().map(|m| m.mid()).collect();
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let mut pending = VecDeque::new();
        let rtc_timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => pending
                    .push_back(LegOutput::Transmit { destination: t.destination, contents: Vec::from(t.contents) }),
                Output::Event(_) => {}
            }
        };
        // The offer's first audio stream (a browser's phone has one).
        let mid = offered
            .into_iter()
            .find(|mid| rtc.media(*mid).is_some_and(|m| m.kind() == MediaKind::Audio))
            .ok_or(WebRtcError::NoAudio)?;
        let payloads = negotiated(&rtc, mid, config.codec).ok_or(WebRtcError::NoCommonCodec(config.codec))?;
        let tx_ssrc = rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| *s.ssrc())
            .ok_or(WebRtcError::NoCommonCodec(config.codec))?;
        let leg = WebRtcLeg {
            rtc,
            mid,
            candidate: config.candidate,
            payloads,
            tx_ssrc,
            config,
            state: MediaState::Connecting,
            deadline: Some(now + config.connect_timeout),
            rtc_timeout,
            pending,
        };
        Ok((leg, answer.to_sdp_string()))
    }

    /// A new offer from the same browser — an ICE restart after the page's connection came
    /// back, a direction change — answered on the same leg: DTLS, SRTP and the streams go on, so
    /// the bridge sees no discontinuity. A reconnect deadline still runs: the restart must
    /// complete before it. The offer must still carry the call's law.
    pub fn accept_reoffer(&mut self, offer: &str, now: Instant) -> Result<String, WebRtcError> {
        if self.state.is_over() {
            return Err(WebRtcError::Ended);
        }
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let answer = match self.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => answer,
            Err(e) => {
                self.after(Ok(()), now);
                return Err(e.into());
            }
        };
        self.after(Ok(()), now);
        let payloads = negotiated(&self.rtc, self.mid, self.config.codec);
        self.payloads = payloads.ok_or(WebRtcError::NoCommonCodec(self.config.codec))?;
        Ok(answer.to_sdp_string())
    }

    /// What was negotiated: the law, the audio and telephone-event payload types, as the
    /// bridge maps them.
    pub fn payloads(&self) -> LegPayloads {
        self.payloads
    }

    /// The SSRC of the stream sent to the browser (what the bridge's stream towards this leg
    /// starts with).
    pub fn tx_ssrc(&self) -> u32 {
        self.tx_ssrc
    }

    pub fn state(&self) -> MediaState {
        self.state
    }

    /// `false` once the leg failed or closed and everything it had to say was polled.
    pub fn is_alive(&self) -> bool {
        !self.state.is_over() || !self.pending.is_empty()
    }

    /// Whether a datagram from `source` belongs to this leg (STUN by its username, the rest by
    /// the address ICE chose): how a driver with one socket for every leg finds the leg.
    pub fn accepts(&self, now: Instant, source: SocketAddr, datagram: &[u8]) -> bool {
        match Receive::new(Protocol::Udp, source, self.candidate, datagram) {
            Ok(r) => !self.state.is_over() && self.rtc.accepts(&Input::Receive(now, r)),
            Err(_) => false,
        }
    }

    /// A datagram from the browser, received at `now`.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if self.state.is_over() {
            return;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.candidate, datagram) else {
            return;
        };
        let result = self.rtc.handle_input(Input::Receive(now, receive));
        self.after(result, now);
    }

    /// Time passed: call at the instant `poll_output` gave (or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state.is_over() {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            let failure =
                if self.state == MediaState::Reconnecting { Failure::ConnectionLost } else { Failure::ConnectTimeout };
            self.fail(failure);
            return;
        }
        let result = self.rtc.handle_input(Input::Timeout(now));
        self.after(result, now);
    }

    /// Sends one packet the bridge forwarded (its sequence number, timestamp, marker and payload
    /// type; the SSRC is the leg's own). `false` when the leg is not connected: the packet is
    /// dropped, as it would be on the wire.
    pub fn send_rtp(&mut self, now: Instant, packet: &Forward, payload: impl Into<Arc<[u8]>>) -> bool {
        if self.state != MediaState::Connected {
            return false;
        }
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(self.mid, None) else { return false };
        let write = RtpWrite::new(packet.payload_type.into(), packet.sequence.into(), packet.timestamp, now, payload)
            .marker(packet.marker);
        stream.write_rtp(write);
        self.after(Ok(()), now);
        true
    }

    /// Hangs up: RTCP BYE and DTLS close_notify go out, then the leg is closed.
    pub fn close(&mut self, now: Instant) {
        if self.state.is_over() {
            return;
        }
        let result = self.rtc.close();
        self.after(result, now);
        self.set_state(MediaState::Closed);
        self.deadline = None;
    }

    /// The next thing to do. Poll until `Timeout`.
    pub fn poll_output(&mut self) -> LegOutput {
        if let Some(out) = self.pending.pop_front() {
            return out;
        }
        let timeout = match self.deadline {
            Some(d) => d.min(self.rtc_timeout),
            None => self.rtc_timeout,
        };
        LegOutput::Timeout(timeout)
    }

    /// After each mutation of the `Rtc`: drain it completely (str0m's single-mutation rule),
    /// turning its events into the leg's.
    fn after(&mut self, result: Result<(), str0m::RtcError>, now: Instant) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "WebRTC input refused");
            self.fail(Failure::Protocol);
            return;
        }
        loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "WebRTC output failed");
                    self.fail(Failure::Protocol);
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    break;
                }
                Output::Transmit(t) => self
                    .pending
                    .push_back(LegOutput::Transmit { destination: t.destination, contents: Vec::from(t.contents) }),
                Output::Event(event) => self.on_event(event, now),
            }
        }
        if !self.rtc.is_alive() && !self.state.is_over() {
            self.set_state(MediaState::Closed);
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                self.deadline = None;
                self.set_state(MediaState::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.state == MediaState::Connected =>
            {
                self.deadline = Some(now + self.config.reconnect_timeout);
                self.set_state(MediaState::Reconnecting);
            }
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed)
                if self.state == MediaState::Reconnecting =>
            {
                self.deadline = None;
                self.set_state(MediaState::Connected);
            }
            Event::RtpPacket(packet) => {
                let h = &packet.header;
                let header = RtpHeader {
                    marker: h.marker,
                    payload_type: *h.payload_type,
                    sequence: h.sequence_number,
                    timestamp: h.timestamp,
                    ssrc: *h.ssrc,
                    csrcs: Vec::new(),
                };
                self.pending.push_back(LegOutput::Event(LegEvent::Rtp(ReceivedRtp {
                    header,
                    payload: packet.payload,
                    arrival: packet.timestamp,
                })));
            }
            Event::MediaIngressStats(s) => {
                let quality = LegQuality { to_browser: false, loss: s.loss, jitter: rtp_units(s.jitter) };
                self.pending.push_back(LegOutput::Event(LegEvent::Quality(quality)));
            }
            Event::MediaEgressStats(s) => {
                let jitter = s.remote.as_ref().map_or(Duration::ZERO, |r| rtp_units(r.jitter));
                let quality = LegQuality { to_browser: true, loss: s.loss, jitter };
                self.pending.push_back(LegOutput::Event(LegEvent::Quality(quality)));
            }
            Event::Closed if !self.state.is_over() => {
                self.deadline = None;
                self.set_state(MediaState::Closed);
            }
            _ => {}
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.rtc.disconnect();
        self.deadline = None;
        self.set_state(MediaState::Failed(failure));
    }

    fn set_state(&mut self, state: MediaState) {
        if self.state != state && !self.state.is_over() {
            self.state = state;
            self.pending.push_back(LegOutput::Event(LegEvent::State(state)));
        }
    }
}

/// The law, audio and telephone-event payload types accepted for `mid`.
fn negotiated(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<LegPayloads> {
    let remote = rtc.media(mid)?.remote_pts();
    let wanted = match codec {
        Codec::Pcmu => RtcCodec::PCMU,
        Codec::Pcma => RtcCodec::PCMA,
    };
    let params = || rtc.codec_config().params().iter().filter(|p| remote.contains(&p.pt()));
    let audio = params().find(|p| p.spec().codec == wanted)?.pt();
    let event = params().find(|p| p.spec().codec == RtcCodec::Tele && p.spec().clock_rate == Frequency::EIGHT_KHZ);
    Some(LegPayloads { codec, audio: *audio, telephone_event: event.map(|p| *p.pt()) })
}

/// RTP timestamp units of G.711's 8 kHz clock, as time.
fn rtp_units(units: u32) -> Duration {
    Duration::from_micros(u64::from(units) * 125)
}
