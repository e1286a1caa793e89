//! The browser leg against a real WebRTC peer: a str0m client (full ICE, the offerer, as a
//! browser is) in the test. Over loopback UDP through the driver, both directions of audio are
//! proven by the tones they carry; in memory, with the clock moved by hand, the ways a leg fails.

use super::mixer::Audience;
use super::*;
use ivr::rtp::{decode, encode, Forwarder, LegPayloads, StreamStart, Verdict};
use ivr::sdp::Codec;
use std::collections::VecDeque;
use std::f64::consts::PI;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec as RtcCodec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

const FRAME: usize = 160;

/// `samples` samples of a `freq` Hz sine at 8 kHz, from sample `from` (so frames join up).
fn tone(freq: f64, from: usize, samples: usize) -> Vec<i16> {
    (from..from + samples).map(|n| (8000.0 * (2.0 * PI * freq * n as f64 / 8000.0).sin()) as i16).collect()
}

/// The power of `freq` in `samples` (Goertzel), normalised by the signal's energy: about 0.5
/// for a pure tone at `freq`, near 0 for anything else.
fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    let energy: f64 = samples.iter().map(|x| f64::from(*x).powi(2)).sum();
    power / (energy * samples.len() as f64 / 2.0).max(1.0)
}

/// Asserts that `samples` carry `freq` and not the other tone.
fn assert_tone(samples: &[i16], freq: f64, other: f64, who: &str) {
    assert!(samples.len() >= 8000 / 2, "{who}: only {} samples", samples.len());
    let (want, not) = (goertzel(samples, freq), goertzel(samples, other));
    assert!(want > 0.4 && not < 0.01, "{who}: power at {freq} Hz {want:.4}, at {other} Hz {not:.4}");
}

/// The client's configuration: what a browser offers, G.711 both laws and telephone-events
/// (str0m's RTP mode, so the test sees the packets).
fn client_rtc(now: Instant, codecs: &[RtcCodec]) -> Rtc {
    let mut builder = Rtc::builder().set_crypto_provider(super::webrtc::crypto()).set_rtp_mode(true).clear_codecs();
    let config = builder.codec_config();
    config.enable_pcmu(codecs.contains(&RtcCodec::PCMU), false);
    config.enable_pcma(codecs.contains(&RtcCodec::PCMA), false);
    config.enable_opus(codecs.contains(&RtcCodec::Opus), false);
    config.add_config(126.into(), None, RtcCodec::Tele, Frequency::EIGHT_KHZ, None, FormatParams::parse_line("0-15"));
    builder.build(now)
}

/// The client's offer: one send-receive audio stream, its host candidate at `addr`.
fn offer(rtc: &mut Rtc, addr: SocketAddr) -> (Mid, String, SdpPendingOffer) {
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (mid, offer.to_sdp_string(), pending)
}

/// The client's side over a real socket, on its own thread: once connected it sends
/// `frames` frames of `freq` Hz every 20 ms, and returns the audio it received (decoded), with
/// the RTP headers, once it has `want` packets or after `limit`.
fn run_client(
    mut rtc: Rtc,
    mid: Mid,
    socket: std::net::UdpSocket,
    freq: f64,
    frames: u64,
    want: usize,
    limit: Duration,
) -> Vec<(str0m::rtp::RtpHeader, Vec<i16>)> {
    let local = socket.local_addr().unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut next_send: Option<Instant> = None;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 2048];
    let pcmu = rtc.codec_config().params().iter().find(|p| p.spec().codec == RtcCodec::PCMU).unwrap().pt();
    loop {
        // Drain to the timeout after each mutation (str0m's rule).
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::Connected) => next_send = Some(Instant::now()),
                Output::Event(Event::RtpPacket(p)) if p.header.payload_type == pcmu => {
                    received.push((p.header.clone(), decode(Codec::Pcmu, &p.payload)));
                }
                Output::Event(_) => {}
            }
        };
        if (sent == frames && received.len() >= want) || started.elapsed() > limit {
            return received;
        }
        let wake = next_send.filter(|_| sent < frames).map_or(timeout, |s| s.min(timeout));
        let wait = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).unwrap();
        let input_now = Instant::now();
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                let receive = Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap();
                rtc.handle_input(Input::Receive(input_now, receive)).unwrap();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let now = Instant::now();
                match next_send {
                    Some(at) if at <= now && sent < frames => {
                        let payload = encode(Codec::Pcmu, &tone(freq, sent as usize * FRAME, FRAME));
                        let write = RtpWrite::new(pcmu, (1000 + sent).into(), 5000 + 160 * sent as u32, now, payload)
                            .marker(sent == 0);
                        rtc.direct_api().stream_tx_by_mid(mid, None).unwrap().write_rtp(write);
                        sent += 1;
                        next_send = Some(at + Duration::from_millis(20));
                    }
                    _ => rtc.handle_input(Input::Timeout(now)).unwrap(),
                }
            }
            Err(e) => panic!("client socket: {e}"),
        }
    }
}

