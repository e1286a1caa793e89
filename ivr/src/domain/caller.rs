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
    /// An Italian mobile (`+39 3…`): a number a text message reaches. (Foreign numbers cannot be
    /// told apart here; the flow lists the countries whose numbers are offered texts.) Callers
    /// stored before it was kept are not.
    #[serde(default)]
    mobile: bool,
}

impl Caller {
    /// How many leading digits of an Italian landline are kept: enough for the longest area code
    /// (four digits, `0341`), never the subscriber number.
    pub const LANDLINE_AREA_DIGITS: usize = 4;

    pub fn from_number(number: &PhoneNumber, secret: &ServerSecret) -> Caller {
        let national = number.national_number();
        let landline_area = (number.country_code() == "39" && national.starts_with('0'))
            .then(|| national.chars().take(Self::LANDLINE_AREA_DIGITS).collect());
        let mobile = number.country_code() == "39" && national.starts_with('3');
        Caller {
            hash: number.hash(secret),
            masked: number.masked(),
            country_code: number.country_code().to_owned(),
            landline_area,
            mobile,
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

    /// What the engine keeps to know whether a text message reaches the caller.
    pub fn text_reach(&self) -> TextReach {
        TextReach { country_code: self.country_code.clone(), mobile: self.mobile }
    }

    /// Whether a text message can reach the caller ([`TextReach::reaches`]).
    pub fn textable(&self, countries: &[String]) -> bool {
        self.text_reach().reaches(countries)
    }
}

/// Whether a text message reaches a caller: their country code, and whether the number is an
/// Italian mobile. Nothing of the number itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextReach {
    pub country_code: String,
    pub mobile: bool,
}

impl TextReach {
    /// Whether the number's country is one of `countries` (codes without `+`), where `39`
    /// means Italian mobiles only.
    pub fn reaches(&self, countries: &[String]) -> bool {
        countries.contains(&self.country_code) && (self.country_code != "39" || self.mobile)
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
    fn texts_reach_italian_mobiles_and_the_listed_countries_numbers() {
        let countries = ["39".to_owned(), "40".to_owned()];
        assert!(caller("+39 333 1234567").textable(&countries));
        assert!(!caller("+39 031 5551234").textable(&countries), "an Italian landline");
        assert!(caller("+40 721 234 567").textable(&countries));
        assert!(!caller("+33 6 12 34 56 78").textable(&countries), "France is not listed");
        assert!(!caller("+39 333 1234567").textable(&[]), "no country listed");
        let stored_before: Caller = serde_json::from_value(serde_json::json!({
            "hash": caller("+39 333 1234567").hash(), "masked": "+39 3** *** **67", "country_code": "39", "landline_area": null
        }))
        .unwrap();
        assert!(!stored_before.textable(&countries), "a caller stored before mobiles were told is not offered texts");
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
