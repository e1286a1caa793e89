//! Signal processing that turns the speech engine's 22 050 Hz output into a telephone prompt:
//! a windowed-sinc resampler (band-limited, so no aliasing into the 300–3400 Hz band), silence
//! trimming and padding, and level normalisation. Pure functions, deterministic for a given input,
//! so re-rendering an unchanged text yields byte-identical WAV files.

use std::f64::consts::PI;

/// The sample rate of every prompt this module produces.
pub const TELEPHONE_RATE: u32 = 8000;

/// Target loudness of speech (RMS over the frames that carry speech), in dBFS.
pub const TARGET_RMS_DBFS: f64 = -16.0;
/// No sample may exceed this level, in dBFS; it wins over the RMS target for very peaky speech.
pub const PEAK_CEILING_DBFS: f64 = -1.0;
/// Silence before the speech, in milliseconds.
pub const LEAD_SILENCE_MS: u32 = 100;
/// Silence after the speech, in milliseconds (so a prompt never ends abruptly).
pub const TAIL_SILENCE_MS: u32 = 200;

/// Half the number of taps of the resampling filter, in input samples. 160 taps each side of a
/// Blackman window give a transition band of about 5.5 × 22050 / 320 ≈ 380 Hz and > 70 dB of
/// stop-band attenuation.
const HALF_TAPS: usize = 160;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

fn blackman(t: f64, half: f64) -> f64 {
    if t.abs() >= half {
        0.0
    } else {
        let a = PI * t / half;
        0.42 + 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
    }
}

/// Resamples `input` from `from_hz` to `to_hz` with a polyphase windowed-sinc filter whose cutoff
/// is 92.5 % of the lower Nyquist frequency (3 700 Hz when going to 8 kHz). Each phase is
/// normalised to unity gain at DC. Samples outside the input are taken as zero.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz || input.is_empty() || from_hz == 0 || to_hz == 0 {
        return input.to_vec();
    }
    let g = gcd(u64::from(from_hz), u64::from(to_hz));
    let up = u64::from(to_hz) / g; // L: output steps per period
    let down = u64::from(from_hz) / g; // M: input steps per period
                                       // Cutoff in cycles per input sample.
    let cutoff = 0.925 * 0.5 * f64::from(from_hz.min(to_hz)) / f64::from(from_hz);
    // When upsampling, the filter runs at the input rate: keep its length in input samples.
    let half = HALF_TAPS as f64;
    let taps = 2 * HALF_TAPS;

    // table[p][j]: coefficient for input sample i + j - HALF_TAPS + 1 at fractional phase p / L.
    let phases = up as usize;
    let mut table = vec![0f32; phases * taps];
    for p in 0..phases {
        let frac = p as f64 / up as f64;
        let row = &mut table[p * taps..(p + 1) * taps];
        let mut sum = 0.0;
        let mut coeffs = [0f64; 2 * HALF_TAPS];
        for (j, c) in coeffs.iter_mut().enumerate() {
            let t = (j as f64 - half + 1.0) - frac;
            *c = 2.0 * cutoff * sinc(2.0 * cutoff * t) * blackman(t, half);
            sum += *c;
        }
        for (r, c) in row.iter_mut().zip(coeffs.iter()) {
            *r = (c / sum) as f32;
        }
    }

    let out_len = (input.len() as u64 * up / down) as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len as u64 {
        let pos = n * down;
        let i = (pos / up) as i64;
        let p = (pos % up) as usize;
        let row = &table[p * taps..(p + 1) * taps];
        let start = i - HALF_TAPS as i64 + 1;
        let mut acc = 0f32;
        for (j, c) in row.iter().enumerate() {
            let k = start + j as i64;
            if k >= 0 && (k as usize) < input.len() {
                acc += c * input[k as usize];
            }
        }
        out.push(acc);
    }
    out
}

/// At most this much gain reduction is left to the limiter, in dB; a prompt whose peaks would need
/// more is made quieter than the RMS target instead.
pub const MAX_LIMITING_DB: f64 = 6.0;

/// Half-width of the limiter's look-ahead window: 5 ms at 8 kHz.
const LIMITER_HALF_WINDOW: usize = 40;

