//! The languages the helpline speaks: data, not code. `config/ivr.toml` lists them
//! (`[[languages]]`, in menu order) with what each needs — its espeak-ng voice, the tag a TwiML
//! `<Say>` uses (if the carrier's voices speak it), its own name, whether the console's texts exist
//! in it. A [`Language`] can only be built for a configured one.
//!
//! The configured set is process-wide, so that every boundary (TOML, JSON, SQL, CLI) validates
//! through the one `parse` without carrying the flow around: it starts as the languages of the
//! embedded `config/ivr.toml`, and a flow that loads adds its own ([`Language::register`]).
//! Languages are only ever added, so a value once valid stays valid.

use crate::DomainError;
use serde::Deserialize;
use std::sync::{OnceLock, RwLock};

/// One `[[languages]]` entry of `config/ivr.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageSpec {
    /// The language's BCP-47 primary subtag (ISO 639: `it`, `zh`, `sq`), also its prompts folder.
    pub tag: String,
    /// The espeak-ng voice that renders its prompts (`espeak-ng --voices`: `cmn` for Mandarin).
    pub voice: String,
    /// The `language` of a TwiML `<Say>` (`ro-RO`); absent when the carrier's voices do not speak
    /// it, and then the server's own rendering is `<Play>`ed instead.
    #[serde(default)]
    pub say: Option<String>,
    /// Its name in itself (`română`, `中文`), as the language menu and the console show it.
    pub name: String,
    /// Whether the operators' console has its texts in this language.
    #[serde(default)]
    pub console: bool,
    /// Whether numbers are written with a decimal comma (`2,5`), so the voice reads them as one.
    #[serde(default)]
    pub decimal_comma: bool,
}

/// What the helpline knows of one configured language.
#[derive(Debug, PartialEq, Eq)]
pub struct LanguageInfo {
    pub tag: &'static str,
    pub voice: String,
    pub say: Option<String>,
    pub name: String,
    pub console: bool,
    pub decimal_comma: bool,
}

/// A configured language the helpline answers in. Built from a BCP-47 tag (`fr`, `fr-CA`,
/// `IT_it`) naming one of the configured languages; only the primary language subtag decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language(&'static str);

/// The registry of configured languages, in the order they were configured.
fn registry() -> &'static RwLock<Vec<&'static LanguageInfo>> {
    static REGISTRY: OnceLock<RwLock<Vec<&'static LanguageInfo>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let specs = embedded_specs();
        RwLock::new(specs.iter().map(|s| &*Box::leak(Box::new(info_of(s, leak_tag(&s.tag))))).collect())
    })
}

fn read_registry() -> std::sync::RwLockReadGuard<'static, Vec<&'static LanguageInfo>> {
    registry().read().unwrap_or_else(|e| e.into_inner())
}

fn info_of(spec: &LanguageSpec, tag: &'static str) -> LanguageInfo {
    LanguageInfo {
        tag,
        voice: spec.voice.clone(),
        say: spec.say.clone(),
        name: spec.name.clone(),
        console: spec.console,
        decimal_comma: spec.decimal_comma,
    }
}

fn leak_tag(tag: &str) -> &'static str {
    Box::leak(tag.to_owned().into_boxed_str())
}

/// The `[[languages]]` of the embedded `config/ivr.toml`.
fn embedded_specs() -> Vec<LanguageSpec> {
    #[derive(Deserialize)]
    struct OnlyLanguages {
        languages: Vec<LanguageSpec>,
    }
    toml::from_str::<OnlyLanguages>(crate::flow::DEFAULT_FLOW_TOML)
        .map(|f| f.languages)
        .expect("the embedded config/ivr.toml lists its languages")
}

/// The primary language subtag of a BCP-47 tag, lower case (`IT_it` → `it`).
pub fn primary_subtag(tag: &str) -> Option<String> {
    let normalized = tag.trim().replace('_', "-");
    let id: unic_langid::LanguageIdentifier = normalized.parse().ok()?;
    let lang = id.language.as_str();
    (lang != "und" && !lang.is_empty()).then(|| lang.to_owned())
}

/// Whether `code` is an ISO 639 code as a BCP-47 primary subtag: 2 or 3 ASCII letters.
pub fn is_iso639(code: &str) -> bool {
    (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase())
}

impl Language {
    /// Italian, the helpline's own language and the one its operators' page is written in.
    #[allow(non_upper_case_globals)]
    pub const It: Language = Language("it");
    /// English, French and Spanish: the other languages of the operators' page.
    #[allow(non_upper_case_globals)]
    pub const En: Language = Language("en");
    #[allow(non_upper_case_globals)]
    pub const Fr: Language = Language("fr");
    #[allow(non_upper_case_globals)]
    pub const Es: Language = Language("es");

    /// Parses a BCP-47 language tag naming a configured language.
    pub fn parse(tag: &str) -> Result<Self, DomainError> {
        let err = || DomainError::Language(tag.to_owned());
        let primary = primary_subtag(tag).ok_or_else(err)?;
        read_registry().iter().find(|i| i.tag == primary).map(|i| Language(i.tag)).ok_or_else(err)
    }

