//! On-demand speech for texts known only during a call (a queue position, an office's name):
//! synthesised once, then served from memory (a small least-recently-used set) or from disk
//! (`<cache_dir>/<sha256>.wav`, shared by every process and kept across restarts).
//! Synchronous: the server calls it from `spawn_blocking`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::render::write_if_changed;
use super::synth::{voice, Espeak, Pace, PIPELINE_VERSION};
use super::wav::{load_wav, wav_bytes};
use super::PromptError;
use crate::domain::Language;

/// How to synthesise and how much to keep in memory.
#[derive(Debug, Clone)]
pub struct TtsOptions {
    /// The espeak-ng program (a path, or a name looked up in `PATH`).
    pub espeak_program: PathBuf,
    /// How many synthesised texts to keep in memory (at least 1). A 3-second prompt is 48 KB.
    pub memory_entries: usize,
}

impl Default for TtsOptions {
    fn default() -> Self {
        TtsOptions { espeak_program: PathBuf::from("espeak-ng"), memory_entries: 256 }
    }
}

struct Memory {
    entries: HashMap<String, (Arc<Vec<i16>>, u64)>,
    tick: u64,
    capacity: usize,
}

impl Memory {
    fn get(&mut self, key: &str) -> Option<Arc<Vec<i16>>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(samples, used)| {
            *used = tick;
            Arc::clone(samples)
        })
    }

    fn insert(&mut self, key: String, samples: Arc<Vec<i16>>) {
        self.tick += 1;
        self.entries.insert(key, (samples, self.tick));
        while self.entries.len() > self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
    }
}

/// The on-demand speech synthesiser with its caches. `Send + Sync`: share it behind an `Arc`.
pub struct Tts {
    cache_dir: PathBuf,
    espeak: Espeak,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for Tts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tts").field("cache_dir", &self.cache_dir).field("espeak", &self.espeak).finish_non_exhaustive()
    }
}

impl Tts {
    /// The longest text spoken on demand: a few sentences. Longer texts belong in the `.ftl`
    /// files, pre-rendered; the bound keeps one request from occupying the engine for minutes.
    pub const MAX_TEXT_CHARS: usize = 1000;

    /// Creates the cache folder if needed. Does not run the speech engine.
    pub fn new(cache_dir: PathBuf, options: TtsOptions) -> Result<Tts, PromptError> {
        std::fs::create_dir_all(&cache_dir).map_err(PromptError::io(&cache_dir))?;
        Ok(Tts {
            cache_dir,
            espeak: Espeak::new(options.espeak_program),
            memory: Mutex::new(Memory { entries: HashMap::new(), tick: 0, capacity: options.memory_entries.max(1) }),
        })
    }

    /// The cache key of a text: sha256 over the pipeline version, language, voice, speed and the
    /// text with its whitespace collapsed.
    pub fn cache_key(lang: Language, text: &str, pace: Pace) -> String {
        let text = normalize(text);
        let input = format!(
            "{PIPELINE_VERSION}|{}|{}|{}|{}|{text}",
            lang.as_str(),
            pace.as_str(),
            voice(lang),
            pace.words_per_minute()
        );
        hex::encode(Sha256::digest(input.as_bytes()))
    }

    /// The on-disk cache file of a text.
    pub fn cache_path(&self, lang: Language, text: &str, pace: Pace) -> PathBuf {
        self.cache_dir.join(format!("{}.wav", Tts::cache_key(lang, text, pace)))
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// How many times the speech engine has run.
    pub fn synth_invocations(&self) -> u64 {
        self.espeak.invocations()
    }

    /// The 8 kHz mono samples of `text` spoken in `lang`: from memory, else from the disk cache,
    /// else synthesised (and then stored in both). A damaged cache file is synthesised again.
    pub fn render(&self, lang: Language, text: &str, pace: Pace) -> Result<Arc<Vec<i16>>, PromptError> {
        let text = normalize(text);
        if text.is_empty() {
            return Err(PromptError::EmptyText);
        }
        let chars = text.chars().count();
        if chars > Tts::MAX_TEXT_CHARS {
            return Err(PromptError::TextTooLong { chars, max: Tts::MAX_TEXT_CHARS });
        }
        let key = Tts::cache_key(lang, &text, pace);
        if let Some(samples) = self.lock().get(&key) {
            return Ok(samples);
        }
        let path = self.cache_dir.join(format!("{key}.wav"));
        let samples = match load_wav(&path) {
            Ok(samples) => Arc::new(samples),
            Err(_) => {
                // Two calls racing on the same new text may both synthesise it; both write the
                // same bytes atomically, so the cache stays sound.
                let samples = self.espeak.synthesize(lang, &text, pace)?;
                let bytes = wav_bytes(&samples).map_err(PromptError::wav(&path))?;
                write_if_changed(&path, &bytes)?;
                Arc::new(samples)
            }
        };
        self.lock().insert(key, Arc::clone(&samples));
        Ok(samples)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory cache holds no invariant a panicking thread could break halfway.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
