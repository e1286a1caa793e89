//! Loading what callers hear: the menus (`flow_file`, or the built-in default flow when the file
//! is absent) checked against the prompt texts, and the texts and rendered WAVs themselves
//! ([`PromptFiles`]: the `prompts_dir` folder, or the copy of `prompts/` built into the binary
//! when that folder is the default one and absent).

pub mod http;

pub use http::{routes, wav_response, PromptsState};

use crate::config::Settings;
use anyhow::Context;
use ivr::domain::{Language, PromptId};
use ivr::flow::{Flow, KnownPrompts};
use ivr::prompts::{decode_wav, load_wav, wav_path, Catalog, PromptError};
use rust_embed::RustEmbed;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The flow and the prompt catalog the server runs with, and where the prompts came from.
#[derive(Clone)]
pub struct Voice {
    pub flow: Arc<Flow>,
    pub catalog: Arc<Catalog>,
    pub prompts: PromptFiles,
}

/// Where the running flow came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSource {
    File(std::path::PathBuf),
    BuiltIn,
}

/// The repository's `prompts/` folder (`<lang>/*.ftl`, `<lang>/wav/<id>.wav`), built into the
/// binary, in debug builds too (rust-embed's `debug-embed`).
#[derive(RustEmbed)]
#[folder = "../prompts/"]
struct BuiltInPrompts;

/// Where the prompt texts and rendered WAVs are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptFiles {
    /// A folder on disk: `<dir>/<lang>/*.ftl` and `<dir>/<lang>/wav/<id>.wav`.
    Dir(PathBuf),
    /// The copy of the repository's `prompts/` built into the binary.
    BuiltIn,
}

impl std::fmt::Display for PromptFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptFiles::Dir(dir) => write!(f, "{}", dir.display()),
            PromptFiles::BuiltIn => f.write_str("the prompts built into the program"),
        }
    }
}

impl PromptFiles {
    /// The folder `prompts_dir` when it exists; the built-in copy when `prompts_dir` is the
    /// default (`prompts`) and there is no such folder (a server started outside the repository).
    /// A folder named otherwise is used even when absent, so loading it fails, naming it.
    pub fn choose(prompts_dir: &Path) -> PromptFiles {
        if prompts_dir == Settings::default().prompts_dir && !prompts_dir.exists() {
            PromptFiles::BuiltIn
        } else {
            PromptFiles::Dir(prompts_dir.to_owned())
        }
    }

    /// Loads and checks the texts of every language present.
    pub fn catalog(&self) -> Result<Catalog, PromptError> {
        match self {
            PromptFiles::Dir(dir) => Catalog::load(dir),
            PromptFiles::BuiltIn => self.catalog_of(&[]),
        }
    }

    /// Loads and checks the texts of these languages (a folder must have each; the built-in copy
    /// has the shipped ones and whatever else it holds).
    pub fn catalog_of(&self, languages: &[Language]) -> Result<Catalog, PromptError> {
        match self {
            PromptFiles::Dir(dir) if languages.is_empty() => Catalog::load(dir),
            PromptFiles::Dir(dir) => Catalog::load_languages(dir, languages),
            PromptFiles::BuiltIn => Catalog::from_texts(BuiltInPrompts::iter().filter_map(|name| {
                // `<lang>/<file>.ftl`; WAVs and manifests are not texts.
                let (lang, file) = name.split_once('/')?;
                let lang = Language::parse(lang).ok()?;
                if file.contains('/') || !file.ends_with(".ftl") {
                    return None;
                }
                let bytes = BuiltInPrompts::get(&name)?.data.into_owned();
                Some((lang, Path::new("prompts").join(name.as_ref()), bytes))
            })),
        }
    }

    /// The prompt ids of each language's texts, read without loading them (a flow is checked
    /// against them before its languages are known to the catalog).
    pub fn known_prompts(&self) -> KnownPrompts {
        match self {
            PromptFiles::Dir(dir) => KnownPrompts::scan(dir),
            PromptFiles::BuiltIn => {
                let mut known = KnownPrompts::default();
                for name in BuiltInPrompts::iter() {
                    let Some((lang, file)) = name.split_once('/') else { continue };
                    if file.contains('/') || !file.ends_with(".ftl") {
                        continue;
                    }
                    if let Some(f) = BuiltInPrompts::get(&name) {
                        known.add_text(lang, &format!("prompts/{lang}/"), &String::from_utf8_lossy(&f.data));
                    }
                }
                known
            }
        }
    }

    /// The bytes of a rendered prompt, as stored; `None` when there is none.
    pub async fn wav_bytes(&self, lang: Language, id: &PromptId) -> Option<Vec<u8>> {
        match self {
            PromptFiles::Dir(dir) => tokio::fs::read(wav_path(dir, lang, id)).await.ok(),
            PromptFiles::BuiltIn => BuiltInPrompts::get(&built_in_wav(lang, id)).map(|f| f.data.into_owned()),
        }
    }

