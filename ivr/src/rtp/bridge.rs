//! Forwarding a call's G.711 RTP from one leg to the other (the caller's SIP/RTP leg and the
//! operator's WebRTC leg) **without transcoding**: the payload bytes go through untouched, only
//! the header is rewritten so that each leg receives one continuous stream of its own.
//!
//! A [`Forwarder`] is one direction; a [`Bridge`] is the two of a call. Both are pure: a packet's
//! header, its payload and the instant it arrived go in, a verdict comes out (the header to send
//! it with, or why it is dropped). The caller owns sockets, SRTP and the clock.
//!
//! The rewriting rules:
//! - **One outgoing SSRC** per direction, whatever the incoming side does. The incoming side may
//!   change its SSRC (a re-INVITE, an ICE restart, a PBX that re-anchors media) or restart its
//!   sequence under the same SSRC; the outgoing stream carries on.
//! - **Sequence numbers are translated, not renumbered**: within one incoming source the outgoing
//!   sequence is the incoming one plus a fixed offset, so a gap (loss) goes out as the same gap —
//!   loss is not hidden from the receiver's jitter buffer, its loss concealment or its RTCP
//!   reports — and a reordered packet goes out reordered, into the hole it left. Outgoing sequence
//!   numbers are *extended* (64 bits; the low 16 go in the header), which is what SRTP's rollover
//!   counter needs (RFC 3711 §3.3.1), and start below 2^16 so the receiver's ROC starts at 0.
//! - **Timestamps are translated** the same way, by a fixed offset per source, so the media
//!   clock's spacing (20 ms packets, silence gaps, a telephone-event's shared start timestamp)
//!   is preserved exactly.
//! - **At a discontinuity** (the first packet of the stream, of a new SSRC, or of a restarted
//!   sequence) a new offset is chosen so that the outgoing sequence goes on at the next number
//!   (no gap: nothing was lost) and the outgoing timestamp goes on from where the last packet's
//!   media ended, plus the wall-clock time that passed beyond the new packet's own duration (a
//!   two-second re-INVITE leaves a two-second hole in the media clock, so the receiver's jitter
//!   estimate stays right); never earlier than the end of what was already sent. That packet
//!   carries the **marker bit** (RFC 3551 §4.1: the start of a talkspurt, which tells the
//!   receiver to resynchronise its playout). Otherwise the incoming marker passes through.
//! - **Duplicates are dropped** (a window of the last 64 sequence numbers of the source is
//!   remembered), as are packets too late to matter (more than 64 behind, or older than the
//!   first packet forwarded from their source, whose outgoing numbers would collide with the
//!   previous source's).
//! - **A jump** of 3000 or more ahead, or more than 100 behind (RFC 3550 §A.1's `MAX_DROPOUT` and
//!   `MAX_MISORDER`), under the same SSRC is dropped; if the next packet follows it in sequence,
//!   the source restarted, and that packet is forwarded as a discontinuity.
//! - **After an SSRC change**, stragglers of the previous SSRC are dropped (they would otherwise
//!   flip the stream back) for half a second, and only while the new source is live (a packet
//!   in the last 100 ms): if the new one falls silent while the old one goes on, or later, the
//!   old SSRC coming back is just another change.
//! - **Payload types are mapped**: the incoming leg's audio type to the outgoing leg's, and its
//!   RFC 4733 telephone-event type to the outgoing leg's (each leg negotiated its own, e.g. 101
//!   on a PBX and 126 in a browser). Anything else — comfort noise, RED, telephone-events towards
//!   a leg that did not negotiate them — is dropped. Both legs must use the same G.711 law
//!   ([`BridgeError::CodecMismatch`] otherwise): the bridge never transcodes.

use std::time::{Duration, Instant};

use super::dtmf::TelephoneEvent;
use super::packet::RtpHeader;
use super::packetizer::SAMPLE_RATE;
use crate::sdp::Codec;

/// A forward jump of this many sequence numbers or more is not loss but a restart (RFC 3550 §A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// A packet more than this many sequence numbers behind is not reordering but a restart.
pub const MAX_MISORDER: u16 = 100;
/// How many sequence numbers behind the newest a packet may arrive and still be forwarded.
pub const REORDER_WINDOW: u16 = 64;
/// After an SSRC change, packets of the previous SSRC are dropped for this long…
pub const RETIRED_SOURCE_GRACE: Duration = Duration::from_millis(500);
/// …while the current source is live: it sent a packet less than this long ago.
pub const LIVE_SOURCE_SILENCE: Duration = Duration::from_millis(100);
/// The longest wall-clock gap carried into the timestamp at a discontinuity (about 37 hours at
/// 8 kHz, a quarter of the timestamp space, so that a receiver never sees it as a step back).
const MAX_GAP_SAMPLES: u64 = (u32::MAX / 4) as u64;

/// What one leg negotiated: its G.711 law, its audio payload type and its RFC 4733
/// telephone-event payload type, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegPayloads {
    pub codec: Codec,
    pub audio: u8,
    pub telephone_event: Option<u8>,
}

impl LegPayloads {
    /// The codec at its static payload type, without telephone-events.
    pub fn new(codec: Codec) -> LegPayloads {
        LegPayloads { codec, audio: codec.static_payload_type(), telephone_event: None }
    }

    pub fn with_telephone_event(self, payload_type: u8) -> LegPayloads {
        LegPayloads { telephone_event: Some(payload_type), ..self }
    }
}

