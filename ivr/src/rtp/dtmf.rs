//! DTMF as the caller's phone sends it: RFC 4733 telephone-events in RTP (receiver and, for
//! tests and tools, sender), and SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`).
//!
//! Receiver design: a key is reported **once, at the first packet of its event** (for barge-in
//! the engine must know at once). An event is identified by its RTP timestamp (RFC 4733 §2.5.1.1:
//! all packets of one event share the timestamp of its start), so continuation packets and the
//! usual three end packets are recognised as the same event. The marker bit is not needed: a lost
//! or missing marker still starts the event. A lost end packet is harmless: a new timestamp starts
//! a new event, and a timeout ends the held one. Events 16+ (tones, not keys) are ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::RtpHeader;
use crate::domain::DtmfDigit;

/// With no packet for this long, a held event is considered ended (its end packets were lost).
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_millis(1000);

/// How many recent events are remembered, to drop late or reordered packets of ended events.
const HISTORY: usize = 16;

/// A telephone-event payload is not 4 bytes long (RFC 4733 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("telephone-event payload must be at least 4 bytes, got {0}")]
pub struct TelephoneEventError(pub usize);

/// The 4-byte RFC 4733 payload: event, end bit, volume, duration (in timestamp units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    /// Decodes the first event block of a payload (redundant blocks, RFC 2198, are not used).
    pub fn decode(payload: &[u8]) -> Result<TelephoneEvent, TelephoneEventError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3F,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(TelephoneEventError(payload.len())),
        }
    }

    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, if self.end { 0x80 } else { 0 } | (self.volume & 0x3F), d[0], d[1]]
    }

    /// The keypad key, for events 0-15.
    pub fn digit(&self) -> Option<DtmfDigit> {
        DtmfDigit::from_event_code(self.event)
    }
}

#[derive(Debug, Clone)]
struct Held {
    timestamp: u32,
    event: u8,
    last_packet: Instant,
}

/// Turns the caller's telephone-event RTP packets into keys, each reported once.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    payload_type: u8,
    timeout: Duration,
    held: Option<Held>,
    /// (timestamp, event) of recent events, newest last.
    seen: VecDeque<(u32, u8)>,
}

impl DtmfReceiver {
    /// `payload_type` is the telephone-event type negotiated in SDP.
    pub fn new(payload_type: u8, timeout: Duration) -> DtmfReceiver {
        DtmfReceiver { payload_type, timeout, held: None, seen: VecDeque::with_capacity(HISTORY) }
    }

    /// Feeds one received RTP packet (any payload type: audio packets are ignored). Returns the
    /// key when this packet starts a new DTMF event.
    pub fn on_packet(&mut self, header: &RtpHeader, payload: &[u8], now: Instant) -> Option<DtmfDigit> {
        if header.payload_type != self.payload_type {
            return None;
        }
        let ev = TelephoneEvent::decode(payload).ok()?;
        let key = (header.timestamp, ev.event);
        if self.seen.contains(&key) {
            // Continuation, end, or a retransmitted end packet of a known event.
            match &mut self.held {
                Some(h) if (h.timestamp, h.event) == key => {
                    if ev.end {
                        self.held = None;
                    } else {
                        h.last_packet = now;
                    }
                }
                _ => {}
            }
            return None;
        }
        // A new event: whatever was held has ended, even without its end packets.
        if self.seen.len() == HISTORY {
            self.seen.pop_front();
        }
        self.seen.push_back(key);
        self.held = (!ev.end).then_some(Held { timestamp: header.timestamp, event: ev.event, last_packet: now });
        ev.digit()
    }

    /// The key currently held down, if any.
    pub fn held(&self) -> Option<DtmfDigit> {
        self.held.as_ref().and_then(|h| DtmfDigit::from_event_code(h.event))
    }

    /// When [`Self::on_timeout`] should be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.last_packet + self.timeout)
    }

    /// Ends a held event whose packets stopped arriving.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.held = None;
        }
    }
}

/// One telephone-event packet to send: RTP marker, timestamp and payload (the caller adds the
/// payload type, sequence and SSRC of the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventPacket {
    pub marker: bool,
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// The RFC 4733 sender side (§2.5.1): a start packet with the marker, continuation packets every
/// 20 ms with a growing duration, and the end packet sent three times.
#[derive(Debug, Clone, Copy)]
pub struct DtmfSender;

