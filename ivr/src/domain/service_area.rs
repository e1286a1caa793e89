//! The six service areas of the Portale Integrazione Migranti.

use crate::DomainError;

/// A service area, with the stable code used in config, storage and APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceArea {
    /// Italian language courses (`lingua`).
    Lingua,
    /// Work and employment (`lavoro`).
    Lavoro,
    /// Housing (`casa`).
    Casa,
    /// Health and social-health services (`salute`).
    Salute,
    /// Minors and second generations (`minori`).
    Minori,
    /// Intercultural mediation (`mediazione`).
    Mediazione,
}

impl ServiceArea {
    /// All areas, in menu order (menu digit = index + 1).
    pub const ALL: [ServiceArea; 6] = [
        ServiceArea::Lingua,
        ServiceArea::Lavoro,
        ServiceArea::Casa,
        ServiceArea::Salute,
        ServiceArea::Minori,
        ServiceArea::Mediazione,
    ];

    /// Parses a stable code, case-insensitively.
    pub fn parse(code: &str) -> Result<Self, DomainError> {
        let lower = code.trim().to_ascii_lowercase();
        ServiceArea::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| DomainError::ServiceArea(code.to_owned()))
    }

    /// The area chosen by a digit of the area menu (1..=6).
    pub fn from_menu_digit(digit: char) -> Option<Self> {
        let n = digit.to_digit(10)? as usize;
        n.checked_sub(1).and_then(|i| ServiceArea::ALL.get(i)).copied()
    }

    /// The digit that chooses this area in the area menu.
    pub fn menu_digit(self) -> char {
        let index = ServiceArea::ALL.iter().position(|a| *a == self).unwrap_or(0);
        char::from(b'1' + index as u8)
    }

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceArea::Lingua => "lingua",
            ServiceArea::Lavoro => "lavoro",
            ServiceArea::Casa => "casa",
            ServiceArea::Salute => "salute",
            ServiceArea::Minori => "minori",
            ServiceArea::Mediazione => "mediazione",
        }
    }
}

super::string_newtype_impls!(ServiceArea);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_digits_round_trip() {
        for area in ServiceArea::ALL {
            assert_eq!(ServiceArea::parse(area.as_str()), Ok(area));
            assert_eq!(ServiceArea::from_menu_digit(area.menu_digit()), Some(area));
        }
        assert_eq!(ServiceArea::parse("CASA"), Ok(ServiceArea::Casa));
        assert!(ServiceArea::parse("house").is_err());
        assert_eq!(ServiceArea::from_menu_digit('0'), None);
        assert_eq!(ServiceArea::from_menu_digit('7'), None);
        assert_eq!(ServiceArea::from_menu_digit('#'), None);
    }
}