#[tokio::test]
async fn a_browser_leg_carries_audio_both_ways_over_udp() {
    let media = WebRtcMedia::start(
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
    )
    .unwrap();
    let client_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = client_rtc(Instant::now(), &[RtcCodec::PCMU, RtcCodec::PCMA]);
    let (mid, offer_sdp, pending) = offer(&mut client, client_socket.local_addr().unwrap());

    let config = LegConfig::new(Codec::Pcmu, media.local_addr());
    let (leg, answer) = WebRtcLeg::accept_offer(&offer_sdp, config, Instant::now()).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(leg.payloads(), LegPayloads::new(Codec::Pcmu).with_telephone_event(126), "the browser's own types");
    // The bridge that feeds the browser: a SIP caller's stream (its own SSRC, numbers and
    // payload types) rewritten onto the leg's stream.
    let sip = LegPayloads::new(Codec::Pcmu).with_telephone_event(101);
    let start = StreamStart { ssrc: leg.tx_ssrc(), sequence: 40_000, timestamp: 1234 };
    let mut towards_browser = Forwarder::new(sip, leg.payloads(), start).unwrap();
    let mut handle = media.add(leg);
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();

    // The browser talks: 1 kHz for 2 s.
    let client =
        std::thread::spawn(move || run_client(client, mid, client_socket, 1000.0, 100, 75, Duration::from_secs(15)));

    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match handle.events.recv().await {
                Some(LegEvent::State(MediaState::Connected)) => return,
                Some(LegEvent::State(other)) => assert_eq!(other, MediaState::Connecting),
                Some(LegEvent::Rtp(_) | LegEvent::Quality(_)) => {}
                None => panic!("the leg ended before connecting"),
            }
        }
    });
    connected.await.expect("ICE and DTLS within 10 s");

    // The caller talks: 440 Hz for 2 s, one packet every 20 ms through the bridge.
    let mut from_browser: Vec<i16> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sent < 100 || from_browser.len() < 75 * FRAME {
        tokio::select! {
            _ = ticks.tick(), if sent < 100 => {
                let header = ivr::rtp::RtpHeader {
                    marker: sent == 0, payload_type: 0, sequence: 7 + sent as u16,
                    timestamp: 99_000 + 160 * sent, ssrc: 0x5151, csrcs: Vec::new(),
                };
                let payload = encode(Codec::Pcmu, &tone(440.0, sent as usize * FRAME, FRAME));
                let Verdict::Forward(packet) = towards_browser.forward(&header, &payload, Instant::now()) else {
                    panic!("the bridge dropped an in-order packet");
                };
                handle.send(packet, payload.into());
                sent += 1;
            }
            event = handle.events.recv() => match event {
                Some(LegEvent::Rtp(rtp)) => {
                    assert_eq!(rtp.header.payload_type, 0);
                    from_browser.extend(decode(Codec::Pcmu, &rtp.payload));
                }
                Some(LegEvent::State(state)) => panic!("the leg went {state:?}"),
                Some(LegEvent::Quality(_)) => {}
                None => panic!("the leg ended"),
            },
            _ = tokio::time::sleep_until(deadline) => panic!("{sent} sent, {} samples received", from_browser.len()),
        }
    }
    let to_browser = tokio::task::spawn_blocking(move || client.join().expect("client thread")).await.unwrap();

    assert_tone(&from_browser, 1000.0, 440.0, "the server, from the browser");
    let samples: Vec<i16> = to_browser.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    assert_tone(&samples, 440.0, 1000.0, "the browser, from the server");
    // What the browser got is the bridge's stream: one SSRC, sequence +1 and timestamp +160,
    // the marker on the first packet only.
    let headers: Vec<_> = to_browser.iter().map(|(h, _)| h).collect();
    assert!(headers[0].marker && headers[1..].iter().all(|h| !h.marker));
    assert_eq!((headers[0].sequence_number, headers[0].timestamp), (40_000, 1234));
    for pair in headers.windows(2) {
        assert_eq!(pair[1].sequence_number, pair[0].sequence_number.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
        assert_eq!(pair[1].ssrc, pair[0].ssrc);
    }
    handle.close();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = handle.events.recv().await {
                if let LegEvent::State(MediaState::Closed) = event {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap(),
        "closing the leg reports Closed"
    );
}

/// The driver bridges a leg to a call's SIP side: the call's RTP socket is read on the media
/// thread, the caller's 440 Hz reaches the browser and the browser's 1 kHz the caller, each as
/// one stream (the caller hears one SSRC, sequence +1, timestamp +160).
#[tokio::test]
async fn a_bridged_leg_carries_a_sip_callers_audio_both_ways() {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let media = WebRtcMedia::start(std::net::UdpSocket::bind("127.0.0.1:0").unwrap(), metrics.clone()).unwrap();
    let client_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = client_rtc(Instant::now(), &[RtcCodec::PCMU, RtcCodec::PCMA]);
    let (mid, offer_sdp, pending) = offer(&mut client, client_socket.local_addr().unwrap());
    let config =
        LegConfig { stats_interval: Duration::from_millis(500), ..LegConfig::new(Codec::Pcmu, media.local_addr()) };
    let (leg, answer) = WebRtcLeg::accept_offer(&offer_sdp, config, Instant::now()).unwrap();
    let mut handle = media.add(leg);
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let client =
        std::thread::spawn(move || run_client(client, mid, client_socket, 1000.0, 150, 60, Duration::from_secs(15)));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match handle.events.recv().await {
                Some(LegEvent::State(MediaState::Connected)) => return,
                Some(_) => {}
                None => panic!("the leg ended before connecting"),
            }
        }
    })
    .await
    .expect("ICE and DTLS within 10 s");

    // The call's RTP socket (the server's) and the caller's.
    let server_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server_rtp.local_addr().unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let payloads = LegPayloads::new(Codec::Pcmu).with_telephone_event(101);
    // Strict RTP across the bridge: a stranger on the caller's host, at another port, sprays
    // 2 kHz at the call's socket once the caller's first packet has latched its address.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let source =
        std::sync::Arc::new(std::sync::Mutex::new(super::strict::RtpSource::new(["127.0.0.1".parse().unwrap()])));
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    handle.bridge(SipSide {
        socket: server_rtp,
        remote: Some(caller.local_addr().unwrap()),
        payloads,
        source,
        heard: counted.clone(),
    });

    let mut heard: Vec<(ivr::rtp::RtpHeader, Vec<i16>)> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sent < 100 || heard.len() < 50 {
        tokio::select! {
            _ = ticks.tick(), if sent < 100 => {
                let header = ivr::rtp::RtpHeader {
                    marker: sent == 0, payload_type: 0, sequence: 7 + sent as u16,
                    timestamp: 99_000 + 160 * sent, ssrc: 0x5151, csrcs: Vec::new(),
                };
                let payload = encode(Codec::Pcmu, &tone(440.0, sent as usize * FRAME, FRAME));
                caller.send_to(&header.encode(&payload), server_addr).await.unwrap();
                if sent > 0 {
                    let spray = ivr::rtp::RtpHeader { ssrc: 0x6666, ..header };
                    let payload = encode(Codec::Pcmu, &tone(2000.0, sent as usize * FRAME, FRAME));
                    stranger.send_to(&spray.encode(&payload), server_addr).await.unwrap();
                }
                sent += 1;
            }
            r = caller.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = ivr::rtp::RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 0, "the SIP leg's own audio type");
                heard.push((packet.header.clone(), decode(Codec::Pcmu, packet.payload)));
            }
            _ = tokio::time::sleep_until(deadline) => panic!("{sent} sent, {} packets heard", heard.len()),
        }
    }
    let browser_heard = tokio::task::spawn_blocking(move || client.join().expect("client thread")).await.unwrap();
    let samples: Vec<i16> = heard.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    assert_tone(&samples, 1000.0, 440.0, "the caller, from the browser");
    let samples: Vec<i16> = browser_heard.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    assert_tone(&samples, 440.0, 1000.0, "the browser, from the caller");
    assert_tone(&samples, 440.0, 2000.0, "the browser, not the stranger");
    // The leg's RTCP-derived quality reached the metrics (the media thread observes it).
    let exposition = metrics.encode();
    let count = |name: &str| {
        exposition.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(
        count("helpline_browser_leg_jitter_seconds_count{direction=\"from_browser\"}") > 0.0,
        "jitter observed: {exposition}"
    );
    let caller_packets = counted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (50..=100).contains(&caller_packets),
        "the caller's packets, counted for its RTP timeout: {caller_packets}"
    );
    for pair in heard.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert_eq!(b.ssrc, a.ssrc, "one stream towards the caller");
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
    }

    handle.close();
}

