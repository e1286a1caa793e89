//! The speech engine: espeak-ng run as a subprocess, one voice per language, its 22 050 Hz output
//! read with hound and turned into an 8 kHz telephone prompt by [`super::dsp`]. A subprocess
//! rather than a library binding keeps the crate free of `unsafe` and of C build dependencies;
//! the server needs only the `espeak-ng` program at run time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{dsp, PromptError};
use crate::domain::Language;

/// Speaking rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pace {
    /// 160 words per minute: the pre-rendered prompts.
    #[default]
    Normal,
    /// 120 words per minute: for callers who asked to hear it again, or for numbers to write down.
    Slow,
}

impl Pace {
    /// The espeak-ng `-s` value.
    pub fn words_per_minute(self) -> u32 {
        match self {
            Pace::Normal => 160,
            Pace::Slow => 120,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pace::Normal => "normal",
            Pace::Slow => "slow",
        }
    }
}

/// The espeak-ng voice of a language (as listed by `espeak-ng --voices`).
pub fn voice(lang: Language) -> &'static str {
    lang.voice()
}

/// Bumped whenever the processing of [`dsp::telephone_prompt`] changes, so that rendered files
/// and cached synthesis made by an older pipeline are redone.
pub(crate) const PIPELINE_VERSION: &str = "tel8k-v1";

/// The espeak-ng program, with a count of how many times it was run (for tests and metrics).
#[derive(Debug)]
pub struct Espeak {
    program: PathBuf,
    invocations: AtomicU64,
}

impl Default for Espeak {
    fn default() -> Self {
        Espeak::new("espeak-ng")
    }
}

impl Espeak {
    /// `program` is a path or a name looked up in `PATH`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Espeak { program: program.into(), invocations: AtomicU64::new(0) }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// How many times the program was run to synthesise speech.
    pub fn invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }

    fn command(&self) -> Command {
        Command::new(&self.program)
    }

    fn not_found(&self, e: std::io::Error) -> PromptError {
        if e.kind() == std::io::ErrorKind::NotFound {
            PromptError::EspeakNotFound { program: self.program.clone() }
        } else {
            PromptError::Io { path: self.program.clone(), source: e }
        }
    }

    /// The first line of `espeak-ng --version`; part of the render key, since another engine
    /// version speaks differently.
    pub fn version(&self) -> Result<String, PromptError> {
        let out = self.command().arg("--version").stdin(Stdio::null()).output().map_err(|e| self.not_found(e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .next()
            .unwrap_or_default()
            // Drop the data path: the same version installed elsewhere speaks the same.
            .split("  Data at:")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// Whether the program can be run at all.
    pub fn is_available(&self) -> bool {
        self.version().is_ok()
    }

    /// Speaks `text` in the language's voice and returns an 8 kHz telephone prompt.
    pub fn synthesize(&self, lang: Language, text: &str, pace: Pace) -> Result<Vec<i16>, PromptError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PromptError::EmptyText);
        }
        let voice = voice(lang);
        let tmp = tempfile::Builder::new()
            .prefix("helpline-espeak-")
            .suffix(".wav")
            .tempfile()
            .map_err(PromptError::io(std::env::temp_dir()))?;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        // The text goes through stdin, never the command line: a text starting with `-` would
        // otherwise be read as an option.
        let mut child = self
            .command()
            .args(["-v", voice, "-s"])
            .arg(pace.words_per_minute().to_string())
            .args(["-b", "1", "-w"])
            .arg(tmp.path())
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.not_found(e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A closed pipe means the program already quit (an unknown voice, say): its exit
            // status and message, read below, say why.
            if let Err(e) = stdin.write_all(text.as_bytes()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(PromptError::io(&self.program)(e));
                }
            }
        }
        let out = child.wait_with_output().map_err(PromptError::io(&self.program))?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let failed = |status: String| PromptError::Espeak {
            program: self.program.clone(),
            voice,
            status,
            stderr: stderr.clone(),
        };
        if !out.status.success() || stderr.contains("Error") {
            return Err(failed(out.status.to_string()));
        }
        let mut reader = hound::WavReader::open(tmp.path()).map_err(PromptError::wav(tmp.path()))?;
        let spec = reader.spec();
        if spec.channels != 1 || spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
            return Err(PromptError::WavFormat {
                path: tmp.path().to_owned(),
                reason: format!("unexpected espeak-ng output format {spec:?}"),
            });
        }
        let samples = reader.samples::<i16>().collect::<Result<Vec<_>, _>>().map_err(PromptError::wav(tmp.path()))?;
        dsp::telephone_prompt(&samples, spec.sample_rate).ok_or_else(|| failed("produced no sound".to_owned()))
    }
}
