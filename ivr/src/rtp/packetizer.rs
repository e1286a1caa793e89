//! Turning prompt audio into RTP: 8 kHz samples cut into 20 ms packets (160 samples) with the
//! sequence/timestamp/marker rules of RFC 3550 §5.1 and RFC 3551 §4.1, and the fixed 20 ms grid
//! the server paces them on.

use std::time::{Duration, Instant};

use super::g711::{encode, silence};
use super::packet::RtpHeader;
use crate::sdp::Codec;

/// G.711 sampling rate.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
/// The packet interval.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// Packetizes one call's outgoing audio: one SSRC, a sequence number that grows by one per packet
/// from a random start, a timestamp that grows by 160 per packet, and the marker bit on the first
/// packet of each talkspurt (each prompt).
#[derive(Debug, Clone)]
pub struct Packetizer {
    codec: Codec,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    marker_pending: bool,
    pending: Vec<i16>,
}

impl Packetizer {
    /// `ssrc`, `initial_sequence` and `initial_timestamp` should be random (RFC 3550 §5.1); the
    /// server draws them, so this code stays deterministic.
    pub fn new(codec: Codec, payload_type: u8, ssrc: u32, initial_sequence: u16, initial_timestamp: u32) -> Self {
        Packetizer {
            codec,
            payload_type,
            ssrc,
            sequence: initial_sequence,
            timestamp: initial_timestamp,
            marker_pending: true,
            pending: Vec::with_capacity(SAMPLES_PER_PACKET),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The next packet starts a talkspurt (a new prompt): it carries the marker bit.
    pub fn start_talkspurt(&mut self) {
        self.marker_pending = true;
    }

    /// Advances the timestamp over `samples` of silence that are not sent (between prompts), so
    /// the receiver's clock stays right (RFC 3550 §5.1).
    pub fn skip_silence(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Adds samples; returns every complete packet, ready to send in order.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in samples.chunks(SAMPLES_PER_PACKET) {
            let room = SAMPLES_PER_PACKET - self.pending.len();
            let (now, later) = chunk.split_at(room.min(chunk.len()));
            self.pending.extend_from_slice(now);
            if self.pending.len() == SAMPLES_PER_PACKET {
                let frame = std::mem::take(&mut self.pending);
                out.push(self.packet(&frame));
            }
            self.pending.extend_from_slice(later);
        }
        out
    }

    /// Ends a prompt: pads the partial packet, if any, with silence and returns it.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut frame = std::mem::take(&mut self.pending);
        frame.resize(SAMPLES_PER_PACKET, 0);
        Some(self.packet(&frame))
    }

    /// Writes the next packet into `out` (cleared first) from audio already encoded in this
    /// packetizer's codec: the header, then the first 160 bytes of `payload`, padded with
    /// silence when shorter. No allocation once `out` has grown: what a pacer sending from
    /// pre-encoded prompts needs. Shares the sequence/timestamp/marker state with `push`.
    pub fn write_encoded(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let frame = &payload[..payload.len().min(SAMPLES_PER_PACKET)];
        out.clear();
        out.push(0x80);
        let marker = if std::mem::take(&mut self.marker_pending) { 0x80 } else { 0 };
        out.push(marker | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(frame);
        out.resize(12 + SAMPLES_PER_PACKET, silence(self.codec));
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
    }

    fn packet(&mut self, frame: &[i16]) -> Vec<u8> {
        let header = RtpHeader {
            marker: std::mem::take(&mut self.marker_pending),
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: Vec::new(),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
        header.encode(&encode(self.codec, frame))
    }
}

/// The fixed send grid: packet `n` of a stream is due at `start + n · 20 ms`. Computing each
/// instant from the start (never by adding to the previous send) keeps jitter from accumulating,
/// and lets the server measure how far each send lands from the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
}

impl Pacer {
    pub fn new(start: Instant) -> Pacer {
        Pacer { start, interval: PACKET_INTERVAL }
    }

    /// When packet `n` (0-based) is due.
    pub fn send_at(&self, n: u32) -> Instant {
        self.start + self.interval * n
    }

    /// How late (positive) or early (negative) packet `n` was sent at `actual`, in microseconds.
    pub fn deviation_micros(&self, n: u32, actual: Instant) -> i64 {
        let due = self.send_at(n);
        if actual >= due {
            i64::try_from((actual - due).as_micros()).unwrap_or(i64::MAX)
        } else {
            -i64::try_from((due - actual).as_micros()).unwrap_or(i64::MAX)
        }
    }

    /// How many packets should have been sent by `now` (packets 0..result are due).
    pub fn packets_due(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        ((now - self.start).as_micros() / self.interval.as_micros()) as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpPacket;

    #[test]
    fn packets_of_160_with_seq_ts_and_marker() {
        let mut p = Packetizer::new(Codec::Pcmu, 0, 0x1234, 65534, 1000);
        let pkts = p.push(&[0i16; 400]);
        assert_eq!(pkts.len(), 2);
        let last = p.flush().unwrap();
        let decoded: Vec<_> = pkts.iter().chain([&last]).map(|b| RtpPacket::decode(b).unwrap()).collect();
        let fields: Vec<_> =
            decoded.iter().map(|d| (d.header.marker, d.header.sequence, d.header.timestamp, d.payload.len())).collect();
        assert_eq!(fields, [(true, 65534, 1000, 160), (false, 65535, 1160, 160), (false, 0, 1320, 160)]);
        assert!(decoded.iter().all(|d| d.header.ssrc == 0x1234 && d.header.payload_type == 0));
        assert!(decoded[2].payload[80..].iter().all(|b| *b == 0xFF), "padded with μ-law silence");
        assert_eq!(p.flush(), None);

        p.skip_silence(800);
        p.start_talkspurt();
        let next = p.push(&[0i16; 160]);
        let d = RtpPacket::decode(&next[0]).unwrap();
        assert_eq!((d.header.marker, d.header.sequence, d.header.timestamp), (true, 1, 1480 + 800));
    }

    #[test]
    fn pre_encoded_frames_match_pushed_samples() {
        for (codec, pt) in [(Codec::Pcmu, 0), (Codec::Pcma, 8)] {
            let samples: Vec<i16> = (0..400).map(|i| (i * 97 % 20000 - 10000) as i16).collect();
            let mut a = Packetizer::new(codec, pt, 9, 100, 5000);
            let mut expected = a.push(&samples);
            expected.extend(a.flush());
            let encoded = encode(codec, &samples);
            let mut b = Packetizer::new(codec, pt, 9, 100, 5000);
            let mut out = Vec::new();
            let got: Vec<Vec<u8>> = encoded
                .chunks(SAMPLES_PER_PACKET)
                .map(|frame| {
                    b.write_encoded(frame, &mut out);
                    out.clone()
                })
                .collect();
            assert_eq!(got, expected, "{codec:?}");
            assert_eq!((b.next_sequence(), b.next_timestamp()), (a.next_sequence(), a.next_timestamp()));
        }
    }

    #[test]
    fn small_pushes_accumulate() {
        let mut p = Packetizer::new(Codec::Pcma, 8, 1, 0, 0);
        let mut n = 0;
        for _ in 0..10 {
            n += p.push(&[100i16; 33]).len();
        }
        assert_eq!(n, 2);
        assert_eq!(p.next_sequence(), 2);
    }

    #[test]
    fn pacing_grid() {
        let t0 = Instant::now();
        let pacer = Pacer::new(t0);
        assert_eq!(pacer.send_at(0), t0);
        assert_eq!(pacer.send_at(50), t0 + Duration::from_secs(1));
        assert_eq!(pacer.deviation_micros(1, t0 + Duration::from_micros(20_300)), 300);
        assert_eq!(pacer.deviation_micros(1, t0 + Duration::from_micros(19_000)), -1000);
        assert_eq!(pacer.packets_due(t0), 1);
        assert_eq!(pacer.packets_due(t0 + Duration::from_millis(39)), 2);
        assert_eq!(pacer.packets_due(t0 + Duration::from_millis(40)), 3);
    }
}
