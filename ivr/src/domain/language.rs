//! The four languages the helpline speaks.

use crate::DomainError;

/// A language the helpline answers in. Built from a BCP-47 tag (`fr`, `fr-CA`, `IT_it`) or from the
/// digit a caller pressed in the language menu (1 Italian, 2 English, 3 French, 4 Spanish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    It,
    En,
    Fr,
    Es,
}

impl Language {
    /// All languages, in menu order.
    pub const ALL: [Language; 4] = [Language::It, Language::En, Language::Fr, Language::Es];

    /// Parses a BCP-47 language tag; only the primary language subtag decides.
    pub fn parse(tag: &str) -> Result<Self, DomainError> {
        let err = || DomainError::Language(tag.to_owned());
        let normalized = tag.trim().replace('_', "-");
        let id: unic_langid::LanguageIdentifier = normalized.parse().map_err(|_| err())?;
        match id.language.as_str() {
            "it" => Ok(Language::It),
            "en" => Ok(Language::En),
            "fr" => Ok(Language::Fr),
            "es" => Ok(Language::Es),
            _ => Err(err()),
        }
    }

    /// The language chosen by a digit of the language menu.
    pub fn from_menu_digit(digit: char) -> Option<Self> {
        match digit {
            '1' => Some(Language::It),
            '2' => Some(Language::En),
            '3' => Some(Language::Fr),
            '4' => Some(Language::Es),
            _ => None,
        }
    }

    /// The digit that chooses this language in the language menu.
    pub fn menu_digit(self) -> char {
        match self {
            Language::It => '1',
            Language::En => '2',
            Language::Fr => '3',
            Language::Es => '4',
        }
    }

    /// The two-letter code (`it`, `en`, `fr`, `es`), also the prompts folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::It => "it",
            Language::En => "en",
            Language::Fr => "fr",
            Language::Es => "es",
        }
    }

    /// The full tag a text-to-speech engine or TwiML `<Say language>` expects.
    pub fn locale(self) -> &'static str {
        match self {
            Language::It => "it-IT",
            Language::En => "en-GB",
            Language::Fr => "fr-FR",
            Language::Es => "es-ES",
        }
    }

    /// The language's own name for itself.
    pub fn endonym(self) -> &'static str {
        match self {
            Language::It => "italiano",
            Language::En => "English",
            Language::Fr => "français",
            Language::Es => "español",
        }
    }
}

super::string_newtype_impls!(Language);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_and_rejects_others() {
        for (tag, lang) in [
            ("it", Language::It),
            ("it-IT", Language::It),
            ("EN_us", Language::En),
            ("fr-CA", Language::Fr),
            ("es-419", Language::Es),
            (" es ", Language::Es),
        ] {
            assert_eq!(Language::parse(tag), Ok(lang), "{tag}");
        }
        for bad in ["", "de", "english", "e", "it--IT", "zz-ZZ"] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn menu_digits_round_trip() {
        for lang in Language::ALL {
            assert_eq!(Language::from_menu_digit(lang.menu_digit()), Some(lang));
            assert_eq!(Language::parse(lang.as_str()), Ok(lang));
            assert_eq!(Language::parse(lang.locale()), Ok(lang));
        }
        assert_eq!(Language::from_menu_digit('5'), None);
        assert_eq!(Language::from_menu_digit('0'), None);
    }
}
