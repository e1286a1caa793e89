//! Checking the rendered prompts before they go live: every static message of every language has
//! its WAV, in the telephone format, audible, complete and of a plausible length, and no message
//! is missing from any language. Every problem is reported, not only the first.

use std::fmt;
use std::path::{Path, PathBuf};

use super::dsp::rms_dbfs;
use super::render::wav_path;
use super::wav::format_problem;
use super::Catalog;
use crate::domain::{Language, PromptId};

/// Below this RMS over the whole file, a prompt is silent.
pub const SILENCE_DBFS: f64 = -45.0;
/// The last [`TAIL_MS`] of a prompt must be below this level, or the speech was cut off.
pub const TAIL_MAX_DBFS: f64 = -40.0;
/// How much of the end must be quiet, in milliseconds.
pub const TAIL_MS: u32 = 30;
/// A prompt lasts at least this long per character of its text, in milliseconds...
pub const MIN_MS_PER_CHAR: u64 = 40;
/// ... and at least this long in any case.
pub const MIN_DURATION_MS: u64 = 250;

/// What is wrong with one prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum ProblemKind {
    /// The id exists in another language but not in this one.
    MissingMessage,
    /// A static message that fails to format (so cannot have been rendered either).
    Unformattable(String),
    /// No WAV file for a static message.
    MissingWav,
    /// The file is not a WAV file hound can read.
    Unreadable(String),
    /// Not 8 kHz mono 16-bit PCM.
    WrongFormat(String),
    /// The header declares more samples than the file holds.
    Truncated { declared: usize, read: usize },
    /// RMS over the file below [`SILENCE_DBFS`].
    Silent { rms_dbfs: f64 },
    /// Shorter than the text could be spoken in.
    TooShort { duration_ms: u64, min_ms: u64 },
    /// The last [`TAIL_MS`] are loud: speech stops abruptly.
    AbruptEnd { tail_dbfs: f64 },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingMessage => write!(f, "message missing in this language"),
            ProblemKind::Unformattable(e) => write!(f, "message cannot be formatted: {e}"),
            ProblemKind::MissingWav => write!(f, "WAV file missing (run `helpline prompts render`)"),
            ProblemKind::Unreadable(e) => write!(f, "not a readable WAV file: {e}"),
            ProblemKind::WrongFormat(e) => write!(f, "{e}"),
            ProblemKind::Truncated { declared, read } => {
                write!(f, "truncated: header declares {declared} samples, only {read} could be read")
            }
            ProblemKind::Silent { rms_dbfs } => {
                write!(f, "silent: RMS {rms_dbfs:.1} dBFS (threshold {SILENCE_DBFS} dBFS)")
            }
            ProblemKind::TooShort { duration_ms, min_ms } => {
                write!(f, "too short for its text: {duration_ms} ms, expected at least {min_ms} ms")
            }
            ProblemKind::AbruptEnd { tail_dbfs } => write!(
                f,
                "ends abruptly: last {TAIL_MS} ms at {tail_dbfs:.1} dBFS (must be below {TAIL_MAX_DBFS} dBFS)"
            ),
        }
    }
}

/// One problem, with the language, the message and the file it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub lang: Language,
    pub id: PromptId,
    /// The WAV file, where one is concerned.
    pub path: Option<PathBuf>,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "{} {}: {}", self.lang, self.id, self.kind),
        }
    }
}

/// The outcome of [`check_all`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// How many WAV files were inspected.
    pub files_checked: usize,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the rendered prompts under `dir` against the catalog.
pub fn check_all(dir: &Path, catalog: &Catalog) -> CheckReport {
    let mut report = CheckReport::default();
    for (lang, id) in catalog.missing() {
        report.problems.push(Problem { lang, id, path: None, kind: ProblemKind::MissingMessage });
    }
    for lang in catalog.languages() {
        for id in catalog.ids(lang) {
            if catalog.has_variables(lang, &id) {
                continue;
            }
            let text = match catalog.format(lang, &id, &[]) {
                Ok(t) => t,
                Err(e) => {
                    report.problems.push(Problem {
                        lang,
                        id,
                        path: None,
                        kind: ProblemKind::Unformattable(e.to_string()),
                    });
                    continue;
                }
            };
            let path = wav_path(dir, lang, &id);
            report.files_checked += usize::from(path.exists());
            for kind in check_file(&path, &text) {
                report.problems.push(Problem { lang, id: id.clone(), path: Some(path.clone()), kind });
            }
        }
    }
    report
}

/// The shortest plausible duration of a prompt speaking `text`.
pub fn min_duration_ms(text: &str) -> u64 {
    let chars = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().count() as u64;
    (chars * MIN_MS_PER_CHAR).max(MIN_DURATION_MS)
}

/// The problems of one WAV file meant to speak `text`.
pub fn check_file(path: &Path, text: &str) -> Vec<ProblemKind> {
    if !path.exists() {
        return vec![ProblemKind::MissingWav];
    }
    let mut reader = match hound::WavReader::open(path) {
        Ok(r) => r,
        Err(e) => return vec![ProblemKind::Unreadable(e.to_string())],
    };
    let spec = reader.spec();
    if let Some(reason) = format_problem(&spec) {
        // Samples of another format say nothing about the prompt format's other checks.
        return vec![ProblemKind::WrongFormat(reason)];
    }
    let declared = reader.len() as usize;
    let mut samples = Vec::with_capacity(declared);
    let mut problems = Vec::new();
    for s in reader.samples::<i16>() {
        match s {
            Ok(s) => samples.push(s),
            Err(_) => break,
        }
    }
    if samples.len() != declared {
        problems.push(ProblemKind::Truncated { declared, read: samples.len() });
    }
    let rms = rms_dbfs(&samples);
    if rms < SILENCE_DBFS {
        problems.push(ProblemKind::Silent { rms_dbfs: rms });
        // A silent file neither is too short nor ends abruptly in any useful sense.
        return problems;
    }
    let duration_ms = samples.len() as u64 * 1000 / u64::from(spec.sample_rate);
    let min_ms = min_duration_ms(text);
    if duration_ms < min_ms {
        problems.push(ProblemKind::TooShort { duration_ms, min_ms });
    }
    let tail_len = (spec.sample_rate * TAIL_MS / 1000) as usize;
    let tail = &samples[samples.len().saturating_sub(tail_len)..];
    let tail_dbfs = rms_dbfs(tail);
    if tail_dbfs >= TAIL_MAX_DBFS {
        problems.push(ProblemKind::AbruptEnd { tail_dbfs });
    }
    problems
}
