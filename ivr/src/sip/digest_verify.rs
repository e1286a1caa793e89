//! The server side of SIP digest authentication (RFC 3261 §22.4, RFC 2617, RFC 7616): a trunk
//! that cannot be allowed by its address proves that it knows a shared secret. Its INVITE without
//! credentials gets `401` with the [`DigestVerifier::challenge`] in `WWW-Authenticate`; the INVITE
//! it sends again with `Authorization` is checked by [`DigestVerifier::verify`].
//!
//! Nonces cost nothing to hand out: a nonce is the time it was made and an HMAC of that time and
//! the source address under a key drawn at start, so a flood of unauthenticated requests leaves no
//! state behind. A nonce is good for [`NONCE_LIFETIME`], from the address it was given to, and
//! once: the nonces already used are kept until they expire (at most [`MAX_USED_NONCES`]; past it
//! the oldest are forgotten and every nonce as old as them counts as stale), so a request seen on
//! the wire cannot be replayed.
//!
//! MD5 with `qop=auth` is offered (what trunks and sipp speak); an answer without a qop (RFC 2069
//! style) is accepted too. Pure: the time is passed in, the key is the caller's.

use super::digest::{auth_params, DigestAlgorithm, DigestCredentials};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a nonce may be answered after it was handed out.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(30);
/// Used nonces remembered at most (each for [`NONCE_LIFETIME`]): 546 authenticated requests a
/// second for 30 s. Past it the oldest are dropped and nonces as old as them refused as stale.
pub const MAX_USED_NONCES: usize = 16 * 1024;

/// What to do with a request from a source that must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// The credentials are right and the nonce fresh: let the request through.
    Authenticated,
    /// No credentials, credentials for another realm, a nonce that is not ours (another process,
    /// another source) or, with `stale`, a right answer to a nonce expired or already used:
    /// `401` with a new challenge (RFC 7616 §3.3: `stale=true` lets the client retry at once).
    Challenge { stale: bool },
    /// Our nonce answered with the wrong user name or password, or a malformed answer: `403`.
    Failed,
}

/// The shared secret of the trunks that authenticate, and the nonces in use.
pub struct DigestVerifier {
    realm: String,
    username: String,
    /// MD5(username:realm:password): the password itself is not kept.
    ha1: String,
    key: [u8; 32],
    epoch: Instant,
    /// Nonces handed out, to tell apart those made in the same millisecond.
    seq: u32,
    /// Used nonces, by the millisecond they were made and their number, oldest first.
    used: BTreeSet<(u64, u32)>,
    /// Nonces made at or before this millisecond are stale (the used ones were forgotten).
    floor: Option<u64>,
}