/// A look-ahead peak limiter: each sample's gain is the mean, over ±5 ms, of the smallest gain any
/// sample within ±5 ms of it needs to stay under `ceiling`. The mean of those minima never exceeds
/// what the sample itself needs, so no sample passes the ceiling, and the gain glides instead of
/// jumping (no clicks, little distortion).
fn limit_peaks(x: &mut [f32], ceiling: f32) {
    let w = LIMITER_HALF_WINDOW;
    let n = x.len();
    if n == 0 || x.iter().all(|s| s.abs() <= ceiling) {
        return;
    }
    let needed: Vec<f32> = x.iter().map(|s| if s.abs() > ceiling { ceiling / s.abs() } else { 1.0 }).collect();
    let window = |i: usize| i.saturating_sub(w)..(i + w + 1).min(n);
    let min_env: Vec<f32> = (0..n).map(|i| needed[window(i)].iter().cloned().fold(1.0, f32::min)).collect();
    for (i, s) in x.iter_mut().enumerate() {
        let r = window(i);
        let len = r.len() as f32;
        let g = min_env[r].iter().sum::<f32>() / len;
        // Float rounding of the mean must not let a sample through.
        *s = (*s * g).clamp(-ceiling, ceiling);
    }
}

/// Converts PCM samples to floats in [-1, 1).
pub fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Converts floats to PCM samples, rounding and clamping.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect()
}

fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// The RMS level of PCM samples in dBFS (a full-scale square wave is 0 dBFS); `-inf` for silence
/// or an empty slice.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    20.0 * rms.log10()
}

