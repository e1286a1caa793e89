//! The message ids of the prompt texts (`prompts/{it,en,fr,es}/*.ftl`), read with a minimal
//! scanner so the engine crate can check its flow without a Fluent runtime. Rendering the prompts
//! is another module's job; this one only answers "which ids exist in every language?".

use crate::domain::{Language, PromptId};
use std::collections::BTreeSet;

/// The prompt texts compiled in: (language, file name, contents).
pub const EMBEDDED_FTL: [(Language, &str, &str); 16] = [
    (Language::It, "menus.ftl", include_str!("../../../prompts/it/menus.ftl")),
    (Language::It, "selfservice.ftl", include_str!("../../../prompts/it/selfservice.ftl")),
    (Language::It, "queue.ftl", include_str!("../../../prompts/it/queue.ftl")),
    (Language::It, "hours.ftl", include_str!("../../../prompts/it/hours.ftl")),
    (Language::En, "menus.ftl", include_str!("../../../prompts/en/menus.ftl")),
    (Language::En, "selfservice.ftl", include_str!("../../../prompts/en/selfservice.ftl")),
    (Language::En, "queue.ftl", include_str!("../../../prompts/en/queue.ftl")),
    (Language::En, "hours.ftl", include_str!("../../../prompts/en/hours.ftl")),
    (Language::Fr, "menus.ftl", include_str!("../../../prompts/fr/menus.ftl")),
    (Language::Fr, "selfservice.ftl", include_str!("../../../prompts/fr/selfservice.ftl")),
    (Language::Fr, "queue.ftl", include_str!("../../../prompts/fr/queue.ftl")),
    (Language::Fr, "hours.ftl", include_str!("../../../prompts/fr/hours.ftl")),
    (Language::Es, "menus.ftl", include_str!("../../../prompts/es/menus.ftl")),
    (Language::Es, "selfservice.ftl", include_str!("../../../prompts/es/selfservice.ftl")),
    (Language::Es, "queue.ftl", include_str!("../../../prompts/es/queue.ftl")),
    (Language::Es, "hours.ftl", include_str!("../../../prompts/es/hours.ftl")),
];

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

/// The prompt ids defined in all four languages of the embedded texts (an id missing in one
/// language is not "known": a flow using it would be silent for that language's callers).
pub fn embedded_prompt_ids() -> BTreeSet<PromptId> {
    let per_language: Vec<BTreeSet<String>> = Language::ALL
        .iter()
        .map(|lang| {
            EMBEDDED_FTL.iter().filter(|(l, _, _)| l == lang).flat_map(|(_, _, text)| ftl_message_ids(text)).collect()
        })
        .collect();
    let mut common = per_language.first().cloned().unwrap_or_default();
    for ids in &per_language[1..] {
        common = common.intersection(ids).cloned().collect();
    }
    common.iter().filter_map(|id| PromptId::parse(id).ok()).collect()
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
}