impl std::fmt::Debug for DigestVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestVerifier")
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("used", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl DigestVerifier {
    /// `key` signs the nonces (draw it at random at start); `epoch` is any instant before the
    /// first call (nonces count milliseconds from it).
    pub fn new(realm: &str, credentials: &DigestCredentials, key: [u8; 32], epoch: Instant) -> DigestVerifier {
        let ha1 = DigestAlgorithm::Md5.hash(&format!("{}:{realm}:{}", credentials.username, credentials.password));
        DigestVerifier {
            realm: realm.to_owned(),
            username: credentials.username.clone(),
            ha1,
            key,
            epoch,
            seq: 0,
            used: BTreeSet::new(),
            floor: None,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Used nonces remembered (bounded by [`MAX_USED_NONCES`]).
    pub fn used_nonces(&self) -> usize {
        self.used.len()
    }

    /// The `WWW-Authenticate` value of a `401` to `source`.
    pub fn challenge(&mut self, source: IpAddr, now: Instant, stale: bool) -> String {
        let ms = self.millis(now);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let nonce = format!("{ms:016x}{seq:08x}{}", hex::encode(self.mac(ms, seq, source)));
        let mut out = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"",
            self.realm.replace('\\', "\\\\").replace('"', "\\\"")
        );
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// Checks the `Authorization` header (`None` when absent) of a `method` request from `source`.
    /// A success uses the nonce up.
    pub fn verify(&mut self, authorization: Option<&str>, method: &str, source: IpAddr, now: Instant) -> DigestCheck {
        let Some(value) = authorization.map(str::trim) else {
            return DigestCheck::Challenge { stale: false };
        };
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return DigestCheck::Challenge { stale: false };
        }
        let params = auth_params(rest);
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        if get("realm") != Some(self.realm.as_str()) {
            return DigestCheck::Challenge { stale: false };
        }
        let Some(nonce) = get("nonce") else { return DigestCheck::Failed };
        let Some(made) = self.our_nonce(nonce, source) else {
            return DigestCheck::Challenge { stale: false };
        };
        let (Some(username), Some(uri), Some(response)) = (get("username"), get("uri"), get("response")) else {
            return DigestCheck::Failed;
        };
        if !get("algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5")) || username != self.username {
            return DigestCheck::Failed;
        }
        let md5 = DigestAlgorithm::Md5;
        let ha2 = md5.hash(&format!("{method}:{uri}"));
        let expected = match (get("qop"), get("nc"), get("cnonce")) {
            (None, _, _) => md5.hash(&format!("{}:{nonce}:{ha2}", self.ha1)),
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                md5.hash(&format!("{}:{nonce}:{nc}:{cnonce}:auth:{ha2}", self.ha1))
            }
            _ => return DigestCheck::Failed,
        };
        if !constant_time_eq(response.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            return DigestCheck::Failed;
        }
        let now_ms = self.millis(now);
        let lifetime = NONCE_LIFETIME.as_millis() as u64;
        if now_ms.saturating_sub(made.0) > lifetime
            || self.floor.is_some_and(|f| made.0 <= f)
            || self.used.contains(&made)
        {
            return DigestCheck::Challenge { stale: true };
        }
        self.used.insert(made);
        while self.used.first().is_some_and(|(ms, _)| now_ms.saturating_sub(*ms) > lifetime) {
            self.used.pop_first();
        }
        while self.used.len() > MAX_USED_NONCES {
            if let Some((ms, _)) = self.used.pop_first() {
                self.floor = Some(self.floor.map_or(ms, |f| f.max(ms)));
            }
        }
        DigestCheck::Authenticated
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn mac(&self, ms: u64, seq: u32, source: IpAddr) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(&ms.to_be_bytes());
        mac.update(&seq.to_be_bytes());
        // An IPv4 source on a dual-stack socket may arrive as ::ffff:a.b.c.d: one address, one MAC.
        let ip = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(source),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
    }

    /// The millisecond and number of a nonce this verifier made for `source`.
    fn our_nonce(&self, nonce: &str, source: IpAddr) -> Option<(u64, u32)> {
        if nonce.len() != 56 || !nonce.is_ascii() {
            return None;
        }
        let ms = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let seq = u32::from_str_radix(&nonce[16..24], 16).ok()?;
        let mut given = [0u8; 16];
        hex::decode_to_slice(&nonce[24..], &mut given).ok()?;
        constant_time_eq(&given, &self.mac(ms, seq, source)).then_some((ms, seq))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Challenge;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn creds(password: &str) -> DigestCredentials {
        DigestCredentials { username: "trunk-1".into(), password: password.into() }
    }

    fn verifier(t0: Instant) -> DigestVerifier {
        DigestVerifier::new("helpline", &creds("s3cret-s3cret"), [7; 32], t0)
    }

    /// What a client answers to `challenge` (the client side of `digest.rs`).
    fn answer(challenge: &str, password: &str, nc: u32) -> String {
        let c = Challenge::parse(challenge).unwrap();
        c.authorization(&creds(password), "INVITE", "sip:803001@192.0.2.10", "0a4f113b", nc)
    }

    #[test]
    fn the_right_answer_passes_once_and_a_replay_is_stale() {
        let t0 = Instant::now();
        let mut v = verifier(t0);
        let src = ip("198.51.100.7");
        assert_eq!(v.verify(None, "INVITE", src, t0), DigestCheck::Challenge { stale: false });
        let challenge = v.challenge(src, t0, false);
        assert!(challenge.contains("realm=\"helpline\"") && challenge.contains("qop=\"auth\""), "{challenge}");
        let auth = answer(&challenge, "s3cret-s3cret", 1);
        let t1 = t0 + Duration::from_millis(40);
        assert_eq!(v.verify(Some(&auth), "INVITE", src, t1), DigestCheck::Authenticated);
        assert_eq!(v.verify(Some(&auth), "INVITE", src, t1), DigestCheck::Challenge { stale: true }, "a replay");
        assert_eq!(v.used_nonces(), 1);
    }

    #[test]
    fn wrong_credentials_fail_and_foreign_or_old_nonces_are_challenged() {
        let t0 = Instant::now();
        let mut v = verifier(t0);
        let src = ip("198.51.100.7");
        let challenge = v.challenge(src, t0, false);
        assert_eq!(v.verify(Some(&answer(&challenge, "guess", 1)), "INVITE", src, t0), DigestCheck::Failed);
        let other_user = Challenge::parse(&challenge).unwrap().authorization(
            &DigestCredentials { username: "admin".into(), password: "s3cret-s3cret".into() },
            "INVITE",
            "sip:x@y",
            "c",
            1,
        );
        assert_eq!(v.verify(Some(&other_user), "INVITE", src, t0), DigestCheck::Failed);
        // The same right answer from another address: that nonce was not given to it.
        let auth = answer(&challenge, "s3cret-s3cret", 1);
        assert_eq!(v.verify(Some(&auth), "INVITE", ip("203.0.113.1"), t0), DigestCheck::Challenge { stale: false });
        // Another process's nonce (another key), another realm, another scheme, garbage.
        let mut other = DigestVerifier::new("helpline", &creds("s3cret-s3cret"), [8; 32], t0);
        let foreign = answer(&other.challenge(src, t0, false), "s3cret-s3cret", 1);
        assert_eq!(v.verify(Some(&foreign), "INVITE", src, t0), DigestCheck::Challenge { stale: false });
        let realm = answer(&challenge.replace("realm=\"helpline\"", "realm=\"pbx\""), "s3cret-s3cret", 1);
        assert_eq!(v.verify(Some(&realm), "INVITE", src, t0), DigestCheck::Challenge { stale: false });
        assert_eq!(v.verify(Some("Basic dHJ1bms6cHc="), "INVITE", src, t0), DigestCheck::Challenge { stale: false });
        let no_response = auth.split(", ").filter(|p| !p.starts_with("response=")).collect::<Vec<_>>().join(", ");
        assert_eq!(v.verify(Some(&no_response), "INVITE", src, t0), DigestCheck::Failed, "{no_response}");
        assert_eq!(
            v.verify(Some("Digest realm=\"helpline\", nonce"), "INVITE", src, t0),
            DigestCheck::Challenge { stale: false }
        );
        // A right answer after the nonce's lifetime: stale, and only then.
        let late = t0 + NONCE_LIFETIME + Duration::from_millis(1);
        assert_eq!(v.verify(Some(&auth), "INVITE", src, late), DigestCheck::Challenge { stale: true });
        assert_eq!(v.verify(Some(&answer(&challenge, "guess", 1)), "INVITE", src, late), DigestCheck::Failed);
        assert!(v.challenge(src, late, true).ends_with(", stale=true"));
        assert_eq!(v.used_nonces(), 0, "nothing was used");
    }

    #[test]
    fn an_answer_without_qop_is_accepted() {
        let t0 = Instant::now();
        let mut v = verifier(t0);
        let src = ip("192.0.2.1");
        let challenge = v.challenge(src, t0, false).replace(", qop=\"auth\"", "");
        let auth = answer(&challenge, "s3cret-s3cret", 1);
        assert!(!auth.contains("qop"));
        assert_eq!(v.verify(Some(&auth), "INVITE", src, t0), DigestCheck::Authenticated);
        // The method is part of the answer: the INVITE's answer does not pass for an OPTIONS.
        let challenge = v.challenge(src, t0, false);
        let auth = answer(&challenge, "s3cret-s3cret", 1);
        assert_eq!(v.verify(Some(&auth), "OPTIONS", src, t0), DigestCheck::Failed);
    }

    #[test]
    fn used_nonces_are_bounded_and_the_forgotten_ones_stay_refused() {
        let t0 = Instant::now();
        let mut v = verifier(t0);
        let src = ip("192.0.2.1");
        let first = answer(&v.challenge(src, t0, false), "s3cret-s3cret", 1);
        let mut kept = Vec::new();
        for i in 0..(MAX_USED_NONCES as u64 + 100) {
            let t = t0 + Duration::from_millis(1 + i / 1000);
            let auth = answer(&v.challenge(src, t, false), "s3cret-s3cret", 1);
            if i == 0 {
                kept.push(auth.clone());
            }
            assert_eq!(v.verify(Some(&auth), "INVITE", src, t), DigestCheck::Authenticated);
        }
        assert!(v.used_nonces() <= MAX_USED_NONCES, "{}", v.used_nonces());
        let t = t0 + Duration::from_millis(20);
        // A forgotten used nonce is refused (stale), and so is an older one never used.
        assert_eq!(v.verify(Some(&kept[0]), "INVITE", src, t), DigestCheck::Challenge { stale: true });
        assert_eq!(v.verify(Some(&first), "INVITE", src, t), DigestCheck::Challenge { stale: true });
        // Once they have expired, the remembered nonces are dropped as new ones come.
        let later = t + NONCE_LIFETIME + Duration::from_secs(1);
        let auth = answer(&v.challenge(src, later, false), "s3cret-s3cret", 1);
        assert_eq!(v.verify(Some(&auth), "INVITE", src, later), DigestCheck::Authenticated);
        assert_eq!(v.used_nonces(), 1);
    }
}
