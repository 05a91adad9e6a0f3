//! The JWT-bearer assertion: RS256 over `{iss, sub, aud, exp, iat, jti}`, signed by the shared
//! [`AssertionSigner`] (`crate::assertion`, which also signs Entra ID's PS256 assertions).

use serde::{Deserialize, Serialize};

pub use crate::assertion::AssertionSigner;

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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

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