/// Where an outgoing stream starts. The SSRC, sequence and timestamp should be random
/// (RFC 3550 §5.1); the server draws them, so this code stays deterministic. When the outgoing
/// leg chooses its own SSRC (str0m's send stream does), pass that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

/// Why two legs cannot be bridged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("the legs use different codecs ({from:?} in, {to:?} out): the bridge does not transcode")]
    CodecMismatch { from: Codec, to: Codec },
    #[error("payload type {0} is both the audio and the telephone-event type of one leg")]
    SharedPayloadType(u8),
    #[error("payload type {0} is not a 7-bit RTP payload type")]
    BadPayloadType(u8),
}

/// The header a forwarded packet goes out with; its payload is the incoming one, unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub ssrc: u32,
    /// The extended sequence number: the low 16 bits go in the header, the rest is SRTP's
    /// rollover counter.
    pub sequence: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
}

impl Forward {
    /// The 16-bit sequence number carried in the header.
    pub fn sequence_number(&self) -> u16 {
        self.sequence as u16
    }

    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence_number(),
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: Vec::new(),
        }
    }

    /// Writes the packet (12-byte header, then `payload`) into `out`, cleared first; no
    /// allocation once `out` has grown.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(if self.marker { 0x80 } else { 0 } | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence_number().to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
    }
}

/// Why a packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A payload type the outgoing leg has no mapping for (comfort noise, RED, telephone-events
    /// towards a leg without them).
    UnmappedPayloadType(u8),
    /// A telephone-event payload shorter than its 4 bytes.
    MalformedEvent,
    /// A sequence number already forwarded.
    Duplicate,
    /// Too far behind, or older than the first packet forwarded from its source.
    Late,
    /// A straggler of the SSRC the stream just switched away from.
    RetiredSource,
    /// A jump in the sequence under the same SSRC, not (yet) confirmed by the next packet.
    SequenceJump,
}

/// What to do with one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Forward),
    Drop(DropReason),
}

/// Counts for metrics: packets forwarded and dropped, by reason, and discontinuities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub forwarded: u64,
    /// Packets the receiver will see as missing: the sum of the forward gaps, less the late
    /// packets that filled them.
    pub gaps: u64,
    pub unmapped: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub late: u64,
    pub retired: u64,
    pub jumps: u64,
    /// New sources after the first: SSRC changes and confirmed sequence restarts.
    pub discontinuities: u64,
}

/// The incoming source currently forwarded.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    /// Extended incoming sequence number of the newest packet forwarded.
    highest: u64,
    /// Extended incoming sequence number of the first packet forwarded from this source.
    first_in: u64,
    /// The outgoing extended sequence number of that first packet.
    first_out: u64,
    /// Outgoing timestamp = incoming timestamp + this (wrapping).
    timestamp_offset: u32,
    /// Bit `k` set: `highest - k` was forwarded (bit 0 is `highest` itself).
    window: u64,
    /// After an unconfirmed jump: the sequence number that would confirm a restart.
    restart_at: Option<u16>,
}

/// The newest packet sent: where the outgoing stream stands.
#[derive(Debug, Clone, Copy)]
struct Newest {
    sequence: u64,
    /// Outgoing timestamp at the end of its media (audio: start + samples; a telephone-event:
    /// its start + its duration so far).
    media_end: u32,
    arrival: Instant,
}

/// One direction of a bridge: packets from one leg, rewritten for the other.
#[derive(Debug, Clone)]
pub struct Forwarder {
    from: LegPayloads,
    to: LegPayloads,
    start: StreamStart,
    source: Option<Source>,
    retired: Option<(u32, Instant)>,
    newest: Option<Newest>,
    stats: ForwardStats,
}

fn check(leg: &LegPayloads) -> Result<(), BridgeError> {
    for pt in std::iter::once(leg.audio).chain(leg.telephone_event) {
        if pt > 127 {
            return Err(BridgeError::BadPayloadType(pt));
        }
    }
    if leg.telephone_event == Some(leg.audio) {
        return Err(BridgeError::SharedPayloadType(leg.audio));
    }
    Ok(())
}

/// Samples of the 8 kHz media clock in `d`, capped.
fn samples_in(d: Duration) -> u32 {
    let samples = d.as_micros().saturating_mul(u128::from(SAMPLE_RATE)) / 1_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX).min(MAX_GAP_SAMPLES) as u32
}

enum Kind {
    Audio,
    Event,
}

impl Forwarder {
    /// Forwards packets of leg `from` to leg `to`, as one stream starting at `start`.
    pub fn new(from: LegPayloads, to: LegPayloads, start: StreamStart) -> Result<Forwarder, BridgeError> {
        check(&from)?;
        check(&to)?;
        if from.codec != to.codec {
            return Err(BridgeError::CodecMismatch { from: from.codec, to: to.codec });
        }
        Ok(Forwarder { from, to, start, source: None, retired: None, newest: None, stats: ForwardStats::default() })
    }

    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// The outgoing SSRC.
    pub fn ssrc(&self) -> u32 {
        self.start.ssrc
    }

