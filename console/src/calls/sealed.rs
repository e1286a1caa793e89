//! The caller's number, sealed for a callback. Calling back needs the number, which the helpline
//! otherwise never stores (only its keyed hash and masked form): for a call with a callback request,
//! and only for it, the number is kept encrypted with AES-256-GCM under a key derived from the
//! server secret, with the call id as associated data (a sealed number copied onto another call's
//! row does not open). It is opened only inside the server, to place the callback, and wiped when
//! the callback is done or given up (or its call purged by retention).
//!
//! Architecture invariant: a [`SealedNumber`] is never sent to a page or written to a log; its
//! `Debug` shows nothing of it, and the opened number is a `PhoneNumber`, whose `Debug`/`Display`
//! are masked.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ivr::domain::{CallId, PhoneNumber, ServerSecret};
use sha2::Sha256;

/// What the key derivation is for: another purpose of the same secret gets another key.
const KEY_INFO: &[u8] = b"helpline callback number sealing v1";
const NONCE_LEN: usize = 12;

/// Why a sealed number does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not what [`NumberSeal::seal`] writes.
    #[error("the stored number is malformed")]
    Malformed,
    /// The tag does not verify: the server secret changed, or the value belongs to another call.
    #[error("the stored number no longer decrypts (was the server secret changed?)")]
    Undecryptable,
}

/// A sealed number as stored: base64 of the 96-bit nonce followed by the ciphertext and its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedNumber(String);

impl SealedNumber {
    /// A value read back from the database.
    pub fn from_stored(s: String) -> SealedNumber {
        SealedNumber(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SealedNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedNumber(<sealed>)")
    }
}

/// Seals and opens callers' numbers under the key derived from the server secret.
#[derive(Clone)]
pub struct NumberSeal {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for NumberSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NumberSeal(<key>)")
    }
}

impl NumberSeal {
    /// The key is HMAC-SHA256(server secret, purpose): HKDF's expand step for one block, with
    /// the secret (at least 32 random bytes) as the pseudo-random key.
    pub fn new(secret: &ServerSecret) -> NumberSeal {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
        mac.update(KEY_INFO);
        mac.update(&[1]);
        let key = mac.finalize().into_bytes();
        NumberSeal { cipher: Aes256Gcm::new(&key) }
    }

    /// Encrypts the number for this call, with a fresh random nonce.
    pub fn seal(&self, call_id: &CallId, number: &PhoneNumber) -> SealedNumber {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload { msg: number.e164().as_bytes(), aad: call_id.as_str().as_bytes() };
        let ciphertext =
            self.cipher.encrypt(Nonce::from_slice(&nonce), payload).expect("AES-GCM seals any short message");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        SealedNumber(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Decrypts the number sealed for this call.
    pub fn open(&self, call_id: &CallId, sealed: &SealedNumber) -> Result<PhoneNumber, SealError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(&sealed.0).map_err(|_| SealError::Malformed)?;
        if raw.len() <= NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: call_id.as_str().as_bytes() })
            .map_err(|_| SealError::Undecryptable)?;
        let text = String::from_utf8(plain).map_err(|_| SealError::Malformed)?;
        PhoneNumber::parse(&text).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> ServerSecret {
        ServerSecret::new(vec![b; 32]).unwrap()
    }

    #[test]
    fn opens_only_for_its_call_and_its_secret() {
        let seal = NumberSeal::new(&secret(7));
        let call = CallId::parse("call-1").unwrap();
        let number = PhoneNumber::parse("+393331234567").unwrap();
        let sealed = seal.seal(&call, &number);
        assert!(!sealed.as_str().contains("3331234567"));
        assert!(!format!("{sealed:?}").contains(sealed.as_str()));
        assert_eq!(seal.open(&call, &sealed).unwrap().e164(), "+393331234567");
        // Two seals of one number differ (fresh nonces).
        assert_ne!(seal.seal(&call, &number), sealed);
        let other = CallId::parse("call-2").unwrap();
        assert_eq!(seal.open(&other, &sealed), Err(SealError::Undecryptable));
        assert_eq!(NumberSeal::new(&secret(8)).open(&call, &sealed), Err(SealError::Undecryptable));
        assert_eq!(seal.open(&call, &SealedNumber::from_stored("!!".into())), Err(SealError::Malformed));
        assert_eq!(seal.open(&call, &SealedNumber::from_stored("AAAA".into())), Err(SealError::Malformed));
    }
}