impl DtmfSender {
    /// Packets for `digit` held for `duration` samples (at 8 kHz; 800 = 100 ms), starting at RTP
    /// timestamp `timestamp`.
    pub fn packets(digit: DtmfDigit, timestamp: u32, duration: u16, volume: u8) -> Vec<TelephoneEventPacket> {
        let step = 160u16;
        let mut out = Vec::new();
        let mut d = step.min(duration);
        let mut ev = TelephoneEvent { event: digit.event_code(), end: false, volume, duration: d };
        out.push(TelephoneEventPacket { marker: true, timestamp, payload: ev.encode() });
        while d < duration {
            d = d.saturating_add(step).min(duration);
            ev.duration = d;
            if d < duration {
                out.push(TelephoneEventPacket { marker: false, timestamp, payload: ev.encode() });
            }
        }
        ev.end = true;
        ev.duration = duration;
        for _ in 0..3 {
            out.push(TelephoneEventPacket { marker: false, timestamp, payload: ev.encode() });
        }
        out
    }
}

/// Why a SIP INFO body carries no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoDtmfError {
    /// Answer `415 Unsupported Media Type`.
    #[error("INFO body type {0:?} is not application/dtmf-relay or application/dtmf")]
    UnsupportedContentType(String),
    /// Answer `400`.
    #[error("INFO body names no DTMF key")]
    NoSignal,
}

fn signal_to_digit(s: &str) -> Option<DtmfDigit> {
    let s = s.trim();
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => DtmfDigit::new(c).ok(),
        // Some gateways send the event code (10 = *, 11 = #).
        _ => s.parse::<u8>().ok().and_then(DtmfDigit::from_event_code),
    }
}

