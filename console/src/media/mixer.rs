//! The conference mixer: what each party of a call with more than two hears.
//!
//! A two-party call never comes here: its packets cross `ivr::rtp::Bridge` unchanged (no
//! decoding, no clock). Once a third party joins (a supervisor, a mediator), the call's media
//! thread feeds the [`Mixer`] every party's G.711 frames as they arrive ([`Mixer::push`]) and
//! calls [`Mixer::tick`] on the media clock's 20 ms grid: each party's audio is decoded to PCM
//! into a short queue, and each party gets one frame holding the sum of the parties it may hear
//! — **never its own voice** — encoded again in its own law, as one RTP stream of its own
//! (sequence +1, timestamp +160 a tick).
//!
//! Who hears whom is each party's [`Audience`]: everyone (the caller, the operator, a mediator,
//! a supervisor who barges in), only one party (a supervisor whispering to the operator) or
//! nobody (a supervisor listening). Every party hears every party whose audience includes it.
//!
//! Architecture invariant: the mixer is sans-IO and clock-free (the caller ticks it); it knows
//! nothing of sockets, SRTP or calls, so it is tested with tones in memory.

use ivr::rtp::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear, Forward, SAMPLES_PER_PACKET};
use ivr::sdp::Codec;
use std::collections::VecDeque;
use std::sync::OnceLock;

/// G.711 by table lookup: 256 entries to decode each law, 65,536 to encode (every `i16`), built
/// once from `ivr::rtp`'s arithmetic, so the mixer's per-sample cost is a load.
struct Tables {
    decode_ulaw: [i16; 256],
    decode_alaw: [i16; 256],
    encode_ulaw: Box<[u8]>,
    encode_alaw: Box<[u8]>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let encode = |f: fn(i16) -> u8| (0..=u16::MAX).map(|i| f(i as i16)).collect::<Vec<u8>>().into_boxed_slice();
        Tables {
            decode_ulaw: std::array::from_fn(|b| ulaw_to_linear(b as u8)),
            decode_alaw: std::array::from_fn(|b| alaw_to_linear(b as u8)),
            encode_ulaw: encode(linear_to_ulaw),
            encode_alaw: encode(linear_to_alaw),
        }
    })
}

/// A party's id in its conference (the driver uses its leg's id, and 0 for the SIP caller).
pub type PartyId = u64;

/// Samples in one tick (20 ms at 8 kHz).
const FRAME: usize = SAMPLES_PER_PACKET;
/// A party starts being heard once this much of its audio is queued (absorbs the jitter
/// between its packets' arrival and the tick).
const PRIME: usize = 2 * FRAME;
/// Above this, the queue is cut back to [`PRIME`] (a sender whose clock runs fast, or a burst
/// after a stall): the delay a party adds stays bounded.
const MAX_QUEUED: usize = 6 * FRAME;

/// Who hears a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every other party (the caller, the operator, a mediator; a supervisor who barges in).
    Everyone,
    /// Only this party (a supervisor whispering to the operator).
    Only(PartyId),
    /// Nobody (a supervisor listening).
    Nobody,
}

impl Audience {
    fn includes(self, listener: PartyId) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Only(p) => p == listener,
            Audience::Nobody => false,
        }
    }
}

/// How a party's audio comes in and goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyConfig {
    pub codec: Codec,
    /// The audio payload type of the stream sent to the party.
    pub payload_type: u8,
    pub ssrc: u32,
    /// The first packet's extended sequence number and timestamp (a stream that continues
    /// what the bridge sent before starts one above).
    pub sequence: u64,
    pub timestamp: u32,
}

struct Party {
    id: PartyId,
    config: PartyConfig,
    audience: Audience,
    /// Decoded audio not yet mixed.
    queue: VecDeque<i16>,
    /// Whether the party is heard (its queue reached [`PRIME`] since it last ran dry).
    primed: bool,
    /// This tick's frame (zeros when the party has nothing to say).
    frame: [i16; FRAME],
    /// Whether this tick's frame holds anything.
    speaking: bool,
    sequence: u64,
    timestamp: u32,
    first: bool,
}

