//! Random bearer tokens (session cookies, one-time links): 256 random bits, URL-safe base64.
//! Only their SHA-256 is stored, so a database dump cannot be replayed.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

/// A fresh token with 256 bits of entropy.
pub fn generate() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut bytes[..]).expect("the operating system's random source failed");
    SecretString::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]))
}

/// What is stored in place of a token.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_random_and_stored_as_digests() {
        let (a, b) = (super::generate(), super::generate());
        assert_eq!(a.len(), 43);
        assert!(!a.ct_eq(&b));
        assert_eq!(super::digest(a.expose_secret()).len(), 64);
        assert_ne!(super::digest(a.expose_secret()), a.expose_secret());
    }
}