/// A client and a leg connected by a network in memory, with a clock moved by hand in 5 ms
/// steps. `passes` decides which datagrams get through (everything, nothing, STUN only…).
struct Lab {
    now: Instant,
    client: Rtc,
    /// The audio stream's mid (the same on both sides).
    mid: Mid,
    client_addr: SocketAddr,
    leg: WebRtcLeg,
    leg_addr: SocketAddr,
    to_leg: VecDeque<(SocketAddr, Vec<u8>)>,
    to_client: VecDeque<(SocketAddr, Vec<u8>)>,
    passes: fn(&[u8]) -> bool,
    /// (when, state) of every state the leg reported.
    states: Vec<(Instant, MediaState)>,
    /// RTP packets the client received.
    client_rtp: usize,
    /// (payload type, payload) of the RTP packets the client received, and those the leg did.
    client_got: Vec<(u8, Vec<u8>)>,
    leg_got: Vec<ReceivedRtp>,
    /// The leg's quality reports.
    qualities: Vec<LegQuality>,
}

const STEP: Duration = Duration::from_millis(5);

fn everything(_: &[u8]) -> bool {
    true
}

fn nothing(_: &[u8]) -> bool {
    false
}

/// STUN only (RFC 7983: first byte 0-3): ICE gets through, DTLS (20-63) and SRTP do not.
fn stun_only(d: &[u8]) -> bool {
    d.first().is_some_and(|b| *b <= 3)
}

impl Lab {
    fn new(connect_timeout: Duration, reconnect_timeout: Duration) -> Lab {
        let now = Instant::now();
        let client_addr: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let leg_addr: SocketAddr = "10.0.0.1:3478".parse().unwrap();
        let mut client = client_rtc(now, &[RtcCodec::PCMU]);
        let (mid, offer_sdp, pending) = offer(&mut client, client_addr);
        let config = LegConfig { connect_timeout, reconnect_timeout, ..LegConfig::new(Codec::Pcmu, leg_addr) };
        let (leg, answer) = WebRtcLeg::accept_offer(&offer_sdp, config, now).unwrap();
        client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        Lab {
            now,
            client,
            mid,
            client_addr,
            leg,
            leg_addr,
            to_leg: VecDeque::new(),
            to_client: VecDeque::new(),
            passes: everything,
            states: Vec::new(),
            client_rtp: 0,
            client_got: Vec::new(),
            leg_got: Vec::new(),
            qualities: Vec::new(),
        }
    }