    /// The samples of a rendered prompt, checked (8 kHz mono 16-bit, not truncated). Reads the
    /// disk: call it on a blocking thread.
    pub fn wav_samples(&self, lang: Language, id: &PromptId) -> Result<Vec<i16>, PromptError> {
        match self {
            PromptFiles::Dir(dir) => load_wav(&wav_path(dir, lang, id)),
            PromptFiles::BuiltIn => {
                let name = built_in_wav(lang, id);
                let path = Path::new("prompts").join(&name);
                match BuiltInPrompts::get(&name) {
                    Some(file) => decode_wav(&file.data, &path),
                    None => Err(PromptError::Io { path, source: std::io::ErrorKind::NotFound.into() }),
                }
            }
        }
    }
}

/// A built-in WAV's name inside `prompts/`.
fn built_in_wav(lang: Language, id: &PromptId) -> String {
    format!("{}/wav/{}.wav", lang.as_str(), id.as_str())
}

/// Loads and cross-checks the flow and the catalog; errors name the file, node and reason. The
/// flow is checked first against the prompt ids of each language's texts (so a language it adds
/// is configured before its texts load), then the catalog of its languages is loaded.
pub fn load(settings: &Settings) -> anyhow::Result<(Voice, FlowSource)> {
    let prompts = PromptFiles::choose(&settings.prompts_dir);
    let known = prompts.known_prompts();
    let (flow, source) = match std::fs::read_to_string(&settings.flow_file) {
        Ok(src) => {
            let file = settings.flow_file.display().to_string();
            (Flow::from_toml(&src, &file, &known)?, FlowSource::File(settings.flow_file.clone()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The built-in flow, checked against the texts in use (not only the embedded ones),
            // or callers would hear silence.
            let file = format!("the built-in flow (no {})", settings.flow_file.display());
            (Flow::from_toml(ivr::flow::DEFAULT_FLOW_TOML, &file, &known)?, FlowSource::BuiltIn)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", settings.flow_file.display())),
    };
    // Without a sender (`HELPLINE_SMS_VIA` empty) callers are not offered what cannot be sent.
    let flow = if flow.offers_sms() && settings.sms().ok().flatten().is_none() {
        tracing::info!("the readback's text-message offer is off: HELPLINE_SMS_VIA is not set");
        flow.without_sms()
    } else {
        flow
    };
    let catalog =
        prompts.catalog_of(flow.languages()).with_context(|| format!("cannot load the prompt texts from {prompts}"))?;
    tracing::info!(from = %prompts, languages = flow.languages().len(), "prompts loaded");
    Ok((Voice { flow: Arc::new(flow), catalog: Arc::new(catalog), prompts }, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_prompts() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts")
    }

    #[test]
    fn the_default_folder_when_present_else_the_built_in_copy() {
        let absent = tempfile::tempdir().unwrap();
        assert_eq!(PromptFiles::choose(&repo_prompts()), PromptFiles::Dir(repo_prompts()));
        // An explicitly named folder stays the one used, present or not.
        let named = absent.path().join("prompts");
        assert_eq!(PromptFiles::choose(&named), PromptFiles::Dir(named.clone()));
        let err = PromptFiles::choose(&named).catalog().unwrap_err();
        assert!(err.to_string().contains("missing language folder"), "{err}");
        // The default, relative `prompts`, is the built-in copy only where it does not exist.
        let default = Settings::default().prompts_dir;
        let expected = if default.exists() { PromptFiles::Dir(default.clone()) } else { PromptFiles::BuiltIn };
        assert_eq!(PromptFiles::choose(&default), expected);
    }

    #[tokio::test]
    async fn the_built_in_copy_is_the_repository_folder() {
        let disk = PromptFiles::Dir(repo_prompts());
        let built_in = PromptFiles::BuiltIn;
        let (from_disk, embedded) = (disk.catalog().unwrap(), built_in.catalog().unwrap());
        let mut wavs = 0;
        for lang in Language::shipped().iter().copied() {
            assert_eq!(embedded.ids(lang), from_disk.ids(lang), "{lang}");
            for id in from_disk.ids(lang) {
                if from_disk.has_variables(lang, &id) {
                    continue;
                }
                let bytes = built_in.wav_bytes(lang, &id).await;
                assert!(bytes.is_some(), "{lang}/{id}: no built-in WAV");
                assert_eq!(bytes, disk.wav_bytes(lang, &id).await, "{lang}/{id}");
                assert_eq!(built_in.wav_samples(lang, &id).unwrap(), disk.wav_samples(lang, &id).unwrap());
                wavs += 1;
            }
        }
        assert!(wavs > 150, "{wavs} WAVs");
        let none = PromptId::parse("no-such-prompt").unwrap();
        assert_eq!(built_in.wav_bytes(Language::It, &none).await, None);
        assert!(built_in.wav_samples(Language::It, &none).is_err());
    }

    #[test]
    fn without_the_folder_the_built_in_flow_runs_on_the_built_in_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            flow_file: dir.path().join("absent.toml"),
            prompts_dir: Settings::default().prompts_dir,
            ..Settings::default()
        };
        // (Run from the crate folder, which has no `prompts/` of its own.)
        if settings.prompts_dir.exists() {
            return;
        }
        let (voice, source) = load(&settings).unwrap();
        assert_eq!((source, voice.prompts), (FlowSource::BuiltIn, PromptFiles::BuiltIn));
    }
}