/// Reads the key from a SIP INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`). `content_type` is the media type without parameters.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Result<DtmfDigit, InfoDtmfError> {
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::NoSignal)?;
    match content_type.trim().to_ascii_lowercase().as_str() {
        "application/dtmf-relay" => text
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
            .and_then(|(_, v)| signal_to_digit(v))
            .ok_or(InfoDtmfError::NoSignal),
        "application/dtmf" => signal_to_digit(text).ok_or(InfoDtmfError::NoSignal),
        other => Err(InfoDtmfError::UnsupportedContentType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u8 = 101;

    fn header(marker: bool, timestamp: u32, seq: u16) -> RtpHeader {
        RtpHeader { marker, payload_type: PT, sequence: seq, timestamp, ssrc: 1, csrcs: Vec::new() }
    }

    fn digit(c: char) -> DtmfDigit {
        DtmfDigit::new(c).unwrap()
    }

    /// Feeds sender packets, returning the keys reported.
    fn feed(rx: &mut DtmfReceiver, pkts: &[TelephoneEventPacket], t0: Instant) -> Vec<char> {
        pkts.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let now = t0 + Duration::from_millis(20 * i as u64);
                rx.on_packet(&header(p.marker, p.timestamp, i as u16), &p.payload, now)
            })
            .map(DtmfDigit::as_char)
            .collect()
    }

    #[test]
    fn payload_codec() {
        let ev = TelephoneEvent::decode(&[11, 0x8A, 0x03, 0x20]).unwrap();
        assert_eq!(ev, TelephoneEvent { event: 11, end: true, volume: 10, duration: 800 });
        assert_eq!(ev.encode(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(ev.digit(), Some(digit('#')));
        assert_eq!(TelephoneEvent::decode(&[1, 2]), Err(TelephoneEventError(2)));
    }

    #[test]
    fn sender_shape() {
        let pkts = DtmfSender::packets(digit('5'), 4000, 800, 10);
        assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
        assert!(pkts.iter().all(|p| p.timestamp == 4000));
        let ends: Vec<_> = pkts.iter().filter(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|p| p.payload[2..] == [0x03, 0x20]));
        assert_eq!(pkts.len(), 5 - 1 + 3, "start, 3 continuations, 3 ends");
    }

    #[test]
    fn triple_end_packets_report_once() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        let pkts = DtmfSender::packets(digit('7'), 1000, 800, 10);
        assert_eq!(feed(&mut rx, &pkts, t0), ['7']);
        assert_eq!(rx.held(), None);
        // The same digit again is a new event with a new timestamp.
        let again = DtmfSender::packets(digit('7'), 3000, 800, 10);
        assert_eq!(feed(&mut rx, &again, t0), ['7']);
    }

    #[test]
    fn reported_at_first_packet_for_barge_in() {
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        let pkts = DtmfSender::packets(digit('1'), 0, 800, 10);
        let now = Instant::now();
        assert_eq!(rx.on_packet(&header(true, 0, 0), &pkts[0].payload, now), Some(digit('1')));
        assert_eq!(rx.held(), Some(digit('1')));
    }

    #[test]
    fn lost_end_packets_then_new_event() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        let first: Vec<_> = DtmfSender::packets(digit('2'), 1000, 800, 10).into_iter().take(3).collect();
        assert_eq!(feed(&mut rx, &first, t0), ['2']);
        assert_eq!(rx.held(), Some(digit('2')));
        let second = DtmfSender::packets(digit('2'), 2600, 800, 10);
        assert_eq!(feed(&mut rx, &second, t0), ['2']);
    }

    #[test]
    fn lost_end_packets_timeout_releases_the_key() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        let first: Vec<_> = DtmfSender::packets(digit('9'), 1000, 800, 10).into_iter().take(2).collect();
        feed(&mut rx, &first, t0);
        let deadline = rx.deadline().unwrap();
        rx.on_timeout(deadline - Duration::from_millis(1));
        assert_eq!(rx.held(), Some(digit('9')));
        rx.on_timeout(deadline);
        assert_eq!((rx.held(), rx.deadline()), (None, None));
        // A straggler of the old event does not report it again.
        let late = DtmfSender::packets(digit('9'), 1000, 800, 10);
        assert_eq!(feed(&mut rx, &late[4..], t0), Vec::<char>::new());
    }

    #[test]
    fn missing_marker_still_reports() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        let mut pkts = DtmfSender::packets(digit('#'), 500, 480, 10);
        pkts[0].marker = false;
        assert_eq!(feed(&mut rx, &pkts[1..], t0), ['#'], "start packet lost too");
    }

    #[test]
    fn ignores_non_dtmf_events_and_other_payload_types() {
        let now = Instant::now();
        let mut rx = DtmfReceiver::new(PT, DEFAULT_EVENT_TIMEOUT);
        assert_eq!(rx.on_packet(&header(true, 10, 0), &[16, 0, 0, 160], now), None);
        assert_eq!(rx.on_packet(&header(true, 20, 1), &[32, 0, 0, 160], now), None);
        let mut audio = header(false, 30, 2);
        audio.payload_type = 0;
        assert_eq!(rx.on_packet(&audio, &[5, 0, 0, 160], now), None);
        assert_eq!(rx.on_packet(&header(true, 40, 3), &[5, 0], now), None);
        assert_eq!(rx.on_packet(&header(true, 50, 4), &[5, 0, 0, 160], now), Some(digit('5')));
    }

    #[test]
    fn sip_info_bodies() {
        assert_eq!(parse_info_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), Ok(digit('5')));
        assert_eq!(parse_info_dtmf("application/dtmf-relay", b"Signal= #\nDuration= 250"), Ok(digit('#')));
        assert_eq!(parse_info_dtmf("Application/DTMF-Relay", b"signal=11\r\n"), Ok(digit('#')));
        assert_eq!(parse_info_dtmf("application/dtmf", b"5"), Ok(digit('5')));
        assert_eq!(parse_info_dtmf("application/dtmf", b"*\r\n"), Ok(digit('*')));
        assert_eq!(parse_info_dtmf("application/dtmf-relay", b"Duration=160"), Err(InfoDtmfError::NoSignal));
        assert_eq!(parse_info_dtmf("application/dtmf", b"E"), Err(InfoDtmfError::NoSignal));
        assert_eq!(
            parse_info_dtmf("text/plain", b"5"),
            Err(InfoDtmfError::UnsupportedContentType("text/plain".into()))
        );
    }
}