    fn drain_client(&mut self) {
        loop {
            match self.client.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    if (self.passes)(&t.contents) {
                        self.to_leg.push_back((self.client_addr, t.contents.to_vec()));
                    }
                }
                Output::Event(Event::RtpPacket(p)) => {
                    self.client_rtp += 1;
                    self.client_got.push((*p.header.payload_type, p.payload.to_vec()));
                }
                Output::Event(_) => {}
            }
        }
    }

    fn drain_leg(&mut self) {
        loop {
            match self.leg.poll_output() {
                LegOutput::Timeout(_) => break,
                LegOutput::Transmit { destination, contents } => {
                    assert_eq!(destination, self.client_addr);
                    if (self.passes)(&contents) {
                        self.to_client.push_back((self.leg_addr, contents));
                    }
                }
                LegOutput::Event(LegEvent::State(s)) => self.states.push((self.now, s)),
                LegOutput::Event(LegEvent::Rtp(rtp)) => self.leg_got.push(rtp),
                LegOutput::Event(LegEvent::Quality(q)) => self.qualities.push(q),
            }
        }
    }

    /// One 5 ms step: time for both, then every datagram in flight delivered.
    fn step(&mut self) {
        self.now += STEP;
        if self.client.is_alive() {
            self.client.handle_input(Input::Timeout(self.now)).unwrap();
            self.drain_client();
        }
        self.leg.handle_timeout(self.now);
        self.drain_leg();
        while !self.to_leg.is_empty() || !self.to_client.is_empty() {
            if let Some((source, datagram)) = self.to_leg.pop_front() {
                if !matches!(self.leg.state(), MediaState::Failed(_) | MediaState::Closed) {
                    assert!(self.leg.accepts(self.now, source, &datagram), "the leg recognises its datagrams");
                }
                self.leg.handle_receive(self.now, source, &datagram);
                self.drain_leg();
            }
            if let Some((source, datagram)) = self.to_client.pop_front() {
                let receive = Receive::new(Protocol::Udp, source, self.client_addr, &datagram).unwrap();
                if self.client.handle_input(Input::Receive(self.now, receive)).is_err() {
                    self.client.disconnect();
                }
                self.drain_client();
            }
        }
    }

    /// Steps until the leg reports `state`, at most `limit` of simulated time; when it did.
    fn until(&mut self, state: MediaState, limit: Duration) -> Option<Instant> {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if let Some((at, _)) = self.states.iter().find(|(_, s)| *s == state) {
                return Some(*at);
            }
        }
        None
    }

    /// The browser's page came back: an ICE restart on the same connection, answered by the leg.
    fn restart_ice(&mut self) {
        let mut change = self.client.sdp_api();
        change.ice_restart(true);
        let (offer, pending) = change.apply().unwrap();
        let answer = self.leg.accept_reoffer(&offer.to_sdp_string(), self.now).unwrap();
        self.drain_leg();
        self.client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        self.drain_client();
    }

    /// Sends one packet from the leg and steps: whether the client got it.
    fn packet_reaches_the_client(&mut self, sequence: u64) -> bool {
        let before = self.client_rtp;
        let packet = ivr::rtp::Forward { sequence, timestamp: 160 * sequence as u32, ..probe() };
        let sent = self.leg.send_rtp(self.now, &packet, vec![0xFF; 160]);
        self.drain_leg();
        self.step();
        sent && self.client_rtp == before + 1
    }

    fn last_state(&self) -> Option<MediaState> {
        self.states.last().map(|(_, s)| *s)
    }
}

#[test]
fn a_browser_that_never_answers_fails_at_the_connect_timeout() {
    let mut lab = Lab::new(Duration::from_secs(3), Duration::from_secs(5));
    lab.passes = nothing;
    let start = lab.now;
    let failed = lab.until(MediaState::Failed(Failure::ConnectTimeout), Duration::from_secs(10));
    let at = failed.expect("reported as failed").duration_since(start);
    assert!((Duration::from_secs(3)..Duration::from_secs(3) + STEP).contains(&at), "failed after {at:?}");
    assert_eq!(lab.states.len(), 1, "one report: {:?}", lab.states);
    assert!(!lab.leg.is_alive());
    // Nothing more once failed: no datagram, no event, whatever comes.
    lab.passes = everything;
    for _ in 0..100 {
        lab.step();
    }
    assert_eq!(lab.states.len(), 1);
    assert!(matches!(lab.leg.poll_output(), LegOutput::Timeout(_)));
}

#[test]
fn ice_without_dtls_fails_at_the_connect_timeout_too() {
    // A firewall that lets STUN through and nothing else: ICE completes, DTLS never does.
    let mut lab = Lab::new(Duration::from_secs(4), Duration::from_secs(5));
    lab.passes = stun_only;
    let start = lab.now;
    let failed = lab.until(MediaState::Failed(Failure::ConnectTimeout), Duration::from_secs(10));
    let at = failed.expect("reported as failed").duration_since(start);
    assert!((Duration::from_secs(4)..Duration::from_secs(4) + STEP).contains(&at), "failed after {at:?}");
    assert_eq!(lab.states.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [MediaState::Failed(Failure::ConnectTimeout)]);
}

#[test]
fn a_browser_that_goes_away_is_reconnecting_then_lost() {
    let mut lab = Lab::new(Duration::from_secs(10), Duration::from_secs(3));
    let connected = lab.until(MediaState::Connected, Duration::from_secs(5)).expect("connects in memory");
    assert!(connected.duration_since(lab.states[0].0) < Duration::from_secs(1));
    // Connected: a packet to the browser reaches it (SRTP, in memory).
    assert!(lab.leg.send_rtp(lab.now, &probe(), vec![0xFF; 160]));
    lab.drain_leg();
    lab.step();
    assert_eq!(lab.client_rtp, 1);
    // The tab is closed: nothing comes back any more.
    lab.passes = nothing;
    let gone = lab.now;
    let reconnecting = lab.until(MediaState::Reconnecting, Duration::from_secs(20)).expect("notices the loss");
    // str0m's ICE-lite agent drops a pair 15 s after the browser's last binding request (the
    // browser checks consent every few seconds).
    let noticed = reconnecting.duration_since(gone);
    assert!((Duration::from_secs(14)..Duration::from_secs(16)).contains(&noticed), "after {noticed:?}");
    assert!(!lab.leg.send_rtp(lab.now, &probe(), vec![0xFF; 160]), "nothing is sent while reconnecting");
    let lost = lab.until(MediaState::Failed(Failure::ConnectionLost), Duration::from_secs(10)).expect("gives up");
    let waited = lost.duration_since(reconnecting);
    assert!((Duration::from_secs(3)..Duration::from_secs(3) + STEP).contains(&waited), "gave up after {waited:?}");
    assert_eq!(
        lab.states.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [MediaState::Connected, MediaState::Reconnecting, MediaState::Failed(Failure::ConnectionLost)]
    );
}

