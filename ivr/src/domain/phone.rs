//! Caller numbers. A [`PhoneNumber`] exists only in memory while a call is set up: what is stored
//! and logged is its keyed hash ([`PhoneHash`]) and its masked form ([`PhoneNumber::masked`]).

use crate::DomainError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The server key used for phone hashes and request signatures. Never printed: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSecret(Vec<u8>);

impl ServerSecret {
    /// At least 32 bytes; anything shorter is too weak to key an HMAC that protects phone numbers
    /// (a phone number space is small enough to brute-force without a strong key).
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, DomainError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(DomainError::Secret("must be at least 32 bytes long"));
        }
        Ok(ServerSecret(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

/// A phone number in E.164 form (`+` country code and subscriber number, at most 15 digits).
/// `Debug` and `Display` show only the masked form, so a stray `tracing` field cannot leak it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country_code_len: u8,
}

/// ITU-T E.164 country calling codes of two digits; codes starting with 1 or 7 have one digit,
/// every other code has three (the codes are prefix-free, so this decides the split).
const TWO_DIGIT_CODES: [u16; 44] = [
    20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62,
    63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
];

impl PhoneNumber {
    /// Parses `+39 031 123456`, `0039031123456` or `+1 (555) 010-0000`: spaces, dots, dashes and
    /// parentheses are dropped, a leading `00` becomes `+`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let err = || DomainError::PhoneNumber(s.chars().count());
        let compact: String =
            s.trim().chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}')).collect();
        let digits = if let Some(rest) = compact.strip_prefix('+') {
            rest
        } else if let Some(rest) = compact.strip_prefix("00") {
            rest
        } else {
            return Err(err());
        };
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return Err(err());
        }
        let country_code_len = match digits.as_bytes()[0] {
            b'1' | b'7' => 1,
            _ => {
                let two: u16 = digits[..2].parse().map_err(|_| err())?;
                if TWO_DIGIT_CODES.contains(&two) {
                    2
                } else {
                    3
                }
            }
        };
        Ok(PhoneNumber { e164: format!("+{digits}"), country_code_len })
    }

    /// `+393331234567`. Only for hashing and for handing to a telephony adapter.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The country calling code without `+` (`39`, `1`, `234`).
    pub fn country_code(&self) -> &str {
        &self.e164[1..1 + self.country_code_len as usize]
    }

    /// The number after the country code. Italian landlines keep their leading 0 (`031…`).
    pub fn national_number(&self) -> &str {
        &self.e164[1 + self.country_code_len as usize..]
    }

    /// The form shown to people: country code, first digit and last two digits, the rest masked,
    /// in groups of three (`+39 3** *** **12`).
    pub fn masked(&self) -> String {
        let national: Vec<char> = self.national_number().chars().collect();
        let n = national.len();
        let shown: String =
            national.iter().enumerate().map(|(i, c)| if i == 0 || i + 2 >= n { *c } else { '*' }).collect();
        let mut out = format!("+{} ", self.country_code());
        for (i, c) in shown.chars().enumerate() {
            if i == 3 || i == 6 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    /// The keyed hash stored in place of the number.
    pub fn hash(&self, secret: &ServerSecret) -> PhoneHash {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
        mac.update(self.e164.as_bytes());
        PhoneHash(hex::encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

/// HMAC-SHA256 of an E.164 number under the server secret, as 64 lowercase hex characters. Two
/// calls from one number share a hash; the number cannot be read back from it without the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneHash(String);

impl PhoneHash {
    /// Parses a stored hash (64 lowercase hex characters).
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(PhoneHash(s.to_owned()))
        } else {
            Err(DomainError::Secret("a phone hash is 64 lowercase hex characters"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::string_newtype_impls!(PhoneHash);

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ServerSecret {
        ServerSecret::new(vec![7u8; 32]).unwrap()
    }

    #[test]
    fn parses_and_splits_country_codes() {
        let cases = [
            ("+39 333 123 4512", "39", "3331234512"),
            ("0039 031 123456", "39", "031123456"),
            ("+1 (555) 010-0000", "1", "5550100000"),
            ("+33 6 12 34 56 78", "33", "612345678"),
            ("+234 803 123 4567", "234", "8031234567"),
            ("+7 912 345 67 89", "7", "9123456789"),
        ];
        for (input, cc, national) in cases {
            let n = PhoneNumber::parse(input).unwrap();
            assert_eq!((n.country_code(), n.national_number()), (cc, national), "{input}");
        }
        for bad in ["", "333 1234567", "+0391234567", "+39", "+39abc1234567", "+1234567890123456"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_all_but_first_and_last_two() {
        let n = PhoneNumber::parse("+393331234512").unwrap();
        assert_eq!(n.masked(), "+39 3** *** **12");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+39 3** *** **12)");
        assert!(!format!("{n}").contains("1234"));
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = PhoneNumber::parse("+39 333 123 4512").unwrap();
        let b = PhoneNumber::parse("0039 3331234512").unwrap();
        assert_eq!(a.hash(&secret()), b.hash(&secret()));
        let other = ServerSecret::new(vec![8u8; 32]).unwrap();
        assert_ne!(a.hash(&secret()), a.hash(&other));
        let h = a.hash(&secret());
        assert_eq!(PhoneHash::parse(h.as_str()), Ok(h.clone()));
        assert!(!h.as_str().contains("3331234512"));
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(ServerSecret::new(b"short".to_vec()).is_err());
        assert_eq!(format!("{:?}", secret()), "ServerSecret(<redacted>)");
    }
}
