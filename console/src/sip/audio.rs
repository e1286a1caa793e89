//! What SIP callers hear, as 8 kHz samples: the rendered WAV prompts (`<lang>/wav/<id>.wav` of
//! `PromptFiles`: the prompts folder or the copy built into the binary; loaded once and kept in
//! memory), texts with variables spoken on demand (`Catalog::format` → `Tts::render` on a
//! blocking thread, cached by `Tts`), and the hold tone played in the queue.
//!
//! A `Clip` also carries its G.711 encodings, made once per clip on first use by a call of that
//! codec (off the media clock's thread), so the clock only copies 160 bytes per packet.

use crate::voice::PromptFiles;
use ivr::domain::{Language, PromptId};
use ivr::engine::{Pace, SayArg};
use ivr::prompts::{Catalog, PromptArg, PromptError, Tts};
use ivr::sdp::Codec;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Why a prompt could not be made audible.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error("on-demand speech is unavailable")]
    NoSpeech,
    #[error("audio task failed: {0}")]
    Task(String),
}

/// A clip of 8 kHz mono samples, shared between calls, with its G.711 encodings made on demand.
#[derive(Clone)]
pub struct Clip(Arc<ClipInner>);

struct ClipInner {
    samples: Arc<Vec<i16>>,
    ulaw: OnceLock<Arc<[u8]>>,
    alaw: OnceLock<Arc<[u8]>>,
}

impl Clip {
    pub fn new(samples: Arc<Vec<i16>>) -> Clip {
        Clip(Arc::new(ClipInner { samples, ulaw: OnceLock::new(), alaw: OnceLock::new() }))
    }

    /// Length in samples (= G.711 bytes).
    pub fn len(&self) -> usize {
        self.0.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.samples.is_empty()
    }

    /// Whether both are the same clip (the same samples and encodings in memory).
    pub fn same(&self, other: &Clip) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The clip in `codec`, encoded on the first call and kept.
    pub fn encoded(&self, codec: Codec) -> Arc<[u8]> {
        let cell = match codec {
            Codec::Pcmu => &self.0.ulaw,
            Codec::Pcma => &self.0.alaw,
        };
        cell.get_or_init(|| ivr::rtp::encode(codec, &self.0.samples).into()).clone()
    }
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clip({} samples)", self.len())
    }
}

/// The prompts of every language, loaded on first use and kept.
pub struct PromptAudio {
    files: PromptFiles,
    catalog: Arc<Catalog>,
    tts: Option<Arc<Tts>>,
    /// One cell per prompt: calls that want a prompt while it loads wait for that one load and
    /// share its clip (and its G.711), rather than each loading and keeping a copy of its own.
    wavs: Mutex<HashMap<(Language, PromptId), Loading>>,
    /// Texts spoken on demand, the same way: the calls saying one text (a thousand callers hearing
    /// the language offer) share one clip and one G.711 encoding of it, rather than a copy each
    /// (≈ 100 KB for a 12-second text). The [`SPOKEN_CLIPS`] most recently used are kept.
    spoken: Mutex<Spoken>,
    /// Texts rendered at once: as many as the machine has cores. Every render is a speech
    /// process and a blocking thread with its buffers; unbounded, a thousand callers entering the
    /// queue at once (each told a position of its own) started a thousand and took 2.2 GB
    /// (BENCHMARKS.md, "Memory"). The rest wait their turn; the cores were the limit anyway.
    speaking: tokio::sync::Semaphore,
}

/// A prompt's clip, loaded once by whichever call asked first.
type Loading = Arc<tokio::sync::OnceCell<Clip>>;

/// How many spoken texts' clips [`PromptAudio`] keeps (those of calls still playing one live on
/// in the calls): as many as the speech cache keeps texts in memory.
pub const SPOKEN_CLIPS: usize = 256;

/// The spoken texts' clips, by language, pace and text, with when each was last asked for.
#[derive(Default)]
struct Spoken {
    entries: HashMap<(Language, ivr::prompts::Pace, String), (Loading, u64)>,
    tick: u64,
}

