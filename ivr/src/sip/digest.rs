//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760): a
//! trunk answers our INVITE with `401` (`WWW-Authenticate`) or `407` (`Proxy-Authenticate`); we
//! send the request again with `Authorization` or `Proxy-Authorization` computed here. MD5 and
//! SHA-256, with `qop=auth` or without a qop (RFC 2069 style, which many trunks still use).
//! `auth-int` and the `-sess` algorithms are refused: no trunk we know asks for them.
//!
//! Pure: the client nonce and the nonce count are the caller's (random and per-nonce counters are
//! the user agent's business).

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest challenge")]
    NotDigest,
    #[error("the challenge has no {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0}")]
    Algorithm(String),
    #[error("unsupported qop {0} (only auth)")]
    Qop(String),
}

/// The hash of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    pub(super) fn hash(self, data: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: DigestAlgorithm,
    /// Whether `qop=auth` is offered (then it is used).
    pub qop_auth: bool,
}

/// Who we are to the trunk.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCredentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Challenge {
    /// Parses the header's value (`Digest realm="…", nonce="…", …`).
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::NotDigest);
        }
        let params = auth_params(rest);
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => DigestAlgorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => DigestAlgorithm::Sha256,
            Some(a) => return Err(DigestError::Algorithm(a)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
            Some(q) => return Err(DigestError::Qop(q)),
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
        })
    }

    /// The `Authorization` (or `Proxy-Authorization`) value for `method` on `uri`. `cnonce` and
    /// `nc` (the count of requests made with this nonce, from 1) are used when `qop=auth` is.
    pub fn authorization(&self, creds: &DigestCredentials, method: &str, uri: &str, cnonce: &str, nc: u32) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hash(&format!("{}:{}:{}", creds.username, self.realm, creds.password));
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            quote(&creds.username),
            quote(&self.realm),
            quote(&self.nonce),
            alg.name()
        );
        if self.qop_auth {
            out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{}\"", quote(cnonce)));
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
        }
        out
    }
}

/// Escapes a quoted-string's content (RFC 3261 §25.1).
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `name=value` or `name="quoted, value"` pairs, comma-separated.
pub(super) fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if name.trim().is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            out.push((name.trim().to_owned(), String::new()));
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_owned();
        }
        out.push((name.trim().to_owned(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(header: &str) -> &str {
        header.split("response=\"").nth(1).and_then(|r| r.split('"').next()).unwrap()
    }

    #[test]
    fn rfc2617_example() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!((c.algorithm, c.qop_auth), (DigestAlgorithm::Md5, true));
        let creds = DigestCredentials { username: "Mufasa".into(), password: "Circle Of Life".into() };
        let h = c.authorization(&creds, "GET", "/dir/index.html", "0a4f113b", 1);
        assert_eq!(response_of(&h), "6629fae49393a05397450978507c4ef1");
        assert!(h.contains("nc=00000001") && h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""), "{h}");
        assert!(!format!("{creds:?}").contains("Circle"));
    }

    #[test]
    fn rfc7616_examples_md5_and_sha256() {
        let creds = DigestCredentials { username: "Mufasa".into(), password: "Circle of Life".into() };
        for (alg, want) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let c = Challenge::parse(&format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            ))
            .unwrap();
            let h =
                c.authorization(&creds, "GET", "/dir/index.html", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", 1);
            assert_eq!(response_of(&h), want, "{alg}");
        }
    }

    #[test]
    fn without_qop_and_refusals() {
        // RFC 2069 style: response = H(HA1:nonce:HA2).
        let c = Challenge::parse("Digest realm=\"trunk\", nonce=\"abc\"").unwrap();
        let creds = DigestCredentials { username: "803001".into(), password: "pw".into() };
        let h = c.authorization(&creds, "INVITE", "sip:+393331234567@trunk.example.org", "x", 1);
        let ha1 = DigestAlgorithm::Md5.hash("803001:trunk:pw");
        let ha2 = DigestAlgorithm::Md5.hash("INVITE:sip:+393331234567@trunk.example.org");
        assert_eq!(response_of(&h), DigestAlgorithm::Md5.hash(&format!("{ha1}:abc:{ha2}")));
        assert!(!h.contains("qop"), "{h}");
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Err(DigestError::NotDigest));
        assert_eq!(Challenge::parse("Digest nonce=\"n\""), Err(DigestError::Missing("realm")));
        assert!(matches!(
            Challenge::parse("Digest realm=r, nonce=n, algorithm=MD5-sess"),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(Challenge::parse("Digest realm=r, nonce=n, qop=\"auth-int\""), Err(DigestError::Qop(_))));
        // Quoted commas and escapes stay inside their value.
        let c = Challenge::parse("Digest realm=\"a, \\\"b\\\"\", nonce=n").unwrap();
        assert_eq!(c.realm, "a, \"b\"");
    }
}