    /// Decides what to do with one incoming packet that arrived at `now`.
    pub fn forward(&mut self, header: &RtpHeader, payload: &[u8], now: Instant) -> Verdict {
        let verdict = self.decide(header, payload, now);
        match verdict {
            Verdict::Forward(_) => self.stats.forwarded += 1,
            Verdict::Drop(reason) => {
                let s = &mut self.stats;
                *match reason {
                    DropReason::UnmappedPayloadType(_) => &mut s.unmapped,
                    DropReason::MalformedEvent => &mut s.malformed,
                    DropReason::Duplicate => &mut s.duplicates,
                    DropReason::Late => &mut s.late,
                    DropReason::RetiredSource => &mut s.retired,
                    DropReason::SequenceJump => &mut s.jumps,
                } += 1;
            }
        }
        verdict
    }

    fn decide(&mut self, header: &RtpHeader, payload: &[u8], now: Instant) -> Verdict {
        let (kind, payload_type) = if header.payload_type == self.from.audio {
            (Kind::Audio, self.to.audio)
        } else if let (Some(from), Some(to)) = (self.from.telephone_event, self.to.telephone_event) {
            if header.payload_type != from {
                return Verdict::Drop(DropReason::UnmappedPayloadType(header.payload_type));
            }
            (Kind::Event, to)
        } else {
            return Verdict::Drop(DropReason::UnmappedPayloadType(header.payload_type));
        };
        // How far this packet's media reaches past its timestamp.
        let duration = match kind {
            // G.711: one byte per sample.
            Kind::Audio => u32::try_from(payload.len()).unwrap_or(u32::MAX),
            Kind::Event => match TelephoneEvent::decode(payload) {
                Ok(event) => u32::from(event.duration),
                Err(_) => return Verdict::Drop(DropReason::MalformedEvent),
            },
        };

        let same_source = self.source.as_ref().is_some_and(|s| s.ssrc == header.ssrc);
        if !same_source {
            if let (Some((ssrc, since)), Some(newest)) = (self.retired, self.newest) {
                let recent_change = now.saturating_duration_since(since) < RETIRED_SOURCE_GRACE;
                let current_live = now.saturating_duration_since(newest.arrival) < LIVE_SOURCE_SILENCE;
                if ssrc == header.ssrc && recent_change && current_live {
                    return Verdict::Drop(DropReason::RetiredSource);
                }
            }
            if let Some(old) = self.source.take() {
                self.retired = Some((old.ssrc, now));
            }
            return self.resync(header, duration, payload_type, now);
        }
        let Some(source) = self.source.as_mut() else {
            return self.resync(header, duration, payload_type, now);
        };

        let ahead = header.sequence.wrapping_sub(source.highest as u16);
        let extended = if ahead == 0 {
            return Verdict::Drop(DropReason::Duplicate);
        } else if ahead < MAX_DROPOUT {
            let extended = source.highest + u64::from(ahead);
            source.window = source.window.checked_shl(u32::from(ahead)).unwrap_or(0) | 1;
            source.highest = extended;
            source.restart_at = None;
            self.stats.gaps += u64::from(ahead - 1);
            extended
        } else if ahead > u16::MAX - MAX_MISORDER {
            // Behind the newest: reordered, duplicated or too late.
            let behind = 0u16.wrapping_sub(ahead);
            let Some(extended) = source.highest.checked_sub(u64::from(behind)) else {
                return Verdict::Drop(DropReason::Late);
            };
            if behind >= REORDER_WINDOW || extended < source.first_in {
                return Verdict::Drop(DropReason::Late);
            }
            let bit = 1u64 << behind;
            if source.window & bit != 0 {
                return Verdict::Drop(DropReason::Duplicate);
            }
            source.window |= bit;
            self.stats.gaps = self.stats.gaps.saturating_sub(1);
            let forward = Forward {
                ssrc: self.start.ssrc,
                sequence: extended - source.first_in + source.first_out,
                timestamp: header.timestamp.wrapping_add(source.timestamp_offset),
                marker: header.marker,
                payload_type,
            };
            return Verdict::Forward(forward);
        } else {
            // A jump: a stray packet, or the source restarted its sequence.
            if source.restart_at == Some(header.sequence) {
                return self.resync(header, duration, payload_type, now);
            }
            source.restart_at = Some(header.sequence.wrapping_add(1));
            return Verdict::Drop(DropReason::SequenceJump);
        };

        let forward = Forward {
            ssrc: self.start.ssrc,
            sequence: extended - source.first_in + source.first_out,
            timestamp: header.timestamp.wrapping_add(source.timestamp_offset),
            marker: header.marker,
            payload_type,
        };
        self.newest = Some(Newest {
            sequence: forward.sequence,
            media_end: forward.timestamp.wrapping_add(duration),
            arrival: now,
        });
        Verdict::Forward(forward)
    }

    /// Starts a new incoming source at this packet: a discontinuity in what came in, none in what
    /// goes out.
    fn resync(&mut self, header: &RtpHeader, duration: u32, payload_type: u8, now: Instant) -> Verdict {
        let (sequence, timestamp) = match self.newest {
            None => (u64::from(self.start.sequence), self.start.timestamp),
            Some(newest) => {
                self.stats.discontinuities += 1;
                let waited = samples_in(now.saturating_duration_since(newest.arrival));
                (newest.sequence + 1, newest.media_end.wrapping_add(waited.saturating_sub(duration)))
            }
        };
        self.source = Some(Source {
            ssrc: header.ssrc,
            highest: u64::from(header.sequence),
            first_in: u64::from(header.sequence),
            first_out: sequence,
            timestamp_offset: timestamp.wrapping_sub(header.timestamp),
            window: 1,
            restart_at: None,
        });
        self.newest = Some(Newest { sequence, media_end: timestamp.wrapping_add(duration), arrival: now });
        Verdict::Forward(Forward { ssrc: self.start.ssrc, sequence, timestamp, marker: true, payload_type })
    }
}

