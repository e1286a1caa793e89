//! Prompt tooling: the spoken texts of the helpline, from fluent `.ftl` files to telephone-quality
//! WAV files. It exists so that the server and the `helpline prompts render|check` command share
//! one definition of what a prompt is: [`Catalog`] loads and formats the texts, [`render_all`]
//! pre-renders the static ones with espeak-ng, [`check_all`] verifies the rendered files, and
//! [`Tts`] speaks runtime texts on demand through a cache.
//!
//! Architecture invariant: everything here is synchronous and does no networking; the server runs
//! it on a blocking thread. The only outside program is `espeak-ng`.

mod catalog;
mod check;
mod dsp;
mod error;
mod render;
mod synth;
mod tts;
mod wav;

#[cfg(test)]
mod tests;

pub use catalog::{Catalog, PromptArg};
pub use check::{check_all, check_file, min_duration_ms, CheckReport, Problem, ProblemKind};
pub use dsp::{resample, rms_dbfs, telephone_prompt, TELEPHONE_RATE};
pub use error::PromptError;
pub use render::{render_all, wav_dir, wav_path, RenderOptions, RenderReport, MANIFEST_NAME};
pub use synth::{voice, Espeak, Pace};
pub use tts::{Tts, TtsOptions};
pub use wav::{decode_wav, load_wav, wav_bytes, PROMPT_SPEC};
