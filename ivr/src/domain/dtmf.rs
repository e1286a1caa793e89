//! DTMF keys as pressed on a phone keypad.

use crate::DomainError;

/// One DTMF key: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(char);

impl DtmfDigit {
    pub fn new(c: char) -> Result<Self, DomainError> {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
            Ok(DtmfDigit(c))
        } else {
            Err(DomainError::DtmfDigits(c.to_string()))
        }
    }

    /// The RFC 4733 event code of this key (0-9, `*` 10, `#` 11, A-D 12-15).
    pub fn event_code(self) -> u8 {
        match self.0 {
            '*' => 10,
            '#' => 11,
            'A'..='D' => 12 + (self.0 as u8 - b'A'),
            d => d as u8 - b'0',
        }
    }

    /// The key of an RFC 4733 event code, if it is one of the sixteen DTMF events.
    pub fn from_event_code(code: u8) -> Option<Self> {
        let c = match code {
            0..=9 => char::from(b'0' + code),
            10 => '*',
            11 => '#',
            12..=15 => char::from(b'A' + code - 12),
            _ => return None,
        };
        Some(DtmfDigit(c))
    }

    pub fn as_char(self) -> char {
        self.0
    }
}

/// A non-empty run of up to 32 DTMF keys, as gathered by one collect-digits action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DtmfDigits(String);

impl DtmfDigits {
    pub const MAX_LEN: usize = 32;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > Self::MAX_LEN {
            return Err(DomainError::DtmfDigits(s.to_owned()));
        }
        let mut out = String::with_capacity(t.len());
        for c in t.chars() {
            out.push(DtmfDigit::new(c).map_err(|_| DomainError::DtmfDigits(s.to_owned()))?.0);
        }
        Ok(DtmfDigits(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digits(&self) -> impl Iterator<Item = DtmfDigit> + '_ {
        self.0.chars().map(DtmfDigit)
    }

    /// The first key pressed.
    pub fn first(&self) -> DtmfDigit {
        DtmfDigit(self.0.chars().next().unwrap_or('#'))
    }
}

impl From<DtmfDigit> for DtmfDigits {
    fn from(d: DtmfDigit) -> Self {
        DtmfDigits(d.0.to_string())
    }
}

super::string_newtype_impls!(DtmfDigits);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keypad_runs() {
        assert_eq!(DtmfDigits::parse("22100#").unwrap().as_str(), "22100#");
        assert_eq!(DtmfDigits::parse("a*").unwrap().as_str(), "A*");
        for bad in ["", "12E", "1 2", &"1".repeat(33)] {
            assert!(DtmfDigits::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_codes_round_trip() {
        for code in 0..16 {
            let d = DtmfDigit::from_event_code(code).unwrap();
            assert_eq!(d.event_code(), code);
        }
        assert_eq!(DtmfDigit::from_event_code(16), None);
        assert_eq!(DtmfDigit::new('#').unwrap().event_code(), 11);
    }
}