/// Which leg of a bridge a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Both directions of a call: leg A's packets rewritten for leg B, and B's for A.
#[derive(Debug, Clone)]
pub struct Bridge {
    a_to_b: Forwarder,
    b_to_a: Forwarder,
}

impl Bridge {
    /// `to_a` and `to_b` are where the streams sent to each leg start.
    pub fn new(a: LegPayloads, b: LegPayloads, to_a: StreamStart, to_b: StreamStart) -> Result<Bridge, BridgeError> {
        Ok(Bridge { a_to_b: Forwarder::new(a, b, to_b)?, b_to_a: Forwarder::new(b, a, to_a)? })
    }

    /// A packet from `from`: what to send to the other leg.
    pub fn forward(&mut self, from: Side, header: &RtpHeader, payload: &[u8], now: Instant) -> Verdict {
        self.towards(match from {
            Side::A => Side::B,
            Side::B => Side::A,
        })
        .forward(header, payload, now)
    }

    /// The direction that sends to `leg`.
    pub fn towards(&mut self, leg: Side) -> &mut Forwarder {
        match leg {
            Side::A => &mut self.b_to_a,
            Side::B => &mut self.a_to_b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DtmfDigit;
    use crate::rtp::{DtmfSender, RtpPacket};

    const SIP: LegPayloads = LegPayloads { codec: Codec::Pcmu, audio: 0, telephone_event: Some(101) };
    const BROWSER: LegPayloads = LegPayloads { codec: Codec::Pcmu, audio: 0, telephone_event: Some(126) };
    const START: StreamStart = StreamStart { ssrc: 0xB0B, sequence: 1000, timestamp: 50_000 };
    const AUDIO: [u8; 160] = [0x55; 160];

    fn forwarder() -> Forwarder {
        Forwarder::new(SIP, BROWSER, START).unwrap()
    }

    fn header(ssrc: u32, sequence: u16, timestamp: u32, marker: bool, payload_type: u8) -> RtpHeader {
        RtpHeader { marker, payload_type, sequence, timestamp, ssrc, csrcs: Vec::new() }
    }

    /// One incoming source sending 20 ms of PCMU every 20 ms from `t0`.
    struct Source {
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        at: Instant,
    }

    impl Source {
        fn new(ssrc: u32, sequence: u16, timestamp: u32, at: Instant) -> Source {
            Source { ssrc, sequence, timestamp, at }
        }

        /// The next packet's header and arrival; the source moves on.
        fn next(&mut self) -> (RtpHeader, Instant) {
            let out = (header(self.ssrc, self.sequence, self.timestamp, false, 0), self.at);
            self.skip(1);
            out
        }

        /// `n` packets not sent (lost, or silence).
        fn skip(&mut self, n: u16) {
            self.sequence = self.sequence.wrapping_add(n);
            self.timestamp = self.timestamp.wrapping_add(160 * u32::from(n));
            self.at += Duration::from_millis(20) * u32::from(n);
        }
    }

    fn sent(v: Verdict) -> Forward {
        match v {
            Verdict::Forward(f) => f,
            Verdict::Drop(why) => panic!("dropped: {why:?}"),
        }
    }

    /// (extended sequence, timestamp, marker) of a forwarded packet.
    fn stm(v: Verdict) -> (u64, u32, bool) {
        let f = sent(v);
        (f.sequence, f.timestamp, f.marker)
    }

    fn audio(f: &mut Forwarder, (h, at): (RtpHeader, Instant)) -> Verdict {
        f.forward(&h, &AUDIO, at)
    }

    #[test]
    fn the_first_packet_starts_the_outgoing_stream_with_a_marker() {
        let mut f = forwarder();
        let v = f.forward(&header(7, 40_000, 123, false, 0), &AUDIO, Instant::now());
        assert_eq!(
            v,
            Verdict::Forward(Forward { ssrc: 0xB0B, sequence: 1000, timestamp: 50_000, marker: true, payload_type: 0 })
        );
        assert_eq!(f.stats().discontinuities, 0, "the first source is no discontinuity");
    }

    #[test]
    fn in_order_packets_translate_sequence_and_timestamp_and_pass_the_marker_through() {
        let mut f = forwarder();
        let mut src = Source::new(7, 40_000, 123, Instant::now());
        let out: Vec<_> = (0..50).map(|_| stm(audio(&mut f, src.next()))).collect();
        for (k, &(seq, ts, marker)) in out.iter().enumerate() {
            assert_eq!((seq, ts, marker), (1000 + k as u64, 50_000 + 160 * k as u32, k == 0));
        }
        // Silence suppression: 10 packets not sent, then a talkspurt with its marker.
        src.skip(10);
        let (mut h, at) = src.next();
        h.marker = true;
        // The sequence did not skip (the sender sent nothing), the timestamp did.
        h.sequence = h.sequence.wrapping_sub(10);
        assert_eq!(stm(f.forward(&h, &AUDIO, at)), (1050, 50_000 + 160 * 60, true));
        assert_eq!(f.stats().forwarded, 51);
        assert_eq!(f.stats().gaps, 0);
    }

    #[test]
    fn loss_goes_out_as_the_same_gap() {
        let mut f = forwarder();
        let mut src = Source::new(7, 10, 0, Instant::now());
        assert_eq!(stm(audio(&mut f, src.next())), (1000, 50_000, true));
        assert_eq!(stm(audio(&mut f, src.next())), (1001, 50_160, false));
        src.skip(2);
        assert_eq!(stm(audio(&mut f, src.next())), (1004, 50_640, false));
        assert_eq!(stm(audio(&mut f, src.next())), (1005, 50_800, false));
        assert_eq!(f.stats().gaps, 2);
    }

    #[test]
    fn reordered_packets_fill_their_hole_and_duplicates_are_dropped() {
        let mut f = forwarder();
        let t = Instant::now();
        let p = |seq: u16| header(7, seq, u32::from(seq) * 160, false, 0);
        assert_eq!(stm(f.forward(&p(10), &AUDIO, t)), (1000, 50_000, true));
        assert_eq!(stm(f.forward(&p(12), &AUDIO, t)), (1002, 50_320, false));
        assert_eq!(f.stats().gaps, 1);
        assert_eq!(stm(f.forward(&p(11), &AUDIO, t)), (1001, 50_160, false), "late, into its hole");
        assert_eq!(f.stats().gaps, 0);
        for seq in [11, 12, 10] {
            assert_eq!(f.forward(&p(seq), &AUDIO, t), Verdict::Drop(DropReason::Duplicate), "seq {seq}");
        }
        assert_eq!(stm(f.forward(&p(13), &AUDIO, t)), (1003, 50_480, false));
        assert_eq!(f.stats().duplicates, 3);
        assert_eq!(f.stats().forwarded, 4);
    }

    #[test]
    fn packets_too_late_or_older_than_their_source_are_dropped() {
        let mut f = forwarder();
        let t = Instant::now();
        let p = |seq: u16| header(7, seq, u32::from(seq) * 160, false, 0);
        for seq in (100..=200).filter(|s| *s != 140 && *s != 130) {
            sent(f.forward(&p(seq), &AUDIO, t));
        }
        // 60 behind the newest: still in the window.
        assert_eq!(stm(f.forward(&p(140), &AUDIO, t)), (1040, 50_000 + 40 * 160, false));
        // 70 behind: too late for anyone's jitter buffer.
        assert_eq!(f.forward(&p(130), &AUDIO, t), Verdict::Drop(DropReason::Late));
        // Older than the source's first packet: its number would belong to what came before.
        let mut g = forwarder();
        sent(g.forward(&p(100), &AUDIO, t));
        assert_eq!(g.forward(&p(99), &AUDIO, t), Verdict::Drop(DropReason::Late));
        assert_eq!((f.stats().late, g.stats().late), (1, 1));
    }

    #[test]
    fn the_incoming_sequence_wraps_at_2_16() {
        let mut f = forwarder();
        let mut src = Source::new(7, 65_534, 0, Instant::now());
        let out: Vec<_> = (0..4).map(|_| stm(audio(&mut f, src.next())).0).collect();
        assert_eq!(out, [1000, 1001, 1002, 1003]);
        // Reordering across the wrap: 65535, then 1, then 0.
        let mut g = forwarder();
        let t = Instant::now();
        let p = |seq: u16, k: u32| header(9, seq, k * 160, false, 0);
        assert_eq!(stm(g.forward(&p(65_535, 0), &AUDIO, t)).0, 1000);
        assert_eq!(stm(g.forward(&p(1, 2), &AUDIO, t)).0, 1002);
        assert_eq!(stm(g.forward(&p(0, 1), &AUDIO, t)), (1001, 50_160, false));
        assert_eq!(g.forward(&p(65_535, 0), &AUDIO, t), Verdict::Drop(DropReason::Duplicate));
    }

    #[test]
    fn the_outgoing_sequence_is_extended_past_2_16_for_srtp() {
        let start = StreamStart { sequence: 65_534, ..START };
        let mut f = Forwarder::new(SIP, BROWSER, start).unwrap();
        let mut src = Source::new(7, 10, 0, Instant::now());
        let out: Vec<_> = (0..4).map(|_| sent(audio(&mut f, src.next()))).collect();
        assert_eq!(out.iter().map(|o| o.sequence).collect::<Vec<_>>(), [65_534, 65_535, 65_536, 65_537]);
        assert_eq!(out.iter().map(Forward::sequence_number).collect::<Vec<_>>(), [65_534, 65_535, 0, 1]);
        assert_eq!(out[2].header().sequence, 0);
    }

    #[test]
    fn timestamps_wrap_at_2_32_both_ways() {
        let start = StreamStart { timestamp: u32::MAX - 200, ..START };
        let mut f = Forwarder::new(SIP, BROWSER, start).unwrap();
        let mut src = Source::new(7, 10, u32::MAX - 159, Instant::now());
        for k in 0..4u32 {
            let (seq, ts, _) = stm(audio(&mut f, src.next()));
            assert_eq!((seq, ts), (1000 + u64::from(k), (u32::MAX - 200).wrapping_add(160 * k)));
        }
        // A source change after the wrap goes on from there.
        let t = src.at;
        let v = f.forward(&header(8, 5, 777, false, 0), &AUDIO, t);
        assert_eq!(stm(v), (1004, (u32::MAX - 200).wrapping_add(160 * 4), true));
    }

    #[test]
    fn an_ssrc_change_goes_on_in_sequence_and_time_with_a_marker() {
        let mut f = forwarder();
        let mut a = Source::new(7, 40_000, 123, Instant::now());
        for _ in 0..50 {
            sent(audio(&mut f, a.next()));
        }
        // A re-INVITE: the new source's numbers have nothing to do with the old ones, and its
        // first packet comes 20 ms after the last one of the old.
        let mut b = Source::new(0xFEED, 7, 999_999, a.at);
        assert_eq!(stm(audio(&mut f, b.next())), (1050, 50_000 + 50 * 160, true));
        assert_eq!(stm(audio(&mut f, b.next())), (1051, 50_000 + 51 * 160, false));
        b.skip(1);
        assert_eq!(stm(audio(&mut f, b.next())), (1053, 50_000 + 53 * 160, false), "loss after the change");
        assert_eq!(f.stats().discontinuities, 1);
    }

    #[test]
    fn the_time_between_sources_is_kept_in_the_timestamp_but_never_overlaps() {
        let t = Instant::now();
        // The new source comes 2 s after the old one's last packet: 2 s of media clock later.
        let mut f = forwarder();
        sent(f.forward(&header(7, 1, 0, false, 0), &AUDIO, t));
        let v = f.forward(&header(8, 1, 0, false, 0), &AUDIO, t + Duration::from_secs(2));
        assert_eq!(stm(v), (1001, 50_000 + 16_000, true));
        // Both at once (a burst): right after the last packet's media, not on top of it.
        let mut g = forwarder();
        sent(g.forward(&header(7, 1, 0, false, 0), &AUDIO, t));
        assert_eq!(stm(g.forward(&header(8, 1, 0, false, 0), &AUDIO, t)), (1001, 50_160, true));
        // A shorter packet (10 ms) after 30 ms: its media ends 30 ms after the old one's.
        let mut h = forwarder();
        sent(h.forward(&header(7, 1, 0, false, 0), &AUDIO, t));
        let v = h.forward(&header(8, 1, 0, false, 0), &AUDIO[..80], t + Duration::from_millis(30));
        assert_eq!(stm(v), (1001, 50_000 + 160 + 240 - 80, true));
    }

    #[test]
    fn stragglers_of_the_old_ssrc_are_dropped_then_it_may_come_back() {
        let mut f = forwarder();
        let mut a = Source::new(7, 100, 0, Instant::now());
        for _ in 0..5 {
            sent(audio(&mut f, a.next()));
        }
        let mut b = Source::new(8, 500, 0, a.at);
        sent(audio(&mut f, b.next()));
        // A packet of the old source, reordered past the change.
        assert_eq!(audio(&mut f, a.next()), Verdict::Drop(DropReason::RetiredSource));
        assert_eq!(stm(audio(&mut f, b.next())).0, 1006, "the new source goes on");
        for _ in 0..30 {
            sent(audio(&mut f, b.next()));
        }
        // 600 ms later the old SSRC is back (the far end switched back): a change like any other.
        let mut back = Source::new(7, 105, 800, b.at);
        assert_eq!(stm(audio(&mut f, back.next())).0, 1037);
        assert_eq!(f.stats().retired, 1);
        assert_eq!(f.stats().discontinuities, 2);
    }

    #[test]
    fn the_old_ssrc_wins_back_when_the_new_one_falls_silent() {
        let mut f = forwarder();
        let mut a = Source::new(7, 100, 0, Instant::now());
        for _ in 0..5 {
            sent(audio(&mut f, a.next()));
        }
        // One packet of a stray SSRC, then nothing more from it; the old source goes on.
        let stray = Source::new(8, 1, 0, a.at).next();
        assert_eq!(stm(audio(&mut f, stray)).0, 1005);
        for _ in 0..5 {
            assert_eq!(audio(&mut f, a.next()), Verdict::Drop(DropReason::RetiredSource));
        }
        // 100 ms without the new source: the old one is the live one again (100 ms after the
        // stray packet, in media time too).
        assert_eq!(stm(audio(&mut f, a.next())), (1006, 50_000 + 5 * 160 + 800, true));
    }

    #[test]
    fn a_stray_sequence_jump_is_dropped_and_a_restart_is_followed() {
        let mut f = forwarder();
        let mut src = Source::new(7, 10, 0, Instant::now());
        for _ in 0..3 {
            sent(audio(&mut f, src.next()));
        }
        let (_, at) = src.next();
        // One stray packet far ahead, then one far behind: neither moves the stream.
        assert_eq!(f.forward(&header(7, 30_000, 0, false, 0), &AUDIO, at), Verdict::Drop(DropReason::SequenceJump));
        assert_eq!(f.forward(&header(7, 65_000, 0, false, 0), &AUDIO, at), Verdict::Drop(DropReason::SequenceJump));
        assert_eq!(stm(f.forward(&header(7, 13, 3 * 160, false, 0), &AUDIO, at)), (1003, 50_480, false));
        // The source restarts its numbering under the same SSRC (some gateways do on re-INVITE):
        // the first such packet is held back as a possible stray, the next one confirms it.
        let later = at + Duration::from_millis(20);
        assert_eq!(
            f.forward(&header(7, 5000, 90_000, false, 0), &AUDIO, later),
            Verdict::Drop(DropReason::SequenceJump)
        );
        let v = f.forward(&header(7, 5001, 90_160, false, 0), &AUDIO, later + Duration::from_millis(20));
        // 40 ms after the last packet forwarded: two packet times on.
        assert_eq!(stm(v), (1004, 50_480 + 320, true));
        let v = f.forward(&header(7, 5002, 90_320, false, 0), &AUDIO, later + Duration::from_millis(40));
        assert_eq!(stm(v), (1005, 50_480 + 480, false));
        assert_eq!(f.stats().jumps, 3);
        assert_eq!(f.stats().discontinuities, 1);
    }

    #[test]
    fn telephone_events_are_mapped_and_keep_their_shared_timestamp() {
        let mut f = forwarder();
        let mut src = Source::new(7, 10, 8000, Instant::now());
        for _ in 0..3 {
            sent(audio(&mut f, src.next()));
        }
        // Key 5 held for 100 ms from the next timestamp, at the SIP leg's type 101.
        let event_ts = src.timestamp;
        let packets = DtmfSender::packets(DtmfDigit::from_event_code(5).unwrap(), event_ts, 800, 10);
        let mut out = Vec::new();
        for p in &packets {
            let (mut h, at) = src.next();
            (h.payload_type, h.marker, h.timestamp) = (101, p.marker, p.timestamp);
            out.push(sent(f.forward(&h, &p.payload, at)));
        }
        assert!(out.iter().all(|o| o.payload_type == 126), "the browser's telephone-event type");
        assert!(out.iter().all(|o| o.timestamp == 50_000 + 3 * 160), "one timestamp per event");
        assert_eq!(out.iter().map(|o| o.marker).collect::<Vec<_>>()[..2], [true, false]);
        assert!(out[1..].iter().all(|o| !o.marker));
        assert_eq!(
            out.iter().map(|o| o.sequence).collect::<Vec<_>>(),
            (1003..1003 + packets.len() as u64).collect::<Vec<_>>()
        );
        // Audio resumes, still on the same translation (incoming 8000 went out as 50 000).
        let (h, at) = src.next();
        assert_eq!(stm(f.forward(&h, &AUDIO, at)).1, h.timestamp - 8000 + 50_000);
    }

    #[test]
    fn a_change_after_a_telephone_event_starts_after_the_event() {
        let mut f = forwarder();
        let t = Instant::now();
        sent(f.forward(&header(7, 1, 0, false, 0), &AUDIO, t));
        let ev = |duration: u16, end: bool| TelephoneEvent { event: 1, end, volume: 10, duration }.encode();
        // An event starting at 160, 800 samples long: its last packet still says timestamp 160.
        sent(f.forward(&header(7, 2, 160, true, 101), &ev(160, false), t));
        sent(f.forward(&header(7, 3, 160, false, 101), &ev(800, true), t + Duration::from_millis(80)));
        let v = f.forward(&header(8, 1, 0, false, 0), &AUDIO, t + Duration::from_millis(100));
        assert_eq!(stm(v), (1003, 50_000 + 160 + 800, true), "after the event's 100 ms, not inside it");
    }

    #[test]
    fn unmapped_and_malformed_payloads_are_dropped() {
        let mut f = forwarder();
        let t = Instant::now();
        sent(f.forward(&header(7, 1, 0, false, 0), &AUDIO, t));
        // Comfort noise (13) and PCMA (8) were not negotiated.
        for pt in [13, 8] {
            assert_eq!(
                f.forward(&header(7, 2, 160, false, pt), &[0; 1], t),
                Verdict::Drop(DropReason::UnmappedPayloadType(pt))
            );
        }
        assert_eq!(f.forward(&header(7, 2, 160, false, 101), &[1, 2], t), Verdict::Drop(DropReason::MalformedEvent));
        // Towards a leg without telephone-events, events are dropped; audio still goes.
        let mut g = Forwarder::new(SIP, LegPayloads::new(Codec::Pcmu), START).unwrap();
        let event = TelephoneEvent { event: 1, end: false, volume: 10, duration: 160 }.encode();
        assert_eq!(
            g.forward(&header(7, 1, 0, true, 101), &event, t),
            Verdict::Drop(DropReason::UnmappedPayloadType(101))
        );
        assert_eq!(stm(g.forward(&header(7, 2, 160, false, 0), &AUDIO, t)), (1000, 50_000, true));
        assert_eq!((f.stats().unmapped, f.stats().malformed, g.stats().unmapped), (2, 1, 1));
    }

    #[test]
    fn legs_must_share_the_law_and_have_distinct_valid_payload_types() {
        let pcma = LegPayloads::new(Codec::Pcma);
        assert_eq!(
            Bridge::new(SIP, pcma, START, START).err(),
            Some(BridgeError::CodecMismatch { from: Codec::Pcmu, to: Codec::Pcma })
        );
        let shared = LegPayloads::new(Codec::Pcmu).with_telephone_event(0);
        assert_eq!(Forwarder::new(shared, SIP, START).err(), Some(BridgeError::SharedPayloadType(0)));
        let bad = LegPayloads::new(Codec::Pcma).with_telephone_event(200);
        assert_eq!(Forwarder::new(pcma, bad, START).err(), Some(BridgeError::BadPayloadType(200)));
        assert!(Bridge::new(pcma, pcma.with_telephone_event(96), START, START).is_ok());
    }

    #[test]
    fn a_bridge_rewrites_each_way_for_the_leg_it_sends_to() {
        let to_sip = StreamStart { ssrc: 0x5_1B, sequence: 7, timestamp: 70 };
        let to_browser = StreamStart { ssrc: 0xB0B, sequence: 9, timestamp: 90 };
        let mut bridge = Bridge::new(SIP, BROWSER, to_sip, to_browser).unwrap();
        let t = Instant::now();
        let event = TelephoneEvent { event: 3, end: false, volume: 10, duration: 160 }.encode();
        let from_sip = sent(bridge.forward(Side::A, &header(1, 100, 1000, true, 101), &event, t));
        assert_eq!((from_sip.ssrc, from_sip.sequence, from_sip.timestamp, from_sip.payload_type), (0xB0B, 9, 90, 126));
        let from_browser = sent(bridge.forward(Side::B, &header(2, 200, 2000, true, 126), &event, t));
        assert_eq!((from_browser.ssrc, from_browser.sequence, from_browser.payload_type), (0x5_1B, 7, 101));
        assert_eq!(bridge.towards(Side::A).stats().forwarded, 1);
        // The bytes for the SIP leg: our header, the payload untouched.
        let mut buf = Vec::new();
        from_browser.write(&event, &mut buf);
        let decoded = RtpPacket::decode(&buf).unwrap();
        assert_eq!((decoded.header, decoded.payload), (from_browser.header(), &event[..]));
    }

    /// How a test stream reaches the forwarder: each packet of the sources in turn, then
    /// disturbed by the network.
    #[derive(Debug, Clone)]
    enum Net {
        Deliver,
        Lose,
        Duplicate,
        /// Swap with the next packet.
        Swap,
    }

    proptest::proptest! {
        /// Whatever the network does to up to three sources one after another: the outgoing
        /// stream never repeats a sequence number; within a source, sequence and timestamp are
        /// one fixed translation of the incoming ones; each source's first forwarded packet
        /// follows on the newest number sent and carries the marker; and only duplicates,
        /// late packets and stragglers of an old source are dropped.
        #[test]
        fn the_outgoing_stream_stays_one_stream(
            sources in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 1usize..60), 1..4),
            net in proptest::collection::vec(
                proptest::prop_oneof![8 => proptest::strategy::Just(Net::Deliver), 1 => proptest::strategy::Just(Net::Lose),
                    1 => proptest::strategy::Just(Net::Duplicate), 1 => proptest::strategy::Just(Net::Swap)],
                200),
            start_sequence in 0u16..,
            start_timestamp in proptest::prelude::any::<u32>(),
        ) {
            // (source index, packet index within it, header)
            let mut sent_order: Vec<(usize, u32, RtpHeader)> = Vec::new();
            for (i, (seq, ts, count)) in sources.iter().enumerate() {
                for k in 0..*count as u32 {
                    let h = header(1000 + i as u32, seq.wrapping_add(k as u16), ts.wrapping_add(160 * k), false, 0);
                    sent_order.push((i, k, h));
                }
            }
            let mut arrivals = Vec::new();
            let mut i = 0;
            while i < sent_order.len() {
                match net.get(i).cloned().unwrap_or(Net::Deliver) {
                    Net::Deliver => arrivals.push(sent_order[i].clone()),
                    Net::Lose => {}
                    Net::Duplicate => {
                        arrivals.push(sent_order[i].clone());
                        arrivals.push(sent_order[i].clone());
                    }
                    Net::Swap if i + 1 < sent_order.len() => {
                        arrivals.push(sent_order[i + 1].clone());
                        arrivals.push(sent_order[i].clone());
                        i += 1;
                    }
                    Net::Swap => arrivals.push(sent_order[i].clone()),
                }
                i += 1;
            }
            let start = StreamStart { ssrc: 42, sequence: start_sequence, timestamp: start_timestamp };
            let mut f = Forwarder::new(SIP, BROWSER, start).unwrap();
            let t0 = Instant::now();
            let mut seen = std::collections::HashSet::new();
            // The translation of the current run of packets from one source (a source that comes
            // back after another is a new run, with a new translation).
            let mut run: Option<(usize, (u64, u32))> = None;
            let mut newest: Option<u64> = None;
            for (n, (src, k, h)) in arrivals.iter().enumerate() {
                let at = t0 + Duration::from_millis(20) * n as u32;
                match f.forward(h, &AUDIO, at) {
                    Verdict::Forward(out) => {
                        proptest::prop_assert_eq!(out.ssrc, 42);
                        proptest::prop_assert!(seen.insert(out.sequence), "sequence {} sent twice", out.sequence);
                        let t = (out.sequence.wrapping_sub(u64::from(*k)), out.timestamp.wrapping_sub(160 * k));
                        match run {
                            Some((current, known)) if current == *src => proptest::prop_assert_eq!(known, t),
                            _ => {
                                proptest::prop_assert!(out.marker, "a source's first packet carries the marker");
                                let expected = newest.map_or(u64::from(start_sequence), |s| s + 1);
                                proptest::prop_assert_eq!(out.sequence, expected);
                                run = Some((*src, t));
                            }
                        }
                        newest = Some(newest.map_or(out.sequence, |s| s.max(out.sequence)));
                    }
                    Verdict::Drop(why) => proptest::prop_assert!(
                        matches!(why, DropReason::Duplicate | DropReason::Late | DropReason::RetiredSource),
                        "{:?}", why
                    ),
                }
            }
        }
    }
}