#[test]
fn a_browser_that_comes_back_in_time_is_connected_again() {
    let mut lab = Lab::new(Duration::from_secs(10), Duration::from_secs(30));
    lab.until(MediaState::Connected, Duration::from_secs(5)).expect("connects");
    lab.passes = nothing;
    lab.until(MediaState::Reconnecting, Duration::from_secs(20)).expect("notices the loss");
    lab.passes = everything;
    lab.states.clear();
    lab.until(MediaState::Connected, Duration::from_secs(20)).expect("connected again");
    assert_eq!(lab.last_state(), Some(MediaState::Connected));
}

fn probe() -> ivr::rtp::Forward {
    ivr::rtp::Forward { ssrc: 0, sequence: 1, timestamp: 160, marker: true, payload_type: 0 }
}

#[test]
fn offers_without_the_calls_law_are_refused() {
    let now = Instant::now();
    let addr: SocketAddr = "10.0.0.1:3478".parse().unwrap();
    // An offer with Opus only, and one with A-law only for a μ-law call.
    for (codecs, want) in [(&[RtcCodec::Opus][..], Codec::Pcmu), (&[RtcCodec::PCMA][..], Codec::Pcmu)] {
        let mut client = client_rtc(now, codecs);
        let (_, sdp, _) = offer(&mut client, "10.0.0.2:4000".parse().unwrap());
        let err = WebRtcLeg::accept_offer(&sdp, LegConfig::new(want, addr), now).unwrap_err();
        assert!(matches!(err, WebRtcError::NoCommonCodec(Codec::Pcmu)), "{codecs:?}: {err}");
    }
    // A-law is taken when the call is A-law.
    let mut client = client_rtc(now, &[RtcCodec::PCMU, RtcCodec::PCMA]);
    let (_, sdp, _) = offer(&mut client, "10.0.0.2:4000".parse().unwrap());
    let (leg, answer) = WebRtcLeg::accept_offer(&sdp, LegConfig::new(Codec::Pcma, addr), now).unwrap();
    assert_eq!(leg.payloads().audio, 8);
    assert!(answer.contains("PCMA/8000") && !answer.contains("PCMU/8000"), "{answer}");
    assert!(matches!(
        WebRtcLeg::accept_offer("v=0\r\nnonsense", LegConfig::new(Codec::Pcmu, addr), now),
        Err(WebRtcError::BadOffer(_))
    ));
}

#[test]
fn an_ice_restart_restores_the_media_on_the_same_leg() {
    let mut lab = Lab::new(Duration::from_secs(10), Duration::from_secs(30));
    lab.until(MediaState::Connected, Duration::from_secs(5)).expect("connects");
    assert!(lab.packet_reaches_the_client(1));
    // A restart while all is well changes nothing the call sees.
    lab.restart_ice();
    for _ in 0..200 {
        lab.step();
    }
    assert_eq!(lab.last_state(), Some(MediaState::Connected));
    assert!(lab.packet_reaches_the_client(2));
    // The page lost its network, then came back and restarted ICE: the same leg, its DTLS and
    // its streams go on (the bridge sees no change), within the reconnect timeout.
    lab.passes = nothing;
    lab.until(MediaState::Reconnecting, Duration::from_secs(20)).expect("notices the loss");
    lab.passes = everything;
    lab.restart_ice();
    lab.states.clear();
    lab.until(MediaState::Connected, Duration::from_secs(10)).expect("connected again");
    assert!(lab.packet_reaches_the_client(3));
    assert_eq!(lab.leg.payloads(), LegPayloads::new(Codec::Pcmu).with_telephone_event(126));
}

#[test]
fn telephone_events_cross_the_leg_at_the_browsers_payload_type() {
    let mut lab = Lab::new(Duration::from_secs(10), Duration::from_secs(10));
    lab.until(MediaState::Connected, Duration::from_secs(5)).expect("connects");
    let event = ivr::rtp::TelephoneEvent { event: 5, end: false, volume: 10, duration: 160 }.encode();
    // The browser presses 5 (its telephone-event type is 126).
    let write = RtpWrite::new(126.into(), 10.into(), 8000, lab.now, event.to_vec()).marker(true);
    lab.client.direct_api().stream_tx_by_mid(lab.mid, None).unwrap().write_rtp(write);
    lab.drain_client();
    lab.step();
    let got = lab.leg_got.pop().expect("the leg received the event");
    assert_eq!((got.header.payload_type, got.header.marker, &got.payload[..]), (126, true, &event[..]));
    // Through the bridge towards a SIP leg it becomes 101; from the SIP leg, 126 again.
    let sip = LegPayloads::new(Codec::Pcmu).with_telephone_event(101);
    let start = StreamStart { ssrc: 1, sequence: 1, timestamp: 1 };
    let mut to_sip = Forwarder::new(lab.leg.payloads(), sip, start).unwrap();
    let Verdict::Forward(out) = to_sip.forward(&got.header, &got.payload, got.arrival) else { panic!("dropped") };
    assert_eq!(out.payload_type, 101);
    let mut to_browser =
        Forwarder::new(sip, lab.leg.payloads(), StreamStart { ssrc: lab.leg.tx_ssrc(), ..start }).unwrap();
    let Verdict::Forward(back) = to_browser.forward(&out.header(), &event, lab.now) else { panic!("dropped") };
    assert!(lab.leg.send_rtp(lab.now, &back, event.to_vec()));
    lab.drain_leg();
    lab.step();
    assert_eq!(lab.client_got.last(), Some(&(126, event.to_vec())));
}

