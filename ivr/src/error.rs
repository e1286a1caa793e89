//! The crate's error type: what went wrong when a value from outside was turned into a domain type.

/// Why a value was rejected. Each variant names the kind of value and carries the offending input
/// (never a raw phone number: that one is reported without its digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(
        "unsupported language {0:?}: expected one of the configured languages, {known} (a BCP-47 tag such as fr-FR is fine)",
        known = crate::domain::Language::all().iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
    )]
    Language(String),
    #[error("unknown service area {0:?}: expected one of lingua, lavoro, casa, salute, minori, mediazione")]
    ServiceArea(String),
    #[error("invalid postal code (CAP) {0:?}: expected exactly 5 digits")]
    Cap(String),
    #[error("invalid call id {0:?}: expected 1 to 128 characters among letters, digits and . _ : @ -")]
    CallId(String),
    #[error("invalid phone number: expected E.164 (+ then 8 to 15 digits, no leading 0 after +); got {0} characters")]
    PhoneNumber(usize),
    #[error("invalid DTMF digits {0:?}: expected 1 to 32 of 0-9 * # A-D")]
    DtmfDigits(String),
    #[error("invalid prompt id {0:?}: expected 1 to 64 of a-z 0-9 - starting with a letter")]
    PromptId(String),
    #[error("invalid server secret: {0}")]
    Secret(&'static str),
}
