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