/// The leg reports its quality from RTCP every `stats_interval`: what it sends, as the
/// browser's receiver reports tell (one packet in ten never sent here: ~10 % lost), and what it
/// receives, as measured here (nothing lost).
#[test]
fn a_leg_reports_loss_and_jitter_both_ways_from_rtcp() {
    let mut lab = Lab::new(Duration::from_secs(10), Duration::from_secs(10));
    lab.until(MediaState::Connected, Duration::from_secs(5)).expect("connects");
    let start = lab.now;
    let mut n: u64 = 0;
    while lab.now < start + Duration::from_secs(16) {
        n += 1;
        // From the leg: every tenth sequence number skipped (lost on the way).
        if !n.is_multiple_of(10) {
            let packet = ivr::rtp::Forward { sequence: n, timestamp: 160 * n as u32, marker: n == 1, ..probe() };
            lab.leg.send_rtp(lab.now, &packet, vec![0xFF; 160]);
            lab.drain_leg();
        }
        // From the browser: every packet.
        let write = RtpWrite::new(0.into(), n.into(), 160 * n as u32, lab.now, vec![0xFF; 160]).marker(n == 1);
        lab.client.direct_api().stream_tx_by_mid(lab.mid, None).unwrap().write_rtp(write);
        lab.drain_client();
        for _ in 0..4 {
            lab.step();
        }
    }
    let to_browser: Vec<_> = lab.qualities.iter().filter(|q| q.to_browser).collect();
    let from_browser: Vec<_> = lab.qualities.iter().filter(|q| !q.to_browser).collect();
    assert!(!to_browser.is_empty() && !from_browser.is_empty(), "reports both ways: {:?}", lab.qualities);
    let lost = to_browser.iter().filter_map(|q| q.loss).fold(0.0f32, f32::max);
    assert!((0.05..0.2).contains(&lost), "the browser reports about a tenth lost: {:?}", to_browser);
    let received_lost = from_browser.iter().filter_map(|q| q.loss).fold(0.0f32, f32::max);
    assert!(received_lost < 0.01, "nothing lost towards the leg: {from_browser:?}");
    assert!(from_browser.iter().all(|q| q.jitter < Duration::from_millis(20)), "{from_browser:?}");
}

/// Each of `want` clearly in the middle of `samples` (n equal tones hold about 1/(2n) of the energy each: at
/// least half that), each of `not` far below.
fn assert_hears(samples: &[i16], want: &[f64], not: &[f64], who: &str) {
    assert!(samples.len() >= 8000, "{who}: only {} samples", samples.len());
    // The middle half: the parties start and stop sending at different moments (a loaded
    // machine stretches those edges), and all of them talk in between.
    let samples = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let share = 0.5 / want.len() as f64;
    for f in want {
        let p = goertzel(samples, *f);
        assert!(p > share / 2.0, "{who} should hear {f} Hz: {p:.4}");
    }
    for f in not {
        let p = goertzel(samples, *f);
        assert!(p < 0.01, "{who} should not hear {f} Hz: {p:.4}");
    }
}

/// A connected browser leg on `media` whose client plays `freq` on its own thread.
async fn connected_leg(
    media: &WebRtcMedia,
    freq: f64,
) -> (LegHandle, std::thread::JoinHandle<Vec<(str0m::rtp::RtpHeader, Vec<i16>)>>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = client_rtc(Instant::now(), &[RtcCodec::PCMU, RtcCodec::PCMA]);
    let (mid, offer_sdp, pending) = offer(&mut client, socket.local_addr().unwrap());
    let (leg, answer) =
        WebRtcLeg::accept_offer(&offer_sdp, LegConfig::new(Codec::Pcmu, media.local_addr()), Instant::now()).unwrap();
    let mut handle = media.add(leg);
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let thread = std::thread::spawn(move || run_client(client, mid, socket, freq, 200, 120, Duration::from_secs(20)));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match handle.events.recv().await {
                Some(LegEvent::State(MediaState::Connected)) => return,
                Some(_) => {}
                None => panic!("the leg ended before connecting"),
            }
        }
    })
    .await
    .expect("ICE and DTLS within 10 s");
    (handle, thread)
}

/// Who joins the operator's call, and how.
#[derive(Clone, Copy)]
enum Guest {
    Listen,
    Whisper,
    Barge,
}

/// A SIP caller (440 Hz) bridged to an operator's leg (1 kHz), and a third leg (`guest_freq`)
/// joined as `guest`, over loopback UDP through the driver; what the caller, the operator and
/// the guest heard.
async fn conference(guest: Guest, guest_freq: f64) -> (Vec<i16>, Vec<i16>, Vec<i16>) {
    let media = WebRtcMedia::start(
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
    )
    .unwrap();
    let (operator, operator_thread) = connected_leg(&media, 1000.0).await;
    let (third, third_thread) = connected_leg(&media, guest_freq).await;
    let server_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server_rtp.local_addr().unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let payloads = LegPayloads::new(Codec::Pcmu).with_telephone_event(101);
    operator.bridge(SipSide {
        socket: server_rtp,
        remote: Some(caller.local_addr().unwrap()),
        payloads,
        source: std::sync::Arc::new(std::sync::Mutex::new(super::strict::RtpSource::new(["127.0.0.1"
            .parse()
            .unwrap()]))),
        heard: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    });
    let audience = match guest {
        Guest::Listen => Audience::Nobody,
        Guest::Whisper => Audience::Only(operator.id()),
        Guest::Barge => Audience::Everyone,
    };
    media.join(operator.id(), &third, audience);

    let mut heard: Vec<i16> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sent < 150 || heard.len() < 100 * FRAME {
        tokio::select! {
            _ = ticks.tick(), if sent < 150 => {
                let header = ivr::rtp::RtpHeader {
                    marker: sent == 0, payload_type: 0, sequence: 7 + sent as u16,
                    timestamp: 99_000 + 160 * sent, ssrc: 0x5151, csrcs: Vec::new(),
                };
                let payload = encode(Codec::Pcmu, &tone(440.0, sent as usize * FRAME, FRAME));
                caller.send_to(&header.encode(&payload), server_addr).await.unwrap();
                sent += 1;
            }
            r = caller.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = ivr::rtp::RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 0, "the SIP leg's own audio type");
                heard.extend(decode(Codec::Pcmu, packet.payload));
            }
            _ = tokio::time::sleep_until(deadline) => panic!("{sent} sent, {} samples heard", heard.len()),
        }
    }
    let join = |t: std::thread::JoinHandle<Vec<(str0m::rtp::RtpHeader, Vec<i16>)>>| async move {
        let got = tokio::task::spawn_blocking(move || t.join().expect("client thread")).await.unwrap();
        got.into_iter().flat_map(|(_, s)| s).collect::<Vec<i16>>()
    };
    let (operator_heard, third_heard) = (join(operator_thread).await, join(third_thread).await);
    drop((operator, third));
    (heard, operator_heard, third_heard)
}