impl Spoken {
    /// The cell of a text, made if new (the least recently used one dropped past the bound).
    fn cell(&mut self, key: (Language, ivr::prompts::Pace, String)) -> Loading {
        self.tick += 1;
        let tick = self.tick;
        let cell = match self.entries.get_mut(&key) {
            Some((cell, used)) => {
                *used = tick;
                return cell.clone();
            }
            None => Loading::default(),
        };
        self.entries.insert(key, (cell.clone(), tick));
        if self.entries.len() > SPOKEN_CLIPS {
            if let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) {
                self.entries.remove(&oldest);
            }
        }
        cell
    }
}

impl PromptAudio {
    /// `tts` is the server's on-demand speech (shared with the other adapters and its cache).
    pub fn new(files: PromptFiles, catalog: Arc<Catalog>, tts: Option<Arc<Tts>>) -> PromptAudio {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        PromptAudio {
            files,
            catalog,
            tts,
            wavs: Mutex::new(HashMap::new()),
            spoken: Mutex::default(),
            speaking: tokio::sync::Semaphore::new(cores),
        }
    }

    /// A prompt without variables. Normal pace is the rendered WAV; slow pace is spoken from the
    /// text (cached), falling back to the WAV.
    pub async fn play(&self, lang: Language, id: &PromptId, pace: Pace) -> Result<Clip, AudioError> {
        if pace == Pace::Slow {
            if let Ok(clip) = self.say(lang, id, &BTreeMap::new(), pace).await {
                return Ok(clip);
            }
        }
        match self.wav(lang, id).await {
            Ok(clip) => Ok(clip),
            // A message with no WAV (e.g. added by an admin): speak its text.
            Err(e) => self.say(lang, id, &BTreeMap::new(), pace).await.map_err(|_| e),
        }
    }

    async fn wav(&self, lang: Language, id: &PromptId) -> Result<Clip, AudioError> {
        let cell = self.lock().entry((lang, id.clone())).or_default().clone();
        let clip = cell
            .get_or_try_init(|| async {
                let (files, wav_id) = (self.files.clone(), id.clone());
                let samples = tokio::task::spawn_blocking(move || files.wav_samples(lang, &wav_id))
                    .await
                    .map_err(|e| AudioError::Task(e.to_string()))??;
                Ok::<_, AudioError>(Clip::new(Arc::new(samples)))
            })
            .await?;
        Ok(clip.clone())
    }

    /// A message with its arguments, spoken on demand.
    pub async fn say(
        &self,
        lang: Language,
        id: &PromptId,
        args: &BTreeMap<String, SayArg>,
        pace: Pace,
    ) -> Result<Clip, AudioError> {
        let args: Vec<(&str, PromptArg)> = args
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    SayArg::Text(s) => PromptArg::Text(s.clone()),
                    SayArg::Number(n) => PromptArg::Number(*n),
                };
                (k.as_str(), v)
            })
            .collect();
        let text = self.catalog.format(lang, id, &args)?;
        let tts = self.tts.clone().ok_or(AudioError::NoSpeech)?;
        let pace = match pace {
            Pace::Normal => ivr::prompts::Pace::Normal,
            Pace::Slow => ivr::prompts::Pace::Slow,
        };
        let cell = self.spoken.lock().unwrap_or_else(|p| p.into_inner()).cell((lang, pace, text.clone()));
        let clip = cell
            .get_or_try_init(|| async move {
                let _turn = self.speaking.acquire().await.map_err(|e| AudioError::Task(e.to_string()))?;
                let samples = tokio::task::spawn_blocking(move || tts.render(lang, &text, pace))
                    .await
                    .map_err(|e| AudioError::Task(e.to_string()))??;
                Ok::<_, AudioError>(Clip::new(samples))
            })
            .await?;
        Ok(clip.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Language, PromptId), Loading>> {
        // A panic while holding this lock cannot leave the map inconsistent: use it anyway.
        self.wavs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The beep before a voice message: 400 ms of 1 kHz at −12 dBFS, with 10 ms ramps.
pub fn beep() -> Clip {
    const RATE: f64 = 8000.0;
    let n = (0.4 * RATE) as usize;
    let amplitude = 32767.0 * 10f64.powf(-12.0 / 20.0);
    let samples = (0..n)
        .map(|i| {
            let ramp = (i.min(n - i) as f64 / 80.0).min(1.0);
            (amplitude * ramp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / RATE).sin()) as i16
        })
        .collect();
    Clip::new(Arc::new(samples))
}