/// One party's mixed frame of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mixed {
    pub to: PartyId,
    pub packet: Forward,
    pub payload: Vec<u8>,
}

/// Why a party could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixerError {
    #[error("party {0} is already in the conference")]
    AlreadyIn(PartyId),
}

/// A conference's mixer (see the module docs).
#[derive(Default)]
pub struct Mixer {
    parties: Vec<Party>,
    /// The sum of the parties everyone hears, this tick.
    common: Vec<i32>,
    sum: Vec<i32>,
}

impl Mixer {
    pub fn new() -> Mixer {
        Mixer::default()
    }

    pub fn join(&mut self, id: PartyId, config: PartyConfig, audience: Audience) -> Result<(), MixerError> {
        if self.parties.iter().any(|p| p.id == id) {
            return Err(MixerError::AlreadyIn(id));
        }
        self.parties.push(Party {
            id,
            config,
            audience,
            queue: VecDeque::with_capacity(MAX_QUEUED + FRAME),
            primed: false,
            frame: [0; FRAME],
            speaking: false,
            sequence: config.sequence,
            timestamp: config.timestamp,
            first: true,
        });
        Ok(())
    }

    /// The party leaves; where its stream stopped (the next sequence number and timestamp), so
    /// that whatever carries on towards it continues the same stream.
    pub fn leave(&mut self, id: PartyId) -> Option<(u64, u32)> {
        let i = self.parties.iter().position(|p| p.id == id)?;
        let p = self.parties.remove(i);
        Some((p.sequence, p.timestamp))
    }

    /// Where the party's stream is (the next sequence number and timestamp).
    pub fn position(&self, id: PartyId) -> Option<(u64, u32)> {
        self.parties.iter().find(|p| p.id == id).map(|p| (p.sequence, p.timestamp))
    }

    /// Changes who hears the party (a supervisor going from listening to whispering to barging
    /// in); `false` when it is not in the conference.
    pub fn set_audience(&mut self, id: PartyId, audience: Audience) -> bool {
        match self.parties.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.audience = audience;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.parties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parties.is_empty()
    }

    pub fn contains(&self, id: PartyId) -> bool {
        self.parties.iter().any(|p| p.id == id)
    }

    /// A frame of the party's audio (the payload of one of its audio packets, any length).
    pub fn push(&mut self, id: PartyId, payload: &[u8]) {
        let Some(p) = self.parties.iter_mut().find(|p| p.id == id) else { return };
        let table = match p.config.codec {
            Codec::Pcmu => &tables().decode_ulaw,
            Codec::Pcma => &tables().decode_alaw,
        };
        p.queue.extend(payload.iter().map(|b| table[usize::from(*b)]));
        if p.queue.len() > MAX_QUEUED {
            let excess = p.queue.len() - PRIME;
            p.queue.drain(..excess);
        }
    }