/// Three tones: the caller plays 440 Hz, the operator 1 kHz, the mediator 1.6 kHz; each hears
/// the two others and not itself.
#[tokio::test]
async fn a_mediator_conference_lets_each_party_hear_the_two_others_and_not_itself() {
    let (caller, operator, mediator) = conference(Guest::Barge, 1600.0).await;
    assert_hears(&caller, &[1000.0, 1600.0], &[440.0], "the caller");
    assert_hears(&operator, &[440.0, 1600.0], &[1000.0], "the operator");
    assert_hears(&mediator, &[440.0, 1000.0], &[1600.0], "the mediator");
}

#[tokio::test]
async fn a_whispering_supervisor_is_heard_by_the_operator_and_not_by_the_caller() {
    let (caller, operator, supervisor) = conference(Guest::Whisper, 2000.0).await;
    assert_hears(&operator, &[440.0, 2000.0], &[1000.0], "the operator");
    assert_hears(&caller, &[1000.0], &[440.0, 2000.0], "the caller");
    assert_hears(&supervisor, &[440.0, 1000.0], &[2000.0], "the supervisor");
}

#[tokio::test]
async fn a_listening_supervisor_hears_both_and_is_heard_by_nobody() {
    let (caller, operator, supervisor) = conference(Guest::Listen, 2000.0).await;
    assert_hears(&caller, &[1000.0], &[440.0, 2000.0], "the caller");
    assert_hears(&operator, &[440.0], &[1000.0, 2000.0], "the operator");
    assert_hears(&supervisor, &[440.0, 1000.0], &[2000.0], "the supervisor");
}

/// A connected browser leg on `media` whose client sends `frames` frames of `freq` and stops
/// once it has them sent and `want` packets received.
async fn connected_leg_for(
    media: &WebRtcMedia,
    freq: f64,
    frames: u64,
    want: usize,
) -> (LegHandle, std::thread::JoinHandle<Vec<(str0m::rtp::RtpHeader, Vec<i16>)>>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = client_rtc(Instant::now(), &[RtcCodec::PCMU, RtcCodec::PCMA]);
    let (mid, offer_sdp, pending) = offer(&mut client, socket.local_addr().unwrap());
    let (leg, answer) =
        WebRtcLeg::accept_offer(&offer_sdp, LegConfig::new(Codec::Pcmu, media.local_addr()), Instant::now()).unwrap();
    let mut handle = media.add(leg);
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let thread =
        std::thread::spawn(move || run_client(client, mid, socket, freq, frames, want, Duration::from_secs(30)));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match handle.events.recv().await {
                Some(LegEvent::State(MediaState::Connected)) => return,
                Some(_) => {}
                None => panic!("the leg ended before connecting"),
            }
        }
    })
    .await
    .expect("ICE and DTLS within 10 s");
    (handle, thread)
}

/// The operator (1 kHz) leaves a three-way call with a mediator (1.6 kHz) and a SIP caller
/// (440 Hz): the call is handed over to the mediator's leg, and from then on the caller and the
/// mediator hear each other and nobody hears the operator, who still talks into a leg that
/// carries nothing any more.
#[tokio::test]
async fn when_the_operator_leaves_the_mediator_and_the_caller_still_hear_each_other() {
    let media = WebRtcMedia::start(
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
    )
    .unwrap();
    let (operator, operator_thread) = connected_leg_for(&media, 1000.0, 250, 20).await;
    let (mediator, mediator_thread) = connected_leg_for(&media, 1600.0, 250, 230).await;
    let server_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server_rtp.local_addr().unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    operator.bridge(SipSide {
        socket: server_rtp,
        remote: Some(caller.local_addr().unwrap()),
        payloads: LegPayloads::new(Codec::Pcmu).with_telephone_event(101),
        source: std::sync::Arc::new(std::sync::Mutex::new(super::strict::RtpSource::new(["127.0.0.1"
            .parse()
            .unwrap()]))),
        heard: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    });
    media.join(operator.id(), &mediator, Audience::Everyone);

    // Before: the caller hears both; after the hand-over (at 60 frames), only the mediator.
    let (mut before, mut after): (Vec<i16>, Vec<i16>) = (Vec::new(), Vec::new());
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    let mut handed_over = false;
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    const FRAMES: u32 = 260;
    while sent < FRAMES {
        tokio::select! {
            _ = ticks.tick() => {
                if sent == 60 {
                    media.hand_over(operator.id(), &mediator);
                    handed_over = true;
                }
                let header = ivr::rtp::RtpHeader {
                    marker: sent == 0, payload_type: 0, sequence: 7 + sent as u16,
                    timestamp: 99_000 + 160 * sent, ssrc: 0x5151, csrcs: Vec::new(),
                };
                let payload = encode(Codec::Pcmu, &tone(440.0, sent as usize * FRAME, FRAME));
                caller.send_to(&header.encode(&payload), server_addr).await.unwrap();
                sent += 1;
            }
            r = caller.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = ivr::rtp::RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 0, "the SIP leg's own audio type");
                let heard = if handed_over { &mut after } else { &mut before };
                heard.extend(decode(Codec::Pcmu, packet.payload));
            }
            _ = tokio::time::sleep_until(deadline) => panic!("{sent} sent, {} samples heard", after.len()),
        }
    }
    let join = |t: std::thread::JoinHandle<Vec<(str0m::rtp::RtpHeader, Vec<i16>)>>| async move {
        let got = tokio::task::spawn_blocking(move || t.join().expect("client thread")).await.unwrap();
        got.into_iter().flat_map(|(_, s)| s).collect::<Vec<i16>>()
    };
    let mediator_heard = join(mediator_thread).await;
    drop(operator);
    let _ = join(operator_thread).await;
    drop(mediator);
    // The mediator talks for 5 s from its connection, the caller for 5.2 s from just after: the
    // middle of what the caller heard after the hand-over is the mediator alone.
    assert_hears(&after, &[1600.0], &[440.0, 1000.0], "the caller after the operator left");
    // The mediator's last 2 seconds are well after the hand-over (at 1.2 s of 5).
    let tail = &mediator_heard[mediator_heard.len().saturating_sub(2 * 8000)..];
    assert_hears(tail, &[440.0], &[1000.0, 1600.0], "the mediator after the operator left");
    assert!(before.len() >= 20 * FRAME, "the caller heard the three-way call first: {} samples", before.len());
}