/// Turns speech at `rate` Hz into a telephone prompt at 8 kHz: resampled, trimmed of leading
/// and trailing silence, normalised to [`TARGET_RMS_DBFS`] with peaks limited to
/// [`PEAK_CEILING_DBFS`] (by at most [`MAX_LIMITING_DB`] of gain reduction), faded
/// at both ends and padded with [`LEAD_SILENCE_MS`] and [`TAIL_SILENCE_MS`] of silence.
/// `None` if the input holds no sound at all.
pub fn telephone_prompt(samples: &[i16], rate: u32) -> Option<Vec<i16>> {
    let x = resample(&to_f32(samples), rate, TELEPHONE_RATE);
    let peak = x.iter().fold(0f32, |m, &s| m.max(s.abs()));
    if peak < 1e-4 {
        return None;
    }

    // Trim: keep 20 ms before the first and after the last sample within 45 dB of the peak.
    let threshold = peak * db_to_gain(-45.0) as f32;
    let first = x.iter().position(|s| s.abs() >= threshold)?;
    let last = x.iter().rposition(|s| s.abs() >= threshold)?;
    let margin = (TELEPHONE_RATE / 50) as usize;
    let start = first.saturating_sub(margin);
    let end = (last + margin + 1).min(x.len());
    let mut speech = x[start..end].to_vec();

    // Level: RMS over the 20 ms frames within 30 dB of the loudest frame (the speech, not the
    // pauses between words), capped so the peak stays under the ceiling.
    let frame = (TELEPHONE_RATE / 50) as usize;
    let frame_ms: Vec<f64> =
        speech.chunks(frame).map(|c| c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).collect();
    let loudest = frame_ms.iter().cloned().fold(0.0, f64::max);
    let gate = loudest * db_to_gain(-30.0).powi(2);
    let (sum, count) =
        speech.chunks(frame).zip(&frame_ms).filter(|(_, &ms)| ms >= gate).fold((0.0, 0usize), |(s, n), (c, _)| {
            (s + c.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>(), n + c.len())
        });
    let active_rms = (sum / count.max(1) as f64).sqrt();
    let ceiling = db_to_gain(PEAK_CEILING_DBFS);
    let gain = (db_to_gain(TARGET_RMS_DBFS) / active_rms.max(1e-9))
        .min(db_to_gain(MAX_LIMITING_DB) * ceiling / f64::from(peak)) as f32;
    for s in &mut speech {
        *s *= gain;
    }
    limit_peaks(&mut speech, ceiling as f32);

    // 5 ms raised-cosine fades so trimming never leaves a click.
    let fade = (TELEPHONE_RATE / 200) as usize;
    let n = speech.len();
    for i in 0..fade.min(n / 2) {
        let g = (0.5 - 0.5 * (PI * i as f64 / fade as f64).cos()) as f32;
        speech[i] *= g;
        speech[n - 1 - i] *= g;
    }

    let lead = (TELEPHONE_RATE * LEAD_SILENCE_MS / 1000) as usize;
    let tail = (TELEPHONE_RATE * TAIL_SILENCE_MS / 1000) as usize;
    let mut out = vec![0f32; lead];
    out.extend_from_slice(&speech);
    out.resize(out.len() + tail, 0.0);
    Some(to_i16(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n).map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
    }

    /// Amplitude of `freq` in `x` by correlation with a sine and a cosine (a one-bin DFT).
    fn amplitude_at(x: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    /// Drops the filter's start-up and tail so only the steady state is measured.
    fn steady(x: &[f32]) -> &[f32] {
        &x[400..x.len() - 400]
    }

    #[test]
    fn resampler_keeps_a_1khz_tone() {
        let x = sine(1000.0, 22050, 1.0, 0.5);
        let y = resample(&x, 22050, 8000);
        assert_eq!(y.len(), 8000);
        let y = steady(&y);
        let a = amplitude_at(y, 1000.0, 8000);
        assert!((a - 0.5).abs() < 0.005, "1 kHz amplitude {a}");
        // The tone is at 1 kHz and nowhere else: little energy at other frequencies.
        for f in [500.0, 1500.0, 2000.0, 3000.0] {
            let other = amplitude_at(y, f, 8000);
            assert!(other < 0.005, "{f} Hz leaked {other}");
        }
    }

    #[test]
    fn resampler_removes_a_6khz_tone() {
        // 6 kHz is above the 4 kHz Nyquist limit of 8 kHz: dropping samples would fold it to
        // 2 kHz. A proper low-pass removes it.
        let x = sine(6000.0, 22050, 1.0, 0.5);
        let y = resample(&x, 22050, 8000);
        let y = steady(&y);
        let alias = amplitude_at(y, 2000.0, 8000);
        let rms = (y.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
        assert!(alias < 0.5 * 0.001, "2 kHz alias amplitude {alias}");
        assert!(rms < 0.5 * 0.001, "residual rms {rms}");
    }

    #[test]
    fn resampler_attenuates_tones_near_nyquist() {
        let y = resample(&sine(3000.0, 22050, 1.0, 0.5), 22050, 8000);
        let a = amplitude_at(steady(&y), 3000.0, 8000);
        assert!((a - 0.5).abs() < 0.01, "3 kHz is in the telephone band: {a}");
        let y = resample(&sine(4500.0, 22050, 1.0, 0.5), 22050, 8000);
        let alias = amplitude_at(steady(&y), 3500.0, 8000);
        assert!(alias < 0.001, "4.5 kHz folds to 3.5 kHz: {alias}");
    }

    #[test]
    fn prompt_is_trimmed_padded_and_normalised() {
        // 0.3 s of silence, 0.5 s of a quiet 440 Hz tone, 0.4 s of silence at 22 050 Hz.
        let mut x = vec![0i16; 6615];
        x.extend(to_i16(&sine(440.0, 22050, 0.5, 0.05)));
        x.extend(vec![0i16; 8820]);
        let y = telephone_prompt(&x, 22050).unwrap();
        let secs = y.len() as f64 / 8000.0;
        // 0.5 s of tone + 2 × 20 ms margins + 100 ms lead + 200 ms tail.
        assert!((secs - 0.84).abs() < 0.01, "duration {secs}");
        let lead = (8000 * LEAD_SILENCE_MS / 1000) as usize;
        assert!(y[..lead].iter().all(|&s| s == 0));
        let tail = (8000 * TAIL_SILENCE_MS / 1000) as usize;
        assert!(y[y.len() - tail..].iter().all(|&s| s == 0));
        // A sine's crest factor is 3 dB, so the RMS target is reachable: -16 dBFS.
        let body = &y[lead + 400..y.len() - tail - 400];
        let level = rms_dbfs(body);
        assert!((level - TARGET_RMS_DBFS).abs() < 0.3, "level {level}");
        assert_eq!(telephone_prompt(&[0; 1000], 22050), None);
        assert_eq!(telephone_prompt(&[], 22050), None);
    }

    #[test]
    fn limiter_keeps_peaks_under_the_ceiling_and_leaves_the_rest() {
        let mut x: Vec<f32> = sine(300.0, 8000, 0.5, 0.3);
        x[2000] = 1.5;
        x[2001] = -1.2;
        let before = x.clone();
        limit_peaks(&mut x, 0.9);
        assert!(x.iter().all(|s| s.abs() <= 0.9));
        // Far from the spikes, the signal is untouched.
        assert_eq!(x[..1900], before[..1900]);
        assert_eq!(x[2100..], before[2100..]);
    }

    #[test]
    fn peak_ceiling_wins_over_rms_target() {
        // A click train: very high crest factor.
        let mut x = vec![0i16; 22050];
        for i in (0..x.len()).step_by(2205) {
            x[i] = 20000;
        }
        let y = telephone_prompt(&x, 22050).unwrap();
        let peak = y.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0);
        let ceiling = 32768.0 * db_to_gain(PEAK_CEILING_DBFS);
        assert!(f64::from(peak) <= ceiling + 1.0, "peak {peak}");
    }
}
