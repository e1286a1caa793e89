//! Menus as data: the call flow an administrator edits in `config/ivr.toml`, parsed into typed
//! nodes and validated before any call uses it.
//!
//! Architecture invariant: a [`Flow`] that exists is valid — every target names a node, every
//! prompt id is known, every node is reachable and has a way out, no digit is mapped twice and no
//! chain of nodes loops without waiting for the caller. The engine relies on it and never
//! re-checks.

mod error;
mod ftl_ids;
mod schema;
mod validate;

pub use error::{FlowError, NodeProblem};
pub use ftl_ids::{embedded_prompt_ids, ftl_message_ids, KnownPrompts, PromptIds, EMBEDDED_FTL};
pub use schema::{CommonPrompts, MenuOption, NodeKind, SmsOffer, Timeouts};

use crate::domain::{Language, PromptId};
use crate::hours::Schedule;
use std::collections::{BTreeSet, HashMap};

/// The flow shipped with the helpline, also the reference for the TOML format.
pub const DEFAULT_FLOW_TOML: &str = include_str!("../../../config/ivr.toml");

/// Index of a node in [`Flow::nodes`].
pub type NodeIx = usize;

/// One validated node: its name (as in `[nodes.NAME]`) and its kind with targets resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind<NodeIx>,
}

/// A validated call flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    file: String,
    nodes: Vec<Node>,
    index: HashMap<String, NodeIx>,
    start: NodeIx,
    operator: NodeIx,
    prompts: CommonPrompts,
    timeouts: Timeouts,
    /// The caller languages, in menu order; the first is the default.
    languages: Vec<Language>,
    /// Country-code prefix → languages offered first, longest prefix first.
    language_guess: Vec<(String, Vec<Language>)>,
    schedule: Schedule,
    prompt_ids: BTreeSet<PromptId>,
}

impl Flow {
    /// Parses and validates a flow. `file` names the source in error messages; `known_prompts`
    /// are the prompt ids that exist in each language ([`KnownPrompts`], or one set for all).
    /// Every configured language must have every prompt the flow names. A valid flow's languages
    /// join the configured set ([`Language::register`]).
    pub fn from_toml(source: &str, file: &str, known_prompts: &impl PromptIds) -> Result<Flow, FlowError> {
        validate::build(source, file, known_prompts)
    }

    /// The embedded `config/ivr.toml`, checked against the embedded `prompts/*/*.ftl` ids.
    pub fn default_flow() -> Result<Flow, FlowError> {
        Flow::from_toml(DEFAULT_FLOW_TOML, "config/ivr.toml", &KnownPrompts::embedded())
    }

    /// Adds the `[[languages]]` of a flow's TOML to the configured set without validating the
    /// rest, for commands that take languages as arguments before any flow is loaded (the
    /// `helpline user` commands). A flow that is used is validated whole by [`Flow::from_toml`].
    pub fn register_languages(source: &str, file: &str) -> Result<Vec<Language>, FlowError> {
        #[derive(serde::Deserialize)]
        struct OnlyLanguages {
            languages: Vec<crate::domain::LanguageSpec>,
        }
        let parsed: OnlyLanguages = toml::from_str(source).map_err(|e| FlowError::Flow {
            file: file.to_owned(),
            reason: format!("[[languages]]: {}", e.message().trim()),
        })?;
        Language::register(&parsed.languages)
            .map_err(|e| FlowError::Flow { file: file.to_owned(), reason: format!("[[languages]]: {e}") })
    }

    /// The caller languages, in menu order.
    /// The flow with every text-message offer taken out (a server that cannot send texts).
    pub fn without_sms(mut self) -> Flow {
        for node in &mut self.nodes {
            if let NodeKind::SelfService { sms, .. } = &mut node.kind {
                *sms = None;
            }
        }
        self
    }

    /// Whether some readback offers to send its services by text message.
    pub fn offers_sms(&self) -> bool {
        self.nodes.iter().any(|n| matches!(&n.kind, NodeKind::SelfService { sms: Some(_), .. }))
    }

    pub fn languages(&self) -> &[Language] {
        &self.languages
    }

    /// The first configured language: the helpline's own, offered when nothing else is known.
    pub fn default_language(&self) -> Language {
        self.languages[0]
    }

    /// Every prompt id the flow can play or say, so the prompts tooling can check that each one
    /// is written and rendered in every configured language.
    pub fn prompt_ids(&self) -> &BTreeSet<PromptId> {
        &self.prompt_ids
    }

    /// The file the flow was read from, for messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, ix: NodeIx) -> Option<&Node> {
        self.nodes.get(ix)
    }

    /// The node called `name`.
    pub fn find(&self, name: &str) -> Option<NodeIx> {
        self.index.get(name).copied()
    }

    /// Where calls begin.
    pub fn start(&self) -> NodeIx {
        self.start
    }

    /// The operator queue node: reached by 0 and after too many failed tries.
    pub fn operator(&self) -> NodeIx {
        self.operator
    }

    pub fn common_prompts(&self) -> &CommonPrompts {
        &self.prompts
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The language suggested for a country calling code (`33` → French): the longest configured
    /// prefix of the code wins.
    pub fn guess_language(&self, country_code: &str) -> Option<Language> {
        self.guess_languages(country_code).first().copied()
    }

    /// The languages suggested for a country calling code, likeliest first (`212` → Arabic,
    /// French); empty when the code is not in the table.
    pub fn guess_languages(&self, country_code: &str) -> &[Language] {
        self.language_guess
            .iter()
            .find(|(prefix, _)| country_code.starts_with(prefix.as_str()))
            .map_or(&[], |(_, l)| l.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_flow_is_valid() {
        let flow = Flow::default_flow().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flow.nodes()[flow.start()].name, "language-guess");
        assert!(flow.prompt_ids().iter().any(|p| p.as_str() == "language-option"));
        assert!(flow.prompt_ids().is_subset(&embedded_prompt_ids()));
    }

    #[test]
    fn language_guess_takes_the_longest_prefix() {
        let flow = Flow::default_flow().unwrap();
        assert_eq!(flow.guess_language("33"), Some(Language::Fr));
        assert_eq!(flow.guess_language("39"), Some(Language::It));
        assert_eq!(flow.guess_language("54"), Some(Language::Es));
        assert_eq!(flow.guess_language("1"), Some(Language::En));
        assert_eq!(flow.guess_language("44"), Some(Language::En));
        assert_eq!(flow.guess_language("49"), None);
        let lang = |t: &str| Language::parse(t).unwrap();
        for (cc, first) in [
            ("40", "ro"),
            ("373", "ro"),
            ("355", "sq"),
            ("383", "sq"),
            ("380", "uk"),
            ("7", "ru"),
            ("375", "ru"),
            ("86", "zh"),
        ] {
            assert_eq!(flow.guess_language(cc), Some(lang(first)), "+{cc}");
        }
        for (cc, second) in [("212", "fr"), ("213", "fr"), ("216", "fr"), ("20", "en")] {
            assert_eq!(flow.guess_languages(cc), [lang("ar"), lang(second)], "+{cc}");
        }
        assert_eq!(flow.guess_languages("218"), [lang("ar")]);
        assert_eq!(flow.default_language(), Language::It);
        assert_eq!(flow.languages(), Language::shipped());
    }
}
