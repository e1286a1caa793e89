//! Italian postal codes (CAP, codice di avviamento postale).

use crate::DomainError;

/// A syntactically valid CAP: exactly five ASCII digits. Whether it exists is a question for the
/// municipalities data, not for this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cap([u8; 5]);

impl Cap {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim();
        let bytes = t.as_bytes();
        if bytes.len() != 5 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(DomainError::Cap(s.to_owned()));
        }
        let mut out = [0u8; 5];
        out.copy_from_slice(bytes);
        Ok(Cap(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("00000")
    }

    /// The first three digits: they identify the CAP's area (a province or a big city).
    pub fn prefix3(&self) -> &str {
        &self.as_str()[..3]
    }
}

super::string_newtype_impls!(Cap);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_digits_only() {
        assert_eq!(Cap::parse("22100").map(|c| c.prefix3().to_owned()), Ok("221".into()));
        assert_eq!(Cap::parse(" 00118 ").map(|c| c.to_string()), Ok("00118".into()));
        for bad in ["", "2210", "221000", "22a00", "22 00", "２２１００"] {
            assert!(Cap::parse(bad).is_err(), "{bad}");
        }
    }
}
