//! Call identifiers, as chosen by whoever started the call (a carrier's CallSid, a SIP Call-ID).

use crate::DomainError;

/// An opaque call id: 1 to 128 characters among ASCII letters, digits and `. _ : @ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
        if ok {
            Ok(CallId(s.to_owned()))
        } else {
            Err(DomainError::CallId(s.chars().take(Self::MAX_LEN + 1).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::string_newtype_impls!(CallId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_carrier_and_sip_ids() {
        for ok in ["CA1234567890abcdef", "a84b4c76e66710@pc33.example.com", "call-1", "x"] {
            assert!(CallId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "semi;colon", &"x".repeat(129), "quote\""] {
            assert!(CallId::parse(bad).is_err(), "{bad}");
        }
    }
}
