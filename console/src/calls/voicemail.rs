//! Callers' voice messages: what every channel's recording becomes before it is stored — 8 kHz
//! 16-bit mono samples, the silence at both ends trimmed, as a WAV file — and the one place they
//! are written (`voicemails`, in the database, so every node can play them).

use super::CallRuntime;
use crate::db::DbError;
use ivr::domain::CallId;

/// The recordings' sample rate (G.711's).
pub const SAMPLE_RATE: u32 = 8000;
/// Trimming works on 20 ms frames; a frame is speech when its RMS is above this (about
/// −40 dBFS: line noise and comfort noise stay under it, a quiet voice does not).
const FRAME: usize = 160;
const SPEECH_RMS: f64 = 330.0;
/// Kept around the speech so that its first and last syllables are not clipped.
const MARGIN_FRAMES: usize = 5;

/// The samples from the first speech frame to the last (with a small margin); empty when there is
/// no speech at all.
pub fn trim_silence(samples: &[i16]) -> &[i16] {
    let loud = |f: &[i16]| {
        let energy: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (energy / f.len().max(1) as f64).sqrt() > SPEECH_RMS
    };
    let frames: Vec<&[i16]> = samples.chunks(FRAME).collect();
    let Some(first) = frames.iter().position(|f| loud(f)) else { return &[] };
    let last = frames.iter().rposition(|f| loud(f)).unwrap_or(first);
    let start = first.saturating_sub(MARGIN_FRAMES) * FRAME;
    let end = ((last + 1 + MARGIN_FRAMES) * FRAME).min(samples.len());
    &samples[start..end]
}

/// The samples as a WAV file (PCM, 8 kHz, 16-bit, mono).
pub fn wav(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut w = hound::WavWriter::new(&mut out, spec).expect("a WAV header fits in memory");
        for &s in samples {
            w.write_sample(s).expect("writing to memory");
        }
        w.finalize().expect("writing to memory");
    }
    out.into_inner()
}

/// Milliseconds of audio in `samples`.
pub fn duration_ms(samples: &[i16]) -> u32 {
    u32::try_from(samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE)).unwrap_or(u32::MAX)
}

/// How much longer than `voicemail_max_secs` a carrier's recording may be (its own rounding and
/// the beep) before it counts as too long.
pub const CARRIER_SLACK_SECS: u32 = 1;

/// Why a recording a carrier handed over is not stored as a voice message. The callback request
/// stands either way; the reason is logged.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("the recording is not a WAV file we read: {0}")]
    NotWav(String),
    #[error("the recording's format is not 16-bit PCM or 8-bit \u{3bc}-law/A-law ({0})")]
    Format(String),
    #[error("the recording lasts {secs} s, longer than voicemail_max_secs ({max} s)")]
    TooLong { secs: u32, max: u32 },
    #[error("the recording is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the recording holds no speech (empty or silence only)")]
    Empty,
}

/// The largest recording file accepted for a limit of `max_secs`: that long (and the slack) at up
/// to 16 kHz 16-bit stereo, and a header.
pub fn max_recording_bytes(max_secs: u32) -> usize {
    (max_secs as usize + CARRIER_SLACK_SECS as usize) * 16_000 * 2 * 2 + 4096
}

/// A carrier's recording as the samples we store: a WAV file (16-bit PCM, or G.711 µ-law or A-law,
/// which Twilio and most PBXs serve), any channel count (the first channel is kept), resampled
/// to 8 kHz when it is not; checked against the limit, then trimmed of silence. `Empty` when
/// nothing but silence is left.
pub fn decode_recording(bytes: &[u8], max_secs: u32) -> Result<Vec<i16>, RecordingError> {
    let limit = max_recording_bytes(max_secs);
    if bytes.len() > limit {
        return Err(RecordingError::TooLarge(limit));
    }
    let wav = parse_wav(bytes)?;
    let max = max_secs;
    let secs = (wav.samples.len() as u64 / u64::from(wav.rate.max(1))) as u32;
    if secs > max + CARRIER_SLACK_SECS {
        return Err(RecordingError::TooLong { secs, max });
    }
    let samples = resample(&wav.samples, wav.rate);
    let speech = trim_silence(&samples);
    if speech.is_empty() {
        return Err(RecordingError::Empty);
    }
    Ok(speech.to_vec())
}

struct Pcm {
    rate: u32,
    samples: Vec<i16>,
}

