//! The JWT-bearer assertion: RS256 over `{iss, sub, aud, exp, iat, jti}`.
//!
//! `jsonwebtoken::encode` parses the private key on every call, which costs about two thirds of
//! a signature (measured: 0.36× `openssl speed rsa2048`). An [`AssertionSigner`] parses the key
//! once into aws-lc-rs and signs through jsonwebtoken's own `JwtSigner` interface, so every
//! assertion costs one RSA signature and nothing else (see `benches/mint.rs`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Salesforce accepts an `exp` at most three minutes ahead; connvault uses that bound exactly.
pub const LIFETIME_SECS: i64 = 180;

/// The claims Salesforce reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl Claims {
    pub fn new(consumer_key: &str, username: &str, audience: &str, now_unix: i64) -> Claims {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        Claims {
            iss: consumer_key.to_string(),
            sub: username.to_string(),
            aud: audience.to_string(),
            exp: now_unix + LIFETIME_SECS,
            iat: now_unix,
            jti: hex::encode(nonce),
        }
    }
}

/// A private key parsed once, ready to sign many assertions.
pub struct AssertionSigner {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner").field("bits", &(self.key.public_modulus_len() * 8)).finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// From the PKCS#8 DER that `cert::issue` / `cert::check_upload` produce.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<AssertionSigner> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| Error::Internal(format!("the stored private key does not parse as RSA PKCS#8: {e}")))?;
        Ok(AssertionSigner { key, rng: SystemRandom::new() })
    }

    pub fn bits(&self) -> usize {
        self.key.public_modulus_len() * 8
    }

    /// A signed assertion for these claims: `base64url(header).base64url(claims).signature`.
    pub fn assertion(&self, claims: &Claims) -> Result<String> {
        let header = Header::new(Algorithm::RS256);
        let message = format!("{}.{}", b64_json(&header)?, b64_json(claims)?);
        let signature = self.try_sign(message.as_bytes()).map_err(|e| Error::Internal(format!("signing the assertion: {e}")))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

impl Signer<Vec<u8>> for AssertionSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &self.rng, msg, &mut signature).map_err(SignatureError::from_source)?;
        Ok(signature)
    }
}

impl JwtSigner for AssertionSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// JSON + base64url of a JWT part.
fn b64_json<T: Serialize>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding a JWT part: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn assertions_verify_with_the_certificate_key_and_carry_the_claims() {
        let issued = crate::certs::issue(2048, "SF", "DEV", time::OffsetDateTime::now_utc()).unwrap();
        let signer = AssertionSigner::from_pkcs8_der(issued.private_key.expose_secret()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = Claims::new("3MVG9key", "int+dev@acme.com", "https://login.salesforce.com", now);
        let jwt = signer.assertion(&claims).unwrap();

        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.certificate_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let key = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["https://login.salesforce.com"]);
        let data = jsonwebtoken::decode::<Claims>(&jwt, &key, &v).unwrap();
        assert_eq!(data.claims, claims);
        assert!(data.claims.exp - now <= LIFETIME_SECS);
        assert_eq!(data.header.alg, Algorithm::RS256);

        let other = Claims::new("3MVG9key", "int+dev@acme.com", "https://login.salesforce.com", now);
        assert_ne!(other.jti, claims.jti, "every assertion has its own jti");
        let mut tampered = jwt.clone();
        tampered.insert(jwt.find('.').unwrap() + 3, 'x');
        assert!(jsonwebtoken::decode::<Claims>(&tampered, &key, &v).is_err());
    }
}
