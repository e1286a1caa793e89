//! Pre-rendering: every static message of every language spoken once into
//! `prompts/<lang>/wav/<id>.wav`, so the server plays files instead of running a speech engine
//! on each call. Re-rendering is incremental and deterministic: a `.manifest` beside the WAVs
//! records what each file was made from, and a file whose bytes would not change is not
//! rewritten, so an unchanged text never shows up as a changed file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::synth::{voice, Espeak, Pace, PIPELINE_VERSION};
use super::wav::wav_bytes;
use super::{Catalog, PromptError};
use crate::domain::{Language, PromptId};

/// The name of the manifest file in each `wav/` folder.
pub const MANIFEST_NAME: &str = ".manifest";

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The espeak-ng program (a path, or a name looked up in `PATH`).
    pub espeak_program: PathBuf,
    /// Speaking rate of the pre-rendered prompts.
    pub pace: Pace,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { espeak_program: PathBuf::from("espeak-ng"), pace: Pace::Normal }
    }
}

/// What [`render_all`] did, message by message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderReport {
    /// Synthesised and written (new or changed).
    pub written: Vec<(Language, PromptId)>,
    /// Synthesised again (the manifest did not vouch for the file) but byte-identical to the
    /// file already there, which was left untouched.
    pub identical: Vec<(Language, PromptId)>,
    /// Skipped without synthesis: the manifest records the same text, voice, speed and engine,
    /// and the file's bytes are the ones recorded.
    pub up_to_date: Vec<(Language, PromptId)>,
    /// Messages with variables, left to on-demand synthesis.
    pub dynamic: Vec<(Language, PromptId)>,
    /// WAV files for which no static message exists any more (left in place).
    pub orphans: Vec<PathBuf>,
}

impl RenderReport {
    /// How many times the speech engine ran.
    pub fn synthesized(&self) -> usize {
        self.written.len() + self.identical.len()
    }
}

/// The folder holding a language's rendered prompts.
pub fn wav_dir(dir: &Path, lang: Language) -> PathBuf {
    dir.join(lang.as_str()).join("wav")
}

/// The rendered file of one prompt.
pub fn wav_path(dir: &Path, lang: Language, id: &PromptId) -> PathBuf {
    wav_dir(dir, lang).join(format!("{id}.wav"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One manifest line: the hash of what the file was made from and the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ManifestEntry {
    key: String,
    wav: String,
}

fn read_manifest(path: &Path) -> BTreeMap<String, ManifestEntry> {
    // A missing or damaged manifest only costs a re-synthesis.
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (id, key, wav) = (parts.next()?, parts.next()?, parts.next()?);
            Some((id.to_owned(), ManifestEntry { key: key.to_owned(), wav: wav.to_owned() }))
        })
        .collect()
}

fn manifest_text(entries: &BTreeMap<String, ManifestEntry>) -> String {
    let mut s = String::from("# id  sha256(pipeline|engine|voice|speed|text)  sha256(wav)\n");
    for (id, e) in entries {
        s.push_str(&format!("{id} {} {}\n", e.key, e.wav));
    }
    s
}

/// Writes `bytes` to `path` unless the file already holds exactly them; atomically (a temporary
/// file in the same folder, then a rename), so a reader never sees half a file.
/// Returns whether the file was written.
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, PromptError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(PromptError::io(parent))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(PromptError::io(tmp.path()))?;
    tmp.persist(path).map_err(|e| PromptError::io(path)(e.error))?;
    Ok(true)
}

/// Renders every static message (one without variables) of every language to
/// `dir/<lang>/wav/<id>.wav`, 8 kHz mono 16-bit PCM, skipping those already up to date.
/// Stops at the first failure (after saving the manifest of what was done).
pub fn render_all(dir: &Path, catalog: &Catalog, opts: &RenderOptions) -> Result<RenderReport, PromptError> {
    let espeak = Espeak::new(&opts.espeak_program);
    // Fails early, with the install hint, if the engine is missing.
    let engine = espeak.version()?;
    let mut report = RenderReport::default();
    for lang in catalog.languages() {
        render_language(dir, catalog, opts, &espeak, &engine, lang, &mut report)?;
    }
    Ok(report)
}

fn render_language(
    dir: &Path,
    catalog: &Catalog,
    opts: &RenderOptions,
    espeak: &Espeak,
    engine: &str,
    lang: Language,
    report: &mut RenderReport,
) -> Result<(), PromptError> {
    let out_dir = wav_dir(dir, lang);
    std::fs::create_dir_all(&out_dir).map_err(PromptError::io(&out_dir))?;
    let manifest_path = out_dir.join(MANIFEST_NAME);
    let old = read_manifest(&manifest_path);
    let mut new = BTreeMap::new();
    let ids = catalog.ids(lang);

    let mut result = Ok(());
    for id in &ids {
        if catalog.has_variables(lang, id) {
            report.dynamic.push((lang, id.clone()));
            continue;
        }
        match render_one(dir, catalog, opts, espeak, engine, lang, id, &old) {
            Ok((entry, outcome)) => {
                let list = match outcome {
                    Outcome::Written => &mut report.written,
                    Outcome::Identical => &mut report.identical,
                    Outcome::UpToDate => &mut report.up_to_date,
                };
                list.push((lang, id.clone()));
                new.insert(id.to_string(), entry);
            }
            Err(e) => {
                let (path, line) = catalog.source(lang, id).map(|(p, l)| (p.to_owned(), l)).unwrap_or_default();
                result = Err(PromptError::Render { lang, id: id.clone(), path, line, source: Box::new(e) });
                break;
            }
        }
    }
    if result.is_err() {
        // Keep what the old manifest knew about the messages not reached.
        for (id, e) in old {
            new.entry(id).or_insert(e);
        }
    }
    write_if_changed(&manifest_path, manifest_text(&new).as_bytes())?;

    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&out_dir).map_err(PromptError::io(&out_dir))? {
        let path = entry.map_err(PromptError::io(&out_dir))?.path();
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        let known = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| PromptId::parse(s).ok())
            .is_some_and(|id| ids.contains(&id) && !catalog.has_variables(lang, &id));
        if !known {
            orphans.push(path);
        }
    }
    orphans.sort();
    report.orphans.extend(orphans);
    result
}

enum Outcome {
    Written,
    Identical,
    UpToDate,
}

#[allow(clippy::too_many_arguments)]
fn render_one(
    dir: &Path,
    catalog: &Catalog,
    opts: &RenderOptions,
    espeak: &Espeak,
    engine: &str,
    lang: Language,
    id: &PromptId,
    old: &BTreeMap<String, ManifestEntry>,
) -> Result<(ManifestEntry, Outcome), PromptError> {
    let text = catalog.format(lang, id, &[])?;
    let key = sha256_hex(
        format!("{PIPELINE_VERSION}|{engine}|{}|{}|{text}", voice(lang), opts.pace.words_per_minute()).as_bytes(),
    );
    let path = wav_path(dir, lang, id);
    if let Some(entry) = old.get(id.as_str()) {
        if entry.key == key {
            if let Ok(bytes) = std::fs::read(&path) {
                if sha256_hex(&bytes) == entry.wav {
                    return Ok((entry.clone(), Outcome::UpToDate));
                }
            }
        }
    }
    let samples = espeak.synthesize(lang, &text, opts.pace)?;
    let bytes = wav_bytes(&samples).map_err(PromptError::wav(&path))?;
    let written = write_if_changed(&path, &bytes)?;
    let entry = ManifestEntry { key, wav: sha256_hex(&bytes) };
    Ok((entry, if written { Outcome::Written } else { Outcome::Identical }))
}
