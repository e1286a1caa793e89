//! What the engine may know about who is calling: never the number itself, only its keyed hash,
//! its masked form, its country code and, for Italian landlines, the leading area-code digits.

use super::{PhoneHash, PhoneNumber, ServerSecret};
use serde::{Deserialize, Serialize};

/// The caller as the engine sees it. Built only from a parsed [`PhoneNumber`] (or read back from a
/// stored call log); the raw number cannot be recovered from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    hash: PhoneHash,
    masked: String,
    country_code: String,
    landline_area: Option<String>,
}

impl Caller {
    /// How many leading digits of an Italian landline are kept: enough for the longest area code
    /// (four digits, `0341`), never the subscriber number.
    pub const LANDLINE_AREA_DIGITS: usize = 4;

    pub fn from_number(number: &PhoneNumber, secret: &ServerSecret) -> Caller {
        let national = number.national_number();
        let landline_area = (number.country_code() == "39" && national.starts_with('0'))
            .then(|| national.chars().take(Self::LANDLINE_AREA_DIGITS).collect());
        Caller {
            hash: number.hash(secret),
            masked: number.masked(),
            country_code: number.country_code().to_owned(),
            landline_area,
        }
    }

    /// Keyed hash of the number: links calls from one number without storing it.
    pub fn hash(&self) -> &PhoneHash {
        &self.hash
    }

    /// `+39 3** *** **12`, for people reading logs.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// Country calling code without `+` (`39`, `33`, `1`).
    pub fn country_code(&self) -> &str {
        &self.country_code
    }

    /// For an Italian landline (`+39 0…`), its first digits (at most four, `0312`), enough to find
    /// the area code; `None` for mobiles and foreign numbers.
    pub fn landline_area(&self) -> Option<&str> {
        self.landline_area.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ServerSecret {
        ServerSecret::new(vec![42u8; 32]).unwrap()
    }

    fn caller(n: &str) -> Caller {
        Caller::from_number(&PhoneNumber::parse(n).unwrap(), &secret())
    }

    #[test]
    fn italian_landline_keeps_only_the_area_digits() {
        let c = caller("+39 031 5551234");
        assert_eq!(c.country_code(), "39");
        assert_eq!(c.landline_area(), Some("0315"));
        assert_eq!(c.masked(), "+39 0** *** **34");
        let rome = caller("+39 06 12345678");
        assert_eq!(rome.landline_area(), Some("0612"));
    }

    #[test]
    fn mobiles_and_foreign_numbers_have_no_landline_area() {
        assert_eq!(caller("+39 333 1234567").landline_area(), None);
        let fr = caller("+33 1 23 45 67 89");
        assert_eq!((fr.country_code(), fr.landline_area()), ("33", None));
    }

    #[test]
    fn the_raw_number_appears_nowhere() {
        let c = caller("+39 031 5551234");
        let json = serde_json::to_string(&c).unwrap();
        let debug = format!("{c:?}");
        for text in [&json, &debug] {
            assert!(!text.contains("5551234"), "{text}");
            assert!(!text.contains("0315551234"), "{text}");
        }
        assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), c);
        assert_eq!(c.hash(), &PhoneNumber::parse("+390315551234").unwrap().hash(&secret()));
    }
}