/// Reads a RIFF WAV's `fmt ` and `data` chunks (hound does not read G.711).
fn parse_wav(b: &[u8]) -> Result<Pcm, RecordingError> {
    let bad = |m: &str| RecordingError::NotWav(m.to_owned());
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        let body = &b[at + 8..(at + 8).saturating_add(len).min(b.len())];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err(bad("short fmt chunk"));
            }
            let u16le = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            fmt = Some((u16le(0), u16le(2), rate, u16le(14)));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.ok_or_else(|| bad("data before fmt"))?;
            if channels == 0 || !(4000..=48_000).contains(&rate) {
                return Err(RecordingError::Format(format!("{channels} channels at {rate} Hz")));
            }
            let ch = usize::from(channels);
            let samples: Vec<i16> = match (format, bits) {
                (1, 16) => body.chunks_exact(2 * ch).map(|f| i16::from_le_bytes([f[0], f[1]])).collect(),
                (7, 8) => body.chunks_exact(ch).map(|f| ulaw(f[0])).collect(),
                (6, 8) => body.chunks_exact(ch).map(|f| alaw(f[0])).collect(),
                _ => return Err(RecordingError::Format(format!("format tag {format}, {bits} bits"))),
            };
            return Ok(Pcm { rate, samples });
        }
        // Chunks are padded to an even length.
        at = at + 8 + len + (len & 1);
    }
    Err(bad("no data chunk"))
}

fn ulaw(b: u8) -> i16 {
    let b = !b;
    let t = ((i32::from(b & 0x0f) << 3) + 0x84) << ((b & 0x70) >> 4);
    (if b & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

fn alaw(b: u8) -> i16 {
    let b = b ^ 0x55;
    let mut t = i32::from(b & 0x0f) << 4;
    let seg = (b & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if b & 0x80 != 0 { t } else { -t }) as i16
}

/// Linear interpolation to 8 kHz (a recording at another rate is rare: Twilio's are 8 kHz).
fn resample(samples: &[i16], rate: u32) -> Vec<i16> {
    if rate == SAMPLE_RATE || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * f64::from(rate) / f64::from(SAMPLE_RATE);
            let j = pos as usize;
            let frac = pos - j as f64;
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac) as i16
        })
        .collect()
}

const STORE: &str = "INSERT INTO voicemails (call_id, recorded_at, duration_ms, audio) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (call_id) DO UPDATE SET recorded_at = excluded.recorded_at, duration_ms = excluded.duration_ms, \
     audio = excluded.audio";

impl CallRuntime {
    /// Stores a call's voice message (trimmed samples), before the adapter tells the engine it is
    /// recorded: a callback request never points at a message that is not there. A second message
    /// of the same call replaces the first.
    pub async fn store_voicemail(&self, call_id: &CallId, samples: &[i16], now_ms: i64) -> Result<u32, DbError> {
        let duration = duration_ms(samples);
        let insert = sqlx::query(STORE)
            .bind(call_id.as_str())
            .bind(now_ms)
            .bind(i64::from(duration))
            .bind(wav(samples))
            .execute(self.db().pool());
        self.db().with_lock_turn(insert).await.map_err(DbError::Query)?;
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize) -> Vec<i16> {
        (0..ms * 8).map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16).collect()
    }

    #[test]
    fn carriers_recordings_are_read_bounded_and_trimmed() {
        let mut s = vec![0i16; 8000];
        s.extend(tone(1000));
        let got = decode_recording(&wav(&s), 60).unwrap();
        assert!((8000..=8000 + 800).contains(&got.len()), "{}", got.len());
        assert!(matches!(decode_recording(&wav(&vec![0i16; 8000]), 60), Err(RecordingError::Empty)));
        assert!(matches!(decode_recording(&wav(&tone(5000)), 2), Err(RecordingError::TooLong { secs: 5, max: 2 })));
        assert!(matches!(decode_recording(b"RIFF0000WAVE", 60), Err(RecordingError::NotWav(_))));
        assert!(matches!(decode_recording(b"<html>", 60), Err(RecordingError::NotWav(_))));
        assert!(matches!(
            decode_recording(&vec![0u8; max_recording_bytes(1) + 1], 1),
            Err(RecordingError::TooLarge(_))
        ));
        // µ-law: a 440 Hz tone survives encoding (G.711's own table, sign and magnitude).
        assert_eq!((ulaw(0xff), ulaw(0x7f), alaw(0xd5), alaw(0x55)), (0, 0, 8, -8));
        assert_eq!((ulaw(0x80), ulaw(0x00)), (32124, -32124));
        // 16 kHz halves in length.
        let mut w16 = wav(&tone(500));
        w16[24..28].copy_from_slice(&16_000u32.to_le_bytes());
        let got = decode_recording(&w16, 60).unwrap();
        assert!((1800..=2100).contains(&got.len()), "{}", got.len());
    }

    #[test]
    fn silence_is_trimmed_at_both_ends_and_speech_kept() {
        let mut s = vec![0i16; 8000];
        s.extend(tone(1000));
        s.extend(vec![3i16; 16000]);
        let t = trim_silence(&s);
        // One second of tone and at most 100 ms of margin on each side.
        assert!((8000..=8000 + 2 * 800).contains(&t.len()), "{}", t.len());
        assert!(trim_silence(&[0i16; 8000]).is_empty());
        assert!(trim_silence(&[]).is_empty());
        let w = wav(t);
        let r = hound::WavReader::new(std::io::Cursor::new(w)).unwrap();
        assert_eq!((r.spec().sample_rate, r.spec().channels, r.len() as usize), (8000, 1, t.len()));
    }
}