    /// Every configured language, in menu order (the embedded configuration's first, then any a
    /// loaded flow added).
    pub fn all() -> Vec<Language> {
        read_registry().iter().map(|i| Language(i.tag)).collect()
    }

    /// The languages of the embedded `config/ivr.toml`, in its order (whatever flows were loaded
    /// since).
    pub fn shipped() -> &'static [Language] {
        static SHIPPED: OnceLock<Vec<Language>> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            let tags: Vec<String> = embedded_specs().into_iter().map(|s| s.tag).collect();
            tags.iter().filter_map(|t| Language::parse(t).ok()).collect()
        })
    }

    /// Adds languages to the configured set (or updates what is known of them) and returns them.
    /// Called by [`crate::flow::Flow::from_toml`] once a flow is valid.
    pub fn register(specs: &[LanguageSpec]) -> Result<Vec<Language>, DomainError> {
        let mut out = Vec::with_capacity(specs.len());
        let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
        for spec in specs {
            if !is_iso639(&spec.tag) {
                return Err(DomainError::Language(spec.tag.clone()));
            }
            match reg.iter().position(|i| i.tag == spec.tag) {
                Some(ix) => {
                    let tag = reg[ix].tag;
                    if *reg[ix] != info_of(spec, tag) {
                        // Rare (a flow reloaded with another voice): the old entry stays leaked.
                        reg[ix] = Box::leak(Box::new(info_of(spec, tag)));
                    }
                    out.push(Language(tag));
                }
                None => {
                    let tag = leak_tag(&spec.tag);
                    reg.push(Box::leak(Box::new(info_of(spec, tag))));
                    out.push(Language(tag));
                }
            }
        }
        Ok(out)
    }

    /// What is configured for this language.
    pub fn info(self) -> &'static LanguageInfo {
        read_registry()
            .iter()
            .copied()
            .find(|i| i.tag == self.0)
            .unwrap_or_else(|| panic!("language {} is not configured", self.0))
    }

    /// The language's position in the configured order.
    fn position(self) -> usize {
        read_registry().iter().position(|i| i.tag == self.0).unwrap_or(usize::MAX)
    }

    /// The primary subtag (`it`, `zh`), also the prompts folder name.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The tag a carrier's speech or a fluent bundle is given: the TwiML `<Say>` tag when there is
    /// one (`fr-FR`), else the subtag.
    pub fn locale(self) -> &'static str {
        match &self.info().say {
            Some(say) => say.as_str(),
            None => self.0,
        }
    }

    /// The tag of a TwiML `<Say>`, or `None` when the server's own rendering must be played.
    pub fn twiml_say(self) -> Option<&'static str> {
        self.info().say.as_deref()
    }

    /// The espeak-ng voice.
    pub fn voice(self) -> &'static str {
        &self.info().voice
    }

    /// The language's own name for itself.
    pub fn endonym(self) -> &'static str {
        &self.info().name
    }

    /// Whether the operators' console has its texts in this language.
    pub fn console_texts(self) -> bool {
        self.info().console
    }
}

impl PartialOrd for Language {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Menu order, the configured one.
impl Ord for Language {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == other.0 {
            return std::cmp::Ordering::Equal;
        }
        self.position().cmp(&other.position()).then(self.0.cmp(other.0))
    }
}

super::string_newtype_impls!(Language);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_of_configured_languages_and_rejects_others() {
        for (tag, lang) in [
            ("it", "it"),
            ("it-IT", "it"),
            ("EN_us", "en"),
            ("fr-CA", "fr"),
            ("es-419", "es"),
            (" es ", "es"),
            ("zh-Hans-CN", "zh"),
            ("ar-MA", "ar"),
            ("ro", "ro"),
            ("sq-XK", "sq"),
            ("uk-UA", "uk"),
            ("ru", "ru"),
        ] {
            assert_eq!(Language::parse(tag).map(|l| l.as_str()), Ok(lang), "{tag}");
        }
        for bad in ["", "de", "english", "e", "it--IT", "zz-ZZ", "und"] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_embedded_configuration_has_ten_languages_in_menu_order() {
        let all: Vec<&str> = Language::all().iter().take(10).map(|l| l.as_str()).collect();
        assert_eq!(all, ["it", "en", "fr", "es", "ru", "zh", "ar", "ro", "sq", "uk"]);
        for lang in Language::all() {
            assert_eq!(Language::parse(lang.as_str()), Ok(lang));
            assert_eq!(Language::parse(lang.locale()), Ok(lang));
            assert!(!lang.voice().is_empty() && !lang.endonym().is_empty());
        }
        assert!(Language::It < Language::En && Language::En < Language::parse("uk").unwrap());
        assert_eq!(Language::parse("zh").unwrap().voice(), "cmn-latn-pinyin");
        assert_eq!(Language::parse("sq").unwrap().twiml_say(), None);
        assert!(Language::Fr.console_texts() && !Language::parse("ru").unwrap().console_texts());
    }

    #[test]
    fn iso639_codes() {
        assert!(is_iso639("it") && is_iso639("fil") && !is_iso639("i") && !is_iso639("ital") && !is_iso639("IT"));
        assert_eq!(primary_subtag("zh-Hant-TW").as_deref(), Some("zh"));
        assert_eq!(primary_subtag("x"), None);
    }
}