/// An outside interpreter dialled through the SIP trunk: a SIP caller (440 Hz, µ-law) bridged to
/// an operator's leg (1 kHz), and the trunk call's RTP (1.6 kHz, A-law as callbacks offer the
/// trunk) joined as a party everyone hears: the interpreter hears the caller and the operator
/// and not itself; the caller hears the operator and the interpreter and not itself; then the
/// interpreter leaves and the call goes back to the plain bridge.
#[tokio::test]
async fn an_interpreter_dialled_through_the_trunk_hears_the_caller_and_the_operator_and_is_heard_by_both() {
    let media = WebRtcMedia::start(
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
    )
    .unwrap();
    let (operator, operator_thread) = connected_leg(&media, 1000.0).await;
    let server_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server_rtp.local_addr().unwrap();
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let loopback =
        || std::sync::Arc::new(std::sync::Mutex::new(super::strict::RtpSource::new(["127.0.0.1".parse().unwrap()])));
    operator.bridge(SipSide {
        socket: server_rtp,
        remote: Some(caller.local_addr().unwrap()),
        payloads: LegPayloads::new(Codec::Pcmu).with_telephone_event(101),
        source: loopback(),
        heard: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    });
    // The trunk call's RTP socket (what `trunk::run` offered) and the interpreter's far end.
    let trunk_rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let trunk_addr = trunk_rtp.local_addr().unwrap();
    let interpreter = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let heard_from_interpreter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let party = media.join_trunk(
        operator.id(),
        SipSide {
            socket: trunk_rtp,
            remote: Some(interpreter.local_addr().unwrap()),
            payloads: LegPayloads::new(Codec::Pcma),
            source: loopback(),
            heard: heard_from_interpreter.clone(),
        },
    );

    let (mut caller_heard, mut interpreter_heard): (Vec<i16>, Vec<i16>) = (Vec::new(), Vec::new());
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    let (mut buf, mut buf2) = (vec![0u8; 2048], vec![0u8; 2048]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sent < 150 || caller_heard.len() < 100 * FRAME || interpreter_heard.len() < 100 * FRAME {
        tokio::select! {
            _ = ticks.tick(), if sent < 150 => {
                let header = |pt: u8, ssrc: u32| ivr::rtp::RtpHeader {
                    marker: sent == 0, payload_type: pt, sequence: 7 + sent as u16,
                    timestamp: 99_000 + 160 * sent, ssrc, csrcs: Vec::new(),
                };
                let payload = encode(Codec::Pcmu, &tone(440.0, sent as usize * FRAME, FRAME));
                caller.send_to(&header(0, 0x5151).encode(&payload), server_addr).await.unwrap();
                let payload = encode(Codec::Pcma, &tone(1600.0, sent as usize * FRAME, FRAME));
                interpreter.send_to(&header(8, 0x1600).encode(&payload), trunk_addr).await.unwrap();
                sent += 1;
            }
            r = caller.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = ivr::rtp::RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 0, "the SIP caller's own audio type");
                caller_heard.extend(decode(Codec::Pcmu, packet.payload));
            }
            r = interpreter.recv_from(&mut buf2) => {
                let (n, _) = r.unwrap();
                let packet = ivr::rtp::RtpPacket::decode(&buf2[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 8, "the trunk call's own audio type");
                interpreter_heard.extend(decode(Codec::Pcma, packet.payload));
            }
            _ = tokio::time::sleep_until(deadline) => panic!(
                "{sent} sent, the caller heard {} samples, the interpreter {}", caller_heard.len(), interpreter_heard.len()
            ),
        }
    }
    let operator_heard: Vec<i16> = tokio::task::spawn_blocking(move || operator_thread.join().expect("client thread"))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    assert_hears(&interpreter_heard, &[440.0, 1000.0], &[1600.0], "the interpreter");
    assert_hears(&caller_heard, &[1000.0, 1600.0], &[440.0], "the caller");
    assert_hears(&operator_heard, &[440.0, 1600.0], &[1000.0], "the operator");
    assert!(heard_from_interpreter.load(std::sync::atomic::Ordering::Relaxed) >= 100, "the trunk's packets counted");

    // The interpreter hangs up: their address goes quiet (what the media thread sent before it
    // took the command may still arrive), for good — 300 ms without a packet where a packet
    // came every 20 ms.
    media.leave_party(operator.id(), party);
    let left = tokio::time::Instant::now();
    while tokio::time::timeout(Duration::from_millis(300), interpreter.recv_from(&mut buf2)).await.is_ok() {
        assert!(left.elapsed() < Duration::from_secs(5), "RTP still sent to an interpreter who left");
    }
    drop(operator);
}