    /// One 20 ms step: every party's mixed frame, appended to `out`.
    pub fn tick(&mut self, out: &mut Vec<Mixed>) {
        // Take this tick's frame from every party.
        for p in &mut self.parties {
            if !p.primed && p.queue.len() >= PRIME {
                p.primed = true;
            }
            p.speaking = p.primed && !p.queue.is_empty();
            let n = if p.primed { p.queue.len().min(FRAME) } else { 0 };
            for (slot, s) in p.frame.iter_mut().zip(p.queue.drain(..n).chain(std::iter::repeat(0))) {
                *slot = s;
            }
            if p.primed && p.queue.is_empty() {
                // Ran dry: wait until it has a little ahead again.
                p.primed = false;
            }
        }
        // What everyone hears: the sum of the parties heard by all, summed once; each listener's
        // mix is that, less its own frame, plus whoever speaks to it alone.
        self.common.resize(FRAME, 0);
        self.common.iter_mut().for_each(|s| *s = 0);
        for speaker in self.parties.iter().filter(|p| p.speaking && p.audience == Audience::Everyone) {
            for (acc, s) in self.common.iter_mut().zip(speaker.frame.iter()) {
                *acc += i32::from(*s);
            }
        }
        self.sum.resize(FRAME, 0);
        for listener in 0..self.parties.len() {
            self.sum.copy_from_slice(&self.common);
            let id = self.parties[listener].id;
            for (i, speaker) in self.parties.iter().enumerate() {
                if !speaker.speaking {
                    continue;
                }
                if i == listener {
                    if speaker.audience == Audience::Everyone {
                        for (acc, s) in self.sum.iter_mut().zip(speaker.frame.iter()) {
                            *acc -= i32::from(*s);
                        }
                    }
                } else if speaker.audience != Audience::Everyone && speaker.audience.includes(id) {
                    for (acc, s) in self.sum.iter_mut().zip(speaker.frame.iter()) {
                        *acc += i32::from(*s);
                    }
                }
            }
            let p = &mut self.parties[listener];
            let table: &[u8] = match p.config.codec {
                Codec::Pcmu => &tables().encode_ulaw,
                Codec::Pcma => &tables().encode_alaw,
            };
            let payload = self
                .sum
                .iter()
                .map(|s| table[usize::from((*s).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16 as u16)])
                .collect();
            let packet = Forward {
                ssrc: p.config.ssrc,
                sequence: p.sequence,
                timestamp: p.timestamp,
                marker: p.first,
                payload_type: p.config.payload_type,
            };
            p.first = false;
            p.sequence += 1;
            p.timestamp = p.timestamp.wrapping_add(FRAME as u32);
            out.push(Mixed { to: p.id, packet, payload });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivr::rtp::{decode, encode};
    use std::collections::HashMap;
    use std::f64::consts::PI;

    fn tone(freq: f64, from: usize, samples: usize) -> Vec<i16> {
        (from..from + samples).map(|n| (6000.0 * (2.0 * PI * freq * n as f64 / 8000.0).sin()) as i16).collect()
    }

    /// The share of the signal's energy at `freq` (Goertzel): about 0.5 for a pure tone at
    /// `freq`, about 0.25 for each of two equal tones, near 0 for a frequency not there.
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

    const CALLER: PartyId = 0;
    const OPERATOR: PartyId = 1;
    const THIRD: PartyId = 2;

    fn config(codec: Codec, ssrc: u32) -> PartyConfig {
        let payload_type = if codec == Codec::Pcmu { 0 } else { 8 };
        PartyConfig { codec, payload_type, ssrc, sequence: 1000, timestamp: 5000 }
    }

    /// Runs `ticks` ticks, each party in `tones` sending one frame of its tone before each
    /// tick; what each party received, decoded, and the packets' headers.
    fn run(
        mixer: &mut Mixer,
        tones: &[(PartyId, Codec, f64)],
        ticks: usize,
    ) -> HashMap<PartyId, (Vec<i16>, Vec<Forward>)> {
        let mut heard: HashMap<PartyId, (Vec<i16>, Vec<Forward>)> = HashMap::new();
        let mut out = Vec::new();
        for t in 0..ticks {
            for (id, codec, freq) in tones {
                mixer.push(*id, &encode(*codec, &tone(*freq, t * FRAME, FRAME)));
            }
            out.clear();
            mixer.tick(&mut out);
            for m in &out {
                let codec = tones.iter().find(|(id, _, _)| *id == m.to).map_or(Codec::Pcmu, |t| t.1);
                let entry = heard.entry(m.to).or_default();
                entry.0.extend(decode(codec, &m.payload));
                entry.1.push(m.packet);
            }
        }
        heard
    }

    /// Each of `want` is clearly in `samples` (each of n equal tones holds about 1/(2n) of the
    /// energy: a margin of half that), each of `not` far below (a hundredth).
    fn assert_hears(samples: &[i16], want: &[f64], not: &[f64], who: &str) {
        // The first ticks are the queues priming.
        let samples = &samples[4 * FRAME..];
        let share = 0.5 / want.len() as f64;
        for f in want {
            let p = goertzel(samples, *f);
            assert!(p > share / 2.0, "{who} should hear {f} Hz: {p:.4} (expected about {share:.2})");
        }
        for f in not {
            let p = goertzel(samples, *f);
            assert!(p < 0.005, "{who} should not hear {f} Hz: {p:.4}");
        }
    }

    fn three(third: Audience, third_codec: Codec) -> Mixer {
        let mut mixer = Mixer::new();
        mixer.join(CALLER, config(Codec::Pcma, 0xA), Audience::Everyone).unwrap();
        mixer.join(OPERATOR, config(Codec::Pcma, 0xB), Audience::Everyone).unwrap();
        mixer.join(THIRD, config(third_codec, 0xC), third).unwrap();
        mixer
    }

    #[test]
    fn each_of_three_parties_hears_the_two_others_and_never_itself() {
        let mut mixer = three(Audience::Everyone, Codec::Pcmu);
        let heard = run(
            &mut mixer,
            &[(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcmu, 1600.0)],
            100,
        );
        assert_hears(&heard[&CALLER].0, &[1000.0, 1600.0], &[440.0], "the caller");
        assert_hears(&heard[&OPERATOR].0, &[440.0, 1600.0], &[1000.0], "the operator");
        assert_hears(&heard[&THIRD].0, &[440.0, 1000.0], &[1600.0], "the mediator");
    }

    #[test]
    fn a_whisper_reaches_the_operator_only() {
        let mut mixer = three(Audience::Only(OPERATOR), Codec::Pcma);
        let heard = run(
            &mut mixer,
            &[(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcma, 2000.0)],
            100,
        );
        assert_hears(&heard[&OPERATOR].0, &[440.0, 2000.0], &[1000.0], "the operator");
        assert_hears(&heard[&CALLER].0, &[1000.0], &[440.0, 2000.0], "the caller");
        assert_hears(&heard[&THIRD].0, &[440.0, 1000.0], &[2000.0], "the supervisor");
    }

    #[test]
    fn a_listener_hears_both_and_nobody_hears_the_listener() {
        let mut mixer = three(Audience::Nobody, Codec::Pcma);
        let heard = run(
            &mut mixer,
            &[(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcma, 2000.0)],
            100,
        );
        assert_hears(&heard[&OPERATOR].0, &[440.0], &[1000.0, 2000.0], "the operator");
        assert_hears(&heard[&CALLER].0, &[1000.0], &[440.0, 2000.0], "the caller");
        assert_hears(&heard[&THIRD].0, &[440.0, 1000.0], &[2000.0], "the supervisor");
    }

    #[test]
    fn barging_in_after_listening_is_heard_by_all() {
        let mut mixer = three(Audience::Nobody, Codec::Pcma);
        let tones = [(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcma, 2000.0)];
        let _ = run(&mut mixer, &tones, 20);
        assert!(mixer.set_audience(THIRD, Audience::Everyone));
        let heard = run(&mut mixer, &tones, 100);
        assert_hears(&heard[&OPERATOR].0, &[440.0, 2000.0], &[1000.0], "the operator");
        assert_hears(&heard[&CALLER].0, &[1000.0, 2000.0], &[440.0], "the caller");
        assert_hears(&heard[&THIRD].0, &[440.0, 1000.0], &[2000.0], "the supervisor");
    }

    #[test]
    fn when_the_operator_leaves_the_mediator_and_the_caller_still_hear_each_other() {
        let mut mixer = three(Audience::Everyone, Codec::Pcma);
        let tones = [(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcma, 1600.0)];
        let _ = run(&mut mixer, &tones, 20);
        let before = mixer.position(CALLER).unwrap();
        assert_eq!(mixer.leave(OPERATOR), Some((1020, 5000 + 20 * 160)));
        let heard = run(&mut mixer, &[tones[0], tones[2]], 100);
        assert_hears(&heard[&CALLER].0, &[1600.0], &[440.0, 1000.0], "the caller");
        assert_hears(&heard[&THIRD].0, &[440.0], &[1000.0, 1600.0], "the mediator");
        // The caller's stream went on without a break.
        assert_eq!((heard[&CALLER].1[0].sequence, heard[&CALLER].1[0].timestamp), before);
    }

    #[test]
    fn each_party_gets_one_stream_on_the_20_ms_grid_in_its_own_law() {
        let mut mixer = three(Audience::Everyone, Codec::Pcmu);
        let tones = [(CALLER, Codec::Pcma, 440.0), (OPERATOR, Codec::Pcma, 1000.0), (THIRD, Codec::Pcmu, 1600.0)];
        let heard = run(&mut mixer, &tones, 10);
        for (id, ssrc, pt) in [(CALLER, 0xA, 8), (OPERATOR, 0xB, 8), (THIRD, 0xC, 0)] {
            let packets = &heard[&id].1;
            assert_eq!(packets.len(), 10);
            assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
            for (i, p) in packets.iter().enumerate() {
                assert_eq!((p.ssrc, p.payload_type), (ssrc, pt));
                assert_eq!((p.sequence, p.timestamp), (1000 + i as u64, 5000 + 160 * i as u32));
            }
        }
        assert_eq!(mixer.join(THIRD, config(Codec::Pcmu, 1), Audience::Nobody), Err(MixerError::AlreadyIn(THIRD)));
    }

    #[test]
    fn the_g711_tables_agree_with_the_arithmetic() {
        let t = tables();
        for b in 0..=255u8 {
            assert_eq!(t.decode_ulaw[usize::from(b)], ulaw_to_linear(b));
            assert_eq!(t.decode_alaw[usize::from(b)], alaw_to_linear(b));
        }
        for s in [i16::MIN, -32_000, -1000, -1, 0, 1, 7, 1000, 32_000, i16::MAX] {
            assert_eq!(t.encode_ulaw[usize::from(s as u16)], linear_to_ulaw(s));
            assert_eq!(t.encode_alaw[usize::from(s as u16)], linear_to_alaw(s));
        }
    }

    #[test]
    fn loud_parties_saturate_instead_of_wrapping_around() {
        let mut mixer = Mixer::new();
        for id in 0..3 {
            mixer.join(id, config(Codec::Pcmu, id as u32), Audience::Everyone).unwrap();
        }
        let mut out = Vec::new();
        for _ in 0..4 {
            for id in 0..3 {
                mixer.push(id, &encode(Codec::Pcmu, &[30_000; FRAME]));
            }
            out.clear();
            mixer.tick(&mut out);
        }
        for m in &out {
            assert!(decode(Codec::Pcmu, &m.payload).iter().all(|s| *s > 30_000), "clipped, not wrapped");
        }
    }

    #[test]
    fn a_silent_or_late_party_adds_silence_and_a_flood_is_cut_back() {
        let mut mixer = three(Audience::Everyone, Codec::Pcma);
        let mut out = Vec::new();
        // Nobody has spoken: every party gets digital silence.
        mixer.tick(&mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|m| decode(Codec::Pcma, &m.payload).iter().all(|s| s.abs() <= 8)));
        // A burst of a second of audio at once is cut back: the queue holds at most six frames.
        for t in 0..50 {
            mixer.push(CALLER, &encode(Codec::Pcma, &tone(440.0, t * FRAME, FRAME)));
        }
        let queued = mixer.parties.iter().find(|p| p.id == CALLER).unwrap().queue.len();
        assert!(queued <= MAX_QUEUED, "{queued} samples queued");
    }
}
