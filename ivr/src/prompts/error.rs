//! The one error type of the prompt tooling, so the CLI and the server can report a bad `.ftl`
//! file, a broken WAV or a missing speech engine with the file, the line and the reason.

use std::path::PathBuf;

use crate::domain::{Language, PromptId};

/// Everything that can go wrong while loading, formatting, synthesising or reading prompts.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: missing language folder (expected one folder per language: it, en, fr, es)", path.display())]
    MissingLanguageDir { path: PathBuf },
    #[error("{}: not valid UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}:{line}:{column}: fluent syntax error: {message}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{}:{line}: message id {id:?} is not a valid prompt id (1 to 64 of a-z 0-9 -, starting with a letter)", path.display())]
    InvalidId { id: String, path: PathBuf, line: usize },
    #[error("{}:{line}: message {id} has no value (attribute-only messages cannot be spoken)", path.display())]
    NoValue { id: PromptId, path: PathBuf, line: usize },
    #[error("{}:{line}: duplicate message id {id} (first defined at {}:{first_line})", path.display(), first_path.display())]
    DuplicateId { id: PromptId, path: PathBuf, line: usize, first_path: PathBuf, first_line: usize },
    #[error("no message {id} in language {lang}")]
    UnknownMessage { lang: Language, id: PromptId },
    #[error("{}:{line}: cannot format message {id} ({lang}): {errors}", path.display())]
    Format { lang: Language, id: PromptId, path: PathBuf, line: usize, errors: String },
    #[error("{}:{line}: cannot render message {id} ({lang}): {source}", path.display())]
    Render {
        lang: Language,
        id: PromptId,
        path: PathBuf,
        line: usize,
        #[source]
        source: Box<PromptError>,
    },
    #[error("cannot synthesise empty text")]
    EmptyText,
    #[error("text too long to synthesise on demand: {chars} characters (at most {max})")]
    TextTooLong { chars: usize, max: usize },
    #[error("speech engine {program:?} not found: install the Debian package `espeak-ng` (apt-get install espeak-ng)")]
    EspeakNotFound { program: PathBuf },
    #[error("speech engine {program:?} failed for voice {voice} ({status}): {stderr}")]
    Espeak { program: PathBuf, voice: &'static str, status: String, stderr: String },
    #[error("{}: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("{}: {reason}", path.display())]
    WavFormat { path: PathBuf, reason: String },
}

impl PromptError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PromptError {
        let path = path.into();
        move |source| PromptError::Io { path, source }
    }

    pub(crate) fn wav(path: impl Into<PathBuf>) -> impl FnOnce(hound::Error) -> PromptError {
        let path = path.into();
        move |source| PromptError::Wav { path, source }
    }
}
