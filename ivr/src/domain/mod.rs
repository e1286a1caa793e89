//! Domain newtypes. Each has a private field and one way in (`parse`, `TryFrom`, `FromStr`), so a
//! value of the type is valid wherever it appears: parse, don't validate.

mod call_id;
mod caller;
mod cap;
mod dtmf;
mod language;
mod phone;
mod prompt_id;
mod service_area;

pub use call_id::CallId;
pub use caller::{Caller, TextReach};
pub use cap::Cap;
pub use dtmf::{DtmfDigit, DtmfDigits};
pub use language::{is_iso639, primary_subtag, Language, LanguageInfo, LanguageSpec};
pub use phone::{PhoneHash, PhoneNumber, ServerSecret};
pub use prompt_id::PromptId;
pub use service_area::ServiceArea;

/// Implements `FromStr`, `TryFrom<String>`, `TryFrom<&str>`, `Display` and serde through the type's
/// `parse` and `as_str`, so every boundary (TOML, JSON, CLI, SQL) goes through the one validator.
macro_rules! string_newtype_impls {
    ($ty:ty) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::parse(s)
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = $crate::DomainError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                <$ty>::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = $crate::DomainError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                <$ty>::parse(&s)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$ty>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype_impls;
