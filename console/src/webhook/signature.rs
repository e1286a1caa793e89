//! Request signatures, checked before anything a carrier says reaches the engine.
//!
//! - TwiML requests carry `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed by the account's auth
//!   token, over the full URL the carrier requested followed by every POST parameter's name and
//!   value, sorted by name (Twilio's published algorithm).
//! - JSON requests carry `X-Helpline-Timestamp` (Unix seconds) and `X-Helpline-Signature: v1=<hex>`,
//!   HMAC-SHA256 over `"<timestamp>.<body>"`; a timestamp outside the replay window is refused.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// How far a JSON request's timestamp may be from the server's clock.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Why a signature was refused. Logged; the carrier gets a plain 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("timestamp {age_secs} s away from the server clock (window {REPLAY_WINDOW_SECS} s)")]
    Stale { age_secs: i64 },
    #[error("signature does not match")]
    Mismatch,
    #[error("{0}")]
    NotConfigured(&'static str),
}

/// Twilio's signature of a request: base64(HMAC-SHA1(token, url + sorted name/value pairs)).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

fn twilio_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// Checks `X-Twilio-Signature` in constant time.
pub fn verify_twilio(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing("X-Twilio-Signature"))?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| SignatureError::Malformed("X-Twilio-Signature"))?;
    twilio_mac(auth_token, url, params).verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Helpline-Signature` value for a body sent at `timestamp`.
pub fn json_signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(json_mac(key, timestamp, body).finalize().into_bytes()))
}

fn json_mac(key: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a JSON request's timestamp (within the window of `now_secs`) and signature.
pub fn verify_json(
    key: &[u8],
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let ts_raw = timestamp_header.ok_or(SignatureError::Missing("X-Helpline-Timestamp"))?;
    let timestamp: i64 = ts_raw.trim().parse().map_err(|_| SignatureError::Malformed("X-Helpline-Timestamp"))?;
    let sig = signature_header.ok_or(SignatureError::Missing("X-Helpline-Signature"))?;
    let hex_sig = sig.trim().strip_prefix("v1=").ok_or(SignatureError::Malformed("X-Helpline-Signature"))?;
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed("X-Helpline-Signature"))?;
    let age_secs = now_secs - timestamp;
    if age_secs.abs() > REPLAY_WINDOW_SECS {
        return Err(SignatureError::Stale { age_secs });
    }
    json_mac(key, timestamp, body).verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The worked example of Twilio's security documentation: auth token `12345`, this URL and
    /// these parameters sign to `0/KCTR6DLpKmkAf8muzZqo1nDgQ=`.
    #[test]
    fn twilio_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(twilio_signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert_eq!(verify_twilio("12345", url, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Ok(()));
        // Order of parameters as received does not matter; their content does.
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert_eq!(verify_twilio("12345", url, &shuffled, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Ok(()));
        let mut tampered = params.clone();
        tampered[2].1 = "9999".into();
        assert_eq!(
            verify_twilio("12345", url, &tampered, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_twilio("12345", "https://other.example/", &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_twilio("12345", url, &params, None), Err(SignatureError::Missing("X-Twilio-Signature")));
        assert_eq!(
            verify_twilio("12345", url, &params, Some("***")),
            Err(SignatureError::Malformed("X-Twilio-Signature"))
        );
    }

    #[test]
    fn json_signatures_and_replay_window() {
        let key = b"k".repeat(32);
        let body = br#"{"call_id":"c1","seq":1,"type":"no_input"}"#;
        let sig = json_signature(&key, 1_000_000, body);
        assert_eq!(verify_json(&key, Some("1000000"), Some(&sig), body, 1_000_010), Ok(()));
        assert_eq!(
            verify_json(&key, Some("1000000"), Some(&sig), body, 1_000_000 + 301),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        assert_eq!(verify_json(&key, Some("1000000"), Some(&sig), b"{}", 1_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify_json(&key, Some("1000001"), Some(&sig), body, 1_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify_json(&key, None, Some(&sig), body, 0), Err(SignatureError::Missing("X-Helpline-Timestamp")));
        assert_eq!(
            verify_json(&key, Some("x"), Some(&sig), body, 0),
            Err(SignatureError::Malformed("X-Helpline-Timestamp"))
        );
        assert_eq!(
            verify_json(&key, Some("1000000"), Some("abc"), body, 1_000_000),
            Err(SignatureError::Malformed("X-Helpline-Signature"))
        );
    }
}
