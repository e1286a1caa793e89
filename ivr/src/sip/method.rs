//! SIP request methods, and the policy saying which of them this helpline answers.
//!
//! Kept apart from the parser so the server's dispatch (`501`, `405` with `Allow`) reads from one
//! table instead of string comparisons scattered through the code.

use std::fmt;

/// A SIP request method (RFC 3261 §7.1, plus the extensions we meet on real trunks).
/// Method names are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Refer,
    Notify,
    Register,
    Subscribe,
    Update,
    Prack,
    Message,
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    /// The method named by `token`, or `None` if `token` is not a valid RFC 3261 token.
    pub fn from_token(token: &str) -> Option<Method> {
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return None;
        }
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 `token` characters (§25.1).
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// What the helpline does with a request of a given method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodPolicy {
    /// We handle it.
    Supported,
    /// A method we know but do not accept here: answer `405 Method Not Allowed` with `Allow`.
    NotAllowed,
    /// A method we do not know: answer `501 Not Implemented`.
    NotImplemented,
}

/// The methods we support, in the order written in `Allow`.
pub const SUPPORTED_METHODS: [Method; 8] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Info,
    Method::Refer,
    Method::Notify,
];

/// The value of our `Allow` header.
pub fn allow_header_value() -> String {
    SUPPORTED_METHODS.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// The body types we accept (`Accept` in OPTIONS answers and `415` responses).
pub const ACCEPT_HEADER_VALUE: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// Which answer a request of this method gets.
pub fn policy(method: &Method) -> MethodPolicy {
    match method {
        Method::Invite
        | Method::Ack
        | Method::Bye
        | Method::Cancel
        | Method::Options
        | Method::Info
        | Method::Refer
        | Method::Notify => MethodPolicy::Supported,
        Method::Register | Method::Subscribe | Method::Update | Method::Prack | Method::Message | Method::Publish => {
            MethodPolicy::NotAllowed
        }
        Method::Other(_) => MethodPolicy::NotImplemented,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_policy() {
        for m in SUPPORTED_METHODS {
            assert_eq!(Method::from_token(m.as_str()), Some(m.clone()));
            assert_eq!(policy(&m), MethodPolicy::Supported);
        }
        assert_eq!(policy(&Method::Register), MethodPolicy::NotAllowed);
        assert_eq!(policy(&Method::from_token("FOO").unwrap()), MethodPolicy::NotImplemented);
        assert_eq!(Method::from_token("invite"), Some(Method::Other("invite".into())));
        assert_eq!(Method::from_token("IN VITE"), None);
        assert_eq!(Method::from_token(""), None);
        assert_eq!(allow_header_value(), "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY");
    }
}
