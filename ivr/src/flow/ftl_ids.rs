//! The message ids of the prompt texts (`prompts/<tag>/*.ftl`), read with a minimal scanner so the
//! engine crate can check its flow without a Fluent runtime. Rendering the prompts is another
//! module's job; this one only answers "which ids exist in which language?".

use crate::domain::PromptId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/embedded_ftl.rs"));

/// Message ids defined in one Fluent file: lines that start (in column 0) with an identifier
/// followed by `=`. Terms (`-brand = …`), comments and continuation lines are skipped.
pub fn ftl_message_ids(ftl: &str) -> BTreeSet<String> {
    ftl.lines()
        .filter_map(|line| {
            let first = line.bytes().next()?;
            if !first.is_ascii_alphabetic() {
                return None;
            }
            let (id, _) = line.split_once('=')?;
            let id = id.trim_end();
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_').then(|| id.to_owned())
        })
        .collect()
}

/// What a flow may name: the prompt ids each language has, and where its texts are (for messages).
pub trait PromptIds {
    /// The texts of the language `tag`: where they are and the ids they define; `None` when the
    /// language has none at all.
    fn language(&self, tag: &str) -> Option<(String, BTreeSet<PromptId>)>;
    /// Ids known in at least one language (an id in none is a typo in the flow, not a missing
    /// translation).
    fn any_language(&self) -> BTreeSet<PromptId>;
}

/// The same ids in every language (a flow checked against it only for unknown ids).
impl PromptIds for BTreeSet<PromptId> {
    fn language(&self, _tag: &str) -> Option<(String, BTreeSet<PromptId>)> {
        Some(("the known prompts".to_owned(), self.clone()))
    }
    fn any_language(&self) -> BTreeSet<PromptId> {
        self.clone()
    }
}

/// The prompt ids of each language's texts, with the folder they come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPrompts {
    languages: BTreeMap<String, (String, BTreeSet<PromptId>)>,
    /// The folder scanned, to name a language folder that is not there.
    root: Option<String>,
}

impl KnownPrompts {
    /// Adds the ids of one text of language `tag`, found at `source` (a folder, for messages).
    pub fn add_text(&mut self, tag: &str, source: &str, text: &str) {
        let entry = self.languages.entry(tag.to_owned()).or_insert_with(|| (source.to_owned(), BTreeSet::new()));
        entry.1.extend(ftl_message_ids(text).iter().filter_map(|id| PromptId::parse(id).ok()));
    }

    /// The texts compiled into the program (`prompts/` of the repository).
    pub fn embedded() -> KnownPrompts {
        let mut known = KnownPrompts::default();
        for (tag, _, text) in EMBEDDED_FTL {
            known.add_text(tag, &format!("prompts/{tag}/"), text);
        }
        known
    }

    /// The texts of a prompts folder: `dir/<tag>/*.ftl` for every subfolder. Unreadable files
    /// count as absent (loading the catalog reports them properly).
    pub fn scan(dir: &Path) -> KnownPrompts {
        let mut known = KnownPrompts { root: Some(dir.display().to_string()), ..KnownPrompts::default() };
        for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = sub.path();
            if !path.is_dir() {
                continue;
            }
            let tag = sub.file_name().to_string_lossy().into_owned();
            let source = format!("{}/", path.display());
            known.languages.entry(tag.clone()).or_insert_with(|| (source.clone(), BTreeSet::new()));
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let fp = file.path();
                if fp.extension().is_some_and(|e| e == "ftl") {
                    if let Ok(text) = std::fs::read_to_string(&fp) {
                        known.add_text(&tag, &source, &text);
                    }
                }
            }
        }
        known
    }

    /// The languages that have texts.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.languages.keys().map(String::as_str)
    }
}

impl PromptIds for KnownPrompts {
    fn language(&self, tag: &str) -> Option<(String, BTreeSet<PromptId>)> {
        match (self.languages.get(tag), &self.root) {
            (Some(found), _) => Some(found.clone()),
            (None, Some(root)) => Some((format!("{root}/{tag}/ (missing language folder)"), BTreeSet::new())),
            (None, None) => None,
        }
    }
    fn any_language(&self) -> BTreeSet<PromptId> {
        self.languages.values().flat_map(|(_, ids)| ids.iter().cloned()).collect()
    }
}

/// The prompt ids defined in every language of the embedded texts that the embedded flow
/// configures (an id missing in one language is not "known": a flow using it would be silent for
/// that language's callers).
pub fn embedded_prompt_ids() -> BTreeSet<PromptId> {
    let known = KnownPrompts::embedded();
    let mut common: Option<BTreeSet<PromptId>> = None;
    for lang in crate::domain::Language::shipped() {
        let ids = known.language(lang.as_str()).map(|(_, ids)| ids).unwrap_or_default();
        common = Some(match common {
            None => ids,
            Some(c) => c.intersection(&ids).cloned().collect(),
        });
    }
    common.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_message_ids_only() {
        let ftl = "# comment\n-term = x\nhello = Hello { $name }\n    .attr = y\nmulti =\n    line\n  indented = no\nbad id = z\n";
        let ids: Vec<String> = ftl_message_ids(ftl).into_iter().collect();
        assert_eq!(ids, vec!["hello".to_owned(), "multi".to_owned()]);
    }

    #[test]
    fn every_language_folder_of_the_repository_is_embedded() {
        let known = KnownPrompts::embedded();
        let tags: Vec<&str> = known.tags().collect();
        for tag in ["ar", "en", "es", "fr", "it", "ro", "ru", "sq", "uk", "zh"] {
            assert!(tags.contains(&tag), "{tag} not in {tags:?}");
        }
    }
}
