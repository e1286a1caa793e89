//! Identifiers of recorded prompts (fluent message ids, WAV file stems).

use crate::DomainError;

/// A prompt id: 1 to 64 of `a-z 0-9 -`, starting with a letter (fluent's message-id grammar,
/// narrowed so it is also a safe file name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptId(String);

impl PromptId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(PromptId(s.to_owned()))
        } else {
            Err(DomainError::PromptId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::string_newtype_impls!(PromptId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_safe_ids_only() {
        assert!(PromptId::parse("menu-language").is_ok());
        for bad in ["", "Menu", "1menu", "../etc", "a_b", "a.wav"] {
            assert!(PromptId::parse(bad).is_err(), "{bad}");
        }
    }
}