/// The hold audio: a soft 425 Hz tone, 0.4 s on and 3.6 s off (an Italian-style "please wait"
/// cadence, at −24 dBFS so announcements stand out).
pub fn hold_tone() -> Clip {
    const RATE: f64 = 8000.0;
    let on = (0.4 * RATE) as usize;
    let total = (4.0 * RATE) as usize;
    let amplitude = 32767.0 * 10f64.powf(-24.0 / 20.0);
    let samples = (0..total)
        .map(|i| {
            if i < on {
                // 10 ms ramps so the tone does not click.
                let ramp = (i.min(on - i) as f64 / 80.0).min(1.0);
                (amplitude * ramp * (2.0 * std::f64::consts::PI * 425.0 * i as f64 / RATE).sin()) as i16
            } else {
                0
            }
        })
        .collect();
    Clip::new(Arc::new(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls that start together (a burst of INVITEs) share one load of a prompt: one clip in
    /// memory, not one per call.
    #[tokio::test]
    async fn calls_asking_for_a_prompt_at_once_share_one_clip() {
        let files = PromptFiles::Dir(std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts")));
        let catalog = Arc::new(files.catalog_of(&[Language::It]).expect("catalog"));
        let audio = Arc::new(PromptAudio::new(files, catalog, None));
        let id = PromptId::parse("welcome").expect("id");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (audio, id) = (audio.clone(), id.clone());
                tokio::spawn(async move { audio.play(Language::It, &id, Pace::Normal).await })
            })
            .collect();
        let mut clips = Vec::new();
        for t in tasks {
            clips.push(t.await.expect("task").expect("clip"));
        }
        assert!(!clips[0].is_empty());
        assert!(clips.iter().all(|c| c.same(&clips[0])), "every call got the one loaded clip");
        assert!(Arc::ptr_eq(&clips[0].encoded(Codec::Pcmu), &clips[31].encoded(Codec::Pcmu)), "and one encoding");
    }

    /// Calls saying the same text (the language offer every caller hears first) share one clip and
    /// its G.711, spoken once; another text is another clip.
    #[tokio::test]
    async fn calls_saying_one_text_share_one_clip() {
        let files = PromptFiles::Dir(std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts")));
        let catalog = Arc::new(files.catalog_of(&[Language::It]).expect("catalog"));
        let cache = tempfile::tempdir().expect("tempdir");
        let tts = Arc::new(Tts::new(cache.path().to_owned(), ivr::prompts::TtsOptions::default()).expect("tts"));
        let audio = Arc::new(PromptAudio::new(files, catalog, Some(tts.clone())));
        let id = PromptId::parse("welcome").expect("id");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (audio, id) = (audio.clone(), id.clone());
                tokio::spawn(async move { audio.say(Language::It, &id, &BTreeMap::new(), Pace::Normal).await })
            })
            .collect();
        let mut clips = Vec::new();
        for t in tasks {
            clips.push(t.await.expect("task").expect("clip"));
        }
        assert!(!clips[0].is_empty());
        assert!(clips.iter().all(|c| c.same(&clips[0])), "every call got the one spoken clip");
        assert!(Arc::ptr_eq(&clips[0].encoded(Codec::Pcmu), &clips[15].encoded(Codec::Pcmu)), "and one encoding");
        assert_eq!(tts.synth_invocations(), 1, "spoken once");
        let slow = audio.say(Language::It, &id, &BTreeMap::new(), Pace::Slow).await.expect("slow clip");
        assert!(!slow.same(&clips[0]), "the slow reading is a clip of its own");
    }
}
